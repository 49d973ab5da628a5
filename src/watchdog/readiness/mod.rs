//! What the init system is told, said once: the watchdog says "ready" (the tunnel is
//! proven), "alive" (doing its job, with a status), "status" (a status alone),
//! "waiting" (a back-off, which may extend a start timeout) and "stopping", and the
//! backend of `--readiness` turns that into its supervisor's protocol:
//!
//! | `--readiness`          | backend        | ready                                  | alive, keepalive                       |
//! |------------------------|----------------|----------------------------------------|----------------------------------------|
//! | `sd-notify` (default)  | `sd_notify.rs` | a datagram to `$NOTIFY_SOCKET` if set  | a watchdog ping with the status        |
//! | `s6-fd:N`              | `fd.rs`        | a newline on fd N, then fd N closed    | —                                      |
//! | `openrc-fd:N`          | `fd.rs`        | sd_notify's ready line on fd N, closed | —                                      |
//! | `procd:SVC/INST`       | `procd.rs`     | a ubus `service watchdog` call         | that call every third of the timeout   |
//! | `none`                 | —              | —                                      | —                                      |
//!
//! No protocol's words appear outside its backend. Everything here runs on the main
//! loop's thread: the procd ping is a timed duty of that loop ([`Readiness::keepalive_due`],
//! [`Readiness::keepalive`]), like the `--on-change` runs, not a thread or a process.

mod fd;
pub mod procd;
pub mod sd_notify;
pub mod ubus;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::log;

/// `--readiness`: which protocol tells the supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Spec {
    /// Datagrams to `$NOTIFY_SOCKET` when it is set, nothing otherwise.
    #[default]
    SdNotify,
    /// s6's `notification-fd`: a newline on the fd, then the fd closed.
    S6Fd(i32),
    /// OpenRC's `notify=fd:N` (supervise-daemon `--notify fd:N`).
    OpenRcFd(i32),
    /// procd's per-instance watchdog, pinged over ubus.
    Procd { service: String, instance: String },
    /// Exit codes only (inittab, runit).
    None,
}

/// Parses a `--readiness` value. Pure: whether an fd is open is asked at start.
pub fn parse_spec(value: &str) -> Result<Spec, String> {
    let fd = |n: &str, what: &str| -> Result<i32, String> {
        let fd: i32 = n.parse().map_err(|_| {
            format!("--readiness {value}: `{n}` is not a file descriptor number ({what})")
        })?;
        if fd < 3 {
            return Err(format!(
                "--readiness {value}: fd {fd} is stdin, stdout or stderr; the supervisor's \
                 notification fd is 3 or higher ({what})"
            ));
        }
        Ok(fd)
    };
    if let Some(n) = value.strip_prefix("s6-fd:") {
        return Ok(Spec::S6Fd(fd(
            n,
            "the number in the service directory's notification-fd file",
        )?));
    }
    if let Some(n) = value.strip_prefix("openrc-fd:") {
        return Ok(Spec::OpenRcFd(fd(
            n,
            "the N of the init script's notify=fd:N",
        )?));
    }
    if let Some(names) = value.strip_prefix("procd:") {
        let fits = |s: &str| {
            !s.is_empty() && !s.contains('/') && !s.chars().any(|c| c.is_control() || c == ' ')
        };
        return match names.split_once('/') {
            Some((service, instance)) if fits(service) && fits(instance) => Ok(Spec::Procd {
                service: service.to_string(),
                instance: instance.to_string(),
            }),
            _ => Err(format!(
                "--readiness {value}: write procd:SERVICE/INSTANCE, the init script's name and \
                 the instance's (procd_open_instance NAME), both non-empty, one `/` between them"
            )),
        };
    }
    match value {
        "sd-notify" => Ok(Spec::SdNotify),
        "none" => Ok(Spec::None),
        _ => Err(format!(
            "--readiness: unknown protocol `{value}`; one of sd-notify, s6-fd:N, openrc-fd:N, \
             procd:SERVICE/INSTANCE, none"
        )),
    }
}

/// The shortest `--procd-watchdog`: pings go every third of it, and a back-off wakes the
/// loop every 5 s at least.
pub const PROCD_WATCHDOG_MIN: Duration = Duration::from_secs(15);

