//! The watchdog across connections: back-off, connect, and what each connection's
//! outcome means for the next (a held `-R` port, a reconnect, a stop, a failure).
//! One connection's life is a [`Session`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::args::{self, Options, SshForward};
use super::events::{self, Events};
use super::process::{self, SshChild};
use super::session::Session;
use super::signals::{Request, Signals};
use super::statedir::write_state;
use super::{
    BACKOFF_REFRESH, EXIT_FAILED, EXIT_PERMANENT, EXIT_STOPPED, KILL_GRACE, PORT_HELD_ASK_EVERY,
    backoff, log, mux, reachability,
};
use crate::duration::format_human;
use crate::state::{ForwardHealth, ForwardState, Phase, State};

pub(super) struct Watchdog {
    pub(super) o: Options,
    /// The `--on-change` runs.
    pub(super) hook: super::hook::Hook,
    pub(super) state_dir: crate::safe_fs::Dir,
    pub(super) ctl: PathBuf,
    /// What the supervisor is told (`--readiness`).
    pub(super) readiness: super::readiness::Readiness,
    pub(super) signals: Signals,
    /// Network changes and clock gaps, in the same poll as the signals.
    pub(super) events: Events,
    pub(super) state: State,
    pub(super) interval: Duration,
    /// `ssh -V` was asked (once per process, before the first ssh starts).
    pub(super) client_checked: bool,
    /// When the state file was last written (see `save_after_probe`).
    pub(super) saved_at: std::cell::Cell<Instant>,
}

/// A passing round that changed nothing but the probe time and latency rewrites the
/// state file at most this often: under systemd it lives in StateDirectory=, on disk
/// (flash, on a router), and `status` can live with a last-probe time a minute old.
const PROBE_ONLY_SAVE_EVERY: Duration = Duration::from_secs(60);

pub(super) enum Outcome {
    Stopped,
    Reconnect,
    /// The network changed under the connection (its local address is gone, or the
    /// route to the server leaves another way): reconnect at once, no back-off.
    NetworkChanged,
    Failed {
        reason: String,
        permanent: bool,
        /// ssh never got the server's greeting (unresolved, refused, no route, connect or
        /// banner time-out): the back-off waits for the server to greet.
        no_greeting: bool,
        /// The server refused this `-R` port: most likely still held by the old session.
        port_held: Option<u16>,
    },
}

impl Watchdog {
    pub(super) fn save(&self) {
        write_state(&self.state_dir, &self.state);
        self.saved_at.set(Instant::now());
        if let Some(path) = &self.o.metrics_file {
            super::statedir::write_metrics(path, &self.o.name, &self.state);
        }
    }

    /// The tunnel's state changes (every change goes through here): `state_since`, and
    /// the change is logged with its reason.
    pub(super) fn set_phase(&mut self, phase: Phase, reason: &str) {
        if self.state.phase == phase {
            return;
        }
        let old = self.state.phase;
        self.state.phase = phase;
        self.state.state_since = log::now_secs();
        self.hook.push(old, phase, reason);
    }

    /// One forward's health after a probe (or a new connection); `since` moves only
    /// when the health changes.
    pub(super) fn set_forward(&mut self, index: usize, health: ForwardHealth, latency_ms: u64) {
        let forwards = &self.o.forwards;
        let written = &self.state.forwards;
        if written.len() != forwards.len()
            || written
                .iter()
                .zip(forwards)
                .any(|(f, o)| f.spec != o.describe())
        {
            // Another configuration wrote the file: start the list afresh.
            let now = log::now_secs();
            self.state.forwards = forwards
                .iter()
                .map(|o| ForwardState {
                    spec: o.describe(),
                    health: ForwardHealth::Unproven,
                    since: now,
                    latency_ms: 0,
                })
                .collect();
        }
        let Some(f) = self.state.forwards.get_mut(index) else {
            return;
        };
        if f.health != health {
            f.health = health;
            f.since = log::now_secs();
        }
        if latency_ms > 0 || health != ForwardHealth::Up {
            f.latency_ms = latency_ms;
        }
    }

    /// A reconnect without the watchdog exiting (a signal, a held `-R` port, a network
    /// change): counted in the state file.
    pub(super) fn count_reconnect(&mut self) {
        self.state.reconnects += 1;
    }

