//! tunnelctl itself drives each real init: `install NAME` starts the tunnel (no
//! `--no-start`, no `--root`), `status` reads it, `reconnect` cuts a back-off short,
//! `stop`/`start`/`restart` go through the init, `uninstall NAME` stops it and leaves nothing running and nothing behind. One scenario
//! ([`common::driven::install_reconnect_uninstall`]), one rig per init.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::driven::{
    Driven, NAME, install_reconnect_uninstall, install_reconnect_uninstall_checking,
};
use common::driven_inittab::DrivenInittab;
use common::driven_supervision::{DrivenSupervision, Suite};
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

/// s6 as the namespace's PID 1 (`s6-svscan` on /run/service, no `--target`: detection
/// finds it): install returns once `s6-svwait -U` saw the watchdog's readiness newline,
/// data flows through `-L` and `-R`; a frozen ssh client (SIGSTOP) is detected and
/// replaced by a new one that carries data again; then the common scenario (status,
/// reconnect, stop/start/restart through s6-svc, uninstall leaving nothing behind).
#[test]
fn tunnelctl_drives_s6() {
    let Some(mut rig) = DrivenSupervision::start("tunnelctl_drives_s6", Suite::S6) else {
        return;
    };
    install_reconnect_uninstall_checking(&mut rig, |rig| {
        let svstat = rig.svstat();
        assert!(
            svstat.starts_with("up ") && svstat.contains("ready"),
            "s6-svstat after install: {svstat}\n{}",
            rig.report()
        );
        common::tunnel_env::wait_roundtrip(rig.rport, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("-R carries no data: {e}\n{}", rig.report()));
        frozen_client_is_replaced(rig);
        common::tunnel_env::wait_roundtrip(rig.rport, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("-R not back: {e}\n{}", rig.report()));
    });
}

/// runit's runsvdir on a directory of its own (in its own namespace; runit-init never
/// involved), named to tunnelctl by `--runit-service-dir`:
/// install returns once `sv start` saw ./check pass (the state file says up for the pid
/// runsv runs), data flows through `-L` and `-R`; a frozen ssh client is replaced; then
/// the common scenario (status, reconnect, stop/start/restart through sv, uninstall
/// leaving nothing behind).
#[test]
fn tunnelctl_drives_runit() {
    let Some(mut rig) = DrivenSupervision::start("tunnelctl_drives_runit", Suite::Runit) else {
        return;
    };
    install_reconnect_uninstall_checking(&mut rig, |rig| {
        let status = rig.svstat();
        assert!(
            status.starts_with("run: "),
            "sv status after install: {status}\n{}",
            rig.report()
        );
        let check = rig.inside_run(&["sv", "check", "/run/runit-service/tunnel-itest"]);
        assert!(
            check.status.success(),
            "sv check: {}\n{}",
            common::commands::out_text(&check),
            rig.report()
        );
        common::tunnel_env::wait_roundtrip(rig.rport, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("-R carries no data: {e}\n{}", rig.report()));
        frozen_client_is_replaced(rig);
        common::tunnel_env::wait_roundtrip(rig.rport, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("-R not back: {e}\n{}", rig.report()));
    });
}

/// SIGSTOP to the watchdog's ssh: the probes time out, the watchdog gives up on it, and a
/// new ssh carries data. Prints how long each part took.
fn frozen_client_is_replaced(rig: &impl Driven) {
    let label = rig.label();
    let watchdog = rig
        .tunnel_processes()
        .into_iter()
        .find(|(_, c)| c.contains("tunnel-watchdog"))
        .map(|(p, _)| p)
        .unwrap_or_else(|| panic!("{label}: no watchdog\n{}", rig.report()));
    let old = common::tunnel_env::wait_ssh_child(watchdog, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{label}: no ssh under the watchdog\n{}", rig.report()));
    let frozen = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    // The watchdog may replace ssh itself or exit and be started again by s6 (then it
    // waits its persisted back-off first): either way, a new ssh client of the tunnel.
    let mut new = None;
    let replaced = wait_until(Duration::from_secs(90), || {
        new = rig
            .tunnel_processes()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|&p| p != old)
            .find(|&p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|argv| argv.split(|&b| b == 0).any(|a| a == b"ControlMaster=yes"))
            });
        new.is_some()
    });
    // Whatever happened, the frozen process must not outlive the test.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        replaced,
        "{label}: the frozen ssh {old} was never replaced\n{}",
        rig.report()
    );
    let new_at = frozen.elapsed();
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{label}: new ssh carries no data: {e}\n{}", rig.report()));
    eprintln!(
        "{label}: frozen ssh {old} -> new ssh {} after {new_at:?}, data after {:?}",
        new.unwrap(),
        frozen.elapsed()
    );
}

