//! A lane: one server namespace with its own sshd and firewall, joined to the
//! shared client namespace, carrying one instance of every tool. Each fault gets
//! its own lane, so the faults run at the same time without touching each
//! other, and every tool in a lane sees the very same fault at the same moment.
//! Lane 0 is never faulted: it measures the idle footprint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::faults::{self, Fault};
use crate::measure::{self, StopOutcome};
use crate::netns::Netns;
use crate::sshd::Sshd;
use crate::tools::{Instance, Tool};
use crate::usermgr::UserManager;
use crate::{firewall, procs, sockets, stop};

/// Time every tool stays up, healthy, before the next fault.
const SETTLE: Duration = Duration::from_secs(10);
/// On top of [`SETTLE`], a random part of this: the tools check every 5 s (A's probe
/// interval, C's AUTOSSH_POLL, ssh's ServerAliveInterval), and a fault struck a fixed
/// time after they came up would fall at the same place of every tool's check cycle in
/// every trial, so a trial's result would say where that place is rather than how the
/// tool copes. The same moment for every tool of the lane.
const PHASE_SPREAD: Duration = Duration::from_secs(5);

/// A random part of [`PHASE_SPREAD`] (splitmix64 of the clock: no crate for one number).
fn random_phase() -> Duration {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    PHASE_SPREAD.mul_f64((x >> 11) as f64 / (1u64 << 53) as f64)
}

/// Between trials, how long the server may keep a tool's session after its unit stopped
/// before the bench kills it. ClientAliveInterval 5 s × 2 drops a session whose client
/// is gone in about 30 s on this OpenSSH, when nothing connects to its forwards.
const SESSIONS_GONE_MAX: Duration = Duration::from_secs(60);

pub struct Lane {
    pub n: u8,
    pub fault: Option<Fault>,
    pub client: Arc<Netns>,
    pub server: Netns,
    pub server_if: String,
    pub sshd: Mutex<Sshd>,
    pub instances: Vec<Instance>,
    pub mgr: Arc<UserManager>,
}

#[derive(Clone, Debug)]
pub struct TrialResult {
    pub fault: Fault,
    pub tool: Tool,
    pub trial: u32,
    /// Both forwards worked before the fault (else the trial does not count).
    pub healthy_before: bool,
    /// Seconds from the fault (or heal) to both forwards carrying data; None = not within the deadline.
    pub recovery_secs: Option<f64>,
    /// Connection attempts (distinct SYNs to the tool's sshd port) from the fault until recovery or the deadline.
    pub attempts: usize,
    /// Seconds after the fault at which each attempt started.
    pub attempt_times: Vec<f64>,
    /// Faults 1, 2, 5, 6, 8, 9: seconds after the fault when the server session of the old
    /// connection exited (until then it held the remote port).
    pub old_session_secs: Option<f64>,
    /// Fault 8: seconds from the reference until `-L` alone carried data.
    pub local_secs: Option<f64>,
    /// Fault 10: what the tool did during the upload.
    pub slow: Option<crate::slowlink::SlowStats>,
    /// Fault 11: the tool's crowd of tunnels.
    pub crowd: Option<CrowdStats>,
    /// Merged over the tool's instances (one, or a crowd on fault 11).
    pub stop: StopOutcome,
    pub note: String,
    /// About the whole lane's injection in this trial (the same for every tool).
    pub lane_note: String,
}

/// Fault 11: one tool's crowd of tunnels in one trial. The trial's `recovery_secs` is the
/// slowest tunnel's (every forward of every tunnel carries data).
#[derive(Clone, Debug, Default)]
pub struct CrowdStats {
    pub tunnels: usize,
    /// Seconds from the heal until each tunnel's forwards carried data (those that did).
    pub tunnel_secs: Vec<f64>,
    /// Connections the tool's sshd dropped past MaxStartups, from the fault to the trial's end.
    pub drops: usize,
    /// Logins (successful authentications) in the tool's sshd log over the same span.
    pub logins: usize,
}

/// Per tool in `instances` (in their order), the indices of its instances.
fn by_tool(instances: &[Instance]) -> Vec<(Tool, Vec<usize>)> {
    let mut out: Vec<(Tool, Vec<usize>)> = Vec::new();
    for (k, inst) in instances.iter().enumerate() {
        match out.iter_mut().find(|(t, _)| *t == inst.tool) {
            Some((_, ks)) => ks.push(k),
            None => out.push((inst.tool, vec![k])),
        }
    }
    out
}

