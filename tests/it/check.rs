//! `tunnelctl check` as a user runs it: the real binary on a config file, every
//! refused configuration with its exact FILE:LINE:COL, and the real ssh (`ssh -G`,
//! which resolves options without connecting) reading back the argv we build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use tunnelctl::config;
use tunnelctl::model::{Forward, Tunnel};
use tunnelctl::ssh_command::{PathOverrides, ssh_argv};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Writes `yaml` into a fresh temp dir and runs `tunnelctl --config FILE check`.
fn check(yaml: &str) -> (tempfile::TempDir, PathBuf, Run) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tunnels.yaml");
    fs::write(&path, yaml).unwrap();
    let run = check_path(&path);
    (dir, path, run)
}

fn check_path(path: &Path) -> Run {
    tunnelctl(path, &["check"])
}

/// Exit 2, and a line `FILE:LINE:COL: …` that contains every fragment.
#[track_caller]
fn expect_error(yaml: &str, line: usize, col: usize, fragments: &[&str]) -> String {
    let (_dir, path, run) = check(yaml);
    assert_eq!(
        run.code, 2,
        "expected exit 2\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let prefix = format!("{}:{line}:{col}: ", path.display());
    let found = run
        .stderr
        .lines()
        .any(|l| l.starts_with(&prefix) && fragments.iter().all(|f| l.contains(f)));
    assert!(
        found,
        "no line starting with {prefix:?} containing {fragments:?} in:\n{}",
        run.stderr
    );
    run.stderr
}

const OK_TUNNEL: &str = "    host: h.example.org\n    forwards:\n      - dynamic: 1080\n";

/// [`expect_error`] for one line under `ssh_options:` of [`OK_TUNNEL`] (line 7, column 7).
#[track_caller]
fn expect_ssh_option_error(option: &str, fragments: &[&str]) -> String {
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      {option}\n"),
        7,
        7,
        fragments,
    )
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    expect_error(
        &format!("tunels:\n  a:\n{OK_TUNNEL}"),
        1,
        1,
        &["unknown key `tunels`", "did you mean `tunnels`?"],
    );
    let stderr = expect_error(
        "tunnels:\n  a:\n    hots: h.example.org\n    forwards:\n      - dynamic: 1080\n",
        3,
        5,
        &["unknown key `hots`", "did you mean `host`?"],
    );
    assert!(
        stderr.contains("hint: valid keys here: host, user"),
        "{stderr}"
    );
    expect_error(
        &format!("defaults:\n  keepalive: {{ intervall: 5s }}\ntunnels:\n  a:\n{OK_TUNNEL}"),
        2,
        16,
        &["unknown key `intervall`", "did you mean `interval`?"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - locl: 80\n        to: x:80\n",
        5,
        9,
        &["unknown key `locl`", "did you mean `local`?"],
    );
}

#[test]
fn bad_durations_are_refused() {
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    connect_timeout: 15\n"),
        6,
        22,
        &["bad duration", "`15s`"],
    );
    expect_error(
        &format!(
            "defaults:\n  probe: {{ interval: 10s, timeout: 5 min }}\ntunnels:\n  a:\n{OK_TUNNEL}"
        ),
        2,
        36,
        &["bad duration", "unknown unit"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    probe: {{ timeout: 0s }}\n"),
        6,
        23,
        &["longer than zero"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    backoff: {{ initial: 10m, max: 5m }}\n"),
        6,
        25,
        &["backoff initial 10m is longer than backoff max 5m"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    keepalive: {{ count: 0 }}\n"),
        6,
        25,
        &["`0` is not a valid count"],
    );
}

#[test]
fn ports_outside_1_to_65535_are_refused() {
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    port: 70000\n"),
        6,
        11,
        &["port 70000 is outside 1-65535"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - local: 0\n        to: x:80\n",
        5,
        16,
        &["port 0 is outside 1-65535"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - remote: 22\n        to: localhost:99999\n",
        6,
        13,
        &["port `99999` is not a number from 1 to 65535"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: \"1080\"\n",
        5,
        18,
        &["a port must be a number", "`1080`"],
    );
}

#[test]
fn duplicate_tunnel_names_are_refused() {
    expect_error(
        &format!(
            "tunnels:\n  a:\n{OK_TUNNEL}  a:\n    host: other.example.org\n    forwards:\n      - dynamic: 1081\n"
        ),
        6,
        3,
        &["duplicate tunnel name `a`", "first defined on line 2"],
    );
}

#[test]
fn two_listeners_on_one_local_port_are_refused() {
    // Across tunnels.
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - local: 8080\n        to: x:80\n  b:\n    host: g\n    forwards:\n      - dynamic: 8080\n",
        10,
        18,
        &[
            "port 8080 on 127.0.0.1 is already used by tunnel `a`",
            "line 5",
        ],
    );
    // Within one tunnel; `localhost` and 127.0.0.1 are the same listener.
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: 1080\n      - dynamic: 1080\n        bind: localhost\n",
        6,
        18,
        &["port 1080 on localhost is already used by tunnel `a`"],
    );
    // A wildcard bind collides with every address.
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: 1080\n        bind: 127.0.0.2\n      - dynamic: 1080\n        bind: 0.0.0.0\n",
        7,
        18,
        &["port 1080 on 0.0.0.0 is already used"],
    );
    // Different loopback addresses are fine.
    let (_d, _p, run) = check(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: 1080\n      - dynamic: 1080\n        bind: 127.0.0.2\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn tunnel_names_that_cannot_be_unit_names_or_inittab_ids_are_refused() {
    let body = "    host: h\n    forwards:\n      - dynamic: 1080\n";
    for (name, message) in [
        ("a/b", "contains `/`"),
        ("-a", "starts with `-`"),
        (".a", "starts with `.`"),
        ("\"a b\"", "whitespace or a control character"),
        ("\"a\\tb\"", "whitespace or a control character"),
        ("\"\"", "may not be empty"),
    ] {
        expect_error(&format!("tunnels:\n  {name}:\n{body}"), 2, 3, &[message]);
    }
    let long = "x".repeat(65);
    expect_error(
        &format!("tunnels:\n  {long}:\n{body}"),
        2,
        3,
        &["65 characters long; at most 64"],
    );
    let ok = "x".repeat(64);
    assert_eq!(check(&format!("tunnels:\n  {ok}:\n{body}")).2.code, 0);
    // Different names, same inittab id (FNV-1a collision found by search).
    assert_eq!(config::inittab_id("tun283"), config::inittab_id("tun1510"));
    expect_error(
        "tunnels:\n  tun283:\n    host: h\n    forwards:\n      - dynamic: 1080\n  tun1510:\n    host: h\n    forwards:\n      - dynamic: 1081\n",
        6,
        3,
        &["same inittab id", "`tun283`"],
    );
}

#[test]
fn empty_or_missing_forwards_are_refused() {
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards: []\n",
        4,
        15,
        &["`forwards` is empty"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n",
        4,
        5,
        &["`forwards` is empty"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n",
        2,
        3,
        &["tunnel `a` has no `forwards:`"],
    );
    expect_error(
        "tunnels:\n  a:\n    forwards: [{dynamic: 1}]\n",
        2,
        3,
        &["tunnel `a` has no `host:`"],
    );
}

#[test]
fn refused_ssh_options() {
    let cases: &[(&str, &str)] = &[
        (
            "StrictHostKeyChecking: \"no\"",
            "turns off host-key checking",
        ),
        (
            "stricthostkeychecking: accept-new",
            "turns off host-key checking",
        ),
        ("UserKnownHostsFile: /dev/null", "is refused"),
        ("ProxyCommand: nc %h %p", "use `jump:`"),
        ("LocalCommand: touch /tmp/x", "runs a local shell command"),
        ("PermitLocalCommand: \"yes\"", "LocalCommand"),
        ("ServerAliveInterval: 5", "keepalive.interval"),
        (
            "controlpath: /tmp/x",
            "tunnel-watchdog owns the control socket",
        ),
        ("RemoteCommand: ls", "no remote command"),
        ("ForkAfterAuthentication: \"yes\"", "fork away"),
        ("GatewayPorts: \"yes\"", "bypassing `bind:`"),
        ("LocalForward: 1 x:1", "`forwards:`"),
    ];
    for (option, message) in cases {
        let stderr = expect_ssh_option_error(option, &["ssh option", message]);
        if message.contains("host-key") || message.contains("shell command") {
            assert!(stderr.contains("allow_insecure_options: true"), "{stderr}");
        }
    }
    // Only ssh option names: no `=`, spaces or other tricks in the key.
    expect_error(
        &format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      \"Compression=yes -oProxyCommand\": x\n"
        ),
        7,
        7,
        &["is not an ssh option name"],
    );
    // A newline in a value would split the args file line.
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      SetEnv: \"A=1\\nB=2\"\n"),
        7,
        15,
        &["contains a control character"],
    );
}

/// `check` refuses a `SetEnv` value exactly when ssh (`ssh -G`, this machine's) refuses
/// it, so the tunnel would never start, or drops part of it without a word; whatever it
/// lets through reaches ssh as every variable written (with a warning that ssh -N sends
/// none of them).
#[test]
fn setenv_values_are_checked_as_ssh_reads_them() {
    // (value, the variables ssh takes from it or None when it refuses, check passes)
    let cases: &[(&str, Option<&[&str]>, bool)] = &[
        ("A=1 B=2", Some(&["A=1", "B=2"]), true),
        ("A=\"x y\" B=", Some(&["A=x y", "B="]), true),
        ("\"A=x y\"", Some(&["A=x y"]), true),
        ("A=x#y", Some(&["A=x#y"]), true),
        ("A=b=c", Some(&["A=b=c"]), true),
        ("=x", Some(&["=x"]), true),
        ("A=a b", None, false),
        ("A", None, false),
        ("A B=c", None, false),
        ("\"A=1", None, false),
        ("A=1 \"\"", None, false),
        ("   ", None, false),
        ("A=1 #B=2", Some(&["A=1"]), false),
        ("A=1 A=2", Some(&["A=1"]), false),
    ];
    for &(value, ssh_takes, passes) in cases {
        let direct = ["ssh", "-o", &format!("SetEnv={value}"), "h"].map(String::from);
        let out = ssh_g_output(&direct);
        let taken = out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix("setenv ").map(String::from))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            taken.as_deref(),
            ssh_takes
                .map(|t| t.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .as_deref(),
            "what ssh makes of SetEnv {value:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      SetEnv: '{}'\n",
            value.replace('\'', "''")
        );
        if !passes {
            expect_error(&yaml, 7, 15, &["ssh option `SetEnv` value"]);
            continue;
        }
        let (_d, _p, run) = check(&yaml);
        assert_eq!(run.code, 0, "SetEnv {value:?}: {}", run.stderr);
        // Taken, but said to do nothing: ssh -N opens no session to send it on.
        assert!(
            run.stderr
                .contains(":7:7: warning: ssh option `SetEnv` has no effect here"),
            "{}",
            run.stderr
        );
        let cfg = config::load_str(&yaml, Path::new("t.yaml"), Path::new("/nonexistent")).unwrap();
        let resolved = ssh_g(&ssh_argv(&cfg.tunnels[0], &PathOverrides::default()));
        assert_eq!(
            resolved.get("setenv").map(String::as_str),
            Some(ssh_takes.unwrap().join("|").as_str()),
            "SetEnv {value:?} as tunnelctl hands it to ssh"
        );
    }
}

#[test]
fn insecure_options_pass_with_a_warning_when_allowed() {
    let (_d, _p, run) = check(&format!(
        "tunnels:\n  a:\n{OK_TUNNEL}    allow_insecure_options: true\n    ssh_options: {{ StrictHostKeyChecking: accept-new }}\n"
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            ":7:43: warning: tunnel `a`: insecure ssh option `StrictHostKeyChecking accept-new`"
        ),
        "{}",
        run.stderr
    );
    let cfg = config::load_str(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    allow_insecure_options: true\n    ssh_options: {{ StrictHostKeyChecking: accept-new }}\n"),
        Path::new("t.yaml"),
        Path::new("/nonexistent"),
    )
    .unwrap();
    let resolved = ssh_g(&ssh_argv(&cfg.tunnels[0], &PathOverrides::default()));
    assert_eq!(
        resolved.get("stricthostkeychecking").map(String::as_str),
        Some("accept-new")
    );
}

#[test]
fn identity_must_exist_and_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_test");
    let yaml = format!(
        "tunnels:\n  a:\n    host: h\n    identity: {}\n    forwards: [{{dynamic: 1080}}]\n",
        key.display()
    );
    expect_error(&yaml, 4, 15, &["identity file", "does not exist"]);

    fs::write(&key, "not really a key\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = expect_error(
        &yaml,
        4,
        15,
        &["accessible by group or others (mode 0644)", "ssh refuses"],
    );
    assert!(
        stderr.contains(&format!("hint: run `chmod 600 {}`", key.display())),
        "{stderr}"
    );

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let (_d, _p, run) = check(&yaml);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // `~/` expands against $HOME.
    let cfg = config::load_str(
        "tunnels:\n  a:\n    host: h\n    identity: ~/id_test\n    forwards: [{dynamic: 1080}]\n",
        Path::new("t.yaml"),
        dir.path(),
    )
    .unwrap();
    assert_eq!(cfg.tunnels[0].identity.as_deref(), Some(key.as_path()));
}

