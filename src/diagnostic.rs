//! Errors for humans: `FILE:LINE:COL: message`, the offending line with a caret
//! under the value, and a hint how to fix it. Pure: the caller passes the source text.

use std::fmt::Write as _;
use std::path::Path;

/// One problem at one place in a file. `line`/`column` are 1-based and count
/// characters; `line == 0` means the problem has no place (an unreadable file).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    /// How many characters to underline (at least one caret is drawn).
    pub width: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(line: usize, column: usize, width: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line,
            column,
            width,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with the file as a whole (not readable, empty, …).
    pub fn whole_file(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(0, 0, 0, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// `FILE:LINE:COL: message`, then the source line and a caret line, then `hint: …`.
    pub fn render(&self, path: &Path, source: &str) -> String {
        self.render_with_prefix(path, source, "")
    }

    /// Same as [`Diagnostic::render`] with `warning: ` before the message.
    pub fn render_warning(&self, path: &Path, source: &str) -> String {
        self.render_with_prefix(path, source, "warning: ")
    }

    /// [`Diagnostic::render`] (or, with `warning`, [`Diagnostic::render_warning`]) with the
    /// source already split into lines, so rendering many diagnostics of one file stays
    /// linear.
    pub fn render_in(&self, path: &Path, lines: &[&str], warning: bool) -> String {
        let line = self.line.checked_sub(1).and_then(|i| lines.get(i).copied());
        self.render_line(path, line, if warning { "warning: " } else { "" })
    }

    fn render_with_prefix(&self, path: &Path, source: &str, prefix: &str) -> String {
        let line = self.line.checked_sub(1).and_then(|i| source.lines().nth(i));
        self.render_line(path, line, prefix)
    }

    /// `line`: the text of line `self.line`, if the source has it.
    fn render_line(&self, path: &Path, line: Option<&str>, prefix: &str) -> String {
        let mut out = String::new();
        if self.line == 0 {
            let _ = write!(out, "{}: {prefix}{}", path.display(), self.message);
        } else {
            let _ = write!(
                out,
                "{}:{}:{}: {prefix}{}",
                path.display(),
                self.line,
                self.column,
                self.message
            );
            if let Some(text) = line {
                let number = self.line.to_string();
                let pad = " ".repeat(number.len());
                // Tabs keep their width in the caret line so the caret stays under the value.
                let text: String = text
                    .chars()
                    .map(|c| {
                        // A bidi control would reorder the line on the terminal.
                        if (c.is_control() && c != '\t') || unclean_kind(c).is_some() {
                            '?'
                        } else {
                            c
                        }
                    })
                    .collect();
                let lead: String = text
                    .chars()
                    .take(self.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let available = text
                    .chars()
                    .count()
                    .saturating_sub(self.column.saturating_sub(1));
                let width = self.width.min(available).max(1);
                let _ = write!(
                    out,
                    "\n {number} | {text}\n {pad} | {lead}{}",
                    "^".repeat(width)
                );
            }
        }
        if let Some(hint) = &self.hint {
            let _ = write!(out, "\n  hint: {hint}");
        }
        out
    }
}

/// What `c` is if systemd refuses it as "not UTF-8 clean" (a noncharacter: U+FDD0–FDEF,
/// U+xxFFFE/xxFFFF) or it makes text display other than it runs (a bidirectional
/// control: U+202A–202E, U+2066–2069, U+200E/200F, U+061C).
pub fn unclean_kind(c: char) -> Option<&'static str> {
    let n = u32::from(c);
    if (0xFDD0..=0xFDEF).contains(&n) || n & 0xFFFE == 0xFFFE {
        Some("a Unicode noncharacter")
    } else if matches!(n, 0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C) {
        Some("a bidirectional control")
    } else {
        None
    }
}

/// Edit distance (Levenshtein, case-insensitive), for did-you-mean suggestions.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_snippet_caret_and_hint() {
        let source = "tunnels:\n  a:\n    port: 70000\n";
        let d = Diagnostic::new(3, 11, 5, "port 70000 is outside 1-65535").with_hint("use 1-65535");
        let text = d.render(Path::new("t.yaml"), source);
        assert_eq!(
            text,
            "t.yaml:3:11: port 70000 is outside 1-65535\n 3 |     port: 70000\n   |           ^^^^^\n  hint: use 1-65535"
        );
    }

    #[test]
    fn rendering_from_split_lines_is_the_same() {
        let source = "a: 1\nb: 2\n";
        let lines: Vec<&str> = source.lines().collect();
        for d in [
            Diagnostic::new(2, 4, 1, "m").with_hint("h"),
            Diagnostic::new(9, 1, 1, "past the end"),
            Diagnostic::whole_file("w"),
        ] {
            let path = Path::new("f");
            assert_eq!(d.render_in(path, &lines, false), d.render(path, source));
            assert_eq!(
                d.render_in(path, &lines, true),
                d.render_warning(path, source)
            );
        }
    }

    #[test]
    fn whole_file_problem_has_no_position() {
        let d = Diagnostic::whole_file("cannot read: denied");
        assert_eq!(d.render(Path::new("x"), ""), "x: cannot read: denied");
        assert_eq!(
            d.render_warning(Path::new("x"), ""),
            "x: warning: cannot read: denied"
        );
    }

    #[test]
    fn caret_is_clamped_to_the_line() {
        let d = Diagnostic::new(1, 4, 50, "m");
        assert!(d.render(Path::new("f"), "ab: c").ends_with("|    ^^"));
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            closest("keepalvie", ["keepalive", "probe"]),
            Some("keepalive")
        );
        assert_eq!(closest("Host", ["host", "user"]), Some("host"));
        assert_eq!(closest("zzzzzz", ["host", "user"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
