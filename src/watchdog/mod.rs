//! tunnel-watchdog: runs ssh, proves every forward carries data, tells the init system.
//!
//! One process, one thread, no async runtime: the main loop sleeps in `poll` on a
//! signal self-pipe and ssh's stderr pipe between probe rounds.
//!
//! Here: `main` and `run` (options, state dir, control path, readiness, signals, the
//! leftover ssh of a killed watchdog). Then `supervisor.rs`: the state shared across
//! connections; `session.rs`: the one loop as states × events (new event sources go
//! there); `next.rs`: what a connection's outcome leads to; `signals.rs`: the self-pipe; `statedir.rs`: where the
//! state file lives, and reading and writing it.

pub mod args;
pub mod backoff;
pub mod clock;
mod connection;
mod events;
pub mod heard;
mod hook;
pub mod log;
pub mod login_slot;
pub mod mux;
pub mod netevents;
mod next;
pub mod probe;
pub mod process;
pub mod reachability;
pub mod readiness;
pub mod rtt;
mod session;
mod signals;
pub mod ssh_errors;
mod statedir;
mod supervisor;
mod wait;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::duration::format_human;
use crate::state::State;
use crate::state::resolve_state_dir;
use args::{Options, Parsed};
use readiness::Readiness;
use signals::Signals;
pub use statedir::metrics_dir;
use statedir::{name_problem, read_state};
use supervisor::Watchdog;

pub const EXIT_STOPPED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PERMANENT: u8 = 3;

/// How often a back-off refreshes the supervisor's status (and, before ready, its start timeout).
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
    // An args file that cannot be read now may be readable at the next start (exit 1);
    // every other parse error is a usage error (exit 2, not restarted).
    let unreadable = std::cell::Cell::new(false);
    let read_file = |path: &str| {
        args::read_args_file(path).map_err(|e| match e {
            args::ArgsFileError::Unreadable(why) => {
                unreadable.set(true);
                why
            }
            args::ArgsFileError::TooBig(why) => why,
        })
    };
    match args::parse(&argv, &read_file) {
        Ok(Parsed::Help) => {
            print!("{}", args::usage());
            ExitCode::SUCCESS
        }
        Ok(Parsed::Version) => {
            println!("tunnel-watchdog {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run(options)) => ExitCode::from(run(*options)),
        Err(e) if unreadable.get() => {
            eprintln!("tunnel-watchdog: {e}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("tunnel-watchdog: {e}\n(see tunnel-watchdog --help)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

pub fn run(o: Options) -> u8 {
    // `status` and `reconnect` know a live watchdog by its kernel name; started under
    // another one (a renamed copy, an emulator running a router's build) it would read
    // as not running.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_name(c"tunnel-watchdog");
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
    if let Some(problem) = name_problem(&o.name) {
        log::error(&problem);
        return EXIT_USAGE;
    }
    // The supervisor's fd is taken first: checked, and kept from ssh, before anything
    // could be spawned.
    let readiness =
        match Readiness::open(&o.readiness, o.procd_watchdog, o.ubus_socket.clone(), &env) {
            Ok(r) => r,
            Err(readiness::Unusable(why)) => {
                log::error(&why);
                return EXIT_USAGE;
            }
        };
    // Environmental from here on (a read-only or hijacked directory, a full disk): exit 1,
    // so the init system retries; 2 is for a command line that cannot work.
    let state_dir = match process::make_private_dir(&state_dir) {
        Ok(dir) => dir,
        Err(e) => {
            // The default under /tmp can be made first by another user, who cannot be
            // made to give it up by us: name the ways around it.
            let around = if o.state_dir.is_none() && state_dir.starts_with("/tmp") {
                "; or pass --state-dir DIR, set XDG_RUNTIME_DIR, or have root remove it"
            } else {
                ""
            };
            log::error(format_args!("state directory: {e}{around}"));
            return EXIT_FAILED;
        }
    };
    state_dir.clean_stale_temps();
    let runtime = env("XDG_RUNTIME_DIR")
        .filter(|_| !uid.is_root())
        .map(PathBuf::from);
    let ctl = match process::control_path(&state_dir.path, runtime.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            log::error(format_args!("control socket: {e}"));
            return EXIT_FAILED;
        }
    };
    let interval = match readiness.max_probe_interval() {
        Some((max, why)) if o.probe_interval > max => {
            log::info(format_args!(
                "probing every {} instead of {}: {why}",
                format_human(max),
                format_human(o.probe_interval),
            ));
            max
        }
        _ => o.probe_interval,
    };
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
    state.name = o.name.clone();
    let hook = hook::Hook::new(o.on_change.clone(), o.name.clone(), o.on_change_timeout);
    let forward_specs = o.forwards.iter().map(|f| f.describe().into()).collect();
    let mut w = Watchdog {
        hook,
        o,
        forward_specs,
        state_dir,
        ctl,
        readiness,
        signals,
        events: events::Events::open(),
        state,
        interval,
        client_checked: false,
        saved_at: std::cell::Cell::new(Instant::now()),
        touched_at: std::cell::Cell::new(Instant::now()),
    };
    let code = w.run();
    w.hook.finish();
    code
}

/// A previous watchdog killed with SIGKILL leaves its ssh running (holding the remote
/// ports and the control socket). It is recognised by pid and our ControlPath.
fn kill_leftover_ssh(state: &State, ctl: &Path) {
    if state.ssh_pid == 0 {
        return;
    }
    let needle = process::control_path_option(ctl);
    if crate::procinfo::argv(state.ssh_pid).is_some_and(|argv| argv.contains(&needle)) {
        log::warn(format_args!(
            "killing ssh {} left over by an earlier watchdog",
            state.ssh_pid
        ));
        let _ = process::signal_ssh(state.ssh_pid, Signal::SIGKILL);
    }
}

/// `poll`'s time-out for `left`, in whole milliseconds rounded up: rounded down, poll
/// returns up to a millisecond before what it waits for is due, and a loop around it
/// spins through time-outs of 0 until it is.
pub(crate) fn poll_timeout(left: std::time::Duration) -> nix::poll::PollTimeout {
    nix::poll::PollTimeout::try_from(left.as_nanos().div_ceil(1_000_000))
        .unwrap_or(nix::poll::PollTimeout::MAX)
}
