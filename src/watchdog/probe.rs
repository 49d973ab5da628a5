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
//! A `-R` on the server's default loopback can be half bound: when another program
//! holds the server's 127.0.0.1:PORT, sshd binds only [::1]:PORT (or the other way
//! round) and still reports success, and everyone on the server who dials
//! 127.0.0.1:PORT reaches that program. The channel check alone cannot see it (the
//! other program answers too), so once per ssh connection [`remote_listener`] asks,
//! for each loopback address, whether a channel to it comes back to us: with the
//! channel open, ssh (our child) holds a new socket, its connection to the forward's
//! target. One address ours and the other not fails every round of that connection
//! (see [`Prober::round`]).
//!
//! Cost: a round writes every request first (alive check, channel requests with their
//! fds) and then sleeps in one `poll` over every answer it still waits for, so ssh
//! handles them in one pass and the round wakes a few times, not once per message
//! (the idle CPU it costs; `benches/idle-cpu.sh` measures it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::args::{SshForward, dial_host};
use super::mux::{self, MuxConn};

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

/// [`remote_listener`]'s answer for one of the server's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// A channel to it came back through our `-R`.
    Ours,
    /// Something accepted the channel, and it did not come back to us.
    Other,
    /// The server could not open a channel to it: nothing listens there.
    Absent,
    /// Cannot be told (the channel closed before any data, no /proc, an error).
    Unknown,
}

/// The half-bound verdict of one ssh connection (recognised by its pid).
#[derive(Default)]
struct Owners {
    ssh_pid: u32,
    tries: u8,
    decided: bool,
    half_bound: Option<RoundError>,
}

/// What a check still waits for.
enum Step {
    /// ssh's answer to our alive check on the persistent connection.
    Alive {
        conn: MuxConn,
        id: u32,
    },
    /// ssh's answer to a channel request: it comes once the server opened the channel
    /// (the server connected to the target) or refused it.
    Opening {
        conn: MuxConn,
        ours: UnixStream,
        host: String,
        port: u16,
        expect: Option<&'static [u8]>,
        /// Until then only `ours` is polled, for the target's first bytes (a target
        /// that spoke first last time); after it, ssh's answer is read as for any
        /// target.
        data_first_until: Option<Instant>,
    },
    /// The target's first bytes.
    Data {
        io: Io,
        expect: Option<&'static [u8]>,
        got: Vec<u8>,
        /// Silence until then also passes (targets that wait for the client).
        quiet_until: Option<Instant>,
    },
    Done,
}

/// What a pending data check reads from.
enum Io {
    /// Our end of a channel through ssh, and the control connection that keeps it open.
    Channel(UnixStream, #[allow(dead_code)] MuxConn),
    /// A TCP connection to a local listener of ssh (`-D`).
    Tcp(TcpStream),
}

impl Io {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Io::Channel(s, _) => s.as_fd(),
            Io::Tcp(t) => t.as_fd(),
        }
    }
}

/// One check of this round: the alive check, a forward, or the server round trip.
struct Pending {
    what: Kind,
    step: Step,
    deadline: Instant,
    /// When the last answer for this check came (its latency).
    answered: Option<Instant>,
    /// A forward's finding when its far end refused (the check is done).
    down: Option<ForwardProbe>,
    /// In a round without an alive check: by then ssh must have said its hello on
    /// this check's control connection (the alive check's bound).
    ssh_by: Option<Instant>,
}

enum Kind {
    Alive,
    /// A forward: its index and description, and whether the server's connect to the
    /// target is what an open failure means (`-L`).
    Forward {
        index: usize,
        what: Rc<str>,
        flag: char,
    },
    /// `server_round_trip`: any answer from the server passes, a refusal too.
    ServerRoundTrip,
}

/// How a check moved on after its fd was readable.
enum Moved {
    Waiting,
    /// Answered (at this instant, for the latency), with the alive check's pid.
    Answered(Option<u32>),
    /// The far end refused: the check is done with this finding.
    Down(fn(Duration) -> ForwardProbe),
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

