//! The ssh child: its command line (control-socket options added), never outliving the
//! watchdog (`never_outlive_us`), a clean environment, stderr relogged line by line and
//! classified (read by the main loop from a non-blocking pipe), and a teardown that
//! never waits forever (SIGTERM, SIGKILL after a grace).

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::log;
use super::ssh_errors::{SshError, error_of};
use crate::ssh_stderr::{Reading, Said};

/// sun_path holds 108 bytes on Linux (104 on BSDs); ssh first binds `PATH.XXXXXXXXXXXXXXXX`
/// (17 more bytes) and then links it into place, so the usable length is smaller.
pub const MAX_CONTROL_PATH: usize = 104 - 17 - 1;

/// Environment that belongs to us, not to ssh (sd_notify would accept its messages
/// under NotifyAccess=all, and WATCHDOG_* would confuse any sd_notify-aware helper).
pub const PRIVATE_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The ssh argv with the control-socket options right after the program name.
pub fn with_control_master(
    ssh: &[String],
    control_path: &Path,
    keepalive_count: Option<u32>,
) -> Vec<String> {
    let mut argv = vec![ssh[0].clone()];
    argv.extend([
        "-o".to_string(),
        "ControlMaster=yes".to_string(),
        "-o".to_string(),
        control_path_option(control_path),
        "-o".to_string(),
        "ControlPersist=no".to_string(),
    ]);
    if let Some(count) = keepalive_count {
        argv.extend(["-o".to_string(), format!("ServerAliveCountMax={count}")]);
    }
    argv.extend(ssh[1..].iter().cloned());
    argv
}

/// The argv with `-o ServerAliveCountMax=K` first (ssh keeps the first value it reads)
/// when ssh's own keepalive would give up sooner than `patience`: under the watchdog the
/// probes decide when the server is dead, and they tell a saturated uplink (the server
/// still acknowledging, every keepalive queued behind megabytes) from a dead server,
/// which ssh's count cannot: it would cut the upload. ssh's interval stays, for NAT and
/// the server's ClientAlive. `None` when ssh's own count already lasts (or no
/// `ServerAliveInterval` is set: ssh then sends none).
///
/// Only the command line is read (every `-o` form ssh accepts, the first value of a
/// keyword winning as in ssh), not ssh_config: tunnelctl's services always name both
/// keywords with `-o`, which ssh puts before any config file.
pub fn keepalive_count_for(ssh: &[String], patience: Duration) -> Option<u32> {
    let (interval, count) = keepalive_options(ssh)?;
    let interval = interval.filter(|&i| i > 0)?;
    let needed = patience.as_secs().div_ceil(interval).max(1);
    (count.unwrap_or(3) < needed).then(|| u32::try_from(needed).unwrap_or(u32::MAX))
}

/// ssh's `ServerAliveInterval` from the command line (read as for
/// [`keepalive_count_for`]); None when it is not set there, or 0 (no keepalive).
pub fn keepalive_interval(ssh: &[String]) -> Option<Duration> {
    let (interval, _) = keepalive_options(ssh)?;
    interval.filter(|&i| i > 0).map(Duration::from_secs)
}

/// The first `ServerAliveInterval` (seconds) and `ServerAliveCountMax` among the `-o`
/// options; None when the arguments cannot be read.
fn keepalive_options(ssh: &[String]) -> Option<(Option<u64>, Option<u64>)> {
    let (mut interval, mut count) = (None, None);
    for (flag, line) in super::args::ssh_option_values(ssh.get(1..)?).ok()?.values {
        let Some((keyword, value)) = (flag == 'o').then(|| ssh_option_line(&line)).flatten() else {
            continue;
        };
        match keyword.as_str() {
            "serveraliveinterval" if interval.is_none() => interval = Some(ssh_seconds(&value)?),
            "serveralivecountmax" if count.is_none() => count = Some(ssh_integer(&value)?),
            _ => {}
        }
    }
    Some((interval, count))
}

