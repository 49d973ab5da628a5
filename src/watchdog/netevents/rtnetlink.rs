//! Linux rtnetlink: the event socket, the message parser, the route lookup.
//!
//! Layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h, linux/if_link.h),
//! host byte order, every header and attribute aligned to 4 bytes:
//! - `nlmsghdr` (16): u32 len, u16 type, u16 flags, u32 seq, u32 pid.
//! - `ifaddrmsg` (8, RTM_NEWADDR/DELADDR): u8 family, u8 prefixlen, u8 flags, u8 scope, u32 index;
//!   attributes IFA_ADDRESS (1), IFA_LOCAL (2). On point-to-point links IFA_ADDRESS is the
//!   peer and IFA_LOCAL the own address, so IFA_LOCAL wins when present.
//! - `rtmsg` (12, RTM_NEWROUTE/DELROUTE): u8 family, dst_len, src_len, tos, table, protocol,
//!   scope, type, u32 flags; attributes RTA_DST (1), RTA_OIF (4), RTA_GATEWAY (5), RTA_PREFSRC (7).
//! - `ifinfomsg` (16, RTM_NEWLINK/DELLINK): u8 family, u8 pad, u16 type, i32 index, u32 flags, u32 change.
//! - `rtattr` (4): u16 len (header included), u16 type, then the payload.
//!
//! The parser is plain code over bytes (tests use messages captured here, in a
//! network namespace, see tests/data/rtnetlink/); only the socket is Linux-only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NetEvent, Route, RouteNow, u16_at, u32_at};

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;

