//! `tunnelctl import` on the five recipes people copy, taken literally: imported,
//! checked, rendered, and the rendered ssh argv read back by the real `ssh -G` next to
//! the original command's own `ssh -G`. Every option the original sets (what differs
//! from ssh's defaults) must come out the same, and the forwards must be the same set,
//! except what import says it does not carry over.
//!
//! One normalisation is tunnelctl's policy, not a loss: a local or dynamic forward
//! written without a bind address listens on ssh's `localhost` (GatewayPorts no);
//! tunnelctl writes `127.0.0.1` explicitly, so the original's is compared as that.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::cli::tunnelctl;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(home: &Path, args: &[&str]) -> Run {
    let out = tunnelctl(home).args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A home with a private key, and the config path inside it.
fn home() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_tunnel");
    fs::write(&key, "placeholder\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("tunnels.yaml");
    (dir, config)
}

/// `tunnelctl import ARGS` into the config (printed YAML written as the file), then
/// `check` on it; returns the YAML and the stderr of import.
fn import_and_check(home: &Path, config: &Path, args: &[&str]) -> (String, String) {
    let cfg = config.to_str().unwrap();
    let mut all = vec!["--config", cfg, "import"];
    all.extend_from_slice(args);
    let r = run(home, &all);
    assert_eq!(r.code, 0, "import {args:?} failed:\n{}", r.stderr);
    fs::write(config, &r.stdout).unwrap();
    let c = run(home, &["--config", cfg, "check"]);
    assert_eq!(c.code, 0, "check failed on\n{}\n{}", r.stdout, c.stderr);
    (r.stdout, r.stderr)
}

