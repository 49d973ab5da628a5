//! The Prometheus text exposition format (version 0.0.4) of tunnels' state files: what
//! `tunnelctl metrics` prints and what `tunnel-watchdog --metrics-file` writes for
//! node_exporter's textfile collector. Pure: states in, text out; the watchdog links it,
//! so it uses nothing but `state`.
//!
//! Every family is written once (HELP, TYPE, then one sample per tunnel or forward), as
//! the format requires; a tunnel's name and a forward's spec are label values, escaped.
//!
//! | metric | type | labels | value |
//! |---|---|---|---|
//! | `tunnelctl_tunnel_up` | gauge | tunnel | 1 when the tunnel carries its forwards (`up` or `degraded`) |
//! | `tunnelctl_tunnel_degraded` | gauge | tunnel | 1 when a forward's target refuses (`degraded`) |
//! | `tunnelctl_tunnel_state` | gauge | tunnel, state | 1 for the current state, 0 for the others |
//! | `tunnelctl_forward_up` | gauge | tunnel, forward | 1 when the forward's last probe carried data |
//! | `tunnelctl_forward_probe_latency_seconds` | gauge | tunnel, forward | the forward's last probe (absent: none yet) |
//! | `tunnelctl_restarts_total` | counter | tunnel | ssh starts |
//! | `tunnelctl_reconnects_total` | counter | tunnel | reconnects without a watchdog restart |
//! | `tunnelctl_state_seconds` | gauge | tunnel | seconds in the current state (absent: unknown); in a `--metrics-file` as of its last write, up to a minute old |
//! | `tunnelctl_state_since_timestamp_seconds` | gauge | tunnel | unix time the current state began (absent: unknown); `time() -` it never goes stale |
//! | `tunnelctl_backoff_remaining_seconds` | gauge | tunnel | until the next connect attempt (0: none pending) |
//! | `tunnelctl_last_probe_ok_timestamp_seconds` | gauge | tunnel | unix time of the last good probe round (0: none); a stale value means a stuck or killed watchdog |
//! | `tunnelctl_last_network_event_timestamp_seconds` | gauge | tunnel | unix time of the last network change the watchdog reacted to (0: none) |

use std::fmt::Write;

use crate::state::{ForwardHealth, ForwardState, Phase, State};

/// One tunnel to render: its name, its state file's contents, and the time (unix
/// seconds) the durations are measured against.
#[derive(Clone, Copy, Debug)]
pub struct Tunnel<'a> {
    pub name: &'a str,
    pub state: &'a State,
    pub now: u64,
}

const PHASES: [Phase; 6] = [
    Phase::Connecting,
    Phase::Up,
    Phase::Degraded,
    Phase::BackingOff,
    Phase::Failed,
    Phase::Stopped,
];

/// The hook for the last network event: 0 until the state file records one (the state file's
/// `last_event`); then return its unix seconds here.
fn last_network_event(_state: &State) -> u64 {
    0
}

