//! runit: a service directory `/etc/tunnelctl/sv/tunnel-NAME` (`run` execs the watchdog;
//! `check` says the tunnel is proven, so `sv start` waits for that; `log/run` pipes its
//! lines to `svlogd`), linked into the directory `runsvdir` watches:
//! `--runit-service-dir DIR`, else `/var/service` where it exists (Void), else
//! `/etc/service` (Debian); `$TUNNELCTL_RUNIT_SERVICE_DIR`, which named it before, is
//! still read (with a deprecation warning) when the option is not given. It lives in tunnelctl's own folder rather than `/etc/sv` so that
//! uninstall leaves no empty directory behind.

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

pub const RUNIT: Runit = Runit;

pub struct Runit;

/// Where service directories live, outside the directory runsvdir watches (linked into it).
pub const SERVICE_ROOT: &str = "/etc/tunnelctl/sv";
/// The option naming the directory runsvdir watches (`cli::SupervisionArgs`).
pub const SCAN_DIR_OPTION: &str = "--runit-service-dir";
/// The environment variable that named it before the option (deprecated).
pub const SCAN_DIR_ENV: &str = "TUNNELCTL_RUNIT_SERVICE_DIR";
/// How long install waits for the tunnel to be proven (`sv -w`), in seconds.
const READY_TIMEOUT_S: u32 = 90;
/// How long runsv may take to appear once the link is there (runsvdir looks every 5 s).
const RUNSV_TIMEOUT: Duration = Duration::from_secs(15);

/// `tunnel-NAME`: the service's name in the scan directory.
pub fn service_name(name: &str) -> String {
    format!("tunnel-{name}")
}

pub fn service_dir(name: &str) -> PathBuf {
    Path::new(SERVICE_ROOT).join(service_name(name))
}

fn log_dir(name: &str) -> PathBuf {
    Path::new(SYSTEM_LOG_DIR).join(format!("runit-{name}"))
}

/// The directory runsvdir watches: `--runit-service-dir`, else the deprecated variable,
/// else the default (which looks at the machine: the edge).
pub fn scan_dir() -> PathBuf {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    super::supervision_dirs()
        .runit_service
        .clone()
        .or_else(|| super::deprecated_env_dir(SCAN_DIR_ENV, SCAN_DIR_OPTION, &WARNED))
        .unwrap_or_else(|| {
            if Path::new("/var/service").is_dir() {
                PathBuf::from("/var/service")
            } else {
                PathBuf::from("/etc/service")
            }
        })
}

/// The service as the scan directory holds it (the link install makes).
fn linked(scan: &Path, name: &str) -> String {
    scan.join(service_name(name)).to_string_lossy().into_owned()
}

fn head(name: &str) -> String {
    format!("{GENERATED} for tunnel {name} (runit)")
}

fn render(tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let dir = service_dir(name);
    let state_dir = format!("/run/tunnelctl/{name}");
    let mut words = vec![
        sh_word(watchdog)?,
        sh_word("--readiness")?,
        sh_word("none")?,
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
         # Restart limits: runsv has none; it starts ./run again 1 s after it exits. The\n\
         # watchdog paces reconnects with its own back-off (initial {initial}, doubling up\n\
         # to {max}, kept across restarts), so a tunnel that cannot connect never spins.\n\
         exec 2>&1\n\
         exec {args}\n",
        head = head(name),
        initial = format_duration(tunnel.backoff.initial),
        max = format_duration(tunnel.backoff.max),
        args = words.join(" \\\n  "),
    );
    let state = sh_word(&format!("{state_dir}/state"))?;
    let check = format!(
        "#!/bin/sh\n\
         {head}\n\
         # `sv start` and `sv check` run this in the service directory: success once the\n\
         # watchdog runit runs now says its tunnel is up (or degraded: connected, a target\n\
         # refusing), every forward proven.\n\
         pid=$(cat supervise/pid 2>/dev/null) || exit 1\n\
         [ -n \"$pid\" ] || exit 1\n\
         grep -qx \"pid=$pid\" {state} 2>/dev/null || exit 1\n\
         grep -qxE 'state=(up|degraded)' {state}\n",
        head = head(name),
    );
    let log = sh_word(&log_dir(name).to_string_lossy())?;
    let log_run = format!(
        "#!/bin/sh\n\
         {head}\n\
         # The watchdog's lines, timestamped, rotated by svlogd (10 files of 1 MB by default).\n\
         mkdir -p -- {log} || exit 1\n\
         exec svlogd -tt {log}\n",
        head = head(name),
    );
    Ok(Rendered {
        files: vec![
            RenderedFile {
                path: dir.join("run"),
                contents: run,
                mode: 0o755,
            },
            RenderedFile {
                path: dir.join("check"),
                contents: check,
                mode: 0o755,
            },
            RenderedFile {
                path: dir.join("log/run"),
                contents: log_run,
                mode: 0o755,
            },
        ],
        // svlogd's directory is made by log/run in it.
        dirs: vec![SYSTEM_LOG_DIR.into()],
        inittab: None,
    })
}

