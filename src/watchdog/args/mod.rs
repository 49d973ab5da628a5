//! The watchdog's command line (docs/design.md, "The watchdog command line"): options,
//! `--args-file`, and the forwards to probe, read from the ssh arguments. Pure.

use std::path::PathBuf;
use std::time::Duration;

use crate::duration::{MAX_COUNT, format_duration, parse_bounded};
use crate::model::{Backoff, Probe};

use super::readiness::{Spec, check_pairing, parse_spec};

/// One option of the watchdog. [`OPTIONS`] is the one list: the parser accepts exactly
/// these, and `--help` ([`usage`]) and the man page (`tunnelctl generate man`) are
/// written from it.
pub struct OptionDoc {
    pub long: &'static str,
    pub value: &'static str,
    /// The default as the user would write it, from `model`'s defaults (a value such
    /// as `10s`, or words such as "the ssh host"; empty: none to name).
    pub default: fn() -> String,
    pub help: &'static str,
}

/// The watchdog's options, in `--help` order.
pub const OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        long: "name",
        value: "NAME",
        default: || "the ssh host".into(),
        help: "tunnel name for logs, STATUS= and the state file",
    },
    OptionDoc {
        long: "probe-interval",
        value: "DUR",
        default: || format_duration(Probe::default().interval),
        help: "time between probe rounds while they pass; a failed round is confirmed after \
               200 ms, so a dead tunnel is declared within interval + failures × timeout",
    },
    OptionDoc {
        long: "probe-timeout",
        value: "DUR",
        default: || format_duration(Probe::default().timeout),
        help: "a probe round that takes longer fails; the alive check of ssh itself gets at \
               most 2 s of it",
    },
    OptionDoc {
        long: "probe-failures",
        value: "N",
        default: || Probe::default().failures.to_string(),
        help: "consecutive failed rounds that declare the tunnel dead",
    },
    OptionDoc {
        long: "backoff-initial",
        value: "DUR",
        default: || format_duration(Backoff::default().initial),
        help: "first wait after a failure; none when the tunnel had passed probes for \
               max(probe interval, backoff initial) before it failed; after ssh got no \
               greeting, ssh starts once the server greets (checked every 1s)",
    },
    OptionDoc {
        long: "backoff-max",
        value: "DUR",
        default: || format_duration(Backoff::default().max),
        help: "cap of the wait, and the uptime that resets it; a server that does not greet \
               still gets ssh this often",
    },
    OptionDoc {
        long: "state-dir",
        value: "DIR",
        default: || {
            "$STATE_DIRECTORY, $RUNTIME_DIRECTORY, /run/tunnelctl/NAME or a per-user path".into()
        },
        help: "state file and control socket",
    },
    OptionDoc {
        long: "log-file",
        value: "FILE",
        default: String::new,
        help: "append log lines here instead of stderr",
    },
    OptionDoc {
        long: "metrics-file",
        value: "FILE",
        default: String::new,
        help: "also write the state as Prometheus text (for node_exporter's textfile \
               collector) to FILE, replaced atomically whenever the state file changes; \
               mode 0644; every folder above it must be root's or ours and writable by \
               nobody else (else nothing is written, and the log says why)",
    },
    OptionDoc {
        long: "on-change",
        value: "WORD",
        default: String::new,
        help: "run a command on every change of the tunnel's state: each --on-change adds \
               one word of its argv (no shell); TUNNELCTL_TUNNEL, TUNNELCTL_OLD_STATE, \
               TUNNELCTL_NEW_STATE and TUNNELCTL_REASON in its environment; one run at a \
               time, in order",
    },
    OptionDoc {
        long: "on-change-timeout",
        value: "DUR",
        default: || format_duration(ON_CHANGE_TIMEOUT),
        help: "an --on-change run still going after this is killed with its process group \
               (which is killed when it exits, too); at exit, the running one and the \
               latest waiting change share 3s",
    },
    OptionDoc {
        long: "readiness",
        value: "HOW",
        default: || "sd-notify".into(),
        help: "how the supervisor learns the tunnel is proven: sd-notify (datagrams to \
               $NOTIFY_SOCKET when it is set), s6-fd:N (a newline on fd N, then fd N closed: \
               s6's notification-fd), openrc-fd:N (a ready line on fd N, then closed: \
               OpenRC's notify=fd:N), procd:SERVICE/INSTANCE (procd's instance watchdog, \
               pinged over ubus; needs --procd-watchdog), none (exit codes only)",
    },
    OptionDoc {
        long: "procd-watchdog",
        value: "DUR",
        default: String::new,
        help: "with --readiness procd:…, the TIMEOUT of `procd_set_param watchdog 1 TIMEOUT` \
               (procd passes the daemon no variable); pinged every third of it; at least 15s \
               and 3 × --probe-timeout",
    },
    OptionDoc {
        long: "ubus-socket",
        value: "PATH",
        default: || "/var/run/ubus/ubus.sock, else /var/run/ubus.sock".into(),
        help: "ubusd's socket, for --readiness procd:…",
    },
    OptionDoc {
        long: "args-file",
        value: "FILE",
        default: String::new,
        help: "read the arguments from FILE, one per line (# comments)",
    },
];

