//! A half-bound remote forward: another program holds the server's 127.0.0.1:PORT, so
//! sshd (GatewayPorts no: it binds "localhost") listens on [::1]:PORT only and ssh
//! reports success. `doctor` and the watchdog must say so; without that program both
//! pass (the positive controls).

use crate::common;
use crate::firstrun_support;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::watchdog_cmd::start_remote_forward_watchdog;
use firstrun_support::*;

const HALF_BOUND: &str = "belongs to another program (sshd could bind only [::1]:";

/// sshd, IPv6 loopback, and a port free on both loopback addresses.
fn rig(test: &str) -> Option<(Sshd, u16)> {
    if !require(test, &[Prereq::Ipv6Loopback]) {
        return None;
    }
    let sshd = Sshd::start_default(test)?;
    // Free on both addresses, so only the squatter decides what sshd can bind.
    let port = (0..50)
        .map(|_| free_port())
        .find(|&p| {
            TcpListener::bind(("::1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p)).is_ok()
        })
        .expect("no port free on both loopback addresses");
    Some((sshd, port))
}

/// Another program on the server's 127.0.0.1:PORT: it listens and never answers (the
/// kernel completes the handshake, so a connection to it looks accepted).
fn squatter(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).unwrap()
}

fn doctor(sshd: &Sshd, port: u16) -> (Option<i32>, String) {
    let s = setup(
        sshd,
        "half",
        &sshd.client_key(),
        &pinned_line(sshd),
        &format!(
            "      - remote: {port}\n        to: localhost:{}\n",
            sshd.port()
        ),
    );
    let out = tunnelctl(&s.config, &["doctor", "half", "--timeout", "10s"]);
    (out.status.code(), text(&out))
}

#[test]
fn doctor_says_the_servers_ipv4_loopback_port_belongs_to_another_program() {
    let test = "doctor_says_the_servers_ipv4_loopback_port_belongs_to_another_program";
    let Some((sshd, port)) = rig(test) else {
        return;
    };
    let _squatter = squatter(port);
    let (code, out) = doctor(&sshd, port);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "the server's 127.0.0.1:{port} {HALF_BOUND}{port})"
        )),
        "{out}"
    );
    assert!(
        out.contains("stop that program or choose another port"),
        "{out}"
    );
}

/// The other way round: the program holds [::1]:PORT, sshd binds 127.0.0.1 only.
#[test]
fn doctor_says_the_servers_ipv6_loopback_port_belongs_to_another_program() {
    let test = "doctor_says_the_servers_ipv6_loopback_port_belongs_to_another_program";
    let Some((sshd, port)) = rig(test) else {
        return;
    };
    let _squatter = TcpListener::bind(("::1", port)).unwrap();
    let (code, out) = doctor(&sshd, port);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "the server's [::1]:{port} belongs to another program (sshd could bind only 127.0.0.1:{port})"
        )),
        "{out}"
    );
}

#[test]
fn doctor_passes_the_same_forward_without_the_other_program() {
    let test = "doctor_passes_the_same_forward_without_the_other_program";
    let Some((sshd, port)) = rig(test) else {
        return;
    };
    let (code, out) = doctor(&sshd, port);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("the server listens on its port {port} for us")),
        "{out}"
    );
    assert!(!out.contains("another program"), "{out}");
}

fn status(state_dir: &Path) -> (Option<i32>, String) {
    let out = tunnelctl(
        Path::new("/nonexistent.yaml"),
        &["status", "hb", "--state-dir", state_dir.to_str().unwrap()],
    );
    (out.status.code(), text(&out))
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn watchdog_fails_a_forward_whose_ipv4_loopback_port_belongs_to_another_program() {
    let test = "watchdog_fails_a_forward_whose_ipv4_loopback_port_belongs_to_another_program";
    let Some((sshd, port)) = rig(test) else {
        return;
    };
    let _squatter = squatter(port);
    let dir = tempfile::tempdir().unwrap();
    let (state_dir, log) = (dir.path().join("hb"), dir.path().join("hb.log"));
    let _wd = start_remote_forward_watchdog(&sshd, "hb", &state_dir, &log, port);
    let said = format!(
        "the server's 127.0.0.1:{port} {HALF_BOUND}{port}); stop that program or choose another port"
    );
    // Two failed rounds, then the failure is the connection's last error.
    assert!(
        common::wait_until(Duration::from_secs(30), || status(&state_dir)
            .1
            .contains(&said)),
        "status never said it:\n{}\nlog:\n{}",
        status(&state_dir).1,
        log_of(&log)
    );
    let (code, table) = status(&state_dir);
    assert_ne!(code, Some(0), "a half-bound forward is not up:\n{table}");
    eprintln!("{table}");
    assert!(log_of(&log).contains(&said), "{}", log_of(&log));
    // The remedy is a new connection once the program is gone: the watchdog keeps
    // trying (with its back-off) rather than settling for half a forward.
    assert!(
        !log_of(&log).contains("proven end to end"),
        "never proven while half bound:\n{}",
        log_of(&log)
    );
}

#[test]
fn watchdog_proves_the_same_forward_without_the_other_program() {
    let test = "watchdog_proves_the_same_forward_without_the_other_program";
    let Some((sshd, port)) = rig(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (state_dir, log) = (dir.path().join("hb"), dir.path().join("hb.log"));
    let _wd = start_remote_forward_watchdog(&sshd, "hb", &state_dir, &log, port);
    // Up follows a passed round, and the first passed round of a connection is the
    // one that asks who holds the port.
    assert!(
        common::wait_until(Duration::from_secs(30), || status(&state_dir).0 == Some(0)),
        "never up:\n{}\nlog:\n{}",
        status(&state_dir).1,
        log_of(&log)
    );
    let said = log_of(&log);
    assert!(said.contains("proven end to end"), "{said}");
    assert!(!said.contains("another program"), "{said}");
    // Both addresses are ours: each reaches sshd's banner through the tunnel.
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        std::io::Read::read_exact(&mut c, &mut buf).unwrap();
        assert_eq!(&buf, b"SSH-2.0-", "{addr}");
    }
}
