//! "Has the server said anything lately, and has it got what we sent?" for the
//! adaptive probe timeout's confirming rule (`rtt::Heard`), read from the kernel
//! without touching ssh.
//!
//! Linux: one `NETLINK_SOCK_DIAG` request for ssh's connection by its exact 4-tuple
//! (no `NLM_F_DUMP`: the kernel looks the one socket up, inside the `sendto`, and
//! queues one reply; no privilege needed), then one `recv`. From its `tcp_info`:
//! - `tcpi_last_data_recv`: milliseconds since the last segment from the server that
//!   carried data. Data, not bare ACKs: a frozen sshd's kernel still acknowledges, but
//!   only a running sshd sends window adjustments or keepalive replies. One exception:
//!   while ssh has more than [`BUSY_QUEUE`] bytes on their way to the server
//!   (`idiag_wqueue`), the server's ACKs count too (`tcpi_last_ack_recv`): the probes
//!   then queue behind the user's data, and the link is moving.
//! - `tcpi_rtt`: how long the server's answers take, for the first step after login;
//!   with `tcpi_rttvar`, when an ACK is due behind a backlog ([`Reading::ack_due`]).
//! - `tcpi_last_data_sent` and what is still unacknowledged (`tcpi_unacked`,
//!   `idiag_wqueue`): whether ssh sent the probes' requests and the server's machine
//!   acknowledged all of them. Then a silence is the server's sshd itself (frozen,
//!   wedged), not a slow or lossy path, and one more round-trip timeout confirms it.
//!
//! Layouts (linux/inet_diag.h, linux/tcp.h), host byte order except the socket id's
//! ports and addresses (network order):
//! - request: `nlmsghdr` (16), then `inet_diag_req_v2` (56): u8 family, u8 protocol,
//!   u8 ext, u8 pad, u32 states, `inet_diag_sockid` (48: be16 sport, be16 dport,
//!   `be32 src[4]`, `be32 dst[4]`, u32 if, `u32 cookie[2]`). `src` is our side.
//! - reply: `nlmsghdr`, `inet_diag_msg` (72: u8 family, state, timer, retrans, sockid
//!   (48), u32 expires, rqueue, wqueue, uid, inode), then attributes; INET_DIAG_INFO is
//!   `tcp_info`: 8 bytes of u8 fields, then u32 rto (8), ato, snd_mss, rcv_mss,
//!   unacked (24), sacked, lost, retrans, fackets, last_data_sent (44), last_ack_sent,
//!   last_data_recv (52), last_ack_recv (56), pmtu, rcv_ssthresh, rtt (68, µs), rttvar
//!   (72, µs), ...
//! - an error (ENOENT: no such connection any more): `NLMSG_ERROR`.
//!
//! Elsewhere (macOS) there is no source yet: callers get `Heard::Unknown`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::netevents::rtnetlink::{AF_INET, AF_INET6, NLMSG_ERROR, NLMSG_HDRLEN, attrs, messages};
use super::netevents::u32_at;
use super::rtt::Heard;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const IPPROTO_TCP: u8 = 6;
const INET_DIAG_INFO: u16 = 2;
/// `inet_diag_msg`, before the attributes.
const DIAG_MSG_LEN: usize = 72;
/// `inet_diag_req_v2`.
const DIAG_REQ_LEN: usize = 56;
/// One whole request: header and `inet_diag_req_v2`.
const REQUEST_LEN: usize = NLMSG_HDRLEN + DIAG_REQ_LEN;
const NLM_F_REQUEST: u16 = 0x1;
/// INET_DIAG_NOCOOKIE: match by addresses and ports alone.
const NO_COOKIE: u32 = !0;
const SEQ_AT: usize = 8;
/// `idiag_rqueue`: bytes from the server that ssh has not read yet.
const RQUEUE_AT: usize = 56;
/// `idiag_wqueue`: bytes ssh wrote that the server has not acknowledged yet.
const WQUEUE_AT: usize = 60;
/// In `tcp_info`.
const UNACKED_AT: usize = 24;
const LAST_DATA_SENT_AT: usize = 44;
const LAST_DATA_RECV_AT: usize = 52;
const LAST_ACK_RECV_AT: usize = 56;
/// `tcpi_rtt`, the kernel's smoothed round-trip time, in microseconds.
const RTT_AT: usize = 68;
/// `tcpi_rttvar`, its mean deviation, in microseconds.
const RTTVAR_AT: usize = 72;
/// Linux's `TCP_RTO_MIN`.
const RTO_MIN: Duration = Duration::from_millis(200);
/// Room for one reply, with plenty to spare: 408 bytes on Linux 6.x.
#[cfg(target_os = "linux")]
const REPLY_BUF: usize = 4096;

