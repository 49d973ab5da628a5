//! Uninstall: the service stopped, then what install wrote removed, the init system told.
//!
//! What uninstall removes: the files install wrote for the tunnel, our marker and entry
//! line in `/etc/inittab`, a systemd unit's state folder (`StateDirectory=`, through
//! `systemctl clean`), and afterwards directories that lie inside a directory named
//! `tunnelctl` (`/etc/tunnelctl/run`, `/var/log/tunnelctl`, …), were created by install
//! (its marker, `MADE_DIR_MARKER`, is in the outermost of them) and hold nothing else:
//! one that was there before install stays, empty or not. Standard directories such as
//! `/etc/systemd/system` are never removed, even when install created them under an
//! empty `--root`.

use super::*;

impl Installer {
    /// Stops the tunnel and removes what install wrote (see the module comment).
    pub fn uninstall(
        &self,
        name: &str,
        target: Target,
        home: &Path,
        out: &mut dyn Write,
    ) -> Result<Outcome, String> {
        let system = target.system();
        let paths = &system.installed_paths(name, home);
        let inittab_id = &crate::config::inittab_id(name);
        let mut dirs = Dirs::for_target(target);
        let files = self.files_to_remove(&mut dirs, paths, out)?;
        let etc = self.inittab_dir_of(&mut dirs, target)?;
        let has_entry = has_inittab_entry(etc.as_ref(), inittab_id)?;
        if files.is_empty() && !has_entry {
            writeln!(out, "{name} ({target}): not installed").map_err(io_err)?;
            return Ok(Outcome::NotInstalled);
        }
        if self.dry_run {
            report_would_remove(out, &files, has_entry, inittab_id)?;
            return Ok(Outcome::WouldChange);
        }
        // Stop first, while the init system still knows the service.
        self.run_steps(target, &system.stop(name), out)?;
        if has_entry && let Some(etc) = &etc {
            remove_inittab_entry(etc, name, target, inittab_id, out)?;
        }
        self.remove_files(&mut dirs, &files, out)?;
        for dir in system.made_dirs(home) {
            self.remove_empty_tunnelctl_dirs(Some(&dir));
        }
        // Told after the files are gone: an init that cannot be told (a failed reload)
        // must not leave half a tunnel for a second run.
        self.run_steps(target, &system.forget(name), out)?;
        Ok(Outcome::Removed)
    }

    /// Removes the tunnel's metrics file, the one the watchdog kept writing, once the
    /// tunnel is uninstalled (node_exporter would otherwise report a stopped tunnel for
    /// ever). `path` is the file tunnelctl's naming gives the tunnel
    /// (`Config::metrics_file_of`); it goes only when it is a regular file there, its
    /// folder reached without following a link another user made (as the watchdog
    /// writes it); a link or anything else in its place is left alone, and said so.
    pub fn remove_metrics_file(&self, path: &Path, out: &mut dyn Write) -> Result<(), String> {
        let (dir, file_name) = safe_fs::split(path)?;
        if !fs::symlink_metadata(self.host(dir)).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let opened = self.open_dir(dir, false, safe_fs::Trust::Private)?;
        match opened.check_destination(file_name) {
            Ok(()) if opened.lstat(file_name)?.is_some() => {
                if self.dry_run {
                    return writeln!(out, "would remove {}", path.display()).map_err(io_err);
                }
                opened.remove(file_name)?;
                writeln!(out, "removed {}", path.display()).map_err(io_err)
            }
            Ok(()) => Ok(()),
            Err((_, why)) => writeln!(
                out,
                "left alone: {why} (the tunnel's metrics file would be a regular file)"
            )
            .map_err(io_err),
        }
    }

    /// What [`Installer::uninstall`] would remove, as a diff (each file and our inittab
    /// entry going away); None when nothing of the tunnel is there. Writes nothing.
    pub fn preview_removal(
        &self,
        target: Target,
        paths: &[PathBuf],
        inittab_id: &str,
    ) -> Result<Option<String>, String> {
        let dry = Installer {
            dry_run: true,
            ..self.clone()
        };
        let mut dirs = Dirs::for_target(target);
        let files = dry.files_to_remove(&mut dirs, paths, &mut io::sink())?;
        let mut diff = Vec::new();
        for file in &files {
            let (dir, file_name) = safe_fs::split(file)?;
            let old = match dry.existing_dir(&mut dirs, dir)? {
                Some(d) => d.read_optional(file_name, MAX_READ)?.unwrap_or_default(),
                None => Vec::new(),
            };
            write_removal_diff(&mut diff, file, &old)?;
        }
        let etc = dry.inittab_dir_of(&mut dirs, target)?;
        let mut has_entry = false;
        if let Some(etc) = &etc {
            let (_, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
            let old = etc.read_optional(inittab_name, MAX_READ)?;
            if let Some(without) = old.as_deref().and_then(|b| inittab_without(b, inittab_id)) {
                has_entry = true;
                write_diff(&mut diff, Path::new(INITTAB), old.as_deref(), &without)?;
            }
        }
        if files.is_empty() && !has_entry {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(&diff).into_owned()))
    }

