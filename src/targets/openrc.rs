//! OpenRC: an init script `/etc/init.d/tunnel-NAME` run by `openrc-run`, supervised by
//! `supervise-daemon`, added to the default runlevel with `rc-update`, driven with
//! `rc-service`.

use std::path::{Path, PathBuf};

use tera::Context;

use super::render::{path_str, render_template, service_ssh_argv};
use super::{
    Activation, CredentialPaths, InitInfo, InitSystem, Lifecycle, LogSource, Pid1, Reconnect,
    RenderOptions, Rendered, RenderedFile, SYSTEM_LOG_DIR, Step, argv, watchdog_options,
};
use crate::duration::format_duration;
use crate::escape;
use crate::model::Tunnel;

pub const OPENRC: OpenRc = OpenRc;

pub struct OpenRc;

const TEMPLATE: &str = include_str!("../../units/openrc.init.tera");

/// The fd supervise-daemon hands the watchdog for `notify=fd:N` (OpenRC 0.62 and later).
pub const NOTIFY_FD: u32 = 4;

/// `tunnel-NAME`: the init script's name, which OpenRC calls the service.
pub fn service(name: &str) -> String {
    format!("tunnel-{name}")
}

fn script_path(name: &str) -> PathBuf {
    Path::new("/etc/init.d").join(service(name))
}

/// The line after the generated-by lines that names the tunnel: uninstall removes only
/// a script carrying it.
fn marker(name: &str) -> String {
    format!(
        "tunnelctl:openrc {name} — managed by tunnelctl, remove with: tunnelctl uninstall {name}"
    )
}

fn log_file(name: &str) -> String {
    format!("{SYSTEM_LOG_DIR}/{}.log", crate::config::inittab_id(name))
}

fn early_log(name: &str) -> String {
    format!("{SYSTEM_LOG_DIR}/{}.err", crate::config::inittab_id(name))
}

/// Words for a variable that `eval` reads again: each word quoted, then the whole
/// quoted once more for the assignment.
fn eval_words(words: &[String]) -> Result<String, String> {
    let once: Vec<String> = words
        .iter()
        .map(|w| escape::sh_word(w))
        .collect::<Result<_, _>>()?;
    escape::sh_word(&once.join(" "))
}

fn render(tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let state_dir = format!("/run/tunnelctl/{name}");
    let log = log_file(name);
    let mut ssh = vec!["--".to_string()];
    ssh.extend(service_ssh_argv(tunnel, CredentialPaths::AsConfigured));
    let description = match &tunnel.user {
        Some(user) => format!("SSH tunnel {name} to {user}@{}", tunnel.host),
        None => format!("SSH tunnel {name} to {}", tunnel.host),
    };
    let mut context = Context::new();
    context.insert("marker", &marker(name));
    context.insert("description", &escape::sh_word(&description)?);
    context.insert("command", &eval_words(&[watchdog.to_string()])?);
    context.insert(
        "watchdog_options",
        &eval_words(&watchdog_options(tunnel, Some(&state_dir), Some(&log)))?,
    );
    context.insert("ssh_command", &eval_words(&ssh)?);
    context.insert("early_log", &escape::sh_word(&early_log(name))?);
    context.insert("backoff_initial", &format_duration(tunnel.backoff.initial));
    context.insert("backoff_max", &format_duration(tunnel.backoff.max));
    context.insert("notify_fd", &NOTIFY_FD);
    Ok(Rendered {
        files: vec![RenderedFile {
            path: script_path(name),
            contents: render_template(TEMPLATE, &context)?,
            mode: 0o755,
        }],
        dirs: vec![SYSTEM_LOG_DIR.into()],
        inittab: None,
    })
}

fn rc_service(name: &str, verb: &str) -> Vec<String> {
    argv(&["rc-service", &service(name), verb])
}

impl InitSystem for OpenRc {
    fn per_user(&self) -> bool {
        false
    }

    /// OpenRC keeps its run state in /run/openrc once it has booted the machine.
    fn detect(&self, root: &Path, _: bool) -> Option<String> {
        let run = root.join("run/openrc");
        run.is_dir()
            .then(|| format!("{} is a directory: OpenRC runs this machine", run.display()))
    }

