//! One file per `tunnelctl` command. Each `run` gets the [`Context`] (the configuration,
//! loaded at most once) and returns the exit code of a success, or an [`Error`]; this
//! file alone prints errors, as `tunnelctl CMD: …` (ripgrep's main does the same).
//! Exit codes: 0 success, 1 the operation failed, 2 the configuration or the arguments
//! are wrong; `status` adds 1 for a tunnel that is down and 3 for one degraded.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::model::Tunnel;
use crate::targets::{LogSource, Target};

pub mod apply;
pub mod check;
pub mod doctor;
pub mod generate;
pub mod import;
pub mod install;
pub mod lifecycle;
pub mod list;
pub mod logs;
pub mod metrics;
pub mod reconnect;
pub mod render;
pub mod status;
pub mod trust;

/// Why a command failed; [`run`] prints it and exits with its code.
#[derive(Debug)]
pub struct Error {
    code: u8,
    /// Printed after the command's name: `tunnelctl trust NAME: …`.
    subject: Option<String>,
    message: String,
    /// Printed first, as they are (the configuration's `FILE:LINE:COL` diagnostics).
    details: Option<String>,
}

impl Error {
    /// The configuration or the arguments are wrong (exit code 2).
    pub fn usage(message: impl Into<String>) -> Error {
        Error {
            code: 2,
            subject: None,
            message: message.into(),
            details: None,
        }
    }

    /// The operation failed (exit code 1).
    pub fn failed(message: impl Into<String>) -> Error {
        Error {
            code: 1,
            ..Error::usage(message)
        }
    }

    /// Names what failed after the command: `tunnelctl logs NAME: …`.
    pub fn about(self, subject: &str) -> Error {
        Error {
            subject: Some(subject.to_string()),
            ..self
        }
    }
}

/// What every command may need, each part made at most once.
pub struct Context {
    /// The subcommand's name, for messages.
    pub command: &'static str,
    config_path: Option<PathBuf>,
    config: OnceCell<Config>,
}

impl Context {
    pub fn new(command: &'static str, config_path: Option<&Path>) -> Context {
        Context {
            command,
            config_path: config_path.map(Path::to_path_buf),
            config: OnceCell::new(),
        }
    }

    /// The configuration, located and loaded on first use; its warnings go to stderr
    /// then, once.
    pub fn config(&self) -> Result<&Config, Error> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let path = config::locate(self.config_path.as_deref()).map_err(Error::usage)?;
        let config = config::load(&path).map_err(|e| {
            let n = e.diagnostics.len();
            let message = if self.command == "check" {
                format!(
                    "{n} problem{} in {}",
                    if n == 1 { "" } else { "s" },
                    path.display()
                )
            } else {
                "fix the configuration first (`tunnelctl check` lists every problem)".to_string()
            };
            Error {
                details: Some(e.to_string()),
                ..Error::usage(message)
            }
        })?;
        for warning in &config.warnings {
            // `trust` is what such a warning tells the user to run: not said again.
            if self.command == "trust" && warning.contains("`tunnelctl trust ") {
                continue;
            }
            crate::errln!("{warning}");
        }
        Ok(self.config.get_or_init(|| config))
    }

    /// `--config`, when given.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// The tunnel `name` from the configuration.
    pub fn tunnel(&self, name: &str) -> Result<&Tunnel, Error> {
        self.config()?.tunnel(name).map_err(Error::usage)
    }

    /// The one check of a name given to a command that works from the name alone
    /// (`status`, `metrics`, `logs`, `uninstall`, `start`, `stop`, `restart`): a tunnel
    /// of the configuration, or one that left it but is still installed for `target`
    /// under `root` or has a state file here. Anything else is a typo: exit 2 with the
    /// did-you-mean of every other command, before anything is done.
    pub fn known_name(&self, name: &str, target: Target, root: &Path) -> Result<(), Error> {
        let config = self.config();
        if let Ok(config) = config
            && config.tunnels.iter().any(|t| t.name == name)
        {
            return Ok(());
        }
        if left_behind(name, target, root) {
            return Ok(());
        }
        match config {
            Ok(config) => Err(Error::usage(format!(
                "{}; nor is a tunnel of that name installed here ({target})",
                config.tunnel(name).err().unwrap_or_default()
            ))),
            Err(e) => Err(Error::usage(format!(
                "no tunnel named `{name}` is installed here ({target}), and the configuration \
                 that would name it cannot be read: {}",
                e.message
            ))),
        }
    }
}

