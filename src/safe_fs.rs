//! Files that root trusts, written and read without trusting the filesystem: every
//! directory is opened component by component with `O_NOFOLLOW` from a base the caller
//! vouches for (`/`, or `--root`), checked (owner, mode) on its descriptor, and files are
//! created, renamed and read relative to that descriptor, so a directory swapped or a
//! link planted after the check is never followed. Modes and owners are set explicitly
//! (never copied from what was there, never left to the umask).
//!
//! Used by install (units, args files, inittab), `trust` (known_hosts), the watchdog
//! (its state directory, state file, log file) and status/reconnect (bounded reads).
//! Only nix and std: the watchdog binary links it.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fchown, unlinkat};

/// Who may own (and write) the directories on a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Something root will read or execute lies below: every directory is owned by root
    /// or by the caller and writable by nobody else (group-writable only for group 0).
    Install,
    /// A private directory of the caller (the watchdog's state directory): root-owned
    /// directories may be world-writable only when sticky (`/tmp`); the caller's own must
    /// not be writable by group or others; anyone else's is refused.
    Private,
}

/// A directory opened and checked; everything below goes through `fd`.
#[derive(Debug)]
pub struct Dir {
    pub fd: OwnedFd,
    /// For messages only: never opened again by this path.
    pub path: PathBuf,
}

/// Why a destination cannot be written.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A symlink to /dev/null: `systemctl mask` (or `ln -s /dev/null`).
    Masked,
    /// Another symlink, with its target.
    Symlink(PathBuf),
    /// A directory, device, fifo, socket.
    NotRegular,
    /// Not a refusal: the system call failed (the message says which and why).
    Io,
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `{doing}PATH: why` for a failed system call (`doing` is e.g. `"reading "`, or empty).
fn failed(doing: &str, path: &Path, e: Errno) -> String {
    format!("{doing}{}: {}", path.display(), std::io::Error::from(e))
}

/// `uid N (name)` for messages. The name comes from /etc/passwd read as text, not from
/// getpwuid: the watchdog uses this too, and its static glibc must not load NSS modules
/// (packaging/build-deb.sh refuses such a binary). A user only NSS knows is `uid N`.
pub fn describe_uid(uid: u32) -> String {
    let name = std::fs::File::open("/etc/passwd").ok().and_then(|f| {
        use std::io::Read;
        let mut text = String::new();
        f.take(1 << 20).read_to_string(&mut text).ok()?;
        passwd_name(&text, uid).map(str::to_string)
    });
    match name {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// The name of `uid` in passwd(5) text (`name:password:uid:…`).
fn passwd_name(text: &str, uid: u32) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == uid && !name.is_empty()).then_some(name)
    })
}

/// The reason a directory with this status is not trusted, or None.
fn untrusted(st: &FileStat, path: &Path, trust: Trust) -> Option<String> {
    let me = euid();
    let mode = st.st_mode & 0o7777;
    if st.st_uid != 0 && st.st_uid != me {
        let owner = if me == 0 { "root" } else { "you or root" };
        return Some(format!(
            "{} is owned by {}, not by {owner}; whoever owns it can replace what tunnelctl puts below it. \
             Fix: `chown {} {}` (or remove it if you did not make it)",
            path.display(),
            describe_uid(st.st_uid),
            if me == 0 {
                "root:root".to_string()
            } else {
                me.to_string()
            },
            path.display()
        ));
    }
    let others_write = mode & 0o002 != 0;
    let group_write = mode & 0o020 != 0;
    let sticky = mode & 0o1000 != 0;
    let bad = match trust {
        Trust::Install => others_write || (group_write && st.st_gid != 0),
        // A sticky directory (/tmp): others cannot rename or remove what we made in it.
        Trust::Private if st.st_uid == 0 => {
            !sticky && (others_write || (group_write && st.st_gid != 0))
        }
        Trust::Private => others_write || group_write,
    };
    bad.then(|| {
        format!(
            "{} is writable by {} (mode {mode:04o}); anyone who can write there can replace what \
             tunnelctl puts below it. Fix: `chmod go-w {}`",
            path.display(),
            if others_write {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        )
    })
}

fn is_link(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);

/// Opens `base` (trusted as given: `/` or a `--root`) and walks `rel` below it, one
/// component at a time. Missing components are created with `create` (its mode set
/// explicitly, whatever the umask) when given, else the walk fails with ENOENT's text.
/// Each existing component is checked with `trust`. A symlink on the way is followed
/// only when it is owned by root or the caller (it then lies in a checked directory, so
/// only they could have made it: `/var/run -> /run`, DynamicUser's
/// `/var/lib/NAME -> private/NAME`), and the directory it leads to is checked in turn.
pub fn open_dir(base: &Path, rel: &Path, create: Option<u32>, trust: Trust) -> Result<Dir, String> {
    let fd = openat(
        nix::fcntl::AT_FDCWD,
        base,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| failed("", base, e))?;
    let mut dir = Dir {
        fd,
        path: base.to_path_buf(),
    };
    for component in rel.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        dir = dir.child(name, create, trust)?;
    }
    Ok(dir)
}

