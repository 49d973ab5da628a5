//! The eleven faults: how each is injected into one lane, what it holds while the
//! tools recover, and how it is undone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::lane::Lane;
use crate::targets::SilentServer;
use crate::tools::{Tool, client_ip, server_ip};
use crate::{firewall, procs, sockets, stop};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    ClientFrozen = 1,
    SessionFrozen = 2,
    BlackHole = 3,
    SshdDown = 4,
    ConntrackForgets = 5,
    StaleListener = 6,
    SilentServer = 7,
    AddressChanged = 8,
    Sleep = 9,
    SlowUplink = 10,
    Crowd = 11,
}

/// Fault 3: how long the path drops everything.
pub const BLACKHOLE: Duration = Duration::from_secs(30);
/// Fault 4: how long sshd stays dead.
pub const SSHD_DOWN: Duration = Duration::from_secs(20);
/// Fault 7: how long the silent listener replaces sshd.
pub const SILENT: Duration = Duration::from_secs(30);
/// Fault 2: a frozen session is resumed at the latest after this long.
const SESSION_FREEZE_MAX: Duration = Duration::from_secs(60);
/// Fault 5: conntrack's established timeout while it "forgets".
const FORGET_TIMEOUT_SECS: u32 = 1;
/// Fault 9: how long the path is black-holed and the tools' units frozen.
pub const SLEEP: Duration = Duration::from_secs(60);
/// Fault 11: how long sshd (listener and sessions) stays away, as a bastion that restarts.
pub const CROWD_DOWN: Duration = Duration::from_secs(3);

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::ClientFrozen,
        Fault::SessionFrozen,
        Fault::BlackHole,
        Fault::SshdDown,
        Fault::ConntrackForgets,
        Fault::StaleListener,
        Fault::SilentServer,
        Fault::AddressChanged,
        Fault::Sleep,
        Fault::SlowUplink,
        Fault::Crowd,
    ];

    pub fn from_number(n: u8) -> Option<Fault> {
        Fault::ALL.get((n as usize).checked_sub(1)?).copied()
    }

    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn title(self) -> &'static str {
        match self {
            Fault::ClientFrozen => "ssh client frozen (SIGSTOP)",
            Fault::SessionFrozen => "server session frozen (SIGSTOP)",
            Fault::BlackHole => "path black-holed 30 s",
            Fault::SshdDown => "sshd killed 20 s",
            Fault::ConntrackForgets => "conntrack forgets the flow",
            Fault::StaleListener => "stale remote listener",
            Fault::SilentServer => "server accepts, never speaks (30 s)",
            Fault::AddressChanged => "client's address replaced",
            Fault::Sleep => "machine sleeps 60 s (freeze + black hole)",
            Fault::SlowUplink => "saturated 1 Mbit/s uplink, 60 s upload",
            Fault::Crowd => "a crowd of tunnels, sshd restarted (MaxStartups 10:30:100)",
        }
    }

    /// What the measured time counts from.
    pub fn clock_starts(self) -> &'static str {
        match self {
            Fault::BlackHole | Fault::SshdDown | Fault::SilentServer | Fault::Crowd => "heal",
            Fault::ConntrackForgets => "first use after the flow was forgotten",
            Fault::AddressChanged => "the new address being usable",
            Fault::Sleep => "the thaw",
            Fault::SlowUplink => "the end of the upload (the rate limit removed)",
            _ => "fault",
        }
    }

    pub fn how(self) -> &'static str {
        match self {
            Fault::ClientFrozen => {
                "SIGSTOP to the ssh client process that holds the tool's connection (for A the watchdog's ssh child). It stays stopped until the tool kills it; the unit's stop at the end of the trial sends SIGTERM+SIGCONT."
            }
            Fault::SessionFrozen => {
                "SIGSTOP to the server's session process (`sshd: root@notty`, the one that owns the connection and the remote listener). It is resumed (SIGCONT) as soon as the client has closed that connection (CLOSE_WAIT on the server) or after 60 s: a frozen process would otherwise hold the remote port forever and no tool could get it back, so the number measures how fast the tool gives up on the frozen session."
            }
            Fault::BlackHole => {
                "nftables in the server namespace drops every packet on the veth both ways for 30 s, then the rules are removed. The clock starts at the heal."
            }
            Fault::SshdDown => {
                "SIGKILL to every sshd process in the lane (daemon and sessions: clients see the connection reset), 20 s with nothing listening (connections refused), then sshd is started again. The clock starts when sshd listens again."
            }
            Fault::ConntrackForgets => {
                "The path is a stateful firewall (conntrack, `nf_conntrack_tcp_loose=0`, invalid packets dropped, established timeout 20 s). With ServerAliveInterval 5 s and ClientAliveInterval 5 s no tunnel is ever idle for 20 s, so waiting 3 × 20 s would test nothing; instead the established timeout is lowered to 1 s until every tunnel flow has been forgotten between two keepalives (polled in /proc/net/nf_conntrack), then set back to 20 s. Every later packet of the old flows is dropped as invalid. The clock starts at that moment, when the bench starts using the tunnels."
            }
            Fault::StaleListener => {
                "The tool's TCP connection is cut silently (nftables drops that client port both ways) and its ssh client is killed with SIGKILL: the server never hears of it, so the old session keeps the remote port until its ClientAliveInterval 5 s × 2 notices, while the tool reconnects and its `-R` is refused."
            }
            Fault::SilentServer => {
                "sshd's listener is killed and a listener that accepts and never sends a byte takes its ports; then every session is killed so all tools reconnect into it. After 30 s the silent listener stops listening (connections it accepted stay open, so a client mid-handshake waits for its own ConnectTimeout) and sshd is started again. The clock starts when sshd listens again."
            }
            Fault::AddressChanged => {
                "As when a laptop moves to another Wi-Fi: the client namespace's address on the lane's veth (10.213.L.2/30) is deleted and another (10.214.L.2/32, with a host route to the server and the server's route back) is added; the server's firewall drops everything from or to the old address, so the old flow's packets go nowhere and the server hears nothing of it. The clock starts when the new address is usable. Two times: until `-L` carries data (checked even while the old session lives: its traffic never reaches the server), and until both do, which for `-R` has a floor, the old server session holding the remote port until its ClientAliveInterval 5 s × 2 notices (reported from that moment as on fault 6). After the trial the old address comes back and the moved one goes, so the connections that used it die without a word to the server; the next trial waits until the server has dropped their sessions (see Recovery, above)."
            }
            Fault::Sleep => {
                "What a suspend looks like from the network: the path is black-holed (as on fault 3) and every process of each tool's unit is frozen for 60 s, while the server drops the session (ClientAlive; its FIN never arrives); then both are undone at once. Frozen with `systemctl --user freeze` when the manager supports it, else with the cgroup v1 freezer this machine mounts (the notes say which). A real suspend also stops CLOCK_MONOTONIC, so ssh's and the watchdog's timers wake late; a freeze does not (timers are overdue at the thaw), so that part is not measured here: it is the watchdog's clock-gap decision, unit-tested with an injected clock (src/watchdog/clock.rs). The clock starts at the thaw."
            }
            Fault::SlowUplink => {
                "The client side's uplink is rate-limited (`tc qdisc add dev vsL root tbf rate 1mbit burst 32kbit latency 2s`: a 250 KB queue) and one bulk upload per tool runs through its `-L` forward for 60 s (the four uploads share the link, as four users of one uplink would). Nothing is broken: a restart here is a false alarm that kills the user's upload. Counted per tool: ssh processes started, unit restarts, connections to sshd, uploads cut, and the latency of an end-to-end check through `-L` every 2 s (timeout 20 s) — what any probe through the tunnel sees. The clock starts when the upload ends and the limit is removed."
            }
            Fault::Crowd => {
                "Many tunnels from one box to one bastion: every tool runs a crowd of tunnels (`--crowd`, 20 by default), each its own unit with its own `-L` and `-R`, to an sshd of its own with OpenSSH's default `MaxStartups 10:30:100` (past 10 unauthenticated connections sshd drops new ones at random, 30 % at first, all at 100), one sshd per tool so that the tools' crowds do not throttle each other. The sshd is restarted with its sessions: SIGKILL to the daemon and every session (clients see the connection reset), 3 s with nothing listening, then sshd is started again, and every tunnel of the crowd reconnects at once. The time is until **every** forward of **every** tunnel of the tool carries data; counted besides from the tool's sshd log (LogLevel VERBOSE) between the fault and the end of the trial: connections sshd dropped past MaxStartups (`drop connection #N … past MaxStartups`) and logins (`Accepted publickey`). The clock starts when sshd listens again."
            }
        }
    }
}

