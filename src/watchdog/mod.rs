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
use args::{Options, Parsed};
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
        /// ssh did not reach the server at all (refused, no route, connect time-out).
        network: bool,
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
        // Bounded: each pass either exits or was asked to reconnect by a signal.
        loop {
            if let Some(code) = self.back_off() {
                return code;
            }
            match self.connect_and_watch() {
                (Outcome::Reconnect, _) => {
                    self.state.consecutive_failures = 0;
                    self.state.proven = false;
                    log::info("reconnecting now (SIGHUP/SIGUSR1)");
                    continue;
                }
                (Outcome::Stopped, _) => return self.stopped(),
                (
                    Outcome::Failed {
                        reason,
                        permanent,
                        network,
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
                    self.state.network_error = network;
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
        let until = Instant::now() + wait;
        self.state.state = Phase::BackingOff;
        self.state.backoff_until = log::now_secs() + wait.as_secs();
        self.save();
        let reach = self.reachability_target();
        let mut next_check = Instant::now() + reachability::CHECK_EVERY;
        // Bounded by `until`; STATUS= refreshed every few seconds with the time left.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let status = format!("STATUS=backing off {}: {reason}", format_human(left));
            if self.ready_sent {
                self.notify(&[&status]);
            } else {
                // systemd still waits for READY=1 (Type=notify start). Each
                // EXTEND_TIMEOUT_USEC moves its start timeout to now + N: N covers what
                // is left of the wait, one connect-and-probe budget and a margin, and
                // is sent again at every refresh, so a hung watchdog still times out.
                let budget = left + self.connect_budget() + Duration::from_secs(5);
                self.notify(&[
                    &format!("EXTEND_TIMEOUT_USEC={}", budget.as_micros()),
                    &status,
                ]);
            }
            let mut sleep = left.min(BACKOFF_REFRESH);
            if reach.is_some() {
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
            if let Some((host, port)) = &reach
                && Instant::now() >= next_check
                && Instant::now() < until
            {
                let timeout = reachability::CHECK_TIMEOUT
                    .min(until.saturating_duration_since(Instant::now()));
                if reachability::server_greets(host, *port, timeout) {
                    let left = until.saturating_duration_since(Instant::now());
                    log::info(&format!(
                        "server reachable again: reconnecting ({host} port {port} answered with its SSH greeting, {} of the back-off left)",
                        format_human(left)
                    ));
                    self.notify(&["STATUS=server reachable again: reconnecting"]);
                    break;
                }
                next_check = Instant::now() + reachability::CHECK_EVERY;
            }
        }
        self.state.backoff_until = 0;
        None
    }

    /// Where to try TCP during a back-off, if the last failure was ssh not reaching the
    /// server at all. After other failures (banner time-out, auth, forwards) a TCP connect
    /// would succeed without the retry faring any better, so it is not tried.
    fn reachability_target(&self) -> Option<(String, u16)> {
        if !self.state.network_error {
            return None;
        }
        match reachability::resolve(&self.o.ssh) {
            Ok(reachability::Target::Direct { host, port }) => {
                log::info(&format!(
                    "during the back-off: trying TCP to {host} port {port} every {}",
                    format_human(reachability::CHECK_EVERY)
                ));
                Some((host, port))
            }
            Ok(reachability::Target::Proxied(how)) => {
                log::info(&format!(
                    "not checking whether the server is reachable during the back-off: it is reached through {how}"
                ));
                None
            }
            Err(e) => {
                log::info(&format!(
                    "not checking whether the server is reachable during the back-off: {e}"
                ));
                None
            }
        }
    }

    /// How long ssh may take from start to a first good probe round.
    fn connect_budget(&self) -> Duration {
        self.interval * self.o.probe_failures + self.o.probe_timeout
    }

    /// Also returns how long the connection was up: first to last good probe round.
    fn connect_and_watch(&mut self) -> (Outcome, Option<Duration>) {
        // A socket left by a killed ssh would make the new one refuse to listen.
        let _ = std::fs::remove_file(&self.ctl);
        let argv = process::ssh_argv(&self.o.ssh, &self.ctl);
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
                        network: false,
                    },
                    None,
                );
            }
        };
        self.state.ssh_pid = ssh.pid;
        self.save();
        log::info(&format!(
            "connecting (attempt {attempt}): ssh pid {}",
            ssh.pid
        ));
        self.notify(&[&format!("STATUS=connecting (attempt {attempt})")]);
        let (outcome, up_for) = self.watch(&mut ssh);
        if matches!(outcome, Outcome::Stopped) {
            self.notify(&["STOPPING=1", "STATUS=stopping"]);
        }
        ssh.terminate(KILL_GRACE);
        let _ = std::fs::remove_file(&self.ctl);
        (outcome, up_for)
    }

    fn watch(&mut self, ssh: &mut SshChild) -> (Outcome, Option<Duration>) {
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
        let failed = |reason: String, permanent: bool| Outcome::Failed {
            reason,
            permanent,
            network: false,
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
                let network =
                    !report.errors.is_empty() && report.errors.iter().all(|e| e.is_network());
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
                    network,
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
                return (failed(error.explain(), false), up_for(up_since, last_ok));
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
                    return (failed(reason, false), up_for(up_since, last_ok));
                } else {
                    next_round = now + Duration::from_millis(50);
                }
            }
            if socket_seen.is_some() && now >= next_round {
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
                            return (failed(reason, false), up_for(up_since, last_ok));
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
