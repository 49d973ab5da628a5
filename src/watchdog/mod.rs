//! tunnel-watchdog: runs ssh, proves every forward carries data, tells the init system.
//!
//! One process, one thread, no async runtime: the main loop sleeps in `poll` on a
//! signal self-pipe and ssh's stderr pipe between probe rounds.

pub mod args;
pub mod backoff;
pub mod log;
pub mod mux;
pub mod notify;
pub mod probe;
pub mod process;
pub mod reachability;
pub mod ssh_errors;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::duration::format_human;
use crate::state::{Phase, State};
use args::{Forward, Options, Parsed};
use notify::Notifier;
use process::SshChild;

pub const EXIT_STOPPED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PERMANENT: u8 = 3;

/// How often a back-off refreshes STATUS= (and EXTEND_TIMEOUT_USEC before READY=1).
pub const BACKOFF_REFRESH: Duration = Duration::from_secs(5);

/// After a failed probe round, the confirming round follows after this pause instead of a
/// full probe interval: detection takes at most interval + failures × (timeout + pause),
/// and never longer than the old interval × failures + timeout.
pub const CONFIRM_PAUSE: Duration = Duration::from_millis(200);

/// Between SIGTERM and SIGKILL for the ssh process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// A `-R` port the server refuses is most likely still held by the previous session,
/// until sshd's ClientAliveInterval × ClientAliveCountMax drops it: the watchdog
/// reconnects at once without that forward and asks for it through the control socket
/// this often. One login and a cheap global request per ask, instead of a login per
/// retry; and no exit, so no init-system restart delay and nothing towards SysV init's
/// "respawning too fast" limit.
pub const PORT_HELD_ASK_EVERY: Duration = Duration::from_millis(500);

/// How many asks before the port counts as a plain failure (exit, back-off): about a
/// minute, which covers ClientAliveInterval 15 × ClientAliveCountMax 3.
pub const PORT_HELD_ASKS: u32 = 120;

pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let read_file =
        |path: &str| std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
    match args::parse(&argv, &read_file) {
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("tunnel-watchdog {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(options)) => ExitCode::from(run(*options)),
        Err(e) => {
            eprintln!("tunnel-watchdog: {e}\n(see tunnel-watchdog --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

// ---- signals: a self-pipe, so the main loop can sleep in poll and still wake at once.

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the wake-up.
        unsafe { nix::libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

struct Signals {
    read: OwnedFd,
    _write: OwnedFd,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Event {
    Stop,
    Reconnect,
}

impl Signals {
    fn install() -> Result<Signals, String> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| format!("pipe: {e}"))?;
        use std::os::fd::AsRawFd;
        SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGCHLD,
        ] {
            // SAFETY: the handler only calls write(2).
            unsafe { sigaction(signal, &action) }
                .map_err(|e| format!("sigaction {signal}: {e}"))?;
        }
        Ok(Signals {
            read,
            _write: write,
        })
    }

    /// Sleeps up to `timeout`, until a signal, or until `also` (ssh's stderr) is
    /// readable; returns the most important signal seen.
    fn wait(&self, timeout: Duration, also: Option<BorrowedFd>) -> Option<Event> {
        let fd: BorrowedFd = self.read.as_fd();
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let _ = match also {
            Some(other) => poll(
                &mut [
                    PollFd::new(fd, PollFlags::POLLIN),
                    PollFd::new(other, PollFlags::POLLIN),
                ],
                timeout,
            ),
            None => poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], timeout),
        };
        let mut event = None;
        let mut buf = [0u8; 64];
        while let Ok(n) = nix::unistd::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                match Signal::try_from(i32::from(b)) {
                    Ok(Signal::SIGTERM | Signal::SIGINT) => event = Some(Event::Stop),
                    Ok(Signal::SIGHUP | Signal::SIGUSR1) if event.is_none() => {
                        event = Some(Event::Reconnect)
                    }
                    _ => {}
                }
            }
        }
        event
    }
}

// ---- the state dir and file

