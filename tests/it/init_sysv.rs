//! The inittab target on the real SysV init (Debian's sysvinit-core `/sbin/init`,
//! unpacked, never installed) as PID 1 of a private pid + mount namespace: the entry
//! `tunnelctl install --target inittab` wrote brings the tunnel up, init respawns a
//! killed watchdog, a frozen ssh is replaced, and the watchdog's back-off keeps ten
//! failures in a row from tripping init's "respawning too fast" (10 spawns in 120 s).

use crate::common;

use std::time::{Duration, Instant};

use common::inittab_init::Flavor;
use common::inittab_tunnel::InittabTunnel;
use common::supervised::Supervised;
use common::target::TcpTarget;
use common::tunnel_env::Timing;

#[test]
fn sysv_init_respawns_the_watchdog_and_the_tunnel_comes_back() {
    let test = "sysv_init_respawns_the_watchdog_and_the_tunnel_comes_back";
    let Some(t) = InittabTunnel::up(test, Flavor::Sysv, &Timing::default()) else {
        return;
    };
    let watchdog2 = t.kill_watchdog();
    let watchdog3 = t.freeze_ssh(watchdog2);
    assert!(
        !t.init.console().contains("respawning too fast"),
        "{}",
        t.report()
    );
    t.tear_down(&[watchdog3]);
}

/// SysV init disables an entry spawned 10 times within 120 s. With a server that greets
/// and then drops every connection, the watchdog fails at once (a server that does not
/// greet at all is waited for inside one watchdog instead), but every new instance first
/// waits out its persisted back-off, so ten failures in a row spread over more than
/// 120 s. Back-off here: 500 ms doubling to 45 s, ±15 % jitter, the first retry free
/// (the tunnel was proven): the nine waits between the first and the tenth respawn are
/// 0.5 + 1 + 2 + … + 32 + 45 + 45 = 153.5 s, at least 130.5 s with the jitter. (With a
/// 32 s maximum they could sum to 108 s, and SysV init disabled the entry once.)
#[test]
fn sysv_ten_failures_in_a_row_do_not_disable_the_entry() {
    let timing = Timing {
        backoff_initial: "500ms",
        backoff_max: "45s",
        ..Timing::default()
    };
    let test = "sysv_ten_failures_in_a_row_do_not_disable_the_entry";
    let Some(mut t) = InittabTunnel::up(test, Flavor::Sysv, &timing) else {
        return;
    };
    let first = t.wait_watchdog(None, Duration::from_secs(5));
    let spawned_at = ten_respawns_while_the_server_hangs_up(&mut t, first);
    // The server returns; the 11th spawn (after the 10th failure) must bring the tunnel back.
    let took = t.server_returns(Duration::from_secs(75), "ten failures");
    eprintln!(
        "sysv: server back -> tunnel carrying data after {took:?} (back-off at its 45 s max)"
    );
    let console = t.init.console();
    assert!(
        !console.contains("respawning too fast"),
        "SysV init disabled the entry:\n{}",
        t.report()
    );
    check_the_spawns_follow_the_back_off(&spawned_at);
}

/// The server breaks: every connection is greeted, then dropped. Ten failures = ten more
/// watchdog spawns after `first` (then one more proves the entry lives on), each while
/// init has not disabled the entry: when each came, after the server broke.
fn ten_respawns_while_the_server_hangs_up(t: &mut InittabTunnel, first: i32) -> Vec<Duration> {
    let mut seen = vec![first];
    t.sshd.stop();
    let _greeter = TcpTarget::greet_and_hang_up(t.sshd.port());
    let down = Instant::now();
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
    spawned_at
}

/// The first ten spawns in any 120 s window must be fewer than SysV's limit, and the
/// spawns follow the back-off: gaps grow (allowing for jitter and polling).
fn check_the_spawns_follow_the_back_off(spawned_at: &[Duration]) {
    let first_window = spawned_at
        .iter()
        .filter(|d| **d < Duration::from_secs(120))
        .count();
    assert!(
        first_window < 10,
        "{first_window} spawns within 120 s: {spawned_at:?}"
    );
    let gaps: Vec<Duration> = spawned_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().skip(4).all(|g| *g >= Duration::from_secs(6)),
        "no back-off between spawns: {gaps:?}"
    );
}
