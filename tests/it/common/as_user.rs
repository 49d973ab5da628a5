//! Running something as another, unprivileged user (`runuser`, from a root test).
//!
//! That user must not depend on reading the checkout or the build: a clone in root's
//! home, or in any `mktemp -d` folder, sits under a 0700 directory. So what it needs
//! (scripts, binaries, keys) is copied into a folder of its own ([`UserStage`]), which
//! is removed when the stage is dropped, also when the test fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User, chown};

/// The unprivileged account a test runs as: `TUNNELCTL_TEST_USER=NAME`, else the first
/// login user (uid 1000..60000 with a real shell). `None` if there is none (`nobody`
/// will not do: sshd refuses it as a locked account). `.ci/run` creates one when the
/// machine has none.
pub fn unprivileged_user() -> Option<User> {
    let name = match std::env::var("TUNNELCTL_TEST_USER") {
        Ok(name) => name,
        Err(_) => {
            let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let uid: u32 = f.get(2)?.parse().ok()?;
                ((1000..60000).contains(&uid) && f.get(6).is_some_and(|s| s.ends_with("sh")))
                    .then(|| f[0].to_string())
            })?
        }
    };
    Some(
        User::from_name(&name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no user {name} (getpwnam; TUNNELCTL_TEST_USER?)")),
    )
}

/// A folder owned by `user` (mode 0700) under /tmp, holding copies of what it runs.
pub struct UserStage {
    dir: tempfile::TempDir,
    uid: Uid,
    gid: Gid,
    name: String,
}

impl UserStage {
    /// /tmp, not `TMPDIR`: a developer's `TMPDIR` may itself be private to root.
    pub fn new(user: &User) -> UserStage {
        let dir = tempfile::Builder::new()
            .prefix(&format!("tunnelctl-as-{}.", user.name))
            .tempdir_in("/tmp")
            .expect("stage folder in /tmp");
        chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown the stage folder");
        let stage = UserStage {
            dir,
            uid: user.uid,
            gid: user.gid,
            name: user.name.clone(),
        };
        stage.mkdir("tmp");
        stage
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn user(&self) -> &str {
        &self.name
    }

    /// Creates `rel` (and its parents) inside the stage, owned by the user.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let mut path = self.dir.path().to_path_buf();
        for part in Path::new(rel).components() {
            path.push(part);
            if !path.is_dir() {
                std::fs::create_dir(&path)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
                chown(&path, Some(self.uid), Some(self.gid)).expect("chown");
            }
        }
        path
    }

    /// Copies the file `src` to `rel` inside the stage, keeping its mode, owned by the user.
    pub fn copy(&self, src: &Path, rel: &str) -> PathBuf {
        let dst = self.dir.path().join(rel);
        if let Some(parent) = Path::new(rel)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            self.mkdir(parent.to_str().unwrap());
        }
        super::copy_by_cp(src, &dst);
        let mode = std::fs::metadata(src).unwrap().permissions().mode() & 0o755;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&dst, Some(self.uid), Some(self.gid)).expect("chown");
        dst
    }

    /// `runuser -u USER -- PROGRAM` with `TMPDIR=STAGE/tmp`, run in the stage folder (the
    /// test's own working directory, the checkout, may be unreachable for the user).
    /// runuser keeps the environment (HOME, SHELL, USER, LOGNAME become the user's), so
    /// `.env()` on the result reaches the program.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", &self.name, "--"])
            .arg(program)
            .env("TMPDIR", self.dir.path().join("tmp"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }
}
