//! A root watchdog against a second real user who owns a folder on one of its paths:
//! the metrics file's folder swapped for a link to a root-only folder (before the
//! watchdog starts, and while it runs) writes nothing there and the log says why; a
//! control-socket folder the other user made first in /tmp does not stop root's
//! watchdog, and an unprivileged one is told the way out.
//!
//! Each test creates its own system user and removes it when it ends (also on failure).

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::prereq::{Prereq, require};
use common::wait_until;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A system user made for one test (`useradd`), removed (`userdel`) on drop.
struct TempUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TempUser {
    fn new(tag: &str) -> TempUser {
        let name = format!("tctl-{tag}-{}", std::process::id());
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the user just added");
        TempUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }

    /// `sh -c SCRIPT` as this user; panics when it fails.
    fn sh(&self, script: &str) {
        let out = Command::new("/bin/sh")
            .args(["-c", script])
            .uid(self.uid)
            .gid(self.gid)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "as {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

fn mkdir(path: &Path, mode: u32) -> PathBuf {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// The layout of Debian's node_exporter folder: `prom` (like /var/lib/prometheus) is the
/// user's, `prom/node-exporter` root's; `rootonly` is a root-only folder holding a file
/// of the name the watchdog writes.
struct Layout {
    top: tempfile::TempDir,
    prom: PathBuf,
    rootonly: PathBuf,
}

const PRECIOUS: &str = "precious, root's own\n";

impl Layout {
    fn new(user: &TempUser) -> Layout {
        let top = tempfile::tempdir().unwrap();
        fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let prom = mkdir(&top.path().join("prom"), 0o755);
        mkdir(&prom.join("node-exporter"), 0o755);
        std::os::unix::fs::lchown(&prom, Some(user.uid), Some(user.gid)).unwrap();
        let rootonly = mkdir(&top.path().join("rootonly"), 0o700);
        fs::write(rootonly.join("tunnel-t.prom"), PRECIOUS).unwrap();
        // Stands in for ssh: waits, whatever its arguments (killed with its group).
        let fake_ssh = top.path().join("fake-ssh");
        fs::write(&fake_ssh, "#!/bin/sh\nexec sleep 30141\n").unwrap();
        fs::set_permissions(&fake_ssh, fs::Permissions::from_mode(0o755)).unwrap();
        Layout {
            top,
            prom,
            rootonly,
        }
    }

    /// The prometheus user's trick: its `node-exporter` renamed away, a link to the
    /// root-only folder in its place.
    fn swap(&self, user: &TempUser) {
        let p = self.prom.display();
        user.sh(&format!(
            "mv '{p}/node-exporter' '{p}/old' && ln -s '{}' '{p}/node-exporter'",
            self.rootonly.display()
        ));
        assert!(
            fs::symlink_metadata(self.prom.join("node-exporter"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    fn log(&self) -> String {
        fs::read_to_string(self.top.path().join("wd.log")).unwrap_or_default()
    }

    /// A root watchdog writing its metrics to `metrics`, ssh standing in by `ssh`.
    fn watchdog(&self, metrics: &Path, ssh: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_tunnel-watchdog"))
            .args(["--name", "t", "--state-dir"])
            .arg(self.top.path().join("state"))
            .arg("--log-file")
            .arg(self.top.path().join("wd.log"))
            .arg("--metrics-file")
            .arg(metrics)
            .args(["--", ssh, "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The root-only folder holds exactly what it held.
    fn assert_rootonly_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.rootonly)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tunnel-t.prom"], "{}", self.log());
        assert_eq!(
            fs::read_to_string(self.rootonly.join("tunnel-t.prom")).unwrap(),
            PRECIOUS,
            "the watchdog wrote through the link; log:\n{}",
            self.log()
        );
    }
}

/// Waits (bounded) for `child` to exit; kills it (by pid) when it does not.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let exited = wait_until(timeout, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    exited.then_some(status)
}

#[test]
fn a_metrics_folder_swapped_for_a_link_by_its_owner_is_never_written_through() {
    let test = "a_metrics_folder_swapped_for_a_link_by_its_owner_is_never_written_through";
    if !require(test, &[Prereq::Root]) {
        return;
    }
    let user = TempUser::new("metrics");
    let layout = Layout::new(&user);
    let metrics = layout.prom.join("node-exporter/tunnel-t.prom");

    // Control: in folders that are root's all the way, the watchdog does write.
    let trusted = mkdir(&layout.top.path().join("trusted"), 0o755);
    let mut wd = layout.watchdog(&trusted.join("tunnel-t.prom"), "/bin/false");
    assert!(wait_or_kill(&mut wd, Duration::from_secs(20)).is_some());
    let written = fs::read_to_string(trusted.join("tunnel-t.prom")).unwrap_or_default();
    assert!(
        written.contains("tunnelctl_tunnel_up{tunnel=\"t\"} 0"),
        "{written:?}\n{}",
        layout.log()
    );

    // The trick played before the watchdog starts.
    layout.swap(&user);
    let mut wd = layout.watchdog(&metrics, "/bin/false");
    assert!(wait_or_kill(&mut wd, Duration::from_secs(20)).is_some());
    layout.assert_rootonly_untouched();
    let log = layout.log();
    let why = format!(
        "{} is owned by uid {} ({})",
        layout.prom.display(),
        user.uid,
        user.name
    );
    assert!(
        log.contains("not writing the metrics file") && log.contains(&why),
        "{log}"
    );
    assert!(!layout.prom.join("old/tunnel-t.prom").exists());
}

#[test]
fn a_metrics_folder_swapped_while_the_watchdog_runs_is_never_written_through() {
    let test = "a_metrics_folder_swapped_while_the_watchdog_runs_is_never_written_through";
    if !require(test, &[Prereq::Root]) {
        return;
    }
    let user = TempUser::new("metrun");
    let layout = Layout::new(&user);
    let metrics = layout.prom.join("node-exporter/tunnel-t.prom");
    let fake_ssh = layout.top.path().join("fake-ssh");
    let mut wd = layout.watchdog(&metrics, fake_ssh.to_str().unwrap());
    let attempts = |n: usize| layout.log().matches("connecting (attempt").count() >= n;
    assert!(
        wait_until(Duration::from_secs(10), || attempts(1)),
        "{}",
        layout.log()
    );
    // Swapped under the running watchdog, then two reconnects (each writes the state).
    layout.swap(&user);
    let pid = Pid::from_raw(wd.id() as i32);
    for n in 2..=3 {
        kill(pid, Signal::SIGHUP).unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || attempts(n)),
            "reconnect {n}: {}",
            layout.log()
        );
    }
    kill(pid, Signal::SIGTERM).unwrap();
    assert!(wait_or_kill(&mut wd, Duration::from_secs(15)).is_some());
    layout.assert_rootonly_untouched();
    assert!(!layout.prom.join("old/tunnel-t.prom").exists());
    let log = layout.log();
    let refusals = log.matches("not writing the metrics file").count();
    assert!(refusals >= 1, "{log}");
    assert!(
        log.contains(&format!("is owned by uid {} ({})", user.uid, user.name)),
        "{log}"
    );
    // Said once, not at every write.
    assert_eq!(refusals, 1, "{log}");
}

/// `check` (as root, for a root watchdog) refuses the same path before anything is
/// installed, at the line of `metrics_file`, naming the folder's owner; a folder that is
/// root's all the way passes.
#[test]
fn check_refuses_a_metrics_file_below_another_users_folder() {
    let test = "check_refuses_a_metrics_file_below_another_users_folder";
    if !require(test, &[Prereq::Root]) {
        return;
    }
    let user = TempUser::new("check");
    let layout = Layout::new(&user);
    let home = tempfile::tempdir().unwrap();
    let trusted = mkdir(&layout.top.path().join("trusted"), 0o755);
    for (dir, refused) in [(layout.prom.join("node-exporter"), true), (trusted, false)] {
        let config = home.path().join("tunnels.yaml");
        fs::write(
            &config,
            format!(
                "tunnels:\n  t:\n    host: h.example.org\n    metrics_file: {}/tunnel-{{name}}.prom\n    forwards:\n      - dynamic: 1080\n",
                dir.display()
            ),
        )
        .unwrap();
        let out = common::tunnelctl(home.path())
            .arg("-c")
            .arg(&config)
            .arg("check")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !refused {
            assert!(out.status.success(), "{err}");
            continue;
        }
        assert!(!out.status.success(), "check passed: {err}");
        assert!(
            err.contains(&format!("{}:4:", config.display()))
                && err.contains(&format!(
                    "{} is owned by uid {} ({})",
                    layout.prom.display(),
                    user.uid,
                    user.name
                )),
            "{err}"
        );
    }
}

/// `unshare -m`: FAKE_TMP bound on /tmp and a tmpfs on /run, then `PROGRAM ARGS` (as
/// `setpriv` makes it): nothing of the machine's /tmp or /run is touched.
fn in_private_tmp(fake_tmp: &Path, program: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("set -e; mount --bind \"$1\" /tmp; mount -t tmpfs tmpfs /run; shift; exec \"$@\"")
        .arg("sh")
        .arg(fake_tmp)
        // The caller's runtime directories would change where the fallback goes.
        .args([
            "env",
            "-u",
            "XDG_RUNTIME_DIR",
            "-u",
            "STATE_DIRECTORY",
            "-u",
            "RUNTIME_DIRECTORY",
        ])
        .args(program)
        .stdin(Stdio::null());
    common::user_manager::run_bounded(cmd, Duration::from_secs(30))
}

#[test]
fn a_control_folder_made_first_in_tmp_by_another_user_stops_no_root_watchdog() {
    let test = "a_control_folder_made_first_in_tmp_by_another_user_stops_no_root_watchdog";
    if !require(test, &[Prereq::Root, Prereq::Unshare]) {
        return;
    }
    let user = TempUser::new("squat");
    let fake = tempfile::tempdir().unwrap();
    fs::set_permissions(fake.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let bin = mkdir(&fake.path().join("bin"), 0o755);
    common::copy_by_cp(
        Path::new(env!("CARGO_BIN_EXE_tunnel-watchdog")),
        &bin.join("tunnel-watchdog"),
    );
    // The squatter's folders: root's fallback name, and the second user's own.
    for squatted in ["tunnelctl-0".to_string(), format!("tunnelctl-{}", user.uid)] {
        let dir = mkdir(&fake.path().join(squatted), 0o755);
        std::os::unix::fs::lchown(&dir, Some(65534), Some(65534)).unwrap();
    }
    // A state directory whose `ctl` would not fit a unix socket.
    let long = format!("/tmp/{}", "s".repeat(90));

    // Root: the socket goes under /run, which nobody else can write.
    let out = in_private_tmp(
        fake.path(),
        &[
            "/tmp/bin/tunnel-watchdog",
            "--name",
            "t",
            "--state-dir",
            &long,
            "--",
            "/bin/false",
            "127.0.0.1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("control socket"), "{err}");
    assert!(err.contains("connecting (attempt 1)"), "{err}");

    // Another user: told who made the folder and the ways around it.
    let uid = user.uid.to_string();
    let gid = user.gid.to_string();
    let out = in_private_tmp(
        fake.path(),
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "--",
            "/tmp/bin/tunnel-watchdog",
            "--name",
            "t",
            "--state-dir",
            &format!("{long}-user"),
            "--",
            "/bin/false",
            "127.0.0.1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "/tmp/tunnelctl-{} is owned by uid 65534",
            user.uid
        )),
        "{err}"
    );
    assert!(
        err.contains("--state-dir of at most") && err.contains("have root remove"),
        "{err}"
    );

    // Its default state directory lies in the same squatted folder: the same news.
    let out = in_private_tmp(
        fake.path(),
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "--",
            "/tmp/bin/tunnel-watchdog",
            "--name",
            "t",
            "--",
            "/bin/false",
            "127.0.0.1",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state directory: ")
            && err.contains("is owned by uid 65534")
            && err.contains("or pass --state-dir DIR, set XDG_RUNTIME_DIR, or have root remove it"),
        "{err}"
    );
}
