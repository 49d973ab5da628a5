//! The watchdog's side of the state dir: the state file written and read through the
//! directory's descriptor, and the refusal of names that would put it elsewhere.

use std::path::Path;

use super::log;
use crate::state::{MAX_STATE_FILE, State};

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
