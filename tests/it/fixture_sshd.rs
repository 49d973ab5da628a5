//! Checks the shared real-sshd fixture itself: login with the throwaway keys, the
//! process layout it documents, stop/start on the same port, and the notify receiver.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::sshd::{Sshd, state_of};
use common::{NotifyReceiver, wait_until};

#[test]
fn sshd_accepts_the_throwaway_key_and_restarts_on_the_same_port() {
    let Some(mut sshd) = Sshd::start_default("sshd_accepts_the_throwaway_key") else {
        return;
    };
    let run = |sshd: &Sshd| {
        Command::new("ssh")
            .args(sshd.ssh_base_args())
            .args([sshd.host(), "echo", "hello-from-sshd"])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    };
    let out = run(&sshd);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-from-sshd"),
        "ssh failed: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );

    // A long-running session shows up as monitor + session process.
    let mut long = Command::new("ssh")
        .args(sshd.ssh_base_args())
        .args(["-N", sshd.host()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let session = sshd
        .wait_for_session(Duration::from_secs(10))
        .expect("a session process");
    let session_pid = session.session.unwrap();
    assert!(
        common::sshd::cmdline(session_pid).starts_with("sshd: root"),
        "{}",
        common::sshd::cmdline(session_pid)
    );
    assert_eq!(
        session.connection, session_pid,
        "root logins keep the connection process"
    );

    // Freezing the session process freezes that connection: its client's keepalives go
    // unanswered and the client gives up, while the listener still serves new logins.
    // Taken before the spawn: the new session may appear before the next line runs.
    let before = sshd.session_pids();
    // Frozen only once the client is logged in (LocalCommand runs then): a client still
    // in its key exchange or authentication sends no keepalives and would wait forever.
    let marks = tempfile::tempdir().unwrap();
    let logged_in = marks.path().join("logged-in");
    let mut watched = common::child::KillOnDrop(
        Command::new("ssh")
            .args(sshd.ssh_base_args())
            .args([
                "-N",
                "-o",
                "ServerAliveInterval=1",
                "-o",
                "ServerAliveCountMax=2",
                "-o",
                "PermitLocalCommand=yes",
                "-o",
                &format!("LocalCommand=touch {}", logged_in.display()),
                sshd.host(),
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || logged_in.exists()),
        "the second client did not log in; sshd log:\n{}",
        sshd.log()
    );
    // The new connection is the one not there before, once it has its session process.
    // Not by counting: the first client's connection may still be on its way out, and a
    // connection's entry changes while its session process exits.
    let mut target = None;
    wait_until(Duration::from_secs(10), || {
        target = sshd
            .session_pids()
            .into_iter()
            .find(|s| s.session.is_some() && before.iter().all(|b| b.connection != s.connection));
        target.is_some()
    });
    let target = target.unwrap_or_else(|| {
        panic!(
            "second session did not appear: {:?} (before: {before:?})",
            sshd.session_pids()
        )
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(target.session.unwrap()),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || watched
            .0
            .try_wait()
            .unwrap()
            .is_some()),
        "client did not notice the frozen session"
    );
    eprintln!(
        "fixture: ssh keepalive 1s x 2 noticed a frozen server session after {:?}",
        started.elapsed()
    );
    assert!(
        run(&sshd).status.success(),
        "listener still serves while one session is frozen"
    );

    let port = sshd.port();
    sshd.stop();
    assert_eq!(
        state_of(session_pid).filter(|&s| s != 'Z'),
        None,
        "session survived stop()"
    );
    assert!(
        wait_until(Duration::from_secs(5), || long
            .try_wait()
            .unwrap()
            .is_some()),
        "client noticed"
    );
    sshd.start();
    assert_eq!(sshd.port(), port);
    let out = run(&sshd);
    assert!(
        out.status.success(),
        "after restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn notify_receiver_records_path_and_abstract_datagrams() {
    for receiver in [NotifyReceiver::path(), NotifyReceiver::abstract_name()] {
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let value = receiver.env_value().to_string();
        if let Some(name) = value.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            sock.send_to_addr(b"READY=1\nSTATUS=up", &addr).unwrap();
        } else {
            sock.send_to(b"READY=1\nSTATUS=up", &value).unwrap();
        }
        let got = receiver
            .wait_for(Duration::from_secs(5), "READY=1")
            .expect("datagram");
        assert_eq!(got.value("STATUS"), Some("up"));
        assert_eq!(receiver.statuses(), vec!["up".to_string()]);
    }
}
