//! What a pid is: alive or not, its name, stopped or a zombie, its argv. Used by
//! `status` and `reconnect` (is the pid in the state file a live tunnel-watchdog?) and by
//! the watchdog (is ssh frozen? is the ssh left by a killed watchdog ours?).
//!
//! Linux reads `/proc/PID/stat` and `/proc/PID/cmdline`; macOS has no `/proc` and asks
//! the kernel with `proc_pidinfo(PROC_PIDTBSDINFO)` and `sysctl(KERN_PROCARGS2)`. The
//! byte layout of the latter is parsed by a pure function, [`parse_procargs2`], tested
//! on every platform. Answers are best effort: a process of another user may be
//! invisible (macOS refuses its argv unless we are root), which reads as "not ours".

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!(
    "tunnelctl: process inspection (src/procinfo) exists for Linux and macOS only; add this OS there"
);

/// The scheduler's view of a process, as far as we care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Running, runnable or sleeping: it will act on a signal.
    Active,
    /// Stopped by a signal (SIGSTOP, SIGTSTP) or a tracer: SIGTERM waits until SIGCONT.
    Stopped,
    /// Exited, not yet reaped by its parent: the pid is taken, the process is gone.
    Zombie,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// The kernel's short name: at most 15 bytes on Linux (`comm`), 16 on macOS
    /// (`pbi_comm`); `tunnel-watchdog` fits both.
    pub name: String,
    pub state: RunState,
}

/// `None` when no such process exists (or it is not visible to us).
pub fn inspect(pid: u32) -> Option<ProcInfo> {
    let pid = valid(pid)?;
    os::inspect(pid)
}

/// The children of `parent`: pid, and whether it is a zombie (exited, not reaped).
#[cfg(target_os = "linux")]
pub fn children(parent: u32) -> Vec<(u32, bool)> {
    os::children(parent)
}

/// The socket inodes `pid` holds (empty when they cannot be read): which of the
/// system's sockets are that process's, for the watchdog's look at ssh's connections.
#[cfg(target_os = "linux")]
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    os::socket_inodes(pid)
}

/// Exists and has not exited (a zombie is gone, even though its pid is taken).
pub fn is_alive(pid: u32) -> bool {
    inspect(pid).is_some_and(|p| p.state != RunState::Zombie)
}

/// Stopped by a signal: it cannot act on SIGTERM until continued.
pub fn is_stopped(pid: u32) -> bool {
    inspect(pid).is_some_and(|p| p.state == RunState::Stopped)
}

/// A live (not zombie) process whose kernel name is exactly `name`.
pub fn is_alive_named(pid: u32, name: &str) -> bool {
    inspect(pid).is_some_and(|p| p.state != RunState::Zombie && p.name == name)
}

/// The process's argument vector (argv[0] first), or `None` when it cannot be read: no
/// such process, a zombie, or (macOS) another user's process.
pub fn argv(pid: u32) -> Option<Vec<String>> {
    let pid = valid(pid)?;
    os::argv(pid)
}

/// pid 0 means "none" in the state file, and kernel pids fit in an i32.
fn valid(pid: u32) -> Option<i32> {
    i32::try_from(pid).ok().filter(|&p| p > 0)
}

