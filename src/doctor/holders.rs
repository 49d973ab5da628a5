//! Another keeper already running the tunnel: an ssh or autossh process (not one of
//! tunnelctl's) that holds one of the tunnel's forwards, a common reason a freshly
//! installed tunnel "does not work". Found by reading every process's argv the way
//! `tunnelctl import` does, and told with the import command that hands it over.

use super::finding::{Finding, Verdict};
use crate::import::{self, ForwardSpec};
use crate::model::{Forward, Tunnel};

/// The tunnel's forwards that `argv` (an ssh or autossh command line) also opens:
/// local and dynamic ones by port, remote ones by port on the same server.
pub fn clashes(tunnel: &Tunnel, argv: &[String]) -> Vec<String> {
    let Ok(found) = import::ssh_args::parse(argv, &[], "") else {
        return Vec::new();
    };
    let host = found.host.as_ref().map(|h| h.value.as_str()).unwrap_or("");
    let mut out = Vec::new();
    for forward in &tunnel.forwards {
        let (flag, spec) = crate::ssh_command::forward_spec(forward);
        let held = found
            .forwards
            .iter()
            .any(|(theirs, _)| match (forward, theirs) {
                (Forward::Local { port, .. }, ForwardSpec::Local { port: p, .. })
                | (Forward::Dynamic { port, .. }, ForwardSpec::Dynamic { port: p, .. })
                | (Forward::Local { port, .. }, ForwardSpec::Dynamic { port: p, .. })
                | (Forward::Dynamic { port, .. }, ForwardSpec::Local { port: p, .. }) => {
                    p.parse::<u16>() == Ok(*port)
                }
                (Forward::Remote { port, .. }, ForwardSpec::Remote { port: p, .. }) => {
                    p.parse::<u16>() == Ok(*port) && host == tunnel.host
                }
                _ => false,
            });
        if held {
            out.push(format!("{flag} {spec}"));
        }
    }
    out
}

/// One finding per process that holds a forward of `tunnel`.
pub fn check_holders(tunnel: &Tunnel) -> Vec<Finding> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if pid == me {
            continue;
        }
        let Some(argv) = crate::procinfo::argv(pid as u32) else {
            continue;
        };
        if !argv.first().is_some_and(|p| import::is_tunnel_program(p)) || ours(&argv) {
            continue;
        }
        // autossh's ssh child repeats its argv: the autossh is the one to name.
        if import::program_name(&argv[0]) == "ssh"
            && parent(pid)
                .and_then(|p| crate::procinfo::argv(p as u32))
                .is_some_and(|a| {
                    a.first()
                        .is_some_and(|p| import::program_name(p) == "autossh")
                })
        {
            continue;
        }
        let held = clashes(tunnel, &argv);
        if held.is_empty() {
            continue;
        }
        let command = import::display_command(&argv);
        out.push(
            Finding::new(
                Verdict::Warn,
                "other keeper",
                format!(
                    "process {pid} ({command}) already holds {}; tunnelctl's ssh cannot open it while that runs",
                    held.join(", ")
                ),
            )
            .fix(format!(
                "hand it over safely: `{}`",
                handover_command(pid, &argv, &tunnel.name)
            )),
        );
    }
    out
}

/// tunnelctl's own ssh carries the watchdog's control socket in its argv.
fn ours(argv: &[String]) -> bool {
    argv.iter()
        .any(|a| a.starts_with("ControlPath=") && a.contains("tunnelctl"))
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// The import command for what runs `pid`: its systemd unit (from its cgroup), an
/// inittab line (a child of init), or the process itself.
fn handover_command(pid: i32, argv: &[String], name: &str) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let unit = cgroup
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .find(|u| u.ends_with(".service") && !u.starts_with("user@"));
    if let Some(unit) = unit {
        let user_unit = crate::home::home_dir()
            .join(".config/systemd/user")
            .join(unit)
            .exists();
        let user = if cgroup.contains("/user@") || user_unit {
            " -t systemd-user"
        } else {
            ""
        };
        return format!("tunnelctl import --systemd {unit}{user} --replace --name {name}");
    }
    if parent(pid) == Some(1) {
        return format!("tunnelctl import --scan inittab --replace --name {name}");
    }
    format!(
        "tunnelctl import --replace --name {name} --pid {pid} -- {}",
        import::display_command(argv)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    #[test]
    fn a_keeper_with_the_same_forward_is_found() {
        let tunnel = Tunnel::new(
            "home",
            "server",
            vec![
                Forward::Remote {
                    bind: None,
                    port: 1234,
                    to: Endpoint {
                        host: "localhost".into(),
                        port: 22,
                    },
                },
                Forward::Dynamic {
                    bind: "127.0.0.1".into(),
                    port: 1080,
                },
            ],
        );
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            clashes(
                &tunnel,
                &argv("autossh -M 20000 -f -N server -R 1234:localhost:22 -C")
            ),
            ["-R 1234:localhost:22"]
        );
        assert!(clashes(&tunnel, &argv("ssh -N other -R 1234:localhost:22")).is_empty());
        assert_eq!(
            clashes(&tunnel, &argv("ssh -N -L 1080:h:1 x")),
            ["-D 127.0.0.1:1080"]
        );
        assert!(ours(&argv(
            "ssh -o ControlPath=/run/tunnelctl/home/ctl -N server"
        )));
    }
}