    /// Saves after a passing round unless only the probe time/latency moved and the
    /// file was written recently.
    pub(super) fn save_after_probe(&self, before: &State) {
        // A forward's latency is probe data too; its health and since are not.
        let mut forwards = before.forwards.clone();
        for (f, now) in forwards.iter_mut().zip(&self.state.forwards) {
            f.latency_ms = now.latency_ms;
        }
        let probe_only = State {
            last_probe_ok: self.state.last_probe_ok,
            last_probe_ms: self.state.last_probe_ms,
            forwards,
            ..before.clone()
        };
        if probe_only != self.state || self.saved_at.get().elapsed() >= PROBE_ONLY_SAVE_EVERY {
            self.save();
        }
    }

    pub(super) fn run(&mut self) -> u8 {
        // The ssh arguments of the next attempt, and the -R forwards taken out of them
        // because the server held their ports: asked for through the control socket.
        let mut ssh_args = self.o.ssh.clone();
        let mut held: Vec<SshForward> = Vec::new();
        // Bounded: each pass exits, was asked to reconnect by a signal, or took one more
        // -R forward out of `ssh_args`.
        loop {
            if held.is_empty()
                && let Some(code) = self.back_off()
            {
                return code;
            }
            let result = self.connect_and_watch(&ssh_args, &held);
            // A -R port the server still holds (the old session): at once, without it.
            if let (
                Outcome::Failed {
                    reason,
                    port_held: Some(port),
                    ..
                },
                None,
            ) = &result
                && let Some((rest, forward)) = args::without_remote_forward(&ssh_args, *port)
            {
                log::warn(format_args!(
                    "{reason}; reconnecting at once without {} and asking the server for it every {} through ssh's control socket",
                    forward.describe(),
                    format_human(PORT_HELD_ASK_EVERY)
                ));
                self.state.last_error = reason.clone();
                self.count_reconnect();
                ssh_args = rest;
                held.push(forward);
                continue;
            }
            match result {
                (outcome @ (Outcome::Reconnect | Outcome::NetworkChanged), _) => {
                    // Not a failure of the tunnel: the failure row starts afresh, and
                    // the held -R forwards are asked for again by the new connection.
                    self.state.consecutive_failures = 0;
                    (ssh_args, held) = (self.o.ssh.clone(), Vec::new());
                    if matches!(outcome, Outcome::Reconnect) {
                        // SIGHUP/SIGUSR1: counted; the new connection proves itself again.
                        self.count_reconnect();
                        self.state.proven = false;
                        log::info("reconnecting now (SIGHUP/SIGUSR1)");
                    }
                    continue;
                }
                (Outcome::Stopped, _) => return self.stopped(),
                (
                    Outcome::Failed {
                        reason,
                        permanent,
                        no_greeting,
                        ..
                    },
                    up_for,
                ) => {
                    (self.state.consecutive_failures, self.state.proven) = backoff::after_failure(
                        self.state.consecutive_failures,
                        self.state.proven,
                        up_for,
                        permanent,
                        backoff::proven_after(self.interval, self.o.backoff_initial),
                        self.o.backoff_initial,
                        self.o.backoff_max,
                    );
                    self.state.no_greeting = no_greeting;
                    self.set_phase(Phase::Failed, &reason);
                    self.state.ssh_pid = 0;
                    self.state.connected_since = 0;
                    self.state.last_error = reason.clone();
                    self.save();
                    log::error(format_args!("tunnel failed: {reason}"));
                    self.readiness.stopping(Some(&format!("failed: {reason}")));
                    return if permanent {
                        EXIT_PERMANENT
                    } else {
                        EXIT_FAILED
                    };
                }
            }
        }
    }

    fn stopped(&mut self) -> u8 {
        self.set_phase(Phase::Stopped, "stopped by a signal");
        self.state.ssh_pid = 0;
        self.state.connected_since = 0;
        self.state.backoff_until = 0;
        self.save();
        log::info("stopped");
        EXIT_STOPPED
    }

    /// Waits before connecting if earlier attempts failed. `Some(code)`: exit now.
    ///
    /// After a failure where ssh got no greeting from the server, another ssh attempt
    /// would fail the same way until the server greets again, so the wait lasts until a
    /// check sees the greeting (every [`reachability::CHECK_EVERY`]), however short the
    /// back-off. ssh still starts once the back-off and `backoff_max` have both run out,
    /// in case the check cannot see what ssh sees.
    fn back_off(&mut self) -> Option<u8> {
        // No wait (`None`): connect at once.
        let mut wait = self.begin_back_off()?;
        // Bounded by `wait.until`; the status refreshed every few seconds with the time left.
        while let Some(left) = wait.left() {
            match self.back_off_wake(&mut wait, left) {
                Waited::KeepWaiting => {}
                Waited::Connect => break,
                Waited::Exit(code) => return Some(code),
            }
        }
        self.state.backoff_until = 0;
        None
    }

