//! One ssh connection, from spawn to its outcome: what lives as long as the
//! connection (ssh, the prober, the adaptive round timing, the held `-R` forwards)
//! and the session's handlers for the events that only a running connection has.
//! The session (`session.rs`) owns the loop and the dispatch; a handler here gets
//! the watchdog's shared state as `w` and ends the connection with an [`Outcome`].
//!
//! The connection's stage ([`Stage`]) follows from its fields: no control socket yet
//! (`socket_seen`), held `-R` forwards not granted yet (`missing`), or probing.

use std::ops::ControlFlow::{self, Break, Continue};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::args::SshForward;
use super::clock::Gap;
use super::login_slot::LoginSlot;
use super::netevents::{self, ConnFacts, NetEvent, Reaction};
use super::process::SshChild;
use super::session::Event;
use super::ssh_errors::SshError;
use super::supervisor::{Outcome, Watchdog};
use super::{CONFIRM_PAUSE, PORT_HELD_ASK_EVERY, PORT_HELD_ASKS, events, heard, log, probe, rtt};
use crate::duration::format_human;
use crate::state::{ForwardHealth, Phase};

mod look;
use look::LookNext;

/// ssh creates its control socket without telling anyone: look this often.
const SOCKET_LOOK_EVERY: Duration = Duration::from_millis(50);

/// ssh sends its `-R` requests as the control socket appears; the server gets this
/// long to answer them before the first ask or probe round: four of the connection's
/// round trips (the kernel's measure) and a margin for a busy server, within these
/// bounds; the longest when the round trip cannot be told.
const FIRST_STEP_AFTER_SOCKET: (Duration, Duration) =
    (Duration::from_millis(50), Duration::from_millis(300));

/// How long the kernel's reading of ssh's connection may take (asked when a round went
/// unanswered, and once after login). The kernel answers the exact lookup inside the
/// `send`, so this bounds only a starved machine's wait; an unknown answer counts as
/// silence on the confirming round (a restart).
#[cfg(target_os = "linux")]
const HEARD_DEADLINE: Duration = Duration::from_secs(1);

/// A running connection's stage, derived from its fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stage {
    /// ssh runs; its control socket is not there yet.
    WaitingForSocket,
    /// The control socket is there; some held `-R` forwards are not granted yet, and
    /// no probe round runs until they are.
    AskingForHeldPorts,
    /// Every forward is in place: probe rounds.
    Probing,
}

pub(super) struct Conn {
    pub(super) ssh: SshChild,
    prober: probe::Prober,
    spawned: Instant,
    socket_seen: Option<Instant>,
    /// When the stage's next step is due: the next ask for held ports, or the next
    /// probe round.
    next_step: Instant,
    /// Probe rounds failed in a row.
    failed_rounds: u32,
    /// The first and the last good round (or look) of this connection.
    up_since: Option<Instant>,
    last_ok: Option<Instant>,
    /// The last good round: looks stand in for rounds only so long after it.
    last_round: Option<Instant>,
    /// Held `-R` forwards not granted yet.
    missing: Vec<SshForward>,
    /// Asks for the held forwards so far.
    asks: u32,
    /// The adaptive probe timing of this connection.
    rounds: rtt::Rounds,
    /// When the first unanswered round of the current suspicion began.
    suspect_since: Option<Instant>,
    /// Slow verdicts were logged (once per run of them).
    slow_said: bool,
    /// A clock gap was seen and no round passed since: the connection's state is
    /// unknown, so one timed-out round is enough to reconnect.
    after_gap: bool,
    /// ssh's connection and its route, learnt when the control socket appears (None:
    /// not yet, or no direct TCP connection: network events then only probe).
    pub(super) facts: Option<ConnFacts>,
    /// ssh's TCP connection as the kernel has it: ssh's address and port, the server's.
    tcp: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Held while ssh logs in, so a crowd of watchdogs on this machine does not log in
    /// to one server at once (`login_slot`); given back once the control socket is there.
    pub(super) login_slot: Option<LoginSlot>,
    /// ssh's `ServerAliveInterval`, when it is no longer than the probe interval: ssh's
    /// keepalive then asks the server at least once per interval, and looks at its
    /// outcome stand in for most rounds ([`Conn::look`]).
    keepalive: Option<Duration>,
    /// The next step is a look, not a round.
    next_is_look: bool,
    /// The kernel's readings of ssh's connection, through one socket kept open.
    #[cfg(target_os = "linux")]
    diag: Option<heard::Diag>,
}