/// `--state-dir`, else `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY` (first entry), else a
/// per-user default (docs/design.md).
pub fn resolve_state_dir(
    option: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    is_root: bool,
    uid: u32,
) -> PathBuf {
    if let Some(dir) = option {
        return dir.to_path_buf();
    }
    for key in ["STATE_DIRECTORY", "RUNTIME_DIRECTORY"] {
        if let Some(first) = env(key)
            .as_deref()
            .and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty())
        {
            return PathBuf::from(first);
        }
    }
    let name = name.replace('/', "_");
    if is_root {
        return PathBuf::from("/run/tunnelctl").join(name);
    }
    match env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("tunnelctl").join(name),
        None => PathBuf::from(format!("/tmp/tunnelctl-{uid}")).join(name),
    }
}

fn write_state(dir: &Path, state: &State) {
    let tmp = dir.join("state.tmp");
    let result = std::fs::write(&tmp, state.to_text())
        .and_then(|_| std::fs::rename(&tmp, dir.join("state")));
    if let Err(e) = result {
        log::warn(&format!(
            "cannot write the state file in {}: {e}",
            dir.display()
        ));
    }
}

fn read_state(dir: &Path) -> State {
    match std::fs::read_to_string(dir.join("state")) {
        Ok(text) => State::from_text(&text).unwrap_or_else(|e| {
            log::warn(&format!(
                "{}/state: {e}; starting from a fresh state",
                dir.display()
            ));
            State::default()
        }),
        Err(_) => State::default(),
    }
}

// ---- the run

struct Watchdog {
    o: Options,
    state_dir: PathBuf,
    ctl: PathBuf,
    notifier: Notifier,
    signals: Signals,
    state: State,
    interval: Duration,
    ready_sent: bool,
    /// When the state file was last written (see `save_after_probe`).
    saved_at: std::cell::Cell<Instant>,
}

/// A passing round that changed nothing but the probe time and latency rewrites the
/// state file at most this often: under systemd it lives in StateDirectory=, on disk
/// (flash, on a router), and `status` can live with a last-probe time a minute old.
const PROBE_ONLY_SAVE_EVERY: Duration = Duration::from_secs(60);

enum Outcome {
    Stopped,
    Reconnect,
    Failed {
        reason: String,
        permanent: bool,
        /// ssh never got the server's greeting (unresolved, refused, no route, connect or
        /// banner time-out): the back-off waits for the server to greet.
        no_greeting: bool,
        /// The server refused this `-R` port: most likely still held by the old session.
        port_held: Option<u16>,
    },
}

pub fn run(o: Options) -> u8 {
    let env = |k: &str| std::env::var(k).ok();
    let uid = nix::unistd::getuid();
    let state_dir = resolve_state_dir(
        o.state_dir.as_deref(),
        &env,
        &o.name,
        uid.is_root(),
        uid.as_raw(),
    );
    log::init(&o.name, o.log_file.clone());
    if let Err(e) = process::make_private_dir(&state_dir) {
        log::error(&format!("state directory: {e}"));
        return EXIT_USAGE;
    }
    let runtime = env("XDG_RUNTIME_DIR")
        .filter(|_| !uid.is_root())
        .map(PathBuf::from);
    let ctl = match process::control_path(&state_dir, runtime.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            log::error(&format!("control socket: {e}"));
            return EXIT_USAGE;
        }
    };
    let notifier = match Notifier::from_env_value(env("NOTIFY_SOCKET").as_deref()) {
        Ok(n) => n,
        Err(e) => {
            log::warn(&format!("{e}; not notifying the init system"));
            Notifier::from_env_value(None).unwrap()
        }
    };
    let watchdog = notify::watchdog_interval(
        env("WATCHDOG_USEC").as_deref(),
        env("WATCHDOG_PID").as_deref(),
    );
    let interval = notify::effective_interval(o.probe_interval, watchdog);
    if interval != o.probe_interval {
        log::info(&format!(
            "probing every {} instead of {}: systemd's WatchdogSec is {} and wants two pings per period",
            format_human(interval),
            format_human(o.probe_interval),
            format_human(watchdog.unwrap_or_default())
        ));
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            log::error(&e);
            return EXIT_FAILED;
        }
    };
    let mut state = read_state(&state_dir);
    kill_leftover_ssh(&state, &ctl);
    state.pid = std::process::id();
    state.ssh_pid = 0;
    let mut w = Watchdog {
        o,
        state_dir,
        ctl,
        notifier,
        signals,
        state,
        interval,
        ready_sent: false,
        saved_at: std::cell::Cell::new(Instant::now()),
    };
    w.run()
}

