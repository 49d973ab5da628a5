//! The README's first command, `bash demo/demo.sh --ci`, runs start to finish: it shows
//! the frozen ssh client detected within the watchdog's own bound and the tunnel
//! recovered, and leaves nothing behind — also when interrupted with Ctrl-C.

use crate::common;

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

/// The seconds the demo printed after `what` ("detected after 2.3s:").
fn demo_seconds(output: &str, what: &str) -> f64 {
    let start = output
        .find(what)
        .unwrap_or_else(|| panic!("the demo printed no {what:?}:\n{output}"))
        + what.len();
    let end = output[start..].find("s:").expect("`s:` after the seconds") + start;
    output[start..end]
        .parse()
        .unwrap_or_else(|e| panic!("{:?}: {e}", &output[start..end]))
}

/// The timing asserted is the feature the demo shows, measured by the demo itself from
/// the freeze: detection within the watchdog's rule, `interval + failures × timeout`
/// (its probe is 1s/1s/2: 3 s, plus two 200 ms pauses), with a margin for a loaded
/// machine. The whole run's wall time ("under a minute" for a person at an idle
/// machine) is mostly key generation and sshd start-up, which load beside other tests
/// stretches and which is not the feature: it is printed, not asserted.
#[test]
fn demo_runs_in_ci_mode_and_detects_the_freeze_in_time() {
    if !common::require_prerequisites("demo_runs_in_ci_mode_and_detects_the_freeze_in_time") {
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
    let detected = demo_seconds(&text, "detected after ");
    let recovered = demo_seconds(&text, "recovered after ");
    assert!(
        detected <= 3.4 + 5.0,
        "the freeze was detected after {detected} s, not within 3.4 s (+5 s of margin):\n{text}"
    );
    assert!(recovered >= detected, "{text}");
    eprintln!("demo took {took:?}: detected after {detected} s, recovered after {recovered} s");
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

/// The demo as an unprivileged user, as the README's first command would be run by one.
/// The user gets copies of the scripts and binaries in a folder of its own: the checkout
/// may sit in root's 0700 home or a `mktemp -d` folder, which it cannot read (and must
/// not need to). A demo that fails as that user fails the test; only a machine without
/// any login user skips it, and not under `CI=true`.
#[test]
fn demo_runs_as_a_normal_user() {
    if !common::require_prerequisites("demo_runs_as_a_normal_user") {
        return;
    }
    let Some(user) = common::as_user::unprivileged_user() else {
        let why = "no login user (uid 1000..60000 with a shell) to run the demo as; \
                   create one (useradd -m -s /bin/bash NAME) or set TUNNELCTL_TEST_USER";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED demo_runs_as_a_normal_user: {why}");
        return;
    };
    let stage = common::as_user::UserStage::new(&user);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = stage.copy(&repo.join("demo/demo.sh"), "demo/demo.sh");
    stage.copy(
        &repo.join("demo/throwaway-sshd.sh"),
        "demo/throwaway-sshd.sh",
    );
    stage.copy(Path::new(env!("CARGO_BIN_EXE_tunnelctl")), "bin/tunnelctl");
    stage.copy(
        Path::new(env!("CARGO_BIN_EXE_tunnel-watchdog")),
        "bin/tunnel-watchdog",
    );
    let out = stage
        .command("bash")
        .arg(&demo)
        .arg("--ci")
        .env("TUNNELCTL_BIN_DIR", stage.path().join("bin"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = stage.user();
    assert!(out.status.success(), "demo as {name} failed:\n{text}");
    assert!(
        text.contains(&format!("for user {name}")) && text.contains("recovered after"),
        "{text}"
    );
    // The demo's folder was inside the stage (TMPDIR) and is gone with it.
    assert!(
        temp_dir_of(&text).starts_with(stage.path()),
        "the demo did not use the stage's TMPDIR:\n{text}"
    );
    assert!(
        !temp_dir_of(&text).exists(),
        "the demo left its folder behind"
    );
}
