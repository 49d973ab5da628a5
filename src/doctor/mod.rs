//! `tunnelctl doctor`: run the tunnel's exact ssh command once, in the foreground, with
//! `-v` added, and turn what ssh says into plain-words verdicts with the fix.
//!
//! How a forward is known to be accepted without a shell on the server: OpenSSH 9.2's
//! `-v` log says `Local forwarding listening on ADDR port P.` per local/dynamic forward
//! and `remote forward success|failure for: listen [ADDR:]P, …` per remote forward,
//! then `forwarding_success: all expected forwarding replies received`. ssh prints the
//! "listening" line *before* it calls bind() and listen() (checked with strace), so a
//! local forward counts as up only once ssh has also said `Entering interactive
//! session.`, which it says after every local listener is set up. The tunnel's own
//! `ExitOnForwardFailure=yes` makes ssh exit on the first refusal. Parsing the log keeps
//! doctor to one ssh run (no extra ports); the cost is that those debug strings are
//! OpenSSH's, checked against 9.2 by the tests.
//!
//! An accepted remote forward on the server's default loopback can still be half
//! bound (another program holds the server's 127.0.0.1:PORT, sshd bound only
//! [::1]:PORT): the run's control socket opens a channel to each address on the server,
//! and the watchdog's own test (`watchdog::probe::remote_listener`) says which came
//! back to us.
//!
//! A refused remote forward has two causes the client cannot tell apart from the reply
//! alone: the port is taken on the server (often by a dead session of this very tunnel)
//! or the server forbids it. sshd says `Server has disabled port forwarding` when
//! `AllowTcpForwarding` is off; otherwise doctor asks once more for the same forward on
//! port 0 (any free port): accepted means the port itself is taken.
//!
//! The parts, in the order a diagnosis uses them: `checks.rs` (before ssh runs),
//! `holders.rs` (another ssh or autossh already holding one of the forwards),
//! `run.rs` (running ssh once), `ssh_log.rs` (reading its `-v` log), `verdicts.rs`
//! (the run as findings), `finding.rs` (what a finding is and how it is printed).

use std::time::Duration;

use crate::known_hosts;
use crate::model::{Forward, Tunnel};
use crate::progress::Progress;
use crate::ssh_command::{PathOverrides, ssh_argv};

mod checks;
mod finding;
mod holders;
mod run;
mod ssh_log;
mod verdicts;

pub use checks::{check_identity, check_pinned, check_ssh};
pub use finding::{Finding, Verdict, render};
pub use run::{LocalProbe, Run, run_ssh};
pub use ssh_log::SshLog;
pub use verdicts::verdicts;

/// All checks for one tunnel, in order. The ssh run is skipped only when ssh is missing.
pub fn diagnose(
    tunnel: &Tunnel,
    timeout: Duration,
    progress: &mut Progress,
) -> (Vec<String>, Vec<Finding>) {
    let argv = ssh_argv(tunnel, &PathOverrides::default());
    let mut checks = vec![check_ssh(&argv[0])];
    if checks[0].verdict == Verdict::Fail {
        return (argv, checks);
    }
    let view = match known_hosts::ssh_g(&argv) {
        Ok(v) => v,
        Err(e) => {
            checks.push(
                Finding::new(Verdict::Fail, "ssh options", e)
                    .fix("fix `ssh_options:` in the configuration"),
            );
            return (argv, checks);
        }
    };
    checks.push(check_identity(tunnel.identity.as_deref(), Some(&view)));
    checks.push(check_pinned(tunnel, &view));
    checks.extend(holders::check_holders(tunnel));
    let run = match run_ssh(&argv, &tunnel.forwards, timeout, progress) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Finding::new(Verdict::Fail, "ssh", e));
            return (argv, checks);
        }
    };
    let mut retried: Vec<(u16, Option<bool>)> = Vec::new();
    if !run.log.forwarding_disabled {
        for forward in &tunnel.forwards {
            if let Forward::Remote { port, .. } = forward
                && run.log.remote_failed.contains(port)
            {
                retried.push((
                    *port,
                    remote_on_port_zero(tunnel, forward, timeout, progress),
                ));
            }
        }
    }
    let lookup = |port: u16| {
        retried
            .iter()
            .find(|(p, _)| *p == port)
            .and_then(|(_, r)| *r)
    };
    let pinned_failed = checks
        .iter()
        .any(|c| c.subject == "host key" && c.verdict == Verdict::Fail);
    // "not pinned" was already said by check_pinned; ssh's refusal would say it twice.
    checks.extend(
        verdicts(tunnel, &view, &run, &lookup)
            .into_iter()
            .filter(|c| !(pinned_failed && c.subject == "host key")),
    );
    (argv, checks)
}

/// Asks the server for `forward` on port 0 (any free port): accepted means the original
/// port was merely taken.
fn remote_on_port_zero(
    tunnel: &Tunnel,
    forward: &Forward,
    timeout: Duration,
    progress: &mut Progress,
) -> Option<bool> {
    let Forward::Remote { bind, to, .. } = forward else {
        return None;
    };
    let mut probe = tunnel.clone();
    probe.forwards = vec![Forward::Remote {
        bind: bind.clone(),
        port: 0,
        to: to.clone(),
    }];
    let argv = ssh_argv(&probe, &PathOverrides::default());
    progress.message("asking for the same forward on a free port");
    let run = run_ssh(&argv, &probe.forwards, timeout, progress).ok()?;
    if run.log.remote_ok.contains(&0) {
        Some(true)
    } else if run.log.remote_failed.contains(&0) {
        Some(false)
    } else {
        None
    }
}
