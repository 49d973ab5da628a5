//! Wake from sleep, or from any long freeze of the watchdog, so a tunnel that only looks alive after a wake is checked at once.
//!
//! After every wake-up from `poll`, the loop compares how long it was away on two
//! clocks with how long it asked to sleep:
//! - the *awake* clock stops while the machine is suspended: `CLOCK_MONOTONIC` on
//!   Linux, `CLOCK_UPTIME_RAW` (= `mach_absolute_time`, what `Instant` reads) on macOS;
//!   poll's timeout and ssh's ServerAlive timers run on it, which is why a tunnel can
//!   look alive for minutes after a laptop wakes;
//! - the *boot* clock counts suspend too: `CLOCK_BOOTTIME` on Linux, `CLOCK_MONOTONIC`
//!   on macOS (which Apple defines as continuing during sleep: `mach_continuous_time`).
//!
//! Away on the boot clock more than [`GAP`] longer than asked means the machine slept
//! (the boot clock ran ahead of the awake clock) or the process was frozen (both ran:
//! SIGSTOP, a cgroup freezer, a VM paused, a swap storm). Either way the connection's
//! state is unknown and ssh's own timers are late: probe at once and reset the
//! back-off, since the failure count from before the gap says nothing about now.
//!
//! Waking early (an fd became readable) is never a gap. Note that poll's timeout runs
//! on the awake clock: after a suspend the poll sleeps out the rest of its timeout, so
//! the gap is seen at most one poll timeout after the resume (the network events of
//! `netevents`, which a resume brings, wake it sooner).
//!
//! # Wiring sketch
//! ```text
//! let clock = clock::System;
//! let before = clock.now();
//! poll(&mut fds, timeout)?;
//! if let Some(gap) = clock::judge(before, clock.now(), timeout) {
//!     log(gap.describe());           // "machine slept for 3 min 12 s" / "frozen for 60 s"
//!     backoff.reset(); next_probe = now;
//! }
//! ```

use std::time::Duration;

/// A wake-up this much later than asked is a sleep or freeze. Larger than any
/// scheduling delay seen on a busy small box (well under a second), small next to a
/// suspend or the 10-45 s a timeout-only detection costs; a false alarm costs one
/// probe round.
pub const GAP: Duration = Duration::from_secs(3);

/// One reading of both clocks, from an arbitrary origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub awake: Duration,
    pub boot: Duration,
}

