//! Escaping for the places a config value ends up in a service file. Pure functions;
//! each one is the only way a value may reach its destination.

/// Placeholder the systemd renderer hands to the ssh command builder for
/// "the credentials directory". It cannot come from the config (control characters are
/// refused there, and `render` refuses them again), so [`exec_word`] can safely turn it
/// into the one unescaped specifier we emit, `%d`.
pub const CREDENTIALS_DIR: &str = "\u{1}credentials\u{1}";

/// One word of an `ExecStart=` line, quoted per systemd.syntax(7) so systemd reads back
/// exactly `word`: specifiers (`%` → `%%`) and variables (`$` → `$$`) are disarmed, and
/// anything but a plain word is double-quoted with `\\` and `\"` escaped. A lone `;`
/// (the command separator) becomes `\;`. Non-ASCII passes through as UTF-8.
pub fn exec_word(word: &str) -> String {
    if word == ";" {
        return "\\;".to_string();
    }
    let plain = !word.is_empty()
        && word
            .replace(CREDENTIALS_DIR, "")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-$".contains(&b));
    let mut out = String::with_capacity(word.len() + 2);
    if !plain {
        out.push('"');
    }
    // Split on our placeholder so it alone becomes a live `%d`.
    let mut pieces = word.split(CREDENTIALS_DIR).peekable();
    while let Some(piece) = pieces.next() {
        for c in piece.chars() {
            match c {
                '%' => out.push_str("%%"),
                '$' => out.push_str("$$"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        if pieces.peek().is_some() {
            out.push_str("%d");
        }
    }
    if !plain {
        out.push('"');
    }
    out
}

/// A whole command line for `ExecStart=`: every word through [`exec_word`].
pub fn exec_line(argv: &[String]) -> String {
    argv.iter()
        .map(|w| exec_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A free-text unit setting such as `Description=`: only specifiers are live there.
pub fn unit_text(value: &str) -> String {
    value.replace('%', "%%")
}

/// `tunnel-NAME.service`, with bytes outside `[A-Za-z0-9:_.-]` written as `\xNN` the way
/// `systemd-escape` does (a leading `.` too). `-` stays literal: the name is not a path.
pub fn unit_name(name: &str) -> String {
    let mut out = String::from("tunnel-");
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b":_-".contains(&b) || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push_str(".service");
    out
}

/// A relative directory for `StateDirectory=`/`RuntimeDirectory=`. systemd splits those
/// settings into words, keeps backslashes, unquotes quotes and (since 250) reads `:` as a
/// symlink separator, so a name with any of those cannot be carried: refuse it.
pub fn unit_directory(dir: &str) -> Result<String, String> {
    if let Some(c) = dir
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\\\"':".contains(*c))
    {
        return Err(format!(
            "`{dir}` contains {c:?}, which systemd's StateDirectory= cannot hold; rename the tunnel \
             without spaces, quotes, backslashes or `:`"
        ));
    }
    if dir
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!("`{dir}` is not a plain relative directory"));
    }
    Ok(unit_text(dir))
}

/// The path half of `LoadCredential=ID:PATH`: taken verbatim after specifier expansion, and
/// systemd wants it absolute and normalized.
pub fn credential_path(path: &str) -> Result<String, String> {
    let normalized = path.starts_with('/')
        && !path.contains("//")
        && !path.ends_with('/')
        && !path.split('/').any(|part| part == "." || part == "..");
    if !normalized {
        return Err(format!(
            "`{path}` must be an absolute path without `.`, `..` or `//` for LoadCredential="
        ));
    }
    if path.trim() != path || path.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{path}` begins or ends with whitespace or holds a control character"
        ));
    }
    Ok(unit_text(path))
}

/// One entry of a space-separated path list (`ReadWritePaths=`, `ReadOnlyPaths=`):
/// `prefix` (`-`: a missing path is no error) and `path`, as systemd reads back exactly
/// one path. systemd splits such a value into words and unquotes each, so a path with
/// whitespace is double-quoted as a whole (`"-/srv/a b"`); quotes and backslashes, which
/// the unquoting would eat or turn into another path, are refused, as is anything
/// `LoadCredential=`'s paths refuse.
pub fn path_list_entry(prefix: &str, path: &str) -> Result<String, String> {
    let path = credential_path(path)?;
    if let Some(c) = path.chars().find(|c| "\\\"'".contains(*c)) {
        return Err(format!(
            "`{path}` contains {c:?}, which systemd's path lists (ReadWritePaths=) cannot hold; \
             use a path without quotes or backslashes"
        ));
    }
    if path.chars().any(char::is_whitespace) {
        Ok(format!("\"{prefix}{path}\""))
    } else {
        Ok(format!("{prefix}{path}"))
    }
}

/// Characters that make sysvinit and BusyBox init hand the process field to `/bin/sh -c`.
pub const INITTAB_SHELL_CHARS: &str = "~`!$^&*()=|\\{}[];\"'<>?";

/// sysvinit before 3.14 silently skips a line whose process field is longer than this.
pub const INITTAB_PROCESS_MAX: usize = 127;

/// Why `process` cannot go into an inittab line as it is, if it cannot.
pub fn inittab_process_problem(process: &str) -> Option<String> {
    if process.len() > INITTAB_PROCESS_MAX {
        return Some(format!(
            "the inittab command is {} bytes long; init ignores lines whose command exceeds {} bytes \
             (use a shorter --watchdog path)",
            process.len(),
            INITTAB_PROCESS_MAX
        ));
    }
    if let Some(c) = process.chars().find(|c| INITTAB_SHELL_CHARS.contains(*c)) {
        return Some(format!(
            "the inittab command contains `{c}`, which makes init run it through /bin/sh \
             (use a --watchdog path without any of {INITTAB_SHELL_CHARS})"
        ));
    }
    if let Some(c) = process
        .chars()
        .find(|c| c.is_control() || *c == '#' || *c == ':')
    {
        return Some(format!(
            "the inittab command contains {c:?}, which init would misread (use a plainer --watchdog path)"
        ));
    }
    None
}

/// One word for a POSIX shell script (`run` scripts, init.d scripts): the value in
/// single quotes, each `'` written `'\''`, so `$`, backquotes, `\`, `"`, globs and
/// blanks are plain characters. A control character (a newline would end the command)
/// is refused: a script is one command per line, and nothing from the config may start
/// another. The one function every value that reaches a shell script goes through.
pub fn sh_word(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{value:?} contains the control character {c:?}, which a shell script cannot carry safely; remove it"
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "'\\''")))
}

