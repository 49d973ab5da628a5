//! The watchdog's one event loop, from its start to its exit, as states × events
//! (after s6-supervise): [`Session::next_event`] sleeps until something happens, and
//! [`Session::handle`] gives each [`Event`] to its one method, whatever the stage. No
//! other loop waits for signals, clock gaps or network changes.
//!
//! The stage follows from the fields: no ssh runs (`Waiting`: a back-off, no route,
//! a busy server; see `wait.rs`), or a connection (`connection.rs`) waits for its
//! control socket, asks for held `-R` forwards, or probes.
//!
//! | event                   | Waiting                      | WaitingForSocket       | AskingForHeldPorts     | Probing                   |
//! |-------------------------|------------------------------|------------------------|------------------------|---------------------------|
//! | `Signal`                | stop: exit; reconnect: go    | end: stop or reconnect | same                   | same                      |
//! | `SshExited`             |                              | end: failed (stderr)   | same                   | same                      |
//! | `SshStderr`             |                              | end: failed (forward)  | same                   | same                      |
//! | `ControlSocketAppeared` |                              | next step in 4 RTT+50ms|                        |                           |
//! | `ConnectTimedOut`       |                              | end: failed            |                        |                           |
//! | `HeldPortAskDue`        |                              |                        | ask; all granted: probe|                           |
//! | `ProbeRoundDue`         |                              |                        |                        | round / look: ready/alive |
//! | `WaitOver`              | connect                      |                        |                        |                           |
//! | `CheckDue`              | greets / route: connect      |                        |                        |                           |
//! | `ClockGap`              | connect, back-off reset      | nothing to do          | ask now                | round now, back-off reset |
//! | `NetworkChanged`        | may bring back: connect/check| nothing to do          | reconnect / ask now    | reconnect / round now     |
//!
//! A connection that ends ([`Outcome`]) leads to the next stage in one place,
//! `Session::after` in `next.rs` (beside what only the outcome decisions use): a stop
//! exits; a reconnect, a network change or a held port connects at once (without a
//! route: waits for one, counting nothing); a busy server waits a short random pause; a
//! failure of a tunnel that was proven connects again at once, here, without an exit;
//! any other failure exits for the init system to restart, and the next watchdog backs
//! off (`backoff`).
//!
//! An ask ends a connection after `PORT_HELD_ASKS` of them, a round after
//! `probe_failures` failed rounds in a row. A round's time-out adapts to the measured
//! round trips (`rtt::Rounds`): a round unanswered after it is a suspicion, confirmed
//! at once by another round whose verdict also asks whether the server sent anything
//! meanwhile (`heard`): heard means slow (behind the user's traffic), not dead. While
//! ssh's own keepalive asks the server at least once per interval, most of these steps
//! are looks at its outcome instead of rounds (`Conn::look`); a look that finds
//! anything else makes the step a round at once.
//!
//! Degraded is not a stage: while probing, a round where a forward's target refuses
//! (`ForwardProbe::TargetDown`, a `-L` open refusal the server explains as "connect
//! failed") still passes — the transport and the forward work, and no reconnect can
//! fix someone else's server — so the tunnel is `degraded`: ready/alive go on, the
//! status names the target, and every round re-checks it, so the first good round
//! makes it `up` again. Only a failed round (ssh, a time-out, a missing `-R` listener,
//! a local listener) counts towards `probe_failures`.
//!
//! Events are looked for in the table's order, so a stop request wins over an ssh that
//! died with it (systemd signals the whole cgroup), and ssh's exit over what it said.
//!
//! Not events of the session, done after every wake-up in every stage: the
//! `--on-change` runs (`hook`), the supervisor's keepalive (`readiness`: procd's
//! ping) and, while waiting, the status refresh, whose due times bound the sleep.

use std::net::IpAddr;
use std::ops::ControlFlow::{self, Break, Continue};
use std::process::ExitStatus;
use std::time::Instant;

