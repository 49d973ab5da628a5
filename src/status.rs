//! `tunnelctl status`: one row per tunnel from the watchdog's state file and, under
//! systemd, what the manager says. Reading is at the edges (`read_row`, `systemd_info`);
//! the table and the JSON are pure functions of the rows and the current time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::duration::format_human;
use crate::state::{Phase, State};
use crate::target::Target;

/// What systemd says about the unit (`systemctl show`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitInfo {
    pub active_state: String,
    pub sub_state: String,
    pub n_restarts: u64,
    pub status_text: String,
}

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
    /// The one-word state shown: the watchdog's phase while it runs; otherwise what is
    /// known (`stopped`, `not running`, systemd's state).
    pub fn state_word(&self) -> String {
        match (&self.state, self.running) {
            (Some(s), true) => s.phase.to_string(),
            (Some(s), false) if s.phase == Phase::Stopped => "stopped".into(),
            (Some(_), false) => "not running".into(),
            (None, _) => match &self.init {
                Some(i) if !i.active_state.is_empty() => {
                    format!("{}/{}", i.active_state, i.sub_state)
                }
                _ => "unknown".into(),
            },
        }
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
        match crate::safe_fs::read_trusted(&file, crate::watchdog::MAX_STATE_FILE) {
            Ok(Some(bytes)) => {
                match State::from_text(&String::from_utf8_lossy(&bytes)) {
                    Ok(state) => {
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

/// `systemctl [--user] show -p …` for the unit, or None when there is no systemd to ask.
pub fn systemd_info(unit: &str, user: bool) -> Option<InitInfo> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let mut cmd = Command::new("systemctl");
    if user {
        cmd.arg("--user");
    }
    let out = cmd
        .args([
            "show",
            "-p",
            "ActiveState,SubState,NRestarts,StatusText",
            "--",
            unit,
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(parse_show(&String::from_utf8_lossy(&out.stdout)))
}

pub fn parse_show(text: &str) -> InitInfo {
    let mut info = InitInfo::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("ActiveState", v)) => info.active_state = v.into(),
            Some(("SubState", v)) => info.sub_state = v.into(),
            Some(("NRestarts", v)) => info.n_restarts = v.parse().unwrap_or(0),
            Some(("StatusText", v)) => info.status_text = v.into(),
            _ => {}
        }
    }
    info
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
            let up = if row.running && s.phase == Phase::Up {
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
            let error = if s.last_error.is_empty() {
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
            row.problem.clone().unwrap_or_else(|| "-".into()),
        ),
    };
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

/// The aligned table (pure). Colour marks the state: green up, yellow on the way,
/// red failed or not running.
pub fn table(rows: &[Row], now: u64, colour: bool) -> String {
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
            (Some(s), true) if s.phase == Phase::Failed => "31",
            (Some(_), true) => "33",
            (Some(s), false) if s.phase == Phase::Stopped => "2",
            _ => "31",
        });
        out.push_str(&line(cells, paint));
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
    serde_json::json!({
        "name": row.name,
        "target": row.target.map(|t| t.to_string()),
        "state": row.state_word(),
        "running": row.running,
        "state_file": row.state_file.as_ref().map(|p| p.display().to_string()),
        "pid": s.pid,
        "ssh_pid": s.ssh_pid,
        "connected_since": s.connected_since,
        "up_seconds": if row.running && s.phase == Phase::Up && s.connected_since > 0 { Some(now.saturating_sub(s.connected_since)) } else { None },
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
        "problem": row.problem,
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
                last_event: None,
            }),
            running: true,
            init: None,
            problem: None,
        }
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
        assert_eq!(cells(&dead, 1100)[2], "not running");
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
        assert!(!table(&[up_row()], 1100, false).contains("changed"));
        let mut row = up_row();
        row.state.as_mut().unwrap().last_event = Some(crate::state::LastEvent {
            kind: "network",
            at: 1096,
            action: "reconnected",
        });
        let t = table(&[row.clone()], 1100, false);
        assert!(
            t.ends_with("demo: network changed 4s ago: reconnected\n"),
            "{t}"
        );
        assert_eq!(json(&row, 1100)["last_event"]["action"], "reconnected");
    }

    #[test]
    fn table_is_plain_without_colour_and_json_has_the_fields() {
        let t = table(&[up_row()], 1100, false);
        assert!(t.starts_with("NAME  TARGET   STATE"), "{t}");
        assert!(!t.contains('\x1b'));
        assert!(table(&[up_row()], 1100, true).contains("\x1b[32mup\x1b[0m"));
        let j = json(&up_row(), 1100);
        assert_eq!(j["up_seconds"], 100);
        assert_eq!(j["state"], "up");
        assert_eq!(
            parse_show("ActiveState=active\nSubState=running\nNRestarts=2\nStatusText=up 3s\n")
                .n_restarts,
            2
        );
    }
}
