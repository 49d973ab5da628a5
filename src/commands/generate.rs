//! `tunnelctl generate man|completions DIR`, the packager's hook (hidden from `--help`).
//!
//! Every page and completion script is built from the clap definitions the binaries
//! parse with, so they cannot drift from `--help`. Only `tunnels.yaml(5)` is prose,
//! kept in `packaging/man/` and compiled in so that one command writes every page.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory, ValueEnum};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::Error;
use crate::cli::{Cli, GenerateArgs, GenerateWhat};
use crate::target::Target;
use crate::watchdog::args;

/// The hand-written file-format page.
pub const TUNNELS_YAML_5: &str = include_str!("../../packaging/man/tunnels.yaml.5");

/// The manual every page claims membership of (third `.TH` field).
const MANUAL: &str = "tunnelctl manual";

pub fn run(args: GenerateArgs) -> Result<ExitCode, Error> {
    let written = match args.what {
        GenerateWhat::Man => write_man_pages(&args.dir),
        GenerateWhat::Completions => write_completions(&args.dir),
    };
    let paths = written.map_err(|err| Error::failed(format!("{}: {err}", args.dir.display())))?;
    for path in paths {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `tunnelctl.1`, `tunnel-watchdog.1` and `tunnels.yaml.5` into `dir`.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let pages = [
        ("tunnelctl.1", ascii_roff(&tunnelctl_man_page())),
        ("tunnel-watchdog.1", ascii_roff(&watchdog_man_page())),
        ("tunnels.yaml.5", ascii_roff(TUNNELS_YAML_5)),
    ];
    let mut written = Vec::new();
    for (name, text) in pages {
        let path = dir.join(name);
        fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `tunnelctl.bash`, `_tunnelctl` and `tunnelctl.fish` into `dir`.
pub fn write_completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut cmd = public_command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, &mut cmd, "tunnelctl", dir))
        .collect()
}

/// tunnelctl's command without its hidden subcommands: clap_complete would offer them.
fn public_command() -> Command {
    let cmd = Cli::command();
    let visible: Vec<Command> = cmd
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    let mut public = Command::new("tunnelctl")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(visible)
        .subcommand_required(cmd.is_subcommand_required_set())
        .disable_help_subcommand(true);
    if let Some(about) = cmd.get_about() {
        public = public.about(about.clone());
    }
    if let Some(long_about) = cmd.get_long_about() {
        public = public.long_about(long_about.clone());
    }
    public
}

/// `tunnelctl(1)`: one page, with a subsection per command (synopsis and options),
/// because the tool is small enough that one `man tunnelctl` should answer everything.
pub fn tunnelctl_man_page() -> String {
    let mut cmd = public_command();
    cmd.build();
    let man = Man::new(cmd.clone()).manual(MANUAL);

    let mut page = String::new();
    page.push_str(&render(|w| man.render_title(w)));
    page.push_str(&render(|w| man.render_name_section(w)));
    page.push_str(&render(|w| man.render_synopsis_section(w)));
    page.push_str(&render(|w| man.render_description_section(w)));
    page.push_str(&render(|w| man.render_options_section(w)));

    let mut heading = Roff::new();
    heading.control("SH", ["TARGETS"]);
    heading.text([
        roman("The init systems that "),
        bold("--target"),
        roman(" accepts:"),
    ]);
    for target in Target::ALL {
        let value = target.to_possible_value().expect("no target is skipped");
        heading.control("TP", []);
        heading.text([bold(value.get_name())]);
        heading.text([roman(
            value.get_help().map(|h| h.to_string()).unwrap_or_default(),
        )]);
    }
    heading.control("PP", []);
    heading.text([roman("Without "), bold("--target"), roman(", install detects the init system: /run/systemd/system means systemd, macOS means launchd, a BusyBox /sbin/init means busybox, anything else inittab.")]);
    heading.control("SH", ["COMMANDS"]);
    heading.text([
        roman("Every command also accepts "),
        bold("--config"),
        roman(" and "),
        bold("--help"),
        roman("."),
    ]);
    page.push_str(&heading.render());
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        page.push_str(&command_subsection(cmd.get_name(), sub));
    }

    page.push_str(&tunnelctl_extra_sections().render());
    page.push_str(&render(|w| man.render_version_section(w)));
    page
}