use super::args::SshForward;
use super::clock::Gap;
use super::connection::Conn;
use super::netevents::{self, NetEvent, RouteNow};
use super::process::{self, SshChild};
use super::reachability::Greeting;
use super::signals::Request;
use super::ssh_errors::SshError;
use super::supervisor::{Outcome, Watchdog};
use super::wait::{self, Check, Kind, Wait};
use super::{KILL_GRACE, backoff, events, log, reachability};
use crate::duration::format_human;
use crate::state::Phase;

/// What can happen, in the order [`Session::next_event`] looks for it.
#[derive(Debug)]
pub(super) enum Event {
    /// SIGTERM/SIGINT (stop) or SIGHUP/SIGUSR1 (reconnect now).
    Signal(Request),
    /// ssh exited; its stderr says why.
    SshExited(ExitStatus),
    /// ssh said on stderr that a forward could not be set up: it will never work,
    /// even if ssh stays. (Its other lines only feed the report `SshExited` reads.)
    SshStderr(SshError),
    /// ssh's control socket is there: it is logged in and took its forwards.
    ControlSocketAppeared,
    /// No control socket within the connect budget.
    ConnectTimedOut,
    /// Time to ask the server again for the held `-R` forwards.
    HeldPortAskDue,
    /// Time for a probe round.
    ProbeRoundDue,
    /// A wait ran out: connect.
    WaitOver,
    /// A wait's check is due (the server's greeting, a route to it).
    CheckDue,
    /// A wake-up came much later than asked: the machine slept or the process was
    /// frozen (`clock`).
    ClockGap(Gap),
    /// A settled burst of network changes (`netevents`).
    NetworkChanged(Vec<NetEvent>),
    // Extension point: the next event sources each add a variant here, a check in
    // `pending_event` (or, for a file descriptor, a place in `Events::wait`'s poll
    // beside ssh's stderr and the network socket), and one arm in `handle` with its
    // method below, deciding for every stage. Not a second loop.
}

pub(super) struct Session<'a> {
    pub(super) w: &'a mut Watchdog,
    /// The ssh arguments of the next attempt, and the -R forwards taken out of them
    /// because the server held their ports: asked for through the control socket.
    pub(super) ssh_args: Vec<String>,
    pub(super) held: Vec<SshForward>,
    /// Exactly one of these is set: a connection runs, or a wait before the next.
    conn: Option<Conn>,
    wait: Option<Wait>,
    /// The server's address as the last connection had it: what "is there a route"
    /// asks about (None: no connection yet, or none that was direct TCP).
    pub(super) server_ip: Option<IpAddr>,
    /// Where ssh connects as `ssh -G` says, or why a check from here would not follow
    /// ssh's path; looked up once, before it is first needed (None: not yet).
    pub(super) destination: Option<Result<wait::Destination, String>>,
    /// Logins the server turned away in a row (see `next::BUSY_IN_A_ROW`).
    pub(super) busy_in_a_row: u32,
    /// Since when every login slot to the server is held by others (see
    /// `next::SLOT_WAIT_MAX`).
    pub(super) slots_busy_since: Option<Instant>,
}

impl<'a> Session<'a> {
    pub(super) fn new(w: &'a mut Watchdog) -> Self {
        let ssh_args = w.o.ssh.clone();
        Session {
            w,
            ssh_args,
            held: Vec::new(),
            conn: None,
            wait: None,
            server_ip: None,
            destination: None,
            busy_in_a_row: 0,
            slots_busy_since: None,
        }
    }

    /// Runs until the watchdog exits; returns its exit code.
    pub(super) fn run(&mut self) -> u8 {
        if let Break(code) = self.first_step() {
            return code;
        }
        // Bounded: next_event sleeps until a step is due; each connection ends after its
        // connect budget, PORT_HELD_ASKS asks or probe_failures failed rounds, or when
        // ssh exits, and each wait ends on its own or by an event.
        loop {
            let event = self.next_event();
            if let Break(code) = self.handle(event) {
                return code;
            }
        }
    }