/// `open_dir` for an absolute path from `/`.
pub fn open_abs(path: &Path, create: Option<u32>, trust: Trust) -> Result<Dir, String> {
    open_dir(Path::new("/"), path, create, trust)
}

impl Dir {
    fn child(&self, name: &OsStr, create: Option<u32>, trust: Trust) -> Result<Dir, String> {
        let path = self.path.join(name);
        let mut created = false;
        let fd = match openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create.is_some() => {
                let mode = create.unwrap_or(0o755);
                match mkdirat(
                    &self.fd,
                    name,
                    Mode::from_bits_truncate(mode as nix::libc::mode_t),
                ) {
                    Ok(()) => created = true,
                    Err(Errno::EEXIST) => {} // made meanwhile: checked below like any other
                    Err(e) => {
                        return Err(failed("creating ", &path, e));
                    }
                }
                openat(&self.fd, name, DIR_FLAGS, Mode::empty())
                    .map_err(|e| failed("", &path, e))?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                let st = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| failed("", &path, e))?;
                if !is_link(&st) {
                    return Err(format!("{} is not a directory", path.display()));
                }
                if st.st_uid != 0 && st.st_uid != euid() {
                    return Err(format!(
                        "{} is a symlink owned by {}; tunnelctl follows only links made by root (or you). \
                         Fix: remove it (`rm {}`) or replace it with a directory",
                        path.display(),
                        describe_uid(st.st_uid),
                        path.display()
                    ));
                }
                openat(
                    &self.fd,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    format!(
                        "{} (a symlink): {}",
                        path.display(),
                        std::io::Error::from(e)
                    )
                })?
            }
            Err(e) => return Err(failed("", &path, e)),
        };
        if created {
            // The umask narrowed (or widened, under umask 000 nothing) the mode: set it.
            let mode = create.unwrap_or(0o755);
            fchmod(&fd, Mode::from_bits_truncate(mode as nix::libc::mode_t))
                .map_err(|e| failed("chmod ", &path, e))?;
        }
        let st = fstat(&fd).map_err(|e| failed("", &path, e))?;
        if let Some(why) = untrusted(&st, &path, trust) {
            return Err(why);
        }
        Ok(Dir { fd, path })
    }

    /// What is at `name` now, without following a link: None when nothing is there.
    pub fn lstat(&self, name: &OsStr) -> Result<Option<FileStat>, String> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(failed("", &self.path.join(name), e)),
        }
    }

    /// Ok when `name` is absent or a regular file tunnelctl may replace.
    pub fn check_destination(&self, name: &OsStr) -> Result<(), (Refusal, String)> {
        let path = self.path.join(name);
        let st = match self.lstat(name) {
            Ok(None) => return Ok(()),
            Ok(Some(st)) => st,
            Err(e) => return Err((Refusal::Io, e)),
        };
        if is_link(&st) {
            let target = readlinkat(&self.fd, name)
                .map(PathBuf::from)
                .unwrap_or_default();
            let refusal = if target == Path::new("/dev/null") {
                Refusal::Masked
            } else {
                Refusal::Symlink(target.clone())
            };
            return Err((
                refusal,
                format!("{} is a symlink to {}", path.display(), target.display()),
            ));
        }
        if !is_regular(&st) {
            return Err((
                Refusal::NotRegular,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(())
    }

    /// Reads `name` if it is a regular file (never through a link), at most `max` bytes.
    pub fn read_optional(&self, name: &OsStr, max: u64) -> Result<Option<Vec<u8>>, String> {
        let path = self.path.join(name);
        let fd = match openat(
            &self.fd,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(format!(
                    "{} is a symlink; tunnelctl does not read or write through links",
                    path.display()
                ));
            }
            Err(e) => return Err(failed("reading ", &path, e)),
        };
        read_bounded_fd(fd, &path, max).map(Some)
    }

    /// Creates a temp file beside `name` holding `bytes`, with `mode` and the caller as
    /// owner (set on the descriptor: no umask, nothing copied from an old file). Returns
    /// its name, to [`Dir::commit`] later. `sync`: fsync it now (a batch syncs once).
    pub fn stage(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
        sync: bool,
    ) -> Result<OsString, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let temp = temp_name(
            name,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        let result = (|| -> Result<(), Errno> {
            let fd = openat(
                &self.fd,
                temp.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?;
            // A new file is ours already unless the directory is setgid; chown only
            // then: the hardened system unit's seccomp filter (~@privileged) refuses
            // fchown with EPERM, even a no-op one, and the state file was never written.
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            let st = fstat(&fd)?;
            if st.st_uid != uid.as_raw() || st.st_gid != gid.as_raw() {
                fchown(&fd, Some(uid), Some(gid))?;
            }
            fchmod(&fd, Mode::from_bits_truncate(mode as nix::libc::mode_t))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(5)))?;
            if sync {
                file.sync_all()
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(5)))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = unlinkat(&self.fd, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                Err(failed("writing ", &self.path.join(name), e))
            }
        }
    }

    /// Renames a staged temp file over `name` (a rename replaces a link, never follows it).
    pub fn commit(&self, temp: &OsStr, name: &OsStr) -> Result<(), String> {
        renameat(&self.fd, temp, &self.fd, name).map_err(|e| {
            let _ = unlinkat(&self.fd, temp, UnlinkatFlags::NoRemoveDir);
            failed("writing ", &self.path.join(name), e)
        })
    }

    /// Removes a staged temp file (a batch that stopped half-way).
    pub fn discard(&self, temp: &OsStr) {
        let _ = unlinkat(&self.fd, temp, UnlinkatFlags::NoRemoveDir);
    }

    /// fsyncs the directory: the renames in it are durable.
    pub fn sync(&self) -> Result<(), String> {
        nix::unistd::fsync(&self.fd).map_err(|e| failed("syncing ", &self.path, e))
    }

    /// One whole-file replacement: temp, fsync, rename, fsync the directory. Refuses a
    /// destination that is a link or not a regular file.
    pub fn write_file(
        &self,
        name: &OsStr,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), (Refusal, String)> {
        self.check_destination(name)?;
        let temp = self
            .stage(name, bytes, mode, true)
            .map_err(|e| (Refusal::Io, e))?;
        // Checked again just before the rename: the mask (or a link) may have come meanwhile.
        if let Err(refusal) = self.check_destination(name) {
            self.discard(&temp);
            return Err(refusal);
        }
        self.commit(&temp, name).map_err(|e| (Refusal::Io, e))?;
        self.sync().map_err(|e| (Refusal::Io, e))
    }

    /// Creates `name` as an empty file with `mode`, or leaves it when it is there. No
    /// staging: an empty file is whole the moment it exists, so a killed run leaves no
    /// temp file. Never follows a link in its place.
    pub fn create_empty(&self, name: &OsStr, mode: u32) -> Result<(), String> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let mode = Mode::from_bits_truncate(mode as nix::libc::mode_t);
        match openat(&self.fd, name, flags | OFlag::O_CLOEXEC, mode) {
            // Explicitly, whatever the umask left.
            Ok(fd) => fchmod(&fd, mode).map_err(|e| failed("", &self.path.join(name), e)),
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(failed("creating ", &self.path.join(name), e)),
        }
    }

    /// Removes `name` (a file or a link; never what a link points to).
    pub fn remove(&self, name: &OsStr) -> Result<bool, String> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(failed("removing ", &self.path.join(name), e)),
        }
    }

    /// Removes temp files of ours left by a run that was killed (its pid is gone).
    /// Temp files of a live run are left alone.
    pub fn clean_stale_temps(&self) {
        // Names listed by path (no `dir` feature in nix here); the unlink itself is
        // relative to the checked descriptor and only of our temp-name pattern.
        let Ok(listing) = std::fs::read_dir(&self.path) else {
            return;
        };
        let mut stale = Vec::new();
        for entry in listing.flatten() {
            let name = entry.file_name();
            let name = name.as_os_str();
            if let Some(pid) = temp_pid(name)
                && pid != std::process::id()
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None)
                    == Err(Errno::ESRCH)
            {
                stale.push(name.to_os_string());
            }
        }
        for name in stale {
            let _ = unlinkat(&self.fd, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }

    /// An exclusive lock held while a read-modify-write of a shared file runs (inittab).
    /// The lock file is removed again when the lock is dropped; a waiter that then holds
    /// a lock on the removed file notices (the name now names another file, or none) and
    /// tries again, so removing it is safe.
    pub fn lock(&self, name: &OsStr) -> Result<Lock<'_>, String> {
        let path = self.path.join(name);
        let fail = |e: Errno| failed("locking ", &path, e);
        for _ in 0..1000 {
            let fd = openat(
                &self.fd,
                name,
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(fail)?;
            let st = fstat(&fd).map_err(fail)?;
            if !is_regular(&st) || st.st_uid != euid() {
                return Err(format!(
                    "{} is not a lock file of ours (owned by {}); remove it",
                    path.display(),
                    describe_uid(st.st_uid)
                ));
            }
            let file = std::fs::File::from(fd);
            let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| fail(e))?;
            let now = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
            if now.is_some_and(|n| n.st_ino == st.st_ino && n.st_dev == st.st_dev) {
                return Ok(Lock {
                    dir: self,
                    name: name.to_os_string(),
                    _file: locked,
                });
            }
        }
        Err(format!(
            "locking {}: gave up after 1000 tries",
            path.display()
        ))
    }
}

