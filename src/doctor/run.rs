//! Running ssh once in the foreground: the child in its own process group, its stderr
//! fed to an `SshLog` until the forwards are up, a test connection per local forward.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ssh_log::SshLog;
use crate::model::Forward;
use crate::progress::Progress;

/// The ssh child in its own process group; the group is killed on drop, also on panic.
struct Running {
    child: Child,
}

impl Running {
    fn stop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// What a run produced: the log, whether ssh was still up when we stopped it, the end
/// reason, and per local forward what a test connection saw.
#[derive(Debug, Default)]
pub struct Run {
    pub log: SshLog,
    pub exited: Option<i32>,
    pub timed_out: bool,
    pub local_probes: Vec<(u16, LocalProbe)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalProbe {
    /// The far end sent bytes: data flows end to end.
    Answered,
    /// Connected; nothing came back within the wait (the target may wait for the client).
    Silent,
    /// The server could not open the channel: ssh's reason.
    Refused(String),
    /// Closed without data and no reason from ssh.
    Closed,
    /// Could not even connect to the local listener.
    NoListener(String),
}

/// Runs `argv` (an ssh command line) with `-v` until `forwards` are set up, ssh exits or
/// `timeout` passes; probes local forwards while it runs; then stops it.
pub fn run_ssh(
    argv: &[String],
    forwards: &[Forward],
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Run, String> {
    let (mut running, rx) = spawn_verbose(argv)?;
    let mut run = Run::default();
    let eof = read_until_ready(&mut run, &rx, forwards, timeout, progress);
    if eof || running.child.try_wait().ok().flatten().is_some() {
        let status = running
            .child
            .wait()
            .map_err(|e| format!("waiting for ssh: {e}"))?;
        run.exited = Some(status.code().unwrap_or(-1));
        feed_pending(&rx, &mut run.log);
        return Ok(run);
    }
    if !run.timed_out {
        for forward in forwards {
            if let Forward::Local { bind, port, .. } = forward {
                progress.message(&format!("trying local forward port {port}"));
                let probe = probe_local(bind, *port, &rx, &mut run.log);
                run.local_probes.push((*port, probe));
            }
        }
    }
    running.stop();
    feed_pending(&rx, &mut run.log);
    Ok(run)
}

/// Starts `argv` with `-v` in its own process group; its stderr lines arrive on the
/// receiver.
fn spawn_verbose(argv: &[String]) -> Result<(Running, mpsc::Receiver<String>), String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.arg("-v")
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let mut running = Running { child };
    let stderr = running.child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    // A thread, because std has no timed read on a pipe; it ends at EOF when ssh dies.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((running, rx))
}

/// Feeds ssh's stderr into `run.log` until `forwards` are set up or `timeout` passes
/// (then `run.timed_out`); says on `progress` how far ssh got. True when stderr ended.
fn read_until_ready(
    run: &mut Run,
    rx: &mpsc::Receiver<String>,
    forwards: &[Forward],
    timeout: Duration,
    progress: &mut Progress,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if run.log.ready(forwards) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            run.timed_out = true;
            return false;
        }
        progress.message(if run.log.authenticated.is_some() {
            "setting up forwards"
        } else if run.log.connected {
            "logging in"
        } else {
            "connecting"
        });
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(250))) {
            Ok(line) => run.log.feed(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return true,
        }
    }
}

/// Feeds the lines ssh has already written.
fn feed_pending(rx: &mpsc::Receiver<String>, log: &mut SshLog) {
    while let Ok(line) = rx.try_recv() {
        log.feed(&line);
    }
}

fn loopback_for(bind: &str) -> &str {
    match bind {
        "" | "*" | "0.0.0.0" | "localhost" => "127.0.0.1",
        "::" => "::1",
        other => other,
    }
}

/// Connects to a local forward and waits up to 2 s for the far end: bytes, a refusal
/// reported by ssh, or silence.
fn probe_local(bind: &str, port: u16, rx: &mpsc::Receiver<String>, log: &mut SshLog) -> LocalProbe {
    let host = loopback_for(bind);
    let addr: Option<SocketAddr> = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let Some(addr) = addr else {
        return LocalProbe::NoListener(format!("cannot resolve {host}"));
    };
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => return LocalProbe::NoListener(e.to_string()),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let before = log.open_failed.len();
    let mut buf = [0u8; 64];
    let result = stream.read(&mut buf);
    // ssh logs the channel refusal around the time it closes our socket.
    let deadline = Instant::now() + Duration::from_millis(500);
    while log.open_failed.len() == before && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => log.feed(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(reason) = log.open_failed.get(before) {
        return LocalProbe::Refused(reason.clone());
    }
    match result {
        Ok(0) => LocalProbe::Closed,
        Ok(_) => LocalProbe::Answered,
        Err(_) => LocalProbe::Silent,
    }
}
