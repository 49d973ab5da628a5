//! tunnel-watchdog against a real sshd on 127.0.0.1 and a real ssh client: every way a
//! tunnel hangs, the sd_notify conversation, back-off and shutdown. Each test prints how
//! long detection took (`eprintln!`, see `cargo test -- --nocapture`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::child::KillOnDrop;
use common::sshd::{Sshd, free_port, state_of};
use common::target::TcpTarget;
use common::watchdog_cmd::{
    emulated, remote_forward_ssh_args, state_log_and_ssh, watchdog_command,
};
use common::{NotifyReceiver, wait_until};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

const BANNER: &[u8] = b"SSH-2.0-target\r\n";

/// A running watchdog with its own state dir and log file; killed (with its ssh) on drop.
struct Wd {
    child: Child,
    dir: PathBuf,
    started: Instant,
}

struct WdSpec<'a> {
    ssh: Vec<String>,
    dir: PathBuf,
    options: Vec<String>,
    forwards: Vec<String>,
    notify: Option<&'a NotifyReceiver>,
    env: Vec<(&'a str, String)>,
}

impl<'a> WdSpec<'a> {
    fn new(sshd: &Sshd, dir: &Path) -> Self {
        WdSpec {
            ssh: sshd.ssh_base_args(),
            dir: dir.to_path_buf(),
            options: [
                "--probe-interval",
                "1s",
                "--probe-timeout",
                "1s",
                "--probe-failures",
                "2",
                "--backoff-initial",
                "1s",
                "--backoff-max",
                "4s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            forwards: Vec::new(),
            notify: None,
            env: Vec::new(),
        }
    }
    fn forward(mut self, flag: &str, spec: String) -> Self {
        self.forwards.push(flag.into());
        self.forwards.push(spec);
        self
    }
    fn spawn(&self) -> Wd {
        // TUNNEL_WATCHDOG_BIN lets the same tests measure a release build, or (with an
        // emulator as the wrapper) a router's.
        let mut cmd = watchdog_command();
        cmd.args(&self.options).arg("--name").arg("test");
        state_log_and_ssh(
            &mut cmd,
            &self.dir.join("state"),
            &self.dir.join("log"),
            &self.ssh,
        )
        .arg("-N")
        .args(&self.forwards)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM");
        if let Some(n) = self.notify {
            cmd.env("NOTIFY_SOCKET", n.env_value());
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Wd {
            child: cmd.spawn().expect("run tunnel-watchdog"),
            dir: self.dir.clone(),
            started: Instant::now(),
        }
    }
}

impl Wd {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
    fn state(&self) -> String {
        std::fs::read_to_string(self.dir.join("state/state")).unwrap_or_default()
    }
    fn state_value(&self, key: &str) -> Option<String> {
        self.state()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    }
    fn ssh_pid(&self) -> Option<i32> {
        self.state_value("ssh_pid")?
            .parse()
            .ok()
            .filter(|&p| p != 0)
    }
    /// Waits (bounded) for the exit code.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        common::child::wait_exit(&mut self.child, timeout)
    }
    fn wait_up(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.state_value("state").as_deref() == Some("up")
        })
    }
    /// [`Wd::wait_up`] or fail with the log.
    #[track_caller]
    fn expect_up(&self, timeout: Duration) {
        assert!(self.wait_up(timeout), "not up; log:\n{}", self.log());
    }
    /// Freezes process `pid` (SIGSTOP) and waits up to `timeout` for the watchdog to
    /// exit: its exit code, and how long after the freeze it came.
    fn exit_after_freezing(&mut self, pid: i32, timeout: Duration) -> (Option<i32>, Duration) {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        let frozen = Instant::now();
        let code = self.wait_exit(timeout);
        (code, frozen.elapsed())
    }
    /// The first READY=1 on `notify` (within 15 s), or fail with the log.
    #[track_caller]
    fn expect_ready(&self, notify: &NotifyReceiver) -> common::Notification {
        notify
            .wait_for(Duration::from_secs(15), "READY=1")
            .unwrap_or_else(|| panic!("no READY=1; log:\n{}", self.log()))
    }
    /// Fails, showing the log, if `took` is longer than `bound`.
    #[track_caller]
    fn assert_took_at_most(&self, took: Duration, bound: Duration) {
        assert!(took <= bound, "took {took:?}; log:\n{}", self.log());
    }
    /// Fails, showing the log, unless the log says `needle`.
    #[track_caller]
    fn assert_logged(&self, needle: &str) {
        assert!(self.log().contains(needle), "{}", self.log());
    }
    /// Fails, showing the log, unless the log says `needle` within `timeout`.
    #[track_caller]
    fn expect_logged(&self, timeout: Duration, needle: &str) {
        assert!(
            wait_until(timeout, || self.log().contains(needle)),
            "{}",
            self.log()
        );
    }
}

/// The opening most tests here share: a real sshd, a directory for the watchdog's state
/// and log, and a target that greets. Fields in reverse order of creation, so they drop
/// as the locals they replace did.
struct Rig {
    target: TcpTarget,
    dir: tempfile::TempDir,
    sshd: Sshd,
}

impl Rig {
    /// None where sshd cannot run here (see `Sshd::start_default`): the test returns.
    fn start(test: &str) -> Option<Rig> {
        let sshd = Sshd::start_default(test)?;
        let dir = tempfile::tempdir().unwrap();
        let target = TcpTarget::start(Some(BANNER));
        Some(Rig { target, dir, sshd })
    }

    /// The usual spec: one `-R` from a free server port to the target.
    fn spec<'a>(&self) -> WdSpec<'a> {
        WdSpec::new(&self.sshd, self.dir.path()).forward(
            "-R",
            format!("{}:127.0.0.1:{}", free_port(), self.target.port),
        )
    }
}