/// Held until dropped; dropping removes the lock file, then unlocks.
pub struct Lock<'a> {
    dir: &'a Dir,
    name: OsString,
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let _ = unlinkat(
            &self.dir.fd,
            self.name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// `.NAME.tunnelctl-PID-N`: hidden, and names the writer so a later run can tell a
/// killed run's leftovers from a live one's.
fn temp_name(name: &OsStr, pid: u32, n: u32) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".tunnelctl-{pid}-{n}"));
    temp
}

/// The writer's pid in a temp file name (also the older `.NAME.tunnelctl-PID`).
fn temp_pid(name: &OsStr) -> Option<u32> {
    let text = name.to_str()?;
    if !text.starts_with('.') {
        return None;
    }
    let (_, tail) = text.rsplit_once(".tunnelctl-")?;
    let pid = tail.split('-').next()?;
    pid.parse().ok().filter(|&p| p > 0)
}

/// Reads at most `max` bytes of a regular file; more is an error naming the limit (a
/// `state` linked to /dev/zero must not grow memory: links are refused anyway, and a
/// device or fifo is not a regular file).
pub fn read_bounded_fd(fd: OwnedFd, path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let st = fstat(&fd).map_err(|e| failed("reading ", path, e))?;
    if !is_regular(&st) {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if st.st_size as u64 > max {
        return Err(format!(
            "{} is {} bytes, more than the {max} bytes such a file can be; it is not ours or it is damaged",
            path.display(),
            st.st_size
        ));
    }
    let mut bytes = Vec::with_capacity(st.st_size.max(0) as usize);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{} grew past {max} bytes while being read",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Opens `path` read-only without following a final link, for a bounded read; also
/// returns its status (owner checks).
pub fn open_nofollow(path: &Path) -> Result<(OwnedFd, FileStat), std::io::Error> {
    let fd = openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    Ok((fd, st))
}

/// Reads a file another process of ours wrote (the watchdog's state file), for
/// status/reconnect: never through a link, only a regular file of at most `max` bytes,
/// and only when its owner is trusted: the caller, root, or the owner of its directory
/// when root made that directory for them (its parent is root's and closed to others:
/// DynamicUser's /var/lib/private/…). A file in a directory another user made (a
/// pre-created /tmp/tunnelctl-UID) is refused with the reason. None: no such file.
pub fn read_trusted(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    Ok(read_trusted_modified(path, max)?.map(|(bytes, _)| bytes))
}

/// [`read_trusted`], with the file's modification time (unix seconds) as it was opened.
pub fn read_trusted_modified(path: &Path, max: u64) -> Result<Option<(Vec<u8>, u64)>, String> {
    let (fd, st) = match open_nofollow(path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(format!(
                "{} is a symlink, which the watchdog never writes; not reading it (remove it)",
                path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let me = nix::unistd::getuid().as_raw();
    let trusted = st.st_uid == me || st.st_uid == 0 || {
        use std::os::unix::fs::MetadataExt;
        let dir = path.parent().and_then(|d| d.canonicalize().ok());
        let dir_meta = dir.as_ref().and_then(|d| std::fs::metadata(d).ok());
        let parent_meta = dir
            .as_ref()
            .and_then(|d| d.parent())
            .and_then(|p| std::fs::metadata(p).ok());
        matches!((dir_meta, parent_meta), (Some(d), Some(p))
            if d.uid() == st.st_uid && p.uid() == 0 && p.mode() & 0o022 == 0)
    };
    if !trusted {
        return Err(format!(
            "{} is owned by {}, not by you or root, in a directory root did not make for it:              not trusting it (another user may have planted it). Remove it, or pass --state-dir",
            path.display(),
            describe_uid(st.st_uid)
        ));
    }
    let modified = u64::try_from(st.st_mtime).unwrap_or(0);
    read_bounded_fd(fd, path, max).map(|bytes| Some((bytes, modified)))
}

/// Splits an absolute path into its directory and file name.
pub fn split(path: &Path) -> Result<(&Path, &OsStr), String> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(format!("{} names no file", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::passwd_name;

    #[test]
    fn names_a_uid_from_passwd_text() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\nbroken\n";
        assert_eq!(passwd_name(text, 0), Some("root"));
        assert_eq!(passwd_name(text, 1000), Some("alice"));
        assert_eq!(passwd_name(text, 7), None);
    }

    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn temp_names_carry_the_pid() {
        let t = temp_name(OsStr::new("tunnel-a.service"), 42, 7);
        assert_eq!(t, ".tunnel-a.service.tunnelctl-42-7");
        assert_eq!(temp_pid(&t), Some(42));
        assert_eq!(temp_pid(OsStr::new(".inittab.tunnelctl-99")), Some(99));
        assert_eq!(temp_pid(OsStr::new("inittab.tunnelctl-99")), None);
        assert_eq!(temp_pid(OsStr::new(".x.tunnelctl-lock")), None);
    }

    #[test]
    fn creates_with_explicit_modes_and_refuses_links() {
        let base = tempfile::tempdir().unwrap();
        let old = nix::sys::stat::umask(Mode::empty());
        let dir = open_dir(base.path(), Path::new("a/b"), Some(0o755), Trust::Install);
        nix::sys::stat::umask(old);
        let dir = dir.unwrap();
        let meta = std::fs::metadata(base.path().join("a/b")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        dir.write_file(OsStr::new("f"), b"x", 0o644).unwrap();
        let meta = std::fs::metadata(base.path().join("a/b/f")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        std::os::unix::fs::symlink("/dev/null", base.path().join("a/b/m")).unwrap();
        let (refusal, _) = dir.write_file(OsStr::new("m"), b"x", 0o644).unwrap_err();
        assert_eq!(refusal, Refusal::Masked);
        std::fs::set_permissions(
            base.path().join("a"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let err = open_dir(base.path(), Path::new("a/b"), None, Trust::Install).unwrap_err();
        assert!(err.contains("chmod go-w"), "{err}");
    }

    #[test]
    fn bounded_reads_refuse_devices_and_big_files() {
        let (fd, _) = open_nofollow(Path::new("/dev/zero")).unwrap();
        assert!(
            read_bounded_fd(fd, Path::new("/dev/zero"), 10)
                .unwrap_err()
                .contains("not a regular")
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 100]).unwrap();
        let (fd, _) = open_nofollow(&big).unwrap();
        assert!(
            read_bounded_fd(fd, &big, 10)
                .unwrap_err()
                .contains("10 bytes")
        );
    }
}
