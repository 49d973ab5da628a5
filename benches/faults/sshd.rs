//! The bench's own sshd: throwaway keys, its own config, one daemon per lane
//! inside the lane's server namespace, listening on one port per tool.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::netns::Netns;
use crate::{procs, sockets, stop, testkit};

pub struct Keys {
    pub host_key: PathBuf,
    pub client_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub known_hosts: PathBuf,
}

impl Keys {
    /// Host and client keys, and a known_hosts file naming every (server, port) the tools use.
    pub fn create(dir: &Path, servers: &[(String, u16)]) -> Result<Keys, String> {
        let host_key = dir.join("host_ed25519");
        let client_key = dir.join("client_ed25519");
        let host_pub = testkit::keygen(&host_key, "tcb-fault-bench")?;
        let client_pub = testkit::keygen(&client_key, "tcb-fault-bench")?;
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, &client_pub).map_err(|e| e.to_string())?;
        let key = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let known: String = servers
            .iter()
            .map(|(ip, port)| format!("[{ip}]:{port} {key}\n"))
            .collect();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, known).map_err(|e| e.to_string())?;
        Ok(Keys {
            host_key,
            client_key,
            authorized_keys,
            known_hosts,
        })
    }
}

/// The lane's sshd: one daemon listening on every tool's port, or (fault 11) one
/// daemon per tool's port, so that each tool's crowd meets MaxStartups on its own.
pub struct Sshd {
    pub ports: Vec<u16>,
    daemons: Vec<Daemon>,
}

struct Daemon {
    config: PathBuf,
    log: PathBuf,
    ports: Vec<u16>,
    child: Option<Child>,
}

/// What every lane's sshd adds to the shared lines (testkit::sshd_config): keepalives of
/// its own, so that a session whose client is gone is dropped.
const BENCH_LINES: &str = "PubkeyAuthentication yes\n\
                           X11Forwarding no\n\
                           PrintMotd no\n\
                           UseDNS no\n\
                           ClientAliveInterval 5\n\
                           ClientAliveCountMax 2\n";

/// OpenSSH's MaxStartups when sshd_config says nothing (sshd_config(5)), as `sshd -T` prints it.
const DEFAULT_MAX_STARTUPS: &str = "10:30:100";

impl Sshd {
    /// One daemon on every port, with room for every tool's connection attempts at once
    /// (MaxStartups 100:30:200): on faults 1 to 10 the tools must not throttle each other.
    pub fn new(
        dir: &Path,
        lane: u8,
        address: &str,
        ports: &[u16],
        keys: &Keys,
    ) -> Result<Sshd, String> {
        let extra = format!("{BENCH_LINES}MaxStartups 100:30:200\n");
        let daemon = Daemon::new(dir, &format!("sshd-{lane}"), address, ports, keys, &extra)?;
        Ok(Sshd {
            ports: ports.to_vec(),
            daemons: vec![daemon],
        })
    }

    /// Fault 11: one daemon per port, each with OpenSSH's default MaxStartups (10:30:100:
    /// no MaxStartups line), each logging to its own file (`sshd-LANE-PORT.log`), so that its
    /// drops and logins are the one tool's.
    pub fn crowd(
        dir: &Path,
        lane: u8,
        address: &str,
        ports: &[u16],
        keys: &Keys,
    ) -> Result<Sshd, String> {
        let daemons = ports
            .iter()
            .map(|&p| {
                Daemon::new(
                    dir,
                    &format!("sshd-{lane}-{p}"),
                    address,
                    &[p],
                    keys,
                    BENCH_LINES,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        // What sshd itself says it will use: the figures mean nothing with another limit.
        for d in &daemons {
            let effective = procs::run_ok(
                Command::new(testkit::SSHD)
                    .arg("-T")
                    .arg("-f")
                    .arg(&d.config),
                Duration::from_secs(10),
            )?;
            let limit = effective
                .lines()
                .find_map(|l| l.strip_prefix("maxstartups "))
                .unwrap_or("(not shown)");
            if limit.trim() != DEFAULT_MAX_STARTUPS {
                return Err(format!(
                    "{}: sshd would use MaxStartups {limit}, not OpenSSH's default {DEFAULT_MAX_STARTUPS}",
                    d.config.display()
                ));
            }
        }
        Ok(Sshd {
            ports: ports.to_vec(),
            daemons,
        })
    }

    /// The log of the daemon that listens on `port`.
    pub fn log_for(&self, port: u16) -> Option<&Path> {
        self.daemons
            .iter()
            .find(|d| d.ports.contains(&port))
            .map(|d| d.log.as_path())
    }

    /// Starts every daemon in `ns` (all at once: on fault 11 no tool's sshd may come back
    /// before another's) and waits until every port listens.
    pub fn start(&mut self, ns: &Netns) -> Result<(), String> {
        for d in &mut self.daemons {
            d.spawn(ns)?;
        }
        let ports = self.ports.clone();
        let ok = stop::poll(Duration::from_secs(10), Duration::from_millis(20), || {
            let table = sockets::tcp_table(ns);
            ports
                .iter()
                .all(|p| {
                    table
                        .iter()
                        .any(|e| e.state == sockets::LISTEN && e.local.1 == *p)
                })
                .then_some(())
        });
        match ok {
            Some(()) => Ok(()),
            None => {
                let logs: Vec<String> = self
                    .daemons
                    .iter()
                    .map(|d| d.log.display().to_string())
                    .collect();
                Err(format!(
                    "sshd in {} did not listen on {:?} within 10 s (log: {})",
                    ns.name,
                    self.ports,
                    logs.join(", ")
                ))
            }
        }
    }

    /// Kills the listening daemons only: established sessions are separate processes and live on.
    pub fn kill_listener(&mut self) {
        for d in &mut self.daemons {
            d.kill();
        }
    }

    /// Kills the daemons and every session (every sshd process in the namespace).
    pub fn kill_all(&mut self, ns: &Netns) {
        self.kill_listener();
        kill_sessions(ns);
    }
}

impl Daemon {
    fn new(
        dir: &Path,
        stem: &str,
        address: &str,
        ports: &[u16],
        keys: &Keys,
        extra: &str,
    ) -> Result<Daemon, String> {
        let config = dir.join(format!("{stem}.conf"));
        let log = dir.join(format!("{stem}.log"));
        let text =
            testkit::sshd_config(address, ports, &keys.host_key, &keys.authorized_keys, extra);
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        testkit::sshd_privsep_dir()?;
        procs::run_ok(
            Command::new(testkit::SSHD).arg("-t").arg("-f").arg(&config),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("sshd rejects {}: {e}", config.display()))?;
        Ok(Daemon {
            config,
            log,
            ports: ports.to_vec(),
            child: None,
        })
    }

    fn spawn(&mut self, ns: &Netns) -> Result<(), String> {
        let mut cmd = ns.command(testkit::SSHD);
        cmd.arg("-D")
            .arg("-f")
            .arg(&self.config)
            .arg("-E")
            .arg(&self.log);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("sshd: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn sshd_pids(ns: &Netns) -> Vec<i32> {
    ns.pids()
        .into_iter()
        .filter(|&p| procs::comm(p) == "sshd")
        .collect()
}

pub fn kill_sessions(ns: &Netns) {
    for p in sshd_pids(ns) {
        procs::signal(p, Signal::SIGKILL);
        procs::signal(p, Signal::SIGCONT);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
