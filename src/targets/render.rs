//! What every renderer shares. Everything here is pure: a [`Tunnel`] and a [`Target`] in,
//! file contents and their install paths out (each target's module renders its own);
//! `install` does the writing.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Target;
use crate::duration::format_duration;
use crate::model::Tunnel;

/// What the renderer needs besides the tunnel.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Absolute path of `tunnel-watchdog` on the target machine.
    pub watchdog: PathBuf,
    /// Home directory of the user a per-user target (systemd-user, launchd-agent) is
    /// installed for. launchd does not expand `~`, so its paths are written out in full.
    pub home: PathBuf,
}

/// Which paths the ssh command line should name for the key and known_hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialPaths {
    /// The paths from the config.
    AsConfigured,
    /// `%d/identity` and `%d/known_hosts`: systemd's credentials directory, filled by
    /// `LoadCredential=` (see [`crate::escape::CREDENTIALS_DIR`]).
    SystemdCredentials,
}

/// One file to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path on the target machine (for per-user targets it lies under
    /// [`RenderOptions::home`]).
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
}

/// The `/etc/inittab` entry of an inittab or busybox target: a marker comment line that
/// lets `uninstall` find the entry, and the entry itself (both without newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InittabEntry {
    pub id: String,
    /// The line starts with the id (SysV), so no other line may start with it.
    pub id_field: bool,
    pub marker: String,
    pub line: String,
}

impl InittabEntry {
    /// The two lines as they go into /etc/inittab.
    pub fn text(&self) -> String {
        format!("{}\n{}\n", self.marker, self.line)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    /// Directories the service needs but does not create itself (log directories for
    /// launchd and inittab). Created by install when missing, removed by uninstall only
    /// when it created them and they are empty.
    pub dirs: Vec<PathBuf>,
    pub inittab: Option<InittabEntry>,
}

/// A value the target's file format cannot carry safely. Caused by the config or the
/// options, so the CLI reports it with exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderError {
    pub tunnel: String,
    pub target: Target,
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tunnel `{}`, target {}: {}",
            self.tunnel, self.target, self.message
        )
    }
}

impl std::error::Error for RenderError {}

/// The service file(s) of `tunnel` for `target`, or why the target cannot carry it.
pub fn render(
    tunnel: &Tunnel,
    target: Target,
    options: &RenderOptions,
) -> Result<Rendered, RenderError> {
    let fail = |message: String| RenderError {
        tunnel: tunnel.name.clone(),
        target,
        message,
    };
    check_common(tunnel, options).map_err(fail)?;
    target.system().render(tunnel, options).map_err(fail)
}

/// The tunnel's ssh command line as the service runs it, naming the key and
/// known_hosts as `creds` says.
pub(crate) fn service_ssh_argv(t: &Tunnel, creds: CredentialPaths) -> Vec<String> {
    let overrides = match creds {
        CredentialPaths::AsConfigured => crate::ssh_command::PathOverrides::default(),
        CredentialPaths::SystemdCredentials => crate::ssh_command::PathOverrides {
            identity: t
                .identity
                .as_ref()
                .map(|_| format!("{}/identity", crate::escape::CREDENTIALS_DIR)),
            known_hosts: t
                .known_hosts
                .as_ref()
                .map(|_| format!("{}/known_hosts", crate::escape::CREDENTIALS_DIR)),
        },
    };
    crate::ssh_command::ssh_argv(t, &overrides)
}

/// Refusals that hold for every target: one argument must stay one line in an args file
/// and one word for every parser, and the watchdog must be an absolute path.
fn check_common(tunnel: &Tunnel, options: &RenderOptions) -> Result<(), String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    if !options.watchdog.is_absolute() {
        return Err(format!("--watchdog `{watchdog}` must be an absolute path"));
    }
    if tunnel.name.is_empty() || tunnel.name.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "the name {:?} contains a control character or `/`",
            tunnel.name
        ));
    }
    for word in service_ssh_argv(tunnel, CredentialPaths::AsConfigured) {
        if let Some(c) = word.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the ssh argument {word:?} contains the control character {c:?}; remove it from tunnels.yaml"
            ));
        }
    }
    Ok(())
}

pub(crate) fn path_str<'p>(path: &'p Path, what: &str) -> Result<&'p str, String> {
    path.to_str()
        .ok_or_else(|| format!("{what} path {path:?} is not valid UTF-8"))
}

/// The watchdog's options (everything before `--` and the ssh argv), per the contract in
/// docs/design.md.
pub fn watchdog_options(
    tunnel: &Tunnel,
    state_dir: Option<&str>,
    log_file: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "--name".to_string(),
        tunnel.name.clone(),
        "--probe-interval".to_string(),
        format_duration(tunnel.probe.interval),
        "--probe-timeout".to_string(),
        format_duration(tunnel.probe.timeout),
        "--probe-failures".to_string(),
        tunnel.probe.failures.to_string(),
        "--backoff-initial".to_string(),
        format_duration(tunnel.backoff.initial),
        "--backoff-max".to_string(),
        format_duration(tunnel.backoff.max),
    ];
    if let Some(dir) = state_dir {
        args.push("--state-dir".to_string());
        args.push(dir.to_string());
    }
    if let Some(file) = log_file {
        args.push("--log-file".to_string());
        args.push(file.to_string());
    }
    // Only when set: tunnels without them render as before.
    if let Some(file) = &tunnel.metrics_file {
        args.push("--metrics-file".to_string());
        args.push(file.to_string_lossy().into_owned());
    }
    // One word per option, so an args file keeps one argument per line.
    for word in &tunnel.on_change {
        args.push("--on-change".to_string());
        args.push(word.clone());
    }
    args
}

/// Everything after the watchdog's path: options, `--`, the ssh argv.
pub fn watchdog_args(
    tunnel: &Tunnel,
    state_dir: Option<&str>,
    log_file: Option<&str>,
    ssh: Vec<String>,
) -> Vec<String> {
    let mut args = watchdog_options(tunnel, state_dir, log_file);
    args.push("--".to_string());
    args.extend(ssh);
    args
}

/// Renders a built-in template with autoescaping off: service files are not HTML, and
/// every value was escaped for its format before it reached the context.
pub(crate) fn render_template(template: &str, context: &tera::Context) -> Result<String, String> {
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template("unit", template)
        .map_err(|e| format!("built-in template: {e}"))?;
    tera.render("unit", context)
        .map_err(|e| format!("built-in template: {e}"))
}
