//! OpenWrt's procd: an init script `/etc/init.d/tunnel-NAME` for `/etc/rc.common` with
//! `USE_PROCD=1`, one instance named `tunnel`, respawn that never halts and procd's
//! per-instance watchdog, pinged by the watchdog over ubus.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tera::Context;

use super::render::{path_str, render_template, service_ssh_argv};
use super::{
    Activation, CredentialPaths, InitInfo, InitSystem, Lifecycle, LogSource, Pid1, Reconnect,
    RenderOptions, Rendered, RenderedFile, SYSTEM_LOG_DIR, Step, watchdog_options,
};
use crate::duration::{ceil_secs, format_duration};
use crate::escape;
use crate::model::Tunnel;

pub const PROCD: Procd = Procd;

pub struct Procd;

const TEMPLATE: &str = include_str!("../../units/procd.init.tera");

/// The one instance of the service, as the ping names it.
pub const INSTANCE: &str = "tunnel";

/// `tunnel-NAME`: the init script's name, which procd calls the service.
pub fn service(name: &str) -> String {
    format!("tunnel-{name}")
}

fn script_path(name: &str) -> PathBuf {
    Path::new("/etc/init.d").join(service(name))
}

/// /var is RAM on OpenWrt (a link into /tmp), so state and log never wear the flash.
fn state_dir(name: &str) -> PathBuf {
    Path::new("/var/run/tunnelctl").join(name)
}

fn log_file(name: &str) -> String {
    format!("{SYSTEM_LOG_DIR}/{}.log", crate::config::inittab_id(name))
}

/// The line after the generated-by lines that names the tunnel: uninstall removes only
/// a script carrying it.
fn marker(name: &str) -> String {
    format!(
        "tunnelctl:procd {name} — managed by tunnelctl, remove with: tunnelctl uninstall {name}"
    )
}

/// procd's watchdog timeout: the watchdog requires at least 15 s and 3 × the probe
/// timeout (a probe round in progress never costs a ping); 30 s unless probes are slower.
pub fn watchdog_timeout(tunnel: &Tunnel) -> Duration {
    Duration::from_secs(ceil_secs(tunnel.probe.timeout.saturating_mul(3)).max(30))
}

/// The instance's command: the watchdog, its options with procd's readiness, the ssh argv.
pub fn command(tunnel: &Tunnel, watchdog: &str) -> Vec<String> {
    let name = &tunnel.name;
    let mut words = vec![watchdog.to_string()];
    words.extend(watchdog_options(
        tunnel,
        Some(&state_dir(name).to_string_lossy()),
        Some(&log_file(name)),
    ));
    words.extend([
        "--readiness".to_string(),
        format!("procd:{}/{INSTANCE}", service(name)),
        "--procd-watchdog".to_string(),
        format_duration(watchdog_timeout(tunnel)),
        "--".to_string(),
    ]);
    words.extend(service_ssh_argv(tunnel, CredentialPaths::AsConfigured));
    words
}

