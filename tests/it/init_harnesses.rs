//! The init-system harnesses proven on their own with plain processes (no tunnelctl):
//! if one of these fails, the real-init tunnel tests cannot be trusted either.

use crate::common;

use std::time::{Duration, Instant};

use common::inittab_init::{Flavor, InittabInit};
use common::nspawn::Container;
use common::prereq::{Prereq, require};
use common::user_manager::UserManager;
use common::wait_until;

/// A Type=notify service whose main process (python, so NotifyAccess=main holds) sends
/// READY=1 and then WATCHDOG=1 every 0.5 s.
const NOTIFY_SERVICE: &str = r#"[Service]
Type=notify
NotifyAccess=main
WatchdogSec=2
Restart=always
RestartSec=100ms
ExecStart=/usr/bin/python3 -c "import os, socket, time\naddr = os.environ['NOTIFY_SOCKET']\naddr = chr(0) + addr[1:] if addr[0] == '@' else addr\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.connect(addr)\ns.send(b'READY=1')\nwhile True:\n    s.send(b'WATCHDOG=1')\n    time.sleep(0.5)\n"
"#;

fn main_pid(props: &std::collections::BTreeMap<String, String>) -> i32 {
    props["MainPID"].parse().expect("MainPID")
}

#[test]
fn user_manager_restarts_a_frozen_notify_service() {
    if !require(
        "user_manager_restarts_a_frozen_notify_service",
        &[
            Prereq::Root,
            Prereq::Unshare,
            Prereq::SystemdUser,
            Prereq::Python3,
        ],
    ) {
        return;
    }
    let manager = UserManager::start();
    std::fs::write(manager.unit_dir().join("probe.service"), NOTIFY_SERVICE).unwrap();
    manager.systemctl_ok(&["daemon-reload"]);
    // `start` of a Type=notify unit returns only after READY=1.
    manager.systemctl_ok(&["start", "probe.service"]);
    let props = manager.show(
        "probe.service",
        &["ActiveState", "SubState", "MainPID", "NRestarts"],
    );
    assert_eq!(
        props["ActiveState"],
        "active",
        "{props:?}\n{}",
        manager.log()
    );
    assert_eq!(props["NRestarts"], "0");
    let first = main_pid(&props);
    assert!(
        manager.cgroup().contains(first),
        "the service runs outside the test's cgroup"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let frozen = Instant::now();
    let mut props = Default::default();
    let restarted = wait_until(Duration::from_secs(15), || {
        props = manager.show("probe.service", &["ActiveState", "MainPID", "NRestarts"]);
        props["NRestarts"] != "0"
            && props["ActiveState"] == "active"
            && main_pid(&props) != first
            && main_pid(&props) != 0
    });
    assert!(
        restarted,
        "frozen service not restarted: {props:?}\n{}",
        manager.log()
    );
    eprintln!(
        "user manager: frozen notify service restarted after {:?}",
        frozen.elapsed()
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{first}")).exists(),
        "the frozen process survived its restart"
    );
    // WatchdogSec=2: not before the watchdog period ran out.
    assert!(frozen.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn nspawn_container_boots_and_runs_a_service() {
    if !require(
        "nspawn_container_boots_and_runs_a_service",
        &[Prereq::Root, Prereq::SystemdNspawn],
    ) {
        return;
    }
    let container = Container::boot(&[]);
    eprintln!("nspawn container booted in {:?}", container.boot_time);
    container.run_service("harness-sleep.service", &[], &["/bin/sleep", "1000"]);
    let props = container.show("harness-sleep.service", &["ActiveState", "MainPID"]);
    assert_eq!(props["ActiveState"], "active");
    // The container has its own network: only a loopback interface.
    let out = container.run("cat", &["/proc/net/dev"]);
    let ifaces: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert!(
        ifaces.iter().all(|i| i == "lo" || i.starts_with("host")),
        "unexpected interfaces {ifaces:?}"
    );
    let pid1 = container.pid();
    let all = container.cgroup().pids();
    assert!(
        all.contains(&pid1),
        "container systemd is not in the test cgroup"
    );
    drop(container);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid1}")).exists(),
        "container systemd survived teardown"
    );
}

/// `flavor`'s init started on a temporary root whose `/etc/inittab` is `inittab`.
/// `None`: `test` is skipped (prerequisites).
fn start_init(
    test: &str,
    flavor: Flavor,
    inittab: &str,
) -> Option<(tempfile::TempDir, InittabInit)> {
    if !require(test, flavor.prereqs()) {
        return None;
    }
    let root = common::temp_dir("inittab");
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/inittab"), inittab).unwrap();
    let init = InittabInit::start(flavor, root.path());
    Some((root, init))
}

fn respawns_sleep(test: &str, flavor: Flavor, line: &str) {
    let Some((_root, init)) = start_init(test, flavor, line) else {
        return;
    };
    let mut pid = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            pid = init
                .pids_matching("sleep 1001")
                .first()
                .copied()
                .unwrap_or(0);
            pid != 0
        }),
        "{flavor:?} init did not start the sleep entry: {:?}\nconsole: {}",
        init.processes(),
        init.console()
    );
    for round in 0..3 {
        let started = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let old = pid;
        assert!(
            wait_until(Duration::from_secs(10), || {
                pid = init
                    .pids_matching("sleep 1001")
                    .into_iter()
                    .find(|&p| p != old)
                    .unwrap_or(0);
                pid != 0
            }),
            "{flavor:?} init did not respawn the sleep (round {round}); console: {}",
            init.console()
        );
        eprintln!("{flavor:?}: sleep respawned after {:?}", started.elapsed());
    }
    let init_pid = init.pid();
    drop(init);
    assert!(!std::path::Path::new(&format!("/proc/{init_pid}")).exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the sleep outlived its pid namespace"
    );
}

#[test]
fn sysv_init_respawns_a_plain_entry() {
    respawns_sleep(
        "sysv_init_respawns_a_plain_entry",
        Flavor::Sysv,
        "id:2:initdefault:\nsl:2345:respawn:/bin/sleep 1001\n",
    );
}

#[test]
fn busybox_init_respawns_a_plain_entry() {
    respawns_sleep(
        "busybox_init_respawns_a_plain_entry",
        Flavor::Busybox,
        "::respawn:/bin/sleep 1001\n",
    );
}

/// The "respawning too fast" check of the SysV tunnel test is only worth something if the
/// harness can see the message: an entry that fails at once must trip it.
#[test]
fn sysv_init_reports_respawning_too_fast_on_its_console() {
    let Some((_root, init)) = start_init(
        "sysv_init_reports_respawning_too_fast_on_its_console",
        Flavor::Sysv,
        "id:2:initdefault:\nfl:2345:respawn:/bin/false\n",
    ) else {
        return;
    };
    assert!(
        wait_until(Duration::from_secs(10), || init
            .console()
            .contains("respawning too fast")),
        "no 'respawning too fast' on the console: {:?}",
        init.console()
    );
    eprintln!("SysV console: {}", init.console().trim());
}