    /// The wait before this attempt, logged and in the state file; `None`: connect at
    /// once.
    fn begin_back_off(&mut self) -> Option<BackOff> {
        let n = self.state.consecutive_failures;
        let nominal = backoff::wait_before_connect(
            n,
            self.state.proven,
            self.o.backoff_initial,
            self.o.backoff_max,
        );
        if nominal.is_zero() {
            if n > 0 {
                log::info(format_args!(
                    "reconnecting at once: the tunnel was up before it failed ({n} failure(s) in a row)"
                ));
            }
            return None;
        }
        let wait = backoff::with_jitter(nominal, backoff::jitter_seed());
        let reason = if self.state.last_error.is_empty() {
            "earlier attempts failed".to_string()
        } else {
            self.state.last_error.clone()
        };
        log::warn(format_args!(
            "backing off {} before connecting (wait_ms={} nominal_ms={}, {n} failures in a row): {reason}",
            format_human(wait),
            wait.as_millis() as u64,
            nominal.as_millis() as u64
        ));
        let started = Instant::now();
        let greeting = self.greeting_target();
        let until = started + self.longest_wait(wait, &greeting);
        self.set_phase(Phase::BackingOff, &reason);
        self.state.backoff_until =
            log::now_secs() + until.saturating_duration_since(started).as_secs();
        self.save();
        Some(BackOff {
            reason,
            started,
            until,
            greeting,
            next_check: started + reachability::CHECK_EVERY,
            resolved: None,
        })
    }

    /// How long a back-off of `wait` lasts at most: `wait`, or while the server is
    /// checked for its greeting, until `backoff_max` has run out too (logged).
    fn longest_wait(&self, wait: Duration, greeting: &Option<GreetingTarget>) -> Duration {
        let Some((host, port, _)) = greeting else {
            return wait;
        };
        let latest = wait.max(self.o.backoff_max);
        log::info(format_args!(
            "waiting for the server to greet: checking {host} port {port} every {}, ssh starts when it answers (at the latest in {})",
            format_human(reachability::CHECK_EVERY),
            format_human(latest)
        ));
        latest
    }

    /// One wake-up of a back-off with `left` to go: the status, then sleep until a signal,
    /// a clock gap, a network change or the next greeting check.
    fn back_off_wake(&mut self, wait: &mut BackOff, left: Duration) -> Waited {
        self.announce_wait(left, &wait.status(left));
        let mut sleep = left.min(BACKOFF_REFRESH);
        self.hook.poll(None);
        if let Some(kill_at) = self.hook.deadline() {
            sleep = sleep.min(kill_at.saturating_duration_since(Instant::now()));
        }
        self.readiness.keepalive();
        if let Some(ping_at) = self.readiness.keepalive_due() {
            sleep = sleep.min(ping_at.saturating_duration_since(Instant::now()));
        }
        if wait.greeting.is_some() {
            sleep = sleep.min(wait.next_check.saturating_duration_since(Instant::now()));
        }
        match self.events.wait(&self.signals, sleep, None) {
            Some(Request::Stop) => {
                self.readiness.stopping(None);
                return Waited::Exit(self.stopped());
            }
            Some(Request::Reconnect) => {
                log::info(format_args!(
                    "back-off cut short with {} left (SIGHUP/SIGUSR1): reconnecting now",
                    format_human(left)
                ));
                return Waited::Connect;
            }
            None => {}
        }
        if self.woke_from_gap() || self.network_cuts_short(wait) || self.server_greets_again(wait) {
            return Waited::Connect;
        }
        Waited::KeepWaiting
    }

    /// After the machine slept or froze the back-off starts afresh: connect now.
    fn woke_from_gap(&mut self) -> bool {
        let Some(gap) = self.events.take_gap() else {
            return false;
        };
        self.state.consecutive_failures = 0;
        self.note_event("wake", "reconnected");
        log::info(format_args!(
            "{}; back-off reset, reconnecting now",
            gap.describe().trim_end_matches(": probing now")
        ));
        true
    }

