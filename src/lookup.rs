//! The one way the first-run commands (trust, doctor, status, logs, reconnect) find a
//! tunnel: locate and load the configuration, print its warnings, pick the name.
//! Errors are printed here, so each command just returns the exit code.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};
use crate::model::Tunnel;

/// The loaded configuration, or exit code 2 after printing why.
pub fn load_config(explicit: Option<&Path>, command: &str) -> Result<Config, ExitCode> {
    let path = config::locate(explicit).map_err(|message| {
        eprintln!("tunnelctl {command}: {message}");
        ExitCode::from(2)
    })?;
    let cfg = config::load(&path).map_err(|e| {
        eprintln!("{e}");
        eprintln!("tunnelctl {command}: fix the configuration first (`tunnelctl check` lists every problem)");
        ExitCode::from(2)
    })?;
    for warning in &cfg.warnings {
        eprintln!("{warning}");
    }
    Ok(cfg)
}

/// The tunnel `name` from the configuration, or exit code 2 after printing why.
pub fn load_tunnel(explicit: Option<&Path>, name: &str, command: &str) -> Result<Tunnel, ExitCode> {
    let cfg = load_config(explicit, command)?;
    cfg.tunnel(name).cloned().map_err(|message| {
        eprintln!("tunnelctl {command}: {message}");
        ExitCode::from(2)
    })
}
