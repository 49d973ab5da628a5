//! `tunnelctl apply` for every target: under `--root` (add, change, unchanged and
//! untouched, remove, a foreign file with a similar name left alone, the `--prune-many`
//! guard, `--dry-run` and a truncated config writing nothing, a disk that fills up
//! halfway leaving each tunnel old or new), and under a real `systemd --user`
//! (an unchanged tunnel keeps its MainPID while its neighbour is restarted and removed).

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::prereq::{Prereq, require};
use common::*;
use tunnelctl::config::inittab_id;
use tunnelctl::targets::Target;

const WATCHDOG: &str = "/usr/bin/tunnel-watchdog";

/// An inittab of the machine's own, which every apply must keep byte for byte.
const INITTAB: &[u8] =
    b"id:2:initdefault:\nsi::sysinit:/etc/init.d/rcS\n1:2345:respawn:/sbin/getty 38400 tty1\n";

/// tunnels.yaml with one tunnel per (name, local port).
fn config(tunnels: &[(&str, u16)]) -> String {
    let mut text = String::from("tunnels:\n");
    for (name, port) in tunnels {
        text.push_str(&format!(
            "  {name}:\n    host: {name}.example.org\n    forwards:\n      - local: {port}\n        to: localhost:22\n"
        ));
    }
    text
}

/// Every file under `dir`: (inode, mtime in ns, contents). Equal snapshots mean nothing
/// was written, not even the same bytes again.
fn snapshot(dir: &Path) -> BTreeMap<String, (u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if meta.is_dir() {
                stack.push(path);
                out.insert(rel + "/", (meta.ino(), 0, Vec::new()));
            } else if meta.file_type().is_symlink() {
                let to = fs::read_link(&path).unwrap();
                out.insert(rel + "@", (meta.ino(), 0, to.into_os_string().into_vec()));
            } else {
                let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                out.insert(rel, (meta.ino(), mtime, fs::read(&path).unwrap()));
            }
        }
    }
    out
}

struct Rig {
    root: tempfile::TempDir,
    config: tempfile::TempDir,
    home: PathBuf,
    target: Target,
}

