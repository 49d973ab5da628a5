//! What `packaging/router-package.sh` wrote, checked the way opkg and a router would
//! read it. Debian has no opkg, so the .ipk is checked structurally: the outer gzip'd
//! tar holds `debian-binary`, `data.tar.gz`, `control.tar.gz` in that order (as
//! OpenWrt's ipkg-build writes them), the control fields, no maintainer script, the
//! files and their modes; and every binary is a static ELF for the CPU its name says.
//! `TUNNELCTL_TEST_ROUTER_DIST` names the folder (`.ci/run` builds it first).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::prereq::{Prereq, require};

fn dist(test: &str) -> Option<PathBuf> {
    require(test, &[Prereq::RouterPackages])
        .then(|| std::env::var("TUNNELCTL_TEST_ROUTER_DIST").unwrap().into())
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    found.sort();
    found
}

/// `tar ARGS`, which must succeed; its stdout.
fn tar(args: &[&str], archive: &Path) -> String {
    let out = Command::new("tar")
        .args(args)
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar {args:?} {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Members of a gzip'd tar in archive order, as `(mode string, owner/group, path)`.
fn members(archive: &Path) -> Vec<(String, String, String)> {
    tar(&["--numeric-owner", "-tvzf"], archive)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[f.len() - 1].to_string(),
            )
        })
        .collect()
}

fn extract(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields of an opkg control file; every line is `Key: value` or a continuation
/// (leading space) of the one before.
fn control_fields(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.starts_with(' ') {
            let key = last
                .as_ref()
                .unwrap_or_else(|| panic!("continuation first: {line:?}"));
            if let Some(value) = fields.get_mut(key) {
                let value: &mut String = value;
                value.push_str(line);
            }
            continue;
        }
        let (key, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not `Key: value`: {line:?}\n{text}"));
        assert!(
            fields.insert(key.to_string(), value.to_string()).is_none(),
            "{key} twice"
        );
        last = Some(key.to_string());
    }
    fields
}

/// The CPU a target or OpenWrt architecture name means, as readelf's header says it:
/// (`Machine:` value, little-endian?).
fn expected_cpu(name: &str) -> (&'static str, bool) {
    if name.contains("mipsel") {
        ("MIPS R3000", true)
    } else if name.contains("mips") {
        ("MIPS R3000", false)
    } else if name.contains("aarch64") {
        ("AArch64", true)
    } else if name.contains("arm") {
        ("ARM", true)
    } else {
        panic!("no CPU known for {name}")
    }
}

/// A static executable for that CPU: readelf's header names it, and no program header
/// asks for a dynamic loader (a router has none of Debian's libraries).
fn assert_static_for(binary: &Path, name: &str) {
    let out = Command::new("readelf")
        .arg("-hl")
        .arg(binary)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "readelf {}: {text}", binary.display());
    let (machine, little) = expected_cpu(name);
    let has = |key: &str, value: &str| {
        text.lines().any(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|v| v.trim().starts_with(value))
        })
    };
    assert!(
        has("Machine:", machine),
        "{}: not {machine}\n{text}",
        binary.display()
    );
    let order = if little {
        "2's complement, little endian"
    } else {
        "2's complement, big endian"
    };
    assert!(
        has("Data:", order),
        "{}: not {order}\n{text}",
        binary.display()
    );
    assert!(
        !text.contains("INTERP") && !text.contains("DYNAMIC"),
        "{} is dynamically linked\n{text}",
        binary.display()
    );
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[test]
fn the_ipk_is_laid_out_as_opkg_reads_it() {
    let Some(dist) = dist("the_ipk_is_laid_out_as_opkg_reads_it") else {
        return;
    };
    let ipks = files_ending(&dist, ".ipk");
    let archs: Vec<String> = ipks
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            let rest = name
                .strip_prefix(&format!("tunnelctl_{}-1_", version()))
                .unwrap_or_else(|| panic!("{name}: not tunnelctl_VERSION-1_ARCH.ipk"));
            rest.strip_suffix(".ipk").unwrap().to_string()
        })
        .collect();
    assert_eq!(archs, ["aarch64_cortex-a53", "mipsel_24kc"], "{ipks:?}");

    for (ipk, arch) in ipks.iter().zip(&archs) {
        let outer: Vec<String> = members(ipk).into_iter().map(|m| m.2).collect();
        assert_eq!(
            outer,
            ["./debian-binary", "./data.tar.gz", "./control.tar.gz"],
            "{}",
            ipk.display()
        );
        let tmp = tempfile::tempdir().unwrap();
        extract(ipk, tmp.path());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("debian-binary")).unwrap(),
            "2.0\n"
        );

        // control: the fields opkg needs, and no script that could start anything.
        let control = tmp.path().join("control.tar.gz");
        let names: Vec<String> = members(&control).into_iter().map(|m| m.2).collect();
        assert_eq!(
            names,
            ["./", "./control"],
            "maintainer scripts in {}",
            ipk.display()
        );
        extract(&control, &tmp.path().join("control"));
        let text = std::fs::read_to_string(tmp.path().join("control/control")).unwrap();
        let fields = control_fields(&text);
        assert_eq!(fields["Package"], "tunnelctl");
        assert_eq!(fields["Version"], format!("{}-1", version()));
        assert_eq!(&fields["Architecture"], arch);
        assert_eq!(fields["Depends"], "openssh-client");
        let installed: u64 = fields["Installed-Size"]
            .parse()
            .expect("Installed-Size: a number");
        assert!(!fields["Description"].is_empty());

        // data: the two binaries (0755) and the example (0644), all root's.
        let data = tmp.path().join("data.tar.gz");
        let files: Vec<(String, String, String)> = members(&data)
            .into_iter()
            .filter(|m| !m.0.starts_with('d'))
            .collect();
        let expect = [
            ("-rw-r--r--", "./etc/tunnelctl/tunnels.yaml.example"),
            ("-rwxr-xr-x", "./usr/bin/tunnel-watchdog"),
            ("-rwxr-xr-x", "./usr/bin/tunnelctl"),
        ];
        assert_eq!(
            files
                .iter()
                .map(|m| (m.0.as_str(), m.2.as_str()))
                .collect::<Vec<_>>(),
            expect,
            "{}",
            ipk.display()
        );
        assert!(members(&data).iter().all(|m| m.1 == "0/0"), "owned by root");
        let root = tmp.path().join("data");
        extract(&data, &root);
        let mut size = 0;
        for (_, path) in expect {
            size += std::fs::metadata(root.join(path)).unwrap().len();
        }
        assert!(installed >= size, "Installed-Size {installed} < {size}");
        for bin in ["tunnelctl", "tunnel-watchdog"] {
            assert_static_for(&root.join("usr/bin").join(bin), arch);
        }
        eprintln!(
            "{}: {} bytes, layout and control checked",
            ipk.display(),
            ipk.metadata().unwrap().len()
        );
    }
}

