//! The busybox target on real BusyBox init (PID 1 of a private pid + mount namespace):
//! the `::respawn:` line `tunnelctl install --target busybox` wrote brings the tunnel
//! up, a killed watchdog is respawned, a frozen ssh replaced; and while the server is
//! down the watchdog's back-off, not BusyBox (which has no rate limit and respawns
//! after about 1 s), paces the ssh attempts.

use crate::common;

use std::time::{Duration, Instant};

use common::inittab_init::Flavor;
use common::prereq::{Prereq, require};
use common::tunnel_env::{
    InittabTunnel, Timing, alive, sigkill, sigstop, wait_roundtrip, wait_ssh_child,
};
use common::wait_until;

const PREREQS: &[Prereq] = &[Prereq::Root, Prereq::Unshare, Prereq::Busybox, Prereq::Sshd];

#[test]
fn busybox_init_respawns_the_watchdog_and_backs_off_while_the_server_is_down() {
    let test = "busybox_init_respawns_the_watchdog_and_backs_off_while_the_server_is_down";
    if !require(test, PREREQS) {
        return;
    }
    let started = Instant::now();
    // Back-off 1 s doubling to 4 s.
    let Some(mut t) = InittabTunnel::start(test, Flavor::Busybox, &Timing::default()) else {
        return;
    };
    wait_roundtrip(t.lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel never came up: {e}\n{}", t.report()));
    eprintln!(
        "busybox: init start -> tunnel carrying data after {:?}",
        started.elapsed()
    );

    // 1. Kill the watchdog.
    let watchdog = t.wait_watchdog(None, Duration::from_secs(5));
    let ssh = wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh");
    sigkill(watchdog);
    let killed = Instant::now();
    let watchdog2 = t.wait_watchdog(Some(watchdog), Duration::from_secs(10));
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
        "busybox: watchdog killed -> tunnel carrying data through a new ssh after {:?}",
        working - killed
    );

    // 2. Freeze the ssh client.
    sigstop(new_ssh);
    let frozen = Instant::now();
    let watchdog3 = t.wait_watchdog(Some(watchdog2), Duration::from_secs(20));
    let working = wait_roundtrip(t.lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel not back after the ssh freeze: {e}\n{}", t.report()));
    eprintln!(
        "busybox: ssh frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(new_ssh)),
        "the frozen ssh is still there\n{}",
        t.report()
    );
    assert!(alive(watchdog3));

    // 3. The server dies. Count ssh starts (the watchdog logs each attempt) for 20 s.
    let attempts_before = t.log().matches("connecting (attempt").count();
    t.sshd.stop();
    let window = Duration::from_secs(20);
    let down = Instant::now();
    let mut starts: Vec<Duration> = Vec::new();
    let mut counted = attempts_before;
    while down.elapsed() < window {
        let now = t.log().matches("connecting (attempt").count();
        for _ in counted..now {
            starts.push(down.elapsed());
        }
        counted = now;
        std::thread::sleep(Duration::from_millis(25));
    }
    eprintln!("busybox: ssh starts in the {window:?} the server was down: {starts:?}");
    // Without back-off BusyBox would start one every ~1 s (20 in the window). With it,
    // a server that does not greet gets no ssh until it does, except once per
    // backoff-max (4 s here) in case the check is blind: at most 8 in 20 s.
    assert!(
        starts.len() >= 3,
        "the watchdog stopped trying: {starts:?}\n{}",
        t.report()
    );
    assert!(
        starts.len() <= 8,
        "{} ssh starts in {window:?}: not backing off\n{}",
        starts.len(),
        t.report()
    );
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .skip(2)
            .all(|g| *g >= Duration::from_millis(3000)),
        "gaps between ssh starts do not follow the 4 s back-off cap: {gaps:?}"
    );

    // 4. The server returns: the tunnel is back within one back-off period.
    t.sshd.start();
    let back = Instant::now();
    let working = wait_roundtrip(t.lport, Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "tunnel not back after the server returned: {e}\n{}",
            t.report()
        )
    });
    eprintln!(
        "busybox: server back -> tunnel carrying data after {:?}",
        working - back
    );
    let (init_pid, last) = (t.init.pid(), t.watchdogs());
    drop(t);
    // SIGKILL to PID 1 took the namespace with it.
    for pid in last.into_iter().chain([init_pid]) {
        assert!(!alive(pid), "{pid} survived the teardown");
    }
}
