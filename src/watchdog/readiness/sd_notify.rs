//! The sd_notify backend (systemd, and any supervisor that sets `NOTIFY_SOCKET`): the
//! one place that writes its words. A plain `UnixDatagram` sender: `NOTIFY_SOCKET` as a
//! path (`/run/…`) or an abstract socket (`@name`), which the sd-notify 0.5 crate cannot
//! reach. Without `NOTIFY_SOCKET` every call is a no-op: the exit code is then the
//! signal. Abstract sockets exist only on Linux; elsewhere an `@` value is refused with a
//! reason.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The line that says "ready". OpenRC's `notify=fd:N` reads the same line (it waits for
/// a newline; the words are sd_notify's), so its backend writes this too.
pub const READY_LINE: &[u8] = b"READY=1\n";

/// The readiness words of sd_notify, over a [`Notifier`], with systemd's watchdog
/// interval (`WATCHDOG_USEC`) when it set one.
pub struct SdNotify {
    notifier: Notifier,
    watchdog: Option<Duration>,
}

impl SdNotify {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; a `NOTIFY_SOCKET` that
    /// cannot be used is logged and nothing is sent.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> SdNotify {
        let notifier = match Notifier::from_env_value(env("NOTIFY_SOCKET").as_deref()) {
            Ok(n) => n,
            Err(e) => {
                super::log::warn(format_args!("{e}; not notifying the init system"));
                Notifier::disabled()
            }
        };
        let watchdog = watchdog_interval(
            env("WATCHDOG_USEC").as_deref(),
            env("WATCHDOG_PID").as_deref(),
        );
        SdNotify { notifier, watchdog }
    }

    /// Half of `WatchdogSec`, so two pings land in every period.
    pub fn max_probe_interval(&self) -> Option<(Duration, String)> {
        let w = self.watchdog?;
        Some((
            w / 2,
            format!(
                "systemd's WatchdogSec is {} and wants two pings per period",
                crate::duration::format_human(w)
            ),
        ))
    }

    pub fn ready(&self, status: &str) -> Result<(), String> {
        self.notifier
            .send(&["READY=1", &status_line(status), "WATCHDOG=1"])
    }

    /// A status with WATCHDOG=1 once READY=1 was sent: from then on systemd's watchdog
    /// (WatchdogSec=) expects pings, and a status update is this process doing its
    /// job, not a hang. Before READY=1 there is nothing to feed.
    pub fn alive(&self, status: &str, ready: bool) -> Result<(), String> {
        if ready {
            self.notifier.send(&["WATCHDOG=1", &status_line(status)])
        } else {
            self.status(status)
        }
    }

    pub fn status(&self, status: &str) -> Result<(), String> {
        self.notifier.send(&[&status_line(status)])
    }

    /// Before READY=1 systemd still waits for the start (Type=notify):
    /// EXTEND_TIMEOUT_USEC moves its start timeout to now plus `budget`, and is sent
    /// again at every refresh, so a hung watchdog still times out.
    pub fn extend_start(&self, budget: Duration, status: &str) -> Result<(), String> {
        self.notifier.send(&[
            &format!("EXTEND_TIMEOUT_USEC={}", budget.as_micros() as u64),
            &status_line(status),
        ])
    }

    pub fn stopping(&self, status: Option<&str>) -> Result<(), String> {
        match status {
            Some(s) => self.notifier.send(&["STOPPING=1", &status_line(s)]),
            None => self.notifier.send(&["STOPPING=1"]),
        }
    }
}

fn status_line(status: &str) -> String {
    format!("STATUS={status}")
}

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// No init system to tell: every call is a no-op.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// From `$NOTIFY_SOCKET` (`None` or empty: disabled).
    pub fn from_env_value(value: Option<&str>) -> Result<Notifier, String> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        let addr = match value.strip_prefix('@') {
            Some(name) => abstract_address(name),
            None => SocketAddr::from_pathname(value),
        }
        .map_err(|e| format!("NOTIFY_SOCKET={value}: {e}"))?;
        let socket = UnixDatagram::unbound().map_err(|e| format!("notify socket: {e}"))?;
        Ok(Notifier {
            target: Some((socket, addr)),
        })
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram of `KEY=VALUE` lines. Errors are returned, not fatal: the init
    /// system may be gone while we shut down.
    pub fn send(&self, lines: &[&str]) -> Result<(), String> {
        let Some((socket, addr)) = &self.target else {
            return Ok(());
        };
        let text = lines
            .iter()
            .map(|l| l.replace('\n', " "))
            .collect::<Vec<_>>()
            .join("\n");
        socket
            .send_to_addr(text.as_bytes(), addr)
            .map(|_| ())
            .map_err(|e| format!("sd_notify: {e}"))
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// Only Linux has abstract unix sockets; a `@` name elsewhere is a misconfiguration
/// (an init system that sets one runs on Linux).
#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &str) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "an abstract socket (leading `@`) exists only on Linux; set NOTIFY_SOCKET to a socket path",
    ))
}

