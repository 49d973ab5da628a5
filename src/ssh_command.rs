//! `Tunnel` → ssh argv, shared by every target. Pure.
//!
//! ssh keeps the FIRST value it reads for an option, so the options tunnelctl
//! insists on come first and `ssh_options` cannot override them (config.rs also
//! refuses them). The host comes last, after `--`, so it can never be read as an
//! option even if validation were bypassed.

use std::time::Duration;

use crate::model::{Endpoint, Forward, Tunnel};
use crate::ssh_path::path_option;

/// Paths that replace the tunnel's own in the argv, e.g. the systemd system unit
/// passes its credentials directory (`escape::CREDENTIALS_DIR`, which holds no `%`).
/// Like the tunnel's own paths, they reach ssh quoted and with `%` escaped
/// (`crate::ssh_path`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathOverrides {
    pub identity: Option<String>,
    pub known_hosts: Option<String>,
}

/// Whole seconds for ssh's second-granular options: rounded up, at least 1 (0 would
/// mean "off" to ssh).
fn seconds(d: Duration) -> u64 {
    crate::duration::ceil_secs(d).max(1)
}

fn has_option(tunnel: &Tunnel, name: &str) -> bool {
    tunnel
        .ssh_options
        .keys()
        .any(|k| k.eq_ignore_ascii_case(name))
}

/// The program every tunnel runs (found on `PATH`), and the one `check` and `doctor`
/// ask `-V`.
pub const SSH_PROGRAM: &str = "ssh";

/// The full ssh command line, starting with `"ssh"` and ending with `--`, HOST.
pub fn ssh_argv(tunnel: &Tunnel, overrides: &PathOverrides) -> Vec<String> {
    let mut argv: Vec<String> = vec![SSH_PROGRAM.into(), "-N".into(), "-T".into()];
    let option = |argv: &mut Vec<String>, text: String| {
        argv.push("-o".into());
        argv.push(text);
    };
    option(&mut argv, "BatchMode=yes".into());
    option(&mut argv, "ExitOnForwardFailure=yes".into());
    option(
        &mut argv,
        format!("ServerAliveInterval={}", seconds(tunnel.keepalive.interval)),
    );
    option(
        &mut argv,
        format!("ServerAliveCountMax={}", tunnel.keepalive.count),
    );
    option(
        &mut argv,
        format!("ConnectTimeout={}", seconds(tunnel.connect_timeout)),
    );
    // An allowed insecure StrictHostKeyChecking/UserKnownHostsFile replaces ours
    // (config.rs only lets them through with allow_insecure_options).
    if !(tunnel.allow_insecure_options && has_option(tunnel, "StrictHostKeyChecking")) {
        option(&mut argv, "StrictHostKeyChecking=yes".into());
    }
    let user_known_hosts =
        tunnel.allow_insecure_options && has_option(tunnel, "UserKnownHostsFile");
    let known_hosts = overrides
        .known_hosts
        .clone()
        .or_else(|| tunnel.known_hosts.as_ref().map(|p| p.display().to_string()));
    if let Some(path) = known_hosts
        && !user_known_hosts
    {
        option(&mut argv, path_option("UserKnownHostsFile", &path));
    }
    let identity = overrides
        .identity
        .clone()
        .or_else(|| tunnel.identity.as_ref().map(|p| p.display().to_string()));
    if let Some(path) = identity {
        // `-i` takes its word whole, but checks that the file exists before expanding
        // `%` tokens: with `%%` the check fails and the key is dropped, with `%` the
        // expansion fails. A path with `%` goes as IdentityFile, which only expands.
        if path.contains('%') {
            option(&mut argv, path_option("IdentityFile", &path));
        } else {
            argv.push("-i".into());
            argv.push(path);
        }
        option(&mut argv, "IdentitiesOnly=yes".into());
    }
    if let Some(port) = tunnel.port {
        argv.push("-p".into());
        argv.push(port.to_string());
    }
    if let Some(user) = &tunnel.user {
        argv.push("-l".into());
        argv.push(user.clone());
    }
    if let Some(jump) = &tunnel.jump {
        argv.push("-J".into());
        argv.push(jump.clone());
    }
    for (key, value) in &tunnel.ssh_options {
        option(&mut argv, format!("{key}={value}"));
    }
    for forward in &tunnel.forwards {
        let (flag, spec) = forward_spec(forward);
        argv.push(flag);
        argv.push(spec);
    }
    argv.push("--".into());
    argv.push(tunnel.host.clone());
    argv
}

