//! A tunnel installed for SysV or BusyBox init and run by it, and the steps the SysV and
//! BusyBox tunnel tests share: the tunnel up, the watchdog killed and respawned (the ssh
//! frozen and replaced: [`Supervised::freeze_ssh`]), and a teardown that leaves nothing
//! behind.

use std::time::{Duration, Instant};

use super::inittab_init::{Flavor, InittabInit};
use super::prereq::{Prereq, require};
use super::sshd::Sshd;
use super::supervised::Supervised;
use super::tunnel_env::{
    EchoServer, Server, Timing, alive, children_running, free_port, inittab_watchdog, install,
    sigkill, wait_roundtrip, wait_ssh_child, write_config,
};
use super::wait_until;

/// A tunnel installed for SysV or BusyBox init under a temporary root, with its sshd
/// fixture and echo server, and the init running (see [`super::inittab_init`]).
pub struct InittabTunnel {
    // Field order is drop order: init (and with it the watchdog and ssh) first.
    pub init: InittabInit,
    pub sshd: Sshd,
    /// The forward's target: held, never read.
    pub _echo: EchoServer,
    pub lport: u16,
    /// The inittab id, from the installed line.
    pub id: String,
    pub root: tempfile::TempDir,
    /// Which init runs it (names the progress lines).
    pub flavor: Flavor,
}

pub const TUNNEL_NAME: &str = "itest";

impl InittabTunnel {
    /// Installs with `tunnelctl install --target TARGET --root ROOT` into an existing
    /// minimal inittab and starts the init. `None`: skipped (fixture prerequisites).
    pub fn start(test: &str, flavor: Flavor, timing: &Timing) -> Option<InittabTunnel> {
        let sshd = Sshd::start_default(test)?;
        let echo = EchoServer::start();
        let lport = free_port();
        let root = super::temp_dir("itest-inittab");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let (target, existing) = match flavor {
            Flavor::Sysv => ("inittab", "# minimal SysV inittab\nid:2:initdefault:\n"),
            Flavor::Busybox => ("busybox", "# minimal BusyBox inittab\n"),
        };
        std::fs::write(etc.join("inittab"), existing).unwrap();
        let (key, known_hosts) = (sshd.client_key(), sshd.known_hosts());
        let server = Server {
            port: sshd.port(),
            identity: &key,
            known_hosts: &known_hosts,
        };
        // The config lives outside ROOT: only what install writes goes into the overlay.
        let config = write_config(sshd.dir(), TUNNEL_NAME, &server, lport, echo.port(), timing);
        install(&config, TUNNEL_NAME, target, root.path(), &[]);
        let inittab = std::fs::read_to_string(etc.join("inittab")).unwrap();
        assert!(
            inittab.starts_with(existing),
            "install did not keep the existing inittab:\n{inittab}"
        );
        let line = inittab
            .lines()
            .find(|l| l.contains("tunnel-watchdog") && !l.starts_with('#'))
            .unwrap_or_else(|| panic!("no watchdog line in the installed inittab:\n{inittab}"));
        let id = line
            .split("--args-file /etc/tunnelctl/run/")
            .nth(1)
            .and_then(|r| r.strip_suffix(".args"))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_string();
        match flavor {
            Flavor::Sysv => assert!(line.starts_with(&format!("{id}:2345:respawn:")), "{line}"),
            Flavor::Busybox => assert!(line.starts_with("::respawn:"), "{line}"),
        }
        assert!(
            etc.join(format!("tunnelctl/run/{id}.args")).is_file(),
            "args file missing"
        );
        let init = InittabInit::start(flavor, root.path());
        Some(InittabTunnel {
            init,
            sshd,
            _echo: echo,
            lport,
            id,
            root,
            flavor,
        })
    }

    /// The watchdog's log (`/var/log/tunnelctl/ID.log` inside: the /var overlay's upper dir).
    pub fn log(&self) -> String {
        std::fs::read_to_string(
            self.root
                .path()
                .join(format!("var/log/tunnelctl/{}.log", self.id)),
        )
        .unwrap_or_default()
    }

