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

/// Sets the state file's modification time to now, through the directory's descriptor
/// and never through a link: a round that moved only the probe figures says so this way
/// (`State::touched`). False when there is no file to touch.
pub(super) fn touch_state(dir: &crate::safe_fs::Dir) -> bool {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let now = TimeSpec::UTIME_NOW;
    utimensat(
        &dir.fd,
        "state",
        &now,
        &now,
        UtimensatFlags::NoFollowSymlink,
    )
    .is_ok()
}

/// The Prometheus text file for node_exporter's textfile collector (`--metrics-file`):
/// replaced atomically (a temp file in the same folder, then rename), mode 0644 so the
/// exporter's user can read it. Its folder is opened afresh for every write, the way
/// every path root trusts is opened ([`metrics_dir`]): a folder swapped for a link while
/// the watchdog runs is refused, never followed. A refusal is logged when it first
/// happens (and again when its reason changes), not at every write.
pub(super) fn write_metrics(path: &Path, name: &str, state: &State) {
    let text = crate::metrics::render(&[crate::metrics::Tunnel {
        name,
        state,
        now: log::now_secs(),
    }]);
    let result = metrics_dir(path).and_then(|(dir, file)| {
        dir.stage(file, text.as_bytes(), 0o644, false)
            .and_then(|temp| dir.commit(&temp, file))
    });
    let mut last = METRICS_REFUSAL.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) if last.is_some() => {
            *last = None;
            log::info(format_args!(
                "metrics file {} written again",
                path.display()
            ));
        }
        Ok(()) => {}
        Err(e) if last.as_deref() != Some(e.as_str()) => {
            log::warn(format_args!(
                "not writing the metrics file {}: {e}",
                path.display()
            ));
            *last = Some(e);
        }
        Err(_) => {}
    }
}

/// The last reason the metrics file was not written (logged once).
static METRICS_REFUSAL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The folder of a metrics file, opened from `/` without following a link another user
/// made, every folder owned by root or us and writable by nobody else (root's sticky
/// `/tmp` aside; `safe_fs::Trust::Private`), and the file's name in it. Nothing is
/// created. `tunnelctl check` runs the same test on the configured path.
pub fn metrics_dir(path: &Path) -> Result<(crate::safe_fs::Dir, &std::ffi::OsStr), String> {
    if !path.is_absolute() {
        return Err(format!(
            "{} is not an absolute path; give the metrics file as /DIR/NAME.prom",
            path.display()
        ));
    }
    let (dir, file) = crate::safe_fs::split(path)?;
    let dir = crate::safe_fs::open_abs(dir, None, crate::safe_fs::Trust::Private).map_err(|e| {
        format!(
            "{e}; or choose a metrics file whose folders are all root's (or the watchdog user's): \
             a root watchdog would otherwise write wherever that folder's owner points it"
        )
    })?;
    Ok((dir, file))
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

    /// A touch moves the file's mtime (what `status` reads as the last good round while
    /// up) and leaves its words alone; no file, no touch.
    #[test]
    fn a_touch_moves_the_mtime_and_not_the_words() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = super::super::process::make_private_dir(&tmp.path().join("t")).unwrap();
        assert!(!touch_state(&dir), "nothing to touch yet");
        let state = State {
            phase: crate::state::Phase::Up,
            last_probe_ok: 1_000,
            ..State::default()
        };
        write_state(&dir, &state);
        let file = tmp.path().join("t/state");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let before = std::fs::read(&file).unwrap();
        assert!(touch_state(&dir));
        let (bytes, modified) = crate::state::read_state_file(&tmp.path().join("t"))
            .unwrap()
            .unwrap();
        assert_eq!(bytes, before);
        let read = State::from_text(&String::from_utf8_lossy(&bytes))
            .unwrap()
            .touched(modified);
        assert!(read.last_probe_ok > 1_700_000_000, "{}", read.last_probe_ok);
    }
}
