//! The waits between connections, while no ssh runs: what each waits for, when it
//! ends, and the one check it may run meanwhile. A [`Wait`] is the session's `Waiting`
//! stage (`session.rs` handles its events, as for every other stage).
//!
//! - **back-off**: after failures, `backoff::wait_before_connect` with jitter; after a
//!   failure where ssh got no greeting, until a check sees the server greet again
//!   (every [`reachability::CHECK_EVERY`]), at the latest once `backoff_max` ran out.
//! - **no route**: the server has no route from here (the address went away): nothing
//!   is started and nothing counted until a network event, or a check, finds a route.
//! - **server busy**: the server closed the connection before the login (sshd's
//!   MaxStartups while a crowd logs in): a short random pause, not a back-off.
//! - **spread**: the server greets again; a crowd that saw it in the same second does
//!   not connect in the same millisecond.
//! - **login slot**: every slot to that server is taken by other watchdogs of this
//!   machine (`login_slot`): look again shortly.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{BACKOFF_REFRESH, reachability};
use crate::duration::format_human;

/// Where a greeting check connects: host, port, address family (ssh's `-G` view).
pub(super) type Destination = (String, u16, reachability::Family);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    BackOff,
    NoRoute,
    ServerBusy,
    Spread,
    LoginSlot,
}

/// What a wait checks while it lasts.
pub(super) enum Check {
    /// Whether the server greets (a TCP connect and its `SSH-` line).
    Greeting(Destination),
    /// Whether the server's address has a route again (one rtnetlink question).
    Route(IpAddr),
}

pub(super) struct Wait {
    pub(super) kind: Kind,
    /// Why: for the log and the supervisor's status.
    pub(super) reason: String,
    pub(super) started: Instant,
    /// When the wait ends on its own (`None`: only a check or an event ends it).
    pub(super) until: Option<Instant>,
    pub(super) check: Option<Check>,
    pub(super) next_check: Instant,
    /// When the last check started, and how many checks in a row the path swallowed.
    last_check_at: Instant,
    silent_checks: u32,
    /// When the status is told again (the supervisor's watchdog is fed meanwhile).
    pub(super) next_refresh: Instant,
    /// The server's addresses and when they were looked up (see `server_addresses`).
    resolved: Option<(Instant, Vec<SocketAddr>)>,
}

impl Wait {
    pub(super) fn new(kind: Kind, reason: String, length: Option<Duration>) -> Wait {
        let started = Instant::now();
        Wait {
            kind,
            reason,
            started,
            until: length.map(|d| started + d),
            check: None,
            next_check: started + reachability::CHECK_EVERY,
            last_check_at: started,
            silent_checks: 0,
            next_refresh: started,
            resolved: None,
        }
    }

    pub(super) fn checking(mut self, check: Check) -> Wait {
        self.check = Some(check);
        self
    }

    /// A check starts: the next one comes [`reachability::CHECK_EVERY`] after this one's
    /// start, even when this one waits out its time-out, or sooner as `greeting_found`
    /// rules (a refused port, a path that swallows the connect).
    pub(super) fn check_started(&mut self) {
        self.last_check_at = Instant::now();
        self.next_check = self.last_check_at + reachability::CHECK_EVERY;
    }

    /// How long the next greeting check waits for its connect: on a path that swallowed
    /// the last ones, half a second (one SYN), and the whole time-out every
    /// [`reachability::SILENT_FULL_EVERY`] checks.
    pub(super) fn connect_within(&self) -> Duration {
        if self
            .silent_checks
            .is_multiple_of(reachability::SILENT_FULL_EVERY)
        {
            reachability::CHECK_TIMEOUT
        } else {
            reachability::SILENT_CONNECT_WITHIN
        }
    }

    /// What a greeting check found. A port that refused costs the server nothing to
    /// ask again: in the first seconds of the wait the next check comes sooner. A path
    /// that swallowed the connect gets a fresh SYN as soon as the last was given up.
    pub(super) fn greeting_found(&mut self, found: reachability::Greeting) {
        use reachability::Greeting::{Refused, Silent};
        if found == Silent {
            self.silent_checks += 1;
            self.next_check = self.last_check_at + reachability::SILENT_CONNECT_WITHIN;
        } else {
            self.silent_checks = 0;
        }
        if found == Refused && self.started.elapsed() < reachability::REFUSED_QUICKLY_FOR {
            self.next_check = Instant::now() + reachability::CHECK_AFTER_REFUSED;
        }
    }

    /// The time left; `None` for a wait without an end of its own.
    pub(super) fn left(&self) -> Option<Duration> {
        self.until
            .map(|until| until.saturating_duration_since(Instant::now()))
    }

    pub(super) fn over(&self) -> bool {
        self.left().is_some_and(|left| left.is_zero())
    }

    pub(super) fn check_due(&self) -> bool {
        self.check.is_some() && Instant::now() >= self.next_check && !self.over()
    }

    /// The next time something of this wait is due: its end, its check, its status.
    pub(super) fn wake_at(&self) -> Instant {
        let mut at = self.next_refresh;
        if let Some(until) = self.until {
            at = at.min(until);
        }
        if self.check.is_some() {
            at = at.min(self.next_check);
        }
        at
    }

