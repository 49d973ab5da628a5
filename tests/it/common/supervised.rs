//! What every real-init tunnel test checks the same way, whichever init supervises the
//! watchdog (SysV init, BusyBox init, `systemd --user`, a container's systemd): data
//! through the tunnel, and the tunnel back after its ssh client froze.

use std::time::{Duration, Instant};

use super::tunnel_env::{alive, sigstop, wait_ssh_child};
use super::wait_until;

/// A tunnel whose watchdog an init system runs and restarts.
pub trait Supervised {
    /// The prefix of progress lines: `sysv`, `busybox`, `systemd-user`, `systemd`.
    fn label(&self) -> &'static str;
    /// [`super::tunnel_env::wait_roundtrip`] through the tunnel's local port, from where
    /// that port is reachable.
    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String>;
    /// Everything useful when a check fails.
    fn report(&self) -> String;
    /// Waits (bounded) for the watchdog the init runs in place of `old`, whose ssh froze.
    fn wait_replaced(&self, old: i32) -> i32;

    /// Data goes through the tunnel now (one try); panics naming `when`.
    fn expect_roundtrip(&self, when: &str) {
        self.wait_roundtrip(Duration::ZERO)
            .unwrap_or_else(|e| panic!("tunnel not carrying data {when}: {e}\n{}", self.report()));
    }

    /// When data went through again (bounded by `timeout`) after `what`.
    fn wait_back(&self, timeout: Duration, what: &str) -> Instant {
        self.wait_roundtrip(timeout)
            .unwrap_or_else(|e| panic!("tunnel not back after {what}: {e}\n{}", self.report()))
    }

    /// Freezes the ssh client of `watchdog`: its probes fail, it exits, the init starts a
    /// new one, the tunnel comes back and the frozen ssh is gone. Returns the new watchdog.
    fn freeze_ssh(&self, watchdog: i32) -> i32 {
        let ssh =
            wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh");
        sigstop(ssh);
        let frozen = Instant::now();
        let watchdog2 = self.wait_replaced(watchdog);
        let working = self.wait_back(Duration::from_secs(30), "the ssh freeze");
        eprintln!(
            "{}: ssh frozen -> tunnel carrying data again after {:?}",
            self.label(),
            working - frozen
        );
        assert!(
            wait_until(Duration::from_secs(5), || !alive(ssh)),
            "the frozen ssh {ssh} is still there\n{}",
            self.report()
        );
        assert!(alive(watchdog2));
        watchdog2
    }
}
