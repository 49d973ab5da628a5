//! macOS routing socket (`socket(PF_ROUTE, SOCK_RAW, 0)`, what `route -n monitor`
//! reads): its message parser, platform-independent and unit-tested on Linux from
//! constructed bytes, and the socket itself, compiled for macOS only.
//!
//! Layouts followed (Darwin xnu `bsd/net/route.h`, `bsd/net/if.h`; the same as the
//! libc crate's apple structs and Go's x/net/route `zsys_darwin.go`: sizeof
//! rt_msghdr 92, ifa_msghdr 20, if_msghdr 112), host byte order (both Apple
//! architectures are little-endian):
//!
//! ```text
//! common prefix   u16 msglen @0, u8 version @2 (RTM_VERSION 5), u8 type @3
//! rt_msghdr (92)  u16 index @4, (pad), i32 flags @8, i32 addrs @12, pid @16, seq @20,
//!                 errno @24, use @28, u32 inits @32, rt_metrics (14 × u32) @36;
//!                 sockaddrs from @92
//! ifa_msghdr (20) i32 addrs @4, i32 flags @8, u16 index @12, (pad), i32 metric @16;
//!                 sockaddrs from @20
//! if_msghdr (112) i32 addrs @4, i32 flags @8, u16 index @12, (pad), if_data @16
//! ```
//! After the header, one sockaddr per bit set in `addrs`, lowest bit first (RTA_DST
//! 0x1, RTA_GATEWAY 0x2, RTA_NETMASK 0x4, RTA_GENMASK 0x8, RTA_IFP 0x10, RTA_IFA 0x20,
//! RTA_AUTHOR 0x40, RTA_BRD 0x80), each `sa_len` bytes rounded up to 4 (a zero
//! `sa_len` takes 4). sockaddr: u8 sa_len, u8 sa_family (AF_INET 2, AF_INET6 30 on
//! Darwin); sockaddr_in's address at 4, sockaddr_in6's at 8. A netmask may be cut
//! short (`sa_len` below the full size, family 0): the missing bytes are zero.
//!
//! FreeBSD, NetBSD and OpenBSD use the same scheme with other header sizes (FreeBSD's
//! rt_msghdr is 152 bytes on 64-bit, its metrics being u_long) and other AF_INET6
//! numbers; [`Layout`] carries those numbers, and only Darwin's is defined and tested
//! so far.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NetEvent, u16_at, u32_at};

pub const RTM_ADD: u8 = 0x1;
pub const RTM_DELETE: u8 = 0x2;
pub const RTM_CHANGE: u8 = 0x3;
pub const RTM_NEWADDR: u8 = 0xc;
pub const RTM_DELADDR: u8 = 0xd;
pub const RTM_IFINFO: u8 = 0xe;
pub const RTM_VERSION: u8 = 5;

const RTA_DST: u32 = 0x1;
const RTA_GATEWAY: u32 = 0x2;
const RTA_NETMASK: u32 = 0x4;
const RTA_IFA: u32 = 0x20;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

/// The numbers that differ between the BSDs.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub rt_msghdr_len: usize,
    pub ifa_msghdr_len: usize,
    pub af_inet6: u8,
}

pub const DARWIN: Layout = Layout {
    rt_msghdr_len: 92,
    ifa_msghdr_len: 20,
    af_inet6: 30,
};

const AF_INET: u8 = 2;

/// Where the sockaddr of one RTA_* bit lands in [`sockaddrs`]'s answer.
fn slot(bit: u32) -> usize {
    bit.trailing_zeros() as usize
}

fn roundup(len: usize) -> usize {
    if len == 0 { 4 } else { (len + 3) & !3 }
}

/// The sockaddrs after a header, by RTA_* bit; None for a bit not present.
fn sockaddrs(mut b: &[u8], addrs: u32) -> [Option<&[u8]>; 8] {
    let mut out = [None; 8];
    for (bit, slot) in out.iter_mut().enumerate() {
        if addrs & (1 << bit) == 0 {
            continue;
        }
        let Some(&len) = b.first() else { break };
        let step = roundup(len as usize);
        if step > b.len() {
            break;
        }
        *slot = Some(&b[..(len as usize).max(2).min(b.len())]);
        b = &b[step..];
    }
    out
}

/// The address in a sockaddr; a short one (netmasks) is padded with zeros.
fn sa_ip(sa: &[u8], layout: &Layout, family_hint: Option<u8>) -> Option<IpAddr> {
    let family = match sa.get(1).copied() {
        Some(0) | None => family_hint?,
        Some(f) => f,
    };
    let take = |from: usize, n: usize| -> Vec<u8> {
        let mut v: Vec<u8> = sa
            .get(from..)
            .unwrap_or(&[])
            .iter()
            .copied()
            .take(n)
            .collect();
        v.resize(n, 0);
        v
    };
    if family == AF_INET {
        let v = take(4, 4);
        Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])))
    } else if family == layout.af_inet6 {
        let v: [u8; 16] = take(8, 16).try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(v)))
    } else {
        None
    }
}

