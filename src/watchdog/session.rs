//! One ssh connection, from spawn to its outcome: the state that lives as long as the
//! connection does, in one struct.

use std::time::{Duration, Instant};

use super::args::Forward;
use super::process::SshChild;
use super::signals::Event;
use super::supervisor::{Outcome, Watchdog};
use super::{CONFIRM_PAUSE, PORT_HELD_ASK_EVERY, PORT_HELD_ASKS, log, probe, ssh_errors};
use crate::duration::format_human;
use crate::state::Phase;

pub(super) struct Session<'a> {
    w: &'a mut Watchdog,
    ssh: &'a mut SshChild,
    prober: probe::Prober,
    spawned: Instant,
    socket_seen: Option<Instant>,
    next_round: Instant,
    failed_rounds: u32,
    up_since: Option<Instant>,
    last_ok: Option<Instant>,
    /// Held -R forwards not granted yet; no probe round runs until they are.
    missing: Vec<Forward>,
    asks: u32,
}

impl<'a> Session<'a> {
    pub(super) fn new(w: &'a mut Watchdog, ssh: &'a mut SshChild, held: &[Forward]) -> Self {
        let prober = probe::Prober::new(w.ctl.clone(), w.o.forwards.clone(), w.o.probe_timeout);
        let spawned = Instant::now();
        Session {
            w,
            ssh,
            prober,
            spawned,
            socket_seen: None,
            next_round: spawned,
            failed_rounds: 0,
            up_since: None,
            last_ok: None,
            missing: held.to_vec(),
            asks: 0,
        }
    }

    fn failed(reason: String, port_held: Option<u16>) -> Outcome {
        Outcome::Failed {
            reason,
            permanent: false,
            no_greeting: false,
            port_held,
        }
    }

    /// How long the connection was up: first to last good round.
    fn up_for(&self) -> Option<Duration> {
        Some(self.last_ok?.saturating_duration_since(self.up_since?))
    }

