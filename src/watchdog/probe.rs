//! One probe round: is ssh alive (mux alive check), and does every forward carry data
//! end to end? Bounded by the probe timeout as a whole. Uses one persistent control
//! connection for alive checks and one short-lived control connection per forward
//! channel (closed at the end of the round), so nothing accumulates.
//!
//! The end-to-end rule for a channel to a target: data first (an `SSH-2.0-` banner, or
//! the SOCKS reply) = works; end of file before any data = the target is down (the far
//! end could not connect, so the channel closed); silence until a quiet window
//! (min(timeout/2, 1 s)) with the channel open = works, for targets that wait for the
//! client to speak.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::args::{Forward, dial_host};
use super::mux::MuxConn;

/// SOCKS5: version 5, one method, "no authentication"; a proxy answers `05 00`.
const SOCKS_GREETING: &[u8] = &[5, 1, 0];
const SOCKS_ACCEPT: &[u8] = &[5, 0];

/// Upper bound for ssh's answer to a local alive check (see `Prober::alive_timeout`).
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct RoundOk {
    /// Time spent waiting for answers (quiet windows of silent targets excluded).
    pub latency: Duration,
    /// The pid ssh reported in its alive answer.
    pub ssh_pid: u32,
}

pub struct Prober {
    ctl: PathBuf,
    forwards: Vec<Forward>,
    timeout: Duration,
    alive: Option<MuxConn>,
}

/// What a pending check reads from.
enum Io {
    /// Our end of a channel through ssh, and the control connection that keeps it open.
    Channel(UnixStream, #[allow(dead_code)] MuxConn),
    /// A TCP connection to a local listener of ssh (`-D`).
    Tcp(TcpStream),
}

/// A check opened in this round, waiting for its first bytes.
struct Pending {
    what: String,
    io: Io,
    expect: Option<&'static [u8]>,
    got: Vec<u8>,
    done: bool,
}

impl Prober {
    pub fn new(ctl: PathBuf, forwards: Vec<Forward>, timeout: Duration) -> Prober {
        Prober {
            ctl,
            forwards,
            timeout,
            alive: None,
        }
    }

    pub fn quiet_window(&self) -> Duration {
        (self.timeout / 2).min(Duration::from_secs(1))
    }

    /// Runs one round. `Err` is a one-line reason.
    pub fn round(&mut self) -> Result<RoundOk, String> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let ssh_pid = self.alive_check(start + self.alive_timeout())?;
        let mut pending = Vec::new();
        for forward in &self.forwards {
            if let Some(p) = self.open(forward, deadline)? {
                pending.push(p);
            }
        }
        if !self.forwards.iter().any(Forward::crosses_server) {
            self.server_round_trip(deadline)?;
        }
        let quiet_from = Instant::now();
        let silent = self.wait(&mut pending, deadline)?;
        let latency = start.elapsed().saturating_sub(if silent {
            Instant::now() - quiet_from
        } else {
            Duration::ZERO
        });
        self.local_listeners(deadline)?;
        Ok(RoundOk { latency, ssh_pid })
    }

    /// The alive check never leaves this machine: ssh answers it from its own event
    /// loop, so a live ssh replies in milliseconds. A shorter bound than the network
    /// probes get lets a frozen client be caught sooner.
    fn alive_timeout(&self) -> Duration {
        self.timeout.min(ALIVE_TIMEOUT)
    }

    fn alive_check(&mut self, deadline: Instant) -> Result<u32, String> {
        let result = (|| {
            if self.alive.is_none() {
                self.alive = Some(MuxConn::connect(&self.ctl, deadline)?);
            }
            self.alive.as_mut().unwrap().alive_check(deadline)
        })();
        result.map_err(|e| {
            // A half-read reply would desynchronise the stream: start over next round.
            self.alive = None;
            if e.kind() == std::io::ErrorKind::TimedOut {
                format!(
                    "ssh did not answer an alive check within {:?} (frozen or wedged)",
                    self.alive_timeout()
                )
            } else if e.kind() == std::io::ErrorKind::NotFound {
                "ssh has no control socket yet (not connected)".to_string()
            } else {
                format!("ssh's control socket {}: {e}", self.ctl.display())
            }
        })
    }

    /// Opens a channel through ssh to `host:port` as the server sees it.
    fn channel(
        &self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<(UnixStream, MuxConn), String> {
        let conn =
            MuxConn::connect(&self.ctl, deadline).map_err(|e| format!("control socket: {e}"))?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| e.to_string())?;
        let conn = conn.open_stdio_fwd(host, port, &theirs, deadline)?;
        drop(theirs); // ssh holds its own copies now; ours sees EOF when the channel closes
        Ok((ours, conn))
    }

    /// For tunnels whose forwards never open a channel on the server (`-D` only: ssh
    /// answers the SOCKS greeting itself), asks the server for a channel to a port
    /// that is normally closed. Refused or opened, either answer proves the server
    /// session is alive; only silence until the deadline fails.
    fn server_round_trip(&self, deadline: Instant) -> Result<(), String> {
        const PROBE_PORT: u16 = 1; // tcpmux: closed almost everywhere
        match self.channel("127.0.0.1", PROBE_PORT, deadline) {
            Ok(_) => Ok(()),
            Err(e) if e.starts_with("ssh refused a channel") => Ok(()),
            Err(e) => Err(format!("the server did not answer a channel request: {e}")),
        }
    }