#[test]
fn values_that_would_inject_options_are_refused() {
    expect_error(
        "tunnels:\n  a:\n    host: -oProxyCommand=touch\n    forwards: [{dynamic: 1}]\n",
        3,
        11,
        &["starts with `-`", "read it as an option"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: \"h.example.org -oProxyCommand=x\"\n    forwards: [{dynamic: 1}]\n",
        3,
        11,
        &["contains whitespace"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: alice@h\n    forwards: [{dynamic: 1}]\n",
        3,
        11,
        &["contains `@`"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    user: -oProxyCommand=x\n"),
        6,
        11,
        &["`user`", "starts with `-`"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    user: \"a b\"\n"),
        6,
        11,
        &["`user`", "whitespace"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    jump: \"b;touch${{IFS}}x\"\n"),
        6,
        11,
        &["`jump`", "contains `;`"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    jump: -oProxyCommand=x\n"),
        6,
        11,
        &["`jump`", "starts with `-`"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    known_hosts: \"/etc/kh\\nx\"\n"),
        6,
        18,
        &["contains a control character"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - local: 1\n        to: \"/tmp/sock:1\"\n",
        6,
        13,
        &["host contains `/`"],
    );
    expect_error(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: 1\n        bind: \"127.0.0.1 -oX\"\n",
        6,
        15,
        &["is not an address"],
    );
}

/// `--` before the host: even a host that slipped past validation is a host to ssh.
#[test]
fn host_after_double_dash_is_never_an_option() {
    let tunnel = Tunnel::new(
        "a",
        "-oProxyCommand=touch /tmp/x",
        vec![Forward::Dynamic {
            bind: "127.0.0.1".into(),
            port: 1,
        }],
    );
    let argv = ssh_argv(&tunnel, &PathOverrides::default());
    assert_eq!(
        &argv[argv.len() - 2..],
        ["--", "-oProxyCommand=touch /tmp/x"]
    );
    let out = ssh_g_output(&argv);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.to_lowercase().contains("proxycommand touch"),
        "ssh read the host as an option:\n{stdout}"
    );
    assert!(
        stderr.contains("hostname contains invalid characters"),
        "{stderr}"
    );
}

#[test]
fn non_loopback_bind_warns() {
    let (_d, path, run) = check(
        "tunnels:\n  a:\n    host: h\n    forwards:\n      - dynamic: 1080\n        bind: 0.0.0.0\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let prefix = format!(
        "{}:6:15: warning: dynamic forward 1080 listens on 0.0.0.0",
        path.display()
    );
    assert!(run.stderr.contains(&prefix), "{}", run.stderr);
}

#[test]
fn check_writes_nothing_and_errors_render_snippets() {
    let (dir, _path, run) = check(&format!("tunnels:\n  a:\n{OK_TUNNEL}    port: 70000\n"));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains(" 6 |     port: 70000\n   |           ^^^^^\n"),
        "{}",
        run.stderr
    );
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["tunnels.yaml"]);
}

#[test]
fn missing_config_names_the_paths_tried() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("tunnelctl")
        .unwrap()
        .arg("check")
        .env("TUNNELCTL_CONFIG", dir.path().join("nope.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.yaml") && stderr.contains("TUNNELCTL_CONFIG"),
        "{stderr}"
    );

    // $TUNNELCTL_CONFIG is used when --config is absent.
    let path = dir.path().join("t.yaml");
    fs::write(&path, format!("tunnels:\n  env-tunnel:\n{OK_TUNNEL}")).unwrap();
    let out = Command::cargo_bin("tunnelctl")
        .unwrap()
        .arg("check")
        .env("TUNNELCTL_CONFIG", &path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("env-tunnel"));
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tunnels.yaml")
}

#[test]
fn the_example_passes_check() {
    let run = check_path(&example());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.is_empty(),
        "the example should not even warn:\n{}",
        run.stderr
    );
    assert!(run.stdout.contains("work-tunnel  alice@public.example.org:22  -R 1234:localhost:22, -L 127.0.0.1:8080:intranet:80, -D 127.0.0.1:1080"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("db  deploy@db.internal.example.org via alice@bastion.example.org:2222"),
        "{}",
        run.stdout
    );
}

/// Runs `ssh -G -F /dev/null ARGS` (no config files, no connection): ARGS are `argv`
/// after its program name.
fn ssh_g_output(argv: &[String]) -> std::process::Output {
    Command::new("ssh")
        .arg("-G")
        .args(["-F", "/dev/null"])
        .args(&argv[1..])
        .output()
        .unwrap()
}

/// [`ssh_g_output`], which must succeed, as option → value(s) as ssh resolved them;
/// repeated options are joined with `|`.
fn ssh_g(argv: &[String]) -> std::collections::BTreeMap<String, String> {
    assert_eq!(argv[0], "ssh");
    let out = ssh_g_output(argv);
    crate::common::commands::stdout_of_success(&out, "ssh -G");
    let mut map = std::collections::BTreeMap::<String, String>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_string())
            .and_modify(|old| *old = format!("{old}|{v}"))
            .or_insert_with(|| v.to_string());
    }
    map
}

