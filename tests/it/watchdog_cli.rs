//! tunnel-watchdog through its real command line, for what the other suites only
//! unit-test: an args file exactly as the busybox renderer writes it (with a `-D`
//! forward probed through SOCKS and a state dir too long for a unix socket), the
//! journald log format, `--log-file` appending and rotation, and EXTEND_TIMEOUT_USEC
//! repeated during a long back-off.

use crate::common;

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{Sshd, free_port};
use common::target::TcpTarget;
use common::{NotifyReceiver, wait_until};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tunnelctl::targets::Target;

fn bin() -> String {
    std::env::var("TUNNEL_WATCHDOG_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunnel-watchdog").to_string())
}

fn watchdog() -> Command {
    let mut cmd = Command::new(bin());
    cmd.stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM");
    cmd
}

/// Kills a watchdog and its ssh group when a test ends, also on panic.
struct Guard {
    child: std::process::Child,
    state: std::path::PathBuf,
}

impl Guard {
    fn state_value(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.state.join("state"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
    }
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        common::child::wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(ssh) = self.state_value("ssh_pid").and_then(|p| p.parse().ok())
            && ssh != 0
        {
            let _ = killpg(Pid::from_raw(ssh), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn busybox_args_file_runs_a_real_tunnel_with_socks_probe_and_long_state_dir() {
    let Some(sshd) = Sshd::start_default("busybox_args_file") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = TcpTarget::start(Some(b"SSH-2.0-target\r\n"));
    let (rport, dport) = (free_port(), free_port());
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(
        &config,
        format!(
            "tunnels:\n  cli-test:\n    host: 127.0.0.1\n    port: {port}\n    user: root\n\
             \x20   identity: {key}\n    known_hosts: {kh}\n\
             \x20   probe: {{ interval: 1s, timeout: 1s, failures: 2 }}\n\
             \x20   forwards:\n      - remote: {rport}\n        to: 127.0.0.1:{tport}\n\
             \x20     - dynamic: {dport}\n        bind: 127.0.0.1\n",
            port = sshd.port(),
            key = sshd.client_key().display(),
            kh = sshd.known_hosts().display(),
            tport = target.port,
        ),
    )
    .unwrap();
    let loaded = common::load(&config, dir.path());
    let tunnel = loaded
        .tunnels
        .iter()
        .find(|t| t.name == "cli-test")
        .expect("tunnel");
    let options = tunnelctl::targets::RenderOptions {
        // An inittab line cannot hold a path with a space (a build dir may have one).
        watchdog: if bin().contains(char::is_whitespace) {
            common::tunnel_env::inittab_watchdog().into()
        } else {
            bin().into()
        },
        home: dir.path().to_path_buf(),
    };
    let rendered = tunnelctl::targets::render(tunnel, Target::Busybox, &options).unwrap();
    let args = rendered
        .files
        .iter()
        .find(|f| f.path.extension().is_some_and(|e| e == "args"))
        .expect("an args file");
    assert!(args.contents.starts_with('#'), "{}", args.contents);
    // The renderer names /run and /var/log paths: point them into the temp dir, the
    // state dir deep enough that STATE/ctl cannot be a unix socket path.
    let long = dir.path().join("s".repeat(100)).join("cli-test");
    assert!(long.join("ctl").as_os_str().len() > 108);
    let log = dir.path().join("w.log");
    let lines: Vec<&str> = args.contents.lines().collect();
    let mut text = String::new();
    let mut i = 0;
    while i < lines.len() {
        text.push_str(lines[i]);
        text.push('\n');
        match lines[i] {
            "--state-dir" => {
                text.push_str(&format!("{}\n", long.display()));
                i += 1;
            }
            "--log-file" => {
                text.push_str(&format!("{}\n", log.display()));
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    assert!(text.contains(&format!("-D\n127.0.0.1:{dport}\n")), "{text}");
    let file = dir.path().join("cli.args");
    std::fs::write(&file, &text).unwrap();

    let started = Instant::now();
    let mut wd = Guard {
        child: watchdog()
            .arg("--args-file")
            .arg(&file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        state: long.clone(),
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(15), || wd
            .state_value("state")
            .as_deref()
            == Some("up")),
        "not up; log:\n{}",
        log_text()
    );
    eprintln!("args file tunnel up after {:?}", started.elapsed());
    assert!(
        log_text().contains("up: 2 forward(s) proven end to end"),
        "{}",
        log_text()
    );
    // ControlPath fell back to a short private path, and ssh uses it.
    let ssh: i32 = wd.state_value("ssh_pid").unwrap().parse().unwrap();
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{ssh}/cmdline")).unwrap())
        .replace('\0', " ");
    let ctl = cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("ControlPath="))
        .expect("ControlPath option")
        .to_string();
    assert!(!Path::new(&ctl).starts_with(&long), "{ctl}");
    assert!(ctl.len() < 108 && Path::new(&ctl).exists(), "{ctl}");
    // "2 forward(s)": the -R channel and the -D listener, which the probe greets as a
    // SOCKS5 client; ssh's listener gives the same answer to us.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", dport)).unwrap();
    std::io::Write::write_all(&mut s, &[5, 1, 0]).unwrap();
    let mut reply = [0u8; 2];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [5, 0]);
    kill(Pid::from_raw(wd.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wd.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(!Path::new(&ctl).exists(), "control socket left behind");
}

/// `--args-file` refuses extra arguments with the usage exit code.
#[test]
fn args_file_takes_no_other_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.args");
    std::fs::write(&file, "# comment\n--name\nx\n--\nssh\nhost\n").unwrap();
    let out = watchdog()
        .arg("--args-file")
        .arg(&file)
        .arg("--name")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("takes no other arguments"));
}

/// A run that fails fast without a server: ssh to a closed port.
fn failing_run(extra: &[&str], state: &Path) -> Command {
    let mut cmd = watchdog();
    cmd.args(extra)
        .args([
            "--name",
            "t",
            "--backoff-initial",
            "1s",
            "--backoff-max",
            "2s",
        ])
        .arg("--state-dir")
        .arg(state)
        .args(["--", "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-p"])
        .arg(free_port().to_string())
        .arg("127.0.0.1");
    cmd
}

#[test]
fn journald_lines_have_priorities_and_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (read, write) = nix::unistd::pipe().unwrap();
    let st = nix::sys::stat::fstat(write.as_fd()).unwrap();
    let out = failing_run(&[], dir.path())
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino))
        .stderr(Stdio::from(write))
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(1));
    let mut text = String::new();
    std::fs::File::from(read).read_to_string(&mut text).unwrap();
    eprintln!("{text}");
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>"].contains(&prio) && line[3..].starts_with("t: "),
            "not a journald line: {line}"
        );
        assert!(!line.contains("Z info") && !line.contains("T0"), "{line}");
    }
    assert!(text.contains("<6>t: connecting (attempt 1)"), "{text}");
    assert!(text.contains("<3>t: tunnel failed"), "{text}");
    // A JOURNAL_STREAM that names another file (stderr redirected after systemd set
    // it) means plain lines with timestamps.
    let (read, write) = nix::unistd::pipe().unwrap();
    failing_run(&[], dir.path())
        .env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino + 1))
        .stderr(Stdio::from(write))
        .status()
        .unwrap();
    let mut text = String::new();
    std::fs::File::from(read).read_to_string(&mut text).unwrap();
    let first = text.lines().next().unwrap_or("");
    assert!(first.starts_with("20") && first.contains("Z "), "{first}");
}

