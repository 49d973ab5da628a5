//! The watchdog's event sources beside signals and ssh's stderr: the
//! network-change socket (`netevents`) as one more fd in the same poll, the burst
//! coalescing, and the clock-gap check after every wake-up (`clock`). One per
//! watchdog process, read by the session's one loop.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use super::clock::{self, Clock, Gap};
use super::log;
use super::netevents::{self, Coalescer, NetEvent};
use super::signals::{Request, Signals};

#[cfg(any(target_os = "linux", target_os = "macos"))]
type Source = netevents::Source;

/// No event socket on this platform: nothing to read, ever.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
struct Source;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
impl Source {
    fn fd(&self) -> BorrowedFd<'_> {
        unreachable!("never opened")
    }
    fn drain(&mut self) -> Vec<NetEvent> {
        Vec::new()
    }
}

pub(super) struct Events {
    source: Option<Source>,
    burst: Coalescer,
    clock: clock::System,
    gap: Option<Gap>,
}

impl Events {
    /// Opens the network-change socket. If it cannot be opened (a sandbox without
    /// AF_NETLINK, an old kernel), says so once and works without network events: the
    /// probes still catch what the events would have caught sooner.
    pub(super) fn open() -> Events {
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        let source = match netevents::Source::open() {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn(format_args!(
                    "cannot watch for network changes ({e}); carrying on without (allow AF_NETLINK, or PF_ROUTE on macOS, to reconnect at once when the network changes)"
                ));
                None
            }
        };
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        let source = None;
        Events {
            source,
            burst: Coalescer::new(netevents::SETTLE),
            clock: clock::System,
            gap: None,
        }
    }

    /// Sleeps up to `timeout` (less if a burst is due sooner) in one poll over the
    /// signal pipe, `ssh` (its stderr) and the network socket; then reads the network
    /// socket if poll found it readable and checks the clocks for a gap. Returns the
    /// most important signal and whether ssh's stderr is readable.
    pub(super) fn wait(
        &mut self,
        signals: &Signals,
        timeout: Duration,
        ssh: Option<BorrowedFd>,
    ) -> (Option<Request>, bool) {
        let timeout = match self.burst.deadline() {
            Some(due) => timeout.min(due.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        let before = self.clock.now();
        let mut fds: Vec<BorrowedFd> = Vec::with_capacity(2);
        let has_ssh = ssh.is_some();
        fds.extend(ssh);
        fds.extend(self.source.as_ref().map(|s| s.fd()));
        let mut ready = [false; 2];
        let request = signals.wait(timeout, &fds, &mut ready);
        if let Some(gap) = clock::judge(before, self.clock.now(), timeout) {
            self.gap = Some(gap);
        }
        let network_ready = ready[usize::from(has_ssh)];
        if let Some(source) = self.source.as_mut()
            && network_ready
        {
            let got = source.drain();
            if !got.is_empty() {
                self.burst.push(Instant::now(), got);
            }
        }
        (request, has_ssh && ready[0])
    }

    /// A clock gap seen since the last look.
    pub(super) fn take_gap(&mut self) -> Option<Gap> {
        self.gap.take()
    }

    /// The burst of network events, once it has settled.
    pub(super) fn take_batch(&mut self) -> Option<Vec<NetEvent>> {
        self.burst.take_due(Instant::now())
    }

    /// Whatever network events arrived, settled or not: for a wait that any change
    /// may end (no route), where settling would only add its delay.
    pub(super) fn take_batch_now(&mut self) -> Option<Vec<NetEvent>> {
        self.burst.take_due(Instant::now() + netevents::SETTLE)
    }
}

/// Whether a batch could mean the server became reachable again (during a back-off):
/// an address, route or link came (or anything may have changed); removals cannot.
pub(super) fn may_bring_back(batch: &[NetEvent]) -> bool {
    batch.iter().any(|e| match e {
        NetEvent::AddrAdded { .. } | NetEvent::Lost => true,
        NetEvent::Route { removed, .. } => !removed,
        NetEvent::Link { up, removed, .. } => *up && !removed,
        NetEvent::AddrRemoved { .. } => false,
    })
}

/// The local and remote address and port of ssh's TCP connection to the server (IPv4 or
/// IPv6, established), from /proc/PID/net/tcp{,6} and ssh's socket inodes: the addresses
/// it really uses, also with BindAddress. None without a direct TCP connection
/// (ProxyCommand) or off Linux.
pub(super) fn ssh_connection(ssh_pid: u32) -> Option<(SocketAddr, SocketAddr)> {
    #[cfg(target_os = "linux")]
    {
        let inodes = crate::procinfo::socket_inodes(ssh_pid);
        if inodes.is_empty() {
            return None;
        }
        let mut sockets = SshSockets::default();
        for file in ["tcp", "tcp6"] {
            let Ok(table) = std::fs::File::open(format!("/proc/{ssh_pid}/net/{file}")) else {
                continue;
            };
            // Read line by line: on a busy server the table is megabytes, and reading it
            // whole raised the watchdog's peak memory by as much.
            sockets.read(std::io::BufReader::with_capacity(4096, table), &inodes);
        }
        sockets.server_connection()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = ssh_pid;
        None
    }
}

/// ssh's TCP sockets as /proc/net/tcp{,6} list them. Linux only (the tests parse
/// captured text on any host).
#[cfg(any(target_os = "linux", test))]
#[derive(Default)]
pub(super) struct SshSockets {
    /// Where ssh listens (its `-L` and `-D` listeners).
    listening: Vec<SocketAddr>,
    /// Established connections: inode, local and remote address.
    established: Vec<(u64, SocketAddr, SocketAddr)>,
}

#[cfg(any(target_os = "linux", test))]
impl SshSockets {
    /// Takes ssh's sockets (those with one of `inodes`) from one table.
    pub(super) fn read(&mut self, mut table: impl std::io::BufRead, inodes: &[u64]) {
        let mut line = String::new();
        // The header line first, then at most 100,000 sockets.
        for _ in 0..=100_000 {
            line.clear();
            if !matches!(table.read_line(&mut line), Ok(n) if n > 0) {
                return;
            }
            // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode
            let mut fields = line.split_whitespace().skip(1);
            let (Some(local), Some(remote), Some(st)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Some(inode) = fields.nth(5).and_then(|f| f.parse::<u64>().ok()) else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let (Some((lip, lport)), Some((rip, rport))) = (hex_addr(local), hex_addr(remote))
            else {
                continue;
            };
            match st {
                "0A" => self.listening.push(SocketAddr::new(lip, lport)),
                "01" => self.established.push((
                    inode,
                    SocketAddr::new(lip, lport),
                    SocketAddr::new(rip, rport),
                )),
                _ => {}
            }
        }
    }

    /// The connection to the server: not one a listener of ssh accepted (a client of a
    /// `-L` or `-D` forward, already there when a tunnel reconnects under load), and of
    /// the rest the lowest inode, usually the oldest (ssh connects to the server before
    /// it opens anything for a `-R`).
    pub(super) fn server_connection(&self) -> Option<(SocketAddr, SocketAddr)> {
        let accepted = |local: &SocketAddr| {
            self.listening.iter().any(|l| {
                l.port() == local.port() && (l.ip().is_unspecified() || l.ip() == local.ip())
            })
        };
        self.established
            .iter()
            .filter(|(_, local, _)| !accepted(local))
            .min_by_key(|(inode, _, _)| *inode)
            .map(|&(_, local, remote)| (local, remote))
    }
}

/// `ip` with each 4-byte word reversed: an address of /proc/net/tcp read in the other
/// byte order, turned back (see `connection::learn_facts`).
pub(super) fn word_swapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::from(u32::from(v4).swap_bytes().to_be_bytes()),
        IpAddr::V6(v6) => {
            let mut b = v6.octets();
            for word in b.chunks_mut(4) {
                word.reverse();
            }
            IpAddr::from(b)
        }
    }
}

