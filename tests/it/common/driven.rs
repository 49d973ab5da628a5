//! tunnelctl itself driving a real init system: `install NAME` (it writes the service,
//! tells the init and starts it), `status`, `reconnect` while the tunnel backs off,
//! `stop`/`start`/`restart`, and `uninstall NAME` (it stops, removes, tells the init) — each run where a user of that
//! init runs it, with no `--no-start` and no `--root`.
//!
//! An init is reached through [`Driven`] (one implementation per init system:
//! [`super::driven_systemd`], [`super::driven_inittab`]); [`install_reconnect_uninstall`]
//! is the one scenario they all pass. A new target or verb adds a `Driven` (or a step
//! here) and inherits every check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::commands::out_text;
use super::wait_until;

/// The tunnel every driven rig installs.
pub const NAME: &str = "itest";

/// The tunnel's back-off: long enough that only `reconnect` (not the wait running out,
/// nor the greeting check, which needs a server) can end it within the test's window.
pub const BACKOFF_INITIAL: &str = "30s";
pub const BACKOFF_MAX: &str = "60s";

/// What one init system takes to be driven by tunnelctl.
pub trait Driven {
    /// The prefix of progress lines (the target's name).
    fn label(&self) -> &'static str;
    /// `--target T` where detection on this machine would pick another init (as root
    /// under a user manager, BusyBox without `/sbin/init` linked to it); else empty.
    fn target_args(&self) -> Vec<String>;
    /// More arguments for `install` only (a watchdog path the init can hold).
    fn install_args(&self) -> Vec<String> {
        Vec::new()
    }
    /// The tunnels.yaml as tunnelctl sees it.
    fn config(&self) -> PathBuf;
    /// `tunnelctl ARGS` where this init's user runs it (its namespaces, PATH and
    /// environment), killed after `timeout`.
    fn tunnelctl(&self, args: &[&str], timeout: Duration) -> Output;
    /// Whether `install` returns only once every forward is proven (Type=notify).
    fn install_waits_for_ready(&self) -> bool;
    /// Data through the tunnel's local port, from where that port is reachable.
    fn wait_roundtrip(&self, timeout: Duration) -> Result<Instant, String>;
    /// The init's own word that the tunnel's service runs (not tunnelctl's).
    fn init_says_running(&self) -> bool;
    /// Processes under this init that belong to a tunnel: (host pid, command line) of
    /// every tunnel-watchdog and ssh.
    fn tunnel_processes(&self) -> Vec<(i32, String)>;
    /// Every file (path → content) in the places install writes to and the init reads
    /// from, as the host sees them.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>>;
    /// Whether `path` (a path inside the init's world) exists.
    fn exists(&self, path: &Path) -> bool;
    /// The text of `path` (inside the init's world), empty when unreadable.
    fn read(&self, path: &Path) -> String;
    /// The watchdog's log lines so far; `None` where nothing keeps them (a private user
    /// manager has no journald).
    fn watchdog_log(&self) -> Option<String>;
    /// The server dies (listener and sessions) / comes back on the same port.
    fn server_down(&mut self);
    fn server_up(&mut self);
    /// Everything useful when a check fails.
    fn report(&self) -> String;
}

/// All files below each of `dirs` (missing directories are empty).
pub fn files_below(dirs: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    // A directory counts too: uninstall removes the ones it made.
                    out.insert(path.join(""), Vec::new());
                    walk(&path, out);
                }
                Ok(t) if t.is_symlink() => {
                    let target = std::fs::read_link(&path).unwrap_or_default();
                    out.insert(path, target.into_os_string().into_encoded_bytes());
                }
                Ok(_) => {
                    out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        walk(dir, &mut out);
    }
    out
}

/// The differences between two snapshots, one line each (empty: equal).
fn differences(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, content) in after {
        match before.get(path) {
            None => lines.push(format!("left behind: {}", path.display())),
            Some(old) if old != content => lines.push(format!(
                "changed: {}:\n--- before\n{}--- after\n{}",
                path.display(),
                String::from_utf8_lossy(old),
                String::from_utf8_lossy(content)
            )),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        lines.push(format!(
            "removed though install did not write it: {}",
            path.display()
        ));
    }
    lines
}

fn status_json<D: Driven>(rig: &D) -> serde_json::Value {
    let mut args = vec!["status", NAME, "--json"];
    let target = rig.target_args();
    args.extend(target.iter().map(String::as_str));
    let out = rig.tunnelctl(&args, Duration::from_secs(30));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", out_text(&out)));
    doc["tunnels"][0].clone()
}