impl Conn {
    /// `keepalive`: ssh's `ServerAliveInterval`, if its arguments set one.
    pub(super) fn new(
        w: &mut Watchdog,
        ssh: SshChild,
        held: &[SshForward],
        keepalive: Option<Duration>,
    ) -> Conn {
        let prober = probe::Prober::with_descriptions(
            w.ctl.clone(),
            w.o.forwards.clone(),
            w.forward_specs.clone(),
            w.o.probe_timeout,
        );
        let spawned = Instant::now();
        // A new connection: nothing proven on it yet; held -R ports are port-held.
        for (index, forward) in w.o.forwards.clone().iter().enumerate() {
            let health = if held.contains(forward) {
                ForwardHealth::PortHeld
            } else {
                ForwardHealth::Unproven
            };
            w.set_forward(index, health, 0);
        }
        let rounds = rtt::Rounds::new(w.o.probe_timeout, w.o.probe_failures);
        Conn {
            ssh,
            prober,
            spawned,
            socket_seen: None,
            next_step: spawned,
            failed_rounds: 0,
            up_since: None,
            last_ok: None,
            last_round: None,
            missing: held.to_vec(),
            asks: 0,
            rounds,
            suspect_since: None,
            slow_said: false,
            after_gap: false,
            facts: None,
            tcp: None,
            login_slot: None,
            keepalive: keepalive.filter(|k| *k <= w.interval),
            next_is_look: false,
            #[cfg(target_os = "linux")]
            diag: None,
        }
    }

    /// How long the connection was up: first to last good round.
    pub(super) fn up_for(&self) -> Option<Duration> {
        Some(self.last_ok?.saturating_duration_since(self.up_since?))
    }

    pub(super) fn stage(&self) -> Stage {
        match (self.socket_seen, self.missing.is_empty()) {
            (None, _) => Stage::WaitingForSocket,
            (Some(_), false) => Stage::AskingForHeldPorts,
            (Some(_), true) => Stage::Probing,
        }
    }

    /// When the stage's next step is due (the poll sleeps until then at most).
    pub(super) fn wake_at(&self) -> Instant {
        match self.stage() {
            Stage::WaitingForSocket => Instant::now() + SOCKET_LOOK_EVERY,
            Stage::AskingForHeldPorts | Stage::Probing => self.next_step,
        }
    }

    /// What ssh did: its exit first, then what it said (in the table's order).
    pub(super) fn ssh_event(&mut self) -> Option<Event> {
        if let Some(status) = self.ssh.news() {
            return Some(Event::SshExited(status));
        }
        self.ssh
            .report
            .errors
            .iter()
            .find(|e| {
                matches!(
                    e,
                    SshError::RemotePortRefused { .. } | SshError::LocalPortBusy { .. }
                )
            })
            .map(|error| Event::SshStderr(error.clone()))
    }

    /// The stage's step, when it is due.
    pub(super) fn step_event(&self, w: &Watchdog) -> Option<Event> {
        let now = Instant::now();
        match self.stage() {
            Stage::WaitingForSocket if w.ctl.exists() => Some(Event::ControlSocketAppeared),
            Stage::WaitingForSocket if now - self.spawned > w.connect_budget() => {
                Some(Event::ConnectTimedOut)
            }
            Stage::AskingForHeldPorts if now >= self.next_step => Some(Event::HeldPortAskDue),
            Stage::Probing if now >= self.next_step => Some(Event::ProbeRoundDue),
            Stage::WaitingForSocket | Stage::AskingForHeldPorts | Stage::Probing => None,
        }
    }

