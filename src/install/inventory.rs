//! Which tunnels tunnelctl installed on this machine (or `--root`), found only by what
//! tunnelctl itself writes: the service file's name *and* its marker, and for inittab
//! targets our marker line in `/etc/inittab`. A file that merely looks similar (a
//! hand-written `tunnel-x.service`, an `org.tunnelctl.x.plist` with another label) is
//! never counted, so `apply` never removes it. Also the lock that serialises `apply`.

use super::*;

use crate::config::inittab_id;

/// Beside the target's service files; held for a whole `apply` (and removed again).
pub const APPLY_LOCK: &str = ".apply.tunnelctl.lock";

impl Installer {
    /// The names of the tunnels installed for `target`, sorted. `home` is where per-user
    /// targets live (under the root).
    pub fn installed_tunnels(&self, target: Target, home: &Path) -> Result<Vec<String>, String> {
        let mut names = if target.system().uses_inittab() {
            self.inittab_tunnels(target)?
        } else {
            self.service_file_tunnels(target, home)?
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether every file at `paths` that exists carries tunnelctl's marker for `name`:
    /// removal touches nothing else.
    pub fn all_ours(&self, name: &str, target: Target, paths: &[PathBuf]) -> Result<(), String> {
        let mut dirs = Dirs::for_target(target);
        for path in paths {
            let (dir, file_name) = safe_fs::split(path)?;
            let Some(d) = self.existing_dir(&mut dirs, dir)? else {
                continue;
            };
            // A link (a mask) is the admin's: uninstall leaves it alone and says so.
            if d.check_destination(file_name).is_err() {
                continue;
            }
            let Some(bytes) = d.read_optional(file_name, MAX_READ)? else {
                continue;
            };
            if !target.system().is_ours(&bytes, name) {
                return Err(format!(
                    "{} has no tunnelctl marker for `{name}`: it was not written by tunnelctl, \
                     so it is left alone (remove it by hand if it should go)",
                    path.display()
                ));
            }
        }
        Ok(())
    }

    /// Runs `f` holding an exclusive lock in the target's service directory, so two
    /// `apply` runs on one machine take turns. The directory is created when missing
    /// (apply is about to write there anyway).
    pub fn while_locked<T>(
        &self,
        target: Target,
        home: &Path,
        f: impl FnOnce() -> T,
    ) -> Result<T, String> {
        let dir = service_dir(target, home)?;
        let opened = self.open_dir(&dir, true, Dirs::for_target(target).1)?;
        let _lock = opened.lock(OsStr::new(APPLY_LOCK))?;
        Ok(f())
    }

    /// Units or plists whose file name is ours and whose content names the same tunnel.
    fn service_file_tunnels(&self, target: Target, home: &Path) -> Result<Vec<String>, String> {
        let dir = service_dir(target, home)?;
        let mut dirs = Dirs::for_target(target);
        let Some(opened) = self.existing_dir(&mut dirs, &dir)? else {
            return Ok(Vec::new());
        };
        let listing = match fs::read_dir(self.host(&dir)) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        let mut names = Vec::new();
        // Each tunnel's own folder, for the targets that give it one.
        let mut folders = Dirs::for_target(target);
        for entry in listing {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            let file_name = entry.file_name();
            let system = target.system();
            let Some(name) = file_name.to_str().and_then(|f| system.file_tunnel(f)) else {
                continue;
            };
            // The name must map back to exactly this file (no other spelling of it), or
            // for a folder per tunnel (s6, runit) to this folder, whose first file (`run`)
            // says whose it is.
            let paths = system.installed_paths(&name, home);
            let entry = dir.join(&file_name);
            let bytes = if paths == [entry.clone()] {
                // A link (a mask) or anything not a regular file is not ours.
                if opened.check_destination(&file_name).is_err() {
                    continue;
                }
                opened.read_optional(&file_name, MAX_READ)?
            } else if paths[0].parent() == Some(entry.as_path()) {
                // A link in the folder's place is not ours either.
                if !fs::symlink_metadata(self.host(&entry)).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                let (folder, first) = safe_fs::split(&paths[0])?;
                let Some(folder) = self.existing_dir(&mut folders, folder)? else {
                    continue;
                };
                if folder.check_destination(first).is_err() {
                    continue;
                }
                folder.read_optional(first, MAX_READ)?
            } else {
                continue;
            };
            if bytes.is_some_and(|b| system.is_ours(&b, &name)) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Our marker lines in /etc/inittab followed by an entry of this target's form.
    fn inittab_tunnels(&self, target: Target) -> Result<Vec<String>, String> {
        let (etc, inittab_name) = safe_fs::split(Path::new(INITTAB))?;
        let mut dirs = Dirs::for_target(target);
        let Some(etc) = self.existing_dir(&mut dirs, etc)? else {
            return Ok(Vec::new());
        };
        let Some(bytes) = etc.read_optional(inittab_name, MAX_READ)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let mut names = Vec::new();
        for (at, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("# tunnelctl:") else {
                continue;
            };
            let Some((id, tail)) = rest.split_once(' ') else {
                continue;
            };
            let Some(name) = tail.split(' ').next() else {
                continue;
            };
            if inittab_id(name) != id || *line != crate::targets::inittab::marker(id, name) {
                continue;
            }
            let Some(form) = target.system().inittab_line_start(id) else {
                continue;
            };
            if lines.get(at + 1).is_some_and(|l| l.starts_with(&form)) {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }
}

/// The directory that holds the target's service files (units, plists, args files), or
/// for a target that gives each tunnel a folder of its own (s6, runit) the directory
/// that holds those folders.
fn service_dir(target: Target, home: &Path) -> Result<PathBuf, String> {
    let dir = |name: &str| {
        let paths = target.system().installed_paths(name, home);
        paths[0].parent().unwrap_or(Path::new("/")).to_path_buf()
    };
    let (x, y) = (dir("x"), dir("y"));
    if x == y {
        return Ok(x);
    }
    match (x.parent(), y.parent()) {
        (Some(a), Some(b)) if a == b => Ok(a.to_path_buf()),
        _ => Err(format!(
            "apply cannot find the tunnels installed for --target {target}: their files share \
             no folder; install, uninstall, start and stop them by name instead"
        )),
    }
}
