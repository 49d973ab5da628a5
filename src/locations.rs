//! Where a running tunnel keeps its state and its log, per target (docs/design.md,
//! "Where things live per target"), from the name alone. Pure: the caller passes the
//! home directory, uid and environment.

use std::path::{Path, PathBuf};

use crate::target::Target;

/// State directories to look in, most specific first: the target's own, then where a
/// watchdog started by hand (no `--state-dir`) puts it.
pub fn state_dir_candidates(
    target: Target,
    name: &str,
    home: &Path,
    uid: u32,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    let mut dirs = match target {
        // DynamicUser=yes keeps it under /var/lib/private, with /var/lib/tunnelctl a link.
        Target::Systemd => vec![
            Path::new("/var/lib/tunnelctl").join(name),
            Path::new("/var/lib/private/tunnelctl").join(name),
        ],
        Target::SystemdUser => {
            let state_home = env("XDG_STATE_HOME")
                .filter(|v| v.starts_with('/'))
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".local/state"));
            // systemd 253 and later put a user unit's StateDirectory= in $XDG_STATE_HOME;
            // 252 (Debian 12) still uses $XDG_CONFIG_HOME.
            let config_home = env("XDG_CONFIG_HOME")
                .filter(|v| v.starts_with('/'))
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"));
            vec![
                state_home.join("tunnelctl").join(name),
                config_home.join("tunnelctl").join(name),
            ]
        }
        Target::Launchd => vec![Path::new("/var/run/tunnelctl").join(name)],
        Target::LaunchdAgent => vec![
            home.join("Library/Application Support/tunnelctl")
                .join(name),
        ],
        Target::Inittab | Target::Busybox => vec![Path::new("/run/tunnelctl").join(name)],
    };
    let by_hand = crate::watchdog::resolve_state_dir(
        None,
        &|k| match k {
            // A unit's own directories are not ours to inherit from this shell.
            "STATE_DIRECTORY" | "RUNTIME_DIRECTORY" => None,
            _ => env(k),
        },
        name,
        uid == 0,
        uid,
    );
    if !dirs.contains(&by_hand) {
        dirs.push(by_hand);
    }
    dirs
}

/// Where a tunnel's log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// journald: `journalctl -u UNIT` (system) or `--user-unit UNIT`.
    Journal {
        unit: String,
        user: bool,
    },
    File(PathBuf),
}

pub fn log_source(target: Target, name: &str, home: &Path) -> LogSource {
    match target {
        Target::Systemd => LogSource::Journal {
            unit: crate::escape::unit_name(name),
            user: false,
        },
        Target::SystemdUser => LogSource::Journal {
            unit: crate::escape::unit_name(name),
            user: true,
        },
        Target::Launchd => {
            LogSource::File(Path::new("/var/log/tunnelctl").join(format!("{name}.log")))
        }
        Target::LaunchdAgent => LogSource::File(
            home.join("Library/Logs/tunnelctl")
                .join(format!("{name}.log")),
        ),
        Target::Inittab | Target::Busybox => LogSource::File(
            Path::new(crate::render::inittab::LOG_DIR)
                .join(format!("{}.log", crate::config::inittab_id(name))),
        ),
    }
}

/// The target to assume when none is given: what this machine runs, the user flavour
/// for a non-root user.
pub fn default_target() -> Target {
    Target::detect(Path::new("/"), !nix::unistd::geteuid().is_root())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_target_paths_follow_the_design_table() {
        let home = Path::new("/home/al");
        let none = |_: &str| None;
        assert_eq!(
            state_dir_candidates(Target::Systemd, "t", home, 0, &none)[0],
            PathBuf::from("/var/lib/tunnelctl/t")
        );
        assert_eq!(
            state_dir_candidates(Target::SystemdUser, "t", home, 1000, &none)[..2],
            [
                PathBuf::from("/home/al/.local/state/tunnelctl/t"),
                PathBuf::from("/home/al/.config/tunnelctl/t"), // systemd 252
            ]
        );
        assert_eq!(
            state_dir_candidates(Target::Busybox, "t", home, 0, &none),
            vec![PathBuf::from("/run/tunnelctl/t")]
        );
        let user = state_dir_candidates(Target::Inittab, "t", home, 1000, &|k| {
            (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".into())
        });
        assert_eq!(
            user.last().unwrap(),
            &PathBuf::from("/run/user/1000/tunnelctl/t")
        );
        assert_eq!(
            log_source(Target::Systemd, "a b", home),
            LogSource::Journal {
                unit: "tunnel-a\\x20b.service".into(),
                user: false
            }
        );
        assert_eq!(
            log_source(Target::LaunchdAgent, "t", home),
            LogSource::File(PathBuf::from("/home/al/Library/Logs/tunnelctl/t.log"))
        );
        let LogSource::File(inittab) = log_source(Target::Inittab, "t", home) else {
            panic!()
        };
        assert!(inittab.starts_with("/var/log/tunnelctl") && inittab.extension().unwrap() == "log");
    }
}