/// Whether something of tunnel `name` is still on this machine for `target`: a file
/// install writes, its `/etc/inittab` entry, its log file, or (on the real root) a
/// watchdog state file.
pub(crate) fn left_behind(name: &str, target: Target, root: &Path) -> bool {
    let home = crate::home::home_dir();
    let system = target.system();
    let on_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let files = system.installed_paths(name, &home);
    if files.iter().any(|f| on_root(f).symlink_metadata().is_ok()) {
        return true;
    }
    let marker = crate::targets::inittab::marker_prefix(&config::inittab_id(name));
    if system.uses_inittab()
        && std::fs::read(on_root(Path::new(crate::install::INITTAB))).is_ok_and(|t| {
            String::from_utf8_lossy(&t)
                .lines()
                .any(|l| l.starts_with(&marker))
        })
    {
        return true;
    }
    if let LogSource::File(log) = system.log(name, &home)
        && on_root(&log).is_file()
    {
        return true;
    }
    if root != Path::new("/") {
        return false;
    }
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    crate::targets::state_dirs(target, name, &home, uid, &env)
        .iter()
        .any(|d| d.join("state").is_file())
}

pub fn run(cli: Cli) -> ExitCode {
    let command = match &cli.command {
        Command::Check(_) => "check",
        Command::Render(_) => "render",
        Command::Install(_) => "install",
        Command::Uninstall(_) => "uninstall",
        Command::Apply(_) => "apply",
        Command::List(_) => "list",
        Command::Status(_) => "status",
        Command::Metrics(_) => "metrics",
        Command::Trust(_) => "trust",
        Command::Doctor(_) => "doctor",
        Command::Logs(_) => "logs",
        Command::Reconnect(_) => "reconnect",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Restart(_) => "restart",
        Command::Import(_) => "import",
        Command::Generate(_) => "generate",
    };
    if let Some(dirs) = cli.command.supervision() {
        crate::targets::set_supervision_dirs(crate::targets::SupervisionDirs {
            s6_scan: dirs.s6_scan_dir.clone(),
            runit_service: dirs.runit_service_dir.clone(),
        });
    }
    let cx = Context::new(command, cli.config.as_deref());
    let result = match cli.command {
        Command::Check(args) => check::run(&cx, args),
        Command::Render(args) => render::run(&cx, args),
        Command::Install(args) => install::run(&cx, args),
        Command::Apply(args) => apply::run(&cx, args),
        // These work from the name alone, so a tunnel gone from the config still can.
        Command::Uninstall(args) => install::run_uninstall(&cx, args),
        Command::Logs(args) => logs::run(&cx, args),
        Command::Reconnect(args) => reconnect::run(args),
        Command::Start(args) => lifecycle::run(&cx, args, crate::targets::Lifecycle::Start),
        Command::Stop(args) => lifecycle::run(&cx, args, crate::targets::Lifecycle::Stop),
        Command::Restart(args) => lifecycle::run(&cx, args, crate::targets::Lifecycle::Restart),
        Command::Import(args) => import::run(&cx, args),
        Command::List(args) => list::run(&cx, args),
        Command::Status(args) => status::run(&cx, args),
        Command::Metrics(args) => metrics::run(&cx, args),
        Command::Trust(args) => trust::run(&cx, args),
        Command::Doctor(args) => doctor::run(&cx, args),
        Command::Generate(args) => generate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(details) = &e.details {
                crate::errln!("{details}");
            }
            match &e.subject {
                Some(subject) => crate::errln!("tunnelctl {command} {subject}: {}", e.message),
                None => crate::errln!("tunnelctl {command}: {}", e.message),
            }
            ExitCode::from(e.code)
        }
    }
}