/// A fault in progress in one lane.
pub struct Injected {
    pub fault: Fault,
    /// When the fault hit (attempts are counted from here).
    pub fault_at: Instant,
    /// When the recovery clock starts.
    pub reference: Instant,
    /// Per tool: a fact about the injection worth keeping ("no connection to freeze", …).
    pub notes: BTreeMap<Tool, String>,
    /// A fact about the whole lane's injection.
    pub lane_note: Option<String>,
    /// Fault 2: session pid, its client port, resumed yet.
    frozen_sessions: Vec<(Tool, i32, u16, bool)>,
    silent: Option<SilentServer>,
    /// Faults 1, 2, 5, 6, 8, 9: the server session of the old connection, and when it exited
    /// (seconds after the fault): until then it holds the remote port.
    old_sessions: Vec<(Tool, i32, Option<f64>)>,
    /// Fault 8: the client's address was moved (undone by `finish`).
    moved: bool,
    /// Fault 9: the units still frozen if the thaw failed half-way (thawed by `finish`).
    frozen: Option<crate::freeze::Frozen>,
    /// Fault 10: what each tool did during the upload.
    pub slow: BTreeMap<Tool, crate::slowlink::SlowStats>,
    /// Fault 11: each tool's sshd log and its length at the fault (what follows is the trial's).
    crowd_logs: Vec<(Tool, PathBuf, u64)>,
}

