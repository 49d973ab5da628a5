use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::render::{default_watchdog, home_dir, load_config};
use crate::cli::ListArgs;
use crate::install::{INITTAB, Installer};
use crate::model::Tunnel;
use crate::render::{self, RenderOptions};
use crate::target::Target;

pub fn run(config: Option<&Path>, args: ListArgs) -> ExitCode {
    let config = match load_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let installer = Installer {
        root: args.root.unwrap_or_else(|| PathBuf::from("/")),
        run_tools: false,
        dry_run: true,
        no_start: true,
    };
    // The watchdog path depends on where tunnelctl ran from at install time, not on the
    // config: a file matching any usual location counts as installed.
    let mut candidates = vec![default_watchdog(), PathBuf::from("/usr/bin/tunnel-watchdog")];
    candidates.push(PathBuf::from("/usr/local/bin/tunnel-watchdog"));
    candidates.dedup();
    let home = home_dir();
    for tunnel in &config.tunnels {
        let places: Vec<String> = Target::ALL
            .iter()
            .filter_map(|&target| {
                let states = candidates.iter().filter_map(|watchdog| {
                    let options = RenderOptions { watchdog: watchdog.clone(), home: home.clone() };
                    state(&installer, tunnel, target, &options)
                });
                // "installed" beats "differs"
                states.max().map(|s| format!("{target}: {s}"))
            })
            .collect();
        let places = if places.is_empty() { "not installed".to_string() } else { places.join(", ") };
        println!("{}\t{}\t{}\t{}", tunnel.name, destination(tunnel), forwards(tunnel), places);
    }
    ExitCode::SUCCESS
}

fn destination(t: &Tunnel) -> String {
    let user = t.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
    let port = t.port.map(|p| format!(":{p}")).unwrap_or_default();
    format!("{user}{}{port}", t.host)
}

fn forwards(t: &Tunnel) -> String {
    t.forwards
        .iter()
        .map(|f| {
            let (flag, spec) = crate::ssh_command::forward_spec(f);
            format!("{flag} {spec}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "installed" when every file (and the inittab entry) is as rendered now, "differs" when
/// some of it is there but not as rendered, None when nothing is there.
fn state(installer: &Installer, tunnel: &Tunnel, target: Target, options: &RenderOptions) -> Option<&'static str> {
    let rendered = render::render(tunnel, target, options).ok()?;
    let mut present = 0;
    let mut same = 0;
    for file in &rendered.files {
        if let Ok(bytes) = std::fs::read(installer.host(&file.path)) {
            present += 1;
            same += usize::from(bytes == file.contents.as_bytes());
        }
    }
    let mut total = rendered.files.len();
    if let Some(entry) = &rendered.inittab {
        total += 1;
        let inittab = std::fs::read(installer.host(Path::new(INITTAB))).unwrap_or_default();
        let text = String::from_utf8_lossy(&inittab);
        if text.lines().any(|l| l.starts_with(&crate::render::inittab::marker_prefix(&entry.id))) {
            present += 1;
            same += usize::from(text.lines().any(|l| l == entry.line));
        }
    }
    match (present, same) {
        (0, _) => None,
        (p, s) if p == total && s == total => Some("installed"),
        _ => Some("differs"),
    }
}
