use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::render::default_watchdog;
use super::{Context, Error};
use crate::cli::ListArgs;
use crate::home::home_dir;
use crate::install::{INITTAB, Installer};
use crate::model::Tunnel;
use crate::targets::{self as render, RenderOptions, Target};

pub fn run(cx: &Context, args: ListArgs) -> Result<ExitCode, Error> {
    let config = cx.config()?;
    if args.names {
        for tunnel in &config.tunnels {
            crate::outln!("{}", tunnel.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let installer = Installer {
        root: args.root.unwrap_or_else(|| PathBuf::from("/")),
        run_tools: false,
        dry_run: true,
        no_start: true,
    };
    // The watchdog path depends on where tunnelctl ran from at install time, not on the
    // config: a file matching any usual location counts as installed.
    let mut candidates = vec![
        default_watchdog(),
        PathBuf::from("/usr/bin/tunnel-watchdog"),
    ];
    candidates.push(PathBuf::from("/usr/local/bin/tunnel-watchdog"));
    candidates.dedup();
    let home = home_dir();
    let mut rows = Vec::new();
    for tunnel in &config.tunnels {
        let places: Vec<(Target, &'static str)> = Target::ALL
            .into_iter()
            .filter_map(|target| {
                let states = candidates.iter().filter_map(|watchdog| {
                    let options = RenderOptions {
                        watchdog: watchdog.clone(),
                        home: home.clone(),
                    };
                    state(&installer, tunnel, target, &options)
                });
                // "installed" beats "differs"
                states.max().map(|s| (target, s))
            })
            .collect();
        rows.push((tunnel, places));
    }
    if args.json {
        let tunnels: Vec<serde_json::Value> = rows
            .iter()
            .map(|(t, places)| {
                serde_json::json!({
                    "name": t.name,
                    "destination": destination(t),
                    "forwards": t.forwards.iter().map(|f| {
                        let (flag, spec) = crate::ssh_command::forward_spec(f);
                        format!("{flag} {spec}")
                    }).collect::<Vec<_>>(),
                    "installed": places.iter().map(|(target, state)| serde_json::json!({
                        "target": target.as_str(),
                        "state": state,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = serde_json::json!({ "schema": 1, "tunnels": tunnels });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|(t, places)| {
            let places = if places.is_empty() {
                "not installed".to_string()
            } else {
                places
                    .iter()
                    .map(|(target, s)| format!("{target}: {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [t.name.clone(), destination(t), forwards(t), places]
        })
        .collect();
    crate::out!("{}", aligned(&HEADERS, &table));
    Ok(ExitCode::SUCCESS)
}

const HEADERS: [&str; 4] = ["NAME", "DESTINATION", "FORWARDS", "INSTALLED"];

/// Columns padded to their widest cell, two spaces apart, the header first (pure).
fn aligned(headers: &[&str; 4], rows: &[[String; 4]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header = headers.map(String::from);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
fn state(
    installer: &Installer,
    tunnel: &Tunnel,
    target: Target,
    options: &RenderOptions,
) -> Option<&'static str> {
    let rendered = render::render(tunnel, target, options).ok()?;
    // inittab and busybox share the args file and /etc/inittab: which one is installed is
    // told by the form of the line after our marker (`ID:…` or `::…`).
    if let Some(entry) = &rendered.inittab {
        let inittab = std::fs::read(installer.host(Path::new(INITTAB))).unwrap_or_default();
        let text = String::from_utf8_lossy(&inittab);
        let lines: Vec<&str> = text.lines().collect();
        let prefix = crate::targets::inittab::marker_prefix(&entry.id);
        let at = lines.iter().position(|l| l.starts_with(&prefix))?;
        let line = lines.get(at + 1).copied().unwrap_or_default();
        let form = if entry.id_field {
            format!("{}:", entry.id)
        } else {
            "::".to_string()
        };
        if !line.starts_with(&form) {
            return None;
        }
        let files_same = rendered.files.iter().all(|f| {
            std::fs::read(installer.host(&f.path)).is_ok_and(|b| b == f.contents.as_bytes())
        });
        return Some(if line == entry.line && files_same {
            "installed"
        } else {
            "differs"
        });
    }
    let mut present = 0;
    let mut same = 0;
    for file in &rendered.files {
        if let Ok(bytes) = std::fs::read(installer.host(&file.path)) {
            present += 1;
            same += usize::from(bytes == file.contents.as_bytes());
        }
    }
    let total = rendered.files.len();
    match (present, same) {
        (0, _) => None,
        (p, s) if p == total && s == total => Some("installed"),
        _ => Some("differs"),
    }
}
