//! launchd: LaunchDaemons and LaunchAgents, written with the `plist` crate so the XML is
//! well-formed whatever the strings hold; loaded and removed with `launchctl` steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plist::{Dictionary, Value};

use super::render::{path_str, service_ssh_argv};
use super::{
    Activation, CredentialPaths, InitInfo, InitSystem, Lifecycle, LogSource, Pid1, Reconnect,
    RenderOptions, Rendered, RenderedFile, SYSTEM_LOG_DIR, Step, argv, watchdog_args,
};
use crate::model::Tunnel;

/// LaunchDaemons, run by root (`/Library/LaunchDaemons`).
pub const DAEMON: Launchd = Launchd { agent: false };
/// LaunchAgents, run by the user (`~/Library/LaunchAgents`).
pub const AGENT: Launchd = Launchd { agent: true };

pub struct Launchd {
    agent: bool,
}

/// How long a reinstall waits for the old job to be gone.
pub const LAUNCHD_GONE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn label(name: &str) -> String {
    format!("org.tunnelctl.{name}")
}

impl Launchd {
    fn plist_dir(&self, home: &Path) -> PathBuf {
        if self.agent {
            home.join("Library/LaunchAgents")
        } else {
            PathBuf::from("/Library/LaunchDaemons")
        }
    }

    fn state_dir(&self, name: &str, home: &Path) -> PathBuf {
        if self.agent {
            home.join("Library/Application Support/tunnelctl")
                .join(name)
        } else {
            PathBuf::from("/var/run/tunnelctl").join(name)
        }
    }

    fn log_dir(&self, home: &Path) -> PathBuf {
        if self.agent {
            home.join("Library/Logs/tunnelctl")
        } else {
            PathBuf::from(SYSTEM_LOG_DIR)
        }
    }

    /// The job's domain for this user (asks launchctl whether an agent's user has a GUI
    /// login), and the note when an agent cannot go into `gui/UID`.
    fn domain(&self) -> (String, Option<String>) {
        let uid = nix::unistd::getuid().as_raw();
        let gui = self.agent && gui_session(uid);
        let note = (self.agent && !gui).then(|| no_gui_note(uid));
        (launchd_domain(self.agent, uid, gui), note)
    }
}

fn render(tunnel: &Tunnel, system: &Launchd, options: &RenderOptions) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let home = &options.home;
    let (plist_dir, state_dir, log_dir) = (
        system.plist_dir(home),
        system.state_dir(name, home),
        system.log_dir(home),
    );
    let state_dir = path_str(&state_dir, "state directory")?.to_string();
    let log_file = log_dir.join(format!("{name}.log"));
    let log = path_str(&log_file, "log file")?.to_string();

    let mut argv = vec![watchdog.to_string()];
    argv.extend(watchdog_args(
        tunnel,
        Some(&state_dir),
        None,
        service_ssh_argv(tunnel, CredentialPaths::AsConfigured),
    ));

    let mut dict = Dictionary::new();
    dict.insert("Label".into(), Value::String(label(name)));
    dict.insert(
        "ProgramArguments".into(),
        Value::Array(argv.into_iter().map(Value::String).collect()),
    );
    dict.insert("RunAtLoad".into(), Value::Boolean(true));
    dict.insert("KeepAlive".into(), Value::Boolean(true));
    // The watchdog paces reconnects itself; this only stops a crash loop spinning.
    dict.insert("ThrottleInterval".into(), Value::Integer(10.into()));
    dict.insert("ProcessType".into(), Value::String("Background".into()));
    // launchd kills the job's whole process group (ssh included) when the watchdog exits.
    dict.insert("AbandonProcessGroup".into(), Value::Boolean(false));
    dict.insert("StandardOutPath".into(), Value::String(log.clone()));
    dict.insert("StandardErrorPath".into(), Value::String(log));

    let mut xml = Vec::new();
    Value::Dictionary(dict)
        .to_writer_xml(&mut xml)
        .map_err(|e| format!("writing the plist: {e}"))?;
    let mut contents = String::from_utf8(xml).map_err(|e| format!("plist is not UTF-8: {e}"))?;
    contents.push('\n');
    Ok(Rendered {
        files: vec![RenderedFile {
            path: plist_dir.join(format!("{}.plist", label(name))),
            contents,
            mode: 0o644,
        }],
        dirs: vec![log_dir],
        inittab: None,
    })
}

impl InitSystem for Launchd {
    fn per_user(&self) -> bool {
        self.agent
    }

