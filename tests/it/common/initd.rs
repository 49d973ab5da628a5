//! Init scripts read back the way their init runs them, without that init: the script
//! is sourced by `sh` with the init's own helpers replaced by recorders, and what the
//! supervisor would exec comes back as words. Used by the golden and hostile-value tests.

use std::path::Path;
use std::process::Command;

use super::readback::Intent;

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

/// Checks an OpenRC script against what it must start: `intent`'s words (see
/// [`Intent::assert_argv`]) with its state folder and log, the readiness option only
/// where supervise-daemon knows `--notify`, the respawn settings that never give up, and
/// the early log next to the watchdog's own.
pub fn assert_openrc_script(script: &Path, intent: &Intent, watchdog: &str, label: &str) {
    let name = &intent.name;
    let id = tunnelctl::config::inittab_id(name);
    let state = format!("/run/tunnelctl/{name}");
    let log = format!("/var/log/tunnelctl/{id}.log");
    let old = openrc_start(script, false);
    intent.assert_argv(
        &old.argv,
        watchdog,
        &[("--state-dir", &state), ("--log-file", &log)],
        &format!("{label}: OpenRC without notify="),
    );
    assert_eq!(old.notify, "", "{label}");
    assert_eq!(old.supervisor, "supervise-daemon", "{label}");
    assert_eq!(
        [&old.respawn_max, &old.respawn_delay, &old.respawn_period],
        ["0", "1", "60"],
        "{label}: respawn_max 0 never gives up"
    );
    // Also eval'd by supervise-daemon.sh: a plain path by construction (the inittab id).
    let early = format!("/var/log/tunnelctl/{id}.err");
    assert_eq!(
        [&old.output_log, &old.error_log],
        [&early, &early],
        "{label}"
    );

    let new = openrc_start(script, true);
    assert_eq!(new.notify, "fd:4", "{label}");
    intent.assert_argv(
        &new.argv,
        watchdog,
        &[
            ("--state-dir", &state),
            ("--log-file", &log),
            ("--readiness", "openrc-fd:4"),
        ],
        &format!("{label}: OpenRC with notify="),
    );
}

/// One call of a `procd_*` function, as a procd init script made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcdCall {
    pub function: String,
    pub args: Vec<String>,
}

/// Sources the rc.common script `script` as `/etc/rc.common` does (`USE_PROCD=1`, then
/// `start_service`), with procd.sh's functions replaced by recorders that also check
/// each call against procd.sh's contract: an instance is open for every parameter and
/// closed once; the parameter type is one procd.sh knows; booleans are 0/1, integers
/// are integers, single values are one word; `respawn` is three integers
/// (threshold, timeout, retry); `watchdog` is a mode 0–2 and a timeout in seconds;
/// `command` starts with an absolute path. A breach fails the sourcing.
pub fn procd_calls(script: &Path) -> Vec<ProcdCall> {
    procd_calls_or_breach(script).unwrap_or_else(|e| panic!("{}: {e}", script.display()))
}

