//! What the integration tests (tests/it) and the fault bench (benches/faults.rs) both
//! need of a real sshd, ssh-keygen, /proc and a private `systemd --user`. Each includes
//! this file as `#[path = …] mod testkit;`: a path module, not a crate, because it is a
//! few std-only functions and a workspace member would add a manifest, a lock entry and
//! a public API for them. Errors are `Result<_, String>`: the bench reports them, the
//! tests panic with them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
pub const SYSTEMD: &str = "/usr/lib/systemd/systemd";

/// Writes a throwaway ed25519 key pair (no passphrase) to `path` and `path.pub` and
/// returns the public key line. ssh-keygen gets 20 s.
pub fn keygen(path: &Path, comment: &str) -> Result<String, String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("ssh-keygen for {} took over 20 s", path.display()));
            }
        }
    };
    if !status.success() {
        return Err(format!(
            "ssh-keygen failed ({status}) for {}",
            path.display()
        ));
    }
    std::fs::read_to_string(path.with_extension("pub"))
        .map_err(|e| format!("{}.pub: {e}", path.display()))
}

/// The `sshd_config` every throwaway sshd here shares: key-only root login on
/// `address` and `ports`, no PAM, no privilege checks on the temporary files, TCP
/// forwarding on, verbose logs. `extra` (whole lines) comes last, so a `Match` block
/// in it stays last.
pub fn sshd_config(
    address: &str,
    ports: &[u16],
    host_key: &Path,
    authorized_keys: &Path,
    extra: &str,
) -> String {
    let mut text = format!("ListenAddress {address}\n");
    for p in ports {
        text.push_str(&format!("Port {p}\n"));
    }
    text.push_str(&format!(
        "HostKey {}\n\
         PidFile none\n\
         AuthorizedKeysFile {}\n\
         StrictModes no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         AllowTcpForwarding yes\n\
         GatewayPorts no\n\
         LogLevel VERBOSE\n\
         PermitRootLogin prohibit-password\n",
        host_key.display(),
        authorized_keys.display(),
    ));
    text.push_str(extra);
    text
}

/// sshd refuses to start without its privilege-separation directory (Debian's
/// sshd.service creates it; here nothing does).
pub fn sshd_privsep_dir() -> Result<(), String> {
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))
}

/// `/proc/PID/cmdline` with NULs as spaces ("" once the process is gone).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Shell lines (for `sh -c` in a fresh mount namespace, under `set -e`) that give a
/// `systemd --user` a private /run: a tmpfs holding /run/systemd/system, so it believes
/// it runs under systemd, and /run/user/0, its runtime directory.
pub const PRIVATE_RUN: &str =
    "mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -p /run/systemd/system /run/user/0\n";

/// Whether a user manager's `SystemState` (or `is-system-running`) says it is up.
pub fn manager_is_up(state: &str) -> bool {
    matches!(state.trim(), "running" | "degraded")
}