    fn detect(&self, _: &Path, user: bool) -> Option<String> {
        (cfg!(target_os = "macos") && user == self.agent)
            .then(|| "this is macOS: launchd runs it".to_string())
    }

    fn detection_rule(&self) -> Option<&'static str> {
        (!self.agent).then_some("macOS means launchd")
    }

    fn files_summary(&self) -> &'static str {
        if self.agent {
            "~/Library/LaunchAgents/org.tunnelctl.NAME.plist"
        } else {
            "/Library/LaunchDaemons/org.tunnelctl.NAME.plist"
        }
    }

    fn state_and_log_summary(&self) -> &'static str {
        if self.agent {
            "state ~/Library/Application Support/tunnelctl/NAME; log ~/Library/Logs/tunnelctl/NAME.log"
        } else {
            "state /var/run/tunnelctl/NAME; log /var/log/tunnelctl/NAME.log"
        }
    }

    /// launchd is always there on a Mac.
    fn reachable(&self, _: &Pid1) -> Result<(), String> {
        Ok(())
    }

    fn render(&self, tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
        render(tunnel, self, options)
    }

    fn installed_paths(&self, name: &str, home: &Path) -> Vec<PathBuf> {
        vec![self.plist_dir(home).join(format!("{}.plist", label(name)))]
    }

    fn file_tunnel(&self, file: &str) -> Option<String> {
        let name = file
            .strip_prefix("org.tunnelctl.")?
            .strip_suffix(".plist")?;
        (!name.is_empty()).then(|| name.to_string())
    }

    /// A plist whose `Label` is ours for the name.
    fn is_ours(&self, contents: &[u8], name: &str) -> bool {
        plist::from_bytes::<Dictionary>(contents)
            .is_ok_and(|d| d.get("Label").and_then(Value::as_string) == Some(label(name).as_str()))
    }

    fn made_dirs(&self, home: &Path) -> Vec<PathBuf> {
        vec![self.log_dir(home)]
    }

    fn inittab_line_start(&self, _: &str) -> Option<String> {
        None
    }

    fn state_dirs(
        &self,
        name: &str,
        home: &Path,
        _: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<PathBuf> {
        vec![self.state_dir(name, home)]
    }

    /// None: launchd only spaces starts (ThrottleInterval), it never gives up.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    fn log(&self, name: &str, home: &Path) -> LogSource {
        LogSource::File(self.log_dir(home).join(format!("{name}.log")))
    }

    /// Unless `no_start`: each job bootstrapped into its domain (booted out first when it
    /// was installed before), with a note when an agent cannot go into `gui/UID`.
    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        if no_start {
            return Vec::new();
        }
        let (domain, note) = self.domain();
        let mut steps: Vec<Step> = note.into_iter().map(Step::Note).collect();
        for item in items {
            let plist = item
                .rendered
                .files
                .first()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default();
            steps.extend(launchd_install_steps(
                &domain,
                &label(item.name),
                &plist,
                item.fresh,
            ));
        }
        steps
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        launchd_uninstall_steps(&self.domain().0, &label(name))
    }

    fn forget(&self, _: &str) -> Vec<Step> {
        Vec::new()
    }

    /// `bootstrap` / `bootout` / `kickstart -k`.
    fn lifecycle(&self, name: &str, verb: Lifecycle, home: &Path) -> Result<Vec<Step>, String> {
        let (domain, _) = self.domain();
        let label = label(name);
        Ok(match verb {
            Lifecycle::Start => {
                let plist = self.installed_paths(name, home)[0].display().to_string();
                launchd_install_steps(&domain, &label, &plist, true)
            }
            Lifecycle::Stop => launchd_uninstall_steps(&domain, &label),
            Lifecycle::Restart => vec![Step::Run(argv(&[
                "launchctl",
                "kickstart",
                "-k",
                &format!("{domain}/{label}"),
            ]))],
        })
    }

    fn start_installed(&self, _: &str) -> Result<Vec<Step>, String> {
        Err("a handover to launchd is not supported yet".into())
    }

    fn reconnect(&self, _: &str) -> Option<Reconnect> {
        None
    }

    fn supervisor_view(&self, _: &str) -> Option<InitInfo> {
        None
    }

    fn masked_fix(&self, _: &str) -> Option<String> {
        None
    }
}

/// The domain a job goes into: `system` for daemons; for agents `gui/UID` when that user
/// has a GUI login, else `user/UID` (which exists for any logged-in user, over ssh too).
pub fn launchd_domain(agent: bool, uid: u32, gui_session: bool) -> String {
    if !agent {
        "system".into()
    } else if gui_session {
        format!("gui/{uid}")
    } else {
        format!("user/{uid}")
    }
}

