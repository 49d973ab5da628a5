//! Telling the init system: install's reload and start (or restart), uninstall's stop and
//! reload, each through [`run_tool`]. None of it runs under `--root` (`run_tools` is false).

use super::*;

impl Installer {
    /// Tells the init system; never reached under `--root`. `items`: (name, rendered, fresh).
    pub(super) fn activate(
        &self,
        target: Target,
        items: &[(&str, &Rendered, bool)],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        match target {
            Target::Systemd | Target::SystemdUser => self.start_units(target, items),
            Target::Launchd | Target::LaunchdAgent => self.bootstrap_jobs(target, items, out),
            Target::Inittab => {
                if !self.no_start {
                    reread_inittab(target)?;
                }
                // sysvinit keeps a running entry whose line did not change: the watchdog of
                // an updated tunnel is asked to exit, and init respawns it with the new
                // args file (the inittab was never without the entry).
                for &(name, _, fresh) in items {
                    if !fresh {
                        restart_watchdog(name, target, out)?;
                    }
                }
                Ok(())
            }
            Target::Busybox => {
                if !self.no_start {
                    reread_inittab(target)?;
                }
                for &(name, _, fresh) in items {
                    if !fresh {
                        writeln!(
                            out,
                            "note: BusyBox init keeps the running watchdog with its old arguments until it exits; \
                             `tunnelctl reconnect {name}` or a reboot picks up the new ones"
                        )
                        .map_err(io_err)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// `daemon-reload`, then (unless `--no-start`) each unit enabled and started, or
    /// restarted when it was installed before.
    fn start_units(&self, target: Target, items: &[(&str, &Rendered, bool)]) -> Result<(), String> {
        let base = systemctl(target);
        run_tool(&with(&base, &["daemon-reload"]))?;
        if self.no_start {
            return Ok(());
        }
        for &(name, _, fresh) in items {
            let unit = crate::escape::unit_name(name);
            // Type=notify: systemctl waits for READY=1, i.e. the first proof that
            // every forward works, which can take long when the server is away.
            crate::errln!(
                "starting {unit}: waits until every forward is proven (Ctrl-C stops \
                 waiting, not the tunnel; `tunnelctl status {name}` shows progress)"
            );
            if fresh {
                run_tool(&with(&base, &["enable", "--now", &unit]))?;
            } else {
                run_tool(&with(&base, &["enable", &unit]))?;
                run_tool(&with(&base, &["restart", &unit]))?;
            }
        }
        Ok(())
    }

    /// Unless `--no-start`: each job bootstrapped into its domain (booted out first when
    /// it was installed before), with a note when an agent cannot go into `gui/UID`.
    fn bootstrap_jobs(
        &self,
        target: Target,
        items: &[(&str, &Rendered, bool)],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if self.no_start {
            return Ok(());
        }
        let uid = nix::unistd::getuid().as_raw();
        let gui = target == Target::LaunchdAgent && launchd_gui_session(uid);
        let domain = launchd_domain(target, uid, gui);
        if target == Target::LaunchdAgent && !gui {
            writeln!(out, "{}", no_gui_note(uid)).map_err(io_err)?;
        }
        for &(name, rendered, fresh) in items {
            let plist = rendered
                .files
                .first()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default();
            run_launchd(&launchd_install_steps(
                &domain,
                &launchd::label(name),
                &plist,
                fresh,
            ))?;
        }
        Ok(())
    }

    /// Uninstall's first step: the service stopped and disabled (systemd) or booted out
    /// (launchd). An inittab entry stops when init rereads the file without it.
    pub(super) fn stop_service(&self, name: &str, target: Target) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        match target {
            Target::Systemd | Target::SystemdUser => {
                let unit = crate::escape::unit_name(name);
                run_tool(&with(&systemctl(target), &["disable", "--now", &unit]))?;
                // StateDirectory= outlives the service (its state file saying "stopped");
                // the tunnel is going away, so is its state. systemd before 243 has no
                // `clean`: then the folder stays, which is no reason to fail uninstall.
                if let Err(e) =
                    run_tool(&with(&systemctl(target), &["clean", "--what=state", &unit]))
                {
                    eprintln!("note: {e}; the tunnel's state folder stays");
                }
                Ok(())
            }
            Target::Launchd | Target::LaunchdAgent => {
                let uid = nix::unistd::getuid().as_raw();
                let gui = target == Target::LaunchdAgent && launchd_gui_session(uid);
                let domain = launchd_domain(target, uid, gui);
                run_launchd(&launchd_uninstall_steps(&domain, &launchd::label(name)))
            }
            Target::Inittab | Target::Busybox => Ok(()),
        }
    }

    /// After uninstall took our entry out of /etc/inittab: init rereads it.
    pub(super) fn reload_inittab_after_removal(
        &self,
        target: Target,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        reread_inittab(target)?;
        // sysvinit stops processes whose entry vanished; BusyBox may not.
        if target == Target::Busybox {
            writeln!(out, "note: unless BusyBox was built with FEATURE_KILL_REMOVED the watchdog keeps running until reboot")
                .map_err(io_err)?;
        }
        Ok(())
    }

    /// After uninstall removed a unit file: systemd forgets the unit.
    pub(super) fn forget_removed_units(&self, target: Target) -> Result<(), String> {
        if self.run_tools && matches!(target, Target::Systemd | Target::SystemdUser) {
            run_tool(&with(&systemctl(target), &["daemon-reload"]))?;
        }
        Ok(())
    }
}

/// `tunnelctl start|stop|restart`: what each does to an installed tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Start => "start",
            Lifecycle::Stop => "stop",
            Lifecycle::Restart => "restart",
        }
    }

    /// The word of the report: `started`, `stopped`, `restarted`.
    pub fn done(self) -> &'static str {
        match self {
            Lifecycle::Start => "started",
            Lifecycle::Stop => "stopped",
            Lifecycle::Restart => "restarted",
        }
    }
}

