//! `tunnelctl doctor NAME [--timeout 20s]`: run the tunnel's ssh once and explain.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::DoctorArgs;
use crate::doctor::{self, Verdict};
use crate::duration::parse_duration;
use crate::progress::Progress;

pub fn run(cx: &Context, args: DoctorArgs) -> Result<ExitCode, Error> {
    let timeout = match parse_duration(&args.timeout) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => return Err(Error::usage("--timeout must be more than 0")),
        Err(e) => return Err(Error::usage(format!("--timeout {e}"))),
    };
    let tunnel = cx.tunnel(&args.name)?;
    let mut progress = Progress::new(0);
    progress.step(&format!("doctor {}", tunnel.name));
    let (argv, checks) = doctor::diagnose(tunnel, timeout, &mut progress);
    progress.clear();
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    crate::outln!(
        "tunnelctl doctor {}: ran the tunnel's ssh command once, with -v added, for at most {}:\n  {}",
        tunnel.name,
        crate::duration::format_duration(timeout),
        argv.join(" ")
    );
    crate::out!("{}", doctor::render(&checks, colour));
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        crate::outln!("{}: the tunnel works.", tunnel.name);
        Ok(ExitCode::SUCCESS)
    } else {
        crate::outln!(
            "{}: the tunnel cannot work: {failed} problem{} (FAIL above).",
            tunnel.name,
            if failed == 1 { "" } else { "s" }
        );
        Ok(ExitCode::from(1))
    }
}
