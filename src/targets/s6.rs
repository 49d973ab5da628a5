//! s6: a service directory `/etc/tunnelctl/s6/tunnel-NAME` (`run` execs the watchdog,
//! which says ready on fd 3 as `notification-fd` asks; `log/run` pipes its lines to
//! `s6-log`), linked into the scan directory that `s6-svscan` watches with `s6-svlink`.
//! The scan directory is `--s6-scan-dir DIR`, else `/run/service` (s6-linux-init's and
//! s6-overlay's); `$TUNNELCTL_S6_SCAN_DIR`, which named it before, is still read (with a
//! deprecation warning) when the option is not given. The service directory lives in tunnelctl's own folder rather than
//! `/etc/s6/sv` so that uninstall leaves no empty directory behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::render::service_ssh_argv;
use super::render::{GENERATED, path_str};
use super::{
    Activation, CredentialPaths, InitInfo, InitSystem, Lifecycle, LogSource, Pid1, Reconnect,
    RenderOptions, Rendered, RenderedFile, SYSTEM_LOG_DIR, Step, argv, watchdog_args,
};
use crate::duration::format_duration;
use crate::escape::sh_word;
use crate::model::Tunnel;

pub const S6: S6Supervision = S6Supervision;

pub struct S6Supervision;

/// Where service directories live, outside the scan directory (linked into it).
pub const SERVICE_ROOT: &str = "/etc/tunnelctl/s6";
/// The scan directory when `--s6-scan-dir` names none.
pub const DEFAULT_SCAN_DIR: &str = "/run/service";
/// The option naming another scan directory (`cli::SupervisionArgs`).
pub const SCAN_DIR_OPTION: &str = "--s6-scan-dir";
/// The environment variable that named it before the option (deprecated).
pub const SCAN_DIR_ENV: &str = "TUNNELCTL_S6_SCAN_DIR";
/// The fd the watchdog writes its readiness newline to (`notification-fd`).
const NOTIFICATION_FD: u32 = 3;
/// How long install waits for the tunnel to be proven (`s6-svwait -U -t`).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// `tunnel-NAME`: the service's name in the scan directory.
pub fn service_name(name: &str) -> String {
    format!("tunnel-{name}")
}

pub fn service_dir(name: &str) -> PathBuf {
    Path::new(SERVICE_ROOT).join(service_name(name))
}

fn log_dir(name: &str) -> PathBuf {
    Path::new(SYSTEM_LOG_DIR).join(format!("s6-{name}"))
}

/// The scan directory this process works with: `--s6-scan-dir`, else the deprecated
/// variable, else the default.
pub fn scan_dir() -> PathBuf {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    super::supervision_dirs()
        .s6_scan
        .clone()
        .or_else(|| super::deprecated_env_dir(SCAN_DIR_ENV, SCAN_DIR_OPTION, &WARNED))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SCAN_DIR))
}

/// The service as the scan directory holds it (the link install makes).
fn linked(scan: &Path, name: &str) -> String {
    scan.join(service_name(name)).to_string_lossy().into_owned()
}

fn head(name: &str) -> String {
    format!("{GENERATED} for tunnel {name} (s6)")
}

fn render(tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let dir = service_dir(name);
    let state_dir = format!("/run/tunnelctl/{name}");
    let mut words = vec![
        sh_word(watchdog)?,
        sh_word("--readiness")?,
        sh_word(&format!("s6-fd:{NOTIFICATION_FD}"))?,
    ];
    for arg in watchdog_args(
        tunnel,
        Some(&state_dir),
        None,
        service_ssh_argv(tunnel, CredentialPaths::AsConfigured),
    ) {
        words.push(sh_word(&arg)?);
    }
    let run = format!(
        "#!/bin/sh\n\
         {head}\n\
         # Change the tunnel in tunnels.yaml and run `tunnelctl install` again rather than editing this file.\n\
         # Restart limits: s6-supervise has none; it starts ./run again 1 s after it exits\n\
         # (there is no ./finish). The watchdog paces reconnects with its own back-off\n\
         # (initial {initial}, doubling up to {max}, kept across restarts), so a tunnel\n\
         # that cannot connect never spins.\n\
         exec 2>&1\n\
         exec {args}\n",
        head = head(name),
        initial = format_duration(tunnel.backoff.initial),
        max = format_duration(tunnel.backoff.max),
        args = words.join(" \\\n  "),
    );
    let log_run = format!(
        "#!/bin/sh\n\
         {head}\n\
         # The watchdog's lines, timestamped, kept in 10 files of up to 1 MB.\n\
         exec s6-log -b -- n10 s1000000 T {dir}\n",
        head = head(name),
        dir = sh_word(&log_dir(name).to_string_lossy())?,
    );
    Ok(Rendered {
        files: vec![
            RenderedFile {
                path: dir.join("run"),
                contents: run,
                mode: 0o755,
            },
            RenderedFile {
                path: dir.join("notification-fd"),
                contents: format!("{NOTIFICATION_FD}\n"),
                mode: 0o644,
            },
            RenderedFile {
                path: dir.join("log/run"),
                contents: log_run,
                mode: 0o755,
            },
        ],
        dirs: vec![SYSTEM_LOG_DIR.into()],
        inittab: None,
    })
}

