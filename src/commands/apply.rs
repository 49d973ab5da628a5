//! `tunnelctl apply`: converge the machine (or `--root`) to the configuration. The whole
//! plan is computed and checked first (config, renderings, every destination, the
//! removal guard); then, under a lock that serialises `apply` runs, removals and then
//! installs are carried out one tunnel at a time through install's own code, each
//! atomic, a failure recorded and the rest still done. The plan's types and its account
//! are in `src/apply.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::install::{choose_target, trusted_watchdog};
use super::render::default_watchdog;
use super::{Context, Error};
use crate::apply::{Action, Failure, Report, Step, prune_guard};
use crate::cli::ApplyArgs;
use crate::config::inittab_id;
use crate::home::home_dir;
use crate::install::Installer;
use crate::targets::{self as render, RenderOptions, Rendered, Target};

pub fn run(cx: &Context, args: ApplyArgs) -> Result<ExitCode, Error> {
    match converge(cx, &args) {
        Ok(report) => {
            if args.json {
                crate::outln!("{}", report.json());
            } else {
                crate::out!("{}", report.human());
            }
            if report.failed().count() > 0 {
                let failures: Vec<String> = report
                    .failed()
                    .filter_map(|s| s.failure.as_ref().map(|f| (s, f)))
                    .map(|(s, f)| {
                        let state = if f.left_as_it_was {
                            "not applied, left as it was"
                        } else {
                            "files written, but"
                        };
                        format!("{} ({state}): {}", s.name, f.error)
                    })
                    .collect();
                return Err(Error::failed(format!(
                    "{}; everything else was applied. {}",
                    report.summary(),
                    failures.join("; ")
                )));
            }
            Ok(if args.detailed_exitcode && report.changed() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(mut e) => {
            if args.json {
                let object = serde_json::json!({
                    "schema": 1,
                    "changed": false,
                    "failed": true,
                    "message": e.message,
                    "details": e.details,
                });
                crate::outln!("{object}");
            }
            // 2 means "changed" to an engine that asked for detailed exit codes.
            if args.detailed_exitcode {
                e.code = 1;
            }
            Err(e)
        }
    }
}

/// One tunnel of the configuration, rendered, with what installing it would change.
struct Wanted<'a> {
    name: &'a str,
    rendered: Rendered,
    action: Action,
    diff: String,
}

/// Plans, checks, and (unless `--dry-run`) carries out the plan under the apply lock.
fn converge(cx: &Context, args: &ApplyArgs) -> Result<Report, Error> {
    let config = cx.config()?;
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let target = choose_target(args.target, args.root.is_some(), &root, !args.dry_run)?;
    let options = RenderOptions {
        watchdog: args.watchdog.clone().unwrap_or_else(default_watchdog),
        home: home_dir(),
    };
    if args.watchdog.is_none()
        && !target.system().per_user()
        && let Err(why) = trusted_watchdog(&options.watchdog)
    {
        return Err(Error::usage(why));
    }
    let mut rendered = Vec::new();
    for tunnel in &config.tunnels {
        let r =
            render::render(tunnel, target, &options).map_err(|e| Error::usage(e.to_string()))?;
        rendered.push((tunnel.name.as_str(), r));
    }
    let installer = Installer {
        root,
        run_tools: args.root.is_none(),
        dry_run: args.dry_run,
        no_start: false,
    };
    let home = &options.home;
    let work = || -> Result<Report, Error> {
        let (wanted, removing) = plan(&installer, target, home, rendered, args.prune_many)?;
        let mut steps = Vec::new();
        if args.dry_run {
            steps.extend(removing.into_iter().map(|(name, diff)| Step {
                name,
                action: Action::Removed,
                diff,
                failure: None,
            }));
            steps.extend(wanted.into_iter().map(|w| Step {
                name: w.name.to_string(),
                action: w.action,
                diff: w.diff,
                failure: None,
            }));
        } else {
            // Removals first: a tunnel renamed in the file frees its ports before its
            // successor asks for them.
            for (name, diff) in removing {
                let metrics_file = config.metrics_file_of(&name);
                let failure = remove(&installer, target, home, &name, metrics_file).err();
                steps.push(Step {
                    name,
                    action: Action::Removed,
                    diff,
                    failure,
                });
            }
            for w in wanted {
                let failure = match w.action {
                    Action::Unchanged => None,
                    _ => install(&installer, target, w.name, &w.rendered).err(),
                };
                steps.push(Step {
                    name: w.name.to_string(),
                    action: w.action,
                    diff: w.diff,
                    failure,
                });
            }
        }
        Ok(Report {
            target,
            dry_run: args.dry_run,
            steps,
        })
    };
    if args.dry_run {
        // Writes nothing, not even the lock file.
        work()
    } else {
        installer
            .while_locked(target, home, work)
            .map_err(|why| Error::failed(format!("taking the apply lock: {why}")))?
    }
}

/// The whole plan, checked before anything is written: each configured tunnel's
/// action and diff (refusing to overwrite a file tunnelctl did not write), and the
/// installed tunnels gone from the configuration with their removal diffs.
#[allow(clippy::type_complexity)]
fn plan<'a>(
    installer: &Installer,
    target: Target,
    home: &Path,
    rendered: Vec<(&'a str, Rendered)>,
    prune_many: bool,
) -> Result<(Vec<Wanted<'a>>, Vec<(String, String)>), Error> {
    let installed = installer
        .installed_tunnels(target, home)
        .map_err(Error::failed)?;
    let mut wanted = Vec::new();
    for (name, r) in rendered {
        let paths = target.system().installed_paths(name, home);
        installer
            .all_ours(name, target, &paths)
            .map_err(|why| Error::failed(format!("{name}: {why}")))?;
        let preview = installer
            .preview(target, &[(name, &r)])
            .map_err(|why| Error::failed(format!("{name}: {why}")))?;
        let (fresh, changed) = preview.tunnels[0];
        let action = match (changed, fresh) {
            (false, _) => Action::Unchanged,
            (true, true) => Action::Added,
            (true, false) => Action::Changed,
        };
        wanted.push(Wanted {
            name,
            rendered: r,
            action,
            diff: preview.diff,
        });
    }
    let gone: Vec<&str> = installed
        .iter()
        .map(String::as_str)
        .filter(|n| !wanted.iter().any(|w| w.name == *n))
        .collect();
    prune_guard(installed.len(), &gone, prune_many).map_err(Error::usage)?;
    let mut removing = Vec::new();
    for name in gone {
        let id = inittab_id(name);
        let paths = target.system().installed_paths(name, home);
        installer
            .all_ours(name, target, &paths)
            .map_err(|why| Error::failed(format!("{name}: {why}")))?;
        let diff = installer
            .preview_removal(target, &paths, &id)
            .map_err(|why| Error::failed(format!("{name}: {why}")))?
            .unwrap_or_default();
        removing.push((name.to_string(), diff));
    }
    Ok((wanted, removing))
}

/// Installs one tunnel through install's own path (atomic for the tunnel). On failure,
/// looks again to say whether the tunnel was left as it was or has its new files.
fn install(
    installer: &Installer,
    target: Target,
    name: &str,
    rendered: &Rendered,
) -> Result<(), Failure> {
    let mut said = Vec::new();
    let result = installer.install_all(target, &[(name, rendered)], &mut said);
    pass_on_notes(&said, name, target);
    result.map(drop).map_err(|error| {
        let now = installer.preview(target, &[(name, rendered)]);
        Failure {
            error,
            left_as_it_was: !now.is_ok_and(|p| !p.tunnels[0].1),
        }
    })
}

/// Stops and removes one tunnel through uninstall's own path, and the metrics file
/// the configuration's default names for it.
fn remove(
    installer: &Installer,
    target: Target,
    home: &Path,
    name: &str,
    metrics_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let mut said = Vec::new();
    let result =
        installer
            .uninstall(name, target, home, &mut said)
            .and_then(|_| match &metrics_file {
                Some(file) => installer.remove_metrics_file(file, &mut said),
                None => Ok(()),
            });
    pass_on_notes(&said, name, target);
    result.map(drop).map_err(|error| Failure {
        error,
        left_as_it_was: installer
            .installed_tunnels(target, home)
            .is_ok_and(|names| names.iter().any(|n| n == name)),
    })
}

/// install and uninstall speak to a person; apply's own account replaces their diff,
/// their per-tunnel line and their list of removed files, but their notes (BusyBox
/// keeps the old watchdog, …) go on to stderr.
fn pass_on_notes(said: &[u8], name: &str, target: Target) {
    let text = String::from_utf8_lossy(said);
    let ours = format!("{name} ({target}): ");
    let mut in_diff = false;
    for line in text.lines() {
        if line.starts_with("--- ") {
            in_diff = true;
        }
        let diff_line =
            in_diff && (line.starts_with(['+', '-', ' ', '@', '\\']) || line.is_empty());
        if diff_line {
            continue;
        }
        in_diff = false;
        if line.starts_with(&ours) || line.starts_with("removed ") {
            continue;
        }
        crate::errln!("{line}");
    }
}
