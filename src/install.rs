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

/// One launchctl step of an install or uninstall, as data, so the sequences are tested
/// without a Mac.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchdStep {
    /// Run it; a failure is an error.
    Run(Vec<String>),
    /// Run it; a failure is fine (the job may not be loaded).
    MayFail(Vec<String>),
    /// `bootout` returns before the job is gone, and a `bootstrap` right after it can
    /// fail ("5: Input/output error"): poll `launchctl print SERVICE` until it fails,
    /// at most this long.
    WaitGone { service: String, timeout: Duration },
}

/// How long a reinstall waits for the old job to be gone.
pub const LAUNCHD_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The domain a job goes into: `system` for daemons; for agents `gui/UID` when that user
/// has a GUI login, else `user/UID` (which exists for any logged-in user, over ssh too).
pub fn launchd_domain(target: Target, uid: u32, gui_session: bool) -> String {
    match target {
        Target::Launchd => "system".into(),
        _ if gui_session => format!("gui/{uid}"),
        _ => format!("user/{uid}"),
    }
}

/// The install sequence. `bootstrap` of a `RunAtLoad` job starts it, so there is no
/// `kickstart -k` after it (that would kill and restart the job just started). A
/// changed plist is read only on bootstrap: a reinstall boots the old job out first and
/// waits until it is gone.
pub fn launchd_install_steps(
    domain: &str,
    label: &str,
    plist: &str,
    fresh: bool,
) -> Vec<LaunchdStep> {
    let service = format!("{domain}/{label}");
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut steps = Vec::new();
    if !fresh {
        steps.push(LaunchdStep::MayFail(argv(&[
            "launchctl",
            "bootout",
            &service,
        ])));
        steps.push(LaunchdStep::WaitGone {
            service: service.clone(),
            timeout: LAUNCHD_GONE_TIMEOUT,
        });
    }
    steps.push(LaunchdStep::Run(argv(&[
        "launchctl",
        "bootstrap",
        domain,
        plist,
    ])));
    steps
}

/// The uninstall sequence: boot the job out (it may not be loaded) and wait for it to go,
/// so the files are removed after the job stopped.
pub fn launchd_uninstall_steps(domain: &str, label: &str) -> Vec<LaunchdStep> {
    let service = format!("{domain}/{label}");
    vec![
        LaunchdStep::MayFail(vec!["launchctl".into(), "bootout".into(), service.clone()]),
        LaunchdStep::WaitGone {
            service,
            timeout: LAUNCHD_GONE_TIMEOUT,
        },
    ]
}

