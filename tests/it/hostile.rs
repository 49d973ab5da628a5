//! Hostile names and values: each config is either refused (exit 2, nothing written) or
//! rendered so that every consumer reads back exactly the intended arguments:
//! - systemd-user: a real `systemd --user` (private mount namespace) starts the unit with
//!   an argv-dumping stand-in for the watchdog, so the words systemd exec'd are compared
//!   with the intended ones byte for byte;
//! - systemd (system unit): `systemd-analyze verify` without warnings, and the ExecStart
//!   the manager parsed (with `%d` expanded) compared with the intended argv;
//! - launchd: the plist crate and Python's plistlib;
//! - inittab/busybox: the process field stays ≤127 bytes and shell-free, and the args file
//!   holds the intended argv one per line.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::readback::{
    Intent, args_file_words, assert_plain_inittab_process, launchd_state_dir,
    plist_program_arguments, python_program_arguments, run_script_words, systemd_verify,
};
use tunnelctl::targets::Target;
use tunnelctl::targets::{self as render, RenderOptions};

/// Key file names with quotes, `$`, `%`-free (ssh would expand `%`), backslashes, `;`,
/// spaces, non-ASCII; and one deep in a very long directory.
fn key_files() -> Vec<String> {
    let long = format!("{}/{}", "d".repeat(120), "e".repeat(100));
    vec![
        ".ssh/key \"q\" $x \\b ;é".into(),
        ".ssh/kh\"q\"$x\\b;é".into(),
        format!(".ssh/{long}/id"),
        ".ssh/plain".into(),
    ]
}

struct Case {
    label: &'static str,
    yaml: String,
    /// Targets expected to refuse to render (exit 2); the others must render.
    refused_by: &'static [Target],
    /// What the tunnel intends (see [`Intent::assert_argv`]), written from the YAML by
    /// hand, not from the renderer: given HOME and, for the system unit, the credentials
    /// folder where it hands the key files over.
    intent: fn(&Path, Option<&str>) -> Intent,
}

