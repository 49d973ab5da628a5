use std::path::Path;
use std::process::ExitCode;

use crate::cli::{InstallArgs, UninstallArgs};

pub fn run(_config: Option<&Path>, _args: InstallArgs) -> ExitCode {
    super::not_yet("install")
}

pub fn run_uninstall(_config: Option<&Path>, _args: UninstallArgs) -> ExitCode {
    super::not_yet("uninstall")
}