fn render(tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let words: Vec<String> = command(tunnel, watchdog)
        .iter()
        .map(|w| escape::sh_word(w))
        .collect::<Result<_, _>>()?;
    let mut context = Context::new();
    context.insert("marker", &marker(name));
    context.insert("command", &words.join(" "));
    context.insert("backoff_initial", &format_duration(tunnel.backoff.initial));
    context.insert("backoff_max", &format_duration(tunnel.backoff.max));
    context.insert("watchdog_secs", &watchdog_timeout(tunnel).as_secs());
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

/// `/etc/init.d/tunnel-NAME VERB`: rc.common's verbs.
fn init_script(name: &str, verb: &str) -> Vec<String> {
    vec![
        script_path(name).to_string_lossy().into_owned(),
        verb.to_string(),
    ]
}

impl InitSystem for Procd {
    fn per_user(&self) -> bool {
        false
    }

    fn detect(&self, root: &Path, _: bool) -> Option<String> {
        let comm = root.join("proc/1/comm");
        let release = root.join("etc/openwrt_release");
        if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "procd") {
            Some(format!("{} says procd", comm.display()))
        } else {
            release
                .is_file()
                .then(|| format!("{} exists: OpenWrt, whose init is procd", release.display()))
        }
    }

    fn detection_rule(&self) -> Option<&'static str> {
        Some("procd as PID 1 or /etc/openwrt_release means procd")
    }

    fn files_summary(&self) -> &'static str {
        "/etc/init.d/tunnel-NAME (an rc.common script with USE_PROCD=1)"
    }

    fn state_and_log_summary(&self) -> &'static str {
        "state /var/run/tunnelctl/NAME; log /var/log/tunnelctl/ID.log (by inittab id, rotated at 1 MiB; what came before it: logread -e tunnel-watchdog)"
    }

    fn reachable(&self, pid1: &Pid1) -> Result<(), String> {
        if pid1.comm == "procd" || pid1.exe_name() == "procd" {
            Ok(())
        } else {
            Err(format!("procd is not PID 1: {}", pid1.describe()))
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
        contents.starts_with(b"#!/bin/sh /etc/rc.common\n")
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
        vec![state_dir(name)]
    }

    fn log(&self, name: &str, _: &Path) -> LogSource {
        LogSource::File(PathBuf::from(log_file(name)))
    }

    /// None: the script sets respawn's retry to 0, so procd never halts the instance.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    /// Each script enabled (its rc.d links) and started, or restarted when it was
    /// installed before.
    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        for item in items {
            steps.push(Step::Run(init_script(item.name, "enable")));
            if no_start {
                continue;
            }
            let verb = if item.fresh { "start" } else { "restart" };
            steps.push(Step::Run(init_script(item.name, verb)));
        }
        steps
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        vec![
            // Not running (or not enabled) is fine: the script is going away.
            Step::MayFail(init_script(name, "stop")),
            Step::MayFail(init_script(name, "disable")),
        ]
    }

    fn forget(&self, _: &str) -> Vec<Step> {
        Vec::new()
    }

    /// `/etc/init.d/tunnel-NAME start|stop|restart` (enablement untouched).
    fn lifecycle(&self, name: &str, verb: Lifecycle, _: &Path) -> Result<Vec<Step>, String> {
        Ok(vec![Step::Run(init_script(name, verb.as_str()))])
    }

    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String> {
        Ok(vec![
            Step::Run(init_script(name, "enable")),
            Step::Run(init_script(name, "start")),
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
    use crate::targets::argv;

    #[test]
    fn the_watchdog_timeout_meets_the_watchdogs_rule() {
        let mut t = Tunnel::new("t", "h", vec![]);
        t.probe.timeout = Duration::from_secs(5);
        assert_eq!(watchdog_timeout(&t), Duration::from_secs(30));
        t.probe.timeout = Duration::from_millis(20_100);
        assert_eq!(watchdog_timeout(&t), Duration::from_secs(61));
        let words = command(&t, "/usr/bin/tunnel-watchdog");
        let at = words.iter().position(|w| w == "--procd-watchdog").unwrap();
        assert_eq!(words[at + 1], format_duration(Duration::from_secs(61)));
        assert!(words.contains(&"procd:tunnel-t/tunnel".to_string()));
        assert!(at < words.iter().position(|w| w == "--").unwrap());
    }

    /// The watchdog's own parser takes the rendered command: `--procd-watchdog` meets
    /// its rule for fast and slow probes alike.
    #[test]
    fn the_watchdog_accepts_the_command() {
        let mut t = Tunnel::new("t", "h", vec![]);
        for secs in [1, 5, 10, 20, 60] {
            t.probe.timeout = Duration::from_secs(secs);
            let words = command(&t, "/usr/bin/tunnel-watchdog");
            let parsed = crate::watchdog::args::parse(&words[1..], &|_| Err("no file".into()));
            assert!(
                matches!(parsed, Ok(crate::watchdog::args::Parsed::Run(_))),
                "probe timeout {secs}s: {parsed:?}"
            );
        }
    }

    #[test]
    fn init_script_verbs_start_restart_and_remove() {
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
            PROCD.activate(&items, false),
            [
                Step::Run(argv(&["/etc/init.d/tunnel-new", "enable"])),
                Step::Run(argv(&["/etc/init.d/tunnel-new", "start"])),
                Step::Run(argv(&["/etc/init.d/tunnel-old", "enable"])),
                Step::Run(argv(&["/etc/init.d/tunnel-old", "restart"])),
            ]
        );
        assert_eq!(
            PROCD.stop("t"),
            [
                Step::MayFail(argv(&["/etc/init.d/tunnel-t", "stop"])),
                Step::MayFail(argv(&["/etc/init.d/tunnel-t", "disable"])),
            ]
        );
    }

    #[test]
    fn detected_by_pid1_or_openwrt_release() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(PROCD.detect(root.path(), false), None);
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/comm"), "init\n").unwrap();
        assert_eq!(PROCD.detect(root.path(), false), None);
        std::fs::write(root.path().join("proc/1/comm"), "procd\n").unwrap();
        assert!(PROCD.detect(root.path(), false).unwrap().contains("procd"));
        std::fs::remove_dir_all(root.path().join("proc")).unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/openwrt_release"),
            "DISTRIB_ID='OpenWrt'\n",
        )
        .unwrap();
        assert!(
            PROCD
                .detect(root.path(), false)
                .unwrap()
                .contains("openwrt_release")
        );
    }
}
