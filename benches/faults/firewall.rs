//! nftables on the path, inside each lane's server namespace (it is the router
//! between the client and sshd): a stateful firewall, the fault hooks and a
//! counter of connection attempts.
//!
//! Chain order on the way in: `count` (-400) sees every SYN, `fault_pre` (-300)
//! drops what a fault black-holes (before conntrack at -200, so a black-holed
//! connection's conntrack entry is not refreshed), then `fw_in` (filter, 0)
//! accepts established traffic and new SYNs and drops invalid packets: with
//! `nf_conntrack_tcp_loose=0` a packet of a connection conntrack has forgotten is
//! invalid, as in a stateful firewall or NAT box that timed the flow out.

use std::time::{Duration, Instant};

use crate::netns::Netns;

pub const ESTABLISHED_TIMEOUT_SECS: u32 = 20;
const ATTEMPT_SET_TIMEOUT_SECS: u64 = 3600;

pub fn install(ns: &Netns, ifname: &str) -> Result<(), String> {
    ns.nft(&format!(
        r#"table inet tcb {{
  set attempts {{ type ipv4_addr . inet_service . inet_service; flags dynamic, timeout; timeout {ATTEMPT_SET_TIMEOUT_SECS}s; size 65535; }}
  chain count {{ type filter hook prerouting priority -400; policy accept;
    iifname "{ifname}" tcp flags & (syn | ack) == syn add @attempts {{ ip saddr . tcp sport . tcp dport }}
  }}
  chain fault_pre {{ type filter hook prerouting priority -300; policy accept;
  }}
  chain fault_out {{ type filter hook output priority -300; policy accept;
  }}
  chain fw_in {{ type filter hook input priority 0; policy accept;
    iifname != "{ifname}" accept
    ct state established,related accept
    ct state invalid drop
    tcp flags & (syn | ack) == syn ct state new accept
    drop
  }}
  chain fw_out {{ type filter hook output priority 0; policy accept;
    oifname "{ifname}" ct state invalid drop
  }}
}}
"#
    ))?;
    set_established_timeout(ns, ESTABLISHED_TIMEOUT_SECS)?;
    ns.sysctl("net.netfilter.nf_conntrack_tcp_loose", "0")?;
    Ok(())
}

/// The conntrack sysctls must be per namespace on this kernel, or fault 5 would
/// change the host's firewall: checked against our own namespace's value.
pub fn check_per_netns(ns: &Netns) -> Result<(), String> {
    let key = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established";
    let host = std::fs::read_to_string(key).unwrap_or_default();
    let inside = ns.sysctl_get("net.netfilter.nf_conntrack_tcp_timeout_established");
    if host.trim() == inside && inside == ESTABLISHED_TIMEOUT_SECS.to_string() {
        return Err(format!(
            "nf_conntrack_tcp_timeout_established reads {inside} both here and in {}: it does not look per namespace on this kernel",
            ns.name
        ));
    }
    Ok(())
}

pub fn set_established_timeout(ns: &Netns, secs: u32) -> Result<(), String> {
    ns.sysctl(
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        &secs.to_string(),
    )
}

pub fn blackhole(ns: &Netns, ifname: &str) -> Result<(), String> {
    ns.nft(&format!(
        "add rule inet tcb fault_pre iifname \"{ifname}\" drop\nadd rule inet tcb fault_out oifname \"{ifname}\" drop\n"
    ))
}

/// Drops one connection both ways, identified by the client's address and port.
pub fn drop_connection(ns: &Netns, client: &str, client_port: u16) -> Result<(), String> {
    ns.nft(&format!(
        "add rule inet tcb fault_pre ip saddr {client} tcp sport {client_port} drop\n\
         add rule inet tcb fault_out ip daddr {client} tcp dport {client_port} drop\n"
    ))
}

/// Fault 8: everything from or to one (former) client address goes nowhere.
pub fn drop_address(ns: &Netns, addr: &str) -> Result<(), String> {
    ns.nft(&format!(
        "add rule inet tcb fault_pre ip saddr {addr} drop\n\
         add rule inet tcb fault_out ip daddr {addr} drop\n"
    ))
}

pub fn clear_faults(ns: &Netns) -> Result<(), String> {
    ns.nft("flush chain inet tcb fault_pre\nflush chain inet tcb fault_out\n")
}

pub fn flush_attempts(ns: &Netns) -> Result<(), String> {
    ns.nft("flush set inet tcb attempts\n")
}

/// One SYN-distinct connection attempt: (client port, server port, when its first SYN arrived).
#[derive(Clone, Debug)]
pub struct Attempt {
    pub server_port: u16,
    pub at: Instant,
}

/// Reads the attempt set. An element's age is the set timeout minus its `expires`.
pub fn attempts(ns: &Netns) -> Vec<Attempt> {
    let now = Instant::now();
    let Ok(text) = ns.run(&["nft", "list", "set", "inet", "tcb", "attempts"]) else {
        return Vec::new();
    };
    parse_attempts(&text)
        .into_iter()
        .filter_map(|(dport, expires)| {
            let age = Duration::from_secs(ATTEMPT_SET_TIMEOUT_SECS).checked_sub(expires)?;
            Some(Attempt {
                server_port: dport,
                at: now.checked_sub(age)?,
            })
        })
        .collect()
}

/// `10.213.1.2 . 32796 . 2201 expires 59m59s952ms` → (2201, 59m59.952s).
fn parse_attempts(text: &str) -> Vec<(u16, Duration)> {
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + "elements = {".len()..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.split(',')
        .filter_map(|elem| {
            let words: Vec<&str> = elem.split_whitespace().collect();
            // ADDR . SPORT . DPORT expires DUR
            let dport = words.get(4)?.parse().ok()?;
            let expires = words
                .iter()
                .position(|w| *w == "expires")
                .and_then(|i| words.get(i + 1))
                .map(|d| parse_nft_duration(d))?;
            Some((dport, expires))
        })
        .collect()
}

/// `1h2m3s45ms` → Duration.
fn parse_nft_duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().unwrap_or(0);
        num.clear();
        total += match c {
            'd' => Duration::from_secs(n * 86400),
            'h' => Duration::from_secs(n * 3600),
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::from_millis(n)
            }
            'm' => Duration::from_secs(n * 60),
            's' => Duration::from_secs(n),
            _ => Duration::ZERO,
        };
    }
    total
}

/// Conntrack entries in state ESTABLISHED towards one of `ports` (from /proc/net/nf_conntrack inside).
pub fn established_entries(ns: &Netns, ports: &[u16]) -> Vec<u16> {
    ns.read_proc_net("nf_conntrack")
        .lines()
        .filter(|l| l.contains(" ESTABLISHED "))
        .filter_map(|l| {
            let dport = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("dport="))?
                .parse()
                .ok()?;
            ports.contains(&dport).then_some(dport)
        })
        .collect()
}

pub fn self_check() {
    let parsed = parse_attempts(
        "table inet tcb {\n set attempts {\n elements = { 10.213.1.2 . 32796 . 2201 expires 59m59s952ms,\n 10.213.1.2 . 40344 . 2209 expires 1h }\n }\n}\n",
    );
    assert_eq!(
        parsed,
        vec![
            (2201, Duration::from_millis(3_599_952)),
            (2209, Duration::from_secs(3600))
        ]
    );
}
