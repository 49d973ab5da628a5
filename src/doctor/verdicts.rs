//! One ssh run as findings (pure): how far ssh got (server, host key, login), then one
//! finding per forward, then the note on the server's keepalive.

use super::finding::{Finding, Verdict};
use super::run::{LocalProbe, Run};
use super::ssh_log::SshLog;
use crate::known_hosts::SshView;
use crate::model::{Forward, Tunnel};
use crate::ssh_command::forward_spec;

/// Turns one run into verdicts (pure). `port_zero_ok` answers, per refused remote port,
/// whether the same forward on port 0 was accepted (None: not tried).
pub fn verdicts(
    tunnel: &Tunnel,
    view: &SshView,
    run: &Run,
    port_zero_ok: &dyn Fn(u16) -> Option<bool>,
) -> Vec<Finding> {
    let place = format!("{} port {}", view.hostname, view.port);
    let reached = match reach_server(&tunnel.name, view, run, &place) {
        Ok(reached) => reached,
        Err(failed) => return vec![failed],
    };
    let mut out = vec![reached];
    match log_in(tunnel, view, run, &place) {
        Ok(logged_in) => out.push(logged_in),
        Err(refused) => {
            out.push(refused);
            return out;
        }
    }
    for forward in &tunnel.forwards {
        out.push(forward_finding(&tunnel.name, run, forward, port_zero_ok));
    }
    if tunnel
        .forwards
        .iter()
        .any(|f| matches!(f, Forward::Remote { .. }))
    {
        out.push(server_keepalive_note());
    }
    out
}

/// `Ok`: the server was reached (and its host key matched); `Err`: the first thing that
/// stopped ssh before it could log in.
fn reach_server(name: &str, view: &SshView, run: &Run, place: &str) -> Result<Finding, Finding> {
    let log = &run.log;
    if log.server_busy {
        return Err(
            Finding::new(Verdict::Fail, "server", format!("{place} turned the login away before its greeting: it is busy (too many logins at once, sshd's MaxStartups) or restarting"))
                .fix("run doctor again in a moment (the watchdog retries by itself); if it keeps happening, raise MaxStartups in the server's sshd_config"),
        );
    }
    if let Some(err) = &log.connect_error {
        return Err(
            Finding::new(Verdict::Fail, "server", format!("cannot reach {place}: {err}"))
                .fix("check `host:`/`port:`, that sshd runs there, and that no firewall drops the connection (try `ssh -v` by hand)"),
        );
    }
    if let Some(refused) = host_key_refused(name, view, log) {
        return Err(refused);
    }
    if !log.connected {
        return Err(not_connected(run, place));
    }
    if !log.banner && log.authenticated.is_none() {
        return Err(Finding::new(
            Verdict::Fail,
            "server",
            format!("{place} accepted the connection but no SSH server answered (no SSH banner)"),
        )
        .fix("check `port:`: something other than sshd listens there"));
    }
    let matched = if log.host_key_ok {
        "; host key matches the pinned one"
    } else {
        ""
    };
    Ok(Finding::new(
        Verdict::Ok,
        "server",
        format!("reached {place}{matched}"),
    ))
}

/// ssh refused the server's host key: it changed, or none is pinned.
fn host_key_refused(name: &str, view: &SshView, log: &SshLog) -> Option<Finding> {
    if log.host_key_changed {
        return Some(
            Finding::new(Verdict::Fail, "host key", format!("the server's host key is NOT the pinned one for {}: ssh refused the connection", view.key_name()))
                .fix(format!("if the server was reinstalled, confirm its new fingerprint with its administrator, remove the old key (`ssh-keygen -R '{}' -f FILE`) and run `tunnelctl trust {name}`", view.key_name())),
        );
    }
    if log.host_key_unknown || log.host_key_failed {
        return Some(
            Finding::new(
                Verdict::Fail,
                "host key",
                format!(
                    "ssh refused the server: host key not pinned for {}",
                    view.key_name()
                ),
            )
            .fix(format!("run `tunnelctl trust {name}`")),
        );
    }
    None
}

/// ssh never connected: it timed out or exited first.
fn not_connected(run: &Run, place: &str) -> Finding {
    let detail = if run.timed_out {
        format!("no answer from {place} before the timeout")
    } else {
        format!("ssh exited ({}) before reaching {place}", exit_code(run))
    };
    Finding::new(Verdict::Fail, "server", detail)
        .fix("check `host:`/`port:`/`jump:` and the network; `ssh -v` by hand shows more")
}