impl Runit {
    /// Steps against the directory `scan` runsvdir watches (pure; the trait methods pass
    /// [`scan_dir`]).
    fn activate_in(&self, scan: &Path, items: &[Activation], no_start: bool) -> Vec<Step> {
        let mut steps = Vec::new();
        for item in items {
            if no_start {
                // Written, not linked: `tunnelctl start` (or import's handover) links it.
                continue;
            }
            let svc = linked(scan, item.name);
            let dir = service_dir(item.name).to_string_lossy().into_owned();
            if item.fresh {
                steps.extend(link(scan, item.name));
            } else {
                steps.push(Step::Run(argv(&["sv", "restart", &dir])));
            }
            steps.push(Step::Progress(format!(
                "{}: waiting for runit to see the tunnel proven (./check)…",
                item.name
            )));
            steps.push(Step::Run(argv(&[
                "sv",
                "-w",
                &READY_TIMEOUT_S.to_string(),
                "start",
                &svc,
            ])));
        }
        steps
    }

    fn stop_in(&self, scan: &Path, name: &str) -> Vec<Step> {
        let dir = service_dir(name);
        let dir_s = dir.to_string_lossy().into_owned();
        let runtime = |p: &str| dir.join(p).to_string_lossy().into_owned();
        vec![
            // The link first, so runsvdir does not start runsv again.
            Step::MayFail(argv(&["rm", "-f", "--", &linked(scan, name)])),
            Step::MayFail(argv(&["sv", "-w", "30", "down", &dir_s])),
            Step::MayFail(argv(&["sv", "exit", &dir_s])),
            Step::WaitGone {
                probe: argv(&["sv", "status", &dir_s]),
                timeout: Duration::from_secs(30),
                still: format!("runsv of {dir_s} is still running"),
            },
            // What runsv made inside the service directory for it.
            Step::MayFail(argv(&[
                "rm",
                "-rf",
                "--",
                &runtime("supervise"),
                &runtime("log/supervise"),
            ])),
        ]
    }
}

/// The link into `scan`, then the wait for runsv to open its control fifo.
fn link(scan: &Path, name: &str) -> Vec<Step> {
    let svc = linked(scan, name);
    let ok = service_dir(name).join("supervise/ok");
    vec![
        Step::Run(argv(&[
            "ln",
            "-s",
            "-T",
            "--",
            &service_dir(name).to_string_lossy(),
            &svc,
        ])),
        Step::WaitGone {
            probe: argv(&["test", "!", "-p", &ok.to_string_lossy()]),
            timeout: RUNSV_TIMEOUT,
            still: format!(
                "runsvdir did not start runsv for {svc} within {} s: is runsvdir watching {}?",
                RUNSV_TIMEOUT.as_secs(),
                scan.display()
            ),
        },
    ]
}

impl InitSystem for Runit {
    fn per_user(&self) -> bool {
        false
    }

    /// runit when PID 1 is runit, or runit-init's /run/runit (its stopit/reboot files) is
    /// there (Debian's runit package alone, without runit-init, makes neither).
    fn detect(&self, root: &Path, user: bool) -> Option<String> {
        if user {
            return None;
        }
        let comm = std::fs::read_to_string(root.join("proc/1/comm")).unwrap_or_default();
        if comm.trim() == "runit" {
            return Some("PID 1 is runit".into());
        }
        ["run/runit/stopit", "run/runit"]
            .into_iter()
            .map(|p| root.join(p))
            .find(|p| p.exists())
            .map(|p| format!("{} exists (runit is in charge)", p.display()))
    }