impl S6Supervision {
    /// Steps against the scan directory `scan` (pure; the trait methods pass [`scan_dir`]).
    fn activate_in(&self, scan: &Path, items: &[Activation], no_start: bool) -> Vec<Step> {
        let scan_s = scan.to_string_lossy().into_owned();
        let mut steps = Vec::new();
        for item in items {
            let svc = linked(scan, item.name);
            let dir = service_dir(item.name).to_string_lossy().into_owned();
            if no_start {
                // Written, not linked: `tunnelctl start` (or import's handover) links it.
                continue;
            }
            if item.fresh {
                steps.push(Step::Run(argv(&[
                    "s6-svlink",
                    &scan_s,
                    &dir,
                    &service_name(item.name),
                ])));
            } else {
                steps.push(Step::Run(argv(&["s6-svc", "-r", &svc])));
            }
            if !no_start {
                steps.push(Step::Progress(format!(
                    "{}: waiting for s6 to see the tunnel proven…",
                    item.name
                )));
                steps.push(Step::Run(argv(&[
                    "s6-svwait",
                    "-U",
                    "-t",
                    &READY_TIMEOUT.as_millis().to_string(),
                    &svc,
                ])));
            }
        }
        steps
    }

    fn stop_in(&self, scan: &Path, name: &str) -> Vec<Step> {
        let dir = service_dir(name);
        let runtime = |p: &str| dir.join(p).to_string_lossy().into_owned();
        vec![
            // Removes the link and has the supervisor take the service down and exit.
            Step::MayFail(argv(&[
                "s6-svunlink",
                &scan.to_string_lossy(),
                &service_name(name),
            ])),
            // What s6-supervise made inside the service directory for it.
            Step::MayFail(argv(&[
                "rm",
                "-rf",
                "--",
                &runtime("supervise"),
                &runtime("event"),
                &runtime("log/supervise"),
                &runtime("log/event"),
            ])),
        ]
    }
}

impl InitSystem for S6Supervision {
    fn per_user(&self) -> bool {
        false
    }

    /// s6 when PID 1 is s6-svscan, or s6-overlay's /run/s6/basedir (or /run/s6) is there.
    fn detect(&self, root: &Path, user: bool) -> Option<String> {
        if user {
            return None;
        }
        let comm = std::fs::read_to_string(root.join("proc/1/comm")).unwrap_or_default();
        if comm.trim() == "s6-svscan" {
            return Some("PID 1 is s6-svscan".into());
        }
        ["run/s6/basedir", "run/s6"]
            .into_iter()
            .map(|p| root.join(p))
            .find(|p| p.is_dir())
            .map(|p| format!("{} exists (s6 is in charge)", p.display()))
    }

