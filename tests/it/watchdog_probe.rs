//! The probe code in-process against a real ssh with a control socket: 1,000 rounds
//! (alive check + an end-to-end channel per forward) must not grow our open fds or
//! memory, nor the ssh client's fds. Also checks our mux client against OpenSSH 9.2.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{Sshd, free_port};
use common::target::TcpTarget;
use common::wait_until;
use tunnelctl::watchdog::args::SshForward;
use tunnelctl::watchdog::probe::Prober;

fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn vm_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_thousand_probe_rounds_leak_nothing() {
    let Some(sshd) = Sshd::start_default("a_thousand_probe_rounds") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ctl");
    let target = TcpTarget::start(Some(b"SSH-2.0-target\r\n"));
    let (rport, lport) = (free_port(), free_port());
    let mut ssh = Command::new("ssh")
        .args(["-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", ctl.display()))
        .args(["-o", "ControlPersist=no"])
        .args(sshd.ssh_base_args())
        .args(["-N", "-R", &format!("{rport}:127.0.0.1:{}", target.port)])
        .args([
            "-L",
            &format!("127.0.0.1:{lport}:127.0.0.1:{}", target.port),
        ])
        .arg(sshd.host())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let ssh_pid = ssh.id().to_string();
    assert!(
        wait_until(Duration::from_secs(10), || ctl.exists()),
        "no control socket"
    );
    let forwards = vec![
        SshForward::Remote {
            bind: None,
            port: rport,
            host: "127.0.0.1".into(),
            host_port: target.port,
        },
        SshForward::Local {
            bind: "127.0.0.1".into(),
            port: lport,
            host: "127.0.0.1".into(),
            host_port: target.port,
        },
    ];
    let mut prober = Prober::new(ctl.clone(), forwards, Duration::from_secs(2));
    // The -R request may still be in flight right after the socket appears.
    assert!(
        wait_until(Duration::from_secs(5), || prober.round().is_ok()),
        "first round never passed"
    );
    for _ in 0..20 {
        prober.round().unwrap();
    }
    let (fds0, rss0, ssh_fds0) = (fd_count("self"), vm_rss_kib("self"), fd_count(&ssh_pid));
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..1000 {
        let ok = prober.round().unwrap_or_else(|e| panic!("round {i}: {e}"));
        worst = worst.max(ok.latency);
        assert_eq!(
            ok.ssh_pid.to_string(),
            ssh_pid,
            "alive answer names the ssh we run"
        );
    }
    let took = started.elapsed();
    // ssh closes a channel's fds when our side has gone; give it a moment.
    let settled = wait_until(Duration::from_secs(5), || {
        fd_count(&ssh_pid) <= ssh_fds0 + 2
    });
    let (fds1, rss1, ssh_fds1) = (fd_count("self"), vm_rss_kib("self"), fd_count(&ssh_pid));
    eprintln!(
        "1000 probe rounds (alive + -R + -L each) in {took:?} ({:?}/round, worst latency {worst:?}); \
         our fds {fds0} -> {fds1}, our VmRSS {rss0} -> {rss1} KiB, ssh fds {ssh_fds0} -> {ssh_fds1}",
        took / 1000
    );
    assert!(fds1 <= fds0 + 2, "our fds grew {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 1024, "our VmRSS grew {rss0} -> {rss1} KiB");
    assert!(settled, "ssh's fds grew {ssh_fds0} -> {ssh_fds1}");
    let _ = ssh.kill();
    let _ = ssh.wait();
}

#[test]
fn missing_local_listener_fails_and_a_frozen_ssh_times_out() {
    let Some(sshd) = Sshd::start_default("channel_to_a_closed_port") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ctl");
    let mut ssh = Command::new("ssh")
        .args(["-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", ctl.display()))
        .args(sshd.ssh_base_args())
        .args(["-N", sshd.host()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || ctl.exists()));
    // The target answers through the server, but nothing listens on our side.
    let target = TcpTarget::start(Some(b"SSH-2.0-target\r\n"));
    let forwards = vec![SshForward::Local {
        bind: "127.0.0.1".into(),
        port: free_port(),
        host: "127.0.0.1".into(),
        host_port: target.port,
    }];
    let mut prober = Prober::new(ctl.clone(), forwards, Duration::from_secs(1));
    let err = prober.round().unwrap_err();
    assert!(err.contains("local listener"), "{err}");
    // A -L target that refuses is the target's finding, not a failed round: the server
    // could not open the channel (the session calls that degraded). The local listener
    // is still checked, so this round fails on it.
    let forwards = vec![SshForward::Local {
        bind: "127.0.0.1".into(),
        port: free_port(),
        host: "127.0.0.1".into(),
        host_port: free_port(),
    }];
    let err = Prober::new(ctl.clone(), forwards, Duration::from_secs(1))
        .round()
        .unwrap_err();
    assert!(
        err.contains("local listener") && err.forward == Some(0),
        "{err}"
    );
    // A -R channel to a server port where nothing listens: the forward is gone, a
    // failed round (not a target down).
    let forwards = vec![SshForward::Remote {
        bind: None,
        port: free_port(),
        host: "127.0.0.1".into(),
        host_port: target.port,
    }];
    let err = Prober::new(ctl.clone(), forwards, Duration::from_secs(1))
        .round()
        .unwrap_err();
    assert!(err.contains("-R listener is missing"), "{err}");
    // Alive-only prober: works, then times out once ssh is stopped.
    let mut alive = Prober::new(ctl, Vec::new(), Duration::from_millis(500));
    assert!(alive.round().is_ok());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ssh.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let t = Instant::now();
    let err = alive.round().unwrap_err();
    assert!(
        err.contains("alive check") && t.elapsed() < Duration::from_millis(900),
        "{err} after {:?}",
        t.elapsed()
    );
    let _ = ssh.kill();
    let _ = ssh.wait();
}
