//! The four contenders and the systemd user unit each runs as.
//! Every instance gets the same ssh options, one local and one remote forward.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs;
use crate::sshd::Keys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tool {
    A,
    B,
    C,
    D,
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::A, Tool::B, Tool::C, Tool::D];

    pub fn from_letter(s: &str) -> Option<Tool> {
        match s.to_ascii_uppercase().as_str() {
            "A" => Some(Tool::A),
            "B" => Some(Tool::B),
            "C" => Some(Tool::C),
            "D" => Some(Tool::D),
            _ => None,
        }
    }

    pub fn letter(self) -> char {
        match self {
            Tool::A => 'A',
            Tool::B => 'B',
            Tool::C => 'C',
            Tool::D => 'D',
        }
    }

    /// 1..=4: picks the tool's sshd port and forward ports.
    pub fn index(self) -> u16 {
        self as u16 + 1
    }

    pub fn label(self) -> &'static str {
        match self {
            Tool::A => "A tunnelctl",
            Tool::B => "B autossh -M 0",
            Tool::C => "C autossh -M port",
            Tool::D => "D sh loop",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Tool::A => {
                "tunnelctl's rendered systemd-user unit running tunnel-watchdog (probe 5 s, 2 failures, timeout 5 s)"
            }
            Tool::B => "autossh 1.4 `-M 0`, AUTOSSH_GATETIME=0",
            Tool::C => {
                "autossh 1.4 with a monitor port (`-M PORT`), AUTOSSH_POLL=5, AUTOSSH_GATETIME=0"
            }
            Tool::D => "`sh -c 'while true; do ssh …; sleep 5; done'`",
        }
    }
}

/// The bench's namespace addresses: lane L uses 10.213.L.0/30.
pub fn server_ip(lane: u8) -> String {
    format!("10.213.{lane}.1")
}

pub fn client_ip(lane: u8) -> String {
    format!("10.213.{lane}.2")
}

pub const SERVER_TARGET_PORT: u16 = 9000;
pub const CLIENT_TARGET_PORT: u16 = 9001;
pub const CLIENT_BANNER: &str = "tcb-client-target";

pub fn server_banner(lane: u8) -> String {
    format!("tcb-server-target-{lane}")
}

pub fn ssh_port(tool: Tool) -> u16 {
    2200 + tool.index()
}

#[derive(Clone, Debug)]
pub struct Instance {
    pub tool: Tool,
    pub lane: u8,
    pub unit: String,
    pub ssh_port: u16,
    /// Listens in the client namespace, leads to the server namespace's target.
    pub local_port: u16,
    /// Listens in the lane's server namespace, leads back to the client's target.
    pub remote_port: u16,
    /// C only: autossh's monitor port (and +1).
    pub monitor_port: u16,
    /// A's tunnel name (tunnels.yaml, the unit's name and its state folder).
    pub a_name: String,
}

impl Instance {
    pub fn new(tool: Tool, lane: u8) -> Instance {
        let unit = match tool {
            Tool::A => format!("tunnel-{}.service", a_name(lane)),
            _ => format!("tcb-{}{lane}.service", tool.letter().to_ascii_lowercase()),
        };
        Instance {
            tool,
            lane,
            unit,
            ssh_port: ssh_port(tool),
            local_port: 20000 + lane as u16 * 10 + tool.index(),
            remote_port: 3000 + tool.index(),
            monitor_port: 21000 + lane as u16 * 10,
            a_name: a_name(lane),
        }
    }

    /// Member `k` (0-based, below `CROWD_MAX`) of the tool's crowd on fault 11's lane:
    /// ports of their own, above every single instance's (local 20000 + lane × 10 + tool,
    /// monitor 21000 + lane × 10), and remote ports only that lane's server uses.
    pub fn crowd_member(tool: Tool, lane: u8, k: u16) -> Instance {
        let name = format!("tcb-a{lane}-{k:02}");
        let unit = match tool {
            Tool::A => format!("tunnel-{name}.service"),
            _ => format!(
                "tcb-{}{lane}-{k:02}.service",
                tool.letter().to_ascii_lowercase()
            ),
        };
        Instance {
            tool,
            lane,
            unit,
            ssh_port: ssh_port(tool),
            local_port: 22000 + tool.index() * 100 + k,
            remote_port: 3000 + tool.index() * 100 + k,
            monitor_port: 24000 + 2 * k,
            a_name: name,
        }
    }

    /// A string only this instance's processes carry on their command line.
    pub fn marker(&self) -> String {
        format!("127.0.0.1:{}:", self.local_port)
    }
}

pub fn a_name(lane: u8) -> String {
    format!("tcb-a{lane}")
}

/// Fault 11: the most tunnels per tool (the crowd's ports are numbered within 100).
pub const CROWD_MAX: u16 = 100;

