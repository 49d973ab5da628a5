//! Tunnels people already run, read from where they run them, as tunnels.yaml entries.
//! Pure: the command (`commands/import.rs`) reads the files and hands their text here.
//!
//! - `ssh_args.rs`: an `ssh …` or `autossh …` argv, as ssh's own parser reads it
//! - `shell.rs`: a `/bin/sh -c` script (an inittab line, a `while true; do ssh …; done` loop)
//! - `systemd_unit.rs`: a unit's `ExecStart=` with systemd's quoting, specifiers, environment
//! - `inittab.rs`: `respawn` lines, SysV and BusyBox
//! - `ssh_config.rs`: `Host` blocks with forwards
//! - `yaml_out.rs`: a found tunnel as YAML (with what was not carried over as comments),
//!   and added to an existing file keeping every other byte
//!
//! Every value keeps the part of the source it came from, so a value the configuration
//! check refuses is reported against what the user wrote, not against generated YAML.

pub mod inittab;
pub mod shell;
pub mod ssh_args;
pub mod ssh_config;
pub mod systemd_unit;
pub mod yaml_out;

/// A value and the part of the source it came from (`-R 1234:localhost:22`, `Port 2222`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub part: String,
}

impl Sourced {
    pub fn new(value: impl Into<String>, part: impl Into<String>) -> Sourced {
        Sourced {
            value: value.into(),
            part: part.into(),
        }
    }
}

/// A forward in tunnels.yaml's terms; strings, so the configuration check judges them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardSpec {
    Local {
        bind: Option<String>,
        port: String,
        to: String,
    },
    Remote {
        bind: Option<String>,
        port: String,
        to: String,
    },
    Dynamic {
        bind: Option<String>,
        port: String,
    },
}

/// Something of the source that tunnelctl does not carry over: which part, why, and
/// what tunnelctl does instead (one sentence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub part: String,
    pub why: String,
}

/// One tunnel found in a source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The derived name (valid as a tunnel name), or the one `--name` gave.
    pub name: String,
    /// Where it was found, for messages: `the command line`, `/etc/inittab line 3`.
    pub source: String,
    /// The command as found (one line, for the YAML comment).
    pub command: String,
    pub host: Option<Sourced>,
    pub user: Option<Sourced>,
    pub port: Option<Sourced>,
    pub identity: Option<Sourced>,
    pub known_hosts: Option<Sourced>,
    pub jump: Option<Sourced>,
    pub forwards: Vec<(ForwardSpec, String)>,
    /// `-o` options carried over as `ssh_options`, in order: (key, value).
    pub ssh_options: Vec<(String, Sourced)>,
    pub keepalive_interval: Option<Sourced>,
    pub keepalive_count: Option<Sourced>,
    pub connect_timeout: Option<Sourced>,
    pub notes: Vec<Note>,
    /// For a tunnel found in /etc/inittab: its line as it is there (what a handover
    /// comments out and restores).
    pub inittab_line: Option<String>,
}

impl Found {
    pub fn note(&mut self, part: impl Into<String>, why: impl Into<String>) {
        let note = Note {
            part: part.into(),
            why: why.into(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Why a source could not be imported, naming the part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportError {
    pub part: String,
    pub message: String,
}

impl ImportError {
    pub fn new(part: impl Into<String>, message: impl Into<String>) -> ImportError {
        ImportError {
            part: part.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.part.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.part, self.message)
        }
    }
}

/// A valid tunnel name from `raw` (a host, a unit, an inittab id): characters other
/// than letters, digits, `.`, `_`, `-` become `-`; no leading `-` or `.`; at most 64.
pub fn derive_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() || "._-".contains(c) {
            c
        } else {
            '-'
        };
        if c == '-' && name.ends_with('-') {
            continue;
        }
        name.push(c);
    }
    let name = name.trim_start_matches(['-', '.']).trim_end_matches('-');
    let name: String = name.chars().take(64).collect();
    if name.is_empty() {
        "imported".to_string()
    } else {
        name
    }
}

/// Makes every name unique among `taken` and each other: `name`, `name-2`, `name-3`…
pub fn unique_names(found: &mut [Found], taken: &[String]) {
    let mut used: Vec<String> = taken.to_vec();
    for f in found.iter_mut() {
        let base = f.name.clone();
        let mut n = 2;
        while used.contains(&f.name) {
            let suffix = format!("-{n}");
            let keep: String = base.chars().take(64 - suffix.len()).collect();
            f.name = format!("{keep}{suffix}");
            n += 1;
        }
        used.push(f.name.clone());
    }
}

/// The program a command word names, without its directory: `/usr/bin/autossh` → `autossh`.
pub fn program_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Whether `word` runs ssh or autossh.
pub fn is_tunnel_program(word: &str) -> bool {
    matches!(program_name(word), "ssh" | "autossh")
}

/// The ssh or autossh commands that `words` runs: itself; the script it hands to
/// `sh -c`; or, when it is one word with blanks (a loop pasted whole), that script.
pub fn tunnel_commands(words: &[String]) -> Result<Vec<shell::Command>, ImportError> {
    let script = match words {
        [one] if one.contains(char::is_whitespace) => Some(one.clone()),
        [sh, c, script, ..]
            if matches!(program_name(sh), "sh" | "bash" | "dash" | "ash") && c == "-c" =>
        {
            Some(script.clone())
        }
        _ => None,
    };
    let commands = match script {
        Some(script) => {
            shell::commands(&script).map_err(|m| ImportError::new(script.clone(), m))?
        }
        None => vec![shell::Command {
            words: words.to_vec(),
            env: Vec::new(),
            expanded: Vec::new(),
        }],
    };
    Ok(commands
        .into_iter()
        .filter(|c| is_tunnel_program(&c.words[0]))
        .collect())
}

/// Each ssh or autossh command as a found tunnel. A word the shell would expand is an
/// error: its value is only known when the script runs.
pub fn import_commands(
    commands: &[shell::Command],
    source: &str,
) -> Result<Vec<Found>, ImportError> {
    let mut out = Vec::new();
    for c in commands {
        if let Some(word) = c.expanded.first() {
            return Err(ImportError::new(
                word.clone(),
                "the shell expands this when the command runs, so its value is not known \
                 here; write the value out",
            ));
        }
        out.push(ssh_args::parse(&c.words, &c.env, source)?);
    }
    Ok(out)
}

/// A command as one readable line: words joined by spaces, quoted where the shell
/// would need it, control characters escaped (it goes into a YAML comment).
pub fn display_command(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell::quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        assert_eq!(derive_name("server"), "server");
        assert_eq!(derive_name("secure-tunnel@alpha"), "secure-tunnel-alpha");
        assert_eq!(derive_name("-.x y"), "x-y");
        assert_eq!(derive_name("%%"), "imported");
        assert_eq!(derive_name(&"a".repeat(80)).len(), 64);
        let mut found = vec![
            Found {
                name: "a".into(),
                ..Found::default()
            },
            Found {
                name: "a".into(),
                ..Found::default()
            },
        ];
        unique_names(&mut found, &["a".to_string()]);
        assert_eq!(found[0].name, "a-2");
        assert_eq!(found[1].name, "a-3");
    }
}
