//! The openrc target run by Debian's real `supervise-daemon` (openrc, libeinfo1 and
//! librc1 unpacked with `dpkg -x`, never installed): the installed init script is
//! sourced as openrc-run sources it and started through Debian's own
//! `supervise-daemon.sh` (its `eval` line), in a private mount namespace whose /run and
//! /var/log are fresh tmpfs. The tunnel carries data; the watchdog killed is respawned
//! by supervise-daemon and the tunnel comes back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::prereq::{Prereq, require};
use crate::common::sshd::Sshd;
use crate::common::tunnel_env::{
    EchoServer, Server, Timing, WATCHDOG, children_running, free_port, install, sigkill,
    wait_roundtrip, write_config,
};
use crate::common::user_manager::run_bounded;
use crate::common::{temp_dir, wait_until};

const NAME: &str = "itest";

/// Debian's openrc, libeinfo1 and librc1 unpacked once under the cargo target dir.
fn openrc_tree() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openrc-unpacked");
    if cache.join("sbin/supervise-daemon").is_file() {
        return cache;
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("openrc-download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut c = Command::new("apt-get");
    c.args(["download", "openrc", "libeinfo1", "librc1"])
        .current_dir(&work);
    let out = run_bounded(c, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "apt-get download openrc libeinfo1 librc1 failed (run apt-get update?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unpacked = work.join("root");
    for deb in std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
    {
        if deb.extension().is_some_and(|e| e == "deb") {
            let status = Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&unpacked)
                .status()
                .unwrap();
            assert!(status.success(), "dpkg -x {}", deb.display());
        }
    }
    let _ = std::fs::rename(&unpacked, &cache);
    let _ = std::fs::remove_dir_all(&work);
    assert!(cache.join("sbin/supervise-daemon").is_file());
    cache
}

/// supervise-daemon, stopped on drop: SIGTERM (it stops the watchdog), then SIGKILL for
/// whatever of it and the watchdogs is left, by pid.
struct Supervisor {
    pid: i32,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let watchdogs = children_running(self.pid, WATCHDOG);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let gone = wait_until(Duration::from_secs(15), || {
            !Path::new(&format!("/proc/{}", self.pid)).exists()
        });
        // Only what is still there: a pid that is gone is fine here.
        for pid in std::iter::once(self.pid).filter(|_| !gone).chain(watchdogs) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn supervise_daemon_runs_the_installed_script_and_respawns_the_watchdog() {
    let test = "supervise_daemon_runs_the_installed_script_and_respawns_the_watchdog";
    if !require(test, &[Prereq::Root, Prereq::AptGet, Prereq::Unshare]) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let openrc = openrc_tree();
    let echo = EchoServer::start();
    let lport = free_port();
    let root = temp_dir("itest-openrc");
    let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
    let server = Server {
        port: sshd.port(),
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(
        sshd.dir(),
        NAME,
        &server,
        lport,
        echo.port(),
        &Timing::default(),
    );
    install(&config, NAME, "openrc", root.path(), &[]);
    let script = root.path().join(format!("etc/init.d/tunnel-{NAME}"));

    // openrc-run's part: the service's name, the script sourced, start_pre, then
    // Debian's supervise-daemon.sh (its own eval line) with einfo's output stubbed.
    let driver = r#"
# Not -u: openrc-run's scripts read unset variables.
set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mkdir -p /run/openrc /var/log/tunnelctl
export PATH="$OPENRC/sbin:$PATH" LD_LIBRARY_PATH="$OPENRC/lib/x86_64-linux-gnu"
export RC_SVCNAME="tunnel-$NAME"
ebegin() { :; }
eend() { return "$1"; }
ewarn() { echo "$*" >&2; }
service_set_value() { :; }
need() { :; }
after() { :; }
pidfile=/run/supervise-tunnel.pid
. "$SCRIPT"
start_pre
. "$OPENRC/lib/rc/sh/supervise-daemon.sh"
supervise_start
# The supervisor writes its pidfile after it forked: wait for it, 10 s at most.
i=0
while [ ! -s "$pidfile" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
cat "$pidfile"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", driver])
        .env("OPENRC", &openrc)
        .env("NAME", NAME)
        .env("SCRIPT", &script);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "starting through supervise-daemon.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "no supervise-daemon pid: {stdout:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _supervisor = Supervisor { pid };
    let started = Instant::now();
    let inside = |p: &str| PathBuf::from(format!("/proc/{pid}/root{p}"));
    let log = || {
        let id = tunnelctl::config::inittab_id(NAME);
        std::fs::read_to_string(inside(&format!("/var/log/tunnelctl/{id}.log"))).unwrap_or_default()
            + &std::fs::read_to_string(inside(&format!("/var/log/tunnelctl/{id}.err")))
                .unwrap_or_default()
    };
    let up = wait_roundtrip(lport, Duration::from_secs(60));
    assert!(up.is_ok(), "{up:?}; log:\n{}", log());
    eprintln!(
        "{test}: tunnel up {} ms after supervise-daemon started",
        started.elapsed().as_millis()
    );
    let state = || {
        std::fs::read_to_string(inside(&format!("/run/tunnelctl/{NAME}/state"))).unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || state().contains("state=up\n")),
        "the state file never said up: {}; log:\n{}",
        state(),
        log()
    );

    let first = children_running(pid, WATCHDOG);
    assert_eq!(
        first.len(),
        1,
        "one watchdog under supervise-daemon: {first:?}"
    );
    let killed = Instant::now();
    sigkill(first[0]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = children_running(pid, WATCHDOG);
            now.len() == 1 && now[0] != first[0]
        }),
        "supervise-daemon did not respawn the watchdog; log:\n{}",
        log()
    );
    let second = children_running(pid, WATCHDOG)[0];
    // The new watchdog's own proof (the old ssh may outlive its killed watchdog for a
    // moment, so a round trip alone would not tell).
    assert!(
        wait_until(Duration::from_secs(60), || {
            let now = state();
            now.contains(&format!("pid={second}\n")) && now.contains("state=up\n")
        }),
        "the respawned watchdog never proved the tunnel: {}; log:\n{}",
        state(),
        log()
    );
    let back = wait_roundtrip(lport, Duration::from_secs(60));
    assert!(back.is_ok(), "{back:?}; log:\n{}", log());
    eprintln!(
        "{test}: tunnel back {} ms after the watchdog was killed",
        killed.elapsed().as_millis()
    );
}
