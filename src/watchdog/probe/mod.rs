//! One probe round: is ssh alive (mux alive check), does the server session answer,
//! and do the forwards carry data end to end (one in turn while all pass, see
//! [`Prober::round`])? Bounded by the probe timeout as a whole. Uses one persistent control
//! connection for alive checks and one short-lived control connection per forward
//! channel (closed at the end of the round), so nothing accumulates.
//!
//! The end-to-end rule for a channel to a target: data first (an `SSH-2.0-` banner, or
//! the SOCKS reply) = works; end of file before any data = the target is down (the far
//! end could not connect, so the channel closed); silence until a quiet window
//! (min(timeout/2, 1 s) from the channel's opening) with the channel open = works, for
//! targets that wait for the client to speak.
//!
//! What a forward's check finds is its own result ([`ForwardProbe`]), not the round's:
//! a target that refuses (the channel closes before any data, or for `-L` the server's
//! connect to the target fails) leaves the transport and the forward working, so the
//! round still passes and the session calls the tunnel degraded. A round fails
//! ([`RoundError`]) only when ssh or the forward itself does not work: the alive check,
//! a time-out, a `-R` channel the server cannot open (nothing listens on its port: the
//! listener is missing), a local listener that does not accept (checked in a
//! connection's first round, after a failed one and every [`LISTENERS_EVERY`] rounds).
//!
//! A `-R` on the server's default loopback can be half bound (another program holds
//! the other loopback address): once per ssh connection [`remote_listener`] asks who
//! answers on each (`listeners.rs`).
//!
//! The checks' steps, and the one `poll` a round sleeps in, are in `checks.rs`.
//!
//! Cost: a round writes every request first (alive check, channel requests with their
//! fds) and then sleeps in one `poll` over every answer it still waits for, so ssh
//! handles them in one pass and the round wakes a few times, not once per message
//! (the idle CPU it costs; `benches/idle-cpu.sh` measures it).

mod checks;
mod listeners;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::args::{SshForward, dial_host};
use super::mux::MuxConn;
use checks::{Io, Kind, Pending, Step};
pub use listeners::{HALF_BOUND_FIX, Listener, half_bound, remote_listener};
use listeners::{connect_tcp, listener_accepts};

/// SOCKS5: version 5, one method, "no authentication"; a proxy answers `05 00`.
const SOCKS_GREETING: &[u8] = &[5, 1, 0];
const SOCKS_ACCEPT: &[u8] = &[5, 0];

/// Upper bound for ssh's answer to a local alive check (see `Prober::alive_timeout`).
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The port `server_round_trip` asks the server for: tcpmux, closed almost everywhere.
const SERVER_PROBE_PORT: u16 = 1;

/// Rounds of one connection that may ask who holds a `-R` port before giving up
/// (when a target that refuses or a missing address leaves nothing to compare).
const OWNER_TRIES: u8 = 3;

#[derive(Debug, Clone)]
pub struct RoundOk {
    /// Time spent waiting for answers (quiet windows of silent targets excluded).
    pub latency: Duration,
    /// The pid ssh reported in its alive answer.
    pub ssh_pid: u32,
    /// One per forward, in the order the prober was given them.
    pub forwards: Vec<ForwardProbe>,
}

impl RoundOk {
    /// No forward was found down (those not checked this round count as up).
    pub fn every_forward_up(&self) -> bool {
        self.forwards.iter().all(|f| {
            matches!(
                f,
                ForwardProbe::Up { .. } | ForwardProbe::Resting | ForwardProbe::Unprobed
            )
        })
    }
}

/// What one forward's check found in a round that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardProbe {
    /// Data came (or the channel stayed open and quiet) after `latency`.
    Up { latency: Duration },
    /// The tunnel carried the channel to the far end, which refused or reset: the
    /// channel closed before any data.
    TargetDown { latency: Duration },
    /// `-L`: the server could not open the channel to the target. Usually the target
    /// refuses ("connect failed"); the session tells a server that forbids the forward
    /// ("administratively prohibited") apart by what ssh logged.
    OpenRefused { latency: Duration },
    /// Not probed: unix-socket forwards, server-allocated ports.
    Unprobed,
    /// Not this round: every forward passed, so a round checks one of them in turn
    /// (see [`Prober::round`]); what the last check found still stands.
    Resting,
}

