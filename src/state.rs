//! The watchdog's state file, `STATE_DIR/state`: one `key=value` per line, written by
//! `tunnel-watchdog` (replaced atomically: temp file + rename) and read by
//! `tunnelctl status`. Pure: text in, text out.
//!
//! | key | meaning |
//! |---|---|
//! | `state` | `connecting`, `up`, `backing-off`, `failed` or `stopped` |
//! | `pid` | the watchdog's pid |
//! | `ssh_pid` | the running ssh client's pid (0: none) |
//! | `connected_since` | unix seconds of the first good probe of this connection (0: not up) |
//! | `last_probe_ok` | unix seconds of the last good probe round (0: none yet) |
//! | `last_probe_ms` | how long that round took, milliseconds |
//! | `consecutive_failures` | failed connections in a row (drives the back-off) |
//! | `restarts` | ssh starts in total |
//! | `last_error` | one line: why the last connection failed (empty: none) |
//! | `backoff_until` | unix seconds when the current back-off ends (0: none) |
//! | `proven` | `1`: this row of failures began when a proven tunnel failed, so its first retry is free (absent: `0`) |
//! | `no_greeting` | `1`: the last failure was ssh getting no SSH greeting (unresolved, refused, no route, connect or banner time-out), so the back-off waits for the server to greet (absent: `0`) |
//! | `last_event` | the last network change or wake the watchdog reacted to: `KIND UNIX_SECONDS ACTION`, KIND `network` or `wake`, ACTION `reconnected`, `probed` or `nothing-to-do` (absent: none yet) |
//!
//! Unknown keys are ignored and missing keys keep their defaults, so the format can grow.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Up,
    BackingOff,
    Failed,
    #[default]
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Up => "up",
            Phase::BackingOff => "backing-off",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "connecting" => Phase::Connecting,
            "up" => Phase::Up,
            "backing-off" => Phase::BackingOff,
            "failed" => Phase::Failed,
            "stopped" => Phase::Stopped,
            _ => return None,
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    pub pid: u32,
    pub ssh_pid: u32,
    pub connected_since: u64,
    pub last_probe_ok: u64,
    pub last_probe_ms: u64,
    pub consecutive_failures: u32,
    pub restarts: u64,
    pub last_error: String,
    pub backoff_until: u64,
    pub proven: bool,
    pub no_greeting: bool,
    pub last_event: Option<LastEvent>,
}

/// `last_event`: what the kernel or the clock said, when, and what the watchdog did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastEvent {
    /// `network` or `wake`.
    pub kind: &'static str,
    pub at: u64,
    /// `reconnected`, `probed` or `nothing-to-do`.
    pub action: &'static str,
}

