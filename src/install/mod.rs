//! Putting rendered files in place and taking them away again: atomic writes, diffs,
//! `/etc/inittab` editing and the init tools. Every path goes through [`Installer::host`]
//! (so `--root` redirects all of it) and every init tool install and uninstall run
//! through [`run_tool`] (which `--root` never reaches). What uninstall removes is said
//! in `uninstall.rs`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::safe_fs;
use crate::targets::{Activation, InittabEntry, Rendered, Target};

pub const INITTAB: &str = "/etc/inittab";

/// The empty file install leaves in the outermost `tunnelctl` directory it creates
/// (`/var/log/tunnelctl`, or `/etc/tunnelctl/run` when `/etc/tunnelctl` was there):
/// uninstall removes an empty directory only inside one that holds it, and never one
/// made by someone else (an empty `/var/log/tunnelctl` the admin made before install).
pub const MADE_DIR_MARKER: &str = ".made-by-tunnelctl";

mod diff;
mod init_tools;
mod inittab_text;
mod inventory;
mod uninstall;
pub use diff::*;
pub use init_tools::{run_steps, run_tool};
pub use inittab_text::*;
pub use inventory::APPLY_LOCK;

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

impl FileChange {
    /// Whether the file gets other bytes than it has (or is not there yet).
    fn changed(&self) -> bool {
        self.old.as_deref() != Some(&self.new[..])
    }
}

/// What installing some tunnels would change, planned and checked exactly as
/// [`Installer::install_all`] does before it writes (nothing is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// Per tunnel, in the order given: (nothing of it is there yet, something of it changes).
    pub tunnels: Vec<(bool, bool)>,
    /// The unified diff of every file that would be written, /etc/inittab last.
    pub diff: String,
}

/// What one `install` plans for one tunnel.
struct TunnelPlan {
    fresh: bool,
    changed: bool,
}

/// What one `install` does to /etc/inittab.
struct InittabPlan<'a> {
    /// The tunnels that have an entry: (index of the tunnel, its entry).
    entries: Vec<(usize, &'a InittabEntry)>,
    /// /etc, opened when some tunnel has an entry.
    etc: Option<safe_fs::Dir>,
    /// What the diff shows; None when the file already is as planned.
    change: Option<InittabChange>,
    /// Per tunnel: (its entry was there before, its entry's lines change).
    entry_state: Vec<(bool, bool)>,
}

struct InittabChange {
    old: Vec<u8>,
    new: Vec<u8>,
    /// False when there was no /etc/inittab (the diff starts from /dev/null).
    existed: bool,
}

