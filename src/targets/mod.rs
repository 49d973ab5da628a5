//! The init systems we install for. Each family is one module (`systemd.rs`,
//! `launchd.rs`, `inittab.rs`) whose flavours answer [`InitSystem`]: where their files,
//! state and log live, how to detect them, the rendering (pure), what to run to start,
//! restart, stop and forget a service (as [`Step`]s that `install::init_tools` runs) and
//! what the supervisor thinks of it. Commands ask the target; none matches on it.
//!
//! Adding a target: a module here, its templates under `units/`, a golden folder, and one
//! line in [`targets!`] below (whose order is also the order detection tries them in).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Tunnel;

pub mod inittab;
pub mod launchd;
pub mod openrc;
pub mod procd;
pub mod render;
pub mod runit;
pub mod s6;
pub mod systemd;

pub use render::{
    CredentialPaths, InittabEntry, RenderError, RenderOptions, Rendered, RenderedFile, render,
    watchdog_args, watchdog_options,
};

/// The log directory of system services that write their own log file (launchd daemons,
/// inittab), created by install and removed by uninstall when empty.
pub const SYSTEM_LOG_DIR: &str = "/var/log/tunnelctl";

/// The one list of targets: `Variant => "its --target value", the flavour answering for
/// it`, with the help `--target` and the man page show. Generates [`Target`],
/// [`Target::ALL`] and the dispatch to each flavour: the only match on targets.
macro_rules! targets {
    ($( $(#[doc = $help:literal])* $variant:ident => $value:literal, $system:expr; )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
        pub enum Target {
            $( $(#[doc = $help])* #[value(name = $value)] $variant, )*
        }

        impl Target {
            pub const ALL: [Target; [$($value),*].len()] = [$(Target::$variant),*];

            /// The flavour that answers for this target.
            pub fn system(self) -> &'static dyn InitSystem {
                match self {
                    $( Target::$variant => &$system, )*
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $( Target::$variant => $value, )*
                }
            }
        }
    };
}

targets! {
    /// systemd system unit (/etc/systemd/system)
    Systemd => "systemd", systemd::SYSTEM;
    /// systemd user unit (~/.config/systemd/user)
    SystemdUser => "systemd-user", systemd::USER;
    /// launchd LaunchDaemon (/Library/LaunchDaemons)
    Launchd => "launchd", launchd::DAEMON;
    /// launchd LaunchAgent (~/Library/LaunchAgents)
    LaunchdAgent => "launchd-agent", launchd::AGENT;
    /// OpenRC: /etc/init.d/tunnel-NAME run by supervise-daemon
    Openrc => "openrc", openrc::OPENRC;
    /// OpenWrt's procd: /etc/init.d/tunnel-NAME with USE_PROCD=1
    Procd => "procd", procd::PROCD;
    /// s6: a service directory in /etc/tunnelctl/s6 linked into /run/service
    S6 => "s6", s6::S6;
    /// runit: a service directory in /etc/tunnelctl/sv linked into /etc/service
    Runit => "runit", runit::RUNIT;
    /// SysV init: a respawn line in /etc/inittab
    Inittab => "inittab", inittab::SYSV;
    /// BusyBox init: a ::respawn: line in /etc/inittab
    Busybox => "busybox", inittab::BUSYBOX;
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every target answers. Pure unless said otherwise: the side effects are the
/// [`Step`]s, run by `install::init_tools`, and [`InitSystem::supervisor_view`].
pub trait InitSystem: Sync {
    /// A per-user flavour: its files are run by the user's own manager, not by root.
    fn per_user(&self) -> bool;

    /// Why this target is the one the machine at `root` runs, or None. `user`: the caller
    /// is not root (a flavour for the other kind of caller says None). Reads `root`.
    fn detect(&self, root: &Path, user: bool) -> Option<String>;

    /// The man page's words for [`InitSystem::detect`] ("/run/systemd/system means
    /// systemd"), for the flavour that detection names first.
    fn detection_rule(&self) -> Option<&'static str>;

    /// The man page's words for where install writes.
    fn files_summary(&self) -> &'static str;

    /// The man page's words for where a running tunnel keeps its state and its log.
    fn state_and_log_summary(&self) -> &'static str;

    /// Whether this target's init runs on this machine and its tools reach it (`pid1`:
    /// what runs as PID 1), so install can start what it writes and uninstall stop it.
    /// Err says what was found instead. Reads the machine.
    fn reachable(&self, pid1: &Pid1) -> Result<(), String>;

    /// The service file(s) of `tunnel`; the common checks were made by [`render`].
    fn render(&self, tunnel: &Tunnel, options: &RenderOptions) -> Result<Rendered, String>;

    /// Where the tunnel's files are, from the name alone (so `uninstall` and `list` work
    /// after the tunnel left the config). Must agree with `render` (a test checks it).
    fn installed_paths(&self, name: &str, home: &Path) -> Vec<PathBuf>;

    /// The tunnel a service file of this name would be for (`tunnel-ESCAPED.service`,
    /// `org.tunnelctl.NAME.plist`), or the service folder of this name (s6's and runit's
    /// `tunnel-NAME`), or None (inittab, whose entries are not files of their own name).
    fn file_tunnel(&self, file: &str) -> Option<String>;

    /// Whether a service file's content is what tunnelctl writes for `name` (its marker):
    /// a file that merely looks similar is never counted as ours, nor removed.
    fn is_ours(&self, contents: &[u8], name: &str) -> bool;

    /// Directories the rendering asks install to create (log directories), removed by
    /// uninstall when empty.
    fn made_dirs(&self, home: &Path) -> Vec<PathBuf>;

    /// Whether the tunnel's entry is a line in /etc/inittab.
    fn uses_inittab(&self) -> bool {
        self.inittab_line_start("").is_some()
    }

    /// How this target's /etc/inittab line for inittab id `id` starts (`ID:` for SysV,
    /// `::` for BusyBox), or None when it keeps no line there.
    fn inittab_line_start(&self, id: &str) -> Option<String>;

    /// The state directories the target's service uses, most specific first (without the
    /// by-hand default [`state_dirs`] adds).
    fn state_dirs(
        &self,
        name: &str,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<PathBuf>;

    /// Where the tunnel's log lines go.
    fn log(&self, name: &str, home: &Path) -> LogSource;

    /// Why this tunnel's back-off can trip the supervisor's own restart limit (which
    /// would stop restarting it), or None: the watchdog's pacing must stay under it.
    fn restart_limit_problem(&self, tunnel: &Tunnel) -> Option<String>;

    /// After install wrote the files of `items`: what makes the init system (re)start them.
    fn activate(&self, items: &[Activation], no_start: bool) -> Vec<Step>;

    /// Before uninstall removes the files: what stops the service.
    fn stop(&self, name: &str) -> Vec<Step>;

    /// After uninstall removed the files (and the inittab entry): what makes the init
    /// system forget the service.
    fn forget(&self, name: &str) -> Vec<Step>;

    /// `tunnelctl start|stop|restart` of an installed tunnel, with the init system's own
    /// tools; Err when the target cannot.
    fn lifecycle(&self, name: &str, verb: Lifecycle, home: &Path) -> Result<Vec<Step>, String>;

    /// Starting a tunnel installed with `--no-start` without waiting for it (`import`'s
    /// handover); Err when the target cannot.
    fn start_installed(&self, name: &str) -> Result<Vec<Step>, String>;

    /// How the supervisor delivers SIGUSR1 to the watchdog (never to ssh), when it can;
    /// None: `reconnect` signals the pid from the state file.
    fn reconnect(&self, name: &str) -> Option<Reconnect>;

    /// What the supervisor says about the service, when there is one to ask. Runs its tool.
    fn supervisor_view(&self, name: &str) -> Option<InitInfo>;

    /// The fix for a service file that is masked (a link to /dev/null), when the target
    /// has masking.
    fn masked_fix(&self, name: &str) -> Option<String>;
}

/// `tunnelctl start|stop|restart`: what each does to an installed tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Start,
    Stop,
    Restart,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Start => "start",
            Lifecycle::Stop => "stop",
            Lifecycle::Restart => "restart",
        }
    }

    /// The word of the report: `started`, `stopped`, `restarted`.
    pub fn done(self) -> &'static str {
        match self {
            Lifecycle::Start => "started",
            Lifecycle::Stop => "stopped",
            Lifecycle::Restart => "restarted",
        }
    }
}

/// One tunnel install just wrote.
#[derive(Clone, Copy, Debug)]
pub struct Activation<'a> {
    pub name: &'a str,
    pub rendered: &'a Rendered,
    /// Nothing of it was installed before.
    pub fresh: bool,
}

