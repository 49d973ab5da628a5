use std::path::Path;
use std::process::ExitCode;

use crate::cli::ListArgs;

pub fn run(_config: Option<&Path>, _args: ListArgs) -> ExitCode {
    super::not_yet("list")
}
