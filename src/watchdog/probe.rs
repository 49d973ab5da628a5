//! One probe round: is ssh alive (mux alive check), and does every forward carry data
//! end to end? Bounded by the probe timeout as a whole. Uses one persistent control
//! connection for alive checks and one short-lived control connection per forward
//! channel (closed at the end of the round), so nothing accumulates.
//!
//! The end-to-end rule for a channel to a target: data first (an `SSH-2.0-` banner, or
//! the SOCKS reply) = works; end of file before any data = the target is down (the far
//! end could not connect, so the channel closed); silence until a quiet window
//! (min(timeout/2, 1 s) from the channel's opening) with the channel open = works, for
//! targets that wait for the client to speak.
//!
//! Cost: a round writes every request first (alive check, channel requests with their
//! fds) and then sleeps in one `poll` over every answer it still waits for, so ssh
//! handles them in one pass and the round wakes a few times, not once per message
//! (issue 5's idle CPU; `benches/idle-cpu.sh` measures it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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

#[derive(Debug, Clone, Copy)]
pub struct RoundOk {
    /// Time spent waiting for answers (quiet windows of silent targets excluded).
    pub latency: Duration,
    /// The pid ssh reported in its alive answer.
    pub ssh_pid: u32,
}

pub struct Prober {
    ctl: PathBuf,
    forwards: Vec<SshForward>,
    timeout: Duration,
    alive: Option<MuxConn>,
    /// The last round failed by running out of time (not by a refusal or an end of
    /// file): the adaptive timeout's confirming rule decides what that means.
    pub timed_out: bool,
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
}

enum Kind {
    Alive,
    /// A forward, by its description.
    Forward(String),
    /// `server_round_trip`: any answer from the server passes, a refusal too.
    ServerRoundTrip,
}

/// How a check moved on after its fd was readable.
enum Moved {
    Waiting,
    /// Answered (at this instant, for the latency), with the alive check's pid.
    Answered(Option<u32>),
}

impl Prober {
    pub fn new(ctl: PathBuf, forwards: Vec<SshForward>, timeout: Duration) -> Prober {
        Prober {
            ctl,
            forwards,
            timeout,
            alive: None,
            timed_out: false,
        }
    }