    /// The status line (the supervisor's and the log's).
    pub(super) fn status(&self) -> String {
        match (self.kind, &self.check, self.left()) {
            (Kind::NoRoute, _, _) => format!("waiting for a route to the server: {}", self.reason),
            (Kind::BackOff, Some(Check::Greeting(_)), _) => {
                format!("waiting for the server to answer: {}", self.reason)
            }
            (_, _, Some(left)) => format!("backing off {}: {}", format_human(left), self.reason),
            (_, _, None) => format!("waiting: {}", self.reason),
        }
    }

    /// Marks the status told; the next one in [`BACKOFF_REFRESH`].
    pub(super) fn refreshed(&mut self) {
        self.next_refresh = Instant::now() + BACKOFF_REFRESH;
    }

    /// The server's addresses for a greeting check: the last lookup's, looked up again
    /// after `RESOLVE_EVERY` (sooner when the last lookup found none).
    pub(super) fn server_addresses(&mut self) -> Vec<SocketAddr> {
        let Some(Check::Greeting((host, port, family))) = &self.check else {
            return Vec::new();
        };
        if self.resolved.as_ref().is_none_or(|(at, addrs)| {
            let again = if addrs.is_empty() {
                reachability::RESOLVE_AGAIN_WHEN_EMPTY
            } else {
                reachability::RESOLVE_EVERY
            };
            at.elapsed() >= again
        }) {
            let deadline = Instant::now() + reachability::CHECK_TIMEOUT;
            let addrs = reachability::addresses_for(host, *port, *family, deadline);
            self.resolved = Some((Instant::now(), addrs));
        }
        self.resolved
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_without_an_end_is_never_over_and_wakes_for_its_check() {
        let w = Wait::new(Kind::NoRoute, "no route".into(), None)
            .checking(Check::Route("10.0.0.1".parse().unwrap()));
        assert!(!w.over());
        assert_eq!(w.left(), None);
        assert!(w.wake_at() <= w.next_check);
        assert!(
            w.status().starts_with("waiting for a route"),
            "{}",
            w.status()
        );
    }

    #[test]
    fn a_refused_check_comes_again_sooner_than_an_unanswered_one() {
        let mut w = Wait::new(Kind::BackOff, "refused".into(), None).checking(Check::Greeting((
            "h".into(),
            22,
            reachability::Family::Any,
        )));
        let started = Instant::now();
        w.check_started();
        w.greeting_found(reachability::Greeting::NoGreeting);
        assert!(w.next_check >= started + reachability::CHECK_EVERY);
        w.check_started();
        w.greeting_found(reachability::Greeting::Refused);
        assert!(w.next_check < started + reachability::CHECK_EVERY / 2);
        assert!(w.next_check >= started + reachability::CHECK_AFTER_REFUSED);
        assert!(w.wake_at() <= w.next_check);
        // A wait that has lasted past the first seconds: once a second again.
        w.started = Instant::now()
            .checked_sub(reachability::REFUSED_QUICKLY_FOR)
            .expect("a monotonic clock older than ten seconds");
        let late = Instant::now();
        w.check_started();
        w.greeting_found(reachability::Greeting::Refused);
        assert!(w.next_check >= late + reachability::CHECK_EVERY);
    }

    #[test]
    fn a_silent_path_gets_a_fresh_syn_each_half_second_and_a_full_wait_now_and_then() {
        let mut w = Wait::new(Kind::BackOff, "timed out".into(), None).checking(Check::Greeting((
            "h".into(),
            22,
            reachability::Family::Any,
        )));
        assert_eq!(w.connect_within(), reachability::CHECK_TIMEOUT);
        let mut bounds = Vec::new();
        for _ in 0..8 {
            w.check_started();
            let started = w.last_check_at;
            w.greeting_found(reachability::Greeting::Silent);
            assert_eq!(w.next_check, started + reachability::SILENT_CONNECT_WITHIN);
            bounds.push(w.connect_within());
        }
        let (short, full) = (
            reachability::SILENT_CONNECT_WITHIN,
            reachability::CHECK_TIMEOUT,
        );
        assert_eq!(
            bounds,
            [short, short, short, full, short, short, short, full]
        );
        // Any other answer ends the silence: the next connect has the whole time.
        w.check_started();
        w.greeting_found(reachability::Greeting::NoGreeting);
        assert_eq!(w.connect_within(), full);
        assert!(w.next_check >= w.last_check_at + reachability::CHECK_EVERY);
    }

    #[test]
    fn a_timed_wait_ends_and_stops_checking() {
        let mut w = Wait::new(Kind::BackOff, "refused".into(), Some(Duration::ZERO))
            .checking(Check::Greeting(("h".into(), 22, reachability::Family::Any)));
        w.next_check = Instant::now();
        assert!(w.over());
        assert!(!w.check_due(), "an ended wait connects instead of checking");
        let long = Wait::new(
            Kind::ServerBusy,
            "busy".into(),
            Some(Duration::from_secs(60)),
        );
        assert!(!long.over());
        assert!(
            long.status().starts_with("backing off"),
            "{}",
            long.status()
        );
    }
}