/// One `.SS` subsection: what the command does, its synopsis, its own options.
fn command_subsection(parent: &str, sub: &Command) -> String {
    let full_name = format!("{parent} {}", sub.get_name());
    // The global --config and the automatic --help are documented once, above.
    let mut own = sub
        .clone()
        .bin_name(full_name.clone())
        .disable_help_flag(true);
    let repeated: Vec<String> = sub
        .get_arguments()
        .filter(|arg| arg.is_global_set() || arg.get_id() == "help")
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in repeated {
        own = own.mut_arg(id, |arg| arg.hide(true));
    }
    // The only value list is --target's: it is listed once, in TARGETS, not per command.
    let with_values: Vec<String> = sub
        .get_arguments()
        .filter(|arg| !arg.get_possible_values().is_empty())
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in with_values {
        own = own.mut_arg(id, |arg| arg.hide_possible_values(true));
    }
    let man = Man::new(own);

    let mut head = Roff::new();
    head.control("SS", [full_name.as_str()]);
    let mut out = head.render();
    out.push_str(&without_heading(&render(|w| {
        man.render_description_section(w)
    })));
    out.push_str(".PP\n");
    out.push_str(&without_heading(&render(|w| {
        man.render_synopsis_section(w)
    })));
    out.push_str(&without_heading(&render(|w| man.render_options_section(w))));
    out
}

