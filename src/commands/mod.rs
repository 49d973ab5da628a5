//! One file per `tunnelctl` command. Each `run` returns the process exit code:
//! 0 success, 1 the operation failed, 2 the configuration or the arguments are wrong.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod check;
pub mod doctor;
pub mod generate;
pub mod install;
pub mod list;
pub mod logs;
pub mod reconnect;
pub mod render;
pub mod status;
pub mod trust;

pub fn run(cli: Cli) -> ExitCode {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Check(args) => check::run(config, args),
        Command::Render(args) => render::run(config, args),
        Command::Install(args) => install::run(config, args),
        Command::Uninstall(args) => install::run_uninstall(config, args),
        Command::List(args) => list::run(config, args),
        Command::Status(args) => status::run(config, args),
        Command::Trust(args) => trust::run(config, args),
        Command::Doctor(args) => doctor::run(config, args),
        Command::Logs(args) => logs::run(config, args),
        Command::Reconnect(args) => reconnect::run(config, args),
        Command::Generate(args) => generate::run(args),
    }
}
