//! Looks: between probe rounds, the kernel's reading of ssh's connection stands in for
//! a round while ssh's own keepalive asks the server at least once per probe interval
//! (`heard::look` rules on the reading; this decides what the connection does next).

use std::time::{Duration, Instant};

use super::{Conn, up_status};
use crate::watchdog::heard;
use crate::watchdog::log;
use crate::watchdog::supervisor::Watchdog;

/// While looks stand in for rounds (see [`Conn::look`]), a round that opens a channel
/// through the forwards still comes after this many probe intervals: the forwards' own
/// ends (a target, the server's `-R` listener) are proven that often.
const ROUND_EVERY_INTERVALS: u32 = 6;

/// What a look leaves for this step.
pub(super) enum LookNext {
    /// Nothing more: look again then.
    LookAt(Instant),
    /// ssh's keepalive, asked at `asked_at`, went unanswered.
    Unanswered { asked_at: Instant, why: String },
    /// A round, now.
    Round,
}

impl Conn {
    /// Between rounds, while ssh's own keepalive asks the server at least once per probe
    /// interval: one look at the kernel's reading of ssh's connection (one `send` and
    /// one `recv`, no channel, nothing for ssh or the server to do) says whether the
    /// server answered ssh lately and ssh reads what comes (`heard::look`). A round
    /// proves the transport no better, and costs a channel through ssh and the server
    /// and a connection to a target: this way a round comes every
    /// [`ROUND_EVERY_INTERVALS`] intervals. A look comes just after ssh's keepalive has
    /// had time for its answer, so a server that stops answering is found as soon as by
    /// a round at the interval: an unanswered keepalive is an unanswered round (the
    /// confirming rules take it from there), and an ssh that did not do its part gets
    /// a round with the alive check at once.
    pub(super) fn look(&mut self, w: &mut Watchdog) -> LookNext {
        let Some(keepalive) = self.keepalive else {
            return LookNext::Round;
        };
        let Some(last_round) = self.last_round else {
            return LookNext::Round;
        };
        let round_due = last_round + w.interval * ROUND_EVERY_INTERVALS;
        let now = Instant::now();
        if now >= round_due || !self.prober.resting() {
            return LookNext::Round;
        }
        let Some(reading) = self.tcp_reading() else {
            return LookNext::Round;
        };
        let again_in = match heard::look(&reading, keepalive) {
            heard::Look::Heard { again_in } => {
                // The keepalive's round trip is the transport's, as a round's is: with
                // rounds rarer, the adaptive time-out learns from it too (the kernel's
                // smoothed measure), or a confirming round would wait the full timeout.
                self.rounds.answered(reading.rtt);
                self.prober.set_timeout(self.rounds.round_timeout());
                // Proven as by a round: how long the tunnel was up decides whether a
                // failure is retried at once or backs off.
                self.last_ok = Some(now);
                w.state.last_probe_ok = log::now_secs();
                w.save_probe_figures();
                let since = self.up_since.map_or(Duration::ZERO, |t| t.elapsed());
                w.readiness.alive(&up_status(since, w.state.last_probe_ms));
                again_in
            }
            heard::Look::Wait { again_in } => again_in,
            heard::Look::Unanswered(why) => {
                // Judged as a round that began when ssh last wrote to the server.
                let asked_at = now.checked_sub(reading.since_sent).unwrap_or(now);
                return LookNext::Unanswered { asked_at, why };
            }
            heard::Look::SshSilent(why) => {
                log::info(format_args!("{why}: proving the tunnel with a round now"));
                self.prober.check_every_forward_next();
                return LookNext::Round;
            }
        };
        LookNext::LookAt((now + again_in).min(round_due))
    }
}