/// `WATCHDOG_USEC` for us, honouring `WATCHDOG_PID` (set for another process: ignore).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if let Some(pid) = pid.filter(|p| !p.is_empty())
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec))
}

/// The probe interval to use: at most half the systemd watchdog interval, so two pings
/// land in every watchdog period.
pub fn effective_interval(configured: Duration, watchdog: Option<Duration>) -> Duration {
    match watchdog {
        Some(w) if configured > w / 2 => w / 2,
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_path_and_abstract_sockets() {
        use std::os::linux::net::SocketAddrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let name = format!("tunnelctl-unit-{}", std::process::id());
        let abstract_rx =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        for (value, rx) in [
            (path.display().to_string(), &receiver),
            (format!("@{name}"), &abstract_rx),
        ] {
            let n = Notifier::from_env_value(Some(&value)).unwrap();
            n.send(&["READY=1", "STATUS=up 1s"]).unwrap();
            let mut buf = [0u8; 128];
            let len = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"READY=1\nSTATUS=up 1s");
        }
        assert!(!Notifier::from_env_value(None).unwrap().enabled());
        assert!(
            Notifier::from_env_value(Some(""))
                .unwrap()
                .send(&["READY=1"])
                .is_ok()
        );
    }

    /// Every word the backend says, as systemd reads it.
    #[test]
    fn the_backend_says_sd_notify_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let rx = UnixDatagram::bind(&path).unwrap();
        let value = path.display().to_string();
        let env = |k: &str| match k {
            "NOTIFY_SOCKET" => Some(value.clone()),
            "WATCHDOG_USEC" => Some("20000000".into()),
            _ => None,
        };
        let n = SdNotify::from_env(&env);
        let (w, why) = n.max_probe_interval().unwrap();
        assert_eq!(w, Duration::from_secs(10));
        assert!(why.contains("WatchdogSec is 20s"), "{why}");
        let mut got = Vec::new();
        let recv = || {
            let mut buf = [0u8; 256];
            let len = rx.recv(&mut buf).unwrap();
            String::from_utf8(buf[..len].to_vec()).unwrap()
        };
        n.status("connecting (attempt 1)").unwrap();
        got.push(recv());
        n.extend_start(Duration::from_millis(1500), "backing off 1s: x")
            .unwrap();
        got.push(recv());
        n.alive("waiting", false).unwrap();
        got.push(recv());
        n.ready("up 0s, probe 3 ms").unwrap();
        got.push(recv());
        n.alive("up 10s, probe 2 ms", true).unwrap();
        got.push(recv());
        n.stopping(Some("failed: x")).unwrap();
        got.push(recv());
        n.stopping(None).unwrap();
        got.push(recv());
        assert_eq!(
            got,
            [
                "STATUS=connecting (attempt 1)",
                "EXTEND_TIMEOUT_USEC=1500000\nSTATUS=backing off 1s: x",
                "STATUS=waiting",
                "READY=1\nSTATUS=up 0s, probe 3 ms\nWATCHDOG=1",
                "WATCHDOG=1\nSTATUS=up 10s, probe 2 ms",
                "STOPPING=1\nSTATUS=failed: x",
                "STOPPING=1",
            ]
        );
        assert_eq!(READY_LINE, b"READY=1\n");
    }

    #[test]
    fn watchdog_interval_is_halved() {
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("30000000"), None),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some(&me)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("1")), None);
        assert_eq!(watchdog_interval(None, None), None);
        let w = Some(Duration::from_secs(10));
        assert_eq!(
            effective_interval(Duration::from_secs(10), w),
            Duration::from_secs(5)
        );
        assert_eq!(
            effective_interval(Duration::from_secs(3), w),
            Duration::from_secs(3)
        );
    }
}
