//! Running the tunnelctl binary and loading configs, for the render/install tests.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A fixed home with the key files the golden configs name (`~/.ssh/...`), so rendered
/// paths are the same on every run. Created fresh by whichever test gets here first.
pub fn golden_home() -> PathBuf {
    let home = PathBuf::from("/tmp/tunnelctl-golden-home");
    for rel in [
        ".ssh/id_ed25519",
        ".ssh/known_hosts",
        ".ssh/backup key",
        ".ssh/known_hosts.d/backup$hosts",
    ] {
        let path = home.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        if !path.exists() {
            fs::write(&path, b"placeholder\n").unwrap();
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    home
}

/// `tunnelctl` with a controlled environment.
pub fn tunnelctl(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("tunnelctl").unwrap();
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

pub fn load(config: &Path, home: &Path) -> tunnelctl::config::Config {
    let text = fs::read_to_string(config).unwrap();
    tunnelctl::config::load_str(&text, config, home).unwrap_or_else(|e| panic!("{e}"))
}