/// [`procd_calls`], or what the recorders found wrong.
pub fn procd_calls_or_breach(script: &Path) -> Result<Vec<ProcdCall>, String> {
    let program = r#"
set -eu
breach() { echo "procd contract: $*" >&2; exit 97; }
record() { printf '%s\0' "$@"; printf '\n\0'; }
is_int() { case "$1" in ''|*[!0-9]*) return 1;; esac; }
open=0
procd_open_instance() {
	[ "$#" -le 1 ] || breach "procd_open_instance takes at most a name, got $#"
	[ "$open" = 0 ] || breach "procd_open_instance inside an open instance"
	open=1
	record procd_open_instance "$@"
}
procd_close_instance() {
	[ "$#" = 0 ] || breach "procd_close_instance takes nothing"
	[ "$open" = 1 ] || breach "procd_close_instance without an open instance"
	open=0
	record procd_close_instance
}
check_param() {
	[ "$open" = 1 ] || breach "$1 outside an instance"
	fn=$1; type=$2; shift 2
	case "$type" in
	command)
		[ "$#" -ge 1 ] || breach "command without words"
		case "$1" in /*) ;; *) breach "command does not start with an absolute path: $1";; esac ;;
	respawn)
		[ "$#" = 3 ] || breach "respawn takes threshold timeout retry, got $#"
		for v in "$@"; do is_int "$v" || breach "respawn value $v is not an integer"; done ;;
	watchdog)
		[ "$#" = 2 ] || breach "watchdog takes mode and timeout, got $#"
		case "$1" in 0|1|2) ;; *) breach "watchdog mode $1";; esac
		is_int "$2" || breach "watchdog timeout $2 is not an integer" ;;
	netdev|file|watch|env|data|limits|error)
		[ "$#" -ge 1 ] || breach "$type without values" ;;
	stdout|stderr|no_new_privs)
		[ "$#" = 1 ] || breach "$type takes one boolean"
		case "$1" in 0|1) ;; *) breach "$type $1 is not 0 or 1";; esac ;;
	nice|term_timeout)
		[ "$#" = 1 ] && is_int "${1#-}" || breach "$type takes one integer" ;;
	reload_signal|pidfile|user|group|seccomp|capabilities|facility|extroot|overlaydir|tmpoverlaysize|vrf)
		[ "$#" = 1 ] || breach "$type takes one value" ;;
	*) breach "procd.sh knows no parameter $type" ;;
	esac
	[ "$fn" = procd_set_param ] || case "$type" in
		env|data|limits|command|netdev|file|respawn|watch|watchdog|error) ;;
		*) breach "procd_append_param cannot append to $type" ;;
	esac
}
procd_set_param() { check_param procd_set_param "$@"; record procd_set_param "$@"; }
procd_append_param() { check_param procd_append_param "$@"; record procd_append_param "$@"; }
. "$SCRIPT"
[ "$USE_PROCD" = 1 ] || breach "USE_PROCD is not 1"
is_int "$START" && is_int "$STOP" || breach "START/STOP are not numbers"
start_service
[ "$open" = 0 ] || breach "an instance left open"
"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(program)
        .env("SCRIPT", script)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let words: Vec<String> = out
        .stdout
        .split(|&b| b == 0)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect();
    let mut calls = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for word in words {
        if word == "\n" {
            let function = current.remove(0);
            calls.push(ProcdCall {
                function,
                args: std::mem::take(&mut current),
            });
        } else {
            current.push(word);
        }
    }
    assert_eq!(current, [String::new()], "trailing bytes");
    Ok(calls)
}

/// Checks a procd script: one instance named `tunnel` whose command is `intent`'s words
/// (see [`Intent::assert_argv`]) with its state folder, log and procd readiness, respawn
/// that never halts, stdout/stderr to logd, and procd's watchdog armed with
/// `watchdog_secs`, the timeout the watchdog is told.
pub fn assert_procd_script(
    script: &Path,
    intent: &Intent,
    watchdog: &str,
    watchdog_secs: u32,
    label: &str,
) {
    let call = |f: &str, args: &[&str]| ProcdCall {
        function: f.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let mut calls = procd_calls(script);
    assert_eq!(calls.len(), 7, "{label}: {calls:?}");
    let command = calls.remove(1);
    let secs = watchdog_secs.to_string();
    assert_eq!(
        calls,
        [
            call("procd_open_instance", &["tunnel"]),
            call("procd_set_param", &["respawn", "3600", "5", "0"]),
            call("procd_set_param", &["stdout", "1"]),
            call("procd_set_param", &["stderr", "1"]),
            call("procd_set_param", &["watchdog", "1", &secs]),
            call("procd_close_instance", &[]),
        ],
        "{label}"
    );
    assert_eq!(
        (command.function.as_str(), command.args[0].as_str()),
        ("procd_set_param", "command"),
        "{label}"
    );
    let name = &intent.name;
    let id = tunnelctl::config::inittab_id(name);
    intent.assert_argv(
        &command.args[1..],
        watchdog,
        &[
            ("--state-dir", &format!("/var/run/tunnelctl/{name}")),
            ("--log-file", &format!("/var/log/tunnelctl/{id}.log")),
            ("--readiness", &format!("procd:tunnel-{name}/tunnel")),
            ("--procd-watchdog", &format!("{secs}s")),
        ],
        label,
    );
}