    /// The paths install wrote that are there now. A link in their place (a mask) is the
    /// admin's, not ours: left alone, and said so.
    fn files_to_remove(
        &self,
        dirs: &mut Dirs,
        paths: &[PathBuf],
        out: &mut dyn Write,
    ) -> Result<Vec<PathBuf>, String> {
        let mut files = Vec::new();
        for path in paths {
            let (dir, file_name) = safe_fs::split(path)?;
            let Some(d) = self.existing_dir(dirs, dir)? else {
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
        Ok(files)
    }

    /// /etc, for a target that keeps its entry in /etc/inittab and when it exists.
    fn inittab_dir_of(
        &self,
        dirs: &mut Dirs,
        target: Target,
    ) -> Result<Option<safe_fs::Dir>, String> {
        if !target.system().uses_inittab() {
            return Ok(None);
        }
        let (inittab_dir, _) = safe_fs::split(Path::new(INITTAB))?;
        self.existing_dir(dirs, inittab_dir)?;
        Ok(dirs.0.remove(inittab_dir))
    }

    /// Removes each file, then the `tunnelctl` directories it leaves empty.
    fn remove_files(
        &self,
        dirs: &mut Dirs,
        files: &[PathBuf],
        out: &mut dyn Write,
    ) -> Result<(), String> {
        for file in files {
            let (dir, file_name) = safe_fs::split(file)?;
            if let Some(d) = self.existing_dir(dirs, dir)? {
                d.remove(file_name)?;
            }
            writeln!(out, "removed {}", file.display()).map_err(io_err)?;
            self.remove_empty_tunnelctl_dirs(file.parent());
        }
        Ok(())
    }

    /// Removes `dir` and its parents while they are inside a `tunnelctl` directory,
    /// were made by install (see [`MADE_DIR_MARKER`]) and hold nothing but its marker.
    fn remove_empty_tunnelctl_dirs(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if !inside_tunnelctl(d) || !self.made_and_empty(d) {
                break;
            }
            let _ = fs::remove_file(self.host(d).join(MADE_DIR_MARKER));
            // remove_dir fails on a non-empty directory, which is exactly the stop we want.
            if fs::remove_dir(self.host(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// A real directory (not a link), empty but for install's marker, inside the
    /// outermost `tunnelctl` directory install made (the one with the marker).
    fn made_and_empty(&self, dir: &Path) -> bool {
        let host = self.host(dir);
        if !fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
            return false;
        }
        let Ok(entries) = fs::read_dir(&host) else {
            return false;
        };
        let names: Vec<_> = entries.take(2).flatten().map(|e| e.file_name()).collect();
        if !(names.is_empty() || names == [MADE_DIR_MARKER]) {
            return false;
        }
        dir.ancestors()
            .take_while(|a| inside_tunnelctl(a))
            .any(|a| {
                fs::symlink_metadata(self.host(a).join(MADE_DIR_MARKER)).is_ok_and(|m| m.is_file())
            })
    }
}

fn inside_tunnelctl(dir: &Path) -> bool {
    dir.components().any(|c| c.as_os_str() == "tunnelctl")
}

/// Whether /etc/inittab (in `etc`, when given) has our entry for `id`.
fn has_inittab_entry(etc: Option<&safe_fs::Dir>, id: &str) -> Result<bool, String> {
    let Some(etc) = etc else {
        return Ok(false);
    };
    let (_, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
    Ok(etc
        .read_optional(inittab_name, MAX_READ)?
        .and_then(|bytes| inittab_without(&bytes, id))
        .is_some())
}

/// A file going away: every line removed, to /dev/null.
fn write_removal_diff(out: &mut dyn Write, path: &Path, old: &[u8]) -> Result<(), String> {
    let shown = path.display().to_string();
    let text = unified_diff(&shown, "/dev/null", &String::from_utf8_lossy(old), "");
    out.write_all(text.as_bytes()).map_err(io_err)
}

/// What a dry-run uninstall would remove.
fn report_would_remove(
    out: &mut dyn Write,
    files: &[PathBuf],
    has_entry: bool,
    inittab_id: &str,
) -> Result<(), String> {
    for file in files {
        writeln!(out, "would remove {}", file.display()).map_err(io_err)?;
    }
    if has_entry {
        writeln!(out, "would remove the {inittab_id} entry from {INITTAB}").map_err(io_err)?;
    }
    Ok(())
}

/// Takes our entry out of /etc/inittab, read again under the lock (see
/// [`InittabPlan::write`]).
fn remove_inittab_entry(
    etc: &safe_fs::Dir,
    name: &str,
    target: Target,
    inittab_id: &str,
    out: &mut dyn Write,
) -> Result<(), String> {
    let (_, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
    let lock = etc.lock(OsStr::new(INITTAB_LOCK))?;
    etc.clean_stale_temps();
    let now = etc.read_optional(inittab_name, MAX_READ)?;
    if let Some(without) = now.as_deref().and_then(|b| inittab_without(b, inittab_id)) {
        etc.write_file(inittab_name, &without, 0o644)
            .map_err(|(r, why)| refusal_message(r, &why, name, target, Path::new(INITTAB)))?;
    }
    drop(lock);
    writeln!(out, "removed the {inittab_id} entry from {INITTAB}").map_err(io_err)
}
