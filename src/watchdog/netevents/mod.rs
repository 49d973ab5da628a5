//! Network-change events for the watchdog's poll loop: the kernel
//! announces an address, route or link change at once, so the watchdog need not wait
//! for a probe or ssh's ServerAlive to time out.
//!
//! Pieces, one concern per file:
//! - [`rtnetlink`]: Linux. A `NETLINK_ROUTE` socket subscribed to address, route and
//!   link changes (IPv4 and IPv6), its message parser (pure, tested from bytes captured
//!   in a network namespace), and a route lookup for the server's address
//!   (`RTM_GETROUTE`) that answers "which interface, gateway and source address".
//! - [`pfroute`]: macOS. A `PF_ROUTE` socket and the parser of its messages
//!   (`rt_msghdr`, `ifa_msghdr`, `if_msghdr`), platform-independent and tested on Linux.
//! - `source.rs`: the event socket as the loop polls and drains it, one for both (the
//!   platform's file opens and reads it).
//! - this file: the event values, the decision, and the burst coalescing. All pure.
//!
//! No thread, no process: the socket is one more fd in the loop's `poll`; nothing is
//! read until the kernel has something to say, so an idle network costs no wake-up.
//!
//! # Which local address ssh uses
//! When ssh's control socket appears, the connection reads ssh's own TCP connection
//! (`events::ssh_connection`: /proc/PID/net/tcp for the socket inodes ssh holds, so a
//! `BindAddress` is seen too) and asks the kernel for the route to the server
//! (`RTM_GETROUTE`); both become [`ConnFacts`]. Off Linux, or without a direct TCP
//! connection (ProxyCommand), there are no facts and every change only brings a probe.
//!
//! # Where it is wired
//! The session (`session.rs`) polls [`Source`]'s fd with ssh's stderr and the signal
//! pipe, drains it into the coalescer, and hands each settled batch to the stage's
//! handler: while connected, `connection.rs` asks [`decide`] (reconnect, probe now, or
//! nothing); while waiting, a batch that may bring the server back ends the wait.

pub mod pfroute;
pub mod rtnetlink;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod source;

use std::net::IpAddr;
use std::time::{Duration, Instant};

#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use source::Source;

/// A host-order u16 at `at` in a message (both parsers' messages are host-order).
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A host-order u32 at `at` in a message.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A route lookup waits at most this long (the kernel answers in microseconds; the
/// bound only guards the loop against a kernel that does not).
pub const LOOKUP_DEADLINE: Duration = Duration::from_millis(200);

/// The route to `server` now. Linux asks rtnetlink; elsewhere there is no lookup yet
/// (macOS would send an RTM_GET on the routing socket), so the answer is `Unknown` and
/// the decision probes instead of reconnecting, except when ssh's local address is
/// removed, which needs no lookup.
pub fn lookup_route(server: IpAddr, deadline: Instant) -> RouteNow {
    #[cfg(target_os = "linux")]
    return rtnetlink::lookup_route(server, deadline);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (server, deadline);
        RouteNow::Unknown
    }
}

/// The connection's facts, learnt right after ssh is up: None when the lookup gives
/// nothing (then events are not decided on, and the watchdog works as without them).
pub fn learn(server: IpAddr, deadline: Instant) -> Option<ConnFacts> {
    match lookup_route(server, deadline) {
        RouteNow::Via(route) => Some(ConnFacts::from_route(server, route)),
        RouteNow::NoRoute | RouteNow::Unknown => None,
    }
}

/// How long a burst may keep growing before it is decided. A Wi-Fi roam or a DHCP
/// renewal emits its address, route and link messages within a few tens of
/// milliseconds; deciding on the first of them would see the old address deleted but
/// not yet the new route, and react twice. 200 ms covers such a burst and is small
/// next to the time a reconnect takes (one TCP and SSH handshake, ≥ 100 ms on a WAN).
/// Counted from the first event of the burst, not the last, so an endless stream of
/// events (a flapping link) still gets a reaction every 200 ms at most, never none.
pub const SETTLE: Duration = Duration::from_millis(200);

/// One thing the kernel announced, reduced to what the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    AddrAdded {
        ifindex: u32,
        addr: IpAddr,
    },
    AddrRemoved {
        ifindex: u32,
        addr: IpAddr,
    },
    /// A route appeared, changed or went. `dst`/`prefix_len`: the prefix it covers
    /// (0.0.0.0/0 for a default route).
    Route {
        removed: bool,
        dst: IpAddr,
        prefix_len: u8,
        oif: Option<u32>,
        gateway: Option<IpAddr>,
    },
    /// A link's state (up and carrier) or existence changed.
    Link {
        ifindex: u32,
        up: bool,
        removed: bool,
    },
    /// The kernel dropped messages (socket buffer overrun): anything may have changed.
    Lost,
}