/// Where a family's samples come from.
enum Samples {
    /// One sample per tunnel (none where the value is `None`).
    Tunnel(fn(&Tunnel<'_>) -> Option<String>),
    /// One sample per tunnel and phase: 1 for the current one, 0 for the others.
    PhaseFlags,
    /// One sample per forward of every tunnel (none where the value is `None`).
    Forward(fn(&ForwardState) -> Option<String>),
}

/// One metric family: what its HELP and TYPE lines say, and its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

/// Every family, in the order they are written (the table at the top of this file).
const FAMILIES: [Family; 12] = [
    Family {
        name: "tunnelctl_tunnel_up",
        kind: "gauge",
        help: "1 when the tunnel carries its forwards (state up or degraded), else 0.",
        samples: Samples::Tunnel(|t| {
            Some(flag(matches!(t.state.phase, Phase::Up | Phase::Degraded)))
        }),
    },
    Family {
        name: "tunnelctl_tunnel_degraded",
        kind: "gauge",
        help: "1 when the tunnel is up but a forward's target refuses connections, else 0.",
        samples: Samples::Tunnel(|t| Some(flag(t.state.phase == Phase::Degraded))),
    },
    Family {
        name: "tunnelctl_tunnel_state",
        kind: "gauge",
        help: "The watchdog's state: 1 for the current one.",
        samples: Samples::PhaseFlags,
    },
    Family {
        name: "tunnelctl_forward_up",
        kind: "gauge",
        help: "1 when the forward's last probe carried data, else 0.",
        samples: Samples::Forward(|f| Some(flag(f.health == ForwardHealth::Up))),
    },
    Family {
        name: "tunnelctl_forward_probe_latency_seconds",
        kind: "gauge",
        help: "How long the forward's last probe took.",
        samples: Samples::Forward(|f| (f.latency_ms > 0).then(|| seconds_from_ms(f.latency_ms))),
    },
    Family {
        name: "tunnelctl_restarts_total",
        kind: "counter",
        help: "ssh starts by this watchdog.",
        samples: Samples::Tunnel(|t| Some(t.state.restarts.to_string())),
    },
    Family {
        name: "tunnelctl_reconnects_total",
        kind: "counter",
        help: "Reconnects without a watchdog restart (a signal, a network change, a held -R port).",
        samples: Samples::Tunnel(|t| Some(t.state.reconnects.to_string())),
    },
    Family {
        name: "tunnelctl_state_seconds",
        kind: "gauge",
        help: "Seconds in the current state.",
        samples: Samples::Tunnel(|t| {
            (t.state.state_since > 0).then(|| t.now.saturating_sub(t.state.state_since).to_string())
        }),
    },
    Family {
        name: "tunnelctl_state_since_timestamp_seconds",
        kind: "gauge",
        help: "Unix time the current state began.",
        samples: Samples::Tunnel(|t| {
            (t.state.state_since > 0).then(|| t.state.state_since.to_string())
        }),
    },
    Family {
        name: "tunnelctl_backoff_remaining_seconds",
        kind: "gauge",
        help: "Seconds until the next connection attempt (0: none pending).",
        samples: Samples::Tunnel(|t| Some(backoff_remaining(t).to_string())),
    },
    Family {
        name: "tunnelctl_last_probe_ok_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the last good probe round (0: none); stale means a stuck or killed watchdog.",
        samples: Samples::Tunnel(|t| Some(t.state.last_probe_ok.to_string())),
    },
    Family {
        name: "tunnelctl_last_network_event_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the last network change the watchdog reacted to (0: none).",
        samples: Samples::Tunnel(|t| Some(last_network_event(t.state).to_string())),
    },
];

/// The whole exposition for `tunnels`, ending in a newline (empty for no tunnels).
pub fn render(tunnels: &[Tunnel<'_>]) -> String {
    let mut out = String::new();
    if tunnels.is_empty() {
        return out;
    }
    for family in &FAMILIES {
        family.write(&mut out, tunnels);
    }
    out
}

impl Family {
    /// HELP, TYPE, then every sample.
    fn write(&self, out: &mut String, tunnels: &[Tunnel<'_>]) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", escape_help(self.help));
        let _ = writeln!(out, "# TYPE {name} {}", self.kind);
        for t in tunnels {
            let tunnel = escape_label(t.name);
            match &self.samples {
                Samples::Tunnel(value) => {
                    if let Some(v) = value(t) {
                        let _ = writeln!(out, "{name}{{tunnel=\"{tunnel}\"}} {v}");
                    }
                }
                Samples::PhaseFlags => {
                    for phase in PHASES {
                        let v = flag(t.state.phase == phase);
                        let _ =
                            writeln!(out, "{name}{{tunnel=\"{tunnel}\",state=\"{phase}\"}} {v}");
                    }
                }
                Samples::Forward(value) => {
                    for f in &t.state.forwards {
                        if let Some(v) = value(f) {
                            let forward = escape_label(&f.spec);
                            let _ = writeln!(
                                out,
                                "{name}{{tunnel=\"{tunnel}\",forward=\"{forward}\"}} {v}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Seconds until the next connection attempt: 0 unless backing off.
fn backoff_remaining(t: &Tunnel<'_>) -> u64 {
    if t.state.phase == Phase::BackingOff {
        t.state.backoff_until.saturating_sub(t.now)
    } else {
        0
    }
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

fn seconds_from_ms(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A label value: `\`, `"` and newline escaped, as the text format requires.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: `\` and newline escaped (quotes are literal there).
fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_escapes_backslash_and_newline_only() {
        assert_eq!(escape_help(r#"a\b"c"#), r#"a\\b"c"#);
        assert_eq!(escape_help("one\ntwo"), "one\\ntwo");
        assert_eq!(escape_help("plain"), "plain");
    }
    use crate::state::ForwardState;

    fn sample() -> State {
        State {
            phase: Phase::Degraded,
            restarts: 3,
            reconnects: 2,
            state_since: 1_000,
            last_probe_ok: 1_090,
            forwards: vec![
                ForwardState {
                    spec: "-R 1234:localhost:22".into(),
                    health: ForwardHealth::TargetDown,
                    since: 1_000,
                    latency_ms: 4,
                },
                ForwardState {
                    spec: "-L 127.0.0.1:8080:intranet:80".into(),
                    health: ForwardHealth::Up,
                    since: 900,
                    latency_ms: 1_250,
                },
            ],
            ..State::default()
        }
    }

    #[test]
    fn renders_every_family_once_with_help_and_type() {
        let a = sample();
        let b = State {
            phase: Phase::BackingOff,
            backoff_until: 1_130,
            ..State::default()
        };
        let text = render(&[
            Tunnel {
                name: "db",
                state: &a,
                now: 1_100,
            },
            Tunnel {
                name: "web",
                state: &b,
                now: 1_100,
            },
        ]);
        for line in [
            "tunnelctl_tunnel_up{tunnel=\"db\"} 1",
            "tunnelctl_tunnel_up{tunnel=\"web\"} 0",
            "tunnelctl_tunnel_degraded{tunnel=\"db\"} 1",
            "tunnelctl_tunnel_state{tunnel=\"db\",state=\"degraded\"} 1",
            "tunnelctl_tunnel_state{tunnel=\"db\",state=\"up\"} 0",
            "tunnelctl_tunnel_state{tunnel=\"web\",state=\"backing-off\"} 1",
            "tunnelctl_forward_up{tunnel=\"db\",forward=\"-R 1234:localhost:22\"} 0",
            "tunnelctl_forward_up{tunnel=\"db\",forward=\"-L 127.0.0.1:8080:intranet:80\"} 1",
            "tunnelctl_forward_probe_latency_seconds{tunnel=\"db\",forward=\"-R 1234:localhost:22\"} 0.004",
            "tunnelctl_forward_probe_latency_seconds{tunnel=\"db\",forward=\"-L 127.0.0.1:8080:intranet:80\"} 1.250",
            "tunnelctl_restarts_total{tunnel=\"db\"} 3",
            "tunnelctl_reconnects_total{tunnel=\"db\"} 2",
            "tunnelctl_state_seconds{tunnel=\"db\"} 100",
            "tunnelctl_backoff_remaining_seconds{tunnel=\"db\"} 0",
            "tunnelctl_backoff_remaining_seconds{tunnel=\"web\"} 30",
            "tunnelctl_last_probe_ok_timestamp_seconds{tunnel=\"db\"} 1090",
            "tunnelctl_last_network_event_timestamp_seconds{tunnel=\"web\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // web's state_since is unknown: no sample rather than a made-up duration.
        assert!(!text.contains("tunnelctl_state_seconds{tunnel=\"web\"}"));
        assert!(!text.contains("tunnelctl_state_since_timestamp_seconds{tunnel=\"web\"}"));
        // Each family: one HELP and one TYPE, before all its samples, never interleaved.
        let mut seen = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name);
                current = name;
            } else if line.starts_with("# HELP ") {
                continue;
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family: {line}");
            }
        }
        assert_eq!(seen.len(), 12);
        assert!(text.contains("tunnelctl_state_since_timestamp_seconds{tunnel=\"db\"} 1000\n"));
        assert!(text.ends_with('\n'));
        assert!(text.contains("# TYPE tunnelctl_restarts_total counter\n"));
        assert!(text.contains("# TYPE tunnelctl_tunnel_up gauge\n"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        assert_eq!(escape_label("plain:-1"), "plain:-1");
        let state = State {
            forwards: vec![ForwardState {
                spec: "-L \"x\\y\nz".into(),
                ..ForwardState::default()
            }],
            ..State::default()
        };
        let text = render(&[Tunnel {
            name: "we\"ird\\na\nme",
            state: &state,
            now: 0,
        }]);
        assert!(
            text.contains(
                "tunnelctl_forward_up{tunnel=\"we\\\"ird\\\\na\\nme\",forward=\"-L \\\"x\\\\y\\nz\"} 0\n"
            ),
            "{text}"
        );
        // Every sample stays on one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.ends_with(" 0") || l.ends_with(" 1"))
        );
    }

    #[test]
    fn nothing_for_no_tunnels() {
        assert_eq!(render(&[]), "");
    }
}
