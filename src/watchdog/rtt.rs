//! Adaptive probe timeout: suspect a silent tunnel after a time
//! learnt from its own round trips, and confirm without a blind second full timeout.
//!
//! # The estimator (RFC 6298, section 2)
//! Every probe round that passes gives a sample R (`probe::RoundOk::latency`: the time
//! spent waiting for answers, quiet windows of silent targets excluded). First sample:
//! SRTT = R, RTTVAR = R/2; then RTTVAR = ¾·RTTVAR + ¼·|SRTT − R|, SRTT = ⅞·SRTT + ⅛·R.
//! RTO = SRTT + 4·RTTVAR, clamped between [`SUSPECT_FLOOR`] (½ s) and the configured
//! `probe.timeout`. Before the first sample RTO is the configured timeout. RFC 6298's
//! minimum of 1 s ([`FLOOR`]) guards against retransmitting too early; here RTO only
//! starts suspicion (a confirming round), so half of it is enough, and the back-off of
//! a path that may be slow still starts from the full second.
//!
//! # The confirming rule
//! A round that has no answer after RTO is *suspect*, not failed. Its probe stays open
//! (a late answer until the configured timeout still counts, and becomes a sample, so
//! RTO follows a link that got slower), and a confirming round starts at once. What
//! happens at the confirming round's deadline depends on one more fact, whether the
//! server sent anything at the SSH layer since the suspect round began ([`Heard`];
//! on Linux, `tcpi_last_data_recv` of ssh's TCP socket through sock_diag, see
//! `watchdog::heard`; window adjustments and
//! keepalive replies count, bare TCP ACKs do not, since a frozen sshd's kernel still
//! sends those):
//! - an answer to either probe: alive (the failure count resets);
//! - no answer, and the server was heard: *slow*, the probes wait behind the user's
//!   data (fault 10, a saturated uplink: the probe queues behind megabytes in ssh's
//!   send buffer while the server keeps acknowledging them with window adjustments).
//!   No failure is counted: killing ssh would only kill the upload. Bounded: after
//!   [`SLOW_ROUNDS`] slow verdicts in a row (two minutes at the bench's 5 s interval)
//!   a silent round counts as failed after all;
//! - no answer, the server silent: a failure. The confirming round's deadline is 2·RTO
//!   (RFC 6298 5.5's back-off, from an RTO of at least [`FLOOR`]), capped by the
//!   configured timeout; each further round needed by `probe.failures` doubles again.
//!   When the suspect round's requests left ssh and the server's machine acknowledged
//!   all of them ([`Heard::Unanswered`]), nothing waits in the path: the session itself
//!   is silent, and the confirming round is one RTO, not doubled: with the floors, a
//!   second of silence from a server that has had every request. Price: an sshd alive
//!   but kept off the CPU (or blocked, say on a slow DNS lookup for a target) for over a
//!   second with every request acknowledged is reconnected.
//! - Heard unknown (no source for it on this platform): the confirming round gets the
//!   full configured timeout. Still not blind: suspicion came after RTO, not after a
//!   whole timeout, and the first probe's late answer still rescues the round.
//!
//! Fault 2 (the server's session frozen) with the bench's probe 5 s / 5 s / 2 on a
//! loopback-fast path: RTO = ½ s, suspect ½ s after the round starts; the frozen
//! sshd's kernel has acknowledged the requests, so dead ½ s later: 1 s after the round
//! began, against 10.2 s with two full timeouts; the round starts on average half an
//! interval after the fault, so about 2.5 + 1 s + the reconnect. Without the Heard
//! source: ½ + 5 = 5.5 s after the round began. The tests below replay the faults on an
//! injected clock.
//!
//! # Where it is wired
//! One [`Rounds`] per ssh connection (`connection.rs`): a round's deadline is
//! [`Rounds::round_timeout`]; a passed round gives [`Rounds::answered`]; a round past its
//! deadline asks `heard::judge` and then [`Rounds::unanswered`], whose [`Verdict`] starts
//! a confirming round, says "slow" or ends the connection.

