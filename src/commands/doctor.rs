//! `tunnelctl doctor NAME [--timeout 20s]`: run the tunnel's ssh once and explain.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::DoctorArgs;
use crate::doctor::{self, Verdict};
use crate::duration::parse_duration;
use crate::progress::Progress;

pub fn run(config: Option<&Path>, args: DoctorArgs) -> ExitCode {
    let timeout = match parse_duration(&args.timeout) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => {
            eprintln!("tunnelctl doctor: --timeout must be more than 0");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("tunnelctl doctor: --timeout {e}");
            return ExitCode::from(2);
        }
    };
    let tunnel = match crate::lookup::load_tunnel(config, &args.name, "doctor") {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut progress = Progress::new(0);
    progress.step(&format!("doctor {}", tunnel.name));
    let (argv, checks) = doctor::diagnose(&tunnel, timeout, &mut progress);
    progress.clear();
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    println!(
        "tunnelctl doctor {}: ran the tunnel's ssh command once, with -v added, for at most {}:\n  {}",
        tunnel.name,
        crate::duration::format_duration(timeout),
        argv.join(" ")
    );
    print!("{}", doctor::render(&checks, colour));
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        println!("{}: the tunnel works.", tunnel.name);
        ExitCode::SUCCESS
    } else {
        println!(
            "{}: the tunnel cannot work: {failed} problem{} (FAIL above).",
            tunnel.name,
            if failed == 1 { "" } else { "s" }
        );
        ExitCode::from(1)
    }
}
