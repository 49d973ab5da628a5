//! What a connection's outcome leads to ([`Session::after`]): an exit, a connect at once
//! (without a held `-R` port, after a proven tunnel's failure), a short pause for a busy
//! server, a wait for a route or for a login slot; and what only these decisions ask:
//! where ssh connects, the address to ask a route for, a login slot. The loop, its
//! events and their handlers are `session.rs`'s.

use std::net::IpAddr;
use std::ops::ControlFlow::{self, Break, Continue};
use std::time::{Duration, Instant};

use super::args;
use super::login_slot::{self, LoginSlot, Taken};
use super::netevents::RouteNow;
use super::session::{Session, route_to};
use super::supervisor::Outcome;
use super::wait::{self, Check, Kind, Wait};
use super::{EXIT_FAILED, EXIT_PERMANENT, PORT_HELD_ASK_EVERY, backoff, log, reachability};
use crate::duration::format_human;
use crate::state::Phase;

/// A server that turns this many logins in a row away is treated as failing after all
/// (the normal back-off and exit): a proxy that closes every connection is no crowd.
const BUSY_IN_A_ROW: u32 = 10;

/// How long a watchdog waits for a login slot before it logs in without one: other
/// local users can hold the names, and no tunnel may stay down for them.
const SLOT_WAIT_MAX: Duration = Duration::from_secs(10);

/// A look for a free login slot comes after a random pause in this band: long enough
/// for a login on a LAN, short next to one over a WAN.
const SLOT_LOOK_AGAIN: (Duration, Duration) =
    (Duration::from_millis(20), Duration::from_millis(120));