/// A previous watchdog killed with SIGKILL leaves its ssh running (holding the remote
/// ports and the control socket). It is recognised by pid and our ControlPath.
fn kill_leftover_ssh(state: &State, ctl: &Path) {
    if state.ssh_pid == 0 {
        return;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", state.ssh_pid)).unwrap_or_default();
    let needle = format!("ControlPath={}", ctl.display());
    if String::from_utf8_lossy(&cmdline)
        .split('\0')
        .any(|a| a == needle)
    {
        log::warn(&format!(
            "killing ssh {} left over by an earlier watchdog",
            state.ssh_pid
        ));
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(state.ssh_pid as i32),
            Signal::SIGKILL,
        );
    }
}

impl Watchdog {
    fn notify(&self, lines: &[&str]) {
        if let Err(e) = self.notifier.send(lines) {
            log::warn(&e);
        }
    }

    fn save(&self) {
        write_state(&self.state_dir, &self.state);
        self.saved_at.set(Instant::now());
    }

    /// Saves after a passing round unless only the probe time/latency moved and the
    /// file was written recently.
    fn save_after_probe(&self, before: &State) {
        let probe_only = State {
            last_probe_ok: self.state.last_probe_ok,
            last_probe_ms: self.state.last_probe_ms,
            ..before.clone()
        };
        if probe_only != self.state || self.saved_at.get().elapsed() >= PROBE_ONLY_SAVE_EVERY {
            self.save();
        }
    }

    fn run(&mut self) -> u8 {
        // The ssh arguments of the next attempt, and the -R forwards taken out of them
        // because the server held their ports: asked for through the control socket.
        let mut ssh_args = self.o.ssh.clone();
        let mut held: Vec<Forward> = Vec::new();
        // Bounded: each pass exits, was asked to reconnect by a signal, or took one more
        // -R forward out of `ssh_args`.
        loop {
            if held.is_empty()
                && let Some(code) = self.back_off()
            {
                return code;
            }
            match self.connect_and_watch(&ssh_args, &held) {
                (Outcome::Reconnect, _) => {
                    self.state.consecutive_failures = 0;
                    self.state.proven = false;
                    (ssh_args, held) = (self.o.ssh.clone(), Vec::new());
                    log::info("reconnecting now (SIGHUP/SIGUSR1)");
                    continue;
                }
                (Outcome::Stopped, _) => return self.stopped(),
                (
                    Outcome::Failed {
                        reason,
                        port_held: Some(port),
                        ..
                    },
                    None,
                ) if let Some((rest, forward)) = args::without_remote_forward(&ssh_args, port) => {
                    log::warn(&format!(
                        "{reason}; reconnecting at once without {} and asking the server for it every {} through ssh's control socket",
                        forward.describe(),
                        format_human(PORT_HELD_ASK_EVERY)
                    ));
                    self.state.last_error = reason;
                    ssh_args = rest;
                    held.push(forward);
                    continue;
                }
                (
                    Outcome::Failed {
                        reason,
                        permanent,
                        no_greeting,
                        ..
                    },
                    up_for,
                ) => {
                    (self.state.consecutive_failures, self.state.proven) = backoff::after_failure(
                        self.state.consecutive_failures,
                        self.state.proven,
                        up_for,
                        permanent,
                        backoff::proven_after(self.interval, self.o.backoff_initial),
                        self.o.backoff_initial,
                        self.o.backoff_max,
                    );
                    self.state.network_error = no_greeting;
                    self.state.state = Phase::Failed;
                    self.state.ssh_pid = 0;
                    self.state.connected_since = 0;
                    self.state.last_error = reason.clone();
                    self.save();
                    log::error(&format!("tunnel failed: {reason}"));
                    self.notify(&["STOPPING=1", &format!("STATUS=failed: {reason}")]);
                    return if permanent {
                        EXIT_PERMANENT
                    } else {
                        EXIT_FAILED
                    };
                }
            }
        }
    }

    fn stopped(&mut self) -> u8 {
        self.state.state = Phase::Stopped;
        self.state.ssh_pid = 0;
        self.state.connected_since = 0;
        self.state.backoff_until = 0;
        self.save();
        log::info("stopped");
        EXIT_STOPPED
    }

