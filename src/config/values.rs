//! tunnels.yaml → `Vec<Tunnel>`: where the file is, parsing with locations, and
//! every check `tunnelctl check` promises. Problems are collected, not stopped at,
//! so one run shows them all as `FILE:LINE:COL: message`.
//!
//! The YAML is first read into a small located tree (`Node`), then walked by hand:
//! that gives every unknown key a did-you-mean and every value a position, which
//! serde's derive would lose after the first error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::{Diagnostic, closest};
use crate::duration::parse_duration;
use crate::model::{Backoff, DEFAULT_CONNECT_TIMEOUT, Endpoint, Forward, Keepalive, Probe, Tunnel};

// ---------------------------------------------------------------------------
// Public API

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// In file order.
    pub tunnels: Vec<Tunnel>,
    /// Rendered `FILE:LINE:COL: warning: …` lines (with snippet), for stderr.
    pub warnings: Vec<String>,
}

impl Config {
    /// The tunnel called `name`, or a message with a did-you-mean and every name.
    pub fn tunnel(&self, name: &str) -> Result<&Tunnel, String> {
        if let Some(t) = self.tunnels.iter().find(|t| t.name == name) {
            return Ok(t);
        }
        let names: Vec<&str> = self.tunnels.iter().map(|t| t.name.as_str()).collect();
        let mut message = format!("no tunnel named `{name}` in {}", self.path.display());
        if let Some(guess) = closest(name, names.iter().copied()) {
            message.push_str(&format!("; did you mean `{guess}`?"));
        }
        if names.is_empty() {
            message.push_str(" (it defines no tunnels)");
        } else {
            message.push_str(&format!(" (tunnels: {})", names.join(", ")));
        }
        Err(message)
    }
}

/// Every problem found in a configuration file.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    /// The file's text, for the snippets.
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.render(&self.path, &self.source))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration is: `--config`, `$TUNNELCTL_CONFIG`,
/// `~/.config/tunnelctl/tunnels.yaml` (non-root), `/etc/tunnelctl/tunnels.yaml` (root).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let env = std::env::var_os("TUNNELCTL_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let is_root = nix::unistd::geteuid().is_root();
    locate_in(explicit, env.as_deref(), home.as_deref(), is_root, |p| {
        p.exists()
    })
}

/// [`locate`] with its inputs passed in, for tests.
pub fn locate_in(
    explicit: Option<&Path>,
    env: Option<&Path>,
    home: Option<&Path>,
    is_root: bool,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if exists(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "{}: no such file (given with --config)",
                path.display()
            ))
        };
    }
    if let Some(path) = env {
        return if exists(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "{}: no such file (named by $TUNNELCTL_CONFIG)",
                path.display()
            ))
        };
    }
    let candidate = if is_root {
        PathBuf::from("/etc/tunnelctl/tunnels.yaml")
    } else {
        match home {
            Some(home) => home.join(".config/tunnelctl/tunnels.yaml"),
            None => {
                return Err(
                    "no configuration: --config not given, $TUNNELCTL_CONFIG and $HOME not set"
                        .into(),
                );
            }
        }
    };
    if exists(&candidate) {
        Ok(candidate)
    } else {
        Err(format!(
            "no configuration found; tried --config (not given), $TUNNELCTL_CONFIG (not set), {}. \
             Create it (see examples/tunnels.yaml) or pass --config FILE",
            candidate.display()
        ))
    }
}

/// Reads and validates the file; `~` expands against `$HOME` (else the passwd entry).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        source: String::new(),
        diagnostics: vec![Diagnostic::whole_file(format!(
            "cannot read the configuration: {e}"
        ))],
    })?;
    load_str(&text, path, &home_dir())
}

/// The home `~` means in the config and per-user targets install into: $HOME, else the
/// passwd entry.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Parses and validates `text` (named `path` in messages). Only side effect: it stats
/// identity and known_hosts files.
pub fn load_str(text: &str, path: &Path, home: &Path) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        home: home.to_path_buf(),
    };
    let tunnels = cx.document(text);
    let Cx {
        mut diagnostics,
        warnings,
        ..
    } = cx;
    dedup(&mut diagnostics);
    if !diagnostics.is_empty() {
        diagnostics.sort_by_key(|d| (d.line, d.column));
        return Err(ConfigError {
            path: path.to_path_buf(),
            source: text.to_string(),
            diagnostics,
        });
    }
    let mut warnings = warnings;
    dedup(&mut warnings);
    Ok(Config {
        path: path.to_path_buf(),
        tunnels,
        warnings: warnings
            .iter()
            .map(|w| w.render_warning(path, text))
            .collect(),
    })
}

/// The inittab id of a tunnel: `t` + 3 base-36 digits (0-9a-z) of the 32-bit
/// FNV-1a hash of the name's UTF-8 bytes, modulo 36³. Stable across versions and
/// machines, 4 characters, shell-free. `check` refuses two names with one id.
pub fn inittab_id(name: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let mut n = hash % (36 * 36 * 36);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = [b'0'; 3];
    for slot in id.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    format!("t{}", std::str::from_utf8(&id).expect("ascii"))
}

/// Length of `tunnel-ESCAPED.service` when the name is escaped as systemd-escape does.
fn unit_name_len(name: &str) -> usize {
    let escaped: usize = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b":_.-".contains(&b) {
                1
            } else {
                4
            }
        })
        .sum();
    "tunnel-".len() + escaped + ".service".len()
}

fn dedup<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::new();
    items.retain(|d| {
        if seen.contains(d) {
            false
        } else {
            seen.push(d.clone());
            true
        }
    });
}

// ---------------------------------------------------------------------------
// The located YAML tree

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Loc {
    line: usize,
    column: usize,
    width: usize,
}

impl Loc {
    fn of(location: &serde_saphyr::Location) -> Loc {
        Loc {
            line: location.line() as usize,
            column: location.column() as usize,
            width: location.span().len().max(1) as usize,
        }
    }
}

#[derive(Clone, Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
struct Node {
    value: Value,
    at: Loc,
}