    /// ssh's `-L` listeners accept. Checked last: the throwaway connection makes ssh
    /// open (and at once close) a channel, and sshd, which leaves Nagle on for a
    /// session-less connection, holds its next small packet until ssh's delayed ACK
    /// (40 ms on Linux); done first, that stall landed inside the round (a -L round
    /// took ~40 ms instead of ~1 ms).
    fn local_listeners(&self, deadline: Instant) -> Result<(), String> {
        for forward in &self.forwards {
            if let Forward::Local { bind, port, .. } = forward {
                let dial = dial_host(Some(bind));
                connect_tcp(&dial, *port, deadline).map_err(|e| {
                    format!("{}: local listener {dial}:{port}: {e}", forward.describe())
                })?;
            }
        }
        Ok(())
    }

    fn open(&self, forward: &Forward, deadline: Instant) -> Result<Option<Pending>, String> {
        let what = forward.describe();
        let fail = |e: String| format!("{what}: {e}");
        let (io, expect) = match forward {
            Forward::Remote { bind, port, .. } => {
                let (s, c) = self
                    .channel(&dial_host(bind.as_deref()), *port, deadline)
                    .map_err(fail)?;
                (Io::Channel(s, c), None)
            }
            Forward::RemoteDynamic { bind, port } => {
                let (mut s, c) = self
                    .channel(&dial_host(bind.as_deref()), *port, deadline)
                    .map_err(fail)?;
                s.write_all(SOCKS_GREETING)
                    .map_err(|e| fail(e.to_string()))?;
                (Io::Channel(s, c), Some(SOCKS_ACCEPT))
            }
            Forward::Local {
                host, host_port, ..
            } => {
                // The target through the server here; our listener after the answers
                // (see `local_listeners`).
                let (s, c) = self.channel(host, *host_port, deadline).map_err(fail)?;
                (Io::Channel(s, c), None)
            }
            Forward::Dynamic { bind, port } => {
                let dial = dial_host(Some(bind));
                let mut local = connect_tcp(&dial, *port, deadline)
                    .map_err(|e| fail(format!("local SOCKS listener {dial}:{port}: {e}")))?;
                local
                    .write_all(SOCKS_GREETING)
                    .map_err(|e| fail(e.to_string()))?;
                (Io::Tcp(local), Some(SOCKS_ACCEPT))
            }
            Forward::Unprobed { .. } => return Ok(None),
        };
        Ok(Some(Pending {
            what,
            io,
            expect,
            got: Vec::new(),
            done: false,
        }))
    }

    /// Waits for the first bytes on every pending check. Returns whether some target
    /// was accepted by silence (its quiet window then does not count as latency).
    fn wait(&self, pending: &mut [Pending], deadline: Instant) -> Result<bool, String> {
        let quiet_until = (Instant::now() + self.quiet_window()).min(deadline);
        let mut silent = false;
        // Bounded: every pass reads something, or the clock runs towards a deadline.
        loop {
            let now = Instant::now();
            if now >= quiet_until {
                for p in pending.iter_mut().filter(|p| !p.done && p.expect.is_none()) {
                    p.done = true;
                    silent = true;
                }
            }
            let open: Vec<usize> = (0..pending.len()).filter(|&i| !pending[i].done).collect();
            if open.is_empty() {
                return Ok(silent);
            }
            if now >= deadline {
                let p = &pending[open[0]];
                return Err(format!("{}: no answer within {:?}", p.what, self.timeout));
            }
            let next = if open.iter().any(|&i| pending[i].expect.is_none()) {
                quiet_until
            } else {
                deadline
            };
            let timeout = PollTimeout::try_from(next.saturating_duration_since(now))
                .unwrap_or(PollTimeout::MAX);
            let mut fds: Vec<PollFd> = open
                .iter()
                .map(|&i| {
                    let fd = match &pending[i].io {
                        Io::Channel(s, _) => s.as_fd(),
                        Io::Tcp(t) => t.as_fd(),
                    };
                    PollFd::new(fd, PollFlags::POLLIN)
                })
                .collect();
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            for (k, &i) in open.iter().enumerate() {
                if ready[k] {
                    read_one(&mut pending[i])?;
                }
            }
        }
    }
}

fn read_one(p: &mut Pending) -> Result<(), String> {
    let mut buf = [0u8; 256];
    let read = match &mut p.io {
        Io::Channel(s, _) => s.read(&mut buf),
        Io::Tcp(t) => t.read(&mut buf),
    };
    match read {
        Ok(0) => Err(format!(
            "{}: the channel closed before the target sent anything (target down, or nothing listens on the forwarded port)",
            p.what
        )),
        Ok(n) => {
            match p.expect {
                None => p.done = true,
                Some(want) => {
                    p.got.extend_from_slice(&buf[..n]);
                    if p.got.len() >= want.len() {
                        if &p.got[..want.len()] != want {
                            return Err(format!(
                                "{}: unexpected SOCKS reply {:02x?}",
                                p.what, p.got
                            ));
                        }
                        p.done = true;
                    }
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(format!("{}: {e}", p.what)),
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
