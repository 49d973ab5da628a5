use std::path::Path;
use std::process::ExitCode;

use crate::cli::DoctorArgs;

pub fn run(_config: Option<&Path>, _args: DoctorArgs) -> ExitCode {
    super::not_yet("doctor")
}
