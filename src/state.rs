//! The watchdog's state file, `STATE_DIR/state`: one `key=value` per line, written by
//! `tunnel-watchdog` (replaced atomically: temp file + rename; between rewrites a round
//! that moved only the probe figures just touches it, see [`State::touched`]) and read by
//! `tunnelctl status` and `reconnect`; where it lives by default ([`resolve_state_dir`])
//! and how the commands read it ([`read_state_file`]). The format is pure: text in,
//! text out.
//!
//! | key | meaning |
//! |---|---|
//! | `name` | the tunnel's name (`--name`), so a reader given only the folder labels it right (absent: an older writer) |
//! | `state` | `connecting`, `up`, `degraded` (up, but a forward's target refuses), `backing-off`, `failed` or `stopped` |
//! | `state_since` | unix seconds when `state` last changed (0: unknown) |
//! | `pid` | the watchdog's pid |
//! | `ssh_pid` | the running ssh client's pid (0: none) |
//! | `connected_since` | unix seconds of the first good probe of this connection (0: not up) |
//! | `last_probe_ok` | unix seconds of the last good probe round (0: none yet); while `up` or `degraded`, the file's modification time when that is later |
//! | `last_probe_ms` | how long that round took, milliseconds |
//! | `consecutive_failures` | failed connections in a row (drives the back-off) |
//! | `restarts` | ssh starts in total |
//! | `reconnects` | reconnects without a watchdog restart, in total (a signal, a network change, a held `-R` port) |
//! | `last_error` | one line: why the last connection failed (empty: none) |
//! | `backoff_until` | unix seconds when the current back-off ends (0: none) |
//! | `proven` | `1`: this row of failures began when a proven tunnel failed, so its first retry is free (absent: `0`) |
//! | `no_greeting` | `1`: the last failure was ssh getting no SSH greeting (unresolved, refused, no route, connect or banner time-out), so the back-off waits for the server to greet (absent: `0`) |
//! | `forward` | one line per forward, in the order of ssh's arguments: `HEALTH SINCE LATENCY_MS SPEC` — HEALTH is `up`, `target-down` (the tunnel carries the channel, the far end refuses), `port-held` (the server refuses the `-R` port), `unproven` (not probed yet on this connection) or `failed`; SINCE unix seconds of the last HEALTH change; LATENCY_MS the last probe's (0: none); SPEC the forward as ssh was given it (`-L 127.0.0.1:8080:intranet:80`), to the end of the line |
//! | `last_event` | the last network change or wake the watchdog reacted to: `KIND UNIX_SECONDS ACTION`, KIND `network` or `wake`, ACTION `reconnected`, `probed` or `nothing-to-do` (absent: none yet) |
//!
//! Unknown keys are ignored and missing keys keep their defaults, so the format can grow.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Up,
    /// Up, but at least one forward's target refuses: no restart can help.
    Degraded,
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
            Phase::Degraded => "degraded",
            Phase::BackingOff => "backing-off",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "connecting" => Phase::Connecting,
            "up" => Phase::Up,
            "degraded" => Phase::Degraded,
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
    /// The tunnel's name as the watchdog was given it (empty: an older writer).
    pub name: String,
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
    pub state_since: u64,
    pub reconnects: u64,
    pub forwards: Vec<ForwardState>,
}

/// One forward's health, as the last probe rounds saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardHealth {
    Up,
    /// The transport and the forward channel work; the far end refuses or resets.
    TargetDown,
    /// The server refuses the `-R` port (most likely still held by an old session).
    PortHeld,
    /// Not probed yet on this connection.
    #[default]
    Unproven,
    Failed,
}

