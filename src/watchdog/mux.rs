//! A minimal client of OpenSSH's multiplexing protocol (PROTOCOL.mux), spoken over the
//! control socket of the ssh we run, so no extra ssh process is needed per probe:
//!
//! - every message is `uint32 length` + payload; payloads start with a `uint32` type;
//! - both sides send `MUX_MSG_HELLO` (0x00000001) with protocol version 4 first;
//! - `MUX_C_ALIVE_CHECK` (0x10000004, request id) → `MUX_S_ALIVE` (0x80000005, request
//!   id, pid): answered by ssh's main loop, so a frozen ssh never answers;
//! - `MUX_C_NEW_STDIO_FWD` (0x10000008, request id, reserved string, host string,
//!   uint32 port), then two fds (stdin, stdout) each in a message of its own with
//!   SCM_RIGHTS and one data byte, as OpenSSH's `mm_send_fd` sends them → `MUX_S_SESSION_OPENED`
//!   (0x80000006) or `MUX_S_FAILURE` (0x80000003) / `MUX_S_PERMISSION_DENIED`
//!   (0x80000002). The channel lives as long as this control connection.
//! - `MUX_C_OPEN_FWD` (0x10000006, request id, type 2 = remote, listen host string,
//!   listen port, connect host string, connect port) → `MUX_S_OK` (0x80000001) once the
//!   server granted it, or `MUX_S_FAILURE` with a reason. The forward then belongs to
//!   the master like one from its command line; `ExitOnForwardFailure` does not apply.
//!
//! Every request is written at once, without waiting for ssh's hello first, as
//! OpenSSH's own mux client writes a request and its fds back to back: ssh reads
//! exactly one message at a time (never past it), so the fds still reach its
//! `recvmsg`. The socket is non-blocking: a round queues all its requests, then sleeps
//! once in `poll` for every answer (`try_recv`), instead of a blocking read per message.
//!
//! Checked against OpenSSH 9.2p1 by the tests in `tests/it/watchdog_probe.rs`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

pub const MUX_MSG_HELLO: u32 = 0x0000_0001;
pub const MUX_C_ALIVE_CHECK: u32 = 0x1000_0004;
pub const MUX_C_OPEN_FWD: u32 = 0x1000_0006;
pub const MUX_C_NEW_STDIO_FWD: u32 = 0x1000_0008;
pub const MUX_FWD_REMOTE: u32 = 2;
pub const MUX_S_OK: u32 = 0x8000_0001;
pub const MUX_S_PERMISSION_DENIED: u32 = 0x8000_0002;
pub const MUX_S_FAILURE: u32 = 0x8000_0003;
pub const MUX_S_ALIVE: u32 = 0x8000_0005;
pub const MUX_S_SESSION_OPENED: u32 = 0x8000_0006;
pub const MUX_VERSION: u32 = 4;

/// Replies are small; anything larger is a protocol error, not a reason to allocate.
const MAX_MESSAGE: usize = 64 * 1024;

/// One non-blocking connection to the control socket. Our hello goes out with the
/// first request (one write); ssh's is checked by the first `try_recv` and never
/// returned.
pub struct MuxConn {
    stream: UnixStream,
    next_id: u32,
    hello_sent: bool,
    received: Vec<u8>,
    hello_seen: bool,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer from ssh's control socket ({what})"),
    )
}

fn remaining(deadline: Instant, what: &str) -> io::Result<std::time::Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(timed_out(what))
    } else {
        Ok(left)
    }
}

/// Builds a payload from u32s and strings.
pub struct Payload(Vec<u8>);

impl Default for Payload {
    /// Room for any request we send (host names aside) without growing.
    fn default() -> Payload {
        Payload(Vec::with_capacity(64))
    }
}

impl Payload {
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn string(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Appends the length-prefixed payload to `out`.
    fn frame_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.0);
    }
}

/// Reads u32s and strings from a payload.
pub struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    pub fn u32(&mut self) -> io::Result<u32> {
        if self.0.len() < 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short mux message",
            ));
        }
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        Ok(u32::from_be_bytes(head.try_into().unwrap()))
    }
    pub fn string(&mut self) -> io::Result<String> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short mux string",
            ));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(String::from_utf8_lossy(head).into_owned())
    }
}