impl Installer {
    /// Starts, stops or restarts an installed tunnel through the target's own tools.
    /// systemd: `systemctl [--user] start|stop|restart UNIT` (enablement untouched).
    /// launchd: `bootstrap` / `bootout` / `kickstart -k`. inittab and BusyBox have no
    /// stop but the entry itself: stop puts a `#` before the entry's line and has init
    /// reread the file (so init no longer respawns it, also after a reboot), then asks a
    /// watchdog still running to exit; start takes the `#` away and has init reread;
    /// restart asks the watchdog to exit, and init respawns it.
    pub fn lifecycle(
        &self,
        name: &str,
        target: Target,
        verb: Lifecycle,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let unit = crate::escape::unit_name(name);
        match target {
            Target::Systemd | Target::SystemdUser => {
                run_tool(&with(&systemctl(target), &[verb.as_str(), &unit]))
            }
            Target::Launchd | Target::LaunchdAgent => {
                let uid = nix::unistd::getuid().as_raw();
                let gui = target == Target::LaunchdAgent && launchd_gui_session(uid);
                let domain = launchd_domain(target, uid, gui);
                let label = launchd::label(name);
                match verb {
                    Lifecycle::Start => {
                        let home = crate::home::home_dir();
                        let id = crate::config::inittab_id(name);
                        let plist = crate::render::installed_paths(name, target, &home, &id)
                            .first()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        run_launchd(&launchd_install_steps(&domain, &label, &plist, true))
                    }
                    Lifecycle::Stop => run_launchd(&launchd_uninstall_steps(&domain, &label)),
                    Lifecycle::Restart => run_tool(&[
                        "launchctl".into(),
                        "kickstart".into(),
                        "-k".into(),
                        format!("{domain}/{label}"),
                    ]),
                }
            }
            Target::Inittab | Target::Busybox => {
                let id = crate::config::inittab_id(name);
                match verb {
                    Lifecycle::Stop => {
                        self.switch_inittab_entry(name, target, &id, false)?;
                        reread_inittab(target)?;
                        stop_watchdog(name, target, out)
                    }
                    Lifecycle::Start => {
                        if self.switch_inittab_entry(name, target, &id, true)? {
                            reread_inittab(target)?;
                        }
                        Ok(())
                    }
                    Lifecycle::Restart if self.switch_inittab_entry(name, target, &id, true)? => {
                        // It was stopped: starting it is the restart.
                        reread_inittab(target)
                    }
                    Lifecycle::Restart => restart_watchdog(name, target, out),
                }
            }
        }
    }

