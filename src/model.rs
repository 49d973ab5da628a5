//! The resolved form of one tunnel: defaults applied, values validated.
//! Everything downstream (ssh command line, renderers, install) works from this.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// ServerAliveInterval
    pub interval: Duration,
    /// ServerAliveCountMax
    pub count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed probe rounds that declare the tunnel dead.
    pub failures: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(15),
            count: 3,
        }
    }
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            failures: 2,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a forward's traffic goes: `host:port` as seen from the other end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// `-L bind:port:to` — a listener on this machine.
    Local {
        bind: String,
        port: u16,
        to: Endpoint,
    },
    /// `-R [bind:]port:to` — a listener on the server. `bind` None means the
    /// server's default (loopback unless its GatewayPorts says otherwise).
    Remote {
        bind: Option<String>,
        port: u16,
        to: Endpoint,
    },
    /// `-D bind:port` — a SOCKS proxy on this machine.
    Dynamic { bind: String, port: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    pub name: String,
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Already expanded (`~` resolved against the config owner's home).
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// ProxyJump
    pub jump: Option<String>,
    pub forwards: Vec<Forward>,
    /// Extra `-o Key=Value`, validated; sorted by key so output is stable.
    pub ssh_options: BTreeMap<String, String>,
    pub keepalive: Keepalive,
    pub probe: Probe,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    pub allow_insecure_options: bool,
    /// `--metrics-file`: the watchdog's Prometheus text file (None: none).
    pub metrics_file: Option<PathBuf>,
    /// `--on-change`: the command run on every state change (empty: none).
    pub on_change: Vec<String>,
}

impl Tunnel {
    /// A tunnel with every optional setting at its default; used by tests and examples.
    pub fn new(name: &str, host: &str, forwards: Vec<Forward>) -> Tunnel {
        Tunnel {
            name: name.to_string(),
            host: host.to_string(),
            user: None,
            port: None,
            identity: None,
            known_hosts: None,
            jump: None,
            forwards,
            ssh_options: BTreeMap::new(),
            keepalive: Keepalive::default(),
            probe: Probe::default(),
            backoff: Backoff::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allow_insecure_options: false,
            metrics_file: None,
            on_change: Vec::new(),
        }
    }
}
