//! launchd cannot run here: the LaunchDaemon and LaunchAgent plists that `tunnelctl
//! install --root` writes are verified structurally only. Each is parsed back with the
//! `plist` crate and with Python's `plistlib` (an independent parser), both must agree,
//! and every key is checked against launchd.plist(5): known key, right type, sane value.
//! The watchdog argv must equal the one the inittab target writes (same contract).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::prereq::{Prereq, require};
use common::tunnel_env::{Server, TUNNELCTL, Timing, WATCHDOG, install, write_config};
use common::user_manager::run_bounded;

/// launchd.plist(5) keys and their types ("bool", "int", "str", "list", "dict";
/// several when the key accepts several).
const LAUNCHD_KEYS: &[(&str, &[&str])] = &[
    ("Label", &["str"]),
    ("Disabled", &["bool"]),
    ("UserName", &["str"]),
    ("GroupName", &["str"]),
    ("inetdCompatibility", &["dict"]),
    ("LimitLoadToHosts", &["list"]),
    ("LimitLoadFromHosts", &["list"]),
    ("LimitLoadToSessionType", &["str", "list"]),
    ("Program", &["str"]),
    ("ProgramArguments", &["list"]),
    ("EnableGlobbing", &["bool"]),
    ("EnableTransactions", &["bool"]),
    ("OnDemand", &["bool"]),
    ("KeepAlive", &["bool", "dict"]),
    ("RunAtLoad", &["bool"]),
    ("RootDirectory", &["str"]),
    ("WorkingDirectory", &["str"]),
    ("EnvironmentVariables", &["dict"]),
    ("Umask", &["int"]),
    ("TimeOut", &["int"]),
    ("ExitTimeOut", &["int"]),
    ("ThrottleInterval", &["int"]),
    ("InitGroups", &["bool"]),
    ("WatchPaths", &["list"]),
    ("QueueDirectories", &["list"]),
    ("StartOnMount", &["bool"]),
    ("StartInterval", &["int"]),
    ("StartCalendarInterval", &["dict", "list"]),
    ("StandardInPath", &["str"]),
    ("StandardOutPath", &["str"]),
    ("StandardErrorPath", &["str"]),
    ("Debug", &["bool"]),
    ("WaitForDebugger", &["bool"]),
    ("SoftResourceLimits", &["dict"]),
    ("HardResourceLimits", &["dict"]),
    ("Nice", &["int"]),
    ("ProcessType", &["str"]),
    ("AbandonProcessGroup", &["bool"]),
    ("LowPriorityIO", &["bool"]),
    ("LowPriorityBackgroundIO", &["bool"]),
    ("MaterializeDatalessFiles", &["bool"]),
    ("LaunchOnlyOnce", &["bool"]),
    ("MachServices", &["dict"]),
    ("Sockets", &["dict"]),
    ("SessionCreate", &["bool"]),
    ("LegacyTimers", &["bool"]),
    ("AssociatedBundleIdentifiers", &["str", "list"]),
];

/// A plist value reduced to what both parsers can express, for comparing them.
#[derive(Debug, PartialEq)]
enum V {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<V>),
    Dict(BTreeMap<String, V>),
}

impl V {
    fn kind(&self) -> &'static str {
        match self {
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Str(_) => "str",
            V::List(_) => "list",
            V::Dict(_) => "dict",
        }
    }
    fn from_plist(v: &plist::Value) -> V {
        match v {
            plist::Value::Boolean(b) => V::Bool(*b),
            plist::Value::Integer(i) => V::Int(i.as_signed().expect("integer fits i64")),
            plist::Value::String(s) => V::Str(s.clone()),
            plist::Value::Array(a) => V::List(a.iter().map(V::from_plist).collect()),
            plist::Value::Dictionary(d) => V::Dict(
                d.iter()
                    .map(|(k, v)| (k.clone(), V::from_plist(v)))
                    .collect(),
            ),
            other => panic!("unexpected plist value {other:?} (launchd keys use none of these)"),
        }
    }
    /// From the tagged JSON the Python side prints: {"t": "bool"|…, "v": …}.
    fn from_tagged(text: &str) -> V {
        let mut p = Tagged {
            s: text.as_bytes(),
            i: 0,
        };
        p.value()
    }
    fn str(&self) -> &str {
        match self {
            V::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }
    fn strings(&self) -> Vec<String> {
        match self {
            V::List(items) => items.iter().map(|v| v.str().to_string()).collect(),
            other => panic!("expected an array, got {other:?}"),
        }
    }
}