/// `Ok`: logged in, with which method; `Err`: why not.
fn log_in(tunnel: &Tunnel, view: &SshView, run: &Run, place: &str) -> Result<Finding, Finding> {
    let log = &run.log;
    if let Some(method) = &log.authenticated {
        return Ok(Finding::new(
            Verdict::Ok,
            "login",
            format!("logged in as {} with {method}", view.user),
        ));
    }
    Err(login_refused(tunnel, view, run, place))
}

/// The login failed: the key was refused, the login timed out, or ssh exited during it.
fn login_refused(tunnel: &Tunnel, view: &SshView, run: &Run, place: &str) -> Finding {
    let log = &run.log;
    let mut detail = format!("the server refused to log in {}", view.user);
    if let Some(problem) = &log.key_problem {
        detail.push_str(&format!(" ({problem})"));
    }
    if log.permission_denied.is_some() || log.key_problem.is_some() {
        Finding::new(Verdict::Fail, "login", detail).fix(format!(
            "add the public key ({}.pub) to ~{}/.ssh/authorized_keys on the server, and check `user:`",
            tunnel.identity.as_ref().map_or("~/.ssh/id_ed25519".into(), |p| p.display().to_string()),
            view.user
        ))
    } else if run.timed_out {
        Finding::new(
            Verdict::Fail,
            "login",
            format!("connected to {place} but login did not finish before the timeout"),
        )
        .fix("raise --timeout, or look at the server's auth log")
    } else {
        Finding::new(
            Verdict::Fail,
            "login",
            format!("ssh exited ({}) during login", exit_code(run)),
        )
        .fix("run the command above with -v by hand")
    }
}

/// ssh's exit code as shown, `?` when it has none.
fn exit_code(run: &Run) -> String {
    run.exited.map_or("?".into(), |c| c.to_string())
}

fn forward_subject(forward: &Forward) -> String {
    let (flag, spec) = forward_spec(forward);
    format!("forward {flag} {spec}")
}

fn forward_finding(
    name: &str,
    run: &Run,
    forward: &Forward,
    port_zero_ok: &dyn Fn(u16) -> Option<bool>,
) -> Finding {
    let subject = forward_subject(forward);
    match forward {
        Forward::Remote { port, .. } => remote_forward(name, run, *port, subject, port_zero_ok),
        Forward::Local { port, .. } | Forward::Dynamic { port, .. } => {
            local_forward(run, *port, subject)
        }
    }
}

fn remote_forward(
    name: &str,
    run: &Run,
    port: u16,
    subject: String,
    port_zero_ok: &dyn Fn(u16) -> Option<bool>,
) -> Finding {
    let log = &run.log;
    let half_bound = run
        .remote_listeners
        .iter()
        .find(|(p, ..)| *p == port)
        .and_then(|&(_, v4, v6)| crate::watchdog::probe::half_bound(port, v4, v6));
    if let Some(what) = half_bound {
        Finding::new(Verdict::Fail, subject, what).fix(format!(
            "{}: `ss -ltnp 'sport = :{port}'` on the server names it; a user of the server who dials `localhost` may reach it instead of this tunnel",
            crate::watchdog::probe::HALF_BOUND_FIX
        ))
    } else if log.remote_ok.contains(&port) {
        Finding::new(
            Verdict::Ok,
            subject,
            format!("the server listens on its port {port} for us"),
        )
    } else if log.remote_failed.contains(&port) {
        remote_refused(name, log, port, subject, port_zero_ok)
    } else if run.exited.is_some() {
        Finding::new(
            Verdict::Warn,
            subject,
            "not tried: ssh stopped at an earlier forward",
        )
    } else {
        Finding::new(
            Verdict::Fail,
            subject,
            "no answer from the server for this forward before the timeout",
        )
        .fix("raise --timeout")
    }
}