    /// Waits before connecting if earlier attempts failed. `Some(code)`: exit now.
    ///
    /// After a failure where ssh got no greeting from the server, another ssh attempt
    /// would fail the same way until the server greets again, so the wait lasts until a
    /// check sees the greeting (every [`reachability::CHECK_EVERY`]), however short the
    /// back-off. ssh still starts once the back-off and `backoff_max` have both run out,
    /// in case the check cannot see what ssh sees.
    fn back_off(&mut self) -> Option<u8> {
        let n = self.state.consecutive_failures;
        let nominal = backoff::wait_before_connect(
            n,
            self.state.proven,
            self.o.backoff_initial,
            self.o.backoff_max,
        );
        if nominal.is_zero() {
            if n > 0 {
                log::info(&format!(
                    "reconnecting at once: the tunnel was up before it failed ({n} failure(s) in a row)"
                ));
            }
            return None;
        }
        let wait = backoff::with_jitter(nominal, backoff::jitter_seed());
        let reason = if self.state.last_error.is_empty() {
            "earlier attempts failed".to_string()
        } else {
            self.state.last_error.clone()
        };
        log::warn(&format!(
            "backing off {} before connecting (wait_ms={} nominal_ms={}, {n} failures in a row): {reason}",
            format_human(wait),
            wait.as_millis(),
            nominal.as_millis()
        ));
        let started = Instant::now();
        let greeting = self.greeting_target();
        let until = match &greeting {
            Some((host, port, _)) => {
                let latest = wait.max(self.o.backoff_max);
                log::info(&format!(
                    "waiting for the server to greet: checking {host} port {port} every {}, ssh starts when it answers (at the latest in {})",
                    format_human(reachability::CHECK_EVERY),
                    format_human(latest)
                ));
                started + latest
            }
            None => started + wait,
        };
        self.state.state = Phase::BackingOff;
        self.state.backoff_until =
            log::now_secs() + until.saturating_duration_since(started).as_secs();
        self.save();
        let mut next_check = started + reachability::CHECK_EVERY;
        // The server's addresses, looked up again after RESOLVE_EVERY (sooner when the
        // last lookup found none).
        let mut resolved: Option<(Instant, Vec<std::net::SocketAddr>)> = None;
        // Bounded by `until`; STATUS= refreshed every few seconds with the time left.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let status = match &greeting {
                Some(_) => format!("STATUS=waiting for the server to answer: {reason}"),
                None => format!("STATUS=backing off {}: {reason}", format_human(left)),
            };
            self.announce_wait(left, &status);
            let mut sleep = left.min(BACKOFF_REFRESH);
            if greeting.is_some() {
                sleep = sleep.min(next_check.saturating_duration_since(Instant::now()));
            }
            match self.signals.wait(sleep, None) {
                Some(Event::Stop) => {
                    self.notify(&["STOPPING=1"]);
                    return Some(self.stopped());
                }
                Some(Event::Reconnect) => {
                    log::info(&format!(
                        "back-off cut short with {} left (SIGHUP/SIGUSR1): reconnecting now",
                        format_human(left)
                    ));
                    break;
                }
                None => {}
            }
            if let Some((host, port, family)) = &greeting
                && Instant::now() >= next_check
                && Instant::now() < until
            {
                // Checks start CHECK_EVERY apart even when one waits out its time-out
                // (a black-holed path): a fresh SYN each second, not one per time-out.
                next_check = Instant::now() + reachability::CHECK_EVERY;
                if resolved.as_ref().is_none_or(|(at, addrs)| {
                    let again = if addrs.is_empty() {
                        reachability::RESOLVE_AGAIN_WHEN_EMPTY
                    } else {
                        reachability::RESOLVE_EVERY
                    };
                    at.elapsed() >= again
                }) {
                    let deadline = Instant::now() + reachability::CHECK_TIMEOUT;
                    let addrs = reachability::addresses_for(host, *port, *family, deadline);
                    resolved = Some((Instant::now(), addrs));
                }
                let addrs = resolved.as_ref().map(|(_, a)| a.as_slice()).unwrap_or(&[]);
                let timeout = reachability::CHECK_TIMEOUT
                    .min(until.saturating_duration_since(Instant::now()));
                if reachability::server_greets(addrs, timeout) {
                    log::info(&format!(
                        "server reachable again: reconnecting ({host} port {port} answered with its SSH greeting after {})",
                        format_human(started.elapsed())
                    ));
                    self.notify(&["STATUS=server reachable again: reconnecting"]);
                    break;
                }
            }
        }
        self.state.backoff_until = 0;
        None
    }

    /// STATUS= for a wait of `left`; before READY=1 also EXTEND_TIMEOUT_USEC, since
    /// systemd still waits for the start (Type=notify): it moves the start timeout to now
    /// plus what is left, one connect-and-probe budget and a margin, and is sent again at
    /// every refresh, so a hung watchdog still times out.
    fn announce_wait(&self, left: Duration, status: &str) {
        if self.ready_sent {
            // Waiting is this process's job, not a hang: keep systemd's watchdog fed.
            self.notify(&["WATCHDOG=1", status]);
        } else {
            let budget = left
                .saturating_add(self.connect_budget())
                .saturating_add(Duration::from_secs(5));
            self.notify(&[
                &format!("EXTEND_TIMEOUT_USEC={}", budget.as_micros()),
                status,
            ]);
        }
    }

    /// Where to check for the server's greeting during a back-off: only after a failure
    /// where ssh got none (after auth, probe or forward failures the server greets and a
    /// retry would not fare better for it), and only where a TCP connect from here takes
    /// ssh's path.
    fn greeting_target(&self) -> Option<(String, u16, reachability::Family)> {
        if !self.state.network_error {
            return None;
        }
        match reachability::resolve(&self.o.ssh) {
            Ok(reachability::Target::Direct { host, port, family }) => Some((host, port, family)),
            Ok(reachability::Target::Unsuitable(why)) => {
                log::info(&format!(
                    "not checking whether the server answers during the back-off: {why}"
                ));
                None
            }
            Err(e) => {
                log::info(&format!(
                    "not checking whether the server answers during the back-off: {e}"
                ));
                None
            }
        }
    }

    /// One `MUX_C_OPEN_FWD` for a held `-R` forward, bounded by the probe timeout.
    fn ask_for_forward(&self, forward: &Forward) -> Result<(), String> {
        let Forward::Remote {
            bind,
            port,
            host,
            host_port,
        } = forward
        else {
            return Err("only -R PORT:HOST:PORT forwards are asked for".into());
        };
        let deadline = Instant::now() + self.o.probe_timeout;
        let mut conn = mux::MuxConn::connect(&self.ctl).map_err(|e| e.to_string())?;
        conn.open_remote_forward(bind.as_deref(), *port, host, *host_port, deadline)
    }

    /// How long ssh may take from start to a first good probe round.
    fn connect_budget(&self) -> Duration {
        // Saturating, though the parser's bounds keep it far from overflow.
        (self.interval.saturating_mul(self.o.probe_failures)).saturating_add(self.o.probe_timeout)
    }

    /// Runs ssh with `ssh_args` and asks for the `held` forwards through its control
    /// socket. Also returns how long the connection was up: first to last good round.
    fn connect_and_watch(
        &mut self,
        ssh_args: &[String],
        held: &[Forward],
    ) -> (Outcome, Option<Duration>) {
        // A socket left by a killed ssh would make the new one refuse to listen.
        let _ = std::fs::remove_file(&self.ctl);
        let argv = process::ssh_argv(ssh_args, &self.ctl);
        self.state.restarts += 1;
        self.state.state = Phase::Connecting;
        let attempt = self.state.consecutive_failures + 1;
        let mut ssh = match SshChild::spawn(&argv) {
            Ok(s) => s,
            Err(e) => {
                return (
                    Outcome::Failed {
                        reason: e,
                        permanent: false,
                        no_greeting: false,
                        port_held: None,
                    },
                    None,
                );
            }
        };
        ssh.asked_ports = held
            .iter()
            .filter_map(|f| match f {
                Forward::Remote { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        self.state.ssh_pid = ssh.pid;
        self.save();
        log::info(&format!(
            "connecting (attempt {attempt}): ssh pid {}",
            ssh.pid
        ));
        self.notify(&[&format!("STATUS=connecting (attempt {attempt})")]);
        let (outcome, up_for) = self.watch(&mut ssh, held);
        if matches!(outcome, Outcome::Stopped) {
            self.notify(&["STOPPING=1", "STATUS=stopping"]);
        }
        ssh.terminate(KILL_GRACE);
        let _ = std::fs::remove_file(&self.ctl);
        (outcome, up_for)
    }

    fn watch(&mut self, ssh: &mut SshChild, held: &[Forward]) -> (Outcome, Option<Duration>) {
        let mut prober = probe::Prober::new(
            self.ctl.clone(),
            self.o.forwards.clone(),
            self.o.probe_timeout,
        );
        let spawned = Instant::now();
        let mut socket_seen: Option<Instant> = None;
        let mut next_round = spawned;
        let mut failed_rounds = 0u32;
        let mut up_since: Option<Instant> = None;
        let mut last_ok: Option<Instant> = None;
        // Held -R forwards not granted yet; no probe round runs until they are.
        let mut missing: Vec<Forward> = held.to_vec();
        let mut asks = 0u32;
        let failed = |reason: String, port_held: Option<u16>| Outcome::Failed {
            reason,
            permanent: false,
            no_greeting: false,
            port_held,
        };
        let up_for = |up_since: Option<Instant>, last_ok: Option<Instant>| {
            Some(last_ok?.saturating_duration_since(up_since?))
        };
        // Bounded: every pass sleeps until the next round or a signal, and the rounds
        // end the loop after probe_failures failures or when ssh exits.
        loop {
            ssh.drain_stderr();
            if let Some(status) = ssh.try_exit() {
                ssh.settle_stderr(Duration::from_secs(1));
                let report = &ssh.report;
                let permanent = report.errors.iter().any(|e| e.is_permanent());
                let no_greeting =
                    !report.errors.is_empty() && report.errors.iter().all(|e| e.is_no_greeting());
                let port_held = report.errors.iter().find_map(|e| match e {
                    ssh_errors::SshError::RemotePortRefused { port } => Some(*port),
                    _ => None,
                });
                let reason = match report.errors.first() {
                    Some(e) => e.explain(),
                    None if !report.last_line.is_empty() => {
                        format!("ssh exited ({status}): {}", report.last_line)
                    }
                    None => format!("ssh exited ({status})"),
                };
                let outcome = Outcome::Failed {
                    reason,
                    permanent,
                    no_greeting,
                    port_held,
                };
                return (outcome, up_for(up_since, last_ok));
            }
            // A forward that ssh could not set up will never work, even if ssh stays.
            let forward_error = ssh
                .report
                .errors
                .iter()
                .find(|e| {
                    matches!(
                        e,
                        ssh_errors::SshError::RemotePortRefused { .. }
                            | ssh_errors::SshError::LocalPortBusy { .. }
                    )
                })
                .cloned();
            if let Some(error) = forward_error {
                let port_held = match error {
                    ssh_errors::SshError::RemotePortRefused { port } => Some(port),
                    _ => None,
                };
                return (
                    failed(error.explain(), port_held),
                    up_for(up_since, last_ok),
                );
            }
            let now = Instant::now();
            if socket_seen.is_none() {
                if self.ctl.exists() {
                    // ssh sends its -R requests as the control socket appears; give the
                    // server a moment to answer before the first round.
                    socket_seen = Some(now);
                    next_round = now + Duration::from_millis(300);
                } else if now - spawned > self.connect_budget() {
                    let reason = format!(
                        "ssh did not connect within {}",
                        format_human(self.connect_budget())
                    );
                    return (failed(reason, None), up_for(up_since, last_ok));
                } else {
                    next_round = now + Duration::from_millis(50);
                }
            }
            if socket_seen.is_some() && !missing.is_empty() && now >= next_round {
                asks += 1;
                let mut refusal = String::new();
                missing.retain(|forward| match self.ask_for_forward(forward) {
                    Ok(()) => {
                        log::info(&format!(
                            "the server granted {} at ask {asks}",
                            forward.describe()
                        ));
                        false
                    }
                    Err(why) => {
                        refusal = format!("{}: {why}", forward.describe());
                        true
                    }
                });
                if missing.is_empty() {
                    next_round = Instant::now();
                } else if asks >= PORT_HELD_ASKS {
                    let reason = format!(
                        "the server still refuses {refusal} after {asks} asks over {}: another process may hold the port",
                        format_human(spawned.elapsed())
                    );
                    return (failed(reason, None), up_for(up_since, last_ok));
                } else {
                    next_round = Instant::now() + PORT_HELD_ASK_EVERY;
                    let status = format!(
                        "STATUS=waiting for the server to release a remote port ({refusal})"
                    );
                    if self.ready_sent {
                        self.notify(&["WATCHDOG=1", &status]);
                    } else {
                        self.notify(&[&status]);
                    }
                }
            }
            if socket_seen.is_some() && missing.is_empty() && now >= next_round {
                let round_start = Instant::now();
                match prober.round() {
                    Ok(ok) => {
                        failed_rounds = 0;
                        let before = self.state.clone();
                        if up_since.is_none() {
                            // First proof for this ssh connection (also after a
                            // SIGUSR1 reconnect): "up since" starts here.
                            self.state.connected_since = log::now_secs();
                        }
                        let since = *up_since.get_or_insert(round_start);
                        last_ok = Some(round_start);
                        self.state.last_probe_ok = log::now_secs();
                        self.state.last_probe_ms = ok.latency.as_millis() as u64;
                        let status = format!(
                            "STATUS=up {}, probe {} ms",
                            format_human(since.elapsed()),
                            ok.latency.as_millis()
                        );
                        if !self.ready_sent {
                            self.ready_sent = true;
                            self.state.state = Phase::Up;
                            log::info(&format!(
                                "up: {} forward(s) proven end to end in {} ms",
                                self.o.forwards.len(),
                                ok.latency.as_millis()
                            ));
                            self.notify(&["READY=1", &status, "WATCHDOG=1"]);
                        } else {
                            if self.state.state != Phase::Up {
                                self.state.state = Phase::Up;
                                log::info("probes pass again");
                            }
                            self.notify(&["WATCHDOG=1", &status]);
                        }
                        if self.state.consecutive_failures > 0
                            && since.elapsed() > self.o.backoff_max
                        {
                            log::info(&format!(
                                "up longer than {}: back-off reset",
                                format_human(self.o.backoff_max)
                            ));
                            self.state.consecutive_failures = 0;
                            self.state.last_error.clear();
                        }
                        self.save_after_probe(&before);
                    }
                    Err(reason) => {
                        failed_rounds += 1;
                        log::warn(&format!(
                            "probe failed ({failed_rounds}/{}): {reason}",
                            self.o.probe_failures
                        ));
                        if failed_rounds >= self.o.probe_failures {
                            let reason = format!(
                                "{failed_rounds} probe rounds failed in a row, last: {reason}"
                            );
                            return (failed(reason, None), up_for(up_since, last_ok));
                        }
                    }
                }
                // Only a good round waits the interval; a failed one is confirmed (or
                // cleared) after a short pause, so detection does not take failures ×
                // interval (and never takes longer than with the full interval).
                next_round = if failed_rounds == 0 {
                    round_start + self.interval
                } else {
                    (round_start + self.interval).min(Instant::now() + CONFIRM_PAUSE)
                };
            }
            // No periodic wake-up: ssh's exit arrives as SIGCHLD on the self-pipe and its
            // messages on the stderr pipe, both in this poll (one wake-up per round).
            let sleep = next_round.saturating_duration_since(Instant::now());
            match self.signals.wait(sleep, ssh.stderr_fd()) {
                Some(Event::Stop) => return (Outcome::Stopped, up_for(up_since, last_ok)),
                Some(Event::Reconnect) => {
                    return (Outcome::Reconnect, up_for(up_since, last_ok));
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_the_design_order() {
        let env = |k: &str| match k {
            "RUNTIME_DIRECTORY" => Some("/run/tunnelctl/a:/run/other".to_string()),
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_state_dir(Some(Path::new("/x")), &env, "a", true, 0),
            PathBuf::from("/x")
        );
        assert_eq!(
            resolve_state_dir(None, &env, "a", true, 0),
            PathBuf::from("/run/tunnelctl/a")
        );
        let none = |_: &str| None;
        assert_eq!(
            resolve_state_dir(None, &none, "a/b", true, 0),
            PathBuf::from("/run/tunnelctl/a_b")
        );
        assert_eq!(
            resolve_state_dir(None, &none, "a", false, 1000),
            PathBuf::from("/tmp/tunnelctl-1000/a")
        );
        let user = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".to_string());
        assert_eq!(
            resolve_state_dir(None, &user, "a", false, 1000),
            PathBuf::from("/run/user/1000/tunnelctl/a")
        );
    }
}