/// A non-blocking connect: a frozen ssh whose listen backlog is full answers
/// `WouldBlock` here instead of hanging the watchdog.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SOCKET_FLAGS, None)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    super::process::set_cloexec_nonblocking(&fd)?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// Linux sets both flags in `socket` itself: every round makes new control connections,
/// and three `fcntl` calls each were a tenth of an idle round's system calls.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const SOCKET_FLAGS: SockFlag = SockFlag::SOCK_NONBLOCK.union(SockFlag::SOCK_CLOEXEC);
/// Apple lacks SOCK_NONBLOCK and SOCK_CLOEXEC: the flags come by `fcntl` after `socket`
/// (the watchdog has one thread, so nothing can fork in between).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const SOCKET_FLAGS: SockFlag = SockFlag::empty();

/// A request that cannot be queued at once means ssh stopped reading.
fn not_reading(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "ssh does not read its control socket",
        )
    } else {
        e
    }
}

impl MuxConn {
    /// Connects (never blocks).
    pub fn connect(path: &Path) -> io::Result<MuxConn> {
        Ok(MuxConn {
            stream: connect_nonblocking(path).map_err(not_reading)?,
            next_id: 1,
            hello_sent: false,
            received: Vec::new(),
            hello_seen: false,
        })
    }

    /// For the caller's poll set.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn send(&mut self, payload: &Payload) -> io::Result<()> {
        let bytes = self.framed_with_hello(payload);
        self.stream.write_all(&bytes).map_err(not_reading)
    }

    /// `payload` framed, after our hello if this connection has not sent it yet.
    fn framed_with_hello(&mut self, payload: &Payload) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + 4 + payload.0.len());
        if !self.hello_sent {
            Payload::default()
                .u32(MUX_MSG_HELLO)
                .u32(MUX_VERSION)
                .frame_into(&mut bytes);
            self.hello_sent = true;
        }
        payload.frame_into(&mut bytes);
        bytes
    }

    /// The next message after ssh's hello, if it has fully arrived. Reads at most once
    /// (after `poll` said readable, that read does not block and a second one would
    /// only find the socket empty).
    pub fn try_recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(message) = self.take_after_hello()? {
            return Ok(Some(message));
        }
        self.read_once()?;
        self.take_after_hello()
    }

    /// One non-blocking read into the buffer: whether anything came. ssh's end of the
    /// connection is an error.
    fn read_once(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; 512];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ssh closed its control connection",
            )),
            Ok(n) => {
                self.received.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether ssh has sent anything on this connection (its hello comes first, from
    /// its main loop); reads what is waiting, never blocks.
    pub fn heard_from(&mut self) -> bool {
        if self.hello_seen || !self.received.is_empty() {
            return true;
        }
        match self.read_once() {
            Ok(got) => got,
            // Its end of the connection, closed: an answer too.
            Err(e) => e.kind() == io::ErrorKind::UnexpectedEof,
        }
    }

    /// A buffered message, ssh's hello checked and skipped.
    fn take_after_hello(&mut self) -> io::Result<Option<Vec<u8>>> {
        if !self.hello_seen {
            let Some(hello) = self.take_message()? else {
                return Ok(None);
            };
            check_hello(&hello)?;
            self.hello_seen = true;
        }
        self.take_message()
    }

    fn take_message(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(head) = self.received.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mux message of {len} bytes"),
            ));
        }
        if self.received.len() < 4 + len {
            return Ok(None);
        }
        let message = self.received[4..4 + len].to_vec();
        self.received.drain(..4 + len);
        Ok(Some(message))
    }

    /// One message's payload: sleeps in poll until it arrives or `deadline` passes.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        // Bounded by the deadline.
        loop {
            if let Some(message) = self.try_recv()? {
                return Ok(message);
            }
            let left = remaining(deadline, "read")?;
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, crate::watchdog::poll_timeout(left)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Queues `MUX_C_ALIVE_CHECK`; returns its request id for `alive_reply`.
    pub fn request_alive_check(&mut self) -> io::Result<u32> {
        let id = self.request_id();
        self.send(&Payload::default().u32(MUX_C_ALIVE_CHECK).u32(id))?;
        Ok(id)
    }

    /// Queues `MUX_C_NEW_STDIO_FWD` to `host:port` as seen from the server; `fd` becomes
    /// the channel's stdin and stdout. The channel lives as long as this connection;
    /// `stdio_fwd_reply` reads ssh's answer.
    pub fn request_stdio_fwd(
        &mut self,
        host: &str,
        port: u16,
        fd: &impl AsRawFd,
    ) -> io::Result<()> {
        let id = self.request_id();
        let request = Payload::default()
            .u32(MUX_C_NEW_STDIO_FWD)
            .u32(id)
            .string("")
            .string(host)
            .u32(u32::from(port));
        let bytes = self.framed_with_hello(&request);
        send_with_fds(&self.stream, &bytes, fd.as_raw_fd()).map_err(not_reading)
    }
}