    /// Sleeps in one poll over every check still waiting, until each is answered or one
    /// fails or runs out of time. Returns the alive check's pid and when the last answer
    /// came (a target accepted by silence counts from its channel's opening).
    fn wait(&mut self, checks: &mut [Pending]) -> Result<(u32, Instant), RoundError> {
        let mut ssh_pid = 0;
        let mut answered = Instant::now();
        let mut alive_read_early = false;
        // Bounded: every pass reads something, or the clock runs towards a deadline.
        loop {
            let now = Instant::now();
            let mut wake = None::<Instant>;
            for check in checks.iter_mut() {
                if let Step::Data {
                    quiet_until: Some(quiet),
                    ..
                } = check.step
                    && now >= quiet
                {
                    check.step = Step::Done;
                    self.learn(check, false);
                }
                if let Step::Opening {
                    data_first_until: ref mut until @ Some(t),
                    ..
                } = check.step
                    && now >= t
                {
                    // Quiet this time: ssh's answer decides, as for a target that waits.
                    *until = None;
                    self.learn(check, false);
                }
                if matches!(check.step, Step::Done) {
                    continue;
                }
                if let Some(by) = check.ssh_by
                    && now >= by
                {
                    check.ssh_by = None;
                    if let Step::Opening { conn, .. } = &mut check.step
                        && !conn.heard_from()
                    {
                        self.timed_out = true;
                        return Err(RoundError {
                            reason: self.ssh_silent(self.alive_timeout()),
                            forward: None,
                        });
                    }
                }
                if now >= check.deadline {
                    // Not polled while others were pending: its answer may be waiting.
                    if matches!(check.step, Step::Alive { .. })
                        && let Moved::Answered(Some(pid)) =
                            self.step_on(check).map_err(RoundError::ssh)?
                    {
                        ssh_pid = pid;
                        continue;
                    }
                    self.timed_out = true;
                    return Err(RoundError {
                        reason: self.timed_out(check),
                        forward: check.index(),
                    });
                }
                let until = match check.step {
                    Step::Data {
                        quiet_until: Some(quiet),
                        ..
                    }
                    | Step::Opening {
                        data_first_until: Some(quiet),
                        ..
                    } => quiet.min(check.deadline),
                    _ => check.deadline,
                };
                let until = check.ssh_by.map_or(until, |by| by.min(until));
                wake = Some(wake.map_or(until, |w| w.min(until)));
            }
            let Some(wake) = wake else {
                return Ok((ssh_pid, answered));
            };
            // ssh answers the alive check first, from its own loop: read it along with
            // the last answers instead of waking for it alone (its deadline still
            // bounds the sleep).
            let others = checks
                .iter()
                .any(|c| !matches!(c.step, Step::Done | Step::Alive { .. }));
            // By then its answer has almost always arrived: one read takes it, where a
            // `poll` first would cost a system call more every round.
            if !others && !alive_read_early {
                alive_read_early = true;
                let mut early = None;
                for check in checks.iter_mut() {
                    if matches!(check.step, Step::Alive { .. })
                        && let Moved::Answered(Some(pid)) =
                            self.step_on(check).map_err(RoundError::ssh)?
                    {
                        early = Some(pid);
                    }
                }
                if let Some(pid) = early {
                    ssh_pid = pid;
                    continue;
                }
            }
            let waiting: Vec<usize> = (0..checks.len())
                .filter(|&i| match checks[i].step {
                    Step::Done => false,
                    Step::Alive { .. } => !others,
                    _ => true,
                })
                .collect();
            let mut fds: Vec<PollFd> = waiting
                .iter()
                .map(|&i| PollFd::new(checks[i].fd(), PollFlags::POLLIN))
                .collect();
            let timeout = PollTimeout::try_from(wake.saturating_duration_since(now))
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(RoundError::ssh(format!("poll: {e}"))),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            for (k, &i) in waiting.iter().enumerate() {
                if !ready[k] {
                    continue;
                }
                let check = &mut checks[i];
                let moved = self.step_on(check).map_err(|reason| RoundError {
                    reason,
                    forward: check.index(),
                })?;
                match moved {
                    // The alive check is local and read late on purpose (along with
                    // the last answers): no round trip, so no part of the latency, which
                    // feeds the adaptive time-out.
                    Moved::Answered(Some(pid)) => ssh_pid = pid,
                    Moved::Answered(None) => {
                        answered = Instant::now();
                        check.answered = Some(answered);
                    }
                    Moved::Down(finding) => {
                        answered = Instant::now();
                        check.answered = Some(answered);
                        check.down = Some(finding(Duration::ZERO));
                    }
                    Moved::Waiting => {}
                }
            }
        }
    }

