//! Paths handed to ssh so that it opens exactly that file. Pure.
//!
//! ssh treats the value of a path option in two ways that can change it:
//! - `-o Key=VALUE` goes through its config-line parser, which splits at whitespace
//!   (`-o ControlPath=/a b/ctl` fails: "extra arguments at end of line"; for
//!   UserKnownHostsFile it silently means two files), ends at a `#` that starts a word,
//!   and takes `"`, `'` and `\` as quoting. A double-quoted value, with `"` and any
//!   backslash that would start an escape (`\\`, `\"`, `\'`) preceded by a backslash,
//!   is read back exactly (OpenSSH 8.7 and later; older ones honour the quotes but not
//!   backslash escapes, so backslashes are doubled only where needed).
//! - ControlPath, IdentityFile and UserKnownHostsFile expand `%` tokens after parsing
//!   (also for `-S` and `-i`): `%%` is a literal `%`. Their `${VAR}` expansion has no
//!   escape; `tunnelctl check` refuses `${` in those paths instead.
//!
//! Checked with `ssh -G` (OpenSSH 9.2): `-o 'ControlPath="/a b/c%%d"'` shows
//! `controlpath /a b/c%d`.

/// `%` written as `%%`, so ssh's token expansion gives back the path itself.
pub fn escape_tokens(path: &str) -> String {
    path.replace('%', "%%")
}

