//! A private systemd user manager (`systemd --user`) for one test.
//!
//! It runs in its own mount namespace (a tmpfs on `/run` holding `/run/systemd/system`
//! and `/run/user/0`, so it believes it runs under systemd) and its own cgroup, with a
//! temporary `HOME`/`XDG_CONFIG_HOME`, so nothing lands in the real `~` or `/run`. The
//! network is the host's: a fixture sshd on 127.0.0.1 is reachable.
//! `systemctl --user` reaches it through `nsenter -t PID -m` with
//! `XDG_RUNTIME_DIR=/run/user/0` (its private socket; no D-Bus needed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cgroup::TestCgroup;
use super::commands::{nsenter, stdout_of_success};

pub use crate::testkit::SYSTEMD;

pub struct UserManager {
    child: Option<Child>,
    pid: i32,
    home: tempfile::TempDir,
    log: PathBuf,
    // Declared last: dropped after the manager was killed.
    cgroup: TestCgroup,
}

impl UserManager {
    /// Starts the manager and waits (bounded) until `is-system-running` says it is up.
    pub fn start() -> UserManager {
        UserManager::start_with_home_prefix("usermgr")
    }

    /// [`UserManager::start`] with a HOME whose name starts with `prefix` (a space in it
    /// puts one into every per-user path, state directories included).
    pub fn start_with_home_prefix(prefix: &str) -> UserManager {
        let home = super::temp_dir(prefix);
        std::fs::create_dir_all(home.path().join(".config/systemd/user")).expect("unit dir");
        let log = home.path().join("manager.log");
        let cgroup = TestCgroup::create("user");
        let script = format!(
            "set -e\n{}exec {SYSTEMD} --user --log-target=console --default-standard-output=inherit --default-standard-error=inherit",
            crate::testkit::PRIVATE_RUN
        );
        let mut cmd = cgroup.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("XDG_RUNTIME_DIR", "/run/user/0")
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("XDG_STATE_HOME", home.path().join(".local/state"))
            .env("XDG_DATA_HOME", home.path().join(".local/share"))
            .env("XDG_CACHE_HOME", home.path().join(".cache"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ));
        let child = cmd.spawn().expect("spawn unshare + systemd --user");
        // sh, unshare (no fork for a mount namespace) and sh exec in turn: the child's
        // pid becomes the manager's.
        let pid = child.id() as i32;
        let mut manager = UserManager {
            child: Some(child),
            pid,
            home,
            log,
            cgroup,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = super::commands::exited(&mut manager.child) {
                panic!(
                    "systemd --user exited with {status}; log:\n{}",
                    manager.log()
                );
            }
            if manager.is_manager_process() {
                let out = manager.systemctl(&["is-system-running"]);
                if crate::testkit::manager_is_up(&String::from_utf8_lossy(&out.stdout)) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "systemd --user did not come up in 30 s; log:\n{}",
                manager.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            manager.cgroup.contains(pid),
            "the manager is not in its private cgroup"
        );
        manager
    }

    fn is_manager_process(&self) -> bool {
        std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .is_ok_and(|exe| exe == Path::new(SYSTEMD))
    }

    /// The manager's pid (host pid namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Where `systemd --user` reads the user's own units (`~/.config/systemd/user`).
    pub fn unit_dir(&self) -> PathBuf {
        self.home.path().join(".config/systemd/user")
    }

    pub fn cgroup(&self) -> &TestCgroup {
        &self.cgroup
    }

    /// A command run inside the manager's mount namespace with its environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = nsenter(self.pid, "-m", program);
        cmd.env("XDG_RUNTIME_DIR", "/run/user/0")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd
    }

    /// `systemctl --user ARGS` (bounded: 30 s, then killed).
    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.command("systemctl");
        cmd.arg("--user").arg("--no-pager").args(args);
        run_bounded(cmd, Duration::from_secs(30))
    }

    /// Like [`UserManager::systemctl`], panicking with the output when it fails.
    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let out = self.systemctl(args);
        stdout_of_success(&out, &format!("systemctl --user {args:?}"))
    }

    /// `systemctl --user show -p A,B UNIT` as a map.
    pub fn show(&self, unit: &str, props: &[&str]) -> BTreeMap<String, String> {
        parse_show(&self.systemctl_ok(&["show", "-p", &props.join(","), unit]))
    }

    /// The unit's journal as the manager logged it (no journald here: its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The cgroup (dropped next) kills the units' processes that are left.
    }
}

/// `KEY=VALUE` lines into a map.
pub fn parse_show(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `cmd` with a deadline; a hung command is killed and reported as failed.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "{cmd:?} did not finish within {timeout:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    }
}
