//! The hardened systemd system unit proven to run, not only scored: the host's own tree
//! booted with systemd-nspawn (a real system manager as PID 1, private network), the
//! unit installed by `tunnelctl install --root` and bound in, sshd inside the container
//! on its loopback, and the same start / freeze ssh / freeze watchdog checks as the user
//! unit, with DynamicUser=, LoadCredential= and the whole sandbox in force.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nspawn::{Bind, Container, ContainerSshdFiles, host_pid};
use common::prereq::{Prereq, require};
use common::tunnel_env::{
    EchoServer, Server, Timing, WATCHDOG, alive, in_netns, install_with_watchdog, roundtrip,
    sigstop, wait_roundtrip_in, wait_ssh_child, write_config,
};
use common::user_manager::run_bounded;
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
// The container has its own network namespace: fixed ports cannot collide.
const SSHD_PORT: u16 = 2222;
const LOCAL_PORT: u16 = 8888;

/// Where the build directory (tunnelctl and tunnel-watchdog) is bound in the container.
const BUILD_IN_CONTAINER: &str = "/opt/tunnelctl-build";

/// `tunnelctl ARGS` run inside the container (its systemd, its journal, its /var/lib).
fn tunnelctl_in(c: &Container, args: &[&str]) -> std::process::Output {
    c.run(&format!("{BUILD_IN_CONTAINER}/tunnelctl"), args)
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tunnelctl status NAME --target systemd --json` in the container: its one tunnel.
fn status_in(c: &Container) -> serde_json::Value {
    let out = tunnelctl_in(c, &["status", NAME, "--target", "systemd", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", out_text(&out)));
    doc["tunnels"][0].clone()
}

/// The watchdog's pid on the host, from the container's MainPID.
fn main_pid(c: &Container) -> i32 {
    let inner: i32 = c.show(UNIT, &["MainPID"])["MainPID"].parse().unwrap();
    assert!(inner > 0, "{UNIT} has no main process");
    host_pid(c.pid(), inner).unwrap_or_else(|| panic!("no host pid for container pid {inner}"))
}

fn wait_restarted(c: &Container, restarts: u32, old_main: i32, timeout: Duration) -> i32 {
    let mut props = Default::default();
    let ok = wait_until(timeout, || {
        props = c.show(UNIT, PROPS);
        let n: u32 = props["NRestarts"].parse().unwrap_or(0);
        n > restarts && props["ActiveState"] == "active" && props["SubState"] == "running"
    });
    assert!(
        ok,
        "{UNIT} not restarted within {timeout:?}: {props:?}\njournal:\n{}",
        c.journal(UNIT)
    );
    let main = main_pid(c);
    assert_ne!(main, old_main);
    main
}

/// `systemd-analyze security --offline=yes UNIT`: the overall exposure score.
fn exposure(unit: &Path) -> f64 {
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.args(["security", "--offline=yes", "--no-pager"])
        .arg(unit);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score from systemd-analyze security:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // "→ Overall exposure level for tunnel-itest.service: 1.2 OK 🙂"
    // In the C locale the arrow and smiley are "->" and ":-)": take the word after
    // "service: ", not after the last colon.
    line.split_once(".service: ")
        .map(|(_, rest)| rest)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("score")
}

#[test]
fn systemd_system_unit_runs_sandboxed_and_survives_freezes() {
    let test = "systemd_system_unit_runs_sandboxed_and_survives_freezes";
    if !require(test, &[Prereq::Root, Prereq::SystemdNspawn, Prereq::Sshd]) {
        return;
    }
    // Everything the container must see lives in one temp dir, bound at the same path.
    let dir = tempfile::Builder::new()
        .prefix("itest-system")
        .tempdir()
        .unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let sshd = ContainerSshdFiles::create(&shared, SSHD_PORT);
    // The echo server's port must be known before boot (it goes into the unit); inside
    // the fresh network namespace any port is free.
    const ECHO_PORT: u16 = 7777;
    let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
    let server = Server {
        port: SSHD_PORT,
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(
        &shared,
        NAME,
        &server,
        LOCAL_PORT,
        ECHO_PORT,
        &Timing::default(),
    );
    let root = dir.path().join("root");
    // PrivateTmp=yes hides the host's /tmp from the service, and a clean clone (CI's
    // included) may well live there: the build dir goes to a fixed path outside it.
    let build_dir: PathBuf = Path::new(WATCHDOG).parent().unwrap().to_path_buf();
    install_with_watchdog(
        &config,
        NAME,
        "systemd",
        &root,
        &[],
        &format!("{BUILD_IN_CONTAINER}/tunnel-watchdog"),
    );
    let unit_file = root.join("etc/systemd/system").join(UNIT);
    assert!(
        unit_file.is_file(),
        "install --root did not write {}",
        unit_file.display()
    );
    let unit_text = std::fs::read_to_string(&unit_file).unwrap();
    for directive in [
        "DynamicUser=yes",
        "LoadCredential=identity:",
        "ProtectSystem=strict",
        "ProtectHome=yes",
    ] {
        assert!(
            unit_text.contains(directive),
            "the system unit lacks {directive}:\n{unit_text}"
        );
    }
    let score = exposure(&unit_file);
    eprintln!("systemd: systemd-analyze security --offline=yes rates the unit {score}");
    assert!(score <= 2.5, "exposure {score} > 2.5");

    // The install root is bound in and the unit copied into /etc/systemd/system after
    // boot (what install does: write, daemon-reload). Bound there before boot, the
    // first-boot presets would enable and start it while the container comes up.
    let container = Container::boot(&[
        Bind::ro_same(&root),
        Bind::ro(&build_dir, BUILD_IN_CONTAINER),
        Bind::ro_same(&shared),
    ]);
    eprintln!("systemd: container booted in {:?}", container.boot_time);
    // The container's only interface is lo, so systemd-networkd-wait-online (which
    // network-online.target pulls in) would wait its full 2 minutes: not what is tested.
    container.systemctl_ok(&["mask", "--runtime", "systemd-networkd-wait-online.service"]);
    let out = container.run(
        "cp",
        &[&unit_file.display().to_string(), "/etc/systemd/system/"],
    );
    assert!(
        out.status.success(),
        "copy the unit into the container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    container.systemctl_ok(&["daemon-reload"]);
    sshd.start(&container, "itest-sshd.service");
    let cpid = container.pid();
    // The echo server listens on the container's loopback (its accept thread stays there).
    let echo = in_netns(cpid, || EchoServer::start_on(ECHO_PORT));

    let started = Instant::now();
    let out = container.systemctl(&["start", UNIT]);
    assert!(
        out.status.success(),
        "systemctl start {UNIT} failed: {}\njournal:\n{}\nsshd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        container.journal(UNIT),
        container.journal("itest-sshd.service")
    );
    eprintln!("systemd: start (to READY=1) took {:?}", started.elapsed());
    let props = container.show(UNIT, PROPS);
    assert_eq!(
        props["ActiveState"],
        "active",
        "{props:?}\n{}",
        container.journal(UNIT)
    );
    assert_eq!(props["SubState"], "running", "{props:?}");
    assert_eq!(props["NRestarts"], "0", "{props:?}");
    assert!(
        !props["StatusText"].is_empty(),
        "no STATUS= from the watchdog: {props:?}"
    );
    in_netns(cpid, || roundtrip(LOCAL_PORT)).unwrap_or_else(|e| {
        panic!(
            "tunnel not carrying data right after READY=1: {e}\n{}",
            container.journal(UNIT)
        )
    });

    // The sandbox is in force: the watchdog runs as a dynamic user, not root.
    let watchdog = main_pid(&container);
    let uid_line = std::fs::read_to_string(format!("/proc/{watchdog}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid_line.split_whitespace().nth(1).is_some_and(|u| u != "0"),
        "the watchdog runs as root: {uid_line}"
    );

    // status, reconnect and logs for real, against this systemd and its journal.
    let out = tunnelctl_in(&container, &["status", NAME, "--target", "systemd"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status of an up unit: {}\njournal:\n{}",
        out_text(&out),
        container.journal(UNIT)
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("itest  systemd  up ")),
        "{}",
        out_text(&out)
    );
    // metrics finds the state file where status does.
    let out = tunnelctl_in(&container, &["metrics", "--target", "systemd", NAME]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "tunnelctl_tunnel_up{tunnel=\"itest\"} 1"),
        "{}",
        out_text(&out)
    );
    let before = status_in(&container);
    assert_eq!(before["running"], true, "{before}");
    assert_eq!(before["init"]["active_state"], "active", "{before}");
    assert_eq!(before["init"]["sub_state"], "running", "{before}");
    let (ssh_before, restarts_before) = (
        before["ssh_pid"].as_u64().unwrap(),
        before["restarts"].as_u64().unwrap(),
    );
    let out = tunnelctl_in(&container, &["reconnect", NAME, "--target", "systemd"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("asked systemd to send SIGUSR1"),
        "{}",
        out_text(&out)
    );
    let mut after = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            after = status_in(&container);
            after["state"] == "up"
                && after["ssh_pid"].as_u64().is_some_and(|p| p != ssh_before)
                && after["restarts"].as_u64() == Some(restarts_before + 1)
        }),
        "no reconnect after `tunnelctl reconnect`: before {before}\nafter {after}\n{}",
        container.journal(UNIT)
    );
    // The watchdog reconnected by itself: systemd restarted nothing.
    assert_eq!(container.show(UNIT, &["NRestarts"])["NRestarts"], "0");
    assert_eq!(main_pid(&container), watchdog);
    let out = tunnelctl_in(&container, &["logs", NAME, "--target", "systemd"]);
    let logs = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && logs.contains("reconnecting now (SIGHUP/SIGUSR1)"),
        "logs does not show the watchdog's journal lines: {}",
        out_text(&out)
    );
    eprintln!(
        "systemd: status/reconnect/logs in the container: ssh {ssh_before} -> {}, {} journal lines",
        after["ssh_pid"],
        logs.lines().count()
    );
    in_netns(cpid, || roundtrip(LOCAL_PORT)).unwrap_or_else(|e| {
        panic!(
            "tunnel not carrying data after the reconnect: {e}\n{}",
            container.journal(UNIT)
        )
    });

    // 1. Freeze the ssh client.
    let ssh =
        wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh child");
    sigstop(ssh);
    let frozen = Instant::now();
    let watchdog2 = wait_restarted(&container, 0, watchdog, Duration::from_secs(30));
    let working =
        wait_roundtrip_in(cpid, LOCAL_PORT, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "tunnel not back after the ssh freeze: {e}\n{}",
                container.journal(UNIT)
            )
        });
    eprintln!(
        "systemd: ssh frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(ssh)),
        "the frozen ssh {ssh} is still there"
    );

    // 2. Freeze the watchdog: systemd's WatchdogSec has to act.
    let ssh2 =
        wait_ssh_child(watchdog2, Duration::from_secs(5)).expect("the new watchdog runs no ssh");
    sigstop(watchdog2);
    let frozen = Instant::now();
    let watchdog3 = wait_restarted(&container, 1, watchdog2, Duration::from_secs(40));
    let restarted_after = frozen.elapsed();
    let working =
        wait_roundtrip_in(cpid, LOCAL_PORT, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "tunnel not back after the watchdog freeze: {e}\n{}",
                container.journal(UNIT)
            )
        });
    eprintln!(
        "systemd: watchdog frozen -> tunnel carrying data again after {:?}",
        working - frozen
    );
    let journal = container.journal(UNIT);
    assert!(
        journal.contains("Watchdog timeout"),
        "the restart was not systemd's WatchdogSec:\n{journal}"
    );
    let shown = container.show(UNIT, &["WatchdogUSec"])["WatchdogUSec"].clone();
    let limit = tunnelctl::duration::parse_duration(&shown)
        .unwrap_or_else(|e| panic!("WatchdogUSec={shown}: {e}"));
    assert!(
        restarted_after + Duration::from_millis(300) >= limit,
        "restarted after {restarted_after:?} < {limit:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(watchdog2) && !alive(ssh2)),
        "frozen watchdog or its ssh left behind"
    );
    assert!(alive(watchdog3));
    drop(echo);
    let (systemd_pid, nspawn_watchdog) = (container.pid(), watchdog3);
    drop(container);
    // The container, its systemd and every service in it are gone.
    for pid in [systemd_pid, nspawn_watchdog] {
        assert!(!alive(pid), "{pid} survived the teardown");
    }
}