/// Whether `gui/UID` exists (a GUI login): `launchctl print` fails for a missing domain.
fn launchd_gui_session(uid: u32) -> bool {
    Command::new("launchctl")
        .args(["print", &format!("gui/{uid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn no_gui_note(uid: u32) -> String {
    format!(
        "note: uid {uid} has no GUI login session (logged in over ssh?), so the agent goes into \
         the user/{uid} domain: it runs while you have any session. To have it in gui/{uid} \
         (started at every GUI login), log in at the screen and run `tunnelctl install` again"
    )
}

fn run_launchd(steps: &[LaunchdStep]) -> Result<(), String> {
    for step in steps {
        match step {
            LaunchdStep::Run(argv) => run_tool(argv)?,
            LaunchdStep::MayFail(argv) => {
                let _ = run_tool(argv);
            }
            LaunchdStep::WaitGone { service, timeout } => {
                let deadline = Instant::now() + *timeout;
                let gone = || {
                    !Command::new("launchctl")
                        .args(["print", service])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                // Bounded by the deadline; 100 ms between asks.
                while !gone() {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{service} is still loaded {} s after `launchctl bootout`; \
                             run `launchctl bootout {service}` and install again",
                            timeout.as_secs()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    Ok(())
}

fn with(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
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

// ---------------------------------------------------------------- /etc/inittab editing

/// Splits into lines that keep their terminators, so joining them gives the input back.
fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

fn text_of(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Index of our marker line for `id` and how many lines (1 or 2) our entry spans.
fn find_entry(bytes: &[u8], id: &str) -> Option<(usize, usize)> {
    let lines = split_lines(bytes);
    let prefix = inittab::marker_prefix(id);
    let args = inittab::args_path(id);
    let at = lines
        .iter()
        .position(|l| text_of(l).starts_with(prefix.as_bytes()))?;
    let next_is_ours = lines
        .get(at + 1)
        .is_some_and(|l| String::from_utf8_lossy(text_of(l)).contains(&args));
    Some((at, if next_is_ours { 2 } else { 1 }))
}

/// Writes `entry` (marker line, then the entry) where an old entry stood, keeping the
/// terminator the old entry's last line had (none when it ended the file).
fn put_entry_over(out: &mut Vec<u8>, entry: &InittabEntry, last_old: &[u8]) {
    let eol: &[u8] = if last_old.ends_with(b"\r\n") {
        b"\r\n"
    } else if last_old.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    };
    out.extend_from_slice(entry.marker.as_bytes());
    out.extend_from_slice(if eol.is_empty() { b"\n" } else { eol });
    out.extend_from_slice(entry.line.as_bytes());
    out.extend_from_slice(eol);
}

/// The inittab with our entry for `name` in place: replaced where it was, else appended.
/// Every other byte stays as it was. Refuses when a line not written by us uses our id
/// (SysV), or our id's marker names another tunnel.
pub fn inittab_with(
    existing: &[u8],
    entry: &InittabEntry,
    name: &str,
    target: Target,
) -> Result<Vec<u8>, String> {
    let lines = split_lines(existing);
    let found = find_entry(existing, &entry.id);
    if let Some((at, _)) = found {
        let marker = String::from_utf8_lossy(text_of(lines[at])).into_owned();
        let owner = marker[inittab::marker_prefix(&entry.id).len()..]
            .split(" — ")
            .next()
            .unwrap_or("");
        if owner != name {
            return Err(format!(
                "{INITTAB} already has a tunnelctl entry with id {} for tunnel `{owner}`; \
                 uninstall it first or rename one of the tunnels",
                entry.id
            ));
        }
    }
    if target == Target::Inittab {
        let ours: Vec<usize> = found
            .map(|(at, n)| (at..at + n).collect())
            .unwrap_or_default();
        let id_prefix = format!("{}:", entry.id);
        for (i, line) in lines.iter().enumerate() {
            let text = text_of(line);
            if !ours.contains(&i)
                && !text.starts_with(b"#")
                && text.starts_with(id_prefix.as_bytes())
            {
                return Err(format!(
                    "{INITTAB} line {} already uses the id {} and was not written by tunnelctl; \
                     change that entry's id or rename the tunnel",
                    i + 1,
                    entry.id
                ));
            }
        }
    }
    let mut out = Vec::with_capacity(existing.len() + 200);
    match found {
        Some((at, n)) => {
            for line in &lines[..at] {
                out.extend_from_slice(line);
            }
            put_entry_over(&mut out, entry, lines[at + n - 1]);
            for line in &lines[at + n..] {
                out.extend_from_slice(line);
            }
        }
        None if existing.is_empty() || existing.ends_with(b"\n") => {
            out.extend_from_slice(existing);
            out.extend_from_slice(entry.text().as_bytes());
        }
        None => {
            // The last line has no newline: ours goes after a newline we add, and ends
            // without one, so removing our entry (with that newline) restores the file.
            out.extend_from_slice(existing);
            out.push(b'\n');
            out.extend_from_slice(entry.marker.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(entry.line.as_bytes());
        }
    }
    Ok(out)
}

/// The inittab with every entry in place (`(entry, tunnel name)`), the same bytes as
/// applying [`inittab_with`] for each in turn, in one pass over the file (a thousand
/// tunnels once meant a thousand rewrites). Also says, per entry, whether it was there
/// before and whether its lines changed.
pub fn inittab_with_all(
    existing: &[u8],
    entries: &[(&InittabEntry, &str)],
    target: Target,
) -> Result<(Vec<u8>, Vec<(bool, bool)>), String> {
    use std::collections::HashMap;
    let lines = split_lines(existing);
    // Our markers by id, and the ids other (non-comment) lines start with.
    let mut markers: HashMap<&[u8], usize> = HashMap::new();
    let mut used_ids: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let text = text_of(line);
        if let Some(rest) = text.strip_prefix(b"# tunnelctl:") {
            let id = rest.split(|&b| b == b' ').next().unwrap_or_default();
            markers.entry(id).or_insert(i);
        } else if !text.starts_with(b"#")
            && let Some(colon) = text.iter().position(|&b| b == b':')
        {
            used_ids.entry(&text[..colon]).or_default().push(i);
        }
    }
    let mut replace: HashMap<usize, (usize, &InittabEntry)> = HashMap::new();
    let mut append: Vec<&InittabEntry> = Vec::new();
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut states = Vec::with_capacity(entries.len());
    for &(entry, name) in entries {
        if let Some(first) = seen.insert(entry.id.as_str(), name) {
            return Err(format!(
                "{INITTAB} already has a tunnelctl entry with id {} for tunnel `{first}`; \
                 uninstall it first or rename one of the tunnels",
                entry.id
            ));
        }
        let found = markers.get(entry.id.as_bytes()).map(|&at| {
            let args = inittab::args_path(&entry.id);
            let next_is_ours = lines
                .get(at + 1)
                .is_some_and(|l| String::from_utf8_lossy(text_of(l)).contains(&args));
            (at, if next_is_ours { 2 } else { 1 })
        });
        if let Some((at, _)) = found {
            let marker = String::from_utf8_lossy(text_of(lines[at])).into_owned();
            let owner = marker[inittab::marker_prefix(&entry.id).len().min(marker.len())..]
                .split(" — ")
                .next()
                .unwrap_or("");
            if owner != name {
                return Err(format!(
                    "{INITTAB} already has a tunnelctl entry with id {} for tunnel `{owner}`; \
                     uninstall it first or rename one of the tunnels",
                    entry.id
                ));
            }
        }
        if target == Target::Inittab
            && let Some(users) = used_ids.get(entry.id.as_bytes())
            && let Some(&i) = users
                .iter()
                .find(|&&i| !found.is_some_and(|(at, n)| (at..at + n).contains(&i)))
        {
            return Err(format!(
                "{INITTAB} line {} already uses the id {} and was not written by tunnelctl; \
                 change that entry's id or rename the tunnel",
                i + 1,
                entry.id
            ));
        }
        match found {
            Some((at, n)) => {
                let old: Vec<&[u8]> = lines[at..at + n].iter().map(|l| text_of(l)).collect();
                let changed = old != [entry.marker.as_bytes(), entry.line.as_bytes()];
                replace.insert(at, (n, entry));
                states.push((true, changed));
            }
            None => {
                append.push(entry);
                states.push((false, true));
            }
        }
    }
    let mut out = Vec::with_capacity(existing.len() + 200 * entries.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(&(n, entry)) = replace.get(&i) else {
            out.extend_from_slice(lines[i]);
            i += 1;
            continue;
        };
        put_entry_over(&mut out, entry, lines[i + n - 1]);
        i += n;
    }
    for entry in append {
        if out.is_empty() || out.ends_with(b"\n") {
            out.extend_from_slice(entry.text().as_bytes());
        } else {
            out.push(b'\n');
            out.extend_from_slice(entry.marker.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(entry.line.as_bytes());
        }
    }
    Ok((out, states))
}

/// The inittab without our entry for `id`, or None when it has none.
pub fn inittab_without(existing: &[u8], id: &str) -> Option<Vec<u8>> {
    let (at, n) = find_entry(existing, id)?;
    let lines = split_lines(existing);
    let mut out = Vec::with_capacity(existing.len());
    for line in &lines[..at] {
        out.extend_from_slice(line);
    }
    for line in &lines[at + n..] {
        out.extend_from_slice(line);
    }
    let ended_file_without_newline = at + n == lines.len() && !lines[at + n - 1].ends_with(b"\n");
    if ended_file_without_newline && at > 0 {
        // Undo the newline we added before our entry (see inittab_with).
        out.pop();
    }
    Some(out)
}

// ---------------------------------------------------------------- unified diff

/// A unified diff (3 lines of context) of two texts, line by line, from a longest common
/// subsequence. Files here are at most a few hundred lines, so O(n·m) is fine and saves a
/// crate.
pub fn unified_diff(old_label: &str, new_label: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = length of the LCS of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, old index, new index) for every line of the edit script
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before insertions, as diff(1) prints them.
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    if ops.iter().all(|op| op.0 == ' ') {
        return String::new();
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    const CONTEXT: usize = 3;
    let mut k = 0;
    while k < ops.len() {
        if ops[k].0 == ' ' {
            k += 1;
            continue;
        }
        // A hunk: from CONTEXT lines before this change to CONTEXT lines after the last
        // change that is within 2·CONTEXT of the previous one.
        let start = k.saturating_sub(CONTEXT);
        let mut end = k;
        let mut last_change = k;
        while end < ops.len() {
            if ops[end].0 != ' ' {
                last_change = end;
            } else if end - last_change > 2 * CONTEXT {
                break;
            }
            end += 1;
        }
        let end = (last_change + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let old_count = hunk.iter().filter(|o| o.0 != '+').count();
        let new_count = hunk.iter().filter(|o| o.0 != '-').count();
        let old_start = hunk[0].1 + usize::from(old_count > 0);
        let new_start = hunk[0].2 + usize::from(new_count > 0);
        out.push_str(&format!(
            "@@ -{old_start},{old_count} +{new_start},{new_count} @@\n"
        ));
        for &(tag, oi, nj) in hunk {
            let line = if tag == '+' { b[nj] } else { a[oi] };
            out.push(tag);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        k = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> InittabEntry {
        InittabEntry {
            id: "tabc".into(),
            marker: inittab::marker("tabc", "web"),
            line: "tabc:2345:respawn:/usr/bin/tunnel-watchdog --args-file /etc/tunnelctl/run/tabc.args".into(),
        }
    }

    #[test]
    fn inittab_round_trips_byte_for_byte() {
        for original in [
            &b""[..],
            b"id:2:initdefault:\n# comment\n",
            b"id:2:initdefault:\r\n1:2345:respawn:/sbin/getty 38400 tty1",
            b"# only a comment without newline",
        ] {
            let with = inittab_with(original, &entry(), "web", Target::Inittab).unwrap();
            assert!(with.starts_with(original));
            assert!(String::from_utf8_lossy(&with).contains(&entry().line));
            // Installing again changes nothing.
            assert_eq!(
                inittab_with(&with, &entry(), "web", Target::Inittab).unwrap(),
                with
            );
            assert_eq!(
                inittab_without(&with, "tabc").unwrap(),
                original,
                "{:?}",
                String::from_utf8_lossy(original)
            );
        }
    }

    #[test]
    fn inittab_with_all_is_inittab_with_in_turn() {
        let e = |id: &str, name: &str, process: &str| InittabEntry {
            id: id.into(),
            marker: inittab::marker(id, name),
            line: format!("{id}:2345:respawn:{process} --args-file /etc/tunnelctl/run/{id}.args"),
        };
        let a = e("taaa", "a", "/w");
        let b = e("tbbb", "b", "/w");
        let b2 = e("tbbb", "b", "/w2");
        let c = e("tccc", "c", "/w");
        let with_b = inittab_with(b"x:1:y\r\n", &b, "b", Target::Inittab).unwrap();
        for original in [&b""[..], b"id:2:initdefault:\n", b"no newline", &with_b[..]] {
            for set in [
                vec![(&a, "a")],
                vec![(&a, "a"), (&b2, "b"), (&c, "c")],
                vec![(&b2, "b"), (&a, "a")],
            ] {
                let mut expected = original.to_vec();
                for (entry, name) in &set {
                    expected = inittab_with(&expected, entry, name, Target::Inittab).unwrap();
                }
                let (all, states) = inittab_with_all(original, &set, Target::Inittab).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&all),
                    String::from_utf8_lossy(&expected)
                );
                let b_was_there = original == &with_b[..];
                for ((entry, _), (existed, changed)) in set.iter().zip(states) {
                    assert_eq!(existed, entry.id == "tbbb" && b_was_there);
                    assert!(changed);
                }
            }
        }
        let (_, states) = inittab_with_all(&with_b, &[(&b, "b")], Target::Inittab).unwrap();
        assert_eq!(states, vec![(true, false)]);
        let err = inittab_with_all(b"", &[(&a, "a"), (&a, "x")], Target::Inittab).unwrap_err();
        assert!(err.contains("`a`"), "{err}");
        let err = inittab_with_all(
            b"taaa:2345:respawn:/bin/other\n",
            &[(&a, "a")],
            Target::Inittab,
        )
        .unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(
            inittab_with_all(&with_b, &[(&b, "other")], Target::Inittab)
                .unwrap_err()
                .contains("`b`")
        );
    }

    #[test]
    fn inittab_replaces_in_place_and_refuses_foreign_ids() {
        let old = format!(
            "a:1:x\n{}\ntabc:2345:respawn:/old --args-file /etc/tunnelctl/run/tabc.args\nz:3:y\n",
            inittab::marker("tabc", "web")
        );
        let new = inittab_with(old.as_bytes(), &entry(), "web", Target::Inittab).unwrap();
        let new = String::from_utf8(new).unwrap();
        assert!(new.starts_with("a:1:x\n# tunnelctl:tabc web"));
        assert!(new.ends_with("tunnel-watchdog --args-file /etc/tunnelctl/run/tabc.args\nz:3:y\n"));
        let err = inittab_with(
            b"tabc:2345:respawn:/bin/other\n",
            &entry(),
            "web",
            Target::Inittab,
        )
        .unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = inittab_with(old.as_bytes(), &entry(), "api", Target::Inittab).unwrap_err();
        assert!(err.contains("`web`"), "{err}");
    }

    #[test]
    fn launchd_sequences_never_kickstart_a_job_just_bootstrapped() {
        use LaunchdStep::*;
        let argv = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let plist = "/Library/LaunchDaemons/org.tunnelctl.t.plist";
        // Fresh: bootstrap alone (RunAtLoad starts the job).
        assert_eq!(
            launchd_install_steps("system", "org.tunnelctl.t", plist, true),
            vec![Run(argv(&["launchctl", "bootstrap", "system", plist]))]
        );
        // Reinstall: the old job out, waited for (bounded), then bootstrap; no kickstart.
        let steps = launchd_install_steps("system", "org.tunnelctl.t", plist, false);
        assert_eq!(
            steps,
            vec![
                MayFail(argv(&["launchctl", "bootout", "system/org.tunnelctl.t"])),
                WaitGone {
                    service: "system/org.tunnelctl.t".into(),
                    timeout: LAUNCHD_GONE_TIMEOUT
                },
                Run(argv(&["launchctl", "bootstrap", "system", plist])),
            ]
        );
        assert!(LAUNCHD_GONE_TIMEOUT <= Duration::from_secs(30));
        for fresh in [true, false] {
            let all = launchd_install_steps("gui/501", "l", "p", fresh);
            assert!(!format!("{all:?}").contains("kickstart"), "{all:?}");
        }
        assert_eq!(
            launchd_uninstall_steps("user/501", "l"),
            vec![
                MayFail(argv(&["launchctl", "bootout", "user/501/l"])),
                WaitGone {
                    service: "user/501/l".into(),
                    timeout: LAUNCHD_GONE_TIMEOUT
                },
            ]
        );
        // Agents: gui/UID with a GUI login, user/UID without (over ssh); daemons: system.
        assert_eq!(launchd_domain(Target::LaunchdAgent, 501, true), "gui/501");
        assert_eq!(launchd_domain(Target::LaunchdAgent, 501, false), "user/501");
        assert_eq!(launchd_domain(Target::Launchd, 0, false), "system");
        assert!(
            no_gui_note(501).contains("user/501") && no_gui_note(501).contains("install` again")
        );
    }

    #[test]
    fn diff_shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
        let diff = unified_diff("x", "x", old, new);
        assert_eq!(
            diff,
            "--- x\n+++ x\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n"
        );
        assert_eq!(unified_diff("x", "x", old, old), "");
        let diff = unified_diff("/dev/null", "y", "", "one\ntwo\n");
        assert_eq!(diff, "--- /dev/null\n+++ y\n@@ -0,0 +1,2 @@\n+one\n+two\n");
    }
}
