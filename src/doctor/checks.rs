//! The checks made before ssh runs: the ssh client, the identity file, the pinned host key.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::finding::{Finding, Verdict};
use crate::known_hosts::{self, SshView};
use crate::model::Tunnel;

/// `ssh -V`: present, OpenSSH (Dropbear's client cannot carry a probed tunnel), and
/// which version.
pub fn check_ssh(program: &str) -> Finding {
    use crate::ssh_client::{self, Client};
    match ssh_client::identify(program, std::time::Duration::from_secs(5)) {
        Ok(Client::OpenSsh(version)) => Finding::new(Verdict::Ok, "ssh", version),
        Ok(client @ Client::Dropbear(_)) => Finding::new(
            Verdict::Fail,
            "ssh",
            client.refusal(program).unwrap_or_default(),
        )
        .fix(ssh_client::FIX),
        Ok(Client::Other(version)) => Finding::new(
            Verdict::Warn,
            "ssh",
            format!("`{program} -V` says {version:?}; tunnelctl is tested with OpenSSH"),
        ),
        Err(e) => Finding::new(Verdict::Fail, "ssh", e)
            .fix("install the OpenSSH client: `apt-get install openssh-client`"),
    }
}

/// The identity file exists, is a file we can read, and is not readable by others
/// (ssh ignores such a key: "UNPROTECTED PRIVATE KEY FILE").
pub fn check_identity(identity: Option<&Path>, view: Option<&SshView>) -> Finding {
    let Some(path) = identity else {
        let defaults: Vec<String> = view
            .map(|v| {
                v.identity_files
                    .iter()
                    .filter(|p| p.exists())
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let detail = if defaults.is_empty() {
            "no `identity:` set and no default key (~/.ssh/id_*) found: only an ssh agent could log in, and services have none".to_string()
        } else {
            format!("no `identity:` set; ssh will offer {}", defaults.join(", "))
        };
        let verdict = if defaults.is_empty() {
            Verdict::Warn
        } else {
            Verdict::Note
        };
        return Finding::new(verdict, "key", detail)
            .fix("set `identity: /path/to/key` so the service uses a known key (ssh-keygen -t ed25519 -f FILE creates one)");
    };
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return Finding::new(Verdict::Fail, "key", format!("{shown}: {e}"))
                .fix(format!("create it (`ssh-keygen -t ed25519 -f {shown}`) and add the .pub line to the server's authorized_keys, or fix `identity:`"));
        }
    };
    if !meta.is_file() {
        return Finding::new(
            Verdict::Fail,
            "key",
            format!("{shown} is not a regular file"),
        )
        .fix("point `identity:` at the private key file");
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Finding::new(
            Verdict::Fail,
            "key",
            format!("{shown} has mode {mode:04o}: readable by group or others, so ssh ignores it (\"UNPROTECTED PRIVATE KEY FILE\")"),
        )
        .fix(format!("chmod 600 {shown}"));
    }
    if let Err(e) = std::fs::File::open(path) {
        return Finding::new(Verdict::Fail, "key", format!("{shown}: cannot read it as uid {}: {e}", nix::unistd::getuid()))
            .fix("run doctor as the user the service runs as, or make the key readable by that user only");
    }
    let owner = if meta.uid() == nix::unistd::getuid().as_raw() {
        "owned by you"
    } else {
        "owned by another user"
    };
    Finding::new(
        Verdict::Ok,
        "key",
        format!("{shown}: present, mode {mode:04o}, {owner}"),
    )
}

/// The host key is pinned in a file ssh reads (`ssh-keygen -F`).
pub fn check_pinned(tunnel: &Tunnel, view: &SshView) -> Finding {
    let name = view.key_name();
    for file in view.all_known_hosts() {
        match known_hosts::pinned_keys(file, &name) {
            Ok(keys) if !keys.is_empty() => {
                return Finding::new(
                    Verdict::Ok,
                    "host key",
                    format!("{name} is pinned in {}", file.display()),
                );
            }
            Ok(_) => {}
            Err(e) => return Finding::new(Verdict::Warn, "host key", e),
        }
    }
    let files: Vec<String> = view
        .user_known_hosts
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Finding::new(
        Verdict::Fail,
        "host key",
        format!("host key not pinned: no key for {name} in {}; a service cannot answer ssh's question, so ssh will refuse the server", files.join(", ")),
    )
    .fix(format!("run `tunnelctl trust {}`", tunnel.name))
}
