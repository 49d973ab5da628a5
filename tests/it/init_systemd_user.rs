//! The systemd-user unit on a real `systemd --user`: installed by `tunnelctl install`,
//! started (READY=1), a real tunnel to a real sshd on 127.0.0.1 carrying data; then the
//! ssh client frozen and the watchdog frozen, and the tunnel back each time.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::tunnel_env::{
    EchoServer, Server, Timing, alive, free_port, install, roundtrip, sigstop, wait_roundtrip,
    wait_ssh_child, write_config,
};
use common::user_manager::{UserManager, run_bounded};
use common::wait_until;

const NAME: &str = "itest";
const UNIT: &str = "tunnel-itest.service";
const PROPS: &[&str] = &[
    "ActiveState",
    "SubState",
    "StatusText",
    "NRestarts",
    "MainPID",
    "Result",
];

/// `tunnelctl ARGS` inside the manager's mount namespace, as its user would run it.
fn tunnelctl_in(m: &UserManager, args: &[&str]) -> std::process::Output {
    let mut cmd = m.command(env!("CARGO_BIN_EXE_tunnelctl"));
    cmd.args(args)
        .env("XDG_STATE_HOME", m.home().join(".local/state"))
        .env_remove("NO_COLOR");
    run_bounded(cmd, Duration::from_secs(30))
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn status_in(m: &UserManager) -> serde_json::Value {
    let out = tunnelctl_in(m, &["status", NAME, "--target", "systemd-user", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", out_text(&out)));
    doc["tunnels"][0].clone()
}

fn main_pid(m: &UserManager) -> i32 {
    m.show(UNIT, &["MainPID"])["MainPID"].parse().unwrap()
}

/// Waits until the unit was restarted past `restarts` and runs a new main process.
fn wait_restarted(m: &UserManager, restarts: u32, old_main: i32, timeout: Duration) -> i32 {
    let mut props = Default::default();
    let ok = wait_until(timeout, || {
        props = m.show(UNIT, PROPS);
        let n: u32 = props["NRestarts"].parse().unwrap_or(0);
        let main: i32 = props["MainPID"].parse().unwrap_or(0);
        n > restarts
            && props["ActiveState"] == "active"
            && props["SubState"] == "running"
            && main != 0
            && main != old_main
    });
    assert!(
        ok,
        "{UNIT} not restarted within {timeout:?}: {props:?}\nmanager log:\n{}",
        m.log()
    );
    props["MainPID"].parse().unwrap()
}

#[test]
fn systemd_user_unit_survives_frozen_ssh_and_frozen_watchdog() {
    let test = "systemd_user_unit_survives_frozen_ssh_and_frozen_watchdog";
    if !require(
        test,
        &[
            Prereq::Root,
            Prereq::Unshare,
            Prereq::SystemdUser,
            Prereq::Sshd,
        ],
    ) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let echo = EchoServer::start();
    let lport = free_port();
    let manager = UserManager::start();
    let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
    let server = Server {
        port: sshd.port(),
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(
        manager.home(),
        NAME,
        &server,
        lport,
        echo.port(),
        &Timing::default(),
    );

    // The real install path under the manager's HOME; `--root /` runs no systemctl.
    install(
        &config,
        NAME,
        "systemd-user",
        Path::new("/"),
        &[("HOME", manager.home())],
    );
    assert!(
        manager.unit_dir().join(UNIT).is_file(),
        "install did not write {UNIT} into ~/.config/systemd/user"
    );
    manager.systemctl_ok(&["daemon-reload"]);
    let started = Instant::now();
    // Type=notify: `start` returns only once the watchdog sent READY=1.
    manager.systemctl_ok(&["start", UNIT]);
    eprintln!(
        "systemd-user: start (to READY=1) took {:?}",
        started.elapsed()
    );
    let props = manager.show(UNIT, PROPS);
    assert_eq!(
        props["ActiveState"],
        "active",
        "{props:?}\n{}",
        manager.log()
    );
    assert_eq!(props["SubState"], "running", "{props:?}");
    assert_eq!(props["NRestarts"], "0", "{props:?}");
    assert!(
        !props["StatusText"].is_empty(),
        "the watchdog sent no STATUS=: {props:?}"
    );
    // READY=1 means the forward was proven: data goes through at once.
    roundtrip(lport).unwrap_or_else(|e| {
        panic!(
            "tunnel not carrying data right after READY=1: {e}\n{}",
            manager.log()
        )
    });

    // status and reconnect for real, against this manager (`systemctl --user`).
    let watchdog = main_pid(&manager);
    let out = tunnelctl_in(&manager, &["status", NAME, "--target", "systemd-user"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status of an up unit: {}\n{}",
        out_text(&out),
        manager.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("itest  systemd-user  up ")),
        "{}",
        out_text(&out)
    );
    let before = status_in(&manager);
    assert_eq!(before["pid"], watchdog, "{before}");
    assert_eq!(before["init"]["active_state"], "active", "{before}");
    let (ssh_before, restarts_before) = (
        before["ssh_pid"].as_u64().unwrap(),
        before["restarts"].as_u64().unwrap(),
    );
    let out = tunnelctl_in(&manager, &["reconnect", NAME, "--target", "systemd-user"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("asked systemd to send SIGUSR1"),
        "{}",
        out_text(&out)
    );
    let mut after = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            after = status_in(&manager);
            after["state"] == "up"
                && after["ssh_pid"].as_u64().is_some_and(|p| p != ssh_before)
                && after["restarts"].as_u64() == Some(restarts_before + 1)
        }),
        "no reconnect after `tunnelctl reconnect`: before {before}\nafter {after}\n{}",
        manager.log()
    );
    assert_eq!(manager.show(UNIT, &["NRestarts"])["NRestarts"], "0");
    assert_eq!(main_pid(&manager), watchdog, "systemd restarted the unit");
    // No journald runs in this private manager's namespace, so `logs` (journalctl
    // --user-unit) has nothing to read here: it is proven against the nspawn system
    // manager's journal instead.
    roundtrip(lport).unwrap_or_else(|e| {
        panic!(
            "tunnel not carrying data after the reconnect: {e}\n{}",
            manager.log()
        )
    });
    eprintln!(
        "systemd-user: status/reconnect: ssh {ssh_before} -> {}",
        after["ssh_pid"]
    );

    // 1. Freeze the ssh client: the watchdog's probes fail, it exits, systemd restarts it.
    assert!(manager.cgroup().contains(watchdog));
    let ssh =
        wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh child");
    sigstop(ssh);
    let frozen = Instant::now();
    let watchdog2 = wait_restarted(&manager, 0, watchdog, Duration::from_secs(30));
    let working = wait_roundtrip(lport, Duration::from_secs(30)).unwrap_or_else(|e| {
        panic!(
            "tunnel not back after the ssh freeze: {e}\n{}",
            manager.log()
        )
    });
    eprintln!(
        "systemd-user: ssh frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(ssh)),
        "the frozen ssh {ssh} is still there"
    );
    assert!(
        !alive(watchdog),
        "the old watchdog {watchdog} is still there"
    );

    // 2. Freeze the watchdog itself: only systemd's WatchdogSec can notice.
    let ssh2 =
        wait_ssh_child(watchdog2, Duration::from_secs(5)).expect("the new watchdog runs no ssh");
    sigstop(watchdog2);
    let frozen = Instant::now();
    let watchdog3 = wait_restarted(&manager, 1, watchdog2, Duration::from_secs(40));
    let restarted_after = frozen.elapsed();
    let working = wait_roundtrip(lport, Duration::from_secs(30)).unwrap_or_else(|e| {
        panic!(
            "tunnel not back after the watchdog freeze: {e}\n{}",
            manager.log()
        )
    });
    eprintln!(
        "systemd-user: watchdog frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    // A stopped process cannot exit by itself: only systemd's watchdog timer (SIGABRT,
    // then SIGCONT) ends it, and not before WatchdogSec has passed.
    let shown = manager.show(UNIT, &["WatchdogUSec"])["WatchdogUSec"].clone();
    let limit = tunnelctl::duration::parse_duration(&shown)
        .unwrap_or_else(|e| panic!("WatchdogUSec={shown}: {e}"));
    assert!(!limit.is_zero(), "the rendered unit has no WatchdogSec");
    assert!(
        restarted_after + Duration::from_millis(300) >= limit,
        "restarted after {restarted_after:?}, before WatchdogSec={limit:?} could have fired"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(watchdog2) && !alive(ssh2)),
        "frozen watchdog or its ssh left behind"
    );
    assert!(alive(watchdog3));

    manager.systemctl_ok(&["stop", UNIT]);
    let manager_pid = manager.pid();
    drop(manager);
    // Teardown left nothing: the manager and everything it started are gone.
    for pid in [manager_pid, watchdog3] {
        assert!(!alive(pid), "{pid} survived the teardown");
    }
    assert!(
        wait_until(Duration::from_secs(15), || !alive(watchdog3)),
        "stop left the watchdog running"
    );
}