/// [`sh_word`] for a word a command takes as an operand (a path, a name): one starting
/// with `-` would be read as an option, so it is refused too.
pub fn sh_operand(value: &str) -> Result<String, String> {
    if value.starts_with('-') {
        return Err(format!(
            "{value:?} starts with `-`, which the command would read as an option; use a path or name that does not"
        ));
    }
    sh_word(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_character_stays_bare_and_every_control_is_escaped() {
        assert_eq!(exec_word("a_b@c+d=e:f,g./h-9"), "a_b@c+d=e:f,g./h-9");
        assert_eq!(exec_word("a$b%c"), "a$$b%%c");
        assert_eq!(exec_word(" "), "\" \"");
        assert_eq!(exec_word("a\u{1f}b"), "\"a\\x1fb\"");
        assert_eq!(exec_word("a\u{7f}b"), "\"a\\x7fb\"");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(
            exec_line(&["a".into(), "b c".into(), ";".into()]),
            "a \"b c\" \\;"
        );
    }

    #[test]
    fn unit_names_keep_what_systemd_escape_keeps() {
        assert_eq!(unit_name("a:b_c-D9"), "tunnel-a:b_c-D9.service");
        assert_eq!(unit_name("a/b"), "tunnel-a\\x2fb.service");
        assert_eq!(unit_name("a..b."), "tunnel-a..b..service");
    }

    #[test]
    fn state_directories_refuse_what_systemd_would_split_or_unquote() {
        assert_eq!(unit_directory("tunnelctl/work").unwrap(), "tunnelctl/work");
        assert_eq!(unit_directory("tunnelctl/50%").unwrap(), "tunnelctl/50%%");
        for bad in [
            "tunnelctl/a b",
            "tunnelctl/a\tb",
            "tunnelctl/a\\b",
            "tunnelctl/a\"b",
            "tunnelctl/a'b",
            "tunnelctl/a:b",
            "tunnelctl/a\u{1}b",
            "tunnelctl//a",
            "/tunnelctl/a",
            "tunnelctl/a/",
            "tunnelctl/./a",
            "tunnelctl/../a",
            "",
        ] {
            assert!(unit_directory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credential_paths_are_absolute_normalized_and_plain() {
        assert_eq!(credential_path("/etc/k 1").unwrap(), "/etc/k 1");
        assert_eq!(credential_path("/etc/50%").unwrap(), "/etc/50%%");
        assert_eq!(credential_path("/etc/a.b/..c").unwrap(), "/etc/a.b/..c");
        for bad in [
            "etc/k",
            "/etc//k",
            "/etc/k/",
            "/",
            "/etc/./k",
            "/etc/../k",
            "/etc/k ",
            "/etc/k\n",
            "/etc/\u{7f}k",
        ] {
            assert!(credential_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inittab_commands_at_the_boundaries() {
        let at_max = format!("/{}", "w".repeat(INITTAB_PROCESS_MAX - 1));
        assert_eq!(inittab_process_problem(&at_max), None);
        let over = format!("{at_max}x");
        assert!(
            inittab_process_problem(&over).is_some_and(|m| m.contains("128 bytes")),
            "{over}"
        );
        for c in INITTAB_SHELL_CHARS.chars() {
            let process = format!("/usr/bin/w{c}x");
            assert!(
                inittab_process_problem(&process).is_some_and(|m| m.contains("/bin/sh")),
                "{process}"
            );
        }
        for c in ['#', ':', '\t', '\u{7f}'] {
            let process = format!("/usr/bin/w{c}x");
            assert!(
                inittab_process_problem(&process).is_some_and(|m| m.contains("misread")),
                "{process:?}"
            );
        }
        assert_eq!(
            inittab_process_problem(
                "/usr/bin/tunnel-watchdog --args-file /etc/tunnelctl/run/t1.args"
            ),
            None
        );
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(
            exec_word("/usr/bin/tunnel-watchdog"),
            "/usr/bin/tunnel-watchdog"
        );
        assert_eq!(
            exec_word("ServerAliveInterval=15"),
            "ServerAliveInterval=15"
        );
    }

    #[test]
    fn specials_are_disarmed() {
        assert_eq!(exec_word("50%"), "50%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(exec_word("it's"), "\"it's\"");
        assert_eq!(exec_word(";"), "\\;");
        assert_eq!(exec_word("a;b"), "\"a;b\"");
        assert_eq!(exec_word(""), "\"\"");
        assert_eq!(exec_word("café"), "\"café\"");
        assert_eq!(exec_word("x\ny"), "\"x\\x0ay\"");
    }

    #[test]
    fn credentials_placeholder_becomes_specifier() {
        let word = format!("UserKnownHostsFile={CREDENTIALS_DIR}/known_hosts");
        assert_eq!(exec_word(&word), "UserKnownHostsFile=%d/known_hosts");
        let word = format!("{CREDENTIALS_DIR}/id 100%");
        assert_eq!(exec_word(&word), "\"%d/id 100%%\"");
    }

    #[test]
    fn unit_names_match_systemd_escape() {
        assert_eq!(unit_name("work-tunnel"), "tunnel-work-tunnel.service");
        assert_eq!(unit_name("a b"), "tunnel-a\\x20b.service");
        assert_eq!(unit_name("café"), "tunnel-caf\\xc3\\xa9.service");
        assert_eq!(unit_name("x.y"), "tunnel-x.y.service");
        assert_eq!(unit_name(".x"), "tunnel-\\x2ex.service");
        assert_eq!(unit_name("a\\b"), "tunnel-a\\x5cb.service");
    }

    #[test]
    fn path_list_entries_stay_one_path() {
        assert_eq!(path_list_entry("-", "/srv/m").unwrap(), "-/srv/m");
        assert_eq!(
            path_list_entry("-", "/srv/a /etc").unwrap(),
            "\"-/srv/a /etc\""
        );
        assert_eq!(path_list_entry("", "/srv/100%").unwrap(), "/srv/100%%");
        for bad in [
            "/srv/a\" /etc",
            "/srv/a' /etc",
            "/srv/a\\ /etc",
            "/a\nb",
            "srv",
            "/a/../b",
        ] {
            assert!(path_list_entry("-", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inittab_process_rules() {
        assert!(
            inittab_process_problem(
                "/usr/bin/tunnel-watchdog --args-file /etc/tunnelctl/run/t0ab.args"
            )
            .is_none()
        );
        assert!(
            inittab_process_problem("/opt/my$dir/w --args-file x")
                .unwrap()
                .contains("`$`")
        );
        assert!(
            inittab_process_problem(&format!("/{} x", "a".repeat(130)))
                .unwrap()
                .contains("127")
        );
    }

    /// Every hostile value comes back from `sh -c 'printf %s WORD'` byte for byte: the
    /// shell sees one word and expands nothing in it.
    #[test]
    fn sh_words_are_read_back_exactly_by_sh() {
        let hostile = [
            "plain",
            "",
            "it's",
            "''",
            "'\\''",
            "$HOME",
            "${IFS}x",
            "$(touch /tmp/pwned-by-tunnelctl)",
            "`id`",
            "a\"b\\c",
            "two  words and  spaces",
            "*",
            "; rm -rf /",
            "x & y | z > w",
            "ü€",
            "#not a comment",
            "~root",
        ];
        for value in hostile {
            let word = sh_word(value).unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {word}"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{value:?} as {word}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), value, "{word}");
        }
        assert!(!std::path::Path::new("/tmp/pwned-by-tunnelctl").exists());
    }

    #[test]
    fn sh_words_refuse_newlines_and_operands_refuse_options() {
        for bad in ["a\nb", "a\rb", "\0", "x\u{1b}[2J"] {
            assert!(sh_word(bad).is_err(), "{bad:?}");
        }
        assert!(sh_operand("-rf").unwrap_err().contains("option"));
        assert!(sh_operand("--help").is_err());
        assert_eq!(sh_operand("a-b").unwrap(), "'a-b'");
        assert_eq!(sh_word("-x").unwrap(), "'-x'");
        assert_eq!(sh_word("it's").unwrap(), "'it'\\''s'");
    }
}
