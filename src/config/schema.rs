//! The shape of tunnels.yaml: which keys exist where, and one `Partial` per level
//! (defaults, each tunnel), parsed but not merged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::forwards::LocatedForward;
use super::yaml::{self, Key, Loc, Node, Value};
use super::{Cx, inittab_id};
use crate::diagnostic::{Diagnostic, closest};
use crate::duration::MAX_COUNT;
use crate::model::Tunnel;

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
    "metrics_file",
    "on_change",
];
pub(super) const FORWARD_KEYS: &[&str] = &["remote", "local", "dynamic", "to", "bind"];
const TOP_KEYS: &[&str] = &["defaults", "tunnels"];
const KEEPALIVE_KEYS: &[&str] = &["interval", "count"];
const PROBE_KEYS: &[&str] = &["interval", "timeout", "failures"];
const BACKOFF_KEYS: &[&str] = &["initial", "max"];

/// Every level's keys: the top level, a tunnel (or `defaults`), a forward, `keepalive`,
/// `probe`, `backoff`.
pub const KEYS: [&[&str]; 6] = [
    TOP_KEYS,
    TUNNEL_KEYS,
    FORWARD_KEYS,
    KEEPALIVE_KEYS,
    PROBE_KEYS,
    BACKOFF_KEYS,
];

#[derive(Clone, Debug)]
pub(super) struct Located<T> {
    pub(super) value: T,
    pub(super) at: Loc,
}

/// One level of settings (defaults or a tunnel), parsed but not merged.
#[derive(Clone, Debug, Default)]
pub(super) struct Partial {
    pub(super) host: Option<Located<String>>,
    pub(super) user: Option<Located<String>>,
    pub(super) port: Option<u16>,
    pub(super) identity: Option<Located<PathBuf>>,
    pub(super) known_hosts: Option<Located<PathBuf>>,
    pub(super) jump: Option<Located<String>>,
    pub(super) forwards: Option<Located<Vec<LocatedForward>>>,
    /// (key, value, key's location, value's location), in file order.
    pub(super) ssh_options: Vec<(String, String, Loc, Loc)>,
    pub(super) keepalive_interval: Option<Located<Duration>>,
    pub(super) keepalive_count: Option<u32>,
    pub(super) probe_interval: Option<Located<Duration>>,
    pub(super) probe_timeout: Option<Located<Duration>>,
    pub(super) probe_failures: Option<u32>,
    pub(super) backoff_initial: Option<Located<Duration>>,
    pub(super) backoff_max: Option<Located<Duration>>,
    pub(super) connect_timeout: Option<Located<Duration>>,
    pub(super) allow_insecure: Option<Located<bool>>,
    /// `metrics_file`: `{name}` is replaced by the tunnel's name when merged.
    pub(super) metrics_file: Option<Located<PathBuf>>,
    /// `on_change`: the command's argv.
    pub(super) on_change: Option<Located<Vec<String>>>,
    /// Keys present at this level, valid or not.
    pub(super) given: Vec<&'static str>,
}

/// What the tunnels read so far claim, for the checks across tunnels: each name, each
/// inittab id and each metrics file belongs to one tunnel only.
#[derive(Default)]
struct Claims<'d> {
    names: BTreeMap<&'d str, Loc>,
    ids: BTreeMap<String, (&'d str, Loc)>,
    /// Two watchdogs writing one metrics file would overwrite each other's.
    metrics: BTreeMap<PathBuf, String>,
}

impl Cx {
    /// The whole file: `defaults`, then every tunnel merged over them; the tunnels that
    /// passed every check, in file order.
    pub(super) fn document(&mut self, text: &str) -> Vec<Tunnel> {
        let Some(root) = self.root(text) else {
            return Vec::new();
        };
        let Some(top) = self.map(&root, TOP_KEYS, "at the top level") else {
            return Vec::new();
        };
        let defaults = match top.get("defaults") {
            Some((_, node)) if matches!(node.value, Value::Null) => Partial::default(),
            Some((_, node)) => self.partial(node, true),
            None => Partial::default(),
        };
        self.default_metrics_file = defaults.metrics_file.as_ref().map(|l| l.value.clone());
        let Some(entries) = self.tunnel_entries(&root, top.get("tunnels").copied()) else {
            return Vec::new();
        };
        self.tunnels(entries, &defaults)
    }