/// A backlog this large towards the server means the probes queue behind the user's
/// data (a bulk upload on a slow uplink, fault 10): then an acknowledgement of that
/// data counts as hearing the server too. Over a 1 Mbit/s uplink the server's SSH
/// window adjustments, the only data it sends during an upload, come every 8-16 s,
/// longer than a confirming round; its kernel's ACKs come every few milliseconds.
/// Price: a server session frozen mid-upload is heard until its receive buffer
/// fills, at most `rtt::SLOW_ROUNDS` rounds.
pub const BUSY_QUEUE: u32 = 64 * 1024;

/// What the kernel says of ssh's connection to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Since the server last sent data (behind a [`BUSY_QUEUE`] backlog: or an ACK).
    pub since_heard: Duration,
    /// Since ssh last sent data (a retransmission counts).
    pub since_sent: Duration,
    /// Nothing ssh wrote waits for the server's acknowledgement: its machine has it all.
    pub delivered: bool,
    /// The kernel's smoothed round-trip time to the server.
    pub rtt: Duration,
    /// Its mean deviation.
    pub rttvar: Duration,
    /// Bytes ssh wrote that the server has not acknowledged (`idiag_wqueue`).
    pub backlog: u32,
    /// Since the server's machine last acknowledged anything.
    pub since_ack: Duration,
    /// Bytes from the server that ssh has not read yet (`idiag_rqueue`).
    pub unread: u32,
}

impl std::fmt::Display for Reading {
    /// For the log line of a silent round: what the verdict was made from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes unacknowledged, last data from the server {} ms ago, last ACK {} ms ago",
            self.backlog,
            self.since_heard.as_millis(),
            self.since_ack.as_millis()
        )?;
        // Only behind a backlog does the ACK's age decide anything.
        if self.backlog >= BUSY_QUEUE {
            write!(f, " (due within {} ms)", self.ack_due().as_millis())?;
        }
        Ok(())
    }
}

impl Reading {
    /// The retransmission timeout the kernel's estimate gives (srtt + 4 × rttvar, at
    /// least Linux's 200 ms), before any back-off: behind a backlog an ACK comes within
    /// it on a path that moves, however slowly its queue drains. Not `tcpi_rto`, which
    /// a dead path keeps doubling and so would stay ahead of the silence.
    pub fn ack_due(&self) -> Duration {
        (self.rtt + 4 * self.rttvar).max(RTO_MIN)
    }
}

/// The exact-match request for the TCP connection from `local` to `server`, or None
/// when their families differ. `seq` identifies the reply.
pub fn request(local: SocketAddr, server: SocketAddr, seq: u32) -> Option<[u8; REQUEST_LEN]> {
    let family = match (local.ip(), server.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return None,
    };
    let mut m = [0u8; REQUEST_LEN];
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    // No NLM_F_DUMP: the kernel looks the one socket up instead of walking them all.
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[SEQ_AT..SEQ_AT + 4].copy_from_slice(&seq.to_ne_bytes());
    let r = &mut m[NLMSG_HDRLEN..];
    r[0..4].copy_from_slice(&[family, IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0]);
    // Ignored by the exact lookup; every state, so nothing depends on it.
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
    id[40..44].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    id[44..48].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    Some(m)
}

/// An address as the socket id holds it: network order, IPv4 in the first word.
fn put_ip(to: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => to[0..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => to[0..16].copy_from_slice(&v6.octets()),
    }
}