    pub(super) fn on_ssh_exited(&mut self, status: ExitStatus) -> ControlFlow<Outcome> {
        self.ssh.settle_stderr(Duration::from_secs(1));
        let report = &self.ssh.report;
        let permanent = report.errors.iter().any(|e| e.is_permanent());
        let no_greeting =
            !report.errors.is_empty() && report.errors.iter().all(|e| e.is_no_greeting());
        let port_held = report.errors.iter().find_map(|e| match e {
            SshError::RemotePortRefused { port } => Some(*port),
            _ => None,
        });
        let reason = match report.errors.first() {
            Some(e) => e.explain(),
            None if !report.last_line.is_empty() => {
                format!("ssh exited ({status}): {}", report.last_line)
            }
            None => format!("ssh exited ({status})"),
        };
        let unreachable = report
            .errors
            .iter()
            .any(|e| matches!(e, SshError::Unreachable));
        let server_busy = !permanent && report.errors.iter().any(|e| e.is_server_busy());
        Break(Outcome::Failed {
            reason,
            permanent,
            no_greeting,
            unreachable,
            server_busy,
            port_held,
        })
    }

    pub(super) fn on_ssh_stderr(&mut self, error: SshError) -> ControlFlow<Outcome> {
        let port_held = match error {
            SshError::RemotePortRefused { port } => Some(port),
            _ => None,
        };
        Break(Outcome::failure(error.explain(), port_held))
    }

    pub(super) fn on_control_socket(&mut self, w: &mut Watchdog) -> ControlFlow<Outcome> {
        if w.readiness.is_ready() {
            // Logged in again: progress, and the first round comes within a timeout.
            w.readiness.alive("logged in, proving the forwards");
        }
        let now = Instant::now();
        self.socket_seen = Some(now);
        // Logged in: the next watchdog of a crowd may log in now.
        self.login_slot = None;
        self.learn_connection();
        self.next_step = now + self.first_step_delay();
        Continue(())
    }

    /// Which TCP connection is ssh's to the server, and what the routing table says of it.
    fn learn_connection(&mut self) {
        let conn = events::ssh_connection(self.ssh.pid);
        let learnt = conn.and_then(|(local, server)| learn_facts(local, server));
        self.tcp = learnt.as_ref().map(|(_, tcp)| *tcp).or(conn);
        self.facts = learnt.map(|(facts, _)| facts);
    }

    /// How long after login the first ask or probe round comes (see
    /// [`FIRST_STEP_AFTER_SOCKET`]).
    fn first_step_delay(&mut self) -> Duration {
        let (least, most) = FIRST_STEP_AFTER_SOCKET;
        match self.tcp_reading() {
            Some(reading) => (reading.rtt * 4 + least).min(most),
            None => most,
        }
    }

    /// What the kernel says of ssh's connection now (None: not known here).
    fn tcp_reading(&mut self) -> Option<heard::Reading> {
        let (local, server) = self.tcp?;
        #[cfg(target_os = "linux")]
        {
            if self.diag.is_none() {
                self.diag = heard::Diag::open();
            }
            self.diag
                .as_mut()?
                .read(local, server, Instant::now() + HEARD_DEADLINE)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (local, server);
            None
        }
    }

    /// After a sleep or freeze nothing is known: prove the tunnel now, and forget the
    /// failures from before (they say nothing about the network the machine woke in).
    pub(super) fn on_clock_gap(&mut self, w: &mut Watchdog, gap: Gap) -> ControlFlow<Outcome> {
        let action = match self.stage() {
            Stage::WaitingForSocket => "nothing-to-do",
            Stage::AskingForHeldPorts | Stage::Probing => {
                self.next_step = Instant::now();
                self.next_is_look = false;
                self.after_gap = true;
                "probed"
            }
        };
        let line = match action {
            "probed" => gap.describe(),
            _ => format!(
                "{} (ssh is still connecting: nothing to do)",
                gap.describe()
            ),
        };
        w.record("wake", action, &line);
        Continue(())
    }

