//! The inittab target on the real SysV init (Debian's sysvinit-core `/sbin/init`,
//! unpacked, never installed) as PID 1 of a private pid + mount namespace: the entry
//! `tunnelctl install --target inittab` wrote brings the tunnel up, init respawns a
//! killed watchdog, a frozen ssh is replaced, and the watchdog's back-off keeps ten
//! failures in a row from tripping init's "respawning too fast" (10 spawns in 120 s).

use crate::common;

use std::time::{Duration, Instant};

use common::inittab_init::Flavor;
use common::prereq::{Prereq, require};
use common::target::TcpTarget;
use common::tunnel_env::{
    InittabTunnel, Timing, alive, sigkill, sigstop, wait_roundtrip, wait_ssh_child,
};
use common::wait_until;

const PREREQS: &[Prereq] = &[Prereq::Root, Prereq::Unshare, Prereq::AptGet, Prereq::Sshd];

#[test]
fn sysv_init_respawns_the_watchdog_and_the_tunnel_comes_back() {
    let test = "sysv_init_respawns_the_watchdog_and_the_tunnel_comes_back";
    if !require(test, PREREQS) {
        return;
    }
    let started = Instant::now();
    let Some(t) = InittabTunnel::start(test, Flavor::Sysv, &Timing::default()) else {
        return;
    };
    wait_roundtrip(t.lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel never came up: {e}\n{}", t.report()));
    eprintln!(
        "sysv: init start -> tunnel carrying data after {:?}",
        started.elapsed()
    );

    // 1. Kill the watchdog: init respawns it; the new one removes the orphaned ssh
    //    (which still holds the forward's port) and the tunnel comes back.
    let watchdog = t.wait_watchdog(None, Duration::from_secs(5));
    let ssh = wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh");
    sigkill(watchdog);
    let killed = Instant::now();
    let watchdog2 = t.wait_watchdog(Some(watchdog), Duration::from_secs(10));
    // The orphaned ssh keeps forwarding until the new watchdog kills it: only data that
    // goes through the new ssh counts.
    assert!(
        wait_until(Duration::from_secs(10), || !alive(ssh)),
        "the orphaned ssh {ssh} is still running\n{}",
        t.report()
    );
    let new_ssh =
        wait_ssh_child(watchdog2, Duration::from_secs(10)).expect("the new watchdog runs no ssh");
    let working = wait_roundtrip(t.lport, Duration::from_secs(30)).unwrap_or_else(|e| {
        panic!(
            "tunnel not back after the watchdog was killed: {e}\n{}",
            t.report()
        )
    });
    assert!(alive(new_ssh));
    eprintln!(
        "sysv: watchdog killed -> tunnel carrying data through a new ssh after {:?}",
        working - killed
    );

    // 2. Freeze the ssh client: the watchdog notices, exits 1, init respawns it.
    let ssh2 =
        wait_ssh_child(watchdog2, Duration::from_secs(5)).expect("the new watchdog runs no ssh");
    sigstop(ssh2);
    let frozen = Instant::now();
    let watchdog3 = t.wait_watchdog(Some(watchdog2), Duration::from_secs(20));
    let working = wait_roundtrip(t.lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel not back after the ssh freeze: {e}\n{}", t.report()));
    eprintln!(
        "sysv: ssh frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(ssh2)),
        "the frozen ssh {ssh2} is still there\n{}",
        t.report()
    );
    assert!(alive(watchdog3));
    assert!(
        !t.init.console().contains("respawning too fast"),
        "{}",
        t.report()
    );
    let init_pid = t.init.pid();
    drop(t);
    // SIGKILL to PID 1 took the namespace with it.
    for pid in [init_pid, watchdog3] {
        assert!(!alive(pid), "{pid} survived the teardown");
    }
}

/// SysV init disables an entry spawned 10 times within 120 s. With a server that greets
/// and then drops every connection, the watchdog fails at once (a server that does not
/// greet at all is waited for inside one watchdog instead), but every new instance first
/// waits out its persisted back-off, so ten failures in a row spread over more than
/// 120 s. Back-off here: 500 ms doubling to 32 s (±15 % jitter): the 11th spawn comes
/// after ≥ 135 s.
#[test]
fn sysv_ten_failures_in_a_row_do_not_disable_the_entry() {
    let test = "sysv_ten_failures_in_a_row_do_not_disable_the_entry";
    if !require(test, PREREQS) {
        return;
    }
    let timing = Timing {
        backoff_initial: "500ms",
        backoff_max: "32s",
        ..Timing::default()
    };
    let Some(mut t) = InittabTunnel::start(test, Flavor::Sysv, &timing) else {
        return;
    };
    wait_roundtrip(t.lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel never came up: {e}\n{}", t.report()));
    let mut seen = vec![t.wait_watchdog(None, Duration::from_secs(5))];

    // The server breaks: every connection is greeted, then dropped.
    t.sshd.stop();
    let greeter = TcpTarget::greet_and_hang_up(t.sshd.port());
    let down = Instant::now();
    // Ten failures = ten more watchdog spawns; then one more proves the entry lives on.
    let mut spawned_at = Vec::new();
    let deadline = down + Duration::from_secs(240);
    while spawned_at.len() < 10 {
        assert!(
            Instant::now() < deadline,
            "only {} respawns in 240 s\n{}",
            spawned_at.len(),
            t.report()
        );
        assert!(
            !t.init.console().contains("respawning too fast"),
            "entry disabled after {} respawns\n{}",
            spawned_at.len(),
            t.report()
        );
        if let Some(&pid) = t.watchdogs().iter().find(|p| !seen.contains(p)) {
            seen.push(pid);
            spawned_at.push(down.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("sysv: watchdog spawns after the server died at {spawned_at:?}");
    // The server returns; the 11th spawn (after the 10th failure) must bring the tunnel back.
    drop(greeter);
    t.sshd.start();
    let back = Instant::now();
    let working = wait_roundtrip(t.lport, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("tunnel not back after ten failures: {e}\n{}", t.report()));
    eprintln!(
        "sysv: server back -> tunnel carrying data after {:?} (back-off at its 32 s max)",
        working - back
    );
    let console = t.init.console();
    assert!(
        !console.contains("respawning too fast"),
        "SysV init disabled the entry:\n{}",
        t.report()
    );
    // The first ten spawns in any 120 s window must be fewer than SysV's limit.
    let first_window = spawned_at
        .iter()
        .filter(|d| **d < Duration::from_secs(120))
        .count();
    assert!(
        first_window < 10,
        "{first_window} spawns within 120 s: {spawned_at:?}"
    );
    // And the spawns follow the back-off: gaps grow (allowing for jitter and polling).
    let gaps: Vec<Duration> = spawned_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().skip(4).all(|g| *g >= Duration::from_secs(6)),
        "no back-off between spawns: {gaps:?}"
    );
}
