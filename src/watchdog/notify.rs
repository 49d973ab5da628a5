//! sd_notify sender over a plain `UnixDatagram`: `NOTIFY_SOCKET` as a path (`/run/…`)
//! or an abstract socket (`@name`), which the sd-notify 0.5 crate cannot reach.
//! Without `NOTIFY_SOCKET` every call is a no-op: the exit code is then the signal.
//! Abstract sockets exist only on Linux; elsewhere an `@` value is refused with a reason.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

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
