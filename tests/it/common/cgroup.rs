//! A private cgroup (same path in every mounted hierarchy) for one test's init system.
//!
//! Why: a systemd manager (user or nspawn'd system) moves every process of its own
//! cgroup into `init.scope` at start-up. Started from the root cgroup, that is every
//! process on the machine. In a fresh child cgroup it only finds itself, and at the end
//! the cgroup tells us exactly which processes the test left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct TestCgroup {
    /// Path relative to each hierarchy's root, e.g. `tunnelctl-test-123-0-user`.
    relative: PathBuf,
    /// Mount points of every cgroup (v1) and cgroup2 hierarchy.
    hierarchies: Vec<PathBuf>,
    /// PID 1's cgroup when this one was made: a manager that escaped moves it.
    pid1_before: String,
}

/// Mount points of the cgroup hierarchies, from `/proc/self/mountinfo`.
pub fn hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            // FIELDS... - FSTYPE SOURCE OPTIONS; the mount point is field 5.
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split_whitespace().next()?;
            let mount_point = before.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// This process's cgroup path in the named systemd hierarchy (v1) or the unified one.
fn own_path() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once(':')
                    .and_then(|(_, rest)| rest.strip_prefix(prefix))
            })
            .map(|p| p.trim_start_matches('/').to_string())
    };
    PathBuf::from(
        find("name=systemd:")
            .or_else(|| find(":"))
            .unwrap_or_default(),
    )
}

impl TestCgroup {
    /// Creates `OWN_CGROUP/tunnelctl-test-PID-N-TAG` in every hierarchy.
    pub fn create(tag: &str) -> TestCgroup {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let relative = own_path().join(format!(
            "tunnelctl-test-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let hierarchies = hierarchies();
        assert!(!hierarchies.is_empty(), "no cgroup hierarchy is mounted");
        for h in &hierarchies {
            let dir = h.join(&relative);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        TestCgroup {
            relative,
            hierarchies,
            pid1_before: pid1_cgroup(),
        }
    }

    /// The `cgroup.procs` files a process must join (every hierarchy).
    fn procs_files(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.join(&self.relative).join("cgroup.procs"))
            .collect()
    }

    /// A command that joins this cgroup, then execs `program args...`. A tiny shell does
    /// the joining so nothing runs between fork and exec in the (threaded) test process.
    /// Joining fails in hierarchies that need set-up first (v1 cpuset): harmless, the
    /// process stays in its parent there.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"while [ "$1" != -- ]; do echo $$ > "$1" 2>/dev/null; shift; done; shift; exec "$@""#)
            .arg("sh")
            .args(self.procs_files())
            .arg("--")
            .arg(program);
        cmd
    }

    /// Every process in the cgroup or below it, in any hierarchy.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for h in &self.hierarchies {
            collect_pids(&h.join(&self.relative), &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether `pid` is in this cgroup (or below) in the main hierarchy.
    pub fn contains(&self, pid: i32) -> bool {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let needle = format!("/{}", self.relative.display());
        text.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            path == needle || path.starts_with(&format!("{needle}/"))
        })
    }

    /// SIGKILLs everything inside (repeatedly: a manager may fork while dying), waits
    /// until it is empty, and removes the directories. Returns what was left: pids that
    /// survived, or the directories that could not be removed.
    pub fn kill_all(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return pids.iter().map(|p| format!("pid {p}")).collect();
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Zombies still count until reaped; rmdir fails with EBUSY until then.
        let mut left = Vec::new();
        for h in &self.hierarchies {
            let top = h.join(&self.relative);
            let removed = super::wait_until(Duration::from_secs(5), || {
                remove_tree(&top);
                !top.exists()
            });
            if !removed {
                left.push(format!("cgroup {}", top.display()));
            }
        }
        left
    }
}

/// PID 1's cgroup line in the named systemd (or unified) hierarchy.
pub fn pid1_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains(":name=systemd:"))
        .or_else(|| text.lines().find(|l| l.starts_with("0::")));
    line.unwrap_or_default().to_string()
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let left = self.kill_all(Duration::from_secs(10));
        if std::thread::panicking() {
            return;
        }
        // A manager that escaped its cgroup moves the machine's processes (PID 1 first)
        // into `init.scope`: it breaks the host's accounting, and the test must say so.
        let pid1_now = pid1_cgroup();
        assert_eq!(
            pid1_now,
            self.pid1_before,
            "PID 1 moved to another cgroup while {} existed: a systemd manager migrated the host's processes",
            self.relative.display()
        );
        assert!(
            left.is_empty(),
            "left behind by cgroup {}: {left:?}",
            self.relative.display()
        );
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

/// rmdir depth first (cgroup directories hold only virtual files).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
