//! "Has the server answered what ssh last sent?", asked of the kernel between probe
//! rounds, cheaply enough to ask every second for months.
//!
//! A frozen server session (its sshd stopped, its kernel still up) acknowledges our
//! segments but sends no data. So the sign is in ssh's own TCP connection: data sent,
//! no data received since, and that send older than a bound. `tcp_info` has both
//! times: `tcpi_last_data_sent` and `tcpi_last_data_recv`, milliseconds since the
//! last segment carrying data left or arrived (bare ACKs do not count, at jiffy
//! resolution; a retransmission counts as a send).
//!
//! Unlike `heard.rs` (a dump of every established socket, then a /proc/PID/fd scan),
//! a [`Sensor`] knows the connection's exact 4-tuple and keeps one `NETLINK_SOCK_DIAG`
//! socket open: each [`Sensor::read`] is one request without `NLM_F_DUMP`, which the
//! kernel answers by looking that one socket up (`inet_diag_find_one_icsk`), before
//! the `sendto` returns; then one non-blocking `recv`. Two system calls; a `poll` of
//! at most [`REPLY_WAIT`] only if the reply is not there yet.
//!
//! Layouts (linux/inet_diag.h, linux/tcp.h; see also `heard.rs`), host byte order
//! except the socket id's ports and addresses (network order):
//! - request: `nlmsghdr` (16), then `inet_diag_req_v2` (56): u8 family, u8 protocol,
//!   u8 ext, u8 pad, u32 states, `inet_diag_sockid` (48: be16 sport, be16 dport,
//!   be32 src[4], be32 dst[4], u32 if, u32 cookie[2]). `src` is our side.
//! - reply: `nlmsghdr`, `inet_diag_msg` (72: u8 family, state, timer, retrans, sockid
//!   (48), u32 expires, rqueue, wqueue, uid, inode), then rtattrs; INET_DIAG_INFO is
//!   `tcp_info`: 8 bytes of u8 fields, then u32 rto (8), ato, snd_mss, rcv_mss,
//!   unacked (24), sacked, lost, retrans, fackets, last_data_sent (44), last_ack_sent,
//!   last_data_recv (52), last_ack_recv (56), ...
//! - an error (ENOENT: no such connection any more): `NLMSG_ERROR`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::netevents::rtnetlink::{AF_INET, AF_INET6, NLMSG_ERROR, NLMSG_HDRLEN, attrs, messages};
use super::netevents::u32_at;

/// The sock_diag request type (linux/sock_diag.h); the reply has it too.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
pub const IPPROTO_TCP: u8 = 6;
/// The `tcp_info` attribute of a reply, and (bit `INET_DIAG_INFO - 1`) the request's ask for it.
pub const INET_DIAG_INFO: u16 = 2;
/// `inet_diag_msg`, before the attributes.
pub const DIAG_MSG_LEN: usize = 72;
/// `inet_diag_req_v2`.
pub const DIAG_REQ_LEN: usize = 56;
/// `idiag_wqueue` in `inet_diag_msg`: bytes ssh wrote that the server has not acknowledged.
pub const WQUEUE_AT: usize = 60;
/// In `tcp_info`.
pub const UNACKED_AT: usize = 24;
pub const LAST_DATA_SENT_AT: usize = 44;
pub const LAST_DATA_RECV_AT: usize = 52;

/// One whole request: header and `inet_diag_req_v2`.
pub const REQUEST_LEN: usize = NLMSG_HDRLEN + DIAG_REQ_LEN;
const NLM_F_REQUEST: u16 = 0x1;
/// INET_DIAG_NOCOOKIE: match by address and ports alone.
const NO_COOKIE: [u32; 2] = [!0, !0];
const SEQ_AT: usize = 8;
/// Room for one reply, with plenty to spare: 408 bytes on Linux 6.x (`inet_diag_msg`,
/// a 280-byte `tcp_info` and the few attributes the kernel always adds).
const REPLY_BUF: usize = 4096;

/// The longest a [`Sensor::read`] waits for a reply the kernel did not queue at once
/// (it always has so far: the lookup runs inside the `sendto`).
pub const REPLY_WAIT: Duration = Duration::from_millis(100);

