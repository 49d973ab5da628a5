//! `import --replace`: a live tunnel handed over from the service that runs it now (a
//! systemd unit, an inittab line, an ssh or autossh process) to tunnelctl's, never
//! leaving the box unreachable for longer than the switch itself. The new tunnel is
//! installed without starting; the old service is stopped (its `-R` ports are then free);
//! the new one is started and must be proven (READY=1, or `up` in its state file) within
//! a bound; if it is not, it is stopped and removed and the old service started again as
//! it was. A record of the old service and of the target the new one was installed for
//! (`replaced/NAME` under /var/lib/tunnelctl, or the user's state folder for a per-user
//! target) lets `import --undo NAME` bring it back later.
//!
//! The old service's init-specific steps (which tool stops, starts and tells) are here;
//! install's own runner (`run_tool`, `run_steps`) and the targets' answers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::install::{INITTAB, run_steps, run_tool};
use crate::state::{Phase, State};
use crate::targets::{Target, systemd::systemctl};

/// The service that ran the tunnel before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Old {
    /// A unit of the system manager or the user's (`target`), and whether it was enabled.
    Unit {
        target: Target,
        unit: String,
        enabled: bool,
    },
    /// An /etc/inittab line, as it was (byte for byte), for `target`'s init.
    InittabLine { target: Target, line: String },
    /// A process started by hand: how to start it again.
    Process {
        pid: i32,
        argv: Vec<String>,
        env: Vec<String>,
        cwd: String,
    },
}

/// What marks a line of /etc/inittab that tunnelctl took out of service.
pub fn marker(name: &str) -> String {
    format!("#tunnelctl-replaced:{name}:")
}

impl Old {
    /// For messages: `unit old.service`, `/etc/inittab line `…``, `process 1234 (autossh …)`.
    pub fn describe(&self) -> String {
        match self {
            Old::Unit { unit, .. } => format!("unit {unit}"),
            Old::InittabLine { line, .. } => format!("the {INITTAB} line `{line}`"),
            Old::Process { pid, argv, .. } => {
                format!("process {pid} ({})", crate::import::display_command(argv))
            }
        }
    }