/// One thing install or uninstall asks of the init system, as data (tested without the
/// init system); `install::init_tools` runs them, never under `--root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run it; a failure is an error.
    Run(Vec<String>),
    /// Run it; a failure is fine (the service may not be loaded).
    MayFail(Vec<String>),
    /// Run it; a failure is no reason to fail, but is said, with what it leaves.
    Try {
        argv: Vec<String>,
        otherwise: String,
    },
    /// Run it so init reads the files already in place; a failure says they are.
    Reload(Vec<String>),
    /// Run `probe` every 100 ms until it fails, at most `timeout`; else fail with `still`.
    WaitGone {
        probe: Vec<String>,
        timeout: Duration,
        still: String,
    },
    /// Ask the tunnel's running watchdog (found through its checked state file) to exit,
    /// so its supervisor starts it again with the new arguments.
    RestartWatchdog(String),
    /// Ask the tunnel's running watchdog to exit where nothing respawns it (its entry is
    /// switched off): stopped for good.
    StopWatchdog(String),
    /// Switch the tunnel's /etc/inittab entry on or off (a `#` before its line) under the
    /// inittab lock, then run `if_changed` or `if_same`.
    SwitchInittabEntry {
        name: String,
        on: bool,
        if_changed: Vec<Step>,
        if_same: Vec<Step>,
    },
    /// A line for the person, on standard output.
    Note(String),
    /// A line on standard error before a step that may take long.
    Progress(String),
}