/// `bytes`, then `fd` twice (the channel's stdin and stdout), each in a message of its
/// own with SCM_RIGHTS and one data byte, as ssh's `mm_receive_fd` reads them.
///
/// One `sendmmsg` carries the three: the system calls are most of an idle probe
/// round's CPU time, and this one replaces three. A new connection's send buffer holds
/// these few bytes whole, so anything short of all three is an error.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    use nix::libc;

    const FD_LEN: libc::c_uint = std::mem::size_of::<RawFd>() as libc::c_uint;
    /// One `cmsghdr` and one fd, aligned as `cmsghdr` wants (for 32 and 64 bits).
    #[repr(C, align(8))]
    struct Control([u8; 32]);

    let byte = [0u8];
    let mut iov = [
        libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        },
        libc::iovec {
            iov_base: byte.as_ptr().cast_mut().cast(),
            iov_len: 1,
        },
    ];
    let mut control = [Control([0; 32]), Control([0; 32])];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut messages: [libc::mmsghdr; 3] = unsafe { std::mem::zeroed() };
    messages[0].msg_hdr.msg_iov = &mut iov[0];
    messages[0].msg_hdr.msg_iovlen = 1;
    let want = [bytes.len(), 1, 1];
    for (message, control) in messages[1..].iter_mut().zip(control.iter_mut()) {
        let header = &mut message.msg_hdr;
        // The kernel only reads the data byte: both messages may point at it.
        header.msg_iov = &mut iov[1];
        header.msg_iovlen = 1;
        header.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic; CMSG_FIRSTHDR and CMSG_DATA point inside
        // `control`, which is large and aligned enough for one header and one fd.
        unsafe {
            header.msg_controllen = libc::CMSG_SPACE(FD_LEN) as _;
            let cmsg = libc::CMSG_FIRSTHDR(header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(FD_LEN) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: `messages` and everything it points to outlive the call.
    let sent = unsafe {
        libc::sendmmsg(
            stream.as_raw_fd(),
            messages.as_mut_ptr(),
            messages.len() as _,
            libc::MSG_NOSIGNAL as _,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let whole = sent as usize == messages.len()
        && messages
            .iter()
            .zip(want)
            .all(|(m, len)| m.msg_len as usize == len);
    if whole {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "ssh's control socket took only part of a channel request",
        ))
    }
}

/// `bytes`, then `fd` twice, each fd in its own `sendmsg` with one data byte, as
/// OpenSSH's `mm_send_fd` does.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::IoSlice;

    (&*stream).write_all(bytes)?;
    for _ in 0..2 {
        let raw = [fd];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&[0u8])],
            &cmsg,
            MsgFlags::empty(),
            None,
        )?;
    }
    Ok(())
}