/// One `-o` argument as ssh's config-line parser splits it: the keyword (lower-cased;
/// ssh's keywords are case-insensitive), ended by whitespace, `=` or a quote, then
/// whitespace and at most one `=`, then the first value word (`ssh_path::config_words`).
/// `None` for a comment, no value, or an unclosed quote.
fn ssh_option_line(line: &str) -> Option<(String, String)> {
    let line = line.trim_start_matches([' ', '\t']);
    let (keyword, rest) = if let Some(quoted) = line.strip_prefix('"') {
        quoted.split_once('"')?
    } else {
        let end = line.find([' ', '\t', '=', '"']).unwrap_or(line.len());
        line.split_at(end)
    };
    if keyword.is_empty() || keyword.starts_with('#') {
        return None;
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    let value = crate::ssh_path::config_words(rest)?
        .words
        .into_iter()
        .next()?;
    Some((keyword.to_ascii_lowercase(), value))
}

/// A time as ssh's `convtime` reads it (`ServerAliveInterval`): seconds, or numbers each
/// with a unit `s`, `m`, `h`, `d`, `w` (either case), summed: `90`, `1m30s`.
fn ssh_seconds(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.strip_prefix('+').unwrap_or(rest);
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        let number: u64 = digits[..end].parse().ok()?;
        let mut tail = digits[end..].chars();
        let unit = match tail.next() {
            None => 1,
            Some('s' | 'S') => 1,
            Some('m' | 'M') => 60,
            Some('h' | 'H') => 3600,
            Some('d' | 'D') => 86_400,
            Some('w' | 'W') => 604_800,
            Some(_) => return None,
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
        rest = tail.as_str();
    }
    (total <= i32::MAX as u64 && !text.is_empty()).then_some(total)
}

/// A count as ssh reads it (`ServerAliveCountMax`): a decimal number up to `INT_MAX`,
/// leading zeros and a `+` allowed.
fn ssh_integer(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    let n: u64 = digits.parse().ok().filter(|_| !digits.starts_with('+'))?;
    (n <= i32::MAX as u64).then_some(n)
}

/// `ControlPath=PATH` as ssh reads back exactly PATH (spaces quoted, `%` as `%%`); also
/// what identifies our ssh in its argv.
pub fn control_path_option(control_path: &Path) -> String {
    crate::ssh_path::path_option("ControlPath", &control_path.display().to_string())
}

/// `STATE_DIR/ctl`, or when that is too long for a unix socket, `BASE/tunnelctl-UID/HASH`
/// (the directory is created 0700 and must be ours, as must every directory above it;
/// see `make_private_dir`). BASE is root's `/run` (`/var/run` where there is no `/run`),
/// where nobody else can make that directory first; else `$XDG_RUNTIME_DIR`, else
/// `/tmp`, where another user can, which is then refused naming the way out.
pub fn control_path(state_dir: &Path, runtime_dir: Option<&Path>) -> Result<PathBuf, String> {
    let direct = state_dir.join("ctl");
    if direct.as_os_str().len() <= MAX_CONTROL_PATH {
        return Ok(direct);
    }
    let uid = nix::unistd::getuid();
    let base = fallback_base(uid.is_root(), runtime_dir, Path::new("/run").is_dir());
    let dir = base.join(format!("tunnelctl-{uid}"));
    make_private_dir(&dir).map_err(|e| {
        format!(
            "{} is {} bytes, too long for a unix socket, so the socket goes in {}; but {e}. \
             Fix: a --state-dir of at most {} bytes, or set XDG_RUNTIME_DIR, or have root remove {}",
            direct.display(),
            direct.as_os_str().len(),
            dir.display(),
            MAX_CONTROL_PATH - "/ctl".len(),
            dir.display()
        )
    })?;
    Ok(dir.join(format!(
        "{:016x}",
        fnv1a(state_dir.as_os_str().as_encoded_bytes())
    )))
}

/// Where the control socket's fallback directory goes (see `control_path`).
fn fallback_base(root: bool, runtime_dir: Option<&Path>, have_run: bool) -> PathBuf {
    match (root, runtime_dir) {
        (true, _) if have_run => PathBuf::from("/run"),
        (true, _) => PathBuf::from("/var/run"),
        (false, Some(dir)) => dir.to_path_buf(),
        (false, None) => PathBuf::from("/tmp"),
    }
}

/// Opens the private directory `dir`, creating what is missing mode 0700, and checks
/// every component from `/` down on its descriptor (safe_fs, `Trust::Private`): each is
/// owned by us or root and writable by nobody else (a root-owned sticky one such as /tmp
/// aside), so another user cannot pre-create `/tmp/tunnelctl-UID` or swap a component
/// for a link. A directory that exists is never chmodded: one that is too open is
/// refused with the fix. A link on the way is followed only when root or we made it
/// (DynamicUser's StateDirectory= is a root-owned link into /var/lib/private).
pub fn make_private_dir(dir: &Path) -> Result<crate::safe_fs::Dir, String> {
    let absolute = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .join(dir)
    };
    crate::safe_fs::open_abs(&absolute, Some(0o700), crate::safe_fs::Trust::Private)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What ssh said on stderr that explains a failure.
#[derive(Default)]
pub struct StderrReport {
    pub errors: Vec<SshError>,
    pub last_line: String,
    /// What follows `open failed: ` in ssh's `channel N: open failed: …` lines (the
    /// server's reason, e.g. `connect failed: Connection refused`), until taken: tells
    /// a `-L` target that refuses from a server that forbids the forward. Bounded.
    pub open_failures: Vec<String>,
    /// Channel lines logged (`channel N: open failed: …`, `connect_to … failed.`): a
    /// target that stays down makes ssh say the same every probe round, logged once
    /// until the session forgets them (every target answers again). Bounded.
    pub channel_lines: Vec<String>,
}

/// A line longer than this is logged in pieces, so a runaway stderr cannot grow memory.
const MAX_LINE: usize = 4096;

/// How often `terminate` repeats SIGTERM while ssh has not exited.
const SIGTERM_AGAIN: Duration = Duration::from_millis(200);

pub struct SshChild {
    child: Child,
    pub pid: u32,
    pub report: StderrReport,
    /// ssh's stderr, non-blocking; `None` once it reached end of file. Read by the main
    /// loop (it is in the loop's poll set): no reader thread, no thread stack.
    stderr: Option<ChildStderr>,
    partial: Vec<u8>,
    /// What the lines so far said: the next line's meaning may depend on them.
    reading: Reading,
    exited: Option<ExitStatus>,
    /// The loop's poll found stderr readable and it has not been read since.
    stderr_unread: bool,
    /// A SIGCHLD came and nobody has looked whether it was ssh's.
    exit_unchecked: bool,
    /// `-R` ports the watchdog asks for through the control socket: ssh logs each
    /// refusal, which the watchdog reports itself (once, not twice a second).
    pub asked_ports: Vec<u16>,
}

impl SshChild {
    pub fn spawn(argv: &[String]) -> Result<SshChild, String> {
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for key in PRIVATE_ENV {
            command.env_remove(key);
        }
        never_outlive_us(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        set_nonblocking(&stderr).map_err(|e| format!("ssh's stderr pipe: {e}"))?;
        Ok(SshChild {
            child,
            pid,
            report: StderrReport::default(),
            stderr: Some(stderr),
            partial: Vec::new(),
            reading: Reading::default(),
            asked_ports: Vec::new(),
            exited: None,
            // A fresh child: look once before anything is known.
            stderr_unread: true,
            exit_unchecked: true,
        })
    }

    /// ssh's stderr for the caller's poll set, while it is open.
    pub fn stderr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.stderr.as_ref().map(|s| s.as_fd())
    }

    /// The event loop's poll found stderr readable: the next [`SshChild::news`] reads
    /// it. The loop learns this and a SIGCHLD from its one poll, so an idle wake-up
    /// costs no read of an empty pipe and no wait for a child that is running.
    pub fn stderr_readable(&mut self) {
        self.stderr_unread = true;
    }

    /// A SIGCHLD came: the next [`SshChild::news`] looks whether ssh exited.
    pub fn child_signalled(&mut self) {
        self.exit_unchecked = true;
    }

    /// Reads stderr if the loop found it readable, and ssh's exit if a SIGCHLD came
    /// (or it was seen before).
    pub fn news(&mut self) -> Option<ExitStatus> {
        if std::mem::take(&mut self.stderr_unread) {
            self.drain_stderr();
        }
        if std::mem::take(&mut self.exit_unchecked) {
            self.try_exit();
        }
        self.exited
    }

    /// Reads what ssh has written to stderr so far (never blocks) and relogs whole lines.
    pub fn drain_stderr(&mut self) {
        let mut buf = [0u8; 1024];
        // Bounded: the pipe holds at most 64 KiB; a chatty ssh gets the rest next time.
        for _ in 0..64 {
            let Some(stderr) = self.stderr.as_mut() else {
                return;
            };
            match stderr.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    let rest = std::mem::take(&mut self.partial);
                    self.line(&rest);
                    return;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        self.line(&line);
                    }
                    if self.partial.len() > MAX_LINE {
                        let long = std::mem::take(&mut self.partial);
                        self.line(&long);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: nothing more for now
            }
        }
    }

    fn line(&mut self, raw: &[u8]) {
        let line = String::from_utf8_lossy(raw).trim_end().to_string();
        // ssh frames its host-key warning with lines of `@`: noise in a log.
        if line.is_empty() || line.chars().all(|c| c == '@') {
            return;
        }
        let r = &mut self.report;
        let said = self.reading.read(&line);
        if let Some(Said::OpenFailed { reason }) = &said
            && r.open_failures.len() < 16
        {
            r.open_failures.push(reason.to_string());
        }
        match said.as_ref().and_then(error_of) {
            Some(SshError::RemotePortRefused { port }) if self.asked_ports.contains(&port) => {}
            Some(error) => {
                log::error(format_args!("ssh: {line} — {}", error.explain()));
                if !r.errors.contains(&error) {
                    r.errors.push(error);
                }
            }
            None => {
                let channel = matches!(said, Some(Said::OpenFailed { .. }))
                    || (line.starts_with("connect_to ") && line.ends_with("failed."));
                if channel {
                    // `channel 3: …` and `channel 4: …` are the same news.
                    let news = match line.strip_prefix("channel ") {
                        Some(rest) => rest.split_once(": ").map_or(rest, |(_, r)| r),
                        None => line.as_str(),
                    };
                    if !r.channel_lines.iter().any(|l| l == news) {
                        if r.channel_lines.len() >= 16 {
                            r.channel_lines.remove(0);
                        }
                        r.channel_lines.push(news.to_string());
                        log::warn(format_args!("ssh: {line}"));
                    }
                } else {
                    log::warn(format_args!("ssh: {line}"));
                }
            }
        }
        r.last_line = line;
    }

    /// The exit status if ssh has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Reads stderr until end of file or `timeout`, so the report is complete (ssh has
    /// exited, but something it started may still hold the pipe).
    pub fn settle_stderr(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Bounded by the deadline.
        while let Some(fd) = self.stderr_fd() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let _ = poll(&mut fds, crate::watchdog::poll_timeout(left));
            self.drain_stderr();
        }
        self.drain_stderr();
    }

    /// SIGTERM to ssh (its group on Linux), SIGKILL after `grace` (a SIGSTOPped ssh
    /// ignores SIGTERM until continued, but not SIGKILL), then reap. Never waits longer than `grace` + 2 s.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        // A stopped ssh cannot act on SIGTERM: waiting the grace would only delay.
        if self.try_exit().is_none() && !crate::procinfo::is_stopped(self.pid) {
            // Repeated: a SIGTERM that lands just before ssh goes to sleep in poll() is
            // lost until its next wake-up (seen here: still in poll, 297 s timeout, 2 s
            // after the signal, with a frozen server sending nothing to wake it).
            let deadline = Instant::now() + grace;
            let mut next_term = Instant::now();
            while self.try_exit().is_none() && Instant::now() < deadline {
                if Instant::now() >= next_term {
                    let _ = signal_ssh(self.pid, Signal::SIGTERM);
                    next_term = Instant::now() + SIGTERM_AGAIN;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The leader may be gone while the group (ProxyCommand) is not; KILL the rest too.
        let _ = signal_ssh(self.pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.try_exit().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.settle_stderr(Duration::from_millis(500));
        self.exited
    }
}

fn set_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// Close-on-exec and non-blocking, the portable way (no `pipe2`, no `SOCK_CLOEXEC`).
pub fn set_cloexec_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    set_nonblocking(fd)
}

/// No ssh outlives its watchdog, even one killed by SIGKILL before it could record ssh's
/// pid in the state file (a full disk), which the next watchdog would need to find it.
///
/// Linux: ssh gets its own process group (SIGTERM/SIGKILL from `terminate` reach ssh and
/// anything it started, such as a ProxyCommand; a terminal's Ctrl-C goes to us, who shut
/// ssh down in order), and the kernel SIGKILLs it when we die (`PR_SET_PDEATHSIG`). That
/// signal follows the death of the forking *thread*; the watchdog has only one, so it
/// means the process. A watchdog that died between fork and prctl would leave the
/// request unanswered for good, so the child checks that its parent is still the one
/// that forked it.
#[cfg(target_os = "linux")]
fn never_outlive_us(command: &mut Command) {
    use nix::libc;
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: runs in the forked child before exec: only async-signal-safe calls
    // (prctl, getppid), no allocation, no locks.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "the watchdog exited while starting ssh",
                ));
            }
            Ok(())
        });
    }
}

