//! What an `on_change` command starts in the background ends with it, under the init
//! systems that run the watchdog: a real `systemd --user` (`sleep &` and `setsid sleep
//! &`, which leaves the command's process group and session) and BusyBox init as PID 1
//! of its own namespaces (`sleep &`, which init would otherwise inherit for good).

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::inittab_init::{Flavor, InittabInit};
use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::systemd_tunnel::{NAME, UNIT};
use common::tunnel_env::{
    EchoServer, Server, Timing, free_port, install, wait_roundtrip, write_config,
};
use common::user_unit::UserUnitRig;
use common::wait_until;

/// Pids of processes whose argv is exactly `sleep SECONDS`, anywhere on the machine
/// (the durations below are used by no other test).
fn sleepers(seconds: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes())
        })
        .collect()
}

/// Kills what a failed run left (by pid), so a failure does not leak sleepers.
struct Sweep(&'static [&'static str]);

impl Drop for Sweep {
    fn drop(&mut self) {
        for seconds in self.0 {
            for pid in sleepers(seconds) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The states the command recorded, one per run.
fn runs(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `tunnels.yaml` for the tunnel `name` with `on_change: [/bin/sh, -c, SCRIPT, RUNS]`.
fn config_with_hook(
    dir: &Path,
    name: &str,
    sshd: &Sshd,
    lport: u16,
    echo: u16,
    script: &str,
    runs: &Path,
) -> std::path::PathBuf {
    let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
    let server = Server {
        port: sshd.port(),
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(dir, name, &server, lport, echo, &Timing::default());
    let mut text = std::fs::read_to_string(&config).unwrap();
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    text.push_str(&format!(
        "    on_change: [/bin/sh, -c, {}, {}]\n",
        quote(script),
        quote(&runs.display().to_string())
    ));
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_hooks_background_and_setsid_children_end_with_it_under_systemd_user() {
    let test = "a_hooks_background_and_setsid_children_end_with_it_under_systemd_user";
    let _sweep = Sweep(&["30111", "30112"]);
    let Some(rig) = UserUnitRig::start(test, "hooks") else {
        return;
    };
    let runs_file = rig.manager.home().join("hook-runs");
    let lport = free_port();
    let config = config_with_hook(
        rig.manager.home(),
        NAME,
        &rig.sshd,
        lport,
        rig.echo.port(),
        "echo \"$TUNNELCTL_NEW_STATE\" >> \"$0\"; sleep 30111 & setsid sleep 30112 & exit 0",
        &runs_file,
    );
    rig.install_and_start(&config, NAME, UNIT);
    assert!(
        wait_until(Duration::from_secs(10), || runs(&runs_file)
            .contains(&"up".to_string())),
        "the command never ran for `up`: {:?}\n{}",
        runs(&runs_file),
        rig.manager.log()
    );
    let main: i32 = rig.manager.show(UNIT, &["MainPID"])["MainPID"]
        .parse()
        .unwrap();
    let none_left = || sleepers("30111").is_empty() && sleepers("30112").is_empty();
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), none_left),
        "left running after the command exited: sleep & {:?}, setsid sleep & {:?}\n{}",
        sleepers("30111"),
        sleepers("30112"),
        rig.manager.log()
    );
    eprintln!(
        "systemd-user: the command's leftovers gone {:?} after we saw `up`",
        t.elapsed()
    );
    // A reconnect: two more runs (connecting, up), the unit running all along.
    let before = runs(&runs_file).len();
    rig.manager
        .systemctl_ok(&["kill", "-s", "HUP", "--kill-who=main", UNIT]);
    assert!(
        wait_until(Duration::from_secs(15), || runs(&runs_file).len()
            >= before + 2),
        "{:?}",
        runs(&runs_file)
    );
    assert!(
        wait_until(Duration::from_secs(5), none_left),
        "left running after the reconnect's runs: {:?} {:?}",
        sleepers("30111"),
        sleepers("30112")
    );
    wait_roundtrip(lport, Duration::from_secs(10)).unwrap();
    let now: i32 = rig.manager.show(UNIT, &["MainPID"])["MainPID"]
        .parse()
        .unwrap();
    assert_eq!(now, main, "the watchdog was restarted");
    rig.stop_and_tear_down(main);
}

#[test]
fn a_hooks_background_child_ends_with_it_under_busybox_init() {
    let test = "a_hooks_background_child_ends_with_it_under_busybox_init";
    let _sweep = Sweep(&["30121"]);
    if !require(test, &[Flavor::Busybox.prereqs(), &[Prereq::Sshd]].concat()) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let echo = EchoServer::start();
    let lport = free_port();
    let root = common::temp_dir("hooks-busybox");
    let outside = tempfile::tempdir().unwrap();
    let runs_file = outside.path().join("hook-runs");
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("inittab"), "# minimal BusyBox inittab\n").unwrap();
    let config = config_with_hook(
        outside.path(),
        "hooked",
        &sshd,
        lport,
        echo.port(),
        "echo \"$TUNNELCTL_NEW_STATE\" >> \"$0\"; sleep 30121 & exit 0",
        &runs_file,
    );
    install(&config, "hooked", "busybox", root.path(), &[]);
    let init = InittabInit::start(Flavor::Busybox, root.path());
    let report = |init: &InittabInit| {
        format!(
            "runs: {:?}\nprocesses: {:?}\nconsole:\n{}",
            runs(&runs_file),
            init.processes(),
            init.console()
        )
    };
    wait_roundtrip(lport, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("tunnel never came up: {e}\n{}", report(&init)));
    assert!(
        wait_until(Duration::from_secs(10), || runs(&runs_file)
            .contains(&"up".to_string())),
        "the command never ran for `up`\n{}",
        report(&init)
    );
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || init
            .pids_matching("sleep 30121")
            .is_empty()),
        "`sleep &` outlived the command: {:?}\n{}",
        init.pids_matching("sleep 30121"),
        report(&init)
    );
    eprintln!(
        "busybox: the command's `sleep &` gone {:?} after we saw `up`",
        t.elapsed()
    );
    // Nothing was left for init to inherit: every process in the namespace is init's
    // watchdog, its ssh, or nothing of ours.
    let strays: Vec<(i32, String)> = init
        .processes()
        .into_iter()
        .filter(|(_, c)| {
            !c.contains("tunnel-watchdog") && !c.starts_with("ssh") && !c.contains("/ssh")
        })
        .collect();
    assert!(strays.is_empty(), "{strays:?}\n{}", report(&init));
    drop(init);
    drop(sshd);
}
