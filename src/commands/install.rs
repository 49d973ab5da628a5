use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::render::default_watchdog;
use super::{Context, Error};
use crate::cli::{InstallArgs, UninstallArgs};
use crate::home::home_dir;
use crate::install::Installer;
use crate::render::{self, RenderOptions};
use crate::target::Target;

fn target_for(explicit: Option<Target>, root: &Path) -> Target {
    explicit.unwrap_or_else(|| Target::detect(root, !nix::unistd::geteuid().is_root()))
}

pub fn run(cx: &Context, args: InstallArgs) -> Result<ExitCode, Error> {
    let config = cx.config()?;
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let target = target_for(args.target, &root);
    let tunnels: Vec<_> = if args.all {
        config.tunnels.iter().collect()
    } else {
        vec![cx.tunnel(args.name.as_deref().unwrap_or_default())?]
    };
    let options = RenderOptions {
        watchdog: args.watchdog.clone().unwrap_or_else(default_watchdog),
        home: home_dir(),
    };
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
    let mut out = std::io::stdout().lock();
    for (name, r) in &rendered {
        if let Err(message) = installer.install(name, target, r, &mut out) {
            let _ = out.flush();
            return Err(Error::failed(format!("{name}: {message}")));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Works from the name alone, so a tunnel already gone from the config can be removed.
pub fn run_uninstall(args: UninstallArgs) -> Result<ExitCode, Error> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let target = target_for(args.target, &root);
    let id = crate::config::inittab_id(&args.name);
    let paths = render::installed_paths(&args.name, target, &home_dir(), &id);
    let installer = Installer {
        root,
        run_tools: args.root.is_none(),
        dry_run: false,
        no_start: false,
    };
    let mut out = std::io::stdout().lock();
    match installer.uninstall(&args.name, target, &paths, &id, &mut out) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(message) => {
            let _ = out.flush();
            Err(Error::failed(format!("{}: {message}", args.name)))
        }
    }
}
