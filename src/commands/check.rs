//! `tunnelctl check`: validate the configuration, write nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::CheckArgs;
use crate::model::Forward;
use crate::ssh_command::forward_spec;

pub fn run(cx: &Context, args: CheckArgs) -> Result<ExitCode, Error> {
    if !args.paths.is_empty() {
        return fleet(&args.paths);
    }
    let cfg = cx.config()?;
    for t in &cfg.tunnels {
        crate::outln!("{}", summary(t));
    }
    // A supervisor that gives up on a tunnel restarting quickly (SysV's "respawning too
    // fast") would undo the watchdog's pacing: said for every target it concerns.
    for t in &cfg.tunnels {
        for target in crate::targets::Target::ALL {
            if let Some(why) = target.system().restart_limit_problem(t) {
                crate::errln!(
                    "tunnelctl check: warning: tunnel `{}` installed for {target}: {why}",
                    t.name
                );
            }
        }
    }
    check_ssh_client()?;
    crate::outln!("{}: {} tunnel(s) OK", cfg.path.display(), cfg.tunnels.len());
    Ok(ExitCode::SUCCESS)
}

/// The configuration may be right and still no tunnel work: `ssh` here must be
/// OpenSSH's client. A missing `ssh` is only a warning (a configuration can be checked
/// on a machine that will not run it).
fn check_ssh_client() -> Result<(), Error> {
    let program = crate::ssh_command::SSH_PROGRAM;
    match crate::ssh_client::identify(program, std::time::Duration::from_secs(5)) {
        Ok(client) => match client.refusal(program) {
            Some(why) => Err(Error::failed(format!(
                "{why}; the tunnels above cannot run on this machine until you {}",
                crate::ssh_client::FIX
            ))),
            None => Ok(()),
        },
        Err(e) => {
            crate::errln!(
                "tunnelctl check: warning: {e}; the tunnels need OpenSSH's client as `ssh` \
                 on this machine's PATH"
            );
            Ok(())
        }
    }
}

/// Several host files (or directories of them) checked each on its own (without the
/// identity and known_hosts files, which are on the hosts), then together for remote
/// listeners claimed twice.
fn fleet(paths: &[PathBuf]) -> Result<ExitCode, Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(crate::fleet::host_files(path).map_err(Error::usage)?);
        } else {
            files.push(path.clone());
        }
    }
    // One file named twice (`check hosts/ hosts/a.yaml`) is one host, not a clash.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    let mut loaded = Vec::new();
    let mut broken = 0;
    for file in &files {
        match crate::config::load_host_file(file) {
            Ok(config) => loaded.push((file.clone(), config.remote_listeners)),
            Err(e) => {
                crate::errln!("{e}");
                broken += 1;
            }
        }
    }
    let found = crate::fleet::clashes(&loaded);
    for clash in &found {
        crate::errln!("{}", clash.message());
    }
    if broken > 0 || !found.is_empty() {
        let mut problems = Vec::new();
        if broken > 0 {
            problems.push(format!("{broken} of {} files have problems", files.len()));
        }
        if !found.is_empty() {
            problems.push(format!(
                "{} remote port(s) claimed by two files on one server",
                found.len()
            ));
        }
        return Err(Error::usage(problems.join("; ")));
    }
    crate::outln!(
        "{} file(s) OK, no remote port claimed twice on one server",
        files.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `NAME  user@host:port  -R 1234:localhost:22, -L 127.0.0.1:8080:intranet:80`
pub fn summary(t: &crate::model::Tunnel) -> String {
    let mut target = String::new();
    if let Some(user) = &t.user {
        target.push_str(user);
        target.push('@');
    }
    target.push_str(&t.host);
    if let Some(port) = t.port {
        target.push_str(&format!(":{port}"));
    }
    if let Some(jump) = &t.jump {
        target.push_str(&format!(" via {jump}"));
    }
    let forwards: Vec<String> = t
        .forwards
        .iter()
        .map(|f: &Forward| {
            let (flag, spec) = forward_spec(f);
            format!("{flag} {spec}")
        })
        .collect();
    format!("{}  {}  {}", t.name, target, forwards.join(", "))
}
