//! launchd's side of install and uninstall: the launchctl steps as data (pure, tested
//! without a Mac) and running them.

use super::*;

/// One launchctl step of an install or uninstall, as data, so the sequences are tested
/// without a Mac.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchdStep {
    /// Run it; a failure is an error.
    Run(Vec<String>),
    /// Run it; a failure is fine (the job may not be loaded).
    MayFail(Vec<String>),
    /// `bootout` returns before the job is gone, and a `bootstrap` right after it can
    /// fail ("5: Input/output error"): poll `launchctl print SERVICE` until it fails,
    /// at most this long.
    WaitGone { service: String, timeout: Duration },
}

/// How long a reinstall waits for the old job to be gone.
pub const LAUNCHD_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// The domain a job goes into: `system` for daemons; for agents `gui/UID` when that user
/// has a GUI login, else `user/UID` (which exists for any logged-in user, over ssh too).
pub fn launchd_domain(target: Target, uid: u32, gui_session: bool) -> String {
    match target {
        Target::Launchd => "system".into(),
        _ if gui_session => format!("gui/{uid}"),
        _ => format!("user/{uid}"),
    }
}

/// The install sequence. `bootstrap` of a `RunAtLoad` job starts it, so there is no
/// `kickstart -k` after it (that would kill and restart the job just started). A
/// changed plist is read only on bootstrap: a reinstall boots the old job out first and
/// waits until it is gone.
pub fn launchd_install_steps(
    domain: &str,
    label: &str,
    plist: &str,
    fresh: bool,
) -> Vec<LaunchdStep> {
    let service = format!("{domain}/{label}");
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let mut steps = Vec::new();
    if !fresh {
        steps.push(LaunchdStep::MayFail(argv(&[
            "launchctl",
            "bootout",
            &service,
        ])));
        steps.push(LaunchdStep::WaitGone {
            service: service.clone(),
            timeout: LAUNCHD_GONE_TIMEOUT,
        });
    }
    steps.push(LaunchdStep::Run(argv(&[
        "launchctl",
        "bootstrap",
        domain,
        plist,
    ])));
    steps
}

/// The uninstall sequence: boot the job out (it may not be loaded) and wait for it to go,
/// so the files are removed after the job stopped.
pub fn launchd_uninstall_steps(domain: &str, label: &str) -> Vec<LaunchdStep> {
    let service = format!("{domain}/{label}");
    vec![
        LaunchdStep::MayFail(vec!["launchctl".into(), "bootout".into(), service.clone()]),
        LaunchdStep::WaitGone {
            service,
            timeout: LAUNCHD_GONE_TIMEOUT,
        },
    ]
}

/// Whether `gui/UID` exists (a GUI login): `launchctl print` fails for a missing domain.
pub(super) fn launchd_gui_session(uid: u32) -> bool {
    Command::new("launchctl")
        .args(["print", &format!("gui/{uid}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn no_gui_note(uid: u32) -> String {
    format!(
        "note: uid {uid} has no GUI login session (logged in over ssh?), so the agent goes into \
         the user/{uid} domain: it runs while you have any session. To have it in gui/{uid} \
         (started at every GUI login), log in at the screen and run `tunnelctl install` again"
    )
}

pub(super) fn run_launchd(steps: &[LaunchdStep]) -> Result<(), String> {
    for step in steps {
        match step {
            LaunchdStep::Run(argv) => run_tool(argv)?,
            LaunchdStep::MayFail(argv) => {
                let _ = run_tool(argv);
            }
            LaunchdStep::WaitGone { service, timeout } => {
                let deadline = Instant::now() + *timeout;
                let gone = || {
                    !Command::new("launchctl")
                        .args(["print", service])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                // Bounded by the deadline; 100 ms between asks.
                while !gone() {
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "{service} is still loaded {} s after `launchctl bootout`; \
                             run `launchctl bootout {service}` and install again",
                            timeout.as_secs()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn with(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}