impl Injected {
    fn new(fault: Fault) -> Injected {
        let now = Instant::now();
        Injected {
            fault,
            fault_at: now,
            reference: now,
            notes: BTreeMap::new(),
            lane_note: None,
            frozen_sessions: Vec::new(),
            silent: None,
            old_sessions: Vec::new(),
            moved: false,
            frozen: None,
            slow: BTreeMap::new(),
            crowd_logs: Vec::new(),
        }
    }
}

impl Injected {
    /// The pid of the tool's old server session, when this fault watches it.
    pub fn old_session_pid(&self, tool: Tool) -> Option<i32> {
        self.old_sessions
            .iter()
            .find(|(t, _, _)| *t == tool)
            .map(|(_, pid, _)| *pid)
    }

    /// When the tool's old server session went away (seconds after the fault; it held
    /// the remote port until then). Outer None: not watched in this fault; inner None:
    /// still there when the trial ended.
    pub fn old_session_exit(&self, tool: Tool) -> Option<Option<f64>> {
        self.old_sessions
            .iter()
            .find(|(t, _, _)| *t == tool)
            .map(|(_, _, gone)| *gone)
    }
}

/// Fault 11: what each tool's sshd logged since the fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SshdCounts {
    /// Connections dropped past MaxStartups.
    pub drops: usize,
    /// Successful authentications.
    pub logins: usize,
}

/// Counts sshd's log lines: a drop past MaxStartups (logged at VERBOSE, the first of a
/// throttling period at INFO, in the same words) and an accepted login.
pub fn sshd_counts(log: &str) -> SshdCounts {
    let mut c = SshdCounts::default();
    for line in log.lines() {
        if line.contains("drop connection #") && line.contains("past MaxStartups") {
            c.drops += 1;
        } else if line.contains("Accepted publickey for ") {
            c.logins += 1;
        }
    }
    c
}

