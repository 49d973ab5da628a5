//! Just enough of the POSIX shell to find the ssh in a script: quoting (`'…'`, `"…"`,
//! `\`), comments, operators (`;`, `&&`, `||`, `|`, `&`, newlines), redirections,
//! reserved words (a `while true; do ssh …; sleep 15; done` loop), assignments and
//! `exec`/`env`/`nohup` before the program. Words the shell would expand (`$VAR`,
//! `` `…` ``, `$(…)`) are marked: their value is only known when the script runs. Pure.

/// One simple command of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The program and its arguments, after assignments and `exec`/`env`/`nohup`.
    pub words: Vec<String>,
    /// `NAME=value` assignments before the program (or given to `env`).
    pub env: Vec<(String, String)>,
    /// Words (as written) that the shell would expand.
    pub expanded: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A word after quote removal, whether the shell would expand part of it, and its
    /// text as written.
    Word(String, bool, String),
    Operator,
    Redirection,
}

const RESERVED: &[&str] = &[
    "while", "until", "if", "then", "else", "elif", "do", "done", "fi", "!", "{", "}",
];
const WRAPPERS: &[&str] = &["exec", "nohup", "command", "setsid", "nice"];

/// A word as the shell would need it written to mean itself.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-~".contains(c))
    {
        return word.to_string();
    }
    if word.chars().any(char::is_control) {
        return format!("{word:?}");
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The simple commands of `script`, in order.
pub fn commands(script: &str) -> Result<Vec<Command>, String> {
    let tokens = tokens(script)?;
    let mut out = Vec::new();
    let mut current: Vec<(String, bool, String)> = Vec::new();
    let mut skip_next_word = false;
    for token in tokens.into_iter().chain([Token::Operator]) {
        match token {
            Token::Word(w, expanded, raw) => {
                if skip_next_word {
                    skip_next_word = false;
                } else {
                    current.push((w, expanded, raw));
                }
            }
            Token::Redirection => skip_next_word = true,
            Token::Operator => {
                if let Some(c) = simple_command(std::mem::take(&mut current)) {
                    out.push(c);
                }
            }
        }
    }
    Ok(out)
}

fn simple_command(mut words: Vec<(String, bool, String)>) -> Option<Command> {
    while words
        .first()
        .is_some_and(|(w, _, _)| RESERVED.contains(&w.as_str()))
    {
        words.remove(0);
    }
    if words
        .first()
        .is_some_and(|(w, _, _)| w == "for" || w == "case" || w == "in")
    {
        return None;
    }
    let mut env = Vec::new();
    while let Some((w, _, _)) = words.first() {
        if let Some((name, value)) = assignment(w) {
            env.push((name, value));
            words.remove(0);
        } else if WRAPPERS.contains(&w.as_str()) || w == "env" {
            words.remove(0);
        } else {
            break;
        }
    }
    if words.is_empty() {
        return None;
    }
    let expanded = words
        .iter()
        .filter(|(_, e, _)| *e)
        .map(|(_, _, raw)| raw.clone())
        .collect();
    Some(Command {
        words: words.into_iter().map(|(w, _, _)| w).collect(),
        env,
        expanded,
    })
}

/// `NAME=value` with a shell variable name.
fn assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

fn tokens(script: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut word = String::new();
    let mut raw = String::new();
    let mut in_word = false;
    let mut expanded = false;
    macro_rules! end_word {
        () => {
            if in_word {
                out.push(Token::Word(
                    std::mem::take(&mut word),
                    expanded,
                    std::mem::take(&mut raw),
                ));
                in_word = false;
                expanded = false;
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word!();
                i += 1;
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                end_word!();
                out.push(Token::Operator);
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '<' | '>' => {
                // A file descriptor number right before belongs to the redirection.
                if in_word && !word.is_empty() && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    raw.clear();
                    in_word = false;
                }
                end_word!();
                if chars.get(i + 1) == Some(&'<') && c == '<' {
                    return Err("a here-document (`<<`) is beyond what tunnelctl reads".into());
                }
                i += 1;
                while i < chars.len() && matches!(chars[i], '>' | '&' | '|') {
                    i += 1;
                }
                out.push(Token::Redirection);
            }
            '\'' => {
                in_word = true;
                raw.push(c);
                i += 1;
                loop {
                    match chars.get(i) {
                        Some('\'') => break,
                        Some(&c) => {
                            word.push(c);
                            raw.push(c);
                        }
                        None => return Err("a `'` is not closed".into()),
                    }
                    i += 1;
                }
                raw.push('\'');
                i += 1;
            }
            '"' => {
                in_word = true;
                raw.push(c);
                i += 1;
                loop {
                    match chars.get(i) {
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('$' | '`' | '"' | '\\')) => {
                            word.push(chars[i + 1]);
                            raw.push('\\');
                            raw.push(chars[i + 1]);
                            i += 1;
                        }
                        Some('\\') if chars.get(i + 1) == Some(&'\n') => i += 1,
                        Some(&c) => {
                            if c == '`' || (c == '$' && starts_expansion(chars.get(i + 1))) {
                                expanded = true;
                            }
                            word.push(c);
                            raw.push(c);
                        }
                        None => return Err("a `\"` is not closed".into()),
                    }
                    i += 1;
                }
                raw.push('"');
                i += 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&next) => {
                        in_word = true;
                        word.push(next);
                        raw.push('\\');
                        raw.push(next);
                    }
                    None => {}
                }
                i += 2;
            }
            c => {
                if c == '`' || (c == '$' && starts_expansion(chars.get(i + 1))) {
                    expanded = true;
                }
                in_word = true;
                word.push(c);
                raw.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        out.push(Token::Word(word, expanded, raw));
    }
    Ok(out)
}

fn starts_expansion(next: Option<&char>) -> bool {
    next.is_some_and(|c| c.is_ascii_alphanumeric() || "_{(@*#?$!-".contains(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_yields_its_ssh() {
        let c = commands(
            "while true; do ssh -N -R 1234:localhost:22 me@server; sleep 15; done >/dev/null 2>&1",
        )
        .unwrap();
        let programs: Vec<&str> = c.iter().map(|c| c.words[0].as_str()).collect();
        assert_eq!(programs, ["true", "ssh", "sleep"]);
        assert_eq!(c[1].words.len(), 5);
    }

    #[test]
    fn quoting_assignments_and_expansions() {
        let c = commands(
            r#"exec env AUTOSSH_POLL=30 autossh -o "ServerAliveInterval 180" 'a b'\ c "x\"y" $HOST # done"#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].env, [("AUTOSSH_POLL".into(), "30".into())]);
        assert_eq!(
            c[0].words,
            [
                "autossh",
                "-o",
                "ServerAliveInterval 180",
                "a b c",
                "x\"y",
                "$HOST"
            ]
        );
        assert_eq!(c[0].expanded, ["$HOST"]);
        assert!(commands("echo 'x").is_err());
        assert!(commands("cat <<EOF").is_err());
    }

    #[test]
    fn quote_round_trips_readably() {
        assert_eq!(quote("sleep 365d"), "'sleep 365d'");
        assert_eq!(quote("-R1234:localhost:22"), "-R1234:localhost:22");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
