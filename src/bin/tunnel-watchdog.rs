use std::process::ExitCode;

fn main() -> ExitCode {
    tunnelctl::watchdog::main()
}