/// The server refused a remote forward: forwarding is off, the port is taken, or the
/// server forbids it (told apart by the retry on port 0).
fn remote_refused(
    name: &str,
    log: &SshLog,
    port: u16,
    subject: String,
    port_zero_ok: &dyn Fn(u16) -> Option<bool>,
) -> Finding {
    if log.forwarding_disabled {
        return Finding::new(Verdict::Fail, subject, "the server refuses port forwarding for this login (\"Server has disabled port forwarding\")")
            .fix("on the server set `AllowTcpForwarding yes` (or `remote`) in sshd_config, and make sure the authorized_keys line has no `no-port-forwarding`/`restrict`");
    }
    match port_zero_ok(port) {
        Some(true) => Finding::new(Verdict::Fail, subject, format!("remote port {port} is already taken on the server (the server accepted the same forward on another port)"))
            .fix(format!("often a dead session of this tunnel still holds it: wait for the server to notice, and set `ClientAliveInterval 15` + `ClientAliveCountMax 3` in its sshd_config so it notices quickly; if this tunnel is running right now, its own session holds the port (see `tunnelctl status {name}`); `ss -ltnp 'sport = :{port}'` on the server shows the holder")),
        Some(false) => Finding::new(Verdict::Fail, subject, "the server refuses remote forwards for this login (also on a free port)")
            .fix("on the server allow it: `AllowTcpForwarding yes`/`remote`, `PermitListen`, and no `no-port-forwarding` in authorized_keys"),
        None => Finding::new(Verdict::Fail, subject, format!("the server refused remote port {port} (\"remote port forwarding failed\")"))
            .fix("the port is taken on the server or forwarding is not allowed there"),
    }
}

/// A local or dynamic forward: its port taken here, not set up, or what the test
/// connection saw.
fn local_forward(run: &Run, port: u16, subject: String) -> Finding {
    let log = &run.log;
    if let Some(line) = log
        .local_bind_failed
        .iter()
        .find(|l| l.contains(&format!(":{port}")))
    {
        Finding::new(Verdict::Fail, subject, format!("this machine's port {port} is taken: {line}"))
            .fix(format!("stop what listens there (`ss -ltnp 'sport = :{port}'`), or pick another `local:` port; if this tunnel is running right now, it holds the port itself"))
    } else if !log.local_listening.contains(&port) {
        Finding::new(
            Verdict::Warn,
            subject,
            "not set up: ssh stopped before this forward",
        )
    } else {
        let probe = run
            .local_probes
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, r)| r);
        local_probe_finding(port, subject, probe)
    }
}

/// A listening local forward, by what its test connection saw (None: not tried).
fn local_probe_finding(port: u16, subject: String, probe: Option<&LocalProbe>) -> Finding {
    match probe {
        Some(LocalProbe::Answered) => Finding::new(Verdict::Ok, subject, format!("listening on port {port}; a test connection got an answer through the tunnel")),
        None => Finding::new(Verdict::Warn, subject, format!("was listening on port {port}; not tried because ssh stopped")),
        Some(LocalProbe::Silent) => Finding::new(Verdict::Ok, subject, format!("listening on port {port}; the far end accepted a test connection (it sent nothing first)")),
        Some(LocalProbe::Refused(reason)) if reason.contains("administratively prohibited") => {
            Finding::new(Verdict::Fail, subject, format!("listening on port {port}, but the server refuses to open the connection ({reason})"))
                .fix("on the server set `AllowTcpForwarding yes` (or `local`) and check `PermitOpen`; remove `no-port-forwarding`/`restrict` from the authorized_keys line")
        }
        Some(LocalProbe::Refused(reason)) => Finding::new(Verdict::Fail, subject, format!("listening on port {port}, but the server cannot reach the target ({reason})"))
            .fix("check the `to:` host and port, as seen from the server"),
        Some(LocalProbe::Closed) => Finding::new(Verdict::Warn, subject, format!("listening on port {port}; the test connection was closed without data"))
            .fix("check the `to:` target is up"),
        Some(LocalProbe::NoListener(e)) => Finding::new(Verdict::Fail, subject, format!("ssh said it listens on port {port}, but connecting failed: {e}")),
    }
}

fn server_keepalive_note() -> Finding {
    Finding::new(Verdict::Note, "server keepalive", "a remote port stays taken until the server notices a dead session; tunnelctl cannot read the server's settings")
        .fix("in the server's sshd_config: `ClientAliveInterval 15` and `ClientAliveCountMax 3` (then `systemctl reload ssh`), so a reconnect finds the port free within ~45 s")
}
