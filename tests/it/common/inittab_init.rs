//! A real inittab-driven init (SysV `/sbin/init` from Debian's sysvinit-core, or
//! `busybox init`) running as PID 1 of its own pid + mount namespace.
//!
//! The test prepares a root directory: `ROOT/etc` (at least `etc/inittab`), and this
//! harness creates `ROOT/var`, `ROOT/run` and `ROOT/console`. Inside the namespace:
//! - `/etc` and `/var` are overlays: the host's tree below, `ROOT/etc` / `ROOT/var` on
//!   top, so the rendered inittab and args files appear at their real paths and every
//!   write (logs) lands in `ROOT`, never on the host;
//! - `/run` is `ROOT/run` (state files, SysV's `/run/initctl`);
//! - `/dev/console` is the FIFO `ROOT/console`, drained by a thread of the test: init's
//!   own messages ("respawning too fast") and its children's default output end up in
//!   [`InittabInit::console`]. (A plain file does not work: init rewrites it from
//!   offset 0 on every message.)
//! - `/proc` is remounted for the new pid namespace.
//!
//! The network is the host's, so a fixture sshd on 127.0.0.1 is reachable.
//! Teardown: SIGKILL to the init, which takes the whole pid namespace with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::prereq::Prereq;
use super::user_manager::run_bounded;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Sysv,
    Busybox,
}

impl Flavor {
    /// What running this init here takes.
    pub fn prereqs(self) -> &'static [Prereq] {
        match self {
            Flavor::Sysv => &[Prereq::Root, Prereq::Unshare, Prereq::AptGet],
            Flavor::Busybox => &[Prereq::Root, Prereq::Unshare, Prereq::Busybox],
        }
    }
}

pub struct InittabInit {
    console: ConsoleReader,
    unshare: Option<Child>,
    /// The init, in the host pid namespace.
    pid: i32,
}

/// `/sbin/init` of Debian's sysvinit-core, unpacked (never installed) under the cargo
/// target dir on first use and reused afterwards.
pub fn sysvinit_binary() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sysvinit-core");
    let init = cache.join("sbin/init");
    if init.is_file() {
        return init;
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sysvinit-download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("download dir");
    let out = run_bounded(
        {
            let mut c = Command::new("apt-get");
            c.args(["download", "sysvinit-core"]).current_dir(&work);
            c
        },
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "apt-get download sysvinit-core failed (run apt-get update?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(&work)
        .expect("read download dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    let unpacked = work.join("root");
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .expect("run dpkg -x");
    assert!(status.success(), "dpkg -x {} failed", deb.display());
    // Atomic publish; another test binary may have won the race, which is fine.
    let _ = std::fs::rename(&unpacked, &cache);
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        init.is_file(),
        "{} missing after unpacking sysvinit-core",
        init.display()
    );
    init
}

impl InittabInit {
    /// Starts the init with `ROOT/etc/inittab` and waits (bounded) until it runs.
    pub fn start(flavor: Flavor, root: &Path) -> InittabInit {
        assert!(
            root.join("etc/inittab").is_file(),
            "{}/etc/inittab missing",
            root.display()
        );
        for dir in ["var", "run", ".overlay-work/etc", ".overlay-work/var"] {
            std::fs::create_dir_all(root.join(dir)).expect("create root dirs");
        }
        let console = ConsoleReader::start(&root.join("console"));
        let (init_binary, init_args) = match flavor {
            // "2": the runlevel, in case the inittab has no initdefault line.
            Flavor::Sysv => (sysvinit_binary(), "2"),
            Flavor::Busybox => (super::prereq::which("busybox").expect("busybox"), "init"),
        };
        // Paths as positional parameters, quoted: the build directory may hold a space.
        let script = "set -e; r=$1; init=$2; shift 2; \
             mount -t overlay overlay -o \"lowerdir=/etc,upperdir=$r/etc,workdir=$r/.overlay-work/etc\" /etc; \
             mount -t overlay overlay -o \"lowerdir=/var,upperdir=$r/var,workdir=$r/.overlay-work/var\" /var; \
             mount --bind \"$r/run\" /run; \
             mount --bind \"$r/console\" /dev/console; \
             mount -t proc proc /proc; \
             exec \"$init\" \"$@\"";
        let unshare = Command::new("unshare")
            .args([
                "-m",
                "-p",
                "-f",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(root)
            .arg(&init_binary)
            .arg(init_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(root.join("unshare.log")).expect("log"),
            ))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(root.join("unshare.log"))
                    .expect("log"),
            ))
            .spawn()
            .expect("spawn unshare");
        let unshare_pid = unshare.id() as i32;
        let mut init = InittabInit {
            console,
            unshare: Some(unshare),
            pid: 0,
        };
        let exe = std::fs::canonicalize(&init_binary).unwrap_or(init_binary);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = super::commands::exited(&mut init.unshare) {
                panic!(
                    "{flavor:?} init exited with {status}: {}",
                    std::fs::read_to_string(root.join("unshare.log")).unwrap_or_default()
                );
            }
            if let Some(pid) =
                super::nspawn::find_child_exe(unshare_pid, &exe.display().to_string())
            {
                init.pid = pid;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{flavor:?} init did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        init
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What init wrote to its console so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Every process in the init's pid namespace except init itself: (host pid, cmdline).
    pub fn processes(&self) -> Vec<(i32, String)> {
        let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid)) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut found: Vec<(i32, String)> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| p != self.pid)
            .filter(|&p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns))
            .map(|p| (p, cmdline(p)))
            .filter(|(_, c)| !c.is_empty()) // zombies and kernel threads
            .collect();
        found.sort();
        found
    }

    /// Pids of processes in the namespace whose command line contains `needle`.
    pub fn pids_matching(&self, needle: &str) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|(_, c)| c.contains(needle))
            .map(|(p, _)| p)
            .collect()
    }
}

impl Drop for InittabInit {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        if let Some(mut unshare) = self.unshare.take() {
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
        // The namespace's processes die with their PID 1; wait until the kernel is done.
        let pid = self.pid;
        let gone = super::wait_until(Duration::from_secs(10), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
        if !gone && !std::thread::panicking() {
            panic!("init {pid} survived SIGKILL");
        }
    }
}

pub use crate::testkit::cmdline;

/// A FIFO standing in for /dev/console and the thread that drains it. The FIFO is opened
/// read-write here, so init's open for writing never blocks and never fails.
struct ConsoleReader {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsoleReader {
    fn start(path: &Path) -> ConsoleReader {
        use std::os::fd::AsFd;
        use std::sync::atomic::Ordering;
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo console");
        let fifo = std::fs::File::options()
            .read(true)
            .write(true)
            .open(path)
            .expect("open console fifo");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (text, stop) = (text.clone(), stop.clone());
            std::thread::spawn(move || {
                use std::io::Read;
                let mut fifo = fifo;
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let mut fds = [nix::poll::PollFd::new(
                        fifo.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    if !matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)), Ok(n) if n > 0)
                    {
                        continue;
                    }
                    match fifo.read(&mut buf) {
                        Ok(n) if n > 0 => text
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        ConsoleReader {
            text,
            stop,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

impl Drop for ConsoleReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
