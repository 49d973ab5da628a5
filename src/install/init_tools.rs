//! The one runner of what a target asks of its init system ([`Step`]s: install's reload
//! and start or restart, uninstall's stop and reload). Nothing here runs under `--root`
//! (`run_tools` is false).

use super::*;
use crate::targets::{Activation, Lifecycle, Step};

impl Installer {
    /// Tells the init system; never reached under `--root`.
    pub(super) fn activate(
        &self,
        target: Target,
        items: &[Activation],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        self.run_steps(target, &target.system().activate(items, self.no_start), out)
    }

    /// Starts, stops or restarts an installed tunnel through the target's own tools (its
    /// `lifecycle` steps).
    pub fn lifecycle(
        &self,
        name: &str,
        target: Target,
        verb: Lifecycle,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let steps = target
            .system()
            .lifecycle(name, verb, &crate::home::home_dir())?;
        self.run_steps(target, &steps, out)
    }

    /// Runs `steps` in order (nothing under `--root`); the first failure ends them.
    pub(super) fn run_steps(
        &self,
        target: Target,
        steps: &[Step],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        for step in steps {
            match step {
                Step::Run(argv) => run_tool(argv)?,
                Step::MayFail(argv) => {
                    let _ = run_tool(argv);
                }
                Step::Try { argv, otherwise } => {
                    if let Err(e) = run_tool(argv) {
                        crate::errln!("note: {e}; {otherwise}");
                    }
                }
                Step::Reload(argv) => run_tool(argv).map_err(|e| reload_failed(&e, argv))?,
                Step::WaitGone {
                    probe,
                    timeout,
                    still,
                } => wait_gone(probe, *timeout, still)?,
                Step::RestartWatchdog(name) => restart_watchdog(name, target, out)?,
                Step::StopWatchdog(name) => stop_watchdog(name, target, out)?,
                Step::SwitchInittabEntry {
                    name,
                    on,
                    if_changed,
                    if_same,
                } => {
                    let next = if self.switch_inittab_entry(name, target, *on)? {
                        if_changed
                    } else {
                        if_same
                    };
                    self.run_steps(target, next, out)?;
                }
                Step::Note(line) => writeln!(out, "{line}").map_err(io_err)?,
                Step::Progress(line) => crate::errln!("{line}"),
            }
        }
        Ok(())
    }
}

impl Installer {
    /// Switches our /etc/inittab entry for `name` on or off under the inittab lock; true
    /// when the file changed.
    fn switch_inittab_entry(&self, name: &str, target: Target, on: bool) -> Result<bool, String> {
        let id = crate::config::inittab_id(name);
        let (dir, file) = safe_fs::split(Path::new(INITTAB))?;
        let etc = self.open_dir(dir, false, safe_fs::Trust::Install)?;
        let _lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
        etc.clean_stale_temps();
        let Some(old) = etc.read_optional(file, MAX_READ)? else {
            return Err(format!(
                "{INITTAB} does not exist: `{name}` is not installed"
            ));
        };
        if find_entry(&old, &id).is_none() {
            return Err(format!(
                "{INITTAB} has no entry for `{name}`: it is not installed"
            ));
        }
        match inittab_entry_switched(&old, &id, on) {
            Some(new) => {
                etc.write_file(file, &new, 0o644).map_err(|(r, why)| {
                    refusal_message(r, &why, name, target, Path::new(INITTAB))
                })?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Runs `steps` for `target` outside an install (`import`'s handover), printing what
/// they say.
pub fn run_steps(target: Target, steps: &[Step]) -> Result<(), String> {
    let installer = Installer {
        root: PathBuf::from("/"),
        run_tools: true,
        dry_run: false,
        no_start: false,
    };
    installer.run_steps(target, steps, &mut crate::output::Lenient)
}

/// After stop switched the entry off and init reread the file: a watchdog init did not
/// stop itself (BusyBox without FEATURE_KILL_REMOVED) is asked to exit; nothing
/// respawns it now.
fn stop_watchdog(name: &str, target: Target, out: &mut dyn Write) -> Result<(), String> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs = crate::targets::state_dirs(target, name, &home, uid, &env);
    let row = crate::status::read_row(name, Some(target), &dirs);
    if let (Some(state), true) = (&row.state, row.running) {
        let pid = nix::unistd::Pid::from_raw(state.pid as i32);
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("cannot stop the watchdog (pid {pid}): {e}")),
        }
        writeln!(out, "{name}: asked the watchdog (pid {pid}) to exit").map_err(io_err)?;
    }
    Ok(())
}

fn reload_failed(error: &str, argv: &[String]) -> String {
    format!(
        "{INITTAB} is already updated, but {error}: init has not read it yet. Run `{}` \
         once init can be reached (or reboot)",
        argv.join(" ")
    )
}

/// Runs `probe` until it fails (the thing is gone), 100 ms apart, at most `timeout`.
fn wait_gone(probe: &[String], timeout: Duration, still: &str) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let gone = || {
        !Command::new(&probe[0])
            .args(&probe[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    while !gone() {
        if Instant::now() >= deadline {
            return Err(still.to_string());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Asks the running watchdog of an updated tunnel to exit (SIGTERM), so its supervisor
/// respawns it with the new arguments. Only a live tunnel-watchdog found through its
/// checked state file is signalled.
fn restart_watchdog(name: &str, target: Target, out: &mut dyn Write) -> Result<(), String> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs = crate::targets::state_dirs(target, name, &home, uid, &env);
    let row = crate::status::read_row(name, Some(target), &dirs);
    match (&row.state, row.running) {
        (Some(state), true) => {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(state.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .map_err(|e| format!("cannot stop the old watchdog (pid {}): {e}", state.pid))?;
            writeln!(out, "{name}: asked the running watchdog (pid {}) to exit; init starts it again with the new arguments", state.pid)
                .map_err(io_err)
        }
        _ => Ok(()),
    }
}

/// Runs an init tool for install or uninstall (`status` and `reconnect` ask the
/// target's tool themselves). Prints the command so the user sees what happened to their system.
pub fn run_tool(argv: &[String]) -> Result<(), String> {
    crate::errln!("+ {}", argv.join(" "));
    // Captured, then relayed: a closed stdout or stderr must not kill the tool by
    // SIGPIPE half-way (systemctl prints "Created symlink" before it starts the unit).
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {}: {e}", argv[0]))?;
    crate::output::relay(&output.stdout, &output.stderr);
    let status = output.status;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", argv.join(" ")))
    }
}