#[test]
fn real_ssh_reads_back_the_example_argv() {
    let cfg = config::load(&example()).unwrap();
    let work = cfg.tunnel("work-tunnel").unwrap();
    let g = ssh_g(&ssh_argv(work, &PathOverrides::default()));
    let expect = [
        ("hostname", "public.example.org"),
        ("user", "alice"),
        ("port", "22"),
        ("batchmode", "yes"),
        ("exitonforwardfailure", "yes"),
        ("serveraliveinterval", "15"),
        ("serveralivecountmax", "3"),
        ("connecttimeout", "15"),
        ("stricthostkeychecking", "true"),
        ("sessiontype", "none"),
        ("requesttty", "false"),
        ("compression", "yes"),
        ("remoteforward", "1234 [localhost]:22"),
        ("localforward", "[127.0.0.1]:8080 [intranet]:80"),
        ("dynamicforward", "[127.0.0.1]:1080"),
    ];
    for (key, value) in expect {
        assert_eq!(g.get(key).map(String::as_str), Some(value), "ssh -G {key}");
    }

    let db = cfg.tunnel("db").unwrap();
    let overrides = PathOverrides {
        identity: Some("/run/creds/identity".into()),
        known_hosts: Some("/run/creds/known_hosts".into()),
    };
    let g = ssh_g(&ssh_argv(db, &overrides));
    assert_eq!(g["proxyjump"], "alice@bastion.example.org:2222");
    assert_eq!(g["serveraliveinterval"], "5");
    assert_eq!(
        g["localforward"],
        "[127.0.0.1]:5432 [127.0.0.1]:5432|[::1]:15432 [::1]:5432"
    );
    assert_eq!(g["userknownhostsfile"], "/run/creds/known_hosts");
    assert_eq!(g["identitiesonly"], "yes");
}