/// The argv inside `sysctl(KERN_PROCARGS2)` output: a native-endian `int argc`, the
/// executable's path NUL-terminated, NUL padding, then `argc` NUL-terminated arguments
/// (the environment and Apple's own strings follow; not read). `None` when the bytes
/// are too short to hold what they announce, or announce a negative count.
#[cfg(any(target_os = "macos", test))]
pub fn parse_procargs2(bytes: &[u8]) -> Option<Vec<String>> {
    let argc = i32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = &bytes[4..];
    // The executable path, then the padding up to the first argument.
    let path_end = rest.iter().position(|&b| b == 0)?;
    let mut at = path_end;
    while rest.get(at) == Some(&0) {
        at += 1;
    }
    let mut args = Vec::with_capacity(argc.min(256));
    for _ in 0..argc {
        let tail = rest.get(at..)?;
        let len = tail.iter().position(|&b| b == 0)?;
        args.push(String::from_utf8_lossy(&tail[..len]).into_owned());
        at += len + 1;
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KERN_PROCARGS2 bytes as XNU lays them out (bsd/kern/kern_sysctl.c,
    /// sysctl_procargsx): argc, exec path, NUL padding to pointer alignment, argv, env,
    /// then Apple's strings, the rest of the buffer zeroed.
    fn procargs2(argc: i32, exec: &str, args: &[&str], env: &[&str]) -> Vec<u8> {
        let mut b = argc.to_ne_bytes().to_vec();
        b.extend_from_slice(exec.as_bytes());
        b.push(0);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        for s in args.iter().chain(env).chain(&["ptr_munge=", "main_stack="]) {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b.resize(b.len() + 64, 0);
        b
    }

    #[test]
    fn parses_kern_procargs2_bytes() {
        let args = [
            "ssh",
            "-o",
            "ControlPath=\"/Users/a b/Library/Application Support/tunnelctl/a%%db/ctl\"",
            "",
            "-N",
            "host",
        ];
        let bytes = procargs2(
            6,
            "/usr/bin/ssh",
            &args,
            &["PATH=/usr/bin", "HOME=/Users/a b"],
        );
        assert_eq!(parse_procargs2(&bytes).unwrap(), args);
        // The exec path ends exactly at an alignment boundary: no padding beyond its NUL.
        let bytes = procargs2(1, "/bin/sshd", &["sshd"], &[]);
        assert_eq!(parse_procargs2(&bytes).unwrap(), ["sshd"]);
        assert_eq!(
            parse_procargs2(&procargs2(0, "/x", &[], &["A=1"])),
            Some(vec![])
        );
    }

    #[test]
    fn refuses_truncated_or_nonsensical_procargs2() {
        assert_eq!(parse_procargs2(&[]), None);
        assert_eq!(parse_procargs2(&[1, 0]), None);
        assert_eq!(parse_procargs2(&procargs2(-1, "/x", &["a"], &[])), None);
        // Announces three arguments, holds one and is cut in the middle of the next.
        let mut b = 3i32.to_ne_bytes().to_vec();
        b.extend_from_slice(b"/usr/bin/ssh\0\0\0\0ssh\0-o Contr");
        assert_eq!(parse_procargs2(&b), None);
        // No NUL after the exec path.
        let mut b = 1i32.to_ne_bytes().to_vec();
        b.extend_from_slice(b"/usr/bin/ssh");
        assert_eq!(parse_procargs2(&b), None);
    }

    #[test]
    fn pid_zero_and_out_of_range_are_nobody() {
        assert_eq!(inspect(0), None);
        assert_eq!(inspect(u32::MAX), None);
        assert_eq!(argv(0), None);
        assert!(!is_alive(0));
    }

    /// A real child through its life: alive with its argv, stopped, continued, a
    /// zombie, gone.
    #[cfg(target_os = "linux")]
    #[test]
    fn follows_a_real_child() {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        use std::time::{Duration, Instant};
        let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cond() {
                assert!(Instant::now() < deadline, "not {what} within 5 s");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        // cat reads its stdin (a pipe we hold) before it would open "a b%%c".
        let mut child = std::process::Command::new("cat")
            .args(["-", "a b%%c"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cat: {e}"));
        let pid = child.id();
        let result = std::panic::catch_unwind(|| {
            // spawn returns once exec is past its point of no return, where the kernel
            // has set the name but not yet the new argv (cmdline reads empty briefly).
            wait_for("exec'd", &|| argv(pid).is_some());
            let info = inspect(pid).unwrap();
            assert_eq!(info.name, "cat");
            assert_eq!(info.state, RunState::Active);
            assert!(is_alive(pid) && is_alive_named(pid, "cat"));
            assert!(!is_alive_named(pid, "tunnel-watchdog"));
            assert_eq!(argv(pid).unwrap(), ["cat", "-", "a b%%c"]);
            kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
            wait_for("stopped", &|| is_stopped(pid));
            assert!(is_alive(pid), "a stopped process is alive");
            kill(Pid::from_raw(pid as i32), Signal::SIGCONT).unwrap();
            wait_for("continued", &|| !is_stopped(pid));
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
            // Not reaped yet: a zombie holds the pid.
            wait_for("a zombie", &|| {
                inspect(pid).is_some_and(|p| p.state == RunState::Zombie)
            });
            assert!(!is_alive(pid) && !is_alive_named(pid, "cat"));
            assert_eq!(argv(pid), None, "a zombie has no argv");
        });
        let _ = child.kill();
        let _ = child.wait();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        assert_eq!(inspect(pid), None, "reaped: gone");
        assert!(!is_alive(pid));
    }
}
