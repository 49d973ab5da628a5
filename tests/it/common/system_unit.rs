//! The opening of the system-unit test, in two stages: [`InstalledSystemUnit`], the
//! tunnel `NAME` installed by `tunnelctl install --root` with the files an sshd in the
//! container needs; then [`ContainerUnit`], the host's own tree booted with
//! systemd-nspawn (a real system manager as PID 1, private network), the unit copied in
//! and started, sshd and the echo server on the container's loopback. Dropping it stops
//! the echo server, then the container (its cgroup takes every service along), then
//! removes the files.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::nspawn::{Bind, Container, ContainerSshdFiles, host_pid};
use super::prereq::{Prereq, require};
use super::systemd_tunnel::{Manager, NAME, Props, SystemdTunnel, UNIT};
use super::tunnel_env::{
    EchoServer, Server, Timing, WATCHDOG, alive, in_netns, install_with_watchdog,
    wait_roundtrip_in, write_config,
};

// The container has its own network namespace: fixed ports cannot collide.
const SSHD_PORT: u16 = 2222;
const LOCAL_PORT: u16 = 8888;
/// The echo server's port must be known before boot (it goes into the unit); inside the
/// fresh network namespace any port is free.
const ECHO_PORT: u16 = 7777;
const SSHD_UNIT: &str = "itest-sshd.service";

/// Where the build directory (tunnelctl and tunnel-watchdog) is bound in the container.
const BUILD_IN_CONTAINER: &str = "/opt/tunnelctl-build";

/// The unit installed under a temporary root, the container not booted yet.
pub struct InstalledSystemUnit {
    /// The unit file install wrote (under the temporary root).
    pub unit_file: PathBuf,
    root: PathBuf,
    shared: PathBuf,
    sshd: ContainerSshdFiles,
    /// Everything the container must see lives in this one temp dir, bound at the same
    /// path. Declared last: removed after the rest was dropped.
    _dir: tempfile::TempDir,
}

impl InstalledSystemUnit {
    /// `None`: skipped (prerequisites).
    pub fn install(test: &str) -> Option<InstalledSystemUnit> {
        if !require(test, &[Prereq::Root, Prereq::SystemdNspawn, Prereq::Sshd]) {
            return None;
        }
        let dir = super::temp_dir("itest-system");
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        let sshd = ContainerSshdFiles::create(&shared, SSHD_PORT);
        let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
        let server = Server {
            port: SSHD_PORT,
            identity: &key,
            known_hosts: &known_hosts,
        };
        let config = write_config(
            &shared,
            NAME,
            &server,
            LOCAL_PORT,
            ECHO_PORT,
            &Timing::default(),
        );
        let root = dir.path().join("root");
        install_with_watchdog(
            &config,
            NAME,
            "systemd",
            &root,
            &[],
            &format!("{BUILD_IN_CONTAINER}/tunnel-watchdog"),
        );
        let unit_file = root.join("etc/systemd/system").join(UNIT);
        assert!(
            unit_file.is_file(),
            "install --root did not write {}",
            unit_file.display()
        );
        Some(InstalledSystemUnit {
            unit_file,
            root,
            shared,
            sshd,
            _dir: dir,
        })
    }

    /// Boots the container, installs the unit there as `install` does (write,
    /// daemon-reload), starts sshd and the echo server in it, then the unit (to READY=1).
    pub fn boot_and_start(self) -> SystemdTunnel<ContainerUnit> {
        let container = self.boot();
        self.copy_unit_in(&container);
        self.sshd.start(&container, SSHD_UNIT);
        // The echo server listens on the container's loopback (its accept thread stays there).
        let echo = in_netns(container.pid(), || EchoServer::start_on(ECHO_PORT));
        let started = Instant::now();
        let out = container.systemctl(&["start", UNIT]);
        assert!(
            out.status.success(),
            "systemctl start {UNIT} failed: {}\njournal:\n{}\nsshd:\n{}",
            String::from_utf8_lossy(&out.stderr),
            container.journal(UNIT),
            container.journal(SSHD_UNIT)
        );
        eprintln!("systemd: start (to READY=1) took {:?}", started.elapsed());
        SystemdTunnel(ContainerUnit {
            _echo: echo,
            container,
            _installed: self,
        })
    }

    /// The install root, the build directory and the shared files bound in. The unit is
    /// copied in after boot: bound into /etc/systemd/system before, the first-boot presets
    /// would enable and start it while the container comes up.
    fn boot(&self) -> Container {
        // PrivateTmp=yes hides the host's /tmp from the service, and a clean clone (CI's
        // included) may well live there: the build dir goes to a fixed path outside it.
        let build_dir: PathBuf = Path::new(WATCHDOG).parent().unwrap().to_path_buf();
        let container = Container::boot(&[
            Bind::ro_same(&self.root),
            Bind::ro(&build_dir, BUILD_IN_CONTAINER),
            Bind::ro_same(&self.shared),
        ]);
        eprintln!("systemd: container booted in {:?}", container.boot_time);
        // The container's only interface is lo, so systemd-networkd-wait-online (which
        // network-online.target pulls in) would wait its full 2 minutes: not what is tested.
        container.systemctl_ok(&["mask", "--runtime", "systemd-networkd-wait-online.service"]);
        container
    }

    fn copy_unit_in(&self, container: &Container) {
        let out = container.run(
            "cp",
            &[
                &self.unit_file.display().to_string(),
                "/etc/systemd/system/",
            ],
        );
        assert!(
            out.status.success(),
            "copy the unit into the container: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        container.systemctl_ok(&["daemon-reload"]);
    }
}

/// The unit `UNIT` under the container's system manager (field order is drop order, see
/// the module docs).
pub struct ContainerUnit {
    _echo: EchoServer,
    container: Container,
    _installed: InstalledSystemUnit,
}

impl SystemdTunnel<ContainerUnit> {
    /// The unit's journal in the container.
    pub fn journal(&self) -> String {
        self.0.container.journal(UNIT)
    }

    /// Drops it all: the container, its systemd and every service in it (`watchdog`
    /// among them) must be gone.
    pub fn tear_down(self, watchdog: i32) {
        let systemd_pid = self.0.container.pid();
        drop(self);
        for pid in [systemd_pid, watchdog] {
            assert!(!alive(pid), "{pid} survived the teardown");
        }
    }
}

impl Manager for ContainerUnit {
    fn target(&self) -> &'static str {
        "systemd"
    }

    fn show(&self, props: &[&str]) -> Props {
        self.container.show(UNIT, props)
    }

    /// Inside the container (its systemd, its journal, its /var/lib).
    fn tunnelctl(&self, args: &[&str]) -> Output {
        self.container
            .run(&format!("{BUILD_IN_CONTAINER}/tunnelctl"), args)
    }

    /// From the container's MainPID.
    fn main_pid(&self) -> i32 {
        let c = &self.container;
        let inner: i32 = c.show(UNIT, &["MainPID"])["MainPID"].parse().unwrap();
        assert!(inner > 0, "{UNIT} has no main process");
        host_pid(c.pid(), inner).unwrap_or_else(|| panic!("no host pid for container pid {inner}"))
    }

    /// MainPID is a container pid here: [`SystemdTunnel::wait_restarted`] compares the
    /// host pid after the wait.
    fn may_be_new_main(&self, _props: &Props, _old_main: i32) -> bool {
        true
    }

    /// From inside the container's network namespace.
    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip_in(self.container.pid(), LOCAL_PORT, timeout)
    }

    fn unit_log(&self) -> String {
        format!("journal:\n{}", self.container.journal(UNIT))
    }
}