/// The default bound of one `--on-change` run.
pub const ON_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `tunnel-watchdog --help` prints.
pub fn usage() -> String {
    let mut out = String::from(
        "\
usage: tunnel-watchdog [OPTIONS] -- ssh [SSH ARGS...] HOST
       tunnel-watchdog --args-file FILE

Runs ssh as a child, proves every forward (-L, -R, -D) carries data end to end, and
tells the init system (--readiness: sd_notify under systemd, s6's or OpenRC's
notification fd, procd's watchdog; the exit code everywhere).

options (durations: 500ms, 15s, 5m, 1h):
",
    );
    // Pieces pushed one by one, not format!: the watchdog binary stays small.
    for o in OPTIONS {
        let line = out.len();
        for piece in ["  --", o.long, " ", o.value] {
            out.push_str(piece);
        }
        pad_to(&mut out, line + HELP_COLUMN);
        let mut text = o.help.to_string();
        let default = (o.default)();
        if let Some(c) = default.chars().next() {
            text.push_str(if c.is_ascii_lowercase() {
                " (default: "
            } else {
                " (default "
            });
            text.push_str(&default);
            text.push(')');
        }
        wrap_into(&mut out, &text, 66);
        out.push('\n');
    }
    out.push_str(
        "  -h, --help              this text
  -V, --version           the version

signals: SIGHUP/SIGUSR1 reconnect now (skip the back-off); SIGTERM/SIGINT stop.
exit codes: 0 stopped; 1 tunnel failed (restart me); 2 usage error;
            3 authentication or host key refused, or `ssh` is not OpenSSH (Dropbear):
              restart, the back-off is at its max.
",
    );
    out
}

/// Where an option's help starts in `--help` (the flag is padded to it).
const HELP_COLUMN: usize = 26;

/// Pads `out` with spaces to `len` bytes (the flags are ASCII).
fn pad_to(out: &mut String, len: usize) {
    while out.len() < len {
        out.push(' ');
    }
}

/// Greedy word wrap of `text` at `width` characters into `out`, the lines after the
/// first indented to [`HELP_COLUMN`].
fn wrap_into(out: &mut String, text: &str, width: usize) {
    let mut line = 0; // characters on this line so far
    for word in text.split_whitespace() {
        let n = word.chars().count();
        if line > 0 && line + 1 + n > width {
            out.push('\n');
            let start = out.len();
            pad_to(out, start + HELP_COLUMN);
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += n;
    }
}

/// One forward of the ssh command line, as the probe sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshForward {
    /// `-L [bind:]port:host:hostport`: our listener, then the target via the server.
    Local {
        bind: String,
        port: u16,
        host: String,
        host_port: u16,
    },
    /// `-R [bind:]port:host:hostport`: the server's listener, then our target.
    Remote {
        bind: Option<String>,
        port: u16,
        host: String,
        host_port: u16,
    },
    /// `-R [bind:]port` alone: a SOCKS proxy on the server that exits here.
    RemoteDynamic { bind: Option<String>, port: u16 },
    /// `-D [bind:]port`: a SOCKS proxy here.
    Dynamic { bind: String, port: u16 },
    /// Unix-socket forwards and server-allocated ports (`-R 0:…`): only the ssh process
    /// itself is checked.
    Unprobed {
        flag: char,
        spec: String,
        why: &'static str,
    },
}

impl SshForward {
    /// Whether probing this forward opens a channel that the server must answer.
    pub fn crosses_server(&self) -> bool {
        matches!(
            self,
            SshForward::Local { .. } | SshForward::Remote { .. } | SshForward::RemoteDynamic { .. }
        )
    }

    /// `-R 1234:127.0.0.1:22` as the user wrote it, for log lines.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        // -FLAG [bind:]port[:host:hostport]
        let (flag, bind, port, target) = match self {
            SshForward::Local {
                bind,
                port,
                host,
                host_port,
            } => ('L', Some(bind), port, Some((host, host_port))),
            SshForward::Remote {
                bind,
                port,
                host,
                host_port,
            } => ('R', bind.as_ref(), port, Some((host, host_port))),
            SshForward::RemoteDynamic { bind, port } => ('R', bind.as_ref(), port, None),
            SshForward::Dynamic { bind, port } => ('D', Some(bind), port, None),
            SshForward::Unprobed { flag, spec, .. } => return format!("-{flag} {spec}"),
        };
        let mut out = format!("-{flag} ");
        if let Some(bind) = bind {
            out.push_str(bind);
            out.push(':');
        }
        let _ = write!(out, "{port}");
        if let Some((host, host_port)) = target {
            let _ = write!(out, ":{host}:{host_port}");
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub name: String,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub probe_failures: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub state_dir: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// The `--on-change` command's argv (empty: none).
    pub on_change: Vec<String>,
    pub on_change_timeout: Duration,
    /// `--readiness`: how the supervisor is told.
    pub readiness: Spec,
    /// `--procd-watchdog`: procd's instance watchdog timeout.
    pub procd_watchdog: Option<Duration>,
    /// `--ubus-socket`.
    pub ubus_socket: Option<PathBuf>,
    /// The ssh command line as given (program first), without the watchdog's additions.
    pub ssh: Vec<String>,
    pub forwards: Vec<SshForward>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

/// Parses the arguments after the program name. `read_file` reads `--args-file`
/// (a parameter so tests need no files).
pub fn parse(
    args: &[String],
    read_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Parsed, String> {
    match args.first() {
        Some(first) if names_args_file(first) => parse_args_file(args, read_file),
        _ => parse_options(args),
    }
}

/// `--args-file FILE` or `--args-file=FILE`.
fn names_args_file(arg: &str) -> bool {
    arg == "--args-file" || arg.starts_with("--args-file=")
}

/// `--args-file FILE`, the only argument: the options are FILE's lines, and errors
/// name FILE.
fn parse_args_file(
    args: &[String],
    read_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Parsed, String> {
    let (file, rest) = match args[0].strip_prefix("--args-file=") {
        Some(f) => (f.to_string(), &args[1..]),
        None => (
            args.get(1)
                .cloned()
                .ok_or("--args-file needs a file name")?,
            args.get(2..).unwrap_or(&[]),
        ),
    };
    if let Some(extra) = rest.first() {
        return Err(format!(
            "--args-file takes no other arguments (found `{extra}`): put them in {file}"
        ));
    }
    let from_file = args_file_lines(&read_file(&file)?);
    if from_file.iter().any(|a| names_args_file(a)) {
        return Err(format!(
            "{file}: an args file cannot name another --args-file"
        ));
    }
    parse_options(&from_file).map_err(|e| format!("{file}: {e}"))
}

/// The options, then `--` and the ssh command; `--help` or `--version` wins where it
/// comes before `--`.
fn parse_options(args: &[String]) -> Result<Parsed, String> {
    let mut o = default_options();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--" => {
                o.ssh = args[i + 1..].to_vec();
                break;
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            _ => {}
        }
        let (key, value, taken) = option_at(args, i)?;
        set_option(&mut o, key, value)?;
        i += taken;
    }
    finish(o).map(|o| Parsed::Run(Box::new(o)))
}

/// What the watchdog does with no options: `model`'s defaults.
fn default_options() -> Options {
    let (probe, backoff) = (Probe::default(), Backoff::default());
    Options {
        name: String::new(),
        probe_interval: probe.interval,
        probe_timeout: probe.timeout,
        probe_failures: probe.failures,
        backoff_initial: backoff.initial,
        backoff_max: backoff.max,
        state_dir: None,
        log_file: None,
        metrics_file: None,
        on_change: Vec::new(),
        on_change_timeout: ON_CHANGE_TIMEOUT,
        readiness: Spec::default(),
        procd_watchdog: None,
        ubus_socket: None,
        ssh: Vec::new(),
        forwards: Vec::new(),
    }
}

/// The option at `args[i]` (one of [`OPTIONS`]), its value (after `=` or the next
/// argument) and how many arguments the two took.
fn option_at(args: &[String], i: usize) -> Result<(&str, String, usize), String> {
    let arg = &args[i];
    let (key, inline) = match arg.split_once('=') {
        Some((k, v)) if k.starts_with("--") => (k, Some(v)),
        _ => (arg.as_str(), None),
    };
    if !key.starts_with("--") {
        return Err(format!(
            "unexpected `{arg}`: put the ssh command after `--` (tunnel-watchdog [OPTIONS] -- ssh ... HOST)"
        ));
    }
    if !OPTIONS.iter().any(|o| key[2..] == *o.long) {
        return Err(unknown_option(key));
    }
    match inline {
        Some(v) => Ok((key, v.to_string(), 1)),
        None => match args.get(i + 1) {
            Some(v) => Ok((key, v.clone(), 2)),
            None => Err(format!("{key} needs a value")),
        },
    }
}

/// Sets the option `key` (`--name`, …) to `value`.
fn set_option(o: &mut Options, key: &str, value: String) -> Result<(), String> {
    // Bounded as `check` bounds them, so no arithmetic on them can overflow.
    let duration = |v: &str| parse_bounded(v).map_err(|e| format!("{key}: {e}"));
    match key {
        "--name" => o.name = value,
        "--probe-interval" => o.probe_interval = duration(&value)?,
        "--probe-timeout" => o.probe_timeout = duration(&value)?,
        "--probe-failures" => o.probe_failures = parse_failures(&value)?,
        "--backoff-initial" => o.backoff_initial = duration(&value)?,
        "--backoff-max" => o.backoff_max = duration(&value)?,
        "--state-dir" => o.state_dir = Some(PathBuf::from(value)),
        "--log-file" => o.log_file = Some(PathBuf::from(value)),
        "--metrics-file" => o.metrics_file = Some(PathBuf::from(value)),
        "--on-change" => o.on_change.push(value),
        "--on-change-timeout" => o.on_change_timeout = duration(&value)?,
        "--readiness" => o.readiness = parse_spec(&value)?,
        "--procd-watchdog" => o.procd_watchdog = Some(duration(&value)?),
        "--ubus-socket" => o.ubus_socket = Some(PathBuf::from(value)),
        "--args-file" => return Err("--args-file must be the only argument".into()),
        _ => return Err(unknown_option(key)),
    }
    Ok(())
}

fn unknown_option(key: &str) -> String {
    format!("unknown option `{key}` (see --help)")
}

/// `--probe-failures`: a count from 1 to [`MAX_COUNT`].
fn parse_failures(value: &str) -> Result<u32, String> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| {
            format!("--probe-failures: `{value}` is not a whole number from 1 to {MAX_COUNT}")
        })
}

/// The checks across options, then what the ssh command says: its forwards, and the
/// host as the default name.
fn finish(mut o: Options) -> Result<Options, String> {
    if o.ssh.is_empty() {
        return Err("no ssh command: add `-- ssh [SSH ARGS...] HOST`".into());
    }
    if o.probe_interval.is_zero() || o.probe_timeout.is_zero() {
        return Err("--probe-interval and --probe-timeout must be greater than 0".into());
    }
    if o.backoff_initial.is_zero() || o.backoff_max < o.backoff_initial {
        return Err("--backoff-initial must be greater than 0 and at most --backoff-max".into());
    }
    check_pairing(&o.readiness, o.procd_watchdog, o.probe_timeout)?;
    if o.ubus_socket.is_some() && !matches!(o.readiness, Spec::Procd { .. }) {
        return Err("--ubus-socket goes only with --readiness procd:…".into());
    }
    let (forwards, host) = scan_ssh_args(&o.ssh[1..])?;
    o.forwards = forwards;
    if o.name.is_empty() {
        o.name = host.unwrap_or_else(|| "tunnel".into());
    }
    Ok(o)
}

/// An args file larger than this is refused: a real one is a few hundred bytes, and
/// reading a huge one whole (then a String per line) once cost 3 GB for 100 MB.
pub const MAX_ARGS_FILE: u64 = 1024 * 1024;

/// Why an args file could not be read: the file is missing or unreadable (the system is
/// not ready: exit 1, retried) or it cannot be an args file (exit 2).
#[derive(Debug, PartialEq, Eq)]
pub enum ArgsFileError {
    Unreadable(String),
    TooBig(String),
}

/// Reads an args file, at most [`MAX_ARGS_FILE`] bytes (a small separate function so
/// the option parser can change around it).
pub fn read_args_file(path: &str) -> Result<String, ArgsFileError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_ARGS_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| ArgsFileError::Unreadable(format!("cannot read {path}: {e}")))?;
    if bytes.len() as u64 > MAX_ARGS_FILE {
        return Err(ArgsFileError::TooBig(format!(
            "{path} is larger than {MAX_ARGS_FILE} bytes, so it is not an args file (one \
             argument per line, a few hundred bytes); render it again with `tunnelctl install`"
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        ArgsFileError::TooBig(format!(
            "{path} is not UTF-8 text, so it is not an args file"
        ))
    })
}

/// The lines of an args file: one argument per line; leading `#` lines are comments.
pub fn args_file_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect();
    // A trailing newline is not an empty argument.
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// ssh options that take an argument (OpenSSH 9.2 getopt string).
const SSH_OPTS_WITH_ARG: &str = "bceilmopBDEFIJLOPQRSwW";

/// ssh's options that take a value, with their values, in the order ssh's getopt reads
/// them from `args` (the arguments after the program): glued (`-oKEY=V`), separate
/// (`-o KEY=V`) or at the end of grouped flags (`-No KEY=V`); and the host (the first
/// other word). Like ssh, options after the host are read too, up to the next other word
/// (the remote command) or `--`. An option without its value is an error (ssh would
/// refuse to start).
pub fn ssh_option_values(args: &[String]) -> Result<SshOptions, String> {
    let mut values = Vec::new();
    let mut host: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            if host.is_none() {
                host = args.get(i + 1).cloned();
            }
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            if host.is_some() {
                break;
            }
            host = Some(arg.clone());
            i += 1;
            continue;
        }
        for (at, flag) in arg.char_indices().skip(1) {
            if SSH_OPTS_WITH_ARG.contains(flag) {
                let rest = &arg[at + flag.len_utf8()..];
                let value = if rest.is_empty() {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("ssh option -{flag} needs a value"))?
                } else {
                    rest.to_string()
                };
                values.push((flag, value));
                break;
            }
        }
        i += 1;
    }
    Ok(SshOptions { values, host })
}

