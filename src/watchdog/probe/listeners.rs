//! Checks of ssh's listeners, beside a round's channel checks.
//!
//! A `-L` listener accepts ([`listener_accepts`]): a loopback TCP handshake, made in a
//! connection's first round, after a failed one and every `LISTENERS_EVERY` rounds.
//!
//! A `-R` on the server's default loopback can be half bound: when another program
//! holds the server's 127.0.0.1:PORT, sshd binds only [::1]:PORT (or the other way
//! round) and still reports success, and everyone on the server who dials
//! 127.0.0.1:PORT reaches that program. The channel check alone cannot see it (the
//! other program answers too), so once per ssh connection [`remote_listener`] asks,
//! for each loopback address, whether a channel to it comes back to us: with the
//! channel open, ssh (our child) holds a new socket, its connection to the forward's
//! target. One address ours and the other not fails every round of that connection
//! (see `Prober::round`).

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};

use crate::watchdog::mux::{self, MuxConn};

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
    let ready = poll(&mut fds, crate::watchdog::poll_timeout(left));
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
/// Whether a local listener accepts by `deadline`: the handshake completes (then the
/// connection is closed unused). The socket is non-blocking from `socket` on (Linux),
/// and one `poll` waits for the handshake: `TcpStream::connect_timeout` switches the
/// socket to non-blocking and back, two more system calls every round.
pub(super) fn listener_accepts(host: &str, port: u16, deadline: Instant) -> std::io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockType, SockaddrIn, SockaddrIn6, connect, socket};
    use std::os::fd::AsRawFd;

    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "probe timeout");
    if deadline <= Instant::now() {
        return Err(timed_out());
    }
    // Not ToSocketAddrs: no getaddrinfo in the watchdog (see `addresses`).
    let addr = crate::watchdog::reachability::addresses(host, port, deadline)
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
    crate::watchdog::process::set_cloexec_nonblocking(&fd)?;
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
        match poll(&mut fds, crate::watchdog::poll_timeout(left)) {
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

pub(super) fn connect_tcp(host: &str, port: u16, deadline: Instant) -> std::io::Result<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "probe timeout",
        ));
    }
    // Not ToSocketAddrs: no getaddrinfo in the watchdog (see `addresses`).
    let addr = crate::watchdog::reachability::addresses(host, port, deadline)
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    TcpStream::connect_timeout(&addr, left)
}

#[cfg(test)]
mod tests {
    use super::*;

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