/// A scan directory (s6) or service directory (runit) that is missing or not a directory
/// stops install before anything is written, with the option that names another; the
/// environment variable that named it before still does, with a deprecation warning.
#[test]
fn a_missing_or_plain_file_scan_directory_is_refused_before_writing() {
    let dir = common::temp_dir("scan-refused");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(
        &config,
        "tunnels:\n  scanrefused:\n    host: h.example.org\n    forwards:\n      - dynamic: 1080\n",
    )
    .unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let missing = dir.path().join("missing");
    for (target, option, var, written) in [
        (
            "s6",
            "--s6-scan-dir",
            "TUNNELCTL_S6_SCAN_DIR",
            "/etc/tunnelctl/s6/tunnel-scanrefused",
        ),
        (
            "runit",
            "--runit-service-dir",
            "TUNNELCTL_RUNIT_SERVICE_DIR",
            "/etc/tunnelctl/sv/tunnel-scanrefused",
        ),
    ] {
        for (scan, says, by_env) in [
            (&missing, "does not exist", false),
            (&file, "is not a directory", false),
            (&missing, "does not exist", true),
        ] {
            let mut cmd = std::process::Command::new(common::tunnel_env::TUNNELCTL);
            cmd.arg("-c")
                .arg(&config)
                .args(["install", "scanrefused", "--target", target])
                .env_remove(var);
            if by_env {
                cmd.env(var, scan);
            } else {
                cmd.arg(option).arg(scan);
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{target} {scan:?}: {err}");
            assert!(
                err.contains(says)
                    && err.contains(&format!("{option} DIR"))
                    && err.contains(&*scan.to_string_lossy()),
                "{target} {scan:?}: {err}"
            );
            assert_eq!(
                err.contains(&format!("${var} is deprecated")),
                by_env,
                "{target} {scan:?}: {err}"
            );
            assert!(
                !Path::new(written).exists(),
                "{target}: {written} was written"
            );
        }
    }
}

/// `apply` under a real s6 and a real runit: the tunnel of the file installed and
/// carrying data; renamed in the file, apply stops and removes the old one (its folder
/// gone) before the new one takes the same ports and carries data; uninstall ends it.
#[test]
fn apply_drives_s6_and_runit() {
    let test = "apply_drives_s6_and_runit";
    for suite in [Suite::S6, Suite::Runit] {
        let Some(rig) = DrivenSupervision::start(test, suite) else {
            return;
        };
        let label = rig.label();
        let folder = |name: &str| match suite {
            Suite::S6 => format!("/etc/tunnelctl/s6/tunnel-{name}"),
            Suite::Runit => format!("/etc/tunnelctl/sv/tunnel-{name}"),
        };
        let run = |config: &Path, verb: &[&str]| {
            let config = config.display().to_string();
            let mut args = vec!["-c", config.as_str()];
            args.extend(verb);
            let target = rig.target_args();
            args.extend(target.iter().map(String::as_str));
            let out = rig.tunnelctl(&args, Duration::from_secs(150));
            assert!(
                out.status.success(),
                "{label}: tunnelctl {verb:?}: {}\n{}",
                common::commands::out_text(&out),
                rig.report()
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let out = run(&rig.config(), &["apply"]);
        assert!(
            out.contains(&format!("{NAME} ({label}): added")),
            "{label}: {out}"
        );
        rig.wait_roundtrip(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{label}: no data after apply: {e}\n{}", rig.report()));

        let renamed = rig.config().with_file_name("renamed.yaml");
        let text = std::fs::read_to_string(rig.config()).unwrap();
        let from = format!("\n  {NAME}:\n");
        assert!(text.contains(&from), "{label}: {text}");
        std::fs::write(&renamed, text.replace(&from, "\n  renamed:\n")).unwrap();
        let out = run(&renamed, &["apply", "--prune-many"]);
        assert!(
            out.contains(&format!("{NAME} ({label}): removed"))
                && out.contains(&format!("renamed ({label}): added")),
            "{label}: {out}"
        );
        assert!(!rig.exists(Path::new(&folder(NAME))), "{label}: {out}");
        assert!(rig.exists(Path::new(&folder("renamed"))), "{label}: {out}");
        rig.wait_roundtrip(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{label}: no data after the rename: {e}\n{}", rig.report()));

        run(&renamed, &["uninstall", "renamed"]);
        assert!(!rig.exists(Path::new(&folder("renamed"))), "{label}");
        assert!(
            wait_until(Duration::from_secs(20), || rig
                .tunnel_processes()
                .is_empty()),
            "{label}: left running: {:?}\n{}",
            rig.tunnel_processes(),
            rig.report()
        );
    }
}