/// The route to the server as a lookup answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
}

/// What the route lookup says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteNow {
    Via(Route),
    /// No route at all (network unreachable).
    NoRoute,
    /// The lookup failed or timed out: nothing can be concluded from it.
    Unknown,
}

/// What the watchdog knew about the connection when ssh came up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnFacts {
    pub server: IpAddr,
    /// The local address of ssh's connection (the route's prefsrc at connect time).
    pub local: Option<IpAddr>,
    pub route: Route,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaction {
    /// The connection cannot work any more: reconnect now, skipping the back-off.
    Reconnect,
    /// Something on the tunnel's path changed: run a probe round now.
    ProbeNow,
    /// Nothing that concerns this tunnel.
    Nothing,
}

impl ConnFacts {
    /// The facts as a route lookup at connect time gives them.
    pub fn from_route(server: IpAddr, route: Route) -> ConnFacts {
        ConnFacts {
            server,
            local: route.prefsrc,
            route,
        }
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Whether `addr` lies in `dst/len` (a route that could carry traffic to `addr`).
pub fn prefix_contains(dst: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (dst, addr) {
        (IpAddr::V4(d), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(d) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(d), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(d) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Whether one event can concern the tunnel at all. Cheap: no lookup.
pub fn concerns(facts: &ConnFacts, ev: &NetEvent) -> bool {
    match ev {
        NetEvent::AddrAdded { ifindex, addr } | NetEvent::AddrRemoved { ifindex, addr } => {
            Some(*addr) == facts.local
                || (Some(*ifindex) == facts.route.oif && same_family(*addr, facts.server))
        }
        // A route whose prefix does not hold the server's address cannot be the one
        // traffic to it takes, before or after.
        NetEvent::Route {
            dst, prefix_len, ..
        } => prefix_contains(*dst, *prefix_len, facts.server),
        NetEvent::Link { ifindex, .. } => Some(*ifindex) == facts.route.oif,
        NetEvent::Lost => true,
    }
}

/// What a batch that made the watchdog probe was, for the log: how many of its events
/// concern the tunnel, or that messages were lost (then any may have), or that nothing
/// is known of the tunnel's path yet.
pub fn describe_batch(facts: Option<&ConnFacts>, events: &[NetEvent]) -> String {
    let lost = events.contains(&NetEvent::Lost);
    let n = events.iter().filter(|e| **e != NetEvent::Lost).count();
    match facts {
        _ if lost => {
            format!("{n} event(s) and more than could be kept; any may concern the tunnel's path")
        }
        None => format!("{n} event(s); the tunnel's path is not known yet"),
        Some(facts) => {
            let on_path = events.iter().filter(|e| concerns(facts, e)).count();
            format!("{on_path} of {n} event(s) on the tunnel's path")
        }
    }
}

/// The one reaction to a batch of events. `lookup` (the route to the server now) is
/// called only when some event concerns the tunnel, so unrelated events cost nothing
/// beyond their parsing.
pub fn decide(
    facts: &ConnFacts,
    events: &[NetEvent],
    lookup: impl FnOnce() -> RouteNow,
) -> Reaction {
    let local_gone = events
        .iter()
        .any(|e| matches!(e, NetEvent::AddrRemoved { addr, .. } if Some(*addr) == facts.local));
    if local_gone {
        return Reaction::Reconnect;
    }
    if !events.iter().any(|e| concerns(facts, e)) {
        return Reaction::Nothing;
    }
    match lookup() {
        RouteNow::Via(now) => {
            let moved = now.oif != facts.route.oif
                || now.gateway != facts.route.gateway
                // A lookup always names a source; compare it with the one ssh has.
                || (now.prefsrc.is_some() && now.prefsrc != facts.local);
            if moved {
                Reaction::Reconnect
            } else {
                Reaction::ProbeNow
            }
        }
        // No route: a reconnect would fail too; the probe's failure handling (and the
        // wait for the server to greet) takes it from there.
        RouteNow::NoRoute | RouteNow::Unknown => Reaction::ProbeNow,
    }
}

/// Gathers a burst of events into one batch, decided [`SETTLE`] after its first event.
#[derive(Debug)]
pub struct Coalescer {
    settle: Duration,
    first: Option<Instant>,
    pending: Vec<NetEvent>,
}

/// A burst larger than this keeps its first events and a [`NetEvent::Lost`]: the
/// decision then treats it as "anything may have changed" (bounded memory).
const MAX_PENDING: usize = 256;

impl Coalescer {
    pub fn new(settle: Duration) -> Coalescer {
        Coalescer {
            settle,
            first: None,
            pending: Vec::new(),
        }
    }

    pub fn push(&mut self, now: Instant, events: impl IntoIterator<Item = NetEvent>) {
        for ev in events {
            if self.pending.len() >= MAX_PENDING {
                if self.pending.last() != Some(&NetEvent::Lost) {
                    self.pending.push(NetEvent::Lost);
                }
                continue;
            }
            self.first.get_or_insert(now);
            self.pending.push(ev);
        }
    }

    /// When the pending batch is due (for the poll timeout); None when nothing pends.
    pub fn deadline(&self) -> Option<Instant> {
        self.first.map(|t| t + self.settle)
    }

    /// The batch, once due.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<NetEvent>> {
        if self.deadline()? > now {
            return None;
        }
        self.first = None;
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn facts() -> ConnFacts {
        ConnFacts::from_route(
            v4("203.0.113.7"),
            Route {
                oif: Some(3),
                gateway: Some(v4("192.168.1.1")),
                prefsrc: Some(v4("192.168.1.20")),
            },
        )
    }

    fn same_route() -> RouteNow {
        RouteNow::Via(facts().route)
    }

    #[test]
    fn local_address_removed_reconnects_without_a_lookup() {
        let ev = [NetEvent::AddrRemoved {
            ifindex: 3,
            addr: v4("192.168.1.20"),
        }];
        let r = decide(&facts(), &ev, || panic!("no lookup needed"));
        assert_eq!(r, Reaction::Reconnect);
    }

    #[test]
    fn another_interfaces_address_costs_no_lookup() {
        let ev = [
            NetEvent::AddrAdded {
                ifindex: 5,
                addr: v4("10.8.0.2"),
            },
            NetEvent::AddrRemoved {
                ifindex: 5,
                addr: v4("10.8.0.3"),
            },
            NetEvent::Link {
                ifindex: 5,
                up: false,
                removed: false,
            },
            // A route that cannot carry traffic to the server.
            NetEvent::Route {
                removed: false,
                dst: v4("10.8.0.0"),
                prefix_len: 24,
                oif: Some(5),
                gateway: None,
            },
        ];
        assert_eq!(
            decide(&facts(), &ev, || panic!("no lookup")),
            Reaction::Nothing
        );
    }

    #[test]
    fn default_route_via_another_gateway_reconnects() {
        let ev = [NetEvent::Route {
            removed: false,
            dst: v4("0.0.0.0"),
            prefix_len: 0,
            oif: Some(3),
            gateway: Some(v4("192.168.1.254")),
        }];
        let now = RouteNow::Via(Route {
            oif: Some(3),
            gateway: Some(v4("192.168.1.254")),
            prefsrc: Some(v4("192.168.1.20")),
        });
        assert_eq!(decide(&facts(), &ev, || now), Reaction::Reconnect);
    }

    #[test]
    fn route_via_another_interface_or_source_reconnects() {
        let ev = [NetEvent::Link {
            ifindex: 3,
            up: false,
            removed: false,
        }];
        let other_if = RouteNow::Via(Route {
            oif: Some(4),
            ..facts().route
        });
        assert_eq!(decide(&facts(), &ev, || other_if), Reaction::Reconnect);
        let other_src = RouteNow::Via(Route {
            prefsrc: Some(v4("192.168.1.21")),
            ..facts().route
        });
        assert_eq!(decide(&facts(), &ev, || other_src), Reaction::Reconnect);
    }

    #[test]
    fn a_batch_is_described_by_what_concerns_the_tunnel() {
        let ours = NetEvent::AddrAdded {
            ifindex: 3,
            addr: v4("192.168.1.30"),
        };
        let other = NetEvent::AddrAdded {
            ifindex: 9,
            addr: v4("10.9.0.1"),
        };
        let batch = [ours, other.clone(), other.clone()];
        assert_eq!(
            describe_batch(Some(&facts()), &batch),
            "1 of 3 event(s) on the tunnel's path"
        );
        let mut flood = vec![other; 256];
        flood.push(NetEvent::Lost);
        let said = describe_batch(Some(&facts()), &flood);
        assert!(said.starts_with("256 event(s) and more"), "{said}");
        assert!(!said.contains("on the tunnel's path"), "{said}");
        assert_eq!(
            describe_batch(None, &flood[..2]),
            "2 event(s); the tunnel's path is not known yet"
        );
    }

    #[test]
    fn relevant_change_with_the_same_route_probes() {
        // A second address on our interface: the route to the server stays.
        let ev = [NetEvent::AddrAdded {
            ifindex: 3,
            addr: v4("192.168.1.30"),
        }];
        assert_eq!(decide(&facts(), &ev, same_route), Reaction::ProbeNow);
        // Lost messages: anything may have changed.
        assert_eq!(
            decide(&facts(), &[NetEvent::Lost], same_route),
            Reaction::ProbeNow
        );
        // No route or a failed lookup: probe, do not reconnect blindly.
        let ev = [NetEvent::Route {
            removed: true,
            dst: v4("0.0.0.0"),
            prefix_len: 0,
            oif: Some(3),
            gateway: None,
        }];
        assert_eq!(
            decide(&facts(), &ev, || RouteNow::NoRoute),
            Reaction::ProbeNow
        );
        assert_eq!(
            decide(&facts(), &ev, || RouteNow::Unknown),
            Reaction::ProbeNow
        );
    }

    #[test]
    fn ipv6_events_do_not_concern_an_ipv4_tunnel_unless_they_name_its_address() {
        let ev = [
            NetEvent::AddrAdded {
                ifindex: 3,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            },
            NetEvent::Route {
                removed: false,
                dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                prefix_len: 0,
                oif: Some(3),
                gateway: None,
            },
        ];
        assert_eq!(
            decide(&facts(), &ev, || panic!("no lookup")),
            Reaction::Nothing
        );
    }

    #[test]
    fn prefixes() {
        assert!(prefix_contains(v4("0.0.0.0"), 0, v4("203.0.113.7")));
        assert!(prefix_contains(v4("203.0.113.0"), 24, v4("203.0.113.7")));
        assert!(!prefix_contains(v4("203.0.114.0"), 24, v4("203.0.113.7")));
        assert!(prefix_contains(v4("203.0.113.7"), 32, v4("203.0.113.7")));
        assert!(!prefix_contains(v4("203.0.113.6"), 32, v4("203.0.113.7")));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(prefix_contains("2001:db8::".parse().unwrap(), 32, a));
        assert!(!prefix_contains("2001:db9::".parse().unwrap(), 32, a));
        assert!(!prefix_contains(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, a));
    }

    #[test]
    fn a_burst_gives_one_batch_after_the_settle_window() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SETTLE);
        assert_eq!(c.deadline(), None);
        assert!(c.take_due(t0).is_none());
        // A roam: dozens of messages over 150 ms.
        for k in 0..40u32 {
            let at = t0 + Duration::from_millis(u64::from(k) * 4);
            c.push(
                at,
                [NetEvent::Link {
                    ifindex: 3,
                    up: k % 2 == 0,
                    removed: false,
                }],
            );
            assert!(c.take_due(at).is_none(), "decided before the burst settled");
        }
        assert_eq!(c.deadline(), Some(t0 + SETTLE));
        let batch = c.take_due(t0 + SETTLE).expect("due");
        assert_eq!(batch.len(), 40);
        let r = decide(&facts(), &batch, same_route);
        assert_eq!(r, Reaction::ProbeNow);
        // Nothing left: one reaction, not forty.
        assert!(c.take_due(t0 + SETTLE * 3).is_none());
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn an_endless_stream_still_gets_a_reaction_each_window() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SETTLE);
        let mut batches = 0;
        for k in 0..100u64 {
            let at = t0 + Duration::from_millis(k * 10); // one event every 10 ms for 1 s
            c.push(at, [NetEvent::Lost]);
            if c.take_due(at).is_some() {
                batches += 1;
            }
        }
        assert!((4..=5).contains(&batches), "{batches} batches in 1 s");
    }

    #[test]
    fn a_huge_burst_is_bounded_and_marked_lost() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SETTLE);
        c.push(
            t0,
            (0..10_000u32).map(|i| NetEvent::Link {
                ifindex: i,
                up: true,
                removed: false,
            }),
        );
        let batch = c.take_due(t0 + SETTLE).unwrap();
        assert_eq!(batch.len(), MAX_PENDING + 1);
        assert_eq!(batch.last(), Some(&NetEvent::Lost));
        assert_eq!(decide(&facts(), &batch, same_route), Reaction::ProbeNow);
    }
}
