//! The checks the two systemd tunnel tests share, whichever manager runs the unit: a
//! private `systemd --user` ([`super::user_unit`]) or the system manager of a container
//! ([`super::system_unit`]). Each says how to reach its manager and the tunnel (a
//! [`Manager`]); [`SystemdTunnel`] does the checking: fresh start, `tunnelctl
//! status`/`reconnect`, and the tunnel back after a frozen watchdog (after a frozen ssh:
//! [`Supervised::freeze_ssh`]).

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use super::commands::out_text;
use super::supervised::Supervised;
use super::tunnel_env::{alive, sigstop, wait_ssh_child};
use super::wait_until;

/// The tunnel both tests install, and its unit.
pub const NAME: &str = "itest";
pub const UNIT: &str = "tunnel-itest.service";
/// What `systemctl show` reports about the unit in failure messages and restart checks.
pub const PROPS: &[&str] = &[
    "ActiveState",
    "SubState",
    "StatusText",
    "NRestarts",
    "MainPID",
    "Result",
];

pub type Props = BTreeMap<String, String>;

/// How the checks reach one manager and the tunnel it runs.
pub trait Manager {
    /// tunnelctl's `--target`, also the label of progress lines: `systemd`, `systemd-user`.
    fn target(&self) -> &'static str;
    /// `systemctl show -p PROPS UNIT` from this manager.
    fn show(&self, props: &[&str]) -> Props;
    /// `tunnelctl ARGS` where the unit's user would run it (bounded).
    fn tunnelctl(&self, args: &[&str]) -> Output;
    /// The unit's main process, the watchdog, as a host pid.
    fn main_pid(&self) -> i32;
    /// Whether the MainPID in `props` may be the process that replaced `old_main` (where
    /// it is not a host pid, [`SystemdTunnel::wait_restarted`] checks after the wait).
    fn may_be_new_main(&self, props: &Props, old_main: i32) -> bool;
    /// [`super::tunnel_env::wait_roundtrip`] through the tunnel's local port, from where
    /// that port is reachable.
    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String>;
    /// The unit's log (the manager's output or the journal), for failure messages.
    fn unit_log(&self) -> String;
}

/// The tunnel `NAME` installed as `UNIT` and started under the manager `M`.
pub struct SystemdTunnel<M>(pub M);

impl<M: Manager> Supervised for SystemdTunnel<M> {
    fn label(&self) -> &'static str {
        self.0.target()
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        self.0.wait_roundtrip(timeout)
    }

    fn report(&self) -> String {
        self.0.unit_log()
    }

    /// The first restart.
    fn wait_replaced(&self, old: i32) -> i32 {
        self.wait_restarted(0, old, Duration::from_secs(30))
    }
}