/// `bootout` returns before the job is gone, and a `bootstrap` right after it can fail
/// ("5: Input/output error"): poll `launchctl print SERVICE` until it fails.
fn wait_gone(service: &str) -> Step {
    Step::WaitGone {
        probe: argv(&["launchctl", "print", service]),
        timeout: LAUNCHD_GONE_TIMEOUT,
        still: format!(
            "{service} is still loaded {} s after `launchctl bootout`; \
             run `launchctl bootout {service}` and install again",
            LAUNCHD_GONE_TIMEOUT.as_secs()
        ),
    }
}

/// The install sequence. `bootstrap` of a `RunAtLoad` job starts it, so there is no
/// `kickstart -k` after it (that would kill and restart the job just started). A
/// changed plist is read only on bootstrap: a reinstall boots the old job out first and
/// waits until it is gone.
pub fn launchd_install_steps(domain: &str, label: &str, plist: &str, fresh: bool) -> Vec<Step> {
    let service = format!("{domain}/{label}");
    let mut steps = Vec::new();
    if !fresh {
        steps.push(Step::MayFail(argv(&["launchctl", "bootout", &service])));
        steps.push(wait_gone(&service));
    }
    steps.push(Step::Run(argv(&["launchctl", "bootstrap", domain, plist])));
    steps
}

/// The uninstall sequence: boot the job out (it may not be loaded) and wait for it to go,
/// so the files are removed after the job stopped.
pub fn launchd_uninstall_steps(domain: &str, label: &str) -> Vec<Step> {
    let service = format!("{domain}/{label}");
    vec![
        Step::MayFail(argv(&["launchctl", "bootout", &service])),
        wait_gone(&service),
    ]
}

/// Whether `gui/UID` exists (a GUI login): `launchctl print` fails for a missing domain.
fn gui_session(uid: u32) -> bool {
    Command::new("launchctl")
        .args(["print", &format!("gui/{uid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn no_gui_note(uid: u32) -> String {
    format!(
        "note: uid {uid} has no GUI login session (logged in over ssh?), so the agent goes into \
         the user/{uid} domain: it runs while you have any session. To have it in gui/{uid} \
         (started at every GUI login), log in at the screen and run `tunnelctl install` again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchd_sequences_never_kickstart_a_job_just_bootstrapped() {
        use Step::*;
        let plist = "/Library/LaunchDaemons/org.tunnelctl.t.plist";
        // Fresh: bootstrap alone (RunAtLoad starts the job).
        assert_eq!(
            launchd_install_steps("system", "org.tunnelctl.t", plist, true),
            vec![Run(argv(&["launchctl", "bootstrap", "system", plist]))]
        );
        // Reinstall: the old job out, waited for (bounded), then bootstrap; no kickstart.
        let steps = launchd_install_steps("system", "org.tunnelctl.t", plist, false);
        assert_eq!(
            steps,
            vec![
                MayFail(argv(&["launchctl", "bootout", "system/org.tunnelctl.t"])),
                wait_gone("system/org.tunnelctl.t"),
                Run(argv(&["launchctl", "bootstrap", "system", plist])),
            ]
        );
        assert!(LAUNCHD_GONE_TIMEOUT <= Duration::from_secs(30));
        for fresh in [true, false] {
            let all = launchd_install_steps("gui/501", "l", "p", fresh);
            assert!(!format!("{all:?}").contains("kickstart"), "{all:?}");
        }
        assert_eq!(
            launchd_uninstall_steps("user/501", "l"),
            vec![
                MayFail(argv(&["launchctl", "bootout", "user/501/l"])),
                wait_gone("user/501/l"),
            ]
        );
        // Agents: gui/UID with a GUI login, user/UID without (over ssh); daemons: system.
        assert_eq!(launchd_domain(true, 501, true), "gui/501");
        assert_eq!(launchd_domain(true, 501, false), "user/501");
        assert_eq!(launchd_domain(false, 0, false), "system");
        assert!(
            no_gui_note(501).contains("user/501") && no_gui_note(501).contains("install` again")
        );
    }

    #[test]
    fn wait_gone_polls_print_until_it_fails() {
        let Step::WaitGone {
            probe,
            timeout,
            still,
        } = wait_gone("system/x")
        else {
            panic!()
        };
        assert_eq!(probe, ["launchctl", "print", "system/x"]);
        assert!(timeout <= Duration::from_secs(30));
        assert!(still.contains("launchctl bootout system/x"), "{still}");
    }
}
