//! The busybox target on real BusyBox init (PID 1 of a private pid + mount namespace):
//! the `::respawn:` line `tunnelctl install --target busybox` wrote brings the tunnel
//! up, a killed watchdog is respawned, a frozen ssh replaced; and while the server is
//! down the watchdog's back-off, not BusyBox (which has no rate limit and respawns
//! after about 1 s), paces the ssh attempts.

use crate::common;

use std::time::{Duration, Instant};

use common::inittab_init::Flavor;
use common::inittab_tunnel::InittabTunnel;
use common::supervised::Supervised;
use common::tunnel_env::Timing;

#[test]
fn busybox_init_respawns_the_watchdog_and_backs_off_while_the_server_is_down() {
    // Back-off 1 s doubling to 4 s.
    let test = "busybox_init_respawns_the_watchdog_and_backs_off_while_the_server_is_down";
    let Some(mut t) = InittabTunnel::up(test, Flavor::Busybox, &Timing::default()) else {
        return;
    };
    let watchdog2 = t.kill_watchdog();
    t.freeze_ssh(watchdog2);
    check_the_watchdog_backs_off_while_the_server_is_down(&mut t);

    // The server returns: the tunnel is back within one back-off period.
    let took = t.server_returns(Duration::from_secs(20), "the server returned");
    eprintln!("busybox: server back -> tunnel carrying data after {took:?}");
    t.tear_down(&[]);
}

/// The server dies. Counts ssh starts (the watchdog logs each attempt) for 20 s. Without
/// back-off BusyBox would start one every ~1 s (20 in the window). With it, a server that
/// does not greet gets no ssh until it does, except once per backoff-max (4 s here) in
/// case the check is blind: at most 8 in 20 s.
fn check_the_watchdog_backs_off_while_the_server_is_down(t: &mut InittabTunnel) {
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
}
