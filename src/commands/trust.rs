use std::path::Path;
use std::process::ExitCode;

use crate::cli::TrustArgs;

pub fn run(_config: Option<&Path>, _args: TrustArgs) -> ExitCode {
    super::not_yet("trust")
}