    /// The dispatch: one method per event.
    fn handle(&mut self, event: Event) -> ControlFlow<u8> {
        match event {
            Event::Signal(request) => self.on_signal(request),
            Event::SshExited(status) => self.on_conn(|c, _| c.on_ssh_exited(status)),
            Event::SshStderr(error) => self.on_conn(|c, _| c.on_ssh_stderr(error)),
            Event::ControlSocketAppeared => self.on_conn(|c, w| c.on_control_socket(w)),
            Event::ConnectTimedOut => self.on_conn(|c, w| c.on_connect_timed_out(w)),
            Event::HeldPortAskDue => self.on_conn(|c, w| c.on_held_port_ask_due(w)),
            Event::ProbeRoundDue => self.on_conn(|c, w| c.on_probe_round_due(w)),
            Event::WaitOver => self.connect(),
            Event::CheckDue => self.on_check_due(),
            Event::ClockGap(gap) => self.on_clock_gap(gap),
            Event::NetworkChanged(batch) => self.on_network_changed(batch),
        }
    }

    /// No ssh runs, and what ends the wait is a route to the server.
    fn waiting_for_route(&self) -> bool {
        self.conn.is_none() && self.wait.as_ref().is_some_and(|w| w.kind == Kind::NoRoute)
    }

    /// Sleeps until an event; signals first. No periodic wake-up while nothing is due:
    /// ssh's exit arrives as SIGCHLD on the self-pipe and its messages on the stderr
    /// pipe, both in this poll (one wake-up per probe round).
    fn next_event(&mut self) -> Event {
        let mut request = self.w.signals.take();
        // Bounded: each pass returns an event or sleeps until the stage's next step
        // (at most SOCKET_LOOK_EVERY before the socket is there), a signal or ssh output.
        loop {
            if let Some(request) = request {
                return Event::Signal(request);
            }
            if let Some(event) = self.pending_event() {
                return event;
            }
            let mut wake = match (&self.conn, &self.wait) {
                (Some(c), _) => c.wake_at(),
                (None, Some(w)) => w.wake_at(),
                (None, None) => Instant::now(),
            };
            // An --on-change run past its bound is killed on time.
            if let Some(kill_at) = self.w.hook.deadline() {
                wake = wake.min(kill_at);
            }
            // procd's watchdog ping, when that is the readiness.
            if let Some(ping_at) = self.w.readiness.keepalive_due() {
                wake = wake.min(ping_at);
            }
            let sleep = wake.saturating_duration_since(Instant::now());
            let ssh = self.conn.as_ref().and_then(|c| c.ssh.stderr_fd());
            let w = &mut *self.w;
            let ssh_said;
            (request, ssh_said) = w.events.wait(&w.signals, sleep, ssh);
            if ssh_said && let Some(c) = self.conn.as_mut() {
                c.ssh.stderr_readable();
            }
        }
    }

    /// The first event after `Signal` in the table's order that has already happened.
    fn pending_event(&mut self) -> Option<Event> {
        // Not an event of the session: --on-change runs are started, reaped and killed
        // here, after every wake-up (SIGCHLD wakes the poll), never inside a handler.
        self.w.hook.poll(self.conn.as_ref().map(|c| c.ssh.pid));
        // Likewise the supervisor's keepalive (procd's ping), when one is due.
        self.w.readiness.keepalive();
        if let Some(wait) = self.wait.as_mut()
            && Instant::now() >= wait.next_refresh
        {
            wait.refreshed();
            let status = wait.status();
            let left = wait.left();
            self.w.announce_wait(left, &status);
        }
        if self.w.signals.take_child()
            && let Some(c) = self.conn.as_mut()
        {
            c.ssh.child_signalled();
        }
        if let Some(event) = self.conn.as_mut().and_then(Conn::ssh_event) {
            return Some(event);
        }
        if let Some(gap) = self.w.events.take_gap() {
            return Some(Event::ClockGap(gap));
        }
        // Without a route every change may be the one that brings it back: no settling.
        let batch = if self.waiting_for_route() {
            self.w.events.take_batch_now()
        } else {
            self.w.events.take_batch()
        };
        if let Some(batch) = batch {
            return Some(Event::NetworkChanged(batch));
        }
        if let Some(conn) = &self.conn {
            return conn.step_event(self.w);
        }
        // Neither a connection nor a wait (no handler leaves it so): connect.
        let Some(wait) = self.wait.as_ref() else {
            return Some(Event::WaitOver);
        };
        if wait.over() {
            Some(Event::WaitOver)
        } else if wait.check_due() {
            Some(Event::CheckDue)
        } else {
            None
        }
    }