pub const RTMGRP_LINK: u32 = 0x1;
pub const RTMGRP_IPV4_IFADDR: u32 = 0x10;
pub const RTMGRP_IPV4_ROUTE: u32 = 0x40;
pub const RTMGRP_IPV6_IFADDR: u32 = 0x100;
pub const RTMGRP_IPV6_ROUTE: u32 = 0x400;
/// Every group the watchdog listens to.
pub const GROUPS: u32 =
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;
const RT_TABLE_LOCAL: u8 = 255;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message: its type and payload (after the 16-byte header).
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Splits a datagram into messages; stops at the first malformed length (the rest of
/// a datagram with a broken header cannot be framed).
pub fn messages(mut buf: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let Some(len) = u32_at(buf, 0).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        out.push(Message {
            kind: u16_at(buf, 4).unwrap_or(0),
            seq: u32_at(buf, 8).unwrap_or(0),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

/// The (type, payload) attributes after a fixed-size family header (rtnetlink's, and
/// sock_diag's, which `heard` reads, are framed alike).
pub fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let (Some(len), Some(kind)) = (u16_at(b, 0), u16_at(b, 2)) else {
            break;
        };
        let len = len as usize;
        if len < 4 || len > b.len() {
            break;
        }
        // The top two bits are the nested/byte-order flags.
        out.push((kind & 0x3fff, &b[4..len]));
        b = &b[align4(len).min(b.len())..];
    }
    out
}

fn ip(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// The event one message stands for; None for messages the watchdog ignores (other
/// families, the local table's routes, replies).
pub fn parse(msg: &Message<'_>) -> Option<NetEvent> {
    let p = msg.payload;
    match msg.kind {
        RTM_NEWADDR | RTM_DELADDR => {
            let family = *p.first()?;
            let ifindex = u32_at(p, 4)?;
            let a = attrs(p.get(8..)?);
            let pick = |t| {
                a.iter()
                    .find(|(k, _)| *k == t)
                    .and_then(|(_, v)| ip(family, v))
            };
            let addr = pick(IFA_LOCAL).or_else(|| pick(IFA_ADDRESS))?;
            Some(if msg.kind == RTM_NEWADDR {
                NetEvent::AddrAdded { ifindex, addr }
            } else {
                NetEvent::AddrRemoved { ifindex, addr }
            })
        }
        RTM_NEWROUTE | RTM_DELROUTE => {
            let family = *p.first()?;
            let dst_len = *p.get(1)?;
            let table = *p.get(4)?;
            // The local table holds the host's own and broadcast addresses; its changes
            // come with an address event, which is what the decision looks at.
            if table == RT_TABLE_LOCAL {
                return None;
            }
            let r = route_attrs(family, p.get(12..)?);
            let dst = r.dst.or(match family {
                AF_INET => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                AF_INET6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                _ => None,
            })?;
            Some(NetEvent::Route {
                removed: msg.kind == RTM_DELROUTE,
                dst,
                prefix_len: dst_len,
                oif: r.route.oif,
                gateway: r.route.gateway,
            })
        }
        RTM_NEWLINK | RTM_DELLINK => {
            let ifindex = u32_at(p, 4)?;
            let flags = u32_at(p, 8)?;
            Some(NetEvent::Link {
                ifindex,
                up: flags & IFF_UP != 0 && flags & IFF_LOWER_UP != 0,
                removed: msg.kind == RTM_DELLINK,
            })
        }
        NLMSG_OVERRUN => Some(NetEvent::Lost),
        _ => None,
    }
}

struct RouteAttrs {
    dst: Option<IpAddr>,
    route: Route,
}

fn route_attrs(family: u8, b: &[u8]) -> RouteAttrs {
    let mut r = RouteAttrs {
        dst: None,
        route: Route {
            oif: None,
            gateway: None,
            prefsrc: None,
        },
    };
    for (kind, v) in attrs(b) {
        match kind {
            RTA_DST => r.dst = ip(family, v),
            RTA_OIF => r.route.oif = u32_at(v, 0),
            RTA_GATEWAY => r.route.gateway = ip(family, v),
            RTA_PREFSRC => r.route.prefsrc = ip(family, v),
            _ => {}
        }
    }
    r
}

/// Every event in one datagram.
pub fn parse_datagram(buf: &[u8]) -> Vec<NetEvent> {
    messages(buf).iter().filter_map(parse).collect()
}

/// The RTM_GETROUTE request for `dst` (what `ip route get DST` sends).
pub fn route_request(dst: IpAddr, seq: u32) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match dst {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    };
    let attr_len = 4 + addr.len();
    let len = NLMSG_HDRLEN + 12 + align4(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    m.extend_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    let dst_len = if family == AF_INET { 32 } else { 128 };
    m.extend_from_slice(&[family, dst_len, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&RTA_DST.to_ne_bytes());
    m.extend_from_slice(&addr);
    m.resize(len, 0);
    m
}

/// The answer to `route_request(_, seq)` in a reply datagram, if it is there.
pub fn parse_route_reply(buf: &[u8], seq: u32) -> Option<RouteNow> {
    for msg in messages(buf) {
        if msg.seq != seq {
            continue;
        }
        match msg.kind {
            RTM_NEWROUTE => {
                let family = *msg.payload.first()?;
                let route_type = *msg.payload.get(7)?;
                // Blackhole (6), unreachable (7), prohibit (8): no way out. Unicast (1)
                // and local (2: an address of this machine, loopback included) are ways.
                if matches!(route_type, 6..=8) {
                    return Some(RouteNow::NoRoute);
                }
                return Some(RouteNow::Via(
                    route_attrs(family, msg.payload.get(12..)?).route,
                ));
            }
            NLMSG_ERROR => {
                let errno = u32_at(msg.payload, 0)? as i32;
                // ENETUNREACH (101) and EHOSTUNREACH (113): the kernel knows no way there.
                return Some(if errno == -101 || errno == -113 {
                    RouteNow::NoRoute
                } else {
                    RouteNow::Unknown
                });
            }
            _ => {}
        }
    }
    None
}

#[cfg(target_os = "linux")]
pub use sys::lookup_route;

/// The netlink socket (the platform part of `netevents::Source`, `source.rs`) and the
/// route lookup.
#[cfg(target_os = "linux")]
pub(super) mod sys {
    use std::net::IpAddr;
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::time::Instant;

    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
        socket,
    };

    use super::{GROUPS, NetEvent, RouteNow, parse_datagram, parse_route_reply, route_request};

    /// Big enough for any rtnetlink datagram the kernel sends unasked (one page each).
    pub const BUF: usize = 16 * 1024;

    fn open(groups: u32) -> nix::Result<OwnedFd> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        Ok(fd)
    }

    pub fn open_events() -> nix::Result<OwnedFd> {
        open(GROUPS)
    }

    pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> nix::Result<usize> {
        recv(fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)
    }

    /// Every event in one datagram.
    pub fn events(datagram: &[u8]) -> Vec<NetEvent> {
        parse_datagram(datagram)
    }

    /// The route the kernel would use to reach `dst` now (`ip route get DST`), over a
    /// socket of its own so the reply cannot mix with events; gives up at `deadline`.
    pub fn lookup_route(dst: IpAddr, deadline: Instant) -> RouteNow {
        let Ok(fd) = open(0) else {
            return RouteNow::Unknown;
        };
        let seq = 1;
        if send(fd.as_raw_fd(), &route_request(dst, seq), MsgFlags::empty()).is_err() {
            return RouteNow::Unknown;
        }
        let mut buf = vec![0u8; BUF];
        for _ in 0..16 {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if ms == 0 {
                return RouteNow::Unknown;
            }
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => {}
                Err(Errno::EINTR) => continue,
                _ => return RouteNow::Unknown,
            }
            match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    if let Some(r) = parse_route_reply(&buf[..n], seq) {
                        return r;
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => return RouteNow::Unknown,
            }
        }
        RouteNow::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn request_has_the_documented_layout() {
        let m = route_request("10.1.2.3".parse().unwrap(), 7);
        assert_eq!(m.len(), 16 + 12 + 8);
        assert_eq!(u32_at(&m, 0), Some(36));
        assert_eq!(u16_at(&m, 4), Some(RTM_GETROUTE));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(&m[16..18], &[AF_INET, 32]);
        assert_eq!(u16_at(&m, 28), Some(8));
        assert_eq!(u16_at(&m, 30), Some(RTA_DST));
        assert_eq!(&m[32..36], &[10, 1, 2, 3]);
        let m6 = route_request("2001:db8::1".parse().unwrap(), 1);
        assert_eq!(m6.len(), 16 + 12 + 20);
        assert_eq!(m6[17], 128);
    }

    #[test]
    fn malformed_input_gives_no_events_and_no_panic() {
        assert!(parse_datagram(&[]).is_empty());
        assert!(parse_datagram(&[0xff; 15]).is_empty());
        // A length past the end, a length below the header, a truncated attribute.
        let mut m = hex("ff000000 1400 0000 00000000 00000000");
        assert!(parse_datagram(&m).is_empty());
        m[0] = 4;
        assert!(parse_datagram(&m).is_empty());
        // RTM_NEWADDR, ifaddrmsg cut short.
        let short = hex("14000000 1400 0000 00000000 00000000 02200000");
        assert!(parse_datagram(&short).is_empty());
        // Every prefix of real captured datagrams: no panic.
        for v in vectors() {
            for cut in 0..v.1.len() {
                let _ = parse_datagram(&v.1[..cut]);
            }
        }
    }

    #[test]
    fn overrun_is_lost() {
        let m = hex("10000000 0400 0000 00000000 00000000");
        assert_eq!(parse_datagram(&m), vec![NetEvent::Lost]);
    }

    /// Captured from a real kernel, see tests/data/rtnetlink/README.md.
    fn vectors() -> Vec<(String, Vec<u8>)> {
        let text = include_str!("../../../tests/data/rtnetlink/events.hex");
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, bytes) = l.split_once(' ').unwrap();
                (name.to_string(), hex(bytes))
            })
            .collect()
    }

    /// Every datagram captured after one action (`NAME.0`, `NAME.1`, …), back to back:
    /// datagrams hold whole aligned messages, so their concatenation parses the same.
    fn vector(name: &str) -> Vec<u8> {
        let prefix = format!("{name}.");
        let all: Vec<u8> = vectors()
            .into_iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .flat_map(|(_, b)| b)
            .collect();
        assert!(!all.is_empty(), "no vector {name}");
        all
    }

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn captured_address_added_and_removed() {
        let ev = parse_datagram(&vector("newaddr4"));
        assert!(
            ev.iter()
                .any(|e| matches!(e, NetEvent::AddrAdded { addr, .. } if *addr == v4("10.77.0.2"))),
            "{ev:?}"
        );
        let ev = parse_datagram(&vector("deladdr4"));
        assert!(
            ev.iter().any(
                |e| matches!(e, NetEvent::AddrRemoved { addr, .. } if *addr == v4("10.77.0.2"))
            ),
            "{ev:?}"
        );
        let ev = parse_datagram(&vector("newaddr6"));
        let want: IpAddr = "fd77::2".parse().unwrap();
        assert!(
            ev.iter()
                .any(|e| matches!(e, NetEvent::AddrAdded { addr, .. } if *addr == want)),
            "{ev:?}"
        );
    }

    #[test]
    fn captured_routes() {
        let ev = parse_datagram(&vector("newroute4_default"));
        assert!(
            ev.iter().any(|e| matches!(e, NetEvent::Route { removed: false, dst, prefix_len: 0, gateway: Some(g), .. }
                if *dst == v4("0.0.0.0") && *g == v4("10.77.0.1"))),
            "{ev:?}"
        );
        let ev = parse_datagram(&vector("delroute4_default"));
        assert!(
            ev.iter().any(|e| matches!(
                e,
                NetEvent::Route {
                    removed: true,
                    prefix_len: 0,
                    ..
                }
            )),
            "{ev:?}"
        );
        let ev = parse_datagram(&vector("newroute4_host"));
        assert!(
            ev.iter().any(|e| matches!(e, NetEvent::Route { dst, prefix_len: 32, .. } if *dst == v4("198.51.100.9"))),
            "{ev:?}"
        );
    }

    #[test]
    fn captured_link_down_and_up() {
        let down = parse_datagram(&vector("newlink_down"));
        assert!(
            down.iter().any(|e| matches!(
                e,
                NetEvent::Link {
                    up: false,
                    removed: false,
                    ..
                }
            )),
            "{down:?}"
        );
        let up = parse_datagram(&vector("newlink_up"));
        assert!(
            up.iter()
                .any(|e| matches!(e, NetEvent::Link { up: true, .. })),
            "{up:?}"
        );
    }

    #[test]
    fn captured_route_lookup_reply() {
        let r = parse_route_reply(&vector("getroute_reply"), 1).expect("a reply");
        let RouteNow::Via(route) = r else {
            panic!("{r:?}")
        };
        assert_eq!(route.gateway, Some(v4("10.77.0.1")));
        assert_eq!(route.prefsrc, Some(v4("10.77.0.2")));
        assert!(route.oif.is_some());
        // Another sequence number is someone else's answer.
        assert_eq!(parse_route_reply(&vector("getroute_reply"), 2), None);
        assert_eq!(
            parse_route_reply(&vector("getroute_unreachable"), 1),
            Some(RouteNow::NoRoute)
        );
    }

    /// A server on this machine (loopback, or one of its own addresses) has a route:
    /// the kernel answers with a local route, not a unicast one.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_local_address_has_a_route() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        match lookup_route(v4("127.0.0.1"), deadline) {
            RouteNow::Via(route) => assert!(route.oif.is_some(), "{route:?}"),
            other => panic!("127.0.0.1: {other:?}"),
        }
    }

    /// The real socket: an address added in a private network namespace is seen, and a
    /// lookup answers. Needs root, `unshare` and `ip` (the prerequisite rule).
    #[cfg(target_os = "linux")]
    #[test]
    fn live_socket_in_a_private_namespace() {
        use crate::test_prereq::{on_path, require, root};
        let missing = root("a network namespace needs it")
            .or_else(|| on_path("unshare", "util-linux"))
            .or_else(|| on_path("ip", "iproute2"));
        if !require("live_socket_in_a_private_namespace", missing) {
            return;
        }
        // The whole test runs in a child process inside its own network namespace, so
        // the test binary's namespace is never touched.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("unshare")
            .args(["-n", "--"])
            .arg(exe)
            .args([
                "--exact",
                "watchdog::netevents::rtnetlink::tests::live_inner",
                "--nocapture",
                "--include-ignored",
            ])
            .env("TUNNELCTL_NETNS_CHILD", "1")
            .output()
            .expect("run unshare");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[ignore = "runs inside the private namespace live_socket_in_a_private_namespace makes"]
    fn live_inner() {
        use std::time::{Duration, Instant};
        assert_eq!(std::env::var("TUNNELCTL_NETNS_CHILD").as_deref(), Ok("1"));
        let run = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        // A veth pair: this kernel has no dummy module.
        run(&[
            "link", "add", "tcl0", "type", "veth", "peer", "name", "tcl1",
        ]);
        run(&["link", "set", "tcl1", "up"]);
        run(&["link", "set", "tcl0", "up"]);
        let mut src = crate::watchdog::netevents::Source::open().expect("netlink socket");
        run(&["addr", "add", "10.77.0.2/24", "dev", "tcl0"]);
        run(&["route", "add", "default", "via", "10.77.0.1"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while Instant::now() < deadline
            && !seen
                .iter()
                .any(|e| matches!(e, NetEvent::Route { prefix_len: 0, .. }))
        {
            let mut fds = [nix::poll::PollFd::new(
                src.fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            seen.extend(src.drain());
        }
        assert!(
            seen.iter()
                .any(|e| matches!(e, NetEvent::AddrAdded { addr, .. } if *addr == v4("10.77.0.2"))),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e, NetEvent::Route { prefix_len: 0, .. })),
            "{seen:?}"
        );
        let r = lookup_route(v4("198.51.100.9"), Instant::now() + Duration::from_secs(2));
        let RouteNow::Via(route) = r else {
            panic!("{r:?}")
        };
        assert_eq!(route.gateway, Some(v4("10.77.0.1")));
        assert_eq!(route.prefsrc, Some(v4("10.77.0.2")));
        run(&["route", "del", "default"]);
        let r = lookup_route(v4("198.51.100.9"), Instant::now() + Duration::from_secs(2));
        assert_eq!(r, RouteNow::NoRoute);
    }
}
