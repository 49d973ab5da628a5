//! `status`, `reconnect` and `logs` against a real tunnel-watchdog run (real sshd, real
//! ssh) and the state file it writes.

use crate::common;
use crate::firstrun_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::child::{GroupKillOnDrop, StopOnDrop};
use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::wait_until;
use common::watchdog_cmd::{foreign_tunnelctl, start_remote_forward_watchdog};
use firstrun_support::*;

fn start_watchdog(sshd: &Sshd, state_dir: &Path, remote_port: u16) -> StopOnDrop {
    let log = state_dir.with_file_name("watchdog.log");
    start_remote_forward_watchdog(sshd, "st", state_dir, &log, remote_port)
}

/// tunnelctl without a config file: the commands here read state directories only.
fn without_config(args: &[&str]) -> Output {
    tunnelctl(Path::new("/nonexistent.yaml"), args)
}

/// Exit 1, and `written` (the command's stdout or stderr) says `says`.
#[track_caller]
fn assert_exit_1_saying(out: &Output, written: &[u8], says: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(
        String::from_utf8_lossy(written).contains(says),
        "{}",
        text(out)
    );
}

fn parse_status_json(out: &Output) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    assert_eq!(value["schema"], 1, "{value}");
    value["tunnels"][0].clone()
}

/// `status st --json` by this build's tunnelctl. When the test run names a foreign one
/// (`TUNNELCTL_TEST_TUNNELCTL_BIN`, an emulated CPU), it must read the same state file
/// the same way: its answer equals ours, taken between two equal answers of ours (a
/// state change or a second tick in between makes the round start again, at most 10).
fn status_json(state_dir: &Path) -> serde_json::Value {
    let args = [
        "status",
        "st",
        "--json",
        "--state-dir",
        state_dir.to_str().unwrap(),
    ];
    let ours = || parse_status_json(&without_config(&args));
    let Some(_) = foreign_tunnelctl() else {
        return ours();
    };
    let mut rounds = Vec::new();
    for _ in 0..10 {
        let before = ours();
        let out = foreign_tunnelctl()
            .unwrap()
            .args(["--config", "/nonexistent.yaml"])
            .args(args)
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let theirs = parse_status_json(&out);
        let after = ours();
        if before == after {
            assert_eq!(
                theirs, before,
                "the foreign tunnelctl reads the state file otherwise"
            );
            return after;
        }
        rounds.push((before, after));
    }
    panic!("the status never held still for one foreign read: {rounds:?}");
}

/// `status st --state-dir DIR`'s exit code: 0 up, 1 down, 3 degraded.
fn status_code(state_dir: &Path) -> Option<i32> {
    without_config(&["status", "st", "--state-dir", state_dir.to_str().unwrap()])
        .status
        .code()
}

/// `reconnect st --state-dir DIR`.
fn reconnect(state_dir: &Path) -> Output {
    without_config(&[
        "reconnect",
        "st",
        "--state-dir",
        state_dir.to_str().unwrap(),
    ])
}

#[test]
fn status_json_reconnect_and_stop_follow_a_real_watchdog() {
    let Some(sshd) = Sshd::start_default("status_json_reconnect_and_stop_follow_a_real_watchdog")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("st");
    let mut wd = start_watchdog(&sshd, &state_dir, free_port());
    let wd_pid = wd.0.id() as u64;

    assert!(
        wait_until(Duration::from_secs(20), || status_json(&state_dir)["state"]
            == "up"),
        "never up: {}",
        status_json(&state_dir)
    );
    let up = status_json(&state_dir);
    assert_eq!(up["name"], "st");
    assert_eq!(up["running"], true);
    assert_eq!(up["pid"], wd_pid, "{up}");
    assert!(
        up["ssh_pid"].as_u64().unwrap() > 0 && up["last_probe_ok"].as_u64().unwrap() > 0,
        "{up}"
    );
    assert!(up["up_seconds"].is_u64(), "{up}");
    assert_eq!(up["restarts"], 1, "{up}");
    assert_eq!(up["health"], "up", "{up}");
    assert_eq!(up["degraded"], false, "{up}");
    assert!(
        up["state_since"].is_u64() && up["reconnects"].is_u64(),
        "{up}"
    );
    assert!(up["forwards"].is_array(), "{up}");
    assert_eq!(status_code(&state_dir), Some(0), "an up tunnel exits 0");

    // The table says the same in words.
    let table = without_config(&["status", "--state-dir", dir.path().to_str().unwrap()]);
    let table_text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table_text.starts_with("NAME ")
            && table_text.contains("\nst ")
            && table_text.contains(" up "),
        "{}",
        text(&table)
    );
    assert!(
        !table_text.contains('\x1b'),
        "no colour when not on a terminal"
    );

    // reconnect: SIGUSR1 makes the watchdog start a new ssh.
    let first_ssh = up["ssh_pid"].as_u64().unwrap();
    let out = reconnect(&state_dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("pid {wd_pid}")),
        "{}",
        text(&out)
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let s = status_json(&state_dir);
            s["state"] == "up" && s["ssh_pid"].as_u64() != Some(first_ssh) && s["restarts"] == 2
        }),
        "no reconnect after SIGUSR1: {}",
        status_json(&state_dir)
    );

    // Stopped: status says so, reconnect explains instead of signalling.
    let pid = nix::unistd::Pid::from_raw(wd_pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // Not reaped yet on purpose: a zombie watchdog is not a running one.
    assert!(wait_until(Duration::from_secs(10), || status_json(
        &state_dir
    )["running"]
        == false));
    assert!(wait_until(Duration::from_secs(10), || matches!(
        wd.0.try_wait(),
        Ok(Some(_))
    )));
    assert_eq!(status_json(&state_dir)["state"], "stopped");
    assert_eq!(status_code(&state_dir), Some(1), "a stopped tunnel exits 1");
    let out = reconnect(&state_dir);
    assert_exit_1_saying(&out, &out.stderr, "the tunnel is not running");
}