impl MuxConn {
    /// `MUX_C_OPEN_FWD` for `-R [bind:]port:host:host_port`: `Ok` once the server
    /// listens, `Err` with ssh's reason (the server refused, or no answer by `deadline`).
    pub fn open_remote_forward(
        &mut self,
        bind: Option<&str>,
        port: u16,
        host: &str,
        host_port: u16,
        deadline: Instant,
    ) -> Result<(), String> {
        let id = self.request_id();
        let request = Payload::default()
            .u32(MUX_C_OPEN_FWD)
            .u32(id)
            .u32(MUX_FWD_REMOTE)
            // Empty = ssh's default listen address, as for `-R port:host:hostport`.
            .string(bind.unwrap_or(""))
            .u32(u32::from(port))
            .string(host)
            .u32(u32::from(host_port));
        self.send(&request).map_err(|e| e.to_string())?;
        let reply = self.recv(deadline).map_err(|e| e.to_string())?;
        let mut r = Reader(&reply);
        let kind = r.u32().map_err(|e| e.to_string())?;
        let _rid = r.u32().map_err(|e| e.to_string())?;
        match kind {
            MUX_S_OK => Ok(()),
            MUX_S_FAILURE | MUX_S_PERMISSION_DENIED => Err(r.string().unwrap_or_default()),
            other => Err(format!(
                "unexpected mux reply {other:#x} to a forwarding request"
            )),
        }
    }
}

fn check_hello(message: &[u8]) -> io::Result<()> {
    let mut r = Reader(message);
    let (kind, version) = (r.u32()?, r.u32()?);
    if kind != MUX_MSG_HELLO || version != MUX_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "ssh's control socket speaks mux type {kind:#x} version {version}, expected hello version {MUX_VERSION}"
            ),
        ));
    }
    Ok(())
}

/// ssh's answer to alive check `id`: the pid of the ssh that answered.
pub fn alive_reply(reply: &[u8], id: u32) -> io::Result<u32> {
    let mut r = Reader(reply);
    let kind = r.u32()?;
    let rid = r.u32()?;
    if kind != MUX_S_ALIVE || rid != id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("alive check {id}: unexpected reply type {kind:#x} for request {rid}"),
        ));
    }
    r.u32()
}

/// ssh's answer to a channel request to `host:port`: opened, or why not.
pub fn stdio_fwd_reply(reply: &[u8], host: &str, port: u16) -> Result<(), String> {
    let mut r = Reader(reply);
    let kind = r.u32().map_err(|e| e.to_string())?;
    let _rid = r.u32().map_err(|e| e.to_string())?;
    match kind {
        MUX_S_SESSION_OPENED => Ok(()),
        MUX_S_FAILURE | MUX_S_PERMISSION_DENIED => {
            let why = r.string().unwrap_or_default();
            Err(format!("ssh refused a channel to {host}:{port}: {why}"))
        }
        other => Err(format!(
            "unexpected mux reply {other:#x} to a channel request"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_connections_are_non_blocking_and_close_on_exec() {
        use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let conn = MuxConn::connect(&path).unwrap();
        let fl = OFlag::from_bits_truncate(fcntl(conn.fd(), FcntlArg::F_GETFL).unwrap());
        let fd = FdFlag::from_bits_truncate(fcntl(conn.fd(), FcntlArg::F_GETFD).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK));
        assert!(fd.contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn frames_like_openssh_buffers() {
        let p = Payload::default()
            .u32(MUX_C_NEW_STDIO_FWD)
            .u32(7)
            .string("")
            .string("127.0.0.1")
            .u32(22);
        let mut framed = Vec::new();
        p.frame_into(&mut framed);
        assert_eq!(&framed[..4], &(framed.len() as u32 - 4).to_be_bytes());
        assert_eq!(&framed[4..8], &[0x10, 0, 0, 8]);
        let mut r = Reader(&framed[4..]);
        assert_eq!(
            (r.u32().unwrap(), r.u32().unwrap()),
            (MUX_C_NEW_STDIO_FWD, 7)
        );
        assert_eq!(r.string().unwrap(), "");
        assert_eq!(r.string().unwrap(), "127.0.0.1");
        assert_eq!(r.u32().unwrap(), 22);
        assert!(r.u32().is_err());
    }
}