/// Runs `tunnelctl --config FILE ARGS…`.
fn tunnelctl(path: &Path, args: &[&str]) -> Run {
    let out = Command::cargo_bin("tunnelctl")
        .unwrap()
        .arg("--config")
        .arg(path)
        .args(args)
        .env_remove("TUNNELCTL_CONFIG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn durations_and_counts_beyond_what_ssh_and_systemd_take_are_refused() {
    // Passed check once, then panicked in render and in the watchdog (exit 101).
    expect_error(
        &format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    probe: {{ interval: 5124095576030h, failures: 1000 }}\n"
        ),
        6,
        24,
        &["duration `5124095576030h` is longer than 2147483s"],
    );
    // ssh keeps ConnectTimeout in milliseconds in an int.
    let stderr = expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    connect_timeout: 597h\n"),
        6,
        22,
        &["`597h` is longer than 2147483s"],
    );
    assert!(stderr.contains("hint: use at most `596h`"), "{stderr}");
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    keepalive: {{ interval: 2147483001ms }}\n"),
        6,
        28,
        &["longer than 2147483s"],
    );
    expect_error(
        &format!("defaults:\n  backoff: {{ max: 9999h }}\ntunnels:\n  a:\n{OK_TUNNEL}"),
        2,
        19,
        &["longer than 2147483s"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    probe: {{ failures: 1001 }}\n"),
        6,
        24,
        &["`1001` is not a valid count", "from 1 to 1000"],
    );
}

