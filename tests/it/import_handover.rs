//! `tunnelctl import --replace` on real services: an autossh reverse tunnel run by a
//! unit of the real `systemd --user`, and by a BusyBox init's inittab line, handed over
//! to tunnelctl's. A thread sends a line through the server's `-R` port every 50 ms the
//! whole time; the longest stretch without an answer is the handover's gap, measured and
//! printed. When the new tunnel cannot prove itself (a key the server refuses), the old
//! service must run again and the port answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::inittab_init::{Flavor, InittabInit};
use crate::common::prereq::{Prereq, require};
use crate::common::sshd::Sshd;
use crate::common::tunnel_env::{EchoServer, free_port, roundtrip, wait_roundtrip};
use crate::common::user_manager::{UserManager, run_bounded};

const OLD_UNIT: &str = "old-tunnel.service";
const NAME: &str = "home";

/// Probes 127.0.0.1:`port` every 50 ms until dropped; `gap` is the longest time between
/// two answers (or from the start to the first, or from the last to the end).
struct PortWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(Duration, u32, u32)>>,
}

impl PortWatch {
    fn start(port: u16) -> PortWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last_ok = Instant::now();
            let (mut gap, mut ok, mut failed) = (Duration::ZERO, 0, 0);
            // Bounded: the tests end it within minutes; 10 min is the hard stop.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if roundtrip(port).is_ok() {
                    gap = gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    ok += 1;
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (gap.max(last_ok.elapsed()), ok, failed)
        });
        PortWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// (longest gap, answered probes, failed probes).
    fn finish(mut self) -> (Duration, u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The autossh command the old service runs: a reverse forward from the server's
/// `rport` to the echo server.
fn autossh_command(sshd: &Sshd, rport: u16, echo: u16) -> String {
    format!(
        "/usr/bin/autossh -M 0 -N -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o ExitOnForwardFailure=yes \
         -o UserKnownHostsFile={} -i {} -p {} -l root -R {rport}:127.0.0.1:{echo} 127.0.0.1",
        sshd.known_hosts().display(),
        sshd.client_key().display(),
        sshd.port()
    )
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A key the server does not know: the new tunnel's login fails.
fn wrong_key(dir: &Path) -> PathBuf {
    let key = dir.join("wrong_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    key
}

/// The configuration's `identity:` of the imported tunnel pointed at `key`.
fn point_identity_at(config: &Path, key: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let changed: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("identity:") {
                format!("    identity: {}\n", key.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(changed, text, "no identity line in\n{text}");
    std::fs::write(config, changed).unwrap();
}

struct UserRig {
    // Drop order: the manager (and every unit's process) first.
    manager: UserManager,
    echo: EchoServer,
    sshd: Sshd,
    rport: u16,
}

impl UserRig {
    fn start(test: &str) -> Option<UserRig> {
        if !require(
            test,
            &[
                Prereq::Root,
                Prereq::Unshare,
                Prereq::SystemdUser,
                Prereq::Sshd,
                Prereq::Autossh,
            ],
        ) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let manager = UserManager::start_with_home_prefix("handover");
        let rport = free_port();
        let unit = format!(
            "[Unit]\nDescription=reverse tunnel home (autossh)\n\n[Service]\nEnvironment=AUTOSSH_GATETIME=0\n\
             ExecStart={}\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=default.target\n",
            autossh_command(&sshd, rport, echo.port())
        );
        std::fs::write(manager.unit_dir().join(OLD_UNIT), unit).unwrap();
        manager.systemctl_ok(&["daemon-reload"]);
        manager.systemctl_ok(&["enable", "--now", OLD_UNIT]);
        wait_roundtrip(rport, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "the autossh unit's -R port never answered: {e}\n{}",
                manager.log()
            )
        });
        Some(UserRig {
            manager,
            echo,
            sshd,
            rport,
        })
    }

    fn config(&self) -> PathBuf {
        self.manager.home().join("tunnels.yaml")
    }

    /// `tunnelctl --config CONFIG ARGS` as the manager's user, in its mount namespace.
    fn tunnelctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.manager.command(env!("CARGO_BIN_EXE_tunnelctl"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .env("XDG_STATE_HOME", self.manager.home().join(".local/state"));
        run_bounded(cmd, Duration::from_secs(120))
    }

    fn state(&self, unit: &str) -> (String, String) {
        let p = self.manager.show(unit, &["ActiveState", "UnitFileState"]);
        (p["ActiveState"].clone(), p["UnitFileState"].clone())
    }
}

#[test]
fn autossh_unit_is_handed_over_and_back_under_systemd_user() {
    let Some(rig) = UserRig::start("autossh_unit_is_handed_over_and_back_under_systemd_user")
    else {
        return;
    };
    let watch = PortWatch::start(rig.rport);
    let out = rig.tunnelctl(&[
        "import",
        "--systemd",
        OLD_UNIT,
        "-t",
        "systemd-user",
        "--replace",
        "--name",
        NAME,
        "--handover-timeout",
        "60s",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        rig.manager.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("handed over"),
        "{}",
        text(&out)
    );
    // The port answers through tunnelctl's tunnel now, for a while.
    wait_roundtrip(rig.rport, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (gap, ok, failed) = watch.finish();
    eprintln!(
        "handover systemd-user: longest time without an answer on the -R port: {gap:?} ({ok} answered, {failed} failed probes)"
    );
    assert_eq!(rig.state(OLD_UNIT), ("inactive".into(), "disabled".into()));
    assert_eq!(rig.state("tunnel-home.service").0, "active");
    // The switch itself, not the bound: the old session is closed cleanly, so the
    // server frees the port at once. 20 s leaves room for a loaded machine.
    assert!(gap < Duration::from_secs(20), "gap {gap:?}");

    // And back: the old unit enabled and running again, tunnelctl's gone.
    let watch = PortWatch::start(rig.rport);
    let out = rig.tunnelctl(&["import", "--undo", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    wait_roundtrip(rig.rport, Duration::from_secs(20)).unwrap();
    let (gap, _, _) = watch.finish();
    eprintln!("undo systemd-user: longest gap {gap:?}");
    assert_eq!(rig.state(OLD_UNIT), ("active".into(), "enabled".into()));
    assert!(!rig.manager.unit_dir().join("tunnel-home.service").exists());
    let _ = (&rig.echo, &rig.sshd);
}

#[test]
fn failed_handover_starts_the_old_unit_again() {
    let Some(rig) = UserRig::start("failed_handover_starts_the_old_unit_again") else {
        return;
    };
    // Imported and written first (as a user reviewing it would), then broken: a key
    // the server does not accept.
    let out = rig.tunnelctl(&[
        "import",
        "--systemd",
        OLD_UNIT,
        "-t",
        "systemd-user",
        "--write",
        "--name",
        NAME,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // doctor sees the autossh holding the -R port and names the command that hands
    // its unit over.
    let out = rig.tunnelctl(&["doctor", NAME, "--timeout", "10s"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("other keeper")
            && said.contains("autossh -M 0 -N")
            && said.contains(&format!(
                "tunnelctl import --systemd {OLD_UNIT} -t systemd-user --replace --name {NAME}"
            )),
        "{}",
        text(&out)
    );
    point_identity_at(&rig.config(), &wrong_key(rig.manager.home()));
    let config_before = std::fs::read(rig.config()).unwrap();
    let unit_before = std::fs::read(rig.manager.unit_dir().join(OLD_UNIT)).unwrap();

    let watch = PortWatch::start(rig.rport);
    let started = Instant::now();
    let out = rig.tunnelctl(&[
        "import",
        "--systemd",
        OLD_UNIT,
        "-t",
        "systemd-user",
        "--replace",
        "--name",
        NAME,
        "--handover-timeout",
        "8s",
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was not proven within 8s")
            && stderr.contains("unit old-tunnel.service runs again as it was"),
        "{}",
        text(&out)
    );
    wait_roundtrip(rig.rport, Duration::from_secs(30)).unwrap();
    let (gap, ok, failed) = watch.finish();
    eprintln!(
        "failed handover systemd-user: took {took:?}; longest gap {gap:?} ({ok} answered, {failed} failed)"
    );
    assert_eq!(rig.state(OLD_UNIT), ("active".into(), "enabled".into()));
    assert!(!rig.manager.unit_dir().join("tunnel-home.service").exists());
    assert_eq!(std::fs::read(rig.config()).unwrap(), config_before);
    assert_eq!(
        std::fs::read(rig.manager.unit_dir().join(OLD_UNIT)).unwrap(),
        unit_before
    );
    // Nothing to undo.
    let out = rig.tunnelctl(&["import", "--undo", NAME]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

struct InitRig {
    // Drop order: init (and every process in its namespace) first.
    init: InittabInit,
    _echo: EchoServer,
    sshd: Sshd,
    root: tempfile::TempDir,
    rport: u16,
    line: String,
}

impl InitRig {
    fn start(test: &str) -> Option<InitRig> {
        if !require(
            test,
            &[
                Prereq::Root,
                Prereq::Unshare,
                Prereq::Busybox,
                Prereq::Sshd,
                Prereq::Autossh,
            ],
        ) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let rport = free_port();
        let root = crate::common::temp_dir("handover-busybox");
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        let line = format!("::respawn:{}", autossh_command(&sshd, rport, echo.port()));
        std::fs::write(
            root.path().join("etc/inittab"),
            format!("# BusyBox inittab\n::sysinit:/bin/true\n{line}\n# the end\n"),
        )
        .unwrap();
        let init = InittabInit::start(Flavor::Busybox, root.path());
        wait_roundtrip(rport, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!(
                "the inittab autossh's -R port never answered: {e}\n{}",
                init.console()
            )
        });
        Some(InitRig {
            init,
            _echo: echo,
            sshd,
            root,
            rport,
            line,
        })
    }

    /// `tunnelctl ARGS` inside the init's mount and pid namespaces (its /etc, its PID 1).
    fn tunnelctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.init.pid().to_string())
            .args(["-m", "-p", "--"])
            .arg(env!("CARGO_BIN_EXE_tunnelctl"))
            .arg("--config")
            .arg(self.sshd.dir().join("tunnels.yaml"))
            .args(args);
        run_bounded(cmd, Duration::from_secs(120))
    }

    fn inittab(&self) -> String {
        std::fs::read_to_string(self.root.path().join("etc/inittab")).unwrap()
    }
}

#[test]
fn busybox_inittab_line_is_handed_over_and_back() {
    let Some(rig) = InitRig::start("busybox_inittab_line_is_handed_over_and_back") else {
        return;
    };
    let before = rig.inittab();
    let watchdog = crate::common::tunnel_env::inittab_watchdog();
    let watch = PortWatch::start(rig.rport);
    let out = rig.tunnelctl(&[
        "import",
        "--scan",
        "inittab",
        "-t",
        "busybox",
        "--replace",
        "--name",
        NAME,
        "--watchdog",
        watchdog,
        "--handover-timeout",
        "60s",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        rig.init.console()
    );
    wait_roundtrip(rig.rport, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (gap, ok, failed) = watch.finish();
    eprintln!(
        "handover busybox: longest time without an answer on the -R port: {gap:?} ({ok} answered, {failed} failed probes)"
    );
    assert!(gap < Duration::from_secs(20), "gap {gap:?}");
    let after = rig.inittab();
    assert!(
        after.contains(&format!("#tunnelctl-replaced:{NAME}:{}\n", rig.line)),
        "{after}"
    );
    assert!(
        rig.init.pids_matching("/usr/bin/autossh").is_empty(),
        "the old autossh still runs"
    );
    assert_eq!(
        rig.init.pids_matching("tunnel-watchdog").len(),
        1,
        "{:?}",
        rig.init.processes()
    );

    let out = rig.tunnelctl(&["import", "--undo", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    wait_roundtrip(rig.rport, Duration::from_secs(30)).unwrap();
    // Byte for byte as it was.
    assert_eq!(rig.inittab(), before);
    assert!(
        crate::common::wait_until(Duration::from_secs(15), || rig
            .init
            .pids_matching("tunnel-watchdog")
            .is_empty()),
        "{:?}",
        rig.init.processes()
    );
}

#[test]
fn failed_busybox_handover_restores_the_line() {
    let Some(rig) = InitRig::start("failed_busybox_handover_restores_the_line") else {
        return;
    };
    let before = rig.inittab();
    let watchdog = crate::common::tunnel_env::inittab_watchdog();
    let out = rig.tunnelctl(&["import", "--scan", "inittab", "--write", "--name", NAME]);
    assert!(out.status.success(), "{}", text(&out));
    point_identity_at(
        &rig.sshd.dir().join("tunnels.yaml"),
        &wrong_key(rig.root.path()),
    );
    let watch = PortWatch::start(rig.rport);
    let out = rig.tunnelctl(&[
        "import",
        "--scan",
        "inittab",
        "-t",
        "busybox",
        "--replace",
        "--name",
        NAME,
        "--watchdog",
        watchdog,
        "--handover-timeout",
        "8s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs again as it was"),
        "{}",
        text(&out)
    );
    wait_roundtrip(rig.rport, Duration::from_secs(30)).unwrap();
    let (gap, ok, failed) = watch.finish();
    eprintln!("failed handover busybox: longest gap {gap:?} ({ok} answered, {failed} failed)");
    assert_eq!(rig.inittab(), before);
    assert!(
        rig.init.pids_matching("tunnel-watchdog").is_empty(),
        "{:?}",
        rig.init.processes()
    );
}

/// Pids of processes whose command line holds `needle` (host pid namespace).
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

#[test]
fn autossh_process_is_handed_over_by_pid_and_back() {
    let test = "autossh_process_is_handed_over_by_pid_and_back";
    if !require(
        test,
        &[
            Prereq::Root,
            Prereq::Unshare,
            Prereq::SystemdUser,
            Prereq::Sshd,
            Prereq::Autossh,
        ],
    ) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let echo = EchoServer::start();
    let manager = UserManager::start_with_home_prefix("handover-pid");
    let rport = free_port();
    let command = autossh_command(&sshd, rport, echo.port());
    let argv: Vec<&str> = command.split(' ').collect();
    // Started by hand, as from a shell or rc.local.
    use std::os::unix::process::CommandExt;
    let mut old = Command::new(argv[0])
        .args(&argv[1..])
        .env("AUTOSSH_GATETIME", "0")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let old_pid = old.id() as i32;
    wait_roundtrip(rport, Duration::from_secs(30)).unwrap();
    let watch = PortWatch::start(rport);
    let config = manager.home().join("tunnels.yaml");
    let mut cmd = manager.command(env!("CARGO_BIN_EXE_tunnelctl"));
    cmd.arg("--config")
        .arg(&config)
        .args([
            "import",
            "-t",
            "systemd-user",
            "--replace",
            "--name",
            NAME,
            "--pid",
            &old_pid.to_string(),
            "--",
        ])
        .args(&argv)
        .env("XDG_STATE_HOME", manager.home().join(".local/state"));
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", text(&out), manager.log());
    let _ = old.wait();
    wait_roundtrip(rport, Duration::from_secs(10)).unwrap();
    let (gap, ok, failed) = watch.finish();
    eprintln!("handover --pid: longest gap {gap:?} ({ok} answered, {failed} failed)");
    assert!(gap < Duration::from_secs(20), "gap {gap:?}");

    let marker = format!("-R {rport}:127.0.0.1");
    let mut cmd = manager.command(env!("CARGO_BIN_EXE_tunnelctl"));
    cmd.arg("--config")
        .arg(&config)
        .args(["import", "--undo", NAME])
        .env("XDG_STATE_HOME", manager.home().join(".local/state"));
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
    wait_roundtrip(rport, Duration::from_secs(30)).unwrap();
    // The autossh started again (with its argv and environment) is not our child: found
    // by its command line, stopped by pid.
    let again: Vec<i32> = pids_with(&marker)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "autossh")
        })
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    let environ = std::fs::read(format!("/proc/{}/environ", again[0])).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains("AUTOSSH_GATETIME=0"));
    for p in again {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let gone = crate::common::wait_until(Duration::from_secs(10), || pids_with(&marker).is_empty());
    let left: Vec<(i32, String)> = pids_with(&marker)
        .into_iter()
        .map(|p| {
            (
                p,
                std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default(),
            )
        })
        .collect();
    for (p, _) in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(gone, "left running: {left:?}");
}
