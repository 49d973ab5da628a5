//! Putting rendered files in place and taking them away again: atomic writes, diffs,
//! `/etc/inittab` editing and the init tools. Every path goes through [`Installer::host`]
//! (so `--root` redirects all of it) and every init tool install and uninstall run
//! through [`run_tool`] (which `--root` never reaches).
//!
//! What uninstall removes: the files install wrote for the tunnel, our marker and entry
//! line in `/etc/inittab`, and afterwards directories that are empty *and* lie inside a
//! directory named `tunnelctl` (`/etc/tunnelctl/run`, `/var/log/tunnelctl`, …). Standard
//! directories such as `/etc/systemd/system` are never removed, even when install
//! created them under an empty `--root`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::render::{InittabEntry, Rendered, inittab, launchd};
use crate::safe_fs;
use crate::target::Target;

pub const INITTAB: &str = "/etc/inittab";

mod diff;
mod inittab_text;
mod launchctl;
pub use diff::*;
pub use inittab_text::*;
pub use launchctl::*;

#[derive(Clone, Debug)]
pub struct Installer {
    /// `/` normally; `--root DIR` otherwise.
    pub root: PathBuf,
    /// False under `--root`: nothing is run, only files are written.
    pub run_tools: bool,
    pub dry_run: bool,
    pub no_start: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything already as rendered; nothing written, nothing run.
    Unchanged,
    /// Nothing of the tunnel was installed before.
    Installed,
    Updated,
    /// `--dry-run`: would have installed or updated.
    WouldChange,
    Removed,
    NotInstalled,
}

/// Installed files and inittab are read whole; nothing we write comes near this.
const MAX_READ: u64 = 64 * 1024 * 1024;

/// Beside /etc/inittab; taken around every read-modify-write of it (and removed again).
pub const INITTAB_LOCK: &str = ".inittab.tunnelctl.lock";

/// Above this many files, one `syncfs` replaces an fsync per file.
const SYNCFS_FROM: usize = 8;

/// One file's planned change.
struct FileChange {
    /// Index of the tunnel it belongs to.
    owner: usize,
    dir: PathBuf,
    name: std::ffi::OsString,
    shown_path: PathBuf,
    old: Option<Vec<u8>>,
    new: Vec<u8>,
    mode: u32,
}

/// What one `install` plans for one tunnel.
struct TunnelPlan {
    fresh: bool,
    changed: bool,
}

/// Directories opened (and checked) once per run, by their path on the target, and the
/// check they get.
struct Dirs(
    std::collections::HashMap<PathBuf, safe_fs::Dir>,
    safe_fs::Trust,
);

impl Dirs {
    /// Root runs what a system target installs: its directories are root's, closed to
    /// others. A per-user target's files are run by that user's manager, so its home may
    /// lie in root's sticky /tmp (tests do).
    fn for_target(target: Target) -> Dirs {
        let trust = match target {
            Target::SystemdUser | Target::LaunchdAgent => safe_fs::Trust::Private,
            _ => safe_fs::Trust::Install,
        };
        Dirs(std::collections::HashMap::new(), trust)
    }
}

impl Installer {
    /// The place a target path lives on this host (under `--root` when given).
    pub fn host(&self, path: &Path) -> PathBuf {
        self.root.join(relative(path))
    }

    /// Opens a target directory below the root, checked as a place root reads from: only
    /// the part inside `--root` is checked (the root itself is the caller's to vouch for;
    /// tests use temporary roots under the world-writable /tmp).
    fn open_dir(
        &self,
        dir: &Path,
        create: bool,
        trust: safe_fs::Trust,
    ) -> Result<safe_fs::Dir, String> {
        if create && !self.root.exists() {
            // A new --root: the caller's own directory, made as asked.
            fs::create_dir_all(&self.root)
                .map_err(|e| format!("creating {}: {e}", self.root.display()))?;
        }
        safe_fs::open_dir(&self.root, &relative(dir), create.then_some(0o755), trust)
    }