/// What [`ssh_option_values`] read: each option that takes a value, with it, and the host.
pub struct SshOptions {
    pub values: Vec<(char, String)>,
    pub host: Option<String>,
}

/// Reads ssh's own options like ssh's getopt does (also those after the host, which ssh
/// reads too), collecting `-L`/`-R`/`-D` forwards, and returns the host.
pub fn scan_ssh_args(args: &[String]) -> Result<(Vec<SshForward>, Option<String>), String> {
    let SshOptions { values, host } = ssh_option_values(args)?;
    let mut forwards = Vec::new();
    for (flag, value) in values {
        if matches!(flag, 'L' | 'R' | 'D') {
            forwards.push(parse_forward(flag, &value)?);
        }
    }
    Ok((forwards, host))
}

/// The ssh arguments (program first) without the `-R` forward that listens on `port`,
/// and that forward, so the watchdog can ask for it through the control socket instead
/// (see `PORT_HELD_ASK_EVERY`). Only the separate (`-R SPEC`) and glued (`-RSPEC`)
/// forms are taken out; a forward inside grouped flags (`-NR SPEC`), a SOCKS `-R`, or a
/// port that no `-R` listens on gives `None`.
pub fn without_remote_forward(ssh: &[String], port: u16) -> Option<(Vec<String>, SshForward)> {
    let (program, args) = ssh.split_first()?;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            return None;
        }
        let (spec, taken) = match arg.as_str() {
            "-R" => (args.get(i + 1)?.as_str(), 2),
            glued if glued.starts_with("-R") => (&glued[2..], 1),
            _ => {
                // Skip this option's value when it takes one as the next argument.
                let flag = arg[1..].chars().last().unwrap_or('-');
                let value_follows = arg.len() == 2 && SSH_OPTS_WITH_ARG.contains(flag);
                i += if value_follows { 2 } else { 1 };
                continue;
            }
        };
        if let Ok(forward @ SshForward::Remote { port: p, .. }) = parse_forward('R', spec)
            && p == port
        {
            let mut rest = vec![program.clone()];
            rest.extend(args[..i].iter().cloned());
            rest.extend(args[i + taken..].iter().cloned());
            return Some((rest, forward));
        }
        i += taken;
    }
    None
}

