//! The `--on-change` command: run on every change of the tunnel's state, one at a time,
//! in order, each bounded in time. Driven from the main loop (`poll` after every wake-up:
//! SIGCHLD lands on the signal self-pipe), so it never blocks a probe round or a
//! notification: the loop only spawns, reaps and kills.
//!
//! The command gets `TUNNELCTL_TUNNEL`, `TUNNELCTL_OLD_STATE`, `TUNNELCTL_NEW_STATE` and
//! `TUNNELCTL_REASON` in its environment, no stdin/stdout/stderr, and its own process
//! group, killed (SIGKILL) when it outlives its bound and again once it has exited, so a
//! `sleep &` it left behind goes with it. Changes that happen while one runs wait in a
//! queue (bounded: a command that always hangs cannot grow memory).
//!
//! What leaves the group (`setsid`, a double fork) is caught on Linux by making the
//! watchdog a child subreaper while a command is configured: every orphan of the
//! command's process tree is re-parented to the watchdog instead of init, and the loop
//! kills (SIGKILL) and reaps every child it did not start itself, without blocking. This
//! works the same under every init (systemd's cgroup only ends them when the unit stops).

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::log;
use crate::state::Phase;

/// More changes than this waiting means the command hangs at every run: the oldest
/// waiting change is dropped (and said so).
const MAX_QUEUED: usize = 64;

/// When the watchdog exits, the running command and the latest waiting change share this
/// much time, whatever `--on-change-timeout` says: stopping or restarting the tunnel
/// must not wait on a command (init holds the respawn, systemd SIGKILLs at
/// TimeoutStopSec=).
pub const EXIT_BOUND: Duration = Duration::from_secs(3);

struct Change {
    old: Phase,
    new: Phase,
    reason: String,
}

struct Run {
    child: Child,
    started: Instant,
    old: Phase,
    new: Phase,
    /// SIGKILLed at its bound; reaped by a later poll.
    killed: bool,
}

pub(super) struct Hook {
    argv: Vec<String>,
    tunnel: String,
    timeout: Duration,
    queue: VecDeque<Change>,
    running: Option<Run>,
    /// A run ended (or ssh was replaced): children we did not start may be ours now,
    /// to kill and reap at each poll until none is left.
    sweeping: bool,
    /// Leftovers already killed and logged, not yet reaped (logged once each).
    signalled: Vec<u32>,
}

impl Hook {
    pub(super) fn new(argv: Vec<String>, tunnel: String, timeout: Duration) -> Hook {
        if !argv.is_empty() {
            become_subreaper();
        }
        Hook {
            argv,
            tunnel,
            timeout,
            queue: VecDeque::new(),
            running: None,
            sweeping: false,
            signalled: Vec::new(),
        }
    }

    /// Queues a run for a change from `old` to `new`; started by the next `poll`.
    pub(super) fn push(&mut self, old: Phase, new: Phase, reason: &str) {
        if self.argv.is_empty() {
            return;
        }
        // A change often follows ssh's exit, whose helpers (ProxyCommand) may now be ours.
        self.sweeping = true;
        if self.queue.len() >= MAX_QUEUED {
            let dropped = self.queue.pop_front();
            if let Some(c) = dropped {
                log::warn(format_args!(
                    "on-change: {MAX_QUEUED} changes waiting, not running it for {} -> {}",
                    c.old, c.new
                ));
            }
        }
        self.queue.push_back(Change {
            old,
            new,
            reason: reason.to_string(),
        });
    }

    /// Reaps a finished run, kills one past its bound, starts the next, and kills and
    /// reaps what runs left behind. Never blocks. `ssh`: the ssh child the caller still
    /// owns (and reaps itself).
    pub(super) fn poll(&mut self, ssh: Option<u32>) {
        self.step(None);
        if self.sweeping {
            self.sweep(ssh);
        }
    }

