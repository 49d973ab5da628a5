//! `tunnelctl check`: validate the configuration, write nothing.

use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::CheckArgs;
use crate::model::Forward;
use crate::ssh_command::forward_spec;

pub fn run(cx: &Context, _args: CheckArgs) -> Result<ExitCode, Error> {
    let cfg = cx.config()?;
    for t in &cfg.tunnels {
        crate::outln!("{}", summary(t));
    }
    crate::outln!("{}: {} tunnel(s) OK", cfg.path.display(), cfg.tunnels.len());
    Ok(ExitCode::SUCCESS)
}

/// `NAME  user@host:port  -R 1234:localhost:22, -L 127.0.0.1:8080:intranet:80`
pub fn summary(t: &crate::model::Tunnel) -> String {
    let mut target = String::new();
    if let Some(user) = &t.user {
        target.push_str(user);
        target.push('@');
    }
    target.push_str(&t.host);
    if let Some(port) = t.port {
        target.push_str(&format!(":{port}"));
    }
    if let Some(jump) = &t.jump {
        target.push_str(&format!(" via {jump}"));
    }
    let forwards: Vec<String> = t
        .forwards
        .iter()
        .map(|f: &Forward| {
            let (flag, spec) = forward_spec(f);
            format!("{flag} {spec}")
        })
        .collect();
    format!("{}  {}  {}", t.name, target, forwards.join(", "))
}