pub trait Clock {
    fn now(&self) -> Stamp;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapKind {
    /// The boot clock ran ahead of the awake clock: the machine was suspended.
    Slept,
    /// Both clocks ran: the process (or the whole VM) did not.
    Frozen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub kind: GapKind,
    /// How much longer than asked the wake-up came.
    pub late: Duration,
}

impl Gap {
    /// One log line's worth.
    pub fn describe(&self) -> String {
        let late = crate::duration::format_human(self.late);
        match self.kind {
            GapKind::Slept => format!("the machine slept (woke {late} late): probing now"),
            GapKind::Frozen => format!("the watchdog was frozen (woke {late} late): probing now"),
        }
    }
}

/// The decision: `before`/`after` around one wait that asked for `asked`.
pub fn judge(before: Stamp, after: Stamp, asked: Duration) -> Option<Gap> {
    let boot = after.boot.saturating_sub(before.boot);
    let awake = after.awake.saturating_sub(before.awake);
    let late = boot.saturating_sub(asked);
    if late <= GAP {
        return None;
    }
    let kind = if boot.saturating_sub(awake) > GAP {
        GapKind::Slept
    } else {
        GapKind::Frozen
    };
    Some(Gap { kind, late })
}

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

#[cfg(target_os = "linux")]
const CLOCKS: (nix::time::ClockId, nix::time::ClockId) = (
    nix::time::ClockId::CLOCK_MONOTONIC,
    nix::time::ClockId::CLOCK_BOOTTIME,
);
#[cfg(target_os = "macos")]
const CLOCKS: (nix::time::ClockId, nix::time::ClockId) = (
    nix::time::ClockId::from_raw(nix::libc::CLOCK_UPTIME_RAW),
    nix::time::ClockId::CLOCK_MONOTONIC,
);
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
const CLOCKS: (nix::time::ClockId, nix::time::ClockId) = (
    nix::time::ClockId::CLOCK_MONOTONIC,
    nix::time::ClockId::CLOCK_MONOTONIC,
);

fn read(id: nix::time::ClockId) -> Option<Duration> {
    let ts = nix::time::clock_gettime(id).ok()?;
    Some(Duration::new(
        u64::try_from(ts.tv_sec()).ok()?,
        u32::try_from(ts.tv_nsec()).ok()?,
    ))
}

impl Clock for System {
    fn now(&self) -> Stamp {
        let awake = read(CLOCKS.0).unwrap_or_default();
        // Without a boot clock, the awake one: freezes are still seen, sleeps as freezes.
        let boot = read(CLOCKS.1).unwrap_or(awake);
        Stamp { awake, boot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// An injected clock: tests move both hands by hand.
    struct Fake(Cell<Stamp>);

    impl Fake {
        fn new() -> Fake {
            Fake(Cell::new(Stamp {
                awake: Duration::from_secs(1000),
                boot: Duration::from_secs(5000),
            }))
        }
        /// Time passes while the machine runs.
        fn run(&self, d: Duration) {
            let s = self.0.get();
            self.0.set(Stamp {
                awake: s.awake + d,
                boot: s.boot + d,
            });
        }
        /// The machine is suspended: only the boot clock moves.
        fn suspend(&self, d: Duration) {
            let s = self.0.get();
            self.0.set(Stamp {
                awake: s.awake,
                boot: s.boot + d,
            });
        }
    }

    impl Clock for Fake {
        fn now(&self) -> Stamp {
            self.0.get()
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn on_time_and_early_wakeups_are_not_gaps() {
        let c = Fake::new();
        let b = c.now();
        c.run(5 * S);
        assert_eq!(judge(b, c.now(), 5 * S), None);
        let b = c.now();
        c.run(S / 10); // an fd woke it early
        assert_eq!(judge(b, c.now(), 5 * S), None);
        // Scheduling delay under load, within GAP.
        let b = c.now();
        c.run(5 * S + GAP);
        assert_eq!(judge(b, c.now(), 5 * S), None);
    }

    #[test]
    fn a_suspend_is_a_sleep() {
        let c = Fake::new();
        let b = c.now();
        c.run(2 * S);
        c.suspend(3600 * S);
        c.run(3 * S); // poll sleeps out the rest of its timeout on the awake clock
        let gap = judge(b, c.now(), 5 * S).expect("a gap");
        assert_eq!(gap.kind, GapKind::Slept);
        assert_eq!(gap.late, 3600 * S);
        assert!(gap.describe().contains("slept"), "{}", gap.describe());
    }

    #[test]
    fn a_freeze_is_a_freeze() {
        let c = Fake::new();
        let b = c.now();
        c.run(65 * S); // SIGSTOP or a cgroup freezer for 60 s during a 5 s wait
        let gap = judge(b, c.now(), 5 * S).expect("a gap");
        assert_eq!(gap.kind, GapKind::Frozen);
        assert_eq!(gap.late, 60 * S);
    }

    #[test]
    fn a_short_suspend_within_the_wait_is_still_seen() {
        // Suspended 4 s in a 10 s wait: the boot clock says 14 s, 4 s late (> GAP).
        let c = Fake::new();
        let b = c.now();
        c.run(6 * S);
        c.suspend(4 * S);
        c.run(4 * S);
        assert_eq!(
            judge(b, c.now(), 10 * S).map(|g| g.kind),
            Some(GapKind::Slept)
        );
    }

    #[test]
    fn clocks_going_backwards_are_not_gaps() {
        let c = Fake::new();
        let later = {
            c.run(10 * S);
            c.now()
        };
        let earlier = Stamp {
            awake: later.awake - 5 * S,
            boot: later.boot - 5 * S,
        };
        assert_eq!(judge(later, earlier, 5 * S), None);
    }

    #[test]
    fn the_system_clocks_read_and_agree_while_awake() {
        let c = System;
        let a = c.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = c.now();
        assert!(b.awake > a.awake && b.boot > a.boot);
        assert_eq!(judge(a, b, Duration::from_millis(20)), None);
    }
}
