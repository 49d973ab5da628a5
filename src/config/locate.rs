//! Which configuration file: `--config`, `$TUNNELCTL_CONFIG`, then the per-user or
//! the system path.

use std::path::{Path, PathBuf};

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

/// The file [`locate`] would read, whether or not it exists: where `import --write`
/// creates the configuration when there is none.
pub fn locate_for_writing(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let env = std::env::var_os("TUNNELCTL_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let is_root = nix::unistd::geteuid().is_root();
    locate_in(explicit, env.as_deref(), home.as_deref(), is_root, |_| true)
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
             Create it from the ssh command you use (`tunnelctl import --write -- ssh -N -R 1234:localhost:22 me@server`), \
             or from the commented example (the package's /usr/share/doc/tunnelctl/examples/tunnels.yaml, \
             or examples/tunnels.yaml in the source), or pass --config FILE",
            candidate.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
