//! "The server is busy" against a real sshd: with `MaxStartups 1:100:1` and one
//! unauthenticated connection held open, sshd drops every further connection before its
//! greeting, as the default `MaxStartups 10:30:100` does to a crowd that reconnects at
//! once. The watchdog's reading of ssh's stderr must call that busy (a short retry), not
//! down (the exponential back-off and the wait for a greeting).

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tunnelctl::watchdog::ssh_errors::{SshError, classify};

use crate::common::child::{KillOnDrop, wait_exit};
use crate::common::sshd::{Sshd, SshdOptions, free_port};

/// Runs a real `ssh … true` (BatchMode, bounded) and returns its exit code and stderr.
fn ssh_true(args: &[String], host: &str) -> (Option<i32>, String) {
    let child = Command::new("ssh")
        .args(args)
        .args(["-o", "ConnectTimeout=10", host, "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let mut child = KillOnDrop(child);
    let code = wait_exit(&mut child.0, Duration::from_secs(30));
    let mut stderr = String::new();
    if code.is_some() {
        let _ = child.0.stderr.take().unwrap().read_to_string(&mut stderr);
    }
    (code, stderr)
}

fn errors_of(stderr: &str) -> Vec<SshError> {
    stderr.lines().filter_map(classify).collect()
}

#[test]
fn a_login_dropped_by_max_startups_reads_as_a_busy_server() {
    let options = SshdOptions {
        extra_config: vec!["MaxStartups 1:100:1".into()],
        ..SshdOptions::default()
    };
    let Some(sshd) = Sshd::start_with("a_login_dropped_by_max_startups", options) else {
        return;
    };
    let args = sshd.ssh_base_args();

    // The server works: without a crowd the login succeeds.
    let (code, stderr) = ssh_true(&args, sshd.host());
    assert_eq!(code, Some(0), "a plain login failed: {stderr}");

    // One unauthenticated connection that sends nothing, held until sshd has greeted it
    // (then sshd has accepted it and counts it among its startups).
    let mut held = TcpStream::connect((sshd.host(), sshd.port())).expect("connect to sshd");
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 256];
    while greeting.len() < 4 && Instant::now() < deadline {
        match held.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => greeting.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        greeting.starts_with(b"SSH-"),
        "sshd did not greet the held connection: {:?}\n{}",
        String::from_utf8_lossy(&greeting),
        sshd.log()
    );

    let (code, stderr) = ssh_true(&args, sshd.host());
    assert_eq!(code, Some(255), "ssh was not turned away:\n{stderr}");
    let errors = errors_of(&stderr);
    assert!(
        errors.iter().any(SshError::is_server_busy),
        "no line read as a busy server: {errors:?}\n{stderr}"
    );
    assert!(
        !errors
            .iter()
            .any(|e| e.is_no_greeting() || e.is_permanent()),
        "a busy server read as down or as permanent: {errors:?}\n{stderr}"
    );
    assert!(
        sshd.log().contains("past MaxStartups"),
        "sshd did not say it dropped the login:\n{}",
        sshd.log()
    );
    drop(held);

    // Down is not busy: nothing listens on this port.
    let mut down = args.clone();
    let at = down.iter().position(|a| a == "-p").unwrap() + 1;
    down[at] = free_port().to_string();
    let (code, stderr) = ssh_true(&down, sshd.host());
    assert_eq!(code, Some(255), "{stderr}");
    let errors = errors_of(&stderr);
    assert_eq!(errors, [SshError::ConnectionRefused], "{stderr}");
}
