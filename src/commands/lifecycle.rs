//! `tunnelctl start|stop|restart NAME|--all`: an installed tunnel through its init
//! system's own tools (what each verb does per target: `Installer::lifecycle`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::LifecycleArgs;
use crate::install::Installer;
use crate::targets::Lifecycle;

pub fn run(cx: &Context, args: LifecycleArgs, verb: Lifecycle) -> Result<ExitCode, Error> {
    let user = !nix::unistd::geteuid().is_root();
    let target = match args.target {
        Some(t) => t,
        None => crate::targets::running_init(user).map_err(|found| {
            Error::usage(format!(
                "no init system tunnelctl can use is running here: {found}"
            ))
        })?,
    };
    crate::targets::check_reachable(target).map_err(|found| {
        Error::usage(format!(
            "cannot {} a {target} service here: {found}",
            verb.as_str()
        ))
    })?;
    let root = Path::new("/");
    let names: Vec<String> = if args.all {
        cx.config()?
            .tunnels
            .iter()
            .filter(|t| super::left_behind(&t.name, target, root))
            .map(|t| t.name.clone())
            .collect()
    } else {
        let name = args.name.clone().unwrap_or_default();
        cx.known_name(&name, target, root)?;
        if !super::left_behind(&name, target, root) {
            return Err(Error::failed(format!(
                "not installed for {target}: `tunnelctl install {name}` installs and starts it"
            ))
            .about(&name));
        }
        vec![name]
    };
    if names.is_empty() {
        crate::outln!("no tunnel of the configuration is installed for {target}");
        return Ok(ExitCode::SUCCESS);
    }
    let installer = Installer {
        root: PathBuf::from("/"),
        run_tools: true,
        dry_run: false,
        no_start: false,
    };
    let mut out = crate::output::Lenient;
    let mut failed = Vec::new();
    for name in &names {
        match installer.lifecycle(name, target, verb, &mut out) {
            Ok(()) => crate::outln!("{name} ({target}): {}", verb.done()),
            Err(why) => {
                crate::errln!("tunnelctl {} {name}: {why}", verb.as_str());
                failed.push(name.as_str());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::failed(format!("failed for {}", failed.join(", "))))
    }
}
