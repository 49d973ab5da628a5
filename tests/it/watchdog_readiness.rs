//! `--readiness` beyond sd_notify, seen by what reads it: Debian's s6 (`s6-svscan` on a
//! temporary scan directory, `s6-svwait -U`), a pipe as OpenRC's supervise-daemon holds
//! it, and a fake ubusd that parses the procd pings as ubusd would and answers them.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::child::{KillOnDrop, StopOnDrop, wait_exit};
use crate::common::prereq::{Prereq, require};
use crate::common::sshd::{Sshd, free_port};
use crate::common::watchdog_cmd::{remote_forward_ssh_args, state_log_and_ssh};
use crate::common::{copy_by_cp, temp_dir, wait_until};

fn watchdog() -> &'static str {
    env!("CARGO_BIN_EXE_tunnel-watchdog")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The `state=` line of a state file.
fn phase(state_dir: &Path) -> String {
    read(&state_dir.join("state"))
        .lines()
        .find_map(|l| l.strip_prefix("state=").map(str::to_string))
        .unwrap_or_default()
}

/// The server's banner through the `-R` forward on the server's `port`.
fn banner_through(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A word for a POSIX shell, single-quoted.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The watchdog command line of these tests: a `-R` forward back to sshd itself, 1 s
/// probes, `extra` options first.
fn watchdog_argv(sshd: &Sshd, dir: &Path, remote_port: u16, extra: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(watchdog());
    cmd.args([
        "--name",
        "ready",
        "--probe-interval",
        "1s",
        "--probe-timeout",
        "1s",
    ])
    .args(extra);
    let forward = format!("{remote_port}:localhost:{}", sshd.port());
    state_log_and_ssh(
        &mut cmd,
        &dir.join("state"),
        &dir.join("log"),
        remote_forward_ssh_args(sshd, &forward),
    );
    std::iter::once(watchdog().to_string())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect()
}

/// s6-svscan and its supervisors, ended on drop: every service down and its supervisor
/// gone (`s6-svc -dx`), then the scanner told to exit, then killed by pid if it is
/// still there.
struct Scanner {
    scan: PathBuf,
    child: KillOnDrop,
}

impl Drop for Scanner {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.scan) {
            for e in entries.flatten() {
                let _ = Command::new("s6-svc")
                    .arg("-dx")
                    .arg(e.path())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = Command::new("s6-svscanctl")
            .arg("-t")
            .arg(&self.scan)
            .stderr(Stdio::null())
            .status();
        wait_exit(&mut self.child.0, Duration::from_secs(10));
    }
}

/// s6 starts the watchdog from a service directory whose `notification-fd` holds 3;
/// `s6-svwait -U` returns once the watchdog wrote its newline, which is after the state
/// file says `up` (the tunnel proven end to end), and the forward carries the server's
/// banner then. s6-svstat shows the service ready.
#[test]
fn s6_svwait_returns_once_the_tunnel_is_proven() {
    let test = "s6_svwait_returns_once_the_tunnel_is_proven";
    if !require(test, &[Prereq::Root, Prereq::S6]) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let dir = temp_dir("s6-ready");
    let scan = dir.path().join("scan");
    let service = scan.join("tunnel-ready");
    std::fs::create_dir_all(&service).unwrap();
    let remote_port = free_port();
    let argv = watchdog_argv(&sshd, dir.path(), remote_port, &["--readiness", "s6-fd:3"]);
    let script = format!(
        "#!/bin/sh\nexec 2>&1\nexec {}\n",
        argv.iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Written here, put in place by cp: a file this process wrote can be "busy" for an
    // exec while another test thread forks.
    let draft = dir.path().join("run.draft");
    std::fs::write(&draft, script).unwrap();
    copy_by_cp(&draft, &service.join("run"));
    std::fs::set_permissions(
        service.join("run"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(service.join("notification-fd"), "3\n").unwrap();

    let started = Instant::now();
    let child = Command::new("s6-svscan")
        .arg(&scan)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("s6-svscan");
    let _scanner = Scanner {
        scan: scan.clone(),
        child: KillOnDrop(child),
    };
    // s6-svwait needs the supervisor's control files: wait for s6-supervise to be there.
    assert!(
        wait_until(Duration::from_secs(10), || service
            .join("supervise/status")
            .exists()),
        "s6-supervise never started"
    );
    let waited = Command::new("s6-svwait")
        .args(["-U", "-t", "60000"])
        .arg(&service)
        .status()
        .expect("s6-svwait");
    let state_then = phase(&dir.path().join("state"));
    let banner = banner_through(remote_port);
    let log = read(&dir.path().join("log"));
    assert!(waited.success(), "s6-svwait -U timed out; log:\n{log}");
    assert_eq!(
        state_then, "up",
        "s6 heard ready before the state file said up; log:\n{log}"
    );
    assert!(
        banner.starts_with("SSH-"),
        "through the forward: {banner:?}"
    );
    let svstat = Command::new("s6-svstat").arg(&service).output().unwrap();
    let svstat = String::from_utf8_lossy(&svstat.stdout);
    assert!(
        svstat.starts_with("up") && svstat.contains("ready"),
        "{svstat}"
    );
    eprintln!(
        "{test}: ready seen by s6 {} ms after s6-svscan started",
        started.elapsed().as_millis()
    );
}

/// A pipe whose write end the watchdog gets at `fd`, as supervise-daemon hands
/// `notify=fd:N` over.
fn spawn_with_pipe(argv: &[String], fd: i32) -> (StopOnDrop, std::fs::File) {
    // Close-on-exec in this process, so no other test's child holds the pipe open.
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&write_end);
    // SAFETY: dup2 is async-signal-safe; the new fd has no close-on-exec flag, as a
    // supervisor's would not.
    unsafe {
        cmd.pre_exec(move || {
            let done = if raw == fd {
                nix::libc::fcntl(fd, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(raw, fd)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("tunnel-watchdog");
    drop(write_end);
    (StopOnDrop(child), read_end.into())
}

/// OpenRC's `notify=fd:N`: `READY=1` and a newline, then the end of the pipe (the fd
/// closed, and held by no ssh), once the state file says up.
#[test]
fn openrc_fd_gets_its_line_then_the_end_once_proven() {
    let test = "openrc_fd_gets_its_line_then_the_end_once_proven";
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let dir = temp_dir("openrc-ready");
    let remote_port = free_port();
    let argv = watchdog_argv(
        &sshd,
        dir.path(),
        remote_port,
        &["--readiness", "openrc-fd:5"],
    );
    let (_wd, mut pipe) = spawn_with_pipe(&argv, 5);
    let got = Arc::new(Mutex::new(None));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let result = pipe.read_to_end(&mut bytes).map(|_| bytes);
            *got.lock().unwrap() = Some(result);
        })
    };
    let state_dir = dir.path().join("state");
    let mut state_at_end = String::new();
    let ended = wait_until(Duration::from_secs(60), || {
        let done = got.lock().unwrap().is_some();
        if done {
            state_at_end = phase(&state_dir);
        }
        done
    });
    let log = read(&dir.path().join("log"));
    assert!(ended, "the pipe never ended; log:\n{log}");
    reader.join().unwrap();
    let bytes = got.lock().unwrap().take().unwrap().unwrap();
    assert_eq!(bytes, b"READY=1\n", "log:\n{log}");
    assert_eq!(state_at_end, "up", "log:\n{log}");
    assert!(banner_through(remote_port).starts_with("SSH-"));
}

/// An fd the supervisor did not open is a usage error (exit 2, no ssh started), said
/// with where the number comes from.
#[test]
fn a_readiness_fd_that_is_not_open_is_a_usage_error() {
    let dir = temp_dir("ready-fd-missing");
    let out = Command::new(watchdog())
        .args(["--readiness", "s6-fd:9"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--", "ssh", "-N", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("s6-fd:9: file descriptor 9 is not open")
            && stderr.contains("notification-fd"),
        "{stderr}"
    );
    let out = Command::new(watchdog())
        .args(["--readiness", "procd:tunnel-a", "--", "ssh", "h"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("procd:SERVICE/INSTANCE"), "{stderr}");
    let out = Command::new(watchdog())
        .args(["--readiness", "procd:tunnel-a/main", "--", "ssh", "h"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs --procd-watchdog"), "{stderr}");
}

/// What the fake ubusd saw of one call: the looked-up path, the invoked object, method
/// and blobmsg arguments.
#[derive(Debug, Clone, Default)]
struct Call {
    lookup: String,
    object: u32,
    method: String,
    args: Vec<(String, String)>,
    at: Option<Instant>,
}

const SERVICE_ID: u32 = 0x0bad_cafe;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads one ubus message: (type, seq, peer, payload of the container attribute).
fn read_message(s: &mut UnixStream) -> Option<(u8, u16, u32, Vec<u8>)> {
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    assert_eq!(head[0], 0, "ubus version");
    assert_eq!(head[8] & 0x7f, 0, "the container's id is 0");
    let len = (be32(&head[8..12]) & 0x00ff_ffff) as usize;
    let mut payload = vec![0u8; len - 4];
    s.read_exact(&mut payload).ok()?;
    Some((
        head[1],
        u16::from_be_bytes([head[2], head[3]]),
        be32(&head[4..8]),
        payload,
    ))
}

/// The attributes of a payload: (extended, id, data without padding).
fn attrs(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let word = be32(bytes);
        let len = (word & 0x00ff_ffff) as usize;
        assert!(len >= 4 && len <= bytes.len(), "attribute length {len}");
        out.push((
            word >> 31 == 1,
            ((word >> 24) & 0x7f) as u8,
            bytes[4..len].to_vec(),
        ));
        let padded = (len + 3) & !3;
        assert!(
            bytes[len..padded.min(bytes.len())].iter().all(|&b| b == 0),
            "padding is zeros"
        );
        bytes = &bytes[padded.min(bytes.len())..];
    }
    assert!(bytes.is_empty(), "trailing bytes");
    out
}

fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).expect("NUL-terminated");
    String::from_utf8(data[..end].to_vec()).unwrap()
}

fn message(kind: u8, seq: u16, peer: u32, attrs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, data) in attrs {
        body.extend_from_slice(&((u32::from(*id) << 24) | (4 + data.len() as u32)).to_be_bytes());
        body.extend_from_slice(data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut out = vec![0, kind];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&peer.to_be_bytes());
    out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// One client as ubusd serves it: HELLO, then LOOKUP answered with the object (DATA)
/// and STATUS 0, then INVOKE answered as procd's `watchdog` method does (DATA, STATUS 0).
fn serve(mut s: UnixStream, calls: &Mutex<Vec<Call>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let client_id = 0x1234;
    s.write_all(&message(0, 0, client_id, &[])).unwrap();
    let mut call = Call::default();
    while let Some((kind, seq, peer, payload)) = read_message(&mut s) {
        let a = attrs(&payload);
        match kind {
            4 => {
                assert_eq!(peer, 0);
                let (_, id, data) = &a[0];
                assert_eq!(*id, 2, "OBJPATH");
                call.lookup = c_string(data);
                let mut path = call.lookup.clone().into_bytes();
                path.push(0);
                s.write_all(&message(
                    2,
                    seq,
                    peer,
                    &[(2, path), (3, SERVICE_ID.to_be_bytes().to_vec())],
                ))
                .unwrap();
                s.write_all(&message(1, seq, peer, &[(1, vec![0; 4])]))
                    .unwrap();
            }
            5 => {
                assert_eq!(peer, SERVICE_ID, "the header names the object");
                for (extended, id, data) in &a {
                    assert!(!extended);
                    match id {
                        3 => call.object = be32(data),
                        4 => call.method = c_string(data),
                        7 => {
                            for (extended, kind, d) in attrs(data) {
                                assert!(extended, "a blobmsg has a name");
                                assert_eq!(kind, 3, "a blobmsg string");
                                let name_len = u16::from_be_bytes([d[0], d[1]]) as usize;
                                let name = String::from_utf8(d[2..2 + name_len].to_vec()).unwrap();
                                assert_eq!(d[2 + name_len], 0);
                                let value_at = (2 + name_len + 1 + 3) & !3;
                                call.args.push((name, c_string(&d[value_at..])));
                            }
                        }
                        other => panic!("attribute {other} in an invoke"),
                    }
                }
                call.at = Some(Instant::now());
                s.write_all(&message(2, seq, SERVICE_ID, &[])).unwrap();
                s.write_all(&message(1, seq, SERVICE_ID, &[(1, vec![0; 4])]))
                    .unwrap();
                calls.lock().unwrap().push(call.clone());
            }
            other => panic!("message type {other} from the client"),
        }
    }
}

/// A fake ubusd on `socket`: serves clients one at a time until the test ends.
fn fake_ubusd(socket: &Path) -> Arc<Mutex<Vec<Call>>> {
    let listener = UnixListener::bind(socket).unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            serve(stream, &seen);
        }
    });
    calls
}

/// `--readiness procd:SVC/INST --procd-watchdog 15s`: the watchdog pings procd's
/// watchdog over ubus from its start (procd's timer runs from the instance's start),
/// before and while the tunnel is up, every third of the timeout, as `ubus call service
/// watchdog '{"name":SVC,"instance":INST}'` would.
#[test]
fn procd_pings_reach_ubusd_from_the_start_on_a_third_of_the_timeout() {
    let test = "procd_pings_reach_ubusd_from_the_start_on_a_third_of_the_timeout";
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let dir = temp_dir("procd-ready");
    let socket = dir.path().join("ubus.sock");
    let calls = fake_ubusd(&socket);
    let remote_port = free_port();
    let socket_arg = socket.display().to_string();
    let argv = watchdog_argv(
        &sshd,
        dir.path(),
        remote_port,
        &[
            "--readiness",
            "procd:tunnel-ready/main",
            "--procd-watchdog",
            "15s",
            "--ubus-socket",
            &socket_arg,
        ],
    );
    let started = Instant::now();
    let _wd = StopOnDrop(
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let three = wait_until(Duration::from_secs(20), || calls.lock().unwrap().len() >= 3);
    let log = read(&dir.path().join("log"));
    let calls = calls.lock().unwrap().clone();
    assert!(three, "{} ping(s) in 20 s; log:\n{log}", calls.len());
    for call in &calls {
        assert_eq!(call.lookup, "service");
        assert_eq!(call.object, SERVICE_ID);
        assert_eq!(call.method, "watchdog");
        assert_eq!(
            call.args,
            [
                ("name".to_string(), "tunnel-ready".to_string()),
                ("instance".to_string(), "main".to_string())
            ]
        );
    }
    let at: Vec<Instant> = calls.iter().filter_map(|c| c.at).collect();
    assert!(
        at[0] - started < Duration::from_secs(3),
        "first ping {:?} after the start",
        at[0] - started
    );
    // A third of 15 s apart, give or take a busy machine (the ready ping may come
    // between two of them).
    let last_gap = at[at.len() - 1] - at[0];
    assert!(
        last_gap >= Duration::from_secs(4) && last_gap <= Duration::from_secs(14),
        "pings at {:?}",
        at.iter().map(|t| *t - started).collect::<Vec<_>>()
    );
    assert!(!log.contains("cannot ping procd"), "{log}");
}