impl InittabPlan<'_> {
    /// `old` with every entry in place, and per tunnel (entry was there, entry changes).
    fn merged(
        &self,
        old: &[u8],
        items: &[(&str, &Rendered)],
    ) -> Result<(Vec<u8>, EntryStates), String> {
        let named: Vec<(&InittabEntry, &str)> =
            self.entries.iter().map(|&(i, e)| (e, items[i].0)).collect();
        let (new, states) = inittab_with_all(old, &named)?;
        let mut entry_state = vec![(false, false); items.len()];
        for (&(i, _), st) in self.entries.iter().zip(states) {
            entry_state[i] = st;
        }
        Ok((new, entry_state))
    }

    /// Replaces /etc/inittab when the plan changes it. The read-modify-write again,
    /// under the lock: the read of the plan was for the diff; another install may have
    /// changed the file since.
    fn write(&self, target: Target, items: &[(&str, &Rendered)]) -> Result<(), String> {
        let (Some(etc), Some(_)) = (&self.etc, &self.change) else {
            return Ok(());
        };
        let (_, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
        let _lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
        etc.clean_stale_temps();
        let old = etc
            .read_optional(inittab_name, MAX_READ)?
            .unwrap_or_default();
        let (new, _) = self.merged(&old, items)?;
        if new != old {
            etc.write_file(inittab_name, &new, 0o644)
                .map_err(|(r, why)| {
                    refusal_message(r, &why, items[0].0, target, Path::new(INITTAB))
                })?;
        }
        Ok(())
    }
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
        let trust = if target.system().per_user() {
            safe_fs::Trust::Private
        } else {
            safe_fs::Trust::Install
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
            // A new --root: the caller's own directory, made 0755 like every other
            // directory install makes (not what the umask leaves).
            create_dirs_0755(&self.root)?;
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
            let made = self.first_missing_tunnelctl_dir(dir);
            let opened = self.open_dir(dir, true, dirs.1)?;
            opened.clean_stale_temps();
            if let Some(made) = made {
                self.open_dir(&made, false, dirs.1)?
                    .create_empty(OsStr::new(MADE_DIR_MARKER), 0o644)?;
            }
            dirs.0.insert(dir.to_path_buf(), opened);
        }
        Ok(&dirs.0[dir])
    }

    /// The outermost of `dir` and its parents that is not there yet and lies inside a
    /// `tunnelctl` directory: install marks it as made by it ([`MADE_DIR_MARKER`]), and
    /// with it every folder it goes on to make inside.
    /// None when an existing parent already holds the marker: one per tree is enough.
    fn first_missing_tunnelctl_dir(&self, dir: &Path) -> Option<PathBuf> {
        let mut missing = None;
        for d in dir
            .ancestors()
            .take_while(|d| d.components().any(|c| c.as_os_str() == "tunnelctl"))
        {
            match fs::symlink_metadata(self.host(d)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing = Some(d),
                _ if fs::symlink_metadata(self.host(d).join(MADE_DIR_MARKER))
                    .is_ok_and(|m| m.is_file()) =>
                {
                    return None;
                }
                _ => {}
            }
        }
        missing.map(Path::to_path_buf)
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
        let changes = self.plan_files(&mut dirs, target, items)?;
        let inittab = self.plan_inittab(target, items)?;
        let plans = tunnel_plans(items.len(), &changes, &inittab.entry_state);
        show_diffs(out, &changes, inittab.change.as_ref())?;
        if self.dry_run {
            return report(out, target, items, &plans, true);
        }
        self.create_wanted_dirs(&mut dirs, items)?;
        // The args files before the inittab lines that name them, so init never starts
        // a watchdog whose arguments are not there yet.
        self.write_files(&mut dirs, target, items, &changes)?;
        if let Err(e) = inittab.write(target, items) {
            // Each tunnel stays either as it was or as rendered, never half: the files
            // just written (args files) are taken back.
            return Err(match undo_files(&dirs, &changes) {
                None => format!("{e} (its files were put back as they were)"),
                Some(also) => format!("{e}; putting its files back failed too: {also}"),
            });
        }
        let outcomes = report(out, target, items, &plans, false)?;
        self.activate_changed(target, items, &plans, out)?;
        Ok(outcomes)
    }

    /// What [`Installer::install_all`] would do, without doing it: the same plan, the
    /// same refusals (a masked unit, an untrusted directory), nothing written or created.
    pub fn preview(&self, target: Target, items: &[(&str, &Rendered)]) -> Result<Preview, String> {
        let dry = Installer {
            dry_run: true,
            ..self.clone()
        };
        let mut dirs = Dirs::for_target(target);
        let changes = dry.plan_files(&mut dirs, target, items)?;
        let inittab = dry.plan_inittab(target, items)?;
        let plans = tunnel_plans(items.len(), &changes, &inittab.entry_state);
        let mut diff = Vec::new();
        show_diffs(&mut diff, &changes, inittab.change.as_ref())?;
        Ok(Preview {
            tunnels: plans.iter().map(|p| (p.fresh, p.changed)).collect(),
            diff: String::from_utf8_lossy(&diff).into_owned(),
        })
    }

    /// Every file the tunnels render, with what is there now. Refuses a destination
    /// tunnelctl does not write (a masked unit, a link) before anything is written.
    fn plan_files(
        &self,
        dirs: &mut Dirs,
        target: Target,
        items: &[(&str, &Rendered)],
    ) -> Result<Vec<FileChange>, String> {
        let mut changes = Vec::new();
        for (owner, (name, rendered)) in items.iter().enumerate() {
            for file in &rendered.files {
                let (dir, file_name) = safe_fs::split(&file.path)?;
                let old = match self.existing_dir(dirs, dir)? {
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
        Ok(changes)
    }

    /// /etc/inittab with every tunnel's entry, as the diff shows it. /etc is opened only
    /// when some tunnel has an entry (and not created for a dry run, which writes
    /// nothing, not even the lock file).
    fn plan_inittab<'a>(
        &self,
        target: Target,
        items: &[(&str, &'a Rendered)],
    ) -> Result<InittabPlan<'a>, String> {
        let entries: Vec<(usize, &InittabEntry)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r))| r.inittab.as_ref().map(|e| (i, e)))
            .collect();
        let (inittab_dir, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
        let mut plan = InittabPlan {
            entries,
            etc: None,
            change: None,
            entry_state: vec![(false, false); items.len()],
        };
        if plan.entries.is_empty() {
            return Ok(plan);
        }
        if self.dry_run
            && fs::symlink_metadata(self.host(inittab_dir))
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            // No /etc yet (an empty --root): the diff starts from no inittab.
            let (new, entry_state) = plan.merged(&[], items)?;
            plan.entry_state = entry_state;
            plan.change = Some(InittabChange {
                old: Vec::new(),
                new,
                existed: false,
            });
            return Ok(plan);
        }
        let etc = self.open_dir(inittab_dir, !self.dry_run, safe_fs::Trust::Install)?;
        etc.check_destination(inittab_name)
            .map_err(|(r, why)| refusal_message(r, &why, items[0].0, target, Path::new(INITTAB)))?;
        let existed = etc.read_optional(inittab_name, MAX_READ)?;
        let old = existed.clone().unwrap_or_default();
        let (new, entry_state) = plan.merged(&old, items)?;
        plan.entry_state = entry_state;
        if existed.as_deref() != Some(&new[..]) {
            plan.change = Some(InittabChange {
                old,
                new,
                existed: existed.is_some(),
            });
        }
        plan.etc = Some(etc);
        Ok(plan)
    }

    /// The directories the renderings ask for (log directories), created once each.
    fn create_wanted_dirs(
        &self,
        dirs: &mut Dirs,
        items: &[(&str, &Rendered)],
    ) -> Result<(), String> {
        let mut wanted_dirs: Vec<&Path> = items
            .iter()
            .flat_map(|(_, r)| r.dirs.iter().map(PathBuf::as_path))
            .collect();
        wanted_dirs.dedup();
        for dir in wanted_dirs {
            self.created_dir(dirs, dir)?;
        }
        Ok(())
    }

    /// Puts every changed file in place: staged as a temp file, synced (one `syncfs` per
    /// filesystem for many, else each as staged), renamed over its destination (checked
    /// again first), then each directory synced once. A failure before the renames are
    /// done discards the temp files.
    fn write_files(
        &self,
        dirs: &mut Dirs,
        target: Target,
        items: &[(&str, &Rendered)],
        changes: &[FileChange],
    ) -> Result<(), String> {
        let pending: Vec<&FileChange> = changes.iter().filter(|c| c.changed()).collect();
        let one_sync = pending.len() >= SYNCFS_FROM && cfg!(target_os = "linux");
        let mut staged = Vec::new();
        let result = (|| -> Result<(), String> {
            self.stage_files(dirs, &pending, one_sync, &mut staged)?;
            commit_staged(dirs, &staged, target, items)?;
            staged.clear();
            sync_dirs(dirs, &pending)
        })();
        if let Err(e) = result {
            for (change, temp) in &staged {
                dirs.0[&change.dir].discard(temp);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Writes each file to a temp file beside its destination; `staged` collects them
    /// (also when one fails, so the caller can discard what was staged).
    fn stage_files<'c>(
        &self,
        dirs: &mut Dirs,
        pending: &[&'c FileChange],
        one_sync: bool,
        staged: &mut Vec<(&'c FileChange, std::ffi::OsString)>,
    ) -> Result<(), String> {
        for &change in pending {
            let dir = self.created_dir(dirs, &change.dir)?;
            staged.push((
                change,
                dir.stage(&change.name, &change.new, change.mode, !one_sync)?,
            ));
        }
        if one_sync {
            sync_filesystems(dirs, pending.iter().map(|c| &c.dir))?;
        }
        Ok(())
    }

    /// Tells the init system about the tunnels whose files or entry changed.
    fn activate_changed(
        &self,
        target: Target,
        items: &[(&str, &Rendered)],
        plans: &[TunnelPlan],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        let activate: Vec<Activation> = items
            .iter()
            .zip(plans)
            .filter(|(_, p)| p.changed)
            .map(|((name, rendered), p)| Activation {
                name,
                rendered,
                fresh: p.fresh,
            })
            .collect();
        if !activate.is_empty() {
            self.activate(target, &activate, out)?;
        }
        Ok(())
    }
}

/// `dir` and its missing parents, each made mode 0755 whatever the umask.
fn create_dirs_0755(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| fs::symlink_metadata(d).is_err()) {
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        fs::create_dir(d)
            .and_then(|()| fs::set_permissions(d, fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    Ok(())
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

/// Per tunnel: whether nothing of it was there before (fresh) and whether anything of
/// it changes (a file or its inittab entry).
fn tunnel_plans(
    count: usize,
    changes: &[FileChange],
    entry_state: &[(bool, bool)],
) -> Vec<TunnelPlan> {
    (0..count)
        .map(|i| {
            let mine = changes.iter().filter(|c| c.owner == i);
            let files_fresh = mine.clone().all(|c| c.old.is_none());
            let files_changed = mine.clone().any(FileChange::changed);
            TunnelPlan {
                fresh: files_fresh && !entry_state[i].0,
                changed: files_changed || entry_state[i].1,
            }
        })
        .collect()
}

/// The diff of every changed file, then of /etc/inittab.
fn show_diffs(
    out: &mut dyn Write,
    changes: &[FileChange],
    inittab: Option<&InittabChange>,
) -> Result<(), String> {
    for change in changes.iter().filter(|c| c.changed()) {
        write_diff(out, &change.shown_path, change.old.as_deref(), &change.new)?;
    }
    if let Some(c) = inittab {
        write_diff(
            out,
            Path::new(INITTAB),
            c.existed.then_some(&c.old[..]),
            &c.new,
        )?;
    }
    Ok(())
}

/// One line per tunnel saying what install did (for a dry run: would do), and the
/// outcomes in the same order.
fn report(
    out: &mut dyn Write,
    target: Target,
    items: &[(&str, &Rendered)],
    plans: &[TunnelPlan],
    dry_run: bool,
) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for ((name, _), plan) in items.iter().zip(plans) {
        let (done, outcome) = match (plan.changed, plan.fresh, dry_run) {
            (false, _, _) => ("unchanged", Outcome::Unchanged),
            (true, true, true) => (
                "would install (dry run, nothing written)",
                Outcome::WouldChange,
            ),
            (true, false, true) => (
                "would update (dry run, nothing written)",
                Outcome::WouldChange,
            ),
            (true, true, false) => ("installed", Outcome::Installed),
            (true, false, false) => ("updated", Outcome::Updated),
        };
        writeln!(out, "{name} ({target}): {done}").map_err(io_err)?;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Renames each staged file over its destination, checked again just before.
fn commit_staged(
    dirs: &Dirs,
    staged: &[(&FileChange, std::ffi::OsString)],
    target: Target,
    items: &[(&str, &Rendered)],
) -> Result<(), String> {
    for (change, temp) in staged {
        let dir = &dirs.0[&change.dir];
        dir.check_destination(&change.name).map_err(|(r, why)| {
            refusal_message(r, &why, items[change.owner].0, target, &change.shown_path)
        })?;
        dir.commit(temp, &change.name)?;
    }
    Ok(())
}

/// Puts back what [`Installer::write_files`] replaced: new files removed first (that
/// frees space), then old contents written again. Returns what could not be put back.
fn undo_files(dirs: &Dirs, changes: &[FileChange]) -> Option<String> {
    let changed = || changes.iter().filter(|c| c.changed());
    let mut failed = Vec::new();
    for change in changed().filter(|c| c.old.is_none()) {
        if let Err(e) = dirs.0[&change.dir].remove(&change.name) {
            failed.push(e);
        }
    }
    for change in changed() {
        if let Some(old) = &change.old
            && let Err((_, e)) = dirs.0[&change.dir].write_file(&change.name, old, change.mode)
        {
            failed.push(e);
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// fsyncs each directory that got a file, once: the renames in it are durable.
fn sync_dirs(dirs: &Dirs, pending: &[&FileChange]) -> Result<(), String> {
    let mut synced: Vec<&Path> = Vec::new();
    for change in pending {
        if !synced.contains(&change.dir.as_path()) {
            dirs.0[&change.dir].sync()?;
            synced.push(&change.dir);
        }
    }
    Ok(())
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
    let masked_fix = target.system().masked_fix(name);
    match (refusal, masked_fix) {
        (safe_fs::Refusal::Masked, Some(fix)) => format!(
            "{} is masked (a symlink to /dev/null): tunnelctl leaves a masked unit alone. {fix}",
            shown.display(),
        ),
        (safe_fs::Refusal::Masked | safe_fs::Refusal::Symlink(_), _) => format!(
            "{why}; tunnelctl writes only regular files and never through a link (the link's \
             target would get root's content, or keep its owner). Fix: remove the link \
             (`rm {}`) and install again",
            shown.display()
        ),
        (safe_fs::Refusal::NotRegular | safe_fs::Refusal::Io, _) => why.to_string(),
    }
}

fn io_err(e: io::Error) -> String {
    format!("writing output: {e}")
}

#[cfg(test)]
mod tests;