impl<M: Manager> SystemdTunnel<M> {
    fn target(&self) -> &'static str {
        self.0.target()
    }

    fn show(&self, props: &[&str]) -> Props {
        self.0.show(props)
    }

    /// See [`Manager::tunnelctl`].
    pub fn tunnelctl(&self, args: &[&str]) -> Output {
        self.0.tunnelctl(args)
    }

    /// See [`Manager::main_pid`].
    pub fn main_pid(&self) -> i32 {
        self.0.main_pid()
    }

    /// Just started (Type=notify: READY=1 came): active, running, never restarted, a
    /// STATUS= from the watchdog, and the forward proven, so data goes through at once.
    pub fn expect_freshly_started(&self) {
        let props = self.show(PROPS);
        assert_eq!(
            props["ActiveState"],
            "active",
            "{props:?}\n{}",
            self.report()
        );
        assert_eq!(props["SubState"], "running", "{props:?}");
        assert_eq!(props["NRestarts"], "0", "{props:?}");
        assert!(
            !props["StatusText"].is_empty(),
            "no STATUS= from the watchdog: {props:?}"
        );
        self.expect_roundtrip("right after READY=1");
    }

    /// `tunnelctl status NAME` succeeds with the tunnel's row saying `up`.
    pub fn expect_status_up(&self) {
        let out = self.tunnelctl(&["status", NAME, "--target", self.target()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "status of an up unit: {}\n{}",
            out_text(&out),
            self.report()
        );
        let row = format!("{NAME}  {}  up ", self.target());
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(&row)),
            "{}",
            out_text(&out)
        );
    }

    /// `tunnelctl status NAME --json`: its one tunnel.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.tunnelctl(&["status", NAME, "--target", self.target(), "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", out_text(&out)));
        doc["tunnels"][0].clone()
    }

    /// `tunnelctl reconnect NAME`: the watchdog `watchdog` replaces its ssh by itself
    /// (against `before`, the status JSON from before: a new ssh pid, one restart more in
    /// its state) and systemd restarts nothing. Returns the status JSON after.
    pub fn reconnect(&self, before: &serde_json::Value, watchdog: i32) -> serde_json::Value {
        let (ssh_before, restarts_before) = (
            before["ssh_pid"].as_u64().unwrap(),
            before["restarts"].as_u64().unwrap(),
        );
        let out = self.tunnelctl(&["reconnect", NAME, "--target", self.target()]);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("asked systemd to send SIGUSR1"),
            "{}",
            out_text(&out)
        );
        let mut after = serde_json::Value::Null;
        assert!(
            wait_until(Duration::from_secs(30), || {
                after = self.status_json();
                after["state"] == "up"
                    && after["ssh_pid"].as_u64().is_some_and(|p| p != ssh_before)
                    && after["restarts"].as_u64() == Some(restarts_before + 1)
            }),
            "no reconnect after `tunnelctl reconnect`: before {before}\nafter {after}\n{}",
            self.report()
        );
        assert_eq!(self.show(&["NRestarts"])["NRestarts"], "0");
        assert_eq!(self.main_pid(), watchdog, "systemd restarted the unit");
        after
    }

    /// Waits until the unit was restarted past `restarts` and runs a main process other
    /// than `old_main`; returns it.
    pub fn wait_restarted(&self, restarts: u32, old_main: i32, timeout: Duration) -> i32 {
        let mut props = Default::default();
        let ok = wait_until(timeout, || {
            props = self.show(PROPS);
            let n: u32 = props["NRestarts"].parse().unwrap_or(0);
            n > restarts
                && props["ActiveState"] == "active"
                && props["SubState"] == "running"
                && self.0.may_be_new_main(&props, old_main)
        });
        assert!(
            ok,
            "{UNIT} not restarted within {timeout:?}: {props:?}\n{}",
            self.report()
        );
        let main = self.main_pid();
        assert_ne!(main, old_main);
        main
    }

    /// Freezes the watchdog itself (after one restart): only systemd's WatchdogSec can
    /// notice. A stopped process cannot exit by itself: only systemd's watchdog timer
    /// (SIGABRT, then SIGCONT) ends it, and not before WatchdogSec has passed. The tunnel
    /// comes back, the frozen watchdog and its ssh are gone. Returns the new watchdog.
    pub fn freeze_watchdog(&self, watchdog: i32) -> i32 {
        let ssh =
            wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the new watchdog runs no ssh");
        sigstop(watchdog);
        let frozen = Instant::now();
        let watchdog2 = self.wait_restarted(1, watchdog, Duration::from_secs(40));
        let restarted_after = frozen.elapsed();
        let working = self.wait_back(Duration::from_secs(30), "the watchdog freeze");
        eprintln!(
            "{}: watchdog frozen -> tunnel carrying data again after {:?}",
            self.label(),
            working - frozen
        );
        let shown = self.show(&["WatchdogUSec"])["WatchdogUSec"].clone();
        let limit = tunnelctl::duration::parse_duration(&shown)
            .unwrap_or_else(|e| panic!("WatchdogUSec={shown}: {e}"));
        assert!(!limit.is_zero(), "the rendered unit has no WatchdogSec");
        assert!(
            restarted_after + Duration::from_millis(300) >= limit,
            "restarted after {restarted_after:?}, before WatchdogSec={limit:?} could have fired"
        );
        assert!(
            wait_until(Duration::from_secs(5), || !alive(watchdog) && !alive(ssh)),
            "frozen watchdog or its ssh left behind"
        );
        assert!(alive(watchdog2));
        watchdog2
    }
}
