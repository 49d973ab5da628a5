//! Network namespaces: create, delete, enter from a thread, spawn a child inside,
//! and the veth pair that joins a lane's server namespace to the client namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use crate::procs;

/// The namespace the bench started in: threads go back here after `enter`.
static HOME: OnceLock<File> = OnceLock::new();

pub fn remember_home() {
    HOME.get_or_init(|| {
        File::open("/proc/thread-self/ns/net").expect("open own network namespace")
    });
}

pub struct Netns {
    pub name: String,
    file: File,
    /// Inode of the namespace: `/proc/PID/ns/net` of a process inside reads `net:[INODE]`.
    pub inode: u64,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns, String> {
        procs::run_ok(
            Command::new("ip").args(["netns", "add", name]),
            Duration::from_secs(10),
        )?;
        let path = PathBuf::from("/run/netns").join(name);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let inode = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ino();
        let ns = Netns {
            name: name.to_string(),
            file,
            inode,
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `f` on this thread inside the namespace. Sockets created in `f` stay in
    /// the namespace after the thread returns home.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Back;
        impl Drop for Back {
            fn drop(&mut self) {
                if let Some(home) = HOME.get() {
                    let _ = setns(home.as_fd(), CloneFlags::CLONE_NEWNET);
                }
            }
        }
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into a bench namespace");
        let _back = Back;
        f()
    }

    /// A command whose process starts inside the namespace (only the network
    /// namespace changes: unlike `ip netns exec`, /sys and the cgroup mounts stay).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let fd = self.file.try_clone().expect("dup namespace fd");
        // SAFETY: setns is a plain syscall, async-signal-safe; nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Runs a short command inside the namespace; Err carries its stderr.
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let mut cmd = self.command(argv[0]);
        cmd.args(&argv[1..]);
        procs::run_ok(&mut cmd, Duration::from_secs(15))
    }

    /// `nft -f -` inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        let mut cmd = self.command("nft");
        cmd.args(["-f", "-"]);
        procs::run_with_stdin(&mut cmd, script, Duration::from_secs(15)).map(|_| ())
    }

    /// Reads a file under /proc/thread-self/net (tcp, nf_conntrack) as seen from inside.
    pub fn read_proc_net(&self, file: &str) -> String {
        self.enter(|| {
            std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).unwrap_or_default()
        })
    }

    /// Writes a /proc/sys value (net.* keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| std::fs::write(&path, value))
            .map_err(|e| format!("{} in {}: {e}", path, self.name))
    }

    pub fn sysctl_get(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| std::fs::read_to_string(&path))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Every live process whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        procs::pids_in_netns(self.inode)
    }

    /// Kills every process inside, then deletes the namespace.
    pub fn destroy(&self) {
        procs::kill_all(&self.pids());
        // Tables die with the namespace; delete ours first anyway so nothing lingers
        // if something else still holds the namespace open.
        let _ = self.run(&["nft", "delete", "table", "inet", "tcb"]);
        let _ = procs::run_ok(
            Command::new("ip").args(["netns", "del", &self.name]),
            Duration::from_secs(10),
        );
    }
}

/// `ip link add` a veth pair with one end in each namespace, addresses on both, up.
pub fn veth(
    client: &Netns,
    client_if: &str,
    client_addr: &str,
    server: &Netns,
    server_if: &str,
    server_addr: &str,
) -> Result<(), String> {
    procs::run_ok(
        Command::new("ip").args([
            "link",
            "add",
            client_if,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            server_if,
            "netns",
            &server.name,
        ]),
        Duration::from_secs(10),
    )?;
    client.run(&["ip", "addr", "add", client_addr, "dev", client_if])?;
    server.run(&["ip", "addr", "add", server_addr, "dev", server_if])?;
    client.run(&["ip", "link", "set", client_if, "up"])?;
    server.run(&["ip", "link", "set", server_if, "up"])?;
    Ok(())
}

/// Namespaces named `tcb-*-PID` whose bench process is gone: left by a run that was
/// killed with SIGKILL. Removed at start so they do not pile up.
pub fn remove_stale() {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        // Only our own names: tcb-client-PID and tcb-serverN-PID.
        let Some(rest) = name.strip_prefix("tcb-") else {
            continue;
        };
        let Some((role, pid)) = rest.rsplit_once('-') else {
            continue;
        };
        let ours = role == "client"
            || role
                .strip_prefix("server")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let Some(pid) = pid.parse::<i32>().ok().filter(|_| ours) else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            if let Ok(file) = File::open(format!("/run/netns/{name}"))
                && let Ok(meta) = file.metadata()
            {
                procs::kill_all(&procs::pids_in_netns(meta.ino()));
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            eprintln!("removed stale namespace {name}");
        }
    }
}
