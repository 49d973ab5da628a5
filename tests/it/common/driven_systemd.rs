//! [`Driven`] for systemd: a private `systemd --user` ([`DrivenUserManager`]: tunnelctl
//! run in its mount namespace, as the user whose manager it is) and the system manager
//! of a container booted from the host's tree ([`DrivenContainer`]: tunnelctl run inside
//! the container, as root). tunnelctl does the `systemctl` work itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::driven::{BACKOFF_INITIAL, BACKOFF_MAX, Driven, NAME, files_below};
use super::nspawn::{Bind, Container, ContainerSshdFiles};
use super::prereq::{Prereq, require};
use super::sshd::Sshd;
use super::tunnel_env::{
    EchoServer, Server, TUNNELCTL, Timing, WATCHDOG, in_netns, wait_roundtrip, wait_roundtrip_in,
    write_config,
};
use super::user_manager::{UserManager, run_bounded};

/// The unit tunnelctl names for [`NAME`].
pub const UNIT: &str = "tunnel-itest.service";

/// Short probes, a long back-off (see [`super::driven::BACKOFF_INITIAL`]).
pub fn driven_timing() -> Timing {
    Timing {
        backoff_initial: BACKOFF_INITIAL,
        backoff_max: BACKOFF_MAX,
        ..Timing::default()
    }
}

/// Processes among `pids` that are a tunnel-watchdog or an ssh client: (pid, cmdline).
pub fn tunnel_processes_among(pids: impl IntoIterator<Item = i32>) -> Vec<(i32, String)> {
    pids.into_iter()
        .map(|p| (p, crate::testkit::cmdline(p)))
        .filter(|(_, c)| {
            let argv0 = c.split(' ').next().unwrap_or("");
            let base = argv0.rsplit('/').next().unwrap_or("");
            base == "tunnel-watchdog" || base == "ssh"
        })
        .collect()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A private user manager, tunnelctl run as its user. Field order is drop order.
pub struct DrivenUserManager {
    manager: UserManager,
    _echo: EchoServer,
    sshd: Sshd,
    lport: u16,
    config: PathBuf,
}

impl DrivenUserManager {
    /// `None`: skipped (prerequisites).
    pub fn start(test: &str) -> Option<DrivenUserManager> {
        let prereqs = [
            Prereq::Root,
            Prereq::Unshare,
            Prereq::SystemdUser,
            Prereq::Sshd,
        ];
        if !require(test, &prereqs) {
            return None;
        }
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let manager = UserManager::start_with_home_prefix("driven-user");
        let lport = super::tunnel_env::free_port();
        let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
        let server = Server {
            port: sshd.port(),
            identity: &key,
            known_hosts: &known_hosts,
        };
        // Where a user keeps it: `tunnelctl` finds it without `-c`.
        let config_dir = manager.home().join(".config/tunnelctl");
        std::fs::create_dir_all(&config_dir).unwrap();
        let config = write_config(
            &config_dir,
            NAME,
            &server,
            lport,
            echo.port(),
            &driven_timing(),
        );
        Some(DrivenUserManager {
            manager,
            _echo: echo,
            sshd,
            lport,
            config,
        })
    }
}

impl DrivenUserManager {
    /// `path` in the manager's mount namespace, as the host reaches it.
    fn inside(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.manager.pid()))
            .join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl Driven for DrivenUserManager {
    fn label(&self) -> &'static str {
        "systemd-user"
    }

    /// As root, detection picks the system manager.
    fn target_args(&self) -> Vec<String> {
        vec!["--target".into(), "systemd-user".into()]
    }

    fn config(&self) -> PathBuf {
        self.config.clone()
    }

    fn tunnelctl(&self, args: &[&str], timeout: Duration) -> Output {
        let m = &self.manager;
        let mut cmd = m.command(TUNNELCTL);
        cmd.args(args)
            .env("XDG_STATE_HOME", m.home().join(".local/state"))
            .env_remove("NOTIFY_SOCKET");
        run_bounded(cmd, timeout)
    }

    fn install_waits_for_ready(&self) -> bool {
        true
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip(self.lport, timeout)
    }

    fn init_says_running(&self) -> bool {
        let props = self.manager.show(UNIT, &["ActiveState", "SubState"]);
        props["ActiveState"] == "active" && props["SubState"] == "running"
    }

    fn tunnel_processes(&self) -> Vec<(i32, String)> {
        tunnel_processes_among(self.manager.cgroup().pids())
    }

    /// The user's unit folder and its state and data folders (not tunnels.yaml, not
    /// the manager's log, which live in HOME itself).
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let home = self.manager.home();
        files_below(&[home.join(".config"), home.join(".local")])
    }

    /// Inside the manager's mount namespace (its private /run).
    fn exists(&self, path: &Path) -> bool {
        self.inside(path).exists()
    }

    fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(self.inside(path)).unwrap_or_default()
    }

    /// The unit's stderr goes to a journald this private manager does not have.
    fn watchdog_log(&self) -> Option<String> {
        None
    }

    fn server_down(&mut self) {
        self.sshd.stop();
    }

    fn server_up(&mut self) {
        self.sshd.start();
    }

    fn report(&self) -> String {
        format!(
            "manager log (tail):\n{}\nsshd log (tail):\n{}",
            tail(&self.manager.log(), 60),
            tail(&self.sshd.log(), 15)
        )
    }
}

