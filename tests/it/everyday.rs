//! The everyday commands tell the truth: a closed stdout or stderr changes nothing that
//! is written or started.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;
use common::tunnel_env::{Server, TUNNELCTL, Timing, WATCHDOG, free_port, write_config};
use common::user_manager::run_bounded;
use common::user_unit::UserUnitRig;

/// The write end of a pipe whose read end is already closed: every write fails with
/// EPIPE, as `| head -1` does once head has its line (deterministic, no race with head).
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

/// Gives `cmd` a closed stdout, and a closed stderr too when `both` (`2>&1 | head -1`).
fn with_closed_output(cmd: &mut Command, both: bool) {
    let out = closed_pipe();
    let err = if both {
        Stdio::from(out.try_clone().expect("dup"))
    } else {
        Stdio::piped()
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(err);
}

const CONFIG: &str = "tunnels:
  alpha:
    host: 127.0.0.1
    forwards:
      - local: 18080
        to: localhost:80
";

/// `--root`: every file written, whichever stream is closed, and no panic (101).
#[test]
fn install_with_closed_output_writes_everything() {
    let dir = common::temp_dir("closedpipe");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    for (i, both) in [false, true].into_iter().enumerate() {
        let root = dir.path().join(format!("root{i}"));
        let mut cmd = Command::new(TUNNELCTL);
        cmd.arg("-c").arg(&config).args([
            "install",
            "alpha",
            "--target",
            "inittab",
            "--watchdog",
            WATCHDOG,
            "--root",
        ]);
        cmd.arg(&root).env("HOME", dir.path());
        with_closed_output(&mut cmd, both);
        let out = cmd.output().expect("run tunnelctl");
        assert_eq!(
            out.status.code(),
            Some(0),
            "install with a closed {} ended with {:?}",
            if both { "stdout and stderr" } else { "stdout" },
            out.status
        );
        let inittab = std::fs::read_to_string(root.join("etc/inittab")).expect("inittab written");
        let args = root.join(format!(
            "etc/tunnelctl/run/{}.args",
            tunnelctl::config::inittab_id("alpha")
        ));
        assert!(inittab.contains(WATCHDOG) && args.is_file(), "{inittab}");
        // And `list` agrees it is installed as rendered.
        let list = run_bounded(
            {
                let mut c = Command::new(TUNNELCTL);
                c.arg("-c").arg(&config).args(["list", "--root"]).arg(&root);
                c.env("HOME", dir.path());
                c
            },
            Duration::from_secs(30),
        );
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("inittab: installed"), "{list}");
    }
}

/// The real thing: `install` under a running `systemd --user` with stdout and stderr
/// closed leaves the unit enabled and started (systemctl's own output, which it writes
/// before starting, must not kill it either).
#[test]
fn install_with_closed_output_starts_the_unit() {
    let Some(rig) = UserUnitRig::start("install_with_closed_output_starts_the_unit", "closed")
    else {
        return;
    };
    let home = rig.manager.home();
    let (key, known_hosts) = (rig.sshd.client_key(), rig.sshd.known_hosts());
    let server = Server {
        port: rig.sshd.port(),
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(
        home,
        "itest",
        &server,
        free_port(),
        rig.echo.port(),
        &Timing::default(),
    );
    let mut cmd = rig.manager.command(TUNNELCTL);
    cmd.arg("-c").arg(&config).args([
        "install",
        "itest",
        "--target",
        "systemd-user",
        "--watchdog",
        WATCHDOG,
    ]);
    with_closed_output(&mut cmd, true);
    let status = cmd.status().expect("run tunnelctl");
    assert_eq!(
        status.code(),
        Some(0),
        "install ended with {status:?}; manager log:\n{}",
        rig.manager.log()
    );
    let props = rig
        .manager
        .show("tunnel-itest.service", &["ActiveState", "UnitFileState"]);
    assert_eq!(props["ActiveState"], "active", "{props:?}");
    assert_eq!(props["UnitFileState"], "enabled", "{props:?}");
    assert!(Path::new(&rig.manager.unit_dir().join("tunnel-itest.service")).is_file());
}

/// Every file under `dir` with its bytes (what "nothing written" is checked against).
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
                all.push((p, Vec::new()));
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                all.push((p, bytes));
            }
        }
    }
    all.sort();
    all
}