/// The slowest of the tool's instances, or None if one of them never made it.
fn slowest(times: &[Option<Duration>], ks: &[usize]) -> Option<Duration> {
    ks.iter()
        .map(|&k| times[k])
        .try_fold(Duration::ZERO, |acc, t| Some(acc.max(t?)))
}

impl Lane {
    fn log(&self, msg: &str) {
        eprintln!(
            "[lane {} {}] {msg}",
            self.n,
            self.fault
                .map(|f| format!("fault {}", f.number()))
                .unwrap_or("footprint".into())
        );
    }

    /// Waits until every instance passes a check; restarts those that do not
    /// within 60 s and waits once more. Returns per instance whether it is healthy.
    pub fn ensure_healthy(&self) -> Vec<bool> {
        let first = measure::wait_recovery(
            self,
            &self.instances,
            Instant::now(),
            Duration::from_secs(60),
            &[],
            || {},
        );
        let mut healthy: Vec<bool> = first.iter().map(Option::is_some).collect();
        let sick: Vec<Instance> = self
            .instances
            .iter()
            .zip(&healthy)
            .filter(|(_, h)| !**h)
            .map(|(i, _)| i.clone())
            .collect();
        if sick.is_empty() || stop::requested() {
            return healthy;
        }
        for inst in &sick {
            self.log(&format!(
                "{} not healthy after 60 s; restarting {}",
                inst.tool.label(),
                inst.unit
            ));
            let _ = self.mgr.systemctl(&["restart", "--no-block", &inst.unit]);
        }
        let second = measure::wait_recovery(
            self,
            &sick,
            Instant::now(),
            Duration::from_secs(60),
            &[],
            || {},
        );
        for (inst, ok) in sick.iter().zip(second) {
            if let Some(k) = self.instances.iter().position(|i| i.unit == inst.unit) {
                healthy[k] = ok.is_some();
            }
        }
        healthy
    }

    /// All trials of this lane's fault.
    pub fn run_fault(&self, trials: u32, deadline: Duration) -> Vec<TrialResult> {
        let fault = self.fault.expect("a fault lane");
        let mut results = Vec::new();
        for trial in 1..=trials {
            if stop::requested() {
                break;
            }
            let healthy = self.ensure_healthy();
            // A fault strikes a tunnel that has been up for a while, not one that came up a
            // moment ago (tunnel-watchdog treats a tunnel that has not yet proven itself for
            // one probe interval more cautiously, as a real deployment would never see).
            let phase = random_phase();
            if !stop::sleep(SETTLE + phase) {
                break;
            }
            let _ = firewall::flush_attempts(&self.server);
            self.log(&format!(
                "trial {trial}/{trials}: {} ({:.1} s past the settle time)",
                fault.title(),
                phase.as_secs_f64()
            ));
            let mut inj = match faults::inject(self, fault) {
                Ok(i) => i,
                Err(e) => {
                    self.log(&format!("could not inject: {e}"));
                    let _ = firewall::clear_faults(&self.server);
                    break;
                }
            };
            let reference = inj.reference;
            let fault_at = inj.fault_at;
            let old_session_pids: Vec<Option<i32>> = self
                .instances
                .iter()
                .map(|i| inj.old_session_pid(i.tool))
                .collect();
            let (local, recovered): (Vec<Option<Duration>>, Vec<Option<Duration>>) =
                measure::wait_recovery_split(
                    self,
                    &self.instances,
                    reference,
                    deadline,
                    &old_session_pids,
                    fault == Fault::AddressChanged,
                    || faults::tick(self, &mut inj),
                )
                .into_iter()
                .unzip();
            let recovered_tools: Vec<Tool> = self
                .instances
                .iter()
                .zip(&recovered)
                .filter(|(_, at)| at.is_some())
                .map(|(inst, _)| inst.tool)
                .collect();
            faults::see_old_sessions_go(self, &mut inj, &recovered_tools, Duration::from_secs(2));
            let slow = std::mem::take(&mut inj.slow);
            let crowd_counts = inj.sshd_counts();
            let attempts = firewall::attempts(&self.server);
            let notes = inj.notes.clone();
            let old_sessions: Vec<Option<Option<f64>>> = self
                .instances
                .iter()
                .map(|i| inj.old_session_exit(i.tool))
                .collect();
            let lane_note = inj.lane_note.clone();
            if let Err(e) = faults::finish(self, inj) {
                self.log(&format!("could not undo the fault: {e}"));
            }
            // Every unit stops before any starts again, and the server must have dropped
            // every tool's session first: the next trial starts alike for every tool.
            let stops = self.stop_all();
            let lane_note: Vec<String> = lane_note
                .into_iter()
                .chain(self.wait_server_sessions_gone())
                .collect();
            for (tool, ks) in by_tool(&self.instances) {
                let first = &self.instances[ks[0]];
                let recovery = slowest(&recovered, &ks);
                let until = recovery
                    .map(|d| reference + d)
                    .unwrap_or(reference + deadline);
                let times = attempt_times(&attempts, first, fault_at, until);
                let healthy_before = ks.iter().all(|&k| healthy[k]);
                let mut note: Vec<String> = notes.get(&tool).cloned().into_iter().collect();
                if ks.iter().any(|&k| old_sessions[k] == Some(None)) {
                    note.push("the old server session was still there when the trial ended".into());
                }
                if !healthy_before {
                    let sick = ks.iter().filter(|&&k| !healthy[k]).count();
                    note.push(if ks.len() == 1 {
                        "not healthy before the fault: trial not counted".into()
                    } else {
                        format!(
                            "{sick} of {} tunnels not healthy before the fault: trial not counted",
                            ks.len()
                        )
                    });
                }
                let crowd = (fault == Fault::Crowd).then(|| {
                    let counts = crowd_counts.get(&tool).copied().unwrap_or_default();
                    CrowdStats {
                        tunnels: ks.len(),
                        tunnel_secs: ks
                            .iter()
                            .filter_map(|&k| recovered[k].map(|d| d.as_secs_f64()))
                            .collect(),
                        drops: counts.drops,
                        logins: counts.logins,
                    }
                });
                results.push(TrialResult {
                    fault,
                    tool,
                    trial,
                    healthy_before,
                    recovery_secs: recovery.map(|d| d.as_secs_f64()),
                    attempts: times.len(),
                    attempt_times: times,
                    old_session_secs: old_sessions[ks[0]].flatten(),
                    local_secs: slowest(&local, &ks).map(|d| d.as_secs_f64()),
                    slow: slow.get(&tool).cloned(),
                    crowd,
                    stop: merge_stops(ks.iter().map(|&k| &stops[k])),
                    note: note.join("; "),
                    lane_note: lane_note.join("; "),
                });
            }
            self.start_all();
            self.log_trial_done(trial, trials, &results);
        }
        results
    }