/// The ssh argv (without the program) of `name` as rendered for inittab: its args
/// file holds one argument per line, the ssh command after `--`.
fn rendered_ssh_args(home: &Path, config: &Path, name: &str) -> Vec<String> {
    let r = run(
        home,
        &[
            "--config",
            config.to_str().unwrap(),
            "render",
            name,
            "-t",
            "inittab",
            "--watchdog",
            "/usr/bin/tunnel-watchdog",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let args_file = r.stdout.split("<==\n").last().unwrap();
    let lines: Vec<&str> = args_file.lines().filter(|l| !l.starts_with('#')).collect();
    let start = lines.iter().position(|l| *l == "--").unwrap() + 2; // past `--` and `ssh`
    lines[start..].iter().map(|s| s.to_string()).collect()
}

type SshG = BTreeMap<String, Vec<String>>;

/// `ssh -F CONFIG -G ARGS` as key → values, with the local/dynamic default bind written
/// out (see the module comment). HOME is the test's, so no user config is read.
fn ssh_g(home: &Path, config: &str, args: &[String]) -> SshG {
    let out = Command::new("ssh")
        .env_clear()
        .env("HOME", home)
        .arg("-F")
        .arg(config)
        .arg("-G")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh -G {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = SshG::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        let mut v = v.to_string();
        if (k == "localforward" || k == "dynamicforward") && !v.starts_with('[') {
            v = format!("[127.0.0.1]:{v}");
        }
        map.entry(k.to_string()).or_default().push(v);
    }
    for values in map.values_mut() {
        values.sort();
    }
    map
}

/// Every key the original sets (differs from `baseline`) is the same in `rendered`,
/// except `not_carried`; forwards are the same sets both ways.
#[track_caller]
fn assert_equivalent(original: &SshG, rendered: &SshG, baseline: &SshG, not_carried: &[&str]) {
    let mut compared = 0;
    for (key, values) in original {
        if baseline.get(key) == Some(values) || not_carried.contains(&key.as_str()) {
            continue;
        }
        compared += 1;
        assert_eq!(
            rendered.get(key),
            Some(values),
            "`{key}` differs: original {values:?}, rendered {:?}",
            rendered.get(key)
        );
    }
    for key in ["localforward", "remoteforward", "dynamicforward"] {
        assert_eq!(original.get(key), rendered.get(key), "{key}");
    }
    assert!(compared >= 1, "nothing compared: {original:?}");
}

/// The words `/bin/sh` makes of `command` (a real shell does the splitting).
fn sh_words(command: &str) -> Vec<String> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("printf '%s\\0' {command}"))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\0')
        .map(str::to_string)
        .collect()
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn autossh_line_from_the_question() {
    let (dir, config) = home();
    let h = dir.path();
    let (yaml, stderr) = import_and_check(
        h,
        &config,
        &[
            "--",
            "autossh",
            "-M",
            "20000",
            "-f",
            "-N",
            "server",
            "-R",
            "1234:localhost:22",
            "-C",
        ],
    );
    assert!(yaml.contains("  server:\n"), "{yaml}");
    for part in [
        "-M 20000: autossh's monitor port",
        "-f: autossh went to the background",
    ] {
        assert!(yaml.contains(&format!("#   {part}")), "{yaml}");
        assert!(stderr.contains(part), "{stderr}");
    }
    let rendered = ssh_g(h, "/dev/null", &rendered_ssh_args(h, &config, "server"));
    // autossh hands everything but its own -M and -f to ssh.
    let original = ssh_g(
        h,
        "/dev/null",
        &words(&["-N", "server", "-R", "1234:localhost:22", "-C"]),
    );
    let baseline = ssh_g(h, "/dev/null", &words(&["server"]));
    assert_equivalent(&original, &rendered, &baseline, &[]);
    assert_eq!(rendered["compression"], ["yes"]);
}

#[test]
fn while_loop_given_as_one_word() {
    let (dir, config) = home();
    let h = dir.path();
    let key = h.join("id_tunnel");
    let ssh = format!(
        "ssh -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=4 \
         -o StrictHostKeyChecking=no -L 8080:intranet:80 -D 1080 -i {} -p 2222 -J jump@bastion \
         me@server",
        key.display()
    );
    let script = format!("while true; do {ssh}; sleep 15; done");
    let (yaml, stderr) = import_and_check(h, &config, &["--", &script]);
    assert!(
        yaml.contains("-o StrictHostKeyChecking=no: turning host-key checking off is refused"),
        "{yaml}"
    );
    assert!(stderr.contains("StrictHostKeyChecking=no"), "{stderr}");
    let rendered = ssh_g(h, "/dev/null", &rendered_ssh_args(h, &config, "server"));
    let original = ssh_g(h, "/dev/null", &sh_words(&ssh)[1..]);
    let baseline = ssh_g(h, "/dev/null", &words(&["server"]));
    // Host-key checking stays on: that is what the note says.
    assert_equivalent(&original, &rendered, &baseline, &["stricthostkeychecking"]);
    assert_eq!(rendered["stricthostkeychecking"], ["true"]);
    assert_eq!(rendered["serveralivecountmax"], ["4"]);
    assert_eq!(rendered["proxyjump"], ["jump@bastion"]);
}

#[test]
fn secure_tunnel_template_unit_with_its_environment_file() {
    let (dir, config) = home();
    let h = dir.path();
    let root = h.join("root");
    let units = root.join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::create_dir_all(root.join("etc/default")).unwrap();
    // As the widely copied unit has it.
    fs::write(
        units.join("secure-tunnel@.service"),
        "[Unit]\nDescription=Setup a secure tunnel to %I\nAfter=network.target\n\n[Service]\n\
         Environment=\"LOCAL_ADDR=localhost\"\nEnvironmentFile=/etc/default/secure-tunnel@%i\n\
         ExecStart=/usr/bin/ssh -NT -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes -L ${LOCAL_ADDR}:${LOCAL_PORT}:localhost:${REMOTE_PORT} ${TARGET}\n\n\
         # Restart every >2 seconds to avoid StartLimitInterval failure\nRestartSec=5\nRestart=always\n\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/default/secure-tunnel@alpha"),
        "TARGET=me@alpha.example.org\nLOCAL_PORT=8080\nREMOTE_PORT=80\n",
    )
    .unwrap();
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/secure-tunnel@.service",
        wants.join("secure-tunnel@alpha.service"),
    )
    .unwrap();
    let root_s = root.to_str().unwrap();
    let (yaml, _) = import_and_check(
        h,
        &config,
        &[
            "--systemd",
            "secure-tunnel@alpha.service",
            "-t",
            "systemd",
            "--root",
            root_s,
        ],
    );
    assert!(yaml.contains("  secure-tunnel-alpha:\n"), "{yaml}");
    assert!(yaml.contains("secure-tunnel@.service line 8"), "{yaml}");
    let rendered = ssh_g(
        h,
        "/dev/null",
        &rendered_ssh_args(h, &config, "secure-tunnel-alpha"),
    );
    // What systemd runs: specifiers and ${…} expanded from the environment file.
    let original = ssh_g(
        h,
        "/dev/null",
        &words(&[
            "-NT",
            "-o",
            "ServerAliveInterval=60",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            "localhost:8080:localhost:80",
            "me@alpha.example.org",
        ]),
    );
    let baseline = ssh_g(h, "/dev/null", &words(&["alpha.example.org"]));
    assert_equivalent(&original, &rendered, &baseline, &[]);
    // A unit that runs something else, with a variable its missing file would set, is
    // not the scan's business.
    fs::write(
        units.join("other.service"),
        "[Service]\nEnvironmentFile=-/etc/default/other\nExecStart=/usr/sbin/other $OPTIONS %z\n",
    )
    .unwrap();
    // The scan finds the same instance through its .wants link.
    let r = run(
        h,
        &[
            "--config",
            "/nonexistent/x.yaml",
            "import",
            "--scan",
            "systemd",
            "-t",
            "systemd",
            "--root",
            root_s,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, yaml);
}