    /// Reads what arrived for `check` and moves it on.
    fn step_on(&mut self, check: &mut Pending) -> Result<Moved, String> {
        let quiet_window = self.quiet_window();
        let step = std::mem::replace(&mut check.step, Step::Done);
        // Woken by the target's bytes: read them now, not after one more poll.
        let data_waiting = matches!(
            step,
            Step::Opening {
                data_first_until: Some(_),
                ..
            }
        );
        let (step, moved) = match step {
            Step::Alive { mut conn, id } => {
                match conn.try_recv().and_then(|reply| match reply {
                    Some(reply) => mux::alive_reply(&reply, id).map(Some),
                    None => Ok(None),
                }) {
                    Ok(Some(pid)) => {
                        self.alive = Some(conn);
                        (Step::Done, Moved::Answered(Some(pid)))
                    }
                    Ok(None) => (Step::Alive { conn, id }, Moved::Waiting),
                    // A half-read reply would desynchronise the stream: the connection
                    // is dropped here and made again next round.
                    Err(e) => return Err(self.alive_error(e)),
                }
            }
            // Woken by the target's bytes: they prove the channel open (ssh relays
            // nothing before), so ssh's answer, waiting on the control connection, is
            // left unread: one system call less in every idle round.
            Step::Opening {
                ref ours,
                expect: None,
                data_first_until: Some(_),
                ..
            } if has_bytes(ours) => {
                self.learn(check, true);
                (Step::Done, Moved::Answered(None))
            }
            Step::Opening {
                mut conn,
                ours,
                host,
                port,
                expect,
                data_first_until: _,
            } => {
                let server_round_trip = matches!(check.what, Kind::ServerRoundTrip);
                let reply = conn.try_recv().map_err(|e| check.fail(e.to_string()))?;
                match reply.map(|r| mux::stdio_fwd_reply(&r, &host, port)) {
                    // Woken by the target's bytes (or the channel's end) before ssh's
                    // answer could be read: it is on its way; wait for it.
                    None => (
                        Step::Opening {
                            conn,
                            ours,
                            host,
                            port,
                            expect,
                            data_first_until: None,
                        },
                        Moved::Waiting,
                    ),
                    Some(Ok(())) if server_round_trip => (Step::Done, Moved::Answered(None)),
                    Some(Err(e)) if server_round_trip && e.starts_with("ssh refused a channel") => {
                        (Step::Done, Moved::Answered(None))
                    }
                    // The server could not open the channel. For -L it connects to the
                    // target itself: the target refuses (or the server forbids it,
                    // which the session tells from ssh's log). For -R it connects to
                    // its own listener: nothing listens, the forward is gone.
                    Some(Err(e))
                        if check.flag() == Some('L') && e.starts_with("ssh refused a channel") =>
                    {
                        (
                            Step::Done,
                            Moved::Down(|latency| ForwardProbe::OpenRefused { latency }),
                        )
                    }
                    Some(Err(e))
                        if check.flag() == Some('R') && e.starts_with("ssh refused a channel") =>
                    {
                        return Err(check.fail(format!(
                            "the server has no listener on {host}:{port} (the -R listener is missing): {e}"
                        )));
                    }
                    Some(Err(e)) => return Err(check.fail(e)),
                    Some(Ok(())) => {
                        let opened = Instant::now();
                        let quiet_until = expect.is_none().then(|| opened + quiet_window);
                        let data = Step::Data {
                            io: Io::Channel(ours, conn),
                            expect,
                            got: Vec::new(),
                            quiet_until,
                        };
                        // For a silent target, the time to its channel is the answer.
                        (data, Moved::Answered(None))
                    }
                }
            }
            Step::Data {
                mut io,
                expect,
                mut got,
                quiet_until,
            } => {
                let eof_is_target = expect.is_none() && matches!(check.flag(), Some('L' | 'R'));
                let read = read_first_bytes(&mut io, expect, &mut got);
                if eof_is_target && read.as_ref().is_err_and(|e| e.starts_with(EOF_BEFORE_DATA)) {
                    (
                        Step::Done,
                        Moved::Down(|latency| ForwardProbe::TargetDown { latency }),
                    )
                } else if read.map_err(|e| check.fail(e))? {
                    self.learn(check, true);
                    (Step::Done, Moved::Answered(None))
                } else {
                    (
                        Step::Data {
                            io,
                            expect,
                            got,
                            quiet_until,
                        },
                        Moved::Waiting,
                    )
                }
            }
            Step::Done => (Step::Done, Moved::Waiting),
        };
        check.step = step;
        if data_waiting && matches!(check.step, Step::Data { .. }) {
            return self.step_on(check);
        }
        Ok(moved)
    }

