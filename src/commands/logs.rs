//! `tunnelctl logs NAME [-f] [-n N] [--since WHEN] [--root DIR]`: the tunnel's log from
//! wherever its init system keeps it: the journal for systemd units, the log file for
//! launchd (StandardErrorPath) and for inittab/BusyBox (the watchdog's `--log-file`).
//! Hands over to journalctl or tail (exec), so paging, `-f` and Ctrl-C behave as those
//! tools do; `--since` on a log file is read here (tail has no such option), by the
//! RFC 3339 UTC time that starts each of the watchdog's lines.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::{Context, Error};
use crate::cli::LogsArgs;
use crate::home::home_dir;
use crate::targets::LogSource;

/// What to show of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    /// The last this many lines.
    pub lines: u32,
    /// journalctl's `--since` value: `-3600s` (relative) or a time as given.
    pub since: Option<String>,
    /// The other system's root (journalctl `--root`; a log file is looked up under it).
    pub root: Option<PathBuf>,
}

/// `--since`: a duration ago (`30m`), or a time (`2026-12-06 04:00[:00]`, `T` or space).
/// Returns (journalctl's value, the RFC 3339 prefix a log file's lines compare with).
pub fn since(text: &str, now: u64) -> Result<(String, String), String> {
    if let Ok(d) = crate::duration::parse_duration(text) {
        let at = now.saturating_sub(d.as_secs());
        return Ok((
            format!("-{}s", d.as_secs()),
            crate::watchdog::log::rfc3339(at),
        ));
    }
    let t = text.trim().replacen(' ', "T", 1);
    let shape = t.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        _ => b.is_ascii_digit(),
    });
    if shape && matches!(t.len(), 10 | 16 | 19) {
        return Ok((text.trim().to_string(), t));
    }
    Err(format!(
        "--since {text:?}: give a duration (30m, 2h) or a time (2026-12-06 04:00:00)"
    ))
}

/// The command that shows the log (pure, for tests).
pub fn log_command(source: &LogSource, q: &LogQuery) -> Vec<String> {
    let lines = q.lines.to_string();
    match source {
        LogSource::Journal { unit, user } => {
            let mut argv: Vec<String> =
                vec!["journalctl".into(), "--no-pager".into(), "-n".into(), lines];
            if let Some(root) = &q.root {
                argv.push(format!("--root={}", root.display()));
            }
            if let Some(since) = &q.since {
                argv.push(format!("--since={since}"));
            }
            argv.push(if *user {
                "--user-unit".into()
            } else {
                "-u".into()
            });
            argv.push(unit.clone());
            if q.follow {
                argv.push("-f".into());
            }
            argv
        }
        LogSource::File(path) => {
            let mut argv: Vec<String> = vec!["tail".into(), "-n".into(), lines];
            if q.follow {
                argv.push("-F".into()); // follows across the log's rotation too
            }
            argv.push("--".into());
            argv.push(path.display().to_string());
            argv
        }
    }
}

pub fn run(cx: &Context, args: LogsArgs) -> Result<ExitCode, Error> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let (target, _) = crate::targets::choose(args.target, &root);
    cx.known_name(&args.name, target, &root)?;
    let now = crate::watchdog::log::now_secs();
    let since = match &args.since {
        Some(text) => Some(since(text, now).map_err(Error::usage)?),
        None => None,
    };
    let mut source = target.system().log(&args.name, &home_dir());
    if let LogSource::File(path) = &mut source {
        *path = root.join(path.strip_prefix("/").unwrap_or(path));
        if !path.exists() {
            return Err(Error::failed(format!(
                "no log at {} yet: the tunnel has not run here under {target} \
                 (install it with `tunnelctl install {} --target {target}`, or pass --target)",
                path.display(),
                args.name
            ))
            .about(&args.name));
        }
    }
    let query = LogQuery {
        follow: args.follow,
        lines: args.lines,
        since: since.as_ref().map(|(journal, _)| journal.clone()),
        root: args.root.clone(),
    };
    if let (LogSource::File(path), Some((_, from))) = (&source, &since) {
        print_file_since(path, from, args.lines).map_err(|e| Error::failed(e).about(&args.name))?;
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        // Then only what comes next.
        let query = LogQuery {
            lines: 0,
            ..query.clone()
        };
        let argv = log_command(&source, &query);
        let err = Command::new(&argv[0]).args(&argv[1..]).exec();
        return Err(Error::failed(format!("cannot run {}: {err}", argv[0])).about(&args.name));
    }
    let argv = log_command(&source, &query);
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(Error::failed(format!("cannot run {}: {err}", argv[0])).about(&args.name))
}

/// The last `lines` lines of the log file stamped at or after `from` (an RFC 3339 UTC
/// prefix; a line without a stamp goes with the one before it).
fn print_file_since(path: &Path, from: &str, lines: u32) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut kept = std::collections::VecDeque::new();
    let mut keep = false;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let stamp = line.split(' ').next().unwrap_or_default();
        if stamp.len() >= 19 && stamp.as_bytes()[4] == b'-' {
            keep = stamp >= from;
        }
        if keep {
            kept.push_back(line);
            if kept.len() > lines as usize {
                kept.pop_front();
            }
        }
    }
    for line in kept {
        crate::outln!("{line}");
    }
    Ok(())
}