fn tunnelctl_extra_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", []);
    r.text([bold("TUNNELCTL_CONFIG")]);
    r.text([
        roman("Configuration file used when "),
        bold("--config"),
        roman(" is not given."),
    ]);

    r.control("SH", ["FILES"]);
    r.text([roman(
        "The configuration is looked up in this order; the first that is set or exists wins:",
    )]);
    entries(
        &mut r,
        |t| italic(t),
        |t| roman(t),
        &[
            ("FILE", "given with --config"),
            ("$TUNNELCTL_CONFIG", "when set"),
            (
                "~/.config/tunnelctl/tunnels.yaml",
                "for users other than root",
            ),
            ("/etc/tunnelctl/tunnels.yaml", "for root"),
        ],
    );
    r.control("PP", []);
    r.text([roman("Where install writes, per target:")]);
    entries(
        &mut r,
        |t| bold(t),
        |t| italic(t),
        &[
            ("systemd", "/etc/systemd/system/tunnel-NAME.service"),
            ("systemd-user", "~/.config/systemd/user/tunnel-NAME.service"),
            ("launchd", "/Library/LaunchDaemons/org.tunnelctl.NAME.plist"),
            (
                "launchd-agent",
                "~/Library/LaunchAgents/org.tunnelctl.NAME.plist",
            ),
            (
                "inittab, busybox",
                "a marked line in /etc/inittab and /etc/tunnelctl/run/ID.args",
            ),
        ],
    );

    r.control("SH", ["EXIT STATUS"]);
    entries(
        &mut r,
        |t| bold(t),
        |t| roman(t),
        &[
            ("0", "Success."),
            (
                "1",
                "The operation failed (an init tool, a file write, a connection).",
            ),
            (
                "2",
                "The configuration or the command line is wrong; nothing was changed.",
            ),
        ],
    );

    r.control("PP", []);
    r.text([
        bold("tunnelctl status"),
        roman(" exits as "),
        bold("systemctl is-active"),
        roman(" does, so scripts and monitors can test it (the worst selected tunnel decides):"),
    ]);
    entries(
        &mut r,
        |t| bold(t),
        |t| roman(t),
        &[
            ("0", "Every selected tunnel is up."),
            (
                "1",
                "At least one is down: not running, stopped, connecting, backing off, failed, or its state file is missing or unreadable.",
            ),
            ("2", "The configuration or the command line is wrong."),
            (
                "3",
                "None is down, but at least one is degraded: connected, with a forward whose target refuses (no reconnect can fix that).",
            ),
        ],
    );

    r.control("SH", ["STATUS JSON"]);
    r.text([
        bold("tunnelctl status --json"),
        roman(" prints one object: "),
        bold("{\"schema\": 1, \"tunnels\": [...]}"),
        roman(". "),
        bold("schema"),
        roman(" is raised only when a key is removed or changes meaning; new keys may appear within a schema, so check it and ignore keys you do not know. \
(tunnelctl 0.1.0 printed the bare array, without a schema; a script written for it now fails loudly, e.g. jq: Cannot index object with number. Use "),
        bold(".tunnels[]"),
        roman(" instead of "),
        bold(".[]"),
        roman(".) Times are unix seconds, 0 meaning never. Each tunnel has:"),
    ]);
    entries(
        &mut r,
        |t| bold(t),
        |t| roman(t),
        &[
            (
                "name, target",
                "The tunnel and the init system looked at (null with --state-dir and no --target).",
            ),
            (
                "state",
                "The watchdog's state while it runs (connecting, up, degraded, backing-off, failed), else stopped, not running, or systemd's ACTIVE/SUB when there is no state file.",
            ),
            (
                "health",
                "up, degraded or down: what the exit code is made of.",
            ),
            ("degraded", "true when health is degraded."),
            (
                "running",
                "Whether the state file's watchdog pid is a live tunnel-watchdog.",
            ),
            (
                "state_since, state_seconds",
                "When the state last changed (0: unknown), and for how long (null when not running or unknown).",
            ),
            (
                "connected_since, up_seconds",
                "The current connection's first good probe, and its age (null unless up or degraded).",
            ),
            (
                "last_probe_ok, last_probe_ms",
                "The last good probe round and how long it took.",
            ),
            (
                "restarts, reconnects",
                "ssh starts, and reconnects without a watchdog restart, in total.",
            ),
            (
                "consecutive_failures, backoff_until, last_error",
                "The back-off and why the last connection failed.",
            ),
            (
                "pid, ssh_pid, state_file",
                "The watchdog, its ssh, the file read.",
            ),
            (
                "forwards",
                "One object per forward, in ssh's order: spec (as ssh was given it, e.g. -L 127.0.0.1:8080:intranet:80), target (intranet:80, or null for -D), health (up, target-down, port-held, unproven or failed), since (its last change), latency_ms (its last probe, 0: none).",
            ),
            (
                "init",
                "systemd's view (active_state, sub_state, n_restarts, status_text), or null.",
            ),
            ("problem", "Why there is no state, or null."),
        ],
    );

    r.control("SH", ["METRICS"]);
    r.text([
        bold("tunnelctl metrics"),
        roman(" prints the Prometheus text exposition format (0.0.4) of every selected tunnel, from the state files status reads: "),
        bold("tunnelctl_tunnel_up"),
        roman(", "),
        bold("tunnelctl_tunnel_degraded"),
        roman(", "),
        bold("tunnelctl_tunnel_state"),
        roman(" (label state), "),
        bold("tunnelctl_forward_up"),
        roman(" and "),
        bold("tunnelctl_forward_probe_latency_seconds"),
        roman(" (label forward), the counters "),
        bold("tunnelctl_restarts_total"),
        roman(" and "),
        bold("tunnelctl_reconnects_total"),
        roman(", "),
        bold("tunnelctl_state_seconds"),
        roman(", "),
        bold("tunnelctl_backoff_remaining_seconds"),
        roman(", "),
        bold("tunnelctl_last_probe_ok_timestamp_seconds"),
        roman(" and "),
        bold("tunnelctl_last_network_event_timestamp_seconds"),
        roman("; every sample has the label tunnel. A tunnel whose watchdog is not running is exported as stopped, whatever its last state file said. \
For node_exporter's textfile collector, write it to a temporary name and rename it into the collector's directory (node_exporter reads only *.prom files), or let each watchdog write its own file with "),
        bold("--metrics-file"),
        roman("."),
    ]);

    r.control("SH", ["EXAMPLES"]);
    for (what, example) in [
        ("Check the configuration:", "tunnelctl check"),
        (
            "See the systemd unit for a tunnel:",
            "tunnelctl render work-tunnel --target systemd",
        ),
        (
            "Install and start it with the detected init system:",
            "tunnelctl install work-tunnel",
        ),
        (
            "On macOS, as a LaunchAgent of the logged-in user:",
            "tunnelctl install work-tunnel --target launchd-agent",
        ),
        (
            "Each forward's health, since when, and its last probe's latency:",
            "tunnelctl status -v",
        ),
        (
            "Alert unless the tunnel is up (1 down, 3 degraded):",
            "tunnelctl status work-tunnel >/dev/null || echo \"work-tunnel: exit $?\"",
        ),
        (
            "Every minute from cron, for node_exporter's textfile collector (Debian's directory):",
            "d=/var/lib/prometheus/node-exporter; tunnelctl metrics >$d/tunnelctl.prom.tmp && mv $d/tunnelctl.prom.tmp $d/tunnelctl.prom",
        ),
    ] {
        r.control("PP", []);
        r.text([roman(what)]);
        r.control("RS", ["4"]);
        r.text([bold(example)]);
        r.control("RE", []);
    }

    see_also(
        &mut r,
        &[
            ("tunnel-watchdog", "1"),
            ("tunnels.yaml", "5"),
            ("ssh", "1"),
            ("ssh_config", "5"),
            ("systemd.service", "5"),
            ("inittab", "5"),
        ],
    );
    r
}

