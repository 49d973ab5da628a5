//! `tunnelctl status [NAME] [-v] [--json] [--watch] [--target T] [--state-dir DIR]`.
//!
//! Exit code (scripts test it, as with `systemctl is-active`): 0 every selected tunnel
//! is up, 1 at least one is down (not running, connecting, backing off, failed, no
//! readable state), 3 none is down but one is degraded; 2 is the usage error of every
//! command.
//!
//! `--state-dir DIR` reads that directory directly and needs no configuration: DIR is
//! the tunnel's state directory (holding `state`) when NAME is given or DIR/state
//! exists; otherwise each subdirectory of DIR holding a `state` file is one tunnel.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Context, Error};
use crate::cli::StatusArgs;
use crate::home::home_dir;
use crate::status::{self, Row, Verdict};
use crate::targets::Target;

/// `--watch` refreshes this often, for at most this many rounds (an hour).
const WATCH_EVERY: Duration = Duration::from_secs(2);
const WATCH_ROUNDS: u32 = 1800;

pub fn run(cx: &Context, args: StatusArgs) -> Result<ExitCode, Error> {
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let rounds = if args.watch { WATCH_ROUNDS } else { 1 };
    let mut code = ExitCode::SUCCESS;
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(WATCH_EVERY);
        }
        let rows = collect(cx, &args)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut out = String::new();
        if args.watch && std::io::stdout().is_terminal() {
            out.push_str("\x1b[H\x1b[2J"); // home + clear: redraw in place
        }
        if args.json {
            let value = status::json_document(&rows, now);
            out.push_str(&serde_json::to_string_pretty(&value).unwrap_or_default());
            out.push('\n');
        } else {
            let verbose = args.verbose || args.name.is_some();
            out.push_str(&status::table(&rows, now, colour, verbose));
        }
        crate::out!("{out}");
        // The worst tunnel decides: down over degraded over up.
        let worst = rows.iter().map(Row::verdict).max().unwrap_or(Verdict::Up);
        code = ExitCode::from(worst.exit_code());
        if crate::output::stdout_closed() {
            break; // the reader went away (| head): nothing more to watch for
        }
    }
    Ok(code)
}

fn collect(cx: &Context, args: &StatusArgs) -> Result<Vec<Row>, Error> {
    rows(
        cx,
        args.name.as_deref(),
        args.target,
        args.state_dir.as_deref(),
    )
}

/// The rows of the selected tunnels: `name` or every tunnel of the configuration, from
/// the target's state directories, or from `state_dir` (no configuration needed).
/// `metrics` reads the same, so both commands agree on what is installed.
pub fn rows(
    cx: &Context,
    name: Option<&str>,
    target: Option<Target>,
    state_dir: Option<&Path>,
) -> Result<Vec<Row>, Error> {
    if let Some(dir) = state_dir {
        return Ok(from_state_dir(dir, name, target));
    }
    let (target, _) = crate::targets::choose(target, Path::new("/"));
    let names: Vec<String> = match name {
        Some(name) => {
            cx.known_name(name, target, Path::new("/"))?;
            vec![name.to_string()]
        }
        None => cx
            .config()?
            .tunnels
            .iter()
            .map(|t| t.name.clone())
            .collect(),
    };
    let home = home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    Ok(names
        .iter()
        .map(|name| {
            let dirs = crate::targets::state_dirs(target, name, &home, uid, &env);
            let mut row = status::read_row(name, Some(target), &dirs);
            row.init = target.system().supervisor_view(name);
            row
        })
        .collect())
}

fn from_state_dir(dir: &Path, name: Option<&str>, target: Option<Target>) -> Vec<Row> {
    // Without a name, the tunnel is called what its state file says (the watchdog's
    // `--name`), not after the folder (`state`, or a unit's StateDirectory=).
    let read = |label: String, dir: &Path| {
        let mut row = status::read_row(&label, target, &[dir.to_path_buf()]);
        if name.is_none()
            && let Some(s) = row.state.as_ref().filter(|s| !s.name.is_empty())
        {
            row.name = s.name.clone();
        }
        row
    };
    let dir_name = |dir: &Path| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string())
    };
    if name.is_some() || dir.join("state").exists() {
        let label = name.map(String::from).unwrap_or_else(|| dir_name(dir));
        return vec![read(label, dir)];
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("state").is_file())
                .collect()
        })
        .unwrap_or_default();
    subdirs.sort();
    if subdirs.is_empty() {
        return vec![read(dir_name(dir), dir)];
    }
    subdirs.iter().map(|d| read(dir_name(d), d)).collect()
}