#[test]
fn inittab_line_with_a_remote_command() {
    let (dir, config) = home();
    let h = dir.path();
    let root = h.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    let process = r#"/usr/bin/ssh -f -N -o "ServerAliveInterval 180" -R 55002:localhost:22 user@publicip 'sleep 365d'"#;
    fs::write(
        root.join("etc/inittab"),
        format!("id:2:initdefault:\n# a tunnel\ntun1:2345:respawn:{process}\n"),
    )
    .unwrap();
    let (yaml, stderr) = import_and_check(
        h,
        &config,
        &["--scan", "inittab", "--root", root.to_str().unwrap()],
    );
    assert!(
        yaml.contains("  tun1:\n    # imported from /etc/inittab line 3"),
        "{yaml}"
    );
    assert!(
        yaml.contains("#   'sleep 365d': a remote command is not carried over"),
        "{yaml}"
    );
    assert!(
        stderr.contains("'sleep 365d'") && stderr.contains("-f:"),
        "{stderr}"
    );
    let rendered = ssh_g(h, "/dev/null", &rendered_ssh_args(h, &config, "tun1"));
    let original = ssh_g(h, "/dev/null", &sh_words(process)[1..]);
    let baseline = ssh_g(h, "/dev/null", &words(&["publicip"]));
    // `-f` (and the `-n` it implies) is what the note says is not carried over (the watchdog must stay ssh's
    // parent); ssh -G shows no remote command given on the command line.
    assert_equivalent(
        &original,
        &rendered,
        &baseline,
        &["forkafterauthentication", "stdinnull"],
    );
    assert_eq!(rendered["serveraliveinterval"], ["180"]);
    assert_eq!(rendered["user"], ["user"]);
}

#[test]
fn ssh_config_host_blocks() {
    let (dir, config) = home();
    let h = dir.path();
    let ssh_config = h.join("ssh_config");
    fs::write(
        &ssh_config,
        "Host *\n    ServerAliveInterval 30\n\nHost db-tunnel\n    HostName db.example.org\n    User deploy\n    Port 2222\n    \
         LocalForward 5432 127.0.0.1:5432\n    LocalForward [::1]:15432 [::1]:5432\n    DynamicForward 1080\n    Compression yes\n\n\
         Host home\n    HostName home.example.org\n    RemoteForward 2222 localhost:22\n\nHost plain\n    HostName p.example.org\n",
    )
    .unwrap();
    let cfg = ssh_config.to_str().unwrap();
    let (yaml, _) = import_and_check(h, &config, &["--ssh-config", cfg]);
    assert!(
        yaml.contains("  db-tunnel:\n") && yaml.contains("  home:\n"),
        "{yaml}"
    );
    assert!(!yaml.contains("plain"), "{yaml}");
    for (name, host) in [
        ("db-tunnel", "db.example.org"),
        ("home", "home.example.org"),
    ] {
        let rendered = ssh_g(h, "/dev/null", &rendered_ssh_args(h, &config, name));
        let original = ssh_g(h, cfg, &words(&[name]));
        let baseline = ssh_g(h, "/dev/null", &words(&[host]));
        // `host` is the alias the original was called by; tunnelctl connects to its
        // HostName (compared), so the user's Host block is not applied a second time.
        assert_equivalent(&original, &rendered, &baseline, &["host"]);
    }
}