    /// The parsed file, or `None` (with its diagnostic) when it does not parse or is empty.
    fn root(&mut self, text: &str) -> Option<Node> {
        match yaml::parse(text) {
            Ok(Some(node)) if !matches!(node.value, Value::Null) => Some(node),
            Ok(_) => {
                self.diagnostics.push(
                    Diagnostic::whole_file("the configuration is empty")
                        .with_hint("add a `tunnels:` mapping; see examples/tunnels.yaml"),
                );
                None
            }
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// The entries of the `tunnels:` mapping, or `None` (with its diagnostic) when there is
    /// no such mapping. No entry at all is an error too, but an empty list is returned.
    fn tunnel_entries<'n>(
        &mut self,
        root: &Node,
        tunnels: Option<(&Key, &'n Node)>,
    ) -> Option<&'n [(Key, Node)]> {
        let Some((tunnels_key, tunnels_node)) = tunnels else {
            self.error(
                root.at,
                "no `tunnels:` mapping",
                "add `tunnels:` with one entry per tunnel; see examples/tunnels.yaml",
            );
            return None;
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
            return None;
        };
        if entries.is_empty() {
            self.error(
                tunnels_key.at,
                "no tunnels are defined",
                "add at least one tunnel under `tunnels:`",
            );
        }
        Some(entries)
    }

    /// Each tunnel checked alone, merged over `defaults`, and against the others.
    fn tunnels(&mut self, entries: &[(Key, Node)], defaults: &Partial) -> Vec<Tunnel> {
        let mut tunnels = Vec::new();
        let mut for_binds: Vec<(String, Option<String>, Option<u16>, Partial)> = Vec::new();
        let mut claims = Claims::default();
        for (key, node) in entries {
            if self.duplicate_name(key, &mut claims) {
                // Still check its body, so one run shows every problem.
                self.partial(node, false);
                continue;
            }
            if self.tunnel_name(key) {
                self.unique_inittab_id(key, &mut claims);
            }
            let partial = self.partial(node, false);
            if let Some(tunnel) = self.resolve(&key.text, key.at, &partial, defaults) {
                self.unique_metrics_file(key, &tunnel, &partial, defaults, &mut claims);
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

    /// Whether an earlier tunnel has this name (an error); else the name is claimed.
    fn duplicate_name<'d>(&mut self, key: &'d Key, claims: &mut Claims<'d>) -> bool {
        if let Some(first) = claims.names.get(key.text.as_str()) {
            self.error(
                key.at,
                format!(
                    "duplicate tunnel name `{}` (first defined on line {})",
                    key.text, first.line
                ),
                "rename one of them; each name becomes its own service",
            );
            return true;
        }
        claims.names.insert(&key.text, key.at);
        false
    }

    /// The inittab id (a hash of the name) must not be an earlier tunnel's.
    fn unique_inittab_id<'d>(&mut self, key: &'d Key, claims: &mut Claims<'d>) {
        let id = inittab_id(&key.text);
        if let Some((other, at)) = claims.ids.get(&id) {
            self.error(
                key.at,
                format!(
                    "tunnel `{}` has the same inittab id `{id}` as `{other}` (line {})",
                    key.text, at.line
                ),
                "rename one of them (the id is a hash of the name)",
            );
        } else {
            claims.ids.insert(id, (&key.text, key.at));
        }
    }

    /// The tunnel's metrics file, if any, must not be an earlier tunnel's.
    fn unique_metrics_file(
        &mut self,
        key: &Key,
        tunnel: &Tunnel,
        partial: &Partial,
        defaults: &Partial,
        claims: &mut Claims<'_>,
    ) {
        let Some(file) = &tunnel.metrics_file else {
            return;
        };
        if let Some(other) = claims.metrics.get(file) {
            let at = partial
                .metrics_file
                .as_ref()
                .or(defaults.metrics_file.as_ref())
                .map_or(key.at, |l| l.at);
            self.error(
                at,
                format!(
                    "tunnel `{}` writes the metrics file {file:?} that `{other}` writes too",
                    key.text
                ),
                "give each tunnel its own file; `{name}` in the path is replaced by the tunnel's name",
            );
        } else {
            claims.metrics.insert(file.clone(), key.text.clone());
        }
    }

    /// Checks that a map has only `allowed` keys (did-you-mean otherwise) and no key twice.
    pub(super) fn map<'n>(
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

    pub(super) fn partial(&mut self, node: &Node, is_defaults: bool) -> Partial {
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
                    if let Some(m) = self.map(value, KEEPALIVE_KEYS, "in `keepalive`") {
                        p.keepalive_interval =
                            m.get("interval").and_then(|(_, v)| self.duration(v, true));
                        p.keepalive_count =
                            m.get("count").and_then(|(_, v)| self.count(v, MAX_COUNT));
                    }
                }
                "probe" => {
                    if let Some(m) = self.map(value, PROBE_KEYS, "in `probe`") {
                        p.probe_interval =
                            m.get("interval").and_then(|(_, v)| self.duration(v, true));
                        p.probe_timeout =
                            m.get("timeout").and_then(|(_, v)| self.duration(v, true));
                        p.probe_failures = m
                            .get("failures")
                            .and_then(|(_, v)| self.count(v, MAX_COUNT));
                    }
                }
                "backoff" => {
                    if let Some(m) = self.map(value, BACKOFF_KEYS, "in `backoff`") {
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
                "metrics_file" => {
                    p.metrics_file = self.path(value, "metrics_file").filter(|l| {
                        // node_exporter's textfile collector reads `*.prom` only.
                        let ok = l.value.extension().is_some_and(|e| e == "prom");
                        if !ok {
                            self.error(
                                value.at,
                                format!(
                                    "`metrics_file` {:?} does not end in `.prom`; node_exporter's textfile collector would never read it",
                                    l.value
                                ),
                                "name it like `/var/lib/tunnelctl-metrics/tunnel-{name}.prom`",
                            );
                        }
                        ok
                    })
                }
                "on_change" => p.on_change = self.on_change(value),
                _ => unreachable!("map() filtered unknown keys"),
            }
        }
        p
    }
}

impl Cx {
    /// `on_change: [/usr/bin/notify-send, tunnel changed]`: an argv, never a shell line;
    /// the program an absolute path (the service's PATH is not the user's).
    fn on_change(&mut self, node: &Node) -> Option<Located<Vec<String>>> {
        let hint =
            "write a list: `on_change: [/usr/local/bin/tunnel-alert, --to, ops@example.org]`";
        let Value::Seq(items) = &node.value else {
            self.error(
                node.at,
                format!(
                    "`on_change` must be a list of words (the command's argv), found {}",
                    node.kind()
                ),
                hint,
            );
            return None;
        };
        let mut argv = Vec::new();
        for item in items {
            let word = self.string(item, "on_change")?;
            if !self.no_control(item.at, &word, "`on_change`") {
                return None;
            }
            argv.push(word);
        }
        match argv.first() {
            None => {
                self.error(node.at, "`on_change` is empty", hint);
                None
            }
            Some(program) if !program.starts_with('/') => {
                self.error(
                    items[0].at,
                    format!("`on_change` program {program:?} is not an absolute path; the service does not search your PATH"),
                    "write the full path, e.g. `/usr/bin/notify-send` (see `command -v`)",
                );
                None
            }
            Some(_) => Some(Located {
                value: argv,
                at: node.at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{errors, load};

    #[test]
    fn metrics_file_and_on_change_are_read_merged_and_rendered() {
        let c = load(
            "defaults:\n  metrics_file: /var/lib/node/tunnel-{name}.prom\n  on_change: [/usr/bin/logger, -t, tunnel]\ntunnels:\n  a:\n    host: h\n    forwards: [{dynamic: 1}]\n  b:\n    host: h\n    forwards: [{dynamic: 2}]\n    on_change: [/bin/true]\n",
        )
        .unwrap();
        let (a, b) = (&c.tunnels[0], &c.tunnels[1]);
        assert_eq!(
            a.metrics_file.as_deref(),
            Some(std::path::Path::new("/var/lib/node/tunnel-a.prom"))
        );
        assert_eq!(a.on_change, ["/usr/bin/logger", "-t", "tunnel"]);
        assert_eq!(b.on_change, ["/bin/true"]);
        let args = crate::targets::watchdog_options(a, None, None);
        let tail: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .skip_while(|a| *a != "--metrics-file")
            .collect();
        assert_eq!(
            tail,
            [
                "--metrics-file",
                "/var/lib/node/tunnel-a.prom",
                "--on-change",
                "/usr/bin/logger",
                "--on-change",
                "-t",
                "--on-change",
                "tunnel"
            ]
        );
        // Unset: nothing rendered (golden outputs stay as they were).
        let plain = load("tunnels:\n  a:\n    host: h\n    forwards: [{dynamic: 1}]\n").unwrap();
        let args = crate::targets::watchdog_options(&plain.tunnels[0], None, None);
        assert!(
            !args
                .iter()
                .any(|a| a == "--metrics-file" || a == "--on-change")
        );
    }

    #[test]
    fn bad_metrics_file_and_on_change_say_where_and_how_to_fix() {
        let base = "tunnels:\n  a:\n    host: h\n    forwards: [{dynamic: 1}]\n";
        for (extra, line, says) in [
            ("    metrics_file: /tmp/x.txt\n", 5, "`.prom`"),
            ("    metrics_file: x.prom\n", 5, "relative"),
            ("    on_change: notify-send hi\n", 5, "must be a list"),
            ("    on_change: [notify-send, hi]\n", 5, "absolute path"),
            ("    on_change: []\n", 5, "empty"),
            (
                "    metrics_file: /m/x.prom\n  b:\n    host: h\n    forwards: [{dynamic: 2}]\n    metrics_file: /m/x.prom\n",
                9,
                "that `a` writes too",
            ),
        ] {
            let e = errors(&format!("{base}{extra}"));
            assert!(
                e.iter().any(|(l, _, m)| *l == line && m.contains(says)),
                "{extra}: {e:?}"
            );
        }
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
}
