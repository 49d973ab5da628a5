//! Helpers shared by the tests/it/firstrun_*.rs files: a tunnels.yaml pointing at the
//! real test sshd, and running the tunnelctl binary.

use std::path::{Path, PathBuf};
use std::process::Output;

pub use crate::common::commands::out_text as text;
use crate::common::sshd::Sshd;

pub struct Setup {
    /// Holds the files below: removed on drop.
    pub _dir: tempfile::TempDir,
    pub config: PathBuf,
    pub known_hosts: PathBuf,
}

/// A config with one tunnel `name` to `sshd`, logging in as root with `identity`,
/// checking host keys against `known_hosts` (a copy of the given text), and `forwards`
/// (YAML list items, already indented by 6 spaces).
pub fn setup(
    sshd: &Sshd,
    name: &str,
    identity: &Path,
    known_hosts_text: &str,
    forwards: &str,
) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("firstrun")
        .tempdir()
        .unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, known_hosts_text).unwrap();
    let config = dir.path().join("tunnels.yaml");
    std::fs::write(
        &config,
        format!(
            "tunnels:\n  {name}:\n    host: 127.0.0.1\n    port: {port}\n    user: root\n    identity: {identity}\n    \
             known_hosts: {kh}\n    connect_timeout: 5s\n    forwards:\n{forwards}",
            port = sshd.port(),
            identity = identity.display(),
            kh = known_hosts.display(),
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        config,
        known_hosts,
    }
}

/// The pinned line the fixture writes: `[127.0.0.1]:PORT ssh-ed25519 BLOB`.
pub fn pinned_line(sshd: &Sshd) -> String {
    std::fs::read_to_string(sshd.known_hosts())
        .unwrap()
        .trim()
        .to_string()
}

pub fn tunnelctl(config: &Path, args: &[&str]) -> Output {
    assert_cmd::Command::cargo_bin("tunnelctl")
        .unwrap()
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("NO_COLOR")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap()
}

/// A fresh ed25519 key pair in `dir` (mode 0600).
pub fn new_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    crate::testkit::keygen(&path, "tunnelctl-test").unwrap_or_else(|e| panic!("{e}"));
    path
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    crate::common::sshd::free_port()
}
