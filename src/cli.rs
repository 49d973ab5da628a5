//! The one definition of tunnelctl's command line: `--help`, the man page and the
//! shell completions are all generated from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::targets::Target;

#[derive(Debug, Parser)]
#[command(
    name = "tunnelctl",
    version,
    about = "Keep SSH tunnels alive with the init system you already run",
    long_about = "Declare SSH tunnels once in tunnels.yaml; tunnelctl renders a hardened service for \
systemd, launchd, SysV init or BusyBox init, installs it, and tunnel-watchdog proves every forward \
carries data so the init system restarts a hung tunnel."
)]
pub struct Cli {
    /// Configuration file (default: $TUNNELCTL_CONFIG, then ~/.config/tunnelctl/tunnels.yaml, or /etc/tunnelctl/tunnels.yaml as root)
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration; errors are printed as FILE:LINE:COL
    Check(CheckArgs),
    /// Print the service file (and argument file) for a tunnel
    Render(RenderArgs),
    /// Install a tunnel's service and start it through the init system
    Install(InstallArgs),
    /// Stop a tunnel's service and remove exactly what install wrote (and the metrics file its watchdog wrote)
    Uninstall(UninstallArgs),
    /// Make the machine match the configuration: install new tunnels, update changed ones, remove those gone from it
    Apply(ApplyArgs),
    /// List the tunnels in the configuration and where each is installed
    List(ListArgs),
    /// Show each tunnel's state as the watchdog and the init system see it
    Status(StatusArgs),
    /// Print every tunnel's state as Prometheus metrics (text exposition format)
    Metrics(MetricsArgs),
    /// Fetch, show and pin a tunnel's server host key
    Trust(TrustArgs),
    /// Run a tunnel's ssh once and explain in plain words what is wrong
    Doctor(DoctorArgs),
    /// Show a tunnel's log from wherever its init system keeps it
    Logs(LogsArgs),
    /// Reconnect a tunnel now, without waiting for its back-off
    Reconnect(ReconnectArgs),
    /// Start an installed tunnel through its init system
    Start(LifecycleArgs),
    /// Stop an installed tunnel through its init system (inittab/BusyBox: its entry is commented out until `start`)
    Stop(LifecycleArgs),
    /// Restart an installed tunnel's watchdog through its init system
    Restart(LifecycleArgs),
    /// Turn a tunnel you already run (ssh or autossh command, systemd unit, inittab line, ssh_config Host) into tunnels.yaml
    #[command(
        after_help = "Examples:\n  tunnelctl import -- autossh -M 20000 -f -N server -R 1234:localhost:22 -C\n  tunnelctl import --write -- ssh -N -R 1234:localhost:22 me@server\n  tunnelctl import --systemd secure-tunnel@alpha.service\n  tunnelctl import --scan inittab\n  tunnelctl import --ssh-config ~/.ssh/config"
    )]
    Import(ImportArgs),
    /// Write the man pages or shell completions into DIR (for packagers)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Where s6 and runit supervise services: the folder install links a tunnel's service
/// into, and where every other command finds it. Defined once, flattened into each
/// command that installs, starts, stops or asks those supervisors.
#[derive(Clone, Debug, Default, Args)]
pub struct SupervisionArgs {
    /// s6 target: the scan directory s6-svscan watches (default: /run/service)
    #[arg(long, value_name = "DIR")]
    pub s6_scan_dir: Option<PathBuf>,
    /// runit target: the directory runsvdir watches (default: /var/service where it exists, else /etc/service)
    #[arg(long, value_name = "DIR")]
    pub runit_service_dir: Option<PathBuf>,
}

