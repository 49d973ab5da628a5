//! No ssh outlives a SIGKILLed watchdog, even when the watchdog could not write its state
//! file (a full disk), so the next watchdog could never find that ssh by its pid; and the
//! restarted watchdog comes up and carries data (`-L` and `-R`).
//!
//! The state directory is a full tmpfs in a private mount namespace (a holder process
//! keeps it alive; the watchdogs enter it with `nsenter -m`). Full by size, not by
//! inodes: creating the control socket still works, writing the state file does not,
//! which is what a full disk does to a running tunnel.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::child::KillOnDrop;
use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::tunnel_env::{EchoServer, WATCHDOG, alive, free_port, sigkill, wait_roundtrip};
use common::wait_until;
use common::watchdog_cmd::state_log_and_ssh;

/// Every process whose argv holds `needle` as one argument (scans /proc).
fn processes_with_arg(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            tunnelctl::procinfo::argv(pid).is_some_and(|argv| argv.iter().any(|a| a == needle))
        })
        .map(|pid| pid as i32)
        .collect()
}

#[test]
fn sigkilled_watchdog_leaves_no_ssh_even_when_its_state_file_cannot_be_written() {
    let test = "sigkilled_watchdog_leaves_no_ssh_even_when_its_state_file_cannot_be_written";
    if !require(test, &[Prereq::Root, Prereq::Unshare, Prereq::Sshd]) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let echo = EchoServer::start();
    let (lport, rport) = (free_port(), free_port());
    let tmp = tempfile::Builder::new()
        .prefix("orphans")
        .tempdir()
        .unwrap();
    let mnt = tmp.path().join("full");
    std::fs::create_dir(&mnt).unwrap();
    let log = tmp.path().join("watchdog.log");

    // The holder mounts the tmpfs in its own mount namespace and says so.
    let mut holder = Command::new("unshare");
    holder
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64k,mode=0700 tmpfs \"$1\" && echo mounted && exec sleep 600")
        .arg("sh")
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut holder = KillOnDrop(holder.spawn().expect("unshare"));
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "mounted", "the holder did not mount the tmpfs");
    let holder_pid = holder.0.id();
    // The tmpfs as the holder sees it, from out here.
    let inside = |p: &Path| -> PathBuf {
        PathBuf::from(format!("/proc/{holder_pid}/root")).join(p.strip_prefix("/").unwrap())
    };
    let state_dir = mnt.join("state");
    std::fs::create_dir(inside(&state_dir)).unwrap();
    // Fill it: bounded by the 64 KiB size.
    let mut fill = std::fs::File::create(inside(&mnt.join("fill"))).unwrap();
    let chunk = [0u8; 4096];
    let mut written = 0usize;
    while fill.write_all(&chunk).and_then(|_| fill.sync_all()).is_ok() {
        written += chunk.len();
        assert!(written <= 1 << 20, "the tmpfs does not fill up");
    }
    let probe = inside(&state_dir.join("probe"));
    assert!(
        std::fs::write(&probe, b"x").is_err(),
        "the full tmpfs still takes a file's data"
    );
    let _ = std::fs::remove_file(&probe);

    let start_watchdog = || {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(holder_pid.to_string())
            .args(["-m", "--", WATCHDOG])
            .args(["--name", "orphans", "--probe-interval", "1s"])
            .args(["--probe-timeout", "1s", "--backoff-initial", "1s"])
            .args(["--backoff-max", "4s"]);
        state_log_and_ssh(&mut cmd, &state_dir, &log, sshd.ssh_base_args())
            .args(["-o", "ExitOnForwardFailure=yes", "-N", "-L"])
            .arg(format!("127.0.0.1:{lport}:127.0.0.1:{}", echo.port()))
            .arg("-R")
            .arg(format!("127.0.0.1:{rport}:127.0.0.1:{}", echo.port()))
            .arg(sshd.host())
            .stdin(Stdio::null())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC");
        // nsenter -m does not fork: its pid becomes the watchdog's.
        KillOnDrop(cmd.spawn().expect("nsenter + tunnel-watchdog"))
    };
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let needle = tunnelctl::watchdog::process::control_path_option(&state_dir.join("ctl"));

    let mut first = start_watchdog();
    let watchdog = first.0.id() as i32;
    let started = Instant::now();
    for port in [lport, rport] {
        wait_roundtrip(port, Duration::from_secs(20)).unwrap_or_else(|e| {
            panic!(
                "first watchdog: port {port} carries no data: {e}\n{}",
                read_log()
            )
        });
    }
    eprintln!(
        "first watchdog up (-L and -R) after {:?}",
        started.elapsed()
    );
    assert!(
        read_log().contains("cannot write the state file"),
        "the state file was written after all:\n{}",
        read_log()
    );
    let state = std::fs::read_to_string(inside(&state_dir.join("state"))).unwrap_or_default();
    assert!(
        !state
            .lines()
            .any(|l| l.starts_with("ssh_pid=") && l != "ssh_pid=0"),
        "ssh's pid reached the state file:\n{state}"
    );
    let ssh = processes_with_arg(&needle);
    assert_eq!(ssh.len(), 1, "one ssh with {needle}: {ssh:?}");
    let ssh = ssh[0];
    assert_eq!(common::sshd::parent_of(ssh), Some(watchdog));

    sigkill(watchdog);
    let killed = Instant::now();
    let _ = first.0.wait();
    let gone = wait_until(Duration::from_secs(5), || {
        !alive(ssh) && processes_with_arg(&needle).is_empty()
    });
    assert!(
        gone,
        "ssh {ssh} of the SIGKILLed watchdog still runs after 5 s: {:?}",
        processes_with_arg(&needle)
    );
    eprintln!(
        "ssh of the SIGKILLed watchdog gone after {:?}",
        killed.elapsed()
    );

    // The restarted watchdog (what the init system does next) finds its ports free.
    let second = start_watchdog();
    let restarted = Instant::now();
    for port in [lport, rport] {
        wait_roundtrip(port, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "restarted watchdog: port {port} carries no data: {e}\nlog:\n{}\nsshd:\n{}",
                read_log(),
                sshd.log()
            )
        });
    }
    eprintln!(
        "restarted watchdog carries data (-L and -R) after {:?}",
        restarted.elapsed()
    );
    assert_eq!(processes_with_arg(&needle).len(), 1, "exactly one ssh now");
    drop(second);
    drop(holder);
}
