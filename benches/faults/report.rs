//! The report: Markdown tables, raw JSON (written by hand: flat records, no
//! need for serde_json) and a hand-written SVG bar chart.

use std::fmt::Write as _;
use std::process::Command;

use crate::cli::Options;
use crate::faults::{self, Fault};
use crate::lane::TrialResult;
use crate::measure::{Footprint, StopOutcome};
use crate::slowlink::SlowStats;
use crate::tools::Tool;

pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub openssh: String,
    pub autossh: String,
    pub systemd: String,
    pub date: String,
    /// Which tunnel-watchdog tool A ran, and how it is linked (its RSS depends on it).
    pub watchdog: String,
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        openssh: first_line(Command::new("ssh").arg("-V")),
        autossh: first_line(Command::new("dpkg-query").args([
            "-W",
            "-f",
            "${Package} ${Version}",
            "autossh",
        ])),
        systemd: first_line(Command::new("systemctl").arg("--version")),
        date: first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        watchdog: crate::tools::tunnelctl_bins()
            .map(|b| describe_binary(&b.watchdog))
            .unwrap_or_else(|e| e),
    }
}

/// `PATH (N KB, statically linked)`: a dynamic ELF has a PT_INTERP program header.
/// Whether a 64-bit little-endian ELF image lists a PT_INTERP (3) program header.
fn has_interpreter(elf: &[u8]) -> bool {
    let field = |at: usize, len: usize| -> u64 {
        elf.get(at..at + len).map_or(0, |b| {
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        })
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (phoff, phentsize, phnum) = (field(0x20, 8), field(0x36, 2), field(0x38, 2));
    (0..phnum).any(|i| field((phoff + i * phentsize) as usize, 4) == 3)
}

fn describe_binary(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let dynamic = has_interpreter(&bytes);
    format!(
        "{} ({} KB, {} linked)",
        path.display(),
        bytes.len() / 1000,
        if dynamic { "dynamically" } else { "statically" }
    )
}

pub struct Report<'a> {
    pub opts: &'a Options,
    pub machine: Machine,
    pub wall_secs: f64,
    pub trials: Vec<TrialResult>,
    pub footprint: Vec<(Tool, Footprint, StopOutcome)>,
    pub a_unavailable: Option<String>,
    pub a_unit: Option<String>,
    pub errors: Vec<String>,
    /// The bench's temporary directory (keys, known_hosts, logs, the user manager's runtime).
    pub bench_dir: std::path::PathBuf,
}

/// Aggregate of one tool on one fault over the counted trials.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub counted: usize,
    pub recovered: usize,
    pub median: Option<f64>,
    pub max: Option<f64>,
    pub attempts_median: Option<f64>,
    pub attempts_max: usize,
    pub leftovers: usize,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median and the maximum; `None` for no values.
fn median_max(v: &mut [f64]) -> Option<(f64, f64)> {
    let max = v.iter().copied().reduce(f64::max)?;
    Some((median(v)?, max))
}

/// Seconds from the old server session's exit (the floor for `-R`: it holds the remote
/// port until then) to recovery. old_session_secs counts from the fault, recovery_secs
/// from the clock's start: the same instant on fault 6, nearly on fault 8 (the address
/// change takes milliseconds).
fn after_floor(r: &TrialResult) -> Option<f64> {
    Some(r.recovery_secs? - r.old_session_secs?)
}

/// One field of fault 10's figures, summed over the trials that have them.
fn slow_total<T: std::iter::Sum<T>>(rs: &[&TrialResult], field: fn(&SlowStats) -> T) -> T {
    rs.iter().filter_map(|r| r.slow.as_ref()).map(field).sum()
}