/// The reading in one reply datagram to request `seq` for the connection from `local`
/// to `server`; None for an error (`NLMSG_ERROR`: ENOENT when the connection is
/// gone), another request's reply, another socket, or a reply without `tcp_info`
/// (a connection in TIME_WAIT has none).
pub fn parse_reply(buf: &[u8], seq: u32, local: SocketAddr, server: SocketAddr) -> Option<Reading> {
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
        let unread = u32_at(head, RQUEUE_AT)?;
        let (_, info) = attrs(rest)
            .into_iter()
            .find(|(k, _)| *k == INET_DIAG_INFO)?;
        let ms = |at| u32_at(info, at).map(|v| Duration::from_millis(u64::from(v)));
        let mut since_heard = ms(LAST_DATA_RECV_AT)?;
        let since_ack = ms(LAST_ACK_RECV_AT)?;
        if wqueue >= BUSY_QUEUE {
            since_heard = since_heard.min(since_ack);
        }
        return Some(Reading {
            since_heard,
            since_sent: ms(LAST_DATA_SENT_AT)?,
            delivered: wqueue == 0 && u32_at(info, UNACKED_AT)? == 0,
            rtt: Duration::from_micros(u64::from(u32_at(info, RTT_AT)?)),
            rttvar: Duration::from_micros(u64::from(u32_at(info, RTTVAR_AT)?)),
            backlog: wqueue,
            since_ack,
            unread,
        });
    }
    None
}

/// The kernel's reading of the connection from `local` to `server`, through a netlink
/// socket of its own (the watchdog keeps one per connection: [`Diag`]).
#[cfg(all(test, target_os = "linux"))]
fn read(local: SocketAddr, server: SocketAddr, deadline: std::time::Instant) -> Option<Reading> {
    Diag::open()?.read(local, server, deadline)
}

/// A `NETLINK_SOCK_DIAG` socket kept for a connection's life: a reading is then one
/// `send` (the kernel answers inside it) and one `recv`, no socket made and closed.
#[cfg(target_os = "linux")]
pub struct Diag {
    fd: std::os::fd::OwnedFd,
    /// The last request's number: a reply to an older one (a read that gave up on a
    /// starved machine) is told apart and skipped.
    seq: u32,
}

