//! The hardened systemd system unit proven to run, not only scored: the host's own tree
//! booted with systemd-nspawn (a real system manager as PID 1, private network), the
//! unit installed by `tunnelctl install --root` and bound in, sshd inside the container
//! on its loopback, and the same start / freeze ssh / freeze watchdog checks as the user
//! unit, with DynamicUser=, LoadCredential= and the whole sandbox in force.

use crate::common;

use std::path::Path;

use common::commands::out_text;
use common::supervised::Supervised;
use common::system_unit::{ContainerUnit, InstalledSystemUnit};
use common::systemd_analyze::exposure;
use common::systemd_tunnel::{NAME, SystemdTunnel};

#[test]
fn systemd_system_unit_runs_sandboxed_and_survives_freezes() {
    let test = "systemd_system_unit_runs_sandboxed_and_survives_freezes";
    let Some(installed) = InstalledSystemUnit::install(test) else {
        return;
    };
    check_the_unit_is_hardened(&installed.unit_file);
    let unit = installed.boot_and_start();
    unit.expect_freshly_started();
    let watchdog = unit.main_pid();
    check_the_watchdog_is_not_root(watchdog);
    check_status_metrics_reconnect_and_logs(&unit, watchdog);

    let watchdog2 = unit.freeze_ssh(watchdog);
    let watchdog3 = unit.freeze_watchdog(watchdog2);
    let journal = unit.journal();
    assert!(
        journal.contains("Watchdog timeout"),
        "the restart was not systemd's WatchdogSec:\n{journal}"
    );
    unit.tear_down(watchdog3);
}

/// The sandbox directives are in the installed unit and `systemd-analyze security` rates
/// it 2.5 at most.
fn check_the_unit_is_hardened(unit_file: &Path) {
    let unit_text = std::fs::read_to_string(unit_file).unwrap();
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
    let score = exposure(unit_file);
    eprintln!("systemd: systemd-analyze security --offline=yes rates the unit {score}");
    assert!(score <= 2.5, "exposure {score} > 2.5");
}

/// The sandbox is in force: the watchdog runs as a dynamic user, not root.
fn check_the_watchdog_is_not_root(watchdog: i32) {
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
}

/// status, metrics, reconnect and logs for real, against this systemd and its journal.
fn check_status_metrics_reconnect_and_logs(unit: &SystemdTunnel<ContainerUnit>, watchdog: i32) {
    unit.expect_status_up();
    // metrics finds the state file where status does.
    let out = unit.tunnelctl(&["metrics", "--target", "systemd", NAME]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "tunnelctl_tunnel_up{tunnel=\"itest\"} 1"),
        "{}",
        out_text(&out)
    );
    let before = unit.status_json();
    assert_eq!(before["running"], true, "{before}");
    assert_eq!(before["init"]["active_state"], "active", "{before}");
    assert_eq!(before["init"]["sub_state"], "running", "{before}");
    // The watchdog reconnects by itself: systemd restarts nothing.
    let after = unit.reconnect(&before, watchdog);
    let out = unit.tunnelctl(&["logs", NAME, "--target", "systemd"]);
    let logs = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && logs.contains("reconnecting now (SIGHUP/SIGUSR1)"),
        "logs does not show the watchdog's journal lines: {}",
        out_text(&out)
    );
    eprintln!(
        "systemd: status/reconnect/logs in the container: ssh {} -> {}, {} journal lines",
        before["ssh_pid"],
        after["ssh_pid"],
        logs.lines().count()
    );
    unit.expect_roundtrip("after the reconnect");
}