#[derive(Clone, Debug)]
struct Key {
    text: String,
    at: Loc,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            at: Loc::of(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    text: key.value,
                    at: Loc::of(&key.referenced),
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

impl Node {
    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a decimal number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The scalar as the user wrote it (numbers and booleans as text).
    fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_string()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Validation

const TUNNEL_KEYS: &[&str] = &[
    "host",
    "user",
    "port",
    "identity",
    "known_hosts",
    "jump",
    "forwards",
    "ssh_options",
    "keepalive",
    "probe",
    "backoff",
    "connect_timeout",
    "allow_insecure_options",
];
const FORWARD_KEYS: &[&str] = &["remote", "local", "dynamic", "to", "bind"];

#[derive(Clone, Debug)]
struct Located<T> {
    value: T,
    at: Loc,
}

#[derive(Clone, Debug)]
struct LocatedForward {
    forward: Forward,
    /// The port's location: duplicate binds point here.
    at: Loc,
}

/// One level of settings (defaults or a tunnel), parsed but not merged.
#[derive(Clone, Debug, Default)]
struct Partial {
    host: Option<Located<String>>,
    user: Option<Located<String>>,
    port: Option<u16>,
    identity: Option<Located<PathBuf>>,
    known_hosts: Option<Located<PathBuf>>,
    jump: Option<Located<String>>,
    forwards: Option<Located<Vec<LocatedForward>>>,
    /// (key, value, key's location, value's location), in file order.
    ssh_options: Vec<(String, String, Loc, Loc)>,
    keepalive_interval: Option<Located<Duration>>,
    keepalive_count: Option<u32>,
    probe_interval: Option<Located<Duration>>,
    probe_timeout: Option<Located<Duration>>,
    probe_failures: Option<u32>,
    backoff_initial: Option<Located<Duration>>,
    backoff_max: Option<Located<Duration>>,
    connect_timeout: Option<Located<Duration>>,
    allow_insecure: Option<Located<bool>>,
    /// Keys present at this level, valid or not.
    given: Vec<&'static str>,
}

struct Cx {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    home: PathBuf,
}

impl Cx {
    fn error(&mut self, at: Loc, message: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let mut d = Diagnostic::new(at.line, at.column, at.width, message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        self.diagnostics.push(d);
    }

    fn warn(&mut self, at: Loc, message: impl Into<String>, hint: impl Into<String>) {
        let hint = hint.into();
        let mut d = Diagnostic::new(at.line, at.column, at.width, message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        self.warnings.push(d);
    }

    fn document(&mut self, text: &str) -> Vec<Tunnel> {
        let options = serde_saphyr::options! {
            // `yes`/`no` stay strings: ssh option values are passed as written.
            strict_booleans: true,
            // Duplicates reach our visitor so we can name both places.
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
            leading_zero_numbers_as_strings: true,
        };
        let root: Node = match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
            Ok(Some(node)) => node,
            Ok(None) => {
                self.diagnostics.push(
                    Diagnostic::whole_file("the configuration is empty")
                        .with_hint("add a `tunnels:` mapping; see examples/tunnels.yaml"),
                );
                return Vec::new();
            }
            Err(e) => {
                let at = e.location().map(|l| Loc::of(&l)).unwrap_or_default();
                let message = e.without_snippet().to_string();
                // The library's text may repeat the position; keep the first line only.
                let message = message.lines().next().unwrap_or("invalid YAML").to_string();
                let hint = if message.contains("tab") {
                    "indent with spaces; YAML does not allow tabs there"
                } else {
                    ""
                };
                self.error(at, format!("invalid YAML: {message}"), hint);
                return Vec::new();
            }
        };
        if matches!(root.value, Value::Null) {
            self.diagnostics.push(
                Diagnostic::whole_file("the configuration is empty")
                    .with_hint("add a `tunnels:` mapping; see examples/tunnels.yaml"),
            );
            return Vec::new();
        }
        let Some(top) = self.map(&root, &["defaults", "tunnels"], "at the top level") else {
            return Vec::new();
        };
        let defaults = match top.get("defaults") {
            Some((_, node)) if matches!(node.value, Value::Null) => Partial::default(),
            Some((_, node)) => self.partial(node, true),
            None => Partial::default(),
        };
        let Some((tunnels_key, tunnels_node)) = top.get("tunnels") else {
            self.error(
                root.at,
                "no `tunnels:` mapping",
                "add `tunnels:` with one entry per tunnel; see examples/tunnels.yaml",
            );
            return Vec::new();
        };
        let Value::Map(entries) = &tunnels_node.value else {
            let at = if matches!(tunnels_node.value, Value::Null) {
                tunnels_key.at
            } else {
                tunnels_node.at
            };
            self.error(
                at,
                format!(
                    "`tunnels` must be a mapping of tunnel names, found {}",
                    tunnels_node.kind()
                ),
                "write `tunnels:` then one indented `NAME:` block per tunnel",
            );
            return Vec::new();
        };
        if entries.is_empty() {
            self.error(
                tunnels_key.at,
                "no tunnels are defined",
                "add at least one tunnel under `tunnels:`",
            );
        }

        let mut tunnels = Vec::new();
        let mut for_binds: Vec<(String, Option<String>, Option<u16>, Partial)> = Vec::new();
        let mut seen: BTreeMap<&str, Loc> = BTreeMap::new();
        let mut ids: BTreeMap<String, (&str, Loc)> = BTreeMap::new();
        for (key, node) in entries {
            if let Some(first) = seen.get(key.text.as_str()) {
                self.error(
                    key.at,
                    format!(
                        "duplicate tunnel name `{}` (first defined on line {})",
                        key.text, first.line
                    ),
                    "rename one of them; each name becomes its own service",
                );
                // Still check its body, so one run shows every problem.
                self.partial(node, false);
                continue;
            }
            seen.insert(&key.text, key.at);
            let name_ok = self.tunnel_name(key);
            if name_ok {
                let id = inittab_id(&key.text);
                if let Some((other, at)) = ids.get(&id) {
                    self.error(
                        key.at,
                        format!(
                            "tunnel `{}` has the same inittab id `{id}` as `{other}` (line {})",
                            key.text, at.line
                        ),
                        "rename one of them (the id is a hash of the name)",
                    );
                } else {
                    ids.insert(id, (&key.text, key.at));
                }
            }
            let partial = self.partial(node, false);
            if let Some(tunnel) = self.resolve(&key.text, key.at, &partial, &defaults) {
                tunnels.push(tunnel);
            }
            let host = partial.host.as_ref().map(|h| h.value.clone());
            for_binds.push((
                key.text.clone(),
                host,
                partial.port.or(defaults.port),
                partial,
            ));
        }
        self.check_binds(&for_binds);
        tunnels
    }

    /// Checks that a map has only `allowed` keys (did-you-mean otherwise) and no key twice.
    fn map<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&str],
        place: &str,
    ) -> Option<BTreeMap<String, (&'n Key, &'n Node)>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.at,
                format!("expected a mapping {place}, found {}", node.kind()),
                format!("valid keys here: {}", allowed.join(", ")),
            );
            return None;
        };
        let mut out: BTreeMap<String, (&Key, &Node)> = BTreeMap::new();
        for (key, value) in entries {
            if !allowed.contains(&key.text.as_str()) {
                let mut message = format!("unknown key `{}` {place}", key.text);
                if let Some(guess) = closest(&key.text, allowed.iter().copied()) {
                    message.push_str(&format!("; did you mean `{guess}`?"));
                }
                self.error(
                    key.at,
                    message,
                    format!("valid keys here: {}", allowed.join(", ")),
                );
                continue;
            }
            if let Some((first, _)) = out.get(&key.text) {
                let line = first.at.line;
                self.error(
                    key.at,
                    format!("key `{}` given twice (first on line {line})", key.text),
                    "keep one of them",
                );
                continue;
            }
            out.insert(key.text.clone(), (key, value));
        }
        Some(out)
    }

    fn tunnel_name(&mut self, key: &Key) -> bool {
        let name = &key.text;
        let hint = "use 1-64 characters such as letters, digits, `-`, `_`, `.`; no `/`, spaces, quotes, backslashes, `:` or control characters, not starting with `-` or `.`";
        let problem = if name.is_empty() {
            Some("a tunnel name may not be empty".to_string())
        } else if name.chars().count() > 64 {
            Some(format!(
                "tunnel name is {} characters long; at most 64 are allowed",
                name.chars().count()
            ))
        } else if name.contains('/') {
            Some(format!(
                "tunnel name `{name}` contains `/`, which cannot be part of a unit or file name"
            ))
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!(
                "tunnel name {name:?} contains whitespace or a control character"
            ))
        } else if name.starts_with('-') || name.starts_with('.') {
            Some(format!("tunnel name `{name}` starts with `{}`", &name[..1]))
        } else if let Some(c) = name.chars().find(|c| "\\\"':".contains(*c)) {
            // systemd's StateDirectory=/RuntimeDirectory= (where the watchdog keeps its
            // state) cannot carry these, so the name could never become a system unit.
            Some(format!(
                "tunnel name `{name}` contains {c:?}, which systemd's StateDirectory= cannot hold"
            ))
        } else if unit_name_len(name) > 255 {
            Some(format!(
                "tunnel name `{name}` makes a unit name longer than systemd's 255 characters once escaped"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.error(key.at, message, hint);
                false
            }
            None => true,
        }
    }

    fn partial(&mut self, node: &Node, is_defaults: bool) -> Partial {
        let mut p = Partial::default();
        let place = if is_defaults {
            "in `defaults`"
        } else {
            "in a tunnel"
        };
        let Some(map) = self.map(node, TUNNEL_KEYS, place) else {
            return p;
        };
        for (name, (key, value)) in &map {
            let name = name.as_str();
            if let Some(known) = TUNNEL_KEYS.iter().find(|k| **k == name) {
                p.given.push(known);
            }
            if is_defaults && (name == "host" || name == "forwards") {
                self.error(
                    key.at,
                    format!("`{name}` cannot be a default; set it in each tunnel"),
                    "",
                );
                continue;
            }
            match name {
                "host" => {
                    p.host = self.host_like(value, "host").map(|v| Located {
                        value: v,
                        at: value.at,
                    })
                }
                "user" => {
                    p.user = self.user(value).map(|v| Located {
                        value: v,
                        at: value.at,
                    })
                }
                "port" => p.port = self.port(value),
                "identity" => p.identity = self.path(value, "identity"),
                "known_hosts" => p.known_hosts = self.path(value, "known_hosts"),
                "jump" => {
                    p.jump = self.jump(value).map(|v| Located {
                        value: v,
                        at: value.at,
                    })
                }
                "forwards" => p.forwards = self.forwards(key, value),
                "ssh_options" => p.ssh_options = self.ssh_options(value),
                "keepalive" => {
                    if let Some(m) = self.map(value, &["interval", "count"], "in `keepalive`") {
                        p.keepalive_interval =
                            m.get("interval").and_then(|(_, v)| self.duration(v, true));
                        p.keepalive_count = m.get("count").and_then(|(_, v)| self.count(v, 1000));
                    }
                }
                "probe" => {
                    if let Some(m) =
                        self.map(value, &["interval", "timeout", "failures"], "in `probe`")
                    {
                        p.probe_interval =
                            m.get("interval").and_then(|(_, v)| self.duration(v, true));
                        p.probe_timeout =
                            m.get("timeout").and_then(|(_, v)| self.duration(v, true));
                        p.probe_failures = m.get("failures").and_then(|(_, v)| self.count(v, 1000));
                    }
                }
                "backoff" => {
                    if let Some(m) = self.map(value, &["initial", "max"], "in `backoff`") {
                        p.backoff_initial =
                            m.get("initial").and_then(|(_, v)| self.duration(v, true));
                        p.backoff_max = m.get("max").and_then(|(_, v)| self.duration(v, true));
                    }
                }
                "connect_timeout" => p.connect_timeout = self.duration(value, true),
                "allow_insecure_options" => match value.value {
                    Value::Bool(b) => {
                        p.allow_insecure = Some(Located {
                            value: b,
                            at: value.at,
                        })
                    }
                    _ => self.error(
                        value.at,
                        format!(
                            "`allow_insecure_options` must be true or false, found {}",
                            value.kind()
                        ),
                        "write `allow_insecure_options: true`",
                    ),
                },
                _ => unreachable!("map() filtered unknown keys"),
            }
        }
        p
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(_) | Value::Float(_) => node.scalar_text(),
            _ => {
                self.error(
                    node.at,
                    format!("`{what}` must be a string, found {}", node.kind()),
                    "",
                );
                None
            }
        }
    }

    /// A string that reaches ssh's command line: no control characters (one
    /// argument per line in args files, no header injection in units).
    fn no_control(&mut self, at: Loc, value: &str, what: &str) -> bool {
        if value.chars().any(char::is_control) {
            self.error(
                at,
                format!("{what} {value:?} contains a control character (newline, tab, …)"),
                "remove it; values that reach the ssh command line must be one printable line",
            );
            return false;
        }
        true
    }

    /// host or jump hop: letters, digits, `.`, `-`, `_`, or an IP address. ssh reads a
    /// leading `-` as an option and ProxyJump pastes hosts into a shell command, so
    /// nothing else gets through.
    fn host_like(&mut self, node: &Node, what: &str) -> Option<String> {
        let value = self.string(node, what)?;
        if !self.no_control(node.at, &value, &format!("`{what}`")) {
            return None;
        }
        if let Err(message) = check_host(&value) {
            self.error(
                node.at,
                format!("`{what}` {value:?} {message}"),
                host_hint(&value),
            );
            return None;
        }
        Some(value)
    }

    fn user(&mut self, node: &Node) -> Option<String> {
        let value = self.string(node, "user")?;
        if !self.no_control(node.at, &value, "`user`") {
            return None;
        }
        if let Err(message) = check_user(&value) {
            self.error(
                node.at,
                format!("`user` {value:?} {message}"),
                "use the login name only, e.g. `user: alice`",
            );
            return None;
        }
        Some(value)
    }

    fn jump(&mut self, node: &Node) -> Option<String> {
        let value = self.string(node, "jump")?;
        if !self.no_control(node.at, &value, "`jump`") {
            return None;
        }
        match check_jump(&value) {
            Ok(()) => Some(value),
            Err(message) => {
                self.error(
                    node.at,
                    format!("`jump` {value:?}: {message}"),
                    "write `[user@]host[:port]`, several separated by commas, e.g. `jump: alice@bastion.example.org:2222`",
                );
                None
            }
        }
    }

    fn port(&mut self, node: &Node) -> Option<u16> {
        match node.value {
            Value::Int(n) if (1..=65535).contains(&n) => Some(n as u16),
            Value::Int(n) => {
                self.error(
                    node.at,
                    format!("port {n} is outside 1-65535"),
                    "use a TCP port number from 1 to 65535",
                );
                None
            }
            _ => {
                let shown = node
                    .scalar_text()
                    .map(|t| format!(" `{t}`"))
                    .unwrap_or_default();
                self.error(
                    node.at,
                    format!(
                        "a port must be a number from 1 to 65535, found {}{shown}",
                        node.kind()
                    ),
                    "write the number without quotes, e.g. `22`",
                );
                None
            }
        }
    }

    fn count(&mut self, node: &Node, max: u32) -> Option<u32> {
        match node.value {
            Value::Int(n) if n >= 1 && n <= i128::from(max) => Some(n as u32),
            _ => {
                let shown = node
                    .scalar_text()
                    .unwrap_or_else(|| node.kind().to_string());
                self.error(
                    node.at,
                    format!(
                        "`{shown}` is not a valid count; it must be a whole number from 1 to {max}"
                    ),
                    "for example `3`",
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, positive: bool) -> Option<Located<Duration>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(_) | Value::Float(_) => node.scalar_text().unwrap_or_default(),
            _ => {
                self.error(
                    node.at,
                    format!("expected a duration such as `15s`, found {}", node.kind()),
                    "",
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if positive && d.is_zero() => {
                self.error(
                    node.at,
                    format!("duration `{text}` must be longer than zero"),
                    "for example `500ms` or `15s`",
                );
                None
            }
            Ok(d) => Some(Located {
                value: d,
                at: node.at,
            }),
            Err(message) => {
                self.error(
                    node.at,
                    format!("bad duration: {message}"),
                    "durations are a whole number and a unit: `500ms`, `15s`, `5m`, `1h`",
                );
                None
            }
        }
    }

    fn path(&mut self, node: &Node, what: &str) -> Option<Located<PathBuf>> {
        let text = self.string(node, what)?;
        if !self.no_control(node.at, &text, &format!("`{what}`")) {
            return None;
        }
        // ssh expands %-tokens in IdentityFile and UserKnownHostsFile, and splits the
        // latter at whitespace: refuse both rather than guess at escaping.
        if text.contains('%') {
            self.error(
                node.at,
                format!("`{what}` {text:?} contains `%`, which ssh would expand as a token"),
                "rename the file or use a path without `%`",
            );
            return None;
        }
        if what == "known_hosts" && text.chars().any(char::is_whitespace) {
            self.error(
                node.at,
                format!(
                    "`known_hosts` {text:?} contains whitespace; ssh would read it as several files"
                ),
                "use a path without spaces",
            );
            return None;
        }
        let expanded = if text == "~" {
            self.home.clone()
        } else if let Some(rest) = text.strip_prefix("~/") {
            self.home.join(rest)
        } else if text.starts_with('~') {
            self.error(
                node.at,
                format!("`{what}` {text:?}: only `~/` (your own home) is expanded"),
                "write the absolute path",
            );
            return None;
        } else if text.starts_with('/') {
            PathBuf::from(&text)
        } else {
            self.error(
                node.at,
                format!("`{what}` {text:?} is relative; services do not run in this directory"),
                "write an absolute path or one starting with `~/`",
            );
            return None;
        };
        Some(Located {
            value: expanded,
            at: node.at,
        })
    }

    fn forwards(&mut self, key: &Key, node: &Node) -> Option<Located<Vec<LocatedForward>>> {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Null => {
                self.error(
                    key.at,
                    "`forwards` is empty",
                    "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
                );
                return None;
            }
            _ => {
                self.error(
                    node.at,
                    format!("`forwards` must be a list, found {}", node.kind()),
                    "write one `- local: PORT` (or remote/dynamic) entry per line",
                );
                return None;
            }
        };
        if items.is_empty() {
            self.error(
                node.at,
                "`forwards` is empty",
                "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
            );
            return None;
        }
        let mut out = Vec::new();
        for item in items {
            if let Some(f) = self.forward(item) {
                out.push(f);
            }
        }
        Some(Located {
            value: out,
            at: node.at,
        })
    }

    fn forward(&mut self, node: &Node) -> Option<LocatedForward> {
        let map = self.map(node, FORWARD_KEYS, "in a forward")?;
        let kinds: Vec<&str> = ["remote", "local", "dynamic"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    node.at,
                    "a forward needs one of `remote:`, `local:` or `dynamic:`",
                    "e.g. `- local: 8080` with `to: intranet:80`",
                );
                return None;
            }
            _ => {
                let (second, _) = map[kinds[1]];
                self.error(
                    second.at,
                    format!("a forward has both `{}` and `{}`", kinds[0], kinds[1]),
                    "write each forward as its own `- ` entry",
                );
                return None;
            }
        };
        let (_, port_node) = map[kind];
        let port = self.port(port_node);
        let bind = match map.get("bind") {
            Some((_, b)) => self.bind(b).map(|v| (v, b.at)),
            None => None,
        };
        let bind_given = map.contains_key("bind");
        let to = match (kind, map.get("to")) {
            ("dynamic", Some((k, _))) => {
                self.error(k.at, "a dynamic forward has no `to:` (it is a SOCKS proxy; the client picks the destination)", "remove `to:`");
                return None;
            }
            ("dynamic", None) => None,
            (_, Some((_, t))) => Some(self.endpoint(t)?),
            (_, None) => {
                self.error(
                    node.at,
                    format!("a {kind} forward needs `to: HOST:PORT`"),
                    "e.g. `to: localhost:22`",
                );
                return None;
            }
        };
        let port = port?;
        if bind_given && bind.is_none() {
            return None;
        }
        let forward = match kind {
            "remote" => {
                if let Some((b, at)) = &bind
                    && !is_loopback(b)
                {
                    self.warn(*at, format!("remote forward {port} binds {b} on the server; anyone who reaches the server there reaches `to`"), "only works if the server's GatewayPorts allows it; remove `bind:` to stay on the server's loopback");
                }
                Forward::Remote {
                    bind: bind.map(|(b, _)| b),
                    port,
                    to: to?,
                }
            }
            "local" | "dynamic" => {
                let bind = match bind {
                    Some((b, at)) => {
                        if !is_loopback(&b) {
                            self.warn(at, format!("{kind} forward {port} listens on {b}, not only on this machine's loopback"), "other hosts on that network can use the tunnel; remove `bind:` to listen on 127.0.0.1");
                        }
                        b
                    }
                    None => "127.0.0.1".to_string(),
                };
                if kind == "local" {
                    Forward::Local {
                        bind,
                        port,
                        to: to?,
                    }
                } else {
                    Forward::Dynamic { bind, port }
                }
            }
            _ => unreachable!(),
        };
        Some(LocatedForward {
            forward,
            at: port_node.at,
        })
    }

    fn bind(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "bind")?;
        if !self.no_control(node.at, &text, "`bind`") {
            return None;
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(&text);
        if bare == "*" || bare.parse::<IpAddr>().is_ok() || check_hostname(bare).is_ok() {
            Some(bare.to_string())
        } else {
            self.error(
                node.at,
                format!("`bind` {text:?} is not an address"),
                "write an IP address such as `127.0.0.1`, `::1`, `0.0.0.0`, or `localhost`",
            );
            None
        }
    }

    fn endpoint(&mut self, node: &Node) -> Option<Endpoint> {
        let text = self.string(node, "to")?;
        if !self.no_control(node.at, &text, "`to`") {
            return None;
        }
        let hint = "write `to: HOST:PORT`, e.g. `localhost:22`, `10.0.0.5:80` or `[::1]:22`";
        let parsed = if let Some(rest) = text.strip_prefix('[') {
            rest.split_once("]:")
                .and_then(|(h, p)| h.parse::<Ipv6Addr>().ok().map(|_| (h.to_string(), p)))
        } else {
            text.rsplit_once(':')
                .filter(|(h, _)| !h.contains(':'))
                .map(|(h, p)| (h.to_string(), p))
        };
        let Some((host, port)) = parsed else {
            let extra = if text.matches(':').count() > 1 {
                " (put an IPv6 address in brackets: `[::1]:22`)"
            } else {
                ""
            };
            self.error(
                node.at,
                format!("`to` {text:?} is not HOST:PORT{extra}"),
                hint,
            );
            return None;
        };
        let port = match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => p as u16,
            _ => {
                self.error(
                    node.at,
                    format!("`to` {text:?}: port `{port}` is not a number from 1 to 65535"),
                    hint,
                );
                return None;
            }
        };
        if host.parse::<Ipv6Addr>().is_err()
            && let Err(message) = check_hostname(&host)
        {
            self.error(node.at, format!("`to` {text:?}: host {message}"), hint);
            return None;
        }
        Some(Endpoint { host, port })
    }

    fn ssh_options(&mut self, node: &Node) -> Vec<(String, String, Loc, Loc)> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.at,
                format!(
                    "`ssh_options` must be a mapping of ssh option names to values, found {}",
                    node.kind()
                ),
                "e.g. `ssh_options: { Compression: \"yes\" }`",
            );
            return Vec::new();
        };
        let mut out: Vec<(String, String, Loc, Loc)> = Vec::new();
        for (key, value) in entries {
            if key.text.is_empty() || !key.text.chars().all(|c| c.is_ascii_alphanumeric()) {
                self.error(
                    key.at,
                    format!(
                        "{:?} is not an ssh option name (letters and digits only)",
                        key.text
                    ),
                    "see `man ssh_config` for option names",
                );
                continue;
            }
            if let Some((first, ..)) = out.iter().find(|(k, ..)| k.eq_ignore_ascii_case(&key.text))
            {
                self.error(
                    key.at,
                    format!(
                        "ssh option `{}` given twice (ssh option names ignore case; see `{first}`)",
                        key.text
                    ),
                    "keep one of them",
                );
                continue;
            }
            let Some(text) = value.scalar_text() else {
                self.error(
                    value.at,
                    format!(
                        "the value of ssh option `{}` must be a single value, found {}",
                        key.text,
                        value.kind()
                    ),
                    "",
                );
                continue;
            };
            if !self.no_control(value.at, &text, &format!("ssh option `{}` value", key.text)) {
                continue;
            }
            if text.is_empty() {
                self.error(
                    value.at,
                    format!("ssh option `{}` has an empty value", key.text),
                    "",
                );
                continue;
            }
            out.push((key.text.clone(), text, key.at, value.at));
        }
        out
    }

    /// Defaults under tunnel values, then the checks that need the merged tunnel.
    fn resolve(&mut self, name: &str, name_at: Loc, t: &Partial, d: &Partial) -> Option<Tunnel> {
        // A value that was given but refused has its own diagnostic already.
        if t.host.is_none() && !t.given.contains(&"host") {
            self.error(
                name_at,
                format!("tunnel `{name}` has no `host:`"),
                "add `host: server.example.org`",
            );
        }
        if t.forwards.is_none() && !t.given.contains(&"forwards") {
            self.error(
                name_at,
                format!("tunnel `{name}` has no `forwards:`"),
                "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
            );
        }
        let pick = |a: &Option<Located<Duration>>, b: &Option<Located<Duration>>| {
            a.clone().or_else(|| b.clone())
        };
        let keepalive_interval = pick(&t.keepalive_interval, &d.keepalive_interval);
        let probe_interval = pick(&t.probe_interval, &d.probe_interval);
        let probe_timeout = pick(&t.probe_timeout, &d.probe_timeout);
        let backoff_initial = pick(&t.backoff_initial, &d.backoff_initial);
        let backoff_max = pick(&t.backoff_max, &d.backoff_max);
        let connect_timeout = pick(&t.connect_timeout, &d.connect_timeout);
        let allow_insecure = t
            .allow_insecure
            .clone()
            .or_else(|| d.allow_insecure.clone());
        let identity = t.identity.clone().or_else(|| d.identity.clone());
        let known_hosts = t.known_hosts.clone().or_else(|| d.known_hosts.clone());

        let keepalive = Keepalive {
            interval: keepalive_interval
                .map(|l| l.value)
                .unwrap_or(Keepalive::default().interval),
            count: t
                .keepalive_count
                .or(d.keepalive_count)
                .unwrap_or(Keepalive::default().count),
        };
        let probe = Probe {
            interval: probe_interval
                .map(|l| l.value)
                .unwrap_or(Probe::default().interval),
            timeout: probe_timeout
                .map(|l| l.value)
                .unwrap_or(Probe::default().timeout),
            failures: t
                .probe_failures
                .or(d.probe_failures)
                .unwrap_or(Probe::default().failures),
        };
        let initial = backoff_initial
            .clone()
            .map(|l| l.value)
            .unwrap_or(Backoff::default().initial);
        let max = backoff_max
            .clone()
            .map(|l| l.value)
            .unwrap_or(Backoff::default().max);
        if initial > max {
            let at = backoff_initial
                .as_ref()
                .or(backoff_max.as_ref())
                .map(|l| l.at)
                .unwrap_or(name_at);
            self.error(
                at,
                format!(
                    "backoff initial {} is longer than backoff max {} (tunnel `{name}`)",
                    crate::duration::format_duration(initial),
                    crate::duration::format_duration(max)
                ),
                "make `initial` shorter than or equal to `max`",
            );
        }
        let allow = allow_insecure.as_ref().is_some_and(|l| l.value);

        if let Some(identity) = &identity {
            self.identity_file(identity);
        }
        if let Some(kh) = &known_hosts
            && !kh.value.exists()
        {
            self.warn(
                kh.at,
                format!(
                    "known_hosts file {} does not exist yet; ssh will refuse every host key",
                    kh.value.display()
                ),
                format!("run `tunnelctl trust {name}` to fetch and pin the server's key"),
            );
        }

        // ssh_options: defaults first, the tunnel's own value wins (case-insensitive).
        let mut merged: Vec<(String, String, Loc, Loc)> = d.ssh_options.clone();
        for option in &t.ssh_options {
            merged.retain(|(k, ..)| !k.eq_ignore_ascii_case(&option.0));
            merged.push(option.clone());
        }
        let mut ssh_options = BTreeMap::new();
        for (key, value, key_at, value_at) in merged {
            match classify_option(&key, &value) {
                OptionVerdict::Allowed => {}
                OptionVerdict::Refused(why, hint) => {
                    self.error(
                        key_at,
                        format!("ssh option `{key}` is not allowed: {why}"),
                        hint,
                    );
                    continue;
                }
                OptionVerdict::Insecure(why) if allow => {
                    self.warn(
                        value_at,
                        format!("tunnel `{name}`: insecure ssh option `{key} {value}`: {why}"),
                        "allowed because the tunnel sets `allow_insecure_options: true`",
                    );
                }
                OptionVerdict::Insecure(why) => {
                    self.error(key_at, format!("ssh option `{key} {value}` is refused: {why}"), "remove it, or set `allow_insecure_options: true` on this tunnel if you accept the risk");
                    continue;
                }
            }
            ssh_options.insert(canonical_option(&key), value);
        }

        let host = t.host.clone()?;
        let forwards = t.forwards.clone()?;
        Some(Tunnel {
            name: name.to_string(),
            host: host.value,
            user: t.user.clone().or_else(|| d.user.clone()).map(|l| l.value),
            port: t.port.or(d.port),
            identity: identity.map(|l| l.value),
            known_hosts: known_hosts.map(|l| l.value),
            jump: t.jump.clone().or_else(|| d.jump.clone()).map(|l| l.value),
            forwards: forwards.value.into_iter().map(|f| f.forward).collect(),
            ssh_options,
            keepalive,
            probe,
            backoff: Backoff { initial, max },
            connect_timeout: connect_timeout
                .map(|l| l.value)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            allow_insecure_options: allow,
        })
    }

    fn identity_file(&mut self, identity: &Located<PathBuf>) {
        use std::os::unix::fs::PermissionsExt;
        let path = &identity.value;
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.error(
                identity.at,
                format!("identity file {} does not exist", path.display()),
                format!("fix the path, or create a key with `ssh-keygen -t ed25519 -N '' -f {}`", path.display()),
            ),
            Err(e) => self.error(identity.at, format!("cannot read identity file {}: {e}", path.display()), "run check as the user the tunnel runs as"),
            Ok(meta) if !meta.is_file() => self.error(identity.at, format!("identity {} is not a file", path.display()), "point `identity:` at the private key file"),
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => self.error(
                identity.at,
                format!(
                    "identity file {} is accessible by group or others (mode {:04o}); ssh refuses to use such a private key",
                    path.display(),
                    meta.permissions().mode() & 0o7777
                ),
                format!("run `chmod 600 {}`", path.display()),
            ),
            Ok(_) => {}
        }
    }

    /// Two listeners on one address and port cannot both start: local/dynamic
    /// forwards on this machine (across all tunnels), remote ones per server.
    fn check_binds(&mut self, tunnels: &[(String, Option<String>, Option<u16>, Partial)]) {
        let mut local: Vec<(String, u16, &str, Loc)> = Vec::new();
        let mut remote: Vec<(String, String, u16, &str, Loc)> = Vec::new();
        for (name, host, ssh_port, partial) in tunnels {
            let Some(forwards) = &partial.forwards else {
                continue;
            };
            for lf in &forwards.value {
                match &lf.forward {
                    Forward::Local { bind, port, .. } | Forward::Dynamic { bind, port } => {
                        if let Some((b, _, other, at)) = local
                            .iter()
                            .find(|(b, p, ..)| p == port && binds_overlap(b, bind))
                        {
                            self.error(
                                lf.at,
                                format!("port {port} on {bind} is already used by tunnel `{other}` (line {}, bind {b})", at.line),
                                "pick another port, or a different bind address",
                            );
                        } else {
                            local.push((bind.clone(), *port, name, lf.at));
                        }
                    }
                    Forward::Remote { bind, port, .. } => {
                        let Some(host) = host else { continue };
                        let server =
                            format!("{}:{}", host.to_ascii_lowercase(), ssh_port.unwrap_or(22));
                        let bind = bind.clone().unwrap_or_else(|| "localhost".into());
                        if let Some((_, b, _, other, at)) = remote.iter().find(|(s, b, p, ..)| {
                            *s == server && p == port && binds_overlap(b, &bind)
                        }) {
                            self.error(
                                lf.at,
                                format!("remote port {port} on {} is already forwarded by tunnel `{other}` (line {}, bind {b})", host, at.line),
                                "the second ssh would fail with \"remote port forwarding failed\"; pick another port",
                            );
                        } else {
                            remote.push((server, bind, *port, name, lf.at));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pure checks

fn host_hint(value: &str) -> String {
    if let Some((user, _)) = value.split_once('@') {
        format!("put the user in its own key: `user: {user}`")
    } else if value.contains(':') && value.parse::<Ipv6Addr>().is_err() {
        "put the port in its own key: `port: 2222`".to_string()
    } else {
        "a host is a name such as `server.example.org` or an IP address".to_string()
    }
}

/// A DNS name or ssh_config alias: letters, digits, `.`, `-`, `_`, not starting with `-`.
fn check_hostname(value: &str) -> Result<(), String> {
    check_plain_word(value, " in a host name")
}

fn check_host(value: &str) -> Result<(), String> {
    if value.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    check_hostname(value)
}

fn check_user(value: &str) -> Result<(), String> {
    check_plain_word(value, "")
}

/// Host and user names reach ssh's command line (and, through ProxyJump, a shell):
/// only letters, digits, `.`, `-`, `_`, and never a leading `-` (ssh would read an option).
fn check_plain_word(value: &str, place: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.starts_with('-') {
        return Err("starts with `-`, so ssh would read it as an option".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_".contains(*c)))
    {
        return Err(format!(
            "contains `{c}`; only letters, digits, `.`, `-` and `_` are allowed{place}"
        ));
    }
    Ok(())
}

/// ProxyJump: `[user@]host[:port]` hops separated by commas. ssh 9.2 builds a shell
/// command from it, so every piece is held to the strict host/user alphabets.
fn check_jump(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    for hop in value.split(',') {
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, hop),
        };
        if let Some(user) = user {
            check_user(user).map_err(|m| format!("user `{user}` {m}"))?;
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, tail) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{hop}` has an unclosed `[`"))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
            match tail {
                "" => (h, None),
                t => (
                    h,
                    Some(
                        t.strip_prefix(':')
                            .ok_or_else(|| format!("unexpected `{t}` after `]`"))?,
                    ),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if !rest.starts_with('[') {
            check_hostname(host).map_err(|m| format!("host `{host}` {m}"))?;
        }
        if let Some(port) = port {
            match port.parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => {}
                _ => return Err(format!("port `{port}` is not a number from 1 to 65535")),
            }
        }
    }
    Ok(())
}

fn is_loopback(bind: &str) -> bool {
    bind.eq_ignore_ascii_case("localhost")
        || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_wildcard(bind: &str) -> bool {
    bind == "*" || bind.is_empty() || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether two listeners on the same port would collide.
fn binds_overlap(a: &str, b: &str) -> bool {
    if is_wildcard(a) || is_wildcard(b) {
        return true;
    }
    let canon = |s: &str| -> Vec<String> {
        if s.eq_ignore_ascii_case("localhost") {
            vec![
                Ipv4Addr::LOCALHOST.to_string(),
                Ipv6Addr::LOCALHOST.to_string(),
            ]
        } else {
            vec![
                s.parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|_| s.to_ascii_lowercase()),
            ]
        }
    };
    let (a, b) = (canon(a), canon(b));
    a.iter().any(|x| b.contains(x))
}

enum OptionVerdict {
    Allowed,
    /// Never allowed: (why, how to get the same effect).
    Refused(String, String),
    /// Only with `allow_insecure_options: true`.
    Insecure(String),
}

/// What `ssh_options` may hold. Refused outright: what tunnelctl or the watchdog set
/// themselves (ssh keeps the first value it sees, so a duplicate would silently lose
/// or win), what has its own key here, and what breaks the tunnel model (a remote
/// command, a tty, forking away from the watchdog, tun devices, gateway ports that
/// bypass `bind:`). Insecure: what turns off host-key checking, runs local commands
/// or loads code, or hands the server our agent or display.
fn classify_option(key: &str, value: &str) -> OptionVerdict {
    let k = key.to_ascii_lowercase();
    let v = value.trim().to_ascii_lowercase();
    let refused = |why: &str, hint: &str| OptionVerdict::Refused(why.to_string(), hint.to_string());
    match k.as_str() {
        "batchmode" | "exitonforwardfailure" => {
            refused("tunnelctl always sets it to yes", "remove it")
        }
        "serveraliveinterval" => refused(
            "it comes from `keepalive.interval`",
            "set `keepalive: { interval: 15s }`",
        ),
        "serveralivecountmax" => refused(
            "it comes from `keepalive.count`",
            "set `keepalive: { count: 3 }`",
        ),
        "connecttimeout" => refused(
            "it comes from `connect_timeout`",
            "set `connect_timeout: 15s`",
        ),
        "controlmaster" | "controlpath" | "controlpersist" => refused(
            "tunnel-watchdog owns the control socket it probes through",
            "remove it",
        ),
        "stricthostkeychecking" => match v.as_str() {
            "no" | "off" | "accept-new" => OptionVerdict::Insecure(
                "it turns off host-key checking (a man in the middle could read the tunnel)".into(),
            ),
            _ => refused(
                "tunnelctl always sets it to yes",
                "remove it; pin the key with `tunnelctl trust NAME`",
            ),
        },
        "userknownhostsfile" => {
            if v == "/dev/null" || v == "none" {
                OptionVerdict::Insecure(
                    "with no known hosts every server key is accepted or refused blindly".into(),
                )
            } else {
                refused(
                    "it comes from `known_hosts`",
                    "set `known_hosts: /path/to/known_hosts`",
                )
            }
        }
        "proxycommand" => OptionVerdict::Insecure(
            "it runs a local shell command; use `jump:` for a bastion host".into(),
        ),
        "localcommand" => OptionVerdict::Insecure("it runs a local shell command".into()),
        "permitlocalcommand" if v != "no" => {
            OptionVerdict::Insecure("it lets LocalCommand run local shell commands".into())
        }
        "knownhostscommand" => OptionVerdict::Insecure(
            "it runs a local command to decide which host keys to trust".into(),
        ),
        "pkcs11provider" | "securitykeyprovider" => {
            OptionVerdict::Insecure("it loads a shared library into ssh".into())
        }
        "forwardagent" if v != "no" => {
            OptionVerdict::Insecure("it lets the server use your ssh agent".into())
        }
        "forwardx11" | "forwardx11trusted" if v != "no" => {
            OptionVerdict::Insecure("it lets the server reach your X display".into())
        }
        "identityfile" => refused(
            "it comes from `identity`",
            "set `identity: ~/.ssh/id_ed25519`",
        ),
        "port" => refused("it comes from `port`", "set `port: 2222`"),
        "user" => refused("it comes from `user`", "set `user: alice`"),
        "proxyjump" => refused("it comes from `jump`", "set `jump: bastion.example.org`"),
        "hostname" => refused("the tunnel's `host` says where to connect", "set `host:`"),
        "localforward" | "remoteforward" | "dynamicforward" => refused(
            "forwards must be declared in `forwards:` so the watchdog can probe them",
            "add a `forwards:` entry",
        ),
        "clearallforwardings" => refused("it would drop the tunnel's forwards", "remove it"),
        "gatewayports" => refused(
            "it makes local forwards listen on every interface, bypassing `bind:`",
            "set `bind:` on the forward instead",
        ),
        "remotecommand" | "sessiontype" | "requesttty" | "stdinnull" => refused(
            "a tunnel runs no remote command and no terminal (ssh -N -T)",
            "remove it",
        ),
        "forkafterauthentication" => refused(
            "ssh would fork away from tunnel-watchdog, which must stay its parent",
            "remove it",
        ),
        "tunnel" | "tunneldevice" => refused(
            "tun/tap forwarding is not a port forward the watchdog can probe",
            "remove it",
        ),
        "include" | "host" | "match" => refused(
            "config blocks and includes cannot be given on the command line",
            "remove it",
        ),
        _ => OptionVerdict::Allowed,
    }
}

/// ssh option names ignore case; keep the user's spelling (stable, readable output).
fn canonical_option(key: &str) -> String {
    key.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        load_str(text, Path::new("t.yaml"), Path::new("/home/u"))
    }

    fn errors(text: &str) -> Vec<(usize, usize, String)> {
        load(text)
            .unwrap_err()
            .diagnostics
            .into_iter()
            .map(|d| (d.line, d.column, d.message))
            .collect()
    }

    #[test]
    fn minimal_tunnel_gets_defaults() {
        let c = load("tunnels:\n  a:\n    host: h.example\n    forwards:\n      - dynamic: 1080\n")
            .unwrap();
        let t = &c.tunnels[0];
        assert_eq!(t.name, "a");
        assert_eq!(
            t.forwards,
            vec![Forward::Dynamic {
                bind: "127.0.0.1".into(),
                port: 1080
            }]
        );
        assert_eq!(t.keepalive, Keepalive::default());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn defaults_apply_and_tunnel_wins() {
        let c = load(
            "defaults:\n  keepalive: { interval: 5s, count: 4 }\n  user: bob\n  ssh_options: { Compression: yes, LogLevel: ERROR }\n\
             tunnels:\n  a:\n    host: h\n    keepalive: { count: 2 }\n    ssh_options: { compression: 'no' }\n    forwards: [{local: 8080, to: 'intranet:80'}]\n",
        )
        .unwrap();
        let t = &c.tunnels[0];
        assert_eq!(
            t.keepalive,
            Keepalive {
                interval: Duration::from_secs(5),
                count: 2
            }
        );
        assert_eq!(t.user.as_deref(), Some("bob"));
        let opts: Vec<_> = t
            .ssh_options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(opts, ["LogLevel=ERROR", "compression=no"]);
    }

    #[test]
    fn tilde_expands_against_home() {
        let c = load("tunnels:\n  a:\n    host: h\n    known_hosts: ~/.ssh/kh\n    forwards: [{dynamic: 1}]\n").unwrap();
        assert_eq!(
            c.tunnels[0].known_hosts.as_deref(),
            Some(Path::new("/home/u/.ssh/kh"))
        );
        assert_eq!(
            c.warnings.len(),
            1,
            "missing known_hosts warns: {:?}",
            c.warnings
        );
    }

    #[test]
    fn unknown_key_has_location_and_suggestion() {
        let e = errors("tunnels:\n  a:\n    hots: h\n    forwards: [{dynamic: 1}]\n");
        assert!(
            e.iter().any(|(l, c, m)| *l == 3
                && *c == 5
                && m.contains("`hots`")
                && m.contains("`host`")),
            "{e:?}"
        );
    }

    #[test]
    fn to_parses_ipv6_and_refuses_bare() {
        let c = load("tunnels:\n  a:\n    host: h\n    forwards: [{local: 1, to: '[::1]:22'}]\n")
            .unwrap();
        assert_eq!(
            c.tunnels[0].forwards[0],
            Forward::Local {
                bind: "127.0.0.1".into(),
                port: 1,
                to: Endpoint {
                    host: "::1".into(),
                    port: 22
                }
            }
        );
        let e = errors("tunnels:\n  a:\n    host: h\n    forwards: [{local: 1, to: '::1:22'}]\n");
        assert!(e[0].2.contains("brackets"), "{e:?}");
    }

    #[test]
    fn inittab_id_is_stable_and_short() {
        assert_eq!(inittab_id("work-tunnel"), inittab_id("work-tunnel"));
        assert_eq!(inittab_id("a").len(), 4);
        assert!(inittab_id("x").starts_with('t'));
        // Reference values computed independently (Python: FNV-1a 32, % 36**3, base 36).
        assert_eq!(inittab_id(""), "ttfp");
        assert_eq!(inittab_id("work-tunnel"), "tgyh");
    }

    #[test]
    fn jump_and_host_checks() {
        assert!(check_jump("alice@bastion:2222,b2").is_ok());
        assert!(check_jump("[::1]:22").is_ok());
        assert!(check_jump("-oProxyCommand=x").is_err());
        assert!(check_jump("a;touch /tmp/x").is_err());
        assert!(check_host("-oProxyCommand=x").is_err());
        assert!(check_host("::1").is_ok());
        assert!(check_host("a b").is_err());
    }

    #[test]
    fn bind_overlap_rules() {
        assert!(binds_overlap("127.0.0.1", "localhost"));
        assert!(binds_overlap("0.0.0.0", "127.0.0.2"));
        assert!(!binds_overlap("127.0.0.1", "127.0.0.2"));
        assert!(binds_overlap("::1", "[::1]".trim_matches(['[', ']'])));
    }

    #[test]
    fn locate_order() {
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        assert_eq!(
            locate_in(
                Some(Path::new("/x")),
                Some(Path::new("/e")),
                None,
                false,
                yes
            )
            .unwrap(),
            Path::new("/x")
        );
        assert_eq!(
            locate_in(None, Some(Path::new("/e")), None, false, yes).unwrap(),
            Path::new("/e")
        );
        assert_eq!(
            locate_in(None, None, Some(Path::new("/h")), false, yes).unwrap(),
            Path::new("/h/.config/tunnelctl/tunnels.yaml")
        );
        assert_eq!(
            locate_in(None, None, Some(Path::new("/h")), true, yes).unwrap(),
            Path::new("/etc/tunnelctl/tunnels.yaml")
        );
        let e = locate_in(None, None, Some(Path::new("/h")), false, no).unwrap_err();
        assert!(
            e.contains("/h/.config/tunnelctl/tunnels.yaml") && e.contains("TUNNELCTL_CONFIG"),
            "{e}"
        );
    }

    #[test]
    fn tunnel_lookup_suggests() {
        let c = load("tunnels:\n  work:\n    host: h\n    forwards: [{dynamic: 1}]\n").unwrap();
        assert!(c.tunnel("work").is_ok());
        let e = c.tunnel("wrok").unwrap_err();
        assert!(
            e.contains("did you mean `work`") && e.contains("tunnels: work"),
            "{e}"
        );
    }
}