impl Injected {
    /// Fault 11: per tool, what its sshd logged from the fault until now.
    pub fn sshd_counts(&self) -> BTreeMap<Tool, SshdCounts> {
        self.crowd_logs
            .iter()
            .map(|(tool, log, from)| {
                let text = std::fs::read(log).unwrap_or_default();
                let from = (*from as usize).min(text.len());
                (*tool, sshd_counts(&String::from_utf8_lossy(&text[from..])))
            })
            .collect()
    }
}

/// The tool's established connection as the server sees it: the client's port.
fn server_side_client_port(lane: &Lane, tool: Tool) -> Option<u16> {
    let ip = server_ip(lane.n).parse().ok()?;
    let port = crate::tools::ssh_port(tool);
    sockets::tcp_table(&lane.server)
        .into_iter()
        .find(|e| e.state == sockets::ESTABLISHED && e.local == (ip, port))
        .map(|e| e.remote.1)
}

/// The ssh client process holding the tool's connection, in the client namespace.
fn client_ssh_pid(lane: &Lane, tool: Tool) -> Option<i32> {
    let ip: std::net::Ipv4Addr = server_ip(lane.n).parse().ok()?;
    let port = crate::tools::ssh_port(tool);
    let entry = sockets::tcp_table(&lane.client)
        .into_iter()
        .find(|e| e.state == sockets::ESTABLISHED && e.remote == (ip, port))?;
    sockets::owners(&lane.client, entry.inode)
        .into_iter()
        .find(|&p| procs::comm(p) == "ssh")
}

/// The server's session process for the tool's connection: the unprivileged
/// `sshd: root@notty` child, which owns the socket and the `-R` listener.
fn session_pid(lane: &Lane, tool: Tool) -> Option<(i32, u16)> {
    let ip: std::net::Ipv4Addr = server_ip(lane.n).parse().ok()?;
    let port = crate::tools::ssh_port(tool);
    let entry = sockets::tcp_table(&lane.server)
        .into_iter()
        .find(|e| e.state == sockets::ESTABLISHED && e.local == (ip, port))?;
    let owners = sockets::owners(&lane.server, entry.inode);
    let pick = owners
        .iter()
        .copied()
        .find(|&p| procs::cmdline(p).contains("@notty"))
        .or_else(|| {
            owners
                .iter()
                .copied()
                .find(|&p| !procs::cmdline(p).contains("[priv]"))
        })
        .or_else(|| owners.first().copied())?;
    Some((pick, entry.remote.1))
}

fn sshd_addrs(lane: &Lane) -> Vec<SocketAddr> {
    let ip = server_ip(lane.n);
    Tool::ALL
        .iter()
        .map(|t| {
            format!("{ip}:{}", crate::tools::ssh_port(*t))
                .parse()
                .unwrap()
        })
        .collect()
}