/// Python prints a tiny line-based encoding (no JSON parser needed on this side):
/// `B 1`, `I 10`, `S <hex>`, `L n` + n values, `D n` + n × (`K <hex>` value).
struct Tagged<'a> {
    s: &'a [u8],
    i: usize,
}

impl Tagged<'_> {
    fn line(&mut self) -> (String, String) {
        let rest = &self.s[self.i..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = std::str::from_utf8(&rest[..end]).unwrap().to_string();
        self.i += end + 1;
        let (tag, val) = line.split_once(' ').unwrap_or((&line, ""));
        (tag.to_string(), val.to_string())
    }
    fn hex(text: &str) -> String {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        String::from_utf8(bytes).unwrap()
    }
    fn value(&mut self) -> V {
        let (tag, val) = self.line();
        match tag.as_str() {
            "B" => V::Bool(val == "1"),
            "I" => V::Int(val.parse().unwrap()),
            "S" => V::Str(Self::hex(&val)),
            "L" => V::List(
                (0..val.parse::<usize>().unwrap())
                    .map(|_| self.value())
                    .collect(),
            ),
            "D" => V::Dict(
                (0..val.parse::<usize>().unwrap())
                    .map(|_| {
                        let (k, key) = self.line();
                        assert_eq!(k, "K");
                        (Self::hex(&key), self.value())
                    })
                    .collect(),
            ),
            other => panic!("python side printed {other:?}"),
        }
    }
}

const PY: &str = r#"
import plistlib, sys
def out(v):
    if isinstance(v, bool): print("B", int(v))
    elif isinstance(v, int): print("I", v)
    elif isinstance(v, str): print("S", v.encode().hex())
    elif isinstance(v, list):
        print("L", len(v))
        for x in v: out(x)
    elif isinstance(v, dict):
        print("D", len(v))
        for k, x in v.items():
            print("K", k.encode().hex()); out(x)
    else: raise SystemExit("unexpected type %r" % type(v))
with open(sys.argv[1], "rb") as f:
    out(plistlib.load(f, fmt=plistlib.FMT_XML))
"#;

fn parse_both(path: &Path) -> BTreeMap<String, V> {
    let value = plist::Value::from_file(path)
        .unwrap_or_else(|e| panic!("plist crate cannot read {}: {e}", path.display()));
    let ours = V::from_plist(&value);
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(PY).arg(path);
    let out = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "plistlib cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = V::from_tagged(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(
        ours,
        theirs,
        "the plist crate and plistlib disagree about {}",
        path.display()
    );
    match ours {
        V::Dict(d) => d,
        other => panic!("top level is not a dictionary: {other:?}"),
    }
}

/// Watchdog options minus the per-target `--state-dir`/`--log-file` pairs.
fn without_target_paths(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a.clone());
            out.extend(it.by_ref().cloned());
            break;
        }
        if a == "--state-dir" || a == "--log-file" {
            it.next();
            continue;
        }
        out.push(a.clone());
    }
    out
}

