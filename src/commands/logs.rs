use std::path::Path;
use std::process::ExitCode;

use crate::cli::LogsArgs;

pub fn run(_config: Option<&Path>, _args: LogsArgs) -> ExitCode {
    super::not_yet("logs")
}
