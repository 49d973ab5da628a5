use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::render::default_watchdog;
use super::{Context, Error};
use crate::cli::{InstallArgs, UninstallArgs};
use crate::home::home_dir;
use crate::install::{Installer, Outcome};
use crate::targets::{self as render, RenderOptions, Target};

/// The choices a refusal offers when no init can be reached.
const NO_INIT_CHOICES: &str = "choose the init that will run the files with --target \
     (systemd, systemd-user, inittab, busybox; add --no-start to write them without starting), \
     or stage them under a folder with --root DIR";

/// `--target`, else the target the tree at `root` looks like, said on stderr with why:
/// a guess the person did not make is never silent.
fn detected_under(explicit: Option<Target>, root: &Path) -> Target {
    let (target, why) = crate::targets::choose(explicit, root);
    if let Some(why) = why {
        crate::errln!("target {target} (detected: {why}; --target chooses another)");
    }
    target
}

/// The target install writes for: under `--root` the one named or the one the tree at
/// root looks like; otherwise the one named, or the init running here. Where the files
/// would be started (no `--root`, `--no-start` or `--dry-run`) its init must answer:
/// nothing is written for an init that cannot read it.
fn target_for(args: &InstallArgs, root: &Path) -> Result<Target, Error> {
    let starts = !args.no_start && !args.dry_run;
    choose_target(args.target, args.root.is_some(), root, starts)
}

/// [`target_for`]'s rule, also `apply`'s: `explicit` is `--target`, `under_root` whether
/// `--root` was given, `starts` whether the services will be started.
pub(super) fn choose_target(
    explicit: Option<Target>,
    under_root: bool,
    root: &Path,
    starts: bool,
) -> Result<Target, Error> {
    let user = !nix::unistd::geteuid().is_root();
    if under_root {
        return Ok(detected_under(explicit, root));
    }
    match explicit {
        Some(target) if starts => crate::targets::check_reachable(target)
            .map(|()| target)
            .map_err(|found| {
                Error::usage(format!(
                    "cannot start the {target} service here: {found}. To write the files anyway, add --no-start; or {NO_INIT_CHOICES}"
                ))
            }),
        Some(target) => Ok(target),
        None => match crate::targets::running_init_and_why(user) {
            Ok((target, why)) => {
                // A guess the person did not make is never silent.
                crate::errln!("target {target} (running here: {why}; --target chooses another)");
                Ok(target)
            }
            Err(found) => Err(Error::usage(format!(
                "no init system tunnelctl can use is running here: {found}. Nothing was written; {NO_INIT_CHOICES}"
            ))),
        },
    }
}

/// uninstall's target: the one named, the init running here, or (where none runs: a
/// container, an init gone) the one the tunnel's files are installed for.
fn uninstall_target(args: &UninstallArgs, root: &Path) -> Result<Target, Error> {
    let user = !nix::unistd::geteuid().is_root();
    if let Some(target) = args.target {
        return Ok(target);
    }
    if args.root.is_some() {
        return Ok(detected_under(None, root));
    }
    crate::targets::running_init(user).or_else(|found| {
        let mut installed: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|&t| super::left_behind(&args.name, t, root))
            .collect();
        // Targets that share files (inittab and busybox: the args file and
        // /etc/inittab) are told apart by the form of the entry (`ID:…` or `::…`).
        if installed.len() > 1 {
            let id = crate::config::inittab_id(&args.name);
            let inittab = std::fs::read(root.join("etc/inittab")).unwrap_or_default();
            let text = String::from_utf8_lossy(&inittab);
            let marker = crate::targets::inittab::marker_prefix(&id);
            let mut lines = text.lines().skip_while(|l| !l.starts_with(&marker));
            if let Some(line) = lines.nth(1) {
                installed.retain(|t| {
                    t.system()
                        .inittab_line_start(&id)
                        .is_some_and(|start| line.starts_with(&start))
                });
            }
        }
        match installed[..] {
            [target] => Ok(target),
            _ => Err(Error::usage(format!(
                "no init system tunnelctl can use is running here ({found}), and {}: pass --target",
                if installed.is_empty() {
                    format!("`{}` is installed for none", args.name)
                } else {
                    format!("`{}` is installed for several", args.name)
                }
            ))),
        }
    })
}

