//! [`Driven`] for the supervision suites: Debian's `s6-svscan` watching `/run/service`
//! (so detection sees PID 1 `s6-svscan`), or runit's `runsvdir` watching a directory of
//! its own named by `--runit-service-dir` (never runit-init), as the first process of its own mount and pid namespaces, with
//! /etc and /var as overlays whose upper folders hold every write; tunnelctl runs inside
//! them. Dropping the rig kills that first process, and with it everything it started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::driven::{Driven, NAME, files_below};
use super::driven_systemd::{driven_timing, tunnel_processes_among};
use super::prereq::{Prereq, require};
use super::sshd::Sshd;
use super::tunnel_env::{EchoServer, Server, TUNNELCTL, free_port, wait_roundtrip, write_config};
use super::user_manager::run_bounded;

/// Which supervisor watches which directory (tunnelctl's default for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    S6,
    Runit,
}

impl Suite {
    fn scan(self) -> &'static str {
        match self {
            Suite::S6 => "/run/service",
            // Not /etc/service: Debian's links to the host's own runit services.
            Suite::Runit => "/run/runit-service",
        }
    }

    fn scanner(self) -> &'static str {
        match self {
            Suite::S6 => "/usr/bin/s6-svscan",
            Suite::Runit => "/usr/bin/runsvdir",
        }
    }

    fn prereq(self) -> Prereq {
        match self {
            Suite::S6 => Prereq::S6,
            Suite::Runit => Prereq::Runit,
        }
    }
}

/// Field order is drop order: the namespace (and every process in it) first.
pub struct DrivenSupervision {
    scanner: Scanner,
    suite: Suite,
    sshd: Sshd,
    _echo: EchoServer,
    lport: u16,
    /// The `-R` port the server listens on.
    pub rport: u16,
    config: PathBuf,
    root: tempfile::TempDir,
}

/// The namespace's first process (`s6-svscan`), killed with SIGKILL on drop: the kernel
/// then kills every other process of the pid namespace.
struct Scanner {
    unshare: Child,
    pid: i32,
}

impl Drop for Scanner {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

impl DrivenSupervision {
    /// `None`: skipped (prerequisites).
    pub fn start(test: &str, suite: Suite) -> Option<DrivenSupervision> {
        if !require(test, &[Prereq::Root, suite.prereq(), Prereq::Sshd]) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let (lport, rport) = (free_port(), free_port());
        let root = super::temp_dir("driven-s6");
        for dir in [
            "etc",
            "var",
            "run",
            ".overlay-work/etc",
            ".overlay-work/var",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
        let server = Server {
            port: sshd.port(),
            identity: &key,
            known_hosts: &known_hosts,
        };
        let config = write_config(
            sshd.dir(),
            NAME,
            &server,
            lport,
            echo.port(),
            &driven_timing(),
        );
        // And a reverse forward: the server's rport to the same echo server.
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "      - remote: {rport}\n        to: 127.0.0.1:{}\n",
            echo.port()
        ));
        std::fs::write(&config, text).unwrap();

        let script = "set -e; r=$1; \
             mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$r/etc,workdir=$r/.overlay-work/etc\" /etc; \
             mount -t overlay overlay -o \"lowerdir=/var,upperdir=$r/var,workdir=$r/.overlay-work/var\" /var; \
             mount --bind \"$r/run\" /run; \
             mount -t proc proc /proc; \
             mkdir -p \"$2\"; \
             exec \"$3\" \"$2\"";
        let log = std::fs::File::create(root.path().join("svscan.log")).unwrap();
        let unshare = Command::new("unshare")
            .args(["-m", "-p", "-f", "--propagation", "private", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(root.path())
            .arg(suite.scan())
            .arg(suite.scanner())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn unshare");
        let unshare_pid = unshare.id() as i32;
        let mut scanner = Scanner { unshare, pid: 0 };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = super::nspawn::find_child_exe(unshare_pid, suite.scanner()) {
                scanner.pid = pid;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start within 10 s: {}",
                suite.scanner(),
                std::fs::read_to_string(root.path().join("svscan.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // s6-svscan's control fifo: it watches the directory from here on.
        assert!(
            suite == Suite::Runit
                || super::wait_until(Duration::from_secs(10), || root
                    .path()
                    .join("run/service/.s6-svscan/control")
                    .exists()),
            "s6-svscan never set up /run/service"
        );
        Some(DrivenSupervision {
            scanner,
            suite,
            sshd,
            _echo: echo,
            lport,
            rport,
            config,
            root,
        })
    }

    /// Every process of the namespace but s6-svscan: (host pid, command line).
    fn processes(&self) -> Vec<(i32, String)> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.scanner.pid)) else {
            return Vec::new();
        };
        let mut found: Vec<(i32, String)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| p != self.scanner.pid)
            .filter(|&p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns))
            .map(|p| (p, crate::testkit::cmdline(p)))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        found.sort();
        found
    }