/// The watchdog's command line as a clap definition, for clap_mangen only: the watchdog
/// parses its arguments by hand (clap would weigh on the small binary), and this is
/// built from the same table as its parser and `--help` ([`args::OPTIONS`]).
fn watchdog_command() -> Command {
    use clap::Arg;
    let mut command = Command::new("tunnel-watchdog")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run ssh for one tunnel, prove every forward carries data, tell the init system")
        .long_about(
            "tunnel-watchdog runs ssh as its child, probes every forward through ssh's control socket, \
and reports to the init system: READY=1, WATCHDOG=1 and STATUS= under systemd, its exit code elsewhere. \
It is the process each service installed by tunnelctl runs; you rarely start it by hand.",
        )
        .override_usage(
            "tunnel-watchdog [OPTIONS] -- ssh [SSH ARGS...] HOST\n       tunnel-watchdog --args-file FILE",
        );
    for o in args::OPTIONS {
        let default = (o.default)();
        let mut help = o.help.to_string();
        if let Some(first) = help.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        let mut arg = Arg::new(o.long).long(o.long).value_name(o.value);
        if default.starts_with(|c: char| c.is_ascii_digit()) {
            // clap keeps defaults as 'static str; this runs once per `generate man`.
            arg = arg.default_value(&*default.leak());
        } else if !default.is_empty() {
            help.push_str(&format!(" [default: {default}]"));
        }
        command = command.arg(arg.help(help));
    }
    command.arg(
        Arg::new("ssh")
            .value_name("SSH")
            .num_args(1..)
            .last(true)
            .help("ssh and its arguments"),
    )
}

/// `tunnel-watchdog(1)`: options from its clap definition, plus the contract from
/// docs/design.md that init systems rely on (exit codes, signals, files).
pub fn watchdog_man_page() -> String {
    let man = Man::new(watchdog_command()).manual(MANUAL);
    let mut page = String::new();
    page.push_str(&render(|w| man.render_title(w)));
    page.push_str(&render(|w| man.render_name_section(w)));
    page.push_str(&render(|w| man.render_synopsis_section(w)));
    page.push_str(&render(|w| man.render_description_section(w)));
    page.push_str(&render(|w| man.render_options_section(w)));
    page.push_str(&watchdog_extra_sections().render());
    page.push_str(&render(|w| man.render_version_section(w)));
    page
}