    fn ssh_silent(&self, within: Duration) -> String {
        format!("ssh did not answer on its control socket within {within:?} (frozen or wedged)")
    }

    /// Notes whether a forward's target spoke first (see `speaks_first`).
    fn learn(&mut self, check: &Pending, spoke: bool) {
        if let Some(index) = check.index() {
            self.speaks_first[index] = spoke;
        }
    }

    fn timed_out(&self, check: &mut Pending) -> String {
        if let Step::Opening { conn, .. } = &mut check.step
            && !conn.heard_from()
        {
            // Not even ssh's hello: its loop is stuck, whatever the server does.
            return self.ssh_silent(self.timeout);
        }
        match check.what {
            Kind::Alive => self.alive_error(std::io::ErrorKind::TimedOut.into()),
            _ => check.fail(format!("no answer within {:?}", self.timeout)),
        }
    }
}

impl Pending {
    fn new(what: Kind, step: Step, deadline: Instant) -> Pending {
        Pending {
            what,
            step,
            deadline,
            answered: None,
            down: None,
            ssh_by: None,
        }
    }

    fn index(&self) -> Option<usize> {
        match self.what {
            Kind::Forward { index, .. } => Some(index),
            _ => None,
        }
    }

    fn flag(&self) -> Option<char> {
        match self.what {
            Kind::Forward { flag, .. } => Some(flag),
            _ => None,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.step {
            Step::Opening {
                ours,
                data_first_until: Some(_),
                ..
            } => ours.as_fd(),
            Step::Alive { conn, .. } | Step::Opening { conn, .. } => conn.fd(),
            Step::Data { io, .. } => io.fd(),
            Step::Done => unreachable!("a finished check is not polled"),
        }
    }

    fn fail(&self, e: String) -> String {
        match &self.what {
            Kind::Alive => e,
            Kind::Forward { what, .. } => format!("{what}: {e}"),
            Kind::ServerRoundTrip => {
                format!("the server did not answer a channel request: {e}")
            }
        }
    }
}

/// Whether bytes were waiting on `s` (taken; never blocks). The end of the stream or
/// nothing yet: false, and the next read finds the same; an error: false, and ssh's
/// answer on the control connection says what happened.
fn has_bytes(s: &UnixStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        nix::sys::socket::recv(s.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT),
        Ok(n) if n > 0
    )
}