fn accepted_cases() -> Vec<Case> {
    let long_dir = format!("{}/{}", "d".repeat(120), "e".repeat(100));
    vec![
        Case {
            label: "specials in name, paths and ssh option values",
            yaml: String::from(
                "tunnels:\n  \"50%$off;café_x@y+z=1\":\n    host: h.example.org\n    identity: '~/.ssh/key \"q\" $x \\b ;é'\n    \
                 known_hosts: '~/.ssh/kh\"q\"$x\\b;é'\n    ssh_options: { SetEnv: 'A=\"b c $HOME %d \\x ; ''q''\"', Compression: \"yes\" }\n    \
                 forwards:\n      - remote: 1234\n        to: localhost:22\n",
            ),
            refused_by: &[],
            intent: |home, creds| {
                let home = home.display();
                let (identity, known_hosts) = match creds {
                    // The credential files exist only while the unit runs, and ssh -G
                    // drops an -i it cannot find: there ssh's default identities remain.
                    Some(creds) => (None, format!("{creds}/known_hosts")),
                    None => (
                        Some(format!(r#"{home}/.ssh/key "q" $x \b ;é"#)),
                        format!(r#"{home}/.ssh/kh"q"$x\b;é"#),
                    ),
                };
                let mut ssh = vec![
                    ("hostname", "h.example.org"),
                    ("compression", "yes"),
                    ("remoteforward", "1234 [localhost]:22"),
                    ("setenv", r#"A=b c $HOME %d \x ; 'q'"#),
                    ("identitiesonly", "yes"),
                    ("userknownhostsfile", &known_hosts),
                    // ssh stops updating host keys once UserKnownHostsFile is set.
                    ("updatehostkeys", "false"),
                ];
                if let Some(identity) = &identity {
                    ssh.push(("identityfile", identity));
                }
                Intent::new("50%$off;café_x@y+z=1", &[], &ssh)
            },
        },
        Case {
            label: "a name that is a lone semicolon, very long values",
            yaml: format!(
                "tunnels:\n  \";\":\n    host: {host}\n    identity: ~/.ssh/{long_dir}/id\n    ssh_options: {{ SetEnv: 'V=\"{value}\"' }}\n    \
                 forwards:\n      - local: 8080\n        to: {host}:80\n",
                host = format!("{}.example.org", "h".repeat(200)),
                value = "$%\\\"''; ".repeat(150),
            ),
            refused_by: &[],
            intent: |home, creds| {
                let host = format!("{}.example.org", "h".repeat(200));
                let forward = format!("[127.0.0.1]:8080 [{host}]:80");
                let setenv = format!("V={}", "$%\"'; ".repeat(150));
                let identity = format!(
                    "{}/.ssh/{}/{}/id",
                    home.display(),
                    "d".repeat(120),
                    "e".repeat(100)
                );
                let mut ssh = vec![
                    ("hostname", host.as_str()),
                    ("localforward", &forward),
                    ("setenv", &setenv),
                    ("identitiesonly", "yes"),
                ];
                if creds.is_none() {
                    ssh.push(("identityfile", &identity));
                }
                Intent::new(";", &[], &ssh)
            },
        },
    ]
}

fn refused_configs() -> Vec<(&'static str, String)> {
    let f = "\n    forwards:\n      - dynamic: 1080\n";
    vec![
        ("newline in name", format!("tunnels:\n  \"a\\nb\":\n    host: h.example.org{f}")),
        ("space in name", format!("tunnels:\n  \"a b\":\n    host: h.example.org{f}")),
        // systemd's StateDirectory= cannot hold quotes, backslashes or `:`.
        ("quotes and a backslash in name", format!("tunnels:\n  \"q\\\"u'o\\\\te\":\n    host: h.example.org{f}")),
        ("colon in name", format!("tunnels:\n  \"a:b\":\n    host: h.example.org{f}")),
        ("name too long", format!("tunnels:\n  {}:\n    host: h.example.org{f}", "n".repeat(65))),
        ("host with $", format!("tunnels:\n  t:\n    host: \"h$(id).example.org\"{f}")),
        ("host starting with -", format!("tunnels:\n  t:\n    host: \"-oProxyCommand=x\"{f}")),
        ("newline in identity", format!("tunnels:\n  t:\n    host: h.example.org\n    identity: \"~/.ssh/a\\nb\"{f}")),
        ("newline in ssh option", format!("tunnels:\n  t:\n    host: h.example.org\n    ssh_options: {{ SetEnv: \"A=1\\nB=2\" }}{f}")),
        ("% in identity", format!("tunnels:\n  t:\n    host: h.example.org\n    identity: \"~/.ssh/k%d\"{f}")),
        ("space in forward host", "tunnels:\n  t:\n    host: h.example.org\n    forwards:\n      - local: 80\n        to: \"a b:80\"\n".into()),
        ("user with space", format!("tunnels:\n  t:\n    host: h.example.org\n    user: \"a b\"{f}")),
    ]
}

struct Env {
    home: tempfile::TempDir,
    config_dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let home = tempfile::tempdir().unwrap();
        for rel in key_files() {
            let path = home.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"placeholder\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        Env {
            home,
            config_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.config_dir.path().join("tunnels.yaml");
        fs::write(&path, yaml).unwrap();
        path
    }

    fn tunnelctl(&self, config: &Path, args: &[&str]) -> std::process::Output {
        common::tunnelctl(self.home.path())
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .unwrap()
    }

    /// `install --all --target TARGET OPTIONS… --root ROOT`.
    fn install_all(
        &self,
        config: &Path,
        target: Target,
        options: &[&str],
        root: &Path,
    ) -> std::process::Output {
        let mut args = vec!["install", "--all", "--target", target.as_str()];
        args.extend_from_slice(options);
        args.extend(["--root", root.to_str().unwrap()]);
        self.tunnelctl(config, &args)
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn refused_configs_write_nothing() {
    let env = Env::new();
    for (label, yaml) in refused_configs() {
        let config = env.write_config(&yaml);
        let out = env.tunnelctl(&config, &["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{label}: check accepted it:\n{yaml}\n{err}"
        );
        assert!(
            err.contains("tunnels.yaml:"),
            "{label}: no FILE:LINE:COL in\n{err}"
        );
        for target in Target::ALL {
            let root = tempfile::tempdir().unwrap();
            let out = env.install_all(&config, target, &[], root.path());
            assert_eq!(out.status.code(), Some(2), "{label} {target}");
            assert!(
                is_empty_dir(root.path()),
                "{label} {target}: something was written"
            );
        }
    }
}

#[test]
fn accepted_hostile_configs_read_back_exactly() {
    let env = Env::new();
    let manager = UserManager::start();
    let dump_dir = tempfile::tempdir().unwrap();
    let dumper = dump_dir.path().join("argdump");
    // Stands in for tunnel-watchdog: writes its arguments NUL-separated, then exits.
    fs::write(
        &dumper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > {d}/argv.tmp && mv {d}/argv.tmp {d}/argv\n",
            d = dump_dir.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&dumper, fs::Permissions::from_mode(0o755)).unwrap();
    let watchdog = dumper.to_str().unwrap();

    for case in accepted_cases() {
        let config_path = env.write_config(&case.yaml);
        let out = env.tunnelctl(&config_path, &["check"]);
        assert!(
            out.status.success(),
            "{}: check refused:\n{}",
            case.label,
            String::from_utf8_lossy(&out.stderr)
        );
        let config = common::load(&config_path, env.home.path());
        let tunnel = &config.tunnels[0];
        for target in Target::ALL {
            let root = tempfile::tempdir().unwrap();
            let out = env.install_all(&config_path, target, &["--watchdog", watchdog], root.path());
            let err = String::from_utf8_lossy(&out.stderr);
            if case.refused_by.contains(&target) {
                assert_eq!(
                    out.status.code(),
                    Some(2),
                    "{} {target}: expected a refusal",
                    case.label
                );
                assert!(
                    err.contains(&tunnel.name),
                    "{} {target}: refusal does not name the tunnel: {err}",
                    case.label
                );
                assert!(
                    is_empty_dir(root.path()),
                    "{} {target}: refused but wrote",
                    case.label
                );
                continue;
            }
            assert!(out.status.success(), "{} {target}: {err}", case.label);
            let options = RenderOptions {
                watchdog: watchdog.into(),
                home: env.home.path().to_path_buf(),
            };
            let rendered = render::render(tunnel, target, &options).unwrap();
            let installed = root
                .path()
                .join(rendered.files[0].path.strip_prefix("/").unwrap());
            let home = env.home.path();
            let intent = (case.intent)(home, None);
            let label = format!("{} {target}", case.label);
            match target {
                Target::SystemdUser => {
                    // The dumper ran, so the program was ours; it dumps the rest.
                    let mut argv = vec![watchdog.to_string()];
                    argv.extend(manager.run_and_dump(&installed, dump_dir.path()));
                    intent.assert_argv(&argv, watchdog, &[], &label);
                }
                Target::Systemd => {
                    let (ok, stderr) = systemd_verify(&installed);
                    let unit = installed.file_name().unwrap().to_str().unwrap();
                    assert!(ok && !stderr.contains(unit), "{label}: verify:\n{stderr}");
                    let creds = format!("/run/user/0/credentials/{unit}");
                    // The system unit's own ExecStart= line, run by the user manager in a
                    // unit of the same name (its %d is then that unit's credentials
                    // folder): the argv dumper takes the words as systemd exec'd them.
                    let line = fs::read_to_string(&installed)
                        .unwrap()
                        .lines()
                        .find(|l| l.starts_with("ExecStart="))
                        .unwrap()
                        .to_string();
                    let probe_dir = tempfile::tempdir().unwrap();
                    let probe = probe_dir.path().join(unit);
                    fs::write(&probe, format!("[Service]\n{line}\n")).unwrap();
                    let mut argv = vec![watchdog.to_string()];
                    argv.extend(manager.run_and_dump(&probe, dump_dir.path()));
                    (case.intent)(home, Some(&creds)).assert_argv(
                        &argv,
                        watchdog,
                        &[],
                        &format!("{label}: the system unit's ExecStart"),
                    );
                }
                Target::Launchd | Target::LaunchdAgent => {
                    let state = launchd_state_dir(target, home, &tunnel.name);
                    let value = plist::Value::from_file(&installed).unwrap();
                    let argv = plist_program_arguments(value.as_dictionary().unwrap());
                    intent.assert_argv(&argv, watchdog, &[("--state-dir", &state)], &label);
                    assert_eq!(
                        python_program_arguments(&installed),
                        argv,
                        "{label}: plistlib reads otherwise than the plist crate"
                    );
                }
                Target::Openrc => {
                    common::initd::assert_openrc_script(&installed, &intent, watchdog, &label);
                }
                Target::Procd => {
                    // procd's watchdog: 3 × the default 5 s probe timeout, at least 30 s.
                    common::initd::assert_procd_script(&installed, &intent, watchdog, 30, &label);
                }
                Target::S6 | Target::Runit => {
                    let readiness = if target == Target::S6 {
                        "s6-fd:3"
                    } else {
                        "none"
                    };
                    let state = format!("/run/tunnelctl/{}", tunnel.name);
                    let argv = run_script_words(&installed);
                    intent.assert_argv(
                        &argv,
                        watchdog,
                        &[("--readiness", readiness), ("--state-dir", &state)],
                        &format!("{label}: run script"),
                    );
                }
                Target::Inittab | Target::Busybox => {
                    let inittab = fs::read_to_string(root.path().join("etc/inittab")).unwrap();
                    let line = inittab.lines().nth(1).unwrap();
                    let process = line.splitn(4, ':').nth(3).unwrap();
                    assert_plain_inittab_process(process, line);
                    let id = tunnelctl::config::inittab_id(&tunnel.name);
                    let mut argv = vec![watchdog.to_string()];
                    argv.extend(args_file_words(&installed));
                    intent.assert_argv(
                        &argv,
                        watchdog,
                        &[
                            ("--state-dir", &format!("/run/tunnelctl/{}", tunnel.name)),
                            ("--log-file", &format!("/var/log/tunnelctl/{id}.log")),
                        ],
                        &format!("{label}: args file"),
                    );
                }
            }
        }
    }
}

/// The systemd renderer refuses a watchdog path that is not absolute, and the inittab
/// renderer one that init would hand to a shell or truncate.
#[test]
fn odd_watchdog_paths_are_refused_with_a_reason() {
    let env = Env::new();
    let config = env.write_config(
        "tunnels:\n  t:\n    host: h.example.org\n    forwards:\n      - dynamic: 1080\n",
    );
    let long = format!("/{}/tunnel-watchdog", "w".repeat(100));
    for (target, watchdog, says) in [
        ("systemd", "relative/tunnel-watchdog", "absolute"),
        ("inittab", "/opt/a b(1)/tunnel-watchdog", "/bin/sh"),
        ("busybox", long.as_str(), "127"),
        // Shell-free, but init splits the line at the space.
        ("inittab", "/opt/my tools/tunnel-watchdog", "space"),
        ("busybox", "/opt/my tools/tunnel-watchdog", "space"),
    ] {
        let root = tempfile::tempdir().unwrap();
        let out = env.tunnelctl(
            &config,
            &[
                "install",
                "t",
                "--target",
                target,
                "--watchdog",
                watchdog,
                "--root",
                root.path().to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target} {watchdog}: {err}");
        assert!(err.contains(says), "{target}: {err}");
        assert!(is_empty_dir(root.path()));
    }
}

/// `metrics_file`'s folder reaches `ReadWritePaths=`, a list systemd splits at spaces:
/// a folder with a space must stay one path (`/srv/a /etc` once made `/etc` writable
/// under ProtectSystem=strict), and what the list cannot carry is refused, naming why.
#[test]
fn metrics_folders_with_spaces_stay_one_writable_path() {
    let env = Env::new();
    let manager = UserManager::start();
    for (metrics, read_back) in [
        // `show` quotes an entry that holds a space; two entries would be `-/srv/a /etc`.
        ("/srv/a /etc/t.prom", Ok("\"-/srv/a /etc\"")),
        ("/srv/50% off/x/t.prom", Ok("\"-/srv/50% off/x\"")),
        ("/srv/plain/t.prom", Ok("-/srv/plain")),
        ("/srv/a\" /etc/t.prom", Err("quotes or backslashes")),
        ("/srv/a' /etc/t.prom", Err("quotes or backslashes")),
        ("/srv/a\\ /etc/t.prom", Err("quotes or backslashes")),
    ] {
        let yaml = format!(
            "tunnels:\n  t:\n    host: h.example.org\n    metrics_file: '{}'\n    forwards:\n      - dynamic: 1080\n",
            metrics.replace('\'', "''")
        );
        let config = env.write_config(&yaml);
        let root = tempfile::tempdir().unwrap();
        let out = env.tunnelctl(
            &config,
            &[
                "install",
                "t",
                "--target",
                "systemd",
                "--watchdog",
                "/bin/true",
                "--root",
                root.path().to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let expected = match read_back {
            Err(says) => {
                assert_eq!(out.status.code(), Some(2), "{metrics:?}: {err}");
                assert!(err.contains(says), "{metrics:?}: {err}");
                assert!(is_empty_dir(root.path()), "{metrics:?}: refused but wrote");
                continue;
            }
            Ok(expected) => expected,
        };
        assert!(out.status.success(), "{metrics:?}: {err}");
        let unit = root.path().join("etc/systemd/system/tunnel-t.service");
        let (ok, stderr) = systemd_verify(&unit);
        assert!(
            ok && !stderr.contains("tunnel-t.service"),
            "{metrics:?}: verify:\n{stderr}"
        );
        manager.load(&unit, "tunnel-t.service");
        let shown = manager.systemctl(&[
            "show",
            "-p",
            "ReadWritePaths",
            "--value",
            "tunnel-t.service",
        ]);
        let shown = String::from_utf8_lossy(&shown.stdout)
            .trim_end()
            .to_string();
        eprintln!("{metrics:?}: ReadWritePaths as systemd read it: {shown:?}");
        assert_eq!(shown, expected, "{metrics:?}");
    }
}

/// A private `systemd --user` in its own mount namespace (tmpfs on /run, so it believes it
/// runs under systemd and its sockets stay private). Killed on drop.
/// The shared, cgroup-confined `systemd --user` (tests/it/common/user_manager.rs), with the
/// two things this test asks of it.
struct UserManager(common::user_manager::UserManager);

impl UserManager {
    fn start() -> UserManager {
        UserManager(common::user_manager::UserManager::start())
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn systemctl(&self, args: &[&str]) -> std::process::Output {
        self.0.systemctl(args)
    }

    fn load(&self, unit_file: &Path, as_name: &str) {
        fs::copy(unit_file, self.0.unit_dir().join(as_name)).unwrap();
        let out = self.systemctl(&["daemon-reload"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the unit (whose ExecStart is the argv dumper) and returns the words it got.
    fn run_and_dump(&self, unit_file: &Path, dump_dir: &Path) -> Vec<String> {
        let name = unit_file.file_name().unwrap().to_str().unwrap().to_string();
        self.load(unit_file, &name);
        let dump = dump_dir.join("argv");
        let _ = fs::remove_file(&dump);
        let out = self.systemctl(&["start", "--no-block", &name]);
        assert!(
            out.status.success(),
            "start {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dump.exists() {
            assert!(
                Instant::now() < deadline,
                "{name} never ran; manager log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.systemctl(&["stop", &name]);
        let bytes = fs::read(&dump).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut words: Vec<String> = text.split('\0').map(str::to_string).collect();
        assert_eq!(words.pop().as_deref(), Some(""), "dump ends with NUL");
        words
    }
}

// ------------------------------------------------------------------ hostile filesystems
//
// Run as root on temporary roots (`--root`): only the part of a path inside the root is
// checked for owners and modes (the root itself is the test's, under the world-writable
// /tmp). A real second user, `tunnelctl-test2`, is created once if missing (a system
// user without a home); `nobody` (65534) plays a third.

use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::process::CommandExt;

const FS_CONFIG: &str = "tunnels:\n  t:\n    host: h.example.org\n    forwards:\n      - local: 18080\n        to: localhost:80\n";

fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// `install TUNNEL --target TARGET --watchdog /usr/bin/tunnel-watchdog`.
fn install_args<'a>(tunnel: &'a str, target: &'a str) -> [&'a str; 6] {
    [
        "install",
        tunnel,
        "--target",
        target,
        "--watchdog",
        "/usr/bin/tunnel-watchdog",
    ]
}

/// The second user's (uid, gid), created when missing (idempotent; a concurrent
/// useradd that lost the race is fine).
fn second_user() -> (u32, u32) {
    let lookup = || {
        nix::unistd::User::from_name("tunnelctl-test2")
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    };
    if let Some(ids) = lookup() {
        return ids;
    }
    let _ = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "tunnelctl-test2",
        ])
        .status();
    lookup().expect("cannot create the user tunnelctl-test2 (useradd)")
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

struct FsEnv {
    root: tempfile::TempDir,
    config: PathBuf,
    _config_dir: tempfile::TempDir,
    home: PathBuf,
}

impl FsEnv {
    fn new() -> FsEnv {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("tunnels.yaml");
        fs::write(&config, FS_CONFIG).unwrap();
        FsEnv {
            root: tempfile::tempdir().unwrap(),
            config,
            _config_dir: config_dir,
            home: common::golden_home(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// `PROGRAM -c CONFIG` with HOME and nothing else (no PATH) in its environment.
    fn bare(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("HOME", &self.home)
            .arg("-c")
            .arg(&self.config);
        cmd
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare(bin("tunnelctl"));
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(args)
            .arg("--root")
            .arg(self.root.path());
        cmd
    }

    fn install(&self, target: &str, extra: &[&str]) -> (i32, String) {
        let mut args = install_args("t", target).to_vec();
        args.extend_from_slice(extra);
        let out = self.command(&args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// Issue 12: `systemctl mask` made the unit a link to /dev/null; install once wrote a
/// 0666 root unit through it (and dropped the admin's mask).
#[test]
fn a_masked_unit_is_refused_with_the_unmask_command() {
    for (target, dir, fix) in [
        (
            "systemd",
            "etc/systemd/system",
            "systemctl unmask tunnel-t.service",
        ),
        (
            "systemd-user",
            "tmp/tunnelctl-golden-home/.config/systemd/user",
            "systemctl --user unmask tunnel-t.service",
        ),
    ] {
        let env = FsEnv::new();
        fs::create_dir_all(env.path(dir)).unwrap();
        let unit = env.path(dir).join("tunnel-t.service");
        symlink("/dev/null", &unit).unwrap();
        let (code, out) = env.install(target, &[]);
        assert_eq!(code, 1, "{target}: {out}");
        assert!(out.contains(fix), "{target}: {out}");
        assert_eq!(
            fs::read_link(&unit).unwrap(),
            Path::new("/dev/null"),
            "{target}: the mask is gone"
        );
        let null = fs::metadata("/dev/null").unwrap();
        assert!(null.file_type().is_char_device_like(), "/dev/null replaced");
    }
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}
impl CharDevice for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

/// A unit linked to a user's file once became a regular file owned by that user in
/// /etc/systemd/system.
#[test]
fn a_unit_linked_to_a_users_file_is_refused_and_neither_file_changes() {
    let (uid, gid) = second_user();
    let env = FsEnv::new();
    fs::create_dir_all(env.path("etc/systemd/system")).unwrap();
    fs::create_dir_all(env.path("home/u")).unwrap();
    let theirs = env.path("home/u/unit");
    fs::write(&theirs, "theirs\n").unwrap();
    chown(&theirs, uid, gid);
    let unit = env.path("etc/systemd/system/tunnel-t.service");
    symlink(&theirs, &unit).unwrap();
    let (code, out) = env.install("systemd", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("symlink") && out.contains("rm "), "{out}");
    assert!(
        fs::symlink_metadata(&unit)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&theirs).unwrap(), "theirs\n");
}

/// `trust` on a known_hosts that is the `ln -s /dev/null` idiom: refused (the link is
/// the user's choice, and writing through it would make a 0666 file anyone can pin
/// keys in); a regular private file stays 0600 and becomes the caller's.
#[test]
fn known_hosts_links_are_refused_by_trust() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("known_hosts");
    symlink("/dev/null", &link).unwrap();
    let key = tunnelctl::known_hosts::HostKey {
        key_type: "ssh-ed25519".into(),
        blob: "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl".into(),
    };
    let err = tunnelctl::known_hosts::pin(&link, "h.example.org", std::slice::from_ref(&key))
        .unwrap_err();
    assert!(
        err.contains("symlink") && err.contains("known_hosts:"),
        "{err}"
    );
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/dev/null"));
    assert!(
        fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device_like()
    );

    let (uid, gid) = second_user();
    let private = dir.path().join("private_known_hosts");
    fs::write(&private, "").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    chown(&private, uid, gid);
    tunnelctl::known_hosts::pin(&private, "h.example.org", &[key]).unwrap();
    let meta = fs::metadata(&private).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o600, 0),
        "mode kept private, owner ours"
    );
}

/// Under `umask 000` install once made /etc/tunnelctl/run and /var/log/tunnelctl 0777.
#[test]
fn umask_000_does_not_widen_what_install_creates() {
    let env = FsEnv::new();
    let mut cmd = env.command(&install_args("t", "inittab"));
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (rel, want) in [
        ("etc", 0o755),
        ("etc/tunnelctl", 0o755),
        ("etc/tunnelctl/run", 0o755),
        ("var/log/tunnelctl", 0o755),
        ("etc/inittab", 0o644),
    ] {
        assert_eq!(mode_of(&env.path(rel)), want, "{rel}");
    }
    let args = fs::read_dir(env.path("etc/tunnelctl/run"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode_of(&args), 0o644, "{}", args.display());
}

/// Directories another user made (or anyone can write) on the path of what root runs
/// are refused with the path and the fix, and nothing is written below them.
#[test]
fn directories_of_another_user_or_open_to_all_are_refused() {
    let (uid, gid) = second_user();
    let env = FsEnv::new();
    let run = env.path("etc/tunnelctl/run");
    fs::create_dir_all(&run).unwrap();
    chown(&run, uid, gid);
    let (code, out) = env.install("inittab", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&run.display().to_string()) && out.contains("chown"),
        "{out}"
    );
    assert!(
        fs::read_dir(&run).unwrap().next().is_none(),
        "wrote into it"
    );
    assert!(!env.path("etc/inittab").exists());

    let env = FsEnv::new();
    let units = env.path("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::set_permissions(&units, fs::Permissions::from_mode(0o777)).unwrap();
    let (code, out) = env.install("systemd", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("chmod go-w") && out.contains(&units.display().to_string()),
        "{out}"
    );
    assert!(fs::read_dir(&units).unwrap().next().is_none());
}

/// The watchdog's state directory: a component another user made is refused (exit 1,
/// retried later), a too-open one of ours is refused and not chmodded, `--name ..` is a
/// usage error (it once chmodded `/run` as root).
#[test]
fn watchdog_state_dirs_that_others_control_are_refused_never_chmodded() {
    let (uid, gid) = second_user();
    let top = tempfile::tempdir().unwrap();
    fs::set_permissions(top.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The second user runs a copy: the build may sit under a 0700 folder (a checkout in
    // root's home), which that user cannot enter.
    let watchdog = top.path().join("tunnel-watchdog");
    crate::common::copy_by_cp(&bin("tunnel-watchdog"), &watchdog);
    fs::set_permissions(&watchdog, fs::Permissions::from_mode(0o755)).unwrap();
    let run_as_second = |args: &[&str], runtime: &Path| {
        Command::new(&watchdog)
            .env_clear()
            .env("XDG_RUNTIME_DIR", runtime)
            .args(args)
            .args(["--", "/bin/false", "127.0.0.1"])
            .uid(uid)
            .gid(gid)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Pre-created by `nobody`, open to all (the /tmp/tunnelctl-UID hijack).
    let hijacked = top.path().join("r1");
    fs::create_dir_all(hijacked.join("tunnelctl")).unwrap();
    fs::set_permissions(
        hijacked.join("tunnelctl"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    chown(&hijacked.join("tunnelctl"), 65534, 65534);
    chown(&hijacked, uid, gid);
    let out = run_as_second(&["--name", "t"], &hijacked);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tunnelctl is owned by uid 65534"), "{err}");
    assert!(
        !hijacked.join("tunnelctl/t").exists(),
        "created a directory in it"
    );

    // Ours but writable by all: refused, and left as it was.
    let open = top.path().join("r2");
    fs::create_dir_all(open.join("tunnelctl/t")).unwrap();
    for d in [
        open.clone(),
        open.join("tunnelctl"),
        open.join("tunnelctl/t"),
    ] {
        chown(&d, uid, gid);
    }
    fs::set_permissions(open.join("tunnelctl/t"), fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_as_second(&["--name", "t"], &open);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        mode_of(&open.join("tunnelctl/t")),
        0o777,
        "chmodded a directory it did not create"
    );

    // `--name ..`: refused before any directory is touched.
    let dots = top.path().join("r3");
    fs::create_dir_all(dots.join("tunnelctl")).unwrap();
    for d in [dots.clone(), dots.join("tunnelctl")] {
        chown(&d, uid, gid);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for name in ["..", ".", "a/b"] {
        let out = run_as_second(&["--name", name], &dots);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(mode_of(&dots.join("tunnelctl")), 0o755);

    // A state directory it cannot create (read-only for it) is environmental: exit 1.
    let ro = top.path().join("ro");
    fs::create_dir_all(&ro).unwrap();
    let out = Command::new(&watchdog)
        .env_clear()
        .args(["--name", "t", "--state-dir"])
        .arg(ro.join("state"))
        .args(["--", "/bin/false", "127.0.0.1"])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The state directory renamed away and replaced by a link while the watchdog runs: it
/// keeps writing into its own directory (through its descriptor), never the link's target.
#[test]
fn state_dir_swapped_for_a_link_while_the_watchdog_runs() {
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("state");
    let victim = top.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let fake_ssh = top.path().join("ssh");
    fs::write(&fake_ssh, "#!/bin/sh\nsleep 1\nexit 255\n").unwrap();
    fs::set_permissions(&fake_ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = Command::new(bin("tunnel-watchdog"))
        .env_clear()
        .args(["--name", "t", "--state-dir"])
        .arg(&state)
        .arg("--")
        .arg(&fake_ssh)
        .args(["-p", "1", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let appeared = common::wait_until(Duration::from_secs(10), || state.join("state").exists());
    assert!(appeared, "no state file");
    let moved = top.path().join("state.old");
    fs::rename(&state, &moved).unwrap();
    symlink(&victim, &state).unwrap();
    let exited = common::wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    let _guard = common::child::KillOnDrop(child);
    assert!(exited, "the watchdog did not finish its attempt");
    assert!(
        !victim.join("state").exists(),
        "wrote through the swapped-in link"
    );
    let text = fs::read_to_string(moved.join("state")).unwrap();
    assert!(
        text.contains("state=failed") || text.contains("state=backing-off"),
        "{text}"
    );
}

/// A 100 MB args file is refused at once (it once cost 3 GB of memory).
#[test]
fn a_huge_args_file_is_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.args");
    fs::File::create(&file).unwrap().set_len(100 << 20).unwrap();
    let started = Instant::now();
    let out = Command::new(bin("tunnel-watchdog"))
        .arg("--args-file")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than 1048576 bytes"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A missing one is environmental (the file system may not be there yet): exit 1.
    let out = Command::new(bin("tunnel-watchdog"))
        .arg("--args-file")
        .arg(dir.path().join("missing.args"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `status` and `reconnect` on a `state` linked to /dev/zero (once 528 MB and growing)
/// or owned by another user in a directory that user made.
#[test]
fn status_and_reconnect_refuse_linked_or_foreign_state_files() {
    let (uid, gid) = second_user();
    let env = FsEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero");
    fs::create_dir_all(&zero).unwrap();
    symlink("/dev/zero", zero.join("state")).unwrap();
    // Another user made the parent (the pre-created /tmp/tunnelctl-UID) and the rest.
    let foreign = dir.path().join("tunnelctl-0/t");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(
        foreign.join("state"),
        format!("state=up\npid={}\n", std::process::id()),
    )
    .unwrap();
    for p in [
        foreign.join("state"),
        foreign.clone(),
        foreign.parent().unwrap().to_path_buf(),
    ] {
        chown(&p, uid, gid);
    }
    for (state_dir, says) in [(&zero, "symlink"), (&foreign, "not trusting it")] {
        for command in ["status", "reconnect"] {
            let mut cmd = env.bare(bin("tunnelctl"));
            cmd.args([command, "t", "--target", "inittab", "--state-dir"])
                .arg(state_dir);
            let out = super_bounded(cmd);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                text.contains(says),
                "{command} {}: {text}",
                state_dir.display()
            );
        }
    }
}

fn super_bounded(cmd: Command) -> std::process::Output {
    common::user_manager::run_bounded(cmd, Duration::from_secs(20))
}

/// 10 installs of different tunnels at once into one inittab, 20 times: no entry lost
/// (they once lost one in 10 of 10 runs).
#[test]
fn ten_concurrent_inittab_installs_lose_no_entry() {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let mut config = String::from("tunnels:\n");
    for (i, n) in names.iter().enumerate() {
        config.push_str(&format!("  {n}:\n    host: h.example.org\n    forwards:\n      - local: {}\n        to: localhost:80\n", 20000 + i));
    }
    let env = FsEnv::new();
    fs::write(&env.config, &config).unwrap();
    for run in 0..20 {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/inittab"), "id:2:initdefault:\n").unwrap();
        let children: Vec<_> = names
            .iter()
            .map(|n| {
                env.bare(bin("tunnelctl"))
                    .args(install_args(n, "inittab"))
                    .arg("--root")
                    .arg(root.path())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "run {run}");
        }
        let inittab = fs::read_to_string(root.path().join("etc/inittab")).unwrap();
        for n in &names {
            let id = tunnelctl::config::inittab_id(n);
            assert!(
                inittab.contains(&format!("# tunnelctl:{id} {n} ")),
                "run {run}: {n} lost:\n{inittab}"
            );
        }
        assert!(inittab.starts_with("id:2:initdefault:\n"));
        assert_no_leftovers(root.path());
    }
}

/// Temp files and lock files of ours anywhere under `root`.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else if name.contains(".tunnelctl-") || name.ends_with(".tunnelctl.lock") {
                found.push(path);
            }
        }
    }
    found
}

fn assert_no_leftovers(root: &Path) {
    let found = leftovers(root);
    assert!(found.is_empty(), "left behind: {found:?}");
}

/// `kill -9` at random points of 200 installs and uninstalls: /etc/inittab is always the
/// old or the new file byte for byte, and the next run removes the killed runs' temp files.
#[test]
fn kill_9_during_inittab_installs_and_uninstalls() {
    let env = FsEnv::new();
    let base = b"id:2:initdefault:\n# local\n1:2345:respawn:/sbin/getty 38400 tty1\n".to_vec();
    // The installed inittab, from a clean run in a scratch root.
    let scratch = tempfile::tempdir().unwrap();
    fs::create_dir_all(scratch.path().join("etc")).unwrap();
    fs::write(scratch.path().join("etc/inittab"), &base).unwrap();
    let ok = env
        .bare(bin("tunnelctl"))
        .args(install_args("t", "inittab"))
        .arg("--root")
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(ok.status.success());
    let installed = fs::read(scratch.path().join("etc/inittab")).unwrap();
    assert_ne!(installed, base);

    fs::create_dir_all(env.path("etc")).unwrap();
    fs::write(env.path("etc/inittab"), &base).unwrap();
    let mut seed = std::process::id() as u64
        ^ Instant::now().elapsed().as_nanos() as u64
        ^ 0x9e37_79b9_7f4a_7c15;
    let mut killed = 0;
    let mut left_after_kill = 0;
    for i in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 12_000);
        let install = i % 2 == 0;
        let mut cmd = env.command(&if install {
            install_args("t", "inittab").to_vec()
        } else {
            vec!["uninstall", "t", "--target", "inittab"]
        });
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            killed += 1;
        }
        let status = child.wait().unwrap();
        let now = fs::read(env.path("etc/inittab")).unwrap();
        assert!(
            now == base || now == installed,
            "run {i} (killed: {}): inittab is neither old nor new:\n{}",
            status.code().is_none(),
            String::from_utf8_lossy(&now)
        );
        left_after_kill += leftovers(env.root.path()).len();
    }
    eprintln!(
        "{killed} of 200 runs killed; {left_after_kill} temp/lock files seen right after kills"
    );
    assert!(
        killed >= 20,
        "too few runs were killed ({killed}) to mean anything"
    );
    // One clean install and uninstall: whatever the killed runs left is gone.
    assert_eq!(env.install("inittab", &[]).0, 0);
    assert_eq!(
        env.command(&["uninstall", "t", "--target", "inittab"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    assert_eq!(fs::read(env.path("etc/inittab")).unwrap(), base);
    assert_no_leftovers(env.root.path());
}

/// A failing `telinit q` on an update: /etc/inittab is already right (the entry was once
/// dropped, the reload run, and the entry never put back). Runs tunnelctl without
/// `--root`, in a private mount namespace whose /etc is a copy and /var/log a temp dir,
/// with a fake telinit on PATH that exits as told.
#[test]
fn a_failing_telinit_is_reported_after_the_inittab_is_right() {
    let top = tempfile::tempdir().unwrap();
    let etc = top.path().join("etc");
    let status = Command::new("cp")
        .arg("-a")
        .arg("/etc/.")
        .arg(&etc)
        .status()
        .unwrap();
    assert!(status.success());
    let base = b"id:2:initdefault:\n1:2345:respawn:/sbin/getty 38400 tty1\n";
    fs::write(etc.join("inittab"), base).unwrap();
    let _ = fs::remove_dir_all(etc.join("tunnelctl"));
    let log = top.path().join("log");
    fs::create_dir_all(&log).unwrap();
    let fake = top.path().join("bin");
    fs::create_dir_all(&fake).unwrap();
    let rc = top.path().join("telinit-rc");
    let calls = top.path().join("telinit-calls");
    fs::write(
        fake.join("telinit"),
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexit $(cat {})\n",
            calls.display(),
            rc.display()
        ),
    )
    .unwrap();
    fs::set_permissions(fake.join("telinit"), fs::Permissions::from_mode(0o755)).unwrap();
    let config = top.path().join("tunnels.yaml");
    let run = |host: &str, code: &str| {
        fs::write(&config, FS_CONFIG.replace("h.example.org", host)).unwrap();
        fs::write(&rc, code).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc && mount --bind \"$2\" /var/log && shift 2 && exec \"$@\"",
            "sh",
        ])
        .arg(&etc)
        .arg(&log)
        .arg(bin("tunnelctl"))
        .arg("-c")
        .arg(&config)
        .args(install_args("t", "inittab"))
        .env_clear()
        .env("HOME", common::golden_home())
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", fake.display()),
        );
        super_bounded(cmd)
    };
    let out = run("h.example.org", "0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = fs::read(etc.join("inittab")).unwrap();
    assert!(installed.starts_with(base) && installed.len() > base.len());
    // The update: new arguments, and telinit fails.
    let out = run("h2.example.org", "1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already updated") && err.contains("telinit q"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&fs::read(etc.join("inittab")).unwrap()),
        String::from_utf8_lossy(&installed),
        "the inittab is not the installed one"
    );
    let args_dir = etc.join("tunnelctl/run");
    let args = fs::read_dir(&args_dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".args"))
        .unwrap();
    assert!(
        fs::read_to_string(args.path())
            .unwrap()
            .contains("h2.example.org")
    );
    assert_no_leftovers(&etc.join("tunnelctl"));
    assert!(!etc.join(".inittab.tunnelctl.lock").exists());
    assert_eq!(
        fs::read_to_string(&calls).unwrap().lines().count(),
        2,
        "one reload per install"
    );
}

/// For a system target, the default watchdog (beside tunnelctl) must be root's and
/// writable by nobody else: a root service runs it.
#[test]
fn a_default_watchdog_that_is_not_roots_is_refused_for_system_targets() {
    let (uid, gid) = second_user();
    let top = tempfile::tempdir().unwrap();
    let bindir = top.path().join("bin");
    fs::create_dir_all(&bindir).unwrap();
    fs::set_permissions(&bindir, fs::Permissions::from_mode(0o755)).unwrap();
    crate::common::copy_by_cp(&bin("tunnelctl"), &bindir.join("tunnelctl"));
    let watchdog = bindir.join("tunnel-watchdog");
    fs::write(&watchdog, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&watchdog, fs::Permissions::from_mode(0o755)).unwrap();
    let env = FsEnv::new();
    let install = |target: &str| {
        let root = tempfile::tempdir().unwrap();
        let out = env
            .bare(bindir.join("tunnelctl"))
            .args(["install", "t", "--target", target, "--root"])
            .arg(root.path())
            .output()
            .unwrap();
        let written = fs::read_dir(root.path()).unwrap().next().is_some();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            written,
        )
    };
    chown(&watchdog, uid, gid);
    for target in ["systemd", "inittab"] {
        let (code, err, written) = install(target);
        assert_eq!(code, Some(2), "{target}: {err}");
        assert!(
            err.contains("tunnelctl-test2") && err.contains("--watchdog"),
            "{err}"
        );
        assert!(!written);
    }
    // A user unit runs as that user: no such demand.
    assert_eq!(install("systemd-user").0, Some(0));
    chown(&watchdog, 0, 0);
    fs::set_permissions(&watchdog, fs::Permissions::from_mode(0o775)).unwrap();
    let (code, err, _) = install("systemd");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    fs::set_permissions(&watchdog, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(install("systemd").0, Some(0));
}
