//! The state dir and the state file in it: where `tunnelctl status` reads what the
//! watchdog last wrote.

use std::path::{Path, PathBuf};

use super::log;
use crate::state::State;

/// `--state-dir`, else `$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY` (first entry), else a
/// per-user default (docs/design.md).
pub fn resolve_state_dir(
    option: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    is_root: bool,
    uid: u32,
) -> PathBuf {
    if let Some(dir) = option {
        return dir.to_path_buf();
    }
    for key in ["STATE_DIRECTORY", "RUNTIME_DIRECTORY"] {
        if let Some(first) = env(key)
            .as_deref()
            .and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty())
        {
            return PathBuf::from(first);
        }
    }
    let name = name.replace('/', "_");
    if is_root {
        return PathBuf::from("/run/tunnelctl").join(name);
    }
    match env("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("tunnelctl").join(name),
        None => PathBuf::from(format!("/tmp/tunnelctl-{uid}")).join(name),
    }
}

/// The state file is small; anything bigger is not ours.
pub const MAX_STATE_FILE: u64 = 64 * 1024;

/// Written relative to the state directory's descriptor, opened and checked once at
/// start: a directory renamed or replaced by a link while we run is never followed.
pub(super) fn write_state(dir: &crate::safe_fs::Dir, state: &State) {
    let name = std::ffi::OsStr::new("state");
    // No fsync: the file is rewritten often (flash on a router) and a lost update after
    // a crash only makes `status` a little stale.
    let result = dir
        .stage(name, state.to_text().as_bytes(), 0o600, false)
        .and_then(|temp| dir.commit(&temp, name));
    if let Err(e) = result {
        log::warn(format_args!("cannot write the state file: {e}"));
    }
}

/// The Prometheus text file for node_exporter's textfile collector (`--metrics-file`):
/// replaced atomically (a temp file in the same directory, then rename), no link
/// followed, mode 0644 so the exporter's user can read it.
pub(super) fn write_metrics(path: &Path, name: &str, state: &State) {
    let text = crate::metrics::render(&[crate::metrics::Tunnel {
        name,
        state,
        now: log::now_secs(),
    }]);
    if let Err(e) = write_public_atomically(path, text.as_bytes()) {
        log::warn(format_args!(
            "cannot write the metrics file {}: {e}",
            path.display()
        ));
    }
}

fn write_public_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    // Not `*.prom`: the collector must never read a half-written file.
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&temp)?;
        // The umask may have narrowed the mode.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(bytes)?;
        // rename(2) replaces a link at `path` itself, never what it points to.
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

pub(super) fn read_state(dir: &crate::safe_fs::Dir) -> State {
    match dir.read_optional(std::ffi::OsStr::new("state"), MAX_STATE_FILE) {
        Ok(Some(bytes)) => State::from_text(&String::from_utf8_lossy(&bytes)).unwrap_or_else(|e| {
            log::warn(format_args!(
                "{}/state: {e}; starting from a fresh state",
                dir.path.display()
            ));
            State::default()
        }),
        Ok(None) => State::default(),
        Err(e) => {
            log::warn(format_args!("{e}; starting from a fresh state"));
            State::default()
        }
    }
}

/// The name becomes a path component of the default state directory: `.`, `..` and `/`
/// would put it elsewhere (`--name ..` as root once chmodded /run).
pub fn name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0'))
        .then(|| format!("--name `{name}`: a tunnel name cannot be empty, `.` or `..`, or contain `/`; use the name from tunnels.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_the_design_order() {
        let env = |k: &str| match k {
            "RUNTIME_DIRECTORY" => Some("/run/tunnelctl/a:/run/other".to_string()),
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve_state_dir(Some(Path::new("/x")), &env, "a", true, 0),
            PathBuf::from("/x")
        );
        assert_eq!(
            resolve_state_dir(None, &env, "a", true, 0),
            PathBuf::from("/run/tunnelctl/a")
        );
        let none = |_: &str| None;
        assert_eq!(
            resolve_state_dir(None, &none, "a/b", true, 0),
            PathBuf::from("/run/tunnelctl/a_b")
        );
        assert_eq!(
            resolve_state_dir(None, &none, "a", false, 1000),
            PathBuf::from("/tmp/tunnelctl-1000/a")
        );
        let user = |k: &str| (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".to_string());
        assert_eq!(
            resolve_state_dir(None, &user, "a", false, 1000),
            PathBuf::from("/run/user/1000/tunnelctl/a")
        );
    }
}