    /// One pass: `kill_at` overrides the run's own bound (the exit's shared bound).
    fn step(&mut self, kill_at: Option<Instant>) {
        // Bounded: each pass starts a run (and returns) or drops a change that could not start.
        while self.reap(kill_at) {
            let Some(change) = self.queue.pop_front() else {
                return;
            };
            let mut command = Command::new(&self.argv[0]);
            command
                .args(&self.argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .env("TUNNELCTL_TUNNEL", &self.tunnel)
                .env("TUNNELCTL_OLD_STATE", change.old.as_str())
                .env("TUNNELCTL_NEW_STATE", change.new.as_str())
                .env("TUNNELCTL_REASON", &change.reason)
                // Not for the hook: it must not talk to systemd as us.
                .env_remove("NOTIFY_SOCKET")
                .env_remove("WATCHDOG_USEC")
                .env_remove("WATCHDOG_PID")
                .process_group(0);
            match command.spawn() {
                Ok(child) => {
                    self.running = Some(Run {
                        child,
                        started: Instant::now(),
                        old: change.old,
                        new: change.new,
                        killed: false,
                    });
                    return;
                }
                Err(e) => log::warn(format_args!(
                    "on-change: cannot run {} for {} -> {}: {e}",
                    self.argv[0], change.old, change.new
                )),
            }
        }
    }

    /// `true` when nothing runs (any more).
    fn reap(&mut self, kill_at: Option<Instant>) -> bool {
        let Some(run) = &mut self.running else {
            return true;
        };
        let what = format!("on-change {} for {} -> {}", self.argv[0], run.old, run.new);
        let group = Pid::from_raw(run.child.id() as i32);
        // Looked at without reaping: while the run is an unreaped zombie its pid (the
        // group's id) cannot be reused, so the group kill below reaches only its group.
        if !exited(group) {
            let bound = kill_at.unwrap_or(run.started + self.timeout);
            if run.killed || Instant::now() < bound {
                return false;
            }
            let _ = killpg(group, Signal::SIGKILL);
            run.killed = true;
            log::warn(format_args!(
                "{what} still ran after {}: killed (its process group)",
                crate::duration::format_human(run.started.elapsed())
            ));
            return false;
        }
        // What it started in the background (`sleep &`) goes with it.
        let _ = killpg(group, Signal::SIGKILL);
        match run.child.try_wait() {
            Ok(Some(status)) if status.success() || run.killed => {}
            Ok(Some(status)) => log::warn(format_args!("{what} failed: {status}")),
            Ok(None) => return false,
            Err(e) => log::warn(format_args!("{what}: {e}")),
        }
        self.running = None;
        self.sweeping = true;
        true
    }

    /// Kills and reaps every child of ours that we did not start (the running command
    /// and `ssh` aside): orphans re-parented to us as subreaper. A killed one is reaped
    /// by a later poll (its SIGCHLD wakes the loop); sweeping stops once a pass finds
    /// nothing to kill or reap.
    fn sweep(&mut self, ssh: Option<u32>) {
        let running = self.running.as_ref().map(|r| r.child.id());
        let adopted: Vec<(u32, bool)> = children()
            .into_iter()
            .filter(|(pid, _)| Some(*pid) != ssh && Some(*pid) != running)
            .collect();
        let mut killed = Vec::new();
        let mut reaped = false;
        for &(pid, zombie) in &adopted {
            let pid = Pid::from_raw(pid as i32);
            if zombie {
                let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                reaped = true;
            } else if nix::sys::signal::kill(pid, Signal::SIGKILL).is_ok() {
                killed.push(pid.as_raw() as u32);
            }
        }
        let new: Vec<String> = killed
            .iter()
            .filter(|p| !self.signalled.contains(p))
            .map(u32::to_string)
            .collect();
        if !new.is_empty() {
            log::warn(format_args!(
                "on-change: killed what {} left running after it exited (pid {})",
                self.argv[0],
                new.join(", ")
            ));
        }
        // Only while there is progress: one we cannot kill (a setuid program) must not
        // keep the loop waking; its exit is reaped at the next sweep.
        self.sweeping = reaped || !killed.is_empty();
        self.signalled = killed;
    }

    /// When the running command must be killed (the loop's sleep ends by then); while
    /// leftovers are being swept, soon, in case their SIGCHLD came before we looked.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let run = self.running.as_ref().map(|r| r.started + self.timeout);
        let sweep = self
            .sweeping
            .then(|| Instant::now() + Duration::from_millis(100));
        run.into_iter().chain(sweep).min()
    }

    /// Before the watchdog exits: the running command and the latest waiting change (the
    /// others are skipped, said so) share [`EXIT_BOUND`]; whatever still runs then is
    /// killed, and what the runs left behind is killed and reaped.
    pub(super) fn finish(&mut self) {
        if self.argv.is_empty() {
            return;
        }
        if self.queue.len() > 1 {
            let skipped = self.queue.len() - 1;
            let first_old = self.queue.front().map(|c| c.old);
            let mut latest = self.queue.pop_back().expect("more than one");
            latest.old = first_old.unwrap_or(latest.old);
            self.queue.clear();
            self.queue.push_back(latest);
            log::warn(format_args!(
                "on-change: stopping; {skipped} waiting change(s) not reported, only the latest"
            ));
        }
        let end = Instant::now() + EXIT_BOUND.min(self.timeout.max(Duration::from_millis(100)));
        // Bounded by `end`, then by the reaping bound below.
        while Instant::now() < end && (self.running.is_some() || !self.queue.is_empty()) {
            self.step(Some(end));
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(c) = self.queue.pop_front() {
            log::warn(format_args!(
                "on-change: stopping; no time left to report {} -> {}",
                c.old, c.new
            ));
        }
        let reap_by = Instant::now() + Duration::from_millis(500);
        loop {
            self.step(Some(Instant::now()));
            self.sweep(None);
            if (self.running.is_none() && !self.sweeping) || Instant::now() >= reap_by {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether `pid`, a child of ours, has exited; it stays unreaped.
#[cfg(target_os = "linux")]
fn exited(pid: Pid) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => false,
        // ECHILD: reaped already (or never ours): nothing is left to wait for.
        Ok(_) | Err(_) => true,
    }
}

/// Whether `pid`, a child of ours, has exited; it stays unreaped (nix has no waitid here).
#[cfg(not(target_os = "linux"))]
fn exited(pid: Pid) -> bool {
    use nix::libc;
    // SAFETY: an all-zero siginfo_t is valid; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call on our own child, with a valid out-pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid.as_raw() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // Still running: 0 and no pid filled in. ECHILD: nothing left to wait for.
    r != 0 || info.si_pid != 0
}

/// Orphans of a command's process tree come to us rather than to init (Linux).
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn(format_args!(
            "on-change: cannot become a child subreaper ({e}); what a command starts with setsid may outlive it"
        ));
    }
}

/// Our children: pid and whether it is a zombie.
fn children() -> Vec<(u32, bool)> {
    #[cfg(target_os = "linux")]
    return crate::procinfo::children(std::process::id());
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}
