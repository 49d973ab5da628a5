//! The wait before (re)connecting: `min(initial·2^(n−1), max)` with ±15 % jitter, where
//! `n` is the persisted count of consecutive failures. A row of failures that began when
//! a *proven* tunnel failed (it had passed probes for at least [`proven_after`]) gets its
//! first retry free: `n` is then counted one lower, so the waits go 0, initial,
//! 2·initial, … A tunnel that flaps (fails before it is proven) never starts a new row,
//! so it keeps backing off. A server that turns a login away as busy is no failure: it
//! gets a short flat random wait ([`busy_retry`]), and the first attempt after a server
//! greets again is spread over a quarter of a second ([`first_attempt_spread`]). Pure, apart from
//! [`jitter_seed`].

use std::time::Duration;

/// The jitter is ±this fraction of the nominal wait, so tunnels that failed together do
/// not reconnect in lock-step.
pub const JITTER: f64 = 0.15;

/// The nominal wait (no jitter) after `failures` consecutive failures; 0 → no wait.
pub fn nominal(failures: u32, initial: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64.checked_shl(failures - 1).unwrap_or(u64::MAX).max(1);
    let nominal = initial
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .unwrap_or(max);
    nominal.min(max)
}

/// The wait with jitter; `unit` in [0, 1) picks where in the ±[`JITTER`] band it lands.
pub fn with_jitter(nominal: Duration, unit: f64) -> Duration {
    let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    nominal.mul_f64(factor)
}

/// The band of the wait before retrying a server that turned a login away as busy
/// (`SshError::ServerBusy`): flat, not exponential, and not a failure, since the server is
/// there. sshd frees a `MaxStartups` place once a login completes (a key exchange and a
/// publickey login take well under a second); a crowd spread over 2 s arrives a few at a
/// time instead of at once, and no watchdog waits much longer than autossh's immediate
/// retry. The 0.5 s floor keeps a proxy or load balancer that turns every connection away
/// from being hammered more than twice a second.
pub const BUSY_RETRY: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_millis(2500));

/// The wait before retrying a busy server; `unit` in [0, 1) picks where in
/// [`BUSY_RETRY`] it lands, uniformly (out of range: clamped to the band's edges).
pub fn busy_retry(unit: f64) -> Duration {
    let (low, high) = BUSY_RETRY;
    low + (high - low).mul_f64(unit.clamp(0.0, 1.0))
}

/// The widest wait between the server's greeting coming back and ssh starting.
pub const FIRST_ATTEMPT_SPREAD: Duration = Duration::from_millis(250);

/// The wait between the greeting check seeing the server again and ssh starting; `unit`
/// in [0, 1) picks it uniformly in [0, [`FIRST_ATTEMPT_SPREAD`]). Every watchdog of a
/// crowd sees the banner within the same second (they check once a second, each at its
/// own phase); spread over a quarter of a second more, they do not all open their key
/// exchange in the same millisecond. Longer would only delay (in the fault bench's
/// crowd, half a second made the first tunnels come up later and the last no sooner):
/// on one machine the login slots keep the crowd in line, and across machines a busy
/// server's short retry does.
pub fn first_attempt_spread(unit: f64) -> Duration {
    FIRST_ATTEMPT_SPREAD.mul_f64(unit.clamp(0.0, 1.0))
}

/// The wait before the next connect, given the persisted row of failures.
pub fn wait_before_connect(
    failures: u32,
    row_proven: bool,
    initial: Duration,
    max: Duration,
) -> Duration {
    nominal(failures.saturating_sub(u32::from(row_proven)), initial, max)
}

/// How long a connection must pass probes (first to last good round) to count as proven,
/// so that its failure earns a free retry: at least one probe interval (two good rounds)
/// and at least `initial`, so free retries never come faster than the first back-off.
pub fn proven_after(interval: Duration, initial: Duration) -> Duration {
    interval.max(initial)
}

