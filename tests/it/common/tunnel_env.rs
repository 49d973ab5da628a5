//! What every real-init tunnel test needs around the init system: a TCP echo server as
//! the forward's destination, the tunnels.yaml pointing at the fixture sshd, `tunnelctl
//! install`, and "does the tunnel carry data" checks with deadlines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const TUNNELCTL: &str = env!("CARGO_BIN_EXE_tunnelctl");
pub const WATCHDOG: &str = env!("CARGO_BIN_EXE_tunnel-watchdog");
pub const SSH: &str = "/usr/bin/ssh";

/// The watchdog at a path an inittab line can hold. `install` refuses a path with a
/// space for inittab/BusyBox (init would split it), and a build directory may have one
/// (`CARGO_TARGET_DIR="/root/build cache"`): then a copy in a folder of /tmp serves,
/// made once per test process and removed when it exits.
pub fn inittab_watchdog() -> &'static str {
    static STAGED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAGED.get_or_init(|| {
        if !WATCHDOG.contains(char::is_whitespace) {
            return WATCHDOG.to_string();
        }
        let dir = PathBuf::from(format!(
            "/tmp/tunnelctl-test-watchdog.{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("stage dir");
        let path = dir.join("tunnel-watchdog");
        super::copy_by_cp(Path::new(WATCHDOG), &path);
        extern "C" fn remove_staged() {
            let _ = std::fs::remove_dir_all(format!(
                "/tmp/tunnelctl-test-watchdog.{}",
                std::process::id()
            ));
        }
        // SAFETY: registering a plain function; it runs once at exit.
        unsafe { nix::libc::atexit(remove_staged) };
        path.to_str().expect("a UTF-8 path").to_string()
    })
}

/// A TCP echo server on 127.0.0.1 (a thread per connection; stopped on drop).
pub struct EchoServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens in the calling thread's network namespace.
    pub fn start() -> EchoServer {
        EchoServer::start_on(0)
    }

    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(port: u16) -> EchoServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind echo server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU32::new(0));
        let thread = {
            let stop = stop.clone();
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 4096];
                                while let Ok(n) = stream.read(&mut buf) {
                                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        EchoServer {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` on a thread that joined the network namespace of `pid` (setns affects only
/// the calling thread, so the test process itself stays where it is).
pub fn in_netns<T: Send + 'static>(pid: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
        // SAFETY: plain syscall on an fd we own; affects only this thread.
        let rc = unsafe { nix::libc::setns(ns.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into the netns of {pid}: {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// Sends a unique line through 127.0.0.1:`port` and expects it echoed back within 2 s.
pub fn roundtrip(port: u16) -> Result<(), String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let payload = format!(
        "tunnelctl-{}-{}\n",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(payload.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < payload.len() {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if got == payload.as_bytes() {
        Ok(())
    } else {
        Err(format!("echoed {:?}", String::from_utf8_lossy(&got)))
    }
}

/// Polls [`roundtrip`] until it succeeds; returns when it first did, or the last error.
pub fn wait_roundtrip(port: u16, timeout: Duration) -> Result<Instant, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match roundtrip(port) {
            Ok(()) => return Ok(Instant::now()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// [`wait_roundtrip`] from inside the network namespace of `pid`.
pub fn wait_roundtrip_in(pid: i32, port: u16, timeout: Duration) -> Result<Instant, String> {
    in_netns(pid, move || wait_roundtrip(port, timeout))
}

/// Probe and back-off settings kept short so the suite stays fast.
#[derive(Clone, Debug)]
pub struct Timing {
    pub probe_interval: &'static str,
    pub probe_timeout: &'static str,
    pub probe_failures: u32,
    pub backoff_initial: &'static str,
    pub backoff_max: &'static str,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            probe_interval: "1s",
            probe_timeout: "1s",
            probe_failures: 2,
            backoff_initial: "1s",
            backoff_max: "4s",
        }
    }
}

/// Server side of the tunnel as the config sees it.
pub struct Server<'a> {
    pub port: u16,
    pub identity: &'a Path,
    pub known_hosts: &'a Path,
}

/// Writes `DIR/tunnels.yaml` with one tunnel `name`: a local forward 127.0.0.1:`lport`
/// → 127.0.0.1:`echo_port` (as the server sees it) over root@127.0.0.1:`server.port`.
pub fn write_config(
    dir: &Path,
    name: &str,
    server: &Server,
    lport: u16,
    echo_port: u16,
    t: &Timing,
) -> PathBuf {
    let config = format!(
        "tunnels:\n  {name}:\n    host: 127.0.0.1\n    port: {port}\n    user: root\n    identity: {identity}\n    known_hosts: {known_hosts}\n    keepalive: {{ interval: 2s, count: 2 }}\n    probe: {{ interval: {pi}, timeout: {pt}, failures: {pf} }}\n    backoff: {{ initial: {bi}, max: {bm} }}\n    connect_timeout: 5s\n    forwards:\n      - local: {lport}\n        to: 127.0.0.1:{echo_port}\n",
        port = server.port,
        identity = server.identity.display(),
        known_hosts = server.known_hosts.display(),
        pi = t.probe_interval,
        pt = t.probe_timeout,
        pf = t.probe_failures,
        bi = t.backoff_initial,
        bm = t.backoff_max,
    );
    let path = dir.join("tunnels.yaml");
    std::fs::write(&path, config).expect("write tunnels.yaml");
    path
}

/// `tunnelctl -c CONFIG install NAME --target T --root ROOT --no-start --watchdog W`,
/// asserting success.
pub fn install(
    config: &Path,
    name: &str,
    target: &str,
    root: &Path,
    envs: &[(&str, &Path)],
) -> Output {
    let watchdog = match target {
        "inittab" | "busybox" => inittab_watchdog(),
        _ => WATCHDOG,
    };
    install_with_watchdog(config, name, target, root, envs, watchdog)
}

/// [`install`] with the watchdog at another path (as the init system will see it).
pub fn install_with_watchdog(
    config: &Path,
    name: &str,
    target: &str,
    root: &Path,
    envs: &[(&str, &Path)],
    watchdog: &str,
) -> Output {
    let mut cmd = Command::new(TUNNELCTL);
    cmd.arg("-c")
        .arg(config)
        .args([
            "install",
            name,
            "--target",
            target,
            "--no-start",
            "--watchdog",
            watchdog,
            "--root",
        ])
        .arg(root);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = super::user_manager::run_bounded(cmd, Duration::from_secs(30));
    super::commands::stdout_of_success(
        &out,
        &format!("tunnelctl install {name} --target {target}"),
    );
    out
}

/// A free TCP port on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The parent pid from `/proc/PID/stat`.
pub fn ppid(pid: i32) -> Option<i32> {
    super::nspawn::ppid_of(pid)
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Children of `pid` running `exe` (resolved path).
pub fn children_running(pid: i32, exe: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| ppid(p) == Some(pid))
        .filter(|&p| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == Path::new(exe))
        })
        .collect();
    found.sort_unstable();
    found
}

/// Waits (bounded) for the ssh client the watchdog `watchdog_pid` runs: the one with
/// the watchdog's control socket, not the short `ssh -V` it asks before its first ssh.
pub fn wait_ssh_child(watchdog_pid: i32, timeout: Duration) -> Option<i32> {
    let mut found = None;
    super::wait_until(timeout, || {
        found = children_running(watchdog_pid, SSH).into_iter().find(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|argv| argv.split(|&b| b == 0).any(|a| a == b"ControlMaster=yes"))
        });
        found.is_some()
    });
    found
}

pub fn sigstop(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap_or_else(|e| panic!("SIGSTOP {pid}: {e}"));
}

pub fn sigkill(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("SIGKILL {pid}: {e}"));
}
