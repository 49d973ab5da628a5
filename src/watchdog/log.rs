//! Single-line logs. Under journald (`JOURNAL_STREAM` names our stderr) lines carry a
//! `<N>` priority prefix and no timestamp (the journal adds its own); otherwise an
//! RFC 3339 UTC timestamp and the level. `--log-file` appends and rotates at 1 MiB.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

/// Rotate the log file to `FILE.1` once it grows past this.
pub const ROTATE_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

struct Sink {
    journald: bool,
    file: Option<PathBuf>,
    prefix: String,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Sets up logging once, at start. `prefix` (the tunnel name) starts every line.
pub fn init(prefix: &str, file: Option<PathBuf>) {
    let journald =
        file.is_none() && stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    *SINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(Sink {
        journald,
        file,
        prefix: prefix.to_string(),
    });
}

/// `JOURNAL_STREAM=DEV:INO` must match fd 2, else stderr was redirected after systemd set it.
fn stderr_is_journal(stream: Option<&str>) -> bool {
    let Some((dev, ino)) = stream.and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The text of one line (pure; `now` in unix seconds).
pub fn format_line(journald: bool, level: Level, prefix: &str, message: &str, now: u64) -> String {
    // One event, one line: ssh and peers may hand us text with newlines; other control
    // characters (a terminal escape in ssh's stderr) are shown, not sent to a terminal.
    let message = crate::state::printable(&message.replace(['\n', '\r'], " "));
    if journald {
        format!("<{}>{prefix}: {message}\n", level.priority())
    } else {
        format!("{} {} {prefix}: {message}\n", rfc3339(now), level.word())
    }
}

/// `2026-11-26T10:04:05Z` from unix seconds (civil-from-days, no time crate).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes one line. `message` is formatted here, once, so a call site passes
/// `format_args!(…)` instead of building a String of its own (many call sites, one
/// formatting call: the watchdog binary stays small).
pub fn log(level: Level, message: &dyn std::fmt::Display) {
    let message = message.to_string();
    let message = message.as_str();
    let guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    let (journald, prefix, file) = match guard.as_ref() {
        Some(s) => (s.journald, s.prefix.as_str(), s.file.as_ref()),
        None => (false, "tunnel-watchdog", None),
    };
    let line = format_line(journald, level, prefix, message, now_secs());
    if let Some(path) = file {
        // lstat: a link is renamed as a link, never its target.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() >= ROTATE_BYTES) {
            let mut rotated = path.clone().into_os_string();
            rotated.push(".1");
            let _ = std::fs::rename(path, rotated);
        }
        match open_log(path).and_then(|mut f| f.write_all(line.as_bytes())) {
            Ok(()) => return,
            Err(e) => {
                let why = format_line(
                    journald,
                    Level::Warning,
                    prefix,
                    &format!(
                        "cannot write the log file {}: {e}; logging to stderr",
                        path.display()
                    ),
                    now_secs(),
                );
                let _ = std::io::stderr().write_all(why.as_bytes());
            }
        }
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Opens the log file for appending without following a link (a link planted there
/// would make a root watchdog append to any file), and only if it is a regular file of
/// ours with no other name: a hard link to a root file is refused too (where
/// `fs.protected_hardlinks` is 0, anyone may make one). A new file is 0640.
pub fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.nlink() > 1 {
        return Err(std::io::Error::other(format!(
            "it has {} names (a hard link); the log file must have one: remove it",
            meta.nlink()
        )));
    }
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other(format!(
            "not a regular file owned by uid {} (owner uid {}); remove it",
            nix::unistd::geteuid(),
            meta.uid()
        )));
    }
    Ok(file)
}

pub fn info(message: impl std::fmt::Display) {
    log(Level::Info, &message)
}
pub fn warn(message: impl std::fmt::Display) {
    log(Level::Warning, &message)
}
pub fn error(message: impl std::fmt::Display) {
    log(Level::Error, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_for_journal_and_for_files() {
        assert_eq!(
            format_line(true, Level::Error, "t", "down", 0),
            "<3>t: down\n"
        );
        assert_eq!(
            format_line(true, Level::Info, "t", "a\nb", 0),
            "<6>t: a b\n"
        );
        assert_eq!(
            format_line(false, Level::Warning, "t", "slow", 1_700_000_000),
            "2023-11-14T22:13:20Z warning t: slow\n"
        );
        assert_eq!(
            format_line(false, Level::Error, "t", "ssh: \x1b]0;owned\x07 x\ty", 0),
            "1970-01-01T00:00:00Z error t: ssh: \\x1b]0;owned\\x07 x\\x09y\n"
        );
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert!(!stderr_is_journal(Some("1:2")) && !stderr_is_journal(None));
    }

    #[test]
    fn log_file_links_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"").unwrap();
        let link = dir.path().join("w.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(open_log(&link).is_err());
        assert!(
            open_log(std::path::Path::new("/dev/null")).is_err(),
            "not a regular file"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"");
        assert!(open_log(&dir.path().join("new.log")).is_ok());
        // A hard link to a file of ours (root's, for a root watchdog) is refused too.
        let hard = dir.path().join("hard.log");
        std::fs::hard_link(&victim, &hard).unwrap();
        let err = open_log(&hard).unwrap_err().to_string();
        assert!(err.contains("hard link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"");
    }

    #[test]
    fn rotates_at_one_mebibyte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, vec![b'x'; ROTATE_BYTES as usize]).unwrap();
        init("t", Some(path.clone()));
        info("after rotation");
        assert_eq!(
            std::fs::metadata(dir.path().join("w.log.1")).unwrap().len(),
            ROTATE_BYTES
        );
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("info t: after rotation\n")
        );
    }
}
