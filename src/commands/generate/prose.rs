//! The man pages' hand-written sections (environment, files, exit codes, the status
//! JSON, metrics, examples, signals, see also) as data: one [`Block`] per roff request,
//! in page order. The roff crate escapes the text when [`roff`] writes it, so the
//! tables hold plain words, not roff.

use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use Block::{
    Entries, Entry, Example, Heading, Para, SeeAlso, TargetDetection, TargetFiles,
    TargetStateAndLog, Text,
};
use Face::{B, I, R};

/// roff's fonts: `\fR` roman, `\fB` bold, `\fI` italic.
#[derive(Clone, Copy)]
pub(super) enum Face {
    R,
    B,
    I,
}

/// Some words in one font.
pub(super) type Span = (Face, &'static str);

pub(super) enum Block {
    /// `.SH`: a section.
    Heading(&'static str),
    /// `.PP`: a new paragraph.
    Para,
    /// Running text.
    Text(&'static [Span]),
    /// `.TP` entries: each term in the first font, its text below in the second.
    Entries(Face, Face, &'static [(&'static str, &'static str)]),
    /// One `.TP` entry whose term and text mix fonts.
    Entry(&'static [Span], &'static [Span]),
    /// A paragraph saying what the example does, then the command, bold, indented.
    Example(&'static str, &'static str),
    /// The `SEE ALSO` section: each page as `name(section)`.
    SeeAlso(&'static [(&'static str, &'static str)]),
    /// Where install writes, as each target says (`.TP` entries: names bold, paths italic).
    TargetFiles,
    /// How install picks a target without `--target`, as each target says.
    TargetDetection,
    /// Where a running tunnel keeps its state and log, as each target says, then a
    /// watchdog started by hand.
    TargetStateAndLog,
}

/// The blocks as roff requests.
pub(super) fn roff(blocks: &[Block]) -> Roff {
    let mut r = Roff::new();
    write(&mut r, blocks);
    r
}

/// Appends the blocks' roff requests to `r`.
pub(super) fn write(r: &mut Roff, blocks: &[Block]) {
    for block in blocks {
        match block {
            Heading(title) => {
                r.control("SH", [*title]);
            }
            Para => {
                r.control("PP", []);
            }
            Text(spans) => {
                r.text(inline(spans));
            }
            Entries(term, text, rows) => {
                for (t, x) in *rows {
                    entry(r, &[(*term, t)], &[(*text, x)]);
                }
            }
            Entry(term, text) => entry(r, term, text),
            Example(what, command) => {
                r.control("PP", []);
                r.text([roman(*what)]);
                r.control("RS", ["4"]);
                r.text([bold(*command)]);
                r.control("RE", []);
            }
            SeeAlso(pages) => see_also(r, pages),
            TargetFiles => {
                for (names, files) in crate::targets::files_summaries() {
                    r.control("TP", []);
                    r.text([bold(names)]);
                    r.text([italic(files)]);
                }
            }
            TargetStateAndLog => {
                for (names, words) in crate::targets::state_and_log_summaries() {
                    r.control("TP", []);
                    r.text([bold(names)]);
                    r.text([italic(words)]);
                }
                entry(
                    r,
                    &[(B, "by hand")],
                    &[(I, crate::targets::BY_HAND_STATE_AND_LOG)],
                );
            }
            TargetDetection => {
                r.text([
                    roman("Without "),
                    bold("--target"),
                    roman(crate::targets::detection_sentence()),
                ]);
            }
        }
    }
}

fn entry(r: &mut Roff, term: &[Span], text: &[Span]) {
    r.control("TP", []);
    r.text(inline(term));
    r.text(inline(text));
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

fn inline(spans: &[Span]) -> Vec<Inline> {
    spans
        .iter()
        .map(|&(face, words)| match face {
            R => roman(words),
            B => bold(words),
            I => italic(words),
        })
        .collect()
}

/// `tunnelctl(1)`'s TARGETS section, before the list of targets.
pub(super) const TARGETS_INTRO: &[Block] = &[
    Heading("TARGETS"),
    Text(&[
        (R, "The init systems that "),
        (B, "--target"),
        (R, " accepts:"),
    ]),
];

/// After the list of targets.
pub(super) const TARGETS_DETECTION: &[Block] = &[Para, TargetDetection];

/// Before the commands' subsections.
pub(super) const COMMANDS_INTRO: &[Block] = &[
    Heading("COMMANDS"),
    Text(&[
        (R, "Every command also accepts "),
        (B, "--config"),
        (R, " and "),
        (B, "--help"),
        (R, "."),
    ]),
];

/// `tunnelctl(1)` after its commands.
pub(super) const TUNNELCTL: &[Block] = &[
    Heading("ENVIRONMENT"),
    Entry(
        &[(B, "TUNNELCTL_CONFIG")],
        &[
            (R, "Configuration file used when "),
            (B, "--config"),
            (R, " is not given."),
        ],
    ),
    Heading("FILES"),
    Text(&[(
        R,
        "The configuration is looked up in this order; the first that is set or exists wins:",
    )]),
    Entries(
        I,
        R,
        &[
            ("FILE", "given with --config"),
            ("$TUNNELCTL_CONFIG", "when set"),
            (
                "~/.config/tunnelctl/tunnels.yaml",
                "for users other than root",
            ),
            ("/etc/tunnelctl/tunnels.yaml", "for root"),
        ],
    ),
    Para,
    Text(&[(R, "Where install writes, per target:")]),
    TargetFiles,
    Para,
    Text(&[(
        R,
        "Where a running tunnel keeps its state (the watchdog's state file and control socket) and its log, per target:",
    )]),
    TargetStateAndLog,
    Para,
    Text(&[
        (B, "tunnelctl stop"),
        (
            R,
            " on inittab and BusyBox comments the entry out (a # before its line) and has init reread /etc/inittab, so init no longer respawns it, also after a reboot; ",
        ),
        (B, "start"),
        (R, " takes the # away, "),
        (B, "install"),
        (R, " writes the entry back as it should be."),
    ]),
    Heading("EXIT STATUS"),
    Entries(
        B,
        R,
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
    ),
    Para,
    Text(&[
        (B, "tunnelctl status"),
        (R, " exits as "),
        (B, "systemctl is-active"),
        (
            R,
            " does, so scripts and monitors can test it (the worst selected tunnel decides):",
        ),
    ]),
    Entries(
        B,
        R,
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
    ),
    Heading("STATUS JSON"),
    Text(&[
        (B, "tunnelctl status --json"),
        (R, " prints one object: "),
        (B, "{\"schema\": 1, \"tunnels\": [...]}"),
        (R, ". "),
        (B, "schema"),
        (
            R,
            " is raised only when a key is removed or changes meaning; new keys may appear within a schema, so check it and ignore keys you do not know. \
(tunnelctl 0.1.0 printed the bare array, without a schema; a script written for it now fails loudly, e.g. jq: Cannot index object with number. Use ",
        ),
        (B, ".tunnels[]"),
        (R, " instead of "),
        (B, ".[]"),
        (
            R,
            ".) Times are unix seconds, 0 meaning never. Each tunnel has:",
        ),
    ]),
    Entries(
        B,
        R,
        &[
            (
                "name, target",
                "The tunnel and the init system looked at (null with --state-dir and no --target).",
            ),
            (
                "state",
                "The watchdog's state while it runs (connecting, up, degraded, backing-off, failed), else stopped: the same word metrics exports. Why a tunnel is stopped (its watchdog died, it never ran, what systemd says) is in problem and the table's LAST ERROR.",
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
                "One object per forward, in ssh's order: spec (as ssh was given it, e.g. -L 127.0.0.1:8080:intranet:80), target (intranet:80, or null for -D), health (up, target-down, port-held, unproven or failed; unproven whenever the watchdog is not running, as in metrics), last_health (the health the state file last recorded), since (its last change), latency_ms (its last probe, 0: none).",
            ),
            (
                "init",
                "systemd's view (active_state, sub_state, n_restarts, status_text), or null.",
            ),
            ("problem", "Why there is no state, or null."),
        ],
    ),
    Heading("METRICS"),
    Text(&[
        (B, "tunnelctl metrics"),
        (
            R,
            " prints the Prometheus text exposition format (0.0.4) of every selected tunnel, from the state files status reads: ",
        ),
        (B, "tunnelctl_tunnel_up"),
        (R, ", "),
        (B, "tunnelctl_tunnel_degraded"),
        (R, ", "),
        (B, "tunnelctl_tunnel_state"),
        (R, " (label state), "),
        (B, "tunnelctl_forward_up"),
        (R, " and "),
        (B, "tunnelctl_forward_probe_latency_seconds"),
        (R, " (label forward), the counters "),
        (B, "tunnelctl_restarts_total"),
        (R, " and "),
        (B, "tunnelctl_reconnects_total"),
        (R, ", "),
        (B, "tunnelctl_state_seconds"),
        (R, ", "),
        (B, "tunnelctl_backoff_remaining_seconds"),
        (R, ", "),
        (B, "tunnelctl_last_probe_ok_timestamp_seconds"),
        (R, " and "),
        (B, "tunnelctl_last_network_event_timestamp_seconds"),
        (
            R,
            "; every sample has the label tunnel. A tunnel whose watchdog is not running is exported as stopped, whatever its last state file said. \
For node_exporter's textfile collector, write it to a temporary name and rename it into the collector's directory (node_exporter reads only *.prom files), or let each watchdog write its own file with ",
        ),
        (B, "--metrics-file"),
        (R, "."),
    ]),
    Heading("IMPORTING"),
    Text(&[
        (B, "tunnelctl import"),
        (
            R,
            " reads a tunnel you already run and prints it as a tunnels.yaml entry: an ssh or autossh command line after ",
        ),
        (B, "--"),
        (
            R,
            " (every -L/-R/-D form, -p, -l, user@host, -i, -J, -o Key=Value or \"Key Value\", -C; a ",
        ),
        (I, "while true; do ssh ...; done"),
        (R, " loop given as one word), a systemd unit's ExecStart= ("),
        (B, "--systemd"),
        (
            R,
            "; systemd's quoting, specifiers, Environment= and EnvironmentFile=, template instances), /etc/inittab respawn lines (",
        ),
        (B, "--scan inittab"),
        (
            R,
            "; SysV or BusyBox, through /bin/sh -c when the line has shell characters as init does) or ssh_config Host blocks with forwards (",
        ),
        (B, "--ssh-config"),
        (R, ")."),
    ]),
    Para,
    Text(&[(
        R,
        "What cannot be carried over is listed as a comment beside the tunnel and on standard error, with why and what tunnelctl does instead: a remote command (a tunnel runs none), -f (the watchdog must stay ssh's parent), autossh's -M and AUTOSSH_* settings (the watchdog probes every forward itself), and options refused for safety such as StrictHostKeyChecking=no (pin the key with tunnelctl trust). \
Every value goes through the checks of a hand-written file; a refused one is reported against the part of the command or file it came from, and nothing is written.",
    )]),
    Para,
    Text(&[
        (R, "With "),
        (B, "--write"),
        (
            R,
            " the entries are added at the end of the configuration's tunnels: mapping, every other byte kept; a name already there is refused (",
        ),
        (B, "--name"),
        (
            R,
            " picks another). With no configuration yet, the file is created where check looks for it, with a comment header.",
        ),
    ]),
    Para,
    Text(&[
        (B, "--replace"),
        (
            R,
            " hands a running tunnel over without leaving the machine unreachable: tunnelctl's service is installed without starting, the old one stopped (the unit, the inittab line commented out with a #tunnelctl-replaced:NAME: marker, or the process named by ",
        ),
        (B, "--pid"),
        (
            R,
            "), the new one started and waited for until proven; if it is not proven within ",
        ),
        (B, "--handover-timeout"),
        (
            R,
            ", it is stopped and removed and the old service started again exactly as it was. ",
        ),
        (B, "--undo NAME"),
        (
            R,
            " later removes tunnelctl's tunnel and brings the old service back.",
        ),
    ]),
    Heading("MANY MACHINES"),
    Text(&[
        (B, "tunnelctl apply"),
        (
            R,
            " makes the machine (or --root DIR) match its configuration for the detected or given target: tunnels new in the file are installed and started, changed ones rewritten and restarted, unchanged ones not touched (not restarted), and tunnels tunnelctl installed that are gone from the file are stopped and removed. \
Installed tunnels are recognised only by tunnelctl's own file names together with its markers (the \"Generated by tunnelctl\" header of units and args files, the plist's org.tunnelctl label, the marker line in /etc/inittab); a file without the marker is never removed or overwritten. \
It prints one line per tunnel: added, changed, unchanged or removed.",
        ),
    ]),
    Para,
    Text(&[
        (
            R,
            "The whole plan is computed and checked before anything is written: a configuration with a problem (a file cut off by a failed copy) is refused with FILE:LINE:COL and nothing changes. Removing more than half of the installed tunnels needs ",
        ),
        (B, "--prune-many"),
        (
            R,
            ". Two apply runs on one machine take turns (a lock beside the service files). Each tunnel is applied atomically through install's own path; when one fails, the others are still applied and the failed one is named, left as it was (or, when only its restart failed, with its new files), and the exit status is 1. ",
        ),
        (B, "--dry-run"),
        (R, " computes the same plan and diff and changes nothing. "),
        (B, "--detailed-exitcode"),
        (
            R,
            " exits 2 when something changed (or would) and 0 when nothing did, as terraform plan -detailed-exitcode does; any failure is then 1.",
        ),
    ]),
    Para,
    Text(&[
        (B, "--json"),
        (R, " prints one object for configuration engines: "),
        (B, "changed"),
        (
            R,
            " (true when something was changed, or would be under --dry-run), ",
        ),
        (B, "failed"),
        (R, ", "),
        (B, "dry_run"),
        (R, ", "),
        (B, "target"),
        (R, ", "),
        (B, "message"),
        (R, " (a one-line summary), "),
        (B, "counts"),
        (R, " (added, changed, unchanged, removed), "),
        (B, "tunnels"),
        (
            R,
            " (per tunnel: name, action, diff, error, left_as_it_was) and ",
        ),
        (B, "diff"),
        (
            R,
            ", the unified diff of every file written or that would be (a removed file diffs to /dev/null). A refused configuration still prints an object, with failed true and the diagnostics under details. examples/ansible/ in the source holds a role that templates tunnels.yaml and reads this object (changed_when; --check runs apply --dry-run).",
        ),
    ]),
    Para,
    Text(&[
        (B, "tunnelctl check FILE... | DIR"),
        (
            R,
            " checks a fleet's files together, one per host (a directory holds HOST.yaml files; anything else in it is an error naming it). Each file gets every check but the identity and known_hosts files, which are on the hosts; then every remote listener (server, bind address, port) that two files claim is reported with both files and lines: whichever box connects second would get \"remote port forwarding failed\".",
        ),
    ]),
    Heading("EXAMPLES"),
    Example(
        "Make this machine match tunnels.yaml, for an engine that reads JSON and wants exit code 2 for \"changed\":",
        "tunnelctl apply --json --detailed-exitcode",
    ),
    Example(
        "What would change, without changing it:",
        "tunnelctl apply --dry-run",
    ),
    Example(
        "Before pushing a fleet's files: a remote port claimed by two hosts on one bastion:",
        "tunnelctl check fleet/",
    ),
    Example(
        "Start from the ssh command you already type:",
        "tunnelctl import --write -- ssh -N -R 1234:localhost:22 me@server",
    ),
    Example(
        "See what an autossh line becomes, and what is not carried over:",
        "tunnelctl import -- autossh -M 20000 -f -N server -R 1234:localhost:22 -C",
    ),
    Example(
        "Every tunnel that systemd units or /etc/inittab run:",
        "tunnelctl import --scan systemd; tunnelctl import --scan inittab",
    ),
    Example("Check the configuration:", "tunnelctl check"),
    Example(
        "See the systemd unit for a tunnel:",
        "tunnelctl render work-tunnel --target systemd",
    ),
    Example(
        "Install and start it with the detected init system:",
        "tunnelctl install work-tunnel",
    ),
    Example(
        "On macOS, as a LaunchAgent of the logged-in user:",
        "tunnelctl install work-tunnel --target launchd-agent",
    ),
    Example(
        "Each forward's health, since when, and its last probe's latency:",
        "tunnelctl status -v",
    ),
    Example(
        "Alert unless the tunnel is up (1 down, 3 degraded):",
        "tunnelctl status work-tunnel >/dev/null || echo \"work-tunnel: exit $?\"",
    ),
    Example(
        "Every minute from cron, for node_exporter's textfile collector (Debian's directory):",
        "d=/var/lib/prometheus/node-exporter; tunnelctl metrics >$d/tunnelctl.prom.tmp && mv $d/tunnelctl.prom.tmp $d/tunnelctl.prom",
    ),
    SeeAlso(&[
        ("tunnel-watchdog", "1"),
        ("tunnels.yaml", "5"),
        ("ssh", "1"),
        ("ssh_config", "5"),
        ("systemd.service", "5"),
        ("inittab", "5"),
    ]),
];

/// `tunnel-watchdog(1)` after its options: the contract from docs/design.md that init
/// systems rely on.
pub(super) const WATCHDOG: &[Block] = &[
    Heading("ARGUMENTS FILE"),
    Text(&[
        (R, "With "),
        (B, "--args-file"),
        (
            R,
            " the watchdog reads exactly the arguments that would follow its name, one per line; \
leading lines that start with # are comments. ",
        ),
        (
            R,
            "The inittab and BusyBox targets use it, because their process field must stay short and free of shell characters.",
        ),
    ]),
    Heading("EXIT STATUS"),
    Entries(
        B,
        R,
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
                "ssh failed permanently for now (authentication, host key, or `ssh` is Dropbear's client, not OpenSSH): restart, but the persisted back-off is at its maximum, so the next start waits it out first.",
            ),
        ],
    ),
    Heading("SIGNALS"),
    Entry(
        &[(B, "SIGTERM"), (R, ", "), (B, "SIGINT")],
        &[(
            R,
            "Stop ssh (SIGTERM to its process group, SIGKILL after a grace period) and exit 0.",
        )],
    ),
    Entry(
        &[(B, "SIGHUP"), (R, ", "), (B, "SIGUSR1")],
        &[
            (
                R,
                "Reconnect now: restart ssh without waiting for the back-off (what ",
            ),
            (B, "tunnelctl reconnect"),
            (R, " asks for)."),
        ],
    ),
    Heading("ENVIRONMENT"),
    Entries(
        B,
        R,
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
    ),
    Heading("FILES"),
    Entries(
        I,
        R,
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
    ),
    Para,
    Text(&[(
        R,
        "Run by hand, the watchdog is its own only supervisor: it reconnects ssh for as long as it runs, but when it exits (a configuration error, a signal, a failure it reports with its exit status) nothing starts it again. Keep it under an init system (tunnelctl install), or in a restart loop: while :; do tunnel-watchdog --args-file FILE; sleep 5; done.",
    )]),
    SeeAlso(&[
        ("tunnelctl", "1"),
        ("tunnels.yaml", "5"),
        ("ssh", "1"),
        ("systemd.service", "5"),
        ("sd_notify", "3"),
    ]),
];
