//! Fault 9: freeze every process of the tools' units, as a suspend would, and thaw
//! them together.
//!
//! First choice `systemctl --user freeze` (systemd's own freezer). systemd 252 on this
//! machine's hybrid cgroup layout refuses it (the run's notes quote its answer); then
//! the cgroup v1 `freezer` controller mounted at /sys/fs/cgroup/freezer is
//! used directly: the user manager's processes sit in the bench's own group there (see
//! usermgr.rs), each unit's processes are moved into a child group of it, frozen, thawed,
//! and moved back. A process the unit forks between listing and freezing is picked up
//! by a second pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::stop;
use crate::usermgr::UserManager;

const FREEZER: &str = "/sys/fs/cgroup/freezer";

pub enum Frozen {
    /// Units frozen by the user manager.
    Systemd {
        mgr: std::sync::Arc<UserManager>,
        units: Vec<String>,
    },
    /// Our own v1 freezer group, and the group its processes came from.
    V1 {
        dir: PathBuf,
        home: PathBuf,
        /// Why `systemctl --user freeze` was not used (its own words).
        refused: String,
    },
}

impl Frozen {
    pub fn how(&self) -> String {
        match self {
            Frozen::Systemd { .. } => "`systemctl --user freeze`/`thaw`".into(),
            Frozen::V1 { refused, .. } => format!(
                "the cgroup v1 freezer (`systemctl --user freeze` said: {})",
                refused.trim()
            ),
        }
    }

    /// Thaws; on failure gives back what is still frozen so the caller can try again.
    pub fn thaw(self) -> Result<(), (String, Frozen)> {
        match self {
            Frozen::Systemd { mgr, units } => {
                let mut args = vec!["thaw"];
                args.extend(units.iter().map(String::as_str));
                match mgr.systemctl(&args) {
                    Ok(_) => Ok(()),
                    Err(e) => Err((
                        format!("systemctl --user thaw: {e}"),
                        Frozen::Systemd { mgr, units },
                    )),
                }
            }
            Frozen::V1 { dir, home, refused } => match v1_thaw(&dir, &home) {
                Ok(()) => Ok(()),
                Err(e) => Err((e, Frozen::V1 { dir, home, refused })),
            },
        }
    }
}

pub fn freeze(
    mgr: &std::sync::Arc<UserManager>,
    units: &[String],
    lane: u8,
) -> Result<Frozen, String> {
    let mut args = vec!["freeze"];
    args.extend(units.iter().map(String::as_str));
    let refused = match mgr.systemctl(&args) {
        Ok(_) => {
            return Ok(Frozen::Systemd {
                mgr: mgr.clone(),
                units: units.to_vec(),
            });
        }
        Err(e) => e,
    };
    let home = PathBuf::from(FREEZER).join(&mgr.cgroup);
    if !home.is_dir() {
        return Err(format!(
            "neither `systemctl --user freeze` nor the v1 freezer ({} is missing) works here",
            home.display()
        ));
    }
    let dir = home.join(format!("fault9-lane{lane}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cgroups: Vec<PathBuf> = units
        .iter()
        .filter_map(|u| mgr.unit_cgroup_dir(u))
        .collect();
    // Two passes: a process forked while the first pass ran is moved by the second;
    // once the group is FROZEN nothing in it forks any more.
    for pass in 0..3 {
        let mut moved = 0;
        for cg in &cgroups {
            for pid in crate::procs::cgroup_pids(cg) {
                let here = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if here.lines().any(|l| l.trim() == pid.to_string()) {
                    continue;
                }
                // A process that just exited cannot be moved: not an error.
                if std::fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok() {
                    moved += 1;
                }
            }
        }
        if pass == 0 {
            std::fs::write(dir.join("freezer.state"), "FROZEN")
                .map_err(|e| format!("{}/freezer.state: {e}", dir.display()))?;
        } else if moved == 0 {
            break;
        }
    }
    let frozen = stop::poll(Duration::from_secs(5), Duration::from_millis(20), || {
        let st = std::fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        (st.trim() == "FROZEN").then_some(())
    });
    if frozen.is_none() {
        let _ = v1_thaw(&dir, &home);
        return Err(format!("{} did not reach FROZEN within 5 s", dir.display()));
    }
    Ok(Frozen::V1 { dir, home, refused })
}

fn v1_thaw(dir: &Path, home: &Path) -> Result<(), String> {
    std::fs::write(dir.join("freezer.state"), "THAWED")
        .map_err(|e| format!("{}/freezer.state: {e}", dir.display()))?;
    // Back where they came from, so the group can go (bounded: a few passes).
    for _ in 0..5 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<&str> = procs
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = std::fs::write(home.join("cgroup.procs"), pid);
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