/// Injects the fault. For faults with a hold time (3, 4, 7) this returns after
/// the heal; `reference` is the heal.
pub fn inject(lane: &Lane, fault: Fault) -> Result<Injected, String> {
    let mut inj = Injected::new(fault);
    let mut tools: Vec<Tool> = lane.instances.iter().map(|i| i.tool).collect();
    tools.dedup();
    if matches!(
        fault,
        Fault::ClientFrozen
            | Fault::SessionFrozen
            | Fault::ConntrackForgets
            | Fault::StaleListener
            | Fault::AddressChanged
            | Fault::Sleep
    ) {
        inj.old_sessions = tools
            .iter()
            .filter_map(|&t| Some((t, session_pid(lane, t)?.0, None)))
            .collect();
    }
    match fault {
        Fault::ClientFrozen => {
            // Find every pid first, then stop them together.
            let pids: Vec<(Tool, Option<i32>)> = tools
                .iter()
                .map(|&t| (t, client_ssh_pid(lane, t)))
                .collect();
            inj.fault_at = Instant::now();
            for (t, pid) in pids {
                match pid {
                    Some(p) => {
                        procs::signal(p, Signal::SIGSTOP);
                    }
                    None => {
                        inj.notes
                            .insert(t, "no ssh connection found to freeze".into());
                    }
                }
            }
            inj.reference = inj.fault_at;
        }
        Fault::SessionFrozen => {
            let found: Vec<(Tool, Option<(i32, u16)>)> =
                tools.iter().map(|&t| (t, session_pid(lane, t))).collect();
            inj.fault_at = Instant::now();
            for (t, s) in found {
                match s {
                    Some((pid, cport)) => {
                        procs::signal(pid, Signal::SIGSTOP);
                        inj.frozen_sessions.push((t, pid, cport, false));
                    }
                    None => {
                        inj.notes
                            .insert(t, "no server session found to freeze".into());
                    }
                }
            }
            inj.reference = inj.fault_at;
        }
        Fault::BlackHole => {
            inj.fault_at = Instant::now();
            firewall::blackhole(&lane.server, &lane.server_if)?;
            let held = stop::sleep(BLACKHOLE);
            firewall::clear_faults(&lane.server)?;
            inj.reference = Instant::now();
            if !held {
                return Err("interrupted".into());
            }
        }
        Fault::SshdDown => {
            inj.fault_at = Instant::now();
            lane.sshd.lock().unwrap().kill_all(&lane.server);
            let held = stop::sleep(SSHD_DOWN);
            lane.sshd.lock().unwrap().start(&lane.server)?;
            inj.reference = Instant::now();
            if !held {
                return Err("interrupted".into());
            }
        }
        Fault::ConntrackForgets => {
            let ports: Vec<u16> = tools.iter().map(|&t| crate::tools::ssh_port(t)).collect();
            inj.fault_at = Instant::now();
            firewall::set_established_timeout(&lane.server, FORGET_TIMEOUT_SECS)?;
            let forgotten = stop::poll(Duration::from_secs(30), Duration::from_millis(100), || {
                firewall::established_entries(&lane.server, &ports)
                    .is_empty()
                    .then_some(())
            });
            let left = firewall::established_entries(&lane.server, &ports);
            firewall::set_established_timeout(&lane.server, firewall::ESTABLISHED_TIMEOUT_SECS)?;
            inj.reference = Instant::now();
            if forgotten.is_none() {
                for &t in &tools {
                    if left.contains(&crate::tools::ssh_port(t)) {
                        inj.notes.insert(
                            t,
                            "its flow was never forgotten (traffic every second for 30 s)".into(),
                        );
                    }
                }
            }
        }
        Fault::StaleListener => {
            let found: Vec<(Tool, Option<u16>, Option<i32>)> = tools
                .iter()
                .map(|&t| (t, server_side_client_port(lane, t), client_ssh_pid(lane, t)))
                .collect();
            inj.fault_at = Instant::now();
            for (t, cport, pid) in found {
                match (cport, pid) {
                    (Some(cport), Some(pid)) => {
                        firewall::drop_connection(&lane.server, &client_ip(lane.n), cport)?;
                        procs::signal(pid, Signal::SIGKILL);
                    }
                    _ => {
                        inj.notes.insert(t, "no connection found to cut".into());
                    }
                }
            }
            inj.reference = inj.fault_at;
        }
        Fault::SilentServer => {
            inj.fault_at = Instant::now();
            lane.sshd.lock().unwrap().kill_listener();
            // The kernel frees the listening sockets as the process dies; retry the bind briefly.
            let addrs = sshd_addrs(lane);
            let silent = stop::poll(Duration::from_secs(5), Duration::from_millis(50), || {
                SilentServer::start(&lane.server, &addrs).ok()
            })
            .ok_or("could not bind the silent listener")?;
            crate::sshd::kill_sessions(&lane.server);
            let mut silent = silent;
            let held = stop::sleep(SILENT);
            silent.stop_listening();
            lane.sshd.lock().unwrap().start(&lane.server)?;
            inj.reference = Instant::now();
            let n = silent.accepted();
            inj.lane_note = Some(format!("the silent listener accepted {n} connection(s)"));
            inj.silent = Some(silent);
            if !held {
                return Err("interrupted".into());
            }
        }
        Fault::AddressChanged => {
            inj.fault_at = Instant::now();
            inj.moved = true;
            move_client_address(lane)?;
            inj.reference = Instant::now();
        }
        Fault::Sleep => {
            let units: Vec<String> = lane.instances.iter().map(|i| i.unit.clone()).collect();
            inj.fault_at = Instant::now();
            firewall::blackhole(&lane.server, &lane.server_if)?;
            let frozen = crate::freeze::freeze(&lane.mgr, &units, lane.n)?;
            inj.lane_note = Some(format!("frozen with {}", frozen.how()));
            let held = hold(lane, &mut inj, SLEEP);
            // Undone together: the network first (one nft call), then the thaw.
            let healed = firewall::clear_faults(&lane.server);
            let thawed = frozen.thaw();
            inj.reference = Instant::now();
            if let Err((e, still)) = thawed {
                inj.frozen = Some(still);
                return Err(e);
            }
            healed?;
            if !held {
                return Err("interrupted".into());
            }
        }
        Fault::Crowd => {
            {
                let sshd = lane.sshd.lock().unwrap();
                inj.crowd_logs = tools
                    .iter()
                    .filter_map(|&t| {
                        let log = sshd.log_for(crate::tools::ssh_port(t))?.to_path_buf();
                        let len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
                        Some((t, log, len))
                    })
                    .collect();
            }
            inj.fault_at = Instant::now();
            lane.sshd.lock().unwrap().kill_all(&lane.server);
            let held = stop::sleep(CROWD_DOWN);
            lane.sshd.lock().unwrap().start(&lane.server)?;
            inj.reference = Instant::now();
            if !held {
                return Err("interrupted".into());
            }
        }
        Fault::SlowUplink => {
            let dev = client_if(lane.n);
            inj.fault_at = Instant::now();
            lane.client.run(&[
                "tc", "qdisc", "add", "dev", &dev, "root", "tbf", "rate", "1mbit", "burst",
                "32kbit", "latency", "2s",
            ])?;
            inj.slow = crate::slowlink::run(lane, crate::slowlink::UPLOAD);
            let removed = lane
                .client
                .run(&["tc", "qdisc", "del", "dev", &dev, "root"]);
            inj.reference = Instant::now();
            removed?;
            if stop::requested() {
                return Err("interrupted".into());
            }
        }
    }
    Ok(inj)
}