#[test]
fn each_archive_holds_both_binaries_man_pages_example_and_readme() {
    let Some(dist) = dist("each_archive_holds_both_binaries_man_pages_example_and_readme") else {
        return;
    };
    let archives = files_ending(&dist, ".tar.gz");
    assert!(!archives.is_empty(), "no archive in {}", dist.display());
    for archive in &archives {
        let file = archive.file_name().unwrap().to_str().unwrap();
        let top = file.strip_suffix(".tar.gz").unwrap();
        let target = top
            .strip_prefix(&format!("tunnelctl-{}-", version()))
            .unwrap_or_else(|| panic!("{file}: not tunnelctl-VERSION-TARGET.tar.gz"));
        let mut names: Vec<String> = members(archive)
            .into_iter()
            .filter(|m| !m.0.starts_with('d'))
            .map(|m| {
                m.2.strip_prefix(&format!("{top}/"))
                    .unwrap_or(&m.2)
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "README",
                "bin/tunnel-watchdog",
                "bin/tunnelctl",
                "man/tunnel-watchdog.1",
                "man/tunnelctl.1",
                "man/tunnels.yaml.5",
                "tunnels.yaml.example"
            ],
            "{file}"
        );
        let tmp = tempfile::tempdir().unwrap();
        extract(archive, tmp.path());
        let root = tmp.path().join(top);
        for bin in ["tunnelctl", "tunnel-watchdog"] {
            assert_static_for(&root.join("bin").join(bin), target);
        }
        let readme = std::fs::read_to_string(root.join("README")).unwrap();
        let openwrt_arch = match expected_cpu(target) {
            ("MIPS R3000", true) => "mipsel_24kc",
            ("MIPS R3000", false) => "mips_24kc",
            ("AArch64", _) => "aarch64_cortex-a53",
            _ => "arm_cortex-a7_neon-vfpv4",
        };
        assert!(
            readme.contains(openwrt_arch) && readme.contains("opkg install openssh-client"),
            "{file} README:\n{readme}"
        );
        let page = std::fs::read_to_string(root.join("man/tunnelctl.1")).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH"),
            "{file}: man/tunnelctl.1"
        );
        assert_eq!(
            std::fs::read(root.join("tunnels.yaml.example")).unwrap(),
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tunnels.yaml"))
                .unwrap()
        );
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(name)
}

#[test]
fn an_unknown_target_is_refused_with_the_known_ones() {
    for name in ["cross-build.sh", "router-package.sh"] {
        let out = Command::new("bash")
            .arg(script(name))
            .arg("sparc-unknown-linux-gnu")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("unknown target sparc-unknown-linux-gnu"),
            "{name}: {err}"
        );
        for known in [
            "mipsel-unknown-linux-musl",
            "mips-unknown-linux-gnu",
            "armv7-unknown-linux-musleabihf",
            "aarch64-unknown-linux-musl",
        ] {
            assert!(err.contains(known), "{name} does not list {known}: {err}");
        }
        assert!(out.stdout.is_empty(), "{name}: no folder on stdout");
    }
}

#[test]
fn a_missing_cross_gcc_names_its_debian_package() {
    // A PATH with the tools the script checks before the compiler, and no cross gcc.
    let bin = tempfile::tempdir().unwrap();
    for tool in ["dirname", "apt-get", "dpkg-deb", "rustc", "cargo"] {
        let real = common::prereq::which(tool).unwrap_or_else(|| panic!("{tool} not found"));
        std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
    }
    let out = Command::new("/bin/bash")
        .arg(script("cross-build.sh"))
        .arg("aarch64-unknown-linux-musl")
        .env("PATH", bin.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("aarch64-linux-gnu-gcc is missing")
            && err.contains("Debian package gcc-aarch64-linux-gnu"),
        "{err}"
    );
}
