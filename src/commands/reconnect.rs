//! `tunnelctl reconnect NAME`: make the watchdog drop its back-off and reconnect now.
//! Under systemd the manager delivers the signal to the unit's main process (the
//! watchdog, never ssh); elsewhere the pid comes from the watchdog's state file and is
//! checked to be a live tunnel-watchdog first, so a recycled pid is never signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Error;
use crate::cli::ReconnectArgs;
use crate::home::home_dir;
use crate::locations::{LogSource, default_target, log_source, state_dir_candidates};
use crate::state::{Phase, State};
use crate::status::watchdog_alive;

pub fn run(args: ReconnectArgs) -> Result<ExitCode, Error> {
    let name = &args.name;
    let target = args.target.unwrap_or_else(default_target);
    let home = home_dir();
    if args.state_dir.is_none()
        && let LogSource::Journal { unit, user } = log_source(target, name, &home)
        && Path::new("/run/systemd/system").is_dir()
    {
        let mut cmd = Command::new("systemctl");
        if user {
            cmd.arg("--user");
        }
        cmd.args(["kill", "--kill-whom=main", "-s", "USR1", "--", &unit]);
        return match cmd.stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {
                crate::outln!(
                    "{name}: asked systemd to send SIGUSR1 to {unit}'s watchdog: it reconnects now"
                );
                Ok(ExitCode::SUCCESS)
            }
            Ok(out) => Err(Error::failed(format!(
                "{unit} is not running ({}); start it with `systemctl{} start {unit}`",
                String::from_utf8_lossy(&out.stderr).trim(),
                if user { " --user" } else { "" }
            ))
            .about(name)),
            Err(e) => Err(Error::failed(format!("cannot run systemctl: {e}")).about(name)),
        };
    }
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs: Vec<PathBuf> = match &args.state_dir {
        Some(dir) => vec![dir.clone()],
        None => state_dir_candidates(target, name, &home, uid, &env),
    };
    let pid = signal_watchdog(&dirs).map_err(|why| Error::failed(why).about(name))?;
    crate::outln!(
        "{name}: sent SIGUSR1 to tunnel-watchdog (pid {pid}): it drops its back-off and reconnects now"
    );
    Ok(ExitCode::SUCCESS)
}

/// Finds the first state file among `dirs`, checks its watchdog is alive, sends SIGUSR1.
pub fn signal_watchdog(dirs: &[PathBuf]) -> Result<u32, String> {
    for dir in dirs {
        let file = dir.join("state");
        // Bounded, never through a link, and only a file of a trusted owner: the pid in
        // it gets a signal.
        let text = match crate::safe_fs::read_trusted(&file, crate::watchdog::MAX_STATE_FILE)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => continue,
        };
        let state = State::from_text(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        if !watchdog_alive(state.pid) {
            let was = if state.phase == Phase::Stopped {
                "stopped cleanly"
            } else {
                "gone"
            };
            return Err(format!(
                "the tunnel is not running: its watchdog (pid {}, per {}) is {was}; start its service (or `tunnelctl install NAME`)",
                state.pid,
                file.display()
            ));
        }
        kill(Pid::from_raw(state.pid as i32), Signal::SIGUSR1).map_err(|e| {
            format!(
                "cannot signal the watchdog (pid {}): {e}; run as its user or root",
                state.pid
            )
        })?;
        return Ok(state.pid);
    }
    let looked: Vec<String> = dirs
        .iter()
        .map(|d| d.join("state").display().to_string())
        .collect();
    Err(format!(
        "the tunnel is not running: no watchdog state file (looked at {}); start its service, or pass --state-dir if the watchdog was started with one",
        looked.join(", ")
    ))
}
