//! tunnel-watchdog command lines the tests start against the fixture sshd: the program
//! (this build's, or a foreign build run by an emulator), the tail every such line ends
//! with, and a small watchdog holding one `-R` forward.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use super::child::StopOnDrop;
use super::sshd::Sshd;

/// The words of `TUNNELCTL_TEST_WATCHDOG_WRAPPER` (an emulator and its options, such as
/// `qemu-mipsel -cpu 24Kc`), when set: the watchdog tests that honour it then run a
/// foreign build (`TUNNEL_WATCHDOG_BIN`) on an emulated CPU, against the same sshd.
pub fn wrapper() -> Vec<String> {
    std::env::var("TUNNELCTL_TEST_WATCHDOG_WRAPPER")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// True when the watchdog runs under an emulator: its process is the emulator's (name,
/// memory), not tunnel-watchdog's.
pub fn emulated() -> bool {
    !wrapper().is_empty()
}

/// `program` run through the wrapper, if any.
fn wrapped(program: &str) -> Command {
    let words = wrapper();
    match words.split_first() {
        Some((emulator, options)) => {
            let mut cmd = Command::new(emulator);
            cmd.args(options).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The tunnel-watchdog under test: `TUNNEL_WATCHDOG_BIN` (default: this build's), through
/// the wrapper.
pub fn watchdog_command() -> Command {
    let bin = std::env::var("TUNNEL_WATCHDOG_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunnel-watchdog").to_string());
    wrapped(&bin)
}

/// The foreign tunnelctl built with that watchdog (`TUNNELCTL_TEST_TUNNELCTL_BIN`),
/// through the wrapper, when the test run names one: it reads the state file the
/// emulated watchdog wrote, as the host's tunnelctl does.
pub fn foreign_tunnelctl() -> Option<Command> {
    let bin = std::env::var("TUNNELCTL_TEST_TUNNELCTL_BIN").ok()?;
    Some(wrapped(&bin))
}

/// Appends `--state-dir STATE --log-file LOG -- ssh SSH_ARGS…` to a watchdog command
/// (its own options come before; ssh's, after `SSH_ARGS`, may follow).
pub fn state_log_and_ssh<'c, I, S>(
    cmd: &'c mut Command,
    state_dir: &Path,
    log: &Path,
    ssh_args: I,
) -> &'c mut Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("--log-file")
        .arg(log)
        .arg("--")
        .arg("ssh")
        .args(ssh_args)
}

/// ssh's arguments (after the program name) for a session to `sshd` that only holds
/// `-R FORWARD` open, and exits if the server refuses that forward.
pub fn remote_forward_ssh_args(sshd: &Sshd, forward: &str) -> Vec<String> {
    let mut args = sshd.ssh_base_args();
    args.extend(["-N", "-o", "ExitOnForwardFailure=yes", "-R", forward].map(String::from));
    args.push(sshd.host().to_string());
    args
}

/// A watchdog `name` probing every 1 s (1 s timeout, 1 s first back-off) whose ssh
/// forwards `remote_port` on the server to sshd's own port; state in `state_dir`, log at
/// `log`. Stopped on drop.
pub fn start_remote_forward_watchdog(
    sshd: &Sshd,
    name: &str,
    state_dir: &Path,
    log: &Path,
    remote_port: u16,
) -> StopOnDrop {
    let mut cmd = watchdog_command();
    cmd.args(["--name", name, "--probe-interval", "1s"]).args([
        "--probe-timeout",
        "1s",
        "--backoff-initial",
        "1s",
    ]);
    let forward = format!("{remote_port}:localhost:{}", sshd.port());
    state_log_and_ssh(
        &mut cmd,
        state_dir,
        log,
        remote_forward_ssh_args(sshd, &forward),
    )
    .stdin(Stdio::null());
    StopOnDrop(cmd.spawn().unwrap())
}