    pub(super) fn on_network_changed(
        &mut self,
        w: &mut Watchdog,
        batch: Vec<NetEvent>,
    ) -> ControlFlow<Outcome> {
        let reaction = match (&self.facts, self.stage()) {
            // ssh is still connecting: it connects on the network as it is now, or
            // its connect budget runs out.
            (_, Stage::WaitingForSocket) => Reaction::Nothing,
            (Some(facts), _) => netevents::decide(facts, &batch, || {
                netevents::lookup_route(facts.server, Instant::now() + netevents::LOOKUP_DEADLINE)
            }),
            // Nothing to judge against: a round says whether the tunnel still works.
            (None, _) => Reaction::ProbeNow,
        };
        match reaction {
            Reaction::Nothing => Continue(()), // not this tunnel's business: no log, no write
            Reaction::ProbeNow => {
                self.next_step = Instant::now();
                self.next_is_look = false;
                let what = match self.stage() {
                    Stage::AskingForHeldPorts => "asking for the held forwards now",
                    _ => "probing now",
                };
                w.record(
                    "network",
                    "probed",
                    &format!(
                        "network changed ({}): {what}",
                        netevents::describe_batch(self.facts.as_ref(), &batch)
                    ),
                );
                Continue(())
            }
            Reaction::Reconnect => {
                let why = match &self.facts {
                    Some(f) if batch.iter().any(|e| matches!(e, NetEvent::AddrRemoved { addr, .. } if Some(*addr) == f.local)) => {
                        format!("ssh's local address {} is gone", f.local.map_or(String::new(), |a| a.to_string()))
                    }
                    _ => "the route to the server changed".to_string(),
                };
                w.record(
                    "network",
                    "reconnected",
                    &format!("network changed: {why}; reconnecting now, without back-off"),
                );
                Break(Outcome::NetworkChanged)
            }
        }
    }

    pub(super) fn on_connect_timed_out(&mut self, w: &mut Watchdog) -> ControlFlow<Outcome> {
        let budget = format_human(w.connect_budget());
        Break(Outcome::failure(
            format!("ssh did not connect within {budget}"),
            None,
        ))
    }

    /// One ask for each held forward not granted yet, through the control socket.
    pub(super) fn on_held_port_ask_due(&mut self, w: &mut Watchdog) -> ControlFlow<Outcome> {
        self.asks += 1;
        let asks = self.asks;
        let mut refusal = String::new();
        let mut granted = Vec::new();
        self.missing
            .retain(|forward| match w.ask_for_forward(forward) {
                Ok(()) => {
                    log::info(format_args!(
                        "the server granted {} at ask {asks}",
                        forward.describe()
                    ));
                    granted.push(forward.clone());
                    false
                }
                Err(why) => {
                    refusal = format!("{}: {why}", forward.describe());
                    true
                }
            });
        for forward in granted {
            if let Some(index) = w.o.forwards.iter().position(|f| *f == forward) {
                w.set_forward(index, ForwardHealth::Unproven, 0);
            }
        }
        if self.missing.is_empty() {
            self.next_step = Instant::now();
        } else if asks >= PORT_HELD_ASKS {
            let reason = format!(
                "the server still refuses {refusal} after {asks} asks over {}: another process may hold the port",
                format_human(self.spawned.elapsed())
            );
            return Break(Outcome::failure(reason, None));
        } else {
            self.next_step = Instant::now() + PORT_HELD_ASK_EVERY;
            w.readiness.alive(&format!(
                "waiting for the server to release a remote port ({refusal})"
            ));
        }
        Continue(())
    }