    fn detection_rule(&self) -> Option<&'static str> {
        Some("/run/openrc means openrc")
    }

    fn files_summary(&self) -> &'static str {
        "/etc/init.d/tunnel-NAME (an openrc-run script, supervise-daemon)"
    }

    fn state_and_log_summary(&self) -> &'static str {
        "state /run/tunnelctl/NAME; log /var/log/tunnelctl/ID.log (by inittab id, rotated at 1 MiB; ID.err: what the watchdog said before its log opened)"
    }

    fn reachable(&self, pid1: &Pid1) -> Result<(), String> {
        if Path::new("/run/openrc").is_dir() {
            Ok(())
        } else {
            Err(format!(
                "OpenRC is not running here (no /run/openrc); {}",
                pid1.describe()
            ))
        }
    }

    fn render(&self, tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
        render(tunnel, options)
    }

    fn installed_paths(&self, name: &str, _: &Path) -> Vec<PathBuf> {
        vec![script_path(name)]
    }

    fn file_tunnel(&self, file: &str) -> Option<String> {
        file.strip_prefix("tunnel-")
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    }

    /// Our script carries the marker line naming the tunnel.
    fn is_ours(&self, contents: &[u8], name: &str) -> bool {
        let marker = format!("\n# {}\n", marker(name));
        contents.starts_with(b"#!/sbin/openrc-run\n")
            && contents
                .windows(marker.len())
                .any(|w| w == marker.as_bytes())
    }

    fn made_dirs(&self, _: &Path) -> Vec<PathBuf> {
        vec![SYSTEM_LOG_DIR.into()]
    }

    fn inittab_line_start(&self, _: &str) -> Option<String> {
        None
    }

    fn state_dirs(&self, name: &str, _: &Path, _: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
        vec![Path::new("/run/tunnelctl").join(name)]
    }

    fn log(&self, name: &str, _: &Path) -> LogSource {
        LogSource::File(PathBuf::from(log_file(name)))
    }

    /// None: the script sets respawn_max=0, so supervise-daemon never gives up.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    /// Each tunnel added to the default runlevel and started, or restarted when it was
    /// installed before (supervise-daemon keeps the old arguments until then).
    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        for item in items {
            steps.push(Step::Run(argv(&[
                "rc-update",
                "add",
                &service(item.name),
                "default",
            ])));
            if no_start {
                continue;
            }
            let verb = if item.fresh { "start" } else { "restart" };
            steps.push(Step::Run(rc_service(item.name, verb)));
        }
        steps
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        vec![
            // Not started (or already stopped) is fine: the script is going away.
            Step::MayFail(rc_service(name, "stop")),
            Step::MayFail(argv(&["rc-update", "del", &service(name), "default"])),
        ]
    }

    fn forget(&self, _: &str) -> Vec<Step> {
        Vec::new()
    }

    /// `rc-service tunnel-NAME start|stop|restart` (the runlevel untouched).
    fn lifecycle(&self, name: &str, verb: Lifecycle, _: &Path) -> Result<Vec<Step>, String> {
        Ok(vec![Step::Run(rc_service(name, verb.as_str()))])
    }

    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String> {
        Ok(vec![
            Step::Run(argv(&["rc-update", "add", &service(name), "default"])),
            Step::Run(rc_service(name, "start")),
        ])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc_update_and_rc_service_start_restart_and_remove() {
        let rendered = Rendered {
            files: Vec::new(),
            dirs: Vec::new(),
            inittab: None,
        };
        let items = [
            Activation {
                name: "new",
                rendered: &rendered,
                fresh: true,
            },
            Activation {
                name: "old",
                rendered: &rendered,
                fresh: false,
            },
        ];
        assert_eq!(
            OPENRC.activate(&items, false),
            [
                Step::Run(argv(&["rc-update", "add", "tunnel-new", "default"])),
                Step::Run(argv(&["rc-service", "tunnel-new", "start"])),
                Step::Run(argv(&["rc-update", "add", "tunnel-old", "default"])),
                Step::Run(argv(&["rc-service", "tunnel-old", "restart"])),
            ]
        );
        assert_eq!(OPENRC.activate(&items[..1], true).len(), 1);
        assert_eq!(
            OPENRC.stop("t"),
            [
                Step::MayFail(argv(&["rc-service", "tunnel-t", "stop"])),
                Step::MayFail(argv(&["rc-update", "del", "tunnel-t", "default"])),
            ]
        );
        assert_eq!(
            OPENRC.lifecycle("t", Lifecycle::Restart, Path::new("/")),
            Ok(vec![Step::Run(argv(&[
                "rc-service",
                "tunnel-t",
                "restart"
            ]))])
        );
    }

    #[test]
    fn detected_by_run_openrc_and_ours_only_with_the_marker() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(OPENRC.detect(root.path(), false), None);
        std::fs::create_dir_all(root.path().join("run/openrc")).unwrap();
        assert!(
            OPENRC
                .detect(root.path(), false)
                .unwrap()
                .contains("run/openrc")
        );
        let script = format!("#!/sbin/openrc-run\n# x\n# {}\n", marker("a"));
        assert!(OPENRC.is_ours(script.as_bytes(), "a"));
        assert!(!OPENRC.is_ours(script.as_bytes(), "b"));
        assert!(!OPENRC.is_ours(b"#!/sbin/openrc-run\n", "a"));
    }
}