    fn log_trial_done(&self, trial: u32, trials: u32, results: &[TrialResult]) {
        let summary: Vec<String> = results
            .iter()
            .filter(|r| r.trial == trial)
            .map(|r| {
                format!(
                    "{}={}",
                    r.tool.letter(),
                    r.recovery_secs
                        .map(|s| format!("{s:.1}s"))
                        .unwrap_or("-".into())
                )
            })
            .collect();
        self.log(&format!(
            "trial {trial}/{trials} done: {}",
            summary.join(" ")
        ));
    }

    /// Stops every unit (A's state file removed meanwhile) and says what each left behind.
    fn stop_all(&self) -> Vec<StopOutcome> {
        self.instances
            .iter()
            .map(|inst| {
                let stop = measure::stop_unit(self, inst);
                if inst.tool == Tool::A {
                    self.reset_a_state(inst);
                }
                stop
            })
            .collect()
    }

    fn start_all(&self) {
        for inst in &self.instances {
            if let Err(e) = measure::start_unit(self, inst) {
                self.log(&format!("could not start {}: {e}", inst.unit));
            }
        }
    }

    /// Per tool whose session the server still holds, the sockets that show it: its
    /// connection to sshd, or the `-R` listener on its remote port.
    fn server_sessions(&self) -> Vec<(Tool, Vec<u64>)> {
        let table = sockets::tcp_table(&self.server);
        self.instances
            .iter()
            .filter_map(|inst| {
                let inodes: Vec<u64> = table
                    .iter()
                    .filter(|e| {
                        (e.state == sockets::ESTABLISHED && e.local.1 == inst.ssh_port)
                            || (e.state == sockets::LISTEN && e.local.1 == inst.remote_port)
                    })
                    .map(|e| e.inode)
                    .collect();
                (!inodes.is_empty()).then_some((inst.tool, inodes))
            })
            .collect()
    }