/// The persisted row after a failed connection: `(consecutive_failures, row_proven)`.
/// `up_for`: from the first to the last good probe round of that connection (None: never
/// up). `permanent`: auth/host key errors, which wait the maximum and are never free.
pub fn after_failure(
    failures: u32,
    row_proven: bool,
    up_for: Option<Duration>,
    permanent: bool,
    proven_after: Duration,
    initial: Duration,
    max: Duration,
) -> (u32, bool) {
    if permanent {
        return (
            failures
                .saturating_add(1)
                .max(failures_for_max(initial, max)),
            false,
        );
    }
    // Up longer than max (the old reset rule) or proven: this failure starts a new row.
    if up_for.is_some_and(|d| d >= proven_after || d > max) {
        return (1, true);
    }
    (failures.saturating_add(1), row_proven)
}

/// The smallest failure count whose wait is the maximum: where permanent errors jump to.
pub fn failures_for_max(initial: Duration, max: Duration) -> u32 {
    (1..64)
        .find(|&n| nominal(n, initial, max) >= max)
        .unwrap_or(64)
}

/// A number in [0, 1) that differs between processes and runs (pid and clock), enough
/// to spread reconnects without a random-number crate.
pub fn jitter_seed() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    seed_from(nanos, std::process::id())
}

/// The seed of process `pid` at `nanos` since the epoch, in [0, 1): splitmix64 of
/// clock ⊕ pid, so two watchdogs started in the same instant still differ.
fn seed_from(nanos: u64, pid: u32) -> f64 {
    let mut z = nanos ^ (u64::from(pid) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_up_to_max() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let seq: Vec<u64> = (0..10).map(|n| nominal(n, i, m).as_secs()).collect();
        assert_eq!(seq, [0, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(nominal(1000, i, m), m);
        assert_eq!(failures_for_max(i, m), 9);
    }

    #[test]
    fn a_proven_tunnel_retries_at_once_then_backs_off_as_before() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let proven = proven_after(Duration::from_secs(5), i);
        assert_eq!(proven, Duration::from_secs(5));
        // Up for a minute, then the server goes away for a while.
        let mut row = after_failure(4, false, Some(Duration::from_secs(60)), false, proven, i, m);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(wait_before_connect(row.0, row.1, i, m).as_secs());
            row = after_failure(row.0, row.1, None, false, proven, i, m);
        }
        assert_eq!(waits, [0, 2, 4, 8, 16]);
        // Without a proof the first retry waits initial, as it always did.
        assert_eq!(wait_before_connect(1, false, i, m), i);
    }

    #[test]
    fn a_flapping_tunnel_still_backs_off() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let proven = proven_after(Duration::from_secs(5), i);
        // It was stable, failed once (free retry), then comes up for 1 s and fails, again
        // and again: the 1 s proofs do not start new rows.
        let mut row = after_failure(
            0,
            false,
            Some(Duration::from_secs(600)),
            false,
            proven,
            i,
            m,
        );
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(wait_before_connect(row.0, row.1, i, m).as_secs());
            row = after_failure(
                row.0,
                row.1,
                Some(Duration::from_secs(1)),
                false,
                proven,
                i,
                m,
            );
        }
        assert_eq!(waits, [0, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn permanent_errors_wait_the_maximum_even_after_a_proof() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let row = after_failure(0, true, Some(Duration::from_secs(600)), true, i, i, m);
        assert_eq!(row, (9, false));
        assert_eq!(wait_before_connect(row.0, row.1, i, m), m);
    }

    #[test]
    fn jitter_is_linear_across_the_band() {
        let n = Duration::from_secs(10);
        assert_eq!(with_jitter(n, 0.5), n);
        assert_eq!(with_jitter(n, 0.25), Duration::from_millis(9250));
        assert_eq!(with_jitter(n, 0.75), Duration::from_millis(10750));
        // Out of [0, 1): clamped to the band's edges.
        assert_eq!(with_jitter(n, -3.0), Duration::from_millis(8500));
        assert_eq!(with_jitter(n, 7.0), Duration::from_millis(11500));
    }

    /// What keeps a crowd of watchdogs that failed together from reconnecting in the same
    /// instant: their seeds differ and spread over the whole band. 200 uniform draws all
    /// in one quarter would happen once in 10^25 runs.
    #[test]
    fn jitter_seeds_spread_over_the_band() {
        let n = Duration::from_secs(10);
        let waits: Vec<Duration> = (0..200).map(|_| with_jitter(n, jitter_seed())).collect();
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(*lo < Duration::from_millis(9250), "lowest wait {lo:?}");
        assert!(*hi > Duration::from_millis(10750), "highest wait {hi:?}");
        let mut distinct = waits.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 190, "{} distinct of 200", distinct.len());
    }

    /// Watchdogs started in the same nanosecond (a crowd after a reboot) get different
    /// seeds from their pids, whatever the clock's bits; and one process's seeds differ
    /// from one instant to the next.
    #[test]
    fn seeds_differ_between_pids_and_instants() {
        for nanos in [
            0,
            u64::MAX,
            0x0000_ffff_ffff_0000,
            1_796_532_745_000_000_000,
        ] {
            let seeds: Vec<u64> = (1..=64)
                .map(|pid| seed_from(nanos, pid).to_bits())
                .collect();
            let mut distinct = seeds.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 64, "at {nanos:#x}: {seeds:?}");
            assert!(
                seeds
                    .iter()
                    .all(|&s| (0.0..1.0).contains(&f64::from_bits(s)))
            );
        }
        assert_ne!(seed_from(1, 7).to_bits(), seed_from(2, 7).to_bits());
        // The splitmix64 finaliser, pinned: its first output for the state 0.
        assert_eq!(
            seed_from(0, 0),
            (0xe220_a839_7b1d_cdaf_u64 >> 11) as f64 / (1u64 << 53) as f64
        );
    }

    /// `proven_after` above `max` (a probe interval longer than the back-off cap): being
    /// up longer than `max` still starts a new row, being up exactly `max` does not.
    #[test]
    fn up_longer_than_max_starts_a_new_row_at_the_boundary() {
        let (i, m) = (Duration::from_secs(2), Duration::from_secs(300));
        let proven = Duration::from_secs(600);
        let up = |secs| {
            after_failure(
                3,
                false,
                Some(Duration::from_secs(secs)),
                false,
                proven,
                i,
                m,
            )
        };
        assert_eq!(up(300), (4, false));
        assert_eq!(up(301), (1, true));
        assert_eq!(up(600), (1, true));
        assert_eq!(after_failure(3, true, None, false, proven, i, m), (4, true));
    }

    /// `wait` in ms at 0, ¼, ½, ¾ and 1 of its unit is `want`: the edges, the middle and
    /// the quarters pinned (a constant, a missing offset or a wrong sign each miss one of
    /// them); a seed outside the unit gets an edge.
    fn assert_linear(wait: fn(f64) -> Duration, want: [u128; 5]) {
        let ms = |unit| wait(unit).as_millis();
        assert_eq!([ms(0.0), ms(0.25), ms(0.5), ms(0.75), ms(1.0)], want);
        assert_eq!((ms(-2.0), ms(9.0)), (want[0], want[4]));
    }

    #[test]
    fn a_busy_retry_is_uniform_in_its_band() {
        assert_linear(busy_retry, [500, 1000, 1500, 2000, 2500]);
    }

    #[test]
    fn the_first_attempt_spreads_over_a_quarter_of_a_second() {
        assert_linear(first_attempt_spread, [0, 62, 125, 187, 250]);
    }

    /// What keeps a crowd apart: the seeds of 200 draws reach both ends of each band and
    /// hardly ever coincide to the millisecond (all 200 in one quarter: once in 10^25).
    #[test]
    fn busy_retries_and_first_attempts_of_a_crowd_spread_over_their_bands() {
        let seeds: Vec<f64> = (0..200).map(|_| jitter_seed()).collect();
        for (wait, low, high) in [
            (busy_retry as fn(f64) -> Duration, 1000, 2000),
            (first_attempt_spread, 62, 187),
        ] {
            let ms: Vec<u128> = seeds.iter().map(|&s| wait(s).as_millis()).collect();
            let (lo, hi) = (ms.iter().min().unwrap(), ms.iter().max().unwrap());
            assert!(*lo < low && *hi > high, "{lo}..{hi} ms");
            let mut distinct = ms.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(distinct.len() > 100, "{} distinct of 200", distinct.len());
        }
    }

    #[test]
    fn jitter_stays_in_band() {
        let n = Duration::from_secs(10);
        assert_eq!(with_jitter(n, 0.0), Duration::from_millis(8500));
        assert_eq!(with_jitter(n, 1.0), Duration::from_millis(11500));
        for _ in 0..100 {
            let s = jitter_seed();
            assert!((0.0..1.0).contains(&s));
        }
    }
}
