//! The init systems we render for, and how to tell which one a machine runs.

use std::fmt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// systemd system unit (/etc/systemd/system)
    Systemd,
    /// systemd user unit (~/.config/systemd/user)
    SystemdUser,
    /// launchd LaunchDaemon (/Library/LaunchDaemons)
    Launchd,
    /// launchd LaunchAgent (~/Library/LaunchAgents)
    LaunchdAgent,
    /// SysV init: a respawn line in /etc/inittab
    Inittab,
    /// BusyBox init: a ::respawn: line in /etc/inittab
    Busybox,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Systemd,
        Target::SystemdUser,
        Target::Launchd,
        Target::LaunchdAgent,
        Target::Inittab,
        Target::Busybox,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Systemd => "systemd",
            Target::SystemdUser => "systemd-user",
            Target::Launchd => "launchd",
            Target::LaunchdAgent => "launchd-agent",
            Target::Inittab => "inittab",
            Target::Busybox => "busybox",
        }
    }

    /// Detects the init system of the machine whose filesystem is at `root`
    /// (`/` normally). `user` picks the per-user flavour where there is one.
    pub fn detect(root: &Path, user: bool) -> Target {
        if cfg!(target_os = "macos") {
            return if user {
                Target::LaunchdAgent
            } else {
                Target::Launchd
            };
        }
        if root.join("run/systemd/system").is_dir() {
            return if user {
                Target::SystemdUser
            } else {
                Target::Systemd
            };
        }
        if is_busybox(&root.join("sbin/init")) {
            return Target::Busybox;
        }
        Target::Inittab
    }
}

/// BusyBox installs /sbin/init as a symlink to the busybox binary.
fn is_busybox(init: &Path) -> bool {
    match std::fs::canonicalize(init) {
        Ok(real) => real
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("busybox")),
        Err(_) => false,
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