/// Why a round failed, and which forward's check failed (None: ssh itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundError {
    pub reason: String,
    pub forward: Option<usize>,
}

impl RoundError {
    fn ssh(reason: String) -> RoundError {
        RoundError {
            reason,
            forward: None,
        }
    }

    pub fn contains(&self, what: &str) -> bool {
        self.reason.contains(what)
    }
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

pub struct Prober {
    ctl: PathBuf,
    forwards: Vec<SshForward>,
    timeout: Duration,
    alive: Option<MuxConn>,
    /// Who holds each `-R` port on the server's loopback, for the current ssh.
    owners: Owners,
    /// The last round failed by running out of time (not by a refusal or an end of
    /// file): the adaptive timeout's confirming rule decides what that means.
    pub timed_out: bool,
    /// Rounds until ssh's `-L` listeners are checked again (0: this round).
    listeners_in: u32,
    /// The next round checks every forward: a connection's first round, after a
    /// failed one, and while a forward's last check found anything but "up".
    every_forward_next: bool,
    /// In a round that checks one forward, the index to start looking from.
    turn: usize,
    /// The forwards a round can check (not unix sockets, not server-allocated ports),
    /// by index; the forwards never change.
    probeable: Vec<usize>,
    /// By forward: its target spoke first in its last check. Such a check waits for the
    /// target's bytes alone, which come after ssh's answer to the channel request and
    /// prove it: one wake-up per check instead of two.
    speaks_first: Vec<bool>,
    /// By forward: how messages name it (`SshForward::describe`), made once.
    described: Vec<Rc<str>>,
}

/// ssh never closes a `-L` listener while it runs, so one check per connection proves
/// it, and each check is a loopback TCP handshake (both ends' state machine run in
/// this process's system call, and ssh opens and closes a channel for it): a
/// round checks them first, after a failed round, and then every this many rounds
/// (a minute at 5 s), not every round.
const LISTENERS_EVERY: u32 = 12;
/// The half-bound verdict of one ssh connection (recognised by its pid).
#[derive(Default)]
struct Owners {
    ssh_pid: u32,
    tries: u8,
    decided: bool,
    half_bound: Option<RoundError>,
}
impl Prober {
    pub fn new(ctl: PathBuf, forwards: Vec<SshForward>, timeout: Duration) -> Prober {
        let described = forwards.iter().map(|f| Rc::from(f.describe())).collect();
        Prober::with_descriptions(ctl, forwards, described, timeout)
    }

    /// As [`Prober::new`], sharing descriptions already made: `described` holds each
    /// forward's `SshForward::describe`, in the same order.
    pub fn with_descriptions(
        ctl: PathBuf,
        forwards: Vec<SshForward>,
        described: Vec<Rc<str>>,
        timeout: Duration,
    ) -> Prober {
        debug_assert_eq!(forwards.len(), described.len());
        let probeable = (0..forwards.len())
            .filter(|&i| !matches!(forwards[i], SshForward::Unprobed { .. }))
            .collect();
        Prober {
            ctl,
            speaks_first: vec![false; forwards.len()],
            described,
            forwards,
            timeout,
            alive: None,
            owners: Owners::default(),
            timed_out: false,
            listeners_in: 0,
            every_forward_next: true,
            turn: 0,
            probeable,
        }
    }

    /// Every forward passed its last check: rounds check one in turn.
    pub fn resting(&self) -> bool {
        !self.every_forward_next
    }

    /// The next round checks ssh (the alive check) and every forward.
    pub fn check_every_forward_next(&mut self) {
        self.every_forward_next = true;
    }

    /// The next round's time-out (the adaptive one of `rtt::Rounds`).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn quiet_window(&self) -> Duration {
        (self.timeout / 2).min(Duration::from_secs(1))
    }

    /// Runs one round. `Err` is a one-line reason and the forward it concerns.
    ///
    /// Every round proves ssh (the alive check) and the server session (a channel
    /// through it). While every forward passes, a round checks one forward, each in
    /// turn: the transport is what fails in most faults, and one channel proves it as
    /// well as several, where each further channel costs about as much as the rest of
    /// the round (`benches/idle-cpu.sh`). A forward's own end (its target, its
    /// listener) is then noticed within as many rounds as there are forwards. Any
    /// failure or a forward found not up brings back rounds that check them all.
    pub fn round(&mut self) -> Result<RoundOk, RoundError> {
        let round = self.round_of_checks();
        match &round {
            Ok(ok) => self.every_forward_next = !ok.every_forward_up(),
            Err(_) => {
                self.listeners_in = 0;
                self.every_forward_next = true;
            }
        }
        round
    }