    /// With every unit stopped: waits until the server holds no session of any tool, so
    /// that no trial starts with an old session holding a tool's `-R` port. A session
    /// whose client vanished without a FIN (fault 8: the moved address its connection
    /// used is gone once the move is undone) lives until ClientAlive drops it, and
    /// nothing may connect to its forwards meanwhile: that would keep it alive (see
    /// `measure::wait_recovery`). One still there after `SESSIONS_GONE_MAX` is killed.
    /// Returns a note for the lane when a session outlived the stop by a second or more.
    fn wait_server_sessions_gone(&self) -> Option<String> {
        let t0 = Instant::now();
        let mut last_seen: BTreeMap<Tool, Duration> = BTreeMap::new();
        let gone = stop::poll(SESSIONS_GONE_MAX, Duration::from_millis(250), || {
            let left = self.server_sessions();
            for (tool, _) in &left {
                last_seen.insert(*tool, t0.elapsed());
            }
            left.is_empty().then_some(())
        });
        let mut killed = Vec::new();
        if gone.is_none() {
            for (tool, inodes) in self.server_sessions() {
                for inode in inodes {
                    for pid in sockets::owners(&self.server, inode) {
                        if procs::comm(pid) == "sshd" {
                            procs::signal(pid, Signal::SIGKILL);
                        }
                    }
                }
                killed.push(tool.letter().to_string());
            }
        }
        last_seen.retain(|_, d| *d >= Duration::from_secs(1));
        let longest = last_seen.values().max()?;
        let tools: Vec<String> = last_seen.keys().map(|t| t.letter().to_string()).collect();
        let mut note = format!(
            "after the units stopped, the server kept the trial's session(s) of {} for up to {:.1} s; the next trial waited for them",
            tools.join(", "),
            longest.as_secs_f64()
        );
        if !killed.is_empty() {
            let _ = write!(
                note,
                ", and killed those of {} after {} s",
                killed.join(", "),
                SESSIONS_GONE_MAX.as_secs()
            );
        }
        Some(note)
    }

    /// Trials are independent faults, as if the tunnel had been up for a long time when
    /// each struck: the watchdog forgets its consecutive failures after `backoff.max` (5 min)
    /// of uptime, which the bench does not wait for between trials, so it removes A's
    /// persisted state file while the unit is stopped. Without this, trial N would start
    /// with the back-off left by trial N-1.
    fn reset_a_state(&self, inst: &Instance) {
        let name = &inst.a_name;
        for base in [&self.mgr.config_home, &self.mgr.state_home] {
            let _ = std::fs::remove_file(base.join("tunnelctl").join(name).join("state"));
        }
    }

    /// The footprint lane: wait until healthy, then sample for `window`, then stop the units.
    pub fn run_footprint(&self, window: Duration) -> Vec<(Tool, measure::Footprint, StopOutcome)> {
        let healthy = self.ensure_healthy();
        self.log(&format!(
            "measuring the idle footprint for {:.0} s",
            window.as_secs_f64()
        ));
        let fps = measure::footprint(self, window);
        let mut out = Vec::new();
        for ((inst, fp), ok) in self.instances.iter().zip(fps).zip(healthy) {
            let mut fp = fp;
            if !ok {
                fp.healthy_at_end = false;
            }
            let stop = measure::stop_unit(self, inst);
            out.push((inst.tool, fp, stop));
        }
        self.log("footprint done");
        out
    }
}

/// One stop outcome for a tool's instances: the longest stop, and everything left.
fn merge_stops<'a>(stops: impl Iterator<Item = &'a StopOutcome>) -> StopOutcome {
    stops.fold(
        StopOutcome {
            stopped: true,
            ..StopOutcome::default()
        },
        |mut acc, s| {
            acc.stop_secs = acc.stop_secs.max(s.stop_secs);
            acc.stopped &= s.stopped;
            acc.leftovers.extend(s.leftovers.iter().cloned());
            acc
        },
    )
}

/// When each of the tool's connection attempts started, in seconds after the fault,
/// up to `until` (its recovery or the deadline).
fn attempt_times(
    attempts: &[firewall::Attempt],
    inst: &Instance,
    fault_at: Instant,
    until: Instant,
) -> Vec<f64> {
    let mut times: Vec<f64> = attempts
        .iter()
        .filter(|a| {
            a.server_port == inst.ssh_port
                && a.at + Duration::from_millis(50) >= fault_at
                && a.at <= until
        })
        .map(|a| a.at.saturating_duration_since(fault_at).as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}
