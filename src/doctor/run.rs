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
use crate::watchdog::probe::{Listener, remote_listener};

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
    /// Per remote forward on the server's default loopback: who answers on its
    /// 127.0.0.1 and its [::1] (a half-bound port is ours on one only).
    pub remote_listeners: Vec<(u16, Listener, Listener)>,
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
    let control = ControlDir::new()?;
    let (mut running, rx) = spawn_verbose(argv, &control.socket())?;
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
        for forward in forwards {
            if let Forward::Remote { bind, port, .. } = forward
                && *port != 0
                && matches!(bind.as_deref(), None | Some("" | "localhost"))
                && run.log.remote_ok.contains(port)
            {
                progress.message(&format!("asking who answers on the server's port {port}"));
                let ask = |host: &str| {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let quiet = Duration::from_secs(1);
                    remote_listener(
                        &control.socket(),
                        host,
                        *port,
                        running.child.id(),
                        quiet,
                        deadline,
                    )
                };
                let (v4, v6) = (ask("127.0.0.1"), ask("::1"));
                run.remote_listeners.push((*port, v4, v6));
            }
        }
    }
    running.stop();
    feed_pending(&rx, &mut run.log);
    Ok(run)
}

/// A private folder (0700) for the run's control socket, through which doctor asks the
/// server who answers on a remote forward's port; removed with what ssh left in it.
struct ControlDir(std::path::PathBuf);

impl ControlDir {
    fn new() -> Result<ControlDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("tunnelctl-doctor-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(ControlDir(dir))
    }

    fn socket(&self) -> std::path::PathBuf {
        self.0.join("ctl")
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Starts `argv` with `-v` and a control socket at `control` in its own process group;
/// its stderr lines arrive on the receiver.
fn spawn_verbose(
    argv: &[String],
    control: &std::path::Path,
) -> Result<(Running, mpsc::Receiver<String>), String> {
    let mut cmd = Command::new(&argv[0]);
    // Before the tunnel's own options: ssh keeps the first value it reads.
    cmd.arg("-v")
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-o"])
        .arg(crate::ssh_path::path_option(
            "ControlPath",
            &control.display().to_string(),
        ))
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