fn watchdog_extra_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["ARGUMENTS FILE"]);
    r.text([
        roman("With "),
        bold("--args-file"),
        roman(" the watchdog reads exactly the arguments that would follow its name, one per line; \
leading lines that start with # are comments. "),
        roman("The inittab and BusyBox targets use it, because their process field must stay short and free of shell characters."),
    ]);

    r.control("SH", ["EXIT STATUS"]);
    entries(
        &mut r,
        |t| bold(t),
        |t| roman(t),
        &[
            ("0", "Stopped by SIGTERM or SIGINT."),
            (
                "1",
                "The tunnel failed (a probe failed or ssh exited): restart it.",
            ),
            (
                "2",
                "Usage error. systemd units set RestartPreventExitStatus=2, so a broken command line is not restarted forever.",
            ),
            (
                "3",
                "ssh failed permanently for now (authentication, host key): restart, but the persisted back-off is at its maximum.",
            ),
        ],
    );

    r.control("SH", ["SIGNALS"]);
    r.control("TP", []);
    r.text([bold("SIGTERM"), roman(", "), bold("SIGINT")]);
    r.text([roman(
        "Stop ssh (SIGTERM to its process group, SIGKILL after a grace period) and exit 0.",
    )]);
    r.control("TP", []);
    r.text([bold("SIGHUP"), roman(", "), bold("SIGUSR1")]);
    r.text([
        roman("Reconnect now: restart ssh without waiting for the back-off (what "),
        bold("tunnelctl reconnect"),
        roman(" asks for)."),
    ]);

    r.control("SH", ["ENVIRONMENT"]);
    entries(
        &mut r,
        |t| bold(t),
        |t| roman(t),
        &[
            (
                "NOTIFY_SOCKET",
                "Set by systemd for Type=notify services: READY=1, WATCHDOG=1 and STATUS= are sent there.",
            ),
            (
                "WATCHDOG_USEC",
                "Set by systemd with WatchdogSec=: the watchdog pings at least every half of it.",
            ),
            (
                "STATE_DIRECTORY, RUNTIME_DIRECTORY",
                "Default state directory, in this order.",
            ),
            (
                "XDG_RUNTIME_DIR",
                "Default state directory for users other than root.",
            ),
        ],
    );

    r.control("SH", ["FILES"]);
    entries(
        &mut r,
        |t| italic(t),
        |t| roman(t),
        &[
            ("STATE/state", "key=value lines read by tunnelctl status."),
            (
                "STATE/ctl",
                "the ssh control socket (ControlMaster) used for probes.",
            ),
            (
                "/etc/tunnelctl/run/ID.args",
                "arguments file written by tunnelctl install for inittab and BusyBox.",
            ),
        ],
    );

    see_also(
        &mut r,
        &[
            ("tunnelctl", "1"),
            ("tunnels.yaml", "5"),
            ("ssh", "1"),
            ("systemd.service", "5"),
            ("sd_notify", "3"),
        ],
    );
    r
}

/// `.TP` entries: each term in `term`'s style, its text below in `text`'s.
fn entries(
    r: &mut Roff,
    term: fn(&str) -> Inline,
    text: fn(&str) -> Inline,
    rows: &[(&str, &str)],
) {
    for (t, x) in rows {
        r.control("TP", []);
        r.text([term(t)]);
        r.text([text(x)]);
    }
}

fn see_also(r: &mut Roff, pages: &[(&str, &str)]) {
    r.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, (name, section)) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman(format!("({section})")));
    }
    r.text(line);
}

