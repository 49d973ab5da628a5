//! `tunnelctl doctor`: run the tunnel's exact ssh command once, in the foreground, with
//! `-v` added, and turn what ssh says into plain-words verdicts with the fix.
//!
//! How a forward is known to be accepted without a shell on the server: OpenSSH 9.2's
//! `-v` log says `Local forwarding listening on ADDR port P.` per local/dynamic forward
//! and `remote forward success|failure for: listen [ADDR:]P, …` per remote forward,
//! then `forwarding_success: all expected forwarding replies received`. ssh prints the
//! "listening" line *before* it calls bind() and listen() (checked with strace), so a
//! local forward counts as up only once ssh has also said `Entering interactive
//! session.`, which it says after every local listener is set up. The tunnel's own
//! `ExitOnForwardFailure=yes` makes ssh exit on the first refusal. Parsing the log keeps
//! doctor to one ssh run (no control socket or extra ports); the cost is that those
//! debug strings are OpenSSH's, checked against 9.2 by the tests.
//!
//! A refused remote forward has two causes the client cannot tell apart from the reply
//! alone: the port is taken on the server (often by a dead session of this very tunnel)
//! or the server forbids it. sshd says `Server has disabled port forwarding` when
//! `AllowTcpForwarding` is off; otherwise doctor asks once more for the same forward on
//! port 0 (any free port): accepted means the port itself is taken.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::known_hosts::{self, SshView};
use crate::model::{Forward, Tunnel};
use crate::progress::Progress;
use crate::ssh_command::{PathOverrides, forward_spec, ssh_argv};
use crate::ssh_stderr::{self, Said};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works now, but something will bite later.
    Warn,
    /// The tunnel cannot work until this is fixed.
    Fail,
    /// Advice that cannot be checked from here.
    Note,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Note => "note",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    /// Short subject: `ssh`, `key`, `host key`, `server`, `login`, `forward -R 1234:…`.
    pub subject: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn new(verdict: Verdict, subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            verdict,
            subject: subject.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Renders the checks as aligned lines (pure); colour only when asked.
pub fn render(checks: &[Finding], colour: bool) -> String {
    let width = checks
        .iter()
        .map(|c| c.subject.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let label = format!("{:<4}", c.verdict.label());
        let label = match (colour, c.verdict) {
            (true, Verdict::Ok) => format!("\x1b[32m{label}\x1b[0m"),
            (true, Verdict::Warn) | (true, Verdict::Note) => format!("\x1b[33m{label}\x1b[0m"),
            (true, Verdict::Fail) => format!("\x1b[1;31m{label}\x1b[0m"),
            (false, _) => label,
        };
        out.push_str(&format!("  {label}  {:<width$}  {}\n", c.subject, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("        {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}

// ---------------------------------------------------------------- local checks

/// `ssh -V`: present, and which version.
pub fn check_ssh(program: &str) -> Finding {
    match Command::new(program)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr);
            let version = text.lines().next().unwrap_or("").trim().to_string();
            if version.starts_with("OpenSSH") {
                Finding::new(Verdict::Ok, "ssh", version)
            } else {
                Finding::new(
                    Verdict::Warn,
                    "ssh",
                    format!("`{program} -V` says {version:?}; tunnelctl is tested with OpenSSH"),
                )
            }
        }
        Err(e) => Finding::new(Verdict::Fail, "ssh", format!("cannot run `{program}`: {e}"))
            .fix("install the OpenSSH client: `apt-get install openssh-client`"),
    }
}

/// The identity file exists, is a file we can read, and is not readable by others
/// (ssh ignores such a key: "UNPROTECTED PRIVATE KEY FILE").
pub fn check_identity(identity: Option<&Path>, view: Option<&SshView>) -> Finding {
    let Some(path) = identity else {
        let defaults: Vec<String> = view
            .map(|v| {
                v.identity_files
                    .iter()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let detail = if defaults.is_empty() {
            "no `identity:` set and no default key (~/.ssh/id_*) found: only an ssh agent could log in, and services have none".to_string()
        } else {
            format!("no `identity:` set; ssh will offer {}", defaults.join(", "))
        };
        let verdict = if defaults.is_empty() {
            Verdict::Warn
        } else {
            Verdict::Note
        };
        return Finding::new(verdict, "key", detail)
            .fix("set `identity: /path/to/key` so the service uses a known key (ssh-keygen -t ed25519 -f FILE creates one)");
    };
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Finding::new(Verdict::Fail, "key", format!("{shown}: {e}"))
                .fix(format!("create it (`ssh-keygen -t ed25519 -f {shown}`) and add the .pub line to the server's authorized_keys, or fix `identity:`"));
        }
    };
    if !meta.is_file() {
        return Finding::new(
            Verdict::Fail,
            "key",
            format!("{shown} is not a regular file"),
        )
        .fix("point `identity:` at the private key file");
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Finding::new(
            Verdict::Fail,
            "key",
            format!("{shown} has mode {mode:04o}: readable by group or others, so ssh ignores it (\"UNPROTECTED PRIVATE KEY FILE\")"),
        )
        .fix(format!("chmod 600 {shown}"));
    }
    if let Err(e) = std::fs::File::open(path) {
        return Finding::new(Verdict::Fail, "key", format!("{shown}: cannot read it as uid {}: {e}", nix::unistd::getuid()))
            .fix("run doctor as the user the service runs as, or make the key readable by that user only");
    }
    let owner = if meta.uid() == nix::unistd::getuid().as_raw() {
        "owned by you"
    } else {
        "owned by another user"
    };
    Finding::new(
        Verdict::Ok,
        "key",
        format!("{shown}: present, mode {mode:04o}, {owner}"),
    )
}

/// The host key is pinned in a file ssh reads (`ssh-keygen -F`).
pub fn check_pinned(tunnel: &Tunnel, view: &SshView) -> Finding {
    let name = view.key_name();
    for file in view.all_known_hosts() {
        match known_hosts::pinned_keys(file, &name) {
            Ok(keys) if !keys.is_empty() => {
                return Finding::new(
                    Verdict::Ok,
                    "host key",
                    format!("{name} is pinned in {}", file.display()),
                );
            }
            Ok(_) => {}
            Err(e) => return Finding::new(Verdict::Warn, "host key", e),
        }
    }
    let files: Vec<String> = view
        .user_known_hosts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Finding::new(
        Verdict::Fail,
        "host key",
        format!("host key not pinned: no key for {name} in {}; a service cannot answer ssh's question, so ssh will refuse the server", files.join(", ")),
    )
    .fix(format!("run `tunnelctl trust {}`", tunnel.name))
}

// ---------------------------------------------------------------- ssh's -v log

/// What one ssh run said, distilled from its `-v` stderr (pure parsing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshLog {
    pub connected: bool,
    /// The server sent an SSH banner (`Remote protocol version …`).
    pub banner: bool,
    /// `Host '…' is known and matches the … host key.`
    pub host_key_ok: bool,
    /// The auth method from `Authenticated to … using "publickey".`
    pub authenticated: Option<String>,
    pub host_key_unknown: bool,
    pub host_key_changed: bool,
    pub host_key_failed: bool,
    pub permission_denied: Option<String>,
    pub key_problem: Option<String>,
    pub connect_error: Option<String>,
    pub forwarding_disabled: bool,
    pub remote_ok: Vec<u16>,
    pub remote_failed: Vec<u16>,
    pub all_remote_replied: bool,
    /// Ports ssh announced a local/dynamic listener for. The announcement comes before
    /// bind(): on its own it does not mean the port accepts connections yet.
    pub local_listening: Vec<u16>,
    /// `Entering interactive session.`: ssh is in its main loop, so every local listener
    /// it set up is bound and listening (or ssh already exited on a failed one).
    pub main_loop: bool,
    pub local_bind_failed: Vec<String>,
    pub open_failed: Vec<String>,
}

impl SshLog {
    /// Takes in one stderr line of `ssh -v` (the wording is [`crate::ssh_stderr`]'s).
    pub fn feed(&mut self, line: &str) {
        let l = line.trim_end();
        let Some(said) = ssh_stderr::classify(l) else {
            return;
        };
        match said {
            Said::Connected => self.connected = true,
            Said::Banner => {
                self.connected = true;
                self.banner = true;
            }
            Said::Authenticated { method } => {
                self.connected = true;
                self.authenticated = Some(method.to_string());
            }
            Said::HostKeyMatches => self.host_key_ok = true,
            Said::HostKeyUnknown => self.host_key_unknown = true,
            Said::HostKeyChanged => self.host_key_changed = true,
            Said::HostKeyVerificationFailed => self.host_key_failed = true,
            Said::AuthRefused => self.permission_denied = Some(l.to_string()),
            Said::KeyProblem => {
                self.key_problem.get_or_insert_with(|| l.to_string());
            }
            Said::ResolveFailed
            | Said::ConnectionRefused
            | Said::BannerTimedOut
            | Said::Unreachable
            | Said::ConnectionTimedOut
            | Said::ConnectFailed => {
                self.connect_error
                    .get_or_insert_with(|| l.trim_start_matches("ssh: ").to_string());
            }
            Said::ConnectionClosed if !self.connected => {
                self.connect_error.get_or_insert_with(|| l.to_string());
            }
            Said::ConnectionClosed => {}
            Said::ForwardingDisabled => self.forwarding_disabled = true,
            Said::RemoteForwardOk { port } => self.remote_ok.push(port),
            Said::RemoteForwardFailed { port } => {
                if !self.remote_failed.contains(&port) {
                    self.remote_failed.push(port);
                }
            }
            Said::MainLoop => self.main_loop = true,
            Said::AllRemoteReplied => self.all_remote_replied = true,
            Said::LocalListening { port } => self.local_listening.push(port),
            Said::LocalBindFailed { .. } | Said::LocalListenFailed => {
                self.local_bind_failed.push(l.to_string())
            }
            Said::LocalForwardFailed => {}
            Said::OpenFailed { reason } => self.open_failed.push(reason.to_string()),
        }
    }

    /// Every forward is set up: the point where doctor has seen what it needs.
    pub fn ready(&self, forwards: &[Forward]) -> bool {
        if self.authenticated.is_none() {
            return false;
        }
        let has_remote = forwards.iter().any(|f| matches!(f, Forward::Remote { .. }));
        let locals_up = forwards.iter().all(|f| match f {
            // Not the "listening" line alone: it precedes bind(), and probing then gets
            // "Connection refused" from a listener that is about to exist.
            Forward::Local { port, .. } | Forward::Dynamic { port, .. } => {
                self.main_loop && self.local_listening.contains(port)
            }
            Forward::Remote { .. } => true,
        });
        locals_up && (!has_remote || self.all_remote_replied)
    }
}

// ---------------------------------------------------------------- running ssh

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
    let mut run = Run::default();
    let deadline = Instant::now() + timeout;
    let mut eof = false;
    loop {
        if run.log.ready(forwards) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            run.timed_out = true;
            break;
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
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eof = true;
                break;
            }
        }
    }
    if eof || running.child.try_wait().ok().flatten().is_some() {
        let status = running
            .child
            .wait()
            .map_err(|e| format!("waiting for ssh: {e}"))?;
        run.exited = Some(status.code().unwrap_or(-1));
        while let Ok(line) = rx.try_recv() {
            run.log.feed(&line);
        }
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
    while let Ok(line) = rx.try_recv() {
        run.log.feed(&line);
    }
    Ok(run)
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

// ---------------------------------------------------------------- verdicts

fn forward_subject(forward: &Forward) -> String {
    let (flag, spec) = forward_spec(forward);
    format!("forward {flag} {spec}")
}

/// Turns one run into verdicts (pure). `port_zero_ok` answers, per refused remote port,
/// whether the same forward on port 0 was accepted (None: not tried).
pub fn verdicts(
    tunnel: &Tunnel,
    view: &SshView,
    run: &Run,
    port_zero_ok: &dyn Fn(u16) -> Option<bool>,
) -> Vec<Finding> {
    let log = &run.log;
    let name = &tunnel.name;
    let mut out = Vec::new();
    let place = format!("{} port {}", view.hostname, view.port);

    // Reaching the server.
    if let Some(err) = &log.connect_error {
        out.push(
            Finding::new(Verdict::Fail, "server", format!("cannot reach {place}: {err}"))
                .fix("check `host:`/`port:`, that sshd runs there, and that no firewall drops the connection (try `ssh -v` by hand)"),
        );
        return out;
    }
    if log.host_key_changed {
        out.push(
            Finding::new(Verdict::Fail, "host key", format!("the server's host key is NOT the pinned one for {}: ssh refused the connection", view.key_name()))
                .fix(format!("if the server was reinstalled, confirm its new fingerprint with its administrator, remove the old key (`ssh-keygen -R '{}' -f FILE`) and run `tunnelctl trust {name}`", view.key_name())),
        );
        return out;
    }
    if log.host_key_unknown || log.host_key_failed {
        out.push(
            Finding::new(
                Verdict::Fail,
                "host key",
                format!(
                    "ssh refused the server: host key not pinned for {}",
                    view.key_name()
                ),
            )
            .fix(format!("run `tunnelctl trust {name}`")),
        );
        return out;
    }
    if !log.connected {
        let detail = if run.timed_out {
            format!("no answer from {place} before the timeout")
        } else {
            format!(
                "ssh exited ({}) before reaching {place}",
                run.exited.map_or("?".into(), |c| c.to_string())
            )
        };
        out.push(
            Finding::new(Verdict::Fail, "server", detail)
                .fix("check `host:`/`port:`/`jump:` and the network; `ssh -v` by hand shows more"),
        );
        return out;
    }
    if !log.banner && log.authenticated.is_none() {
        out.push(
            Finding::new(
                Verdict::Fail,
                "server",
                format!(
                    "{place} accepted the connection but no SSH server answered (no SSH banner)"
                ),
            )
            .fix("check `port:`: something other than sshd listens there"),
        );
        return out;
    }
    let matched = if log.host_key_ok {
        "; host key matches the pinned one"
    } else {
        ""
    };
    out.push(Finding::new(
        Verdict::Ok,
        "server",
        format!("reached {place}{matched}"),
    ));

    // Logging in.
    match &log.authenticated {
        Some(method) => out.push(Finding::new(
            Verdict::Ok,
            "login",
            format!("logged in as {} with {method}", view.user),
        )),
        None => {
            let mut detail = format!("the server refused to log in {}", view.user);
            if let Some(problem) = &log.key_problem {
                detail.push_str(&format!(" ({problem})"));
            }
            let check = if log.permission_denied.is_some() || log.key_problem.is_some() {
                Finding::new(Verdict::Fail, "login", detail).fix(format!(
                    "add the public key ({}.pub) to ~{}/.ssh/authorized_keys on the server, and check `user:`",
                    tunnel.identity.as_ref().map_or("~/.ssh/id_ed25519".into(), |p| p.display().to_string()),
                    view.user
                ))
            } else if run.timed_out {
                Finding::new(
                    Verdict::Fail,
                    "login",
                    format!("connected to {place} but login did not finish before the timeout"),
                )
                .fix("raise --timeout, or look at the server's auth log")
            } else {
                Finding::new(
                    Verdict::Fail,
                    "login",
                    format!(
                        "ssh exited ({}) during login",
                        run.exited.map_or("?".into(), |c| c.to_string())
                    ),
                )
                .fix("run the command above with -v by hand")
            };
            out.push(check);
            return out;
        }
    }

    // Each forward.
    for forward in &tunnel.forwards {
        let subject = forward_subject(forward);
        match forward {
            Forward::Remote { port, .. } => {
                if log.remote_ok.contains(port) {
                    out.push(Finding::new(
                        Verdict::Ok,
                        subject,
                        format!("the server listens on its port {port} for us"),
                    ));
                } else if log.remote_failed.contains(port) {
                    if log.forwarding_disabled {
                        out.push(
                            Finding::new(Verdict::Fail, subject, "the server refuses port forwarding for this login (\"Server has disabled port forwarding\")")
                                .fix("on the server set `AllowTcpForwarding yes` (or `remote`) in sshd_config, and make sure the authorized_keys line has no `no-port-forwarding`/`restrict`"),
                        );
                    } else {
                        match port_zero_ok(*port) {
                            Some(true) => out.push(
                                Finding::new(Verdict::Fail, subject, format!("remote port {port} is already taken on the server (the server accepted the same forward on another port)"))
                                    .fix(format!("often a dead session of this tunnel still holds it: wait for the server to notice, and set `ClientAliveInterval 15` + `ClientAliveCountMax 3` in its sshd_config so it notices quickly; if this tunnel is running right now, its own session holds the port (see `tunnelctl status {name}`); `ss -ltnp 'sport = :{port}'` on the server shows the holder")),
                            ),
                            Some(false) => out.push(
                                Finding::new(Verdict::Fail, subject, "the server refuses remote forwards for this login (also on a free port)")
                                    .fix("on the server allow it: `AllowTcpForwarding yes`/`remote`, `PermitListen`, and no `no-port-forwarding` in authorized_keys"),
                            ),
                            None => out.push(
                                Finding::new(Verdict::Fail, subject, format!("the server refused remote port {port} (\"remote port forwarding failed\")"))
                                    .fix("the port is taken on the server or forwarding is not allowed there"),
                            ),
                        }
                    }
                } else if run.exited.is_some() {
                    out.push(Finding::new(
                        Verdict::Warn,
                        subject,
                        "not tried: ssh stopped at an earlier forward",
                    ));
                } else {
                    out.push(
                        Finding::new(
                            Verdict::Fail,
                            subject,
                            "no answer from the server for this forward before the timeout",
                        )
                        .fix("raise --timeout"),
                    );
                }
            }
            Forward::Local { port, .. } | Forward::Dynamic { port, .. } => {
                if let Some(line) = log
                    .local_bind_failed
                    .iter()
                    .find(|l| l.contains(&format!(":{port}")))
                {
                    out.push(
                        Finding::new(Verdict::Fail, subject, format!("this machine's port {port} is taken: {line}"))
                            .fix(format!("stop what listens there (`ss -ltnp 'sport = :{port}'`), or pick another `local:` port; if this tunnel is running right now, it holds the port itself")),
                    );
                } else if !log.local_listening.contains(port) {
                    out.push(Finding::new(
                        Verdict::Warn,
                        subject,
                        "not set up: ssh stopped before this forward",
                    ));
                } else {
                    let probe = run
                        .local_probes
                        .iter()
                        .find(|(p, _)| p == port)
                        .map(|(_, r)| r.clone());
                    out.push(match probe {
                        Some(LocalProbe::Answered) => Finding::new(Verdict::Ok, subject, format!("listening on port {port}; a test connection got an answer through the tunnel")),
                        None => Finding::new(Verdict::Warn, subject, format!("was listening on port {port}; not tried because ssh stopped")),
                        Some(LocalProbe::Silent) => Finding::new(Verdict::Ok, subject, format!("listening on port {port}; the far end accepted a test connection (it sent nothing first)")),
                        Some(LocalProbe::Refused(reason)) if reason.contains("administratively prohibited") => {
                            Finding::new(Verdict::Fail, subject, format!("listening on port {port}, but the server refuses to open the connection ({reason})"))
                                .fix("on the server set `AllowTcpForwarding yes` (or `local`) and check `PermitOpen`; remove `no-port-forwarding`/`restrict` from the authorized_keys line")
                        }
                        Some(LocalProbe::Refused(reason)) => Finding::new(Verdict::Fail, subject, format!("listening on port {port}, but the server cannot reach the target ({reason})"))
                            .fix("check the `to:` host and port, as seen from the server"),
                        Some(LocalProbe::Closed) => Finding::new(Verdict::Warn, subject, format!("listening on port {port}; the test connection was closed without data"))
                            .fix("check the `to:` target is up"),
                        Some(LocalProbe::NoListener(e)) => Finding::new(Verdict::Fail, subject, format!("ssh said it listens on port {port}, but connecting failed: {e}")),
                    });
                }
            }
        }
    }

    if tunnel
        .forwards
        .iter()
        .any(|f| matches!(f, Forward::Remote { .. }))
    {
        out.push(
            Finding::new(Verdict::Note, "server keepalive", "a remote port stays taken until the server notices a dead session; tunnelctl cannot read the server's settings")
                .fix("in the server's sshd_config: `ClientAliveInterval 15` and `ClientAliveCountMax 3` (then `systemctl reload ssh`), so a reconnect finds the port free within ~45 s"),
        );
    }
    out
}

/// Asks the server for `forward` on port 0 (any free port): accepted means the original
/// port was merely taken.
fn remote_on_port_zero(
    tunnel: &Tunnel,
    forward: &Forward,
    timeout: Duration,
    progress: &mut Progress,
) -> Option<bool> {
    let Forward::Remote { bind, to, .. } = forward else {
        return None;
    };
    let mut probe = tunnel.clone();
    probe.forwards = vec![Forward::Remote {
        bind: bind.clone(),
        port: 0,
        to: to.clone(),
    }];
    let argv = ssh_argv(&probe, &PathOverrides::default());
    progress.message("asking for the same forward on a free port");
    let run = run_ssh(&argv, &probe.forwards, timeout, progress).ok()?;
    if run.log.remote_ok.contains(&0) {
        Some(true)
    } else if run.log.remote_failed.contains(&0) {
        Some(false)
    } else {
        None
    }
}

/// All checks for one tunnel, in order. The ssh run is skipped only when ssh is missing.
pub fn diagnose(
    tunnel: &Tunnel,
    timeout: Duration,
    progress: &mut Progress,
) -> (Vec<String>, Vec<Finding>) {
    let argv = ssh_argv(tunnel, &PathOverrides::default());
    let mut checks = vec![check_ssh(&argv[0])];
    if checks[0].verdict == Verdict::Fail {
        return (argv, checks);
    }
    let view = match known_hosts::ssh_g(&argv) {
        Ok(v) => v,
        Err(e) => {
            checks.push(
                Finding::new(Verdict::Fail, "ssh options", e)
                    .fix("fix `ssh_options:` in the configuration"),
            );
            return (argv, checks);
        }
    };
    checks.push(check_identity(tunnel.identity.as_deref(), Some(&view)));
    checks.push(check_pinned(tunnel, &view));
    let run = match run_ssh(&argv, &tunnel.forwards, timeout, progress) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Finding::new(Verdict::Fail, "ssh", e));
            return (argv, checks);
        }
    };
    let mut retried: Vec<(u16, Option<bool>)> = Vec::new();
    if !run.log.forwarding_disabled {
        for forward in &tunnel.forwards {
            if let Forward::Remote { port, .. } = forward
                && run.log.remote_failed.contains(port)
            {
                retried.push((
                    *port,
                    remote_on_port_zero(tunnel, forward, timeout, progress),
                ));
            }
        }
    }
    let lookup = |port: u16| {
        retried
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, r)| *r)
    };
    let pinned_failed = checks
        .iter()
        .any(|c| c.subject == "host key" && c.verdict == Verdict::Fail);
    // "not pinned" was already said by check_pinned; ssh's refusal would say it twice.
    checks.extend(
        verdicts(tunnel, &view, &run, &lookup)
            .into_iter()
            .filter(|c| !(pinned_failed && c.subject == "host key")),
    );
    (argv, checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parsing_reads_openssh_9_2_lines() {
        let mut log = SshLog::default();
        for line in [
            "debug1: Connection established.",
            "Authenticated to 127.0.0.1 ([127.0.0.1]:42222) using \"publickey\".",
            "debug1: Local forwarding listening on 127.0.0.1 port 43334.",
            "debug1: remote forward success for: listen 43333, connect localhost:42222",
            "debug1: remote forward failure for: listen 127.0.0.1:43335, connect localhost:42222",
            "Error: remote port forwarding failed for listen port 43335",
            "debug1: forwarding_success: all expected forwarding replies received",
            "channel 1: open failed: administratively prohibited: open failed",
        ] {
            log.feed(line);
        }
        assert!(log.connected);
        assert_eq!(log.authenticated.as_deref(), Some("publickey"));
        assert_eq!(log.local_listening, vec![43334]);
        assert_eq!(log.remote_ok, vec![43333]);
        assert_eq!(log.remote_failed, vec![43335]);
        assert!(log.all_remote_replied);
        assert_eq!(
            log.open_failed,
            vec!["administratively prohibited: open failed".to_string()]
        );
    }

    /// OpenSSH 9.2 order for `-L` (strace: write "listening", then bind, listen, then
    /// "new port-listener", …, "Entering interactive session."). Ready must wait for the
    /// last one: a probe after the first line alone can hit a port nobody listens on yet.
    #[test]
    fn a_local_forward_is_ready_only_after_ssh_enters_its_main_loop() {
        let forwards = vec![Forward::Local {
            bind: "127.0.0.1".into(),
            port: 43334,
            to: crate::model::Endpoint {
                host: "localhost".into(),
                port: 22,
            },
        }];
        let mut log = SshLog::default();
        for line in [
            "Authenticated to 127.0.0.1 ([127.0.0.1]:42222) using \"publickey\".",
            "debug1: Local connections to 127.0.0.1:43334 forwarded to remote address localhost:22",
            "debug1: Local forwarding listening on 127.0.0.1 port 43334.",
            "debug1: channel 0: new port-listener [port listener] (inactive timeout: 0)",
            "debug1: Requesting no-more-sessions@openssh.com",
        ] {
            log.feed(line);
            assert!(!log.ready(&forwards), "ready too early, at {line:?}");
        }
        log.feed("debug1: Entering interactive session.");
        assert!(log.ready(&forwards));
    }

    #[test]
    fn render_aligns_and_shows_fixes() {
        let checks = vec![
            Finding::new(Verdict::Ok, "ssh", "OpenSSH_9.2p1"),
            Finding::new(Verdict::Fail, "host key", "not pinned").fix("run `tunnelctl trust x`"),
        ];
        let text = render(&checks, false);
        assert!(text.contains("  ok    ssh       OpenSSH_9.2p1\n"), "{text}");
        assert!(text.contains("  FAIL  host key  not pinned\n"), "{text}");
        assert!(text.contains("fix: run `tunnelctl trust x`"), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