#[test]
fn write_creates_then_adds_keeping_the_file() {
    let (dir, _) = home();
    let h = dir.path();
    // No configuration yet: created where `check` looks, with a header.
    let config = h.join(".config/tunnelctl/tunnels.yaml");
    let cfg = config.to_str().unwrap();
    let r = run(
        h,
        &[
            "--config",
            cfg,
            "import",
            "--write",
            "--",
            "ssh",
            "-N",
            "-R",
            "1234:localhost:22",
            "me@server",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created = fs::read_to_string(&config).unwrap();
    assert!(
        created.starts_with("# tunnels.yaml: the tunnels tunnelctl keeps alive"),
        "{created}"
    );
    let mode = fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    let expected = if nix::unistd::geteuid().is_root() {
        0o644
    } else {
        0o600
    };
    assert_eq!(mode, expected);
    assert_eq!(run(h, &["--config", cfg, "check"]).code, 0);

    // A hand-edited file keeps every byte; the new entry goes at the end of `tunnels:`.
    let mine = "# my tunnels\ndefaults:\n  keepalive: { interval: 20s }  # why not\n\ntunnels:\n    work:   # the one\n        host: w.example.org\n        forwards: [{dynamic: 1080}]\n    # end of tunnels\n";
    fs::write(&config, mine).unwrap();
    let r = run(
        h,
        &[
            "--config",
            cfg,
            "import",
            "--write",
            "--name",
            "home",
            "--",
            "autossh",
            "-M",
            "0",
            "-N",
            "-R",
            "2222:localhost:22",
            "me@home.example.org",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = fs::read_to_string(&config).unwrap();
    assert!(after.starts_with(mine), "{after}");
    assert!(
        after[mine.len()..].starts_with("\n    home:\n        # imported from the command line"),
        "{after}"
    );
    assert_eq!(run(h, &["--config", cfg, "check"]).code, 0);

    // A clash, or a value the check refuses: refused, named by its source, nothing written.
    for (args, fragment) in [
        (
            vec!["--name", "work", "--", "ssh", "-N", "-D", "1090", "x"],
            "already has a tunnel named `work`",
        ),
        (
            vec!["--", "ssh", "-N", "-R", "70000:localhost:22", "x"],
            "the command line: `-R 70000:localhost:22`: port 70000",
        ),
        (
            vec!["--", "ssh", "-N", "-D", "1080", "y"],
            "the command line: `-D 1080`: ",
        ),
        (
            vec!["--", "ssh", "-N", "-L", "/tmp/s:h:1", "x"],
            "`-L /tmp/s:h:1`: `/tmp/s:h:1` forwards a unix socket",
        ),
    ] {
        let mut all = vec!["--config", cfg, "import", "--write"];
        all.extend(args);
        let r = run(h, &all);
        assert_eq!(r.code, 2, "{all:?}: {}", r.stdout);
        assert!(r.stderr.contains(fragment), "{all:?}: {}", r.stderr);
        assert_eq!(fs::read_to_string(&config).unwrap(), after, "{all:?} wrote");
    }
}

#[test]
fn unit_errors_name_the_unit_line_and_word() {
    let (dir, _) = home();
    let h = dir.path();
    let root = h.join("root");
    let units = root.join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(
        units.join("t.service"),
        "[Service]\nEnvironment=AUTOSSH_GATETIME=0\nExecStart=/usr/bin/autossh -M 0 -N -L ${PORT}:h:80 box\n",
    )
    .unwrap();
    let root_s = root.to_str().unwrap();
    let r = run(
        h,
        &[
            "--config",
            "/nonexistent/x.yaml",
            "import",
            "--systemd",
            "t",
            "-t",
            "systemd",
            "--root",
            root_s,
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unit t.service (")
            && r.stderr
                .contains("t.service line 3): `${PORT}:h:80`: `PORT` is not set"),
        "{}",
        r.stderr
    );
    fs::write(
        units.join("t.service"),
        "[Service]\nEnvironment=AUTOSSH_GATETIME=0 PORT=8080\nExecStart=/usr/bin/autossh -M 0 -N -L ${PORT}:h:80 -o \"ProxyCommand nc %%h %%p\" box\n",
    )
    .unwrap();
    let r = run(
        h,
        &[
            "--config",
            "/nonexistent/x.yaml",
            "import",
            "--systemd",
            "t",
            "-t",
            "systemd",
            "--root",
            root_s,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("#   Environment=AUTOSSH_GATETIME=0: autossh's setting"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("#   -o ProxyCommand nc %h %p: a proxy command runs a local shell command"),
        "{}",
        r.stdout
    );
}