/// The lane's veth end in the client namespace.
pub fn client_if(lane: u8) -> String {
    format!("vs{lane}")
}

/// Fault 8's new client address: another network, as after a move to another Wi-Fi.
pub fn moved_client_ip(lane: u8) -> String {
    format!("10.214.{lane}.2")
}

/// Fault 8: replace the client's address; the old one's packets are dropped on the server.
fn move_client_address(lane: &Lane) -> Result<(), String> {
    let dev = client_if(lane.n);
    let old = client_ip(lane.n);
    let new = moved_client_ip(lane.n);
    let server = server_ip(lane.n);
    firewall::drop_address(&lane.server, &old)?;
    lane.client
        .run(&["ip", "addr", "del", &format!("{old}/30"), "dev", &dev])?;
    lane.client
        .run(&["ip", "addr", "add", &format!("{new}/32"), "dev", &dev])?;
    lane.client.run(&[
        "ip",
        "route",
        "add",
        &format!("{server}/32"),
        "dev",
        &dev,
        "src",
        &new,
    ])?;
    lane.server.run(&[
        "ip",
        "route",
        "add",
        &format!("{new}/32"),
        "dev",
        &lane.server_if,
    ])?;
    Ok(())
}

/// Undoes fault 8 (each step on its own: a half-done move is undone as far as it got).
fn restore_client_address(lane: &Lane) -> Result<(), String> {
    let dev = client_if(lane.n);
    let new = moved_client_ip(lane.n);
    let _ = lane.server.run(&[
        "ip",
        "route",
        "del",
        &format!("{new}/32"),
        "dev",
        &lane.server_if,
    ]);
    let _ = lane
        .client
        .run(&["ip", "addr", "del", &format!("{new}/32"), "dev", &dev]);
    let old = format!("{}/30", client_ip(lane.n));
    let have = lane
        .client
        .run(&["ip", "-4", "addr", "show", "dev", &dev])?;
    if !have.contains(&old) {
        lane.client.run(&["ip", "addr", "add", &old, "dev", &dev])?;
    }
    Ok(())
}