    /// The directory, or None when it does not exist yet (nothing in it to read).
    fn existing_dir<'a>(
        &self,
        dirs: &'a mut Dirs,
        dir: &Path,
    ) -> Result<Option<&'a safe_fs::Dir>, String> {
        let trust = dirs.1;
        if !dirs.0.contains_key(dir) {
            match fs::symlink_metadata(self.host(dir)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                _ => {}
            }
            let opened = self.open_dir(dir, false, trust)?;
            if !self.dry_run {
                opened.clean_stale_temps();
            }
            dirs.0.insert(dir.to_path_buf(), opened);
        }
        Ok(dirs.0.get(dir))
    }

    fn created_dir<'a>(&self, dirs: &'a mut Dirs, dir: &Path) -> Result<&'a safe_fs::Dir, String> {
        if !dirs.0.contains_key(dir) {
            let opened = self.open_dir(dir, true, dirs.1)?;
            opened.clean_stale_temps();
            dirs.0.insert(dir.to_path_buf(), opened);
        }
        Ok(&dirs.0[dir])
    }

    /// Installs (or updates) one rendered tunnel. Diffs go to `out`.
    pub fn install(
        &self,
        name: &str,
        target: Target,
        rendered: &Rendered,
        out: &mut dyn Write,
    ) -> Result<Outcome, String> {
        Ok(self.install_all(target, &[(name, rendered)], out)?[0])
    }

    /// Installs (or updates) every rendered tunnel in one pass: all files are written to
    /// temp files, synced (one `syncfs` for many), renamed, their directories synced once;
    /// then /etc/inittab is replaced once, under its lock, with every entry; then the init
    /// system is told. Refusals (a masked unit, an untrusted directory) come before
    /// anything is written.
    pub fn install_all(
        &self,
        target: Target,
        items: &[(&str, &Rendered)],
        out: &mut dyn Write,
    ) -> Result<Vec<Outcome>, String> {
        let mut dirs = Dirs::for_target(target);
        let mut changes = Vec::new();
        for (owner, (name, rendered)) in items.iter().enumerate() {
            for file in &rendered.files {
                let (dir, file_name) = safe_fs::split(&file.path)?;
                let old = match self.existing_dir(&mut dirs, dir)? {
                    Some(d) => {
                        d.check_destination(file_name).map_err(|(refusal, why)| {
                            refusal_message(refusal, &why, name, target, &file.path)
                        })?;
                        d.read_optional(file_name, MAX_READ)?
                    }
                    None => None,
                };
                changes.push(FileChange {
                    owner,
                    dir: dir.to_path_buf(),
                    name: file_name.to_os_string(),
                    shown_path: file.path.clone(),
                    old,
                    new: file.contents.clone().into_bytes(),
                    mode: file.mode,
                });
            }
        }

        // /etc/inittab: locked from the read to the replacement (not for a dry run,
        // which writes nothing, not even the lock file).
        let entries: Vec<(usize, &InittabEntry)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r))| r.inittab.as_ref().map(|e| (i, e)))
            .collect();
        let inittab_path = Path::new(INITTAB);
        let (inittab_dir, inittab_name) = safe_fs::split(inittab_path)?;
        let etc = if entries.is_empty() {
            None
        } else {
            Some(self.open_dir(inittab_dir, !self.dry_run, safe_fs::Trust::Install)?)
        };
        let with_entries = |old: &[u8], state: &mut Vec<(bool, bool)>| -> Result<Vec<u8>, String> {
            let named: Vec<(&InittabEntry, &str)> =
                entries.iter().map(|&(i, e)| (e, items[i].0)).collect();
            let (new, states) = inittab_with_all(old, &named, target)?;
            for (&(i, _), st) in entries.iter().zip(states) {
                state[i] = st;
            }
            Ok(new)
        };
        let mut inittab_change: Option<(Vec<u8>, Vec<u8>, bool)> = None; // old, new, existed
        let mut entry_state: Vec<(bool, bool)> = vec![(false, false); items.len()]; // (existed, changed)
        if let Some(etc) = &etc {
            etc.check_destination(inittab_name)
                .map_err(|(r, why)| refusal_message(r, &why, items[0].0, target, inittab_path))?;
            let existed = etc.read_optional(inittab_name, MAX_READ)?;
            let old = existed.clone().unwrap_or_default();
            let new = with_entries(&old, &mut entry_state)?;
            if existed.as_deref() != Some(&new[..]) {
                inittab_change = Some((old, new, existed.is_some()));
            }
        }

        let plans: Vec<TunnelPlan> = (0..items.len())
            .map(|i| {
                let mine = changes.iter().filter(|c| c.owner == i);
                let files_fresh = mine.clone().all(|c| c.old.is_none());
                let files_changed = mine.clone().any(|c| c.old.as_deref() != Some(&c.new[..]));
                TunnelPlan {
                    fresh: files_fresh && !entry_state[i].0,
                    changed: files_changed || entry_state[i].1,
                }
            })
            .collect();

        for change in changes
            .iter()
            .filter(|c| c.old.as_deref() != Some(&c.new[..]))
        {
            write_diff(out, &change.shown_path, change.old.as_deref(), &change.new)?;
        }
        if let Some((old, new, existed)) = &inittab_change {
            write_diff(out, inittab_path, existed.then_some(&old[..]), new)?;
        }
        let mut outcomes = Vec::new();
        if self.dry_run {
            for ((name, _), plan) in items.iter().zip(&plans) {
                if plan.changed {
                    writeln!(
                        out,
                        "{name} ({target}): would {} (dry run, nothing written)",
                        if plan.fresh { "install" } else { "update" }
                    )
                    .map_err(io_err)?;
                    outcomes.push(Outcome::WouldChange);
                } else {
                    writeln!(out, "{name} ({target}): unchanged").map_err(io_err)?;
                    outcomes.push(Outcome::Unchanged);
                }
            }
            return Ok(outcomes);
        }

        let mut wanted_dirs: Vec<&Path> = items
            .iter()
            .flat_map(|(_, r)| r.dirs.iter().map(PathBuf::as_path))
            .collect();
        wanted_dirs.dedup();
        for dir in wanted_dirs {
            self.created_dir(&mut dirs, dir)?;
        }
        // The args files before the inittab lines that name them, so init never starts
        // a watchdog whose arguments are not there yet.
        let pending: Vec<&FileChange> = changes
            .iter()
            .filter(|c| c.old.as_deref() != Some(&c.new[..]))
            .collect();
        let one_sync = pending.len() >= SYNCFS_FROM && cfg!(target_os = "linux");
        let mut staged = Vec::new();
        let result = (|| -> Result<(), String> {
            for change in &pending {
                let dir = self.created_dir(&mut dirs, &change.dir)?;
                staged.push((
                    change,
                    dir.stage(&change.name, &change.new, change.mode, !one_sync)?,
                ));
            }
            if one_sync {
                sync_filesystems(&dirs, pending.iter().map(|c| &c.dir))?;
            }
            for (change, temp) in &staged {
                let dir = &dirs.0[&change.dir];
                dir.check_destination(&change.name).map_err(|(r, why)| {
                    refusal_message(r, &why, items[change.owner].0, target, &change.shown_path)
                })?;
                dir.commit(temp, &change.name)?;
            }
            staged.clear();
            let mut synced: Vec<&Path> = Vec::new();
            for change in &pending {
                if !synced.contains(&change.dir.as_path()) {
                    dirs.0[&change.dir].sync()?;
                    synced.push(&change.dir);
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (change, temp) in &staged {
                dirs.0[&change.dir].discard(temp);
            }
            return Err(e);
        }
        if let (Some(etc), Some(_)) = (&etc, &inittab_change) {
            // The read-modify-write again, under the lock: the read above was for the
            // diff; another install may have changed the file since.
            let _lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
            etc.clean_stale_temps();
            let old = etc
                .read_optional(inittab_name, MAX_READ)?
                .unwrap_or_default();
            let new = with_entries(&old, &mut entry_state)?;
            if new != old {
                etc.write_file(inittab_name, &new, 0o644)
                    .map_err(|(r, why)| {
                        refusal_message(r, &why, items[0].0, target, inittab_path)
                    })?;
            }
        }

        for ((name, _), plan) in items.iter().zip(&plans) {
            if plan.changed {
                writeln!(
                    out,
                    "{name} ({target}): {}",
                    if plan.fresh { "installed" } else { "updated" }
                )
                .map_err(io_err)?;
                outcomes.push(if plan.fresh {
                    Outcome::Installed
                } else {
                    Outcome::Updated
                });
            } else {
                writeln!(out, "{name} ({target}): unchanged").map_err(io_err)?;
                outcomes.push(Outcome::Unchanged);
            }
        }
        let activate: Vec<(&str, &Rendered, bool)> = items
            .iter()
            .zip(&plans)
            .filter(|(_, p)| p.changed)
            .map(|((n, r), p)| (*n, *r, p.fresh))
            .collect();
        if !activate.is_empty() {
            self.activate(target, &activate, out)?;
        }
        Ok(outcomes)
    }

    /// Tells the init system; never reached under `--root`. `items`: (name, rendered, fresh).
    fn activate(
        &self,
        target: Target,
        items: &[(&str, &Rendered, bool)],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        match target {
            Target::Systemd | Target::SystemdUser => {
                let mut base = vec!["systemctl".to_string()];
                if target == Target::SystemdUser {
                    base.push("--user".into());
                }
                run_tool(&with(&base, &["daemon-reload"]))?;
                if self.no_start {
                    return Ok(());
                }
                for &(name, _, fresh) in items {
                    let unit = crate::escape::unit_name(name);
                    // Type=notify: systemctl waits for READY=1, i.e. the first proof that
                    // every forward works, which can take long when the server is away.
                    eprintln!(
                        "starting {unit}: waits until every forward is proven (Ctrl-C stops \
                         waiting, not the tunnel; `tunnelctl status {name}` shows progress)"
                    );
                    if fresh {
                        run_tool(&with(&base, &["enable", "--now", &unit]))?;
                    } else {
                        run_tool(&with(&base, &["enable", &unit]))?;
                        run_tool(&with(&base, &["restart", &unit]))?;
                    }
                }
            }
            Target::Launchd | Target::LaunchdAgent => {
                if self.no_start {
                    return Ok(());
                }
                let uid = nix::unistd::getuid().as_raw();
                let gui = target == Target::LaunchdAgent && launchd_gui_session(uid);
                let domain = launchd_domain(target, uid, gui);
                if target == Target::LaunchdAgent && !gui {
                    writeln!(out, "{}", no_gui_note(uid)).map_err(io_err)?;
                }
                for &(name, rendered, fresh) in items {
                    let plist = rendered
                        .files
                        .first()
                        .map(|f| f.path.display().to_string())
                        .unwrap_or_default();
                    run_launchd(&launchd_install_steps(
                        &domain,
                        &launchd::label(name),
                        &plist,
                        fresh,
                    ))?;
                }
            }
            Target::Inittab => {
                if !self.no_start {
                    run_tool(&["telinit".into(), "q".into()])
                        .map_err(|e| reload_failed(&e, "telinit q"))?;
                }
                // sysvinit keeps a running entry whose line did not change: the watchdog of
                // an updated tunnel is asked to exit, and init respawns it with the new
                // args file (the inittab was never without the entry).
                for &(name, _, fresh) in items {
                    if !fresh {
                        restart_watchdog(name, target, out)?;
                    }
                }
            }
            Target::Busybox => {
                if !self.no_start {
                    run_tool(&["kill".into(), "-HUP".into(), "1".into()])
                        .map_err(|e| reload_failed(&e, "kill -HUP 1"))?;
                }
                for &(name, _, fresh) in items {
                    if !fresh {
                        writeln!(
                            out,
                            "note: BusyBox init keeps the running watchdog with its old arguments until it exits; \
                             `tunnelctl reconnect {name}` or a reboot picks up the new ones"
                        )
                        .map_err(io_err)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops the tunnel and removes what install wrote (see the module comment).
    pub fn uninstall(
        &self,
        name: &str,
        target: Target,
        paths: &[PathBuf],
        inittab_id: &str,
        out: &mut dyn Write,
    ) -> Result<Outcome, String> {
        let mut dirs = Dirs::for_target(target);
        let mut files = Vec::new();
        for path in paths {
            let (dir, file_name) = safe_fs::split(path)?;
            let Some(d) = self.existing_dir(&mut dirs, dir)? else {
                continue;
            };
            match d.check_destination(file_name) {
                Ok(()) if d.lstat(file_name)?.is_some() => files.push(path.clone()),
                Ok(()) => {}
                // A mask (or any link) is the admin's, not ours: left alone.
                Err((_, why)) => {
                    writeln!(out, "left alone: {why} (not written by tunnelctl)").map_err(io_err)?
                }
            }
        }
        let is_inittab = matches!(target, Target::Inittab | Target::Busybox);
        let (inittab_dir, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
        let etc = if is_inittab {
            self.existing_dir(&mut dirs, inittab_dir)?;
            dirs.0.remove(inittab_dir)
        } else {
            None
        };
        let without = match &etc {
            Some(etc) => etc
                .read_optional(inittab_name, MAX_READ)?
                .and_then(|bytes| inittab_without(&bytes, inittab_id)),
            None => None,
        };
        if files.is_empty() && without.is_none() {
            writeln!(out, "{name} ({target}): not installed").map_err(io_err)?;
            return Ok(Outcome::NotInstalled);
        }
        if self.dry_run {
            for file in &files {
                writeln!(out, "would remove {}", file.display()).map_err(io_err)?;
            }
            if without.is_some() {
                writeln!(out, "would remove the {inittab_id} entry from {INITTAB}")
                    .map_err(io_err)?;
            }
            return Ok(Outcome::WouldChange);
        }
        // Stop first, while the init system still knows the service.
        if self.run_tools {
            match target {
                Target::Systemd | Target::SystemdUser => {
                    let mut base = vec!["systemctl".to_string()];
                    if target == Target::SystemdUser {
                        base.push("--user".into());
                    }
                    run_tool(&with(
                        &base,
                        &["disable", "--now", &crate::escape::unit_name(name)],
                    ))?;
                }
                Target::Launchd | Target::LaunchdAgent => {
                    let uid = nix::unistd::getuid().as_raw();
                    let gui = target == Target::LaunchdAgent && launchd_gui_session(uid);
                    let domain = launchd_domain(target, uid, gui);
                    run_launchd(&launchd_uninstall_steps(&domain, &launchd::label(name)))?;
                }
                Target::Inittab | Target::Busybox => {}
            }
        }
        if let (Some(etc), Some(_)) = (&etc, &without) {
            // Read again under the lock (see install_all).
            let lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
            etc.clean_stale_temps();
            let now = etc.read_optional(inittab_name, MAX_READ)?;
            if let Some(without) = now.as_deref().and_then(|b| inittab_without(b, inittab_id)) {
                etc.write_file(inittab_name, &without, 0o644)
                    .map_err(|(r, why)| {
                        refusal_message(r, &why, name, target, Path::new(INITTAB))
                    })?;
            }
            drop(lock);
            writeln!(out, "removed the {inittab_id} entry from {INITTAB}").map_err(io_err)?;
            if self.run_tools {
                // sysvinit stops processes whose entry vanished; BusyBox may not.
                if target == Target::Inittab {
                    run_tool(&["telinit".into(), "q".into()])
                        .map_err(|e| reload_failed(&e, "telinit q"))?;
                } else {
                    run_tool(&["kill".into(), "-HUP".into(), "1".into()])
                        .map_err(|e| reload_failed(&e, "kill -HUP 1"))?;
                    writeln!(out, "note: unless BusyBox was built with FEATURE_KILL_REMOVED the watchdog keeps running until reboot")
                        .map_err(io_err)?;
                }
            }
        }
        for file in &files {
            let (dir, file_name) = safe_fs::split(file)?;
            if let Some(d) = self.existing_dir(&mut dirs, dir)? {
                d.remove(file_name)?;
            }
            writeln!(out, "removed {}", file.display()).map_err(io_err)?;
            self.remove_empty_tunnelctl_dirs(file.parent());
        }
        for dir in log_dirs(target, paths) {
            self.remove_empty_tunnelctl_dirs(Some(&dir));
        }
        if self.run_tools && matches!(target, Target::Systemd | Target::SystemdUser) {
            let mut argv = vec!["systemctl".to_string()];
            if target == Target::SystemdUser {
                argv.push("--user".into());
            }
            argv.push("daemon-reload".into());
            run_tool(&argv)?;
        }
        Ok(Outcome::Removed)
    }

    /// Removes `dir` and its parents while they are empty and inside a `tunnelctl` directory.
    fn remove_empty_tunnelctl_dirs(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if !d.components().any(|c| c.as_os_str() == "tunnelctl") {
                break;
            }
            // remove_dir fails on a non-empty directory, which is exactly the stop we want.
            if fs::remove_dir(self.host(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn write_diff(
    out: &mut dyn Write,
    shown: &Path,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<(), String> {
    let old_text = String::from_utf8_lossy(old.unwrap_or_default()).into_owned();
    let new_text = String::from_utf8_lossy(new).into_owned();
    let shown = shown.display().to_string();
    let old_label = if old.is_some() {
        shown.clone()
    } else {
        "/dev/null".to_string()
    };
    out.write_all(unified_diff(&old_label, &shown, &old_text, &new_text).as_bytes())
        .map_err(io_err)
}

/// One `syncfs` per filesystem holding staged files (Linux only; elsewhere each file
/// was fsynced when staged).
#[cfg(target_os = "linux")]
fn sync_filesystems<'a>(
    dirs: &Dirs,
    used: impl Iterator<Item = &'a PathBuf>,
) -> Result<(), String> {
    let mut devices = Vec::new();
    for dir in used {
        let d = &dirs.0[dir];
        let dev = nix::sys::stat::fstat(&d.fd).map(|s| s.st_dev).unwrap_or(0);
        if !devices.contains(&dev) {
            devices.push(dev);
            nix::unistd::syncfs(&d.fd).map_err(|e| format!("syncing {}: {e}", d.path.display()))?;
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystems<'a>(_: &Dirs, _: impl Iterator<Item = &'a PathBuf>) -> Result<(), String> {
    Ok(())
}

/// The message for a destination tunnelctl will not write, with the fix.
fn refusal_message(
    refusal: safe_fs::Refusal,
    why: &str,
    name: &str,
    target: Target,
    shown: &Path,
) -> String {
    match refusal {
        safe_fs::Refusal::Masked if matches!(target, Target::Systemd | Target::SystemdUser) => {
            format!(
                "{} is masked (a symlink to /dev/null): tunnelctl leaves a masked unit alone. \
             To install it, unmask it first: `systemctl{} unmask {}`",
                shown.display(),
                if target == Target::SystemdUser {
                    " --user"
                } else {
                    ""
                },
                crate::escape::unit_name(name)
            )
        }
        safe_fs::Refusal::Masked | safe_fs::Refusal::Symlink(_) => format!(
            "{why}; tunnelctl writes only regular files and never through a link (the link's \
             target would get root's content, or keep its owner). Fix: remove the link \
             (`rm {}`) and install again",
            shown.display()
        ),
        safe_fs::Refusal::NotRegular | safe_fs::Refusal::Io => why.to_string(),
    }
}

fn reload_failed(error: &str, command: &str) -> String {
    format!(
        "{INITTAB} is already updated, but {error}: init has not read it yet. Run `{command}` \
         once init can be reached (or reboot)"
    )
}

/// Asks the running watchdog of an updated inittab tunnel to exit (SIGTERM), so init
/// respawns it with the new args file. Only a live tunnel-watchdog found through its
/// checked state file is signalled.
fn restart_watchdog(name: &str, target: Target, out: &mut dyn Write) -> Result<(), String> {
    let home = crate::home::home_dir();
    let uid = nix::unistd::getuid().as_raw();
    let env = |k: &str| std::env::var(k).ok();
    let dirs = crate::locations::state_dir_candidates(target, name, &home, uid, &env);
    let row = crate::status::read_row(name, Some(target), &dirs);
    match (&row.state, row.running) {
        (Some(state), true) => {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(state.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .map_err(|e| format!("cannot stop the old watchdog (pid {}): {e}", state.pid))?;
            writeln!(out, "{name}: asked the running watchdog (pid {}) to exit; init starts it again with the new arguments", state.pid)
                .map_err(io_err)
        }
        _ => Ok(()),
    }
}

/// Log directories a target's rendering asks install to create (launchd, inittab).
fn log_dirs(target: Target, paths: &[PathBuf]) -> Vec<PathBuf> {
    match target {
        Target::Launchd => vec!["/var/log/tunnelctl".into()],
        // …/Library/LaunchAgents/x.plist → …/Library/Logs/tunnelctl
        Target::LaunchdAgent => paths
            .first()
            .and_then(|p| p.parent()?.parent())
            .map(|library| vec![library.join("Logs/tunnelctl")])
            .unwrap_or_default(),
        Target::Inittab | Target::Busybox => vec![inittab::LOG_DIR.into()],
        _ => Vec::new(),
    }
}

/// Runs an init tool for install or uninstall (`status` and `reconnect` ask systemctl
/// themselves). Prints the command so the user sees what happened to their system.
pub fn run_tool(argv: &[String]) -> Result<(), String> {
    eprintln!("+ {}", argv.join(" "));
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| format!("could not run {}: {e}", argv[0]))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", argv.join(" ")))
    }
}

fn io_err(e: io::Error) -> String {
    format!("writing output: {e}")
}

#[cfg(test)]
mod tests;
