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

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::render::{InittabEntry, Rendered, inittab, launchd};
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

/// One file's planned change.
struct FileChange {
    host_path: PathBuf,
    shown_path: PathBuf,
    old: Option<Vec<u8>>,
    new: Vec<u8>,
    mode: u32,
}

impl Installer {
    /// The place a target path lives on this host (under `--root` when given).
    pub fn host(&self, path: &Path) -> PathBuf {
        let relative: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.root.join(relative)
    }

    /// Installs (or updates) one rendered tunnel. Diffs go to `out`.
    pub fn install(
        &self,
        name: &str,
        target: Target,
        rendered: &Rendered,
        out: &mut dyn Write,
    ) -> Result<Outcome, String> {
        let mut changes = Vec::new();
        for file in &rendered.files {
            let host_path = self.host(&file.path);
            changes.push(FileChange {
                old: read_optional(&host_path)?,
                host_path,
                shown_path: file.path.clone(),
                new: file.contents.clone().into_bytes(),
                mode: file.mode,
            });
        }
        if let Some(entry) = &rendered.inittab {
            let host_path = self.host(Path::new(INITTAB));
            let old = read_optional(&host_path)?;
            let new = inittab_with(old.as_deref().unwrap_or_default(), entry, name, target)?;
            changes.push(FileChange {
                host_path,
                shown_path: INITTAB.into(),
                old,
                new,
                mode: 0o644,
            });
        }

        let pending: Vec<&FileChange> = changes
            .iter()
            .filter(|c| c.old.as_deref() != Some(&c.new[..]))
            .collect();
        if pending.is_empty() {
            writeln!(out, "{name} ({target}): unchanged").map_err(io_err)?;
            return Ok(Outcome::Unchanged);
        }
        let fresh = changes
            .iter()
            .all(|c| c.old.is_none() || c.shown_path == Path::new(INITTAB))
            && !rendered.inittab.as_ref().is_some_and(|e| {
                changes.iter().any(|c| {
                    c.shown_path == Path::new(INITTAB)
                        && c.old
                            .as_deref()
                            .is_some_and(|old| find_entry(old, &e.id).is_some())
                })
            });
        for change in &pending {
            let old =
                String::from_utf8_lossy(change.old.as_deref().unwrap_or_default()).into_owned();
            let new = String::from_utf8_lossy(&change.new).into_owned();
            let shown = change.shown_path.display().to_string();
            let old_label = if change.old.is_some() {
                shown.clone()
            } else {
                "/dev/null".to_string()
            };
            out.write_all(unified_diff(&old_label, &shown, &old, &new).as_bytes())
                .map_err(io_err)?;
        }
        if self.dry_run {
            writeln!(
                out,
                "{name} ({target}): would {} (dry run, nothing written)",
                if fresh { "install" } else { "update" }
            )
            .map_err(io_err)?;
            return Ok(Outcome::WouldChange);
        }
        for dir in &rendered.dirs {
            fs::create_dir_all(self.host(dir))
                .map_err(|e| format!("creating {}: {e}", self.host(dir).display()))?;
        }
        // The args file before the inittab line that names it, so init never starts a
        // watchdog whose arguments are not there yet.
        for change in &pending {
            if let Some(parent) = change.host_path.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            let mode = existing_mode(&change.host_path).unwrap_or(change.mode);
            write_atomic(&change.host_path, &change.new, mode)?;
        }
        writeln!(
            out,
            "{name} ({target}): {}",
            if fresh { "installed" } else { "updated" }
        )
        .map_err(io_err)?;
        self.activate(name, target, rendered, fresh, out)?;
        Ok(if fresh {
            Outcome::Installed
        } else {
            Outcome::Updated
        })
    }