/// Sleeps `d` in short steps, noting when old sessions exit (faults whose hold outlives them).
fn hold(lane: &Lane, inj: &mut Injected, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop::requested() {
            return false;
        }
        tick(lane, inj);
        std::thread::sleep(Duration::from_millis(250).min(end - Instant::now()));
    }
    true
}

/// After the recovery wait: ticks (every 20 ms, at most `max`) until the old server
/// session of every tool in `recovered` has been seen gone. A tool's `-R` succeeds once
/// that session closed its listener, a moment before the process exits, so a recovery
/// seen within one 250 ms tick of the exit would otherwise leave its floor unmeasured.
pub fn see_old_sessions_go(lane: &Lane, inj: &mut Injected, recovered: &[Tool], max: Duration) {
    let end = Instant::now() + max;
    loop {
        tick(lane, inj);
        let pending = inj
            .old_sessions
            .iter()
            .any(|(tool, _, gone)| gone.is_none() && recovered.contains(tool));
        if !pending || Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Called about every 250 ms while the tools recover.
pub fn tick(lane: &Lane, inj: &mut Injected) {
    let since = inj.fault_at.elapsed().as_secs_f64();
    for (_, pid, gone) in inj.old_sessions.iter_mut() {
        if gone.is_none() && procs::is_zombie(*pid) {
            *gone = Some(since);
        }
    }
    if inj.fault != Fault::SessionFrozen {
        return;
    }
    let table = sockets::tcp_table(&lane.server);
    let overdue = inj.fault_at.elapsed() > SESSION_FREEZE_MAX;
    for (tool, pid, cport, resumed) in inj.frozen_sessions.iter_mut() {
        if *resumed {
            continue;
        }
        let port = crate::tools::ssh_port(*tool);
        let still_open = table
            .iter()
            .any(|e| e.local.1 == port && e.remote.1 == *cport && e.state == sockets::ESTABLISHED);
        if !still_open || overdue {
            procs::signal(*pid, Signal::SIGCONT);
            *resumed = true;
        }
    }
}

/// Undoes what is left of the fault (the tools' units are restarted afterwards).
pub fn finish(lane: &Lane, inj: Injected) -> Result<(), String> {
    for (_, pid, _, resumed) in &inj.frozen_sessions {
        if !resumed {
            procs::signal(*pid, Signal::SIGCONT);
        }
    }
    drop(inj.silent);
    if let Some(frozen) = inj.frozen {
        frozen.thaw().map_err(|(e, _)| e)?;
    }
    if inj.moved {
        restore_client_address(lane)?;
    }
    if inj.fault == Fault::SlowUplink {
        // Normally gone already; ignore "no such qdisc".
        let _ = lane
            .client
            .run(&["tc", "qdisc", "del", "dev", &client_if(lane.n), "root"]);
    }
    firewall::clear_faults(&lane.server)?;
    let mut sshd = lane.sshd.lock().unwrap();
    let ports = sshd.ports.clone();
    if !ports.iter().all(|p| sockets::listening(&lane.server, *p)) {
        sshd.kill_listener();
        sshd.start(&lane.server)?;
    }
    Ok(())
}
