//! Commands the harnesses run: one inside the namespaces of another process (`nsenter -t
//! PID …`, how the user manager and the container are reached), and the check that a
//! command succeeded, whether one exited, and what it said (for failure messages).

use std::process::{Child, Command, ExitStatus, Output, Stdio};

/// `nsenter -t PID NAMESPACES -- PROGRAM`, stdin from /dev/null. `namespaces` is
/// nsenter's flag: `-m` (the mount namespace) or `-a` (all of them).
pub fn nsenter(pid: i32, namespaces: &str, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t")
        .arg(pid.to_string())
        .arg(namespaces)
        .arg("--")
        .arg(program)
        .stdin(Stdio::null());
    cmd
}

/// The stdout of `out`; panics with status, stdout and stderr when `what` failed.
#[track_caller]
pub fn stdout_of_success(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code, stdout and stderr of a command, for failure messages.
pub fn out_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The exit status of `child` if it has exited (a harness waiting for its init to come up
/// gives up when the process that should run it is gone).
pub fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    child.as_mut().and_then(|c| c.try_wait().ok().flatten())
}