/// `0100007F:0016` (IPv4) or 32 hex digits (IPv6, four host-order words) and a port.
#[cfg(any(target_os = "linux", test))]
fn hex_addr(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    // Sliced by position below: only ASCII (hex digits) has one byte per character.
    if !addr.is_ascii() {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::from(word(addr)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(&addr[i * 8..i * 8 + 8])?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_swapped_turns_each_word_back() {
        let v4: IpAddr = "10.213.1.2".parse().unwrap();
        assert_eq!(word_swapped(v4), "2.1.213.10".parse::<IpAddr>().unwrap());
        assert_eq!(word_swapped(word_swapped(v4)), v4);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            word_swapped(v6),
            "b80d:120::100:0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(word_swapped(word_swapped(v6)), v6);
    }

    #[test]
    fn finds_ssh_connection_in_proc_net_tcp() {
        // /proc/net/tcp as x86 writes it: ssh from 10.213.1.2 to 10.213.1.1:22, a -L
        // listener on 127.0.0.1:8080 (inode 111) and a client it accepted there; the
        // same listener on every address (113); one on 127.0.0.1:41410 (112), the
        // server connection's port on another address.
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1 0000000000000000 100 0 0 10 0\n\
   0: 0100007F:A1C2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 20 4 30 10 -1\n\
   2: 0201D50A:A1C2 0101D50A:0016 01 00000000:00000000 02:000A7F6A 00000000     0        0 4242 2 0000000000000000 20 4 30 10 -1\n";
        let found = |inodes: &[u64]| {
            let mut sockets = SshSockets::default();
            sockets.read(text.as_bytes(), inodes);
            sockets.server_connection()
        };
        if cfg!(target_endian = "little") {
            let server = Some((
                "10.213.1.2:41410".parse().unwrap(),
                "10.213.1.1:22".parse().unwrap(),
            ));
            assert_eq!(found(&[7, 4242]), server);
            // The accepted client has the lower inode, but its port is the listener's.
            assert_eq!(found(&[111, 99, 4242]), server);
            assert_eq!(
                found(&[113, 99, 4242]),
                server,
                "a listener on every address"
            );
            assert_eq!(
                found(&[112, 4242]),
                server,
                "a listener's port, another address"
            );
            // Without its listener in ssh's inodes it is an ordinary connection.
            assert_eq!(
                found(&[99, 4242]),
                Some((
                    "127.0.0.1:8080".parse().unwrap(),
                    "127.0.0.1:50000".parse().unwrap()
                ))
            );
        }
        assert_eq!(found(&[111]), None, "a listener is no connection");
        assert_eq!(found(&[9]), None);
    }

    #[test]
    fn odd_address_fields_are_refused_not_a_panic() {
        // 32 bytes, with a two-byte character across the first word's end.
        let field = format!("{}\u{e9}{}:0016", "0".repeat(7), "0".repeat(23));
        assert_eq!(field.split(':').next().unwrap().len(), 32);
        assert_eq!(hex_addr(&field), None);
        assert_eq!(hex_addr("0100007\u{e9}:0016"), None);
        if cfg!(target_endian = "little") {
            assert_eq!(
                hex_addr("0100007F:0016"),
                Some(("127.0.0.1".parse().unwrap(), 22))
            );
        }
    }

    #[test]
    fn only_arrivals_can_bring_the_server_back() {
        let gone = NetEvent::AddrRemoved {
            ifindex: 2,
            addr: "10.0.0.2".parse().unwrap(),
        };
        let came = NetEvent::AddrAdded {
            ifindex: 2,
            addr: "10.0.0.3".parse().unwrap(),
        };
        assert!(!may_bring_back(std::slice::from_ref(&gone)));
        assert!(may_bring_back(&[gone, came]));
        assert!(may_bring_back(&[NetEvent::Lost]));
    }
}