    /// Everything useful when a check fails.
    pub fn report(&self) -> String {
        format!(
            "processes: {:?}\nconsole:\n{}\nwatchdog log:\n{}\nsshd log (tail):\n{}",
            self.init.processes(),
            self.init.console(),
            self.log(),
            self.sshd
                .log()
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Pids of running watchdogs (the init's children running our binary).
    pub fn watchdogs(&self) -> Vec<i32> {
        children_running(self.init.pid(), inittab_watchdog())
    }

    /// Waits (bounded) for exactly one watchdog other than `not` and returns it.
    pub fn wait_watchdog(&self, not: Option<i32>, timeout: Duration) -> i32 {
        let mut found = Vec::new();
        let ok = wait_until(timeout, || {
            found = self.watchdogs();
            found.len() == 1 && Some(found[0]) != not
        });
        assert!(
            ok,
            "expected one new watchdog (not {not:?}), found {found:?}\n{}",
            self.report()
        );
        found[0]
    }

    /// The opening of the tunnel tests: their prerequisites, [`InittabTunnel::start`],
    /// and data through the tunnel within 30 s. `None`: skipped.
    pub fn up(test: &str, flavor: Flavor, timing: &Timing) -> Option<InittabTunnel> {
        if !require(test, &[flavor.prereqs(), &[Prereq::Sshd]].concat()) {
            return None;
        }
        let started = Instant::now();
        let t = InittabTunnel::start(test, flavor, timing)?;
        wait_roundtrip(t.lport, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("tunnel never came up: {e}\n{}", t.report()));
        eprintln!(
            "{}: init start -> tunnel carrying data after {:?}",
            t.label(),
            started.elapsed()
        );
        Some(t)
    }

    /// Kills the (only) watchdog: init respawns it; the new one removes the orphaned ssh
    /// (which still holds the forward's port) and the tunnel comes back. The orphaned ssh
    /// keeps forwarding until the new watchdog kills it: only data that goes through the
    /// new ssh counts. Returns the new watchdog.
    pub fn kill_watchdog(&self) -> i32 {
        let watchdog = self.wait_watchdog(None, Duration::from_secs(5));
        let ssh =
            wait_ssh_child(watchdog, Duration::from_secs(5)).expect("the watchdog runs no ssh");
        sigkill(watchdog);
        let killed = Instant::now();
        let watchdog2 = self.wait_watchdog(Some(watchdog), Duration::from_secs(10));
        assert!(
            wait_until(Duration::from_secs(10), || !alive(ssh)),
            "the orphaned ssh {ssh} is still running\n{}",
            self.report()
        );
        let new_ssh = wait_ssh_child(watchdog2, Duration::from_secs(10))
            .expect("the new watchdog runs no ssh");
        let working = self.wait_back(Duration::from_secs(30), "the watchdog was killed");
        assert!(alive(new_ssh));
        eprintln!(
            "{}: watchdog killed -> tunnel carrying data through a new ssh after {:?}",
            self.label(),
            working - killed
        );
        watchdog2
    }

    /// Starts the stopped sshd again: how long until data went through again (within
    /// `timeout`, else a panic naming what came `after`).
    pub fn server_returns(&mut self, timeout: Duration, after: &str) -> Duration {
        self.sshd.start();
        let back = Instant::now();
        self.wait_back(timeout, after) - back
    }

    /// Drops it all: SIGKILL to PID 1 takes the namespace with it, so the init, the
    /// watchdogs running now and the processes `also` must be gone.
    pub fn tear_down(self, also: &[i32]) {
        let mut pids = self.watchdogs();
        pids.extend_from_slice(also);
        pids.push(self.init.pid());
        drop(self);
        for pid in pids {
            assert!(!alive(pid), "{pid} survived the teardown");
        }
    }
}

impl Supervised for InittabTunnel {
    fn label(&self) -> &'static str {
        match self.flavor {
            Flavor::Sysv => "sysv",
            Flavor::Busybox => "busybox",
        }
    }

    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String> {
        wait_roundtrip(self.lport, timeout)
    }

    fn report(&self) -> String {
        InittabTunnel::report(self)
    }

    /// The watchdog exits 1 and init respawns it.
    fn wait_replaced(&self, old: i32) -> i32 {
        self.wait_watchdog(Some(old), Duration::from_secs(20))
    }
}