    /// The forwards this round checks: all of them, or the next one in turn that can
    /// be probed.
    fn forwards_to_check(&mut self) -> Vec<usize> {
        let all = &self.probeable;
        if self.every_forward_next || all.len() <= 1 {
            return all.clone();
        }
        let next = all
            .iter()
            .copied()
            .find(|&i| i >= self.turn)
            .unwrap_or(all[0]);
        self.turn = next + 1;
        vec![next]
    }

    fn round_of_checks(&mut self) -> Result<RoundOk, RoundError> {
        self.timed_out = false;
        let start = Instant::now();
        let deadline = start + self.timeout;
        // A round that rests on one forward has no alive check of its own: the
        // channel's control connection stands in for it (ssh's hello on it comes from
        // the same loop), and ssh's pid is the one the last full round learned.
        let full = self.every_forward_next;
        let mut checks = Vec::with_capacity(3);
        if full {
            checks.push(
                self.request_alive_check(start + self.alive_timeout())
                    .map_err(RoundError::ssh)?,
            );
        }
        let chosen = self.forwards_to_check();
        for &index in &chosen {
            let check = self
                .open(index, &self.forwards[index], deadline)
                .map_err(|reason| RoundError {
                    reason,
                    forward: Some(index),
                })?;
            if let Some(check) = check {
                checks.push(check);
            }
        }
        if !chosen.iter().any(|&i| self.forwards[i].crosses_server()) {
            checks.push(self.server_round_trip(deadline).map_err(RoundError::ssh)?);
        }
        if !full {
            let by = start + self.alive_timeout();
            for check in checks.iter_mut() {
                if matches!(check.step, Step::Opening { .. }) && by < check.deadline {
                    check.ssh_by = Some(by);
                }
            }
        }
        let (alive_pid, answered) = self.wait(&mut checks)?;
        let ssh_pid = if full { alive_pid } else { self.owners.ssh_pid };
        let latency = answered.saturating_duration_since(start);
        if self.listeners_in == 0 {
            self.local_listeners(deadline)?;
            self.listeners_in = LISTENERS_EVERY;
        }
        self.listeners_in -= 1;
        let mut forwards: Vec<ForwardProbe> = (0..self.forwards.len())
            .map(|i| {
                if self.probeable.contains(&i) && !chosen.contains(&i) {
                    ForwardProbe::Resting
                } else {
                    ForwardProbe::Unprobed
                }
            })
            .collect();
        for check in &checks {
            if let Kind::Forward { index, .. } = check.what {
                let took = check
                    .answered
                    .map_or(latency, |at| at.saturating_duration_since(start));
                forwards[index] = match check.down {
                    Some(ForwardProbe::TargetDown { .. }) => {
                        ForwardProbe::TargetDown { latency: took }
                    }
                    Some(ForwardProbe::OpenRefused { .. }) => {
                        ForwardProbe::OpenRefused { latency: took }
                    }
                    _ => ForwardProbe::Up { latency: took },
                };
            }
        }
        if let Some(error) = self.half_bound(ssh_pid) {
            return Err(error);
        }
        Ok(RoundOk {
            latency,
            ssh_pid,
            forwards,
        })
    }

