//! install/uninstall under `--root`: round trips leave the tree as it was, reinstalling
//! shows a diff or says unchanged, `--dry-run` and refused configs write nothing.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use tunnelctl::targets::Target;

const WATCHDOG: &str = "/usr/bin/tunnel-watchdog";

const CONFIG: &str = "tunnels:
  web:
    host: web.example.org
    user: alice
    identity: ~/.ssh/id_ed25519
    forwards:
      - remote: 8022
        to: localhost:22
  db:
    host: db.example.org
    forwards:
      - local: 15432
        to: localhost:5432
";

/// An inittab like a real one: comments, other entries, CRLF on one line, and no
/// newline at the end.
const INITTAB: &[u8] = b"# /etc/inittab: init(8) configuration.\nid:2:initdefault:\n\nsi::sysinit:/etc/init.d/rcS\r\n# getty\n1:2345:respawn:/sbin/getty --noclear 38400 tty1";

/// Every path under `dir` with its kind, mode and contents.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if meta.is_dir() {
                stack.push(path.clone());
                out.insert(rel, (meta.mode(), Vec::new()));
            } else {
                out.insert(rel, (meta.mode(), fs::read(&path).unwrap()));
            }
        }
    }
    out
}

struct Fixture {
    root: tempfile::TempDir,
    config: tempfile::TempDir,
    home: std::path::PathBuf,
}

