//! A minimal client of OpenSSH's multiplexing protocol (PROTOCOL.mux), spoken over the
//! control socket of the ssh we run, so no extra ssh process is needed per probe:
//!
//! - every message is `uint32 length` + payload; payloads start with a `uint32` type;
//! - both sides send `MUX_MSG_HELLO` (0x00000001) with protocol version 4 first;
//! - `MUX_C_ALIVE_CHECK` (0x10000004, request id) → `MUX_S_ALIVE` (0x80000005, request
//!   id, pid): answered by ssh's main loop, so a frozen ssh never answers;
//! - `MUX_C_NEW_STDIO_FWD` (0x10000008, request id, reserved string, host string,
//!   uint32 port), then two fds (stdin, stdout) each in its own `sendmsg` with
//!   SCM_RIGHTS and one data byte, as OpenSSH's `mm_send_fd` does → `MUX_S_SESSION_OPENED`
//!   (0x80000006) or `MUX_S_FAILURE` (0x80000003) / `MUX_S_PERMISSION_DENIED`
//!   (0x80000002). The channel lives as long as this control connection.
//! - `MUX_C_OPEN_FWD` (0x10000006, request id, type 2 = remote, listen host string,
//!   listen port, connect host string, connect port) → `MUX_S_OK` (0x80000001) once the
//!   server granted it, or `MUX_S_FAILURE` with a reason. The forward then belongs to
//!   the master like one from its command line; `ExitOnForwardFailure` does not apply.
//!
//! Checked against OpenSSH 9.2p1 by the tests in `tests/watchdog_probe.rs`.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

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

/// One connection to the control socket, after the hello exchange.
pub struct MuxConn {
    stream: UnixStream,
    next_id: u32,
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
#[derive(Default)]
pub struct Payload(Vec<u8>);

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
    pub fn framed(&self) -> Vec<u8> {
        let mut out = (self.0.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&self.0);
        out
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

impl MuxConn {
    /// Connects and exchanges hellos, all before `deadline`.
    pub fn connect(path: &Path, deadline: Instant) -> io::Result<MuxConn> {
        let stream = UnixStream::connect(path)?;
        let mut conn = MuxConn { stream, next_id: 1 };
        conn.send(
            &Payload::default().u32(MUX_MSG_HELLO).u32(MUX_VERSION),
            deadline,
        )?;
        let hello = conn.recv(deadline)?;
        let mut r = Reader(&hello);
        let (kind, version) = (r.u32()?, r.u32()?);
        if kind != MUX_MSG_HELLO || version != MUX_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "ssh's control socket speaks mux type {kind:#x} version {version}, expected hello version {MUX_VERSION}"
                ),
            ));
        }
        Ok(conn)
    }

    fn send(&mut self, payload: &Payload, deadline: Instant) -> io::Result<()> {
        self.stream
            .set_write_timeout(Some(remaining(deadline, "write")?))?;
        self.stream
            .write_all(&payload.framed())
            .map_err(|e| map_timeout(e, "write"))
    }

    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            self.stream
                .set_read_timeout(Some(remaining(deadline, "read")?))?;
            match self.stream.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "ssh closed its control connection",
                    ));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(map_timeout(e, "read")),
            }
        }
        Ok(())
    }

    /// One message's payload.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.read_exact_by(&mut len, deadline)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mux message of {len} bytes"),
            ));
        }
        let mut payload = vec![0u8; len];
        self.read_exact_by(&mut payload, deadline)?;
        Ok(payload)
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// `MUX_C_ALIVE_CHECK`: the pid of the ssh that answered.
    pub fn alive_check(&mut self, deadline: Instant) -> io::Result<u32> {
        let id = self.request_id();
        self.send(&Payload::default().u32(MUX_C_ALIVE_CHECK).u32(id), deadline)?;
        let reply = self.recv(deadline)?;
        let mut r = Reader(&reply);
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

    /// `MUX_C_NEW_STDIO_FWD` to `host:port` as seen from the server; `fd` becomes the
    /// channel's stdin and stdout. Consumes the connection: the channel lives as long
    /// as the returned guard.
    pub fn open_stdio_fwd(
        mut self,
        host: &str,
        port: u16,
        fd: &impl AsRawFd,
        deadline: Instant,
    ) -> Result<MuxConn, String> {
        let id = self.request_id();
        let request = Payload::default()
            .u32(MUX_C_NEW_STDIO_FWD)
            .u32(id)
            .string("")
            .string(host)
            .u32(u32::from(port));
        self.send(&request, deadline).map_err(|e| e.to_string())?;
        for _ in 0..2 {
            let raw = [fd.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            sendmsg::<()>(
                self.stream.as_raw_fd(),
                &[IoSlice::new(&[0u8])],
                &cmsg,
                MsgFlags::empty(),
                None,
            )
            .map_err(|e| format!("passing a socket to ssh: {e}"))?;
        }
        let reply = self.recv(deadline).map_err(|e| e.to_string())?;
        let mut r = Reader(&reply);
        let kind = r.u32().map_err(|e| e.to_string())?;
        let _rid = r.u32().map_err(|e| e.to_string())?;
        match kind {
            MUX_S_SESSION_OPENED => Ok(self),
            MUX_S_FAILURE | MUX_S_PERMISSION_DENIED => {
                let why = r.string().unwrap_or_default();
                Err(format!("ssh refused a channel to {host}:{port}: {why}"))
            }
            other => Err(format!(
                "unexpected mux reply {other:#x} to a channel request"
            )),
        }
    }
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
        self.send(&request, deadline).map_err(|e| e.to_string())?;
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

fn map_timeout(e: io::Error, what: &str) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        timed_out(what)
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_like_openssh_buffers() {
        let p = Payload::default()
            .u32(MUX_C_NEW_STDIO_FWD)
            .u32(7)
            .string("")
            .string("127.0.0.1")
            .u32(22);
        let framed = p.framed();
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