impl LastEvent {
    const KINDS: [&'static str; 2] = ["network", "wake"];
    const ACTIONS: [&'static str; 3] = ["reconnected", "probed", "nothing-to-do"];

    fn parse(value: &str) -> Option<LastEvent> {
        let mut words = value.split(' ');
        let kind = Self::KINDS.into_iter().find(|k| Some(*k) == words.next())?;
        let at = words.next()?.parse().ok()?;
        let action = Self::ACTIONS
            .into_iter()
            .find(|a| Some(*a) == words.next())?;
        words
            .next()
            .is_none()
            .then_some(LastEvent { kind, at, action })
    }
}

impl State {
    pub fn to_text(&self) -> String {
        // A value is one line: newlines (never expected) are flattened, not trusted.
        let last_error = self.last_error.replace(['\n', '\r'], " ");
        format!(
            "state={}\npid={}\nssh_pid={}\nconnected_since={}\nlast_probe_ok={}\nlast_probe_ms={}\n\
             consecutive_failures={}\nrestarts={}\nlast_error={}\nbackoff_until={}\nproven={}\n\
             no_greeting={}\n{}",
            self.phase,
            self.pid,
            self.ssh_pid,
            self.connected_since,
            self.last_probe_ok,
            self.last_probe_ms,
            self.consecutive_failures,
            self.restarts,
            last_error,
            self.backoff_until,
            u8::from(self.proven),
            u8::from(self.no_greeting),
            self.last_event.map_or(String::new(), |e| format!(
                "last_event={} {} {}\n",
                e.kind, e.at, e.action
            ))
        )
    }

    /// Parses the file; a line that is not `key=value` or a value that does not parse is
    /// an error naming the line, so `status` can say which file is damaged.
    pub fn from_text(text: &str) -> Result<State, String> {
        let mut state = State::default();
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key=value, found `{line}`", index + 1))?;
            let bad = |what: &str| {
                format!(
                    "line {}: `{key}` should be {what}, found `{value}`",
                    index + 1
                )
            };
            match key {
                "state" => {
                    state.phase = Phase::parse(value)
                        .ok_or_else(|| bad("connecting, up, backing-off, failed or stopped"))?
                }
                "pid" => state.pid = value.parse().map_err(|_| bad("a number"))?,
                "ssh_pid" => state.ssh_pid = value.parse().map_err(|_| bad("a number"))?,
                "connected_since" => {
                    state.connected_since = value.parse().map_err(|_| bad("a number"))?
                }
                "last_probe_ok" => {
                    state.last_probe_ok = value.parse().map_err(|_| bad("a number"))?
                }
                "last_probe_ms" => {
                    state.last_probe_ms = value.parse().map_err(|_| bad("a number"))?
                }
                "consecutive_failures" => {
                    state.consecutive_failures = value.parse().map_err(|_| bad("a number"))?
                }
                "restarts" => state.restarts = value.parse().map_err(|_| bad("a number"))?,
                "last_error" => state.last_error = value.to_string(),
                "backoff_until" => {
                    state.backoff_until = value.parse().map_err(|_| bad("a number"))?
                }
                "proven" => state.proven = flag(value).ok_or_else(|| bad("0 or 1"))?,
                // `network_error` is the earlier name of the key: a watchdog upgraded
                // during a back-off still finds it.
                "no_greeting" | "network_error" => {
                    state.no_greeting = flag(value).ok_or_else(|| bad("0 or 1"))?
                }
                "last_event" => {
                    state.last_event = Some(LastEvent::parse(value).ok_or_else(|| {
                        bad("`network` or `wake`, unix seconds, and `reconnected`, `probed` or `nothing-to-do`")
                    })?)
                }
                _ => {} // newer writer: ignore
            }
        }
        Ok(state)
    }
}

fn flag(value: &str) -> Option<bool> {
    match value {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let state = State {
            phase: Phase::BackingOff,
            pid: 10,
            ssh_pid: 11,
            connected_since: 1_700_000_000,
            last_probe_ok: 1_700_000_100,
            last_probe_ms: 12,
            consecutive_failures: 3,
            restarts: 7,
            last_error: "remote port 1234 busy on server: x=y".into(),
            backoff_until: 1_700_000_200,
            proven: true,
            no_greeting: true,
            last_event: Some(LastEvent {
                kind: "network",
                at: 1_764_622_000,
                action: "reconnected",
            }),
        };
        assert!(
            state
                .to_text()
                .contains("last_event=network 1764622000 reconnected\n")
        );
        assert_eq!(State::from_text(&state.to_text()), Ok(state));
        let err = State::from_text("last_event=network soon reconnected\n").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("last_event"),
            "{err}"
        );
    }

    #[test]
    fn tolerates_unknown_keys_and_names_bad_lines() {
        let s = State::from_text("state=up\nfuture_key=1\n").unwrap();
        assert_eq!(s.phase, Phase::Up);
        assert!(!s.proven && !s.no_greeting, "older files lack the flags");
        assert!(
            State::from_text("state=up\nnetwork_error=1\n")
                .unwrap()
                .no_greeting
        );
        let err = State::from_text("proven=yes\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("0 or 1"), "{err}");
        let err = State::from_text("state=up\nrestarts=many\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("restarts"), "{err}");
        assert!(State::from_text("garbage").unwrap_err().contains("line 1"));
        let flat = State {
            last_error: "a\nb".into(),
            ..State::default()
        }
        .to_text();
        assert!(flat.contains("last_error=a b\n"));
    }
}
