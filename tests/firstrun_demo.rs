//! The README's first command, `bash demo/demo.sh --ci`, runs start to finish: it shows
//! the frozen ssh client detected and the tunnel recovered, in under a minute, and
//! leaves nothing behind — also when interrupted with Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo() -> Command {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tunnelctl"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/demo.sh"))
        .arg("--ci")
        // The test binaries are built already; the demo's own `cargo build` is for humans.
        .env("TUNNELCTL_BIN_DIR", bin_dir)
        .stdin(Stdio::null());
    cmd
}

/// The demo's temporary folder, from its "files in DIR" line.
fn temp_dir_of(output: &str) -> PathBuf {
    let start = output
        .find("(files in ")
        .expect("the demo names its folder")
        + "(files in ".len();
    let end = output[start..].find(')').unwrap() + start;
    PathBuf::from(&output[start..end])
}

fn sshd_pid_of(output: &str) -> Option<i32> {
    let start = output.find("sshd (pid ")? + "sshd (pid ".len();
    output[start..].split(')').next()?.parse().ok()
}

#[test]
fn demo_runs_in_ci_mode_in_under_a_minute() {
    if !common::require_prerequisites("demo_runs_in_ci_mode_in_under_a_minute") {
        return;
    }
    let started = Instant::now();
    let out = demo().output().unwrap();
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    for expected in [
        "Pinned [127.0.0.1]:",
        "the tunnel works.",
        "SSH-2.0-OpenSSH",
        "detected after",
        "recovered after",
        "Demo finished",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    assert!(
        took < Duration::from_secs(60),
        "the demo took {took:?}:\n{text}"
    );
    eprintln!("demo took {took:?}");
    assert!(
        !temp_dir_of(&text).exists(),
        "the demo left its folder behind"
    );
    let sshd = sshd_pid_of(&text).expect("sshd pid");
    assert!(
        !Path::new(&format!("/proc/{sshd}")).exists(),
        "the demo's sshd still runs"
    );
}

#[test]
fn demo_cleans_up_on_ctrl_c() {
    if !common::require_prerequisites("demo_cleans_up_on_ctrl_c") {
        return;
    }
    let mut child = demo()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(stdout).lines();
    // Read until the tunnel runs (bounded by the demo's own timeouts; the pipe ends with it).
    for line in lines.by_ref().map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("remote forward server:") {
            break;
        }
    }
    assert!(
        seen.contains("remote forward server:"),
        "the tunnel never ran:\n{seen}"
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "exit code after Ctrl-C; output after it: {rest:?}"
    );
    let dir = temp_dir_of(&seen);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let sshd = sshd_pid_of(&seen).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{sshd}"
        ))
        .exists()),
        "the demo's sshd ({sshd}) still runs"
    );
    // No watchdog or ssh of the demo survives: nothing refers to its folder any more.
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            std::fs::read(e.path().join("cmdline"))
                .ok()
                .map(|c| (e.file_name(), c))
        })
        .filter(|(_, c)| String::from_utf8_lossy(c).contains(dir.to_str().unwrap()))
        .map(|(pid, c)| {
            format!(
                "{pid:?}: {}",
                String::from_utf8_lossy(&c).replace('\0', " ")
            )
        })
        .collect();
    assert!(survivors.is_empty(), "left running: {survivors:?}");
}

#[test]
fn demo_runs_as_a_normal_user() {
    if !common::require_prerequisites("demo_runs_as_a_normal_user") {
        return;
    }
    // Any account with a real shell and uid >= 1000; CI images may have none.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let uid: u32 = f.get(2)?.parse().ok()?;
        ((1000..60000).contains(&uid) && f.get(6).is_some_and(|s| s.ends_with("sh")))
            .then(|| f[0].to_string())
    });
    let Some(user) = user else {
        eprintln!("SKIPPED demo_runs_as_a_normal_user: no login user with uid >= 1000");
        return;
    };
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tunnelctl")).parent().unwrap();
    let out = Command::new("runuser")
        .args(["-u", &user, "--", "env"])
        .arg(format!("TUNNELCTL_BIN_DIR={}", bin_dir.display()))
        .arg("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/demo.sh"))
        .arg("--ci")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("Permission denied") && text.contains("TUNNELCTL_BIN_DIR") {
        eprintln!("SKIPPED demo_runs_as_a_normal_user: {user} cannot read the build:\n{text}");
        return;
    }
    assert!(out.status.success(), "demo as {user} failed:\n{text}");
    assert!(
        text.contains(&format!("for user {user}")) && text.contains("recovered after"),
        "{text}"
    );
}
