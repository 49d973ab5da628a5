//! The Ansible example (`examples/ansible/`), run for real: `ansible-lint` passes on it,
//! and Debian's `ansible-core` plays it against localhost (`connection: local`) with the
//! tunnels applied under a temporary `--root`. First run changed, second run not
//! changed, `--check --diff` reports the pending removal and writes nothing, and the
//! run after one tunnel was deleted from the variables removes exactly that tunnel.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::prereq::{Prereq, require};
use crate::common::user_manager::run_bounded;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ansible")
}

/// (inode, mtime ns) of every unit file: equal means not rewritten.
fn units(root: &Path) -> BTreeMap<String, (u64, i64)> {
    let dir = root.join("etc/systemd/system");
    let Ok(listing) = fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    listing
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec()),
            )
        })
        .collect()
}

/// `changed=N` of the play recap.
fn changed(out: &str) -> u32 {
    let recap = out
        .lines()
        .find(|l| l.starts_with("localhost") && l.contains("changed="))
        .unwrap_or_else(|| panic!("no play recap in:\n{out}"));
    recap
        .split_whitespace()
        .find_map(|w| w.strip_prefix("changed="))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn the_ansible_example_converges_and_is_honest_under_check() {
    if !require(
        "the_ansible_example_converges_and_is_honest_under_check",
        &[Prereq::Root, Prereq::Ansible],
    ) {
        return;
    }
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs::create_dir(&home).unwrap();
    let env = |cmd: &mut Command| {
        cmd.env("HOME", &home)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_LOCAL_TEMP", work.path().join("tmp"))
            .env("ANSIBLE_REMOTE_TEMP", work.path().join("tmp"))
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_HOST_KEY_CHECKING", "0")
            .env_remove("ANSIBLE_CONFIG");
    };

    // Lint first: the example is what users copy.
    let mut lint = Command::new("ansible-lint");
    lint.arg("--nocolor").current_dir(example());
    env(&mut lint);
    let out = run_bounded(lint, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "ansible-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let linted = started.elapsed();

    let root = work.path().join("root");
    let config = work.path().join("tunnels.yaml");
    let inventory = work.path().join("inventory.ini");
    fs::write(
        &inventory,
        "[tunnel_boxes]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n",
    )
    .unwrap();
    let play = |tunnels: &[(&str, u16)], extra: &[&str]| -> String {
        let tunnels: serde_json::Map<String, serde_json::Value> = tunnels
            .iter()
            .map(|(name, port)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "host": format!("{name}.example.org"),
                        "forwards": [{"remote": port, "to": "localhost:22"}],
                    }),
                )
            })
            .collect();
        let vars = serde_json::json!({
            "ansible_become": false,
            "tunnelctl_bin": env!("CARGO_BIN_EXE_tunnelctl"),
            "tunnelctl_config": config,
            "tunnelctl_tunnels": tunnels,
            "tunnelctl_apply_args": ["--root", root, "--target", "systemd", "--watchdog", "/usr/bin/tunnel-watchdog"],
        });
        let vars_file = work.path().join("vars.json");
        fs::write(&vars_file, vars.to_string()).unwrap();
        let mut cmd = Command::new("ansible-playbook");
        cmd.arg("-i")
            .arg(&inventory)
            .arg("-e")
            .arg(format!("@{}", vars_file.display()))
            .arg(example().join("playbook.yml"))
            .args(extra);
        env(&mut cmd);
        let out = run_bounded(cmd, Duration::from_secs(300));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ansible-playbook {extra:?}:\n{text}");
        text
    };
    let three = [("alpha", 9101), ("beta", 9102), ("gamma", 9103)];

    // First run: the file and the three tunnels.
    let out = play(&three, &[]);
    assert_eq!(changed(&out), 2, "template and apply changed:\n{out}");
    let installed = units(&root);
    assert_eq!(installed.len(), 3, "{installed:?}");

    // Second run: nothing to do, nothing rewritten.
    let out = play(&three, &[]);
    assert_eq!(changed(&out), 0, "{out}");
    assert_eq!(units(&root), installed);

    // gamma deleted from the variables, under --check --diff: the pending change is
    // reported (the file and the removal, with its diff) and nothing is written.
    let two = &three[..2];
    let config_before = fs::read(&config).unwrap();
    let out = play(two, &["--check", "--diff"]);
    assert_eq!(changed(&out), 2, "{out}");
    assert!(
        out.contains("--- /etc/systemd/system/tunnel-gamma.service")
            && out.contains("+++ /dev/null"),
        "the removal's diff is not shown:\n{out}"
    );
    assert_eq!(units(&root), installed, "--check changed a unit");
    assert_eq!(
        fs::read(&config).unwrap(),
        config_before,
        "--check wrote the file"
    );

    // The real run: exactly gamma removed, alpha and beta untouched.
    let out = play(two, &[]);
    assert_eq!(changed(&out), 2, "{out}");
    let mut expected = installed.clone();
    expected.remove("tunnel-gamma.service");
    assert_eq!(units(&root), expected, "not exactly gamma removed");
    eprintln!(
        "ansible example: lint {:.1} s, lint and four plays {:.1} s",
        linted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