impl Session<'_> {
    /// Without a route ssh could only fail ("Network is unreachable") and count a
    /// failure: nothing starts until a network event or a check finds a route.
    pub(super) fn wait_for_route(&mut self, ip: IpAddr) -> ControlFlow<u8> {
        log::info(format_args!(
            "no route to the server ({ip}): not starting ssh until the network brings one (checking every {} and at every network change)",
            format_human(reachability::CHECK_EVERY)
        ));
        self.enter_wait(
            Wait::new(Kind::NoRoute, format!("no route to {ip}"), None).checking(Check::Route(ip)),
        );
        Continue(())
    }

    /// What a connection's outcome leads to. `up_for`: how long it was up (first to last
    /// good round).
    pub(super) fn after(&mut self, outcome: Outcome, up_for: Option<Duration>) -> ControlFlow<u8> {
        if !matches!(
            outcome,
            Outcome::Failed {
                server_busy: true,
                ..
            }
        ) {
            self.busy_in_a_row = 0;
        }
        match outcome {
            Outcome::Stopped => Break(self.w.stopped()),
            Outcome::Reconnect | Outcome::NetworkChanged => {
                // Not a failure of the tunnel: the failure row starts afresh, and the
                // held -R forwards are asked for again by the new connection.
                self.w.state.consecutive_failures = 0;
                (self.ssh_args, self.held) = (self.w.o.ssh.clone(), Vec::new());
                if matches!(outcome, Outcome::Reconnect) {
                    // SIGHUP/SIGUSR1: counted; the new connection proves itself again.
                    self.w.count_reconnect();
                    self.w.state.proven = false;
                    log::info("reconnecting now (SIGHUP/SIGUSR1)");
                }
                self.connect()
            }
            Outcome::Failed {
                reason,
                port_held: Some(port),
                ..
            } if up_for.is_none()
                && let Some((rest, forward)) =
                    args::without_remote_forward(&self.ssh_args, port) =>
            {
                // A -R port the server still holds (the old session): at once, without it.
                log::warn(format_args!(
                    "{reason}; reconnecting at once without {} and asking the server for it every {} through ssh's control socket",
                    forward.describe(),
                    format_human(PORT_HELD_ASK_EVERY)
                ));
                self.w.state.last_error = reason;
                self.w.count_reconnect();
                self.ssh_args = rest;
                self.held.push(forward);
                self.connect()
            }
            Outcome::Failed {
                reason,
                server_busy: true,
                ..
            } if self.busy_in_a_row < BUSY_IN_A_ROW => {
                // A crowd logging in at once (a bastion back after a restart): the server
                // is there, so neither a failure nor a back-off, but a short random pause.
                self.busy_in_a_row += 1;
                let pause = backoff::busy_retry(backoff::jitter_seed());
                log::warn(format_args!(
                    "{reason} (turned away {} time(s) in a row; trying again in {})",
                    self.busy_in_a_row,
                    format_human(pause)
                ));
                self.w.state.last_error = reason.clone();
                self.enter_wait(Wait::new(Kind::ServerBusy, reason, Some(pause)));
                Continue(())
            }
            Outcome::Failed {
                reason,
                unreachable: true,
                ..
            } if let Some(ip) = self.route_target()
                && route_to(ip) == RouteNow::NoRoute =>
            {
                // Not the tunnel's failure: the network is gone. Counted as nothing.
                log::warn(format_args!("ssh failed: {reason}"));
                self.w.state.last_error = reason;
                self.wait_for_route(ip)
            }
            Outcome::Failed {
                reason,
                permanent,
                no_greeting,
                ..
            } => self.failed(reason, permanent, no_greeting, up_for),
        }
    }

    /// A failure: the row in the state file; again at once after a proven tunnel,
    /// else an exit (the init system restarts the watchdog, which backs off).
    fn failed(
        &mut self,
        reason: String,
        permanent: bool,
        no_greeting: bool,
        up_for: Option<Duration>,
    ) -> ControlFlow<u8> {
        let w = &mut *self.w;
        (w.state.consecutive_failures, w.state.proven) = backoff::after_failure(
            w.state.consecutive_failures,
            w.state.proven,
            up_for,
            permanent,
            backoff::proven_after(w.interval, w.o.backoff_initial),
            w.o.backoff_initial,
            w.o.backoff_max,
        );
        w.state.no_greeting = no_greeting;
        w.state.ssh_pid = 0;
        w.state.connected_since = 0;
        w.state.last_error = reason.clone();
        (self.ssh_args, self.held) = (w.o.ssh.clone(), Vec::new());
        let wait = backoff::wait_before_connect(
            w.state.consecutive_failures,
            w.state.proven,
            w.o.backoff_initial,
            w.o.backoff_max,
        );
        if !permanent && wait.is_zero() {
            // The tunnel was proven: its first retry is free, and it is made here,
            // without the exit and the init system's restart delay.
            log::warn(format_args!(
                "tunnel failed: {reason}; it was up before, reconnecting at once"
            ));
            w.set_phase(Phase::Failed, &reason);
            w.save();
            self.w.readiness.status(&format!("reconnecting: {reason}"));
            return self.connect();
        }
        w.set_phase(Phase::Failed, &reason);
        w.save();
        log::error(format_args!("tunnel failed: {reason}"));
        w.readiness.stopping(Some(&format!("failed: {reason}")));
        Break(if permanent {
            EXIT_PERMANENT
        } else {
            EXIT_FAILED
        })
    }

    /// Where ssh connects (`ssh -G`, run once per watchdog), or why a TCP connect from
    /// here would not take ssh's path (a proxy, a bound source).
    pub(super) fn destination(&mut self) -> Result<wait::Destination, String> {
        self.destination
            .get_or_insert_with(|| match reachability::resolve(&self.w.o.ssh) {
                Ok(reachability::Destination::Direct { host, port, family }) => {
                    Ok((host, port, family))
                }
                Ok(reachability::Destination::Unsuitable(why)) => Err(why.to_string()),
                Err(e) => Err(e),
            })
            .clone()
    }

    /// The server's address to ask the kernel for a route to: the last connection's, or
    /// the destination when it is an address (a name is not looked up for this: without
    /// a route there may be no DNS either).
    pub(super) fn route_target(&mut self) -> Option<IpAddr> {
        if self.server_ip.is_some() {
            return self.server_ip;
        }
        let (host, _, _) = self.destination().ok()?;
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// A login slot to the server, or why ssh does not start yet (`Err`: a short wait
    /// was entered). Without slots (not Linux, a sandbox, ProxyJump) there is no wait.
    pub(super) fn take_login_slot(&mut self) -> Result<Option<LoginSlot>, ()> {
        let Ok((host, port, _)) = self.destination() else {
            return Ok(None);
        };
        match login_slot::try_take(&format!("{host}:{port}")) {
            Taken::Slot(slot) => {
                self.slots_busy_since = None;
                Ok(Some(slot))
            }
            Taken::Unsupported => Ok(None),
            Taken::AllBusy => {
                let since = *self.slots_busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SLOT_WAIT_MAX {
                    log::warn(format_args!(
                        "every login slot to {host} port {port} is still held by other processes after {}: logging in without one",
                        format_human(since.elapsed())
                    ));
                    self.slots_busy_since = None;
                    return Ok(None);
                }
                let (low, high) = SLOT_LOOK_AGAIN;
                let pause = low + (high - low).mul_f64(backoff::jitter_seed());
                self.enter_wait(Wait::new(
                    Kind::LoginSlot,
                    format!("other tunnels are logging in to {host} port {port}"),
                    Some(pause),
                ));
                Err(())
            }
        }
    }
}