/// One answer to a misspelled name, whichever command gets it: exit 2, the
/// did-you-mean, nothing written.
#[test]
fn every_command_refuses_a_misspelled_name_alike() {
    let dir = common::temp_dir("typo");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let root = dir.path().join("root");
    let tunnelctl = |args: &[&str]| {
        let mut c = Command::new(TUNNELCTL);
        c.arg("-c").arg(&config).args(args).env("HOME", dir.path());
        c.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        run_bounded(c, Duration::from_secs(30))
    };
    let r = root.to_str().unwrap();
    let out = tunnelctl(&[
        "install",
        "alpha",
        "--target",
        "inittab",
        "--watchdog",
        WATCHDOG,
        "--root",
        r,
    ]);
    assert!(out.status.success(), "{out:?}");
    let before = snapshot(&root);
    let commands: &[&[&str]] = &[
        &["status", "alpah", "--target", "inittab"],
        &["status", "alpah", "--target", "inittab", "--json"],
        &["metrics", "alpah", "--target", "inittab"],
        &["logs", "alpah", "--target", "inittab"],
        &["uninstall", "alpah", "--target", "inittab", "--root", r],
        &["install", "alpah", "--target", "inittab", "--root", r],
        &["render", "alpah", "--target", "inittab"],
        &["doctor", "alpah"],
        &["trust", "alpah"],
    ];
    for args in commands {
        let out = tunnelctl(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(err.contains("did you mean `alpha`?"), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(snapshot(&root), before, "{args:?} wrote something");
    }
    // The real name still goes through (uninstall of what is installed).
    let out = tunnelctl(&["uninstall", "alpha", "--target", "inittab", "--root", r]);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(snapshot(&root), before);
}

/// `--state-dir DIR` without a name: the tunnel is called what its state file says,
/// in `status` and in the Prometheus labels, not after the folder.
#[test]
fn a_state_dir_is_labelled_by_the_tunnel_it_holds() {
    let dir = common::temp_dir("statename");
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let state = tunnelctl::state::State {
        name: "office".into(),
        ..Default::default()
    };
    std::fs::write(state_dir.join("state"), state.to_text()).unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(TUNNELCTL);
        c.args(args)
            .arg("--state-dir")
            .arg(&state_dir)
            .env("HOME", dir.path());
        run_bounded(c, Duration::from_secs(30))
    };
    let out = run(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["tunnels"][0]["name"], "office", "{doc}");
    assert_eq!(doc["tunnels"][0]["state"], "stopped", "{doc}");
    let out = run(&["metrics"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tunnelctl_tunnel_up{tunnel=\"office\"} 0"),
        "{text}"
    );
    assert!(!text.contains("tunnel=\"state\""), "{text}");
}

/// A mount and pid namespace where systemd is installed (this machine's files) but not
/// running (a tmpfs over /run, a shell as PID 1) and `telinit` is systemd's: a container
/// of a systemd distribution. /etc and /var are overlays whose upper folders show every
/// write. `install NAME` refuses and writes nothing; files staged for SysV with
/// `--no-start` are removed by one `uninstall NAME`, which finds their target by itself.
#[test]
fn install_refuses_where_no_init_runs_and_uninstall_finishes_in_one_run() {
    use common::prereq::{Prereq, require};
    if !require(
        "install_refuses_where_no_init_runs_and_uninstall_finishes_in_one_run",
        &[Prereq::Root, Prereq::Unshare, Prereq::SystemdUser],
    ) {
        return;
    }
    let dir = common::temp_dir("noinit");
    let r = dir.path();
    for d in ["etc", "var", "w/etc", "w/var"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let config = r.join("tunnels.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let script = r#"set -u
r=$1; t=$2; c=$3; w=$4
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$r/etc,workdir=$r/w/etc" /etc || exit 97
mount -t overlay overlay -o "lowerdir=/var,upperdir=$r/var,workdir=$r/w/var" /var || exit 97
mount -t tmpfs tmpfs /run || exit 97
"$t" -c "$c" install alpha --watchdog "$w" >"$r/install.out" 2>&1; echo "install=$?" >>"$r/codes"
find "$r/etc" "$r/var" -mindepth 1 >"$r/after-install"
"$t" -c "$c" install alpha --target inittab --no-start --watchdog "$w" >"$r/staged.out" 2>&1; echo "staged=$?" >>"$r/codes"
find "$r/etc" "$r/var" -mindepth 1 >"$r/after-staged"
"$t" -c "$c" uninstall alpha >"$r/uninstall.out" 2>&1; echo "uninstall=$?" >>"$r/codes"
find "$r/etc" "$r/var" -mindepth 1 -not -name inittab -type f >"$r/after-uninstall"
find "$r/etc" -mindepth 1 -not -name inittab >>"$r/after-uninstall"
"#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "-p",
        "-f",
        "--mount-proc",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(r)
    .arg(TUNNELCTL)
    .arg(&config)
    .arg(WATCHDOG)
    .env("HOME", r)
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "namespace set-up failed: {out:?}");
    let read = |f: &str| std::fs::read_to_string(r.join(f)).unwrap_or_default();
    assert_eq!(
        read("codes"),
        "install=2\nstaged=0\nuninstall=0\n",
        "{}{}{}",
        read("install.out"),
        read("staged.out"),
        read("uninstall.out")
    );
    let refusal = read("install.out");
    for said in [
        "no init system tunnelctl can use is running here",
        "PID 1 is `sh`",
        "systemd is installed",
        "but not running",
        "--target",
        "--root DIR",
    ] {
        assert!(refusal.contains(said), "no {said:?} in: {refusal}");
    }
    assert_eq!(
        read("after-install"),
        "",
        "install wrote although it refused"
    );
    assert!(
        read("after-staged").contains("t36z.args"),
        "{}",
        read("after-staged")
    );
    let uninstall = read("uninstall.out");
    assert!(
        uninstall.contains("removed the t36z entry from /etc/inittab"),
        "{uninstall}"
    );
    assert_eq!(
        read("after-uninstall"),
        "",
        "left behind after one uninstall: {uninstall}"
    );
    let inittab = std::fs::read_to_string(r.join("etc/inittab")).unwrap_or_default();
    assert!(!inittab.contains("t36z"), "{inittab}");
}

/// `install --dry-run --root EMPTY` shows every target's files (an inittab from
/// nothing) and leaves the folder empty.
#[test]
fn dry_run_into_an_empty_root_shows_everything_and_writes_nothing() {
    let dir = common::temp_dir("dryempty");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let root = dir.path().join("empty");
    std::fs::create_dir(&root).unwrap();
    for target in tunnelctl::targets::Target::ALL {
        let mut c = Command::new(TUNNELCTL);
        c.arg("-c")
            .arg(&config)
            .args(["install", "alpha", "--dry-run", "--watchdog", WATCHDOG]);
        c.args(["--target", target.as_str(), "--root"])
            .arg(&root)
            .env("HOME", dir.path());
        let out = run_bounded(c, Duration::from_secs(30));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{target}: {out:?}");
        assert!(text.contains("would install"), "{target}: {text}");
        if matches!(target.as_str(), "inittab" | "busybox") {
            assert!(text.contains("+++ /etc/inittab"), "{target}: {text}");
        }
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "{target} wrote into the root"
        );
    }
}

/// `logs -n N`, `--since` and `--root` on an inittab tunnel's log file, and the
/// journalctl line they make for systemd.
#[test]
fn logs_takes_lines_since_and_root() {
    use tunnelctl::commands::logs::{LogQuery, log_command, since};
    let dir = common::temp_dir("logsq");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let root = dir.path().join("root");
    let log = root.join(format!(
        "var/log/tunnelctl/{}.log",
        tunnelctl::config::inittab_id("alpha")
    ));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(
        &log,
        "2020-12-06T03:59:59Z info alpha: one\n\
         2020-12-06T04:00:00Z info alpha: two\n\
         2020-12-06T04:00:01Z warn alpha: three\n\
         2020-12-06T04:00:02Z info alpha: four\n",
    )
    .unwrap();
    let logs = |args: &[&str]| {
        let mut c = Command::new(TUNNELCTL);
        c.arg("-c")
            .arg(&config)
            .args(["logs", "alpha", "--target", "inittab", "--root"]);
        c.arg(&root).args(args).env("HOME", dir.path());
        let out = run_bounded(c, Duration::from_secs(30));
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(&["-n", "2"]), ["three", "four"]);
    assert_eq!(
        logs(&["--since", "2020-12-06 04:00:00"]),
        ["two", "three", "four"]
    );
    assert_eq!(logs(&["--since", "2020-12-06T04:00", "-n", "1"]), ["four"]);
    assert_eq!(
        logs(&["--since", "1h"]),
        Vec::<String>::new(),
        "those lines are older"
    );
    let journal = log_command(
        &tunnelctl::targets::LogSource::Journal {
            unit: "tunnel-alpha.service".into(),
            user: true,
        },
        &LogQuery {
            follow: false,
            lines: 5,
            since: Some(since("30m", 10_000).unwrap().0),
            root: Some("/mnt/other".into()),
        },
    );
    assert_eq!(
        journal,
        [
            "journalctl",
            "--no-pager",
            "-n",
            "5",
            "--root=/mnt/other",
            "--since=-1800s",
            "--user-unit",
            "tunnel-alpha.service"
        ]
    );
    assert!(since("yesterday-ish", 0).is_err());
}

/// bash completes tunnel names (asked of `tunnelctl list --names` at completion time,
/// with the `-c FILE` already typed) where a command takes one, and nothing else there.
#[test]
fn bash_completes_tunnel_names() {
    let dir = common::temp_dir("complete");
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(&config, format!("{CONFIG}  beta:\n    host: 127.0.0.1\n    forwards:\n      - local: 18081\n        to: localhost:81\n")).unwrap();
    let scripts = dir.path().join("completions");
    let out = run_bounded(
        {
            let mut c = Command::new(TUNNELCTL);
            c.args(["generate", "completions"]).arg(&scripts);
            c
        },
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    let bin = std::path::Path::new(TUNNELCTL).parent().unwrap();
    let complete = |line: &str| {
        let script = r#"source "$1"; line=$2
read -ra COMP_WORDS <<<"$line"; [[ $line == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$line; COMP_POINT=${#line}; COMPREPLY=()
_tunnelctl tunnelctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}""#;
        let mut c = Command::new("bash");
        c.args(["-c", script, "bash"])
            .arg(scripts.join("tunnelctl.bash"))
            .arg(line.replace("CONFIG", config.to_str().unwrap()))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", dir.path())
            .env_remove("TUNNELCTL_CONFIG");
        let out = run_bounded(c, Duration::from_secs(30));
        assert!(out.status.success(), "{line}: {out:?}");
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        words.sort();
        words
    };
    assert_eq!(complete("tunnelctl -c CONFIG status "), ["alpha", "beta"]);
    assert_eq!(complete("tunnelctl -c CONFIG stop b"), ["beta"]);
    assert_eq!(complete("tunnelctl --config CONFIG logs -f a"), ["alpha"]);
    // A value, not a name, after an option that takes one; nothing after the name.
    assert!(complete("tunnelctl -c CONFIG logs --target ").contains(&"busybox".to_string()));
    assert!(!complete("tunnelctl -c CONFIG logs alpha ").contains(&"beta".to_string()));
    // Commands keep completing as before.
    assert!(complete("tunnelctl st").contains(&"status".to_string()));
}

/// `trust` against a port nothing listens on says so at once (not "within 15s"), and
/// does not tell the user to run the command they are running.
#[test]
fn trust_says_connection_refused_and_no_hint_to_itself() {
    let dir = common::temp_dir("trustref");
    let port = free_port();
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(
        &config,
        format!(
            "tunnels:\n  alpha:\n    host: 127.0.0.1\n    port: {port}\n    known_hosts: {}\n    forwards:\n      - local: 18080\n        to: localhost:80\n",
            dir.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    let mut c = Command::new(TUNNELCTL);
    c.arg("-c")
        .arg(&config)
        .args(["trust", "alpha", "--yes"])
        .env("HOME", dir.path());
    let out = run_bounded(c, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("within 15s"), "{err}");
    assert!(!err.contains("run `tunnelctl trust"), "{err}");
}