    /// A `-R` on the server's default loopback that is ours on one address and another
    /// program's on the other. Asked once per ssh connection (the bind is decided when
    /// ssh connects, and nobody can take the address from a listener that holds it),
    /// again in the next rounds only while it cannot be told; the verdict lasts until
    /// ssh is replaced.
    fn half_bound(&mut self, ssh_pid: u32) -> Option<RoundError> {
        if self.owners.ssh_pid != ssh_pid {
            self.owners = Owners {
                ssh_pid,
                ..Owners::default()
            };
        }
        if self.owners.half_bound.is_some() || self.owners.decided {
            return self.owners.half_bound.clone();
        }
        if self.owners.tries >= OWNER_TRIES {
            return None;
        }
        self.owners.tries += 1;
        let mut decided = true;
        for (index, forward) in self.forwards.iter().enumerate() {
            let SshForward::Remote { bind, port, .. } = forward else {
                continue;
            };
            if !matches!(bind.as_deref(), None | Some("" | "localhost")) {
                continue;
            }
            let ask = |host: &str| {
                let deadline = Instant::now() + self.timeout;
                remote_listener(
                    &self.ctl,
                    host,
                    *port,
                    ssh_pid,
                    self.quiet_window(),
                    deadline,
                )
            };
            let (v4, v6) = (ask("127.0.0.1"), ask("::1"));
            if let Some(reason) = half_bound(*port, v4, v6) {
                let error = RoundError {
                    reason: format!("{}: {reason}; {HALF_BOUND_FIX}", forward.describe()),
                    forward: Some(index),
                };
                self.owners.half_bound = Some(error.clone());
                return Some(error);
            }
            decided &= v4 != Listener::Unknown && v6 != Listener::Unknown;
        }
        self.owners.decided = decided;
        None
    }

    /// The alive check never leaves this machine: ssh answers it from its own event
    /// loop, so a live ssh replies in milliseconds. A shorter bound than the network
    /// probes get lets a frozen client be caught sooner.
    fn alive_timeout(&self) -> Duration {
        self.timeout.min(ALIVE_TIMEOUT)
    }

    /// Queues an alive check on the persistent connection (made on the first round, or
    /// again after a failed one).
    fn request_alive_check(&mut self, deadline: Instant) -> Result<Pending, String> {
        let requested = match self.alive.take() {
            Some(conn) => Ok(conn),
            None => MuxConn::connect(&self.ctl),
        }
        .and_then(|mut conn| Ok((conn.request_alive_check()?, conn)));
        match requested {
            Ok((id, conn)) => Ok(Pending::new(
                Kind::Alive,
                Step::Alive { conn, id },
                deadline,
            )),
            Err(e) => Err(self.alive_error(e)),
        }
    }

