//! "The server is busy" against a real sshd: with `MaxStartups 1:100:1` and one
//! unauthenticated connection held open, sshd drops every further connection before its
//! greeting, as the default `MaxStartups 10:30:100` does to a crowd that reconnects at
//! once. The watchdog's reading of ssh's stderr must call that busy (a short retry), not
//! down (the exponential back-off and the wait for a greeting), and doctor's the same; a
//! server that greets and then hangs up is broken, not busy, for both.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tunnelctl::doctor::SshLog;
use tunnelctl::watchdog::ssh_errors::{SshError, errors_in};

use crate::common::child::{KillOnDrop, wait_exit};
use crate::common::sshd::{Sshd, SshdOptions, free_port};
use crate::common::wait_until;
use crate::common::watchdog_cmd::start_remote_forward_watchdog;

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

/// An sshd that turns every login away while one unauthenticated connection is open
/// (see [`hold_a_startup`]).
fn crowded_sshd(test: &str) -> Option<Sshd> {
    let options = SshdOptions {
        extra_config: vec!["MaxStartups 1:100:1".into()],
        ..SshdOptions::default()
    };
    Sshd::start_with(test, options)
}

/// One unauthenticated connection that sends nothing, held until sshd has greeted it
/// (then sshd has accepted it and counts it among its startups).
fn hold_a_startup(sshd: &Sshd) -> TcpStream {
    // Until sshd greets one: a connection of the rig's (its readiness check) or of an
    // earlier login may still count among sshd's startups for a moment, and then this
    // one is the connection dropped past MaxStartups.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let mut held = TcpStream::connect((sshd.host(), sshd.port())).expect("connect to sshd");
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = Vec::new();
        let mut buf = [0u8; 256];
        while greeting.len() < 4 && Instant::now() < deadline {
            match held.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => greeting.extend_from_slice(&buf[..n]),
            }
        }
        if greeting.starts_with(b"SSH-") {
            return held;
        }
        last = greeting;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "sshd did not greet a held connection within 10 s: {:?}\n{}",
        String::from_utf8_lossy(&last),
        sshd.log()
    );
}

/// A plain login succeeds (within 10 s: until then the rig's own readiness connection
/// may still count among sshd's startups, and with `MaxStartups 1` it turns us away).
fn login_works(sshd: &Sshd) {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(10), || {
        let (code, stderr) = ssh_true(&sshd.ssh_base_args(), sshd.host());
        last = stderr;
        code == Some(0)
    });
    assert!(ok, "a plain login failed: {last}\n{}", sshd.log());
}

/// Doctor's reading of the same stderr: busy or not.
fn doctor_says_busy(stderr: &str) -> bool {
    let mut log = SshLog::default();
    for line in stderr.lines() {
        log.feed(line);
    }
    log.server_busy
}

#[test]
fn a_login_dropped_by_max_startups_reads_as_a_busy_server() {
    let Some(sshd) = crowded_sshd("a_login_dropped_by_max_startups") else {
        return;
    };
    let args = sshd.ssh_base_args();

    // The server works: without a crowd the login succeeds.
    login_works(&sshd);

    let held = hold_a_startup(&sshd);

    let (code, stderr) = ssh_true(&args, sshd.host());
    assert_eq!(code, Some(255), "ssh was not turned away:\n{stderr}");
    let errors = errors_in(&stderr);
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
    assert!(doctor_says_busy(&stderr), "doctor disagrees:\n{stderr}");
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
    let errors = errors_in(&stderr);
    assert_eq!(errors, [SshError::ConnectionRefused], "{stderr}");
    assert!(!doctor_says_busy(&stderr), "{stderr}");
}

/// A server that sends its SSH greeting and then closes: ssh says `Connection closed by
/// ADDR port P` as after a MaxStartups drop, but without the greeting's line before it.
/// Broken, not busy: the watchdog backs off, and doctor agrees.
#[test]
fn a_server_that_greets_then_hangs_up_is_not_busy() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // One connection, bounded: ssh connects once (or the test failed already).
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n");
                    // Let ssh read the greeting and send its own before the close.
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let args: Vec<String> = [
        "-F",
        "/dev/null",
        "-o",
        &format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        &port.to_string(),
        "-l",
        "root",
    ]
    .map(String::from)
    .to_vec();
    let (code, stderr) = ssh_true(&args, "127.0.0.1");
    server.join().unwrap();
    assert_eq!(code, Some(255), "{stderr}");
    assert!(
        stderr.contains(&format!("by 127.0.0.1 port {port}")),
        "ssh did not say the server closed: {stderr}"
    );
    let errors = errors_in(&stderr);
    assert!(
        !errors.iter().any(SshError::is_server_busy),
        "a server that greeted read as busy: {errors:?}\n{stderr}"
    );
    assert!(!doctor_says_busy(&stderr), "doctor: busy\n{stderr}");
}

#[test]
fn a_watchdog_turned_away_pauses_briefly_counts_nothing_and_logs_in_later() {
    let Some(sshd) = crowded_sshd("a_watchdog_turned_away") else {
        return;
    };
    login_works(&sshd);
    let held = hold_a_startup(&sshd);
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("log"));
    let mut wd = start_remote_forward_watchdog(&sshd, "busy", &state, &log, free_port());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // Turned away twice: each time a short pause, no failure counted, no exit.
    assert!(
        wait_until(Duration::from_secs(20), || read_log()
            .contains("turned away 2 time(s) in a row")),
        "{}",
        read_log()
    );
    assert!(wd.0.try_wait().unwrap().is_none(), "exited: {}", read_log());
    let text = std::fs::read_to_string(state.join("state")).unwrap_or_default();
    assert!(text.contains("consecutive_failures=0\n"), "{text}");
    assert!(!read_log().contains("backing off"), "{}", read_log());
    // The crowd is gone: the next try logs in.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(15), || {
            std::fs::read_to_string(state.join("state")).is_ok_and(|t| t.contains("\nstate=up\n"))
        }),
        "{}",
        read_log()
    );
}

#[test]
fn a_watchdog_waits_for_a_login_slot_then_logs_in() {
    use tunnelctl::watchdog::login_slot::{SLOTS, Taken, try_take};
    let Some(sshd) = Sshd::start_default("a_watchdog_waits_for_a_login_slot") else {
        return;
    };
    // Every slot to this server taken, as by a crowd of other watchdogs logging in.
    let destination = format!("{}:{}", sshd.host(), sshd.port());
    let mut held = Vec::new();
    for _ in 0..SLOTS {
        match try_take(&destination) {
            Taken::Slot(slot) => held.push(slot),
            other => panic!("slot {} of {SLOTS}: {other:?}", held.len()),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (state, log) = (dir.path().join("state"), dir.path().join("log"));
    let _wd = start_remote_forward_watchdog(&sshd, "slots", &state, &log, free_port());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let up =
        || std::fs::read_to_string(state.join("state")).is_ok_and(|t| t.contains("\nstate=up\n"));
    // It waits (no ssh) while the slots are held...
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            state.join("state")
        )
        .is_ok_and(
            |t| t.contains("last_error=") && t.contains("state=backing-off")
        )),
        "{}",
        read_log()
    );
    assert!(
        !read_log().contains("connecting (attempt"),
        "{}",
        read_log()
    );
    // ...and logs in once one is free.
    held.pop();
    assert!(wait_until(Duration::from_secs(10), up), "{}", read_log());
    assert!(
        !read_log().contains("logging in without one"),
        "{}",
        read_log()
    );
}
