//! tunnel-watchdog: runs ssh, proves every forward carries data, tells the init system.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("tunnel-watchdog: not implemented in this version; refusing to run a tunnel it cannot watch");
    ExitCode::from(2)
}
