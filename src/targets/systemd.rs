//! systemd: system units and user units, rendered from the templates in `units/`,
//! started through `systemctl`, logging to the journal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tera::Context;

use super::render::{path_str, render_template, service_ssh_argv};
use super::{
    Activation, CredentialPaths, InitInfo, InitSystem, Lifecycle, LogSource, Pid1, Reconnect,
    RenderOptions, Rendered, RenderedFile, Step, argv, watchdog_args,
};
use crate::duration::ceil_secs;
use crate::escape;
use crate::model::Tunnel;

/// The system manager's flavour (`/etc/systemd/system`).
pub const SYSTEM: Systemd = Systemd { user: false };
/// The user manager's flavour (`~/.config/systemd/user`).
pub const USER: Systemd = Systemd { user: true };

pub struct Systemd {
    user: bool,
}

/// Whether systemd runs the machine at `root`: the one test, as sd_booted(3) makes it
/// (systemd creates this directory when it boots the machine).
pub fn running(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// Where systemd looks for units (of the user manager when `user`), most important
/// first: `import` reads existing units from there.
pub fn unit_search_path(user: bool, home: &Path) -> Vec<PathBuf> {
    if user {
        vec![
            home.join(".config/systemd/user"),
            PathBuf::from("/etc/systemd/user"),
            PathBuf::from("/usr/lib/systemd/user"),
        ]
    } else {
        vec![
            PathBuf::from("/etc/systemd/system"),
            PathBuf::from("/run/systemd/system"),
            PathBuf::from("/usr/local/lib/systemd/system"),
            PathBuf::from("/lib/systemd/system"),
            PathBuf::from("/usr/lib/systemd/system"),
        ]
    }
}

const SYSTEM_TEMPLATE: &str = include_str!("../../units/systemd.service.tera");
const USER_TEMPLATE: &str = include_str!("../../units/systemd-user.service.tera");

/// `WatchdogSec=`: failures × interval + timeout, plus one interval of margin, and at
/// least two probe intervals so a ping sent once per round arrives twice per period.
/// The watchdog pings after every round's verdict (confirming rounds included), so the
/// longest gap between pings is one interval and one round (at most the timeout),
/// always inside this period.
pub fn watchdog_sec(tunnel: &Tunnel) -> u64 {
    let p = &tunnel.probe;
    // Saturating: `check` bounds every term far below overflow; this keeps render total.
    let declare = (p.interval.saturating_mul(p.failures))
        .saturating_add(p.timeout)
        .saturating_add(p.interval);
    ceil_secs(declare.max(p.interval.saturating_mul(2))).max(1)
}

/// `TimeoutStartSec=`: the longest back-off the watchdog may sleep before connecting, one
/// connect, and the probe rounds before READY=1, plus 10 s of margin. The watchdog also
/// sends EXTEND_TIMEOUT_USEC while it waits.
pub fn timeout_start_sec(tunnel: &Tunnel) -> u64 {
    let p = &tunnel.probe;
    let total = tunnel
        .backoff
        .max
        .saturating_add(tunnel.connect_timeout)
        .saturating_add(
            p.interval
                .saturating_add(p.timeout)
                .saturating_mul(p.failures),
        )
        .saturating_add(Duration::from_secs(10));
    ceil_secs(total)
}

fn render(tunnel: &Tunnel, user: bool, options: &RenderOptions) -> Result<Rendered, String> {
    let system = !user;
    let watchdog = path_str(&options.watchdog, "--watchdog")?;

    let mut credentials = Vec::new();
    let creds = if system {
        CredentialPaths::SystemdCredentials
    } else {
        CredentialPaths::AsConfigured
    };
    if system {
        for (id, path) in [
            ("identity", &tunnel.identity),
            ("known_hosts", &tunnel.known_hosts),
        ] {
            if let Some(path) = path {
                let path = path_str(path, id)?;
                credentials.push(format!("{id}:{}", escape::credential_path(path)?));
            }
        }
    }
    let mut argv = vec![watchdog.to_string()];
    argv.extend(watchdog_args(
        tunnel,
        None,
        None,
        service_ssh_argv(tunnel, creds),
    ));

    let description = match &tunnel.user {
        Some(user) => format!("SSH tunnel {} to {user}@{}", tunnel.name, tunnel.host),
        None => format!("SSH tunnel {} to {}", tunnel.name, tunnel.host),
    };
    let mut context = Context::new();
    context.insert("description", &escape::unit_text(&description));
    context.insert("exec_start", &escape::exec_line(&argv));
    context.insert("watchdog_sec", &format!("{}s", watchdog_sec(tunnel)));
    context.insert(
        "timeout_start_sec",
        &format!("{}s", timeout_start_sec(tunnel)),
    );
    context.insert("credentials", &credentials);
    // ProtectSystem=strict: the --metrics-file's directory must be writable (`-`: a
    // missing directory does not stop the unit; the watchdog logs the failed write).
    let metrics_dir = match tunnel.metrics_file.as_ref().and_then(|f| f.parent()) {
        Some(dir) => Some(escape::path_list_entry(
            "-",
            path_str(dir, "metrics_file")?,
        )?),
        None => None,
    };
    context.insert("metrics_dir", &metrics_dir);
    context.insert(
        "directory",
        &escape::unit_directory(&format!("tunnelctl/{}", tunnel.name))?,
    );

    let (template, dir) = if system {
        (SYSTEM_TEMPLATE, PathBuf::from("/etc/systemd/system"))
    } else {
        (USER_TEMPLATE, options.home.join(".config/systemd/user"))
    };
    let contents = render_template(template, &context)?;
    Ok(Rendered {
        files: vec![RenderedFile {
            path: dir.join(escape::unit_name(&tunnel.name)),
            contents,
            mode: 0o644,
        }],
        dirs: Vec::new(),
        inittab: None,
    })
}

impl Systemd {
    /// `systemctl`, with `--user` for the user flavour, then `more`.
    fn systemctl(&self, more: &[&str]) -> Vec<String> {
        systemctl(self.user, more)
    }
}

/// `systemctl`, with `--user` for the user manager, then `more`.
pub fn systemctl(user: bool, more: &[&str]) -> Vec<String> {
    let mut words = vec!["systemctl"];
    if user {
        words.push("--user");
    }
    words.extend(more);
    argv(&words)
}

impl InitSystem for Systemd {
    fn per_user(&self) -> bool {
        self.user
    }

    fn detect(&self, root: &Path, user: bool) -> Option<String> {
        (user == self.user && running(root)).then(|| {
            format!(
                "{} is a directory: systemd runs this machine",
                root.join("run/systemd/system").display()
            )
        })
    }

    fn detection_rule(&self) -> Option<&'static str> {
        (!self.user).then_some("/run/systemd/system means systemd")
    }

    fn files_summary(&self) -> &'static str {
        if self.user {
            "~/.config/systemd/user/tunnel-NAME.service"
        } else {
            "/etc/systemd/system/tunnel-NAME.service"
        }
    }

    fn state_and_log_summary(&self) -> &'static str {
        if self.user {
            "state $XDG_STATE_HOME/tunnelctl/NAME (systemd 253 and later; ~/.local/state) or $XDG_CONFIG_HOME/tunnelctl/NAME (systemd 252; ~/.config); log: journalctl --user-unit tunnel-NAME.service"
        } else {
            "state /var/lib/tunnelctl/NAME (/var/lib/private/tunnelctl/NAME under DynamicUser=); log: the journal, journalctl -u tunnel-NAME.service"
        }
    }

    fn reachable(&self, pid1: &Pid1) -> Result<(), String> {
        if running(Path::new("/")) {
            Ok(())
        } else {
            Err(format!(
                "systemd is not running here (no /run/systemd/system); {}",
                pid1.describe()
            ))
        }
    }

    fn render(&self, tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String> {
        render(tunnel, self.user, options)
    }

    fn installed_paths(&self, name: &str, home: &Path) -> Vec<PathBuf> {
        let dir = if self.user {
            home.join(".config/systemd/user")
        } else {
            PathBuf::from("/etc/systemd/system")
        };
        vec![dir.join(escape::unit_name(name))]
    }

    fn file_tunnel(&self, file: &str) -> Option<String> {
        unescape_unit(file.strip_prefix("tunnel-")?.strip_suffix(".service")?)
    }

    /// A unit starts with our generated-by line.
    fn is_ours(&self, contents: &[u8], _: &str) -> bool {
        contents.starts_with(super::render::GENERATED.as_bytes())
    }

    fn made_dirs(&self, _: &Path) -> Vec<PathBuf> {
        Vec::new()
    }

    fn inittab_line_start(&self, _: &str) -> Option<String> {
        None
    }

    fn state_dirs(
        &self,
        name: &str,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<PathBuf> {
        if !self.user {
            // DynamicUser=yes keeps it under /var/lib/private, with /var/lib/tunnelctl a link.
            return vec![
                Path::new("/var/lib/tunnelctl").join(name),
                Path::new("/var/lib/private/tunnelctl").join(name),
            ];
        }
        let state_home = env("XDG_STATE_HOME")
            .filter(|v| v.starts_with('/'))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/state"));
        // systemd 253 and later put a user unit's StateDirectory= in $XDG_STATE_HOME;
        // 252 (Debian 12) still uses $XDG_CONFIG_HOME.
        let config_home = env("XDG_CONFIG_HOME")
            .filter(|v| v.starts_with('/'))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        vec![
            state_home.join("tunnelctl").join(name),
            config_home.join("tunnelctl").join(name),
        ]
    }

    /// None: the units set StartLimitIntervalSec=0, so systemd never stops restarting.
    fn restart_limit_problem(&self, _: &Tunnel) -> Option<String> {
        None
    }

    fn log(&self, name: &str, _: &Path) -> LogSource {
        LogSource::Journal {
            unit: escape::unit_name(name),
            user: self.user,
        }
    }

    /// `daemon-reload`, then (unless `no_start`) each unit enabled and started, or
    /// restarted when it was installed before.
    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step> {
        let mut steps = vec![Step::Run(self.systemctl(&["daemon-reload"]))];
        if no_start {
            return steps;
        }
        for item in items {
            let unit = escape::unit_name(item.name);
            // Type=notify: systemctl waits for READY=1, i.e. the first proof that
            // every forward works, which can take long when the server is away.
            steps.push(Step::Progress(format!(
                "starting {unit}: waits until every forward is proven (Ctrl-C stops \
                 waiting, not the tunnel; `tunnelctl status {}` shows progress)",
                item.name
            )));
            if item.fresh {
                steps.push(Step::Run(self.systemctl(&["enable", "--now", &unit])));
            } else {
                steps.push(Step::Run(self.systemctl(&["enable", &unit])));
                steps.push(Step::Run(self.systemctl(&["restart", &unit])));
            }
        }
        steps
    }

    fn stop(&self, name: &str) -> Vec<Step> {
        let unit = escape::unit_name(name);
        vec![
            Step::Run(self.systemctl(&["disable", "--now", &unit])),
            // StateDirectory= outlives the service (its state file saying "stopped"); the
            // tunnel is going away, so is its state. systemd before 243 has no `clean`:
            // then the folder stays, which is no reason to fail uninstall.
            Step::Try {
                argv: self.systemctl(&["clean", "--what=state", &unit]),
                otherwise: "the tunnel's state folder stays".into(),
            },
        ]
    }

    fn forget(&self, _: &str) -> Vec<Step> {
        vec![Step::Run(self.systemctl(&["daemon-reload"]))]
    }

    /// `systemctl [--user] start|stop|restart UNIT` (enablement untouched).
    fn lifecycle(&self, name: &str, verb: Lifecycle, _: &Path) -> Result<Vec<Step>, String> {
        Ok(vec![Step::Run(
            self.systemctl(&[verb.as_str(), &escape::unit_name(name)]),
        )])
    }

    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String> {
        let unit = escape::unit_name(name);
        Ok(vec![
            Step::Run(self.systemctl(&["enable", &unit])),
            Step::Run(self.systemctl(&["start", "--no-block", &unit])),
        ])
    }

    /// The manager delivers the signal to the unit's main process: the watchdog.
    fn reconnect(&self, name: &str) -> Option<Reconnect> {
        if !running(Path::new("/")) {
            return None;
        }
        let unit = escape::unit_name(name);
        Some(Reconnect {
            argv: self.systemctl(&["kill", "--kill-whom=main", "-s", "USR1", "--", &unit]),
            done: format!(
                "{name}: asked systemd to send SIGUSR1 to {unit}'s watchdog: it reconnects now"
            ),
            start: self.systemctl(&["start", &unit]).join(" "),
            service: unit,
        })
    }

    /// `systemctl [--user] show -p …` for the unit, or None when there is no systemd to ask.
    fn supervisor_view(&self, name: &str) -> Option<InitInfo> {
        if !running(Path::new("/")) {
            return None;
        }
        let show = self.systemctl(&[
            "show",
            "-p",
            "ActiveState,SubState,NRestarts,StatusText",
            "--",
            &escape::unit_name(name),
        ]);
        let out = Command::new(&show[0])
            .args(&show[1..])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(parse_show(&String::from_utf8_lossy(&out.stdout)))
    }

    fn masked_fix(&self, name: &str) -> Option<String> {
        Some(format!(
            "To install it, unmask it first: `{} unmask {}`",
            self.systemctl(&[]).join(" "),
            escape::unit_name(name)
        ))
    }
}

/// `\xNN` back to bytes (the inverse of `escape::unit_name`'s escaping).
fn unescape_unit(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = escaped.get(i + 2..i + 4)?;
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|n| !n.is_empty())
}