    fn detection_rule(&self) -> Option<&'static str> {
        Some("s6-svscan as PID 1 or /run/s6 means s6")
    }

    fn files_summary(&self) -> &'static str {
        "/etc/tunnelctl/s6/tunnel-NAME/ (run, notification-fd, log/run), linked into the scan directory (--s6-scan-dir, else /run/service)"
    }

    fn state_and_log_summary(&self) -> &'static str {
        "state /run/tunnelctl/NAME; log /var/log/tunnelctl/s6-NAME/current (s6-log)"
    }

    /// The scan directory is a directory that an `s6-svscan` watches.
    fn reachable(&self, _: &Pid1) -> Result<(), String> {
        let scan = scan_dir();
        let how = format!("name another with {SCAN_DIR_OPTION} DIR");
        match std::fs::symlink_metadata(&scan) {
            Err(_) => Err(format!(
                "the s6 scan directory {} does not exist ({how})",
                scan.display()
            )),
            Ok(m) if !m.is_dir() => Err(format!(
                "the s6 scan directory {} is not a directory ({how})",
                scan.display()
            )),
            Ok(_) if !scan.join(".s6-svscan").is_dir() => Err(format!(
                "no s6-svscan watches {} (no .s6-svscan in it; start `s6-svscan {}` or {how})",
                scan.display(),
                scan.display()
            )),
            Ok(_) => Ok(()),
        }
    }

    fn render(&self, tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
        render(tunnel, options)
    }

    fn installed_paths(&self, name: &str, _: &Path) -> Vec<PathBuf> {
        let dir = service_dir(name);
        vec![
            dir.join("run"),
            dir.join("notification-fd"),
            dir.join("log/run"),
        ]
    }

    /// The service directory `tunnel-NAME` (its `run` says whose it is).
    fn file_tunnel(&self, folder: &str) -> Option<String> {
        folder
            .strip_prefix("tunnel-")
            .filter(|name| !name.is_empty())
            .map(String::from)
    }

    fn is_ours(&self, contents: &[u8], name: &str) -> bool {
        contents.starts_with(format!("#!/bin/sh\n{}\n", head(name)).as_bytes())
            || contents == format!("{NOTIFICATION_FD}\n").as_bytes()
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
        LogSource::File(log_dir(name).join("current"))
    }

    /// s6-supervise has no restart limit.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        self.activate_in(&scan_dir(), items, no_start)
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        self.stop_in(&scan_dir(), name)
    }

    /// The scan directory forgot it when it was unlinked ([`InitSystem::stop`]).
    fn forget(&self, _: &str) -> Vec<Step> {
        Vec::new()
    }

    fn lifecycle(&self, name: &str, verb: Lifecycle, _: &Path) -> Result<Vec<Step>, String> {
        let svc = linked(&scan_dir(), name);
        let flag = match verb {
            Lifecycle::Start => "-u",
            Lifecycle::Stop => "-d",
            Lifecycle::Restart => "-r",
        };
        Ok(vec![Step::Run(argv(&["s6-svc", flag, &svc]))])
    }

    /// Installed with --no-start, it is not linked yet: linking starts it.
    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String> {
        Ok(vec![Step::Run(argv(&[
            "s6-svlink",
            &scan_dir().to_string_lossy(),
            &service_dir(name).to_string_lossy(),
            &service_name(name),
        ]))])
    }

    /// s6-supervise signals the process it runs: the watchdog (ssh is its child).
    fn reconnect(&self, name: &str) -> Option<Reconnect> {
        let svc = linked(&scan_dir(), name);
        Some(Reconnect {
            argv: argv(&["s6-svc", "-1", &svc]),
            done: format!("{name}: asked s6 to send SIGUSR1 to the watchdog: it reconnects now"),
            start: format!("s6-svc -u {svc}"),
            service: svc,
        })
    }

    /// `s6-svstat` of the linked service: up/down, ready, and its own line.
    fn supervisor_view(&self, name: &str) -> Option<InitInfo> {
        let out = Command::new("s6-svstat")
            .arg(linked(&scan_dir(), name))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(parse_svstat(&String::from_utf8_lossy(&out.stdout)))
    }

    fn masked_fix(&self, _: &str) -> Option<String> {
        None
    }
}

/// `up (pid 12) 5 seconds, ready 4 seconds` → active `up`, sub `ready`.
fn parse_svstat(line: &str) -> InitInfo {
    let line = line.trim();
    InitInfo {
        active_state: line.split_whitespace().next().unwrap_or("").to_string(),
        sub_state: if line.contains(", ready") {
            "ready".into()
        } else {
            String::new()
        },
        n_restarts: 0,
        status_text: line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_links_then_waits_for_ready_and_uninstall_unlinks() {
        let rendered = Rendered {
            files: Vec::new(),
            dirs: Vec::new(),
            inittab: None,
        };
        let new = Activation {
            name: "a b",
            rendered: &rendered,
            fresh: true,
        };
        let scan = Path::new("/tmp/scan");
        let steps = S6.activate_in(scan, &[new], false);
        assert_eq!(
            steps[0],
            Step::Run(argv(&[
                "s6-svlink",
                "/tmp/scan",
                "/etc/tunnelctl/s6/tunnel-a b",
                "tunnel-a b"
            ]))
        );
        assert_eq!(
            steps[2],
            Step::Run(argv(&[
                "s6-svwait",
                "-U",
                "-t",
                "90000",
                "/tmp/scan/tunnel-a b"
            ]))
        );
        assert!(S6.activate_in(scan, &[new], true).is_empty());
        let old = Activation {
            fresh: false,
            ..new
        };
        assert_eq!(
            S6.activate_in(scan, &[old], false)[0],
            Step::Run(argv(&["s6-svc", "-r", "/tmp/scan/tunnel-a b"]))
        );
        assert_eq!(
            S6.stop_in(scan, "t")[0],
            Step::MayFail(argv(&["s6-svunlink", "/tmp/scan", "tunnel-t"]))
        );
    }

    #[test]
    fn svstat_reads_up_and_ready() {
        let i = parse_svstat("up (pid 12) 5 seconds, ready 4 seconds\n");
        assert_eq!(
            (i.active_state.as_str(), i.sub_state.as_str()),
            ("up", "ready")
        );
        let i = parse_svstat("down (exitcode 3) 1 seconds, normally up, want up, ready 1 seconds");
        assert_eq!(i.active_state, "down");
    }

    #[test]
    fn detection_sees_s6_as_pid1_or_its_run_dir() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(S6.detect(root.path(), false), None);
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/comm"), "s6-svscan\n").unwrap();
        assert_eq!(
            S6.detect(root.path(), false).as_deref(),
            Some("PID 1 is s6-svscan")
        );
        assert_eq!(S6.detect(root.path(), true), None);
        let overlay = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(overlay.path().join("run/s6/basedir")).unwrap();
        assert!(
            S6.detect(overlay.path(), false)
                .unwrap()
                .contains("basedir")
        );
    }
}
