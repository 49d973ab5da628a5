//! Golden tests in the style of a generator's test tree: `tests/golden/<case>/tunnels.yaml`
//! is installed with `tunnelctl install --all --root TMP` for every target, and TMP must
//! equal `tests/golden/<case>/expected/<target>/` byte for byte. `UPDATE_GOLDEN=1`
//! rewrites the expected trees. On top: `systemd-analyze verify` and `security` on every
//! unit, plists read back by two parsers, inittab lines and args files checked against
//! the rules init applies.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::commands::stdout_of_success;
use common::readback::{
    args_file_words, assert_plain_inittab_process, inittab_watchdog_args, launchd_state_dir,
    plist_program_arguments, python_program_arguments, systemd_verify,
};
use common::systemd_analyze::exposure;
use common::*;
use tunnelctl::config::Config;
use tunnelctl::ssh_command::{PathOverrides, ssh_argv};
use tunnelctl::targets::Target;
use tunnelctl::targets::{self as render, RenderOptions};

const WATCHDOG: &str = "/usr/bin/tunnel-watchdog";

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("tunnels.yaml").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 6,
        "golden cases missing in {}",
        dir.display()
    );
    cases
}

/// `tunnelctl -c CASE/tunnels.yaml install --all --target TARGET --watchdog WATCHDOG
/// --root TMP`, asserting success: TMP.
fn install_all(home: &Path, case: &Path, target: Target, watchdog: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let out = tunnelctl(home)
        .arg("-c")
        .arg(case.join("tunnels.yaml"))
        .args([
            "install",
            "--all",
            "--target",
            target.as_str(),
            "--watchdog",
            watchdog,
            "--root",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    stdout_of_success(&out, &format!("{} {target}", case.display()));
    root
}

#[test]
fn every_case_renders_as_expected_for_every_target() {
    let home = golden_home();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for case in cases() {
        for target in Target::ALL {
            let root = install_all(&home, &case, target, WATCHDOG);
            let actual = tree(root.path());
            let expected_dir = case.join("expected").join(target.as_str());
            if update {
                let _ = fs::remove_dir_all(&expected_dir);
                for (rel, bytes) in &actual {
                    let path = expected_dir.join(rel);
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, bytes).unwrap();
                }
                continue;
            }
            let expected = tree(&expected_dir);
            if expected.is_empty() {
                mismatches.push(format!(
                    "{}: no expected tree (run with UPDATE_GOLDEN=1)",
                    expected_dir.display()
                ));
            }
            for (rel, bytes) in &actual {
                match expected.get(rel) {
                    None => {
                        mismatches.push(format!("{}/{rel}: not expected", expected_dir.display()))
                    }
                    Some(want) if want != bytes => mismatches.push(format!(
                        "{}/{rel} differs:\n{}",
                        expected_dir.display(),
                        tunnelctl::install::unified_diff(
                            "expected",
                            "actual",
                            &String::from_utf8_lossy(want),
                            &String::from_utf8_lossy(bytes)
                        )
                    )),
                    Some(_) => {}
                }
            }
            for rel in expected.keys().filter(|rel| !actual.contains_key(*rel)) {
                mismatches.push(format!(
                    "{}/{rel}: expected but not written",
                    expected_dir.display()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The `render` command prints what install writes (service file; inittab lines + args file).
#[test]
fn render_command_prints_the_installed_contents() {
    let home = golden_home();
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("full-example"))
        .unwrap();
    let config = case.join("tunnels.yaml");
    let run = |target: &str| {
        let out = tunnelctl(&home)
            .arg("-c")
            .arg(&config)
            .args([
                "render",
                "work-tunnel",
                "--target",
                target,
                "--watchdog",
                WATCHDOG,
            ])
            .output()
            .unwrap();
        stdout_of_success(&out, &format!("tunnelctl render --target {target}"));
        String::from_utf8(out.stdout).unwrap()
    };
    let unit = fs::read_to_string(
        case.join("expected/systemd/etc/systemd/system/tunnel-work-tunnel.service"),
    )
    .unwrap();
    assert_eq!(run("systemd"), unit);
    let inittab = run("inittab");
    let id = tunnelctl::config::inittab_id("work-tunnel");
    let args =
        fs::read_to_string(case.join(format!("expected/inittab/etc/tunnelctl/run/{id}.args")))
            .unwrap();
    let installed_inittab = fs::read_to_string(case.join("expected/inittab/etc/inittab")).unwrap();
    assert_eq!(
        inittab,
        format!(
            "# ==> /etc/inittab <==\n{installed_inittab}# ==> /etc/tunnelctl/run/{id}.args <==\n{args}"
        )
    );
    // Unknown tunnel and bad target are argument errors.
    let out = tunnelctl(&home)
        .arg("-c")
        .arg(&config)
        .args(["render", "nope", "--target", "systemd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tunnel named `nope`"));
}

/// `systemd-analyze verify` accepts every rendered unit without a single warning about
/// it, and the system unit's exposure score stays at or below 2.5.
#[test]
fn systemd_analyze_accepts_every_unit() {
    let home = golden_home();
    let watchdog = env!("CARGO_BIN_EXE_tunnel-watchdog");
    let mut scores = Vec::new();
    for case in cases() {
        for target in [Target::Systemd, Target::SystemdUser] {
            let root = install_all(&home, &case, target, watchdog);
            let units: Vec<PathBuf> = tree(root.path())
                .keys()
                .filter(|rel| rel.ends_with(".service"))
                .map(|rel| root.path().join(rel))
                .collect();
            assert!(!units.is_empty());
            for unit in units {
                let name = unit.file_name().unwrap().to_str().unwrap().to_string();
                let (ok, stderr) = systemd_verify(&unit);
                assert!(ok, "{name}: systemd-analyze verify failed:\n{stderr}");
                assert!(
                    !stderr
                        .lines()
                        .any(|l| l.contains(&name) || l.contains(unit.to_str().unwrap())),
                    "{} {name}: systemd-analyze verify warned:\n{stderr}",
                    case.display()
                );
                if target == Target::Systemd {
                    let score = exposure(&unit);
                    assert!(score <= 2.5, "{name}: exposure {score} > 2.5");
                    scores.push((name, score));
                }
            }
        }
    }
    eprintln!("exposure scores: {scores:?}");
}

/// launchd: both the `plist` crate and Python's plistlib read back exactly the intended
/// ProgramArguments, and the keys launchd needs are there.
#[test]
fn plists_read_back_the_intended_argv() {
    let home = golden_home();
    for (_case, config, target, expected_dir) in
        expected_trees(&home, &[Target::Launchd, Target::LaunchdAgent])
    {
        for tunnel in &config.tunnels {
            let options = RenderOptions {
                watchdog: WATCHDOG.into(),
                home: home.clone(),
            };
            let rendered = render::render(tunnel, target, &options).unwrap();
            let file = &rendered.files[0];
            let on_disk = expected_dir.join(file.path.strip_prefix("/").unwrap());
            let state = launchd_state_dir(target, &home, &tunnel.name);
            let mut intended = vec![WATCHDOG.to_string()];
            intended.extend(render::watchdog_args(
                tunnel,
                Some(&state),
                None,
                ssh_argv(tunnel, &PathOverrides::default()),
            ));
            let value = plist::Value::from_file(&on_disk).unwrap();
            let dict = value.as_dictionary().unwrap();
            assert_eq!(
                plist_program_arguments(dict),
                intended,
                "{}",
                on_disk.display()
            );
            assert_eq!(
                dict["Label"].as_string(),
                Some(format!("org.tunnelctl.{}", tunnel.name).as_str())
            );
            assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
            assert_eq!(dict["KeepAlive"].as_boolean(), Some(true));
            assert!(
                dict["StandardErrorPath"]
                    .as_string()
                    .unwrap()
                    .ends_with(&format!("{}.log", tunnel.name))
            );
            assert_eq!(
                python_program_arguments(&on_disk),
                intended,
                "{}",
                on_disk.display()
            );
        }
    }
}

/// OpenRC: the init script, sourced as openrc-run sources it and eval'd as
/// supervise-daemon.sh evals it, starts exactly the intended argv, with the readiness fd
/// only where supervise-daemon knows `--notify`; respawn never gives up.
#[test]
fn openrc_scripts_start_the_intended_argv() {
    let home = golden_home();
    for (case, config, _, expected_dir) in expected_trees(&home, &[Target::Openrc]) {
        for tunnel in &config.tunnels {
            let script = expected_dir.join(format!("etc/init.d/tunnel-{}", tunnel.name));
            common::initd::assert_openrc_script(
                &script,
                tunnel,
                WATCHDOG,
                ssh_argv(tunnel, &PathOverrides::default()),
                &case.display().to_string(),
            );
        }
    }
}

/// procd: the init script, sourced as /etc/rc.common sources it with recorders of
/// procd.sh's functions, opens one instance whose command is exactly the intended argv,
/// never halts its respawn, and arms procd's watchdog with the watchdog's own timeout.
#[test]
fn procd_scripts_make_the_intended_calls() {
    let home = golden_home();
    for (case, config, _, expected_dir) in expected_trees(&home, &[Target::Procd]) {
        for tunnel in &config.tunnels {
            let script = expected_dir.join(format!("etc/init.d/tunnel-{}", tunnel.name));
            common::initd::assert_procd_script(
                &script,
                tunnel,
                WATCHDOG,
                ssh_argv(tunnel, &PathOverrides::default()),
                &case.display().to_string(),
            );
        }
    }
}

/// The procd recorders refuse what procd.sh's contract does not allow.
#[test]
fn procd_recorders_catch_breaches_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tunnel-x");
    let with = |body: &str| {
        fs::write(
            &script,
            format!("#!/bin/sh /etc/rc.common\nUSE_PROCD=1\nSTART=95\nSTOP=10\nstart_service() {{\n{body}\n}}\n"),
        )
        .unwrap();
        common::initd::procd_calls_or_breach(&script)
    };
    let good = "procd_open_instance tunnel\nprocd_set_param command /bin/true\nprocd_set_param respawn 3600 5 0\nprocd_close_instance";
    assert_eq!(with(good).unwrap().len(), 4);
    for (body, says) in [
        ("procd_set_param command /bin/true", "outside an instance"),
        (
            "procd_open_instance t\nprocd_set_param respawn 3600 5\nprocd_close_instance",
            "respawn",
        ),
        (
            "procd_open_instance t\nprocd_set_param stdout yes\nprocd_close_instance",
            "stdout",
        ),
        (
            "procd_open_instance t\nprocd_set_param watchdog 1 30s\nprocd_close_instance",
            "watchdog timeout",
        ),
        (
            "procd_open_instance t\nprocd_set_param restart 1\nprocd_close_instance",
            "no parameter restart",
        ),
        (
            "procd_open_instance t\nprocd_set_param command true\nprocd_close_instance",
            "absolute",
        ),
        ("procd_open_instance t", "left open"),
    ] {
        let err = with(body).unwrap_err();
        assert!(err.contains(says), "{body}: {err}");
    }
}

/// inittab/busybox: the line is short and shell-free, names our args file, and the args
/// file holds exactly the intended arguments one per line.
#[test]
fn inittab_lines_are_plain_and_args_files_exact() {
    let home = golden_home();
    for (case, config, target, expected_dir) in
        expected_trees(&home, &[Target::Inittab, Target::Busybox])
    {
        let inittab = fs::read_to_string(expected_dir.join("etc/inittab")).unwrap();
        for tunnel in &config.tunnels {
            let id = tunnelctl::config::inittab_id(&tunnel.name);
            let lines: Vec<&str> = inittab.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("# tunnelctl:{id} {} ", tunnel.name)))
                .unwrap();
            let line = lines[at + 1];
            let process = match target {
                Target::Busybox => line.strip_prefix("::respawn:").unwrap(),
                _ => line.strip_prefix(&format!("{id}:2345:respawn:")).unwrap(),
            };
            assert_plain_inittab_process(process, line);
            assert_eq!(
                process,
                format!("{WATCHDOG} --args-file /etc/tunnelctl/run/{id}.args")
            );

            let read = args_file_words(&expected_dir.join(format!("etc/tunnelctl/run/{id}.args")));
            let intended =
                inittab_watchdog_args(tunnel, ssh_argv(tunnel, &PathOverrides::default()));
            assert_eq!(read, intended, "{}", case.display());
        }
    }
}

/// Every case's config with each of `targets` and the directory of the tree expected for
/// it: (case, config, target, expected dir).
fn expected_trees(home: &Path, targets: &[Target]) -> Vec<(PathBuf, Config, Target, PathBuf)> {
    let mut out = Vec::new();
    for case in cases() {
        for &target in targets {
            let config = load(&case.join("tunnels.yaml"), home);
            let expected_dir = case.join("expected").join(target.as_str());
            out.push((case.clone(), config, target, expected_dir));
        }
    }
    out
}

/// Path → bytes of every file under `dir` (relative, `/`-separated).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Every rendered shell script (a run script, an init.d script: a file whose first line
/// names a shell) parses: `sh -n` accepts it. Values reach them only through
/// `escape::sh_word`.
#[test]
fn every_rendered_shell_script_parses() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")];
    let mut checked = 0;
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = fs::read(&path).unwrap();
            let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
            let shells: [&[u8]; 3] = [b"#!/bin/sh", b"#!/sbin/openrc-run", b"#!/usr/bin/env sh"];
            if !shells.iter().any(|s| first.starts_with(s)) {
                continue;
            }
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "sh -n {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    eprintln!("sh -n accepted {checked} rendered shell scripts");
}
