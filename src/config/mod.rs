//! tunnels.yaml → `Vec<Tunnel>`: where the file is, parsing with locations, and
//! every check `tunnelctl check` promises. Problems are collected, not stopped at,
//! so one run shows them all as `FILE:LINE:COL: message`.
//!
//! The YAML is first read into a small located tree (`yaml::Node`), then walked by
//! hand: that gives every unknown key a did-you-mean and every value a position, which
//! serde's derive would lose after the first error.
//!
//! - `locate.rs`: which file (`--config`, `$TUNNELCTL_CONFIG`, the per-user or system path)
//! - `yaml.rs`: the located YAML tree
//! - `schema.rs`: the keys, their nesting, one `Partial` per level (defaults, each tunnel)
//! - `values.rs`: scalar checks (names, hosts, users, ports, counts, durations, paths)
//! - `forwards.rs`: forwards and their listeners across tunnels
//! - `resolve.rs`: defaults merged under each tunnel; stats the identity file
//! - `ssh_options.rs`: which `ssh_options` are allowed, refused or insecure

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, closest};
use crate::model::Tunnel;

mod forwards;
mod locate;
mod resolve;
mod schema;
mod ssh_options;
mod values;
mod yaml;

pub use forwards::RemoteListener;
pub use locate::{locate, locate_for_writing, locate_in};
pub use schema::KEYS;
use yaml::Loc;

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
    /// Every `-R` listener with where its port is written, for the clash check across
    /// the files of a fleet (`check DIR`).
    pub remote_listeners: Vec<RemoteListener>,
    /// `defaults: metrics_file:` as written, `{name}` not yet replaced.
    pub default_metrics_file: Option<PathBuf>,
}

impl Config {
    /// The metrics file tunnelctl's naming gives tunnel `name`: its own `metrics_file`
    /// while it is in the configuration; for a tunnel that has left it, the default's
    /// path when that has `{name}` in it (a fixed default path is some other tunnel's
    /// now). `None` when neither names one.
    pub fn metrics_file_of(&self, name: &str) -> Option<PathBuf> {
        if let Some(t) = self.tunnels.iter().find(|t| t.name == name) {
            return t.metrics_file.clone();
        }
        let template = self.default_metrics_file.as_ref()?.to_str()?;
        template
            .contains("{name}")
            .then(|| PathBuf::from(template.replace("{name}", name)))
    }

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
        // Split once: finding each diagnostic's line anew would be quadratic.
        let lines: Vec<&str> = self.source.lines().collect();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.render_in(&self.path, &lines, false))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the file; `~` expands against [`crate::home::home_dir`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        source: String::new(),
        diagnostics: vec![Diagnostic::whole_file(format!(
            "cannot read the configuration: {e}"
        ))],
    })?;
    load_str(&text, path, &crate::home::home_dir())
}

/// Parses and validates `text` (named `path` in messages). Only side effect: it stats
/// identity and known_hosts files.
pub fn load_str(text: &str, path: &Path, home: &Path) -> Result<Config, ConfigError> {
    load_text(text, path, home, true)
}

/// One host's file of a fleet, checked where it is not installed (a controller's copy):
/// everything but the identity and known_hosts files, which live on the host.
pub fn load_host_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        source: String::new(),
        diagnostics: vec![Diagnostic::whole_file(format!(
            "cannot read the configuration: {e}"
        ))],
    })?;
    load_text(&text, path, &crate::home::home_dir(), false)
}

fn load_text(
    text: &str,
    path: &Path,
    home: &Path,
    local_files: bool,
) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        home: home.to_path_buf(),
        local_files,
        remote_listeners: Vec::new(),
        default_metrics_file: None,
    };
    let tunnels = cx.document(text);
    let Cx {
        mut diagnostics,
        warnings,
        remote_listeners,
        default_metrics_file,
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
    let lines: Vec<&str> = text.lines().collect();
    Ok(Config {
        path: path.to_path_buf(),
        tunnels,
        warnings: warnings
            .iter()
            .map(|w| w.render_in(path, &lines, true))
            .collect(),
        remote_listeners,
        default_metrics_file,
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

/// Drops repeats (a problem in `defaults` is found once per tunnel), keeping the first
/// of each in order. Hashed: 40,000 tunnels' problems are not compared pairwise.
fn dedup<T: Eq + Hash>(items: &mut Vec<T>) {
    let keep: Vec<bool> = {
        let mut seen: HashSet<&T> = HashSet::with_capacity(items.len());
        items.iter().map(|d| seen.insert(d)).collect()
    };
    let mut keep = keep.into_iter();
    items.retain(|_| keep.next().unwrap_or(true));
}

/// The checking pass: every problem is pushed here, none stops the walk.
struct Cx {
    diagnostics: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    home: PathBuf,
    /// Whether the identity and known_hosts files are checked (they are on this machine).
    local_files: bool,
    remote_listeners: Vec<RemoteListener>,
    /// `defaults: metrics_file:` as written (for `Config::metrics_file_of`).
    default_metrics_file: Option<PathBuf>,
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
}

#[cfg(test)]
mod test_util {
    use super::*;

    pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
        load_str(text, Path::new("t.yaml"), Path::new("/home/u"))
    }

    pub(super) fn errors(text: &str) -> Vec<(usize, usize, String)> {
        load(text)
            .unwrap_err()
            .diagnostics
            .into_iter()
            .map(|d| (d.line, d.column, d.message))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::load;
    use super::*;
    use crate::model::{Forward, Keepalive};
    use std::time::Duration;

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
    fn inittab_id_is_stable_and_short() {
        assert_eq!(inittab_id("work-tunnel"), inittab_id("work-tunnel"));
        assert_eq!(inittab_id("a").len(), 4);
        assert!(inittab_id("x").starts_with('t'));
        // Reference values computed independently (Python: FNV-1a 32, % 36**3, base 36).
        assert_eq!(inittab_id(""), "ttfp");
        assert_eq!(inittab_id("work-tunnel"), "tgyh");
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
