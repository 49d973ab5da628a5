//! A fleet's tunnels files checked together (`tunnelctl check FILE… | DIR`): which files
//! a directory holds (one per host), and every remote listener — (server, bind address,
//! port) — that two files claim. Each box's own `check` passes then, yet the second box's
//! ssh fails with "remote port forwarding failed" (or, worse, half binds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::RemoteListener;

/// Two files that claim one listener: the first claimant, then the later one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clash<'a> {
    pub first: (&'a Path, &'a RemoteListener),
    pub second: (&'a Path, &'a RemoteListener),
}

impl Clash<'_> {
    /// `b.yaml:9:17: remote port 1234 on bastion:22 (bind localhost, tunnel `x`) is also
    /// claimed by a.yaml:12:17 (tunnel `y`, bind localhost)`.
    pub fn message(&self) -> String {
        let (path, l) = self.second;
        let (first_path, f) = self.first;
        format!(
            "{}:{}:{}: remote port {} on {} (bind {}, tunnel `{}`) is also claimed by {}:{}:{} \
             (tunnel `{}`, bind {}); whichever box connects second gets \"remote port \
             forwarding failed\". Fix: give one of them another port",
            path.display(),
            l.line,
            l.column,
            l.port,
            l.server,
            l.bind,
            l.tunnel,
            first_path.display(),
            f.line,
            f.column,
            f.tunnel,
            f.bind
        )
    }
}

/// Every listener claimed by two different files (within one file, `check` of that file
/// already refuses it), each later claimant paired with the first one it clashes with,
/// in file order.
pub fn clashes<'a>(files: &'a [(PathBuf, Vec<RemoteListener>)]) -> Vec<Clash<'a>> {
    // Indexed by (server, port): only listeners on one port of one server can clash.
    let mut by_port: HashMap<(&str, u16), Vec<(usize, &RemoteListener)>> = HashMap::new();
    let mut found = Vec::new();
    for (i, (path, listeners)) in files.iter().enumerate() {
        for l in listeners {
            let taken = by_port.entry((l.server.as_str(), l.port)).or_default();
            if let Some(&(j, first)) = taken
                .iter()
                .find(|(j, other)| *j != i && other.clashes_with(l))
            {
                found.push(Clash {
                    first: (files[j].0.as_path(), first),
                    second: (path.as_path(), l),
                });
            }
            taken.push((i, l));
        }
    }
    found
}

/// The host files in `dir`: every visible entry must be a regular `*.yaml`/`*.yml` file
/// (hidden ones, such as an editor's swap file, are skipped). Anything else is an error
/// naming it: a stray README would otherwise be checked as a host, or silently not.
pub fn host_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let listing =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut strangers = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') {
            continue;
        }
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if regular && (text.ends_with(".yaml") || text.ends_with(".yml")) {
            files.push(entry.path());
        } else {
            strangers.push(text.into_owned());
        }
    }
    if !strangers.is_empty() {
        strangers.sort();
        return Err(format!(
            "{} holds {} that {} not a tunnels file: {}. A fleet directory holds one \
             tunnels.yaml per host, named HOST.yaml; move the others out",
            dir.display(),
            strangers.len(),
            if strangers.len() == 1 { "is" } else { "are" },
            strangers.join(", ")
        ));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(tunnel: &str, server: &str, bind: &str, port: u16, line: usize) -> RemoteListener {
        RemoteListener {
            tunnel: tunnel.into(),
            server: server.into(),
            bind: bind.into(),
            port,
            line,
            column: 17,
        }
    }

    #[test]
    fn a_port_claimed_on_one_server_by_two_files_is_a_clash() {
        let files = vec![
            (
                PathBuf::from("a.yaml"),
                vec![listener("home", "bastion:22", "localhost", 1234, 5)],
            ),
            (
                PathBuf::from("b.yaml"),
                vec![
                    // Another server, another port, another bind: no clash.
                    listener("x", "other:22", "localhost", 1234, 3),
                    listener("y", "bastion:22", "localhost", 1235, 7),
                    listener("z", "bastion:22", "10.0.0.1", 1234, 8),
                    // The wildcard overlaps localhost.
                    listener("home", "bastion:22", "*", 1234, 9),
                ],
            ),
        ];
        let found = clashes(&files);
        assert_eq!(found.len(), 1, "{found:?}");
        let message = found[0].message();
        assert!(
            message.starts_with("b.yaml:9:17: remote port 1234 on bastion:22")
                && message.contains("also claimed by a.yaml:5:17"),
            "{message}"
        );
    }
}
