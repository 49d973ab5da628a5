//! tunnelctl itself drives each real init: `install NAME` starts the tunnel (no
//! `--no-start`, no `--root`), `status` reads it, `reconnect` cuts a back-off short,
//! `stop`/`start`/`restart` go through the init, `uninstall NAME` stops it and leaves nothing running and nothing behind. One scenario
//! ([`common::driven::install_reconnect_uninstall`]), one rig per init.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::driven::{Driven, install_reconnect_uninstall, install_reconnect_uninstall_checking};
use common::driven_inittab::DrivenInittab;
use common::driven_systemd::{DrivenContainer, DrivenUserManager};
use common::inittab_init::Flavor;
use common::wait_until;

#[test]
fn tunnelctl_drives_a_user_manager() {
    let Some(mut rig) = DrivenUserManager::start("tunnelctl_drives_a_user_manager") else {
        return;
    };
    install_reconnect_uninstall(&mut rig);
}

#[test]
fn tunnelctl_drives_a_system_manager() {
    let Some(mut rig) = DrivenContainer::start("tunnelctl_drives_a_system_manager", "") else {
        return;
    };
    install_reconnect_uninstall(&mut rig);
}

#[test]
fn tunnelctl_drives_sysv_init() {
    let Some(mut rig) = DrivenInittab::start("tunnelctl_drives_sysv_init", Flavor::Sysv) else {
        return;
    };
    install_reconnect_uninstall(&mut rig);
}

#[test]
fn tunnelctl_drives_busybox_init() {
    let Some(mut rig) = DrivenInittab::start("tunnelctl_drives_busybox_init", Flavor::Busybox)
    else {
        return;
    };
    install_reconnect_uninstall(&mut rig);
}

/// The system unit with `metrics_file` in node_exporter's folder: under
/// `ProtectSystem=strict` only `ReadWritePaths=` makes it writable, and the sandboxed
/// dynamic user writes the `.prom` file there as itself. The folder is opened to every
/// user (1777, as /tmp): Debian ships it root's and 0755, where no dynamic user can
/// write (the watchdog logs "Permission denied" and the tunnel runs on without metrics).
#[test]
fn a_system_unit_writes_its_metrics_file_as_its_dynamic_user() {
    let test = "a_system_unit_writes_its_metrics_file_as_its_dynamic_user";
    let prom = Path::new("/var/lib/prometheus/node-exporter/tunnel-itest.prom");
    let extra = format!("    metrics_file: {}\n", prom.display());
    let Some(mut rig) = DrivenContainer::start(test, &extra) else {
        return;
    };
    let folder = prom.parent().unwrap().display().to_string();
    rig.run_ok("mkdir", &["-p", "-m", "1777", &folder]);
    install_reconnect_uninstall_checking(&mut rig, |rig| {
        let file = rig.host_path(prom);
        let mut text = String::new();
        assert!(
            wait_until(Duration::from_secs(15), || {
                text = std::fs::read_to_string(&file).unwrap_or_default();
                text.lines()
                    .any(|l| l == "tunnelctl_tunnel_up{tunnel=\"itest\"} 1")
            }),
            "no metrics saying up in {}: {text:?}\n{}",
            prom.display(),
            rig.report()
        );
        let owner = std::fs::metadata(&file).unwrap().uid();
        let watchdog = rig.main_pid();
        let status = std::fs::read_to_string(format!("/proc/{watchdog}/status")).unwrap();
        let uid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse().ok())
            .unwrap();
        assert_ne!(uid, 0, "the watchdog runs as root");
        assert_eq!(owner, uid, "the metrics file is not the dynamic user's");
    });
}
