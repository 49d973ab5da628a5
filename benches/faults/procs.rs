//! Processes: run a command with a deadline, read /proc, send signals.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs `cmd` to completion within `timeout` (killed after it); Ok(stdout) on exit 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    run_with_stdin(cmd, "", timeout)
}

pub fn run_with_stdin(cmd: &mut Command, stdin: &str, timeout: Duration) -> Result<String, String> {
    let what = format!("{:?}", cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    // Outputs are small (a few KiB at most); read them in threads so a full pipe cannot block the child.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, timeout);
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what} failed ({s}): {}", stderr.trim())),
        None => Err(format!("{what} did not finish within {timeout:?}")),
    }
}

/// Waits for a child up to `timeout`; kills it after that. None = timed out.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Inode of a process's network namespace.
pub fn netns_of(pid: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

pub fn pids_in_netns(inode: u64) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| netns_of(p) == Some(inode) && !is_zombie(p))
        .collect()
}

/// Fields of /proc/PID/stat after the command name.
#[derive(Clone, Debug, Default)]
pub struct Stat {
    pub state: char,
    /// cutime + cstime of waited-for children, clock ticks
    pub child_cpu_ticks: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N-3].
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(Stat {
        state: f.first()?.chars().next()?,
        child_cpu_ticks: n(16) + n(17),
    })
}

/// Time the process has spent on a CPU, from /proc/PID/schedstat (nanoseconds, where
/// utime+stime count 10 ms ticks: too coarse for a few hundredths of a second).
pub fn oncpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn is_zombie(pid: i32) -> bool {
    stat(pid).is_none_or(|s| s.state == 'Z' || s.state == 'X')
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub use crate::testkit::cmdline;

/// VmRSS in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Socket inodes a process holds.
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let mut out = HashSet::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        if let Ok(link) = std::fs::read_link(e.path())
            && let Some(ino) = link
                .to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
            && let Ok(ino) = ino.parse()
        {
            out.insert(ino);
        }
    }
    out
}

pub fn signal(pid: i32, sig: Signal) -> bool {
    pid > 1 && kill(Pid::from_raw(pid), sig).is_ok()
}

/// SIGKILL (works on stopped processes too), then SIGCONT for any that were stopped.
pub fn kill_all(pids: &[i32]) {
    for &p in pids {
        signal(p, Signal::SIGKILL);
        signal(p, Signal::SIGCONT);
    }
}

/// All pids listed in a cgroup directory and below it.
pub fn cgroup_pids(dir: &std::path::Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut budget = 10_000; // directories visited; a unit tree has a handful
    while let Some(d) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
    }
    out.retain(|&p| !is_zombie(p));
    out
}
