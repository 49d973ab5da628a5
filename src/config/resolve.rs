//! One tunnel's settings with the defaults merged under them, and the checks that
//! need the merged tunnel. The only side effect of loading lives here: the
//! identity file is stat'ed (and known_hosts checked for existence).

use std::path::PathBuf;
use std::time::Duration;

use super::Cx;
use super::schema::{Located, Partial};
use super::yaml::Loc;
use crate::model::{Backoff, DEFAULT_CONNECT_TIMEOUT, Keepalive, Probe, Tunnel};

impl Cx {
    /// Defaults under tunnel values, then the checks that need the merged tunnel.
    pub(super) fn resolve(
        &mut self,
        name: &str,
        name_at: Loc,
        t: &Partial,
        d: &Partial,
    ) -> Option<Tunnel> {
        // A value that was given but refused has its own diagnostic already.
        if t.host.is_none() && !t.given.contains(&"host") {
            self.error(
                name_at,
                format!("tunnel `{name}` has no `host:`"),
                "add `host: server.example.org`",
            );
        }
        if t.forwards.is_none() && !t.given.contains(&"forwards") {
            self.error(
                name_at,
                format!("tunnel `{name}` has no `forwards:`"),
                "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
            );
        }
        let pick = |a: &Option<Located<Duration>>, b: &Option<Located<Duration>>| {
            a.clone().or_else(|| b.clone())
        };
        let keepalive_interval = pick(&t.keepalive_interval, &d.keepalive_interval);
        let probe_interval = pick(&t.probe_interval, &d.probe_interval);
        let probe_timeout = pick(&t.probe_timeout, &d.probe_timeout);
        let connect_timeout = pick(&t.connect_timeout, &d.connect_timeout);
        let allow_insecure = t
            .allow_insecure
            .clone()
            .or_else(|| d.allow_insecure.clone());
        let identity = t.identity.clone().or_else(|| d.identity.clone());
        let known_hosts = t.known_hosts.clone().or_else(|| d.known_hosts.clone());

        let keepalive = Keepalive {
            interval: keepalive_interval
                .map(|l| l.value)
                .unwrap_or(Keepalive::default().interval),
            count: t
                .keepalive_count
                .or(d.keepalive_count)
                .unwrap_or(Keepalive::default().count),
        };
        let probe = Probe {
            interval: probe_interval
                .map(|l| l.value)
                .unwrap_or(Probe::default().interval),
            timeout: probe_timeout
                .map(|l| l.value)
                .unwrap_or(Probe::default().timeout),
            failures: t
                .probe_failures
                .or(d.probe_failures)
                .unwrap_or(Probe::default().failures),
        };
        let backoff = self.backoff(name, name_at, t, d);
        let allow = allow_insecure.as_ref().is_some_and(|l| l.value);

        if let Some(identity) = &identity
            && self.local_files
        {
            self.identity_file(identity);
        }
        if let Some(kh) = &known_hosts
            && self.local_files
            && !kh.value.exists()
        {
            self.warn(
                kh.at,
                format!(
                    "known_hosts file {} does not exist yet; ssh will refuse every host key",
                    kh.value.display()
                ),
                format!("run `tunnelctl trust {name}` to fetch and pin the server's key"),
            );
        }

        let metrics_file = t.metrics_file.clone().or_else(|| d.metrics_file.clone());
        if let Some(file) = &metrics_file {
            self.metrics_folders(name, file);
        }

        let ssh_options = self.ssh_options_policy(name, t, d, allow);

        let host = t.host.clone()?;
        let forwards = t.forwards.clone()?;
        Some(Tunnel {
            name: name.to_string(),
            host: host.value,
            user: t.user.clone().or_else(|| d.user.clone()).map(|l| l.value),
            port: t.port.or(d.port),
            identity: identity.map(|l| l.value),
            known_hosts: known_hosts.map(|l| l.value),
            jump: t.jump.clone().or_else(|| d.jump.clone()).map(|l| l.value),
            forwards: forwards.value.into_iter().map(|f| f.forward).collect(),
            ssh_options,
            keepalive,
            probe,
            backoff,
            connect_timeout: connect_timeout
                .map(|l| l.value)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            allow_insecure_options: allow,
            metrics_file: metrics_file
                .map(|l| PathBuf::from(l.value.to_string_lossy().replace("{name}", name))),
            on_change: t
                .on_change
                .clone()
                .or_else(|| d.on_change.clone())
                .map(|l| l.value)
                .unwrap_or_default(),
        })
    }

    /// The metrics file's folders must be trusted by whoever checks (root for a root
    /// watchdog): the watchdog refuses to write through a folder another user could
    /// swap, so say it now. A folder that does not exist yet is not refused here.
    fn metrics_folders(&mut self, name: &str, file: &Located<PathBuf>) {
        let path = PathBuf::from(file.value.to_string_lossy().replace("{name}", name));
        let Some(dir) = path.parent() else {
            return;
        };
        if !dir.exists() {
            return;
        }
        if let Err(e) = crate::watchdog::metrics_dir(&path) {
            self.error(
                file.at,
                format!("`metrics_file` {}: {e}", path.display()),
                "put the metrics file in a folder whose every folder above is owned by root \
                 (or the watchdog's user) and writable by nobody else, e.g. a root-owned \
                 /var/lib/node-exporter-textfile given to node_exporter as --collector.textfile.directory",
            );
        }
    }

    /// `backoff`, merged; `initial` may not exceed `max`.
    fn backoff(&mut self, name: &str, name_at: Loc, t: &Partial, d: &Partial) -> Backoff {
        let backoff_initial = t
            .backoff_initial
            .clone()
            .or_else(|| d.backoff_initial.clone());
        let backoff_max = t.backoff_max.clone().or_else(|| d.backoff_max.clone());
        let initial = backoff_initial
            .clone()
            .map(|l| l.value)
            .unwrap_or(Backoff::default().initial);
        let max = backoff_max
            .clone()
            .map(|l| l.value)
            .unwrap_or(Backoff::default().max);
        if initial > max {
            let at = backoff_initial
                .as_ref()
                .or(backoff_max.as_ref())
                .map(|l| l.at)
                .unwrap_or(name_at);
            self.error(
                at,
                format!(
                    "backoff initial {} is longer than backoff max {} (tunnel `{name}`)",
                    crate::duration::format_duration(initial),
                    crate::duration::format_duration(max)
                ),
                "make `initial` shorter than or equal to `max`",
            );
        }
        Backoff { initial, max }
    }

    fn identity_file(&mut self, identity: &Located<PathBuf>) {
        use std::os::unix::fs::PermissionsExt;
        let path = &identity.value;
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.error(
                identity.at,
                format!("identity file {} does not exist", path.display()),
                format!("fix the path, or create a key with `ssh-keygen -t ed25519 -N '' -f {}`", path.display()),
            ),
            Err(e) => self.error(identity.at, format!("cannot read identity file {}: {e}", path.display()), "run check as the user the tunnel runs as"),
            Ok(meta) if !meta.is_file() => self.error(identity.at, format!("identity {} is not a file", path.display()), "point `identity:` at the private key file"),
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => self.error(
                identity.at,
                format!(
                    "identity file {} is accessible by group or others (mode {:04o}); ssh refuses to use such a private key",
                    path.display(),
                    meta.permissions().mode() & 0o7777
                ),
                format!("run `chmod 600 {}`", path.display()),
            ),
            Ok(_) => {}
        }
    }
}