/// What the kernel says about the connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimes {
    /// Since our last segment carrying data (a retransmission counts).
    pub since_sent: Duration,
    /// Since the server's last segment carrying data (bare ACKs do not count).
    pub since_recv: Duration,
    /// Segments sent and not yet acknowledged (`tcpi_unacked`).
    pub unacked: u32,
    /// Bytes written and not yet acknowledged, sent or not (`idiag_wqueue`).
    pub wqueue: u32,
}

/// How long what we last sent has gone unanswered: `Some(since_sent)` when the
/// server sent no data since; None when it did. A tie (both within one kernel
/// tick) counts as answered: a freeze is never concluded from it.
pub fn unanswered_for(t: &TcpTimes) -> Option<Duration> {
    (t.since_recv > t.since_sent).then_some(t.since_sent)
}

/// Whether we sent data within `within`.
pub fn traffic_recent(t: &TcpTimes, within: Duration) -> bool {
    t.since_sent <= within
}

/// The exact-match request for the TCP connection from `local` to `server`, or None
/// when their families differ. `seq` identifies the reply.
pub fn request(local: SocketAddr, server: SocketAddr, seq: u32) -> Option<[u8; REQUEST_LEN]> {
    let mut m = [0u8; REQUEST_LEN];
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    // No NLM_F_DUMP: the kernel looks the one socket up instead of walking them all.
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[SEQ_AT..SEQ_AT + 4].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in ours.
    let r = &mut m[NLMSG_HDRLEN..];
    let family = match (local.ip(), server.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return None,
    };
    r[0..4].copy_from_slice(&[family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0]);
    // Ignored by the exact lookup; every state, so nothing depends on that.
    r[4..8].copy_from_slice(&(!0u32).to_ne_bytes());
    let id = &mut r[8..];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&server.port().to_be_bytes());
    put_ip(&mut id[4..20], local.ip());
    put_ip(&mut id[20..36], server.ip());
    // A link-local server is reached through one interface, and ssh's socket is bound
    // to it: the lookup must name it too.
    let ifindex = match server {
        SocketAddr::V6(s) => s.scope_id(),
        SocketAddr::V4(_) => 0,
    };
    id[36..40].copy_from_slice(&ifindex.to_ne_bytes());
    id[40..44].copy_from_slice(&NO_COOKIE[0].to_ne_bytes());
    id[44..48].copy_from_slice(&NO_COOKIE[1].to_ne_bytes());
    Some(m)
}

/// An address as the socket id holds it: network order, IPv4 in the first word.
fn put_ip(to: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => to[0..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => to[0..16].copy_from_slice(&v6.octets()),
    }
}

/// The times in one reply datagram to request `seq` for the connection from `local`
/// to `server`; None for an error (`NLMSG_ERROR`: ENOENT when the connection is
/// gone), another request's reply, another socket, or a reply without `tcp_info`
/// (a connection in TIME_WAIT has none).
pub fn parse_reply(
    buf: &[u8],
    seq: u32,
    local: SocketAddr,
    server: SocketAddr,
) -> Option<TcpTimes> {
    for msg in messages(buf) {
        if msg.seq != seq {
            continue;
        }
        if msg.kind == NLMSG_ERROR {
            return None;
        }
        if msg.kind != SOCK_DIAG_BY_FAMILY {
            continue;
        }
        let p = msg.payload;
        let (Some(head), Some(rest)) = (p.get(..DIAG_MSG_LEN), p.get(DIAG_MSG_LEN..)) else {
            continue;
        };
        let sport = u16::from_be_bytes([head[4], head[5]]);
        let dport = u16::from_be_bytes([head[6], head[7]]);
        if sport != local.port() || dport != server.port() {
            continue;
        }
        let wqueue = u32_at(head, WQUEUE_AT)?;
        let (_, info) = attrs(rest)
            .into_iter()
            .find(|(k, _)| *k == INET_DIAG_INFO)?;
        let ms = |at| u32_at(info, at).map(|v| Duration::from_millis(u64::from(v)));
        return Some(TcpTimes {
            since_sent: ms(LAST_DATA_SENT_AT)?,
            since_recv: ms(LAST_DATA_RECV_AT)?,
            unacked: u32_at(info, UNACKED_AT)?,
            wqueue,
        });
    }
    None
}

