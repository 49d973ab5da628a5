//! tunnelctl: declare SSH tunnels once, render a hardened service for the init
//! system the machine runs, and keep every forward proven alive by `tunnel-watchdog`.
//!
//! See `docs/design.md` for how the modules fit together.

pub mod duration;
pub mod metrics;
pub mod model;
pub mod procinfo;
pub mod safe_fs;
pub mod ssh_client;
pub mod ssh_g;
pub mod ssh_path;
pub mod ssh_stderr;
pub mod state;
pub mod watchdog;

// Everything below is the `tunnelctl` side: the watchdog binary uses none of it.
pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod doctor;
pub mod escape;
pub mod fleet;
pub mod handover;
pub mod home;
pub mod import;
pub mod install;
pub mod known_hosts;
pub mod output;
pub mod progress;
pub mod ssh_command;
pub mod status;
pub mod targets;

#[cfg(test)]
mod test_prereq;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under src/ is named in docs/design.md's module table, itself or
    /// through a folder row (`src/procinfo/` counts for the files under it).
    #[test]
    fn design_md_names_every_module() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
        let named: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .filter(|cell| cell.starts_with("src/"))
            .collect();
        let mut files = Vec::new();
        let mut dirs = vec![root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    files.push(rel);
                }
            }
        }
        assert!(files.len() > 20, "found only {files:?}");
        let missing: Vec<&String> = files
            .iter()
            .filter(|f| {
                !named
                    .iter()
                    .any(|n| *n == f.as_str() || (n.ends_with('/') && f.starts_with(n)))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/design.md's module table does not name {missing:?}: add a row (or a folder row such as `src/config/`)"
        );
    }
}
