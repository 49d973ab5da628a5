//! Golden tests in the style of a generator's test tree: `tests/golden/<case>/tunnels.yaml`
//! is installed with `tunnelctl install --all --root TMP` for every target, and TMP must
//! equal `tests/golden/<case>/expected/<target>/` byte for byte. `UPDATE_GOLDEN=1`
//! rewrites the expected trees. On top: `systemd-analyze verify` and `security` on every
//! unit, plists read back by two parsers, inittab lines and args files checked against
//! the rules init applies. What each format hands to the watchdog is read back as its
//! consumer reads it and checked against [`intents`], written by hand from the cases'
//! YAML (the ssh part through the real `ssh -G`), so a renderer bug cannot pass by being
//! both the expectation and the result.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::commands::stdout_of_success;
use common::readback::{
    Intent, args_file_words, assert_plain_inittab_process, launchd_state_dir,
    plist_program_arguments, python_program_arguments, run_script_words, systemd_verify,
};
use common::systemd_analyze::exposure;
use common::*;
use tunnelctl::config::Config;
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

/// launchd: both the `plist` crate and Python's plistlib read back the same
/// ProgramArguments, the intended words (see [`assert_intended`]), and the keys launchd
/// needs are there.
#[test]
fn plists_read_back_the_intended_argv() {
    let home = golden_home();
    let oracle = Oracle::new();
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
            let label = format!("{target} {}", on_disk.display());
            let value = plist::Value::from_file(&on_disk).unwrap();
            let dict = value.as_dictionary().unwrap();
            let argv = plist_program_arguments(dict);
            let state = launchd_state_dir(target, &home, &tunnel.name);
            oracle.assert_intended(&tunnel.name, &argv, &[("--state-dir", &state)], &label);
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
                argv,
                "{label}: plistlib"
            );
        }
    }
}

/// OpenRC: the init script, sourced as openrc-run sources it and eval'd as
/// supervise-daemon.sh evals it, starts the intended words (see
/// [`common::initd::assert_openrc_script`]).
#[test]
fn openrc_scripts_start_the_intended_argv() {
    let home = golden_home();
    let oracle = Oracle::new();
    for (case, config, _, expected_dir) in expected_trees(&home, &[Target::Openrc]) {
        for tunnel in &config.tunnels {
            let name = &tunnel.name;
            common::initd::assert_openrc_script(
                &expected_dir.join(format!("etc/init.d/tunnel-{name}")),
                oracle.intent(name),
                WATCHDOG,
                &format!("{} openrc {name}", case.display()),
            );
        }
    }
}

/// procd: the init script, sourced as /etc/rc.common sources it with recorders of
/// procd.sh's functions, makes the intended calls (see
/// [`common::initd::assert_procd_script`]); procd's watchdog is 30 s for every case, as
/// none has a probe timeout above 10 s.
#[test]
fn procd_scripts_make_the_intended_calls() {
    let home = golden_home();
    let oracle = Oracle::new();
    for (case, config, _, expected_dir) in expected_trees(&home, &[Target::Procd]) {
        for tunnel in &config.tunnels {
            let name = &tunnel.name;
            common::initd::assert_procd_script(
                &expected_dir.join(format!("etc/init.d/tunnel-{name}")),
                oracle.intent(name),
                WATCHDOG,
                30,
                &format!("{} procd {name}", case.display()),
            );
        }
    }
}