/// How `reconnect` asks the supervisor to signal the watchdog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconnect {
    pub argv: Vec<String>,
    /// Said when it worked.
    pub done: String,
    /// The service as the supervisor names it, and the command that starts it: said when
    /// the signal could not be delivered (it is not running).
    pub service: String,
    pub start: String,
}

/// What the supervisor says about the service (`systemctl show`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitInfo {
    pub active_state: String,
    pub sub_state: String,
    pub n_restarts: u64,
    pub status_text: String,
}

/// Where a tunnel's log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// journald: `journalctl -u UNIT` (system) or `--user-unit UNIT`.
    Journal {
        unit: String,
        user: bool,
    },
    File(PathBuf),
}

/// The init this machine runs, found by what runs as PID 1 (not by what is installed: a
/// container or chroot of a systemd distribution has systemd's files but no systemd):
/// the first target of [`Target::ALL`] recognised at `/` whose init answers, else inittab
/// when SysV init does. Err describes what was found, for a refusal that offers
/// `--target` and `--root`.
pub fn running_init(user: bool) -> Result<Target, String> {
    running_init_and_why(user).map(|(target, _)| target)
}

/// [`running_init`], with why that target was recognised.
pub fn running_init_and_why(user: bool) -> Result<(Target, String), String> {
    let pid1 = Pid1::read();
    let root = Path::new("/");
    if let Some(found) = Target::ALL.into_iter().find_map(|t| {
        let why = t.system().detect(root, user)?;
        t.system().reachable(&pid1).is_ok().then_some((t, why))
    }) {
        return Ok(found);
    }
    match Target::Inittab.system().reachable(&pid1) {
        Ok(()) => Ok((
            Target::Inittab,
            "SysV init answers (telinit is SysV's)".to_string(),
        )),
        Err(_) => {
            let mut what = vec![pid1.describe()];
            if let Some(systemd) = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
                .into_iter()
                .find(|p| Path::new(p).exists())
            {
                what.push(format!(
                    "systemd is installed ({systemd}) but not running (no /run/systemd/system)"
                ));
            }
            if let Err(why) = inittab::telinit_answers() {
                what.push(why);
            }
            Err(what.join("; "))
        }
    }
}

/// Whether `target`'s init runs here and its tools reach it; Err says what was found.
pub fn check_reachable(target: Target) -> Result<(), String> {
    target.system().reachable(&Pid1::read())
}

/// What runs as PID 1, as /proc says.
#[derive(Clone, Debug, Default)]
pub struct Pid1 {
    pub exe: Option<PathBuf>,
    pub comm: String,
}

impl Pid1 {
    pub fn read() -> Pid1 {
        Pid1 {
            exe: std::fs::read_link("/proc/1/exe").ok(),
            comm: std::fs::read_to_string("/proc/1/comm")
                .map(|c| c.trim().to_string())
                .unwrap_or_default(),
        }
    }

