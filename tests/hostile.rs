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

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tunnelctl::render::{self, RenderOptions};
use tunnelctl::ssh_command::{PathOverrides, ssh_argv};
use tunnelctl::target::Target;

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
}

fn accepted_cases() -> Vec<Case> {
    let long_dir = format!("{}/{}", "d".repeat(120), "e".repeat(100));
    vec![
        Case {
            label: "specials in name, paths and ssh option values",
            yaml: String::from(
                "tunnels:\n  \"50%$off;café_x@y+z=1\":\n    host: h.example.org\n    identity: '~/.ssh/key \"q\" $x \\b ;é'\n    \
                 known_hosts: '~/.ssh/kh\"q\"$x\\b;é'\n    ssh_options: { SetEnv: 'A=\"b c\" $HOME %d \\x ; ''q''', Compression: \"yes\" }\n    \
                 forwards:\n      - remote: 1234\n        to: localhost:22\n",
            ),
            refused_by: &[],
        },
        Case {
            label: "a name that is a lone semicolon, very long values",
            yaml: format!(
                "tunnels:\n  \";\":\n    host: {host}\n    identity: ~/.ssh/{long_dir}/id\n    ssh_options: {{ SetEnv: 'V={value}' }}\n    \
                 forwards:\n      - local: 8080\n        to: {host}:80\n",
                host = format!("{}.example.org", "h".repeat(200)),
                value = "$%\\\"''; ".repeat(150),
            ),
            refused_by: &[],
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
            let out = env.tunnelctl(
                &config,
                &[
                    "install",
                    "--all",
                    "--target",
                    target.as_str(),
                    "--root",
                    root.path().to_str().unwrap(),
                ],
            );
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
            let out = env.tunnelctl(
                &config_path,
                &[
                    "install",
                    "--all",
                    "--target",
                    target.as_str(),
                    "--watchdog",
                    watchdog,
                    "--root",
                    root.path().to_str().unwrap(),
                ],
            );
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
            let plain_ssh = ssh_argv(tunnel, &PathOverrides::default());
            match target {
                Target::SystemdUser => {
                    let intended = render::watchdog_args(tunnel, None, None, plain_ssh);
                    let argv = manager.run_and_dump(&installed, dump_dir.path());
                    assert_eq!(argv, intended, "{}: systemd exec'd other words", case.label);
                }
                Target::Systemd => {
                    let (ok, stderr) = verify(&installed);
                    let unit = installed.file_name().unwrap().to_str().unwrap();
                    assert!(
                        ok && !stderr.contains(unit),
                        "{}: verify:\n{stderr}",
                        case.label
                    );
                    let creds = format!("/run/user/0/credentials/{unit}");
                    let ssh = ssh_argv(
                        tunnel,
                        &PathOverrides {
                            identity: tunnel
                                .identity
                                .as_ref()
                                .map(|_| format!("{creds}/identity")),
                            known_hosts: tunnel
                                .known_hosts
                                .as_ref()
                                .map(|_| format!("{creds}/known_hosts")),
                        },
                    );
                    let mut intended = vec![watchdog.to_string()];
                    intended.extend(render::watchdog_args(tunnel, None, None, ssh));
                    // `show` prints the words before variable expansion, which turns `$$`
                    // into `$` at exec time (the systemd-user dump above proves that part).
                    let shown = manager.exec_start_of(&installed);
                    assert_eq!(
                        shown,
                        intended.join(" ").replace('$', "$$"),
                        "{}: the system unit's ExecStart",
                        case.label
                    );
                }
                Target::Launchd | Target::LaunchdAgent => {
                    let state = match target {
                        Target::Launchd => format!("/var/run/tunnelctl/{}", tunnel.name),
                        _ => format!(
                            "{}/Library/Application Support/tunnelctl/{}",
                            env.home.path().display(),
                            tunnel.name
                        ),
                    };
                    let mut intended = vec![watchdog.to_string()];
                    intended.extend(render::watchdog_args(tunnel, Some(&state), None, plain_ssh));
                    let value = plist::Value::from_file(&installed).unwrap();
                    let argv: Vec<String> = value.as_dictionary().unwrap()["ProgramArguments"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_string().unwrap().to_string())
                        .collect();
                    assert_eq!(argv, intended, "{}: plist crate", case.label);
                    assert_eq!(
                        python_program_arguments(&installed),
                        intended,
                        "{}: plistlib",
                        case.label
                    );
                }
                Target::Inittab | Target::Busybox => {
                    let id = tunnelctl::config::inittab_id(&tunnel.name);
                    let inittab = fs::read_to_string(root.path().join("etc/inittab")).unwrap();
                    let line = inittab.lines().nth(1).unwrap();
                    let process = line.splitn(4, ':').nth(3).unwrap();
                    assert!(process.len() <= 127, "{line}");
                    assert!(
                        !process.contains(|c| "~`!$^&*()=|\\{}[];\"'<>?".contains(c)),
                        "{line}"
                    );
                    let intended = render::watchdog_args(
                        tunnel,
                        Some(&format!("/run/tunnelctl/{}", tunnel.name)),
                        Some(&format!("/var/log/tunnelctl/{id}.log")),
                        plain_ssh,
                    );
                    let args = fs::read_to_string(&installed).unwrap();
                    let read: Vec<&str> = args.lines().skip_while(|l| l.starts_with('#')).collect();
                    assert_eq!(read, intended, "{}: args file", case.label);
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

fn verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python_program_arguments(plist: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys; a=plistlib.load(open(sys.argv[1],'rb'))['ProgramArguments']; \
             sys.stdout.buffer.write(b'\\0'.join(x.encode() for x in a))",
        ])
        .arg(plist)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .map(str::to_string)
        .collect()
}

/// A private `systemd --user` in its own mount namespace (tmpfs on /run, so it believes it
/// runs under systemd and its sockets stay private). Killed on drop.
/// The shared, cgroup-confined `systemd --user` (tests/common/user_manager.rs), with the
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

    /// The ExecStart argv as the manager parsed it (`argv[]=` words joined by spaces),
    /// with specifiers such as `%d` expanded.
    fn exec_start_of(&self, unit_file: &Path) -> String {
        let name = unit_file.file_name().unwrap().to_str().unwrap().to_string();
        self.load(unit_file, &name);
        let out = self.systemctl(&["show", "-p", "ExecStart", "--value", &name]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let start = text
            .find("argv[]=")
            .unwrap_or_else(|| panic!("no argv in {text:?}"))
            + "argv[]=".len();
        let end = text[start..].find(" ; ignore_errors=").unwrap() + start;
        text[start..end].to_string()
    }
}
