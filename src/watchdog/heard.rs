//! "Has the server said anything lately?" for the adaptive probe timeout's
//! confirming rule (`rtt::Heard`), read from the kernel without touching ssh.
//!
//! Linux: one `NETLINK_SOCK_DIAG` dump of established TCP sockets (what `ss -ti`
//! reads; no privilege needed), keeping the socket whose inode is one of ssh's
//! (from /proc/PID/fd of the watchdog's own child) and whose peer is the server,
//! and its `tcp_info.tcpi_last_data_recv`: milliseconds since the last segment that
//! carried data arrived. Data, not bare ACKs: a frozen sshd's kernel still
//! acknowledges, but only a running sshd sends window adjustments or keepalive replies.
//! One exception: while ssh has more than [`BUSY_QUEUE`] bytes on their way to the
//! server (`idiag_wqueue`), the server's ACKs count too (`tcpi_last_ack_recv`): the
//! probes then queue behind the user's data, and the link is moving.
//!
//! Layouts (linux/inet_diag.h, linux/tcp.h):
//! - request `inet_diag_req_v2` (56): u8 family, u8 protocol, u8 ext, u8 pad, u32 states,
//!   `inet_diag_sockid` (48: be16 sport, be16 dport, be32 src[4], be32 dst[4], u32 if,
//!   u32 cookie[2]).
//! - reply `inet_diag_msg` (72): u8 family, state, timer, retrans, sockid (48), u32
//!   expires, rqueue, wqueue, uid, inode; then rtattrs, INET_DIAG_INFO (2) = `tcp_info`,
//!   whose u32 `tcpi_last_data_recv` is at byte 52 (8 bytes of u8 fields, then u32 rto,
//!   ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent,
//!   last_ack_sent, last_data_recv).
//!
//! Elsewhere (macOS) there is no source yet: callers get `Heard::Unknown`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::netevents::rtnetlink::{NLMSG_HDRLEN, messages};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED_BIT: u32 = 1 << 1;
const INET_DIAG_INFO: u16 = 2;
const DIAG_MSG_LEN: usize = 72;
const LAST_DATA_RECV_AT: usize = 52;
const LAST_ACK_RECV_AT: usize = 56;
/// `idiag_wqueue`: bytes ssh wrote that the server has not acknowledged yet.
const WQUEUE_AT: usize = 60;
/// A backlog this large towards the server means the probes queue behind the user's
/// data (a bulk upload on a slow uplink, fault 10): then an acknowledgement of that
/// data counts as hearing the server too. Over a 1 Mbit/s uplink the server's SSH
/// window adjustments, the only data it sends during an upload, come every 8-16 s,
/// longer than a confirming round; its kernel's ACKs come every few milliseconds.
/// Price: a server session frozen mid-upload is heard until its receive buffer
/// fills, at most `rtt::SLOW_ROUNDS` rounds.
pub const BUSY_QUEUE: u32 = 64 * 1024;

/// The dump request for every established TCP socket of `family`'s kind.
pub fn request(server: IpAddr, seq: u32) -> Vec<u8> {
    let family: u8 = if server.is_ipv4() { 2 } else { 10 };
    let len = NLMSG_HDRLEN + 56;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(0x1u16 | 0x300).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_DUMP
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0]);
    m.extend_from_slice(&TCP_ESTABLISHED_BIT.to_ne_bytes());
    m.resize(len, 0); // the socket id: zero, the kernel dumps them all
    m
}