impl ForwardHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardHealth::Up => "up",
            ForwardHealth::TargetDown => "target-down",
            ForwardHealth::PortHeld => "port-held",
            ForwardHealth::Unproven => "unproven",
            ForwardHealth::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<ForwardHealth> {
        Some(match text {
            "up" => ForwardHealth::Up,
            "target-down" => ForwardHealth::TargetDown,
            "port-held" => ForwardHealth::PortHeld,
            "unproven" => ForwardHealth::Unproven,
            "failed" => ForwardHealth::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for ForwardHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardState {
    /// The forward as ssh was given it, e.g. `-R 1234:localhost:22`.
    pub spec: String,
    pub health: ForwardHealth,
    /// Unix seconds of the last change of `health`.
    pub since: u64,
    /// The last probe's latency, milliseconds (0: none).
    pub latency_ms: u64,
}

impl ForwardState {
    fn to_line(&self) -> String {
        let spec = self.spec.replace(['\n', '\r'], " ");
        format!(
            "forward={} {} {} {spec}\n",
            self.health, self.since, self.latency_ms
        )
    }

    fn parse(value: &str) -> Option<ForwardState> {
        let mut parts = value.splitn(4, ' ');
        let health = ForwardHealth::parse(parts.next()?)?;
        let since = parts.next()?.parse().ok()?;
        let latency_ms = parts.next()?.parse().ok()?;
        let spec = parts.next()?.to_string();
        Some(ForwardState {
            spec,
            health,
            since,
            latency_ms,
        })
    }
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
        let (kind, at, action) = (words.next()?, words.next()?, words.next()?);
        let kind = Self::KINDS.into_iter().find(|k| *k == kind)?;
        let at = at.parse().ok()?;
        let action = Self::ACTIONS.into_iter().find(|a| *a == action)?;
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
        let name = self.name.replace(['\n', '\r'], " ");
        format!(
            "name={name}\nstate={}\npid={}\nssh_pid={}\nconnected_since={}\nlast_probe_ok={}\nlast_probe_ms={}\n\
             consecutive_failures={}\nrestarts={}\nlast_error={}\nbackoff_until={}\nproven={}\n\
             no_greeting={}\nstate_since={}\nreconnects={}\n{}{}",
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
            self.state_since,
            self.reconnects,
            self.forwards
                .iter()
                .map(ForwardState::to_line)
                .collect::<String>(),
            self.last_event.map_or(String::new(), |e| format!(
                "last_event={} {} {}\n",
                e.kind, e.at, e.action
            ))
        )
    }

    /// The state as of its file's modification time (unix seconds). Rounds that moved
    /// nothing but the probe figures touch the file (once a minute) instead of
    /// rewriting it (every few minutes): a rewrite costs the watchdog about the CPU of
    /// two idle rounds, a touch a tenth of that. While the tunnel is up or degraded, a
    /// later mtime is therefore the last good round.
    pub fn touched(mut self, modified: u64) -> State {
        if matches!(self.phase, Phase::Up | Phase::Degraded) {
            self.last_probe_ok = self.last_probe_ok.max(modified);
        }
        self
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
            state.set(key, value).map_err(|what| {
                format!(
                    "line {}: `{key}` should be {what}, found `{value}`",
                    index + 1
                )
            })?;
        }
        Ok(state)
    }

    /// Sets the field `key` names from `value`; an error is what `value` should be.
    /// Unknown keys are ignored (a newer writer).
    fn set(&mut self, key: &str, value: &str) -> Result<(), &'static str> {
        match key {
            "name" => self.name = value.to_string(),
            "state" => {
                self.phase = Phase::parse(value)
                    .ok_or("connecting, up, degraded, backing-off, failed or stopped")?
            }
            "pid" => self.pid = small_number(value)?,
            "ssh_pid" => self.ssh_pid = small_number(value)?,
            "connected_since" => self.connected_since = number(value)?,
            "last_probe_ok" => self.last_probe_ok = number(value)?,
            "last_probe_ms" => self.last_probe_ms = number(value)?,
            "consecutive_failures" => self.consecutive_failures = small_number(value)?,
            "restarts" => self.restarts = number(value)?,
            "last_error" => self.last_error = value.to_string(),
            "backoff_until" => self.backoff_until = number(value)?,
            "proven" => self.proven = flag(value)?,
            // `network_error` is the earlier name of the key: a watchdog upgraded
            // during a back-off still finds it.
            "no_greeting" | "network_error" => self.no_greeting = flag(value)?,
            "state_since" => self.state_since = number(value)?,
            "reconnects" => self.reconnects = number(value)?,
            "forward" => self
                .forwards
                .push(ForwardState::parse(value).ok_or("`HEALTH SINCE LATENCY_MS SPEC`")?),
            "last_event" => self.last_event = Some(LastEvent::parse(value).ok_or(
                "`network` or `wake`, unix seconds, and `reconnected`, `probed` or `nothing-to-do`",
            )?),
            _ => {} // newer writer: ignore
        }
        Ok(())
    }
}

