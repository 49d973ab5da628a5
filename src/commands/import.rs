//! `tunnelctl import`: the tunnels people already run (an ssh or autossh command line,
//! a systemd unit, an inittab line, ssh_config Host blocks) as tunnels.yaml entries,
//! checked exactly as a hand-written file is; printed, or added to the configuration
//! file with `--write`. The parsing is in `crate::import`; this file reads the files
//! (under `--root`) and writes the configuration.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::{ImportArgs, ScanWhere};
use crate::config;
use crate::handover;
use crate::home::home_dir;
use crate::import::{self, Found, ImportError, inittab, ssh_config, systemd_unit, yaml_out};
use crate::targets::Target;

pub fn run(cx: &Context, args: ImportArgs) -> Result<ExitCode, Error> {
    if let Some(name) = &args.undo {
        return undo(name);
    }
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let home = home_dir();
    let mut found = gather(&args, &root, &home)?;
    if found.is_empty() {
        return Err(Error::usage(nothing_found(&args)));
    }
    let path = config::locate_for_writing(cx.config_path()).map_err(Error::usage)?;
    let existing = read_existing(&path)?;
    let taken: Vec<String> = match &existing {
        Some(text) => config::load_str(text, &path, &home)
            .map(|c| c.tunnels.into_iter().map(|t| t.name).collect())
            .map_err(|e| Error {
                details: Some(e.to_string()),
                ..Error::usage(
                    "fix the configuration first (`tunnelctl check` lists every problem); \
                         nothing was written",
                )
            })
            .or_else(|e| {
                if args.write || args.replace {
                    Err(e)
                } else {
                    Ok(Vec::new())
                }
            })?,
        None => Vec::new(),
    };
    if let Some(name) = &args.name {
        if found.len() > 1 {
            return Err(Error::usage(format!(
                "--name names one tunnel, but {} were found ({}); import them one at a time",
                found.len(),
                found
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        found[0].name = name.clone();
    }
    import::unique_names(&mut found, &[]);
    for f in &found {
        if taken.contains(&f.name) {
            let message = format!(
                "{} already has a tunnel named `{}`; choose another with --name",
                path.display(),
                f.name
            );
            if args.write {
                return Err(Error::usage(format!("{message} (nothing was written)")));
            }
            if !args.replace {
                eprintln!("tunnelctl import: {message}");
            }
        }
    }
    // Each tunnel checked alone first, so a problem is reported against its source.
    let (alone, parts) = yaml_out::new_file(&found);
    checked(&alone, &parts, Path::new("(imported)"), &home)?;
    for f in &found {
        for note in &f.notes {
            eprintln!(
                "tunnelctl import: {}: not carried over: {}: {}",
                f.name, note.part, note.why
            );
        }
    }
    if !args.write && !args.replace {
        let mut out = String::from("tunnels:\n");
        for (i, f) in found.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&yaml_out::entry(f, 2, 2).text());
        }
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.replace {
        return replace(&args, &found, &path, existing, &taken, &alone);
    }
    write(&path, existing, &found, &alone, &home)?;
    println!(
        "next: tunnelctl trust {0}; tunnelctl doctor {0}; tunnelctl install {0}",
        found[0].name
    );
    Ok(ExitCode::SUCCESS)
}

/// Adds `found` to the configuration at `path` (its text `existing`), or creates it
/// with `alone` (the new file's text).
fn write(
    path: &Path,
    existing: Option<String>,
    found: &[Found],
    alone: &str,
    home: &Path,
) -> Result<(), Error> {
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    match existing {
        Some(text) => {
            let (merged, parts) = yaml_out::add(&text, found).map_err(|why| {
                Error::usage(format!(
                    "cannot add to {}: {why}; nothing was written",
                    path.display()
                ))
            })?;
            checked(&merged, &parts, path, home)?;
            replace_file(path, merged.as_bytes()).map_err(Error::failed)?;
            println!("added {} to {}", names.join(", "), path.display());
        }
        None => {
            create_file(path, alone.as_bytes()).map_err(Error::failed)?;
            println!("created {} with {}", path.display(), names.join(", "));
        }
    }
    Ok(())
}

/// The configuration as it was before `--replace` wrote it: its bytes, or none.
enum Before {
    Untouched,
    Bytes(String),
    Absent,
}

impl Before {
    fn restore(&self, path: &Path) {
        let result = match self {
            Before::Untouched => Ok(()),
            Before::Bytes(text) => replace_file(path, text.as_bytes()),
            Before::Absent => std::fs::remove_file(path).map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            eprintln!("tunnelctl import: restoring {}: {e}", path.display());
        }
    }
}

/// `--replace`: see `crate::handover`.
fn replace(
    args: &ImportArgs,
    found: &[Found],
    path: &Path,
    existing: Option<String>,
    taken: &[String],
    alone: &str,
) -> Result<ExitCode, Error> {
    let [f] = found else {
        return Err(Error::usage(format!(
            "--replace hands over one tunnel, but {} were found; pick one with --systemd UNIT (or --pid)",
            found.len()
        )));
    };
    let home = home_dir();
    let root = PathBuf::from("/");
    let target = target(args.target, &root);
    let bound = crate::duration::parse_duration(&args.handover_timeout)
        .map_err(|e| Error::usage(format!("--handover-timeout: {e}")))?;
    let old = old_service(args, f, target)?;
    let name = f.name.as_str();
    // A tunnel of that name already in the configuration (imported and reviewed
    // before) is the one handed over to; else the import is added now.
    let before = if taken.iter().any(|t| t == name) {
        println!("using tunnel `{name}` as it is in {}", path.display());
        Before::Untouched
    } else {
        let before = match &existing {
            Some(text) => Before::Bytes(text.clone()),
            None => Before::Absent,
        };
        write(path, existing, found, alone, &home)?;
        before
    };
    let config = config::load(path).map_err(|e| Error {
        details: Some(e.to_string()),
        ..Error::usage("the configuration does not pass the check")
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            before.restore(path);
            return Err(e);
        }
    };
    let tunnel = config.tunnel(name).map_err(Error::usage)?;
    let options = crate::targets::RenderOptions {
        watchdog: args
            .watchdog
            .clone()
            .unwrap_or_else(super::render::default_watchdog),
        home: home.clone(),
    };
    let installer = |no_start| crate::install::Installer {
        root: root.clone(),
        run_tools: true,
        dry_run: false,
        no_start,
    };
    let abort = |e: String| {
        before.restore(path);
        Error::failed(format!("{name}: {e}; nothing was stopped"))
    };
    let rendered =
        crate::targets::render(tunnel, target, &options).map_err(|e| abort(e.to_string()))?;
    let mut out = crate::output::Lenient;
    installer(true)
        .install_all(target, &[(name, &rendered)], &mut out)
        .map_err(abort)?;
    let take_back = |why: String| -> Error {
        let mut out = crate::output::Lenient;
        if let Err(e) = installer(false).uninstall(name, target, &home, &mut out) {
            eprintln!("tunnelctl import: removing tunnelctl's {name}: {e}");
        }
        handover::stop_leftover_watchdog(name, target);
        let restored = old.restore(name);
        handover::remove_record(name, target);
        before.restore(path);
        match restored {
            Ok(()) => Error::failed(format!(
                "{why}; tunnelctl's {name} was stopped and removed, and {} runs again as it was",
                old.describe()
            )),
            Err(e) => Error::failed(format!(
                "{why}; tunnelctl's {name} was removed, but starting {} again failed: {e}",
                old.describe()
            )),
        }
    };
    handover::write_record(name, &old, target)
        .map_err(|e| take_back(format!("recording the old service: {e}")))?;
    let switch = std::time::Instant::now();
    old.stop(name)
        .map_err(|e| take_back(format!("stopping {}: {e}", old.describe())))?;
    handover::start_new(name, target, &old)
        .map_err(|e| take_back(format!("starting {name}: {e}")))?;
    match handover::wait_proven(name, target, bound) {
        Ok(_) => {
            if let Err(e) = old.retire() {
                eprintln!("tunnelctl import: {e}");
            }
            println!(
                "handed over: {} stopped, tunnelctl's {name} proven {:.1} s later; undo with `tunnelctl import --undo {name}`",
                old.describe(),
                switch.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(last) => Err(take_back(format!(
            "tunnelctl's {name} was not proven within {} (last seen: {last})",
            args.handover_timeout
        ))),
    }
}

/// The service `--replace` stops: the unit of --systemd, the inittab line, or --pid.
fn old_service(args: &ImportArgs, f: &Found, target: Target) -> Result<handover::Old, Error> {
    if let Some(unit) = &args.systemd {
        let unit = units::unit_name(unit);
        let argv =
            crate::targets::systemd::systemctl(target.system().per_user(), &["is-enabled", &unit]);
        let enabled = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "enabled");
        return Ok(handover::Old::Unit {
            target,
            unit,
            enabled,
        });
    }
    if let Some(line) = &f.inittab_line {
        return Ok(handover::Old::InittabLine {
            target,
            line: line.clone(),
        });
    }
    let Some(pid) = args.pid else {
        return Err(Error::usage(
            "--replace needs to know what runs the tunnel now: name the running ssh or autossh with --pid PID",
        ));
    };
    let old = handover::Old::process(pid).map_err(Error::usage)?;
    if let handover::Old::Process { argv, .. } = &old
        && !argv.first().is_some_and(|p| import::is_tunnel_program(p))
    {
        return Err(Error::usage(format!(
            "process {pid} runs `{}`, not ssh or autossh; nothing was changed",
            argv.join(" ")
        )));
    }
    Ok(old)
}

/// `--undo NAME`: tunnelctl's tunnel uninstalled, what it replaced started again.
fn undo(name: &str) -> Result<ExitCode, Error> {
    let (old, target) = handover::read_record(name).map_err(Error::usage)?;
    let home = home_dir();
    let installer = crate::install::Installer {
        root: PathBuf::from("/"),
        run_tools: true,
        dry_run: false,
        no_start: false,
    };
    let mut out = crate::output::Lenient;
    installer
        .uninstall(name, target, &home, &mut out)
        .map_err(|e| {
            Error::failed(format!(
                "{name}: {e}; {} was not started again",
                old.describe()
            ))
        })?;
    handover::stop_leftover_watchdog(name, target);
    old.restore(name)
        .map_err(|e| Error::failed(format!("starting {} again: {e}", old.describe())))?;
    handover::remove_record(name, target);
    println!(
        "undone: tunnelctl's {name} is uninstalled and {} runs again (the tunnel stays in the configuration)",
        old.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn nothing_found(args: &ImportArgs) -> String {
    if !args.command.is_empty() {
        "the command runs neither ssh nor autossh; give the command after `--`, e.g. \
         `tunnelctl import -- ssh -N -R 1234:localhost:22 me@server`"
            .to_string()
    } else if let Some(unit) = &args.systemd {
        format!("{unit} does not run ssh or autossh")
    } else if args.scan == Some(ScanWhere::Systemd) {
        "no systemd unit runs ssh or autossh (looked at the unit directories of --target)".into()
    } else if args.scan == Some(ScanWhere::Inittab) {
        "no respawn line of /etc/inittab runs ssh or autossh".into()
    } else {
        match &args.host {
            Some(host) => format!("the ssh_config file has no `Host {host}` with a forward"),
            None => "the ssh_config file has no Host block with LocalForward, RemoteForward or \
                     DynamicForward"
                .into(),
        }
    }
}

/// `text` through the configuration check; a problem on a line that came from a source
/// is reported as `SOURCE: `PART`: what is wrong`.
fn checked(text: &str, parts: &[String], path: &Path, home: &Path) -> Result<(), Error> {
    match config::load_str(text, path, home) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("{w}");
            }
            Ok(())
        }
        Err(e) => {
            let lines: Vec<&str> = text.lines().collect();
            let mut details = Vec::new();
            for d in &e.diagnostics {
                let from = d
                    .line
                    .checked_sub(1)
                    .and_then(|i| parts.get(i))
                    .filter(|p| !p.is_empty());
                details.push(match from {
                    Some(from) => {
                        let mut m = format!("{from}: {}", d.message);
                        if let Some(hint) = &d.hint {
                            m.push_str(&format!("\n  hint: {hint}"));
                        }
                        m
                    }
                    None => d.render_in(path, &lines, false),
                });
            }
            Err(Error {
                details: Some(details.join("\n")),
                ..Error::usage(
                    "the import does not pass the configuration check; nothing was written",
                )
            })
        }
    }
}

fn read_existing(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::failed(format!("reading {}: {e}", path.display()))),
    }
}

/// The configuration replaced atomically (temp file beside it, fsync, rename), with the
/// mode it had; through a symlink, the file it points to is replaced (the link is the
/// user's choice).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = std::fs::metadata(&real)
        .map_err(|e| format!("{}: {e}", real.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let name = real.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.tunnelctl-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, &real)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("writing {}: {e}", real.display())
    })
}