    /// Tells the init system; never reached under `--root`.
    fn activate(
        &self,
        name: &str,
        target: Target,
        rendered: &Rendered,
        fresh: bool,
        out: &mut dyn Write,
    ) -> Result<(), String> {
        if !self.run_tools {
            return Ok(());
        }
        let unit = crate::escape::unit_name(name);
        let plist = rendered
            .files
            .first()
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        match target {
            Target::Systemd | Target::SystemdUser => {
                let mut base = vec!["systemctl".to_string()];
                if target == Target::SystemdUser {
                    base.push("--user".into());
                }
                run_tool(&with(&base, &["daemon-reload"]))?;
                if !self.no_start {
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
                if !self.no_start {
                    let domain = launchd_domain(target);
                    let service = format!("{domain}/{}", launchd::label(name));
                    if !fresh {
                        // A changed plist is only read on bootstrap; the old job may be gone already.
                        let _ = run_tool(&["launchctl".into(), "bootout".into(), service.clone()]);
                    }
                    run_tool(&["launchctl".into(), "bootstrap".into(), domain, plist])?;
                    run_tool(&["launchctl".into(), "kickstart".into(), "-k".into(), service])?;
                }
            }
            Target::Inittab => {
                if !fresh {
                    // sysvinit keeps a running entry whose line did not change, so a new
                    // args file needs the entry gone once: drop it, reload, put it back.
                    let host = self.host(Path::new(INITTAB));
                    let current =
                        fs::read(&host).map_err(|e| format!("reading {}: {e}", host.display()))?;
                    if let (Some(without), Some(entry)) = (
                        inittab_without(&current, &entry_id(rendered)),
                        &rendered.inittab,
                    ) {
                        write_atomic(&host, &without, existing_mode(&host).unwrap_or(0o644))?;
                        run_tool(&["telinit".into(), "q".into()])?;
                        let again = inittab_with(&without, entry, name, target)?;
                        write_atomic(&host, &again, existing_mode(&host).unwrap_or(0o644))?;
                    }
                }
                if !self.no_start {
                    run_tool(&["telinit".into(), "q".into()])?;
                }
            }
            Target::Busybox => {
                if !self.no_start {
                    run_tool(&["kill".into(), "-HUP".into(), "1".into()])?;
                }
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
        let files: Vec<PathBuf> = paths
            .iter()
            .filter(|p| self.host(p).exists())
            .cloned()
            .collect();
        let inittab_host = self.host(Path::new(INITTAB));
        let inittab_now = matches!(target, Target::Inittab | Target::Busybox)
            .then(|| read_optional(&inittab_host))
            .transpose()?
            .flatten();
        let without = inittab_now
            .as_deref()
            .and_then(|bytes| inittab_without(bytes, inittab_id));
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
                    let service = format!("{}/{}", launchd_domain(target), launchd::label(name));
                    run_tool(&["launchctl".into(), "bootout".into(), service])?;
                }
                Target::Inittab | Target::Busybox => {}
            }
        }
        if let Some(without) = &without {
            write_atomic(
                &inittab_host,
                without,
                existing_mode(&inittab_host).unwrap_or(0o644),
            )?;
            writeln!(out, "removed the {inittab_id} entry from {INITTAB}").map_err(io_err)?;
            if self.run_tools {
                // sysvinit stops processes whose entry vanished; BusyBox may not.
                if target == Target::Inittab {
                    run_tool(&["telinit".into(), "q".into()])?;
                } else {
                    run_tool(&["kill".into(), "-HUP".into(), "1".into()])?;
                    writeln!(out, "note: unless BusyBox was built with FEATURE_KILL_REMOVED the watchdog keeps running until reboot")
                        .map_err(io_err)?;
                }
            }
        }
        for file in &files {
            let host = self.host(file);
            fs::remove_file(&host).map_err(|e| format!("removing {}: {e}", host.display()))?;
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

fn entry_id(rendered: &Rendered) -> String {
    rendered
        .inittab
        .as_ref()
        .map(|e| e.id.clone())
        .unwrap_or_default()
}

fn launchd_domain(target: Target) -> String {
    if target == Target::Launchd {
        "system".into()
    } else {
        format!("gui/{}", nix::unistd::getuid())
    }
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

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn existing_mode(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Writes `bytes` to a temp file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory: readers see the old file or the new one, never a torn one.
/// An existing file's owner is kept.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tunnelctl-{}", std::process::id()));
    let owner = fs::metadata(path).ok().map(|m| (m.uid(), m.gid()));
    let result = (|| -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?; // umask must not narrow it
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| format!("writing {}: {e}", path.display()))
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
            // Keep the terminator the old entry had (none when it ended the file).
            let last_old = lines[at + n - 1];
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