    fn alive_error(&self, e: std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::TimedOut => format!(
                "ssh did not answer an alive check within {:?} (frozen or wedged)",
                self.alive_timeout()
            ),
            std::io::ErrorKind::NotFound => {
                "ssh has no control socket yet (not connected)".to_string()
            }
            _ => format!("ssh's control socket {}: {e}", self.ctl.display()),
        }
    }

    /// Asks ssh for a channel to `host:port` as the server sees it; answered in `wait`.
    fn request_channel(
        &self,
        host: &str,
        port: u16,
        expect: Option<&'static [u8]>,
        data_first: bool,
    ) -> Result<Step, String> {
        let mut conn = MuxConn::connect(&self.ctl).map_err(|e| format!("control socket: {e}"))?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        conn.request_stdio_fwd(host, port, &theirs)
            .map_err(|e| format!("control socket: {e}"))?;
        drop(theirs); // ssh holds its own copies now; ours sees EOF when the channel closes
        // Long enough for a target that answers at once on any usable path, short
        // enough that a target gone quiet still passes by its quiet window within the
        // round's deadline (half of it, at most 1 s, after this).
        let data_first_until = data_first.then(|| Instant::now() + self.quiet_window() / 2);
        Ok(Step::Opening {
            conn,
            ours,
            host: host.to_string(),
            port,
            expect,
            data_first_until,
        })
    }

    /// For tunnels whose forwards never open a channel on the server (`-D` only: ssh
    /// answers the SOCKS greeting itself), asks the server for a channel to a port
    /// that is normally closed. Refused or opened, either answer proves the server
    /// session is alive; only silence until the deadline fails.
    fn server_round_trip(&self, deadline: Instant) -> Result<Pending, String> {
        let step = self
            .request_channel("127.0.0.1", SERVER_PROBE_PORT, None, false)
            .map_err(|e| format!("the server did not answer a channel request: {e}"))?;
        Ok(Pending::new(Kind::ServerRoundTrip, step, deadline))
    }

    /// ssh's `-L` listeners accept. Checked last: the throwaway connection makes ssh
    /// open (and at once close) a channel, and sshd, which leaves Nagle on for a
    /// session-less connection, holds its next small packet until ssh's delayed ACK
    /// (40 ms on Linux); done first, that stall landed inside the round (a -L round
    /// took ~40 ms instead of ~1 ms).
    fn local_listeners(&self, deadline: Instant) -> Result<(), RoundError> {
        for (index, forward) in self.forwards.iter().enumerate() {
            if let SshForward::Local { bind, port, .. } = forward {
                let dial = dial_host(Some(bind));
                listener_accepts(&dial, *port, deadline).map_err(|e| RoundError {
                    reason: format!("{}: local listener {dial}:{port}: {e}", forward.describe()),
                    forward: Some(index),
                })?;
            }
        }
        Ok(())
    }

    fn open(
        &self,
        index: usize,
        forward: &SshForward,
        deadline: Instant,
    ) -> Result<Option<Pending>, String> {
        let what = Rc::clone(&self.described[index]);
        let fail = |e: String| format!("{what}: {e}");
        let flag = match forward {
            SshForward::Local { .. } => 'L',
            SshForward::Remote { .. } | SshForward::RemoteDynamic { .. } => 'R',
            _ => 'D',
        };
        let data_first = self.speaks_first[index];
        let step = match forward {
            SshForward::Remote { bind, port, .. } => self
                .request_channel(&dial_host(bind.as_deref()), *port, None, data_first)
                .map_err(fail)?,
            SshForward::RemoteDynamic { bind, port } => {
                // The greeting waits in the channel until ssh takes over our socket.
                let step = self
                    .request_channel(
                        &dial_host(bind.as_deref()),
                        *port,
                        Some(SOCKS_ACCEPT),
                        data_first,
                    )
                    .map_err(fail)?;
                if let Step::Opening { ours, .. } = &step {
                    (&*ours)
                        .write_all(SOCKS_GREETING)
                        .map_err(|e| fail(e.to_string()))?;
                }
                step
            }
            SshForward::Local {
                host, host_port, ..
            } => {
                // The target through the server here; our listener after the answers
                // (see `local_listeners`).
                self.request_channel(host, *host_port, None, data_first)
                    .map_err(fail)?
            }
            SshForward::Dynamic { bind, port } => {
                let dial = dial_host(Some(bind));
                let mut local = connect_tcp(&dial, *port, deadline)
                    .map_err(|e| fail(format!("local SOCKS listener {dial}:{port}: {e}")))?;
                local
                    .write_all(SOCKS_GREETING)
                    .map_err(|e| fail(e.to_string()))?;
                Step::Data {
                    io: Io::Tcp(local),
                    expect: Some(SOCKS_ACCEPT),
                    got: Vec::new(),
                    quiet_until: None,
                }
            }
            SshForward::Unprobed { .. } => return Ok(None),
        };
        let kind = Kind::Forward { index, what, flag };
        Ok(Some(Pending::new(kind, step, deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_every_forward_passes_a_round_checks_one_in_turn() {
        let local = |port| SshForward::Local {
            bind: "127.0.0.1".into(),
            port,
            host: "127.0.0.1".into(),
            host_port: 22,
        };
        let unix = SshForward::Unprobed {
            flag: 'L',
            spec: "/run/a.sock:/run/b.sock".into(),
            why: "unix socket",
        };
        let forwards = vec![local(1), unix, local(3), local(4)];
        let mut p = Prober::new("/nonexistent".into(), forwards, Duration::from_secs(5));
        // A connection's first round checks them all.
        assert_eq!(p.forwards_to_check(), [0, 2, 3]);
        p.every_forward_next = false;
        assert_eq!(p.forwards_to_check(), [0]);
        assert_eq!(p.forwards_to_check(), [2], "the unprobed one is skipped");
        assert_eq!(p.forwards_to_check(), [3]);
        assert_eq!(p.forwards_to_check(), [0], "round again");
        p.every_forward_next = true;
        assert_eq!(
            p.forwards_to_check(),
            [0, 2, 3],
            "after a failure or a forward down"
        );
        // One forward: always that one.
        let mut one = Prober::new(
            "/nonexistent".into(),
            vec![local(1)],
            Duration::from_secs(5),
        );
        one.every_forward_next = false;
        assert_eq!(one.forwards_to_check(), [0]);
        assert_eq!(one.forwards_to_check(), [0]);
    }
}