    fn detection_rule(&self) -> Option<&'static str> {
        Some("runit as PID 1 or /run/runit means runit")
    }

    fn files_summary(&self) -> &'static str {
        "/etc/tunnelctl/sv/tunnel-NAME/ (run, check, log/run), linked into the directory runsvdir watches (--runit-service-dir, else /var/service where it exists, else /etc/service)"
    }

    fn state_and_log_summary(&self) -> &'static str {
        "state /run/tunnelctl/NAME; log /var/log/tunnelctl/runit-NAME/current (svlogd)"
    }

    /// The directory runsvdir watches is a directory (Debian makes /etc/service a link
    /// to one).
    fn reachable(&self, _: &Pid1) -> Result<(), String> {
        let scan = scan_dir();
        let how = format!("name another with {SCAN_DIR_OPTION} DIR");
        match std::fs::metadata(&scan) {
            Err(_) => Err(format!(
                "runit's service directory {} does not exist ({how})",
                scan.display()
            )),
            Ok(m) if !m.is_dir() => Err(format!(
                "runit's service directory {} is not a directory ({how})",
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
        vec![dir.join("run"), dir.join("check"), dir.join("log/run")]
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

    /// runsv has no restart limit.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        self.activate_in(&scan_dir(), items, no_start)
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        self.stop_in(&scan_dir(), name)
    }

    /// runsvdir forgot it when the link went ([`InitSystem::stop`]).
    fn forget(&self, _: &str) -> Vec<Step> {
        Vec::new()
    }

    fn lifecycle(&self, name: &str, verb: Lifecycle, _: &Path) -> Result<Vec<Step>, String> {
        let svc = linked(&scan_dir(), name);
        Ok(match verb {
            Lifecycle::Start => vec![Step::Run(argv(&[
                "sv",
                "-w",
                &READY_TIMEOUT_S.to_string(),
                "start",
                &svc,
            ]))],
            Lifecycle::Stop => vec![Step::Run(argv(&["sv", "-w", "30", "down", &svc]))],
            Lifecycle::Restart => vec![Step::Run(argv(&[
                "sv",
                "-w",
                &READY_TIMEOUT_S.to_string(),
                "restart",
                &svc,
            ]))],
        })
    }

    /// Installed with --no-start, it is not linked yet: linking starts it.
    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String> {
        Ok(link(&scan_dir(), name))
    }

    /// runsv signals the process it runs: the watchdog (ssh is its child).
    fn reconnect(&self, name: &str) -> Option<Reconnect> {
        let svc = linked(&scan_dir(), name);
        Some(Reconnect {
            argv: argv(&["sv", "1", &svc]),
            done: format!("{name}: asked runit to send SIGUSR1 to the watchdog: it reconnects now"),
            start: format!("sv start {svc}"),
            service: svc,
        })
    }

    /// `sv status` of the linked service: run/down and its own line.
    fn supervisor_view(&self, name: &str) -> Option<InitInfo> {
        let out = Command::new("sv")
            .arg("status")
            .arg(linked(&scan_dir(), name))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(parse_sv_status(&String::from_utf8_lossy(&out.stdout)))
    }

    fn masked_fix(&self, _: &str) -> Option<String> {
        None
    }
}

/// `run: /etc/service/tunnel-t: (pid 12) 5s; run: log: (pid 11) 5s` → active `run`.
fn parse_sv_status(line: &str) -> InitInfo {
    let line = line.trim();
    InitInfo {
        active_state: line.split(':').next().unwrap_or("").trim().to_string(),
        sub_state: String::new(),
        n_restarts: 0,
        status_text: line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_links_then_sv_start_waits_for_check_and_uninstall_unlinks_first() {
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
        let scan = Path::new("/tmp/sv");
        let steps = RUNIT.activate_in(scan, &[new], false);
        assert_eq!(
            steps[0],
            Step::Run(argv(&[
                "ln",
                "-s",
                "-T",
                "--",
                "/etc/tunnelctl/sv/tunnel-a b",
                "/tmp/sv/tunnel-a b"
            ]))
        );
        assert!(matches!(&steps[1], Step::WaitGone { probe, .. } if probe[0] == "test"));
        assert_eq!(
            steps.last().unwrap(),
            &Step::Run(argv(&["sv", "-w", "90", "start", "/tmp/sv/tunnel-a b"]))
        );
        assert!(RUNIT.activate_in(scan, &[new], true).is_empty());
        let old = Activation {
            fresh: false,
            ..new
        };
        assert_eq!(
            RUNIT.activate_in(scan, &[old], false)[0],
            Step::Run(argv(&["sv", "restart", "/etc/tunnelctl/sv/tunnel-a b"]))
        );
        assert_eq!(
            RUNIT.stop_in(scan, "t")[0],
            Step::MayFail(argv(&["rm", "-f", "--", "/tmp/sv/tunnel-t"]))
        );
    }

    #[test]
    fn sv_status_reads_run_or_down() {
        let i = parse_sv_status("run: /etc/service/tunnel-t: (pid 12) 5s; run: log: (pid 11) 5s\n");
        assert_eq!(i.active_state, "run");
        assert_eq!(
            parse_sv_status("down: /etc/service/x: 3s").active_state,
            "down"
        );
    }

    #[test]
    fn detection_sees_runit_as_pid1_or_its_run_dir() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(RUNIT.detect(root.path(), false), None);
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/comm"), "runit\n").unwrap();
        assert_eq!(
            RUNIT.detect(root.path(), false).as_deref(),
            Some("PID 1 is runit")
        );
        assert_eq!(RUNIT.detect(root.path(), true), None);
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("run/runit")).unwrap();
        std::fs::write(other.path().join("run/runit/stopit"), "").unwrap();
        assert!(
            RUNIT
                .detect(other.path(), false)
                .unwrap()
                .contains("stopit")
        );
    }
}