pub fn parse_show(text: &str) -> InitInfo {
    let mut info = InitInfo::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("ActiveState", v)) => info.active_state = v.into(),
            Some(("SubState", v)) => info.sub_state = v.into(),
            Some(("NRestarts", v)) => info.n_restarts = v.parse().unwrap_or(0),
            Some(("StatusText", v)) => info.status_text = v.into(),
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_outlasts_the_watchdogs_own_verdict() {
        let mut t = Tunnel::new("t", "h", vec![]);
        // defaults: 10s × 2 + 5s + 10s margin
        assert_eq!(watchdog_sec(&t), 35);
        t.probe.interval = Duration::from_millis(1500);
        t.probe.failures = 1;
        t.probe.timeout = Duration::from_millis(100);
        // 1.5 + 0.1 + 1.5 = 3.1 → 4, and ≥ 2 × 1.5
        assert_eq!(watchdog_sec(&t), 4);
        assert_eq!(
            timeout_start_sec(&Tunnel::new("t", "h", vec![])),
            300 + 15 + 30 + 10
        );
    }

    #[test]
    fn unit_names_unescape_to_the_tunnel() {
        for name in ["web", "a b", "ü-x", "x.y:z", "back\\slash"] {
            let unit = escape::unit_name(name);
            assert_eq!(SYSTEM.file_tunnel(&unit).as_deref(), Some(name), "{unit}");
        }
        assert_eq!(SYSTEM.file_tunnel("tunnel-x.service.bak"), None);
        assert_eq!(SYSTEM.file_tunnel("tunnel-\\x4.service"), None);
    }

    #[test]
    fn activation_enables_new_units_and_restarts_updated_ones() {
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
        let runs: Vec<String> = USER
            .activate(&items, false)
            .iter()
            .filter_map(|s| match s {
                Step::Run(argv) => Some(argv.join(" ")),
                _ => None,
            })
            .collect();
        assert_eq!(
            runs,
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable --now tunnel-new.service",
                "systemctl --user enable tunnel-old.service",
                "systemctl --user restart tunnel-old.service",
            ]
        );
        assert_eq!(
            SYSTEM.activate(&items, true),
            [Step::Run(argv(&["systemctl", "daemon-reload"]))]
        );
        let stop = SYSTEM.stop("a b");
        assert_eq!(
            stop[0],
            Step::Run(argv(&[
                "systemctl",
                "disable",
                "--now",
                "tunnel-a\\x20b.service"
            ]))
        );
        assert!(
            matches!(&stop[1], Step::Try { argv, .. } if argv[1] == "clean"),
            "{stop:?}"
        );
        assert!(
            USER.masked_fix("t")
                .unwrap()
                .contains("systemctl --user unmask tunnel-t.service")
        );
    }
}