// The container has its own network namespace: fixed ports cannot collide.
const SSHD_PORT: u16 = 2222;
const LOCAL_PORT: u16 = 8888;
const ECHO_PORT: u16 = 7777;
const SSHD_UNIT: &str = "itest-sshd.service";
/// Where the build directory (tunnelctl and, next to it, tunnel-watchdog) is bound.
const BUILD_IN_CONTAINER: &str = "/opt/tunnelctl-build";

/// The host's tree booted with systemd-nspawn, an sshd and the echo server on its
/// loopback, tunnelctl run inside. Field order is drop order.
pub struct DrivenContainer {
    _echo: EchoServer,
    container: Container,
    sshd: ContainerSshdFiles,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl DrivenContainer {
    /// Boots the container with `tunnels.yaml` written by `config_extra` appended to the
    /// tunnel's keys (indented four spaces). `None`: skipped (prerequisites).
    pub fn start(test: &str, config_extra: &str) -> Option<DrivenContainer> {
        if !require(test, &[Prereq::Root, Prereq::SystemdNspawn, Prereq::Sshd]) {
            return None;
        }
        let dir = super::temp_dir("driven-system");
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
            &driven_timing(),
        );
        if !config_extra.is_empty() {
            let mut text = std::fs::read_to_string(&config).unwrap();
            text.push_str(config_extra);
            std::fs::write(&config, text).unwrap();
        }
        // PrivateTmp=yes hides the host's /tmp from the service, and a clone may live
        // there: the build dir goes to a fixed path outside it.
        let build_dir: PathBuf = Path::new(WATCHDOG).parent().unwrap().to_path_buf();
        let container = Container::boot(&[
            Bind::ro(&build_dir, BUILD_IN_CONTAINER),
            Bind::ro_same(&shared),
        ]);
        eprintln!("systemd: container booted in {:?}", container.boot_time);
        // Only lo: systemd-networkd-wait-online would wait its full 2 minutes.
        container.systemctl_ok(&["mask", "--runtime", "systemd-networkd-wait-online.service"]);
        sshd.start(&container, SSHD_UNIT);
        let echo = in_netns(container.pid(), || EchoServer::start_on(ECHO_PORT));
        Some(DrivenContainer {
            _echo: echo,
            container,
            sshd,
            config,
            _dir: dir,
        })
    }

    /// Runs `program args` inside the container, asserting success.
    pub fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.container.run(program, args);
        super::commands::stdout_of_success(&out, &format!("{program} {args:?} in the container"));
    }

    /// The unit's main process (the watchdog) as a host pid.
    pub fn main_pid(&self) -> i32 {
        let inner: i32 = self.container.show(UNIT, &["MainPID"])["MainPID"]
            .parse()
            .unwrap();
        assert!(inner > 0, "{UNIT} has no main process");
        super::nspawn::host_pid(self.container.pid(), inner)
            .unwrap_or_else(|| panic!("no host pid for container pid {inner}"))
    }

    /// A path inside the container as the host reaches it.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.container.pid()))
            .join(path.strip_prefix("/").unwrap_or(path))
    }
}

impl Driven for DrivenContainer {
    fn label(&self) -> &'static str {
        "systemd"
    }

    /// Detection finds the container's systemd.
    fn target_args(&self) -> Vec<String> {
        Vec::new()
    }

    fn config(&self) -> PathBuf {
        self.config.clone()
    }

    fn tunnelctl(&self, args: &[&str], timeout: Duration) -> Output {
        let mut cmd = self
            .container
            .command(&format!("{BUILD_IN_CONTAINER}/tunnelctl"));
        cmd.args(args);
        run_bounded(cmd, timeout)
    }

    fn install_waits_for_ready(&self) -> bool {
        true
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip_in(self.container.pid(), LOCAL_PORT, timeout)
    }

    fn init_says_running(&self) -> bool {
        let props = self.container.show(UNIT, &["ActiveState", "SubState"]);
        props["ActiveState"] == "active" && props["SubState"] == "running"
    }

    fn tunnel_processes(&self) -> Vec<(i32, String)> {
        tunnel_processes_among(self.container.cgroup().pids())
    }

    /// The system unit folder and tunnelctl's folders in /etc and /var/lib.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        files_below(&[
            self.host_path(Path::new("/etc/systemd/system")),
            self.host_path(Path::new("/etc/tunnelctl")),
            self.host_path(Path::new("/var/lib/tunnelctl")),
        ])
    }

    fn exists(&self, path: &Path) -> bool {
        self.host_path(path).exists()
    }

    fn read(&self, path: &Path) -> String {
        std::fs::read_to_string(self.host_path(path)).unwrap_or_default()
    }

    fn watchdog_log(&self) -> Option<String> {
        Some(self.container.journal(UNIT))
    }

    fn server_down(&mut self) {
        self.container.systemctl_ok(&["stop", SSHD_UNIT]);
        // sshd's exit on SIGTERM leaves the transient unit failed; a new one needs its name.
        let _ = self.container.systemctl(&["reset-failed", SSHD_UNIT]);
    }

    fn server_up(&mut self) {
        self.sshd.start(&self.container, SSHD_UNIT);
    }

    fn report(&self) -> String {
        format!(
            "journal:\n{}\nsshd journal (tail):\n{}",
            tail(&self.container.journal(UNIT), 60),
            tail(&self.container.journal(SSHD_UNIT), 15)
        )
    }
}