/// macOS has no parent-death signal. ssh stays in the watchdog's process group, which
/// launchd made for the job: with `AbandonProcessGroup` false (as rendered) launchd
/// kills that whole group when the job exits, SIGKILL included. (A watchdog run by hand
/// and SIGKILLed leaves ssh to the next watchdog's leftover check.)
#[cfg(not(target_os = "linux"))]
fn never_outlive_us(_command: &mut Command) {}

/// `signal` to ssh: on Linux to its own process group (ssh and what it started), elsewhere
/// to ssh alone, as it shares the watchdog's group there (see `never_outlive_us`; ssh
/// itself ends a ProxyCommand when it exits).
pub fn signal_ssh(pid: u32, signal: Signal) -> nix::Result<()> {
    let pid = Pid::from_raw(i32::try_from(pid).map_err(|_| nix::errno::Errno::ESRCH)?);
    if cfg!(target_os = "linux") {
        killpg(pid, signal)
    } else {
        kill(pid, signal)
    }
}

impl Drop for SshChild {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.terminate(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keepalive_lasts_as_long_as_the_watchdogs_patience() {
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let two_min = Duration::from_secs(120);
        // 5 s × 2 gives up after 15 s: raised to 24 (120 s / 5 s).
        let ssh = words("ssh -o ServerAliveInterval=5 -o ServerAliveCountMax=2 -N h");
        assert_eq!(keepalive_count_for(&ssh, two_min), Some(24));
        // An uneven division rounds up; the default count is 3.
        let ssh = words("ssh -o serveraliveinterval=7 h");
        assert_eq!(keepalive_count_for(&ssh, two_min), Some(18));
        // Already patient enough (exactly, and more), or no keepalive at all: as it is.
        let ssh = words("ssh -o ServerAliveInterval=5 -o ServerAliveCountMax=24 h");
        assert_eq!(keepalive_count_for(&ssh, two_min), None);
        let ssh = words("ssh -o ServerAliveInterval=60 -o ServerAliveCountMax=3 h");
        assert_eq!(keepalive_count_for(&ssh, two_min), None);
        assert_eq!(keepalive_count_for(&words("ssh -N h"), two_min), None);
        let ssh = words("ssh -o ServerAliveInterval=0 h");
        assert_eq!(keepalive_count_for(&ssh, two_min), None);
        // Placed first, where ssh takes it over the tunnel's own later value.
        let ssh = words("ssh -o ServerAliveInterval=5 -o ServerAliveCountMax=2 h");
        let argv = with_control_master(&ssh, Path::new("/run/x/ctl"), Some(24));
        let at = argv
            .iter()
            .position(|w| w == "ServerAliveCountMax=24")
            .unwrap();
        let theirs = argv
            .iter()
            .position(|w| w == "ServerAliveCountMax=2")
            .unwrap();
        assert!(at < theirs, "{argv:?}");
    }

    /// Each form ssh itself accepts for `-o` (checked against `ssh -G` with OpenSSH 9.2).
    #[test]
    fn the_keepalive_floor_reads_every_form_of_o() {
        let two_min = Duration::from_secs(120);
        let floor = |args: &[&str]| {
            let argv: Vec<String> = ["ssh"].iter().chain(args).map(|s| s.to_string()).collect();
            keepalive_count_for(&argv, two_min)
        };
        // 5 s, the default count 3: raised to 24.
        for form in [
            &["-o", "ServerAliveInterval=5", "h"][..],
            &["-oServerAliveInterval=5", "h"],
            &["-o", "ServerAliveInterval 5", "h"],
            &["-o", "ServerAliveInterval\t5", "h"],
            &["-o", "ServerAliveInterval = 5", "h"],
            &["-o", "  serveraliveinterval=5", "h"],
            &["-o", "SERVERALIVEINTERVAL=\"5\"", "h"],
            &["-o", "\"ServerAliveInterval\" 5", "h"],
            &["-o", "ServerAliveInterval=5s", "h"],
            &["-No", "ServerAliveInterval=5", "h"],
            &["-NToServerAliveInterval=5", "h"],
            &["-i", "-o", "h", "-o", "ServerAliveInterval=5"],
            &["h", "-o", "ServerAliveInterval=5"],
        ] {
            assert_eq!(floor(form), Some(24), "{form:?}");
        }
        // The count in the same forms.
        for form in [
            &["-oServerAliveInterval=5", "-oserverAliveCountMax=2", "h"][..],
            &[
                "-o",
                "ServerAliveInterval 5",
                "-o",
                "ServerAliveCountMax 2",
                "h",
            ],
            &[
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax = +02",
                "h",
            ],
        ] {
            assert_eq!(floor(form), Some(24), "{form:?}");
        }
        for form in [
            &[
                "-o",
                "ServerAliveInterval 5",
                "-o",
                "ServerAliveCountMax 24",
                "h",
            ][..],
            &["-oServerAliveInterval=5", "-oSERVERALIVECOUNTMAX=30", "h"],
        ] {
            assert_eq!(floor(form), None, "patient enough already: {form:?}");
        }
        // Times as ssh reads them: 1m = 60 s, 2 rounds needed > 1 given.
        assert_eq!(
            floor(&[
                "-o",
                "ServerAliveInterval=1m",
                "-o",
                "ServerAliveCountMax=1",
                "h"
            ]),
            Some(2)
        );
        assert_eq!(
            floor(&[
                "-o",
                "ServerAliveInterval 1m30s",
                "-o",
                "ServerAliveCountMax 1",
                "h"
            ]),
            Some(2)
        );
        // The first value of a keyword wins, as in ssh.
        assert_eq!(
            floor(&[
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveInterval=60",
                "h"
            ]),
            Some(24)
        );
        assert_eq!(
            floor(&[
                "-o",
                "ServerAliveInterval=60",
                "-o",
                "ServerAliveInterval=5",
                "h"
            ]),
            None
        );
        // Not options: the value of another flag, a remote command's words, after `--`.
        assert_eq!(floor(&["-i", "-oServerAliveInterval=5", "h"]), None);
        assert_eq!(floor(&["h", "cmd", "-o", "ServerAliveInterval=5"]), None);
        assert_eq!(floor(&["h", "--", "-o", "ServerAliveInterval=5"]), None);
        assert_eq!(floor(&["--", "h", "-o", "ServerAliveInterval=5"]), None);
        // Values ssh refuses (it would not start): no floor is made up.
        assert_eq!(floor(&["-o", "ServerAliveInterval=5x", "h"]), None);
        assert_eq!(floor(&["-o", "ServerAliveInterval=\"5", "h"]), None);
        assert_eq!(
            floor(&[
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=0x10",
                "h"
            ]),
            None
        );
        assert_eq!(floor(&["-o"]), None);
    }

    #[test]
    fn ssh_option_words_split_as_ssh_does() {
        let line = |s| ssh_option_line(s).map(|(k, v)| format!("{k}|{v}"));
        assert_eq!(line("User \"a b\"").as_deref(), Some("user|a b"));
        assert_eq!(line("User a\\ b").as_deref(), Some("user|a b"));
        assert_eq!(line("User 'it''s'").as_deref(), Some("user|its"));
        assert_eq!(line("User="), None);
        assert_eq!(line("#User a"), None);
        assert_eq!(line(""), None);
        assert_eq!(ssh_seconds("1h2m3S"), Some(3723));
        assert_eq!(ssh_seconds("1W"), Some(604_800));
        assert_eq!(ssh_seconds(""), None);
        assert_eq!(ssh_seconds("m"), None);
        assert_eq!(ssh_seconds("99999999999"), None);
        assert_eq!(ssh_integer("007"), Some(7));
        assert_eq!(ssh_integer("++7"), None);
        assert_eq!(ssh_integer("-1"), None);
    }

    #[test]
    fn adds_control_options_after_the_program() {
        let ssh: Vec<String> = ["ssh", "-N", "host"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let argv = with_control_master(&ssh, Path::new("/run/t/ctl"), None);
        assert_eq!(argv[0], "ssh");
        assert_eq!(
            &argv[1..7],
            [
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPath=/run/t/ctl",
                "-o",
                "ControlPersist=no"
            ]
        );
        assert_eq!(&argv[7..], ["-N", "host"]);
        let argv = with_control_master(
            &ssh,
            Path::new("/Users/a/Library/Application Support/t/a%db/ctl"),
            None,
        );
        assert_eq!(
            argv[4],
            "ControlPath=\"/Users/a/Library/Application Support/t/a%%db/ctl\""
        );
    }

    #[test]
    fn long_state_dirs_get_a_short_private_control_path() {
        let base = tempfile::tempdir().unwrap();
        assert_eq!(
            control_path(Path::new("/run/tunnelctl/x"), None).unwrap(),
            PathBuf::from("/run/tunnelctl/x/ctl")
        );
        let long = PathBuf::from(format!("/var/lib/tunnelctl/{}", "n".repeat(100)));
        let path = control_path(&long, Some(base.path())).unwrap();
        assert!(
            path.as_os_str().len() <= MAX_CONTROL_PATH,
            "{}",
            path.display()
        );
        assert_eq!(
            path,
            control_path(&long, Some(base.path())).unwrap(),
            "stable"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
