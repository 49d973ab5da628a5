use std::path::Path;
use std::process::ExitCode;

use crate::cli::RenderArgs;

pub fn run(_config: Option<&Path>, _args: RenderArgs) -> ExitCode {
    super::not_yet("render")
}