/// `tunnelctl CMD NAME [--target T]` (plus `-c CONFIG` for the verbs that read it).
fn verb<D: Driven>(rig: &D, cmd: &str, timeout: Duration) -> Output {
    let config = rig.config().display().to_string();
    let mut args: Vec<&str> = Vec::new();
    if matches!(cmd, "install" | "uninstall") {
        args.extend(["-c", &config]);
    }
    args.extend([cmd, NAME]);
    let target = rig.target_args();
    args.extend(target.iter().map(String::as_str));
    let extra = rig.install_args();
    if cmd == "install" {
        args.extend(extra.iter().map(String::as_str));
    }
    rig.tunnelctl(&args, timeout)
}

/// The whole life of a tunnel as a user drives it: install (started by tunnelctl),
/// status, reconnect cutting a back-off short, uninstall leaving nothing running and
/// nothing behind.
pub fn install_reconnect_uninstall<D: Driven>(rig: &mut D) {
    install_reconnect_uninstall_checking(rig, |_| {});
}

/// [`install_reconnect_uninstall`], with `while_up` run once the tunnel is installed and
/// `status` says it is up (checks of a feature that needs a running tunnel).
pub fn install_reconnect_uninstall_checking<D: Driven>(rig: &mut D, while_up: impl FnOnce(&D)) {
    let label = rig.label();
    let before = rig.snapshot();
    assert!(
        rig.tunnel_processes().is_empty(),
        "a tunnel runs before install: {:?}",
        rig.tunnel_processes()
    );

    // install: no --no-start, no --root; tunnelctl writes, reloads and starts.
    let started = Instant::now();
    let out = verb(rig, "install", Duration::from_secs(90));
    assert!(
        out.status.success(),
        "{label}: tunnelctl install {NAME}: {}\n{}",
        out_text(&out),
        rig.report()
    );
    let took = started.elapsed();
    if rig.install_waits_for_ready() {
        // Type=notify: install returned after READY=1, so the forward works now.
        rig.wait_roundtrip(Duration::ZERO).unwrap_or_else(|e| {
            panic!(
                "{label}: install returned but the tunnel carries no data: {e}\n{}",
                rig.report()
            )
        });
    } else {
        rig.wait_roundtrip(Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{label}: the installed tunnel never came up: {e}\n{}",
                    rig.report()
                )
            });
    }
    eprintln!("{label}: tunnelctl install -> tunnel carrying data after {took:?}");
    assert!(
        rig.init_says_running(),
        "{label}: the init does not run the installed service\n{}",
        rig.report()
    );
    let watchdogs: Vec<_> = rig
        .tunnel_processes()
        .into_iter()
        .filter(|(_, c)| c.contains("tunnel-watchdog"))
        .collect();
    assert_eq!(
        watchdogs.len(),
        1,
        "{label}: {watchdogs:?}\n{}",
        rig.report()
    );

    // status: a zero exit and `up`, in the table and in the JSON (an inittab tunnel
    // carries data before its first probe round has proven it).
    let mut up = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            up = status_json(rig);
            up["state"] == "up"
        }),
        "{label}: status never said up: {up}\n{}",
        rig.report()
    );
    assert_eq!(up["running"], true, "{up}");
    let out = verb(rig, "status", Duration::from_secs(30));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && table
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(&format!("{NAME}  ")) && l.contains(" up ")),
        "{label}: status of the installed tunnel: {}\n{}",
        out_text(&out),
        rig.report()
    );
    let state_file = PathBuf::from(
        up["state_file"]
            .as_str()
            .unwrap_or_else(|| panic!("no state_file in {up}")),
    );

    while_up(rig);
    reconnect_during_back_off(rig);
    stop_start_restart(rig);

    // uninstall: stopped, removed, the init told; nothing runs, nothing is left.
    let out = verb(rig, "uninstall", Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{label}: tunnelctl uninstall {NAME}: {}\n{}",
        out_text(&out),
        rig.report()
    );
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            left = rig.tunnel_processes();
            left.is_empty()
        }),
        "{label}: still running after uninstall: {left:?}\n{}",
        rig.report()
    );
    assert!(
        !rig.init_says_running(),
        "{label}: the init still runs the service after uninstall\n{}",
        rig.report()
    );
    assert!(
        rig.wait_roundtrip(Duration::ZERO).is_err(),
        "{label}: the forward still carries data after uninstall"
    );
    let diff = differences(&before, &rig.snapshot());
    assert!(
        diff.is_empty(),
        "{label}: uninstall did not restore what install changed:\n{}",
        diff.join("\n")
    );
    // systemd's state folder is cleaned by uninstall; an inittab watchdog stopped by
    // init keeps its state file (in /run, a tmpfs), which must then say it stopped.
    assert!(
        !rig.exists(&state_file) || !rig.label().starts_with("systemd"),
        "{label}: the state file {} is still there",
        state_file.display()
    );
    if rig.exists(&state_file) {
        let state = rig.read(&state_file);
        assert!(
            state.lines().any(|l| l == "state=stopped"),
            "{label}: the state file {} is left and does not say stopped:\n{state}",
            state_file.display()
        );
    }
    let out = verb(rig, "status", Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "{label}: status says an uninstalled tunnel is fine: {}",
        out_text(&out)
    );
}