    /// `PROGRAM ARGS` inside the namespace.
    pub fn inside_run(&self, argv: &[&str]) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.scanner.pid.to_string())
            .args(["-m", "-p", "--"])
            .args(argv)
            .stdin(Stdio::null());
        run_bounded(cmd, Duration::from_secs(30))
    }

    fn inside(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.scanner.pid))
            .join(path.strip_prefix("/").unwrap_or(path))
    }

    /// `s6-svstat` / `sv status` of the tunnel's service, as the supervisor says it.
    pub fn svstat(&self) -> String {
        let service = format!("{}/tunnel-{NAME}", self.suite.scan());
        let out = match self.suite {
            Suite::S6 => self.inside_run(&["s6-svstat", &service]),
            Suite::Runit => self.inside_run(&["sv", "status", &service]),
        };
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Driven for DrivenSupervision {
    fn label(&self) -> &'static str {
        match self.suite {
            Suite::S6 => "s6",
            Suite::Runit => "runit",
        }
    }

    /// s6: none, detection must find it by itself (PID 1 of the namespace is
    /// s6-svscan). runit: PID 1 is runsvdir, not runit, so nothing says runit is in charge.
    fn target_args(&self) -> Vec<String> {
        match self.suite {
            Suite::S6 => Vec::new(),
            Suite::Runit => vec![
                "--target".into(),
                "runit".into(),
                "--runit-service-dir".into(),
                self.suite.scan().into(),
            ],
        }
    }

    fn config(&self) -> PathBuf {
        self.config.clone()
    }

    fn tunnelctl(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.scanner.pid.to_string())
            .args(["-m", "-p", "--", TUNNELCTL])
            .args(args)
            .stdin(Stdio::null());
        run_bounded(cmd, timeout)
    }

    /// install returns after `s6-svwait -U` (the watchdog said ready) or `sv start`
    /// (./check found the state file up): every forward proven.
    fn install_waits_for_ready(&self) -> bool {
        true
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip(self.lport, timeout)
    }

    fn init_says_running(&self) -> bool {
        let status = self.svstat();
        match self.suite {
            Suite::S6 => status.starts_with("up "),
            Suite::Runit => status.starts_with("run: "),
        }
    }

    fn tunnel_processes(&self) -> Vec<(i32, String)> {
        tunnel_processes_among(self.processes().into_iter().map(|(p, _)| p))
    }

    /// /etc as install sees it: the overlay's upper folder holds every write.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        files_below(&[self.root.path().join("etc")])
    }

    fn exists(&self, path: &Path) -> bool {
        self.inside(path).exists()
    }

    fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(self.inside(path)).unwrap_or_default()
    }

    /// s6-log's or svlogd's `current`.
    fn watchdog_log(&self) -> Option<String> {
        Some(
            std::fs::read_to_string(
                self.root
                    .path()
                    .join(format!("var/log/tunnelctl/{}-{NAME}/current", self.label())),
            )
            .unwrap_or_default(),
        )
    }

    fn server_down(&mut self) {
        self.sshd.stop();
    }

    fn server_up(&mut self) {
        self.sshd.start();
    }

    fn report(&self) -> String {
        format!(
            "supervisor: {}\nprocesses: {:?}\nscanner log:\n{}\nwatchdog log:\n{}",
            self.svstat(),
            self.processes(),
            std::fs::read_to_string(self.root.path().join("svscan.log")).unwrap_or_default(),
            self.watchdog_log().unwrap_or_default()
        )
    }
}
