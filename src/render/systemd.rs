//! systemd system and user units, from the templates in `units/`.

use std::path::PathBuf;
use std::time::Duration;

use tera::{Context, Tera};

use super::{
    CredentialPaths, RenderOptions, Rendered, RenderedFile, path_str, service_ssh_argv,
    watchdog_args,
};
use crate::duration::ceil_secs;
use crate::escape;
use crate::model::Tunnel;
use crate::target::Target;

const SYSTEM_TEMPLATE: &str = include_str!("../../units/systemd.service.tera");
const USER_TEMPLATE: &str = include_str!("../../units/systemd-user.service.tera");

/// `WatchdogSec=`: longer than the watchdog needs to declare failure on its own
/// (failures × interval + timeout, plus one interval of margin), and at least two probe
/// intervals so a ping sent once per round arrives twice per period.
pub fn watchdog_sec(tunnel: &Tunnel) -> u64 {
    let p = &tunnel.probe;
    // Saturating: `check` bounds every term far below overflow; this keeps render total.
    let declare = (p.interval.saturating_mul(p.failures))
        .saturating_add(p.timeout)
        .saturating_add(p.interval);
    ceil_secs(declare.max(p.interval.saturating_mul(2))).max(1)
}

/// `TimeoutStartSec=`: the longest back-off the watchdog may sleep before connecting, one
/// connect, and the probe rounds before READY=1, plus 10 s of margin. The watchdog also
/// sends EXTEND_TIMEOUT_USEC while it waits.
pub fn timeout_start_sec(tunnel: &Tunnel) -> u64 {
    let p = &tunnel.probe;
    let total = tunnel
        .backoff
        .max
        .saturating_add(tunnel.connect_timeout)
        .saturating_add(
            p.interval
                .saturating_add(p.timeout)
                .saturating_mul(p.failures),
        )
        .saturating_add(Duration::from_secs(10));
    ceil_secs(total)
}

pub fn render(
    tunnel: &Tunnel,
    target: Target,
    options: &RenderOptions,
) -> Result<Rendered, String> {
    let system = target == Target::Systemd;
    let watchdog = path_str(&options.watchdog, "--watchdog")?;

    let mut credentials = Vec::new();
    let creds = if system {
        CredentialPaths::SystemdCredentials
    } else {
        CredentialPaths::AsConfigured
    };
    if system {
        for (id, path) in [
            ("identity", &tunnel.identity),
            ("known_hosts", &tunnel.known_hosts),
        ] {
            if let Some(path) = path {
                let path = path_str(path, id)?;
                credentials.push(format!("{id}:{}", escape::credential_path(path)?));
            }
        }
    }
    let mut argv = vec![watchdog.to_string()];
    argv.extend(watchdog_args(
        tunnel,
        None,
        None,
        service_ssh_argv(tunnel, creds),
    ));

    let description = match &tunnel.user {
        Some(user) => format!("SSH tunnel {} to {user}@{}", tunnel.name, tunnel.host),
        None => format!("SSH tunnel {} to {}", tunnel.name, tunnel.host),
    };
    let mut context = Context::new();
    context.insert("description", &escape::unit_text(&description));
    context.insert("exec_start", &escape::exec_line(&argv));
    context.insert("watchdog_sec", &format!("{}s", watchdog_sec(tunnel)));
    context.insert(
        "timeout_start_sec",
        &format!("{}s", timeout_start_sec(tunnel)),
    );
    context.insert("credentials", &credentials);
    // ProtectSystem=strict: the --metrics-file's directory must be writable (`-`: a
    // missing directory does not stop the unit; the watchdog logs the failed write).
    let metrics_dir = match tunnel.metrics_file.as_ref().and_then(|f| f.parent()) {
        Some(dir) => Some(escape::path_list_entry(
            "-",
            super::path_str(dir, "metrics_file")?,
        )?),
        None => None,
    };
    context.insert("metrics_dir", &metrics_dir);
    context.insert(
        "directory",
        &escape::unit_directory(&format!("tunnelctl/{}", tunnel.name))?,
    );

    let (template, dir) = if system {
        (SYSTEM_TEMPLATE, PathBuf::from("/etc/systemd/system"))
    } else {
        (USER_TEMPLATE, options.home.join(".config/systemd/user"))
    };
    let contents = render_template(template, &context)?;
    Ok(Rendered {
        files: vec![RenderedFile {
            path: dir.join(escape::unit_name(&tunnel.name)),
            contents,
            mode: 0o644,
        }],
        dirs: Vec::new(),
        inittab: None,
    })
}

/// Renders a built-in template with autoescaping off: unit files are not HTML, and every
/// value was escaped for systemd before it reached the context.
pub(crate) fn render_template(template: &str, context: &Context) -> Result<String, String> {
    let mut tera = Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template("unit", template)
        .map_err(|e| format!("built-in template: {e}"))?;
    tera.render("unit", context)
        .map_err(|e| format!("built-in template: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_outlasts_the_watchdogs_own_verdict() {
        let mut t = Tunnel::new("t", "h", vec![]);
        // defaults: 10s × 2 + 5s + 10s margin
        assert_eq!(watchdog_sec(&t), 35);
        t.probe.interval = Duration::from_millis(1500);
        t.probe.failures = 1;
        t.probe.timeout = Duration::from_millis(100);
        // 1.5 + 0.1 + 1.5 = 3.1 → 4, and ≥ 2 × 1.5
        assert_eq!(watchdog_sec(&t), 4);
        assert_eq!(
            timeout_start_sec(&Tunnel::new("t", "h", vec![])),
            300 + 15 + 30 + 10
        );
    }
}
