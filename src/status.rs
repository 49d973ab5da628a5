//! `tunnelctl status`: one row per tunnel from the watchdog's state file and, under
//! systemd, what the manager says. Reading is at the edges (`read_row`, the target's
//! `supervisor_view`); the table and the JSON are pure functions of the rows and the
//! current time.

use std::path::PathBuf;

use crate::duration::format_human;
use crate::state::{ForwardHealth, ForwardState, Phase, State};
use crate::targets::Target;

pub use crate::targets::InitInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub target: Option<Target>,
    /// The state file read, if one was found.
    pub state_file: Option<PathBuf>,
    pub state: Option<State>,
    /// Whether the watchdog pid in the state file is a live tunnel-watchdog.
    pub running: bool,
    pub init: Option<InitInfo>,
    /// Why there is no state (not found, unreadable, damaged).
    pub problem: Option<String>,
}

impl Row {
    /// The phase every command reports (`status`, its JSON, `metrics`): the watchdog's
    /// own while it runs; `stopped` otherwise, whatever its last state file said (a file
    /// left by a killed watchdog must not keep a tunnel up).
    pub fn phase(&self) -> Phase {
        match &self.state {
            Some(s) if self.running => s.phase,
            _ => Phase::Stopped,
        }
    }

    /// The one-word state shown: [`Row::phase`].
    pub fn state_word(&self) -> String {
        self.phase().to_string()
    }

    /// The state as reported: the file's, with [`Row::phase`], and every forward
    /// `unproven` when the watchdog is not running (nobody is proving it).
    pub fn reported_state(&self) -> State {
        let mut state = self.state.clone().unwrap_or_default();
        state.phase = self.phase();
        if !self.running {
            for f in &mut state.forwards {
                f.health = ForwardHealth::Unproven;
            }
        }
        state
    }

    /// Why a stopped tunnel is stopped, when its state file does not say it stopped
    /// cleanly: its watchdog died, or it never ran (and what systemd says then).
    fn stop_note(&self) -> Option<String> {
        if self.running {
            return None;
        }
        match &self.state {
            Some(s) if s.phase != Phase::Stopped => Some(format!(
                "the watchdog (pid {}) is gone without stopping; it last said {}",
                s.pid, s.phase
            )),
            Some(_) => None,
            None => {
                let mut note = self.problem.clone().unwrap_or_default();
                if let Some(i) = self.init.as_ref().filter(|i| !i.active_state.is_empty()) {
                    // The supervisor's own words, named after it (systemd's state/substate,
                    // s6-svstat's up/ready, sv's run/down).
                    let who = self.target.map_or("supervisor", |t| t.as_str());
                    let who = if who.starts_with("systemd") {
                        "systemd"
                    } else {
                        who
                    };
                    note = format!("{who}: {}/{}; {note}", i.active_state, i.sub_state);
                }
                Some(note)
            }
        }
    }

    pub fn verdict(&self) -> Verdict {
        match (&self.state, self.running) {
            (Some(s), true) if s.phase == Phase::Up => Verdict::Up,
            (Some(s), true) if s.phase == Phase::Degraded => Verdict::Degraded,
            _ => Verdict::Down,
        }
    }

    /// The forwards whose target refuses (what makes a tunnel degraded).
    pub fn targets_down(&self) -> Vec<&ForwardState> {
        self.state
            .iter()
            .flat_map(|s| &s.forwards)
            .filter(|f| f.health == ForwardHealth::TargetDown)
            .collect()
    }

    /// Connected now (up or degraded): the transport carries the forwards.
    fn connected(&self) -> bool {
        self.running
            && self
                .state
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Up | Phase::Degraded))
    }
}

/// What `status` concludes about a tunnel; its exit code is the worst of the selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Up,
    /// Connected and probed, but a forward's target refuses: no reconnect can fix it.
    Degraded,
    /// Anything else: not running, stopped, connecting, backing off, failed, no state.
    Down,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Up => "up",
            Verdict::Degraded => "degraded",
            Verdict::Down => "down",
        }
    }

    /// `status`'s exit code (like `systemctl is-active`, 0 only when all is well);
    /// 2 stays the usage error of every command.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Up => 0,
            Verdict::Down => 1,
            Verdict::Degraded => 3,
        }
    }
}