    pub(super) fn run(&mut self) -> (Outcome, Option<Duration>) {
        // Bounded: every pass sleeps until the next round or a signal, and the rounds
        // end the loop after probe_failures failures or when ssh exits.
        loop {
            self.ssh.drain_stderr();
            if let Some(status) = self.ssh.try_exit() {
                self.ssh.settle_stderr(Duration::from_secs(1));
                let report = &self.ssh.report;
                let permanent = report.errors.iter().any(|e| e.is_permanent());
                let no_greeting =
                    !report.errors.is_empty() && report.errors.iter().all(|e| e.is_no_greeting());
                let port_held = report.errors.iter().find_map(|e| match e {
                    ssh_errors::SshError::RemotePortRefused { port } => Some(*port),
                    _ => None,
                });
                let reason = match report.errors.first() {
                    Some(e) => e.explain(),
                    None if !report.last_line.is_empty() => {
                        format!("ssh exited ({status}): {}", report.last_line)
                    }
                    None => format!("ssh exited ({status})"),
                };
                let outcome = Outcome::Failed {
                    reason,
                    permanent,
                    no_greeting,
                    port_held,
                };
                return (outcome, self.up_for());
            }
            // A forward that ssh could not set up will never work, even if ssh stays.
            let forward_error = self
                .ssh
                .report
                .errors
                .iter()
                .find(|e| {
                    matches!(
                        e,
                        ssh_errors::SshError::RemotePortRefused { .. }
                            | ssh_errors::SshError::LocalPortBusy { .. }
                    )
                })
                .cloned();
            if let Some(error) = forward_error {
                let port_held = match error {
                    ssh_errors::SshError::RemotePortRefused { port } => Some(port),
                    _ => None,
                };
                return (Self::failed(error.explain(), port_held), self.up_for());
            }
            let now = Instant::now();
            if self.socket_seen.is_none() {
                if self.w.ctl.exists() {
                    // ssh sends its -R requests as the control socket appears; give the
                    // server a moment to answer before the first round.
                    self.socket_seen = Some(now);
                    self.next_round = now + Duration::from_millis(300);
                } else if now - self.spawned > self.w.connect_budget() {
                    let reason = format!(
                        "ssh did not connect within {}",
                        format_human(self.w.connect_budget())
                    );
                    return (Self::failed(reason, None), self.up_for());
                } else {
                    self.next_round = now + Duration::from_millis(50);
                }
            }
            if self.socket_seen.is_some() && !self.missing.is_empty() && now >= self.next_round {
                self.asks += 1;
                let mut refusal = String::new();
                self.missing
                    .retain(|forward| match self.w.ask_for_forward(forward) {
                        Ok(()) => {
                            log::info(&format!(
                                "the server granted {} at ask {}",
                                forward.describe(),
                                self.asks
                            ));
                            false
                        }
                        Err(why) => {
                            refusal = format!("{}: {why}", forward.describe());
                            true
                        }
                    });
                if self.missing.is_empty() {
                    self.next_round = Instant::now();
                } else if self.asks >= PORT_HELD_ASKS {
                    let reason = format!(
                        "the server still refuses {refusal} after {} asks over {}: another process may hold the port",
                        self.asks,
                        format_human(self.spawned.elapsed())
                    );
                    return (Self::failed(reason, None), self.up_for());
                } else {
                    self.next_round = Instant::now() + PORT_HELD_ASK_EVERY;
                    let status = format!(
                        "STATUS=waiting for the server to release a remote port ({refusal})"
                    );
                    self.w.notify_status(&status);
                }
            }
            if self.socket_seen.is_some() && self.missing.is_empty() && now >= self.next_round {
                let round_start = Instant::now();
                match self.prober.round() {
                    Ok(ok) => {
                        self.failed_rounds = 0;
                        let before = self.w.state.clone();
                        if self.up_since.is_none() {
                            // First proof for this ssh connection (also after a
                            // SIGUSR1 reconnect): "up since" starts here.
                            self.w.state.connected_since = log::now_secs();
                        }
                        let since = *self.up_since.get_or_insert(round_start);
                        self.last_ok = Some(round_start);
                        self.w.state.last_probe_ok = log::now_secs();
                        self.w.state.last_probe_ms = ok.latency.as_millis() as u64;
                        let status = format!(
                            "STATUS=up {}, probe {} ms",
                            format_human(since.elapsed()),
                            ok.latency.as_millis()
                        );
                        if !self.w.ready_sent {
                            self.w.ready_sent = true;
                            self.w.state.state = Phase::Up;
                            log::info(&format!(
                                "up: {} forward(s) proven end to end in {} ms",
                                self.w.o.forwards.len(),
                                ok.latency.as_millis()
                            ));
                            self.w.notify(&["READY=1", &status, "WATCHDOG=1"]);
                        } else {
                            if self.w.state.state != Phase::Up {
                                self.w.state.state = Phase::Up;
                                log::info("probes pass again");
                            }
                            self.w.notify_status(&status);
                        }
                        if self.w.state.consecutive_failures > 0
                            && since.elapsed() > self.w.o.backoff_max
                        {
                            log::info(&format!(
                                "up longer than {}: back-off reset",
                                format_human(self.w.o.backoff_max)
                            ));
                            self.w.state.consecutive_failures = 0;
                            self.w.state.last_error.clear();
                        }
                        self.w.save_after_probe(&before);
                    }
                    Err(reason) => {
                        self.failed_rounds += 1;
                        log::warn(&format!(
                            "probe failed ({}/{}): {reason}",
                            self.failed_rounds, self.w.o.probe_failures
                        ));
                        if self.failed_rounds >= self.w.o.probe_failures {
                            let reason = format!(
                                "{} probe rounds failed in a row, last: {reason}",
                                self.failed_rounds
                            );
                            return (Self::failed(reason, None), self.up_for());
                        }
                    }
                }
                // Only a good round waits the interval; a failed one is confirmed (or
                // cleared) after a short pause, so detection does not take failures ×
                // interval (and never takes longer than with the full interval).
                self.next_round = if self.failed_rounds == 0 {
                    round_start + self.w.interval
                } else {
                    (round_start + self.w.interval).min(Instant::now() + CONFIRM_PAUSE)
                };
            }
            // No periodic wake-up: ssh's exit arrives as SIGCHLD on the self-pipe and its
            // messages on the stderr pipe, both in this poll (one wake-up per round).
            let sleep = self.next_round.saturating_duration_since(Instant::now());
            match self.w.signals.wait(sleep, self.ssh.stderr_fd()) {
                Some(Event::Stop) => return (Outcome::Stopped, self.up_for()),
                Some(Event::Reconnect) => {
                    return (Outcome::Reconnect, self.up_for());
                }
                None => {}
            }
        }
    }
}
