//! `Host` blocks of an ssh_config file that declare forwards. For each host alias
//! named by a `Host` line (not a pattern), the options of every block that applies to
//! it are gathered as ssh does: in file order, the first value of an option wins,
//! forwards add up. `Match` blocks and `Include` are not followed (a note says so). Pure.

use super::ssh_args::option;
use super::{Found, derive_name};

/// One `Keyword value…` line: (1-based line number, keyword, value).
fn lines(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(line.len());
        let key = &line[..end];
        let rest = line[end..].trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
        out.push((i + 1, key.to_string(), rest.to_string()));
    }
    out
}

/// The words of a value; `"…"` keeps blanks.
fn words(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// ssh's pattern match: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    go(&p, &t)
}

/// Whether a `Host` line's patterns select `alias` (a negated match excludes it).
fn matches(patterns: &[String], alias: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated, alias) {
                return false;
            }
        } else if glob(p, alias) {
            hit = true;
        }
    }
    hit
}

/// Every tunnel the file declares, in the order their aliases first appear; only
/// aliases with at least one forward. `path` names the file in messages; `only`
/// limits it to one alias.
pub fn tunnels(text: &str, path: &str, only: Option<&str>) -> Vec<Found> {
    let lines = lines(text);
    let mut aliases: Vec<String> = Vec::new();
    for (_, key, value) in &lines {
        if key.eq_ignore_ascii_case("host") {
            for w in words(value) {
                if !w.contains(['*', '?', '!']) && !aliases.contains(&w) {
                    aliases.push(w);
                }
            }
        }
    }
    let mut out = Vec::new();
    for alias in aliases {
        if only.is_some_and(|o| o != alias) {
            continue;
        }
        let mut found = Found {
            source: format!("{path}, Host {alias}"),
            command: format!("Host {alias}"),
            ..Found::default()
        };
        // Before the first Host or Match line, options apply to every host.
        let mut applies = true;
        for (line_no, key, value) in &lines {
            let part = format!("{key} {value} (line {line_no})");
            if key.eq_ignore_ascii_case("host") {
                applies = matches(&words(value), &alias);
                continue;
            }
            if key.eq_ignore_ascii_case("match") {
                applies = false;
                found.note(
                    part,
                    "`Match` blocks are not evaluated; copy what applies into the tunnel by hand",
                );
                continue;
            }
            if !applies {
                continue;
            }
            if key.eq_ignore_ascii_case("include") {
                found.note(
                    part,
                    "included files are not read; copy what applies by hand",
                );
                continue;
            }
            let value = words(value).join(" ");
            option(&mut found, key, &value, &part);
        }
        if found.forwards.is_empty() {
            continue;
        }
        if found.host.is_none() {
            found.host = Some(super::Sourced::new(alias.clone(), format!("Host {alias}")));
        }
        found.name = derive_name(&alias);
        out.push(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ForwardSpec;

    #[test]
    fn host_blocks_with_forwards() {
        let text = "Host *\n  ServerAliveInterval 30\n  User nobody\n\nHost db !nope\n  HostName db.example.org\n  User deploy\n  LocalForward 5432 127.0.0.1:5432\n  LocalForward [::1]:15432 [::1]:5432\n\nHost plain\n  HostName p\n\nHost socks\n  DynamicForward 1080\n  RemoteForward 2222 localhost:22\n  StrictHostKeyChecking no\n";
        let t = tunnels(text, "cfg", None);
        let names: Vec<&str> = t.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["db", "socks"]);
        let db = &t[0];
        assert_eq!(db.host.as_ref().unwrap().value, "db.example.org");
        // `Host *` came first, so its User wins, as in ssh.
        assert_eq!(db.user.as_ref().unwrap().value, "nobody");
        assert_eq!(db.keepalive_interval.as_ref().unwrap().value, "30s");
        assert_eq!(
            db.forwards[1].0,
            ForwardSpec::Local {
                bind: Some("::1".into()),
                port: "15432".into(),
                to: "[::1]:5432".into()
            }
        );
        assert_eq!(t[1].forwards.len(), 2);
        assert_eq!(t[1].notes.len(), 1);
        assert!(tunnels(text, "cfg", Some("socks")).len() == 1);
    }
}
