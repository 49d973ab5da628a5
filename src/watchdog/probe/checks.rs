//! One check of a probe round, step by step: what it still waits for (`Step`), how a
//! readable fd moves it on (`Prober::step_on`), and the one `poll` a round sleeps in
//! over every check still waiting (`Prober::wait`).

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};

use super::{ForwardProbe, Prober, RoundError};
use crate::watchdog::mux::{self, MuxConn};

/// What a check still waits for.
pub(super) enum Step {
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
pub(super) enum Io {
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
pub(super) struct Pending {
    pub(super) what: Kind,
    pub(super) step: Step,
    pub(super) deadline: Instant,
    /// When the last answer for this check came (its latency).
    pub(super) answered: Option<Instant>,
    /// A forward's finding when its far end refused (the check is done).
    pub(super) down: Option<ForwardProbe>,
    /// In a round without an alive check: by then ssh must have said its hello on
    /// this check's control connection (the alive check's bound).
    pub(super) ssh_by: Option<Instant>,
}

pub(super) enum Kind {
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
pub(super) enum Moved {
    Waiting,
    /// Answered (at this instant, for the latency), with the alive check's pid.
    Answered(Option<u32>),
    /// The far end refused: the check is done with this finding.
    Down(fn(Duration) -> ForwardProbe),
}

impl Prober {
    /// Sleeps in one poll over every check still waiting, until each is answered or one
    /// fails or runs out of time. Returns the alive check's pid and when the last answer
    /// came (a target accepted by silence counts from its channel's opening).
    pub(super) fn wait(&mut self, checks: &mut [Pending]) -> Result<(u32, Instant), RoundError> {
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
            let timeout = crate::watchdog::poll_timeout(wake.saturating_duration_since(now));
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
    pub(super) fn new(what: Kind, step: Step, deadline: Instant) -> Pending {
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
/// How a channel that closed before any data is reported (and recognised).
const EOF_BEFORE_DATA: &str = "the channel closed before the target sent anything";