/// From one reply datagram: `tcpi_last_data_recv` of the socket whose inode is in
/// `inodes` and whose peer is `server` (or `tcpi_last_ack_recv`, if sooner, while
/// more than [`BUSY_QUEUE`] bytes wait for the server's acknowledgement). Also says
/// whether the dump is done.
pub fn parse_reply(buf: &[u8], server: SocketAddr, inodes: &[u64]) -> (Option<Duration>, bool) {
    let mut found = None;
    let mut done = false;
    for msg in messages(buf) {
        match msg.kind {
            3 | 2 => done = true, // NLMSG_DONE, NLMSG_ERROR
            SOCK_DIAG_BY_FAMILY => {
                let p = msg.payload;
                if p.len() < DIAG_MSG_LEN {
                    continue;
                }
                let dport = u16::from_be_bytes([p[6], p[7]]);
                let dst: Option<IpAddr> = match p[0] {
                    2 => Some(IpAddr::from(
                        <[u8; 4]>::try_from(&p[24..28]).unwrap_or_default(),
                    )),
                    10 => <[u8; 16]>::try_from(&p[24..40]).ok().map(IpAddr::from),
                    _ => None,
                };
                let inode = u64::from(u32::from_ne_bytes(p[68..72].try_into().unwrap_or_default()));
                let wqueue =
                    u32::from_ne_bytes(p[WQUEUE_AT..WQUEUE_AT + 4].try_into().unwrap_or_default());
                if dport != server.port() || dst != Some(server.ip()) || !inodes.contains(&inode) {
                    continue;
                }
                let mut a = &p[DIAG_MSG_LEN..];
                while a.len() >= 4 {
                    let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
                    let kind = u16::from_ne_bytes([a[2], a[3]]);
                    if alen < 4 || alen > a.len() {
                        break;
                    }
                    if kind == INET_DIAG_INFO
                        && let Some(v) = a.get(4 + LAST_DATA_RECV_AT..4 + LAST_DATA_RECV_AT + 4)
                    {
                        let ms = u32::from_ne_bytes(v.try_into().unwrap_or_default());
                        let mut heard = Duration::from_millis(u64::from(ms));
                        if wqueue >= BUSY_QUEUE
                            && let Some(v) = a.get(4 + LAST_ACK_RECV_AT..4 + LAST_ACK_RECV_AT + 4)
                        {
                            let ack = u32::from_ne_bytes(v.try_into().unwrap_or_default());
                            heard = heard.min(Duration::from_millis(u64::from(ack)));
                        }
                        found = Some(heard);
                    }
                    a = &a[((alen + 3) & !3).min(a.len())..];
                }
            }
            _ => {}
        }
    }
    (found, done)
}

/// The socket inodes a process holds (its /proc/PID/fd links `socket:[N]`).
#[cfg(target_os = "linux")]
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .take(4096)
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let s = link.to_str()?;
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// How long since ssh's connection to `server` last received data; None when it
/// cannot be told (no such socket, no sock_diag, past the deadline).
#[cfg(target_os = "linux")]
pub fn since_last_data(
    server: SocketAddr,
    ssh_pid: u32,
    deadline: std::time::Instant,
) -> Option<Duration> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
    };
    use std::os::fd::{AsFd, AsRawFd};

    let inodes = socket_inodes(ssh_pid);
    if inodes.is_empty() {
        return None;
    }
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .ok()?;
    send(fd.as_raw_fd(), &request(server.ip(), 1), MsgFlags::empty()).ok()?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut found = None;
    // The kernel writes the dump as it is asked for it (in `send`, then in each `recv`),
    // so what it has is read first, and only waiting is bounded by the deadline: on a
    // starved machine the steps before the first read can take longer than the whole
    // deadline, and an answer thrown away then was a silent server to the caller.
    // Bounded: a dump of a few thousand sockets takes a few dozen datagrams.
    for _ in 0..1024 {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                if ms == 0 {
                    return None;
                }
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return None,
                }
            }
            Err(_) => return None,
        };
        let (f, done) = parse_reply(&buf[..n], server, &inodes);
        found = found.or(f);
        if done {
            return found;
        }
    }
    found
}