/// How `--readiness` and `--procd-watchdog` go together (the parser's cross-check).
pub fn check_pairing(
    spec: &Spec,
    procd_watchdog: Option<Duration>,
    probe_timeout: Duration,
) -> Result<(), String> {
    match (spec, procd_watchdog) {
        (Spec::Procd { .. }, None) => Err(
            "--readiness procd:… needs --procd-watchdog DUR, the TIMEOUT of the init script's \
             `procd_set_param watchdog 1 TIMEOUT` (procd passes the daemon no variable)"
                .into(),
        ),
        (Spec::Procd { .. }, Some(t)) if t < PROCD_WATCHDOG_MIN || t < probe_timeout * 3 => {
            Err(format!(
                "--procd-watchdog {}: at least 15s and 3 × --probe-timeout, so that a probe \
                 round in progress never makes procd restart a working tunnel",
                crate::duration::format_duration(t)
            ))
        }
        (Spec::Procd { .. }, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err("--procd-watchdog goes only with --readiness procd:…".into()),
    }
}

/// The backend behind [`Readiness`].
enum Backend {
    SdNotify(sd_notify::SdNotify),
    Fd(fd::ReadyFd),
    Procd(procd::Pinger),
    Silent,
}

/// The one type through which the watchdog tells its supervisor anything.
pub struct Readiness {
    backend: Backend,
    ready: bool,
}

/// Why [`Readiness::open`] failed: a command line that cannot work (exit 2).
#[derive(Debug)]
pub struct Unusable(pub String);

impl Readiness {
    /// Opens the backend `spec` names. `env` reads the environment (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID` for sd_notify).
    pub fn open(
        spec: &Spec,
        procd_watchdog: Option<Duration>,
        ubus_socket: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Readiness, Unusable> {
        let backend = match spec {
            Spec::SdNotify => Backend::SdNotify(sd_notify::SdNotify::from_env(env)),
            Spec::S6Fd(n) => Backend::Fd(fd::ReadyFd::open(*n, fd::Flavour::S6)?),
            Spec::OpenRcFd(n) => Backend::Fd(fd::ReadyFd::open(*n, fd::Flavour::OpenRc)?),
            Spec::Procd { service, instance } => Backend::Procd(procd::Pinger::new(
                service.clone(),
                instance.clone(),
                procd_watchdog.unwrap_or(PROCD_WATCHDOG_MIN),
                ubus_socket,
            )),
            Spec::None => Backend::Silent,
        };
        Ok(Readiness {
            backend,
            ready: false,
        })
    }

    /// Tells nothing to anyone (tests, and a `none` readiness).
    pub fn silent() -> Readiness {
        Readiness {
            backend: Backend::Silent,
            ready: false,
        }
    }

    /// Whether "ready" was said (once per process).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The longest probe interval the supervisor's watchdog allows, and a sentence
    /// saying why, for the log: systemd's `WatchdogSec` wants two pings per period.
    /// (procd's ping does not ride on probe rounds: see `keepalive`.)
    pub fn max_probe_interval(&self) -> Option<(Duration, String)> {
        match &self.backend {
            Backend::SdNotify(n) => n.max_probe_interval(),
            Backend::Fd(_) | Backend::Procd(_) | Backend::Silent => None,
        }
    }

    /// The tunnel is proven: said once; later calls are [`Readiness::alive`].
    pub fn ready(&mut self, status: &str) {
        if self.ready {
            return self.alive(status);
        }
        self.ready = true;
        let result = match &mut self.backend {
            Backend::SdNotify(n) => n.ready(status),
            Backend::Fd(f) => f.ready(),
            Backend::Procd(p) => p.ping(),
            Backend::Silent => Ok(()),
        };
        warn_on(result);
    }

    /// The watchdog does its job (a probe round ended with a verdict, a wait goes on),
    /// with a status.
    /// Before "ready" only the status goes out: there is no supervisor watchdog to feed.
    pub fn alive(&mut self, status: &str) {
        let result = match &mut self.backend {
            Backend::SdNotify(n) => n.alive(status, self.ready),
            Backend::Fd(_) | Backend::Procd(_) | Backend::Silent => Ok(()),
        };
        warn_on(result);
    }

    /// A status alone (connecting, the server answers again).
    pub fn status(&mut self, status: &str) {
        let result = match &mut self.backend {
            Backend::SdNotify(n) => n.status(status),
            Backend::Fd(_) | Backend::Procd(_) | Backend::Silent => Ok(()),
        };
        warn_on(result);
    }

    /// A back-off with `budget` to go before a start could still complete: before
    /// "ready" the supervisor's start timeout moves (sd_notify), after it this is
    /// [`Readiness::alive`].
    pub fn waiting(&mut self, budget: Duration, status: &str) {
        if self.ready {
            return self.alive(status);
        }
        let result = match &mut self.backend {
            Backend::SdNotify(n) => n.extend_start(budget, status),
            Backend::Fd(_) | Backend::Procd(_) | Backend::Silent => Ok(()),
        };
        warn_on(result);
    }

    /// The watchdog is about to exit, with a status when there is something to say.
    pub fn stopping(&mut self, status: Option<&str>) {
        let result = match &mut self.backend {
            Backend::SdNotify(n) => n.stopping(status),
            Backend::Fd(_) | Backend::Procd(_) | Backend::Silent => Ok(()),
        };
        warn_on(result);
    }

    /// When the main loop must wake for [`Readiness::keepalive`] (procd only).
    pub fn keepalive_due(&self) -> Option<Instant> {
        match &self.backend {
            Backend::Procd(p) => Some(p.next_ping()),
            Backend::SdNotify(_) | Backend::Fd(_) | Backend::Silent => None,
        }
    }

    /// Called after every wake-up of the main loop: sends procd's ping when it is due.
    /// procd's watchdog counts from the instance's start, with or without a tunnel,
    /// so the ping says "this process runs its loop", whatever the tunnel does.
    pub fn keepalive(&mut self) {
        if let Backend::Procd(p) = &mut self.backend
            && Instant::now() >= p.next_ping()
        {
            warn_on(p.ping());
        }
    }
}

fn warn_on(result: Result<(), String>) {
    if let Err(e) = result {
        log::warn(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_with_the_fix() {
        assert_eq!(parse_spec("sd-notify"), Ok(Spec::SdNotify));
        assert_eq!(parse_spec("none"), Ok(Spec::None));
        assert_eq!(parse_spec("s6-fd:3"), Ok(Spec::S6Fd(3)));
        assert_eq!(parse_spec("openrc-fd:4"), Ok(Spec::OpenRcFd(4)));
        assert_eq!(
            parse_spec("procd:tunnel-a/main"),
            Ok(Spec::Procd {
                service: "tunnel-a".into(),
                instance: "main".into()
            })
        );
        for (bad, words) in [
            ("s6-fd:", "not a file descriptor"),
            ("s6-fd:x", "not a file descriptor"),
            ("s6-fd:-1", "stdin, stdout or stderr"),
            ("openrc-fd:1", "stdin, stdout or stderr"),
            ("procd:tunnel-a", "one `/`"),
            ("procd:/main", "one `/`"),
            ("procd:a/", "one `/`"),
            ("procd:a/b/c", "one `/`"),
            ("procd:a b/c", "one `/`"),
            ("systemd", "unknown protocol"),
            ("", "unknown protocol"),
        ] {
            let e = parse_spec(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn procd_needs_its_timeout_and_nothing_else_takes_one() {
        let procd = parse_spec("procd:t/i").unwrap();
        let five = Duration::from_secs(5);
        let e = check_pairing(&procd, None, five).unwrap_err();
        assert!(e.contains("needs --procd-watchdog"), "{e}");
        assert!(check_pairing(&procd, Some(Duration::from_secs(30)), five).is_ok());
        let e = check_pairing(&procd, Some(Duration::from_secs(10)), five).unwrap_err();
        assert!(e.contains("at least 15s"), "{e}");
        let e = check_pairing(
            &procd,
            Some(Duration::from_secs(20)),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(e.contains("3 × --probe-timeout"), "{e}");
        let e = check_pairing(&Spec::S6Fd(3), Some(Duration::from_secs(30)), five).unwrap_err();
        assert!(e.contains("only with --readiness procd"), "{e}");
        assert!(check_pairing(&Spec::SdNotify, None, five).is_ok());
    }

    #[test]
    fn ready_is_said_once_and_waiting_after_it_is_alive() {
        let mut r = Readiness::silent();
        assert!(!r.is_ready());
        r.ready("up");
        assert!(r.is_ready());
        r.ready("up again");
        r.waiting(Duration::from_secs(1), "backing off");
        assert!(r.keepalive_due().is_none());
    }
}
