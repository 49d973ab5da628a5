//! Shared test fixtures: a real OpenSSH server on 127.0.0.1 ([`sshd::Sshd`]), a
//! test-side `NOTIFY_SOCKET` ([`NotifyReceiver`]) and a bounded poller ([`wait_until`]).
//!
//! The real-init tests stage their tunnel with [`inittab_tunnel`], [`user_unit`] and
//! [`system_unit`], and check it with [`supervised`] and [`systemd_tunnel`].
//!
//! Use from an integration test with `use crate::common;`.

pub mod as_user;
pub mod cgroup;
pub mod child;
pub mod cli;
pub mod commands;
pub mod driven;
pub mod driven_inittab;
pub mod driven_supervision;
pub mod driven_systemd;
pub mod initd;
pub mod inittab_init;
pub mod inittab_tunnel;
pub mod nspawn;
pub mod prereq;
pub mod readback;
pub mod sshd;
pub mod supervised;
pub mod system_unit;
pub mod systemd_analyze;
pub mod systemd_tunnel;
pub mod target;
pub mod tunnel_env;
pub mod user_manager;
pub mod user_unit;
pub mod watchdog_cmd;

pub use cli::{golden_home, load, tunnelctl};

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `timeout` has passed. Returns whether it held.
/// The condition is always evaluated at least once, and once more after the deadline, so a
/// slow machine that misses the last tick still sees the final state.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline - now));
    }
}

/// A fresh temporary directory whose name starts with `prefix`, removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// Copies `src` to `dst` with `cp`, in a child process: a program this test process
/// wrote itself could not be run while another test thread forks (the fork's child holds
/// the write fd until it execs, and exec of the copy fails with ETXTBSY, "Text file
/// busy"; seen in CI). A copy written by another process leaves no fd here.
pub fn copy_by_cp(src: &std::path::Path, dst: &std::path::Path) {
    let out = std::process::Command::new("cp")
        .arg("--")
        .arg(src)
        .arg(dst)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp {} {}: {}",
        src.display(),
        dst.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why a test that needs root and a real sshd cannot run here, or `None` if it can.
pub fn missing_prerequisites() -> Option<String> {
    if !std::path::Path::new(sshd::SSHD).exists() {
        return Some(format!(
            "{} is missing (install openssh-server)",
            sshd::SSHD
        ));
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (sshd needs root to accept logins)".to_string());
    }
    for tool in ["/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !std::path::Path::new(tool).exists() {
            return Some(format!("{tool} is missing (install openssh-client)"));
        }
    }
    None
}

/// Returns true when the test may go on. Otherwise prints why it is skipped, or panics
/// when `CI=true` (a CI run must not pass by skipping everything).
pub fn require_prerequisites(test: &str) -> bool {
    match missing_prerequisites() {
        None => true,
        Some(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: cannot run on CI: {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            false
        }
    }
}

/// One datagram received on the notify socket.
#[derive(Debug, Clone)]
pub struct Notification {
    pub at: Instant,
    pub text: String,
}

impl Notification {
    /// The `KEY=VALUE` lines of the datagram.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines()
    }
    /// Whether one line is exactly `line` (e.g. `READY=1`).
    pub fn has(&self, line: &str) -> bool {
        self.lines().any(|l| l == line)
    }
    /// The value of `KEY=` if present.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Plays systemd's side of sd_notify: an AF_UNIX datagram socket (a path in a temp dir,
/// or an abstract `@name`) and a thread that records every datagram with its arrival time.
pub struct NotifyReceiver {
    env_value: String,
    messages: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl NotifyReceiver {
    /// A socket at a path (`NOTIFY_SOCKET=/tmp/.../notify`).
    pub fn path() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("notify")
            .tempdir()
            .expect("temp dir");
        let path: PathBuf = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Self::start(socket, path.display().to_string(), Some(dir))
    }

    /// An abstract socket (`NOTIFY_SOCKET=@tunnelctl-test-PID-N`).
    pub fn abstract_name() -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "tunnelctl-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        Self::start(socket, format!("@{name}"), None)
    }

    fn start(socket: UnixDatagram, env_value: String, dir: Option<tempfile::TempDir>) -> Self {
        // A short read timeout lets the thread notice `stop` without a wake-up datagram.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let messages = messages.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        messages.lock().unwrap().push(Notification {
                            at: Instant::now(),
                            text,
                        });
                    }
                }
            })
        };
        NotifyReceiver {
            env_value,
            messages,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The value to put in `NOTIFY_SOCKET`.
    pub fn env_value(&self) -> &str {
        &self.env_value
    }

    /// Every datagram so far, in arrival order.
    pub fn messages(&self) -> Vec<Notification> {
        self.messages.lock().unwrap().clone()
    }

    /// The first datagram containing the line `line`, if any.
    pub fn first_with(&self, line: &str) -> Option<Notification> {
        self.messages().into_iter().find(|m| m.has(line))
    }

    /// How many datagrams so far contain the line `line`.
    pub fn count_with(&self, line: &str) -> usize {
        self.messages().iter().filter(|m| m.has(line)).count()
    }

    /// All `STATUS=` values so far.
    pub fn statuses(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter_map(|m| m.value("STATUS").map(str::to_string))
            .collect()
    }

    /// Waits (bounded) for a datagram containing the line `line`.
    pub fn wait_for(&self, timeout: Duration, line: &str) -> Option<Notification> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.first_with(line);
            found.is_some()
        });
        found
    }
}

impl Drop for NotifyReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