#[test]
fn status_and_reconnect_explain_a_tunnel_that_never_ran() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("never");
    let out = without_config(&["status", "never", "--state-dir", none.to_str().unwrap()]);
    assert_exit_1_saying(&out, &out.stdout, "no state file");
    let out = without_config(&["reconnect", "never", "--state-dir", none.to_str().unwrap()]);
    assert_exit_1_saying(
        &out,
        &out.stderr,
        "the tunnel is not running: no watchdog state file",
    );
}

#[test]
fn status_lists_every_tunnel_of_the_config() {
    let Some(sshd) = Sshd::start_default("status_lists_every_tunnel_of_the_config") else {
        return;
    };
    let s = setup(
        &sshd,
        "listed",
        &sshd.client_key(),
        "",
        "      - remote: 40002\n        to: localhost:22\n",
    );
    let out = tunnelctl(&s.config, &["status", "--target", "inittab", "--json"]);
    // Listed but not running here: exit 1, as for any tunnel that is down.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], 1, "{doc}");
    let rows = &doc["tunnels"];
    assert_eq!(rows[0]["name"], "listed");
    assert_eq!(rows[0]["health"], "down");
    assert_eq!(rows[0]["target"], "inittab");
    assert!(
        rows[0]["problem"]
            .as_str()
            .unwrap()
            .contains("/run/tunnelctl/listed/state"),
        "{rows}"
    );
}

/// A log file at the inittab target's path for a throwaway tunnel name, removed on drop
/// with its folder when the test made that folder.
struct LogFile {
    path: std::path::PathBuf,
    made_dir: bool,
}

impl LogFile {
    fn create(path: &Path, text: &str) -> LogFile {
        let dir = path.parent().unwrap();
        let made_dir = !dir.exists();
        std::fs::create_dir_all(dir).unwrap();
        let guard = LogFile {
            path: path.to_path_buf(),
            made_dir,
        };
        std::fs::write(path, text).unwrap();
        guard
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if self.made_dir {
            let _ = std::fs::remove_dir(self.path.parent().unwrap());
        }
    }
}

#[test]
fn logs_shows_and_follows_the_inittab_log_file() {
    // Root: it writes under /var/log/tunnelctl.
    if !require(
        "logs_shows_and_follows_the_inittab_log_file",
        &[Prereq::Root],
    ) {
        return;
    }
    let name = format!("logs-test-{}", std::process::id());
    let id = tunnelctl::config::inittab_id(&name);
    let path = Path::new("/var/log/tunnelctl").join(format!("{id}.log"));
    let _guard = LogFile::create(&path, "first line\nsecond line\n");

    let out = without_config(&["logs", &name, "--target", "inittab"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first line\nsecond line\n"
    );

    // -f: a line appended later shows up. Its `tail -F` goes with its process group.
    let mut follow = GroupKillOnDrop::spawn(
        Command::new(env!("CARGO_BIN_EXE_tunnelctl"))
            .args(["logs", &name, "--target", "busybox", "-f"])
            .stdout(Stdio::piped()),
    );
    let stdout = follow.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let read_until = |want: &str, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(line.clone());
                if line == want {
                    return true;
                }
            }
        }
        false
    };
    assert!(read_until("second line", &mut seen), "{seen:?}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map(|mut f| std::io::Write::write_all(&mut f, b"third line\n"))
        .unwrap()
        .unwrap();
    let followed = read_until("third line", &mut seen);
    drop(follow);
    assert!(followed, "logs -f did not show the appended line: {seen:?}");

    // A name neither configured nor ever run here is refused as every command refuses it.
    let out = without_config(&["logs", "no-such-tunnel-here", "--target", "inittab"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no tunnel named `no-such-tunnel-here` is installed here (inittab)"),
        "{}",
        text(&out)
    );
}

#[test]
fn logs_reads_the_journal_for_systemd_units() {
    // journalctl is the tool; its argv is what this command decides.
    use tunnelctl::commands::logs::{LogQuery, log_command};
    use tunnelctl::targets::LogSource;
    let system = LogSource::Journal {
        unit: "tunnel-a.service".into(),
        user: false,
    };
    assert_eq!(
        log_command(
            &system,
            &LogQuery {
                follow: true,
                lines: 200,
                ..LogQuery::default()
            }
        ),
        [
            "journalctl",
            "--no-pager",
            "-n",
            "200",
            "-u",
            "tunnel-a.service",
            "-f"
        ]
    );
    let user = LogSource::Journal {
        unit: "tunnel-a.service".into(),
        user: true,
    };
    assert_eq!(
        log_command(
            &user,
            &LogQuery {
                lines: 200,
                ..LogQuery::default()
            }
        ),
        [
            "journalctl",
            "--no-pager",
            "-n",
            "200",
            "--user-unit",
            "tunnel-a.service"
        ]
    );
}
