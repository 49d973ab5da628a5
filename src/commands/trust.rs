//! `tunnelctl trust NAME [--yes]`: fetch the server's host key, show its fingerprints,
//! and after confirmation pin it in the tunnel's known_hosts file. A service has no
//! terminal to answer ssh's "are you sure" question, so this is where the answer is given.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::TrustArgs;
use crate::known_hosts::{self, HostKey, Pinned, SshView};
use crate::model::Tunnel;
use crate::ssh_command::{PathOverrides, ssh_argv};

pub fn run(cx: &Context, args: TrustArgs) -> Result<ExitCode, Error> {
    let tunnel = cx.tunnel(&args.name)?;
    let interactive = std::io::stdin().is_terminal();
    let confirm = |question: &str| -> bool {
        crate::out!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
    };
    trust(tunnel, args.yes, interactive, confirm)
        .map_err(|message| Error::failed(message).about(&tunnel.name))?;
    Ok(ExitCode::SUCCESS)
}

/// The known_hosts file trust writes to: the tunnel's `known_hosts:`, else the first
/// user file ssh itself would use (normally `~/.ssh/known_hosts`).
pub fn target_file(tunnel: &Tunnel, view: &SshView) -> Option<PathBuf> {
    tunnel
        .known_hosts
        .clone()
        .or_else(|| view.user_known_hosts.first().cloned())
}

/// Does the work; `confirm` asks the question when `interactive` and not `yes`.
pub fn trust(
    tunnel: &Tunnel,
    yes: bool,
    interactive: bool,
    mut confirm: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    let argv = ssh_argv(tunnel, &PathOverrides::default());
    let view = known_hosts::ssh_g(&argv)?;
    let name = view.key_name();
    let file = target_file(tunnel, &view)
        .ok_or("ssh names no known_hosts file for this host; set `known_hosts:` for the tunnel")?;

    let (offered, how) = known_hosts::fetch_keys(&view, tunnel.connect_timeout)?;
    let prints = known_hosts::fingerprints(&offered)?;
    crate::outln!(
        "Host key{} of {} ({} port {}), {how}:",
        if offered.len() == 1 { "" } else { "s" },
        tunnel.name,
        view.hostname,
        view.port
    );
    for line in &prints {
        crate::outln!("  {line}");
    }

    // ssh reads every user and global file; a conflicting key in any of them fails it.
    let mut pinned: Vec<HostKey> = Vec::new();
    let mut where_pinned: Vec<String> = Vec::new();
    for kh in view.all_known_hosts().chain(std::iter::once(&file)) {
        let keys = known_hosts::pinned_keys(kh, &name)?;
        if !keys.is_empty() {
            where_pinned.push(kh.display().to_string());
        }
        for k in keys {
            if !pinned.contains(&k) {
                pinned.push(k);
            }
        }
    }
    where_pinned.dedup();
    match known_hosts::compare(&pinned, &offered) {
        Pinned::Same => {
            crate::outln!(
                "{name} is already trusted in {}: nothing to do.",
                where_pinned.join(", ")
            );
            return Ok(());
        }
        Pinned::Different { pinned } => {
            let old = known_hosts::fingerprints(&pinned).unwrap_or_default();
            return Err(format!(
                "refusing: {} already pins a DIFFERENT key for {name}:\n  {}\n\
                 The server now offers the key(s) shown above. Either the server was reinstalled or \
                 its keys were replaced, or someone is intercepting the connection. Check the \
                 fingerprint with the server's administrator (on the server: \
                 `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`). If the new key is right, \
                 remove the old one with `ssh-keygen -f {} -R '{name}'` and run `tunnelctl trust {}` again.",
                where_pinned.join(", "),
                old.join("\n  "),
                where_pinned
                    .first()
                    .cloned()
                    .unwrap_or_else(|| file.display().to_string()),
                tunnel.name
            ));
        }
        Pinned::Nothing => {}
    }

    if !yes {
        if !interactive {
            return Err(format!(
                "not pinned: stdin is not a terminal, so there is no one to confirm. Compare the \
                 fingerprint above with the server's (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` \
                 on it) and re-run with --yes to pin it in {}",
                file.display()
            ));
        }
        if !confirm(&format!("Pin this key for {name} in {}?", file.display())) {
            return Err("not pinned: the key was not confirmed".to_string());
        }
    }
    known_hosts::pin(&file, &name, &offered)?;
    crate::outln!("Pinned {name} in {}.", file.display());
    Ok(())
}
