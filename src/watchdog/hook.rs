//! The `--on-change` command: run on every change of the tunnel's state, one at a time,
//! in order, each bounded in time. Driven from the main loop (`poll` after every wake-up:
//! SIGCHLD lands on the signal self-pipe), so it never blocks a probe round or a
//! notification: the loop only spawns, reaps and kills.
//!
//! The command gets `TUNNELCTL_TUNNEL`, `TUNNELCTL_OLD_STATE`, `TUNNELCTL_NEW_STATE` and
//! `TUNNELCTL_REASON` in its environment, no stdin/stdout/stderr, and its own process
//! group, killed (SIGKILL) when it outlives its bound. Changes that happen while one
//! runs wait in a queue (bounded: a command that always hangs cannot grow memory).

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

struct Change {
    old: Phase,
    new: Phase,
    reason: String,
}

pub(super) struct Hook {
    argv: Vec<String>,
    tunnel: String,
    timeout: Duration,
    queue: VecDeque<Change>,
    running: Option<(Child, Instant, Phase, Phase)>,
}

impl Hook {
    pub(super) fn new(argv: Vec<String>, tunnel: String, timeout: Duration) -> Hook {
        Hook {
            argv,
            tunnel,
            timeout,
            queue: VecDeque::new(),
            running: None,
        }
    }

    /// Queues a run for a change from `old` to `new`; started by the next `poll`.
    pub(super) fn push(&mut self, old: Phase, new: Phase, reason: &str) {
        if self.argv.is_empty() {
            return;
        }
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

    /// Reaps a finished run, kills one past its bound, starts the next. Never blocks
    /// (beyond reaping a child just killed with SIGKILL).
    pub(super) fn poll(&mut self) {
        // Bounded: each pass starts a run (and returns) or drops a change that could not start.
        while self.reap() {
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
                    self.running = Some((child, Instant::now(), change.old, change.new));
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
    fn reap(&mut self) -> bool {
        let Some((child, started, old, new)) = &mut self.running else {
            return true;
        };
        let what = format!("on-change {} for {old} -> {new}", self.argv[0]);
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {}
            Ok(Some(status)) => log::warn(format_args!("{what} failed: {status}")),
            Ok(None) if started.elapsed() >= self.timeout => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                log::warn(format_args!(
                    "{what} still ran after {}: killed (its process group)",
                    crate::duration::format_human(self.timeout)
                ));
            }
            Ok(None) => return false,
            Err(e) => log::warn(format_args!("{what}: {e}")),
        }
        self.running = None;
        true
    }

    /// When the running command must be killed (the loop's sleep ends by then).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.running
            .as_ref()
            .map(|(_, started, ..)| *started + self.timeout)
    }

    /// Before the watchdog exits: every waiting change still gets its run, each within
    /// its bound, so "failed" and "stopped" are told too.
    pub(super) fn finish(&mut self) {
        let runs = self.queue.len() as u32 + 1;
        let end = Instant::now() + self.timeout.saturating_mul(runs) + Duration::from_secs(1);
        // Bounded by `end`: every run is killed at its own bound.
        while Instant::now() < end {
            self.poll();
            if self.running.is_none() && self.queue.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
