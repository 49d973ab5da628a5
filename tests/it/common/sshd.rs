//! A real OpenSSH server for tests: throwaway host and client keys, its own
//! `sshd_config`, listening on 127.0.0.1 on a free port, run as `sshd -D -e -f CONFIG`.
//!
//! ```ignore
//! let Some(sshd) = Sshd::start_default("my_test") else { return }; // skipped (not root, ...)
//! let mut cmd = std::process::Command::new("ssh");
//! cmd.args(sshd.ssh_base_args()).args(["-N", "-R", "2222:127.0.0.1:22"]).arg(sshd.host());
//! ```
//!
//! Process layout of a connection (OpenSSH 9.2, checked here): the listener
//! (`sshd: … [listener]`, [`Sshd::pid`]) forks one process per connection
//! ([`SessionPids::connection`]). While authenticating that is the monitor
//! `sshd: USER [priv]` with an unprivileged `[net]` child. After a **root** login
//! sshd does not fork a separate post-auth child: the connection process itself is
//! retitled `sshd: root` (or `sshd: root@notty` once a session channel opens) and owns
//! the socket and the channels. For other users the post-auth child `sshd: USER@notty`
//! is a grandchild. [`SessionPids::session`] is that socket-owning process in both
//! cases: SIGSTOP **it** to freeze the server side of a session (it stops reading the
//! socket, answering keepalives and relaying forwards while the TCP connection stays
//! open).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use crate::testkit::{SSHD, cmdline};

/// Settings that differ between tests.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// `ClientAliveInterval` in seconds (0 = off, sshd's default).
    pub client_alive_interval: u32,
    /// `ClientAliveCountMax`.
    pub client_alive_count_max: u32,
    /// Extra `sshd_config` lines appended verbatim.
    pub extra_config: Vec<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            client_alive_interval: 0,
            client_alive_count_max: 3,
            extra_config: Vec::new(),
        }
    }
}

/// The sshd processes that serve one client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPids {
    /// The per-connection child of the listener.
    pub connection: i32,
    /// The process that owns the connection after authentication (see the module docs):
    /// SIGSTOP this one to freeze the session. `None` while still authenticating.
    pub session: Option<i32>,
}

pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    options: SshdOptions,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd with default options, or returns `None` (after printing why) when the
    /// machine cannot run it; panics instead under `CI=true`.
    pub fn start_default(test: &str) -> Option<Sshd> {
        Self::start_with(test, SshdOptions::default())
    }

    /// Like [`Sshd::start_default`] with explicit options.
    pub fn start_with(test: &str, options: SshdOptions) -> Option<Sshd> {
        if !super::require_prerequisites(test) {
            return None;
        }
        let mut dir = tempfile::Builder::new()
            .prefix("sshd")
            .tempdir()
            .expect("temp dir");
        for key in ["host_key", "client_key"] {
            crate::testkit::keygen(&dir.path().join(key), "tunnelctl-test")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        crate::testkit::sshd_privsep_dir().unwrap_or_else(|e| panic!("{e}"));

        // Picking a free port and handing it to sshd races with other processes; retry a
        // few times with a fresh port if sshd reports the address taken.
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut sshd = Sshd {
                dir,
                port,
                options: options.clone(),
                child: None,
            };
            sshd.write_files();
            match sshd.spawn() {
                Ok(()) => return Some(sshd),
                Err(e) => {
                    last_error = e;
                    dir = sshd.take_dir();
                }
            }
        }
        panic!("sshd did not start: {last_error}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill_all();
        // Swap the dir out so Drop (which would delete it) runs on an empty placeholder.
        let placeholder = tempfile::Builder::new()
            .prefix("sshd-x")
            .tempdir()
            .expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn write_files(&self) {
        let d = self.dir.path();
        let extra = format!(
            "ClientAliveInterval {}\nClientAliveCountMax {}\n{}",
            self.options.client_alive_interval,
            self.options.client_alive_count_max,
            self.options
                .extra_config
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
        let config = crate::testkit::sshd_config(
            "127.0.0.1",
            &[self.port],
            &d.join("host_key"),
            &d.join("authorized_keys"),
            &extra,
        );
        std::fs::write(d.join("sshd_config"), config).expect("write sshd_config");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host_key.pub");
        // Only "type base64": drop the comment.
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {}\n", self.port, key.join(" ")),
        )
        .expect("write known_hosts");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open sshd log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {SSHD}: {e}"))?;
        self.child = Some(child);
        self.wait_for_banner(Duration::from_secs(10))
    }

    /// Waits until the port accepts a connection and sends `SSH-2.0`, or sshd exits.
    fn wait_for_banner(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("sshd exited with {status}; log:\n{}", self.log()));
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                let mut got = Vec::new();
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(7).any(|w| w == b"SSH-2.0") {
                        return Ok(());
                    }
                    if got.len() > 256 {
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "sshd on port {} sent no banner within {timeout:?}; log:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Starts sshd again on the same port after [`Sshd::stop`] ("the server comes back").
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "sshd is already running");
        if let Err(e) = self.spawn() {
            panic!("sshd did not come back on port {}: {e}", self.port);
        }
    }

    /// Kills the listener and every connection it serves ("the server dies").
    pub fn stop(&mut self) {
        self.kill_all();
    }

    fn kill_all(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let root = child.id() as i32;
        // Stop the listener first so it forks nothing new, then kill every descendant.
        let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
        let victims = descendants(root);
        for &pid in &victims {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        // The descendants are re-parented and reaped by init: wait until none is alive.
        let gone = super::wait_until(Duration::from_secs(5), || {
            victims
                .iter()
                .all(|&p| state_of(p).is_none_or(|s| s == 'Z'))
        });
        assert!(
            gone || std::thread::panicking(),
            "sshd children {victims:?} survived SIGKILL"
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listener's pid, while running.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The host to give ssh.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// sshd's own log so far (`-e`: its stderr), for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Arguments that make a plain `ssh` log in to this server as root with the throwaway
    /// key and a pinned host key, ignoring the user's config. Append your own options,
    /// then [`Sshd::host`].
    pub fn ssh_base_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            "root".into(),
        ]
    }

    /// The sshd processes serving each open connection (authenticated or not).
    pub fn session_pids(&self) -> Vec<SessionPids> {
        let Some(root) = self.pid() else {
            return Vec::new();
        };
        // Pre-auth and privilege-separation helpers carry a bracketed tag in their title.
        let is_session = |pid: i32| {
            let title = cmdline(pid);
            title.starts_with("sshd: ") && !title.contains('[')
        };
        children(root)
            .into_iter()
            .map(|connection| SessionPids {
                connection,
                session: std::iter::once(connection)
                    .chain(descendants(connection))
                    .find(|&pid| is_session(pid)),
            })
            .collect()
    }

    /// Waits (bounded) until exactly one authenticated session exists and returns it.
    pub fn wait_for_session(&self, timeout: Duration) -> Option<SessionPids> {
        let mut found = None;
        super::wait_until(timeout, || {
            let sessions: Vec<_> = self
                .session_pids()
                .into_iter()
                .filter(|s| s.session.is_some())
                .collect();
            found = (sessions.len() == 1).then(|| sessions[0]);
            found.is_some()
        });
        found
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Stopped (SIGSTOPped) processes die by SIGKILL too.
        self.kill_all();
    }
}

/// A port that was free a moment ago (bind to :0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// The parent pid of `pid` from `/proc/PID/stat` (the field after the `(comm)`).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// The process state letter (`R`, `S`, `T` stopped, `Z` zombie …).
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Direct children of `pid`, found by scanning `/proc` (works without CONFIG_PROC_CHILDREN).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect();
    found.sort_unstable();
    found
}

/// Every descendant of `pid`, depth first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    for child in children(pid) {
        all.push(child);
        all.extend(descendants(child));
    }
    all
}