    /// Switches our /etc/inittab entry for `id` on or off under the inittab lock; true
    /// when the file changed.
    fn switch_inittab_entry(
        &self,
        name: &str,
        target: Target,
        id: &str,
        on: bool,
    ) -> Result<bool, String> {
        let (dir, file) = safe_fs::split(Path::new(INITTAB))?;
        let etc = self.open_dir(dir, false, safe_fs::Trust::Install)?;
        let _lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
        etc.clean_stale_temps();
        let Some(old) = etc.read_optional(file, MAX_READ)? else {
            return Err(format!(
                "{INITTAB} does not exist: `{name}` is not installed"
            ));
        };
        if find_entry(&old, id).is_none() {
            return Err(format!(
                "{INITTAB} has no entry for `{name}`: it is not installed"
            ));
        }
        match inittab_entry_switched(&old, id, on) {
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

/// After stop switched the entry off and init reread the file: a watchdog init did not
/// stop itself (BusyBox without FEATURE_KILL_REMOVED) is asked to exit; nothing
/// respawns it now.
fn stop_watchdog(name: &str, target: Target, out: &mut dyn Write) -> Result<(), String> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs = crate::locations::state_dir_candidates(target, name, &home, uid, &env);
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

/// `systemctl`, with `--user` for a per-user target.
pub fn systemctl(target: Target) -> Vec<String> {
    let mut base = vec!["systemctl".to_string()];
    if target == Target::SystemdUser {
        base.push("--user".into());
    }
    base
}

/// Has init read /etc/inittab again: `telinit q` for sysvinit, SIGHUP to BusyBox init.
pub fn reread_inittab(target: Target) -> Result<(), String> {
    if target == Target::Inittab {
        run_tool(&["telinit".into(), "q".into()]).map_err(|e| reload_failed(&e, "telinit q"))
    } else {
        run_tool(&["kill".into(), "-HUP".into(), "1".into()])
            .map_err(|e| reload_failed(&e, "kill -HUP 1"))
    }
}

fn reload_failed(error: &str, command: &str) -> String {
    format!(
        "{INITTAB} is already updated, but {error}: init has not read it yet. Run `{command}` \
         once init can be reached (or reboot)"
    )
}

/// Asks the running watchdog of an updated inittab tunnel to exit (SIGTERM), so init
/// respawns it with the new args file. Only a live tunnel-watchdog found through its
/// checked state file is signalled.
fn restart_watchdog(name: &str, target: Target, out: &mut dyn Write) -> Result<(), String> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs = crate::locations::state_dir_candidates(target, name, &home, uid, &env);
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

/// Runs an init tool for install or uninstall (`status` and `reconnect` ask systemctl
/// themselves). Prints the command so the user sees what happened to their system.
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

/// Whether `target`'s init runs on this machine and its tools reach it, so that install
/// can start what it writes and uninstall stop it. Err says what was found instead.
pub fn check_reachable(target: Target) -> Result<(), String> {
    let found = Pid1::read();
    match target {
        Target::Systemd | Target::SystemdUser if systemd_running() => Ok(()),
        Target::Systemd | Target::SystemdUser => Err(format!(
            "systemd is not running here (no /run/systemd/system); {}",
            found.describe()
        )),
        Target::Busybox if found.is_busybox() => Ok(()),
        Target::Busybox => Err(format!("BusyBox init is not PID 1: {}", found.describe())),
        Target::Inittab if found.is_busybox() || found.is_systemd() => {
            Err(format!("SysV init is not PID 1: {}", found.describe()))
        }
        Target::Inittab => telinit_answers().map_err(|why| format!("{why}; {}", found.describe())),
        Target::Launchd | Target::LaunchdAgent => Ok(()),
    }
}

/// The init this machine runs, found by what runs as PID 1 (not by what is installed: a
/// container or chroot of a systemd distribution has systemd's files but no systemd).
/// Err describes what was found, for a refusal that offers `--target` and `--root`.
pub fn running_init(user: bool) -> Result<Target, String> {
    if cfg!(target_os = "macos") {
        return Ok(if user {
            Target::LaunchdAgent
        } else {
            Target::Launchd
        });
    }
    if systemd_running() {
        return Ok(if user {
            Target::SystemdUser
        } else {
            Target::Systemd
        });
    }
    let found = Pid1::read();
    if found.is_busybox() {
        return Ok(Target::Busybox);
    }
    match check_reachable(Target::Inittab) {
        Ok(()) => Ok(Target::Inittab),
        Err(_) => {
            let mut what = vec![found.describe()];
            if let Some(systemd) = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
                .into_iter()
                .find(|p| Path::new(p).exists())
            {
                what.push(format!(
                    "systemd is installed ({systemd}) but not running (no /run/systemd/system)"
                ));
            }
            if let Err(why) = telinit_answers() {
                what.push(why);
            }
            Err(what.join("; "))
        }
    }
}

/// systemd creates this directory when it boots the machine (sd_booted(3)).
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// SysV's `telinit` on PATH: on a systemd distribution it is a link to systemctl, which
/// cannot tell SysV init anything.
fn telinit_answers() -> Result<(), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(telinit) = std::env::split_paths(&path)
        .map(|d| d.join("telinit"))
        .find(|p| p.is_file())
    else {
        return Err("no telinit on PATH".into());
    };
    let real = fs::canonicalize(&telinit).unwrap_or_else(|_| telinit.clone());
    if real.file_name().is_some_and(|n| n == "systemctl") {
        return Err(format!(
            "{} is systemd's (→ {}), not SysV init's",
            telinit.display(),
            real.display()
        ));
    }
    Ok(())
}

/// What runs as PID 1, as /proc says.
struct Pid1 {
    exe: Option<PathBuf>,
    comm: String,
}

impl Pid1 {
    fn read() -> Pid1 {
        Pid1 {
            exe: fs::read_link("/proc/1/exe").ok(),
            comm: fs::read_to_string("/proc/1/comm")
                .map(|c| c.trim().to_string())
                .unwrap_or_default(),
        }
    }

    fn exe_name(&self) -> String {
        self.exe
            .as_ref()
            .and_then(|e| e.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn is_busybox(&self) -> bool {
        self.exe_name().starts_with("busybox")
    }

    fn is_systemd(&self) -> bool {
        self.exe_name() == "systemd"
    }

    fn describe(&self) -> String {
        match (&self.exe, self.comm.as_str()) {
            (Some(exe), comm) => format!("PID 1 is `{comm}` ({})", exe.display()),
            (None, "") => "PID 1 cannot be seen (no /proc)".into(),
            (None, comm) => format!("PID 1 is `{comm}`"),
        }
    }
}