    /// The process `pid` as it runs now: argv, environment and working directory.
    pub fn process(pid: i32) -> Result<Old, String> {
        let argv = crate::procinfo::argv(pid as u32)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("no process {pid} (or its command line cannot be read)"))?;
        let env = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "/".into());
        Ok(Old::Process {
            pid,
            argv,
            env,
            cwd,
        })
    }

    /// Stops the old service; its ports are free when this returns Ok.
    pub fn stop(&self, name: &str) -> Result<(), String> {
        match self {
            Old::Unit { target, unit, .. } => {
                run_tool(&systemctl(target.system().per_user(), &["stop", unit]))
            }
            Old::InittabLine { target, line } => {
                let before = running_line(line);
                edit_inittab(line, &format!("{}{line}", marker(name)))?;
                reread(*target)?;
                // sysvinit stops what a removed line ran; BusyBox (unless built with
                // FEATURE_KILL_REMOVED) does not: those are stopped here, by pid.
                for pid in before {
                    terminate(pid);
                }
                Ok(())
            }
            Old::Process { pid, .. } => {
                terminate(*pid);
                Ok(())
            }
        }
    }

    /// After a proven handover: a unit that was enabled is disabled, so the next boot
    /// does not start both; a unit whose program exited non-zero on SIGTERM (autossh
    /// does) is not left shown as failed.
    pub fn retire(&self) -> Result<(), String> {
        match self {
            Old::Unit {
                target,
                unit,
                enabled,
            } => {
                let _ = run_tool(&systemctl(
                    target.system().per_user(),
                    &["reset-failed", unit],
                ));
                if *enabled {
                    run_tool(&systemctl(target.system().per_user(), &["disable", unit]))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Starts the old service again as it was (an inittab line byte for byte; a unit
    /// enabled again when it was; a process with its argv, environment and folder).
    pub fn restore(&self, name: &str) -> Result<(), String> {
        match self {
            Old::Unit {
                target,
                unit,
                enabled,
            } => {
                if *enabled {
                    run_tool(&systemctl(target.system().per_user(), &["enable", unit]))?;
                }
                run_tool(&systemctl(target.system().per_user(), &["start", unit]))
            }
            Old::InittabLine { target, line } => {
                edit_inittab(&format!("{}{line}", marker(name)), line)?;
                reread(*target)
            }
            Old::Process { argv, env, cwd, .. } => spawn_detached(argv, env, cwd),
        }
    }

    /// The record `import --undo` reads: `key=value` lines, values escaped.
    pub fn to_record(&self, name: &str) -> String {
        let mut out = format!(
            "# what tunnelctl's tunnel `{name}` replaced; `tunnelctl import --undo {name}` brings it back\n"
        );
        let mut kv = |k: &str, v: &str| out.push_str(&format!("{k}={}\n", escape(v)));
        match self {
            Old::Unit {
                target,
                unit,
                enabled,
            } => {
                kv("kind", "unit");
                kv("target", target.as_str());
                kv("unit", unit);
                kv("enabled", if *enabled { "yes" } else { "no" });
            }
            Old::InittabLine { target, line } => {
                kv("kind", "inittab");
                kv("target", target.as_str());
                kv("line", line);
            }
            Old::Process {
                pid,
                argv,
                env,
                cwd,
            } => {
                kv("kind", "process");
                kv("pid", &pid.to_string());
                kv("cwd", cwd);
                for a in argv {
                    kv("arg", a);
                }
                for e in env {
                    kv("env", e);
                }
            }
        }
        out
    }

    pub fn from_record(text: &str) -> Result<Old, String> {
        let mut one = std::collections::BTreeMap::new();
        let (mut argv, mut env) = (Vec::new(), Vec::new());
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("not key=value: {line:?}"))?;
            let v = unescape(v);
            match k {
                "arg" => argv.push(v),
                "env" => env.push(v),
                "installed_target" => {}
                _ => {
                    one.insert(k.to_string(), v);
                }
            }
        }
        let get = |k: &str| {
            one.get(k)
                .cloned()
                .ok_or_else(|| format!("the record has no `{k}`"))
        };
        let target = |t: String| {
            Target::ALL
                .into_iter()
                .find(|x| x.as_str() == t)
                .ok_or_else(|| format!("unknown target `{t}`"))
        };
        match get("kind")?.as_str() {
            "unit" => Ok(Old::Unit {
                target: target(get("target")?)?,
                unit: get("unit")?,
                enabled: get("enabled")? == "yes",
            }),
            "inittab" => Ok(Old::InittabLine {
                target: target(get("target")?)?,
                line: get("line")?,
            }),
            "process" => Ok(Old::Process {
                pid: get("pid")?.parse().map_err(|_| "bad pid".to_string())?,
                argv,
                env,
                cwd: get("cwd")?,
            }),
            other => Err(format!("unknown kind `{other}`")),
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Has the init of an inittab target read /etc/inittab again.
fn reread(target: Target) -> Result<(), String> {
    run_steps(target, &target.system().start_installed("")?)
}

/// Where the records of replaced services are kept: a per-user target's in the user's
/// state folder, a system target's in /var/lib/tunnelctl.
fn records_dir(target: Target) -> PathBuf {
    if !target.system().per_user() {
        return PathBuf::from("/var/lib/tunnelctl/replaced");
    }
    let state = std::env::var("XDG_STATE_HOME")
        .ok()
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::home::home_dir().join(".local/state"));
    state.join("tunnelctl/replaced")
}

/// Records `old` and the target tunnelctl's tunnel `name` was installed for.
pub fn write_record(name: &str, old: &Old, target: Target) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = records_dir(target);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let d = crate::safe_fs::open_abs(&dir, None, crate::safe_fs::Trust::Private)?;
    let text = format!(
        "{}installed_target={}\n",
        old.to_record(name),
        target.as_str()
    );
    d.write_file(std::ffi::OsStr::new(name), text.as_bytes(), 0o600)
        .map_err(|(_, e)| e)
}

/// What `name` replaced, and the target tunnelctl's tunnel was installed for.
pub fn read_record(name: &str) -> Result<(Old, Target), String> {
    let dirs = [
        records_dir(Target::SystemdUser),
        records_dir(Target::Systemd),
    ];
    let Some((path, text)) = dirs
        .iter()
        .map(|d| d.join(name))
        .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
    else {
        return Err(format!(
            "no record of what `{name}` replaced (looked in {} and {}); only a handover made with `import --replace` can be undone",
            dirs[0].display(),
            dirs[1].display()
        ));
    };
    let target = text
        .lines()
        .find_map(|l| l.strip_prefix("installed_target="))
        .and_then(|t| Target::ALL.into_iter().find(|x| x.as_str() == t))
        .ok_or_else(|| format!("{}: no installed_target", path.display()))?;
    let old = Old::from_record(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((old, target))
}

pub fn remove_record(name: &str, target: Target) {
    let _ = std::fs::remove_file(records_dir(target).join(name));
}

/// /etc/inittab with the one line `from` replaced by `to`, every other byte kept;
/// written atomically (temp file, rename) under install's inittab lock.
fn edit_inittab(from: &str, to: &str) -> Result<(), String> {
    let (dir_path, name) = crate::safe_fs::split(Path::new(INITTAB))?;
    let dir = crate::safe_fs::open_abs(dir_path, None, crate::safe_fs::Trust::Install)?;
    let _lock = dir.lock(std::ffi::OsStr::new(crate::install::INITTAB_LOCK))?;
    let bytes = dir
        .read_optional(name, 64 * 1024 * 1024)?
        .ok_or_else(|| format!("{INITTAB} is gone"))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut count = 0;
    let mut out = String::with_capacity(text.len() + to.len());
    for piece in text.split_inclusive('\n') {
        let (line, end) = match piece.strip_suffix('\n') {
            Some(l) => (l, "\n"),
            None => (piece, ""),
        };
        if line == from {
            count += 1;
            out.push_str(to);
        } else {
            out.push_str(line);
        }
        out.push_str(end);
    }
    if count != 1 {
        return Err(format!(
            "{INITTAB} has {count} lines `{from}` (expected exactly one); it was left alone"
        ));
    }
    dir.write_file(name, out.as_bytes(), 0o644)
        .map_err(|(_, e)| e)
}

/// The processes init runs for an inittab line now: children of PID 1 whose argv is
/// the line's command.
fn running_line(line: &str) -> Vec<i32> {
    let Some(entry) = crate::import::inittab::entries(line).into_iter().next() else {
        return Vec::new();
    };
    let Ok(commands) = crate::import::inittab::commands(&entry.process) else {
        return Vec::new();
    };
    let Some(words) = commands.into_iter().next().map(|c| c.words) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| parent(pid) == Some(1))
        // Debian's /usr/bin/autossh is a script that execs /usr/lib/autossh/autossh:
        // the program is compared by name, the arguments exactly.
        .filter(|&pid| {
            crate::procinfo::argv(pid as u32).is_some_and(|a| {
                a.len() == words.len()
                    && crate::import::program_name(&a[0]) == crate::import::program_name(&words[0])
                    && a[1..] == words[1..]
            })
        })
        .collect()
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: fields follow the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// SIGTERM, then (after 10 s) SIGKILL; returns once the process is gone (or 15 s passed).
fn terminate(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let start = Instant::now();
    let mut killed = false;
    while crate::procinfo::is_alive(pid as u32) && start.elapsed() < Duration::from_secs(15) {
        if !killed && start.elapsed() > Duration::from_secs(10) {
            let _ = kill(p, Signal::SIGKILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The old process started again: its argv, environment and folder, in a session of
/// its own, stdio on /dev/null (autossh -f forks away by itself).
fn spawn_detached(argv: &[String], env: &[String], cwd: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn()
        .map(|_| ())
        .map_err(|e| format!("starting {program} again: {e}"))
}

/// Starts tunnelctl's service for `name` (installed with `--no-start`). Inittab
/// targets were started by the reread that stopped the old line, or are now.
pub fn start_new(name: &str, target: Target, old: &Old) -> Result<(), String> {
    if target.system().uses_inittab() && matches!(old, Old::InittabLine { .. }) {
        return Ok(());
    }
    run_steps(target, &target.system().start_installed(name)?)
}

/// Waits until tunnelctl's tunnel is proven: its unit active (READY=1 sent), or its
/// state file `up`/`degraded`; at most `bound`. Err says what was seen last.
pub fn wait_proven(name: &str, target: Target, bound: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    loop {
        // The supervisor's word where it has one (an active unit has sent READY=1),
        // else the state file's.
        // Supervisors other than systemd (s6, runit) say running, not proven: their
        // tunnel is proven when its state file says so.
        let view = target.system().supervisor_view(name);
        if let Some(info) = &view {
            if info.active_state == "active" {
                return Ok(start.elapsed());
            }
            last = format!("{}/{}", info.active_state, info.sub_state);
        }
        if let Some(state) = state_of(name, target) {
            if matches!(state.phase, Phase::Up | Phase::Degraded) {
                return Ok(start.elapsed());
            }
            if view.is_none() {
                last = format!("state {}: {}", state.phase.as_str(), state.last_error);
            }
        }
        if start.elapsed() >= bound {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn state_of(name: &str, target: Target) -> Option<State> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::geteuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    crate::targets::state_dirs(target, name, &home, uid, &env)
        .into_iter()
        .find_map(|dir| std::fs::read_to_string(dir.join("state")).ok())
        .and_then(|text| State::from_text(&text).ok())
}

/// An init may keep a removed entry's process (BusyBox without FEATURE_KILL_REMOVED):
/// the new tunnel's watchdog, if still running after uninstall, is stopped by its pid
/// (from its state file, confirmed by its argv).
pub fn stop_leftover_watchdog(name: &str, target: Target) {
    if let Some(state) = state_of(name, target)
        && state.pid > 0
        && crate::procinfo::argv(state.pid).is_some_and(|a| {
            a.first()
                .is_some_and(|p| crate::import::program_name(p) == "tunnel-watchdog")
        })
    {
        terminate(state.pid as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for old in [
            Old::Unit {
                target: Target::SystemdUser,
                unit: "a b.service".into(),
                enabled: true,
            },
            Old::InittabLine {
                target: Target::Busybox,
                line: "::respawn:/usr/bin/autossh -M 0 -o \"A B\" x\\y".into(),
            },
            Old::Process {
                pid: 42,
                argv: vec!["autossh".into(), "a\nb".into()],
                env: vec!["AUTOSSH_POLL=30".into()],
                cwd: "/".into(),
            },
        ] {
            assert_eq!(Old::from_record(&old.to_record("t")).unwrap(), old);
        }
    }
}
