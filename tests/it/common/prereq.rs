//! Named prerequisites of the real-init tests. Outside CI a missing prerequisite skips
//! the test with a printed reason; under `CI=true` it fails the test, because a CI run
//! that passes by skipping everything proves nothing.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    /// Effective uid 0: namespaces, mounts, cgroups and sshd logins need it.
    Root,
    /// `/usr/sbin/sshd` and the ssh client tools.
    Sshd,
    /// `systemd-nspawn` (Debian: systemd-container) and `nsenter`.
    SystemdNspawn,
    /// `/usr/lib/systemd/systemd` and `systemctl`, for a private user manager.
    SystemdUser,
    /// `busybox` with its `init` applet.
    Busybox,
    /// `unshare` and `nsenter` (util-linux).
    Unshare,
    /// `apt-get` and `dpkg`, to fetch sysvinit-core's `/sbin/init` without installing it.
    AptGet,
    /// `python3`, to read plists back with `plistlib`.
    Python3,
    /// Debian's `prometheus-node-exporter`, whose textfile collector parses metrics.
    NodeExporter,
    /// Debian's `s6`: `s6-svscan`, `s6-svwait`, `s6-svstat`, `s6-svc`, `s6-svscanctl`.
    S6,
    /// Debian's `runit` (never `runit-init`): `runsvdir`, `runsv`, `sv`, `svlogd`.
    Runit,
    /// Debian's `dropbear-bin`: Dropbear's ssh client, `dbclient`.
    Dropbear,
    /// iproute2's `ip` on `PATH` (run by name inside network namespaces).
    Ip,
    /// `/usr/bin/autossh`, the keeper the handover tests replace.
    Autossh,
    /// Debian's `ansible-core` (`ansible-playbook`) and `ansible-lint`.
    Ansible,
    /// `TUNNELCTL_TEST_ROUTER_DIST`: the folder `packaging/router-package.sh` wrote the
    /// router archives and .ipk files into (`.ci/run` builds them first).
    RouterPackages,
    /// A usable IPv6 loopback: a socket can listen on `[::1]` (the server side of a
    /// half-bound remote forward).
    Ipv6Loopback,
}

impl Prereq {
    pub fn name(self) -> &'static str {
        match self {
            Prereq::Root => "root",
            Prereq::Sshd => "sshd",
            Prereq::SystemdNspawn => "systemd-nspawn",
            Prereq::SystemdUser => "systemd",
            Prereq::Busybox => "busybox",
            Prereq::Unshare => "unshare",
            Prereq::AptGet => "apt-get",
            Prereq::Python3 => "python3",
            Prereq::NodeExporter => "prometheus-node-exporter",
            Prereq::S6 => "s6",
            Prereq::Runit => "runit",
            Prereq::Dropbear => "dropbear-bin",
            Prereq::Ip => "ip",
            Prereq::Autossh => "autossh",
            Prereq::Ansible => "ansible",
            Prereq::RouterPackages => "router packages",
            Prereq::Ipv6Loopback => "IPv6 loopback",
        }
    }

    /// Why this prerequisite is not met, or `None`.
    pub fn missing(self) -> Option<String> {
        let need = |paths: &[&str], package: &str| -> Option<String> {
            paths
                .iter()
                .find(|p| which(p).is_none())
                .map(|p| format!("{p} is missing (install {package})"))
        };
        match self {
            Prereq::Root => (!nix::unistd::geteuid().is_root()).then(|| {
                "not running as root (namespaces, mounts and cgroups need it)".to_string()
            }),
            Prereq::Sshd => need(&["/usr/sbin/sshd"], "openssh-server")
                .or_else(|| need(&["ssh", "ssh-keygen"], "openssh-client")),
            Prereq::SystemdNspawn => need(&["systemd-nspawn"], "systemd-container")
                .or_else(|| need(&["nsenter"], "util-linux")),
            Prereq::SystemdUser => need(&["/usr/lib/systemd/systemd", "systemctl"], "systemd"),
            Prereq::Busybox => need(&["busybox"], "busybox"),
            Prereq::Unshare => need(&["unshare", "nsenter"], "util-linux"),
            Prereq::AptGet => need(&["apt-get", "dpkg"], "apt and dpkg"),
            Prereq::Python3 => need(&["python3"], "python3"),
            Prereq::Autossh => need(&["/usr/bin/autossh"], "autossh"),
            Prereq::Ansible => need(&["ansible-playbook"], "ansible-core")
                .or_else(|| need(&["ansible-lint"], "ansible-lint")),
            Prereq::NodeExporter => need(
                &["/usr/bin/prometheus-node-exporter"],
                "prometheus-node-exporter",
            ),
            Prereq::Runit => need(&["runsvdir", "runsv", "sv", "svlogd"], "runit"),
            Prereq::S6 => need(
                &[
                    "s6-svscan",
                    "s6-svwait",
                    "s6-svstat",
                    "s6-svc",
                    "s6-svscanctl",
                ],
                "s6",
            ),
            Prereq::Dropbear => need(&["dbclient"], "dropbear-bin"),
            // Only PATH: `nsenter … ip` finds it there or not at all.
            Prereq::Ip => {
                let path = std::env::var("PATH").unwrap_or_default();
                (!path.split(':').any(|d| Path::new(d).join("ip").is_file()))
                    .then(|| "ip is not on PATH (install iproute2)".to_string())
            }
            Prereq::Ipv6Loopback => std::net::TcpListener::bind("[::1]:0")
                .err()
                .map(|e| format!("cannot listen on [::1] ({e}): enable IPv6 on lo")),
            Prereq::RouterPackages => match std::env::var("TUNNELCTL_TEST_ROUTER_DIST") {
                Ok(dir) if Path::new(&dir).is_dir() => None,
                Ok(dir) => Some(format!("TUNNELCTL_TEST_ROUTER_DIST={dir} is no folder")),
                Err(_) => Some(
                    "TUNNELCTL_TEST_ROUTER_DIST is not set (bash packaging/router-package.sh \
                     TARGET prints the folder to set it to)"
                        .to_string(),
                ),
            },
        }
    }
}

/// The full path of a program: `program` itself when it contains a `/`, else the first
/// match on `$PATH` (plus the sbin directories, which a non-login PATH may lack).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| program.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// Returns true when every prerequisite is met. Otherwise prints why `test` is skipped
/// and returns false, or panics when `CI=true`.
pub fn require(test: &str, prereqs: &[Prereq]) -> bool {
    let missing: Vec<String> = prereqs
        .iter()
        .filter_map(|p| p.missing().map(|why| format!("{}: {why}", p.name())))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: prerequisite missing on CI: {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}
