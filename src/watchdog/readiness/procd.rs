//! procd's per-instance watchdog (`procd_set_param watchdog 1 TIMEOUT`): procd restarts
//! the instance when no ping came for TIMEOUT seconds, counting from the instance's
//! start. The ping is `ubus call service watchdog '{"name":…,"instance":…}'`, spoken
//! over ubusd's socket ([`super::ubus`]) rather than by running `ubus`: one connection,
//! three short messages every third of the timeout, no process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ubus;

/// A ping gets at most this long (connect, lookup, call); procd answers in
/// milliseconds, and the main loop must not wait on a stuck ubusd.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Pinger {
    service: String,
    instance: String,
    every: Duration,
    /// `--ubus-socket`; `None`: [`ubus::SOCKETS`], the first that exists.
    socket: Option<PathBuf>,
    next: Instant,
    /// The last ping failed (logged once per run of failures).
    failing: bool,
}

impl Pinger {
    pub fn new(
        service: String,
        instance: String,
        timeout: Duration,
        socket: Option<PathBuf>,
    ) -> Pinger {
        Pinger {
            service,
            instance,
            every: timeout / 3,
            socket,
            // From the start: procd's timer runs from the instance's start.
            next: Instant::now(),
            failing: false,
        }
    }

    pub fn next_ping(&self) -> Instant {
        self.next
    }

    /// One ping now; the next is due a third of the timeout later, whatever this one
    /// did (a failed ping is retried then, and procd's timeout covers two misses).
    pub fn ping(&mut self) -> Result<(), String> {
        self.next = Instant::now() + self.every;
        let socket = self.socket.clone().unwrap_or_else(default_socket);
        let result = ubus::call(
            &socket,
            "service",
            "watchdog",
            &[("name", &self.service), ("instance", &self.instance)],
            PING_TIMEOUT,
        );
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                super::log::info("procd's watchdog is pinged again");
                Ok(())
            }
            Ok(()) => Ok(()),
            // Said once per run of failures: the log of a router is small.
            Err(_) if self.failing => Ok(()),
            Err(e) => {
                self.failing = true;
                Err(format!(
                    "cannot ping procd's watchdog for {}/{} (procd will restart this \
                     instance if this goes on): {e}",
                    self.service, self.instance
                ))
            }
        }
    }
}

fn default_socket() -> PathBuf {
    ubus::SOCKETS
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .unwrap_or(Path::new(ubus::SOCKETS[0]))
        .to_path_buf()
}
