//! `tunnelctl reconnect NAME`: make the watchdog drop its back-off and reconnect now.
//! Where the target's supervisor can deliver the signal to the service's main process
//! (the watchdog, never ssh) it does (`InitSystem::reconnect`); elsewhere the pid comes
//! from the watchdog's state file and is checked to be a live tunnel-watchdog first, so
//! a recycled pid is never signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Error;
use crate::cli::ReconnectArgs;
use crate::home::home_dir;
use crate::state::{Phase, State};
use crate::status::watchdog_alive;

pub fn run(args: ReconnectArgs) -> Result<ExitCode, Error> {
    let name = &args.name;
    let (target, _) = crate::targets::choose(args.target, Path::new("/"));
    let home = home_dir();
    if args.state_dir.is_none()
        && let Some(ask) = target.system().reconnect(name)
    {
        return match Command::new(&ask.argv[0])
            .args(&ask.argv[1..])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {
                crate::outln!("{}", ask.done);
                Ok(ExitCode::SUCCESS)
            }
            Ok(out) => Err(Error::failed(format!(
                "{} is not running ({}); start it with `{}`",
                ask.service,
                String::from_utf8_lossy(&out.stderr).trim(),
                ask.start
            ))
            .about(name)),
            Err(e) => Err(Error::failed(format!("cannot run {}: {e}", ask.argv[0])).about(name)),
        };
    }
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs: Vec<PathBuf> = match &args.state_dir {
        Some(dir) => vec![dir.clone()],
        None => crate::targets::state_dirs(target, name, &home, uid, &env),
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
        let text = match crate::state::read_state_file(dir)? {
            Some((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
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