/// s6 and runit: the run script's last `exec`, as `sh` reads it, starts the intended
/// words, with s6's readiness fd (its `notification-fd` file says 3) and none for runit.
#[test]
fn run_scripts_exec_the_intended_argv() {
    let home = golden_home();
    let oracle = Oracle::new();
    for (case, config, target, expected_dir) in expected_trees(&home, &[Target::S6, Target::Runit])
    {
        for tunnel in &config.tunnels {
            let name = &tunnel.name;
            let (dir, readiness) = match target {
                Target::S6 => (format!("etc/tunnelctl/s6/tunnel-{name}"), "s6-fd:3"),
                _ => (format!("etc/tunnelctl/sv/tunnel-{name}"), "none"),
            };
            if target == Target::S6 {
                let fd = fs::read_to_string(expected_dir.join(&dir).join("notification-fd"));
                assert_eq!(fd.unwrap().trim(), "3", "{name}");
            }
            let argv = run_script_words(&expected_dir.join(&dir).join("run"));
            oracle.assert_intended(
                name,
                &argv,
                &[
                    ("--readiness", readiness),
                    ("--state-dir", &format!("/run/tunnelctl/{name}")),
                ],
                &format!("{} {target} {name}", case.display()),
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
/// file holds the intended words one per line.
#[test]
fn inittab_lines_are_plain_and_args_files_exact() {
    let home = golden_home();
    let oracle = Oracle::new();
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

            let mut argv = vec![WATCHDOG.to_string()];
            argv.extend(args_file_words(
                &expected_dir.join(format!("etc/tunnelctl/run/{id}.args")),
            ));
            oracle.assert_intended(
                &tunnel.name,
                &argv,
                &[
                    ("--state-dir", &format!("/run/tunnelctl/{}", tunnel.name)),
                    ("--log-file", &format!("/var/log/tunnelctl/{id}.log")),
                ],
                &format!("{} {target}", case.display()),
            );
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

/// One per tunnel of `tests/golden/*/tunnels.yaml`.
fn intents() -> Vec<Intent> {
    // `~/` stands for the golden home.
    vec![
        // full-example
        Intent::new(
            "work-tunnel",
            &[],
            &[
                ("hostname", "public.example.org"),
                ("user", "alice"),
                ("port", "22"),
                ("identityfile", "~/.ssh/id_ed25519"),
                ("identitiesonly", "yes"),
                ("userknownhostsfile", "~/.ssh/known_hosts"),
                // ssh stops updating host keys once UserKnownHostsFile is set.
                ("updatehostkeys", "false"),
                ("proxyjump", "bastion.example.org"),
                ("compression", "yes"),
                ("remoteforward", "1234 [localhost]:22"),
                ("localforward", "[127.0.0.1]:8080 [intranet]:80"),
                ("dynamicforward", "[127.0.0.1]:1080"),
            ],
        ),
        // health-hooks
        Intent::new(
            "db",
            &[
                (
                    "--metrics-file",
                    "/var/lib/tunnelctl-metrics/tunnel-db.prom",
                ),
                ("--on-change", "/bin/sh"),
                ("--on-change", "-c"),
                (
                    "--on-change",
                    r#"echo "$TUNNELCTL_TUNNEL is $TUNNELCTL_NEW_STATE (100% sure)" | logger -t "tunnel hook""#,
                ),
            ],
            &[
                ("hostname", "db.example.org"),
                ("localforward", "[127.0.0.1]:5432 [localhost]:5432"),
            ],
        ),
        Intent::new(
            "metrics-only",
            &[("--metrics-file", "/srv/metrics/relay.prom")],
            &[
                ("hostname", "relay.example.org"),
                ("remoteforward", "2222 [localhost]:22"),
            ],
        ),
        // identity-known-hosts
        Intent::new(
            "backup",
            &[],
            &[
                ("hostname", "192.0.2.10"),
                ("port", "2022"),
                ("identityfile", "~/.ssh/backup key"),
                ("identitiesonly", "yes"),
                ("userknownhostsfile", "~/.ssh/known_hosts.d/backup$hosts"),
                // ssh stops updating host keys once UserKnownHostsFile is set.
                ("updatehostkeys", "false"),
                ("remoteforward", "[127.0.0.1]:8873 [localhost]:873"),
            ],
        ),
        // jump-host
        Intent::new(
            "deep",
            &[],
            &[
                ("hostname", "inner.example.com"),
                ("user", "deploy"),
                ("proxyjump", "hop1@edge.example.com:2200,hop2.example.com"),
                ("serveraliveinterval", "5"),
                ("serveralivecountmax", "2"),
                ("connecttimeout", "30"),
                ("localforward", "[127.0.0.1]:9000 [app.inner]:9000"),
            ],
        ),
        // local-dynamic-bind
        Intent::new(
            "office-proxy",
            &[
                ("--probe-interval", "1500ms"),
                ("--probe-timeout", "700ms"),
                ("--probe-failures", "3"),
                ("--backoff-initial", "500ms"),
                ("--backoff-max", "90s"),
            ],
            &[
                ("hostname", "gw.example.net"),
                ("user", "ops"),
                (
                    "localforward",
                    "[0.0.0.0]:5432 [db.internal]:5432|[127.0.0.1]:6379 [fd00::5]:6379",
                ),
                ("dynamicforward", "[::1]:1080"),
            ],
        ),
        // minimal-reverse
        Intent::new(
            "home",
            &[],
            &[
                ("hostname", "relay.example.org"),
                ("remoteforward", "2222 [localhost]:22"),
            ],
        ),
        // odd-names
        Intent::new(
            "café_db",
            &[],
            &[
                ("hostname", "db.example.org"),
                ("localforward", "[127.0.0.1]:15432 [localhost]:5432"),
            ],
        ),
        Intent::new(
            "100%$cost@x+y=z",
            &[],
            &[
                ("hostname", "cost.example.org"),
                ("remoteforward", "9100 [localhost]:9100"),
            ],
        ),
        Intent::new(
            "a.b~c,d!e",
            &[],
            &[
                ("hostname", "weird.example.org"),
                ("dynamicforward", "[127.0.0.1]:1081"),
            ],
        ),
    ]
}

/// Checks read-back argvs against [`intents`].
struct Oracle {
    intents: Vec<Intent>,
}

impl Oracle {
    /// Also checks that every golden tunnel has its intent, and no intent is left over.
    fn new() -> Oracle {
        let home = golden_home();
        let home_dir = format!("{}/", home.display());
        let mut intents = intents();
        for intent in &mut intents {
            for (_, value) in &mut intent.ssh {
                *value = value.replacen("~/", &home_dir, 1);
            }
        }
        let mut written: Vec<&str> = intents.iter().map(|i| i.name.as_str()).collect();
        let mut golden: Vec<String> = cases()
            .iter()
            .flat_map(|case| load(&case.join("tunnels.yaml"), &home).tunnels)
            .map(|t| t.name)
            .collect();
        written.sort_unstable();
        golden.sort_unstable();
        assert_eq!(
            written, golden,
            "every golden tunnel needs its intent written by hand in golden.rs"
        );
        Oracle { intents }
    }

    fn intent(&self, name: &str) -> &Intent {
        self.intents
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no intent for {name:?}"))
    }

    /// See [`Intent::assert_argv`].
    #[track_caller]
    fn assert_intended(
        &self,
        name: &str,
        argv: &[String],
        per_target: &[(&str, &str)],
        label: &str,
    ) {
        self.intent(name)
            .assert_argv(argv, WATCHDOG, per_target, label);
    }
}