#[cfg(target_os = "linux")]
impl Diag {
    pub fn open() -> Option<Diag> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .ok()?;
        Some(Diag { fd, seq: 0 })
    }

    /// The reading of the connection from `local` to `server`; None when it cannot be
    /// told (no such connection, no reply by `deadline`).
    pub fn read(
        &mut self,
        local: SocketAddr,
        server: SocketAddr,
        deadline: std::time::Instant,
    ) -> Option<Reading> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use nix::sys::socket::{MsgFlags, recv, send};
        use std::os::fd::{AsFd, AsRawFd};

        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = request(local, server, seq)?;
        send(self.fd.as_raw_fd(), &request, MsgFlags::empty()).ok()?;
        let mut buf = [0u8; REPLY_BUF];
        // The kernel answers inside the `send`, so the reply is read first and only
        // waiting is bounded by the deadline: on a starved machine the steps before the
        // read can take longer than the whole deadline, and an answer thrown away then
        // was a silent server to the caller. Bounded: this reply and a few stale ones.
        for _ in 0..8 {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    if let Some(reading) = parse_reply(&buf[..n], seq, local, server) {
                        return Some(reading);
                    }
                    // An error for this request ends it; a stale reply is skipped.
                    if messages(&buf[..n]).iter().any(|m| m.seq == seq) {
                        return None;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                    if ms == 0 {
                        return None;
                    }
                    let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
                    if let Err(e) = poll(&mut fds, PollTimeout::from(ms))
                        && e != nix::errno::Errno::EINTR
                    {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }
}

/// The kernel keeps `tcp_info`'s times in jiffies (HZ 100 to 1000): a request ssh sent
/// the moment the round began can read as a tick or two older than the round, which
/// would make a frozen session's round look as if ssh had sent nothing.
const TICK_SLACK: Duration = Duration::from_millis(20);

/// The verdict for `rtt::Rounds::unanswered`, `window` being the time since the
/// suspect round began: the server sent something within it, or, behind a backlog, its
/// machine acknowledged something within the path's own retransmission timeout (a
/// saturated uplink's queue can hold ACKs back longer than a round); or ssh sent within
/// it, the server's machine acknowledged all of it, and its sshd said nothing (the
/// session itself is stuck); or neither.
pub fn judge(reading: Option<Reading>, window: Duration) -> Heard {
    match reading {
        None => Heard::Unknown,
        Some(r) if r.since_heard <= window => Heard::Yes,
        Some(r) if r.backlog >= BUSY_QUEUE && r.since_ack <= r.ack_due() => Heard::Yes,
        Some(r) if r.delivered && r.since_sent <= window + TICK_SLACK => Heard::Unanswered,
        Some(_) => Heard::No,
    }
}

/// Server data that ssh has left unread this long: ssh is not running its loop (frozen,
/// wedged); a live ssh reads what arrives within milliseconds.
pub const UNREAD_STALE: Duration = Duration::from_millis(300);

/// Beyond the path's retransmission timeout, what a keepalive's answer may take: ssh
/// fires its keepalive on a whole-second clock and both ends must be scheduled.
const LOOK_SLACK: Duration = Duration::from_millis(100);

/// Looks closer together than this are not worth a wake-up.
const LOOK_FLOOR: Duration = Duration::from_millis(20);

/// What one look at ssh's connection says while ssh's own keepalive is the round trip
/// to the server. ssh asks the server (`keepalive@openssh.com`, wanting a reply) once
/// the server has been silent for `ServerAliveInterval`, counted from its last read on
/// a whole-second clock, so a live server session is heard at least that often plus
/// a round trip, and a live ssh reads what the server sends at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// The server spoke lately and ssh read it: look again once ssh's next keepalive
    /// has had time for its answer.
    Heard { again_in: Duration },
    /// An answer or a keepalive may still be on its way: look again then.
    Wait { again_in: Duration },
    /// ssh asked and the server did not answer in time: the keepalive was a probe
    /// round that went unanswered (the confirming rules take it from there).
    Unanswered(String),
    /// ssh itself did not do its part (left the server's data unread, or asked nothing
    /// although due): a round with the alive check decides.
    SshSilent(String),
}

