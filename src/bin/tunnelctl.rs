use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tunnelctl::commands::run(tunnelctl::cli::Cli::parse())
}