fn prefix_len(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
        IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
    }
}

/// One message (one `read` from the routing socket returns exactly one).
pub fn parse(msg: &[u8], layout: &Layout) -> Option<NetEvent> {
    let len = u16_at(msg, 0)? as usize;
    if len > msg.len() || len < 4 || msg[2] != RTM_VERSION {
        return None;
    }
    let msg = &msg[..len];
    match msg[3] {
        RTM_NEWADDR | RTM_DELADDR => {
            let addrs = u32_at(msg, 4)?;
            let ifindex = u32::from(u16_at(msg, 12)?);
            let sas = sockaddrs(msg.get(layout.ifa_msghdr_len..)?, addrs);
            let addr = sa_ip(sas[slot(RTA_IFA)]?, layout, None)?;
            Some(if msg[3] == RTM_NEWADDR {
                NetEvent::AddrAdded { ifindex, addr }
            } else {
                NetEvent::AddrRemoved { ifindex, addr }
            })
        }
        RTM_ADD | RTM_DELETE | RTM_CHANGE => {
            let ifindex = u32::from(u16_at(msg, 4)?);
            let addrs = u32_at(msg, 12)?;
            let sas = sockaddrs(msg.get(layout.rt_msghdr_len..)?, addrs);
            let dst = sa_ip(sas[slot(RTA_DST)]?, layout, None)?;
            let family = if dst.is_ipv4() {
                AF_INET
            } else {
                layout.af_inet6
            };
            let full = if dst.is_ipv4() { 32 } else { 128 };
            // No netmask: a host route.
            let plen = sas[slot(RTA_NETMASK)].map_or(full, |m| {
                sa_ip(m, layout, Some(family)).map_or(full, prefix_len)
            });
            // The gateway may be a link-layer sockaddr (a directly connected route): no IP.
            let gateway = sas[slot(RTA_GATEWAY)].and_then(|g| sa_ip(g, layout, None));
            Some(NetEvent::Route {
                removed: msg[3] == RTM_DELETE,
                dst,
                prefix_len: plen,
                oif: (ifindex != 0).then_some(ifindex),
                gateway,
            })
        }
        RTM_IFINFO => {
            let flags = u32_at(msg, 8)?;
            let ifindex = u32::from(u16_at(msg, 12)?);
            Some(NetEvent::Link {
                ifindex,
                up: flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
                removed: false,
            })
        }
        _ => None,
    }
}

/// The routing socket's platform part of `netevents::Source` (`source.rs`).
#[cfg(target_os = "macos")]
pub(super) mod sys {
    use std::os::fd::OwnedFd;

    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

    use super::{DARWIN, NetEvent, parse};

    /// Big enough for one routing message (one `read` returns exactly one).
    pub const BUF: usize = 2048;

    pub fn open_events() -> nix::Result<OwnedFd> {
        // Darwin's socket() takes no SOCK_NONBLOCK/SOCK_CLOEXEC: set both after.
        let fd = socket(AddressFamily::Route, SockType::Raw, SockFlag::empty(), None)?;
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let fl = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
        Ok(fd)
    }

    pub fn read(fd: &OwnedFd, buf: &mut [u8]) -> nix::Result<usize> {
        nix::unistd::read(fd, buf)
    }