impl Rig {
    fn new(target: Target) -> Rig {
        let home = golden_home();
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/inittab"), INITTAB).unwrap();
        Rig {
            root,
            config: tempfile::tempdir().unwrap(),
            home,
            target,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.config.path().join("tunnels.yaml")
    }

    fn set(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    fn apply(&self, extra: &[&str]) -> (i32, String, String) {
        let out = tunnelctl(&self.home)
            .arg("-c")
            .arg(self.config_path())
            .args([
                "apply",
                "--target",
                self.target.as_str(),
                "--watchdog",
                WATCHDOG,
            ])
            .arg("--root")
            .arg(self.root.path())
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The tunnel's files on the host (under the root).
    fn files(&self, name: &str) -> Vec<PathBuf> {
        self.target
            .system()
            .installed_paths(name, &self.home)
            .iter()
            .map(|p| self.root.path().join(p.strip_prefix("/").unwrap()))
            .collect()
    }

    fn inittab(&self) -> String {
        String::from_utf8(fs::read(self.root.path().join("etc/inittab")).unwrap()).unwrap()
    }

    /// Whether the tunnel is installed: its files there and, for inittab targets, its
    /// marker in /etc/inittab.
    fn installed(&self, name: &str) -> bool {
        let files = self.files(name).iter().all(|f| f.is_file());
        let entry = !self.target.system().uses_inittab()
            || self
                .inittab()
                .contains(&format!("# tunnelctl:{} {name} ", inittab_id(name)));
        files && entry
    }
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn apply_converges_every_target() {
    for target in Target::ALL {
        let rig = Rig::new(target);
        let t = target.as_str();

        // Add three.
        rig.set(&config(&[("a", 7001), ("b", 7002), ("c", 7003)]));
        let (code, out, err) = rig.apply(&[]);
        assert_eq!(code, 0, "{t}: {out}{err}");
        assert_eq!(
            lines(&out),
            [
                format!("a ({t}): added"),
                format!("b ({t}): added"),
                format!("c ({t}): added")
            ],
            "{t}"
        );
        for name in ["a", "b", "c"] {
            assert!(rig.installed(name), "{t}: {name} not installed");
        }

        // A file that only looks like ours, and a copy of ours under another name.
        let foreign = rig.files("zz")[0].clone();
        // A target with a folder per tunnel (s6, runit) needs the folder first.
        fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        fs::write(&foreign, "# written by hand\n").unwrap();
        let copy = PathBuf::from(format!("{}.bak", rig.files("a")[0].display()));
        fs::copy(&rig.files("a")[0], &copy).unwrap();
        // A folder per tunnel: a link in a folder's place is not ours, whatever its run
        // says (here: our header for `yy`).
        let yy = rig.files("yy")[0].clone();
        if foreign.parent() != rig.files("a")[0].parent() {
            let elsewhere = rig.root.path().join("elsewhere");
            fs::create_dir_all(&elsewhere).unwrap();
            let ours = fs::read_to_string(&rig.files("a")[0])
                .unwrap()
                .replace("for tunnel a (", "for tunnel yy (");
            assert!(ours.contains("for tunnel yy ("), "{t}: {ours}");
            fs::write(elsewhere.join(yy.file_name().unwrap()), ours).unwrap();
            std::os::unix::fs::symlink(&elsewhere, yy.parent().unwrap()).unwrap();
        }

        // Unchanged: nothing written, exit 0 even with --detailed-exitcode.
        let before = snapshot(rig.root.path());
        let (code, out, err) = rig.apply(&["--detailed-exitcode"]);
        assert_eq!(code, 0, "{t}: {out}{err}");
        assert!(
            out.lines().all(|l| l.ends_with(": unchanged")),
            "{t}: {out}"
        );
        assert_eq!(
            snapshot(rig.root.path()),
            before,
            "{t}: an unchanged apply wrote"
        );

        // Changed: --json says what and shows the diff; --detailed-exitcode gives 2.
        rig.set(&config(&[("a", 7011), ("b", 7002), ("c", 7003)]));
        let (code, out, err) = rig.apply(&["--json", "--detailed-exitcode"]);
        assert_eq!(code, 2, "{t}: {out}{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["changed"], true, "{t}: {out}");
        let actions: Vec<(&str, &str)> = json["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["action"].as_str().unwrap()))
            .collect();
        assert_eq!(
            actions,
            [("a", "changed"), ("b", "unchanged"), ("c", "unchanged")],
            "{t}"
        );
        let diff = json["diff"].as_str().unwrap();
        assert!(
            diff.contains("-")
                && diff.contains("7001")
                && diff.contains("+")
                && diff.contains("7011"),
            "{t}: {diff}"
        );

        // --dry-run: the plan (c removed, d added), nothing written.
        rig.set(&config(&[("a", 7011), ("b", 7002), ("d", 7004)]));
        let before = snapshot(rig.root.path());
        let (code, out, err) = rig.apply(&["--dry-run", "--json"]);
        assert_eq!(code, 0, "{t}: {out}{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["changed"], true);
        assert_eq!(json["dry_run"], true);
        assert_eq!(json["counts"]["removed"], 1, "{t}: {out}");
        assert_eq!(json["counts"]["added"], 1, "{t}: {out}");
        assert!(
            json["diff"].as_str().unwrap().contains("/dev/null"),
            "{t}: {out}"
        );
        assert_eq!(snapshot(rig.root.path()), before, "{t}: --dry-run wrote");

        // A config cut off halfway (as a failed push leaves it): FILE:LINE:COL, nothing
        // changed — never "remove what is no longer in the file".
        let full = config(&[("a", 7011), ("b", 7002), ("d", 7004)]);
        rig.set(&full[..full.find("  d:").unwrap() + 20]);
        let (code, out, err) = rig.apply(&[]);
        assert_eq!(code, 2, "{t}: {out}{err}");
        let where_ = format!("{}:", rig.config_path().display());
        assert!(err.contains(&where_), "{t}: no FILE:LINE:COL in {err}");
        assert_eq!(
            snapshot(rig.root.path()),
            before,
            "{t}: a truncated config changed files"
        );

        // Remove c, add d; the foreign file and the copy stay as they were.
        rig.set(&full);
        let (code, out, err) = rig.apply(&[]);
        assert_eq!(code, 0, "{t}: {out}{err}");
        assert_eq!(
            lines(&out),
            [
                format!("c ({t}): removed"),
                format!("a ({t}): unchanged"),
                format!("b ({t}): unchanged"),
                format!("d ({t}): added")
            ],
            "{t}"
        );
        assert!(
            !rig.installed("c") && rig.files("c").iter().all(|f| !f.exists()),
            "{t}"
        );
        assert!(rig.installed("d"), "{t}");
        assert_eq!(
            fs::read_to_string(&foreign).unwrap(),
            "# written by hand\n",
            "{t}"
        );
        assert!(copy.is_file(), "{t}: the .bak copy was removed");
        if target.system().uses_inittab() {
            assert!(
                rig.inittab()
                    .starts_with(std::str::from_utf8(INITTAB).unwrap()),
                "{t}"
            );
        }

        // Removing two of three needs --prune-many; without it nothing changes.
        rig.set(&config(&[("a", 7011)]));
        let before = snapshot(rig.root.path());
        let (code, out, err) = rig.apply(&[]);
        assert_eq!(code, 2, "{t}: {out}{err}");
        assert!(
            err.contains("--prune-many") && err.contains("2 of the 3"),
            "{t}: {err}"
        );
        assert_eq!(
            snapshot(rig.root.path()),
            before,
            "{t}: the guard let something through"
        );
        let (code, out, err) = rig.apply(&["--prune-many"]);
        assert_eq!(code, 0, "{t}: {out}{err}");
        assert!(
            out.contains(&format!("b ({t}): removed"))
                && out.contains(&format!("d ({t}): removed")),
            "{t}: {out}"
        );
        assert!(
            rig.installed("a") && !rig.installed("b") && !rig.installed("d"),
            "{t}"
        );
        assert_eq!(
            fs::read_to_string(&foreign).unwrap(),
            "# written by hand\n",
            "{t}"
        );
        if target.system().uses_inittab() {
            let inittab = rig.inittab();
            assert!(
                inittab.starts_with(std::str::from_utf8(INITTAB).unwrap()),
                "{t}"
            );
            assert_eq!(inittab.matches("# tunnelctl:").count(), 1, "{t}: {inittab}");
        }
    }
}

#[test]
fn apply_refuses_to_overwrite_a_file_it_did_not_write() {
    let rig = Rig::new(Target::Systemd);
    let unit = rig.files("a")[0].clone();
    fs::create_dir_all(unit.parent().unwrap()).unwrap();
    fs::write(&unit, "[Service]\nExecStart=/bin/true\n").unwrap();
    rig.set(&config(&[("a", 7001), ("b", 7002)]));
    let before = snapshot(rig.root.path());
    let (code, out, err) = rig.apply(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no tunnelctl marker"), "{err}");
    assert_eq!(
        snapshot(rig.root.path()),
        before,
        "b was installed although the plan failed"
    );
}

/// `--json` on a config error still prints one object an engine can read.
#[test]
fn apply_json_reports_a_broken_config_as_an_object() {
    let rig = Rig::new(Target::Systemd);
    rig.set("tunnels:\n  a:\n    host: a.example.org\n    forwards:\n      - local: 99999\n");
    let (code, out, err) = rig.apply(&["--json", "--detailed-exitcode"]);
    assert_eq!(
        code, 1,
        "a failure is never 2 (changed) under --detailed-exitcode: {err}"
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["failed"], true);
    assert_eq!(json["changed"], false);
    assert!(
        json["details"]
            .as_str()
            .unwrap()
            .contains("tunnels.yaml:5:"),
        "{out}"
    );
}

/// The disk fills up halfway through: the root is a tmpfs (in a private mount
/// namespace) left with just enough inodes for the first tunnels. Every tunnel ends
/// either exactly as before or exactly as rendered, the failure is named, the rest is
/// applied, and no temp file is left.
#[test]
fn a_failure_halfway_leaves_each_tunnel_old_or_new() {
    if !require(
        "a_failure_halfway_leaves_each_tunnel_old_or_new",
        &[Prereq::Root, Prereq::Unshare],
    ) {
        return;
    }
    let old = config(&[("a", 7001), ("b", 7002)]);
    let new = config(&[("a", 7011), ("b", 7002), ("c", 7003), ("d", 7004)]);
    for target in Target::ALL {
        let t = target.as_str();
        // The trees to compare with: old and new applied where nothing fails.
        let expect = |text: &str| {
            let rig = Rig::new(target);
            rig.set(text);
            assert_eq!(rig.apply(&[]).0, 0);
            rig
        };
        let (want_old, want_new) = (expect(&old), expect(&new));

        let rig = Rig::new(target);
        let copy = tempfile::tempdir().unwrap();
        let (old_file, new_file) = (
            rig.config.path().join("old.yaml"),
            rig.config.path().join("new.yaml"),
        );
        let machine_inittab = rig.config.path().join("inittab");
        fs::write(&machine_inittab, INITTAB).unwrap();
        fs::write(&old_file, &old).unwrap();
        fs::write(&new_file, &new).unwrap();
        // Spare inodes once the first apply is done: a file target needs one per new
        // tunnel (a changed one borrows one for its temp file and gives it back); an
        // inittab target two more while it rewrites /etc/inittab under its lock.
        let spare = if target.system().uses_inittab() { 3 } else { 1 };
        let apply = |cfg: &Path| {
            format!(
                "'{}' -c '{}' apply --target {t} --watchdog {WATCHDOG} --root \"$R\"",
                env!("CARGO_BIN_EXE_tunnelctl"),
                cfg.display()
            )
        };
        let script = format!(
            "set -e\nR='{root}'\nmount -t tmpfs -o size=8m,nr_inodes=1000,mode=0755 tmpfs \"$R\"\n\
             mkdir -p \"$R/etc\" && cp '{root_inittab}' \"$R/etc/inittab\"\n\
             {first} >/dev/null\n\
             used=$(df --output=iused \"$R\" | tail -1)\n\
             mount -o remount,nr_inodes=$((used + 1 + {spare})) \"$R\"\n\
             set +e\n{second} >'{copy}/out' 2>'{copy}/err'\necho $? >'{copy}/code'\n\
             cp -a \"$R/.\" '{copy}/tree'\n",
            root = rig.root.path().display(),
            root_inittab = machine_inittab.display(),
            first = apply(&old_file),
            second = apply(&new_file),
            copy = copy.path().display(),
        );
        // The apply lock takes the "+ 1".
        let status = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("HOME", &rig.home)
            .status()
            .unwrap();
        assert!(status.success(), "{t}: the script failed");
        let read = |f: &str| fs::read_to_string(copy.path().join(f)).unwrap();
        let (code, out, err) = (read("code"), read("out"), read("err"));
        assert_eq!(
            code.trim(),
            "1",
            "{t}: the full disk went unnoticed:\n{out}{err}"
        );
        assert!(err.contains("No space left on device"), "{t}: {err}");
        let tree = copy.path().join("tree");
        let mut states = Vec::new();
        for name in ["a", "b", "c", "d"] {
            let files = |root: &Path| -> Vec<Option<Vec<u8>>> {
                target
                    .system()
                    .installed_paths(name, &rig.home)
                    .iter()
                    .map(|p| fs::read(root.join(p.strip_prefix("/").unwrap())).ok())
                    .collect()
            };
            let entry = |root: &Path| -> Option<String> {
                let inittab = fs::read_to_string(root.join("etc/inittab")).unwrap_or_default();
                let marker = format!("# tunnelctl:{} {name} ", inittab_id(name));
                let at = inittab.find(&marker)?;
                Some(inittab[at..].lines().take(2).collect::<Vec<_>>().join("\n"))
            };
            let now = (files(&tree), entry(&tree));
            let was = (files(want_old.root.path()), entry(want_old.root.path()));
            let will = (files(want_new.root.path()), entry(want_new.root.path()));
            let state = if now == will {
                "new"
            } else if now == was {
                "old"
            } else {
                panic!("{t}: {name} is neither old nor new:\n{out}{err}")
            };
            states.push(format!("{name}={state}"));
        }
        eprintln!("{t}: {}", states.join(" "));
        assert!(states.contains(&"a=new".to_string()), "{t}: {states:?}");
        assert!(states.contains(&"d=old".to_string()), "{t}: {states:?}");
        assert!(
            out.contains(&format!("d ({t}): added FAILED, left as it was")),
            "{t}: {out}"
        );
        let leftovers = snapshot(&tree)
            .into_keys()
            .filter(|k| k.contains(".tunnelctl-") || k.contains(".lock"))
            .collect::<Vec<_>>();
        assert!(leftovers.is_empty(), "{t}: {leftovers:?}");
        let inittab = fs::read(tree.join("etc/inittab")).unwrap();
        assert!(
            inittab.starts_with(INITTAB),
            "{t}: the machine's own inittab lines changed"
        );
    }
}

/// Under a real `systemd --user`: apply starts two tunnels; changing one restarts only
/// that one (the other keeps its MainPID); dropping it from the file stops and removes
/// it, again without touching the other.
#[test]
fn apply_under_systemd_user_restarts_only_what_changed() {
    let Some(rig) = common::user_unit::UserUnitRig::start(
        "apply_under_systemd_user_restarts_only_what_changed",
        "apply",
    ) else {
        return;
    };
    let m = &rig.manager;
    let (key, known_hosts) = (rig.sshd.client_key(), rig.sshd.known_hosts());
    let write = |tunnels: &[(&str, u16)]| {
        let mut text = String::from("tunnels:\n");
        for (name, port) in tunnels {
            text.push_str(&format!(
                "  {name}:\n    host: 127.0.0.1\n    port: {}\n    user: root\n    identity: {}\n    known_hosts: {}\n    connect_timeout: 5s\n    forwards:\n      - local: {port}\n        to: 127.0.0.1:{}\n",
                rig.sshd.port(),
                key.display(),
                known_hosts.display(),
                rig.echo.port()
            ));
        }
        let path = m.home().join("tunnels.yaml");
        fs::write(&path, text).unwrap();
        path
    };
    let apply = |config: &Path, extra: &[&str]| {
        let mut cmd = m.command(common::tunnel_env::TUNNELCTL);
        cmd.arg("-c")
            .arg(config)
            .args([
                "apply",
                "--target",
                "systemd-user",
                "--watchdog",
                common::tunnel_env::WATCHDOG,
            ])
            .args(extra);
        let out = common::user_manager::run_bounded(cmd, Duration::from_secs(90));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let main_pid = |name: &str| -> i32 {
        let unit = tunnelctl::escape::unit_name(name);
        m.show(&unit, &["MainPID"])["MainPID"].parse().unwrap()
    };
    let (p1, p2, p3) = (
        common::tunnel_env::free_port(),
        common::tunnel_env::free_port(),
        common::tunnel_env::free_port(),
    );

    let config = write(&[("keep", p1), ("move", p2)]);
    let (code, out, err) = apply(&config, &["--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        lines(&out),
        ["keep (systemd-user): added", "move (systemd-user): added"]
    );
    let (keep, moved) = (main_pid("keep"), main_pid("move"));
    assert!(
        keep > 0 && moved > 0,
        "not started: {keep} {moved}\n{}",
        m.log()
    );
    common::tunnel_env::wait_roundtrip(p1, Duration::from_secs(20)).unwrap();

    // Again: nothing changed, nobody restarted.
    let (code, out, err) = apply(&config, &["--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((main_pid("keep"), main_pid("move")), (keep, moved));

    // One changed: only it restarts.
    let config = write(&[("keep", p1), ("move", p3)]);
    let (code, out, err) = apply(&config, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        lines(&out),
        [
            "keep (systemd-user): unchanged",
            "move (systemd-user): changed"
        ]
    );
    assert_eq!(main_pid("keep"), keep, "the unchanged tunnel was restarted");
    let moved_again = main_pid("move");
    assert!(
        moved_again > 0 && moved_again != moved,
        "the changed tunnel was not restarted"
    );
    common::tunnel_env::wait_roundtrip(p3, Duration::from_secs(20)).unwrap();

    // One gone from the file: stopped and removed; the other untouched.
    let config = write(&[("keep", p1)]);
    let (code, out, err) = apply(&config, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        lines(&out),
        [
            "move (systemd-user): removed",
            "keep (systemd-user): unchanged"
        ]
    );
    assert_eq!(main_pid("keep"), keep);
    assert!(
        !m.unit_dir()
            .join(tunnelctl::escape::unit_name("move"))
            .exists()
    );
    let state = m.show(
        &tunnelctl::escape::unit_name("move"),
        &["ActiveState", "LoadState"],
    );
    assert_eq!(state["LoadState"], "not-found", "{state:?}");
    assert!(
        wait_until(Duration::from_secs(10), || !common::tunnel_env::alive(
            moved_again
        )),
        "the removed tunnel's watchdog still runs"
    );
    common::tunnel_env::wait_roundtrip(p1, Duration::from_secs(20)).unwrap();
}

/// Two `apply` runs on one machine take turns: while another holds the lock beside the
/// service files, apply waits and writes nothing; once it is released, it goes on.
#[test]
fn apply_waits_for_another_apply() {
    let rig = Rig::new(Target::Systemd);
    rig.set(&config(&[("a", 7001)]));
    let unit_dir = rig.root.path().join("etc/systemd/system");
    fs::create_dir_all(&unit_dir).unwrap();
    let lock_path = unit_dir.join(tunnelctl::install::APPLY_LOCK);
    let held = nix::fcntl::Flock::lock(
        fs::File::create(&lock_path).unwrap(),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tunnelctl"))
        .env_clear()
        .env("HOME", &rig.home)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("-c")
        .arg(rig.config_path())
        .args([
            "apply",
            "--target",
            "systemd",
            "--watchdog",
            WATCHDOG,
            "--root",
        ])
        .arg(rig.root.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the lock is held: still running, nothing written (a bounded look).
    let waited = wait_until(Duration::from_millis(1500), || {
        child.try_wait().unwrap().is_some() || rig.files("a")[0].exists()
    });
    let blocked = !waited;
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(blocked, "apply did not wait for the lock");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a (systemd): added\n");
    assert!(rig.files("a")[0].is_file());
}
