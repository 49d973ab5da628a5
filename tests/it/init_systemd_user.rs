//! The systemd-user unit on a real `systemd --user`: installed by `tunnelctl install`,
//! started (READY=1), a real tunnel to a real sshd on 127.0.0.1 carrying data; then the
//! ssh client frozen and the watchdog frozen, and the tunnel back each time.

use crate::common;

use common::supervised::Supervised;
use common::systemd_tunnel::SystemdTunnel;
use common::tunnel_env::alive;
use common::user_unit::{UserUnit, UserUnitRig};

#[test]
fn systemd_user_unit_survives_frozen_ssh_and_frozen_watchdog() {
    let test = "systemd_user_unit_survives_frozen_ssh_and_frozen_watchdog";
    let Some(rig) = UserUnitRig::start(test, "usermgr") else {
        return;
    };
    let unit = rig.start_itest();
    unit.expect_freshly_started();
    let watchdog = unit.main_pid();
    check_status_and_reconnect(&unit, watchdog);

    assert!(rig.manager.cgroup().contains(watchdog));
    let watchdog2 = unit.freeze_ssh(watchdog);
    assert!(
        !alive(watchdog),
        "the old watchdog {watchdog} is still there"
    );
    let watchdog3 = unit.freeze_watchdog(watchdog2);
    rig.stop_and_tear_down(watchdog3);
}

/// status and reconnect for real, against this manager (`systemctl --user`). No journald
/// runs in this private manager's namespace, so `logs` (journalctl --user-unit) has
/// nothing to read here: it is proven against the nspawn system manager's journal instead.
fn check_status_and_reconnect(unit: &SystemdTunnel<UserUnit>, watchdog: i32) {
    unit.expect_status_up();
    let before = unit.status_json();
    assert_eq!(before["pid"], watchdog, "{before}");
    assert_eq!(before["init"]["active_state"], "active", "{before}");
    let after = unit.reconnect(&before, watchdog);
    unit.expect_roundtrip("after the reconnect");
    eprintln!(
        "systemd-user: status/reconnect: ssh {} -> {}",
        before["ssh_pid"], after["ssh_pid"]
    );
}