/// Reads a target's first bytes: `Ok(true)` once they decide the check (any data, or
/// the whole expected reply), `Ok(false)` to wait for more.
fn read_first_bytes(
    io: &mut Io,
    expect: Option<&'static [u8]>,
    got: &mut Vec<u8>,
) -> Result<bool, String> {
    let mut buf = [0u8; 256];
    let read = match io {
        Io::Channel(s, _) => s.read(&mut buf),
        Io::Tcp(t) => t.read(&mut buf),
    };
    match read {
        Ok(0) => Err(format!(
            "{EOF_BEFORE_DATA} (target down, or nothing listens on the forwarded port)"
        )),
        Ok(n) => {
            let Some(want) = expect else {
                return Ok(true);
            };
            got.extend_from_slice(&buf[..n]);
            if got.len() < want.len() {
                return Ok(false);
            }
            if &got[..want.len()] != want {
                return Err(format!("unexpected SOCKS reply {got:02x?}"));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// What to do about a half-bound `-R` port.
pub const HALF_BOUND_FIX: &str = "stop that program or choose another port";

/// The finding for a `-R` port that is ours on one of the server's loopback addresses
/// and another program's on the other; None for anything else.
pub fn half_bound(port: u16, v4: Listener, v6: Listener) -> Option<String> {
    let (theirs, ours) = match (v4, v6) {
        (Listener::Other, Listener::Ours) => (format!("127.0.0.1:{port}"), format!("[::1]:{port}")),
        (Listener::Ours, Listener::Other) => (format!("[::1]:{port}"), format!("127.0.0.1:{port}")),
        _ => return None,
    };
    Some(format!(
        "the server's {theirs} belongs to another program (sshd could bind only {ours})"
    ))
}

/// Whether a channel through ssh's control socket `ctl` to the server's `host:port`
/// comes back through our `-R` (ssh, pid `ssh_pid`, then holds a new socket: its
/// connection to the forward's target) or reaches another listener. The channel waits
/// for the far end's first bytes or `quiet`; all of it is bounded by `deadline`.
/// Linux only (ssh's sockets from /proc); elsewhere `Unknown`.
pub fn remote_listener(
    ctl: &std::path::Path,
    host: &str,
    port: u16,
    ssh_pid: u32,
    quiet: Duration,
    deadline: Instant,
) -> Listener {
    let Ok(mut conn) = MuxConn::connect(ctl) else {
        return Listener::Unknown;
    };
    // One answer first: ssh has accepted this connection, so its end of it is among
    // the sockets counted before the channel.
    let alive = conn
        .request_alive_check()
        .and_then(|id| mux::alive_reply(&conn.recv(deadline)?, id));
    if alive.ok() != Some(ssh_pid) {
        return Listener::Unknown;
    }
    let Some(before) = ssh_sockets(ssh_pid) else {
        return Listener::Unknown;
    };
    let Ok((mut ours, theirs)) = UnixStream::pair() else {
        return Listener::Unknown;
    };
    // ssh holds the end we pass it: a new socket of ssh's that is not the target's.
    let Ok(passed) = nix::sys::stat::fstat(&theirs) else {
        return Listener::Unknown;
    };
    if conn.request_stdio_fwd(host, port, &theirs).is_err() {
        return Listener::Unknown;
    }
    drop(theirs);
    match conn
        .recv(deadline)
        .map(|r| mux::stdio_fwd_reply(&r, host, port))
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.starts_with("ssh refused a channel") => return Listener::Absent,
        _ => return Listener::Unknown,
    }
    let until = (Instant::now() + quiet).min(deadline);
    let left = until.saturating_duration_since(Instant::now());
    let mut fds = [PollFd::new(ours.as_fd(), PollFlags::POLLIN)];
    let ready = poll(
        &mut fds,
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
    );
    if matches!(ready, Ok(n) if n > 0) {
        // A target that refuses leaves no socket behind to see: no verdict.
        let mut buf = [0u8; 256];
        if !matches!(ours.read(&mut buf), Ok(n) if n > 0) {
            return Listener::Unknown;
        }
    }
    let Some(after) = ssh_sockets(ssh_pid) else {
        return Listener::Unknown;
    };
    // `ino_t` is 32 bits on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let passed = passed.st_ino as u64;
    if after.iter().any(|i| *i != passed && !before.contains(i)) {
        Listener::Ours
    } else {
        Listener::Other
    }
}

/// The socket inodes ssh holds; None where that cannot be read.
#[cfg(target_os = "linux")]
fn ssh_sockets(pid: u32) -> Option<Vec<u64>> {
    let inodes = crate::procinfo::socket_inodes(pid);
    (!inodes.is_empty()).then_some(inodes)
}

#[cfg(not(target_os = "linux"))]
fn ssh_sockets(_pid: u32) -> Option<Vec<u64>> {
    None
}

/// How a channel that closed before any data is reported (and recognised).
const EOF_BEFORE_DATA: &str = "the channel closed before the target sent anything";

/// Whether a local listener accepts by `deadline`: the handshake completes (then the
/// connection is closed unused). The socket is non-blocking from `socket` on (Linux),
/// and one `poll` waits for the handshake: `TcpStream::connect_timeout` switches the
/// socket to non-blocking and back, two more system calls every round.
fn listener_accepts(host: &str, port: u16, deadline: Instant) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockType, SockaddrIn, SockaddrIn6, connect, socket};
    use std::os::fd::AsRawFd;

    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "probe timeout");
    if deadline <= Instant::now() {
        return Err(timed_out());
    }
    // Not ToSocketAddrs: no getaddrinfo in the watchdog (see `addresses`).
    let addr = super::reachability::addresses(host, port, deadline)
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, mux::SOCKET_FLAGS, None)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    super::process::set_cloexec_nonblocking(&fd)?;
    let connected = match addr {
        std::net::SocketAddr::V4(a) => connect(fd.as_raw_fd(), &SockaddrIn::from(a)),
        std::net::SocketAddr::V6(a) => connect(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    };
    match connected {
        Ok(()) => return Ok(()),
        Err(Errno::EINPROGRESS | Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    // Bounded: each pass sleeps towards the deadline or returns.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let failed = fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        if !failed {
            return Ok(());
        }
        let code = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SocketError)?;
        return Err(if code == 0 {
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed")
        } else {
            std::io::Error::from_raw_os_error(code)
        });
    }
}

