//! One real systemd user manager inside the client namespace, which supervises
//! every tool. Recipe: a private mount namespace with a tmpfs /run holding
//! /run/systemd/system and /run/user/0, `systemd --user` started in its own
//! cgroup (so its slices do not collide with another manager's on this machine).
//! It is started with the network namespace entered directly (setns), not
//! through `ip netns exec`, which remounts /sys and hides the cgroup hierarchy
//! ("Cannot determine cgroup we are running in").
//! The runtime directory is a bind mount of a host-visible folder, so the bench
//! talks to the manager with `systemctl --user` from outside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::netns::Netns;
use crate::{procs, stop, testkit};

pub struct UserManager {
    pub cgroup: String,
    pub runtime_dir: PathBuf,
    pub unit_dir: PathBuf,
    /// systemd 252 puts a user unit's StateDirectory= under $XDG_CONFIG_HOME, later ones under $XDG_STATE_HOME.
    pub config_home: PathBuf,
    pub state_home: PathBuf,
    child: Mutex<Option<Child>>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl UserManager {
    pub fn start(ns: &Netns, base: &Path, cgroup: &str) -> Result<UserManager, String> {
        let runtime_dir = base.join("xdg-runtime");
        let config_home = base.join("config");
        let state_home = base.join("state");
        let unit_dir = config_home.join("systemd/user");
        for d in [
            &runtime_dir,
            &unit_dir,
            &state_home,
            &base.join("data"),
            &base.join("cache"),
        ] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let script = format!(
            r#"set -e
for d in {CGROUP_ROOT}/*/; do
  case "$d" in */cpuset/) continue;; esac
  [ -f "$d/cgroup.procs" ] || continue
  mkdir -p "${{d}}{cg}" 2>/dev/null && echo $$ > "${{d}}{cg}/cgroup.procs" 2>/dev/null || true
done
{private_run}mount --bind '{rt}' /run/user/0
exec {systemd} --user --log-target=console --log-level=info"#,
            cg = cgroup,
            private_run = testkit::PRIVATE_RUN,
            systemd = testkit::SYSTEMD,
            rt = runtime_dir.display(),
        );
        let log =
            std::fs::File::create(base.join("user-manager.log")).map_err(|e| e.to_string())?;
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LANG", "C.UTF-8")
            .env("XDG_RUNTIME_DIR", "/run/user/0")
            .env("XDG_CONFIG_HOME", &config_home)
            .env("XDG_STATE_HOME", &state_home)
            .env("XDG_DATA_HOME", base.join("data"))
            .env("XDG_CACHE_HOME", base.join("cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("start systemd --user: {e}"))?;
        let mgr = UserManager {
            cgroup: cgroup.to_string(),
            runtime_dir,
            unit_dir,
            config_home: config_home.clone(),
            state_home,
            child: Mutex::new(Some(child)),
        };
        let ready = stop::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            // Not `is-system-running`: it answers "offline" when the host was not booted with systemd.
            let out = mgr.systemctl_out(&["show", "-p", "SystemState", "--value"]);
            testkit::manager_is_up(&out).then_some(())
        });
        if ready.is_none() {
            return Err(format!(
                "systemd --user did not come up within 30 s; see {}",
                base.join("user-manager.log").display()
            ));
        }
        Ok(mgr)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("systemctl");
        cmd.arg("--user")
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd
    }

    pub fn systemctl(&self, args: &[&str]) -> Result<String, String> {
        procs::run_ok(&mut self.cmd(args), Duration::from_secs(30))
    }

    /// stdout even when systemctl exits non-zero (is-active).
    pub fn systemctl_out(&self, args: &[&str]) -> String {
        match procs::run_ok(&mut self.cmd(args), Duration::from_secs(30)) {
            Ok(s) => s,
            Err(_) => {
                let out = self.cmd(args).stderr(Stdio::null()).output();
                out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            }
        }
    }

    pub fn show(&self, unit: &str, prop: &str) -> String {
        self.systemctl_out(&["show", "-p", prop, "--value", unit])
            .trim()
            .to_string()
    }

    pub fn main_pid(&self, unit: &str) -> Option<i32> {
        self.show(unit, "MainPID").parse().ok().filter(|&p| p > 0)
    }

    /// The unit's cgroup in the name=systemd (v1) hierarchy, else the unified one.
    pub fn unit_cgroup_dir(&self, unit: &str) -> Option<PathBuf> {
        let cg = self.show(unit, "ControlGroup");
        if cg.is_empty() {
            return None;
        }
        let rel = cg.trim_start_matches('/');
        ["systemd", "unified"]
            .iter()
            .map(|h| Path::new(CGROUP_ROOT).join(h).join(rel))
            .find(|p| p.exists())
    }

    /// Stops the manager (which stops every unit), then kills whatever is left in
    /// its cgroups and removes them.
    pub fn shutdown(&self) {
        let Some(mut child) = self.child.lock().ok().and_then(|mut c| c.take()) else {
            return;
        };
        let _ = procs::run_ok(&mut self.cmd(&["exit"]), Duration::from_secs(10));
        if procs::wait_timeout(&mut child, Duration::from_secs(15)).is_none() {
            eprintln!("systemd --user did not exit within 15 s; killed");
        }
        remove_cgroups(&self.cgroup);
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Kills every process in the bench's cgroup trees and removes them, deepest first.
pub fn remove_cgroups(name: &str) {
    let Ok(hier) = std::fs::read_dir(CGROUP_ROOT) else {
        return;
    };
    for h in hier.flatten() {
        let top = h.path().join(name);
        if !top.is_dir() {
            continue;
        }
        for _ in 0..50 {
            let pids = procs::cgroup_pids(&top);
            if pids.is_empty() {
                break;
            }
            procs::kill_all(&pids);
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut dirs = Vec::new();
        let mut stack = vec![top.clone()];
        while let Some(d) = stack.pop() {
            if dirs.len() > 10_000 {
                break;
            }
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
            }
            dirs.push(d);
        }
        // Children were pushed after their parents: remove in reverse order.
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}
