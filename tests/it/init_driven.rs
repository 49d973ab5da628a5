//! tunnelctl itself drives each real init: `install NAME` starts the tunnel (no
//! `--no-start`, no `--root`), `status` reads it, `reconnect` cuts a back-off short,
//! `uninstall NAME` stops it and leaves nothing running and nothing behind. One scenario
//! ([`common::driven::install_reconnect_uninstall`]), one rig per init.

use crate::common;

use common::driven::install_reconnect_uninstall;
use common::driven_inittab::DrivenInittab;
use common::driven_systemd::{DrivenContainer, DrivenUserManager};
use common::inittab_init::Flavor;

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