#[test]
fn the_largest_values_check_accepts_render_for_every_target() {
    let yaml = format!(
        "tunnels:\n  a:\n{OK_TUNNEL}    probe: {{ interval: 596h, timeout: 2147483s, failures: 1000 }}\n    \
         backoff: {{ initial: 2147483s, max: 2147483s }}\n    keepalive: {{ interval: 2147483s, count: 1000 }}\n    \
         connect_timeout: 2147483s\n"
    );
    let (_dir, path, run) = check(&yaml);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for target in tunnelctl::targets::Target::ALL {
        let run = tunnelctl(
            &path,
            &[
                "render",
                "a",
                "--target",
                &target.to_string(),
                "--watchdog",
                "/usr/bin/tunnel-watchdog",
            ],
        );
        assert_eq!(run.code, 0, "{target}: {}", run.stderr);
        if matches!(target, tunnelctl::targets::Target::Systemd) {
            // 596h × 1000 + 2147483s + 596h: well inside systemd's u64 microseconds.
            assert!(
                run.stdout.contains("WatchdogSec=2149893083s"),
                "{}",
                run.stdout
            );
        }
    }
}

#[test]
fn options_that_weaken_host_key_checking_or_hide_errors_need_allow_insecure_options() {
    let cases: &[(&str, &str)] = &[
        ("GlobalKnownHostsFile: /tmp/keys", "another file"),
        ("HostKeyAlias: other.example.org", "under another name"),
        ("VerifyHostKeyDNS: \"yes\"", "DNS"),
        ("verifyhostkeydns: ask", "DNS"),
        ("GSSAPIDelegateCredentials: \"yes\"", "Kerberos"),
        ("LogLevel: QUIET", "hides ssh's errors"),
    ];
    for (option, message) in cases {
        let stderr = expect_ssh_option_error(option, &["is refused", message]);
        assert!(stderr.contains("allow_insecure_options: true"), "{stderr}");
        let (_d, _p, run) = check(&format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    allow_insecure_options: true\n    ssh_options:\n      {option}\n"
        ));
        assert_eq!(run.code, 0, "{option}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("warning: tunnel `a`: insecure ssh option"),
            "{}",
            run.stderr
        );
    }
    // Their harmless values stay allowed without the flag.
    for option in [
        "VerifyHostKeyDNS: \"no\"",
        "GSSAPIDelegateCredentials: \"no\"",
        "LogLevel: ERROR",
    ] {
        let (_d, _p, run) = check(&format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      {option}\n"
        ));
        assert_eq!(run.code, 0, "{option}: {}", run.stderr);
    }
}

