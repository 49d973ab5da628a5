//! tunnelctl: declare SSH tunnels once, render a hardened service for the init
//! system the machine runs, and keep every forward proven alive by `tunnel-watchdog`.
//!
//! See `docs/design.md` for how the modules fit together.

pub mod duration;
pub mod model;
pub mod ssh_g;
pub mod ssh_stderr;
pub mod state;
pub mod watchdog;

// Everything below is the `tunnelctl` side: the watchdog binary uses none of it.
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod doctor;
pub mod escape;
pub mod home;
pub mod install;
pub mod known_hosts;
pub mod locations;
pub mod progress;
pub mod render;
pub mod ssh_command;
pub mod status;
pub mod target;
