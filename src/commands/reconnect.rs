use std::path::Path;
use std::process::ExitCode;

use crate::cli::ReconnectArgs;

pub fn run(_config: Option<&Path>, _args: ReconnectArgs) -> ExitCode {
    super::not_yet("reconnect")
}
