//! The kernel's TCP table as seen from inside a namespace, and which process holds a socket.

use std::net::Ipv4Addr;

use crate::netns::Netns;
use crate::procs;

pub const ESTABLISHED: u8 = 0x01;
pub const LISTEN: u8 = 0x0A;

#[derive(Clone, Debug)]
pub struct TcpEntry {
    pub local: (Ipv4Addr, u16),
    pub remote: (Ipv4Addr, u16),
    pub state: u8,
    pub inode: u64,
}

fn addr(field: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip, port) = field.split_once(':')?;
    // The address is the raw u32 in host byte order (little endian here).
    let raw = u32::from_str_radix(ip, 16).ok()?;
    Some((
        Ipv4Addr::from(raw.to_le_bytes()),
        u16::from_str_radix(port, 16).ok()?,
    ))
}

pub fn parse_tcp(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(TcpEntry {
                local: addr(f.get(1)?)?,
                remote: addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

pub fn tcp_table(ns: &Netns) -> Vec<TcpEntry> {
    parse_tcp(&ns.read_proc_net("tcp"))
}

/// Processes inside `ns` that hold the socket with this inode.
pub fn owners(ns: &Netns, inode: u64) -> Vec<i32> {
    if inode == 0 {
        return Vec::new();
    }
    ns.pids()
        .into_iter()
        .filter(|&p| procs::socket_inodes(p).contains(&inode))
        .collect()
}

pub fn listening(ns: &Netns, port: u16) -> bool {
    tcp_table(ns)
        .iter()
        .any(|e| e.state == LISTEN && e.local.1 == port)
}
