//! The watchdog's shared state across connections and the bookkeeping every stage
//! uses: the state file, the phase, the forwards' health, the outcome a connection
//! ends with. The loop is the [`Session`]'s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::args::{Options, SshForward};
use super::events::Events;
use super::session::Session;
use super::signals::Signals;
use super::statedir::{touch_state, write_state};
use super::{BACKOFF_REFRESH, EXIT_STOPPED, log, mux};
use crate::state::{ForwardHealth, ForwardState, Phase, State};

pub(super) struct Watchdog {
    pub(super) o: Options,
    /// `o.forwards` as the state file and the probe's messages name them
    /// (`SshForward::describe`), made once; each connection's prober shares them.
    pub(super) forward_specs: Vec<std::rc::Rc<str>>,
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
    /// When the state file was last written or touched.
    pub(super) touched_at: std::cell::Cell<Instant>,
}

/// A passing round that changed nothing but the probe time and latency touches the
/// state file at most this often (`status` and `metrics` can live with a last-probe
/// time a minute old; `State::touched` says how they read it) ...
const PROBE_ONLY_TOUCH_EVERY: Duration = Duration::from_secs(60);
/// ... and rewrites it, for the latencies, at most this often: a rewrite (temp file and
/// rename) costs the CPU of about two idle rounds, a touch a tenth of that.
const PROBE_ONLY_SAVE_EVERY: Duration = Duration::from_secs(300);

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
        /// ssh said the network is unreachable (no route): judged against the route
        /// now, it is a wait for the network rather than a failure.
        unreachable: bool,
        /// The server closed the connection before its greeting (sshd's MaxStartups
        /// while a crowd logs in): a short random pause, not a failure.
        server_busy: bool,
        /// The server refused this `-R` port: most likely still held by the old session.
        port_held: Option<u16>,
    },
}

impl Outcome {
    /// A failure that ssh's stderr did not explain further: not permanent, the server
    /// neither silent nor busy; `port_held` if it was the server refusing that `-R` port.
    pub(super) fn failure(reason: String, port_held: Option<u16>) -> Outcome {
        Outcome::Failed {
            reason,
            permanent: false,
            no_greeting: false,
            unreachable: false,
            server_busy: false,
            port_held,
        }
    }
}

impl Watchdog {
    pub(super) fn save(&self) {
        write_state(&self.state_dir, &self.state);
        self.saved_at.set(Instant::now());
        self.touched_at.set(Instant::now());
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
        let specs = &self.forward_specs;
        let written = &self.state.forwards;
        if written.len() != specs.len() || written.iter().zip(specs).any(|(f, s)| *f.spec != **s) {
            // Another configuration wrote the file: start the list afresh.
            let now = log::now_secs();
            self.state.forwards = specs
                .iter()
                .map(|spec| ForwardState {
                    spec: spec.to_string(),
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
    pub(super) fn save_after_probe(&self, before: State) {
        // `before` with this round's probe figures: equal to the state unless something
        // else moved. A forward's latency is probe data too; its health and since are not.
        let mut probe_only = before;
        probe_only.last_probe_ok = self.state.last_probe_ok;
        probe_only.last_probe_ms = self.state.last_probe_ms;
        for (f, now) in probe_only.forwards.iter_mut().zip(&self.state.forwards) {
            f.latency_ms = now.latency_ms;
        }
        if probe_only != self.state {
            self.save();
        } else {
            self.save_probe_figures();
        }
    }

    /// Saves after a probe that moved only the probe figures (time, latencies): the
    /// file is rewritten now and then, its time touched more often.
    pub(super) fn save_probe_figures(&self) {
        if self.saved_at.get().elapsed() >= PROBE_ONLY_SAVE_EVERY {
            self.save();
        } else if self.touched_at.get().elapsed() >= PROBE_ONLY_TOUCH_EVERY {
            if !touch_state(&self.state_dir) {
                return self.save();
            }
            self.touched_at.set(Instant::now());
            // The metrics file has no such reading: its gauge is the news.
            if let Some(path) = &self.o.metrics_file {
                super::statedir::write_metrics(path, &self.o.name, &self.state);
            }
        }
    }

    /// Runs the watchdog's one loop until it exits; returns the exit code.
    pub(super) fn run(&mut self) -> u8 {
        Session::new(self).run()
    }

    pub(super) fn stopped(&mut self) -> u8 {
        self.set_phase(Phase::Stopped, "stopped by a signal");
        self.state.ssh_pid = 0;
        self.state.connected_since = 0;
        self.state.backoff_until = 0;
        self.save();
        log::info("stopped");
        EXIT_STOPPED
    }

    /// Records a reaction to an event in the state file and says it in one log line.
    pub(super) fn record(&mut self, kind: &'static str, action: &'static str, line: &str) {
        log::info(line);
        self.state.last_event = Some(crate::state::LastEvent {
            kind,
            at: log::now_secs(),
            action,
        });
        self.save();
    }

    /// The status during a wait with `left` to go (None: no end of its own). Before
    /// the tunnel was first proven the supervisor may still wait for the start: the
    /// budget is what is left (or one status refresh), one connect-and-probe budget
    /// and a margin (sent again at every refresh, so a hung watchdog still times out).
    pub(super) fn announce_wait(&mut self, left: Option<Duration>, status: &str) {
        let budget = left
            .unwrap_or(BACKOFF_REFRESH)
            .saturating_add(self.connect_budget())
            .saturating_add(Duration::from_secs(5));
        self.readiness.waiting(budget, status);
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

    /// How long the probes let a server that is heard but does not answer (the uplink
    /// saturated) count as slow, not dead: ssh's own keepalive may not give up sooner.
    pub(super) fn slow_patience(&self) -> Duration {
        self.interval
            .saturating_mul(super::rtt::SLOW_ROUNDS)
            .saturating_add(self.o.probe_timeout)
    }

    /// How long ssh may take from start to a first good probe round.
    pub(super) fn connect_budget(&self) -> Duration {
        // Saturating, though the parser's bounds keep it far from overflow.
        (self.interval.saturating_mul(self.o.probe_failures)).saturating_add(self.o.probe_timeout)
    }
}

impl Watchdog {
    /// Before the first ssh of this process: an `ssh` that is Dropbear's client could
    /// never be probed (no control socket) and would loop. It fails as a permanent
    /// error: exit 3 with the back-off at its max, so the next start waits
    /// `--backoff-max` before asking again instead of being restarted in a tight loop,
    /// and a tunnel comes up on its own once OpenSSH is installed. A `-V` that cannot
    /// be run or read decides nothing: starting ssh will say more.
    pub(super) fn refuse_client(&mut self) -> Option<Outcome> {
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
            unreachable: false,
            server_busy: false,
            port_held: None,
        })
    }
}