const A_NUMBER: &str = "a number";

/// `text` with every control character written `\xNN` (`\u{NNNN}` past U+00FF): for
/// human output and log lines, where ssh's words must not drive the terminal.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c as u32 {
            _ if !c.is_control() => out.push(c),
            n @ 0..=0xff => out.push_str(&format!("\\x{n:02x}")),
            n => out.push_str(&format!("\\u{{{n:04x}}}")),
        }
    }
    out
}

fn number(value: &str) -> Result<u64, &'static str> {
    value.parse().map_err(|_| A_NUMBER)
}

/// A number that fits in 32 bits (`u32::from_str` refuses the same texts).
fn small_number(value: &str) -> Result<u32, &'static str> {
    number(value).and_then(|n| u32::try_from(n).map_err(|_| A_NUMBER))
}

fn flag(value: &str) -> Result<bool, &'static str> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err("0 or 1"),
    }
}

/// `--state-dir`, else `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY` (first entry), else a
/// per-user default (docs/design.md).
pub fn resolve_state_dir(
    option: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    is_root: bool,
    uid: u32,
) -> PathBuf {
    if let Some(dir) = option {
        return dir.to_path_buf();
    }
    for key in ["STATE_DIRECTORY", "RUNTIME_DIRECTORY"] {
        if let Some(first) = env(key)
            .as_deref()
            .and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty())
        {
            return PathBuf::from(first);
        }
    }
    let name = name.replace('/', "_");
    if is_root {
        return PathBuf::from("/run/tunnelctl").join(name);
    }
    match env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("tunnelctl").join(name),
        None => PathBuf::from(format!("/tmp/tunnelctl-{uid}")).join(name),
    }
}

/// The state file is small; anything bigger is not ours.
pub const MAX_STATE_FILE: u64 = 64 * 1024;