    /// A network change that may bring the server back: connect now, or, while the
    /// server is checked for its greeting, check at once instead of at the next check.
    fn network_cuts_short(&mut self, wait: &mut BackOff) -> bool {
        let Some(batch) = self.events.take_batch() else {
            return false;
        };
        if !events::may_bring_back(&batch) {
            return false;
        }
        if wait.greeting.is_none() {
            self.note_event("network", "reconnected");
            log::info(format_args!(
                "network changed ({} event(s)): back-off cut short with {} left, reconnecting now",
                batch.len(),
                format_human(wait.until.saturating_duration_since(Instant::now()))
            ));
            return true;
        }
        log::info(format_args!(
            "network changed ({} event(s)): checking now whether the server greets",
            batch.len()
        ));
        self.note_event("network", "probed");
        wait.next_check = Instant::now();
        false
    }

    /// The greeting check when one is due: whether the server greets again.
    fn server_greets_again(&mut self, wait: &mut BackOff) -> bool {
        let Some((host, port, family)) = &wait.greeting else {
            return false;
        };
        if Instant::now() < wait.next_check || Instant::now() >= wait.until {
            return false;
        }
        // Checks start CHECK_EVERY apart even when one waits out its time-out
        // (a black-holed path): a fresh SYN each second, not one per time-out.
        wait.next_check = Instant::now() + reachability::CHECK_EVERY;
        let addrs = server_addresses(&mut wait.resolved, host, *port, *family);
        let timeout =
            reachability::CHECK_TIMEOUT.min(wait.until.saturating_duration_since(Instant::now()));
        if !reachability::server_greets(addrs, timeout) {
            return false;
        }
        log::info(format_args!(
            "server reachable again: reconnecting ({host} port {port} answered with its SSH greeting after {})",
            format_human(wait.started.elapsed())
        ));
        self.readiness
            .status("server reachable again: reconnecting");
        true
    }

    fn note_event(&mut self, kind: &'static str, action: &'static str) {
        self.state.last_event = Some(crate::state::LastEvent {
            kind,
            at: log::now_secs(),
            action,
        });
    }

    /// The status for a wait of `left`. Before the tunnel was first proven the
    /// supervisor may still wait for the start: the budget is what is left, one
    /// connect-and-probe budget and a margin (sent again at every refresh, so a hung
    /// watchdog still times out).
    fn announce_wait(&mut self, left: Duration, status: &str) {
        let budget = left
            .saturating_add(self.connect_budget())
            .saturating_add(Duration::from_secs(5));
        self.readiness.waiting(budget, status);
    }

    /// Where to check for the server's greeting during a back-off: only after a failure
    /// where ssh got none (after auth, probe or forward failures the server greets and a
    /// retry would not fare better for it), and only where a TCP connect from here takes
    /// ssh's path.
    fn greeting_target(&self) -> Option<GreetingTarget> {
        if !self.state.no_greeting {
            return None;
        }
        match reachability::resolve(&self.o.ssh) {
            Ok(reachability::Destination::Direct { host, port, family }) => {
                Some((host, port, family))
            }
            Ok(reachability::Destination::Unsuitable(why)) => {
                log::info(format_args!(
                    "not checking whether the server answers during the back-off: {why}"
                ));
                None
            }
            Err(e) => {
                log::info(format_args!(
                    "not checking whether the server answers during the back-off: {e}"
                ));
                None
            }
        }
    }

    /// One `MUX_C_OPEN_FWD` for a held `-R` forward, bounded by the probe timeout.
    pub(super) fn ask_for_forward(&self, forward: &SshForward) -> Result<(), String> {
        let SshForward::Remote {
            bind,
            port,
            host,
            host_port,
        } = forward
        else {
            return Err("only -R PORT:HOST:PORT forwards are asked for".into());
        };
        let deadline = Instant::now() + self.o.probe_timeout;
        let mut conn = mux::MuxConn::connect(&self.ctl).map_err(|e| e.to_string())?;
        conn.open_remote_forward(bind.as_deref(), *port, host, *host_port, deadline)
    }

    /// How long ssh may take from start to a first good probe round.
    pub(super) fn connect_budget(&self) -> Duration {
        // Saturating, though the parser's bounds keep it far from overflow.
        (self.interval.saturating_mul(self.o.probe_failures)).saturating_add(self.o.probe_timeout)
    }

