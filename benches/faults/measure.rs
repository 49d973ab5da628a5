//! What the bench measures: both forwards carrying data, time to recover,
//! processes left behind by a stopped unit, and the idle footprint.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::lane::Lane;
use crate::tools::{CLIENT_BANNER, Instance, server_banner};
use crate::{firewall, procs, stop, targets};

/// Pause between two checks of one tool while it is down.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A forward that gives no banner within this is down (a healthy one answers in milliseconds).
const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Both forwards of one instance carry data, right now: the local forward from the
/// client namespace, the remote one from the server namespace.
pub fn check_instance(lane: &Lane, inst: &Instance) -> bool {
    let local: SocketAddr = ([127, 0, 0, 1], inst.local_port).into();
    let remote: SocketAddr = ([127, 0, 0, 1], inst.remote_port).into();
    targets::check(&lane.client, local, &server_banner(lane.n), CHECK_TIMEOUT)
        && targets::check(&lane.server, remote, CLIENT_BANNER, CHECK_TIMEOUT)
}

/// Checks every instance (each in its own thread) until it passes or `reference +
/// deadline`. Returns per instance the time from `reference` to the start of its
/// first passing check. `tick` runs about every 250 ms meanwhile.
///
/// `old_sessions[k]`: the server session of instance k's broken connection, which
/// holds its remote port. While it lives the remote forward cannot be the tool's, and
/// it is not checked: a connection to that port would reach the old session's listener,
/// and on OpenSSH 9.2 such traffic keeps a session whose client is gone alive past its
/// ClientAliveInterval × ClientAliveCountMax (seen here: not freed within 54 s while probed every
/// 250 ms, freed after 10.7 s when left alone, with 2 s × 2), so checking would
/// change what is measured.
pub fn wait_recovery(
    lane: &Lane,
    insts: &[Instance],
    reference: Instant,
    deadline: Duration,
    old_sessions: &[Option<i32>],
    tick: impl FnMut(),
) -> Vec<Option<Duration>> {
    wait_recovery_split(lane, insts, reference, deadline, old_sessions, false, tick)
        .into_iter()
        .map(|(_, both)| both)
        .collect()
}

/// Like `wait_recovery`, returning per instance (`-L` alone, both). With `local_first`
/// (fault 8) the first is the time to the first check that `-L` alone passed, and both
/// are checked only after it. `-L` is checked even while the old session lives: the
/// old flow's packets go nowhere, so that check cannot reach (and keep alive) the old
/// session; only `-R` waits for the port to be free. Without, the first is `None`.
pub fn wait_recovery_split(
    lane: &Lane,
    insts: &[Instance],
    reference: Instant,
    deadline: Duration,
    old_sessions: &[Option<i32>],
    local_first: bool,
    mut tick: impl FnMut(),
) -> Vec<(Option<Duration>, Option<Duration>)> {
    let end = reference + deadline;
    std::thread::scope(|s| {
        let handles: Vec<_> = insts
            .iter()
            .enumerate()
            .map(|(k, inst)| {
                let old_session = old_sessions.get(k).copied().flatten();
                s.spawn(move || wait_one(lane, inst, old_session, reference, end, local_first))
            })
            .collect();
        // Bounded: every checker returns by `end` plus one check.
        while handles.iter().any(|h| !h.is_finished()) {
            tick();
            std::thread::sleep(Duration::from_millis(250));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((None, None)))
            .collect()
    })
}

/// One instance's checks for [`wait_recovery_split`], every `CHECK_EVERY` until `end`.
fn wait_one(
    lane: &Lane,
    inst: &Instance,
    old_session: Option<i32>,
    reference: Instant,
    end: Instant,
    local_first: bool,
) -> (Option<Duration>, Option<Duration>) {
    let local: SocketAddr = ([127, 0, 0, 1], inst.local_port).into();
    let banner = server_banner(lane.n);
    let mut local_at = None;
    loop {
        let t0 = Instant::now();
        if t0 > end || stop::requested() {
            return (local_at, None);
        }
        let since = t0.saturating_duration_since(reference);
        if local_first
            && local_at.is_none()
            && targets::check(&lane.client, local, &banner, CHECK_TIMEOUT)
        {
            local_at = Some(since);
        }
        let port_free = old_session.is_none_or(procs::is_zombie);
        if (local_at.is_some() || !local_first) && port_free && check_instance(lane, inst) {
            return (local_at, Some(since));
        }
        std::thread::sleep(CHECK_EVERY);
    }
}

/// What stopping a unit left behind.
#[derive(Clone, Debug, Default)]
pub struct StopOutcome {
    pub stop_secs: f64,
    pub stopped: bool,
    /// "PID comm state" of every process still there after the stop.
    pub leftovers: Vec<String>,
}