#[test]
fn noncharacters_and_bidi_controls_are_refused_in_names_and_values() {
    // Escapes in double quotes, so this file shows what it tests.
    expect_error(
        &format!("tunnels:\n  \"ab\\u202Ecd\":\n{OK_TUNNEL}"),
        2,
        3,
        &[
            "tunnel name",
            "U+202E, a bidirectional control, at character 3",
        ],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    identity: \"/k/id\\uFDD0\"\n"),
        6,
        15,
        &["`identity`", "U+FDD0, a Unicode noncharacter"],
    );
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    known_hosts: \"/k/\\U0001FFFE\"\n"),
        6,
        18,
        &["`known_hosts`", "U+1FFFE, a Unicode noncharacter"],
    );
    for c in ["\\u200F", "\\u061C", "\\u2066", "\\uFFFF"] {
        expect_error(
            &format!("tunnels:\n  a:\n{OK_TUNNEL}    ssh_options: {{ SetEnv: \"A=1{c}\" }}\n"),
            6,
            28,
            &["ssh option `SetEnv` value", "at character 4"],
        );
    }
    // Written raw, the snippet shows `?` instead: the terminal line is not reordered.
    let stderr = expect_error(
        &format!("tunnels:\n  \"x\u{202e}y\":\n{OK_TUNNEL}"),
        2,
        3,
        &["U+202E"],
    );
    assert!(!stderr.contains('\u{202e}'), "{stderr}");
    assert!(stderr.contains("\"x?y\":"), "{stderr}");
}

