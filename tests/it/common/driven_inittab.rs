//! [`Driven`] for SysV and BusyBox init: the init runs as PID 1 of its own namespaces
//! ([`super::inittab_init`]) from a minimal inittab, and tunnelctl runs inside them (its
//! mount and pid namespace), so its `telinit q` reaches that init's `/run/initctl` and
//! its `kill -HUP 1` that BusyBox. For SysV, `telinit` on PATH is sysvinit's own (the
//! host's is systemd's), as on a machine that boots with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::driven::{Driven, NAME, files_below};
use super::driven_systemd::{driven_timing, tunnel_processes_among};
use super::inittab_init::{Flavor, InittabInit, sysvinit_binary};
use super::prereq::{Prereq, require};
use super::sshd::Sshd;
use super::tunnel_env::{
    EchoServer, Server, TUNNELCTL, WATCHDOG, children_running, free_port, inittab_watchdog,
    wait_roundtrip, write_config,
};
use super::user_manager::run_bounded;

/// Field order is drop order: the init (and with it every process it started) first.
pub struct DrivenInittab {
    init: InittabInit,
    sshd: Sshd,
    _echo: EchoServer,
    lport: u16,
    config: PathBuf,
    /// The folder holding `sbin/telinit` for SysV (prepended to PATH).
    telinit_dir: Option<PathBuf>,
    root: tempfile::TempDir,
    flavor: Flavor,
}

/// The inittab the init starts with; uninstall must leave exactly this.
fn minimal_inittab(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Sysv => "# minimal SysV inittab\nid:2:initdefault:\n",
        Flavor::Busybox => "# minimal BusyBox inittab\n",
    }
}

impl DrivenInittab {
    /// `None`: skipped (prerequisites).
    pub fn start(test: &str, flavor: Flavor) -> Option<DrivenInittab> {
        if !require(test, &[flavor.prereqs(), &[Prereq::Sshd]].concat()) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let lport = free_port();
        let root = super::temp_dir("driven-inittab");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("inittab"), minimal_inittab(flavor)).unwrap();
        let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
        let server = Server {
            port: sshd.port(),
            identity: &key,
            known_hosts: &known_hosts,
        };
        // Outside ROOT: only what install writes lands in the /etc overlay.
        let config = write_config(
            sshd.dir(),
            NAME,
            &server,
            lport,
            echo.port(),
            &driven_timing(),
        );
        let telinit_dir = (flavor == Flavor::Sysv).then(|| {
            let dir = sysvinit_binary().parent().unwrap().to_path_buf();
            assert!(
                dir.join("telinit").exists(),
                "sysvinit-core has no {}/telinit",
                dir.display()
            );
            dir
        });
        let init = InittabInit::start(flavor, root.path());
        Some(DrivenInittab {
            init,
            sshd,
            _echo: echo,
            lport,
            config,
            telinit_dir,
            root,
            flavor,
        })
    }

    /// The init's view of `path`.
    fn inside(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.init.pid()))
            .join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl Driven for DrivenInittab {
    fn label(&self) -> &'static str {
        match self.flavor {
            Flavor::Sysv => "sysv",
            Flavor::Busybox => "busybox",
        }
    }

    /// Detection reads `/sbin/init`, which is the host's (systemd) in this namespace; on
    /// a SysV machine it finds `inittab` by itself, on a BusyBox one `busybox`.
    fn target_args(&self) -> Vec<String> {
        match self.flavor {
            Flavor::Sysv => Vec::new(),
            Flavor::Busybox => vec!["--target".into(), "busybox".into()],
        }
    }

    /// A build directory with a space cannot go into an inittab line.
    fn install_args(&self) -> Vec<String> {
        if WATCHDOG.contains(char::is_whitespace) {
            vec!["--watchdog".into(), inittab_watchdog().into()]
        } else {
            Vec::new()
        }
    }

    fn config(&self) -> PathBuf {
        self.config.clone()
    }

    fn tunnelctl(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.init.pid().to_string())
            .args(["-m", "-p", "--", TUNNELCTL])
            .args(args)
            .stdin(std::process::Stdio::null());
        if let Some(dir) = &self.telinit_dir {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        run_bounded(cmd, timeout)
    }

    fn install_waits_for_ready(&self) -> bool {
        false
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip(self.lport, timeout)
    }

    /// A watchdog is a child of init (init started it from its inittab).
    fn init_says_running(&self) -> bool {
        let watchdog = if self.install_args().is_empty() {
            WATCHDOG
        } else {
            inittab_watchdog()
        };
        !children_running(self.init.pid(), watchdog).is_empty()
    }

    fn tunnel_processes(&self) -> Vec<(i32, String)> {
        tunnel_processes_among(self.init.processes().into_iter().map(|(p, _)| p))
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

    /// `/var/log/tunnelctl/*.log` inside.
    fn watchdog_log(&self) -> Option<String> {
        let dir = self.root.path().join("var/log/tunnelctl");
        let mut text = String::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        Some(text)
    }

    fn server_down(&mut self) {
        self.sshd.stop();
    }

    fn server_up(&mut self) {
        self.sshd.start();
    }

    fn report(&self) -> String {
        format!(
            "inittab:\n{}\nprocesses: {:?}\nconsole:\n{}\nwatchdog log:\n{}",
            std::fs::read_to_string(self.root.path().join("etc/inittab")).unwrap_or_default(),
            self.init.processes(),
            self.init.console(),
            self.watchdog_log().unwrap_or_default()
        )
    }
}
