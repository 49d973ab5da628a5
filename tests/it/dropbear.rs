//! Dropbear's client as `ssh`, as on an OpenWrt box: Debian's real `dbclient` behind a
//! symlink named `ssh` first on `PATH`. `check` and `doctor` refuse it with the fix; the
//! watchdog refuses it before any ssh starts, with exit 3 and the back-off at its max,
//! so the next start waits instead of looping.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

use crate::common::child::wait_exit;
use crate::common::prereq::{Prereq, require, which};
use crate::common::temp_dir;

/// A folder with `ssh` → the real dbclient, and the `PATH` that puts it first.
fn dropbear_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let dbclient = which("dbclient").expect("dbclient");
    std::os::unix::fs::symlink(dbclient, bin.join("ssh")).unwrap();
    format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display())
}

/// A configuration `check` accepts, with one tunnel `a`.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("tunnels.yaml");
    std::fs::write(
        &path,
        "tunnels:\n  a:\n    host: h.example.org\n    forwards:\n      - dynamic: 1080\n",
    )
    .unwrap();
    path
}

fn tunnelctl(path: &str, config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::cargo_bin("tunnelctl")
        .unwrap()
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PATH", path)
        .env_remove("TUNNELCTL_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_dropbear_as_ssh_with_the_fix() {
    if !require(
        "check_refuses_dropbear_as_ssh_with_the_fix",
        &[Prereq::Dropbear],
    ) {
        return;
    }
    let dir = temp_dir("dropbear-check");
    let path = dropbear_path(dir.path());
    let config = config(dir.path());
    let (code, stdout, stderr) = tunnelctl(&path, &config, &["check"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("`ssh` is Dropbear's ssh client (Dropbear v")
            && stderr.contains("opkg install openssh-client"),
        "{stderr}"
    );
    assert!(!stdout.contains("tunnel(s) OK"), "{stdout}");
    // The same configuration with OpenSSH's ssh passes.
    let (code, stdout, stderr) = tunnelctl("/usr/sbin:/usr/bin:/sbin:/bin", &config, &["check"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 tunnel(s) OK"), "{stdout}");
}

#[test]
fn doctor_refuses_dropbear_as_ssh_with_the_fix() {
    if !require(
        "doctor_refuses_dropbear_as_ssh_with_the_fix",
        &[Prereq::Dropbear],
    ) {
        return;
    }
    let dir = temp_dir("dropbear-doctor");
    let path = dropbear_path(dir.path());
    let config = config(dir.path());
    let (code, stdout, stderr) = tunnelctl(&path, &config, &["doctor", "a", "--timeout", "5s"]);
    let all = format!("{stdout}{stderr}");
    assert_ne!(code, Some(0), "{all}");
    assert!(
        all.contains("Dropbear's ssh client") && all.contains("opkg install openssh-client"),
        "{all}"
    );
    // doctor stops there: no ssh run against the server.
    assert!(!all.contains("h.example.org:"), "{all}");
}

/// The watchdog with `--backoff-max 4s`, `ssh` being Dropbear's.
fn watchdog(path: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunnel-watchdog"));
    cmd.args([
        "--name",
        "db",
        "--backoff-initial",
        "1s",
        "--backoff-max",
        "4s",
    ])
    .arg("--state-dir")
    .arg(dir.join("state"))
    .arg("--log-file")
    .arg(dir.join("log"))
    .args(["--", "ssh", "-N", "-D", "127.0.0.1:1080", "127.0.0.1"])
    .env("PATH", path)
    .env_remove("NOTIFY_SOCKET")
    .stdin(Stdio::null());
    cmd
}

#[test]
fn the_watchdog_refuses_dropbear_at_start_and_its_restart_waits() {
    if !require(
        "the_watchdog_refuses_dropbear_at_start_and_its_restart_waits",
        &[Prereq::Dropbear],
    ) {
        return;
    }
    let dir = temp_dir("dropbear-watchdog");
    let path = dropbear_path(dir.path());
    let mut first = watchdog(&path, dir.path()).spawn().unwrap();
    let code = wait_exit(&mut first, Duration::from_secs(20));
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert_eq!(code, Some(3), "log:\n{log}");
    assert!(
        log.contains("Dropbear's ssh client") && log.contains("opkg install openssh-client"),
        "{log}"
    );
    // Refused before any ssh ran.
    assert!(!log.contains("connecting (attempt"), "{log}");
    let state = std::fs::read_to_string(dir.path().join("state/state")).unwrap();
    assert!(state.contains("state=failed"), "{state}");
    // Restarted (as every init system does), it first waits out the back-off
    // (4 s ± 15 %) instead of failing at once again.
    let started = Instant::now();
    let mut second = watchdog(&path, dir.path()).spawn().unwrap();
    let code = wait_exit(&mut second, Duration::from_secs(30));
    let took = started.elapsed();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert_eq!(code, Some(3), "log:\n{log}");
    assert!(
        took >= Duration::from_secs(3),
        "the restart failed again after {took:?}, without its back-off; log:\n{log}"
    );
}