impl Report<'_> {
    pub fn tools(&self) -> Vec<Tool> {
        self.opts.tools.clone()
    }

    /// The trials of `tool` on `fault` that count: those where it was healthy before.
    fn counted(&self, fault: Fault, tool: Tool) -> impl Iterator<Item = &TrialResult> {
        self.trials
            .iter()
            .filter(move |r| r.fault == fault && r.tool == tool && r.healthy_before)
    }

    pub fn cell(&self, fault: Fault, tool: Tool) -> Cell {
        let rs: Vec<&TrialResult> = self.counted(fault, tool).collect();
        let mut secs: Vec<f64> = rs.iter().filter_map(|r| r.recovery_secs).collect();
        let mut att: Vec<f64> = rs.iter().map(|r| r.attempts as f64).collect();
        Cell {
            counted: rs.len(),
            recovered: secs.len(),
            max: secs.iter().copied().reduce(f64::max),
            median: median(&mut secs),
            attempts_median: median(&mut att),
            attempts_max: rs.iter().map(|r| r.attempts).max().unwrap_or(0),
            leftovers: rs.iter().map(|r| r.stop.leftovers.len()).sum(),
        }
    }

    fn available(&self, tool: Tool) -> bool {
        !(tool == Tool::A && self.a_unavailable.is_some())
    }

    fn recovery_text(&self, fault: Fault, tool: Tool) -> String {
        if !self.available(tool) {
            return "not available".into();
        }
        let c = self.cell(fault, tool);
        if c.counted == 0 {
            return "—".into();
        }
        match (c.median, c.max) {
            (Some(m), Some(x)) if c.recovered == c.counted => {
                format!("{m:.1} s (max {x:.1}) {}/{}", c.recovered, c.counted)
            }
            (Some(m), Some(x)) => {
                format!("**{}/{}** · {m:.1} s (max {x:.1})", c.recovered, c.counted)
            }
            _ => format!("**never** 0/{}", c.counted),
        }
    }

    pub fn markdown(&self) -> String {
        let tools = self.tools();
        let mut s = String::new();
        self.intro_section(&mut s);
        self.recovery_section(&mut s, &tools);
        self.attempts_section(&mut s, &tools);
        self.old_session_section(&mut s, &tools);
        self.address_change_section(&mut s, &tools);
        self.slow_uplink_section(&mut s, &tools);
        self.crowd_section(&mut s, &tools);
        self.leftovers_section(&mut s, &tools);
        self.footprint_section(&mut s);
        if tools.contains(&Tool::A) {
            self.targets_section(&mut s);
        }
        self.notes_section(&mut s);
        self.method_section(&mut s);
        self.without_machine_paths(s)
    }

    /// The machine's own paths in the report, each with the name the report prints
    /// instead: the report is read on other machines, while the bench runs with the
    /// real paths. A watchdog from outside the target directory is named by the
    /// variable that chose it.
    fn placeholders(&self) -> Vec<(String, String)> {
        let dirs = [
            (self.bench_dir.clone(), "$BENCH_DIR"),
            (crate::target_dir(), "$CARGO_TARGET_DIR"),
        ];
        let mut out = Vec::new();
        if let Ok(bins) = crate::tools::tunnelctl_bins()
            && std::env::var_os("TUNNELCTL_BENCH_WATCHDOG").is_some()
            && !dirs.iter().any(|(d, _)| bins.watchdog.starts_with(d))
        {
            out.push((
                bins.watchdog.display().to_string(),
                "$TUNNELCTL_BENCH_WATCHDOG".to_string(),
            ));
        }
        out.extend(
            dirs.iter()
                .map(|(d, name)| (format!("{}/", d.display()), format!("{name}/"))),
        );
        out
    }

    fn without_machine_paths(&self, mut text: String) -> String {
        for (path, name) in self.placeholders() {
            text = text.replace(&path, &name);
        }
        text
    }

    /// The title, the machine, the command, and what went wrong.
    fn intro_section(&self, s: &mut String) {
        let m = &self.machine;
        let _ = writeln!(s, "# Fault bench: tunnelctl vs autossh vs a respawn loop\n");
        let _ = writeln!(
            s,
            "Measured {date} on {cores} cores, Linux {kernel}, {ssh}, {autossh}, {systemd}. \
             {trials} trial(s) per fault, recovery deadline {dl} s, footprint over {fm} idle minute(s); \
             the whole run took {wall:.1} minutes.{quick} Tool A's watchdog: {watchdog}.\n",
            date = m.date,
            cores = m.cores,
            kernel = m.kernel,
            ssh = m.openssh,
            autossh = m.autossh,
            systemd = m.systemd,
            trials = self.opts.trials,
            dl = self.opts.deadline_secs,
            fm = self.opts.footprint_minutes,
            wall = self.wall_secs / 60.0,
            quick = if self.opts.quick { " (`--quick`)" } else { "" },
            watchdog = m.watchdog,
        );
        let _ = writeln!(
            s,
            "Command: `cargo bench --bench faults{}`\n",
            args_line(self.opts)
        );
        if let Some(why) = &self.a_unavailable {
            let _ = writeln!(s, "**Tool A was not available in this run:** {why}\n");
        }
        for e in &self.errors {
            let _ = writeln!(s, "**Error:** {e}\n");
        }
    }

    /// Seconds to recover per fault and tool.
    fn recovery_section(&self, s: &mut String, tools: &[Tool]) {
        let _ = writeln!(s, "## Time to recover\n");
        let _ = writeln!(
            s,
            "Seconds from the fault (from the heal for 3, 4, 7 and 11; from the first use after the flow was forgotten for 5; \
             from the new address for 8; from the thaw for 9; from the end of the upload for 10) \
             until **both** forwards carry data again (median, max, recovered/trials). \
             \"never\" = not within {} s.\n",
            self.opts.deadline_secs
        );
        fault_table(s, &self.opts.faults, tools, |f, t| self.recovery_text(f, t));
        let _ = writeln!(
            s,
            "\n![Median time to recover per fault and tool](recovery.svg)"
        );
    }

    /// Connections to sshd during the outage.
    fn attempts_section(&self, s: &mut String, tools: &[Tool]) {
        let _ = writeln!(s, "\n## Connection attempts during the outage\n");
        let _ = writeln!(
            s,
            "TCP connections the tool opened to sshd from the fault until it recovered (or the deadline): distinct SYNs counted by nftables on the server, median (max).\n"
        );
        fault_table(s, &self.opts.faults, tools, |f, t| {
            let c = self.cell(f, t);
            match c.attempts_median {
                Some(m) if self.available(t) => format!("{m:.0} ({})", c.attempts_max),
                _ => "—".into(),
            }
        });
    }

    /// When the old server session exited, on the faults where it was watched.
    fn old_session_section(&self, s: &mut String, tools: &[Tool]) {
        let watched: Vec<Fault> = self
            .opts
            .faults
            .iter()
            .copied()
            .filter(|f| {
                self.trials
                    .iter()
                    .any(|r| r.fault == *f && r.old_session_secs.is_some())
            })
            .collect();
        if !watched.is_empty() {
            let _ = writeln!(s, "\n## How long the old server session lived\n");
            let _ = writeln!(
                s,
                "Seconds after the fault at which the server's session process of the broken connection exited, median (max). \
                 Until then it holds the remote port, so no reconnect's `-R` can succeed: on faults 5 and 6 this, not the tool, \
                 sets the floor for every tool. It exits early only when the client side closes the connection in a way the server \
                 hears (a killed ssh, on fault 1); otherwise its `ClientAliveInterval 5` × `ClientAliveCountMax 2` decides.\n"
            );
            fault_table(s, &watched, tools, |f, t| {
                let mut v: Vec<f64> = self
                    .counted(f, t)
                    .filter_map(|r| r.old_session_secs)
                    .collect();
                match median_max(&mut v) {
                    Some((m, x)) => format!("{m:.1} ({x:.1})"),
                    _ => "—".into(),
                }
            });
        }
    }

    /// Processes left after each stop, and the longest stop.
    fn leftovers_section(&self, s: &mut String, tools: &[Tool]) {
        let _ = writeln!(
            s,
            "\n## Processes left behind after `systemctl --user stop`\n"
        );
        let _ = writeln!(
            s,
            "Summed over all trials (the unit is stopped and started again after each trial).\n"
        );
        fault_table(s, &self.opts.faults, tools, |f, t| {
            if self.available(t) {
                self.cell(f, t).leftovers.to_string()
            } else {
                "—".into()
            }
        });
        let stops: Vec<String> = tools
            .iter()
            .filter_map(|&t| {
                let v: Vec<f64> = self
                    .trials
                    .iter()
                    .filter(|r| r.tool == t)
                    .map(|r| r.stop.stop_secs)
                    .collect();
                (!v.is_empty()).then(|| {
                    format!(
                        "{} {:.1} s",
                        t.letter(),
                        v.iter().copied().fold(0.0, f64::max)
                    )
                })
            })
            .collect();
        if !stops.is_empty() {
            let _ = writeln!(s, "\nLongest `stop` per tool: {}.", stops.join(", "));
        }
    }

    /// The idle footprint lane.
    fn footprint_section(&self, s: &mut String) {
        if !self.footprint.is_empty() {
            let secs = self.footprint.first().map(|f| f.1.seconds).unwrap_or(0.0);
            let _ = writeln!(s, "\n## Idle footprint over {:.1} minutes\n", secs / 60.0);
            let _ = writeln!(
                s,
                "Supervising process = the unit's main process (A: tunnel-watchdog, B/C: autossh, D: sh). \
                 CPU = its time on a CPU over the window (/proc/PID/schedstat, ns); children = CPU of children it reaped in the window (probe processes, exited ssh). \
                 ssh spawned = ssh processes that appeared in the unit's cgroup (polled every 200 ms); connections = SYNs to sshd.\n"
            );
            let _ = writeln!(
                s,
                "| tool | supervisor | RSS max | CPU s | children CPU s | ssh RSS | ssh spawned | connections | restarts | healthy at end | left after stop |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
            for (t, f, st) in &self.footprint {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.2} MiB | {:.3} | {:.2} | {:.1} MiB | {} | {} | {} | {} | {} |",
                    t.label(),
                    f.supervisor,
                    f.rss_kib_max as f64 / 1024.0,
                    f.cpu_secs,
                    f.children_cpu_secs,
                    f.ssh_rss_kib as f64 / 1024.0,
                    f.ssh_spawned,
                    f.connections,
                    f.supervisor_changes,
                    if f.healthy_at_end { "yes" } else { "**no**" },
                    st.leftovers.len(),
                );
            }
        }
    }

    /// Tool A against the targets set for each fault.
    fn targets_section(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Tool A against its targets\n");
        for line in self.target_verdicts() {
            let _ = writeln!(s, "- {line}");
        }
    }

    /// Notes from the lanes (once per trial) and from the tools.
    fn notes_section(&self, s: &mut String) {
        // Lane notes once per trial, tool notes per tool.
        let mut notes: Vec<String> = Vec::new();
        for r in &self.trials {
            let lane = format!(
                "fault {} trial {}: {}",
                r.fault.number(),
                r.trial,
                r.lane_note
            );
            if !r.lane_note.is_empty() && !notes.contains(&lane) {
                notes.push(lane);
            }
            if !r.note.is_empty() {
                notes.push(format!(
                    "fault {} trial {} {}: {}",
                    r.fault.number(),
                    r.trial,
                    r.tool.letter(),
                    r.note
                ));
            }
        }
        if !notes.is_empty() {
            let _ = writeln!(s, "\n## Notes from the run\n");
            for n in notes.iter().take(60) {
                let _ = writeln!(s, "- {n}");
            }
        }
    }

    /// How to read the results, how they are measured, the faults, the tools, tool A's unit.
    fn method_section(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Reading the results\n");
        let _ = writeln!(s, "{}", READING.trim());

        let _ = writeln!(s, "\n## How it is measured\n");
        let _ = writeln!(s, "{}", METHOD.trim());
        let _ = writeln!(s, "\nThe faults:\n");
        for &f in &Fault::ALL {
            let _ = writeln!(
                s,
                "{}. **{}** — {} Clock starts at: {}.",
                f.number(),
                f.title(),
                f.how(),
                f.clock_starts()
            );
        }
        let _ = writeln!(s, "\nThe tools:\n");
        for t in Tool::ALL {
            let _ = writeln!(s, "- **{}**: {}", t.label(), t.describe());
        }
        if let Some(unit) = &self.a_unit {
            let _ = writeln!(
                s,
                "\nTool A's unit as `tunnelctl render` produced it (lane 0 or the first lane; `$CARGO_TARGET_DIR` \
                 is cargo's target directory, `target/` by default, and `$BENCH_DIR` the bench's temporary directory):\n\n```ini\n{}\n```",
                unit.trim()
            );
        }
    }

    /// Fault 8's two times: `-L` alone, and `-R` from the old session's exit (its floor).
    fn address_change_section(&self, s: &mut String, tools: &[Tool]) {
        let f = Fault::AddressChanged;
        if !self.opts.faults.contains(&f) {
            return;
        }
        let _ = writeln!(s, "\n## Fault 8: `-L` and `-R` separately\n");
        let _ = writeln!(
            s,
            "Seconds from the new address until `-L` alone carried data; until `-R` did too (the table above); the old \
             server session's exit (the floor for `-R`: it holds the remote port until then); and `-R` after that floor, \
             as on fault 6. Median (max).\n"
        );
        type Pick = fn(&TrialResult) -> Option<f64>;
        let rows: [(&str, Pick); 4] = [
            ("`-L` carries data", |r| r.local_secs),
            ("both (`-R` too)", |r| r.recovery_secs),
            ("old session exited", |r| r.old_session_secs),
            ("`-R` after the floor", after_floor),
        ];
        measure_table(s, tools, &rows, |pick, t| {
            let mut v: Vec<f64> = self.counted(f, t).filter_map(pick).collect();
            match median_max(&mut v) {
                Some((m, x)) if self.available(t) => format!("{m:.1} s ({x:.1})"),
                _ => "—".into(),
            }
        });
    }

    /// Fault 10: false alarms and check latency under a saturated uplink.
    fn slow_uplink_section(&self, s: &mut String, tools: &[Tool]) {
        let f = Fault::SlowUplink;
        if !self.opts.faults.contains(&f) {
            return;
        }
        let _ = writeln!(s, "\n## Fault 10: saturated uplink, 60 s upload\n");
        let _ = writeln!(
            s,
            "Summed over the counted trials: ssh processes started during the upload (a restart of ssh: a false alarm that \
             cuts the upload), restarts of the unit's main process, connections to sshd during the upload, uploads cut, \
             megabytes written into `-L`; then the latency of the end-to-end checks through `-L` (every 2 s, median and \
             max) and how many did not pass within 20 s.\n"
        );
        type Total = fn(&[&TrialResult]) -> String;
        let rows: [(&str, Total); 7] = [
            ("ssh restarts", |rs| {
                slow_total(rs, |x| x.ssh_started).to_string()
            }),
            ("unit restarts", |rs| {
                slow_total(rs, |x| x.unit_restarts).to_string()
            }),
            ("connections to sshd", |rs| {
                let upload = crate::slowlink::UPLOAD.as_secs_f64();
                rs.iter()
                    .map(|r| {
                        r.attempt_times
                            .iter()
                            .filter(|&&t| t <= upload + 1.0)
                            .count()
                    })
                    .sum::<usize>()
                    .to_string()
            }),
            ("uploads cut", |rs| {
                slow_total(rs, |x| x.uploads_cut).to_string()
            }),
            ("MB uploaded", |rs| {
                format!("{:.1}", slow_total(rs, |x| x.bytes) as f64 / 1e6)
            }),
            ("check latency", |rs| {
                let mut v: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.slow.as_ref())
                    .flat_map(|x| x.check_secs.iter().copied())
                    .collect();
                match median_max(&mut v) {
                    Some((m, x)) => format!("{m:.2} s (max {x:.2})"),
                    _ => "—".into(),
                }
            }),
            ("checks failed", |rs| {
                let failed = slow_total(rs, |x| x.checks_failed);
                let passed = slow_total(rs, |x| x.check_secs.len());
                format!("{failed}/{}", failed + passed)
            }),
        ];
        measure_table(s, tools, &rows, |total, t| {
            let rs: Vec<&TrialResult> = self.counted(f, t).filter(|r| r.slow.is_some()).collect();
            if rs.is_empty() || !self.available(t) {
                "—".into()
            } else {
                total(&rs)
            }
        });
    }

    /// The trials of `tool` on fault 11 that count and carry the crowd's figures.
    fn crowd_trials(&self, tool: Tool) -> Vec<&crate::lane::CrowdStats> {
        self.counted(Fault::Crowd, tool)
            .filter_map(|r| r.crowd.as_ref())
            .collect()
    }

    /// Fault 11: a crowd of tunnels per tool against one sshd with the default MaxStartups.
    fn crowd_section(&self, s: &mut String, tools: &[Tool]) {
        let f = Fault::Crowd;
        if !self.opts.faults.contains(&f) {
            return;
        }
        let _ = writeln!(
            s,
            "\n## Fault 11: {} tunnels per tool, sshd restarted\n",
            self.opts.crowd
        );
        let _ = writeln!(
            s,
            "Seconds from sshd's return until the first tunnel, the median tunnel (over every tunnel of every counted \
             trial) and every tunnel carried data on both forwards (median and max over the trials); then per trial, \
             median (max): connections sshd dropped past `MaxStartups 10:30:100`, logins (successful \
             authentications, from sshd's log) and connections to sshd (SYNs).\n"
        );
        type Pick = fn(&Report, Tool) -> String;
        fn per_trial(v: Vec<f64>) -> String {
            let mut v = v;
            match median_max(&mut v) {
                Some((m, x)) => format!("{m:.0} ({x:.0})"),
                None => "—".into(),
            }
        }
        let rows: [(&str, Pick); 6] = [
            ("first tunnel up", |r, t| {
                let mut v: Vec<f64> = r
                    .crowd_trials(t)
                    .iter()
                    .filter_map(|c| c.tunnel_secs.iter().copied().reduce(f64::min))
                    .collect();
                match median_max(&mut v) {
                    Some((m, x)) => format!("{m:.1} s (max {x:.1})"),
                    None => "—".into(),
                }
            }),
            ("median tunnel up", |r, t| {
                let mut v: Vec<f64> = r
                    .crowd_trials(t)
                    .iter()
                    .flat_map(|c| c.tunnel_secs.iter().copied())
                    .collect();
                match median(&mut v) {
                    Some(m) => format!("{m:.1} s"),
                    None => "—".into(),
                }
            }),
            ("every tunnel up", |r, t| r.recovery_text(Fault::Crowd, t)),
            ("dropped by sshd", |r, t| {
                per_trial(r.crowd_trials(t).iter().map(|c| c.drops as f64).collect())
            }),
            ("logins", |r, t| {
                per_trial(r.crowd_trials(t).iter().map(|c| c.logins as f64).collect())
            }),
            ("connections to sshd", |r, t| {
                per_trial(
                    r.counted(Fault::Crowd, t)
                        .map(|x| x.attempts as f64)
                        .collect(),
                )
            }),
        ];
        measure_table(s, tools, &rows, |pick, t| {
            if self.available(t) {
                pick(self, t)
            } else {
                "—".into()
            }
        });
    }

    /// Fault 11: what each tool cost the server, beside its time (compared above).
    fn crowd_figures(&self, out: &mut Vec<String>) {
        if !self.opts.faults.contains(&Fault::Crowd) {
            return;
        }
        let figures: Vec<String> = self
            .tools()
            .into_iter()
            .filter_map(|t| {
                let cs = self.crowd_trials(t);
                let mut drops: Vec<f64> = cs.iter().map(|c| c.drops as f64).collect();
                let mut logins: Vec<f64> = cs.iter().map(|c| c.logins as f64).collect();
                Some(format!(
                    "{} {:.0} dropped, {:.0} logins",
                    t.letter(),
                    median(&mut drops)?,
                    median(&mut logins)?
                ))
            })
            .collect();
        if !figures.is_empty() {
            out.push(format!(
                "fault 11 ({} tunnels per tool), per trial, median: {}.",
                self.opts.crowd,
                figures.join("; ")
            ));
        }
    }

    /// Plain statements about tool A against each target; "MET" / "NOT MET".
    pub fn target_verdicts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(why) = &self.a_unavailable {
            out.push(format!("NOT MEASURED: tool A was not available ({why})."));
            return out;
        }
        let peers: Vec<Tool> = self.tools().into_iter().filter(|&t| t != Tool::A).collect();
        self.recovers_from_every_fault(&mut out);
        self.median_against_peers(&mut out, &peers);
        self.stale_listener_after_floor(&mut out);
        self.frozen_within_bound(&mut out);
        // Faults 8, 9 and 10 have targets of their own.
        self.address_change_targets(&mut out, &peers);
        self.sleep_target(&mut out);
        self.slow_uplink_target(&mut out);
        self.crowd_figures(&mut out);
        self.nothing_left_behind(&mut out);
        self.backoff_spacing(&mut out);
        self.footprint_targets(&mut out);
        out
    }

    /// 1. recovers from every fault
    fn recovers_from_every_fault(&self, out: &mut Vec<String>) {
        let failed: Vec<String> = self
            .opts
            .faults
            .iter()
            .filter_map(|&f| {
                let c = self.cell(f, Tool::A);
                (c.counted == 0 || c.recovered < c.counted)
                    .then(|| format!("fault {} ({}/{})", f.number(), c.recovered, c.counted))
            })
            .collect();
        out.push(if failed.is_empty() {
            "MET: A recovered in every trial of every fault run.".into()
        } else {
            format!("NOT MET: A did not always recover: {}.", failed.join(", "))
        });
    }

    /// 2. median no worse than the best peer that survives
    fn median_against_peers(&self, out: &mut Vec<String>, peers: &[Tool]) {
        for &f in &self.opts.faults {
            let a = self.cell(f, Tool::A);
            let best = peers
                .iter()
                .filter_map(|&t| {
                    let c = self.cell(f, t);
                    (c.counted > 0 && c.recovered == c.counted).then_some((t, c.median?))
                })
                .min_by(|x, y| x.1.total_cmp(&y.1));
            match (a.median, best) {
                (_, None) => out.push(format!(
                    "fault {}: no peer survived every trial; A {}.",
                    f.number(),
                    self.recovery_text(f, Tool::A)
                )),
                (Some(am), Some((t, bm))) if am <= bm + 0.05 => out.push(format!(
                    "MET fault {}: A median {am:.1} s ≤ best peer {} {bm:.1} s.",
                    f.number(),
                    t.letter()
                )),
                (Some(am), Some((t, bm))) => out.push(format!(
                    "NOT MET fault {}: A median {am:.1} s is {:.1} s slower than {} ({bm:.1} s).",
                    f.number(),
                    am - bm,
                    t.letter()
                )),
                (None, Some((t, bm))) => out.push(format!(
                    "NOT MET fault {}: A never recovered; {} did in {bm:.1} s.",
                    f.number(),
                    t.letter()
                )),
            }
        }
    }

    /// On fault 6 the clock starts at the fault, and each tool's old session freed the
    /// port at its own moment (it counts from the last traffic it heard): the time
    /// after that moment is what the tool's pacing decides.
    fn stale_listener_after_floor(&self, out: &mut Vec<String>) {
        if !self.opts.faults.contains(&Fault::StaleListener) {
            return;
        }
        let after: Vec<String> = self
            .tools()
            .into_iter()
            .filter_map(|t| {
                let mut lags: Vec<f64> = self
                    .counted(Fault::StaleListener, t)
                    .filter_map(after_floor)
                    .collect();
                Some(format!("{} {:.1} s", t.letter(), median(&mut lags)?))
            })
            .collect();
        if !after.is_empty() {
            out.push(format!(
                "fault 6 from the moment each tool's old session exited (median): {}.",
                after.join(", ")
            ));
        }
    }

    /// 3. faults 1 and 2 within probe.interval × failures + probe.timeout + 3 s
    fn frozen_within_bound(&self, out: &mut Vec<String>) {
        let bound = 5.0 * 2.0 + 5.0 + 3.0;
        for f in [Fault::ClientFrozen, Fault::SessionFrozen] {
            if !self.opts.faults.contains(&f) {
                continue;
            }
            let c = self.cell(f, Tool::A);
            match c.max {
                Some(x) if c.recovered == c.counted && x <= bound => out.push(format!(
                    "MET fault {}: A's worst {x:.1} s ≤ {bound:.0} s (5 s × 2 + 5 s + 3 s).",
                    f.number()
                )),
                Some(x) => out.push(format!(
                    "NOT MET fault {}: A's worst {x:.1} s > {bound:.0} s ({}/{} recovered).",
                    f.number(),
                    c.recovered,
                    c.counted
                )),
                None => out.push(format!(
                    "NOT MET fault {}: A never recovered (bound {bound:.0} s).",
                    f.number()
                )),
            }
        }
    }

    /// Fault 8: `-L` within 2 s and before every peer; `-R` within 1 s of its floor.
    fn address_change_targets(&self, out: &mut Vec<String>, peers: &[Tool]) {
        let f = Fault::AddressChanged;
        if !self.opts.faults.contains(&f) {
            return;
        }
        let mut l: Vec<f64> = self
            .counted(f, Tool::A)
            .filter_map(|r| r.local_secs)
            .collect();
        let mut lag: Vec<f64> = self.counted(f, Tool::A).filter_map(after_floor).collect();
        let peers_l: Vec<(Tool, f64)> = peers
            .iter()
            .filter_map(|&t| {
                let mut v: Vec<f64> = self.counted(f, t).filter_map(|r| r.local_secs).collect();
                Some((t, median(&mut v)?))
            })
            .collect();
        match median(&mut l) {
            Some(m) => {
                let faster = peers_l
                    .iter()
                    .filter(|(_, p)| *p <= m)
                    .map(|(t, p)| format!("{} {p:.1} s", t.letter()))
                    .collect::<Vec<_>>();
                out.push(if m <= 2.0 && faster.is_empty() {
                    format!("MET fault 8: A's `-L` median {m:.1} s ≤ 2 s and before every peer.")
                } else {
                    format!(
                        "NOT MET fault 8: A's `-L` median {m:.1} s (target ≤ 2 s{}).",
                        if faster.is_empty() {
                            String::new()
                        } else {
                            format!(
                                ", and before every peer; as fast or faster: {}",
                                faster.join(", ")
                            )
                        }
                    )
                });
            }
            None => out.push("NOT MET fault 8: A's `-L` never carried data.".into()),
        }
        match median(&mut lag) {
            Some(m) if m <= 1.0 => out.push(format!("MET fault 8: A's `-R` median {m:.1} s after its server-side floor (≤ 1 s).")),
            Some(m) => out.push(format!("NOT MET fault 8: A's `-R` median {m:.1} s after its server-side floor (target ≤ 1 s).")),
            None => out.push("NOT MET fault 8: no `-R` time after the floor for A.".into()),
        }
    }

    /// Fault 9: within 3 s of the thaw.
    fn sleep_target(&self, out: &mut Vec<String>) {
        if !self.opts.faults.contains(&Fault::Sleep) {
            return;
        }
        let c = self.cell(Fault::Sleep, Tool::A);
        match c.median {
            Some(m) if m <= 3.0 => out.push(format!(
                "MET fault 9: A's median {m:.1} s ≤ 3 s after the thaw."
            )),
            Some(m) => out.push(format!(
                "NOT MET fault 9: A's median {m:.1} s after the thaw, {:.1} s over 3 s.",
                m - 3.0
            )),
            None => out.push("NOT MET fault 9: A never recovered after the thaw.".into()),
        }
    }

    /// Fault 10: no restart of ssh or of the unit during the upload.
    fn slow_uplink_target(&self, out: &mut Vec<String>) {
        if !self.opts.faults.contains(&Fault::SlowUplink) {
            return;
        }
        let rs: Vec<&TrialResult> = self.counted(Fault::SlowUplink, Tool::A).collect();
        let ssh = slow_total(&rs, |x| x.ssh_started);
        let unit = slow_total(&rs, |x| x.unit_restarts);
        out.push(if rs.is_empty() {
            "NOT MEASURED fault 10: no counted trial for A.".into()
        } else if ssh == 0 && unit == 0 {
            format!("MET fault 10: A restarted nothing in {} trial(s) of a saturated uplink.", rs.len())
        } else {
            format!("NOT MET fault 10: A started {ssh} new ssh and restarted its unit {unit} time(s) in {} trial(s) (target 0).", rs.len())
        });
    }

    /// 4. nothing left behind
    fn nothing_left_behind(&self, out: &mut Vec<String>) {
        let left: usize = self
            .trials
            .iter()
            .filter(|r| r.tool == Tool::A)
            .map(|r| r.stop.leftovers.len())
            .sum::<usize>()
            + self
                .footprint
                .iter()
                .filter(|f| f.0 == Tool::A)
                .map(|f| f.2.leftovers.len())
                .sum::<usize>();
        out.push(if left == 0 {
            "MET: no tool A process was left behind after any stop.".into()
        } else {
            format!(
                "NOT MET: {left} tool A process(es) were left behind after stops (see the JSON)."
            )
        });
    }

    /// 5. attempts follow the back-off: show the spacing on the outage faults
    fn backoff_spacing(&self, out: &mut Vec<String>) {
        for f in [Fault::BlackHole, Fault::SshdDown, Fault::SilentServer] {
            if let Some(r) = self.counted(f, Tool::A).next() {
                let times: Vec<String> =
                    r.attempt_times.iter().map(|t| format!("{t:.1}")).collect();
                out.push(format!(
                    "back-off, fault {} trial {}: A's connection attempts at [{}] s after the fault (back-off rules: docs/design.md; the unit adds RestartSec=1 s).",
                    f.number(),
                    r.trial,
                    times.join(", ")
                ));
            }
        }
    }

    /// 6. footprint: resident memory, and idle CPU against C's
    fn footprint_targets(&self, out: &mut Vec<String>) {
        let Some((_, fa, _)) = self.footprint.iter().find(|f| f.0 == Tool::A) else {
            return;
        };
        let mib = fa.rss_kib_max as f64 / 1024.0;
        out.push(if mib < 2.0 {
            format!("MET: watchdog resident memory {mib:.2} MiB < 2 MiB.")
        } else {
            format!(
                "NOT MET: watchdog resident memory {mib:.2} MiB ≥ 2 MiB (over by {:.2} MiB).",
                mib - 2.0
            )
        });
        if let Some((_, fc, _)) = self.footprint.iter().find(|f| f.0 == Tool::C) {
            let a = fa.cpu_secs + fa.children_cpu_secs;
            let c = fc.cpu_secs + fc.children_cpu_secs;
            out.push(if a <= c {
                format!("MET: A's idle CPU {a:.3} s (incl. children) ≤ C's {c:.3} s over the same window.")
            } else {
                format!("NOT MET: A's idle CPU {a:.3} s (incl. children) > C's {c:.3} s over the same window.")
            });
        }
    }

    pub fn json(&self) -> String {
        let m = &self.machine;
        let mut s = String::from("{\n");
        let _ = writeln!(
            s,
            "  \"machine\": {{\"cores\": {}, \"kernel\": {}, \"openssh\": {}, \"autossh\": {}, \"systemd\": {}, \"date\": {}, \"watchdog\": {}}},",
            m.cores,
            q(&m.kernel),
            q(&m.openssh),
            q(&m.autossh),
            q(&m.systemd),
            q(&m.date),
            q(&m.watchdog)
        );
        let _ = writeln!(
            s,
            "  \"options\": {{\"quick\": {}, \"tools\": {}, \"faults\": [{}], \"trials\": {}, \"footprint_minutes\": {}, \"deadline_secs\": {}, \"crowd\": {}}},",
            self.opts.quick,
            q(&self
                .opts
                .tools
                .iter()
                .map(|t| t.letter())
                .collect::<String>()),
            self.opts
                .faults
                .iter()
                .map(|f| f.number().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.opts.trials,
            self.opts.footprint_minutes,
            self.opts.deadline_secs,
            self.opts.crowd
        );
        let _ = writeln!(s, "  \"wall_secs\": {:.1},", self.wall_secs);
        let _ = writeln!(
            s,
            "  \"tool_a_unavailable\": {},",
            self.a_unavailable
                .as_deref()
                .map(q)
                .unwrap_or("null".into())
        );
        let _ = writeln!(
            s,
            "  \"errors\": [{}],",
            self.errors
                .iter()
                .map(|e| q(e))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(s, "  \"trials\": [");
        let rows: Vec<String> = self
            .trials
            .iter()
            .map(|r| {
                format!(
                    "    {{\"fault\": {}, \"tool\": \"{}\", \"trial\": {}, \"healthy_before\": {}, \"recovery_secs\": {}, \"attempts\": {}, \"attempt_times\": [{}], \"old_session_secs\": {}, \"local_secs\": {}, \"slow\": {}, \"crowd\": {}, \"stop_secs\": {:.2}, \"stopped\": {}, \"leftovers\": [{}], \"note\": {}, \"lane_note\": {}}}",
                    r.fault.number(),
                    r.tool.letter(),
                    r.trial,
                    r.healthy_before,
                    r.recovery_secs.map(|v| format!("{v:.2}")).unwrap_or("null".into()),
                    r.attempts,
                    r.attempt_times.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", "),
                    r.old_session_secs.map(|v| format!("{v:.2}")).unwrap_or("null".into()),
                    r.local_secs.map(|v| format!("{v:.2}")).unwrap_or("null".into()),
                    r.slow.as_ref().map(|x| format!(
                        "{{\"ssh_started\": {}, \"unit_restarts\": {}, \"uploads_cut\": {}, \"bytes\": {}, \"checks_failed\": {}, \"check_secs\": [{}]}}",
                        x.ssh_started, x.unit_restarts, x.uploads_cut, x.bytes, x.checks_failed,
                        x.check_secs.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
                    )).unwrap_or("null".into()),
                    r.crowd.as_ref().map(|c| format!(
                        "{{\"tunnels\": {}, \"drops\": {}, \"logins\": {}, \"tunnel_secs\": [{}]}}",
                        c.tunnels, c.drops, c.logins,
                        c.tunnel_secs.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
                    )).unwrap_or("null".into()),
                    r.stop.stop_secs,
                    r.stop.stopped,
                    r.stop.leftovers.iter().map(|l| q(l)).collect::<Vec<_>>().join(", "),
                    q(&r.note),
                    q(&r.lane_note)
                )
            })
            .collect();
        let _ = writeln!(s, "{}\n  ],", rows.join(",\n"));
        let _ = writeln!(s, "  \"footprint\": [");
        let rows: Vec<String> = self
            .footprint
            .iter()
            .map(|(t, f, st)| {
                format!(
                    "    {{\"tool\": \"{}\", \"seconds\": {:.1}, \"supervisor\": {}, \"rss_kib_max\": {}, \"rss_kib_end\": {}, \"cpu_secs\": {:.4}, \"children_cpu_secs\": {:.2}, \"ssh_rss_kib\": {}, \"ssh_spawned\": {}, \"connections\": {}, \"supervisor_changes\": {}, \"healthy_at_end\": {}, \"leftovers\": [{}]}}",
                    t.letter(),
                    f.seconds,
                    q(&f.supervisor),
                    f.rss_kib_max,
                    f.rss_kib_end,
                    f.cpu_secs,
                    f.children_cpu_secs,
                    f.ssh_rss_kib,
                    f.ssh_spawned,
                    f.connections,
                    f.supervisor_changes,
                    f.healthy_at_end,
                    st.leftovers.iter().map(|l| q(l)).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        let _ = writeln!(s, "{}\n  ]\n}}", rows.join(",\n"));
        s
    }

    /// Grouped bars: median time to recover per fault (groups) and tool (bars).
    /// A tool that never recovered gets a hatched bar to the deadline marked ✗.
    pub fn svg(&self) -> String {
        let tools = self.tools();
        let faults = &self.opts.faults;
        let deadline = self.opts.deadline_secs as f64;
        let (w, h) = (960.0, 440.0);
        let (left, right, top, bottom) = (60.0, 20.0, 50.0, 90.0);
        let plot_w = w - left - right;
        let plot_h = h - top - bottom;
        let group_w = plot_w / faults.len().max(1) as f64;
        let bar_w = (group_w * 0.8) / tools.len().max(1) as f64;
        let y = |secs: f64| top + plot_h - (secs.min(deadline) / deadline) * plot_h;
        let colors = ["#1b7837", "#2166ac", "#b2182b", "#8c6d31"];
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eee"/><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="3"/></pattern></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="{cx}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Median time to recover (s), lower is better; hatched ✗ = never within {deadline:.0} s</text>"##,
            cx = w / 2.0
        );
        // y grid
        let step = if deadline > 60.0 { 20.0 } else { 10.0 };
        let mut v = 0.0;
        while v <= deadline + 0.01 {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{x2}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v:.0}</text>"##,
                x2 = w - right,
                tx = left - 6.0,
                ty = yy + 4.0
            );
            v += step;
        }
        for (gi, &f) in faults.iter().enumerate() {
            let gx = left + gi as f64 * group_w + group_w * 0.1;
            for (ti, &t) in tools.iter().enumerate() {
                let x = gx + ti as f64 * bar_w;
                let c = self.cell(f, t);
                let color = colors[(t.index() - 1) as usize];
                if !self.available(t) || c.counted == 0 {
                    continue;
                }
                match c.median {
                    Some(m) => {
                        let yy = y(m);
                        let _ = writeln!(
                            s,
                            r##"<rect x="{x:.1}" y="{yy:.1}" width="{bw:.1}" height="{bh:.1}" fill="{color}"><title>{label} fault {n}: median {m:.1} s, max {mx:.1} s, {r}/{k} recovered</title></rect>"##,
                            bw = bar_w - 2.0,
                            bh = (top + plot_h - yy).max(1.0),
                            label = t.label(),
                            n = f.number(),
                            mx = c.max.unwrap_or(m),
                            r = c.recovered,
                            k = c.counted
                        );
                        let partial = if c.recovered < c.counted {
                            format!(" {}/{}", c.recovered, c.counted)
                        } else {
                            String::new()
                        };
                        let _ = writeln!(
                            s,
                            r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" font-size="10">{m:.0}{partial}</text>"##,
                            tx = x + (bar_w - 2.0) / 2.0,
                            ty = yy - 3.0
                        );
                    }
                    None => {
                        let yy = y(deadline);
                        let _ = writeln!(
                            s,
                            r##"<rect x="{x:.1}" y="{yy:.1}" width="{bw:.1}" height="{bh:.1}" fill="url(#hatch)" stroke="{color}"><title>{label} fault {n}: never recovered (0/{k})</title></rect><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" fill="{color}" font-weight="bold">✗</text>"##,
                            bw = bar_w - 2.0,
                            bh = plot_h,
                            label = t.label(),
                            n = f.number(),
                            k = c.counted,
                            tx = x + (bar_w - 2.0) / 2.0,
                            ty = yy - 4.0
                        );
                    }
                }
            }
            let _ = writeln!(
                s,
                r##"<text x="{tx:.1}" y="{ty:.1}" text-anchor="middle">{n}. {title}</text>"##,
                tx = left + gi as f64 * group_w + group_w / 2.0,
                ty = top + plot_h + 16.0,
                n = f.number(),
                title = esc(short_title(f)),
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yb:.1}" x2="{x2}" y2="{yb:.1}" stroke="#333"/>"##,
            yb = top + plot_h,
            x2 = w - right
        );
        for (ti, &t) in tools.iter().enumerate() {
            let lx = left + ti as f64 * 200.0;
            let ly = h - 30.0;
            let _ = writeln!(
                s,
                r##"<rect x="{lx}" y="{ry}" width="14" height="14" fill="{c}"/><text x="{tx}" y="{ly}">{label}{na}</text>"##,
                ry = ly - 11.0,
                c = colors[(t.index() - 1) as usize],
                tx = lx + 20.0,
                label = esc(t.label()),
                na = if self.available(t) {
                    ""
                } else {
                    " (not available)"
                }
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn short_title(f: Fault) -> &'static str {
    match f {
        Fault::ClientFrozen => "client frozen",
        Fault::SessionFrozen => "session frozen",
        Fault::BlackHole => "black hole",
        Fault::SshdDown => "sshd down",
        Fault::ConntrackForgets => "conntrack",
        Fault::StaleListener => "stale -R port",
        Fault::SilentServer => "silent server",
        Fault::AddressChanged => "new address",
        Fault::Sleep => "sleep 60 s",
        Fault::SlowUplink => "slow uplink",
        Fault::Crowd => "crowd, sshd restart",
    }
}

/// One table row: the fault, then a cell per tool.
fn fault_row(s: &mut String, f: Fault, cells: &[String]) {
    let _ = writeln!(
        s,
        "| {} {} | {} |",
        f.number(),
        f.title(),
        cells.join(" | ")
    );
}

/// A table with a row per fault in `faults` and a cell per tool.
fn fault_table(
    s: &mut String,
    faults: &[Fault],
    tools: &[Tool],
    cell: impl Fn(Fault, Tool) -> String,
) {
    header(s, "fault", tools);
    for &f in faults {
        let cells: Vec<String> = tools.iter().map(|&t| cell(f, t)).collect();
        fault_row(s, f, &cells);
    }
}

/// A table with a named row per measure and a cell per tool (its corner is empty).
fn measure_table<M>(
    s: &mut String,
    tools: &[Tool],
    rows: &[(&str, M)],
    cell: impl Fn(&M, Tool) -> String,
) {
    let names: Vec<&str> = tools.iter().map(|t| t.label()).collect();
    let _ = writeln!(s, "| | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(tools.len()));
    for (name, m) in rows {
        let cells: Vec<String> = tools.iter().map(|&t| cell(m, t)).collect();
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
}

fn header(s: &mut String, first: &str, tools: &[Tool]) {
    let names: Vec<&str> = tools.iter().map(|t| t.label()).collect();
    let _ = writeln!(s, "| {first} | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(tools.len()));
}

fn args_line(o: &Options) -> String {
    let mut a = String::from(" --");
    if o.quick {
        a.push_str(" --quick");
    }
    a.push_str(&format!(
        " --tools {}",
        o.tools
            .iter()
            .map(|t| t.letter().to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    a.push_str(&format!(
        " --faults {}",
        o.faults
            .iter()
            .map(|f| f.number().to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    a.push_str(&format!(
        " --trials {} --footprint-minutes {}",
        o.trials, o.footprint_minutes
    ));
    if o.faults.contains(&Fault::Crowd) {
        a.push_str(&format!(" --crowd {}", o.crowd));
    }
    if a == " --" { String::new() } else { a }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A JSON string literal.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const READING: &str = "
- **Detection.** B and D learn of a dead tunnel only when ssh exits, that is from ssh's own ServerAliveInterval 5 s ×
  ServerAliveCountMax 2; a frozen ssh never exits, so they never recover from fault 1. C sends data around its monitor
  loop every AUTOSSH_POLL = 5 s and restarts ssh after one failed poll, but it cannot get rid of a stopped ssh (it sends
  SIGTERM and waits). A proves both forwards every `probe.interval` (5 s). A round's time-out adapts to the measured
  round trips (RFC 6298: SRTT + 4·RTTVAR, at least 1 s, at most `probe.timeout`); a round unanswered by then is
  confirmed at once by a second round of twice that (of the same length when the server's machine has acknowledged
  every request and only its sshd is silent, `tcpi_unacked`), and ssh is killed only if the server sent nothing
  meanwhile (ssh's TCP socket, `tcpi_last_data_recv` through sock_diag): a frozen server session costs about
  interval/2 + 2 s on a fast path. Probes that wait behind the user's traffic while the server keeps sending are slow, not dead (fault 10). A
  refused forward costs much less. A also listens to the kernel's network changes (rtnetlink): when ssh's local
  address goes or the route to the server changes it reconnects at once (fault 8); another change brings a probe
  round now; and a wake-up much later than asked (a sleep or freeze, fault 9) brings a probe round at once, where one
  silent round is enough to reconnect.
- **Reconnect pacing.** After a failure A's watchdog exits and systemd restarts it after RestartSec=1 s. A tunnel that
  had proven itself gets its first retry without waiting; later failures wait 2 s, 4 s, … (±15 % jitter, at most
  5 min). After a failure where ssh got no SSH greeting (refused, unreachable, connect or banner time-out) A starts
  no ssh until the server greets: once a second (four times a second while the port refuses, in the first 10 s) it connects, sends an
  identification line and waits for `SSH-` (these checks are among the connections counted above). A `-R` port the server refuses is asked for again every
  500 ms over one new connection (through ssh's control socket), for up to a minute, while the other forwards work. See docs/design.md. autossh retries at once and slows down
  on its own schedule; the loop retries every 5 s. The loop's 5 s rhythm divides the 20 s and 30 s hold times of
  faults 4 and 7, so its retries tend to fall just after the heal: part of its figures there is phase luck. The
  same holds for autossh's schedule against the moment the server frees the remote port on fault 6: one run's 30 s
  is another's 62 s.
- **The server's side.** On faults 5 and 6 (and on 1 for B, C and D) the old session keeps the remote port until sshd
  drops it (see the session table), so every tool's `-R` is refused until then. On this OpenSSH that took about 30 s
  with ClientAliveInterval 5 × ClientAliveCountMax 2, not the 10 to 15 s the settings suggest. The times on these
  faults are that floor plus how soon after it the tool tries again. The floor differs by tool by up to about half
  a second: the server counts from the last traffic it heard on the old connection, so it depends on where the
  fault fell between the tool's keepalives or probes; the fault 6 line under the targets counts from each tool's
  own floor.
- **Faults 8 to 10.** On fault 8 the old flow's packets go nowhere and the server hears nothing: B, C and D wait
  for their own timeouts (ssh's ServerAlive, C's monitor loop), while A hears the change from the kernel (rtnetlink,
  src/watchdog/netevents/) and reconnects at once. On fault 9 a freeze keeps
  CLOCK_MONOTONIC running, so every timer is overdue at the thaw and fires at once: this measures recovery after a
  freeze, not the late wake of timers after a real suspend (see the clock-gap decision, src/watchdog/clock.rs). On
  fault 10 a probe through the tunnel waits behind the upload in ssh's send buffer and the shaper's queue; a fixed
  probe timeout shorter than that queue is a false alarm (src/watchdog/rtt.rs adapts the timeout to the measured
  round trip).
- **Fault 11.** A bastion that restarts sees every tunnel of every box come back in the same second. sshd lets 10
  unauthenticated connections in at once and drops new ones at random beyond that (30 % at first, all at 100), so a
  crowd that reconnects at once loses most of its first attempts; what counts then is how soon and how spread out
  each tool tries again, and how many more connections (drops, logins) it costs the server.
";

const METHOD: &str = "
Topology. One client network namespace and, per fault, one server namespace (a *lane*), joined by a veth pair
(10.213.L.2/30 client, 10.213.L.1/30 server). Each server namespace runs its own sshd (throwaway ed25519 keys,
`ClientAliveInterval 5`, `ClientAliveCountMax 2`, `AllowTcpForwarding yes`, `StrictModes no`, one port per tool,
2201–2204, `MaxStartups 100:30:200` so that no tool's reconnects are throttled by another's; fault 11 runs one sshd per
tool with the default MaxStartups instead) and its own nftables table: a stateful firewall (conntrack, established timeout 20 s, loose pickup off,
invalid packets dropped), the hooks the faults use, and a set that records every SYN (client address, client port,
server port), which counts connection attempts per tool even while sshd is down or the path is black-holed.
A line server that speaks first and echoes a line listens on 127.0.0.1:9000 in every server namespace (the local
forwards' target) and on 127.0.0.1:9001 in the client namespace (the remote forwards' target).

Supervision. One real `systemd --user` (systemd 252) runs inside the client namespace, in a private mount namespace
with a tmpfs /run and its own cgroup, and supervises every tool instance as a unit with `Restart=always`,
`RestartSec=1s` (B, C, D: hand-written units with `StartLimitIntervalSec=0` and `TimeoutStopSec=10s`; A: the unit
`tunnelctl render --target systemd-user` produces, from a generated tunnels.yaml). Every tool runs ssh with
`ServerAliveInterval=5`, `ServerAliveCountMax=2`, `ConnectTimeout=10`, `ExitOnForwardFailure=yes`, `BatchMode=yes`,
one `-L` and one `-R` forward.

Time budget. The faults run at the same time, each in its own lane, and all four tools of a lane see the
same fault at the same instant (one injection, four observations). The crowd (fault 11) runs once the other faults
are done: its logins, 20 per tool at once, would load the machine under their recoveries. The footprint is measured
at the same time on one more lane that is never faulted. A trial lasts until every tool recovered or the deadline
passed, so one round of trials takes about as long as the slowest fault (hold time + deadline), and N trials take
N rounds; the lanes do not wait for each other.

Recovery. From the clock's start the bench checks each tool every 250 ms: connect to the local forward in the client
namespace, read the far target's banner, send a nonce, read it back; then the same through the remote forward from
the server namespace (1.5 s timeout per read). The recovery time is the start of the first check that passes both
ways, so it is exact to about one check period (0.25 s, up to 1.75 s while a forward hangs instead of refusing).
While the tool's old server session (faults 1, 2, 5, 6, 8, 9) still lives, it holds the remote port, so the tool has not
recovered and the bench does not connect there: on this OpenSSH, connections to a stale session's listener keep that
session alive past its ClientAliveInterval × ClientAliveCountMax (measured: a session whose client was stopped was
not freed within 54 s while its port was probed every 250 ms, and freed after 10.7 s when left alone, with 2 s × 2), so
checking would change what is measured.
After each trial every unit is stopped (`systemctl --user stop`, 30 s at most) and whatever is left in its cgroup or in
the client namespace with its forward on the command line is counted and killed. Then, with every unit stopped, the
bench waits until the server holds no session of any tool (polled every 250 ms; one still there after 60 s is killed;
the notes say when a session outlived the stop): a session whose client vanished without a FIN (on fault 8 the
address its connection used is gone once the move is undone) lives until ClientAlive drops it, holding the tool's
remote port, and the checks through that port would keep it alive, as above. So every trial starts alike for every
tool: no session of its own left on the server, its unit just started. The units are started again; the next trial
starts 10 s and a random part of 5 s after every tool is healthy, the same moment for every tool (every tool checks
every 5 s: struck a fixed time after they came up, the fault would fall at the same place of each tool's check cycle
in every trial); a tool not healthy within 60 s is restarted once, and a trial where a tool was not healthy does not
count for it. While A's unit is stopped between trials the bench deletes the watchdog's
state file, which carries its count of consecutive failures: the watchdog itself forgets that count after
`backoff.max` (5 min) of uptime, and trials stand for independent faults, not for one fault after another.
Connection attempts are SYNs to the tool's sshd port: for A they include the checks, one a second while it waits
(four a second while the port refuses them, in the first 10 s of a wait), of whether the server greets again.

Footprint. The unit's main process is sampled every second for RSS (VmRSS) and CPU (its time on a CPU from
/proc/PID/schedstat in nanoseconds, and cutime+cstime in 10 ms ticks of its reaped children); ssh processes are counted from the unit's cgroup every 200 ms (a process living less than
that can be missed: the connection count from nftables does not miss any).
";

/// Checks that every fault has a description (used by the self-check at start-up).
pub fn self_check() {
    for f in faults::Fault::ALL {
        assert!(!f.how().is_empty());
    }
    assert_eq!(q("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    // This bench binary is dynamically linked; a bare header is not.
    assert!(has_interpreter(
        &std::fs::read("/proc/self/exe").unwrap_or_default()
    ));
    assert!(!has_interpreter(b"\x7fELF\x02\x01"));
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
}