impl Drop for Wd {
    fn drop(&mut self) {
        if let Some(ssh) = self.ssh_pid() {
            let _ = killpg(Pid::from_raw(ssh), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gone(pid: i32) -> bool {
    state_of(pid).is_none_or(|s| s == 'Z')
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What a connection to 127.0.0.1:`port` receives first (up to the banner's length,
/// within 5 s).
fn read_greeting(port: u16) -> Vec<u8> {
    use std::io::Read;
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = vec![0; BANNER.len()];
    let mut n = 0;
    // Bounded: each read returns data, EOF or the time-out.
    while n < got.len() {
        match conn.read(&mut got[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    got.truncate(n);
    got
}

#[test]
fn ready_only_after_remote_and_local_forwards_carry_data() {
    let Some(t) = Rig::start("ready_only_after_forwards") else {
        return;
    };
    let notify = NotifyReceiver::path();
    let (rport, lport) = (free_port(), free_port());
    let mut spec = WdSpec::new(&t.sshd, t.dir.path())
        .forward("-R", format!("{rport}:127.0.0.1:{}", t.target.port))
        .forward(
            "-L",
            format!("127.0.0.1:{lport}:127.0.0.1:{}", t.target.port),
        );
    spec.notify = Some(&notify);
    let wd = spec.spawn();
    let ready = wd.expect_ready(&notify);
    let before_ready: Vec<_> = t
        .target
        .connections()
        .into_iter()
        .filter(|t| *t < ready.at)
        .collect();
    eprintln!(
        "up: READY=1 {:?} after start; target saw {} connection(s) before READY",
        ready.at - wd.started,
        before_ready.len()
    );
    // -R probe: one connection via the server; -L probe: the channel through the
    // server (the -L listener is checked last, by a connect that ssh relays later):
    // two before READY.
    assert!(
        before_ready.len() >= 2,
        "READY came before the forwards were proven: {} connections",
        before_ready.len()
    );
    let statuses = notify.statuses();
    assert!(
        statuses.iter().any(|s| s == "connecting (attempt 1)"),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("up ") && s.contains(", probe ")),
        "{statuses:?}"
    );
    assert!(
        notify
            .wait_for(Duration::from_secs(5), "WATCHDOG=1")
            .is_some()
    );
    // Data through both forwards, by a client of our own: the target's greeting.
    for port in [lport, rport] {
        assert_eq!(
            read_greeting(port),
            BANNER,
            "no data through 127.0.0.1:{port}; log:\n{}",
            wd.log()
        );
    }
    // Idle for a while (three more WATCHDOG=1 pings), then measure.
    let pings = notify.count_with("WATCHDOG=1");
    assert!(
        wait_until(Duration::from_secs(15), || notify.count_with("WATCHDOG=1")
            >= pings + 3),
        "fewer than three more pings in 15 s; log:\n{}",
        wd.log()
    );
    let rss = vm_rss_kib(wd.pid());
    let fds = std::fs::read_dir(format!("/proc/{}/fd", wd.pid()))
        .unwrap()
        .count();
    eprintln!(
        "idle watchdog: VmRSS {rss} KiB, {fds} open fds (ssh VmRSS {} KiB)",
        vm_rss_kib(wd.ssh_pid().unwrap())
    );
    // An emulated watchdog's memory is mostly the emulator's.
    assert!(rss > 0 && (emulated() || rss < 8 * 1024), "VmRSS {rss} KiB");
    assert_eq!(wd.state_value("state").as_deref(), Some("up"));
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
}

#[test]
fn frozen_ssh_client_is_killed_within_the_bound() {
    let Some(t) = Rig::start("frozen_ssh_client") else {
        return;
    };
    let mut wd = t.spec().spawn();
    wd.expect_up(Duration::from_secs(15));
    let ssh = wd.ssh_pid().unwrap();
    let (code, took) = wd.exit_after_freezing(ssh, Duration::from_secs(10));
    eprintln!(
        "frozen ssh client: watchdog exited {code:?} after {took:?}; ssh gone: {}",
        gone(ssh)
    );
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    assert!(gone(ssh), "the stopped ssh survived");
    // interval 1s + failures 2 × timeout 1s + 1s (the confirming round follows at once)
    assert!(took <= Duration::from_secs(4), "took {took:?}");
    let log = wd.log();
    let last = log.lines().last().unwrap();
    assert!(
        last.contains("tunnel failed") && last.contains("alive check"),
        "{last}"
    );
    // A supervisor's part (exit 1 means "restart me"): the next watchdog on the same
    // state dir brings the tunnel back, and its -R carries data again.
    drop(wd);
    let rport = free_port();
    let wd = WdSpec::new(&t.sshd, t.dir.path())
        .forward("-R", format!("{rport}:127.0.0.1:{}", t.target.port))
        .spawn();
    wd.expect_up(Duration::from_secs(15));
    assert_eq!(read_greeting(rport), BANNER, "log:\n{}", wd.log());
}

#[test]
fn frozen_server_session_is_detected_within_the_bound() {
    let Some(t) = Rig::start("frozen_server_session") else {
        return;
    };
    let mut wd = t.spec().spawn();
    wd.expect_up(Duration::from_secs(15));
    let session = t
        .sshd
        .wait_for_session(Duration::from_secs(5))
        .expect("session")
        .session
        .unwrap();
    let ssh = wd.ssh_pid().unwrap();
    let (code, took) = wd.exit_after_freezing(session, Duration::from_secs(10));
    eprintln!("frozen server session: watchdog exited {code:?} after {took:?}");
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    assert!(gone(ssh));
    wd.assert_took_at_most(took, Duration::from_secs(4));
}

/// systemd's watchdog is fed while a silent round is being confirmed, not only after a
/// passing round. With a probe timeout longer than the interval, the unit's period
/// (`WatchdogSec=` = failures × interval + timeout + interval: 6 s here) is shorter than
/// one interval and two rounds of the timeout (7 s): without a ping at the suspicion,
/// systemd would kill the watchdog in the middle of confirming.
#[test]
fn a_confirming_round_keeps_the_supervisors_watchdog_fed() {
    let Some(t) = Rig::start("confirming_round_feeds_watchdog") else {
        return;
    };
    let notify = NotifyReceiver::path();
    let mut spec = t.spec();
    let (interval, timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    spec.options = [
        "--probe-interval",
        "1s",
        "--probe-timeout",
        "3s",
        "--probe-failures",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spec.notify = Some(&notify);
    spec.env = vec![("WATCHDOG_USEC", "6000000".into())];
    let mut wd = spec.spawn();
    wd.expect_ready(&notify);
    // Frozen right after the first round: the next round has no latency sample yet, so
    // its deadline is the whole timeout, and so is the confirming round's.
    let session = t
        .sshd
        .wait_for_session(Duration::from_secs(5))
        .expect("session")
        .session
        .unwrap();
    let (code, took) = wd.exit_after_freezing(session, Duration::from_secs(15));
    let ended = Instant::now();
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    eprintln!("confirming round: watchdog exited after {took:?}");
    let log = wd.log();
    assert!(
        log.contains("confirming at once with a 3s round"),
        "the round was not confirmed with the timeout's length; log:\n{log}"
    );
    let messages = notify.messages();
    let ready = messages.iter().position(|m| m.has("READY=1")).unwrap();
    let mut pings: Vec<Instant> = messages[ready..]
        .iter()
        .filter(|m| m.has("WATCHDOG=1"))
        .map(|m| m.at)
        .collect();
    pings.push(ended);
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    let bound = interval + timeout + Duration::from_millis(500);
    assert!(
        longest <= bound,
        "{longest:?} without WATCHDOG=1 (bound {bound:?}, WatchdogSec 6 s); statuses {:?}; log:\n{log}",
        notify.statuses()
    );
    assert!(
        notify
            .statuses()
            .iter()
            .any(|s| s.starts_with("probe unanswered, confirming")),
        "{:?}",
        notify.statuses()
    );
}

/// Reads `nominal_ms=N wait_ms=M` from the back-off lines of a log.
fn backoffs(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains("backing off"))
        .map(|l| {
            let num = |key: &str| {
                l.split(key)
                    .nth(1)
                    .unwrap()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            (num("nominal_ms="), num("wait_ms="))
        })
        .collect()
}

#[test]
fn server_killed_and_back_follows_the_backoff_sequence() {
    let Some(mut t) = Rig::start("server_killed_and_back") else {
        return;
    };
    let spec = t.spec();
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    // Let it pass probes for longer than proven_after (= max(interval, initial) = 1 s):
    // a proven tunnel's first retry is free.
    // Time itself is the condition here (the state file keeps no per-round count).
    std::thread::sleep(Duration::from_millis(2500));
    t.sshd.stop();
    let killed = Instant::now();
    assert_eq!(wd.wait_exit(Duration::from_secs(10)), Some(1));
    eprintln!(
        "server killed: watchdog retried once and exited 1 after {:?}",
        killed.elapsed()
    );
    assert_eq!(
        wd.state_value("proven").as_deref(),
        Some("1"),
        "{}",
        wd.state()
    );
    // Play init: restart the watchdog, bounded, while the server stays down for 3 runs.
    let mut runs = Vec::new();
    for run in 0..3 {
        let mut again = spec.spawn();
        let code = again.wait_exit(Duration::from_secs(20));
        runs.push((code, again.started.elapsed()));
        assert_eq!(code, Some(1), "run {run}; log:\n{}", again.log());
    }
    t.sshd.start();
    let back = spec.spawn();
    assert!(
        back.wait_up(Duration::from_secs(20)),
        "did not reconnect; log:\n{}",
        back.log()
    );
    let seq = backoffs(&back.log());
    eprintln!("back-off sequence (nominal_ms, wait_ms): {seq:?}; run durations {runs:?}");
    // The proven tunnel's first retry is free and made inside the watchdog that saw
    // the failure (no exit in between); its second failure exits, and the restarted
    // runs back off initial, 2·initial, then the max (4 s), as does the run that finds
    // the server back (its wait cut short).
    assert_eq!(
        seq.iter().map(|s| s.0).collect::<Vec<_>>(),
        [1000, 2000, 4000, 4000]
    );
    back.assert_logged("it was up before, reconnecting at once");
    let runs = &runs[..];
    for (nominal, wait) in &seq {
        let (lo, hi) = (*nominal as f64 * 0.85, *nominal as f64 * 1.15);
        assert!(
            (lo..=hi).contains(&(*wait as f64)),
            "{wait} not within ±15% of {nominal}"
        );
    }
    // The server never greeted: each run waited for it up to backoff-max (4 s), however
    // short its back-off, and spent one ssh attempt.
    for (i, (_, took)) in runs.iter().enumerate() {
        assert!(
            took.as_millis() as u64 >= seq[i].1.max(4000) - 50,
            "run {i} took {took:?}, shorter than the wait for a greeting"
        );
    }
    let log = back.log();
    assert!(log.contains("waiting for the server to greet"), "{log}");
    assert_eq!(
        log.matches("connecting (attempt").count(),
        2 + 3 + 1,
        "one ssh per run: {log}"
    );
    back.assert_logged("the server refused the connection");
    drop(t.target);
}

#[test]
fn remote_port_held_on_server_is_asked_for_again_over_one_connection() {
    let Some(t) = Rig::start("remote_port_taken") else {
        return;
    };
    let local_target = TcpTarget::start(Some(BANNER));
    // The old session: a real ssh whose sshd child holds the remote port.
    let port = free_port();
    let old_session = KillOnDrop(
        Command::new("ssh")
            .args(remote_forward_ssh_args(
                &t.sshd,
                &format!("{port}:127.0.0.1:{}", t.target.port),
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "the old session never listened on {port}"
    );
    let spec = WdSpec::new(&t.sshd, t.dir.path())
        .forward("-R", format!("{port}:127.0.0.1:{}", t.target.port))
        .forward(
            "-L",
            format!("{}:127.0.0.1:{}", free_port(), local_target.port),
        );
    let mut wd = spec.spawn();
    wd.expect_logged(Duration::from_secs(15), "reconnecting at once without -R");
    let log = wd.log();
    assert!(
        log.contains(&format!("remote port {port} busy on server"))
            && log.contains("ClientAliveInterval"),
        "{log}"
    );
    // The ssh started without the held forward is the last one the log names; the state
    // file may still hold the earlier one's pid for a moment.
    let last_ssh = |log: &str| -> Option<i32> {
        log.rsplit("ssh pid ")
            .next()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = wd.log();
            log.matches("ssh pid ").count() >= 2 && wd.ssh_pid() == last_ssh(&log)
        }),
        "{}",
        wd.log()
    );
    let ssh = wd.ssh_pid().unwrap();
    // Several asks (every 500 ms) go by on this one connection: no new ssh, no exit.
    let replaced = wait_until(Duration::from_secs(3), || wd.ssh_pid() != Some(ssh));
    assert!(!replaced, "ssh was replaced while asking:\n{}", wd.log());
    assert_eq!(wd.child.try_wait().unwrap(), None, "{}", wd.log());
    assert_eq!(wd.state_value("state").as_deref(), Some("connecting"));
    // The old session goes away: the next ask gets the port, and both forwards carry
    // data before the tunnel counts as up.
    drop(old_session);
    let freed = Instant::now();
    wd.expect_up(Duration::from_secs(10));
    let up_after = freed.elapsed();
    eprintln!("remote port held: up {up_after:?} after it was freed");
    assert!(up_after < Duration::from_secs(2), "up after {up_after:?}");
    assert_eq!(wd.ssh_pid(), Some(ssh), "{}", wd.log());
    let log = wd.log();
    assert_eq!(log.matches("connecting (attempt").count(), 2, "{log}");
    let asks: u32 = log
        .split("at ask ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no grant logged: {log}"));
    assert!(asks >= 4, "granted at ask {asks}: {log}");
    // Each refused ask reached the server (sshd logs its failed bind).
    let refusals = t
        .sshd
        .log()
        .matches(&format!("cannot listen to port: {port}"))
        .count();
    eprintln!("sshd refused port {port} {refusals} times");
    assert!(refusals as u32 >= asks - 1, "{}", t.sshd.log());
    assert!(!t.target.connections().is_empty() && !local_target.connections().is_empty());
}

/// A target on a fixed port that can be taken down and brought back (its listener
/// closed and bound again), like a local sshd or an intranet web server restarting.
struct Flapping {
    port: u16,
    server: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Flapping {
    fn new() -> Flapping {
        Flapping {
            port: free_port(),
            server: None,
        }
    }
    fn up(&mut self) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("bind target");
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.write_all(BANNER);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        self.server = Some((stop, thread));
    }
    fn down(&mut self) {
        if let Some((stop, thread)) = self.server.take() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl Drop for Flapping {
    fn drop(&mut self) {
        self.down();
    }
}

impl Wd {
    fn wait_state(&self, timeout: Duration, state: &str) -> Option<Duration> {
        let t = Instant::now();
        wait_until(timeout, || {
            self.state_value("state").as_deref() == Some(state)
        })
        .then(|| t.elapsed())
    }
}

#[test]
fn a_target_down_at_start_is_degraded_not_dead() {
    let Some(sshd) = Sshd::start_default("remote_target_down") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyReceiver::path();
    let dead = free_port(); // nothing listens here
    let rport = free_port();
    let mut spec =
        WdSpec::new(&sshd, dir.path()).forward("-R", format!("{rport}:127.0.0.1:{dead}"));
    spec.notify = Some(&notify);
    let mut wd = spec.spawn();
    // READY=1 once the transport and the forward channel are proven: a start does not
    // wait for someone else's server. STATUS= says it is degraded and why.
    let ready = wd.expect_ready(&notify);
    let status = ready.value("STATUS").unwrap_or_default().to_string();
    eprintln!(
        "target down at start: READY=1 after {:?}: {status}",
        ready.at - wd.started
    );
    assert_eq!(
        status,
        format!("degraded: -R {rport}:127.0.0.1:{dead}: target refuses (127.0.0.1:{dead})")
    );
    assert_eq!(wd.state_value("state").as_deref(), Some("degraded"));
    assert!(
        wd.state().contains("forward=target-down "),
        "{}",
        wd.state()
    );
    assert_eq!(wd.child.try_wait().unwrap(), None, "{}", wd.log());
    assert!(
        wd.wait_exit(Duration::from_secs(3)).is_none(),
        "{}",
        wd.log()
    );
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
}

#[test]
fn a_target_that_goes_down_degrades_the_tunnel_without_a_restart_and_recovers_at_once() {
    let Some(sshd) = Sshd::start_default("target_down_degraded") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifyReceiver::path();
    let mut target = Flapping::new();
    target.up();
    let (rport, lport) = (free_port(), free_port());
    let tport = target.port;
    let metrics = dir.path().join("tunnel.prom");
    let mut spec = WdSpec::new(&sshd, dir.path())
        .forward("-R", format!("{rport}:127.0.0.1:{tport}"))
        .forward("-L", format!("127.0.0.1:{lport}:127.0.0.1:{tport}"));
    spec.options.push("--metrics-file".into());
    spec.options.push(metrics.display().to_string());
    spec.notify = Some(&notify);
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    let ssh = wd.ssh_pid().unwrap();
    let up_since: u64 = wd.state_value("state_since").unwrap().parse().unwrap();
    assert!(up_since > 0);

    target.down();
    let took = wd
        .wait_state(Duration::from_secs(5), "degraded")
        .unwrap_or_else(|| panic!("never degraded; log:\n{}", wd.log()));
    eprintln!("target down: degraded after {took:?}");
    let status = format!(
        "STATUS=degraded: -R {rport}:127.0.0.1:{tport}: target refuses (127.0.0.1:{tport}); \
         -L 127.0.0.1:{lport}:127.0.0.1:{tport}: target refuses (127.0.0.1:{tport})"
    );
    assert!(
        notify.wait_for(Duration::from_secs(3), &status).is_some(),
        "{:?}",
        notify.statuses()
    );
    let state = wd.state();
    assert_eq!(state.matches("forward=target-down ").count(), 2, "{state}");
    // The .prom file is written just after the state file, in the same save.
    let degraded_line = "tunnelctl_tunnel_degraded{tunnel=\"test\"} 1";
    let prom_says_degraded =
        || std::fs::read_to_string(&metrics).is_ok_and(|prom| prom.contains(degraded_line));
    assert!(
        crate::common::wait_until(Duration::from_secs(3), prom_says_degraded),
        "{:?}",
        std::fs::read_to_string(&metrics)
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&metrics).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    // 30 s degraded: no ssh restart, no exit, systemd's watchdog fed all along.
    let pings_before = notify.count_with("WATCHDOG=1");
    let degraded_at = Instant::now();
    let exited = wd.wait_exit(Duration::from_secs(30));
    let pings = notify.count_with("WATCHDOG=1") - pings_before;
    eprintln!(
        "degraded for {:?}: {pings} WATCHDOG=1, restarts={:?}",
        degraded_at.elapsed(),
        wd.state_value("restarts")
    );
    assert_eq!(exited, None, "the watchdog exited; log:\n{}", wd.log());
    assert_eq!(
        wd.ssh_pid(),
        Some(ssh),
        "ssh was replaced; log:\n{}",
        wd.log()
    );
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
    assert_eq!(wd.state_value("state").as_deref(), Some("degraded"));
    assert!(pings >= 25, "only {pings} WATCHDOG=1 in 30 s");
    // ssh says the same about a down target every round: logged once, not 30 times.
    let log = wd.log();
    let (connect_to, open_failed) = (
        log.matches("ssh: connect_to").count(),
        log.matches("open failed: connect failed").count(),
    );
    eprintln!(
        "log while degraded: {connect_to} connect_to line(s), {open_failed} open-failed line(s)"
    );
    assert!(connect_to <= 1 && open_failed <= 1, "{log}");
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        1,
        "a second login"
    );

    // Back: the next probe round (1 s interval) finds it, through the same ssh. The
    // bound is the feature (recovery shows within one interval); the margin is for a
    // loaded machine, and the proof that no reconnect did it is the unchanged ssh.
    target.up();
    let took = wd
        .wait_state(Duration::from_secs(5), "up")
        .unwrap_or_else(|| panic!("never up again; log:\n{}", wd.log()));
    eprintln!("target back: up after {took:?}");
    assert!(took < Duration::from_secs(3), "up after {took:?}");
    assert_eq!(
        wd.ssh_pid(),
        Some(ssh),
        "ssh was replaced; log:\n{}",
        wd.log()
    );
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
    assert_eq!(
        wd.state().matches("forward=up ").count(),
        2,
        "{}",
        wd.state()
    );
    // The state file is written before the supervisor is told: poll for the datagram.
    assert!(
        wait_until(Duration::from_secs(5), || notify
            .statuses()
            .last()
            .is_some_and(|s| s.starts_with("up "))),
        "{:?}",
        notify.statuses()
    );
    let since: u64 = wd.state_value("state_since").unwrap().parse().unwrap();
    assert!(
        since >= up_since + 30,
        "state_since {since} vs first up {up_since}"
    );
}

#[test]
fn sigterm_stops_cleanly_with_abstract_notify_socket_and_clean_ssh_env() {
    let Some(sshd) = Sshd::start_default("sigterm_stops_cleanly") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = TcpTarget::start(None); // a silent target: accepted by the quiet window
    let notify = NotifyReceiver::abstract_name();
    let mut spec = WdSpec::new(&sshd, dir.path())
        .forward("-R", format!("{}:127.0.0.1:{}", free_port(), target.port));
    spec.notify = Some(&notify);
    spec.env = vec![("WATCHDOG_USEC", "60000000".into())];
    let mut wd = spec.spawn();
    wd.expect_ready(&notify);
    let ssh = wd.ssh_pid().unwrap();
    let environ = std::fs::read(format!("/proc/{ssh}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for key in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(
            !environ.split('\0').any(|v| v.starts_with(key)),
            "ssh got {key}"
        );
    }
    kill(Pid::from_raw(wd.pid()), Signal::SIGTERM).unwrap();
    let sent = Instant::now();
    let code = wd.wait_exit(Duration::from_secs(5));
    eprintln!("SIGTERM: exit {code:?} after {:?}", sent.elapsed());
    assert_eq!(code, Some(0));
    assert!(
        notify
            .wait_for(Duration::from_secs(2), "STOPPING=1")
            .is_some()
    );
    assert_eq!(state_of(ssh), None, "ssh left behind (or a zombie)");
    assert_eq!(
        killpg(Pid::from_raw(ssh), None),
        Err(nix::errno::Errno::ESRCH),
        "ssh's process group not empty"
    );
    assert_eq!(wd.state_value("state").as_deref(), Some("stopped"));
}

#[test]
fn sigusr1_cuts_the_backoff_short() {
    let Some(t) = Rig::start("sigusr1_cuts_backoff") else {
        return;
    };
    std::fs::create_dir_all(t.dir.path().join("state")).unwrap();
    std::fs::write(
        t.dir.path().join("state/state"),
        "state=failed\nconsecutive_failures=6\nlast_error=test\n",
    )
    .unwrap();
    let mut spec = t.spec();
    spec.options.extend([
        "--backoff-initial".into(),
        "10s".into(),
        "--backoff-max".into(),
        "60s".into(),
    ]);
    let wd = spec.spawn();
    wd.expect_logged(Duration::from_secs(5), "backing off");
    kill(Pid::from_raw(wd.pid()), Signal::SIGUSR1).unwrap();
    let sent = Instant::now();
    wd.expect_up(Duration::from_secs(10));
    eprintln!(
        "SIGUSR1 during a {:?} back-off: up after {:?}",
        backoffs(&wd.log())[0],
        sent.elapsed()
    );
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(wd.log().contains("back-off cut short"));
}

#[test]
fn frozen_server_session_is_detected_with_only_a_socks_forward() {
    // ssh answers a -D SOCKS greeting itself, so without a server round trip of its own
    // the watchdog would only learn of a frozen server through ServerAlive (300 s here).
    let Some(sshd) = Sshd::start_default("frozen_server_socks_only") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut wd = WdSpec::new(&sshd, dir.path())
        .forward("-D", format!("127.0.0.1:{}", free_port()))
        .spawn();
    wd.expect_up(Duration::from_secs(15));
    let session = sshd
        .wait_for_session(Duration::from_secs(5))
        .expect("session")
        .session
        .unwrap();
    let (code, took) = wd.exit_after_freezing(session, Duration::from_secs(10));
    eprintln!("frozen server session, -D only: watchdog exited {code:?} after {took:?}");
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    wd.assert_took_at_most(took, Duration::from_secs(4));
    wd.assert_logged("did not answer a channel request");
}

#[test]
fn sigusr1_while_up_reconnects_and_restarts_the_uptime() {
    let Some(t) = Rig::start("sigusr1_while_up") else {
        return;
    };
    let wd = t.spec().spawn();
    wd.expect_up(Duration::from_secs(15));
    let since = |wd: &Wd| -> u64 {
        wd.state_value("connected_since")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let first_since = since(&wd);
    let first_ssh = wd.ssh_pid().unwrap();
    assert!(first_since > 0, "{}", wd.state());
    // connected_since has one-second resolution: let the clock pass it first.
    assert!(wait_until(Duration::from_secs(3), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            > first_since
    }));
    kill(Pid::from_raw(wd.pid()), Signal::SIGUSR1).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            wd.ssh_pid().is_some_and(|p| p != first_ssh) && since(&wd) > first_since
        }),
        "no fresh connection with a new up-since; state:\n{}\nlog:\n{}",
        wd.state(),
        wd.log()
    );
    assert!(gone(first_ssh), "the old ssh is still there");
}

/// Replaces the value after `-p` in ssh arguments (to point a spec at another port).
/// Time from the first "probe failed (1/N)" line in the log to the watchdog's exit.
fn confirm_time(wd: &mut Wd, timeout: Duration) -> (Option<i32>, Duration, Duration) {
    let start = Instant::now();
    let mut first_failed = None;
    let mut code = None;
    // Bounded by `timeout`; polls the log and the exit every 10 ms.
    while start.elapsed() < timeout {
        if first_failed.is_none() && wd.log().contains("probe failed (1/") {
            first_failed = Some(Instant::now());
        }
        code = wd.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        if code.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let end = Instant::now();
    (code, end - start, end - first_failed.unwrap_or(end))
}

#[test]
fn a_failed_round_is_confirmed_without_waiting_a_full_interval() {
    let Some(t) = Rig::start("confirm_without_interval") else {
        return;
    };
    let mut spec = t.spec();
    // A long interval makes the old timing (confirming round one interval later) obvious.
    spec.options
        .extend(["--probe-interval".into(), "5s".into()]);
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    let ssh = wd.ssh_pid().unwrap();
    kill(Pid::from_raw(ssh), Signal::SIGSTOP).unwrap();
    let (code, detected, confirmed) = confirm_time(&mut wd, Duration::from_secs(15));
    eprintln!(
        "frozen ssh client, interval 5s timeout 1s failures 2: exited {code:?} {detected:?} after the freeze, {confirmed:?} after the first failed round"
    );
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    assert!(gone(ssh));
    // pause 0.2 s + timeout 1 s (+ teardown), not another 5 s interval
    assert!(
        confirmed < Duration::from_millis(2500),
        "confirmation took {confirmed:?}; log:\n{}",
        wd.log()
    );
    // interval 5 s + failures 2 × timeout 1 s + 1 s
    assert!(detected <= Duration::from_secs(8), "took {detected:?}");
}

#[test]
fn a_flapping_tunnel_keeps_backing_off() {
    let Some(mut t) = Rig::start("flapping_tunnel") else {
        return;
    };
    let spec = t.spec();
    // Up for an instant (one good round, under proven_after = 1 s), then the server dies;
    // three times. Every run must wait longer than the one before.
    for run in 0..3 {
        let mut wd = spec.spawn();
        assert!(
            wd.wait_up(Duration::from_secs(20)),
            "run {run} not up; log:\n{}",
            wd.log()
        );
        t.sshd.stop();
        assert_eq!(
            wd.wait_exit(Duration::from_secs(10)),
            Some(1),
            "log:\n{}",
            wd.log()
        );
        assert_eq!(wd.state_value("proven").as_deref(), Some("0"));
        t.sshd.start();
    }
    let log = std::fs::read_to_string(t.dir.path().join("log")).unwrap();
    let seq: Vec<u64> = backoffs(&log).iter().map(|s| s.0).collect();
    eprintln!("flapping tunnel, back-offs: {seq:?}");
    assert_eq!(seq, [1000, 2000], "log:\n{log}");
    assert!(!log.contains("reconnecting at once"), "{log}");
}

#[test]
fn backoff_ends_when_the_server_is_reachable_again() {
    let Some(mut t) = Rig::start("server_reachable_again") else {
        return;
    };
    let mut spec = t.spec();
    spec.options.extend([
        "--backoff-initial".into(),
        "8s".into(),
        "--backoff-max".into(),
        "60s".into(),
    ]);
    t.sshd.stop();
    // Run 0: connection refused, never proven → the next run backs off 8 s ± 15 %.
    let mut first = spec.spawn();
    assert_eq!(first.wait_exit(Duration::from_secs(10)), Some(1));
    assert_eq!(first.state_value("no_greeting").as_deref(), Some("1"));
    let wd = spec.spawn();
    wd.expect_logged(Duration::from_secs(5), "backing off");
    let backing_off = Instant::now();
    t.sshd.start();
    let restarted = Instant::now();
    wd.expect_up(Duration::from_secs(15));
    let up_after = restarted.elapsed();
    let (nominal, wait) = backoffs(&wd.log())[0];
    eprintln!(
        "server back during a {wait} ms back-off (nominal {nominal}): up {up_after:?} after sshd restarted, {:?} into the back-off",
        backing_off.elapsed()
    );
    assert_eq!(nominal, 8000);
    assert!(up_after < Duration::from_secs(4), "up after {up_after:?}");
    assert!(
        backing_off.elapsed() < Duration::from_millis(wait - 2000),
        "the back-off was not cut short"
    );
    wd.assert_logged("server reachable again: reconnecting");
}

#[test]
fn a_silent_server_is_waited_out_not_walked_into() {
    // Fault 7 of the bench: something accepts TCP on the server's port and never speaks.
    let Some(mut sshd) = Sshd::start_default("silent_server_backoff") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec =
        WdSpec::new(&sshd, dir.path()).forward("-D", format!("127.0.0.1:{}", free_port()));
    spec.ssh.extend(["-o".into(), "ConnectTimeout=1".into()]);
    spec.options.extend([
        "--backoff-initial".into(),
        "1s".into(),
        "--backoff-max".into(),
        "60s".into(),
    ]);
    sshd.stop();
    // The kernel completes the handshake for the backlog; nobody ever writes.
    let silent = std::net::TcpListener::bind(("127.0.0.1", sshd.port())).unwrap();
    let mut first = spec.spawn();
    assert_eq!(
        first.wait_exit(Duration::from_secs(10)),
        Some(1),
        "log:\n{}",
        first.log()
    );
    first.assert_logged("sent no SSH banner");
    assert_eq!(first.state_value("no_greeting").as_deref(), Some("1"));
    let wd = spec.spawn();
    wd.expect_logged(Duration::from_secs(5), "waiting for the server to greet");
    // Well past its 1 s (±15 %) back-off, the silent server still gets no ssh.
    let attempts = |log: &str| log.matches("connecting (attempt").count();
    let held = wait_until(Duration::from_secs(4), || attempts(&wd.log()) > 1);
    assert!(!held, "ssh walked into the silent server:\n{}", wd.log());
    drop(silent);
    sshd.start();
    let healed = Instant::now();
    wd.expect_up(Duration::from_secs(10));
    let up_after = healed.elapsed();
    eprintln!("silent server replaced by sshd: up {up_after:?} later");
    assert!(up_after < Duration::from_secs(4), "up after {up_after:?}");
    wd.assert_logged("server reachable again");
}

#[test]
fn a_frozen_client_is_caught_by_the_local_alive_check_before_the_probe_timeout() {
    // The alive check is answered by ssh itself, never crosses the network, and so gets
    // at most 2 s even when the network probes may take 5 s.
    let Some(t) = Rig::start("alive_check_bound") else {
        return;
    };
    let mut spec = t.spec();
    spec.options.extend(["--probe-timeout".into(), "5s".into()]);
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    let ssh = wd.ssh_pid().unwrap();
    let (code, took) = wd.exit_after_freezing(ssh, Duration::from_secs(20));
    eprintln!(
        "frozen ssh client, interval 1s timeout 5s failures 2: exited {code:?} after {took:?}"
    );
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    assert!(gone(ssh));
    // interval 1 s + 2 × 2 s alive checks + 0.2 s pause + teardown; 2 × 5 s would be 11 s
    wd.assert_took_at_most(took, Duration::from_secs(7));
    wd.assert_logged("alive check within 2s");
}

#[test]
fn passing_rounds_do_not_rewrite_the_state_file_every_time() {
    // Under systemd the state file sits on disk (StateDirectory=), maybe flash.
    use std::os::unix::fs::MetadataExt;
    let Some(t) = Rig::start("state_file_writes") else {
        return;
    };
    let notify = NotifyReceiver::path();
    let mut spec = t.spec();
    spec.notify = Some(&notify);
    let wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    let pings = || notify.count_with("WATCHDOG=1");
    // The round after READY may still save (the state settles); start counting after it.
    let settled = pings() + 1;
    assert!(wait_until(Duration::from_secs(5), || pings() >= settled));
    let inode = || {
        std::fs::metadata(t.dir.path().join("state/state"))
            .unwrap()
            .ino()
    };
    let (before, pings_before) = (inode(), pings());
    assert!(
        wait_until(Duration::from_secs(10), || pings() >= pings_before + 3),
        "fewer than 3 passing rounds"
    );
    assert_eq!(
        inode(),
        before,
        "the state file was replaced on a probe-only round"
    );
}

/// The lines an `--on-change` command appended (`OLD NEW` per run).
/// The hook runs a test recorded in `file` (lines of pids, the shell first: the leader
/// of the run's process group): on drop each group is SIGKILLed, so a failed check
/// leaves no `sleep 1000` behind.
struct KillHookGroups(PathBuf);

impl Drop for KillHookGroups {
    fn drop(&mut self) {
        for line in hook_lines(&self.0) {
            for (i, pid) in line
                .split(' ')
                .filter_map(|p| p.parse::<i32>().ok())
                .enumerate()
            {
                if i == 0 {
                    let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn hook_lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn on_change_runs_exactly_once_per_transition_over_ten_flaps() {
    let Some(sshd) = Sshd::start_default("on_change_flaps") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut target = Flapping::new();
    target.up();
    let rport = free_port();
    let mut spec =
        WdSpec::new(&sshd, dir.path()).forward("-R", format!("{rport}:127.0.0.1:{}", target.port));
    for word in [
        "--on-change",
        "/bin/sh",
        "--on-change",
        "-c",
        "--on-change",
        "echo \"$TUNNELCTL_TUNNEL $TUNNELCTL_OLD_STATE $TUNNELCTL_NEW_STATE $TUNNELCTL_REASON\" >> \"$0\"",
        "--on-change",
    ] {
        spec.options.push(word.into());
    }
    spec.options.push(runs.display().to_string());
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    assert!(
        wait_until(Duration::from_secs(3), || hook_lines(&runs)
            .last()
            .is_some_and(|l| l.starts_with("test connecting up "))),
        "{:?}\n{}",
        hook_lines(&runs),
        wd.log()
    );
    let before = hook_lines(&runs).len();
    let started = Instant::now();
    for flap in 0..10 {
        target.down();
        assert!(
            wd.wait_state(Duration::from_secs(5), "degraded").is_some(),
            "flap {flap}: not degraded; log:\n{}",
            wd.log()
        );
        target.up();
        assert!(
            wd.wait_state(Duration::from_secs(5), "up").is_some(),
            "flap {flap}: not up; log:\n{}",
            wd.log()
        );
    }
    // The last run may still be on its way.
    wait_until(Duration::from_secs(3), || {
        hook_lines(&runs).len() >= before + 20
    });
    std::thread::sleep(Duration::from_millis(300));
    let lines = hook_lines(&runs);
    let flaps: Vec<&str> = lines[before..]
        .iter()
        .map(|l| {
            let mut w = l.split(' ');
            let _ = w.next();
            match (w.next(), w.next()) {
                (Some("up"), Some("degraded")) => "down",
                (Some("degraded"), Some("up")) => "up",
                _ => "other",
            }
        })
        .collect();
    eprintln!(
        "10 flaps in {:?}: {} on-change runs after the first up",
        started.elapsed(),
        flaps.len()
    );
    assert_eq!(flaps, ["down", "up"].repeat(10), "{lines:#?}");
    assert!(
        lines[before].contains(&format!(
            "-R {rport}:127.0.0.1:{}: target refuses",
            target.port
        )),
        "the reason names the target: {}",
        lines[before]
    );
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
    // Stopping is a change too, told before the watchdog exits.
    kill(Pid::from_raw(wd.pid()), Signal::SIGTERM).unwrap();
    assert_eq!(wd.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        hook_lines(&runs)
            .last()
            .is_some_and(|l| l.starts_with("test up stopped")),
        "{:?}",
        hook_lines(&runs)
    );
}

#[test]
fn a_hanging_on_change_is_killed_at_its_bound_and_the_tunnel_is_unaffected() {
    let Some(sshd) = Sshd::start_default("on_change_hangs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let _hooks = KillHookGroups(pids.clone());
    let notify = NotifyReceiver::path();
    let target = TcpTarget::start(Some(BANNER));
    let mut spec = WdSpec::new(&sshd, dir.path())
        .forward("-R", format!("{}:127.0.0.1:{}", free_port(), target.port));
    for word in [
        "--on-change-timeout",
        "2s",
        "--on-change",
        "/bin/sh",
        "--on-change",
        "-c",
        "--on-change",
        // A child of its own that hangs too: the whole process group goes.
        "sleep 1000 & echo $$ $! >> \"$0\"; wait",
        "--on-change",
    ] {
        spec.options.push(word.into());
    }
    spec.options.push(pids.display().to_string());
    spec.notify = Some(&notify);
    let wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    // Runs queue: stopped->connecting first (it hangs), then connecting->up after it.
    assert!(
        wait_until(Duration::from_secs(3), || !hook_lines(&pids).is_empty()),
        "the hook never ran: {}",
        wd.log()
    );
    let first: Vec<i32> = hook_lines(&pids)[0]
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let pings_before = notify.count_with("WATCHDOG=1");
    let t = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || first.iter().all(|&p| gone(p))),
        "the hanging hook {first:?} survived its bound; log:\n{}",
        wd.log()
    );
    let killed_after = t.elapsed();
    let log = wd.log();
    assert!(log.contains("killed (its process group)"), "{log}");
    // The second change's run starts after the first was killed, hangs as well, and is
    // killed at its bound (2 s) too.
    assert!(
        wait_until(Duration::from_secs(3), || hook_lines(&pids).len() >= 2),
        "{log}"
    );
    let second_seen = Instant::now();
    let second: Vec<i32> = hook_lines(&pids)[1]
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || second.iter().all(|&p| gone(p))),
        "the second hanging run {second:?} survived; log:\n{}",
        wd.log()
    );
    let second_lived = second_seen.elapsed();
    // Meanwhile the tunnel went on: up, probed every second, systemd fed.
    let pings = notify.count_with("WATCHDOG=1") - pings_before;
    let window = t.elapsed();
    eprintln!(
        "hanging on-change: first gone {killed_after:?} after we saw it, second lived {second_lived:?} (bound 2 s); {pings} WATCHDOG=1 in {window:?}"
    );
    assert!(
        second_lived >= Duration::from_millis(1500) && second_lived <= Duration::from_millis(3500),
        "second run lived {second_lived:?}"
    );
    assert_eq!(wd.state_value("state").as_deref(), Some("up"));
    // One round a second went on: a ping for every whole second of the window but one
    // (the window is 2 s or more, depending on when the first hook was seen).
    let expected = (window.as_secs() as usize).saturating_sub(1).max(1);
    assert!(
        pings >= expected,
        "{pings} WATCHDOG=1 in {window:?} while hooks hung (at least {expected})"
    );
    assert_eq!(wd.state_value("restarts").as_deref(), Some("1"));
}

/// Stopping never waits on a hook: with a command that hangs running and changes
/// queued behind it (10 s bound each, which once held SIGTERM for 20-30 s), the watchdog
/// exits within its own stop bound: ssh's grace (2 s) plus the hooks' shared 3 s. The
/// margin is for this loaded machine; systemd's TimeoutStopSec= is 15 s.
#[test]
fn sigterm_with_a_hanging_hook_queued_exits_within_the_stop_bound() {
    let Some(sshd) = Sshd::start_default("on_change_stop_bound") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let target = TcpTarget::start(Some(BANNER));
    let mut spec = WdSpec::new(&sshd, dir.path())
        .forward("-R", format!("{}:127.0.0.1:{}", free_port(), target.port));
    for word in [
        "--on-change-timeout",
        "10s",
        "--on-change",
        "/bin/sh",
        "--on-change",
        "-c",
        "--on-change",
        "echo $$ >> \"$0\"; exec sleep 30131",
        "--on-change",
    ] {
        spec.options.push(word.into());
    }
    spec.options.push(pids.display().to_string());
    let mut wd = spec.spawn();
    wd.expect_up(Duration::from_secs(15));
    // The first run (stopped -> connecting) hangs; connecting -> up waits behind it.
    assert!(
        wait_until(Duration::from_secs(3), || !hook_lines(&pids).is_empty()),
        "the hook never ran: {}",
        wd.log()
    );
    let t = Instant::now();
    kill(Pid::from_raw(wd.pid()), Signal::SIGTERM).unwrap();
    let code = wd.wait_exit(Duration::from_secs(30));
    let took = t.elapsed();
    eprintln!("SIGTERM with a hanging hook and 2 changes queued: exited after {took:?}");
    assert_eq!(code, Some(0), "{}", wd.log());
    assert!(
        took <= Duration::from_secs(2 + 3 + 3),
        "exit took {took:?}; log:\n{}",
        wd.log()
    );
    let log = wd.log();
    assert!(log.contains("not reported, only the latest"), "{log}");
    // Whatever ran is gone with the watchdog.
    for line in hook_lines(&pids) {
        let pid: i32 = line.parse().unwrap();
        assert!(
            wait_until(Duration::from_secs(2), || gone(pid)),
            "hook {pid} outlived the watchdog"
        );
    }
}

/// The ControlPath ssh was started with (from its argv).
fn control_path_of(ssh: i32) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{ssh}/cmdline")).unwrap();
    cmdline
        .split(|&b| b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .find_map(|a| a.strip_prefix("ControlPath="))
        .map(|p| PathBuf::from(p.trim_matches('"').replace("%%", "%")))
        .expect("ssh has a ControlPath")
}

#[test]
fn a_missing_remote_listener_on_the_server_still_restarts() {
    let Some(sshd) = Sshd::start_default("missing_remote_listener") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = TcpTarget::start(Some(BANNER));
    let rport = free_port();
    let spec = format!("{rport}:127.0.0.1:{}", target.port);
    let mut wd = WdSpec::new(&sshd, dir.path())
        .forward("-R", spec.clone())
        .spawn();
    wd.expect_up(Duration::from_secs(15));
    let ctl = control_path_of(wd.ssh_pid().unwrap());
    // The server stops listening (as when a session's listener is gone): the target is
    // fine, the forward is not. That is a tunnel failure, not a degraded target.
    let cancel = Command::new("ssh")
        .arg("-S")
        .arg(&ctl)
        .args(["-O", "cancel", "-R", &spec, "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(cancel.status.success(), "{cancel:?}");
    let t = Instant::now();
    let code = wd.wait_exit(Duration::from_secs(10));
    eprintln!(
        "-R listener gone: watchdog exited {code:?} after {:?}",
        t.elapsed()
    );
    assert_eq!(code, Some(1), "log:\n{}", wd.log());
    let log = wd.log();
    assert!(log.contains("the -R listener is missing"), "{log}");
    assert!(!log.contains("degraded"), "{log}");
    assert!(wd.state().contains("forward=failed "), "{}", wd.state());
}

#[test]
fn a_local_forward_the_server_forbids_fails_rather_than_degrades() {
    // PermitOpen allows one destination only: the server refuses the channel itself
    // ("administratively prohibited"), which no target coming back would fix either,
    // but it is the forward that does not work, not its target.
    let options = common::sshd::SshdOptions {
        extra_config: vec!["PermitOpen 127.0.0.1:1".into()],
        ..Default::default()
    };
    let Some(sshd) = Sshd::start_with("local_forward_forbidden", options) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = TcpTarget::start(Some(BANNER));
    let mut wd = WdSpec::new(&sshd, dir.path())
        .forward(
            "-L",
            format!("127.0.0.1:{}:127.0.0.1:{}", free_port(), target.port),
        )
        .spawn();
    let code = wd.wait_exit(Duration::from_secs(15));
    let log = wd.log();
    eprintln!(
        "forbidden -L: exited {code:?} after {:?}",
        wd.started.elapsed()
    );
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("administratively prohibited"), "{log}");
    assert!(!log.contains("degraded"), "{log}");
}