/// Splits a forward spec at `:` outside `[...]` (IPv6 addresses).
fn split_spec(spec: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&spec[start..]);
    parts
}

fn unbracket(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// `-L [bind:]port:host:hostport`, `-R [bind:]port[:host:hostport]`, `-D [bind:]port`.
pub fn parse_forward(flag: char, spec: &str) -> Result<SshForward, String> {
    let unprobed = |why| {
        Ok(SshForward::Unprobed {
            flag,
            spec: spec.to_string(),
            why,
        })
    };
    if spec.contains('/') {
        return unprobed("unix-socket forwards are not probed");
    }
    let parts = split_spec(spec);
    let known = match flag {
        'L' => matches!(parts.len(), 3 | 4),
        'R' => matches!(parts.len(), 1..=4),
        'D' => matches!(parts.len(), 1 | 2),
        _ => false,
    };
    if !known {
        return Err(format!(
            "ssh -{flag} {spec}: not a forward spec ssh understands"
        ));
    }
    let port = |p: &str| -> Result<u16, String> {
        p.parse()
            .map_err(|_| format!("ssh -{flag} {spec}: `{p}` is not a port number"))
    };
    // An even count starts with the bind address.
    let (bind, rest) = match parts.len() % 2 {
        0 => (Some(unbracket(parts[0])), &parts[1..]),
        _ => (None, &parts[..]),
    };
    let listen = port(rest[0])?;
    let target = match rest {
        [_, h, hp] => Some((unbracket(h), port(hp)?)),
        _ => None,
    };
    let local_bind = |bind: Option<String>| bind.unwrap_or_else(|| "localhost".into());
    let forward = match (flag, target) {
        ('L', Some((host, host_port))) => SshForward::Local {
            bind: local_bind(bind),
            port: listen,
            host,
            host_port,
        },
        ('R', Some((host, host_port))) => SshForward::Remote {
            bind,
            port: listen,
            host,
            host_port,
        },
        ('R', None) => SshForward::RemoteDynamic { bind, port: listen },
        // 'D'
        _ => SshForward::Dynamic {
            bind: local_bind(bind),
            port: listen,
        },
    };
    match &forward {
        SshForward::Remote { port: 0, .. } | SshForward::RemoteDynamic { port: 0, .. } => {
            unprobed("a server-allocated port (0) cannot be probed")
        }
        _ => Ok(forward),
    }
}

/// The address to dial for a listener bound to `bind` (wildcards and names → loopback).
pub fn dial_host(bind: Option<&str>) -> String {
    match bind.unwrap_or("") {
        "" | "*" | "0.0.0.0" | "localhost" => "127.0.0.1".into(),
        "::" => "::1".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