    pub(super) fn on_probe_round_due(&mut self, w: &mut Watchdog) -> ControlFlow<Outcome> {
        if std::mem::take(&mut self.next_is_look) {
            match self.look(w) {
                LookNext::LookAt(next) => {
                    self.next_step = next;
                    self.next_is_look = true;
                    return Continue(());
                }
                LookNext::Unanswered { asked_at, why } => {
                    return self.on_round_timed_out(w, asked_at, why);
                }
                LookNext::Round => {}
            }
        }
        let round_start = Instant::now();
        // What ssh logged up to now belongs to earlier rounds (the loop read it just
        // before this event).
        self.ssh.report.open_failures.clear();
        let round = self.prober.round();
        // ssh logs an open failure before it answers the channel request: a round
        // with every forward up has none to read.
        if !round.as_ref().is_ok_and(probe::RoundOk::every_forward_up) {
            self.ssh.drain_stderr();
        }
        match round.and_then(|ok| self.judge(w, ok)) {
            Ok((ok, down)) => {
                // The first round of a connection pays one-time costs (sshd's first
                // channel, the target's first accept: ~1 s seen here against a few ms
                // later); as RTO's first sample it would keep the time-out near 3 s
                // for minutes (SRTT forgets by ⅞ per round).
                if self.up_since.is_none() {
                    self.rounds.alive();
                } else {
                    self.rounds.answered(ok.latency);
                }
                (self.suspect_since, self.slow_said, self.after_gap) = (None, false, false);
                self.prober.set_timeout(self.rounds.round_timeout());
                self.on_round_passed(w, round_start, ok, down)
            }
            Err(error) if self.prober.timed_out => {
                return self.on_round_timed_out(w, round_start, error.reason);
            }
            Err(error) => {
                if let Some(index) = error.forward {
                    w.set_forward(index, ForwardHealth::Failed, 0);
                    w.save();
                }
                let reason = error.reason;
                self.failed_rounds += 1;
                let failed_rounds = self.failed_rounds;
                log::warn(format_args!(
                    "probe failed ({failed_rounds}/{}): {reason}",
                    w.o.probe_failures
                ));
                if failed_rounds >= w.o.probe_failures {
                    let reason =
                        format!("{failed_rounds} probe rounds failed in a row, last: {reason}");
                    return Break(Outcome::failure(reason, None));
                }
                w.readiness.alive(&format!(
                    "probe failed ({failed_rounds}/{}), checking again",
                    w.o.probe_failures
                ));
            }
        }
        // Only a good round waits the interval; a failed one is confirmed (or cleared)
        // after a short pause, so detection does not take failures × interval (and
        // never takes longer than with the full interval).
        self.next_step = if self.failed_rounds == 0 {
            round_start + w.interval
        } else {
            (round_start + w.interval).min(Instant::now() + CONFIRM_PAUSE)
        };
        self.next_is_look = self.failed_rounds == 0 && self.keepalive.is_some();
        Continue(())
    }

    /// Each forward's health from a round that passed the transport checks; a `-L` open
    /// refusal is the target's (degraded) unless ssh logged that the server forbids the
    /// forward (a failure). Returns the round and the down targets' descriptions.
    fn judge(
        &mut self,
        w: &Watchdog,
        ok: probe::RoundOk,
    ) -> Result<(probe::RoundOk, Vec<String>), probe::RoundError> {
        let reasons = std::mem::take(&mut self.ssh.report.open_failures);
        let mut down = Vec::new();
        for (index, (forward, found)) in w.o.forwards.iter().zip(&ok.forwards).enumerate() {
            let target = match forward {
                super::args::SshForward::Local {
                    host, host_port, ..
                }
                | super::args::SshForward::Remote {
                    host, host_port, ..
                } => format!("{host}:{host_port}"),
                _ => String::new(),
            };
            match found {
                probe::ForwardProbe::OpenRefused { .. } => {
                    if let Some(why) = reasons.iter().find(|r| !r.starts_with("connect failed")) {
                        return Err(probe::RoundError {
                            reason: format!(
                                "{}: the server refused the channel: {why}",
                                forward.describe()
                            ),
                            forward: Some(index),
                        });
                    }
                    let why = reasons
                        .iter()
                        .find_map(|r| r.strip_prefix("connect failed: "))
                        .filter(|r| !r.contains("refused"))
                        .map(|r| format!("target unreachable from the server ({target}: {r})"))
                        .unwrap_or_else(|| format!("target refuses ({target})"));
                    down.push(format!("{}: {why}", forward.describe()));
                }
                probe::ForwardProbe::TargetDown { .. } => {
                    down.push(format!("{}: target refuses ({target})", forward.describe()));
                }
                probe::ForwardProbe::Up { .. }
                | probe::ForwardProbe::Unprobed
                | probe::ForwardProbe::Resting => {}
            }
        }
        Ok((ok, down))
    }