use std::time::Duration;

/// RFC 6298's lower bound for RTO: where the back-off of a confirming round starts
/// when the path, not the session, may be what is slow.
pub const FLOOR: Duration = Duration::from_secs(1);
/// The lower bound of a round's own deadline (RTO here): past it the round is only
/// suspect. A loopback or LAN round takes milliseconds.
pub const SUSPECT_FLOOR: Duration = Duration::from_millis(500);
/// RFC 6298's clock granularity term G: RTO = SRTT + max(G, 4·RTTVAR).
const GRANULARITY: Duration = Duration::from_millis(10);
/// How many slow verdicts in a row may stand in for "alive" before a silent round
/// counts after all: a forward that never passes while the server talks is broken
/// in some other way, and the user should hear of it.
pub const SLOW_ROUNDS: u32 = 24;

#[derive(Clone, Debug)]
pub struct Estimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    floor: Duration,
    cap: Duration,
}

impl Estimator {
    /// `cap`: the configured probe timeout. A floor above the cap gives way to it.
    pub fn new(cap: Duration) -> Estimator {
        Estimator {
            srtt: None,
            rttvar: Duration::ZERO,
            floor: SUSPECT_FLOOR.min(cap),
            cap,
        }
    }

    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
    }

    pub fn rto(&self) -> Duration {
        match self.srtt {
            None => self.cap,
            Some(srtt) => {
                let rto = srtt.saturating_add((self.rttvar.saturating_mul(4)).max(GRANULARITY));
                rto.clamp(self.floor, self.cap)
            }
        }
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

/// Whether the server sent SSH-layer data since the suspect round began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    Yes,
    /// Nothing, although ssh sent the probes' requests and the server's machine
    /// acknowledged all of it: its sshd has them and says nothing (stuck), where a
    /// slow or lossy path would still have them in flight.
    Unanswered,
    No,
    Unknown,
}

/// What a probe round's deadline means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Start (or continue with) a confirming round ending this long from now.
    Confirm(Duration),
    /// The probes wait behind traffic the server acknowledges: not a failure.
    Slow,
    /// This many failed rounds in a row: `probe.failures` reached, kill ssh.
    Dead,
}

/// The probe timing state of one ssh connection (reset on reconnect with [`Rounds::new`]).
#[derive(Clone, Debug)]
pub struct Rounds {
    pub est: Estimator,
    failures_needed: u32,
    failed: u32,
    /// Consecutive slow verdicts.
    slow: u32,
}

impl Rounds {
    pub fn new(timeout: Duration, failures: u32) -> Rounds {
        Rounds {
            est: Estimator::new(timeout),
            failures_needed: failures.max(1),
            failed: 0,
            slow: 0,
        }
    }

    /// The deadline of a regular round (from its start).
    pub fn round_timeout(&self) -> Duration {
        self.est.rto()
    }

    /// Any probe of the current rounds answered after `rtt`: alive.
    pub fn answered(&mut self, rtt: Duration) {
        self.est.sample(rtt);
        self.alive();
    }

    /// Answered, but the time is no sample (a connection's first round, which pays
    /// one-time costs).
    pub fn alive(&mut self) {
        self.failed = 0;
        self.slow = 0;
    }