/// The server dies; once the watchdog backs off (30 s: nothing else ends it within the
/// window), `tunnelctl reconnect` cuts the wait short — the watchdog says so and tries
/// again at once — and when the server is back the tunnel carries data again.
fn reconnect_during_back_off<D: Driven>(rig: &mut D) {
    let label = rig.label();
    rig.server_down();
    let mut now = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            now = status_json(rig);
            now["state"] == "backing-off"
        }),
        "{label}: not backing off after the server died: {now}\n{}",
        rig.report()
    );
    let failures = now["consecutive_failures"].as_u64().unwrap_or(0);
    let cut_short = "back-off cut short with";
    let cuts_before = rig.watchdog_log().map(|l| l.matches(cut_short).count());
    let asked = Instant::now();
    let out = verb(rig, "reconnect", Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{label}: reconnect during the back-off: {}\n{}",
        out_text(&out),
        rig.report()
    );
    // The next attempt follows at once and fails too (no server): one failure more,
    // long before the 30 s back-off could have run out.
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = status_json(rig);
            now["consecutive_failures"].as_u64().unwrap_or(0) > failures
        }),
        "{label}: no new attempt after reconnect: {now}\n{}",
        rig.report()
    );
    if let Some(before) = cuts_before {
        assert!(
            wait_until(Duration::from_secs(5), || {
                rig.watchdog_log()
                    .is_some_and(|l| l.matches(cut_short).count() > before)
            }),
            "{label}: the watchdog did not log that reconnect cut its back-off short\n{}",
            rig.report()
        );
    }
    eprintln!(
        "{label}: reconnect during the back-off -> new attempt seen after {:?}",
        asked.elapsed()
    );
    rig.server_up();
    let back = Instant::now();
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "{label}: tunnel not back after the server returned: {e}\n{}",
                rig.report()
            )
        });
    eprintln!("{label}: server back -> data after {:?}", back.elapsed());
}

/// The watchdogs running now (host pids).
fn watchdogs<D: Driven>(rig: &D) -> Vec<i32> {
    rig.tunnel_processes()
        .into_iter()
        .filter(|(_, c)| c.contains("tunnel-watchdog"))
        .map(|(p, _)| p)
        .collect()
}

/// `stop`: nothing runs and the forward is dead; `start`: the tunnel carries data
/// again; `restart`: another watchdog carries it. Each through the init, by tunnelctl.
fn stop_start_restart<D: Driven>(rig: &mut D) {
    let label = rig.label();
    let run = |rig: &D, verb_name: &str| {
        let out = verb(rig, verb_name, Duration::from_secs(90));
        assert!(
            out.status.success(),
            "{label}: tunnelctl {verb_name} {NAME}: {}\n{}",
            out_text(&out),
            rig.report()
        );
    };
    run(rig, "stop");
    let mut left = Vec::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            left = rig.tunnel_processes();
            left.is_empty()
        }),
        "{label}: still running after stop: {left:?}\n{}",
        rig.report()
    );
    assert!(
        !rig.init_says_running(),
        "{label}: the init runs it after stop"
    );
    assert!(
        rig.wait_roundtrip(Duration::ZERO).is_err(),
        "{label}: the forward carries data after stop"
    );
    run(rig, "start");
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "{label}: not carrying data after start: {e}\n{}",
                rig.report()
            )
        });
    assert!(
        rig.init_says_running(),
        "{label}: the init does not run it after start"
    );
    let mut before = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            before = watchdogs(rig);
            before.len() == 1
        }),
        "{label}: watchdogs after start: {before:?}\n{}",
        rig.report()
    );
    run(rig, "restart");
    let mut after = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            after = watchdogs(rig);
            after.len() == 1 && after != before
        }),
        "{label}: no new watchdog after restart: {before:?} -> {after:?}\n{}",
        rig.report()
    );
    rig.wait_roundtrip(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            panic!(
                "{label}: not carrying data after restart: {e}\n{}",
                rig.report()
            )
        });
    eprintln!("{label}: stop, start and restart by tunnelctl: watchdog {before:?} -> {after:?}");
}