impl Fixture {
    /// A root that looks like an installed system: the standard directories exist, and
    /// /etc/inittab has content of its own.
    fn new() -> Fixture {
        let home = golden_home();
        let root = tempfile::tempdir().unwrap();
        let home_in_root = root.path().join(home.strip_prefix("/").unwrap());
        for dir in [
            "etc/systemd/system",
            // OpenRC and OpenWrt: init scripts.
            "etc/init.d",
            "Library/LaunchDaemons",
            "var/log",
            "var/run",
        ] {
            fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for dir in [
            ".config/systemd/user",
            "Library/LaunchAgents",
            "Library/Logs",
        ] {
            fs::create_dir_all(home_in_root.join(dir)).unwrap();
        }
        fs::write(root.path().join("etc/inittab"), INITTAB).unwrap();
        let config = tempfile::tempdir().unwrap();
        fs::write(config.path().join("tunnels.yaml"), CONFIG).unwrap();
        Fixture { root, config, home }
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = tunnelctl(&self.home)
            .arg("-c")
            .arg(self.config.path().join("tunnels.yaml"))
            .args(args)
            .arg("--root")
            .arg(self.root.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn install(&self, name: &str, target: Target, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            "install",
            name,
            "--target",
            target.as_str(),
            "--watchdog",
            WATCHDOG,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn set_config(&self, text: &str) {
        fs::write(self.config.path().join("tunnels.yaml"), text).unwrap();
    }
}

#[test]
fn install_then_uninstall_leaves_the_tree_as_it_was() {
    for target in Target::ALL {
        let f = Fixture::new();
        let before = snapshot(f.root.path());
        for name in ["web", "db"] {
            let (code, out, err) = f.install(name, target, &[]);
            assert_eq!(code, 0, "{target}: {out}{err}");
            assert!(
                out.contains(&format!("{name} ({target}): installed")),
                "{out}"
            );
        }
        let installed = snapshot(f.root.path());
        assert_ne!(installed, before, "{target}: install wrote nothing");
        if matches!(target, Target::Inittab | Target::Busybox) {
            let inittab = fs::read(f.root.path().join("etc/inittab")).unwrap();
            assert!(
                inittab.starts_with(INITTAB),
                "{target}: the existing lines changed"
            );
        }
        for name in ["web", "db"] {
            let (code, out, err) = f.run(&["uninstall", name, "--target", target.as_str()]);
            assert_eq!(code, 0, "{target}: {out}{err}");
            assert!(out.contains("removed"), "{out}");
        }
        let after = snapshot(f.root.path());
        assert_eq!(
            after, before,
            "{target}: uninstall did not restore the tree"
        );
        // A second uninstall finds nothing and says so.
        let (code, out, _) = f.run(&["uninstall", "web", "--target", target.as_str()]);
        assert_eq!(code, 0);
        assert!(out.contains("not installed"), "{out}");
    }
}

/// uninstall (and apply, for a tunnel that left the file) removes the metrics file the
/// watchdog wrote, at the path the configuration names for that tunnel, when it is a
/// regular file; a link there is left alone (and what it points to), and no other file of
/// the folder is touched.
#[test]
fn uninstall_removes_the_tunnels_metrics_file_and_nothing_else() {
    let config = |tunnels: &[&str]| {
        let mut text = "defaults:\n  metrics_file: /var/lib/metrics/tunnel-{name}.prom\ntunnels:\n"
            .to_string();
        for (port, name) in (1090..).zip(tunnels) {
            text.push_str(&format!(
                "  {name}:\n    host: {name}.example.org\n    forwards:\n      - dynamic: {port}\n"
            ));
        }
        text.push_str("  own:\n    host: o.example.org\n    metrics_file: /var/lib/metrics/mine.prom\n    forwards:\n      - dynamic: 1081\n");
        text
    };
    for target in [Target::Systemd, Target::Inittab] {
        let f = Fixture::new();
        f.set_config(&config(&["web", "db", "gone"]));
        for name in ["web", "db", "gone", "own"] {
            let (code, out, err) = f.install(name, target, &[]);
            assert_eq!(code, 0, "{target}: {out}{err}");
        }
        let metrics = f.root.path().join("var/lib/metrics");
        fs::create_dir_all(&metrics).unwrap();
        let elsewhere = f.root.path().join("elsewhere.prom");
        fs::write(&elsewhere, "kept\n").unwrap();
        for file in [
            "tunnel-web.prom",
            "tunnel-gone.prom",
            "mine.prom",
            "tunnel-other.prom",
            "node.prom",
        ] {
            fs::write(metrics.join(file), "tunnel_up 1\n").unwrap();
        }
        std::os::unix::fs::symlink(&elsewhere, metrics.join("tunnel-db.prom")).unwrap();

        for (name, removed) in [("web", true), ("own", true), ("db", false)] {
            let (code, out, err) = f.run(&["uninstall", name, "--target", target.as_str()]);
            assert_eq!(code, 0, "{target} {name}: {out}{err}");
            let file = if name == "own" {
                "mine.prom".to_string()
            } else {
                format!("tunnel-{name}.prom")
            };
            assert_eq!(
                out.contains(&format!("removed /var/lib/metrics/{file}")),
                removed,
                "{target} {name}: {out}"
            );
            if !removed {
                assert!(
                    out.contains("left alone") && out.contains("symlink"),
                    "{out}"
                );
            }
        }
        // `gone` left the configuration: apply removes it and the default's file for it.
        f.set_config(&config(&[]));
        let (code, out, err) = f.run(&[
            "apply",
            "--target",
            target.as_str(),
            "--watchdog",
            WATCHDOG,
            "--prune-many",
        ]);
        assert_eq!(code, 0, "{target} apply: {out}{err}");
        let mut left: Vec<String> = fs::read_dir(&metrics)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["node.prom", "tunnel-db.prom", "tunnel-other.prom"],
            "{target}"
        );
        assert!(
            fs::symlink_metadata(metrics.join("tunnel-db.prom"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&elsewhere).unwrap(), "kept\n");
        // Not installed: nothing is removed, whatever the folder holds.
        f.set_config(&config(&["web"]));
        fs::write(metrics.join("tunnel-web.prom"), "x\n").unwrap();
        let (code, out, _) = f.run(&["uninstall", "web", "--target", target.as_str()]);
        assert_eq!(code, 0);
        assert!(
            out.contains("not installed") && !out.contains("removed"),
            "{out}"
        );
        assert!(metrics.join("tunnel-web.prom").exists());
    }
}

/// The `tunnelctl` directories there were made by someone else, before install (an
/// admin's empty /var/log/tunnelctl, /etc/tunnelctl/run…): uninstall leaves each of them
/// as it found it, for every target, and marks none of them as its own.
#[test]
fn uninstall_keeps_the_empty_tunnelctl_folders_that_were_there_before_install() {
    for target in Target::ALL {
        // Which tunnelctl folders does install make on this target?
        let scout = Fixture::new();
        let before = snapshot(scout.root.path());
        assert_eq!(scout.install("web", target, &[]).0, 0, "{target}");
        let made: Vec<String> = snapshot(scout.root.path())
            .into_iter()
            .filter(|(path, (mode, _))| {
                mode & 0o170000 == 0o040000
                    && !before.contains_key(path)
                    && path.split('/').any(|c| c == "tunnelctl")
            })
            .map(|(path, _)| path)
            .collect();
        if made.is_empty() {
            continue;
        }
        let f = Fixture::new();
        for dir in &made {
            fs::create_dir_all(f.root.path().join(dir)).unwrap();
            fs::set_permissions(
                f.root.path().join(dir),
                std::os::unix::fs::PermissionsExt::from_mode(0o750),
            )
            .unwrap();
        }
        let before = snapshot(f.root.path());
        let (code, out, err) = f.install("web", target, &[]);
        assert_eq!(code, 0, "{target}: {out}{err}");
        for dir in &made {
            assert!(
                !f.root.path().join(dir).join(".made-by-tunnelctl").exists(),
                "{target}: install marked {dir}, which it did not make"
            );
        }
        let (code, out, err) = f.run(&["uninstall", "web", "--target", target.as_str()]);
        assert_eq!(code, 0, "{target}: {out}{err}");
        assert_eq!(
            snapshot(f.root.path()),
            before,
            "{target}: uninstall took away folders it did not make ({made:?})"
        );
    }
}

#[test]
fn uninstall_keeps_an_inittab_entry_installed_in_the_middle_and_other_edits() {
    // Install, then someone appends a line after ours: uninstall removes only our two lines.
    let f = Fixture::new();
    assert_eq!(f.install("web", Target::Inittab, &[]).0, 0);
    let path = f.root.path().join("etc/inittab");
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(b"\n2:2345:respawn:/sbin/getty 38400 tty2\n");
    fs::write(&path, &text).unwrap();
    assert_eq!(f.run(&["uninstall", "web", "--target", "inittab"]).0, 0);
    let mut expected = INITTAB.to_vec();
    expected.extend_from_slice(b"\n2:2345:respawn:/sbin/getty 38400 tty2\n");
    assert_eq!(
        String::from_utf8_lossy(&fs::read(&path).unwrap()),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn reinstall_shows_a_diff_or_says_unchanged() {
    for target in Target::ALL {
        let f = Fixture::new();
        let (code, out, _) = f.install("web", target, &[]);
        assert_eq!(code, 0);
        assert!(
            out.contains("+++ "),
            "{target}: first install shows the new file as a diff:\n{out}"
        );

        // Unchanged: nothing written (same inode and mtime everywhere).
        let stamps = |root: &Path| -> BTreeMap<String, (u64, i64, i64)> {
            snapshot(root)
                .keys()
                .map(|rel| {
                    let m = fs::metadata(root.join(rel)).unwrap();
                    (rel.clone(), (m.ino(), m.mtime(), m.mtime_nsec()))
                })
                .collect()
        };
        let before = stamps(f.root.path());
        let (code, out, _) = f.install("web", target, &[]);
        assert_eq!(code, 0);
        assert_eq!(out.trim(), format!("web ({target}): unchanged"));
        assert_eq!(
            stamps(f.root.path()),
            before,
            "{target}: an unchanged install touched files"
        );

        // Changed: a diff of just the change, then "updated".
        f.set_config(&CONFIG.replace("host: web.example.org", "host: web2.example.org"));
        let (code, out, err) = f.install("web", target, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("-") && out.contains("web.example.org") && out.contains("+"),
            "{out}"
        );
        let removed: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .collect();
        let added: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .collect();
        assert!(
            !removed.is_empty() && removed.iter().all(|l| l.contains("web.example.org")),
            "{target}:\n{out}"
        );
        assert!(
            !added.is_empty() && added.iter().all(|l| l.contains("web2.example.org")),
            "{target}:\n{out}"
        );
        assert!(out.contains("web (") && out.contains("updated"), "{out}");
        // And the round trip still holds after an update.
        assert_eq!(
            f.run(&["uninstall", "web", "--target", target.as_str()]).0,
            0
        );
        let fresh = Fixture::new();
        assert_eq!(
            snapshot(f.root.path()),
            snapshot(fresh.root.path()),
            "{target}"
        );
    }
}

#[test]
fn dry_run_writes_nothing() {
    for target in Target::ALL {
        let f = Fixture::new();
        let before = snapshot(f.root.path());
        let (code, out, _) = f.install("web", target, &["--dry-run"]);
        assert_eq!(code, 0);
        assert!(out.contains("+++ ") && out.contains("dry run"), "{out}");
        assert_eq!(snapshot(f.root.path()), before, "{target}");
    }
}

#[test]
fn refused_configs_and_renders_write_nothing() {
    let f = Fixture::new();
    let before = snapshot(f.root.path());
    // A config error: printed as FILE:LINE:COL, exit 2.
    f.set_config(&CONFIG.replace("8022", "80222"));
    let (code, _, err) = f.install("web", Target::Systemd, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("tunnels.yaml:7:"), "{err}");
    // --all with one tunnel the systemd renderer refuses: the other is not written either.
    f.set_config(&format!(
        "{CONFIG}  'bad\"name':\n    host: x.example.org\n    forwards:\n      - dynamic: 1090\n"
    ));
    let (code, _, err) = f.run(&[
        "install",
        "--all",
        "--target",
        "systemd",
        "--watchdog",
        WATCHDOG,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("StateDirectory"), "{err}");
    // A watchdog path init would hand to a shell.
    f.set_config(CONFIG);
    let (code, _, err) = f.run(&[
        "install",
        "web",
        "--target",
        "inittab",
        "--watchdog",
        "/opt/tunnel$/tunnel-watchdog",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("/bin/sh"), "{err}");
    // Another entry already uses our inittab id: refuse, exit 1.
    let id = tunnelctl::config::inittab_id("web");
    let mut inittab = INITTAB.to_vec();
    inittab.extend_from_slice(format!("\n{id}:2345:respawn:/bin/other\n").as_bytes());
    fs::write(f.root.path().join("etc/inittab"), &inittab).unwrap();
    let with_foreign = snapshot(f.root.path());
    let (code, _, err) = f.install("web", Target::Inittab, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not written by tunnelctl"), "{err}");
    assert_eq!(snapshot(f.root.path()), with_foreign);
    fs::write(f.root.path().join("etc/inittab"), INITTAB).unwrap();
    assert_eq!(snapshot(f.root.path()), before);
}

#[test]
fn list_says_where_each_tunnel_is_installed() {
    let f = Fixture::new();
    assert_eq!(f.install("web", Target::Systemd, &[]).0, 0);
    assert_eq!(f.install("web", Target::Busybox, &[]).0, 0);
    let (code, out, err) = f.run(&["list"]);
    assert_eq!(code, 0, "{err}");
    let web = out.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(
        web.contains("alice@web.example.org") && web.contains("-R 8022:localhost:22"),
        "{web}"
    );
    assert!(
        web.contains("systemd: installed") && web.contains("busybox: installed"),
        "{web}"
    );
    assert!(!web.contains("inittab:"), "{web}");
    let db = out.lines().find(|l| l.starts_with("db ")).unwrap();
    assert!(db.ends_with("not installed"), "{db}");
    f.set_config(&CONFIG.replace("remote: 8022", "remote: 8023"));
    let (_, out, _) = f.run(&["list"]);
    let web = out.lines().find(|l| l.starts_with("web ")).unwrap();
    assert!(
        web.contains("systemd: differs") && web.contains("busybox: differs"),
        "{web}"
    );
}

/// A `--root` that does not exist yet is made 0755 (and its missing parents), whatever
/// the umask: `umask 000` once gave 0777.
#[test]
fn a_new_root_is_made_0755_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let f = Fixture::new();
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("new/root");
    for umask in [0o000, 0o077] {
        let _ = fs::remove_dir_all(parent.path().join("new"));
        // std's Command: the child's umask is set between fork and exec.
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("tunnelctl"));
        cmd.env_clear()
            .env("HOME", &f.home)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("-c")
            .arg(f.config.path().join("tunnels.yaml"))
            .args([
                "install",
                "web",
                "--target",
                "inittab",
                "--watchdog",
                WATCHDOG,
                "--root",
            ])
            .arg(&root);
        // SAFETY: umask is async-signal-safe; nothing else runs in the child before exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for dir in [parent.path().join("new"), root.clone()] {
            let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o755, "{} under umask {umask:03o}", dir.display());
        }
    }
}

/// Without --target, install picks procd on an OpenWrt root and OpenRC where /run/openrc
/// exists, says which and why, and writes that target's init script; --target wins.
#[test]
fn install_detects_procd_and_openrc_and_says_why() {
    for (marker, target, why) in [
        ("etc/openwrt_release", "procd", "openwrt_release"),
        ("run/openrc", "openrc", "/run/openrc"),
    ] {
        let f = Fixture::new();
        let path = f.root.path().join(marker);
        if target == "openrc" {
            fs::create_dir_all(&path).unwrap();
        } else {
            fs::write(&path, "DISTRIB_ID='OpenWrt'\n").unwrap();
        }
        let (code, out, err) = f.run(&["install", "web", "--watchdog", WATCHDOG]);
        assert_eq!(code, 0, "{target}: {out}{err}");
        assert!(
            err.contains(&format!("target {target} (detected: ")) && err.contains(why),
            "{target}: {err}"
        );
        let script = f.root.path().join("etc/init.d/tunnel-web");
        assert_eq!(fs::metadata(&script).unwrap().mode() & 0o7777, 0o755);
        let (code, out, err) = f.install("db", Target::Inittab, &[]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(!err.contains("detected"), "{err}");
        assert!(!f.root.path().join("etc/init.d/tunnel-db").exists());
    }
}
