//! `tunnelctl logs NAME [-f]`: the tunnel's log from wherever its init system keeps it:
//! the journal for systemd units, the log file for launchd (StandardErrorPath) and for
//! inittab/BusyBox (the watchdog's `--log-file`). Hands over to journalctl or tail
//! (exec), so paging, `-f` and Ctrl-C behave as those tools do.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use super::{Context, Error};
use crate::cli::LogsArgs;
use crate::home::home_dir;
use crate::targets::LogSource;

/// Lines shown before following or when not following.
const LINES: &str = "200";

/// The command that shows the log (pure, for tests).
pub fn log_command(source: &LogSource, follow: bool) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    match source {
        LogSource::Journal { unit, user } => {
            argv.extend([
                "journalctl".into(),
                "--no-pager".into(),
                "-n".into(),
                LINES.into(),
            ]);
            argv.push(if *user {
                "--user-unit".into()
            } else {
                "-u".into()
            });
            argv.push(unit.clone());
        }
        LogSource::File(path) => {
            argv.extend(["tail".into(), "-n".into(), LINES.into()]);
            if follow {
                argv.push("-F".into()); // follows across the log's rotation too
            }
            argv.push("--".into());
            argv.push(path.display().to_string());
            return argv;
        }
    }
    if follow {
        argv.push("-f".into());
    }
    argv
}

pub fn run(cx: &Context, args: LogsArgs) -> Result<ExitCode, Error> {
    let (target, _) = crate::targets::choose(args.target, std::path::Path::new("/"));
    cx.known_name(&args.name, target, std::path::Path::new("/"))?;
    let source = target.system().log(&args.name, &home_dir());
    if let LogSource::File(path) = &source
        && !path.exists()
    {
        return Err(Error::failed(format!(
            "no log at {} yet: the tunnel has not run here under {target} \
             (install it with `tunnelctl install {} --target {target}`, or pass --target)",
            path.display(),
            args.name
        ))
        .about(&args.name));
    }
    let argv = log_command(&source, args.follow);
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(Error::failed(format!("cannot run {}: {err}", argv[0])).about(&args.name))
}