fn connect_tcp(host: &str, port: u16, deadline: Instant) -> std::io::Result<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "probe timeout",
        ));
    }
    // Not ToSocketAddrs: no getaddrinfo in the watchdog (see `addresses`).
    let addr = super::reachability::addresses(host, port, deadline)
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    TcpStream::connect_timeout(&addr, left)
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

    #[test]
    fn a_listener_that_accepts_passes_and_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let deadline = Instant::now() + Duration::from_secs(5);
        listener_accepts("127.0.0.1", port, deadline).unwrap();
        drop(listener);
        let err = listener_accepts("127.0.0.1", port, deadline).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }

    #[test]
    fn a_listener_check_past_its_deadline_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = listener_accepts("127.0.0.1", port, Instant::now()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    }

    #[test]
    fn half_bound_only_when_one_address_is_ours_and_the_other_someone_elses() {
        use Listener::*;
        assert_eq!(
            half_bound(8022, Other, Ours).as_deref(),
            Some(
                "the server's 127.0.0.1:8022 belongs to another program (sshd could bind only [::1]:8022)"
            )
        );
        assert_eq!(
            half_bound(8022, Ours, Other).as_deref(),
            Some(
                "the server's [::1]:8022 belongs to another program (sshd could bind only 127.0.0.1:8022)"
            )
        );
        for (v4, v6) in [
            (Ours, Ours),
            (Ours, Absent),
            (Absent, Ours),
            (Other, Other),
            (Other, Unknown),
            (Unknown, Ours),
            (Other, Absent),
        ] {
            assert_eq!(half_bound(8022, v4, v6), None, "{v4:?} {v6:?}");
        }
    }
}
