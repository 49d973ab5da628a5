//! The opening of the tests that run a tunnel as a systemd-user unit: their
//! prerequisites, a fixture sshd, an echo server as the forward's destination, a private
//! `systemd --user`, and `tunnelctl install` + `systemctl --user start` of the unit.
//! Dropping the rig stops the manager first (and with it, by its cgroup, every unit's
//! process), then the echo server, then sshd.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use super::prereq::{Prereq, require};
use super::sshd::Sshd;
use super::systemd_tunnel::{Manager, NAME, Props, SystemdTunnel, UNIT};
use super::tunnel_env::{
    EchoServer, Server, Timing, alive, free_port, install, wait_roundtrip, write_config,
};
use super::user_manager::{UserManager, run_bounded};
use super::wait_until;

const PREREQS: &[Prereq] = &[
    Prereq::Root,
    Prereq::Unshare,
    Prereq::SystemdUser,
    Prereq::Sshd,
];

/// Field order is drop order (see the module docs).
pub struct UserUnitRig {
    pub manager: UserManager,
    pub echo: EchoServer,
    pub sshd: Sshd,
}

impl UserUnitRig {
    /// The rig with a HOME whose name starts with `home_prefix` (see
    /// [`UserManager::start_with_home_prefix`]). `None`: skipped (prerequisites).
    pub fn start(test: &str, home_prefix: &str) -> Option<UserUnitRig> {
        if !require(test, PREREQS) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let manager = UserManager::start_with_home_prefix(home_prefix);
        Some(UserUnitRig {
            manager,
            echo,
            sshd,
        })
    }

    /// The real install path under the manager's HOME (`--root /` runs no systemctl),
    /// then `daemon-reload` and `start` of `unit`, which (Type=notify) returns only once
    /// the watchdog sent READY=1.
    pub fn install_and_start(&self, config: &Path, name: &str, unit: &str) {
        install(
            config,
            name,
            "systemd-user",
            Path::new("/"),
            &[("HOME", self.manager.home())],
        );
        assert!(
            self.manager.unit_dir().join(unit).is_file(),
            "install did not write {unit} into ~/.config/systemd/user"
        );
        self.manager.systemctl_ok(&["daemon-reload"]);
        let started = Instant::now();
        self.manager.systemctl_ok(&["start", unit]);
        eprintln!(
            "systemd-user {unit}: start (to READY=1) took {:?}",
            started.elapsed()
        );
    }

    /// The tunnel `NAME` (a local forward from a free port to the echo server, default
    /// timing) installed and started as `UNIT`.
    pub fn start_itest(&self) -> SystemdTunnel<UserUnit<'_>> {
        let lport = free_port();
        let (key, known_hosts) = (self.sshd.client_key(), self.sshd.known_hosts());
        let server = Server {
            port: self.sshd.port(),
            identity: &key,
            known_hosts: &known_hosts,
        };
        let config = write_config(
            self.manager.home(),
            NAME,
            &server,
            lport,
            self.echo.port(),
            &Timing::default(),
        );
        self.install_and_start(&config, NAME, UNIT);
        SystemdTunnel(UserUnit {
            manager: &self.manager,
            lport,
        })
    }

    /// `systemctl --user stop UNIT`, then the rig dropped: the manager and everything it
    /// started (`watchdog` among them) must be gone.
    pub fn stop_and_tear_down(self, watchdog: i32) {
        self.manager.systemctl_ok(&["stop", UNIT]);
        let manager_pid = self.manager.pid();
        drop(self);
        for pid in [manager_pid, watchdog] {
            assert!(!alive(pid), "{pid} survived the teardown");
        }
        assert!(
            wait_until(Duration::from_secs(15), || !alive(watchdog)),
            "stop left the watchdog running"
        );
    }
}

/// The unit `UNIT` under the rig's user manager, its tunnel's local forward on
/// 127.0.0.1:`lport` (the host's network).
pub struct UserUnit<'a> {
    pub manager: &'a UserManager,
    pub lport: u16,
}

impl Manager for UserUnit<'_> {
    fn target(&self) -> &'static str {
        "systemd-user"
    }

    fn show(&self, props: &[&str]) -> Props {
        self.manager.show(UNIT, props)
    }

    /// Inside the manager's mount namespace, with its user's environment.
    fn tunnelctl(&self, args: &[&str]) -> Output {
        let m = self.manager;
        let mut cmd = m.command(env!("CARGO_BIN_EXE_tunnelctl"));
        cmd.args(args)
            .env("XDG_STATE_HOME", m.home().join(".local/state"))
            .env_remove("NO_COLOR");
        run_bounded(cmd, Duration::from_secs(30))
    }

    fn main_pid(&self) -> i32 {
        self.manager.show(UNIT, &["MainPID"])["MainPID"]
            .parse()
            .unwrap()
    }

    /// The manager shares the host's pid namespace: MainPID is a host pid.
    fn may_be_new_main(&self, props: &Props, old_main: i32) -> bool {
        let main: i32 = props["MainPID"].parse().unwrap_or(0);
        main != 0 && main != old_main
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip(self.lport, timeout)
    }

    fn unit_log(&self) -> String {
        format!("manager log:\n{}", self.manager.log())
    }
}