/// Stops the unit, waits for it to be inactive (30 s at most), and lists what is
/// left: processes still in its cgroup, and any process in the client namespace
/// whose command line carries this instance's forward. They are then killed.
pub fn stop_unit(lane: &Lane, inst: &Instance) -> StopOutcome {
    let mgr = &lane.mgr;
    let cgroup = mgr.unit_cgroup_dir(&inst.unit);
    let t0 = Instant::now();
    let _ = mgr.systemctl(&["stop", "--no-block", &inst.unit]);
    let stopped = stop::poll(Duration::from_secs(30), Duration::from_millis(50), || {
        let state = mgr.show(&inst.unit, "ActiveState");
        matches!(state.as_str(), "inactive" | "failed").then_some(())
    })
    .is_some();
    let stop_secs = t0.elapsed().as_secs_f64();
    let marker = inst.marker();
    let mut pids: BTreeSet<i32> = cgroup
        .map(|d| procs::cgroup_pids(&d))
        .unwrap_or_default()
        .into_iter()
        .collect();
    for p in lane.client.pids() {
        if procs::cmdline(p).contains(&marker) {
            pids.insert(p);
        }
    }
    let leftovers = pids
        .iter()
        .map(|&p| {
            format!(
                "{p} {} {}",
                procs::comm(p),
                procs::stat(p).map(|s| s.state).unwrap_or('?')
            )
        })
        .collect();
    procs::kill_all(&pids.into_iter().collect::<Vec<_>>());
    StopOutcome {
        stop_secs,
        stopped,
        leftovers,
    }
}

pub fn start_unit(lane: &Lane, inst: &Instance) -> Result<(), String> {
    lane.mgr
        .systemctl(&["start", "--no-block", &inst.unit])
        .map(|_| ())
}

/// Idle footprint of one instance over the measuring window.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    pub seconds: f64,
    pub supervisor: String,
    pub rss_kib_max: u64,
    pub rss_kib_end: u64,
    pub cpu_secs: f64,
    /// CPU of the supervisor's reaped children (probe processes, ssh that exited).
    pub children_cpu_secs: f64,
    pub ssh_rss_kib: u64,
    /// ssh processes that appeared during the window (polled every 200 ms).
    pub ssh_spawned: usize,
    /// TCP connections to sshd during the window (SYNs counted on the server).
    pub connections: usize,
    /// Times the supervising process changed (the unit restarted).
    pub supervisor_changes: usize,
    pub healthy_at_end: bool,
}

/// Samples every instance of the (untouched) footprint lane for `window`.
pub fn footprint(lane: &Lane, window: Duration) -> Vec<Footprint> {
    let hz = procs::clock_ticks_per_sec() as f64;
    let n = lane.instances.len();
    let mut out = vec![Footprint::default(); n];
    let mut supervisor: Vec<Option<i32>> = lane
        .instances
        .iter()
        .map(|i| lane.mgr.main_pid(&i.unit))
        .collect();
    // Last (on-CPU ns, children cpu ticks) per supervisor pid.
    let mut last: Vec<HashMap<i32, (u64, u64)>> = vec![HashMap::new(); n];
    let mut ssh_seen: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); n];
    let mut ssh_at_start: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); n];
    let cgroups: Vec<_> = lane
        .instances
        .iter()
        .map(|i| lane.mgr.unit_cgroup_dir(&i.unit))
        .collect();
    let _ = firewall::flush_attempts(&lane.server);
    let start = Instant::now();
    let mut next_sample = start;
    let mut first = true;
    loop {
        let now = Instant::now();
        let done = now >= start + window || stop::requested();
        for k in 0..n {
            let pids = cgroups[k]
                .as_ref()
                .map(|d| procs::cgroup_pids(d))
                .unwrap_or_default();
            let ssh: Vec<i32> = pids
                .iter()
                .copied()
                .filter(|&p| procs::comm(p) == "ssh")
                .collect();
            if first {
                ssh_at_start[k].extend(ssh.iter().copied());
            }
            ssh_seen[k].extend(ssh.iter().copied());
            if now >= next_sample || done {
                let inst = &lane.instances[k];
                let alive =
                    supervisor[k].filter(|&p| procs::stat(p).is_some() && !procs::is_zombie(p));
                if alive.is_none() {
                    supervisor[k] = lane.mgr.main_pid(&inst.unit);
                    out[k].supervisor_changes += 1;
                }
                if let Some(p) = supervisor[k] {
                    if let (Some(st), Some(ns)) = (procs::stat(p), procs::oncpu_ns(p)) {
                        let e = last[k].entry(p).or_insert((ns, st.child_cpu_ticks));
                        out[k].cpu_secs += ns.saturating_sub(e.0) as f64 / 1e9;
                        out[k].children_cpu_secs +=
                            st.child_cpu_ticks.saturating_sub(e.1) as f64 / hz;
                        *e = (ns, st.child_cpu_ticks);
                    }
                    let rss = procs::rss_kib(p).unwrap_or(0);
                    out[k].rss_kib_max = out[k].rss_kib_max.max(rss);
                    out[k].rss_kib_end = rss;
                    out[k].supervisor = procs::comm(p);
                }
                if let Some(&s) = ssh.iter().max_by_key(|&&p| procs::rss_kib(p).unwrap_or(0)) {
                    out[k].ssh_rss_kib = out[k].ssh_rss_kib.max(procs::rss_kib(s).unwrap_or(0));
                }
            }
        }
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
        }
        first = false;
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let seconds = start.elapsed().as_secs_f64();
    let attempts = firewall::attempts(&lane.server);
    for (k, inst) in lane.instances.iter().enumerate() {
        out[k].seconds = seconds;
        out[k].ssh_spawned = ssh_seen[k].difference(&ssh_at_start[k]).count();
        out[k].connections = attempts
            .iter()
            .filter(|a| a.server_port == inst.ssh_port && a.at >= start)
            .count();
        out[k].healthy_at_end = check_instance(lane, inst);
    }
    out
}