    /// Runs ssh with `ssh_args` and asks for the `held` forwards through its control
    /// socket. Also returns how long the connection was up: first to last good round.
    fn connect_and_watch(
        &mut self,
        ssh_args: &[String],
        held: &[SshForward],
    ) -> (Outcome, Option<Duration>) {
        if let Some(refusal) = self.refuse_client() {
            return (refusal, None);
        }
        // A socket left by a killed ssh would make the new one refuse to listen.
        let _ = std::fs::remove_file(&self.ctl);
        let argv = process::with_control_master(ssh_args, &self.ctl);
        self.state.restarts += 1;
        self.set_phase(Phase::Connecting, "starting ssh");
        let attempt = self.state.consecutive_failures + 1;
        let mut ssh = match SshChild::spawn(&argv) {
            Ok(s) => s,
            Err(e) => {
                return (
                    Outcome::Failed {
                        reason: e,
                        permanent: false,
                        no_greeting: false,
                        port_held: None,
                    },
                    None,
                );
            }
        };
        ssh.asked_ports = held
            .iter()
            .filter_map(|f| match f {
                SshForward::Remote { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        self.state.ssh_pid = ssh.pid;
        self.save();
        log::info(format_args!(
            "connecting (attempt {attempt}): ssh pid {}",
            ssh.pid
        ));
        self.readiness
            .status(&format!("connecting (attempt {attempt})"));
        let (outcome, up_for) = Session::new(self, &mut ssh, held).run();
        if matches!(outcome, Outcome::Stopped) {
            self.readiness.stopping(Some("stopping"));
        }
        ssh.terminate(KILL_GRACE);
        let _ = std::fs::remove_file(&self.ctl);
        (outcome, up_for)
    }
}

impl Watchdog {
    /// Before the first ssh of this process: an `ssh` that is Dropbear's client could
    /// never be probed (no control socket) and would loop. It fails as a permanent
    /// error: exit 3 with the back-off at its max, so the next start waits
    /// `--backoff-max` before asking again instead of being restarted in a tight loop,
    /// and a tunnel comes up on its own once OpenSSH is installed. A `-V` that cannot
    /// be run or read decides nothing: starting ssh will say more.
    fn refuse_client(&mut self) -> Option<Outcome> {
        if std::mem::replace(&mut self.client_checked, true) {
            return None;
        }
        let program = self.o.ssh.first()?;
        let client = crate::ssh_client::identify(program, Duration::from_secs(5)).ok()?;
        let why = client.refusal(program)?;
        Some(Outcome::Failed {
            reason: format!("{why}; {}", crate::ssh_client::FIX),
            permanent: true,
            no_greeting: false,
            port_held: None,
        })
    }
}

/// Where a back-off checks for the server's greeting: host, port, address family.
type GreetingTarget = (String, u16, reachability::Family);

/// A back-off in progress (see `Watchdog::back_off`).
struct BackOff {
    /// Why: the last error, for the log and the supervisor's status.
    reason: String,
    started: Instant,
    until: Instant,
    /// Only after a failure where ssh got no greeting: the server is checked for it.
    greeting: Option<GreetingTarget>,
    next_check: Instant,
    /// The server's addresses and when they were looked up (see `server_addresses`).
    resolved: Option<(Instant, Vec<SocketAddr>)>,
}

impl BackOff {
    /// The time left, `None` once it is over.
    fn left(&self) -> Option<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn status(&self, left: Duration) -> String {
        match &self.greeting {
            Some(_) => format!("waiting for the server to answer: {}", self.reason),
            None => format!("backing off {}: {}", format_human(left), self.reason),
        }
    }
}

/// What one wake-up during a back-off leads to.
enum Waited {
    KeepWaiting,
    Connect,
    Exit(u8),
}

/// The server's addresses for a greeting check: the last lookup's, looked up again after
/// `RESOLVE_EVERY` (sooner when the last lookup found none).
fn server_addresses<'a>(
    resolved: &'a mut Option<(Instant, Vec<SocketAddr>)>,
    host: &str,
    port: u16,
    family: reachability::Family,
) -> &'a [SocketAddr] {
    if resolved.as_ref().is_none_or(|(at, addrs)| {
        let again = if addrs.is_empty() {
            reachability::RESOLVE_AGAIN_WHEN_EMPTY
        } else {
            reachability::RESOLVE_EVERY
        };
        at.elapsed() >= again
    }) {
        let deadline = Instant::now() + reachability::CHECK_TIMEOUT;
        let addrs = reachability::addresses_for(host, port, family, deadline);
        *resolved = Some((Instant::now(), addrs));
    }
    resolved.as_ref().map(|(_, a)| a.as_slice()).unwrap_or(&[])
}