/// A new configuration file where `check` looks for it: root's in /etc/tunnelctl (0644,
/// the directory 0755), a user's under ~/.config/tunnelctl (0600, the directory 0700).
fn create_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    let (dir_mode, file_mode) = if root { (0o755, 0o644) } else { (0o700, 0o600) };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode)
            .open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(file_mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| format!("creating {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Reading the sources

fn gather(args: &ImportArgs, root: &Path, home: &Path) -> Result<Vec<Found>, Error> {
    let fail = |source: &str, e: ImportError| Error::usage(format!("{source}: {e}"));
    if !args.command.is_empty() {
        let source = "the command line";
        let commands = import::tunnel_commands(&args.command).map_err(|e| fail(source, e))?;
        return import::import_commands(&commands, source).map_err(|e| fail(source, e));
    }
    if let Some(unit) = &args.systemd {
        let target = target(args.target, root);
        return from_unit(unit, target, root, home);
    }
    match args.scan {
        Some(ScanWhere::Systemd) => {
            let target = target(args.target, root);
            let mut out = Vec::new();
            for unit in units::scan(target, root, home) {
                match from_unit(&unit, target, root, home) {
                    Ok(found) => out.extend(found),
                    // Units that run something else are not this command's business,
                    // even when systemd itself would not accept them.
                    Err(e)
                        if e.message.contains("does not run ssh") || !e.message.contains("ssh") => {
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        }
        Some(ScanWhere::Inittab) => from_inittab(root),
        None => from_ssh_config(args, home),
    }
}

fn target(explicit: Option<Target>, root: &Path) -> Target {
    crate::targets::choose(explicit, root).0
}

/// `path` under `root` (a test's temporary root, or `/`).
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("reading {}: {e}", path.display())))
}

fn from_unit(unit: &str, target: Target, root: &Path, home: &Path) -> Result<Vec<Found>, Error> {
    let files = units::files(unit, target, root, home)?;
    let name = units::unit_name(unit);
    let spec = units::specifiers(&name, target, home);
    let service = systemd_unit::service(&files, &spec)
        .map_err(|e| Error::usage(format!("unit {name}: {e}")))?;
    let source = format!("unit {name} ({})", service.exec_start_at);
    // Decided before the environment is expanded: a unit that runs something else may
    // name variables its (missing) environment file would set, which is not our error.
    let mentions_ssh = service.exec_start.iter().any(|w| {
        w.split(|c: char| c.is_whitespace() || "/;&|'\"".contains(c))
            .any(|t| t == "ssh" || t == "autossh")
    });
    if !mentions_ssh {
        return Err(Error::usage(format!("{name} does not run ssh or autossh")));
    }
    let mut env = service.environment.clone();
    for (file, optional) in &service.environment_files {
        match std::fs::read_to_string(under(root, Path::new(file))) {
            Ok(text) => env.extend(systemd_unit::environment_file(&text)),
            Err(_) if *optional => {}
            Err(e) => {
                return Err(Error::usage(format!(
                    "{source}: EnvironmentFile={file} cannot be read: {e}"
                )));
            }
        }
    }
    let argv = if service.expand {
        systemd_unit::expand(&service.exec_start, &env)
            .map_err(|e| Error::usage(format!("{source}: {e}")))?
    } else {
        service.exec_start.clone()
    };
    let fail = |e: ImportError| Error::usage(format!("{source}: {e}"));
    let commands = import::tunnel_commands(&argv).map_err(fail)?;
    if commands.is_empty() {
        return Err(Error::usage(format!("{name} does not run ssh or autossh")));
    }
    let mut found = import::import_commands(&commands, &source).map_err(fail)?;
    let env_autossh: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("AUTOSSH_"))
        .collect();
    for f in &mut found {
        f.name = import::derive_name(name.trim_end_matches(".service"));
        if f.command.starts_with("autossh") || f.command.contains("/autossh") {
            for (k, v) in &env_autossh {
                let why = "autossh's setting; tunnel-watchdog supervises and probes ssh itself";
                f.note(format!("Environment={k}={v}"), why);
            }
        }
        if let Some(user) = &service.user {
            f.note(
                format!("User={user}"),
                "the unit ran ssh as this user; install the tunnel from that user's \
                 configuration (or set `identity:` to the key it used)",
            );
        }
    }
    Ok(found)
}

fn from_inittab(root: &Path) -> Result<Vec<Found>, Error> {
    let path = under(root, Path::new(crate::install::INITTAB));
    let text = read(&path)?;
    let mut out = Vec::new();
    for entry in inittab::entries(&text) {
        if !inittab::runs_tunnel(&entry) {
            continue;
        }
        let source = format!("{} line {}", crate::install::INITTAB, entry.line);
        let fail = |e: ImportError| Error::usage(format!("{source}: {e}"));
        let commands = inittab::commands(&entry.process)
            .map_err(|m| fail(ImportError::new(entry.process.trim(), m)))?;
        let commands: Vec<_> = commands
            .into_iter()
            .filter(|c| import::is_tunnel_program(&c.words[0]))
            .collect();
        for mut f in import::import_commands(&commands, &source).map_err(fail)? {
            if !entry.id.is_empty() {
                f.name = import::derive_name(&entry.id);
            }
            f.inittab_line = Some(entry.text.clone());
            out.push(f);
        }
    }
    Ok(out)
}

fn from_ssh_config(args: &ImportArgs, home: &Path) -> Result<Vec<Found>, Error> {
    let given = args.ssh_config.as_deref().unwrap_or("~/.ssh/config");
    let path = match given.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(given),
    };
    let text = read(&path)?;
    Ok(ssh_config::tunnels(
        &text,
        &path.display().to_string(),
        args.host.as_deref(),
    ))
}