/// Help texts may hold characters such as `…`; groff reads its input as Latin-1 unless
/// told otherwise (man-db tells it, plain `groff -man` does not), so every non-ASCII
/// character becomes the `\[uXXXX]` escape that groff and mandoc both understand.
fn ascii_roff(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        // groff's ASCII device (man in the C locale) has no glyph for most \[uXXXX]
        // ("can't find special character"): the usual punctuation gets its classic
        // name or an ASCII spelling, which every device renders.
        match c {
            _ if c.is_ascii() => out.push(c),
            '…' => out.push_str("..."),
            '—' => out.push_str("\\(em"),
            '–' => out.push_str("\\(en"),
            '→' => out.push_str("\\(->"),
            '×' => out.push_str("\\(mu"),
            '’' => out.push_str("\\(cq"),
            '‘' => out.push_str("\\(oq"),
            '“' => out.push_str("\\(lq"),
            '”' => out.push_str("\\(rq"),
            _ => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// Runs one of clap_mangen's section writers into a string.
fn render(section: impl FnOnce(&mut dyn io::Write) -> io::Result<()>) -> String {
    let mut buf = Vec::new();
    section(&mut buf).expect("writing to a Vec cannot fail");
    String::from_utf8(buf).expect("clap_mangen writes UTF-8")
}

/// Drops a section's `.SH` line (and the roff crate's repeated apostrophe preamble,
/// already defined at the top of the page) so its body can sit inside a `.SS`
/// subsection; any further `.SH` (an option help heading) becomes a bold paragraph.
fn without_heading(section: &str) -> String {
    let mut out = String::new();
    let mut seen_heading = false;
    for line in section.lines() {
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            continue;
        }
        if let Some(title) = line.strip_prefix(".SH ") {
            if seen_heading {
                out.push_str(".PP\n\\fB");
                out.push_str(title.trim_matches('"'));
                out.push_str("\\fR\n");
            }
            seen_heading = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_has_a_subsection_and_generate_stays_hidden() {
        let page = tunnelctl_man_page();
        for sub in Cli::command().get_subcommands() {
            let heading = format!(".SS \"tunnelctl {}\"", sub.get_name());
            assert_eq!(
                page.contains(&heading),
                !sub.is_hide_set(),
                "{heading} in:\n{page}"
            );
        }
        assert!(
            !page.contains("generate"),
            "the hidden command leaked into the page"
        );
    }

    #[test]
    fn subsections_document_their_own_options_but_not_the_global_ones_again() {
        let page = tunnelctl_man_page();
        let install = page.split(".SS \"tunnelctl install\"").nth(1).unwrap();
        let install = install.split(".SS ").next().unwrap();
        assert!(install.contains("\\-\\-dry\\-run"), "{install}");
        assert!(!install.contains("\\-\\-config"), "{install}");
    }

    #[test]
    fn the_page_documents_status_exit_codes_json_schema_and_metrics() {
        let page = tunnelctl_man_page();
        for needle in [
            ".SH \"STATUS JSON\"",
            ".SH METRICS",
            "systemctl is\\-active",
            "at least one is degraded",
            "\\fBhealth\\fR",
            "\\fBforwards\\fR",
            "tunnelctl_tunnel_degraded",
            ".SS \"tunnelctl metrics\"",
        ] {
            assert!(page.contains(needle), "no {needle:?} in:\n{page}");
        }
    }

    #[test]
    fn non_ascii_becomes_a_groff_escape() {
        assert_eq!(
            ascii_roff("DIR/$HOME/\u{2026} caf\u{e9} a\u{2014}b"),
            "DIR/$HOME/... caf\\[u00E9] a\\(emb"
        );
    }

    #[test]
    fn without_heading_keeps_the_body() {
        let out = without_heading(
            ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.SH OPTIONS\n.TP\nx\n.SH \"OTHER THINGS\"\ny\n",
        );
        assert_eq!(out, ".TP\nx\n.PP\n\\fBOTHER THINGS\\fR\ny\n");
    }
}