    /// A round with no answer within its (adaptive) time-out: suspect, slow or dead,
    /// as `rtt::Rounds` rules from whether the server was heard meanwhile.
    fn on_round_timed_out(
        &mut self,
        w: &mut Watchdog,
        round_start: Instant,
        reason: String,
    ) -> ControlFlow<Outcome> {
        let since = *self.suspect_since.get_or_insert(round_start);
        let mut reading = self.tcp_reading();
        if reading.is_none() {
            // The connection learnt at login may not have been the server's (or the
            // kernel had none by that name): look again, once per silent round.
            self.learn_connection();
            reading = self.tcp_reading();
        }
        let heard = heard::judge(reading, since.elapsed());
        let read = reading.map_or_else(String::new, |r| format!("; {r}"));
        let verdict = if self.after_gap {
            // After a sleep or freeze a silent round is reason enough: the flow may be
            // gone (NAT, the server's session), and a reconnect is cheap.
            rtt::Verdict::Dead
        } else {
            self.rounds.unanswered(heard)
        };
        match verdict {
            rtt::Verdict::Confirm(next) => {
                log::warn(format_args!(
                    "probe unanswered ({reason}); confirming at once with a {} round (server heard: {heard:?}{read})",
                    format_human(next)
                ));
                // A round ended and its verdict is taken: this process runs its loop, so
                // the supervisor's watchdog is fed, as after any round. Its period
                // (WatchdogSec=) covers one interval and one round; confirming rounds,
                // each up to the probe timeout, come on top, and without this ping a
                // timeout longer than the interval would let the supervisor kill a
                // watchdog in the middle of confirming.
                w.readiness.alive(&format!(
                    "probe unanswered, confirming with a {} round",
                    format_human(next)
                ));
                self.prober.set_timeout(next);
                self.next_step = Instant::now();
            }
            rtt::Verdict::Slow => {
                if !self.slow_said {
                    self.slow_said = true;
                    log::info(format_args!(
                        "probes wait behind traffic (the server keeps sending, {reason}): slow, not dead"
                    ));
                }
                // The server talks and this process does its job: keep the
                // supervisor's watchdog fed, or it would kill a busy tunnel.
                w.readiness
                    .alive("up, probes slow behind traffic (the server keeps sending)");
                self.suspect_since = None;
                self.prober.set_timeout(self.rounds.round_timeout());
                self.next_step = round_start + w.interval;
            }
            rtt::Verdict::Dead => {
                let why = if self.after_gap {
                    "after a sleep or freeze".to_string()
                } else {
                    format!("the server silent meanwhile{read}")
                };
                let reason = format!(
                    "no answer to the probes for {} ({why}), last: {reason}",
                    format_human(since.elapsed())
                );
                return Break(Outcome::failure(reason, None));
            }
        }
        Continue(())
    }