#[test]
fn log_file_appends_and_rotates_at_one_mebibyte() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.log");
    std::fs::write(&log, "earlier run\n").unwrap();
    let arg = log.display().to_string();
    let code = failing_run(&["--log-file", &arg], &dir.path().join("s"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("earlier run\n"), "not appended: {text}");
    assert!(text.contains(" error t: tunnel failed"), "{text}");
    // Grow it past 1 MiB: the next line moves it to t.log.1 and starts a new file.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &vec![b'x'; 1024 * 1024]).unwrap();
    drop(f);
    let code = failing_run(&["--log-file", &arg], &dir.path().join("s2"))
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(1));
    let old = std::fs::read_to_string(dir.path().join("t.log.1")).unwrap();
    assert!(old.starts_with("earlier run\n") && old.len() > 1024 * 1024);
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        !new.contains("earlier run") && new.len() < 64 * 1024,
        "{new}"
    );
    assert!(new.contains("tunnel failed"), "{new}");
}

#[test]
fn extend_timeout_is_repeated_during_a_long_backoff() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("state"),
        "state=failed\nconsecutive_failures=1\nlast_error=test\n",
    )
    .unwrap();
    let notify = NotifyReceiver::path();
    let mut cmd = watchdog();
    cmd.args([
        "--name",
        "t",
        "--backoff-initial",
        "8s",
        "--backoff-max",
        "8s",
    ])
    .args(["--probe-interval", "1s", "--probe-timeout", "1s"])
    .arg("--state-dir")
    .arg(dir.path())
    .args(["--", "ssh", "-F", "/dev/null", "127.0.0.1"])
    .env("NOTIFY_SOCKET", notify.env_value())
    .stderr(Stdio::null());
    let mut wd = Guard {
        child: cmd.spawn().unwrap(),
        state: dir.path().to_path_buf(),
    };
    let extends = || {
        notify
            .messages()
            .into_iter()
            .filter_map(|m| {
                let usec: u64 = m.value("EXTEND_TIMEOUT_USEC")?.parse().ok()?;
                Some((m.at, Duration::from_micros(usec)))
            })
            .collect::<Vec<_>>()
    };
    // 8 s ±15 % back-off, refreshed every 5 s: a second message after ~5 s.
    assert!(
        wait_until(Duration::from_secs(8), || extends().len() >= 2),
        "{:?}",
        notify.messages()
    );
    kill(Pid::from_raw(wd.child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wd.wait_exit(Duration::from_secs(5)), Some(0));
    let e = extends();
    eprintln!("EXTEND_TIMEOUT_USEC messages: {e:?}");
    let (t0, n0) = e[0];
    let (t1, n1) = e[1];
    // Each covers what is left of the wait plus a connect budget (1s × 2 + 1s) + 5 s.
    assert!(n0 >= Duration::from_millis(6800 + 8000), "{n0:?}");
    assert!(t1 - t0 >= Duration::from_secs(4), "{:?}", t1 - t0);
    assert!(
        n1 < n0,
        "the second extension counts from its own send time"
    );
    // Both name the same end point (now + N), within scheduling noise.
    let (end0, end1) = (t0 + n0, t1 + n1);
    let skew = if end0 > end1 {
        end0 - end1
    } else {
        end1 - end0
    };
    assert!(skew < Duration::from_millis(500), "{skew:?}");
}
