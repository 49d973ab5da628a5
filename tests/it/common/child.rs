//! Child processes a test started: stopped and reaped when the test ends (also by a
//! panic), always by their own pid, waited for with a bound, and checked for success.

use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::wait_until;

/// A child killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child in a process group of its own: on drop the whole group is SIGKILLed (what
/// the child started goes too: `tail -F` under `logs -f`, a hook's `sleep`, an ssh) and
/// the child reaped.
pub struct GroupKillOnDrop(pub Child);

impl GroupKillOnDrop {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> GroupKillOnDrop {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        GroupKillOnDrop(child)
    }

    /// The process group (the child's pid).
    pub fn pgid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for GroupKillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(self.pgid()), Signal::SIGKILL);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child asked to stop (SIGTERM) on drop, killed if it is still there 5 s later, and
/// reaped.
pub struct StopOnDrop(pub Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// SIGTERM, up to 5 s for the child to exit, then SIGKILL; reaps it either way.
pub fn stop(child: &mut Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    if !wait_until(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    }) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Waits (bounded) for the child's exit code (-1 for a death by signal); `None` if it
/// still runs after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let mut code = None;
    wait_until(timeout, || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code
}
