//! The one home directory tunnelctl means by `~`: in tunnels.yaml paths, in the paths
//! `ssh -G` prints, and as the root of the per-user targets' files (`systemd-user`,
//! `launchd-agent`). Install, render, list, logs, status, reconnect and trust all ask
//! here, so `logs` looks where `install` wrote.
//!
//! ssh expands `~` with the passwd entry's home (`pw_dir`), never `$HOME` (OpenSSH
//! misc.c `tilde_expand_filename`), and a user manager started by PAM gets
//! `HOME=pw_dir`; so the passwd entry is the answer. `$HOME` counts only when it
//! names a directory owned by the user we run as: a deliberately moved home (and the
//! throwaway homes of the tests) is honoured, while a `$HOME` inherited from another
//! user (`sudo -E`, or a sudo that keeps HOME) is not, so root never writes its
//! per-user units or reads keys under someone else's home.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The current user's home: `$HOME` when it is an absolute path to a directory this
/// user owns, else the passwd entry, else `/` (no entry: ssh itself would refuse to
/// run, "No user exists for uid N").
pub fn home_dir() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    let env_home = std::env::var_os("HOME").map(PathBuf::from);
    let passwd = || {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    choose(env_home.as_deref(), uid, passwd).unwrap_or_else(|| PathBuf::from("/"))
}

/// [`home_dir`]'s rule with its inputs passed in.
fn choose(
    env_home: Option<&Path>,
    uid: u32,
    passwd: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    let owned = |p: &Path| {
        p.is_absolute() && std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid)
    };
    match env_home {
        Some(home) if owned(home) => Some(home.to_path_buf()),
        _ => passwd(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_wins_only_when_it_is_ours() {
        let dir = std::env::temp_dir();
        let ours = std::env::current_dir().unwrap();
        let uid = std::fs::metadata(&ours).unwrap().uid();
        let passwd = || Some(PathBuf::from("/from/passwd"));
        assert_eq!(choose(Some(&ours), uid, passwd), Some(ours.clone()));
        // Another user's directory (here: owned by a uid that is not its owner's).
        assert_eq!(
            choose(Some(&ours), uid.wrapping_add(1), passwd),
            Some(PathBuf::from("/from/passwd"))
        );
        assert_eq!(
            choose(Some(Path::new("relative")), uid, passwd),
            Some(PathBuf::from("/from/passwd"))
        );
        assert_eq!(
            choose(Some(&dir.join("h13ctx-no-such-dir")), uid, passwd),
            Some(PathBuf::from("/from/passwd"))
        );
        assert_eq!(choose(None, uid, || None), None);
    }
}
