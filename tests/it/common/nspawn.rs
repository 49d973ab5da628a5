//! The host's own tree booted as a throwaway systemd container (`systemd-nspawn
//! --volatile=yes --boot`): a real systemd system manager (PID 1 of its own pid
//! namespace) with a private network, controlled with `nsenter -t PID -a systemctl …`.
//!
//! `--volatile=yes` gives the container a tmpfs `/` with the host's `/usr` read-only,
//! so nothing it writes reaches the host. Its `/etc` is nearly empty (sysusers fills
//! passwd/group); the host's `nsswitch.conf` is bound in so `DynamicUser=` users resolve
//! through nss-systemd exactly as on the host. The container runs in a private cgroup.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cgroup::TestCgroup;
use super::commands::{nsenter, stdout_of_success};
use super::user_manager::{parse_show, run_bounded};

pub use crate::testkit::SYSTEMD;

/// A bind mount into the container: `--bind-ro=SRC:DST` or `--bind=SRC:DST`.
#[derive(Clone, Debug)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

impl Bind {
    pub fn ro(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Bind {
        Bind {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }
    /// The same path inside as outside.
    pub fn ro_same(path: impl Into<PathBuf>) -> Bind {
        let p = path.into();
        Bind::ro(p.clone(), p)
    }
    fn arg(&self) -> String {
        let flag = if self.read_only {
            "--bind-ro"
        } else {
            "--bind"
        };
        // nspawn splits on ':'; our paths have none.
        format!("{flag}={}:{}", self.source.display(), self.target.display())
    }
}

pub struct Container {
    nspawn: Option<Child>,
    /// The container's systemd, in the host pid namespace.
    pid: i32,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
    /// Time from spawn to `is-system-running` = running/degraded.
    pub boot_time: Duration,
    cgroup: TestCgroup,
}

/// 32 random hex digits for `--uuid=` (the container's machine id).
fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .expect("read a random uuid")
        .trim()
        .replace('-', "")
}

impl Container {
    /// Boots the container with `binds` and waits (bounded) until it is up.
    pub fn boot(binds: &[Bind]) -> Container {
        let log_dir = super::temp_dir("nspawn");
        let log = log_dir.path().join("console.log");
        let cgroup = TestCgroup::create("nspawn");
        let mut cmd = cgroup.command("systemd-nspawn");
        cmd.args([
            "--quiet",
            "--directory=/",
            "--volatile=yes",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=read-only",
        ])
        .arg(format!("--uuid={}", random_uuid()))
        .arg("--bind-ro=/etc/nsswitch.conf")
        .args(binds.iter().map(Bind::arg))
        .args(["--boot", "--", "systemd.firstboot=off"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(&log).expect("console log"),
        ))
        .stderr(Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("console log"),
        ));
        let started = Instant::now();
        let nspawn = cmd.spawn().expect("spawn systemd-nspawn");
        let nspawn_pid = nspawn.id() as i32;
        let mut container = Container {
            nspawn: Some(nspawn),
            pid: 0,
            log,
            _log_dir: log_dir,
            boot_time: Duration::ZERO,
            cgroup,
        };
        let deadline = started + Duration::from_secs(90);
        loop {
            if let Some(status) = super::commands::exited(&mut container.nspawn) {
                panic!(
                    "systemd-nspawn exited with {status}; console:\n{}",
                    container.log()
                );
            }
            if container.pid == 0 {
                container.pid = find_child_exe(nspawn_pid, SYSTEMD).unwrap_or(0);
            }
            if container.pid != 0 {
                let out = container.systemctl(&["is-system-running"]);
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let jobs = if container.pid != 0 {
                    let out = container.systemctl(&["list-jobs"]);
                    String::from_utf8_lossy(&out.stdout).into_owned()
                } else {
                    "(no container systemd found)".to_string()
                };
                panic!(
                    "the container did not boot within 90 s; jobs:\n{jobs}\nconsole:\n{}",
                    container.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        container.boot_time = started.elapsed();
        container
    }

    /// The container's systemd (PID 1 inside), as a host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn cgroup(&self) -> &TestCgroup {
        &self.cgroup
    }

    /// `program` run inside every namespace of the container.
    pub fn command(&self, program: &str) -> Command {
        nsenter(self.pid, "-a", program)
    }

    /// Runs `program args` inside the container (bounded: 30 s).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.command(program);
        cmd.args(args);
        run_bounded(cmd, Duration::from_secs(30))
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut full = vec!["--no-pager"];
        full.extend_from_slice(args);
        self.run("systemctl", &full)
    }

    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let out = self.systemctl(args);
        stdout_of_success(&out, &format!("systemctl {args:?} in the container"))
    }