fn ssh_args(inst: &Instance, keys: &Keys) -> Vec<String> {
    let mut v: Vec<String> = vec!["-N".into()];
    for o in [
        "ServerAliveInterval=5",
        "ServerAliveCountMax=2",
        "ConnectTimeout=10",
        "ExitOnForwardFailure=yes",
        "BatchMode=yes",
    ] {
        v.push("-o".into());
        v.push(o.into());
    }
    v.extend([
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", keys.known_hosts.display()),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-i".into(),
        keys.client_key.display().to_string(),
        "-p".into(),
        inst.ssh_port.to_string(),
        "-L".into(),
        format!(
            "127.0.0.1:{}:127.0.0.1:{SERVER_TARGET_PORT}",
            inst.local_port
        ),
        "-R".into(),
        format!(
            "127.0.0.1:{}:127.0.0.1:{CLIENT_TARGET_PORT}",
            inst.remote_port
        ),
        format!("root@{}", server_ip(inst.lane)),
    ]);
    v
}

/// Unit files of B, C and D: written here, the same way for all three.
pub fn peer_unit(inst: &Instance, keys: &Keys, log_dir: &Path) -> String {
    let args = ssh_args(inst, keys).join(" ");
    let (what, env, exec) = match inst.tool {
        Tool::B => (
            "autossh -M 0",
            "Environment=AUTOSSH_GATETIME=0\n".to_string(),
            format!("/usr/bin/autossh -M 0 {args}"),
        ),
        Tool::C => (
            "autossh with a monitor port",
            "Environment=AUTOSSH_GATETIME=0 AUTOSSH_POLL=5\n".to_string(),
            format!("/usr/bin/autossh -M {} {args}", inst.monitor_port),
        ),
        Tool::D => (
            "respawn loop",
            String::new(),
            format!("/bin/sh -c 'while true; do /usr/bin/ssh {args}; sleep 5; done'"),
        ),
        Tool::A => unreachable!("A's unit is rendered by tunnelctl"),
    };
    let log = match inst.tool {
        Tool::B | Tool::C => format!(
            "Environment=AUTOSSH_LOGFILE={}/autossh-{}.log\n",
            log_dir.display(),
            inst.unit
        ),
        _ => String::new(),
    };
    format!(
        "[Unit]\n\
         Description=fault bench lane {lane}: {what}\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         {env}{log}ExecStart={exec}\n\
         Restart=always\n\
         RestartSec=1s\n\
         TimeoutStopSec=10s\n",
        lane = inst.lane,
    )
}

/// The tunnels.yaml entry tool A's unit is rendered from.
pub fn a_config_entry(inst: &Instance, keys: &Keys) -> String {
    format!(
        "  {name}:\n\
         \x20   host: {host}\n\
         \x20   user: root\n\
         \x20   port: {port}\n\
         \x20   identity: {key}\n\
         \x20   known_hosts: {kh}\n\
         \x20   keepalive: {{ interval: 5s, count: 2 }}\n\
         \x20   probe: {{ interval: 5s, timeout: 5s, failures: 2 }}\n\
         \x20   connect_timeout: 10s\n\
         \x20   forwards:\n\
         \x20     - local: {lp}\n\
         \x20       to: 127.0.0.1:{SERVER_TARGET_PORT}\n\
         \x20     - remote: {rp}\n\
         \x20       to: 127.0.0.1:{CLIENT_TARGET_PORT}\n",
        name = inst.a_name,
        host = server_ip(inst.lane),
        port = inst.ssh_port,
        key = keys.client_key.display(),
        kh = keys.known_hosts.display(),
        lp = inst.local_port,
        rp = inst.remote_port,
    )
}

/// tunnelctl and tunnel-watchdog as cargo built them for this bench (release profile);
/// `TUNNELCTL_BENCH_WATCHDOG=PATH` runs another watchdog, such as the static one the
/// .deb ships (target/release-static/tunnel-watchdog, see Cargo.toml).
pub struct TunnelctlBins {
    pub tunnelctl: PathBuf,
    pub watchdog: PathBuf,
}

pub fn tunnelctl_bins() -> Result<TunnelctlBins, String> {
    let bins = TunnelctlBins {
        tunnelctl: PathBuf::from(env!("CARGO_BIN_EXE_tunnelctl")),
        watchdog: std::env::var_os("TUNNELCTL_BENCH_WATCHDOG")
            .map(|p| std::path::absolute(&p).unwrap_or_else(|_| p.into()))
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tunnel-watchdog"))),
    };
    for p in [&bins.tunnelctl, &bins.watchdog] {
        if !p.exists() {
            return Err(format!("{} is missing", p.display()));
        }
    }
    Ok(bins)
}

/// `tunnelctl render NAME --target systemd-user --watchdog PATH`.
pub fn render_a(bins: &TunnelctlBins, config: &Path, name: &str) -> Result<String, String> {
    let out = procs::run_ok(
        Command::new(&bins.tunnelctl)
            .arg("--config")
            .arg(config)
            .args(["render", name, "--target", "systemd-user", "--watchdog"])
            .arg(&bins.watchdog),
        Duration::from_secs(20),
    )?;
    if !out.contains("[Service]") {
        return Err(format!("tunnelctl render printed no unit: {}", out.trim()));
    }
    Ok(out)
}