/// The kernel's view of one TCP connection, over a sock_diag socket opened once.
pub struct Sensor {
    socket: sys::DiagSocket,
    local: SocketAddr,
    server: SocketAddr,
    request: [u8; REQUEST_LEN],
    seq: u32,
    buf: Box<[u8]>,
}

impl Sensor {
    /// A sensor for ssh's connection from `local` to `server`; None off Linux, for
    /// addresses of two families, or when no sock_diag socket can be opened (the
    /// watchdog then does without).
    pub fn open(local: SocketAddr, server: SocketAddr) -> Option<Sensor> {
        let request = request(local, server, 0)?;
        Some(Sensor {
            socket: sys::DiagSocket::open()?,
            local,
            server,
            request,
            seq: 0,
            buf: vec![0u8; REPLY_BUF].into_boxed_slice(),
        })
    }

    /// The connection's times now; None when the kernel has no such connection any
    /// more, or no answer within [`REPLY_WAIT`].
    pub fn read(&mut self) -> Option<TcpTimes> {
        // A fresh number each time: a late reply to an earlier read is told apart.
        self.seq = self.seq.wrapping_add(1);
        self.request[SEQ_AT..SEQ_AT + 4].copy_from_slice(&self.seq.to_ne_bytes());
        let (seq, local, server) = (self.seq, self.local, self.server);
        self.socket.ask(&self.request, &mut self.buf, |reply| {
            // The reply to one request is one message: its header says whose it is.
            let mine = u32_at(reply, SEQ_AT) == Some(seq);
            mine.then(|| parse_reply(reply, seq, local, server))
        })?
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::time::Instant;

    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{
        AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
    };

    use super::REPLY_WAIT;

    pub struct DiagSocket(OwnedFd);

    impl DiagSocket {
        pub fn open() -> Option<DiagSocket> {
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkSockDiag,
            )
            .ok()?;
            Some(DiagSocket(fd))
        }

        /// Sends `request`, then hands each reply datagram to `take` until it gives
        /// Some (the reply to this request); None past [`REPLY_WAIT`] or on an error.
        pub fn ask<T>(
            &self,
            request: &[u8],
            buf: &mut [u8],
            mut take: impl FnMut(&[u8]) -> Option<T>,
        ) -> Option<T> {
            let fd = self.0.as_raw_fd();
            send(fd, request, MsgFlags::empty()).ok()?;
            let mut deadline = None;
            // Bounded: a few late replies to earlier reads, then ours.
            for _ in 0..8 {
                match recv(fd, buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(n) => {
                        if let Some(v) = take(&buf[..n.min(buf.len())]) {
                            return Some(v);
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => {
                        let until = *deadline.get_or_insert_with(|| Instant::now() + REPLY_WAIT);
                        let left = until.saturating_duration_since(Instant::now());
                        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                        if ms == 0 {
                            return None;
                        }
                        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
                        match poll(&mut fds, PollTimeout::from(ms)) {
                            Ok(_) | Err(Errno::EINTR) => {}
                            Err(_) => return None,
                        }
                    }
                    // ENOBUFS (replies were dropped) and the like: this read fails,
                    // the next one starts clean.
                    Err(_) => return None,
                }
            }
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    /// No sock_diag here: never opened.
    pub enum DiagSocket {}

    impl DiagSocket {
        pub fn open() -> Option<DiagSocket> {
            None
        }

        pub fn ask<T>(
            &self,
            _request: &[u8],
            _buf: &mut [u8],
            _take: impl FnMut(&[u8]) -> Option<T>,
        ) -> Option<T> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn times(since_sent: u64, since_recv: u64) -> TcpTimes {
        TcpTimes {
            since_sent: MS(since_sent),
            since_recv: MS(since_recv),
            unacked: 0,
            wqueue: 0,
        }
    }

    #[test]
    fn unanswered_only_when_nothing_came_back_since_our_send() {
        assert_eq!(unanswered_for(&times(300, 5000)), Some(MS(300)));
        assert_eq!(unanswered_for(&times(300, 100)), None);
        // Both within one tick: answered, a freeze is never concluded from a tie.
        assert_eq!(unanswered_for(&times(300, 300)), None);
    }

    #[test]
    fn traffic_recent_is_our_last_send() {
        assert!(traffic_recent(&times(300, 9000), MS(300)));
        assert!(traffic_recent(&times(0, 9000), MS(0)));
        assert!(!traffic_recent(&times(301, 0), MS(300)));
    }

    fn u32_of(b: &[u8], at: usize) -> u32 {
        u32_at(b, at).unwrap()
    }

    #[test]
    fn request_layout_ipv4() {
        let local: SocketAddr = "192.168.1.7:40001".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:22".parse().unwrap();
        let m = request(local, server, 9).unwrap();
        assert_eq!(m.len(), 72);
        assert_eq!(u32_of(&m, 0), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        // NLM_F_REQUEST alone: NLM_F_DUMP (0x300) would walk every socket.
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 1);
        assert_eq!(u32_of(&m, 8), 9);
        assert_eq!(u32_of(&m, 12), 0);
        assert_eq!(&m[16..20], &[2, 6, 2, 0]);
        let id = &m[24..];
        assert_eq!(&id[0..4], &[0x9c, 0x41, 0, 22]); // 40001, 22, network order
        assert_eq!(
            &id[4..20],
            &[192, 168, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            &id[20..36],
            &[10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(u32_of(id, 36), 0);
        assert_eq!(&id[40..48], &[0xff; 8]);
    }

    #[test]
    fn request_layout_ipv6_names_a_link_local_servers_interface() {
        let local: SocketAddr = "[2001:db8::7]:50000".parse().unwrap();
        let server: SocketAddr = "[fe80::1%3]:2222".parse().unwrap();
        let m = request(local, server, 1).unwrap();
        assert_eq!(m[16], 10);
        let id = &m[24..];
        assert_eq!(&id[0..4], &[0xc3, 0x50, 0x08, 0xae]);
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0x20, 0x01]);
        src[2..4].copy_from_slice(&[0x0d, 0xb8]);
        src[15] = 7;
        assert_eq!(&id[4..20], &src);
        let mut dst = [0u8; 16];
        dst[..2].copy_from_slice(&[0xfe, 0x80]);
        dst[15] = 1;
        assert_eq!(&id[20..36], &dst);
        assert_eq!(u32_of(id, 36), 3);
        assert_eq!(&id[40..48], &[0xff; 8]);
    }

    #[test]
    fn request_refuses_mixed_families() {
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:2".parse().unwrap();
        assert!(request(v4, v6, 1).is_none());
        assert!(request(v6, v4, 1).is_none());
        assert!(Sensor::open(v4, v6).is_none());
    }

    const LOCAL: &str = "10.0.0.2:40001";
    const SERVER: &str = "10.0.0.1:22";

    fn addrs() -> (SocketAddr, SocketAddr) {
        (LOCAL.parse().unwrap(), SERVER.parse().unwrap())
    }

    /// A reply as the kernel builds it: `inet_diag_msg` for `local` → `server`, an
    /// attribute the kernel always adds (INET_DIAG_SHUTDOWN), then `tcp_info`.
    fn reply(seq: u32, local: SocketAddr, server: SocketAddr, t: TcpTimes) -> Vec<u8> {
        let info_len = 232;
        let len = NLMSG_HDRLEN + DIAG_MSG_LEN + 8 + 4 + info_len;
        let mut m = vec![0u8; len];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        let p = &mut m[NLMSG_HDRLEN..];
        p[0] = if local.is_ipv4() { AF_INET } else { AF_INET6 };
        p[1] = 1; // TCP_ESTABLISHED
        p[4..6].copy_from_slice(&local.port().to_be_bytes());
        p[6..8].copy_from_slice(&server.port().to_be_bytes());
        put_ip(&mut p[8..24], local.ip());
        put_ip(&mut p[24..40], server.ip());
        p[WQUEUE_AT..WQUEUE_AT + 4].copy_from_slice(&t.wqueue.to_ne_bytes());
        let a = &mut p[DIAG_MSG_LEN..];
        a[0..2].copy_from_slice(&5u16.to_ne_bytes()); // INET_DIAG_SHUTDOWN, a u8
        a[2..4].copy_from_slice(&8u16.to_ne_bytes());
        let a = &mut a[8..];
        a[0..2].copy_from_slice(&((4 + info_len) as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        let info = &mut a[4..];
        info[0] = 1;
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap().to_ne_bytes();
        info[UNACKED_AT..UNACKED_AT + 4].copy_from_slice(&t.unacked.to_ne_bytes());
        info[LAST_DATA_SENT_AT..LAST_DATA_SENT_AT + 4].copy_from_slice(&ms(t.since_sent));
        info[48..52].copy_from_slice(&1u32.to_ne_bytes()); // last_ack_sent: not read
        info[LAST_DATA_RECV_AT..LAST_DATA_RECV_AT + 4].copy_from_slice(&ms(t.since_recv));
        info[56..60].copy_from_slice(&2u32.to_ne_bytes()); // last_ack_recv: not read
        m
    }

    fn sample() -> TcpTimes {
        TcpTimes {
            since_sent: MS(1200),
            since_recv: MS(7000),
            unacked: 3,
            wqueue: 4096,
        }
    }

    #[test]
    fn parses_each_field_at_its_offset() {
        let (local, server) = addrs();
        let r = reply(5, local, server, sample());
        assert_eq!(parse_reply(&r, 5, local, server), Some(sample()));
        let local: SocketAddr = "[2001:db8::2]:40001".parse().unwrap();
        let server: SocketAddr = "[2001:db8::1]:22".parse().unwrap();
        let r = reply(6, local, server, sample());
        assert_eq!(parse_reply(&r, 6, local, server), Some(sample()));
    }

    #[test]
    fn another_requests_reply_or_socket_is_not_taken() {
        let (local, server) = addrs();
        let r = reply(5, local, server, sample());
        assert_eq!(parse_reply(&r, 6, local, server), None);
        let other: SocketAddr = "10.0.0.2:40002".parse().unwrap();
        assert_eq!(parse_reply(&r, 5, other, server), None);
        // A late reply to an earlier read, then ours, in one datagram.
        let mut two = reply(4, local, server, times(1, 2));
        two.extend(reply(5, local, server, sample()));
        assert_eq!(parse_reply(&two, 5, local, server), Some(sample()));
    }

    /// `NLMSG_ERROR` carrying -errno (ENOENT: the connection is gone) and the request.
    fn error(seq: u32, errno: i32) -> Vec<u8> {
        let (local, server) = addrs();
        let req = request(local, server, seq).unwrap();
        let len = NLMSG_HDRLEN + 4 + req.len();
        let mut m = vec![0u8; len];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m[16..20].copy_from_slice(&(-errno).to_ne_bytes());
        m[20..].copy_from_slice(&req);
        m
    }

    #[test]
    fn an_error_reply_gives_none() {
        let (local, server) = addrs();
        assert_eq!(parse_reply(&error(5, 2), 5, local, server), None);
        // The error answers this request: a diag message after it is not ours.
        let mut m = error(5, 2);
        m.extend(reply(5, local, server, sample()));
        assert_eq!(parse_reply(&m, 5, local, server), None);
    }

    #[test]
    fn a_reply_without_tcp_info_gives_none() {
        let (local, server) = addrs();
        let full = reply(5, local, server, sample());
        // Cut after the shutdown attribute, the header's length shortened to match.
        let mut m = full[..NLMSG_HDRLEN + DIAG_MSG_LEN + 8].to_vec();
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_reply(&m, 5, local, server), None);
        // A tcp_info too short to hold last_data_recv (an ancient kernel's is longer).
        let mut m = full[..NLMSG_HDRLEN + DIAG_MSG_LEN + 8 + 4 + 52].to_vec();
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        let at = NLMSG_HDRLEN + DIAG_MSG_LEN + 8;
        m[at..at + 2].copy_from_slice(&(4u16 + 52).to_ne_bytes());
        assert_eq!(parse_reply(&m, 5, local, server), None);
    }

    #[test]
    fn truncated_and_garbage_replies_do_not_panic() {
        let (local, server) = addrs();
        let full = reply(5, local, server, sample());
        for cut in 0..full.len() {
            assert_eq!(
                parse_reply(&full[..cut], 5, local, server),
                None,
                "cut {cut}"
            );
        }
        // The header's length kept while the bytes are cut, and every length byte
        // of the attributes broken in turn.
        for at in NLMSG_HDRLEN + DIAG_MSG_LEN..full.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut m = full.clone();
                m[at] = v;
                let _ = parse_reply(&m, 5, local, server);
            }
        }
        // Deterministic noise with the right header words.
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..2000 {
            let mut m = vec![0u8; 16 + (x % 400) as usize];
            for b in m.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let len = m.len() as u32;
            m[0..4].copy_from_slice(&len.to_ne_bytes());
            m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            m[8..12].copy_from_slice(&5u32.to_ne_bytes());
            let _ = parse_reply(&m, 5, local, server);
        }
    }

    /// The frozen-server pattern on a real connection: the client sends, the server's
    /// kernel acknowledges, its program reads and does not answer.
    #[cfg(target_os = "linux")]
    fn live(server_ip: &str) {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::time::Instant;

        // Polls `read` until `ok` holds for what it gives, for at most 5 s.
        fn until(sensor: &mut Sensor, what: &str, ok: impl Fn(&TcpTimes) -> bool) -> TcpTimes {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut last = None;
            for _ in 0..5000 {
                last = sensor.read();
                if let Some(t) = last.filter(&ok) {
                    return t;
                }
                assert!(Instant::now() < deadline, "{what}: last read {last:?}");
                std::thread::sleep(MS(1));
            }
            panic!("{what}: last read {last:?}");
        }

        let listener = TcpListener::bind((server_ip, 0)).unwrap();
        let server = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server).unwrap();
        let local = client.local_addr().unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut sensor = Sensor::open(local, server).expect("a sock_diag socket");

        // Connected, nothing sent: the handshake's times, nothing unanswered yet
        // once a kernel tick has passed (a send in the connect's own tick would tie).
        let t = until(&mut sensor, "a tick after connecting", |t| {
            t.since_recv > Duration::ZERO && t.since_sent > Duration::ZERO
        });
        assert_eq!(unanswered_for(&t), None, "{t:?}");

        client.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        // Sent and acknowledged, never answered: what a frozen sshd looks like.
        let t = until(&mut sensor, "acknowledged, unanswered", |t| {
            unanswered_for(t).is_some() && t.unacked == 0 && t.wqueue == 0
        });
        assert!(t.since_recv > t.since_sent, "{t:?}");
        // And it grows while the server stays silent.
        let t = until(&mut sensor, "unanswered for 50 ms", |t| {
            unanswered_for(t) >= Some(MS(50))
        });
        assert!(traffic_recent(&t, Duration::from_secs(60)), "{t:?}");
        assert!(!traffic_recent(&t, MS(10)), "{t:?}");

        peer.write_all(b"pong").unwrap();
        client.read_exact(&mut got).unwrap();
        let t = sensor.read().expect("the connection is still there");
        assert_eq!(unanswered_for(&t), None, "{t:?}");
        assert!(t.since_recv < t.since_sent, "{t:?}");

        // No such connection: the kernel's ENOENT reads as None.
        let nobody = SocketAddr::new(local.ip(), local.port().wrapping_add(1).max(1));
        let mut stray = Sensor::open(nobody, server).expect("a sock_diag socket");
        assert_eq!(stray.read(), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_unanswered_on_loopback_ipv4() {
        live("127.0.0.1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_unanswered_on_loopback_ipv6() {
        let missing = std::net::TcpListener::bind("[::1]:0")
            .err()
            .map(|e| format!("cannot listen on [::1] ({e}): no IPv6 loopback here"));
        if crate::test_prereq::require("live_unanswered_on_loopback_ipv6", missing) {
            live("::1");
        }
    }
}