/// `value` as the value part of `-o Key=value`, quoted only when ssh would otherwise
/// split or reinterpret it, and with a backslash doubled only where it would start an
/// escape: plain paths, and systemd's `\xNN` in unit names (credential directories),
/// stay as they are, which older ssh (no backslash escapes) reads the same way.
pub fn option_value(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    // ssh's argv_split takes `\'`, `\"`, `\\` (and `\ ` outside quotes) as escapes.
    let escapes = |i: usize| matches!(chars.get(i + 1), Some('\\' | '"' | '\'') | None);
    let plain = !value.is_empty()
        && !value.starts_with('#')
        && !chars
            .iter()
            .enumerate()
            .any(|(i, &c)| c.is_whitespace() || c == '"' || c == '\'' || (c == '\\' && escapes(i)));
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for (i, &c) in chars.iter().enumerate() {
        // Inside double quotes: `"` ends the value, and a backslash before `\`, `"`,
        // `'` or the closing quote would escape it.
        if c == '"' || (c == '\\' && escapes(i)) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `Key=PATH` for one `-o` argument of a path option that expands `%` tokens
/// (ControlPath, IdentityFile, UserKnownHostsFile).
pub fn path_option(key: &str, path: &str) -> String {
    format!("{key}={}", option_value(&escape_tokens(path)))
}

/// A config value split into words as ssh's config-line parser (`argv_split`) does: at
/// spaces and tabs; `"…"` and `'…'` quote; `\` escapes a quote, a backslash or (outside
/// quotes) a space, and is kept before anything else; a `#` that starts a word starts a
/// comment, which ssh ignores with the rest of the line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigWords {
    pub words: Vec<String>,
    /// What ssh ignores, from the `#` on.
    pub comment: Option<String>,
}

/// `text` read as ssh reads a config value (see [`ConfigWords`]); `None` when a quote is
/// not closed (ssh refuses the line: "invalid quotes").
pub fn config_words(text: &str) -> Option<ConfigWords> {
    let mut out = ConfigWords::default();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(out);
        }
        if rest.starts_with('#') {
            out.comment = Some(rest.to_string());
            return Some(out);
        }
        let mut word = String::new();
        let mut quote = None;
        let mut chars = rest.char_indices().peekable();
        let mut end = rest.len();
        while let Some((at, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            match (c, quote) {
                ('\\', _)
                    if matches!(next, Some('\'' | '"' | '\\'))
                        || (quote.is_none() && next == Some(' ')) =>
                {
                    word.extend(chars.next().map(|(_, n)| n));
                }
                (' ' | '\t', None) => {
                    end = at;
                    break;
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, _) => word.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        out.words.push(word);
        rest = &rest[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_stay_plain() {
        assert_eq!(
            path_option("ControlPath", "/run/tunnelctl/x/ctl"),
            "ControlPath=/run/tunnelctl/x/ctl"
        );
        assert_eq!(
            path_option("UserKnownHostsFile", "/h/.ssh/known$hosts"),
            "UserKnownHostsFile=/h/.ssh/known$hosts"
        );
    }

    #[test]
    fn spaces_quotes_and_percent_are_disarmed() {
        assert_eq!(
            path_option(
                "ControlPath",
                "/Users/a/Library/Application Support/tunnelctl/a%db/ctl"
            ),
            "ControlPath=\"/Users/a/Library/Application Support/tunnelctl/a%%db/ctl\""
        );
        assert_eq!(
            path_option("IdentityFile", "/k/100%"),
            "IdentityFile=/k/100%%"
        );
        assert_eq!(option_value(r#"/a "b" \c"#), r#""/a \"b\" \c""#);
        assert_eq!(option_value(r"/a b\"), r#""/a b\\""#);
        assert_eq!(option_value(r"/a\\b"), r#""/a\\\b""#);
        // systemd's unit-name escapes in a credentials directory: left alone.
        assert_eq!(
            option_value(r"/run/credentials/tunnel-a\x25db.service/known_hosts"),
            r"/run/credentials/tunnel-a\x25db.service/known_hosts"
        );
        assert_eq!(option_value("/it's"), "\"/it's\"");
        assert_eq!(option_value("#x"), "\"#x\"");
        assert_eq!(option_value("/a#x"), "/a#x");
        assert_eq!(option_value(""), "\"\"");
        assert_eq!(option_value("/a\tb"), "\"/a\tb\"");
    }

    /// What ssh itself makes of our arguments: `ssh -G` prints the parsed ControlPath
    /// and UserKnownHostsFile after token expansion.
    #[test]
    fn ssh_reads_back_the_exact_path() {
        let test = "ssh_reads_back_the_exact_path";
        if !crate::test_prereq::require(
            test,
            crate::test_prereq::program("/usr/bin/ssh", "openssh-client"),
        ) {
            return;
        }
        let paths = [
            "/tmp/plain/ctl",
            "/Users/a b/Library/Application Support/tunnelctl/a%db/ctl",
            "/tmp/100%/%h %d %%/ctl",
            r#"/tmp/q"uo'te\s/#x/ctl"#,
            r"/run/credentials/tunnel-a\x25db.service/known_hosts",
            r"/tmp/back\\slash\'s end\",
        ];
        for path in paths {
            let out = std::process::Command::new("/usr/bin/ssh")
                .args(["-G", "-F", "/dev/null", "-o"])
                .arg(path_option("ControlPath", path))
                .arg("-o")
                .arg(path_option("UserKnownHostsFile", path))
                .arg("h.example")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let value = |key: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key}in:\n{stdout}"))
                    .to_string()
            };
            assert_eq!(value("controlpath "), path);
            assert_eq!(value("userknownhostsfile "), path);
        }
    }

    #[test]
    fn config_words_are_read_as_ssh_reads_them() {
        let words = |s: &str| config_words(s).map(|w| w.words);
        assert_eq!(words("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(words("\"a b\" 'c d'").unwrap(), ["a b", "c d"]);
        assert_eq!(words("A=\"x y\"z").unwrap(), ["A=x yz"]);
        assert_eq!(
            words(r#"a\ b c\"d e\\f g\h"#).unwrap(),
            ["a b", "c\"d", "e\\f", "g\\h"]
        );
        assert_eq!(words("\"\" x").unwrap(), ["", "x"]);
        assert_eq!(words("").unwrap(), Vec::<String>::new());
        assert_eq!(words("\"a b"), None);
        assert_eq!(words("a 'b"), None);
        let commented = config_words("a#b c #d e").unwrap();
        assert_eq!(commented.words, ["a#b", "c"]);
        assert_eq!(commented.comment.as_deref(), Some("#d e"));
        assert_eq!(config_words("\"#x\"").unwrap().words, ["#x"]);
        // What option_value writes is read back as the one word it was.
        for value in [
            "/a b/c",
            "it's",
            "q\"uote",
            "back\\slash\\",
            "#lead",
            "plain",
            "tab\tx",
        ] {
            assert_eq!(words(&option_value(value)).unwrap(), [value], "{value:?}");
        }
    }
}
