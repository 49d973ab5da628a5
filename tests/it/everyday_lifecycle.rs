//! `start`, `stop`, `restart`, `list --json` and `logs -n` of a tunnel tunnelctl
//! installed, through each real init's own tools: a user manager, SysV init, BusyBox init.
//! One scenario ([`stop_start_restart`]) over the [`Driven`] rigs.

use std::time::Duration;

use crate::common;
use common::commands::out_text;
use common::driven::{Driven, NAME};
use common::driven_inittab::DrivenInittab;
use common::driven_systemd::DrivenUserManager;
use common::inittab_init::Flavor;
use common::wait_until;

/// `tunnelctl -c CONFIG ARGS… [--target T]`, asserting success.
fn ok<D: Driven>(rig: &D, args: &[&str]) -> String {
    let config = rig.config().display().to_string();
    let mut all: Vec<&str> = vec!["-c", &config];
    all.extend(args);
    let target = rig.target_args();
    if args[0] != "list" {
        all.extend(target.iter().map(String::as_str));
    }
    let out = rig.tunnelctl(&all, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "{}: tunnelctl {args:?}: {}\n{}",
        rig.label(),
        out_text(&out),
        rig.report()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn watchdogs<D: Driven>(rig: &D) -> Vec<i32> {
    rig.tunnel_processes()
        .into_iter()
        .filter(|(_, c)| c.contains("tunnel-watchdog"))
        .map(|(p, _)| p)
        .collect()
}

fn stop_start_restart<D: Driven>(rig: &D) {
    let label = rig.label();
    let extra = rig.install_args();
    let mut install = vec!["install", NAME];
    install.extend(extra.iter().map(String::as_str));
    ok(rig, &install);
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{label}: never up: {e}\n{}", rig.report()));

    // list --json says where it is installed.
    let doc: serde_json::Value = serde_json::from_str(&ok(rig, &["list", "--json"])).unwrap();
    let row = &doc["tunnels"][0];
    assert_eq!(row["name"], NAME, "{doc}");
    assert!(
        row["installed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["target"] == label.replace("sysv", "inittab") && p["state"] == "installed"),
        "{label}: {doc}"
    );

    // stop: nothing of the tunnel runs, and status says stopped with no forward up.
    let first = watchdogs(rig);
    assert_eq!(first.len(), 1, "{label}: {first:?}");
    ok(rig, &["stop", NAME]);
    assert!(
        wait_until(Duration::from_secs(20), || rig
            .tunnel_processes()
            .is_empty()),
        "{label}: still running after stop: {:?}\n{}",
        rig.tunnel_processes(),
        rig.report()
    );
    let config = rig.config().display().to_string();
    let target = rig.target_args();
    let mut status: Vec<&str> = vec!["-c", &config, "status", NAME, "--json"];
    status.extend(target.iter().map(String::as_str));
    let out = rig.tunnelctl(&status, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{label}: {}", out_text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &doc["tunnels"][0];
    assert_eq!(t["state"], "stopped", "{label}: {doc}");
    for f in t["forwards"].as_array().unwrap() {
        assert_ne!(
            f["health"], "up",
            "{label}: a forward up under a stopped tunnel: {doc}"
        );
    }
    status.retain(|a| *a != "--json");
    let out = rig.tunnelctl(&status, Duration::from_secs(30));
    let table = String::from_utf8_lossy(&out.stdout);
    // The state word of the tunnel's row and of each forward's line (`-L SPEC HEALTH`)
    // is the third; "was up" after it is history.
    assert!(
        table
            .lines()
            .skip(1)
            .all(|l| l.split_whitespace().nth(2) != Some("up")),
        "{label}: {table}"
    );
    // Stopped stays stopped: nothing respawns it.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        rig.tunnel_processes().is_empty(),
        "{label}: respawned after stop"
    );

    // start --all: the one installed tunnel runs again.
    ok(rig, &["start", "--all"]);
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{label}: not back after start: {e}\n{}", rig.report()));
    let mut second = Vec::new();
    assert!(wait_until(Duration::from_secs(20), || {
        second = watchdogs(rig);
        second.len() == 1
    }));

    // restart: a new watchdog, the tunnel carrying data again.
    ok(rig, &["restart", NAME]);
    let mut third = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            third = watchdogs(rig);
            third.len() == 1 && third != second
        }),
        "{label}: restart left {third:?} (was {second:?})\n{}",
        rig.report()
    );
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{label}: not back after restart: {e}\n{}", rig.report()));

    // logs -n 1: one line, where the init keeps them (not the user manager: no journald).
    if rig.watchdog_log().is_some() {
        let log = ok(rig, &["logs", NAME, "-n", "1"]);
        assert_eq!(log.lines().count(), 1, "{label}: {log}");
    }
    ok(rig, &["uninstall", NAME]);
}

#[test]
fn start_stop_restart_under_a_user_manager() {
    let Some(rig) = DrivenUserManager::start("start_stop_restart_under_a_user_manager") else {
        return;
    };
    stop_start_restart(&rig);
}

#[test]
fn start_stop_restart_under_sysv_init() {
    let Some(rig) = DrivenInittab::start("start_stop_restart_under_sysv_init", Flavor::Sysv) else {
        return;
    };
    stop_start_restart(&rig);
}

#[test]
fn start_stop_restart_under_busybox_init() {
    let Some(rig) = DrivenInittab::start("start_stop_restart_under_busybox_init", Flavor::Busybox)
    else {
        return;
    };
    stop_start_restart(&rig);
}