impl Command {
    /// The supervision folders this command was given, when it takes them.
    pub fn supervision(&self) -> Option<&SupervisionArgs> {
        match self {
            Command::Install(a) => Some(&a.supervision),
            Command::Uninstall(a) => Some(&a.supervision),
            Command::Apply(a) => Some(&a.supervision),
            Command::Status(a) => Some(&a.supervision),
            Command::Reconnect(a) => Some(&a.supervision),
            Command::Start(a) | Command::Stop(a) | Command::Restart(a) => Some(&a.supervision),
            Command::Import(a) => Some(&a.supervision),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check these tunnels files instead, together: one per host, or a directory of them (HOST.yaml); a remote port two files claim on one server is an error
    #[arg(value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Tunnel name from the configuration
    pub name: String,
    /// Init system to render for
    #[arg(long, short = 't', value_enum)]
    pub target: Target,
    /// Path of tunnel-watchdog written into the service (default: next to tunnelctl, else /usr/bin/tunnel-watchdog)
    #[arg(long, value_name = "PATH")]
    pub watchdog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Tunnel name from the configuration
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Install every tunnel in the configuration
    #[arg(long)]
    pub all: bool,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Write under DIR instead of / and run no init tool (for packagers and tests); per-user targets write to DIR/$HOME/…
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Show the diff, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Write the files but do not (re)start the service
    #[arg(long)]
    pub no_start: bool,
    /// Path of tunnel-watchdog written into the service (default: next to tunnelctl, else /usr/bin/tunnel-watchdog)
    #[arg(long, value_name = "PATH")]
    pub watchdog: Option<PathBuf>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Tunnel name
    pub name: String,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Remove under DIR instead of / and run no init tool (per-user targets: DIR/$HOME/…)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Work under DIR instead of / and run no init tool (per-user targets: DIR/$HOME/…)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Compute the same plan and diff, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object (changed, per-tunnel actions, the diff) instead of one line per tunnel
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when something changed (or would), 0 when nothing did, 1 on failure
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow removing more than half of the installed tunnels
    #[arg(long)]
    pub prune_many: bool,
    /// Path of tunnel-watchdog written into the services (default: next to tunnelctl, else /usr/bin/tunnel-watchdog)
    #[arg(long, value_name = "PATH")]
    pub watchdog: Option<PathBuf>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Look for installed files under DIR instead of /
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Machine-readable output: {"schema": 1, "tunnels": [{"name", "destination", "forwards", "installed": [{"target", "state"}]}]}
    #[arg(long)]
    pub json: bool,
    /// Only the names, one per line (what shell completion offers)
    #[arg(long, conflicts_with = "json")]
    pub names: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this tunnel (shows its forwards, as -v does)
    pub name: Option<String>,
    /// Also show each forward: its health, since when, its last probe's latency
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Machine-readable output: {"schema": 1, "tunnels": [...]} (see STATUS JSON)
    #[arg(long)]
    pub json: bool,
    /// Refresh every 2 seconds until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Read state from DIR instead of the target's default state directory
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Only this tunnel
    pub name: Option<String>,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Read state from DIR instead of the target's default state directory (as status does)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Tunnel name
    pub name: String,
    /// Pin the key without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Tunnel name
    pub name: String,
    /// Give up on the test connection after this long
    #[arg(long, default_value = "20s", value_name = "DURATION")]
    pub timeout: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Tunnel name
    pub name: String,
    /// Keep printing new lines
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How many of the last lines to show
    #[arg(long, short = 'n', default_value_t = 200, value_name = "N")]
    pub lines: u32,
    /// Only lines from this long ago on (a duration: 30m, 2h), or from a time (2026-12-06 04:00:00; UTC in log files, local time in the journal)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Read the logs of the system whose files are under DIR (its journal, or its log files)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
}

#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Tunnel name
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every tunnel of the configuration that is installed for the target
    #[arg(long)]
    pub all: bool,
    /// Init system (default: the one running here)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
pub struct ReconnectArgs {
    /// Tunnel name
    pub name: String,
    /// Init system (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Read state from DIR instead of the target's default state directory
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["command", "systemd", "scan", "ssh_config", "undo"])))]
pub struct ImportArgs {
    /// The ssh or autossh command line, after `--` (a shell loop may be given as one quoted word)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Import the tunnel a systemd unit runs: NAME.service, TEMPLATE@INSTANCE.service, or a unit file's path
    #[arg(long, value_name = "UNIT")]
    pub systemd: Option<String>,
    /// Import every tunnel that systemd units (those of --target) or /etc/inittab respawn lines run
    #[arg(long, value_enum, value_name = "WHERE")]
    pub scan: Option<ScanWhere>,
    /// Import the Host blocks with LocalForward, RemoteForward or DynamicForward from FILE (default: ~/.ssh/config)
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "~/.ssh/config")]
    pub ssh_config: Option<String>,
    /// Only this Host alias of --ssh-config
    #[arg(long, value_name = "ALIAS", requires = "ssh_config")]
    pub host: Option<String>,
    /// The tunnel's name (default: derived from the host, unit or inittab id); one tunnel only
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Add the tunnels to the configuration file, keeping its comments (created, with a header, when there is none)
    #[arg(long)]
    pub write: bool,
    /// Init system: whose units --systemd and --scan systemd read, and which --replace installs for (default: detected)
    #[arg(long, short = 't', value_enum)]
    pub target: Option<Target>,
    /// Read units, /etc/inittab and environment files under DIR instead of / (per-user units: DIR/$HOME/…)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["replace", "undo"])]
    pub root: Option<PathBuf>,
    /// Hand the running tunnel over: install tunnelctl's without starting, stop the old service (unit, inittab line, or --pid), start the new one; if it is not proven in time, the old one runs again as it was
    #[arg(long, conflicts_with = "ssh_config")]
    pub replace: bool,
    /// With --replace and a command line: the running ssh or autossh process to stop
    #[arg(long, value_name = "PID", requires = "replace")]
    pub pid: Option<i32>,
    /// How long the new tunnel has to prove itself during --replace
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub handover_timeout: String,
    /// Path of tunnel-watchdog written into the service with --replace (default: next to tunnelctl, else /usr/bin/tunnel-watchdog)
    #[arg(long, value_name = "PATH")]
    pub watchdog: Option<PathBuf>,
    /// Undo a --replace: uninstall tunnelctl's tunnel NAME and start the service it replaced again
    #[arg(long, value_name = "NAME")]
    pub undo: Option<String>,
    #[command(flatten)]
    pub supervision: SupervisionArgs,
}

/// Where `import --scan` looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScanWhere {
    /// Units whose ExecStart= runs ssh or autossh (template instances included)
    Systemd,
    /// /etc/inittab respawn lines (SysV or BusyBox) that run ssh or autossh
    Inittab,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write
    #[arg(value_enum)]
    pub what: GenerateWhat,
    /// Directory to write into (created if missing)
    pub dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerateWhat {
    /// tunnelctl.1, tunnel-watchdog.1 and tunnels.yaml.5
    Man,
    /// tunnelctl.bash, _tunnelctl (zsh) and tunnelctl.fish
    Completions,
}