    /// A good round: "ready" the first time, else "alive"; the state file; the
    /// back-off reset once the tunnel has been up longer than `backoff_max`. `down`:
    /// the forwards whose target refuses (the tunnel is degraded).
    fn on_round_passed(
        &mut self,
        w: &mut Watchdog,
        round_start: Instant,
        ok: probe::RoundOk,
        down: Vec<String>,
    ) {
        self.failed_rounds = 0;
        let before = w.state.clone();
        if self.up_since.is_none() {
            // First proof for this ssh connection (also after a SIGUSR1 reconnect):
            // "up since" starts here.
            w.state.connected_since = log::now_secs();
        }
        let since = *self.up_since.get_or_insert(round_start);
        self.last_ok = Some(round_start);
        self.last_round = Some(round_start);
        w.state.last_probe_ok = log::now_secs();
        w.state.last_probe_ms = ok.latency.as_millis() as u64;
        for (index, found) in ok.forwards.iter().enumerate() {
            // 1 ms at least: 0 means "no probe yet" in the state file.
            let ms = |d: &Duration| (d.as_millis() as u64).max(1);
            let (health, latency) = match found {
                probe::ForwardProbe::Up { latency } => (ForwardHealth::Up, ms(latency)),
                probe::ForwardProbe::TargetDown { latency }
                | probe::ForwardProbe::OpenRefused { latency } => {
                    (ForwardHealth::TargetDown, ms(latency))
                }
                probe::ForwardProbe::Unprobed => (ForwardHealth::Unproven, 0),
                // What its last check found stands.
                probe::ForwardProbe::Resting => continue,
            };
            w.set_forward(index, health, latency);
        }
        if down.is_empty() {
            // The next time a target goes down, ssh's words about it are news again.
            self.ssh.report.channel_lines.clear();
        }
        let (phase, status) = if down.is_empty() {
            (
                Phase::Up,
                up_status(since.elapsed(), ok.latency.as_millis() as u64),
            )
        } else {
            (Phase::Degraded, format!("degraded: {}", down.join("; ")))
        };
        let reason = if down.is_empty() {
            "every forward carries data".to_string()
        } else {
            down.join("; ")
        };
        if !w.readiness.is_ready() {
            // Ready once the transport and every forward channel are proven, even
            // with a target down: the tunnel does what it can, and a start must not
            // wait for someone else's server (docs/design.md).
            log::info(format_args!(
                "{}: {} forward(s) proven end to end in {} ms",
                phase,
                w.o.forwards.len(),
                ok.latency.as_millis() as u64
            ));
            if phase == Phase::Degraded {
                log::warn(format_args!(
                    "degraded: {reason}; not restarting ssh, a reconnect cannot help a target that refuses"
                ));
            }
            w.set_phase(phase, &reason);
        } else {
            if w.state.phase != phase {
                match phase {
                    Phase::Degraded => log::warn(format_args!(
                        "degraded: {reason}; not restarting ssh, a reconnect cannot help a target that refuses"
                    )),
                    _ if w.state.phase == Phase::Degraded => {
                        log::info("every target answers again: up")
                    }
                    _ => log::info("probes pass again"),
                }
                w.set_phase(phase, &reason);
            }
        }
        if w.state.consecutive_failures > 0 && since.elapsed() > w.o.backoff_max {
            log::info(format_args!(
                "up longer than {}: back-off reset",
                format_human(w.o.backoff_max)
            ));
            w.state.consecutive_failures = 0;
            w.state.last_error.clear();
        }
        w.save_after_probe(before);
        // After the state file: once the supervisor hears "ready", `tunnelctl status`
        // already says so.
        if w.readiness.is_ready() {
            w.readiness.alive(&status);
        } else {
            w.readiness.ready(&status);
        }
    }
}

/// The status of a tunnel proven by its last round or look.
fn up_status(up_for: Duration, probe_ms: u64) -> String {
    format!("up {}, probe {probe_ms} ms", format_human(up_for))
}

/// ssh's local and server address (what its socket really uses) and the route to the
/// server now: what a network change is judged against; with the server's address as
/// finally read.
///
/// /proc/net/tcp writes each address as a number in the byte order of the kernel: ours
/// on a real machine, the other one under a user-mode emulator of the other byte order
/// (QEMU running a big-endian build on x86), where both addresses read reversed. The
/// route to a reversed server names another source; when the route to the pair turned
/// back names its local address, that pair is the true one. (With BindAddress the route's
/// source differs anyway; the second lookup then finds nothing either.)
fn learn_facts(
    local: std::net::SocketAddr,
    server: std::net::SocketAddr,
) -> Option<(ConnFacts, (std::net::SocketAddr, std::net::SocketAddr))> {
    use std::net::SocketAddr;
    let route_to =
        |ip| match netevents::lookup_route(ip, Instant::now() + netevents::LOOKUP_DEADLINE) {
            netevents::RouteNow::Via(route) => Some(route),
            netevents::RouteNow::NoRoute | netevents::RouteNow::Unknown => None,
        };
    let facts = |local: SocketAddr, server: SocketAddr, route| {
        let facts = ConnFacts {
            server: server.ip(),
            local: Some(local.ip()),
            route,
        };
        (facts, (local, server))
    };
    let route = route_to(server.ip());
    if route.as_ref().is_none_or(|r| r.prefsrc != Some(local.ip())) {
        let (local2, server2) = (
            events::word_swapped(local.ip()),
            events::word_swapped(server.ip()),
        );
        if let Some(route2) = route_to(server2).filter(|r| r.prefsrc == Some(local2)) {
            let local2 = SocketAddr::new(local2, local.port());
            let server2 = SocketAddr::new(server2, server.port());
            return Some(facts(local2, server2, route2));
        }
    }
    route.map(|route| facts(local, server, route))
}