/// The schema number of `status --json`: bumped only when a key is removed or changes
/// meaning; new keys may appear within a schema.
pub const JSON_SCHEMA: u32 = 1;

/// The forward's destination as a person names it: `intranet:80` of
/// `-L 127.0.0.1:8080:intranet:80`, a socket path, or None (`-D`, a dynamic `-R`).
pub fn forward_target(spec: &str) -> Option<String> {
    let (flag, arg) = spec.trim().split_once(' ')?;
    if flag == "-D" {
        return None;
    }
    // Fields split on ':' outside [brackets] (IPv6 addresses).
    let mut fields: Vec<String> = vec![String::new()];
    let mut depth = 0u32;
    for c in arg.trim().chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                fields.push(String::new());
                continue;
            }
            _ => {}
        }
        fields.last_mut().expect("never empty").push(c);
    }
    match fields.len() {
        n if n >= 3 => Some(format!("{}:{}", fields[n - 2], fields[n - 1])),
        2 if fields[1].starts_with('/') => Some(fields[1].clone()),
        _ => None,
    }
}

/// Reads `DIR/state`; checks that the pid in it is a live tunnel-watchdog.
pub fn read_row(name: &str, target: Option<Target>, dirs: &[PathBuf]) -> Row {
    let mut row = Row {
        name: name.into(),
        target,
        state_file: None,
        state: None,
        running: false,
        init: None,
        problem: None,
    };
    let mut problems = Vec::new();
    for dir in dirs {
        let file = dir.join("state");
        match crate::state::read_state_file(dir) {
            Ok(Some((bytes, modified))) => {
                match State::from_text(&String::from_utf8_lossy(&bytes)) {
                    Ok(state) => {
                        let state = state.touched(modified);
                        row.running = watchdog_alive(state.pid);
                        row.state = Some(state);
                    }
                    Err(e) => row.problem = Some(format!("{}: {e}", file.display())),
                }
                row.state_file = Some(file);
                return row;
            }
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    row.problem = Some(if problems.is_empty() {
        let looked: Vec<String> = dirs
            .iter()
            .map(|d| d.join("state").display().to_string())
            .collect();
        format!(
            "no state file (looked at {}): the watchdog has not run here",
            looked.join(", ")
        )
    } else {
        problems.join("; ")
    });
    row
}

/// A live process named tunnel-watchdog (the kernel's short name, 15 bytes on Linux:
/// exactly that name), not a zombie (exited, not yet reaped: gone, though its pid is taken).
pub fn watchdog_alive(pid: u32) -> bool {
    crate::procinfo::is_alive_named(pid, "tunnel-watchdog")
}

fn ago(now: u64, then: u64) -> String {
    if then == 0 {
        return "-".into();
    }
    if now <= then {
        return "just now".into();
    }
    format!(
        "{} ago",
        format_human(std::time::Duration::from_secs(now.saturating_sub(then)))
    )
}

/// The table cells of one row (pure).
pub fn cells(row: &Row, now: u64) -> [String; 7] {
    let target = row.target.map_or("-".to_string(), |t| t.to_string());
    let mut state = row.state_word();
    let (up, probe, restarts, error) = match &row.state {
        Some(s) => {
            if row.running && s.phase == Phase::BackingOff && s.backoff_until > now {
                state = if s.no_greeting {
                    // ssh starts as soon as the server greets; backoff_until is the latest.
                    format!("waiting-for-server (≤{}s)", s.backoff_until - now)
                } else {
                    format!("backing-off {}s", s.backoff_until - now)
                };
            }
            let up = if row.connected() {
                ago(now, s.connected_since)
            } else {
                "-".into()
            };
            let probe = if s.last_probe_ok == 0 {
                "-".into()
            } else {
                format!("{}, {} ms", ago(now, s.last_probe_ok), s.last_probe_ms)
            };
            let mut restarts = s.restarts.to_string();
            if let Some(i) = row.init.as_ref().filter(|i| i.n_restarts > 0) {
                restarts.push_str(&format!(" (+{} by systemd)", i.n_restarts));
            }
            let down = row.targets_down();
            let error = if let Some(note) = row.stop_note() {
                if s.last_error.is_empty() {
                    note
                } else {
                    format!("{note}: {}", s.last_error)
                }
            } else if row.running && s.phase == Phase::Degraded && !down.is_empty() {
                // Which target is down is the one thing to know about a degraded tunnel.
                let named: Vec<String> = down
                    .iter()
                    .map(|f| match forward_target(&f.spec) {
                        Some(t) => format!("{t} ({})", f.spec),
                        None => f.spec.clone(),
                    })
                    .collect();
                format!("target down: {}", named.join(", "))
            } else if s.last_error.is_empty() {
                "-".into()
            } else {
                s.last_error.clone()
            };
            (up, probe, restarts, error)
        }
        None => (
            "-".into(),
            "-".into(),
            "-".into(),
            row.stop_note().unwrap_or_else(|| "-".into()),
        ),
    };
    // ssh's stderr reaches last_error: a terminal escape in it is shown, not obeyed.
    let error = crate::state::printable(&error);
    [row.name.clone(), target, state, up, probe, restarts, error]
}

pub const HEADERS: [&str; 7] = [
    "NAME",
    "TARGET",
    "STATE",
    "UP SINCE",
    "LAST PROBE",
    "RESTARTS",
    "LAST ERROR",
];

/// The aligned table (pure). Colour marks the state: green up, magenta degraded,
/// yellow on the way, red failed or not running. `verbose` adds one indented line per
/// forward under its tunnel: spec, health, since when, last probe latency.
pub fn table(rows: &[Row], now: u64, colour: bool, verbose: bool) -> String {
    let all: Vec<[String; 7]> = rows.iter().map(|r| cells(r, now)).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for cells in &all {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String], paint: Option<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let last = i == cells.len() - 1;
            let padded = if last {
                c.clone()
            } else {
                format!("{c:<w$}  ", w = widths[i])
            };
            match (i, paint) {
                (2, Some(code)) => {
                    out.push_str(&format!("\x1b[{code}m{}\x1b[0m{}", c, &padded[c.len()..]))
                }
                _ => out.push_str(&padded),
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&HEADERS.map(String::from), None);
    for (row, cells) in rows.iter().zip(&all) {
        let paint = colour.then(|| match (&row.state, row.running) {
            (Some(s), true) if s.phase == Phase::Up => "32",
            (Some(s), true) if s.phase == Phase::Degraded => "35",
            (Some(s), true) if s.phase == Phase::Failed => "31",
            (Some(_), true) => "33",
            (Some(s), false) if s.phase == Phase::Stopped => "2",
            _ => "31",
        });
        out.push_str(&line(cells, paint));
        if verbose {
            out.push_str(&forward_lines(row, now, colour));
        }
    }
    // The last network change or wake, under the table (a column would be empty for
    // most tunnels most of the time).
    for row in rows {
        if let Some(e) = row.state.as_ref().and_then(|s| s.last_event) {
            out.push_str(&format!("{}: {}\n", row.name, last_event_line(&e, now)));
        }
    }
    out
}

/// The forwards of one row, indented under it and aligned among themselves (pure).
fn forward_lines(row: &Row, now: u64, colour: bool) -> String {
    let Some(state) = &row.state else {
        return String::new();
    };
    let all: Vec<[String; 4]> = state
        .forwards
        .iter()
        .map(|f| {
            // Nobody proves the forwards of a watchdog that is not running: the tunnel's
            // word stands for them, their last health is history.
            let (health, since) = match (row.running, f.since) {
                (true, 0) => (f.health.to_string(), "-".to_string()),
                (true, t) => (f.health.to_string(), format!("since {}", ago(now, t))),
                (false, 0) => (row.state_word(), format!("was {}", f.health)),
                (false, t) => (
                    row.state_word(),
                    format!("was {} {}", f.health, ago(now, t)),
                ),
            };
            let latency = if f.latency_ms == 0 {
                "-".to_string()
            } else {
                format!("{} ms", f.latency_ms)
            };
            [f.spec.clone(), health, since, latency]
        })
        .collect();
    let mut widths = [0usize; 4];
    for cells in &all {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (f, cells) in state.forwards.iter().zip(&all) {
        let mut line = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i] - c.chars().count());
            let code = match f.health {
                _ if !row.running => "2",
                ForwardHealth::Up => "32",
                ForwardHealth::TargetDown => "35",
                ForwardHealth::Unproven => "33",
                ForwardHealth::PortHeld | ForwardHealth::Failed => "31",
            };
            if i == 1 && colour {
                line.push_str(&format!("\x1b[{code}m{c}\x1b[0m"));
            } else {
                line.push_str(c);
            }
            if i < cells.len() - 1 {
                line.push_str(&pad);
                line.push_str("  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `status --json` (pure): `{"schema": 1, "tunnels": [ROW…]}`, documented in
/// tunnelctl(1), STATUS JSON.
pub fn json_document(rows: &[Row], now: u64) -> serde_json::Value {
    serde_json::json!({
        "schema": JSON_SCHEMA,
        "tunnels": rows.iter().map(|r| json(r, now)).collect::<Vec<_>>(),
    })
}

/// "network changed 4 s ago: reconnected" (pure).
pub fn last_event_line(e: &crate::state::LastEvent, now: u64) -> String {
    let what = match e.kind {
        "wake" => "woke from sleep or a freeze",
        _ => "network changed",
    };
    format!("{what} {}: {}", ago(now, e.at), e.action)
}

/// The JSON value of one row (pure). Times are unix seconds; 0 means never.
pub fn json(row: &Row, now: u64) -> serde_json::Value {
    let s = row.state.clone().unwrap_or_default();
    let reported = row.reported_state();
    let forwards: Vec<serde_json::Value> = s
        .forwards
        .iter()
        .zip(&reported.forwards)
        .map(|(f, r)| {
            serde_json::json!({
                "spec": f.spec,
                "target": forward_target(&f.spec),
                "health": r.health.as_str(),
                "last_health": f.health.as_str(),
                "since": f.since,
                "latency_ms": f.latency_ms,
            })
        })
        .collect();
    serde_json::json!({
        "name": row.name,
        "target": row.target.map(|t| t.to_string()),
        "state": row.state_word(),
        "running": row.running,
        "state_file": row.state_file.as_ref().map(|p| p.display().to_string()),
        "pid": s.pid,
        "ssh_pid": s.ssh_pid,
        "connected_since": s.connected_since,
        "up_seconds": if row.connected() && s.connected_since > 0 { Some(now.saturating_sub(s.connected_since)) } else { None },
        "health": row.verdict().as_str(),
        "degraded": row.verdict() == Verdict::Degraded,
        "state_since": s.state_since,
        "state_seconds": if row.running && s.state_since > 0 { Some(now.saturating_sub(s.state_since)) } else { None },
        "reconnects": s.reconnects,
        "forwards": forwards,
        "last_probe_ok": s.last_probe_ok,
        "last_probe_ms": s.last_probe_ms,
        "consecutive_failures": s.consecutive_failures,
        "restarts": s.restarts,
        "last_error": s.last_error,
        "backoff_until": s.backoff_until,
        "last_event": s.last_event.map(|e| serde_json::json!({"kind": e.kind, "at": e.at, "action": e.action})),
        "init": row.init.as_ref().map(|i| serde_json::json!({
            "active_state": i.active_state,
            "sub_state": i.sub_state,
            "n_restarts": i.n_restarts,
            "status_text": i.status_text,
        })),
        "problem": row.stop_note().or_else(|| row.problem.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_row() -> Row {
        Row {
            name: "demo".into(),
            target: Some(Target::Inittab),
            state_file: Some("/x/state".into()),
            state: Some(State {
                phase: Phase::Up,
                pid: 1,
                ssh_pid: 2,
                connected_since: 1000,
                last_probe_ok: 1090,
                last_probe_ms: 12,
                consecutive_failures: 0,
                restarts: 3,
                last_error: String::new(),
                backoff_until: 0,
                proven: false,
                no_greeting: false,
                ..State::default()
            }),
            running: true,
            init: None,
            problem: None,
        }
    }

    /// A watchdog gone (or stopped) proves nothing: every command says `stopped`, and
    /// no forward under it reads `up`; its last health stays visible as history.
    #[test]
    fn a_stopped_tunnel_shows_no_forward_up() {
        let mut row = up_row();
        row.state.as_mut().unwrap().forwards = vec![ForwardState {
            spec: "-R 1234:localhost:22".into(),
            health: ForwardHealth::Up,
            since: 1090,
            latency_ms: 3,
        }];
        let live = table(std::slice::from_ref(&row), 1100, false, true);
        assert!(
            live.lines()
                .any(|l| l.trim_start().starts_with("-R 1234:localhost:22  up")),
            "{live}"
        );
        for phase in [Phase::Up, Phase::Stopped] {
            row.running = false;
            row.state.as_mut().unwrap().phase = phase;
            let text = table(std::slice::from_ref(&row), 1100, false, true);
            let forward = text
                .lines()
                .find(|l| l.contains("-R 1234"))
                .unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                forward.split_whitespace().collect::<Vec<_>>(),
                [
                    "-R",
                    "1234:localhost:22",
                    "stopped",
                    "was",
                    "up",
                    "10s",
                    "ago",
                    "3",
                    "ms"
                ],
                "{text}"
            );
            assert_eq!(cells(&row, 1100)[2], "stopped");
            let json = json(&row, 1100);
            assert_eq!(json["state"], "stopped");
            assert_eq!(json["forwards"][0]["health"], "unproven");
            assert_eq!(json["forwards"][0]["last_health"], "up");
            assert_eq!(row.reported_state().phase, Phase::Stopped);
        }
        // No state file at all: stopped too (what `metrics` exports), not `unknown`.
        row.state = None;
        row.problem = Some("no state file".into());
        assert_eq!(cells(&row, 1100)[2], "stopped");
        assert_eq!(cells(&row, 1100)[6], "no state file");
    }

    #[test]
    fn cells_read_like_a_person_would_say_it() {
        let c = cells(&up_row(), 1100);
        assert_eq!(c[2], "up");
        assert_eq!(c[3], "1m40s ago");
        assert_eq!(c[4], "10s ago, 12 ms");
        assert_eq!(c[5], "3");
        let mut dead = up_row();
        dead.running = false;
        assert_eq!(cells(&dead, 1100)[2], "stopped");
        assert_eq!(cells(&dead, 1100)[3], "-");
        let mut waiting = up_row();
        let s = waiting.state.as_mut().unwrap();
        (s.phase, s.backoff_until) = (Phase::BackingOff, 1130);
        assert_eq!(cells(&waiting, 1100)[2], "backing-off 30s");
        waiting.state.as_mut().unwrap().no_greeting = true;
        assert_eq!(cells(&waiting, 1100)[2], "waiting-for-server (≤30s)");
    }

    #[test]
    fn the_last_network_event_is_a_line_under_the_table() {
        assert!(!table(&[up_row()], 1100, false, false).contains("changed"));
        let mut row = up_row();
        row.state.as_mut().unwrap().last_event = Some(crate::state::LastEvent {
            kind: "network",
            at: 1096,
            action: "reconnected",
        });
        let t = table(&[row.clone()], 1100, false, false);
        assert!(
            t.ends_with("demo: network changed 4s ago: reconnected\n"),
            "{t}"
        );
        assert_eq!(json(&row, 1100)["last_event"]["action"], "reconnected");
    }

    #[test]
    fn table_is_plain_without_colour_and_json_has_the_fields() {
        let t = table(&[up_row()], 1100, false, false);
        assert!(t.starts_with("NAME  TARGET   STATE"), "{t}");
        assert!(!t.contains('\x1b'));
        assert!(table(&[up_row()], 1100, true, false).contains("\x1b[32mup\x1b[0m"));
        let j = json(&up_row(), 1100);
        assert_eq!(j["up_seconds"], 100);
        assert_eq!(j["state"], "up");
        assert_eq!(
            crate::targets::systemd::parse_show(
                "ActiveState=active\nSubState=running\nNRestarts=2\nStatusText=up 3s\n"
            )
            .n_restarts,
            2
        );
    }

    #[test]
    fn control_characters_from_ssh_are_shown_escaped_in_the_table() {
        let mut row = up_row();
        let s = row.state.as_mut().unwrap();
        s.phase = Phase::Failed;
        s.last_error = "ssh: \x1b]0;pwned\x07\x1b[2J gone".into();
        let t = table(&[row.clone()], 1100, false, false);
        assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
        assert!(t.contains("ssh: \\x1b]0;pwned\\x07\\x1b[2J gone"), "{t}");
        // JSON escapes them its own way: the raw text stays there.
        assert_eq!(
            json(&row, 1100)["last_error"],
            "ssh: \x1b]0;pwned\x07\x1b[2J gone"
        );
    }

    fn degraded_row() -> Row {
        let mut row = up_row();
        let s = row.state.as_mut().unwrap();
        s.phase = Phase::Degraded;
        s.state_since = 1060;
        s.reconnects = 4;
        s.forwards = vec![
            ForwardState {
                spec: "-L 127.0.0.1:8080:intranet:80".into(),
                health: ForwardHealth::TargetDown,
                since: 1060,
                latency_ms: 3,
            },
            ForwardState {
                spec: "-R 1234:localhost:22".into(),
                health: ForwardHealth::Up,
                since: 1000,
                latency_ms: 12,
            },
        ];
        row
    }

    #[test]
    fn a_degraded_tunnel_names_its_down_target_and_is_still_connected() {
        let row = degraded_row();
        let c = cells(&row, 1100);
        assert_eq!(c[2], "degraded");
        assert_eq!(c[3], "1m40s ago", "the transport is up");
        assert_eq!(
            c[6],
            "target down: intranet:80 (-L 127.0.0.1:8080:intranet:80)"
        );
        assert_eq!(row.verdict(), Verdict::Degraded);
        assert_eq!(up_row().verdict(), Verdict::Up);
        let mut gone = row.clone();
        gone.running = false;
        assert_eq!(gone.verdict(), Verdict::Down);
        assert_eq!(
            [Verdict::Up, Verdict::Degraded, Verdict::Down].map(Verdict::exit_code),
            [0, 3, 1]
        );
        assert!(
            table(std::slice::from_ref(&row), 1100, true, false)
                .contains("\x1b[35mdegraded\x1b[0m")
        );
    }

    #[test]
    fn verbose_shows_one_aligned_line_per_forward() {
        let t = table(&[degraded_row()], 1100, false, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "  -L 127.0.0.1:8080:intranet:80  target-down  since 40s ago    3 ms"
        );
        assert_eq!(
            lines[3],
            "  -R 1234:localhost:22           up           since 1m40s ago  12 ms"
        );
        // Without -v the table is what it always was.
        assert_eq!(
            table(&[degraded_row()], 1100, false, false).lines().count(),
            2
        );
    }

    #[test]
    fn forward_targets_are_the_far_end() {
        for (spec, want) in [
            ("-L 127.0.0.1:8080:intranet:80", Some("intranet:80")),
            ("-L 8080:intranet:80", Some("intranet:80")),
            ("-R 1234:localhost:22", Some("localhost:22")),
            ("-L 8080:[2001:db8::1]:443", Some("[2001:db8::1]:443")),
            ("-L 8080:/run/app.sock", Some("/run/app.sock")),
            ("-D 1080", None),
            ("-R 1080", None),
            ("garbage", None),
        ] {
            assert_eq!(forward_target(spec).as_deref(), want, "{spec}");
        }
    }

    #[test]
    fn json_is_versioned_and_carries_the_forwards() {
        let doc = json_document(&[degraded_row()], 1100);
        assert_eq!(doc["schema"], 1);
        let t = &doc["tunnels"][0];
        assert_eq!(t["state"], "degraded");
        assert_eq!(t["health"], "degraded");
        assert_eq!(t["degraded"], true);
        assert_eq!(t["state_since"], 1060);
        assert_eq!(t["state_seconds"], 40);
        assert_eq!(t["reconnects"], 4);
        assert_eq!(t["up_seconds"], 100);
        assert_eq!(t["forwards"][0]["health"], "target-down");
        assert_eq!(t["forwards"][0]["target"], "intranet:80");
        assert_eq!(t["forwards"][1]["latency_ms"], 12);
        assert_eq!(t["forwards"][1]["since"], 1000);
    }
}
