//! `tunnelctl metrics [NAME] [--target T] [--state-dir DIR]`: every selected tunnel's
//! state file as the Prometheus text exposition format ([`crate::metrics`], the same
//! renderer the watchdog's `--metrics-file` uses), found exactly as `status` finds it.
//!
//! A tunnel whose watchdog is not running is exported as `stopped` with its forwards
//! `unproven`, whatever its last state file said: a file left by a killed watchdog must
//! not keep `tunnelctl_tunnel_up` at 1. A configured tunnel with no state file is
//! exported too (stopped, counters 0), so "configured but not running" is alertable
//! rather than an absent series; why it has no state goes to stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Context, Error};
use crate::cli::MetricsArgs;
use crate::metrics::{self, Tunnel};
use crate::state::State;
use crate::status::Row;

pub fn run(cx: &Context, args: MetricsArgs) -> Result<ExitCode, Error> {
    let rows = super::status::rows(
        cx,
        args.name.as_deref(),
        args.target,
        args.state_dir.as_deref(),
    )?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for row in &rows {
        if let Some(problem) = &row.problem {
            crate::errln!("tunnelctl metrics {}: {problem}", row.name);
        }
    }
    let text = exposition(&rows, now);
    let mut stdout = std::io::stdout().lock();
    // A reader gone away (| head) is not an error worth a message.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
    Ok(ExitCode::SUCCESS)
}

/// The exposition of `rows` at `now` (pure).
pub fn exposition(rows: &[Row], now: u64) -> String {
    let states: Vec<State> = rows.iter().map(exported_state).collect();
    let tunnels: Vec<Tunnel<'_>> = rows
        .iter()
        .zip(&states)
        .map(|(row, state)| Tunnel {
            name: &row.name,
            state,
            now,
        })
        .collect();
    metrics::render(&tunnels)
}

/// The state as exported: the one `status` reports too ([`Row::reported_state`]).
fn exported_state(row: &Row) -> State {
    row.reported_state()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ForwardHealth, ForwardState, Phase};

    fn row(name: &str, state: Option<State>, running: bool) -> Row {
        Row {
            name: name.into(),
            target: None,
            state_file: None,
            state,
            running,
            init: None,
            problem: None,
        }
    }

    #[test]
    fn a_dead_watchdogs_last_up_is_not_exported_as_up() {
        let up = State {
            phase: Phase::Up,
            restarts: 2,
            forwards: vec![ForwardState {
                spec: "-R 1234:localhost:22".into(),
                health: ForwardHealth::Up,
                since: 10,
                latency_ms: 3,
            }],
            ..State::default()
        };
        let text = exposition(
            &[
                row("live", Some(up.clone()), true),
                row("dead", Some(up), false),
                row("never", None, false),
            ],
            100,
        );
        for line in [
            "tunnelctl_tunnel_up{tunnel=\"live\"} 1",
            "tunnelctl_tunnel_up{tunnel=\"dead\"} 0",
            "tunnelctl_tunnel_up{tunnel=\"never\"} 0",
            "tunnelctl_tunnel_state{tunnel=\"dead\",state=\"stopped\"} 1",
            "tunnelctl_forward_up{tunnel=\"live\",forward=\"-R 1234:localhost:22\"} 1",
            "tunnelctl_forward_up{tunnel=\"dead\",forward=\"-R 1234:localhost:22\"} 0",
            "tunnelctl_restarts_total{tunnel=\"dead\"} 2",
            "tunnelctl_restarts_total{tunnel=\"never\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
