use std::path::Path;
use std::process::ExitCode;

use crate::cli::StatusArgs;

pub fn run(_config: Option<&Path>, _args: StatusArgs) -> ExitCode {
    super::not_yet("status")
}