    /// A round (regular or confirming) reached its deadline without an answer.
    pub fn unanswered(&mut self, heard: Heard) -> Verdict {
        // The first silent round is only a suspicion, whatever was heard: confirm.
        if self.failed > 0 && heard == Heard::Yes && self.slow < SLOW_ROUNDS {
            self.slow += 1;
            self.failed = 0;
            return Verdict::Slow;
        }
        self.failed += 1;
        if self.failed >= self.failures_needed {
            return Verdict::Dead;
        }
        let cap = self.est.cap;
        let next = match heard {
            Heard::Unknown => cap,
            // Nothing is in flight, so the path is not what is slow: backing off would
            // only wait longer for a session that has had its requests for a whole RTO.
            Heard::Unanswered => self.est.rto(),
            // RFC 6298 5.5: back off by doubling, per further round.
            _ => self
                .est
                .rto()
                .max(FLOOR)
                .saturating_mul(1 << self.failed.min(16))
                .min(cap),
        };
        Verdict::Confirm(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn estimator_follows_rfc6298() {
        let mut e = Estimator::new(secs(5.0));
        assert_eq!(e.rto(), secs(5.0), "no sample yet: the configured timeout");
        e.sample(secs(0.4));
        assert_eq!(e.srtt(), Some(secs(0.4)));
        // 0.4 + 4 × 0.2 = 1.2 s
        assert_eq!(e.rto(), secs(1.2));
        e.sample(secs(0.8));
        // RTTVAR = 0.75 × 0.2 + 0.25 × 0.4 = 0.25; SRTT = 0.35 + 0.1 = 0.45; RTO = 1.45
        assert!(e.rto().abs_diff(secs(1.45)) < MS, "{:?}", e.rto());
    }

    #[test]
    fn rto_is_clamped_between_floor_and_timeout() {
        let mut e = Estimator::new(secs(5.0));
        for _ in 0..50 {
            e.sample(2 * MS); // loopback
        }
        assert_eq!(e.rto(), SUSPECT_FLOOR);
        for _ in 0..50 {
            e.sample(secs(30.0));
        }
        assert_eq!(e.rto(), secs(5.0));
        // A configured timeout below the floor wins.
        let mut small = Estimator::new(secs(0.5));
        small.sample(MS);
        assert_eq!(small.rto(), secs(0.5));
    }

    /// Replays a probe schedule on an injected clock: `latency(t)` is how long a probe
    /// started at t needs (None: never answered), `heard(t)` what the kernel says of
    /// the server at t. Returns the time ssh is declared dead, if it is.
    fn replay(
        rounds: &mut Rounds,
        interval: f64,
        until: f64,
        latency: impl Fn(f64) -> Option<f64>,
        heard: impl Fn(f64) -> Heard,
    ) -> Option<f64> {
        let timeout = rounds.est.cap.as_secs_f64();
        let mut t = 0.0;
        while t < until {
            // The round's probe; its late answer counts until the configured timeout.
            let first = latency(t);
            let mut wait = rounds.round_timeout().as_secs_f64();
            let mut start = t;
            loop {
                // Answered in time by the first probe (still open) or this round's own?
                let own = latency(start);
                let by = start + wait;
                let first_ok = first.is_some_and(|l| t + l <= by && l <= timeout);
                let own_ok = own.is_some_and(|l| start + l <= by);
                if first_ok || own_ok {
                    let rtt = if first_ok {
                        first.unwrap()
                    } else {
                        own.unwrap()
                    };
                    rounds.answered(secs(rtt));
                    break;
                }
                match rounds.unanswered(heard(by)) {
                    Verdict::Dead => return Some(by),
                    Verdict::Slow => break,
                    Verdict::Confirm(next) => {
                        start = by;
                        wait = next.as_secs_f64();
                    }
                }
            }
            t += interval;
        }
        None
    }

    #[test]
    fn fault_2_frozen_session_is_caught_in_1_s_from_the_round() {
        // Loopback-fast until the session freezes at t = 100 s (just before a round).
        // Its kernel still acknowledges the probes' requests: unanswered.
        let frozen_at = 100.0 - 0.01;
        let lat = |t: f64| (t < frozen_at).then_some(0.003);
        let after_freeze =
            |silence: Heard| move |t: f64| if t < frozen_at { Heard::Yes } else { silence };
        let mut r = Rounds::new(secs(5.0), 2);
        let dead = replay(&mut r, 5.0, 200.0, lat, after_freeze(Heard::Unanswered)).expect("dead");
        let after = dead - 100.0;
        assert!(
            (0.9..=1.1).contains(&after),
            "declared dead {after:.2} s after the round began"
        );
        // Requests still unacknowledged (a path that drops them): the confirming round
        // backs off to 2·RTO, from RFC 6298's full second.
        let mut r = Rounds::new(secs(5.0), 2);
        let dead = replay(&mut r, 5.0, 200.0, lat, after_freeze(Heard::No)).expect("dead");
        assert!(((dead - 100.0) - 2.5).abs() < 0.1, "{dead}");
        // Without a "heard" source: suspicion after RTO, one full timeout to confirm.
        let mut r = Rounds::new(secs(5.0), 2);
        let dead = replay(&mut r, 5.0, 200.0, lat, |_| Heard::Unknown).expect("dead");
        assert!(((dead - 100.0) - 5.5).abs() < 0.1, "{dead}");
        // All beat two blind full timeouts (10 s after the round began, + the 200 ms pause).
    }

    #[test]
    fn fault_10_saturated_uplink_is_slow_not_dead() {
        // Fast at first; from t = 100 s every probe waits 6 to 12 s behind an upload
        // (longer than the configured 5 s timeout), while the server keeps sending
        // window adjustments.
        let mut r = Rounds::new(secs(5.0), 2);
        let lat = |t: f64| Some(if t < 100.0 { 0.003 } else { 6.0 + (t % 7.0) });
        let dead = replay(&mut r, 5.0, 160.0, lat, |_| Heard::Yes);
        assert_eq!(dead, None, "false restart under a saturated uplink");
    }

    #[test]
    fn slow_is_bounded() {
        // The server keeps talking, but no probe ever passes: after SLOW_ROUNDS it counts.
        let mut r = Rounds::new(secs(5.0), 2);
        r.answered(secs(0.01));
        let dead = replay(&mut r, 5.0, 1000.0, |_| None, |_| Heard::Yes).expect("dead at last");
        let limit = f64::from(SLOW_ROUNDS) * 5.0;
        assert!(dead > limit && dead < limit + 10.0, "{dead}");
    }

    #[test]
    fn a_link_that_got_slower_raises_rto_through_late_answers() {
        // RTT jumps from 3 ms to 2.5 s (within the 5 s timeout): the first probe's late
        // answer rescues each round and RTO climbs, so the suspicions stop.
        let mut r = Rounds::new(secs(5.0), 2);
        for _ in 0..20 {
            r.answered(3 * MS);
        }
        assert_eq!(r.round_timeout(), SUSPECT_FLOOR);
        let dead = replay(&mut r, 5.0, 200.0, |_| Some(2.5), |_| Heard::No);
        assert_eq!(dead, None);
        assert!(r.round_timeout() > secs(2.5), "{:?}", r.round_timeout());
    }

    #[test]
    fn more_failures_double_the_confirming_round() {
        let mut r = Rounds::new(secs(8.0), 4);
        r.answered(2 * MS); // RTO = the suspect floor, ½ s; the back-off starts from 1 s
        assert_eq!(r.unanswered(Heard::No), Verdict::Confirm(secs(2.0)));
        assert_eq!(r.unanswered(Heard::No), Verdict::Confirm(secs(4.0)));
        assert_eq!(r.unanswered(Heard::No), Verdict::Confirm(secs(8.0)));
        assert_eq!(r.unanswered(Heard::No), Verdict::Dead);
        // Unanswered with nothing in flight: each confirming round is one RTO.
        let mut r = Rounds::new(secs(8.0), 3);
        r.answered(2 * MS);
        assert_eq!(r.unanswered(Heard::Unanswered), Verdict::Confirm(secs(0.5)));
        assert_eq!(r.unanswered(Heard::Unanswered), Verdict::Confirm(secs(0.5)));
        assert_eq!(r.unanswered(Heard::Unanswered), Verdict::Dead);
        // One failure configured: the first silence is the verdict.
        let mut one = Rounds::new(secs(5.0), 1);
        assert_eq!(one.unanswered(Heard::Unknown), Verdict::Dead);
    }
}