    pub fn events(msg: &[u8]) -> Option<NetEvent> {
        parse(msg, &DARWIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sin(a: [u8; 4]) -> Vec<u8> {
        let mut v = vec![16, AF_INET, 0, 0];
        v.extend_from_slice(&a);
        v.resize(16, 0);
        v
    }

    fn sin6(a: Ipv6Addr) -> Vec<u8> {
        let mut v = vec![28, 30, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&a.octets());
        v.resize(28, 0);
        v
    }

    /// sockaddr_dl (AF_LINK 18), as RTA_IFP and link-layer gateways carry: 20 bytes here.
    fn sdl(index: u16) -> Vec<u8> {
        let mut v = vec![20, 18];
        v.extend_from_slice(&index.to_ne_bytes());
        v.resize(20, 0);
        v
    }

    fn finish(mut m: Vec<u8>, sas: &[Vec<u8>]) -> Vec<u8> {
        for sa in sas {
            let mut sa = sa.clone();
            let step = roundup(sa.len());
            sa.resize(step, 0);
            m.extend_from_slice(&sa);
        }
        let len = m.len() as u16;
        m[0..2].copy_from_slice(&len.to_ne_bytes());
        m
    }

    fn ifa_msg(kind: u8, index: u16, addrs: u32, sas: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![0u8; 20];
        m[2] = RTM_VERSION;
        m[3] = kind;
        m[4..8].copy_from_slice(&addrs.to_ne_bytes());
        m[12..14].copy_from_slice(&index.to_ne_bytes());
        finish(m, sas)
    }

    fn rt_msg(kind: u8, index: u16, addrs: u32, sas: &[Vec<u8>]) -> Vec<u8> {
        let mut m = vec![0u8; 92];
        m[2] = RTM_VERSION;
        m[3] = kind;
        m[4..6].copy_from_slice(&index.to_ne_bytes());
        m[12..16].copy_from_slice(&addrs.to_ne_bytes());
        finish(m, sas)
    }

    #[test]
    fn new_and_deleted_address() {
        // NETMASK | IFP | IFA | BRD, as `route monitor` shows for `ifconfig en0 alias`.
        let addrs = RTA_NETMASK | 0x10 | RTA_IFA | 0x80;
        let mask = vec![8, 0, 0, 0, 255, 255, 255, 0]; // cut short, family 0
        let sas = [
            mask,
            sdl(4),
            sin([192, 168, 1, 20]),
            sin([192, 168, 1, 255]),
        ];
        let m = ifa_msg(RTM_NEWADDR, 4, addrs, &sas);
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::AddrAdded {
                ifindex: 4,
                addr: "192.168.1.20".parse().unwrap()
            })
        );
        let m = ifa_msg(RTM_DELADDR, 4, addrs, &sas);
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::AddrRemoved {
                ifindex: 4,
                addr: "192.168.1.20".parse().unwrap()
            })
        );
        let v6: Ipv6Addr = "2001:db8::20".parse().unwrap();
        let m = ifa_msg(RTM_NEWADDR, 4, 0x10 | RTA_IFA, &[sdl(4), sin6(v6)]);
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::AddrAdded {
                ifindex: 4,
                addr: IpAddr::V6(v6)
            })
        );
    }

    #[test]
    fn default_route_with_gateway_and_short_netmask() {
        // DST 0.0.0.0, GATEWAY 192.168.1.1, NETMASK with sa_len 0 (an all-zero mask).
        let m = rt_msg(
            RTM_ADD,
            4,
            RTA_DST | RTA_GATEWAY | RTA_NETMASK,
            &[sin([0; 4]), sin([192, 168, 1, 1]), vec![0]],
        );
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::Route {
                removed: false,
                dst: "0.0.0.0".parse().unwrap(),
                prefix_len: 0,
                oif: Some(4),
                gateway: Some("192.168.1.1".parse().unwrap()),
            })
        );
        // A /24 route deleted; its gateway is the link (sockaddr_dl): no IP gateway.
        let mask = vec![7, 0, 0, 0, 255, 255, 255];
        let m = rt_msg(
            RTM_DELETE,
            4,
            RTA_DST | RTA_GATEWAY | RTA_NETMASK,
            &[sin([10, 8, 0, 0]), sdl(4), mask],
        );
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::Route {
                removed: true,
                dst: "10.8.0.0".parse().unwrap(),
                prefix_len: 24,
                oif: Some(4),
                gateway: None,
            })
        );
        // No netmask: a host route.
        let m = rt_msg(RTM_CHANGE, 0, RTA_DST, &[sin([203, 0, 113, 7])]);
        assert!(matches!(
            parse(&m, &DARWIN),
            Some(NetEvent::Route {
                prefix_len: 32,
                oif: None,
                ..
            })
        ));
    }

    #[test]
    fn interface_info() {
        let mut m = vec![0u8; 112];
        m[2] = RTM_VERSION;
        m[3] = RTM_IFINFO;
        m[8..12].copy_from_slice(&(IFF_UP | IFF_RUNNING | 0x8000).to_ne_bytes());
        m[12..14].copy_from_slice(&5u16.to_ne_bytes());
        let m = finish(m, &[]);
        assert_eq!(
            parse(&m, &DARWIN),
            Some(NetEvent::Link {
                ifindex: 5,
                up: true,
                removed: false
            })
        );
        let mut down = m.clone();
        down[8..12].copy_from_slice(&IFF_UP.to_ne_bytes()); // up but not running: no carrier
        assert_eq!(
            parse(&down, &DARWIN),
            Some(NetEvent::Link {
                ifindex: 5,
                up: false,
                removed: false
            })
        );
    }

    #[test]
    fn garbage_is_ignored_without_panic() {
        assert_eq!(parse(&[], &DARWIN), None);
        let good = rt_msg(
            RTM_ADD,
            4,
            RTA_DST | RTA_GATEWAY,
            &[sin([0; 4]), sin([1, 2, 3, 4])],
        );
        for cut in 0..good.len() {
            // Truncated reads: msglen says more than is there.
            assert_eq!(parse(&good[..cut], &DARWIN), None, "cut at {cut}");
        }
        let mut wrong_version = good.clone();
        wrong_version[2] = 4;
        assert_eq!(parse(&wrong_version, &DARWIN), None);
        // Lying sa_len values: no panic, whatever comes out.
        let mut lying = good.clone();
        lying[92] = 255;
        let _ = parse(&lying, &DARWIN);
        // Other message types (RTM_NEWMADDR 0xf, RTM_IFINFO2 0x12) are not events.
        let mut other = good;
        other[3] = 0xf;
        assert_eq!(parse(&other, &DARWIN), None);
    }
}
