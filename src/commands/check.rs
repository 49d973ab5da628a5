use std::path::Path;
use std::process::ExitCode;

use crate::cli::CheckArgs;

pub fn run(_config: Option<&Path>, _args: CheckArgs) -> ExitCode {
    super::not_yet("check")
}