/// An address as ssh's forward syntax wants it: IPv6 in brackets.
fn address(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn endpoint(to: &Endpoint) -> String {
    format!("{}:{}", address(&to.host), to.port)
}

/// `("-L", "127.0.0.1:8080:intranet:80")`, `("-R", "1234:localhost:22")`, `("-D", "127.0.0.1:1080")`.
pub fn forward_spec(forward: &Forward) -> (String, String) {
    match forward {
        Forward::Local { bind, port, to } => (
            "-L".into(),
            format!("{}:{port}:{}", address(bind), endpoint(to)),
        ),
        Forward::Remote {
            bind: None,
            port,
            to,
        } => ("-R".into(), format!("{port}:{}", endpoint(to))),
        Forward::Remote {
            bind: Some(bind),
            port,
            to,
        } => (
            "-R".into(),
            format!("{}:{port}:{}", address(bind), endpoint(to)),
        ),
        Forward::Dynamic { bind, port } => ("-D".into(), format!("{}:{port}", address(bind))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn forward_specs() {
        let f = |fw| forward_spec(&fw);
        assert_eq!(
            f(Forward::Remote {
                bind: None,
                port: 1234,
                to: ep("localhost", 22)
            }),
            ("-R".into(), "1234:localhost:22".into())
        );
        assert_eq!(
            f(Forward::Local {
                bind: "127.0.0.1".into(),
                port: 8080,
                to: ep("intranet", 80)
            }),
            ("-L".into(), "127.0.0.1:8080:intranet:80".into())
        );
        assert_eq!(
            f(Forward::Dynamic {
                bind: "::1".into(),
                port: 1080
            }),
            ("-D".into(), "[::1]:1080".into())
        );
        assert_eq!(
            f(Forward::Remote {
                bind: Some("::1".into()),
                port: 9,
                to: ep("fe80::1", 22)
            }),
            ("-R".into(), "[::1]:9:[fe80::1]:22".into())
        );
    }

    #[test]
    fn argv_has_the_fixed_options_first_and_host_last() {
        let mut t = Tunnel::new(
            "a",
            "h.example",
            vec![Forward::Dynamic {
                bind: "127.0.0.1".into(),
                port: 1080,
            }],
        );
        t.keepalive.interval = Duration::from_millis(1500);
        t.identity = Some(PathBuf::from("/k"));
        t.user = Some("alice".into());
        t.port = Some(2222);
        t.ssh_options.insert("Compression".into(), "yes".into());
        let argv = ssh_argv(&t, &PathOverrides::default());
        assert_eq!(
            argv.join(" "),
            "ssh -N -T -o BatchMode=yes -o ExitOnForwardFailure=yes -o ServerAliveInterval=2 -o ServerAliveCountMax=3 \
             -o ConnectTimeout=15 -o StrictHostKeyChecking=yes -i /k -o IdentitiesOnly=yes -p 2222 -l alice \
             -o Compression=yes -D 127.0.0.1:1080 -- h.example"
        );
        let creds = crate::escape::CREDENTIALS_DIR;
        let over = PathOverrides {
            identity: Some(format!("{creds}/identity")),
            known_hosts: Some(format!("{creds}/known_hosts")),
        };
        let argv = ssh_argv(&t, &over);
        assert!(
            argv.windows(2)
                .any(|w| w == ["-i".to_string(), format!("{creds}/identity")])
        );
        assert!(argv.contains(&format!("UserKnownHostsFile={creds}/known_hosts")));
    }

    #[test]
    fn paths_with_spaces_and_percent_reach_ssh_exactly() {
        let mut t = Tunnel::new("a", "h", vec![]);
        t.identity = Some(PathBuf::from("/keys/backup key"));
        t.known_hosts = Some(PathBuf::from("/Users/a/Library/Application Support/kh"));
        let argv = ssh_argv(&t, &PathOverrides::default());
        assert!(argv.windows(2).any(|w| w == ["-i", "/keys/backup key"]));
        assert!(argv.contains(
            &"UserKnownHostsFile=\"/Users/a/Library/Application Support/kh\"".to_string()
        ));
        t.identity = Some(PathBuf::from("/keys/100% key"));
        t.known_hosts = Some(PathBuf::from("/kh/%h"));
        let argv = ssh_argv(&t, &PathOverrides::default());
        assert!(!argv.contains(&"-i".to_string()), "{argv:?}");
        assert!(argv.contains(&"IdentityFile=\"/keys/100%% key\"".to_string()));
        assert!(argv.contains(&"UserKnownHostsFile=/kh/%%h".to_string()));
    }

    #[test]
    fn insecure_options_replace_ours_only_when_allowed() {
        let mut t = Tunnel::new("a", "h", vec![]);
        t.ssh_options
            .insert("StrictHostKeyChecking".into(), "no".into());
        assert!(
            ssh_argv(&t, &PathOverrides::default())
                .contains(&"StrictHostKeyChecking=yes".to_string())
        );
        t.allow_insecure_options = true;
        let argv = ssh_argv(&t, &PathOverrides::default());
        assert!(!argv.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(argv.contains(&"StrictHostKeyChecking=no".to_string()));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_millis(0)), 1);
        assert_eq!(seconds(Duration::from_secs(15)), 15);
        assert_eq!(seconds(Duration::from_millis(15001)), 16);
    }
}