/// The verdict for `rtt::Rounds::unanswered`: heard within `window` (the time since
/// the suspect round began)?
pub fn judge(since_last_data: Option<Duration>, window: Duration) -> super::rtt::Heard {
    match since_last_data {
        Some(d) if d <= window => super::rtt::Heard::Yes,
        Some(_) => super::rtt::Heard::No,
        None => super::rtt::Heard::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::rtt::Heard;

    #[test]
    fn judge_maps_the_window() {
        let w = Duration::from_secs(3);
        assert_eq!(judge(Some(Duration::from_millis(200)), w), Heard::Yes);
        assert_eq!(judge(Some(Duration::from_secs(4)), w), Heard::No);
        assert_eq!(judge(None, w), Heard::Unknown);
    }

    #[test]
    fn request_layout() {
        let m = request("10.0.0.1".parse().unwrap(), 9);
        assert_eq!(m.len(), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(&m[16..20], &[2, 6, 2, 0]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 2);
    }

    #[test]
    fn garbage_replies_do_not_panic() {
        let server: SocketAddr = "10.0.0.1:22".parse().unwrap();
        assert_eq!(parse_reply(&[], server, &[1]), (None, false));
        let mut m = [0u8; 16 + 72 + 8];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[16 + 72] = 255; // attribute longer than the message
        for cut in 0..m.len() {
            let _ = parse_reply(&m[..cut], server, &[0]);
        }
    }

    /// One reply message for a socket to `server` with inode 7: `wqueue` bytes unacked,
    /// data last received `data_ms` ago and an ACK `ack_ms` ago.
    fn reply(server: SocketAddr, wqueue: u32, data_ms: u32, ack_ms: u32) -> Vec<u8> {
        let info_len = 64;
        let len = 16 + DIAG_MSG_LEN + 4 + info_len;
        let mut m = vec![0u8; len];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let p = &mut m[16..];
        p[0] = 2;
        p[6..8].copy_from_slice(&server.port().to_be_bytes());
        let IpAddr::V4(ip) = server.ip() else {
            unreachable!()
        };
        p[24..28].copy_from_slice(&ip.octets());
        p[WQUEUE_AT..WQUEUE_AT + 4].copy_from_slice(&wqueue.to_ne_bytes());
        p[68..72].copy_from_slice(&7u32.to_ne_bytes());
        let a = &mut p[DIAG_MSG_LEN..];
        a[0..2].copy_from_slice(&((4 + info_len) as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        a[4 + LAST_DATA_RECV_AT..4 + LAST_DATA_RECV_AT + 4].copy_from_slice(&data_ms.to_ne_bytes());
        a[4 + LAST_ACK_RECV_AT..4 + LAST_ACK_RECV_AT + 4].copy_from_slice(&ack_ms.to_ne_bytes());
        m
    }

    #[test]
    fn acks_count_only_behind_a_backlog() {
        let server: SocketAddr = "10.0.0.1:22".parse().unwrap();
        let ms = Duration::from_millis;
        // Idle link (a frozen sshd's kernel still ACKs): only data counts.
        assert_eq!(
            parse_reply(&reply(server, 100, 9000, 5), server, &[7]).0,
            Some(ms(9000))
        );
        // A bulk upload queued behind the slow uplink: the server's ACKs count.
        let busy = BUSY_QUEUE + 1;
        assert_eq!(
            parse_reply(&reply(server, busy, 9000, 5), server, &[7]).0,
            Some(ms(5))
        );
        assert_eq!(
            parse_reply(&reply(server, busy, 3, 500), server, &[7]).0,
            Some(ms(3))
        );
        assert_eq!(
            parse_reply(&reply(server, busy, 3, 5), server, &[8]).0,
            None
        );
    }

    /// A real connection on loopback: data the peer sends shows as a small
    /// last_data_recv; silence lets it grow.
    #[cfg(target_os = "linux")]
    #[test]
    fn live_last_data_recv_on_loopback() {
        use std::io::{Read, Write};
        use std::time::Instant;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = l.local_addr().unwrap();
        let mut c = std::net::TcpStream::connect(server).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        let me = std::process::id();
        let d = since_last_data(server, me, Instant::now() + Duration::from_secs(2));
        let d = d.expect("our own socket is found");
        assert!(d < Duration::from_millis(500), "{d:?}");
        std::thread::sleep(Duration::from_millis(700));
        let d = since_last_data(server, me, Instant::now() + Duration::from_secs(2)).unwrap();
        assert!(d >= Duration::from_millis(600), "{d:?}");
        // Data sent by us does not count as heard.
        c.write_all(b"x").unwrap();
        let d = since_last_data(server, me, Instant::now() + Duration::from_secs(2)).unwrap();
        assert!(d >= Duration::from_millis(600), "{d:?}");
        // Another process's inodes: nothing found.
        assert_eq!(
            since_last_data(server, 1, Instant::now() + Duration::from_secs(2)),
            None
        );
    }

    /// The deadline bounds waiting for the kernel, not the work before the first read:
    /// a watchdog starved of CPU past the deadline still gets the answer the kernel
    /// wrote, instead of "unknown" (which made a confirming round a failure).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_answer_already_written_is_read_past_the_deadline() {
        use std::io::{Read, Write};
        use std::time::Instant;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = l.local_addr().unwrap();
        let mut c = std::net::TcpStream::connect(server).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let d = since_last_data(server, std::process::id(), past);
        assert!(d.expect("answered although late") < Duration::from_secs(2));
    }
}