pub fn run(cx: &Context, args: InstallArgs) -> Result<ExitCode, Error> {
    let config = cx.config()?;
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let target = target_for(&args, &root)?;
    let tunnels: Vec<_> = if args.all {
        config.tunnels.iter().collect()
    } else {
        vec![cx.tunnel(args.name.as_deref().unwrap_or_default())?]
    };
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
    // Render everything before writing anything: a refused tunnel leaves the system alone.
    let mut rendered = Vec::new();
    for tunnel in &tunnels {
        let r =
            render::render(tunnel, target, &options).map_err(|e| Error::usage(e.to_string()))?;
        rendered.push((tunnel.name.as_str(), r));
    }
    let installer = Installer {
        root,
        run_tools: args.root.is_none(),
        dry_run: args.dry_run,
        no_start: args.no_start,
    };
    let mut out = crate::output::Lenient;
    let items: Vec<(&str, &render::Rendered)> = rendered.iter().map(|(n, r)| (*n, r)).collect();
    if let Err(message) = installer.install_all(target, &items, &mut out) {
        let _ = out.flush();
        return Err(Error::failed(if items.len() == 1 {
            format!("{}: {message}", items[0].0)
        } else {
            message
        }));
    }
    Ok(ExitCode::SUCCESS)
}

/// Works from the name alone, so a tunnel already gone from the config can be removed.
pub fn run_uninstall(cx: &Context, args: UninstallArgs) -> Result<ExitCode, Error> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let target = uninstall_target(&args, &root)?;
    cx.known_name(&args.name, target, &root)?;
    // An init that is gone cannot stop anything: the files still go, in this one run.
    let reachable = args.root.is_none()
        && match crate::targets::check_reachable(target) {
            Ok(()) => true,
            Err(found) => {
                crate::errln!("note: {found}; removing the files without telling the init");
                false
            }
        };
    let installer = Installer {
        root,
        run_tools: reachable,
        dry_run: false,
        no_start: false,
    };
    let mut out = crate::output::Lenient;
    let removed = installer
        .uninstall(&args.name, target, &home_dir(), &mut out)
        .and_then(|outcome| match (outcome, cx.config()) {
            // The configuration names the metrics file; without it (unreadable) the
            // service still goes, the file stays.
            (Outcome::Removed, Ok(config)) => match config.metrics_file_of(&args.name) {
                Some(file) => installer.remove_metrics_file(&file, &mut out),
                None => Ok(()),
            },
            _ => Ok(()),
        });
    match removed {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(message) => {
            let _ = out.flush();
            Err(Error::failed(format!("{}: {message}", args.name)))
        }
    }
}

/// A system service runs the watchdog as root: the default one (found beside this
/// tunnelctl) must be root's and writable by nobody else, in directories that are too,
/// or whoever can write it runs code as root at the next start.
pub(super) fn trusted_watchdog(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("the watchdog {}: {e}; pass --watchdog PATH", path.display()))?;
    let fix = "install the package (the watchdog goes to /usr/bin, root-owned), or copy it to \
               a root-owned path (`install -o root -g root -m 0755 SRC /usr/local/bin/tunnel-watchdog`) \
               and pass --watchdog /usr/local/bin/tunnel-watchdog";
    if meta.uid() != 0 {
        return Err(format!(
            "the watchdog {} is owned by {}, but a system service runs it as root: its owner could run anything as root. Fix: {fix}",
            path.display(),
            crate::safe_fs::describe_uid(meta.uid())
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the watchdog {} is writable by group or others (mode {:04o}), but a system service runs it as root. Fix: `chmod go-w {}`",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        ));
    }
    if let Some(dir) = path.parent() {
        // Private: root's sticky /tmp may hold it (nobody else can rename what is in it).
        crate::safe_fs::open_abs(dir, None, crate::safe_fs::Trust::Private)
            .map_err(|why| format!("the watchdog's directory: {why}"))?;
    }
    Ok(())
}