/// Where systemd keeps units, per target: the only systemd-specific knowledge here.
mod units {
    use std::path::{Path, PathBuf};

    use super::{Error, under};
    use crate::import::systemd_unit::Specifiers;
    use crate::targets::Target;

    /// `NAME` as a unit name (`.service` added when it has no suffix).
    pub(super) fn unit_name(unit: &str) -> String {
        let base = unit.rsplit('/').next().unwrap_or(unit);
        if base.contains('.') {
            base.to_string()
        } else {
            format!("{base}.service")
        }
    }

    /// The unit directories of a target, most important first.
    fn dirs(target: Target, root: &Path, home: &Path) -> Vec<PathBuf> {
        crate::targets::systemd::unit_search_path(target.system().per_user(), home)
            .iter()
            .map(|p| under(root, p))
            .collect()
    }

    /// The unit file (the instance's own, else its template's) and its drop-ins.
    pub(super) fn files(
        unit: &str,
        target: Target,
        root: &Path,
        home: &Path,
    ) -> Result<Vec<(String, String)>, Error> {
        let read = |p: &Path| super::read(p).map(|t| (p.display().to_string(), t));
        if unit.contains('/') {
            return Ok(vec![read(Path::new(unit))?]);
        }
        let name = unit_name(unit);
        let template = name.split_once('@').map(|(prefix, rest)| {
            format!("{prefix}@.{}", rest.rsplit('.').next().unwrap_or("service"))
        });
        let dirs = dirs(target, root, home);
        let mut main = None;
        for candidate in std::iter::once(&name).chain(template.iter()) {
            if let Some(dir) = dirs.iter().find(|d| d.join(candidate).is_file()) {
                main = Some(read(&dir.join(candidate))?);
                break;
            }
        }
        let Some(main) = main else {
            return Err(Error::usage(format!(
                "no unit {name} in {} (give a unit file's path, or --target systemd-user for a user's unit)",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut out = vec![main];
        for d in template.iter().chain(std::iter::once(&name)) {
            for dir in dirs.iter().rev() {
                let Ok(entries) = std::fs::read_dir(dir.join(format!("{d}.d"))) else {
                    continue;
                };
                let mut confs: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                confs.sort();
                for c in confs {
                    out.push(read(&c)?);
                }
            }
        }
        Ok(out)
    }

    /// Every service unit of the target's directories, and the instances enabled from
    /// templates (`*.wants/NAME@INSTANCE.service`).
    pub(super) fn scan(target: Target, root: &Path, home: &Path) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for dir in dirs(target, root, home) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<(String, bool)> = Vec::new();
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                if name.ends_with(".wants") && path.is_dir() {
                    for w in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                        let n = w.file_name().to_string_lossy().into_owned();
                        if n.ends_with(".service") && !n.contains("@.") {
                            names.push((n, true));
                        }
                    }
                } else if name.ends_with(".service") && !name.contains("@.") && path.is_file() {
                    names.push((name, false));
                }
            }
            names.sort();
            for (n, _) in names {
                if !out.contains(&n) && !n.starts_with("tunnel-") {
                    out.push(n);
                }
            }
        }
        out
    }

    pub(super) fn specifiers(unit: &str, target: Target, home: &Path) -> Specifiers {
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let user_manager = target.system().per_user();
        Specifiers {
            unit: unit.to_string(),
            home: home.display().to_string(),
            user,
            uid: uid.to_string(),
            hostname,
            runtime_dir: if user_manager {
                std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| format!("/run/user/{uid}"))
            } else {
                "/run".into()
            },
            config_dir: if user_manager {
                home.join(".config").display().to_string()
            } else {
                "/etc".into()
            },
        }
    }
}
