//! Init scripts read back the way their init runs them, without that init: the script
//! is sourced by `sh` with the init's own helpers replaced by recorders, and what the
//! supervisor would exec comes back as words. Used by the golden and hostile-value tests.

use std::path::Path;
use std::process::Command;

/// What starting an openrc-run script would ask supervise-daemon for.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenRcStart {
    /// The daemon's argv, its path first (`$command`, then `$command_args` after the
    /// `--` supervise-daemon.sh puts between them).
    pub argv: Vec<String>,
    /// `$notify` after `start_pre`.
    pub notify: String,
    /// `$supervisor`, `$respawn_max`, `$respawn_delay`, `$respawn_period`,
    /// `$output_log`, `$error_log`.
    pub supervisor: String,
    pub respawn_max: String,
    pub respawn_delay: String,
    pub respawn_period: String,
    pub output_log: String,
    pub error_log: String,
}

/// Sources the openrc-run `script` as OpenRC's shell would (`RC_SVCNAME` set, then
/// `depend` and `start_pre`), with a `supervise-daemon` whose `--help` lists `--notify`
/// when `knows_notify` (OpenRC 0.62 and later) and not otherwise (Debian 12's 0.45),
/// then makes the `eval` supervise-daemon.sh makes, recording the words.
pub fn openrc_start(script: &Path, knows_notify: bool) -> OpenRcStart {
    let service = script.file_name().unwrap().to_str().unwrap();
    // A program, not a function: dash refuses `-` in a function name.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("supervise-daemon");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
[ "$1" = "$RC_SVCNAME" ] || { echo "supervise-daemon: first word $1" >&2; exit 90; }
[ "$2" = --help ] || { echo "supervise-daemon: unexpected $2" >&2; exit 91; }
echo '  -S, --start                       Start daemon'
if [ "$KNOWS_NOTIFY" = 1 ]; then
	echo '      --notify <arg>                Configure service readiness notification'
fi
"#,
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let program = r#"
set -eu
need() { :; }
after() { :; }
. "$SCRIPT"
depend
start_pre
record() { for word in "$@"; do printf '%s\0' "$word"; done; }
printf '%s\0' "$notify" "$supervisor" "$respawn_max" "$respawn_delay" "$respawn_period" "$output_log" "$error_log"
eval record "$command" -- $command_args
"#;
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(program)
        .env("PATH", path)
        .env("SCRIPT", script)
        .env("RC_SVCNAME", service)
        .env("KNOWS_NOTIFY", if knows_notify { "1" } else { "0" })
        .env("notify", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: sourcing failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = out
        .stdout
        .split(|&b| b == 0)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect();
    assert_eq!(words.pop().as_deref(), Some(""), "NUL-terminated words");
    let mut rest = words.split_off(7).into_iter();
    let mut argv = vec![rest.next().unwrap()];
    assert_eq!(
        rest.next().as_deref(),
        Some("--"),
        "supervise-daemon.sh's --"
    );
    argv.extend(rest);
    let mut fields = words.into_iter();
    let mut next = || fields.next().unwrap();
    OpenRcStart {
        notify: next(),
        supervisor: next(),
        respawn_max: next(),
        respawn_delay: next(),
        respawn_period: next(),
        output_log: next(),
        error_log: next(),
        argv,
    }
}

/// Checks an OpenRC script of `tunnel` against what it must start: the intended argv
/// (its readiness option only where supervise-daemon knows `--notify`), the respawn
/// settings that never give up, and the early log next to the watchdog's own.
pub fn assert_openrc_script(
    script: &Path,
    tunnel: &tunnelctl::model::Tunnel,
    watchdog: &str,
    ssh: Vec<String>,
    label: &str,
) {
    let id = tunnelctl::config::inittab_id(&tunnel.name);
    let mut intended = vec![watchdog.to_string()];
    intended.extend(super::readback::inittab_watchdog_args(tunnel, ssh));
    let old = openrc_start(script, false);
    assert_eq!(
        old.argv, intended,
        "{label}: argv under OpenRC without notify="
    );
    assert_eq!(old.notify, "", "{label}");
    assert_eq!(old.supervisor, "supervise-daemon", "{label}");
    assert_eq!(
        (
            old.respawn_max.as_str(),
            old.respawn_delay.as_str(),
            old.respawn_period.as_str()
        ),
        ("0", "1", "60"),
        "{label}: respawn_max 0 never gives up"
    );
    // Also eval'd by supervise-daemon.sh: a plain path by construction (the inittab id).
    let early = format!("/var/log/tunnelctl/{id}.err");
    assert_eq!(
        (&old.output_log, &old.error_log),
        (&early, &early),
        "{label}"
    );

    let new = openrc_start(script, true);
    assert_eq!(new.notify, "fd:4", "{label}");
    let options = tunnelctl::targets::watchdog_options(
        tunnel,
        Some(&format!("/run/tunnelctl/{}", tunnel.name)),
        Some(&format!("/var/log/tunnelctl/{id}.log")),
    );
    let mut with_readiness = intended.clone();
    let at = 1 + options.len();
    with_readiness.splice(
        at..at,
        ["--readiness".to_string(), "openrc-fd:4".to_string()],
    );
    assert_eq!(
        new.argv, with_readiness,
        "{label}: argv under OpenRC with notify="
    );
}
