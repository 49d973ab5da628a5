//! `tunnelctl generate man|completions DIR`, the packager's hook (hidden from `--help`).
//!
//! Every page and completion script is built from the clap definitions the binaries
//! parse with, so they cannot drift from `--help`; the hand-written sections after them
//! (environment, files, exit status, …) are tables in `generate/prose.rs`. Only
//! `tunnels.yaml(5)` is a whole page of prose, kept in `packaging/man/` and compiled in
//! so that one command writes every page.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory, ValueEnum};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::Error;
use crate::cli::{Cli, GenerateArgs, GenerateWhat};
use crate::targets::Target;
use crate::watchdog::args;

mod prose;

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
        crate::outln!("{}", path.display());
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

/// Writes `tunnelctl.bash`, `_tunnelctl` and `tunnelctl.fish` into `dir`: clap's
/// scripts, with tunnel names added where a command takes one (`tunnelctl list --names`
/// asked at completion time, honouring `-c FILE` in bash and zsh). No crate feature is
/// needed for that: clap_complete's dynamic engine is still `unstable-dynamic` (and
/// would add two crates).
pub fn write_completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut cmd = public_command();
    let names = NameCompletion::of(&mut cmd);
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            let path = clap_complete::generate_to(shell, &mut cmd, "tunnelctl", dir)?;
            let text = fs::read_to_string(&path)?;
            fs::write(&path, names.add_to(shell, &text))?;
            Ok(path)
        })
        .collect()
}

/// Which commands take a tunnel name, and which options take a value (so a word after
/// one is not a name), read from the clap definitions.
struct NameCompletion {
    commands: Vec<String>,
    valued_options: Vec<String>,
}

impl NameCompletion {
    fn of(cmd: &mut Command) -> NameCompletion {
        cmd.build();
        let mut commands = Vec::new();
        let mut valued = std::collections::BTreeSet::new();
        let all_args = cmd
            .get_arguments()
            .chain(cmd.get_subcommands().flat_map(|s| s.get_arguments()));
        for arg in all_args {
            if arg.get_action().takes_values() && !arg.is_positional() {
                valued.extend(arg.get_long().map(|l| format!("--{l}")));
                valued.extend(arg.get_short().map(|s| format!("-{s}")));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_positionals().any(|a| a.get_id() == "name") {
                commands.push(sub.get_name().to_string());
            }
        }
        NameCompletion {
            commands,
            valued_options: valued.into_iter().collect(),
        }
    }

    /// `text` (clap's script for `shell`) with tunnel names offered (pure).
    fn add_to(&self, shell: Shell, text: &str) -> String {
        let commands = self.commands.join("|");
        let valued = self.valued_options.join("|");
        match shell {
            Shell::Bash => {
                // clap's function keeps its work under another name; `_tunnelctl`, the
                // one registered, offers names first.
                let clap = text.replacen("_tunnelctl() {", "_tunnelctl_clap() {", 1);
                let (body, registration) = match clap.rfind("\nif [[ \"${BASH_VERSINFO") {
                    Some(at) => clap.split_at(at),
                    None => (clap.as_str(), ""),
                };
                format!(
                    r#"{body}
# Tunnel names (from `tunnelctl list --names`) for the commands that take one.
_tunnelctl() {{
    local i cmd="" seen=0 config=()
    case "${{COMP_WORDS[COMP_CWORD-1]}}" in
        {valued}) _tunnelctl_clap "$@"; return ;;
    esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -c|--config) config=(--config "${{COMP_WORDS[i+1]}}"); ((i++)) ;;
            --config=*) config=("${{COMP_WORDS[i]}}") ;;
            {valued}) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=${{COMP_WORDS[i]}}; else seen=1; fi ;;
        esac
    done
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    case "$cmd" in
        {commands})
            if [[ $seen -eq 0 && $cur != -* ]]; then
                COMPREPLY=($(compgen -W "$(tunnelctl "${{config[@]}}" list --names 2>/dev/null)" -- "$cur"))
                [[ ${{#COMPREPLY[@]}} -gt 0 ]] && return 0
            fi ;;
    esac
    _tunnelctl_clap "$@"
}}
{registration}"#
                )
            }
            Shell::Zsh => {
                let mut out = String::new();
                for line in text.lines() {
                    let is_name = (line.starts_with("':name -- ")
                        || line.starts_with("'::name -- "))
                        && line.contains(":_default'");
                    if is_name {
                        out.push_str(&line.replacen(":_default'", ":_tunnelctl_names'", 1));
                    } else {
                        out.push_str(line);
                    }
                    out.push('\n');
                }
                let function = r#"(( $+functions[_tunnelctl_names] )) ||
_tunnelctl_names() {
    local -a names config
    local i=${words[(I)(-c|--config)]}
    (( i )) && config=(--config "${words[i+1]}")
    names=(${(f)"$(_call_program names tunnelctl $config list --names 2>/dev/null)"})
    _describe -t names 'tunnel' names
}

"#;
                match out.rfind("if [ \"$funcstack[1]\"") {
                    Some(at) => format!("{}{function}{}", &out[..at], &out[at..]),
                    None => out + function,
                }
            }
            Shell::Fish => {
                let mut out = text.to_string();
                out.push_str("# Tunnel names (from `tunnelctl list --names`) for the commands that take one.\n");
                for command in &self.commands {
                    out.push_str(&format!(
                        "complete -c tunnelctl -n \"__fish_tunnelctl_using_subcommand {command}\" -f -a \"(tunnelctl list --names 2>/dev/null)\" -d tunnel\n"
                    ));
                }
                out
            }
            _ => text.to_string(),
        }
    }
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

    let mut page = clap_sections(&man);
    page.push_str(&targets_and_commands_heading());
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        page.push_str(&command_subsection(cmd.get_name(), sub));
    }

    page.push_str(&prose::roff(prose::TUNNELCTL).render());
    page.push_str(&render(|w| man.render_version_section(w)));
    page
}

/// TARGETS, each `--target` value with its help (from [`Target`]), then the COMMANDS
/// heading its subsections follow.
fn targets_and_commands_heading() -> String {
    let mut r = prose::roff(prose::TARGETS_INTRO);
    for target in Target::ALL {
        let value = target.to_possible_value().expect("no target is skipped");
        r.control("TP", []);
        r.text([bold(value.get_name())]);
        r.text([roman(
            value.get_help().map(|h| h.to_string()).unwrap_or_default(),
        )]);
    }
    prose::write(&mut r, prose::TARGETS_DETECTION);
    prose::write(&mut r, prose::COMMANDS_INTRO);
    r.render()
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
    let mut page = clap_sections(&man);
    page.push_str(&prose::roff(prose::WATCHDOG).render());
    page.push_str(&render(|w| man.render_version_section(w)));
    page
}

/// The head of a page, from its clap definition: title, name, synopsis, description
/// and options.
fn clap_sections(man: &Man) -> String {
    let mut page = String::new();
    page.push_str(&render(|w| man.render_title(w)));
    page.push_str(&render(|w| man.render_name_section(w)));
    page.push_str(&render(|w| man.render_synopsis_section(w)));
    page.push_str(&render(|w| man.render_description_section(w)));
    page.push_str(&render(|w| man.render_options_section(w)));
    page
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