    /// A connection's event for its handler; the connection's end for [`Session::after`].
    fn on_conn(
        &mut self,
        handler: impl FnOnce(&mut Conn, &mut Watchdog) -> ControlFlow<Outcome>,
    ) -> ControlFlow<u8> {
        let Some(conn) = self.conn.as_mut() else {
            return Continue(());
        };
        match handler(conn, self.w) {
            Continue(()) => Continue(()),
            Break(outcome) => self.end_connection(outcome),
        }
    }

    fn on_signal(&mut self, request: Request) -> ControlFlow<u8> {
        if self.conn.is_some() {
            return self.end_connection(match request {
                Request::Stop => Outcome::Stopped,
                Request::Reconnect => Outcome::Reconnect,
            });
        }
        match request {
            Request::Stop => {
                self.w.readiness.stopping(None);
                Break(self.w.stopped())
            }
            Request::Reconnect => {
                let left = self.wait.as_ref().and_then(Wait::left);
                log::info(format_args!(
                    "{} cut short{} (SIGHUP/SIGUSR1): reconnecting now",
                    self.wait_name(),
                    left.map_or(String::new(), |l| format!(" with {} left", format_human(l)))
                ));
                self.connect()
            }
        }
    }

    fn wait_name(&self) -> &'static str {
        match self.wait.as_ref().map(|w| w.kind) {
            Some(Kind::NoRoute) => "wait for a route",
            Some(Kind::ServerBusy) => "pause for the busy server",
            Some(Kind::Spread) | Some(Kind::LoginSlot) => "short wait",
            Some(Kind::BackOff) | None => "back-off",
        }
    }

    /// After a sleep or freeze nothing is known: forget the failures from before (they
    /// say nothing about the network the machine woke in), and prove the tunnel now,
    /// or connect now.
    fn on_clock_gap(&mut self, gap: Gap) -> ControlFlow<u8> {
        self.w.state.consecutive_failures = 0;
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.on_clock_gap(self.w, gap);
            return Continue(());
        }
        self.w.record(
            "wake",
            "reconnected",
            &format!(
                "{}; back-off reset, reconnecting now",
                gap.describe().trim_end_matches(": probing now")
            ),
        );
        self.connect()
    }

    fn on_network_changed(&mut self, batch: Vec<NetEvent>) -> ControlFlow<u8> {
        if let Some(conn) = self.conn.as_mut() {
            return match conn.on_network_changed(self.w, batch) {
                Continue(()) => Continue(()),
                Break(outcome) => self.end_connection(outcome),
            };
        }
        let Some(wait) = self.wait.as_mut() else {
            return Continue(());
        };
        match (wait.kind, &wait.check) {
            // Removals cannot bring the server back; a short wait ends soon anyway.
            _ if !events::may_bring_back(&batch) => Continue(()),
            (Kind::ServerBusy | Kind::Spread | Kind::LoginSlot, _) => Continue(()),
            (Kind::NoRoute, _) | (Kind::BackOff, Some(_)) => {
                // Checked at once: a route is one question to the kernel, a greeting
                // one TCP connect.
                wait.next_check = Instant::now();
                let what = match wait.kind {
                    Kind::NoRoute => "looking for a route to the server now",
                    _ => "checking now whether the server greets",
                };
                self.w.record(
                    "network",
                    "probed",
                    &format!("network changed ({} event(s)): {what}", batch.len()),
                );
                self.on_check_due()
            }
            (Kind::BackOff, None) => {
                let left = wait.left().unwrap_or_default();
                self.w.record(
                    "network",
                    "reconnected",
                    &format!(
                        "network changed ({} event(s)): back-off cut short with {} left, reconnecting now",
                        batch.len(),
                        format_human(left)
                    ),
                );
                self.connect()
            }
        }
    }

    /// A wait's check: the server's greeting, or a route to it.
    fn on_check_due(&mut self) -> ControlFlow<u8> {
        let Some(wait) = self.wait.as_mut() else {
            return Continue(());
        };
        wait.check_started();
        match wait.check {
            Some(Check::Route(ip)) => match route_to(ip) {
                RouteNow::NoRoute => Continue(()),
                found => {
                    let how = match found {
                        RouteNow::Via(_) => "the server has a route again",
                        _ => "the route lookup gives no answer",
                    };
                    log::info(format_args!(
                        "{how} ({ip}, after {}): connecting",
                        format_human(wait.started.elapsed())
                    ));
                    self.connect()
                }
            },
            Some(Check::Greeting(_)) => {
                let addrs = wait.server_addresses();
                let timeout = wait.left().map_or(reachability::CHECK_TIMEOUT, |left| {
                    reachability::CHECK_TIMEOUT.min(left)
                });
                let found = reachability::server_greets(&addrs, wait.connect_within(), timeout);
                wait.greeting_found(found);
                if found != Greeting::Greets {
                    return Continue(());
                }
                let Some(Check::Greeting((host, port, _))) = &wait.check else {
                    return Continue(());
                };
                let spread = backoff::first_attempt_spread(backoff::jitter_seed());
                log::info(format_args!(
                    "server reachable again: reconnecting in {} ({host} port {port} answered with its SSH greeting after {}; the random delay keeps a crowd of tunnels from logging in at once)",
                    format_human(spread),
                    format_human(wait.started.elapsed())
                ));
                self.w
                    .readiness
                    .status("server reachable again: reconnecting");
                self.enter_wait(Wait::new(
                    Kind::Spread,
                    "the server greets again".into(),
                    Some(spread),
                ));
                Continue(())
            }
            None => Continue(()),
        }
    }

    /// The first stage: connect, or back off after the failures of earlier watchdogs
    /// (the state file's row).
    fn first_step(&mut self) -> ControlFlow<u8> {
        let n = self.w.state.consecutive_failures;
        let nominal = backoff::wait_before_connect(
            n,
            self.w.state.proven,
            self.w.o.backoff_initial,
            self.w.o.backoff_max,
        );
        if nominal.is_zero() {
            if n > 0 {
                log::info(format_args!(
                    "reconnecting at once: the tunnel was up before it failed ({n} failure(s) in a row)"
                ));
            }
            return self.connect();
        }
        let length = backoff::with_jitter(nominal, backoff::jitter_seed());
        let reason = if self.w.state.last_error.is_empty() {
            "earlier attempts failed".to_string()
        } else {
            self.w.state.last_error.clone()
        };
        log::warn(format_args!(
            "backing off {} before connecting (wait_ms={} nominal_ms={}, {n} failures in a row): {reason}",
            format_human(length),
            length.as_millis() as u64,
            nominal.as_millis() as u64
        ));
        let mut wait = Wait::new(Kind::BackOff, reason, Some(length));
        if let Some(target) = self.greeting_target() {
            // Another ssh would fail as the last did until the server greets: the wait
            // lasts until a check sees the greeting, however short the back-off; ssh
            // still starts once `backoff_max` ran out too, in case the check cannot
            // see what ssh sees.
            let latest = length.max(self.w.o.backoff_max);
            log::info(format_args!(
                "waiting for the server to greet: checking {} port {} every {} ({} while it refuses, for the first {}; {} while no answer comes), ssh starts when it answers (at the latest in {})",
                target.0,
                target.1,
                format_human(reachability::CHECK_EVERY),
                format_human(reachability::CHECK_AFTER_REFUSED),
                format_human(reachability::REFUSED_QUICKLY_FOR),
                format_human(reachability::SILENT_CONNECT_WITHIN),
                format_human(latest)
            ));
            wait = Wait::new(Kind::BackOff, wait.reason, Some(latest))
                .checking(Check::Greeting(target));
        }
        self.enter_wait(wait);
        Continue(())
    }

    /// No ssh runs until `wait` is over: the state file and the supervisor say so.
    pub(super) fn enter_wait(&mut self, wait: Wait) {
        // A look for a login slot comes every few hundred milliseconds while a crowd
        // logs in: the state file (flash, on a router) is written for the first only.
        let again = wait.kind == Kind::LoginSlot && self.w.state.phase == Phase::BackingOff;
        self.w.set_phase(Phase::BackingOff, &wait.reason);
        self.w.state.backoff_until = wait
            .left()
            .map_or(0, |left| log::now_secs() + left.as_secs());
        self.w.state.ssh_pid = 0;
        if !again {
            self.w.save();
        }
        self.wait = Some(wait);
    }

    /// Starts ssh, unless the server has no route from here (then waits for one).
    pub(super) fn connect(&mut self) -> ControlFlow<u8> {
        self.wait = None;
        self.w.state.backoff_until = 0;
        if let Some(refusal) = self.w.refuse_client() {
            return self.after(refusal, None);
        }
        if let Some(ip) = self.route_target()
            && route_to(ip) == RouteNow::NoRoute
        {
            return self.wait_for_route(ip);
        }
        let Ok(slot) = self.take_login_slot() else {
            return Continue(());
        };
        // A socket left by a killed ssh would make the new one refuse to listen.
        let _ = std::fs::remove_file(&self.w.ctl);
        let argv = process::with_control_master(
            &self.ssh_args,
            &self.w.ctl,
            process::keepalive_count_for(&self.ssh_args, self.w.slow_patience()),
        );
        self.w.state.restarts += 1;
        self.w.set_phase(Phase::Connecting, "starting ssh");
        let attempt = self.w.state.consecutive_failures + 1;
        let mut ssh = match SshChild::spawn(&argv) {
            Ok(s) => s,
            Err(e) => return self.after(Outcome::failure(e, None), None),
        };
        ssh.asked_ports = self
            .held
            .iter()
            .filter_map(|f| match f {
                SshForward::Remote { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        self.w.state.ssh_pid = ssh.pid;
        self.w.save();
        log::info(format_args!(
            "connecting (attempt {attempt}): ssh pid {}",
            ssh.pid
        ));
        let status = format!("connecting (attempt {attempt})");
        if self.w.readiness.is_ready() {
            // Reconnecting inside this watchdog: the supervisor's watchdog timer
            // (WatchdogSec=, longer than one connect budget) is fed here and once more
            // when ssh is logged in, so a slow connect is not taken for a hang.
            self.w.readiness.alive(&status);
        } else {
            self.w.readiness.status(&status);
        }
        let keepalive = process::keepalive_interval(&self.ssh_args);
        let mut conn = Conn::new(self.w, ssh, &self.held, keepalive);
        conn.login_slot = slot;
        self.conn = Some(conn);
        Continue(())
    }

    /// The connection is over: ssh ends, and the outcome decides what comes next.
    fn end_connection(&mut self, outcome: Outcome) -> ControlFlow<u8> {
        let Some(mut conn) = self.conn.take() else {
            return Continue(());
        };
        if matches!(outcome, Outcome::Stopped) {
            self.w.readiness.stopping(Some("stopping"));
        }
        conn.ssh.terminate(KILL_GRACE);
        let _ = std::fs::remove_file(&self.w.ctl);
        if let Some(facts) = &conn.facts {
            self.server_ip = Some(facts.server);
        }
        self.after(outcome, conn.up_for())
    }

    /// Where to check for the server's greeting during a back-off: only after a failure
    /// where ssh got none (after auth, probe or forward failures the server greets and a
    /// retry would not fare better for it), and only where a TCP connect from here takes
    /// ssh's path.
    fn greeting_target(&mut self) -> Option<wait::Destination> {
        if !self.w.state.no_greeting {
            return None;
        }
        match self.destination() {
            Ok(target) => Some(target),
            Err(why) => {
                log::info(format_args!(
                    "not checking whether the server answers during the back-off: {why}"
                ));
                None
            }
        }
    }
}

/// The route to `ip` now.
pub(super) fn route_to(ip: IpAddr) -> RouteNow {
    netevents::lookup_route(ip, Instant::now() + netevents::LOOKUP_DEADLINE)
}