#[test]
fn paths_with_dollar_brace_are_refused_and_percent_is_accepted() {
    expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    identity: ~/.ssh/${{USER}}_key\n"),
        6,
        15,
        &["`identity`", "contains `${`", "no escape"],
    );
    let stderr = expect_error(
        &format!("tunnels:\n  a:\n{OK_TUNNEL}    known_hosts: /etc/${{X}}/kh\n"),
        6,
        18,
        &["`known_hosts`", "contains `${`"],
    );
    assert!(
        stderr.contains("hint: rename the file or directory"),
        "{stderr}"
    );
    expect_error(
        &format!(
            "tunnels:\n  a:\n{OK_TUNNEL}    ssh_options:\n      CertificateFile: \"${{HOME}}/c\"\n"
        ),
        7,
        7,
        &[
            "ssh option `CertificateFile` is not allowed",
            "cannot escape",
        ],
    );
    // `%` no longer is refused: the ssh command line writes it as `%%`.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id%d_ed25519");
    fs::write(&key, "not a real key").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let (_d, _p, run) = check(&format!(
        "tunnels:\n  a:\n{OK_TUNNEL}    identity: {}\n    ssh_options: {{ IdentityAgent: /run/a%d }}\n",
        key.display()
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// `check DIR`: one host file per box. Each box's own check passes, but two boxes claim
/// remote port 1234 on one bastion: the clash is reported with both files and lines, and
/// only that one (another server, another port, another bind address do not clash).
/// The boxes' identity files need not exist here (they are on the boxes).
#[test]
fn a_fleet_directory_reports_a_remote_port_claimed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let host = |file: &str, server: &str, forwards: &str| {
        fs::write(
            dir.path().join(file),
            format!(
                "tunnels:\n  home:\n    host: {server}\n    identity: /etc/tunnelctl/box_key\n    forwards:\n{forwards}"
            ),
        )
        .unwrap();
    };
    host(
        "alpha.yaml",
        "bastion.example.org",
        "      - remote: 1234\n        to: localhost:22\n",
    );
    host(
        "beta.yaml",
        "other.example.org",
        "      - remote: 1234\n        to: localhost:22\n",
    );
    host(
        "gamma.yaml",
        "Bastion.example.org",
        "      - remote: 1235\n        to: localhost:22\n      - remote: 1234\n        bind: 10.0.0.1\n        to: localhost:80\n      - remote: 1234\n        to: localhost:8080\n",
    );
    let run = |args: &[&Path]| {
        let out = Command::cargo_bin("tunnelctl")
            .unwrap()
            .arg("check")
            .args(args)
            .env_remove("TUNNELCTL_CONFIG")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let r = run(&[dir.path()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let clashes: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("also claimed"))
        .collect();
    assert_eq!(clashes.len(), 1, "{}", r.stderr);
    let (alpha, gamma) = (dir.path().join("alpha.yaml"), dir.path().join("gamma.yaml"));
    assert!(
        clashes[0].starts_with(&format!(
            "{}:11:17: remote port 1234 on bastion.example.org:22",
            gamma.display()
        )) && clashes[0].contains(&format!("also claimed by {}:6:17", alpha.display())),
        "{}",
        clashes[0]
    );

    // Every file alone (and the two that do not clash together) passes.
    for file in ["alpha.yaml", "beta.yaml", "gamma.yaml"] {
        assert_eq!(run(&[&dir.path().join(file)]).code, 0, "{file}");
    }
    assert_eq!(run(&[&alpha, &dir.path().join("beta.yaml")]).code, 0);

    // A directory that holds something else is an error naming it.
    fs::write(dir.path().join("README.md"), "hosts\n").unwrap();
    fs::create_dir(dir.path().join("old")).unwrap();
    let r = run(&[dir.path()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("holds 2 that are not a tunnels file: README.md, old"),
        "{}",
        r.stderr
    );
}

/// A back-off that lets ten failed starts happen within 120 s trips SysV init's
/// "respawning too fast": check says so (a warning, exit 0); the defaults do not.
#[test]
fn a_backoff_that_trips_sysv_respawn_limit_is_warned_about() {
    let (_dir, _path, run) = check(
        "tunnels:\n  a:\n    host: h\n    backoff: { initial: 2s, max: 5s }\n    forwards: [{dynamic: 1080}]\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("tunnel `a` installed for inittab")
            && run.stderr.contains("raise backoff.max")
            && !run.stderr.contains("for busybox"),
        "{}",
        run.stderr
    );
    let (_dir, _path, run) =
        check("tunnels:\n  a:\n    host: h\n    forwards: [{dynamic: 1080}]\n");
    assert!(!run.stderr.contains("raise backoff.max"), "{}", run.stderr);
}