/// The verdict of one look (see [`Look`]), `keepalive` being ssh's
/// `ServerAliveInterval`. Whatever else ssh sends (a user's channel, a window
/// adjustment), it must have sent its keepalive `keepalive` after the server's last
/// word, and the answer is due a retransmission timeout later: a server silent longer
/// than both is suspect, however recently ssh wrote.
pub fn look(r: &Reading, keepalive: Duration) -> Look {
    let again = |d: Duration| d.max(LOOK_FLOOR);
    let answer_in = r.ack_due() + LOOK_SLACK;
    if r.unread > 0 {
        if r.since_heard < UNREAD_STALE {
            return Look::Wait {
                again_in: again(UNREAD_STALE - r.since_heard),
            };
        }
        return Look::SshSilent(format!(
            "ssh has left {} bytes from the server unread for {} ms (frozen or wedged?)",
            r.unread,
            r.since_heard.as_millis()
        ));
    }
    if r.since_heard < keepalive {
        return Look::Heard {
            again_in: again(keepalive - r.since_heard + answer_in),
        };
    }
    let due = keepalive + answer_in;
    if r.since_heard < due {
        return Look::Wait {
            again_in: again(due - r.since_heard),
        };
    }
    if r.since_sent < r.since_heard {
        return Look::Unanswered(format!("the server has not answered ssh's keepalive ({r})"));
    }
    Look::SshSilent(format!(
        "ssh sent no keepalive although the server has been silent for {} ms (frozen or wedged?)",
        r.since_heard.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn reading(heard: u64, sent: u64, delivered: bool) -> Reading {
        Reading {
            since_heard: MS(heard),
            since_sent: MS(sent),
            delivered,
            rtt: Duration::from_micros(250),
            rttvar: Duration::from_micros(100),
            backlog: 0,
            since_ack: MS(heard),
            unread: 0,
        }
    }

    #[test]
    fn a_look_follows_ssh_keepalive() {
        let k = Duration::from_secs(5);
        // rtt 250 µs, rttvar 100 µs: the answer is due within 200 ms (Linux's floor),
        // 300 ms with the slack.
        // Heard 1 s ago: ssh asks 4 s from now, its answer 300 ms later.
        assert_eq!(
            look(&reading(1000, 900, true), k),
            Look::Heard { again_in: MS(4300) }
        );
        // Silent 5.1 s; ssh asked 100 ms ago: its answer may be on its way.
        assert_eq!(
            look(&reading(5100, 100, true), k),
            Look::Wait { again_in: MS(200) }
        );
        // Silent 5.1 s and ssh has not asked yet: its whole-second clock, wait.
        assert_eq!(
            look(&reading(5100, 6000, true), k),
            Look::Wait { again_in: MS(200) }
        );
        // Silent 5.4 s, asked and not answered: the server session (a frozen sshd).
        let r = reading(5400, 400, true);
        assert!(
            matches!(look(&r, k), Look::Unanswered(ref why) if why.contains("not answered ssh's keepalive")),
            "{:?}",
            look(&r, k)
        );
        // The same while ssh keeps writing (a user's channels into the silence): the
        // keepalive's answer was due all the same.
        let r = reading(9000, 50, true);
        assert!(
            matches!(look(&r, k), Look::Unanswered(ref why) if why.contains("not answered ssh's keepalive")),
            "{:?}",
            look(&r, k)
        );
        // Silent 5.5 s and never asked: ssh's loop does not run.
        let r = reading(5500, 6000, true);
        assert!(
            matches!(look(&r, k), Look::SshSilent(ref why) if why.contains("sent no keepalive")),
            "{:?}",
            look(&r, k)
        );
        // The server spoke (its ClientAlive) and ssh did not read it.
        let unread = |heard| Reading {
            unread: 52,
            ..reading(heard, 3000, true)
        };
        assert_eq!(look(&unread(100), k), Look::Wait { again_in: MS(200) });
        assert!(
            matches!(look(&unread(400), k), Look::SshSilent(ref why) if why.contains("52 bytes"))
        );
        // Never a busy loop.
        assert_eq!(
            look(&reading(5299, 6000, true), k),
            Look::Wait {
                again_in: LOOK_FLOOR
            }
        );
    }

    #[test]
    fn judge_maps_the_window() {
        let w = Duration::from_secs(3);
        assert_eq!(judge(Some(reading(200, 100, true)), w), Heard::Yes);
        // Sent within the window, all of it acknowledged, nothing back: the session.
        assert_eq!(judge(Some(reading(4000, 2900, true)), w), Heard::Unanswered);
        // Sent as the round began, read a tick later by the kernel's clock.
        assert_eq!(judge(Some(reading(4000, 3004, true)), w), Heard::Unanswered);
        // Still waiting for acknowledgements: the path, not the session, may be slow.
        assert_eq!(judge(Some(reading(4000, 2900, false)), w), Heard::No);
        // Nothing sent since the round began: the server was not asked.
        assert_eq!(judge(Some(reading(9000, 4000, true)), w), Heard::No);
        // Behind a backlog, an ACK older than the round but within the path's own
        // retransmission timeout: a saturated uplink moving, not a silent server.
        let w = MS(500);
        let busy = |ack, rtt, rttvar| Reading {
            backlog: BUSY_QUEUE + 1,
            since_ack: MS(ack),
            rtt: MS(rtt),
            rttvar: MS(rttvar),
            ..reading(9000, 10, false)
        };
        assert_eq!(judge(Some(busy(700, 1500, 200)), w), Heard::Yes);
        assert_eq!(busy(700, 1500, 200).ack_due(), MS(2300));
        assert!(
            busy(700, 1500, 200)
                .to_string()
                .ends_with("last ACK 700 ms ago (due within 2300 ms)"),
            "{}",
            busy(700, 1500, 200)
        );
        // Past it: the path has stopped moving.
        assert_eq!(judge(Some(busy(2400, 1500, 200)), w), Heard::No);
        // The same ACK age with a small backlog is no news from the server.
        let small = Reading {
            backlog: 100,
            ..busy(700, 1500, 200)
        };
        assert_eq!(judge(Some(small), w), Heard::No);
        // On a fast path the floor is Linux's minimum RTO.
        assert_eq!(busy(0, 1, 0).ack_due(), RTO_MIN);
        assert_eq!(judge(None, w), Heard::Unknown);
    }

    #[test]
    fn request_layout() {
        let local: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:22".parse().unwrap();
        let m = request(local, server, 9).unwrap();
        assert_eq!(m.len(), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST, "no dump");
        assert_eq!(u32_at(&m, SEQ_AT), Some(9));
        assert_eq!(&m[16..20], &[2, 6, 2, 0]);
        assert_eq!(&m[24..26], &40000u16.to_be_bytes());
        assert_eq!(&m[26..28], &22u16.to_be_bytes());
        assert_eq!(&m[28..32], &[10, 0, 0, 2]);
        assert_eq!(&m[44..48], &[10, 0, 0, 1]);
        assert_eq!(&m[64..72], &[0xff; 8], "no cookie");
        let v6: SocketAddr = "[::1]:22".parse().unwrap();
        assert_eq!(request(local, v6, 1), None, "mixed families");
        assert_eq!(
            request("[::1]:40000".parse().unwrap(), v6, 1).unwrap()[16],
            10
        );
    }

    /// One reply message for the connection `local` → `server`: `wqueue` bytes
    /// unacknowledged, `unacked` segments in flight, data last sent `sent_ms` ago, last
    /// received `data_ms` ago and an ACK `ack_ms` ago.
    fn reply(
        seq: u32,
        (local, server): (SocketAddr, SocketAddr),
        (wqueue, unacked): (u32, u32),
        (sent_ms, data_ms, ack_ms): (u32, u32, u32),
    ) -> Vec<u8> {
        let info_len = 76;
        let len = 16 + DIAG_MSG_LEN + 4 + info_len;
        let mut m = vec![0u8; len];
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[SEQ_AT..SEQ_AT + 4].copy_from_slice(&seq.to_ne_bytes());
        let p = &mut m[16..];
        p[0] = 2;
        p[4..6].copy_from_slice(&local.port().to_be_bytes());
        p[6..8].copy_from_slice(&server.port().to_be_bytes());
        p[WQUEUE_AT..WQUEUE_AT + 4].copy_from_slice(&wqueue.to_ne_bytes());
        let a = &mut p[DIAG_MSG_LEN..];
        a[0..2].copy_from_slice(&((4 + info_len) as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        let info = &mut a[4..];
        for (at, v) in [
            (UNACKED_AT, unacked),
            (LAST_DATA_SENT_AT, sent_ms),
            (LAST_DATA_RECV_AT, data_ms),
            (LAST_ACK_RECV_AT, ack_ms),
            (RTT_AT, 250),
            (RTTVAR_AT, 100),
        ] {
            info[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        m
    }

    fn pair() -> (SocketAddr, SocketAddr) {
        (
            "10.0.0.2:40000".parse().unwrap(),
            "10.0.0.1:22".parse().unwrap(),
        )
    }

    #[test]
    fn acks_count_only_behind_a_backlog() {
        let (l, s) = pair();
        // Idle link (a frozen sshd's kernel still ACKs): only data counts.
        let r = parse_reply(&reply(1, pair(), (100, 1), (10, 9000, 5)), 1, l, s).unwrap();
        let expected = Reading {
            backlog: 100,
            since_ack: MS(5),
            ..reading(9000, 10, false)
        };
        assert_eq!(r, expected);
        assert_eq!(
            r.to_string(),
            "100 bytes unacknowledged, last data from the server 9000 ms ago, last ACK 5 ms ago"
        );
        // A bulk upload queued behind the slow uplink: the server's ACKs count.
        let busy = BUSY_QUEUE + 1;
        let r = parse_reply(&reply(1, pair(), (busy, 9), (0, 9000, 5)), 1, l, s).unwrap();
        assert_eq!(r.since_heard, MS(5));
        let r = parse_reply(&reply(1, pair(), (busy, 9), (0, 3, 500)), 1, l, s).unwrap();
        assert_eq!(r.since_heard, MS(3));
        // Everything acknowledged.
        let r = parse_reply(&reply(1, pair(), (0, 0), (700, 9000, 690)), 1, l, s).unwrap();
        assert_eq!(
            r,
            Reading {
                since_ack: MS(690),
                ..reading(9000, 700, true)
            }
        );
    }

    #[test]
    fn another_requests_reply_or_socket_or_an_error_is_not_taken() {
        let (l, s) = pair();
        let good = reply(2, pair(), (0, 0), (1, 2, 3));
        assert!(parse_reply(&good, 2, l, s).is_some());
        assert_eq!(parse_reply(&good, 3, l, s), None, "another request's reply");
        let other = ("10.0.0.2:40001".parse().unwrap(), s);
        assert_eq!(
            parse_reply(&reply(2, other, (0, 0), (1, 2, 3)), 2, l, s),
            None,
            "another socket"
        );
        let mut error = vec![0u8; 36];
        error[0..4].copy_from_slice(&36u32.to_ne_bytes());
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[SEQ_AT..SEQ_AT + 4].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(parse_reply(&error, 2, l, s), None);
    }

    #[test]
    fn garbage_replies_do_not_panic() {
        let (l, s) = pair();
        assert_eq!(parse_reply(&[], 1, l, s), None);
        let mut m = reply(1, pair(), (0, 0), (1, 2, 3));
        for cut in 0..m.len() {
            let _ = parse_reply(&m[..cut], 1, l, s);
        }
        m[16 + DIAG_MSG_LEN] = 255; // attribute longer than the message
        let _ = parse_reply(&m, 1, l, s);
    }

    /// A real connection on loopback, asked by its 4-tuple: data the peer sends shows
    /// as a small `since_heard`, silence lets it grow; what we send and the peer's
    /// kernel acknowledges is delivered, and unanswered until the peer writes.
    #[cfg(target_os = "linux")]
    #[test]
    fn live_reading_on_loopback() {
        use std::io::{Read, Write};
        use std::time::Instant;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = l.local_addr().unwrap();
        let mut c = std::net::TcpStream::connect(server).unwrap();
        let local = c.local_addr().unwrap();
        let (mut s, _) = l.accept().unwrap();
        let ask = || read(local, server, Instant::now() + Duration::from_secs(2));
        s.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        let r = ask().expect("our own connection is found");
        assert!(r.since_heard < MS(500), "{r:?}");
        assert!(r.rtt > Duration::ZERO && r.rtt < MS(200), "loopback: {r:?}");
        std::thread::sleep(MS(700));
        let r = ask().unwrap();
        assert!(r.since_heard >= MS(600), "{r:?}");
        // Data sent by us does not count as heard; once the peer's kernel has
        // acknowledged it, it is delivered and unanswered.
        c.write_all(b"x").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = loop {
            let r = ask().unwrap();
            if r.delivered || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(MS(5));
        };
        assert!(r.since_heard >= MS(600) && r.delivered, "{r:?}");
        assert_eq!(judge(Some(r), MS(500)), Heard::Unanswered);
        // The peer answers: heard.
        s.write_all(b"y").unwrap();
        c.read_exact(&mut b[..1]).unwrap();
        assert_eq!(judge(ask(), MS(500)), Heard::Yes);
        // A connection that does not exist: the kernel's error, nothing read.
        let nobody: SocketAddr = ([127, 0, 0, 1], 1).into();
        assert_eq!(
            read(nobody, server, Instant::now() + Duration::from_secs(2)),
            None
        );
    }

    /// The deadline bounds waiting for the kernel, not the work before the first read:
    /// a watchdog starved of CPU past the deadline still gets the answer the kernel
    /// wrote, instead of "unknown" (which made a confirming round a failure).
    #[cfg(target_os = "linux")]
    #[test]
    fn an_answer_already_written_is_read_past_the_deadline() {
        use std::time::Instant;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = l.local_addr().unwrap();
        let c = std::net::TcpStream::connect(server).unwrap();
        let _s = l.accept().unwrap();
        let past = Instant::now();
        std::thread::sleep(MS(5));
        assert!(read(c.local_addr().unwrap(), server, past).is_some());
    }
}