/// `DIR/state` read as `status` and `reconnect` may trust it: bounded, never through a
/// link, owned by the caller, root, or the directory's owner when root made that
/// directory (`safe_fs::read_trusted`). None when there is no such file. With the
/// file's modification time: see [`State::touched`].
pub fn read_state_file(dir: &Path) -> Result<Option<(Vec<u8>, u64)>, String> {
    crate::safe_fs::read_trusted_modified(&dir.join("state"), MAX_STATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blank lines and comments are skipped, not errors.
    #[test]
    fn blank_lines_and_comments_are_skipped() {
        let state = State::from_text("# written by hand\n\nstate=up\n\n# end\n").unwrap();
        assert_eq!(state.phase, Phase::Up);
    }

    /// A later mtime is the last good round while the tunnel carries data, not after.
    #[test]
    fn a_touched_state_file_moves_the_last_good_round_only_while_up() {
        let at = |phase| State {
            phase,
            last_probe_ok: 1_000,
            ..State::default()
        };
        assert_eq!(at(Phase::Up).touched(1_060).last_probe_ok, 1_060);
        assert_eq!(at(Phase::Degraded).touched(1_060).last_probe_ok, 1_060);
        assert_eq!(at(Phase::Up).touched(900).last_probe_ok, 1_000);
        assert_eq!(at(Phase::Failed).touched(1_060).last_probe_ok, 1_000);
        assert_eq!(at(Phase::Stopped).touched(1_060).last_probe_ok, 1_000);
    }

    /// An empty `$STATE_DIRECTORY` (set but blank) is no folder: the next source counts.
    #[test]
    fn an_empty_state_directory_variable_is_skipped() {
        let env = |k: &str| match k {
            "STATE_DIRECTORY" => Some(String::new()),
            "RUNTIME_DIRECTORY" => Some("/run/t:/run/u".into()),
            _ => None,
        };
        assert_eq!(
            resolve_state_dir(None, &env, "a", true, 0),
            PathBuf::from("/run/t")
        );
    }

    /// The reader takes a state file of a few KiB and refuses one past 64 KiB.
    #[test]
    fn the_state_file_reader_is_bounded_at_64_kib() {
        assert_eq!(MAX_STATE_FILE, 65536);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), "state=up\n".repeat(400)).unwrap();
        let (read, modified) = read_state_file(dir.path()).unwrap().unwrap();
        assert_eq!(read.len(), 3600);
        assert!(modified > 1_700_000_000, "{modified}");
        std::fs::write(dir.path().join("state"), vec![b'#'; 70_000]).unwrap();
        assert!(read_state_file(dir.path()).is_err());
        std::fs::remove_file(dir.path().join("state")).unwrap();
        assert_eq!(read_state_file(dir.path()).unwrap(), None);
    }

    /// Every word the watchdog writes reads back as the same value.
    #[test]
    fn every_phase_and_forward_health_reads_back() {
        use ForwardHealth as F;
        for p in [
            Phase::Connecting,
            Phase::Up,
            Phase::Degraded,
            Phase::BackingOff,
            Phase::Failed,
            Phase::Stopped,
        ] {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        for h in [F::Up, F::TargetDown, F::PortHeld, F::Unproven, F::Failed] {
            assert_eq!(F::parse(h.as_str()), Some(h));
        }
        assert_eq!(Phase::parse("sleeping"), None);
        assert_eq!(F::parse("sleeping"), None);
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("plain: café"), "plain: café");
        assert_eq!(printable("a\x1b[2Jb\x07"), "a\\x1b[2Jb\\x07");
        assert_eq!(printable("tab\there\u{9b}"), "tab\\x09here\\x9b");
    }

    #[test]
    fn every_last_event_round_trips() {
        // Each kind and action, not only the first of each list (a parser once consumed
        // one word per candidate it tried, so only `network … reconnected` read back).
        for kind in LastEvent::KINDS {
            for action in LastEvent::ACTIONS {
                let state = State {
                    last_event: Some(LastEvent {
                        kind,
                        at: 1_764_622_000,
                        action,
                    }),
                    ..State::default()
                };
                assert_eq!(
                    State::from_text(&state.to_text()),
                    Ok(state),
                    "{kind} {action}"
                );
            }
        }
        assert!(State::from_text("last_event=network 1 probed extra\n").is_err());
    }

    #[test]
    fn round_trips() {
        let state = State {
            name: "home @ office".into(),
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
            state_since: 1_700_000_050,
            reconnects: 2,
            forwards: vec![
                ForwardState {
                    spec: "-R 1234:localhost:22".into(),
                    health: ForwardHealth::TargetDown,
                    since: 1_700_000_060,
                    latency_ms: 4,
                },
                ForwardState {
                    spec: "-L 127.0.0.1:8080:intranet:80".into(),
                    health: ForwardHealth::Up,
                    since: 1_700_000_070,
                    latency_ms: 0,
                },
            ],
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
        let err = State::from_text("forward=up 1 x\n").unwrap_err();
        assert!(err.contains("forward") && err.contains("HEALTH"), "{err}");
        let err = State::from_text("forward=sleeping 1 2 -L 1:h:2\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
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

    #[test]
    fn state_dir_follows_the_design_order() {
        let env = |k: &str| match k {
            "RUNTIME_DIRECTORY" => Some("/run/tunnelctl/a:/run/other".to_string()),
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_state_dir(Some(Path::new("/x")), &env, "a", true, 0),
            PathBuf::from("/x")
        );
        assert_eq!(
            resolve_state_dir(None, &env, "a", true, 0),
            PathBuf::from("/run/tunnelctl/a")
        );
        let none = |_: &str| None;
        assert_eq!(
            resolve_state_dir(None, &none, "a/b", true, 0),
            PathBuf::from("/run/tunnelctl/a_b")
        );
        assert_eq!(
            resolve_state_dir(None, &none, "a", false, 1000),
            PathBuf::from("/tmp/tunnelctl-1000/a")
        );
        let user = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".to_string());
        assert_eq!(
            resolve_state_dir(None, &user, "a", false, 1000),
            PathBuf::from("/run/user/1000/tunnelctl/a")
        );
    }
}