    /// The file name of PID 1's executable ("" when it cannot be seen).
    pub fn exe_name(&self) -> String {
        self.exe
            .as_ref()
            .and_then(|e| e.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn describe(&self) -> String {
        match (&self.exe, self.comm.as_str()) {
            (Some(exe), comm) => format!("PID 1 is `{comm}` ({})", exe.display()),
            (None, "") => "PID 1 cannot be seen (no /proc)".into(),
            (None, comm) => format!("PID 1 is `{comm}`"),
        }
    }
}

/// The target to use: `explicit`, else the one the machine at `root` runs (the user
/// flavour for a non-root caller), with why it was chosen (None when explicit).
pub fn choose(explicit: Option<Target>, root: &Path) -> (Target, Option<String>) {
    match explicit {
        Some(target) => (target, None),
        None => {
            let (target, why) = detect(root, !nix::unistd::geteuid().is_root());
            (target, Some(why))
        }
    }
}

/// The init system of the machine whose filesystem is at `root`, and why: the first
/// target in [`Target::ALL`] that recognises it, else inittab.
pub fn detect(root: &Path, user: bool) -> (Target, String) {
    Target::ALL
        .into_iter()
        .find_map(|t| t.system().detect(root, user).map(|why| (t, why)))
        .unwrap_or((Target::Inittab, inittab::FALLBACK_REASON.to_string()))
}

/// The man page's sentence on detection, from each target's rule.
pub fn detection_sentence() -> String {
    let rules: Vec<&str> = Target::ALL
        .iter()
        .filter_map(|t| t.system().detection_rule())
        .collect();
    format!(
        ", install detects the init system: {}, anything else {}.",
        rules.join(", "),
        Target::Inittab
    )
}

/// Where a watchdog started by hand keeps its state and log (the man page's last line
/// after the targets' own).
pub const BY_HAND_STATE_AND_LOG: &str = "state $STATE_DIRECTORY, $RUNTIME_DIRECTORY, else /run/tunnelctl/NAME (root), $XDG_RUNTIME_DIR/tunnelctl/NAME or /tmp/tunnelctl-UID/NAME; log: stderr (see tunnel-watchdog(1))";

/// The man page's list of where install writes: targets with the same words share a line.
pub fn files_summaries() -> Vec<(String, &'static str)> {
    summaries(|s| s.files_summary())
}

/// The man page's list of where a running tunnel keeps its state and log.
pub fn state_and_log_summaries() -> Vec<(String, &'static str)> {
    summaries(|s| s.state_and_log_summary())
}

/// Each target's words, targets with the same words next to each other on one line.
fn summaries(words_of: impl Fn(&dyn InitSystem) -> &'static str) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for t in Target::ALL {
        let words = words_of(t.system());
        match out.last_mut() {
            Some((names, last)) if *last == words => {
                names.push_str(", ");
                names.push_str(t.as_str());
            }
            _ => out.push((t.as_str().to_string(), words)),
        }
    }
    out
}

/// State directories to look in, most specific first: the target's own, then where a
/// watchdog started by hand (no `--state-dir`) puts it. Pure: the caller passes the home
/// directory, uid and environment.
pub fn state_dirs(
    target: Target,
    name: &str,
    home: &Path,
    uid: u32,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<PathBuf> {
    let mut dirs = target.system().state_dirs(name, home, env);
    let by_hand = crate::state::resolve_state_dir(
        None,
        &|k| match k {
            // A unit's own directories are not ours to inherit from this shell.
            "STATE_DIRECTORY" | "RUNTIME_DIRECTORY" => None,
            _ => env(k),
        },
        name,
        uid == 0,
        uid,
    );
    if !dirs.contains(&by_hand) {
        dirs.push(by_hand);
    }
    dirs
}

/// Where s6 and runit supervise services on this machine, as the command line says
/// (`--s6-scan-dir`, `--runit-service-dir`): the folder install links a tunnel's service
/// into, and where the other commands find it. `None`: the target's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SupervisionDirs {
    pub s6_scan: Option<PathBuf>,
    pub runit_service: Option<PathBuf>,
}

static SUPERVISION_DIRS: std::sync::OnceLock<SupervisionDirs> = std::sync::OnceLock::new();

/// Said once per process by the command, from its command line, before any target is
/// asked: the folders belong to the machine, not to one tunnel or one call, so they are
/// not passed through every step of every target. A second call changes nothing.
pub fn set_supervision_dirs(dirs: SupervisionDirs) {
    let _ = SUPERVISION_DIRS.set(dirs);
}

fn supervision_dirs() -> &'static SupervisionDirs {
    SUPERVISION_DIRS.get_or_init(SupervisionDirs::default)
}