    /// The next round's time-out (the adaptive one of `rtt::Rounds`).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn quiet_window(&self) -> Duration {
        (self.timeout / 2).min(Duration::from_secs(1))
    }

    /// Runs one round. `Err` is a one-line reason.
    pub fn round(&mut self) -> Result<RoundOk, String> {
        self.timed_out = false;
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut checks = vec![self.request_alive_check(start + self.alive_timeout())?];
        for forward in &self.forwards {
            if let Some(check) = self.open(forward, deadline)? {
                checks.push(check);
            }
        }
        if !self.forwards.iter().any(SshForward::crosses_server) {
            checks.push(self.server_round_trip(deadline)?);
        }
        let (ssh_pid, answered) = self.wait(&mut checks)?;
        let latency = answered.saturating_duration_since(start);
        self.local_listeners(deadline)?;
        Ok(RoundOk { latency, ssh_pid })
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
            Ok((id, conn)) => Ok(Pending {
                what: Kind::Alive,
                step: Step::Alive { conn, id },
                deadline,
            }),
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
    ) -> Result<Step, String> {
        let mut conn = MuxConn::connect(&self.ctl).map_err(|e| format!("control socket: {e}"))?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        conn.request_stdio_fwd(host, port, &theirs)
            .map_err(|e| format!("control socket: {e}"))?;
        drop(theirs); // ssh holds its own copies now; ours sees EOF when the channel closes
        Ok(Step::Opening {
            conn,
            ours,
            host: host.to_string(),
            port,
            expect,
        })
    }

    /// For tunnels whose forwards never open a channel on the server (`-D` only: ssh
    /// answers the SOCKS greeting itself), asks the server for a channel to a port
    /// that is normally closed. Refused or opened, either answer proves the server
    /// session is alive; only silence until the deadline fails.
    fn server_round_trip(&self, deadline: Instant) -> Result<Pending, String> {
        let step = self
            .request_channel("127.0.0.1", SERVER_PROBE_PORT, None)
            .map_err(|e| format!("the server did not answer a channel request: {e}"))?;
        Ok(Pending {
            what: Kind::ServerRoundTrip,
            step,
            deadline,
        })
    }

    /// ssh's `-L` listeners accept. Checked last: the throwaway connection makes ssh
    /// open (and at once close) a channel, and sshd, which leaves Nagle on for a
    /// session-less connection, holds its next small packet until ssh's delayed ACK
    /// (40 ms on Linux); done first, that stall landed inside the round (a -L round
    /// took ~40 ms instead of ~1 ms).
    fn local_listeners(&self, deadline: Instant) -> Result<(), String> {
        for forward in &self.forwards {
            if let SshForward::Local { bind, port, .. } = forward {
                let dial = dial_host(Some(bind));
                connect_tcp(&dial, *port, deadline).map_err(|e| {
                    format!("{}: local listener {dial}:{port}: {e}", forward.describe())
                })?;
            }
        }
        Ok(())
    }

    fn open(&self, forward: &SshForward, deadline: Instant) -> Result<Option<Pending>, String> {
        let what = forward.describe();
        let fail = |e: String| format!("{what}: {e}");
        let step = match forward {
            SshForward::Remote { bind, port, .. } => self
                .request_channel(&dial_host(bind.as_deref()), *port, None)
                .map_err(fail)?,
            SshForward::RemoteDynamic { bind, port } => {
                // The greeting waits in the channel until ssh takes over our socket.
                let step = self
                    .request_channel(&dial_host(bind.as_deref()), *port, Some(SOCKS_ACCEPT))
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
                self.request_channel(host, *host_port, None).map_err(fail)?
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
        Ok(Some(Pending {
            what: Kind::Forward(what),
            step,
            deadline,
        }))
    }

    /// Sleeps in one poll over every check still waiting, until each is answered or one
    /// fails or runs out of time. Returns the alive check's pid and when the last answer
    /// came (a target accepted by silence counts from its channel's opening).
    fn wait(&mut self, checks: &mut [Pending]) -> Result<(u32, Instant), String> {
        let mut ssh_pid = 0;
        let mut answered = Instant::now();
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
                }
                if matches!(check.step, Step::Done) {
                    continue;
                }
                if now >= check.deadline {
                    // Not polled while others were pending: its answer may be waiting.
                    if matches!(check.step, Step::Alive { .. })
                        && let Moved::Answered(Some(pid)) = self.step_on(check)?
                    {
                        ssh_pid = pid;
                        continue;
                    }
                    self.timed_out = true;
                    return Err(self.timed_out(check));
                }
                let until = match check.step {
                    Step::Data {
                        quiet_until: Some(quiet),
                        ..
                    } => quiet.min(check.deadline),
                    _ => check.deadline,
                };
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
                Err(e) => return Err(format!("poll: {e}")),
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
                match self.step_on(&mut checks[i])? {
                    // The alive check is local and read late on purpose (along with
                    // the last answers): no round trip, so no part of the latency, which
                    // feeds the adaptive time-out.
                    Moved::Answered(Some(pid)) => ssh_pid = pid,
                    Moved::Answered(None) => answered = Instant::now(),
                    Moved::Waiting => {}
                }
            }
        }
    }

    /// Reads what arrived for `check` and moves it on.
    fn step_on(&mut self, check: &mut Pending) -> Result<Moved, String> {
        let quiet_window = self.quiet_window();
        let step = std::mem::replace(&mut check.step, Step::Done);
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
            Step::Opening {
                mut conn,
                ours,
                host,
                port,
                expect,
            } => {
                let server_round_trip = matches!(check.what, Kind::ServerRoundTrip);
                let reply = conn.try_recv().map_err(|e| check.fail(e.to_string()))?;
                match reply.map(|r| mux::stdio_fwd_reply(&r, &host, port)) {
                    None => (
                        Step::Opening {
                            conn,
                            ours,
                            host,
                            port,
                            expect,
                        },
                        Moved::Waiting,
                    ),
                    Some(Ok(())) if server_round_trip => (Step::Done, Moved::Answered(None)),
                    Some(Err(e)) if server_round_trip && e.starts_with("ssh refused a channel") => {
                        (Step::Done, Moved::Answered(None))
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
                if read_first_bytes(&mut io, expect, &mut got).map_err(|e| check.fail(e))? {
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
        Ok(moved)
    }

    fn timed_out(&self, check: &Pending) -> String {
        match check.what {
            Kind::Alive => self.alive_error(std::io::ErrorKind::TimedOut.into()),
            _ => check.fail(format!("no answer within {:?}", self.timeout)),
        }
    }
}

impl Pending {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.step {
            Step::Alive { conn, .. } | Step::Opening { conn, .. } => conn.fd(),
            Step::Data { io, .. } => io.fd(),
            Step::Done => unreachable!("a finished check is not polled"),
        }
    }

    fn fail(&self, e: String) -> String {
        match &self.what {
            Kind::Alive => e,
            Kind::Forward(what) => format!("{what}: {e}"),
            Kind::ServerRoundTrip => {
                format!("the server did not answer a channel request: {e}")
            }
        }
    }
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
        Ok(0) => Err(
            "the channel closed before the target sent anything (target down, or nothing listens on the forwarded port)"
                .to_string(),
        ),
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
