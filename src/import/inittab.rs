//! `/etc/inittab` lines that respawn ssh or autossh, in SysV (`id:runlevels:action:process`)
//! or BusyBox (`tty::action:process`) syntax. Both run a process field that holds any of
//! ``~`!$^&*()=|\{}[];"'<>?`` as `/bin/sh -c "exec PROCESS"`, and split any other on
//! blanks. Pure.

use super::shell::{self, Command};

/// One inittab entry (not a comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    pub id: String,
    pub runlevels: String,
    pub action: String,
    pub process: String,
    /// The line as it is in the file.
    pub text: String,
}

/// The characters that make init run the process field through `/bin/sh -c`.
const SHELL_CHARS: &str = "~`!$^&*()=|\\{}[];\"'<>?";

/// Every well-formed entry of `text`, in file order.
pub fn entries(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                return None;
            }
            let mut fields = line.splitn(4, ':');
            let id = fields.next()?;
            let runlevels = fields.next()?;
            let action = fields.next()?;
            let process = fields.next()?;
            Some(Entry {
                line: i + 1,
                id: id.trim().to_string(),
                runlevels: runlevels.trim().to_string(),
                action: action.trim().to_string(),
                process: process.to_string(),
                text: line.to_string(),
            })
        })
        .collect()
}

/// The commands init runs for `process`.
pub fn commands(process: &str) -> Result<Vec<Command>, String> {
    // SysV's `+` (no utmp) and BusyBox's `-` (a login shell) are not part of the command.
    let process = process
        .trim_start()
        .strip_prefix('+')
        .or_else(|| process.trim_start().strip_prefix('-'))
        .unwrap_or(process.trim_start());
    if process.chars().any(|c| SHELL_CHARS.contains(c)) {
        return shell::commands(&format!("exec {process}"));
    }
    let words: Vec<String> = process.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Command {
        words,
        env: Vec::new(),
        expanded: Vec::new(),
    }])
}

/// Whether an entry is kept running by init and runs ssh or autossh.
pub fn runs_tunnel(entry: &Entry) -> bool {
    entry.action == "respawn"
        && commands(&entry.process)
            .map(|c| c.iter().any(|c| super::is_tunnel_program(&c.words[0])))
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_line_with_quotes_goes_through_the_shell() {
        let text = "# x\nid:2:initdefault:\ntun1:2345:respawn:/usr/bin/ssh -f -N -o \"ServerAliveInterval 180\" -R 55002:localhost:22 user@publicip 'sleep 365d'\n::respawn:/usr/bin/autossh -M 0 -N -L 1:h:2 box\n";
        let e = entries(text);
        assert_eq!(e.len(), 3);
        assert!(!runs_tunnel(&e[0]));
        assert!(runs_tunnel(&e[1]) && runs_tunnel(&e[2]));
        let c = commands(&e[1].process).unwrap();
        assert_eq!(
            c[0].words[3..=5],
            ["-o", "ServerAliveInterval 180", "-R"].map(String::from)
        );
        assert_eq!(c[0].words.last().unwrap(), "sleep 365d");
        assert_eq!(e[2].id, "");
        assert_eq!(commands(&e[2].process).unwrap()[0].words.len(), 7);
    }
}