fn check(
    plist: &BTreeMap<String, V>,
    label: &str,
    state_dir: &str,
    log: &str,
    inittab_args: &[String],
) {
    for (key, value) in plist {
        let (_, kinds) = LAUNCHD_KEYS
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} is not a launchd.plist(5) key"));
        assert!(
            kinds.contains(&value.kind()),
            "{key} is a {}, launchd.plist(5) wants {kinds:?}",
            value.kind()
        );
    }
    assert_eq!(plist["Label"].str(), label);
    // Exec'd without a shell: the first element is the program, no Program key needed.
    let argv = plist["ProgramArguments"].strings();
    assert_eq!(argv[0], WATCHDOG);
    assert!(!plist.contains_key("Program") || plist["Program"].str() == WATCHDOG);
    assert!(
        argv.iter().all(|a| !a.chars().any(char::is_control)),
        "control characters in {argv:?}"
    );
    let pos = argv
        .iter()
        .position(|a| a == "--state-dir")
        .expect("--state-dir (no $STATE_DIRECTORY under launchd)");
    assert_eq!(argv[pos + 1], state_dir);
    // The same watchdog contract as the other targets.
    assert_eq!(
        without_target_paths(&argv[1..]),
        without_target_paths(inittab_args)
    );
    // It must start at load and come back whenever it exits.
    assert_eq!(plist["RunAtLoad"], V::Bool(true));
    assert_eq!(plist["KeepAlive"], V::Bool(true));
    if let Some(V::Int(t)) = plist.get("ThrottleInterval") {
        assert!((1..=60).contains(t), "ThrottleInterval {t}");
    }
    if let Some(p) = plist.get("ProcessType") {
        assert!(
            ["Background", "Standard", "Adaptive", "Interactive"].contains(&p.str()),
            "ProcessType {p:?}"
        );
    }
    // launchd must kill ssh with the watchdog: the job's process group goes with it.
    assert_ne!(plist.get("AbandonProcessGroup"), Some(&V::Bool(true)));
    assert_eq!(plist["StandardErrorPath"].str(), log);
    if let Some(V::Dict(env)) = plist.get("EnvironmentVariables") {
        assert!(
            env.values().all(|v| v.kind() == "str"),
            "EnvironmentVariables must be strings"
        );
    }
}

#[test]
fn launchd_plists_parse_back_and_follow_launchd_plist_5() {
    if !require(
        "launchd_plists_parse_back_and_follow_launchd_plist_5",
        &[Prereq::Python3, Prereq::Sshd],
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("itest-launchd")
        .tempdir()
        .unwrap();
    // Real key files (install checks the identity exists and is private).
    let key = dir.path().join("id_ed25519");
    crate::testkit::keygen(&key, "tunnelctl-test").unwrap_or_else(|e| panic!("{e}"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let server = Server {
        port: 2222,
        identity: &key,
        known_hosts: &known_hosts,
    };
    let config = write_config(dir.path(), "itest", &server, 8888, 7777, &Timing::default());
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    let inittab_root = dir.path().join("inittab-root");
    install(&config, "itest", "inittab", &inittab_root, &[]);
    let args_dir = inittab_root.join("etc/tunnelctl/run");
    let args_file = std::fs::read_dir(&args_dir)
        .unwrap()
        .flatten()
        .next()
        .expect("an args file")
        .path();
    let inittab_args: Vec<String> = std::fs::read_to_string(&args_file)
        .unwrap()
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect();

    let root = dir.path().join("root");
    install(&config, "itest", "launchd", &root, &[("HOME", &home)]);
    let daemon = root.join("Library/LaunchDaemons/org.tunnelctl.itest.plist");
    let plist = parse_both(&daemon);
    check(
        &plist,
        "org.tunnelctl.itest",
        "/var/run/tunnelctl/itest",
        "/var/log/tunnelctl/itest.log",
        &inittab_args,
    );
    // Daemons must be root:wheel 0644 for launchd to load them; the mode is ours to set.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&daemon).unwrap().permissions().mode() & 0o7777,
        0o644
    );

    install(&config, "itest", "launchd-agent", &root, &[("HOME", &home)]);
    let rel_home = home.strip_prefix("/").unwrap();
    let agent = root
        .join(rel_home)
        .join("Library/LaunchAgents/org.tunnelctl.itest.plist");
    let plist = parse_both(&agent);
    let state = format!(
        "{}/Library/Application Support/tunnelctl/itest",
        home.display()
    );
    let log = format!("{}/Library/Logs/tunnelctl/itest.log", home.display());
    check(&plist, "org.tunnelctl.itest", &state, &log, &inittab_args);

    // What `render` prints is what install wrote.
    let out = Command::new(TUNNELCTL)
        .arg("-c")
        .arg(&config)
        .args([
            "render",
            "itest",
            "--target",
            "launchd",
            "--watchdog",
            WATCHDOG,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&std::fs::read_to_string(&daemon).unwrap()),
        "render and install disagree"
    );
}