/// The folder named by the deprecated environment variable `var`, when it names one and
/// no `option` was given; says once that `option` replaces it.
fn deprecated_env_dir(
    var: &str,
    option: &str,
    warned: &std::sync::atomic::AtomicBool,
) -> Option<PathBuf> {
    let dir = std::env::var_os(var).filter(|v| !v.is_empty())?;
    if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
        crate::errln!(
            "tunnelctl: warning: ${var} is deprecated and will be ignored in a later release; pass {option} {} instead",
            Path::new(&dir).display()
        );
    }
    Some(PathBuf::from(dir))
}

/// `words` as an argv.
pub(crate) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_target_paths_follow_the_design_table() {
        let home = Path::new("/home/al");
        let none = |_: &str| None;
        assert_eq!(
            state_dirs(Target::Systemd, "t", home, 0, &none)[0],
            PathBuf::from("/var/lib/tunnelctl/t")
        );
        assert_eq!(
            state_dirs(Target::SystemdUser, "t", home, 1000, &none)[..2],
            [
                PathBuf::from("/home/al/.local/state/tunnelctl/t"),
                PathBuf::from("/home/al/.config/tunnelctl/t"), // systemd 252
            ]
        );
        assert_eq!(
            state_dirs(Target::Busybox, "t", home, 0, &none),
            vec![PathBuf::from("/run/tunnelctl/t")]
        );
        let user = state_dirs(Target::Inittab, "t", home, 1000, &|k| {
            (k == "XDG_RUNTIME_DIR").then(|| "/run/user/1000".into())
        });
        assert_eq!(
            user.last().unwrap(),
            &PathBuf::from("/run/user/1000/tunnelctl/t")
        );
        assert_eq!(
            Target::Systemd.system().log("a b", home),
            LogSource::Journal {
                unit: "tunnel-a\\x20b.service".into(),
                user: false
            }
        );
        assert_eq!(
            Target::LaunchdAgent.system().log("t", home),
            LogSource::File(PathBuf::from("/home/al/Library/Logs/tunnelctl/t.log"))
        );
        let LogSource::File(inittab) = Target::Inittab.system().log("t", home) else {
            panic!()
        };
        assert!(inittab.starts_with(SYSTEM_LOG_DIR) && inittab.extension().unwrap() == "log");
    }

    #[test]
    fn detection_reads_the_root_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        let (t, why) = detect(root.path(), false);
        assert_eq!(t, Target::Inittab);
        assert!(!why.is_empty());
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        if !cfg!(target_os = "macos") {
            assert_eq!(detect(root.path(), false).0, Target::Systemd);
            let (t, why) = detect(root.path(), true);
            assert_eq!(t, Target::SystemdUser);
            assert!(why.contains("/run/systemd/system"), "{why}");
        }
        assert_eq!(
            choose(Some(Target::Busybox), root.path()),
            (Target::Busybox, None)
        );
    }

    #[test]
    fn detection_finds_openrc_and_procd_under_a_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run/openrc")).unwrap();
        // Alpine: BusyBox's init runs OpenRC, which is in charge of the services.
        std::fs::create_dir_all(root.path().join("sbin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.path().join("sbin/init")).unwrap();
        let (t, why) = detect(root.path(), false);
        assert_eq!(t, Target::Openrc, "{why}");
        assert!(why.contains("run/openrc"), "{why}");

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/openwrt_release"), "").unwrap();
        let (t, why) = detect(root.path(), false);
        assert_eq!(t, Target::Procd, "{why}");
        assert!(why.contains("openwrt_release"), "{why}");
        assert_eq!(
            choose(Some(Target::Inittab), root.path()),
            (Target::Inittab, None)
        );

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/1")).unwrap();
        std::fs::write(root.path().join("proc/1/comm"), "procd\n").unwrap();
        assert_eq!(detect(root.path(), false).0, Target::Procd);
    }

    #[test]
    fn every_target_is_listed_once_with_its_value() {
        for t in Target::ALL {
            let value = clap::ValueEnum::to_possible_value(&t).unwrap();
            assert_eq!(value.get_name(), t.as_str());
            assert_eq!(Target::ALL.iter().filter(|&&o| o == t).count(), 1);
        }
    }
}