    pub fn show(&self, unit: &str, props: &[&str]) -> std::collections::BTreeMap<String, String> {
        parse_show(&self.systemctl_ok(&["show", "-p", &props.join(","), unit]))
    }

    /// The unit's journal inside the container (for failure messages).
    pub fn journal(&self, unit: &str) -> String {
        let out = self.run(
            "journalctl",
            &["--no-pager", "-q", "-o", "short-monotonic", "-u", unit],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The boot console so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A transient service inside the container: `systemd-run --unit=UNIT PROPS… -- ARGV`.
    pub fn run_service(&self, unit: &str, properties: &[&str], argv: &[&str]) {
        let mut args = vec!["--quiet".to_string(), format!("--unit={unit}")];
        args.extend(properties.iter().map(|p| format!("--property={p}")));
        args.push("--".into());
        args.extend(argv.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run("systemd-run", &refs);
        assert!(
            out.status.success(),
            "systemd-run {refs:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut nspawn) = self.nspawn.take() {
            // SIGTERM asks the container to shut down cleanly (about 2 s here); then SIGKILL.
            let _ = kill(Pid::from_raw(nspawn.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if nspawn.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
        // The cgroup (dropped next) SIGKILLs whatever is left and removes itself.
    }
}

/// The first child of `parent` whose executable is `exe`.
pub fn find_child_exe(parent: i32, exe: &str) -> Option<i32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| {
            ppid_of(pid) == Some(parent)
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new(exe))
        })
}

/// The parent pid from `/proc/PID/stat` (the field after `(comm)`).
pub fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The host pid of the process that has pid `inner` in the pid namespace of `ns_pid`
/// (`systemctl show -p MainPID` inside the container answers in container pids).
pub fn host_pid(ns_pid: i32, inner: i32) -> Option<i32> {
    let ns = std::fs::read_link(format!("/proc/{ns_pid}/ns/pid")).ok()?;
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns)
                && std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("NSpid:"))
                        .and_then(|v| v.split_whitespace().last()?.parse::<i32>().ok())
                        == Some(inner)
                })
        })
}

/// Files for an sshd inside a container: throwaway host and client keys, authorized_keys,
/// `sshd_config` listening on 127.0.0.1:`port` (the container's own loopback), and a
/// `known_hosts` line pinning the host key for `[127.0.0.1]:port`.
pub struct ContainerSshdFiles {
    pub dir: PathBuf,
    pub port: u16,
}

impl ContainerSshdFiles {
    pub fn create(dir: &Path, port: u16) -> ContainerSshdFiles {
        for key in ["host_key", "client_key"] {
            crate::testkit::keygen(&dir.join(key), "tunnelctl-test")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        let config = crate::testkit::sshd_config(
            "127.0.0.1",
            &[port],
            &dir.join("host_key"),
            &dir.join("authorized_keys"),
            "",
        );
        std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).expect("host_key.pub");
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .expect("known_hosts");
        ContainerSshdFiles {
            dir: dir.to_path_buf(),
            port,
        }
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Starts sshd in `container` as a transient unit and waits for its banner.
    pub fn start(&self, container: &Container, unit: &str) {
        let config = self.dir.join("sshd_config").display().to_string();
        // The volatile /etc has only the base users: add sshd's privilege-separation user.
        let out = container.run(
            "systemd-sysusers",
            &[
                "--inline",
                "u sshd - \"sshd privilege separation\" /run/sshd",
            ],
        );
        assert!(
            out.status.success(),
            "systemd-sysusers: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // sysusers wrote root's password as "!" (locked); sshd without PAM then refuses
        // root even with a key. "*": no password, not locked.
        let out = container.run("usermod", &["-p", "*", "root"]);
        assert!(
            out.status.success(),
            "usermod: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The host's own ssh.service/ssh.socket came up with the container (and fail on
        // port 22 of its loopback); stopping they delete /run/sshd (RuntimeDirectory=).
        let out = container.systemctl(&["mask", "--runtime", "--now", "ssh.socket", "ssh.service"]);
        assert!(
            out.status.success(),
            "mask ssh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // sshd chroots its pre-auth child into /run/sshd.
        let out = container.run("mkdir", &["-p", "-m", "0755", "/run/sshd"]);
        assert!(
            out.status.success(),
            "mkdir /run/sshd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        container.run_service(unit, &[], &["/usr/sbin/sshd", "-D", "-e", "-f", &config]);
        let port = self.port;
        let up = super::tunnel_env::in_netns(container.pid(), move || {
            super::wait_until(Duration::from_secs(10), || {
                use std::io::Read;
                let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0"
            })
        });
        assert!(
            up,
            "sshd in the container sent no banner; journal:\n{}",
            container.journal(unit)
        );
    }
}
