//! One scalar at a time: tunnel names, hosts, users, jump hosts, ports, counts,
//! durations and paths. Each check reports at the value's position and returns
//! `None` (or `false`) when the value is refused.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::Cx;
use super::schema::Located;
use super::yaml::{Key, Loc, Node, Value};
use crate::diagnostic::unclean_kind;
use crate::duration::{MAX_DURATION, parse_duration, too_long};

/// Length of `tunnel-ESCAPED.service` when the name is escaped as systemd-escape does.
fn unit_name_len(name: &str) -> usize {
    let escaped: usize = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b":_.-".contains(&b) {
                1
            } else {
                4
            }
        })
        .sum();
    "tunnel-".len() + escaped + ".service".len()
}

impl Cx {
    pub(super) fn tunnel_name(&mut self, key: &Key) -> bool {
        let name = &key.text;
        let hint = "use 1-64 characters such as letters, digits, `-`, `_`, `.`; no `/`, spaces, quotes, backslashes, `:` or control characters, not starting with `-` or `.`";
        let problem = if name.is_empty() {
            Some("a tunnel name may not be empty".to_string())
        } else if name.chars().count() > 64 {
            Some(format!(
                "tunnel name is {} characters long; at most 64 are allowed",
                name.chars().count()
            ))
        } else if name.contains('/') {
            Some(format!(
                "tunnel name `{name}` contains `/`, which cannot be part of a unit or file name"
            ))
        } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some(format!(
                "tunnel name {name:?} contains whitespace or a control character"
            ))
        } else if let Some((i, c, kind)) = unclean_char(name) {
            Some(format!(
                "tunnel name {name:?} contains U+{:04X}, {kind}, at character {i}",
                u32::from(c)
            ))
        } else if name.starts_with('-') || name.starts_with('.') {
            Some(format!("tunnel name `{name}` starts with `{}`", &name[..1]))
        } else if let Some(c) = name.chars().find(|c| "\\\"':".contains(*c)) {
            // systemd's StateDirectory=/RuntimeDirectory= (where the watchdog keeps its
            // state) cannot carry these, so the name could never become a system unit.
            Some(format!(
                "tunnel name `{name}` contains {c:?}, which systemd's StateDirectory= cannot hold"
            ))
        } else if unit_name_len(name) > 255 {
            Some(format!(
                "tunnel name `{name}` makes a unit name longer than systemd's 255 characters once escaped"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.error(key.at, message, hint);
                false
            }
            None => true,
        }
    }

    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(_) | Value::Float(_) => node.scalar_text(),
            _ => {
                self.error(
                    node.at,
                    format!("`{what}` must be a string, found {}", node.kind()),
                    "",
                );
                None
            }
        }
    }

    /// A string that reaches ssh's command line: no control characters (one
    /// argument per line in args files, no header injection in units), no
    /// noncharacters or bidirectional controls (see [`unclean_char`]).
    pub(super) fn no_control(&mut self, at: Loc, value: &str, what: &str) -> bool {
        if value.chars().any(char::is_control) {
            self.error(
                at,
                format!("{what} {value:?} contains a control character (newline, tab, …)"),
                "remove it; values that reach the ssh command line must be one printable line",
            );
            return false;
        }
        if let Some((i, c, kind)) = unclean_char(value) {
            self.error(
                at,
                format!(
                    "{what} {value:?} contains U+{:04X}, {kind}, at character {i}",
                    u32::from(c)
                ),
                UNCLEAN_HINT,
            );
            return false;
        }
        true
    }

    /// host or jump hop: letters, digits, `.`, `-`, `_`, or an IP address. ssh reads a
    /// leading `-` as an option and ProxyJump pastes hosts into a shell command, so
    /// nothing else gets through.
    pub(super) fn host_like(&mut self, node: &Node, what: &str) -> Option<String> {
        let value = self.string(node, what)?;
        if !self.no_control(node.at, &value, &format!("`{what}`")) {
            return None;
        }
        if let Err(message) = check_host(&value) {
            self.error(
                node.at,
                format!("`{what}` {value:?} {message}"),
                host_hint(&value),
            );
            return None;
        }
        Some(value)
    }

    pub(super) fn user(&mut self, node: &Node) -> Option<String> {
        let value = self.string(node, "user")?;
        if !self.no_control(node.at, &value, "`user`") {
            return None;
        }
        if let Err(message) = check_user(&value) {
            self.error(
                node.at,
                format!("`user` {value:?} {message}"),
                "use the login name only, e.g. `user: alice`",
            );
            return None;
        }
        Some(value)
    }

    pub(super) fn jump(&mut self, node: &Node) -> Option<String> {
        let value = self.string(node, "jump")?;
        if !self.no_control(node.at, &value, "`jump`") {
            return None;
        }
        match check_jump(&value) {
            Ok(()) => Some(value),
            Err(message) => {
                self.error(
                    node.at,
                    format!("`jump` {value:?}: {message}"),
                    "write `[user@]host[:port]`, several separated by commas, e.g. `jump: alice@bastion.example.org:2222`",
                );
                None
            }
        }
    }

    pub(super) fn port(&mut self, node: &Node) -> Option<u16> {
        match node.value {
            Value::Int(n) if (1..=65535).contains(&n) => Some(n as u16),
            Value::Int(n) => {
                self.error(
                    node.at,
                    format!("port {n} is outside 1-65535"),
                    "use a TCP port number from 1 to 65535",
                );
                None
            }
            _ => {
                let shown = node
                    .scalar_text()
                    .map(|t| format!(" `{t}`"))
                    .unwrap_or_default();
                self.error(
                    node.at,
                    format!(
                        "a port must be a number from 1 to 65535, found {}{shown}",
                        node.kind()
                    ),
                    "write the number without quotes, e.g. `22`",
                );
                None
            }
        }
    }

    pub(super) fn count(&mut self, node: &Node, max: u32) -> Option<u32> {
        match node.value {
            Value::Int(n) if n >= 1 && n <= i128::from(max) => Some(n as u32),
            _ => {
                let shown = node
                    .scalar_text()
                    .unwrap_or_else(|| node.kind().to_string());
                self.error(
                    node.at,
                    format!(
                        "`{shown}` is not a valid count; it must be a whole number from 1 to {max}"
                    ),
                    "for example `3`",
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node, positive: bool) -> Option<Located<Duration>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(_) | Value::Float(_) => node.scalar_text().unwrap_or_default(),
            _ => {
                self.error(
                    node.at,
                    format!("expected a duration such as `15s`, found {}", node.kind()),
                    "",
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if positive && d.is_zero() => {
                self.error(
                    node.at,
                    format!("duration `{text}` must be longer than zero"),
                    "for example `500ms` or `15s`",
                );
                None
            }
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    node.at,
                    format!("duration {}", too_long(&text)),
                    "use at most `596h` (or `2147483s`)",
                );
                None
            }
            Ok(d) => Some(Located {
                value: d,
                at: node.at,
            }),
            Err(message) => {
                self.error(
                    node.at,
                    format!("bad duration: {message}"),
                    "durations are a whole number and a unit: `500ms`, `15s`, `5m`, `1h`",
                );
                None
            }
        }
    }

    pub(super) fn path(&mut self, node: &Node, what: &str) -> Option<Located<PathBuf>> {
        let text = self.string(node, what)?;
        if !self.no_control(node.at, &text, &format!("`{what}`")) {
            return None;
        }
        // A `%` is fine: the ssh command line writes it as `%%`. ssh splits
        // UserKnownHostsFile at whitespace, though.
        if what == "known_hosts" && text.chars().any(char::is_whitespace) {
            self.error(
                node.at,
                format!(
                    "`known_hosts` {text:?} contains whitespace; ssh would read it as several files"
                ),
                "use a path without spaces",
            );
            return None;
        }
        let expanded = if text == "~" {
            self.home.clone()
        } else if let Some(rest) = text.strip_prefix("~/") {
            self.home.join(rest)
        } else if text.starts_with('~') {
            self.error(
                node.at,
                format!("`{what}` {text:?}: only `~/` (your own home) is expanded"),
                "write the absolute path",
            );
            return None;
        } else if text.starts_with('/') {
            PathBuf::from(&text)
        } else {
            self.error(
                node.at,
                format!("`{what}` {text:?} is relative; services do not run in this directory"),
                "write an absolute path or one starting with `~/`",
            );
            return None;
        };
        // After `~/`: a home holding `${` would be expanded as well.
        if let Some(problem) = env_expansion(&expanded.to_string_lossy()) {
            self.error(
                node.at,
                format!("`{what}` {text:?} {problem}"),
                ENV_EXPANSION_HINT,
            );
            return None;
        }
        Some(Located {
            value: expanded,
            at: node.at,
        })
    }
}

// ---------------------------------------------------------------------------
// Pure checks

pub(super) const ENV_EXPANSION_HINT: &str = "rename the file or directory so its path has no `${`, or point at it through a symlink whose path has none";

/// ssh expands `${VAR}` in IdentityFile, UserKnownHostsFile, CertificateFile,
/// IdentityAgent and ControlPath from its own environment (a service's, not yours), and
/// has no escape for a literal `${`: such a path can only be refused.
pub(super) fn env_expansion(path: &str) -> Option<&'static str> {
    path.contains("${").then_some(
        "contains `${`, which ssh expands as an environment variable there (it has no escape for it)",
    )
}

const UNCLEAN_HINT: &str = "remove it: systemd drops a unit line holding a noncharacter (\"not UTF-8 clean\"), and a bidirectional control makes the text read differently from what runs";

/// The first character (1-based index, the character, what it is) that systemd refuses
/// or that displays other than it runs: see [`unclean_kind`].
pub(super) fn unclean_char(value: &str) -> Option<(usize, char, &'static str)> {
    value
        .chars()
        .enumerate()
        .find_map(|(i, c)| unclean_kind(c).map(|kind| (i + 1, c, kind)))
}

fn host_hint(value: &str) -> String {
    if let Some((user, _)) = value.split_once('@') {
        format!("put the user in its own key: `user: {user}`")
    } else if value.contains(':') && value.parse::<Ipv6Addr>().is_err() {
        "put the port in its own key: `port: 2222`".to_string()
    } else {
        "a host is a name such as `server.example.org` or an IP address".to_string()
    }
}

/// A DNS name or ssh_config alias: letters, digits, `.`, `-`, `_`, not starting with `-`.
pub(super) fn check_hostname(value: &str) -> Result<(), String> {
    check_plain_word(value, " in a host name")
}

fn check_host(value: &str) -> Result<(), String> {
    if value.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    check_hostname(value)
}

fn check_user(value: &str) -> Result<(), String> {
    check_plain_word(value, "")
}

/// Host and user names reach ssh's command line (and, through ProxyJump, a shell):
/// only letters, digits, `.`, `-`, `_`, and never a leading `-` (ssh would read an option).
fn check_plain_word(value: &str, place: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.starts_with('-') {
        return Err("starts with `-`, so ssh would read it as an option".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_".contains(*c)))
    {
        return Err(format!(
            "contains `{c}`; only letters, digits, `.`, `-` and `_` are allowed{place}"
        ));
    }
    Ok(())
}

/// ProxyJump: `[user@]host[:port]` hops separated by commas. ssh 9.2 builds a shell
/// command from it, so every piece is held to the strict host/user alphabets.
fn check_jump(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    for hop in value.split(',') {
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, hop),
        };
        if let Some(user) = user {
            check_user(user).map_err(|m| format!("user `{user}` {m}"))?;
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, tail) = inner
                .split_once(']')
                .ok_or_else(|| format!("`{hop}` has an unclosed `[`"))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
            match tail {
                "" => (h, None),
                t => (
                    h,
                    Some(
                        t.strip_prefix(':')
                            .ok_or_else(|| format!("unexpected `{t}` after `]`"))?,
                    ),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if !rest.starts_with('[') {
            check_hostname(host).map_err(|m| format!("host `{host}` {m}"))?;
        }
        if let Some(port) = port {
            match port.parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => {}
                _ => return Err(format!("port `{port}` is not a number from 1 to 65535")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::load;
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    /// The escaped unit name's length, as the real escaper writes it.
    #[test]
    fn unit_name_length_is_the_escaped_length() {
        for name in [
            "a",
            "work-tunnel",
            "a:b_c.d-9",
            "café",
            "a b",
            "x\u{1f}",
            "é".repeat(30).as_str(),
        ] {
            assert_eq!(
                unit_name_len(name),
                crate::escape::unit_name(name).len(),
                "{name:?}"
            );
        }
    }

    /// Every rule of a tunnel name, at its boundary.
    #[test]
    fn tunnel_names_at_their_boundaries() {
        let config = |name: &str| {
            load(&format!(
                "tunnels:\n  {name:?}:\n    host: h\n    forwards: [{{dynamic: 1}}]\n"
            ))
            .map(|c| c.tunnels[0].name.clone())
            .map_err(|e| format!("{e:?}"))
        };
        let refused = |name: &str, why: &str| {
            let err = config(name).expect_err(name);
            assert!(err.contains(why), "{name:?}: {err}");
        };
        assert_eq!(config(&"n".repeat(64)).unwrap(), "n".repeat(64));
        refused(&"n".repeat(65), "65 characters long");
        refused("", "may not be empty");
        refused("a/b", "contains `/`");
        refused("a b", "whitespace or a control character");
        refused("a\tb", "whitespace or a control character");
        refused("-a", "starts with `-`");
        refused(".a", "starts with `.`");
        for bad in ["a\\b", "a'b", "a:b", "a\"b"] {
            refused(bad, "StateDirectory=");
        }
        // 30 two-byte characters escape to exactly 255 characters; 31 to 263.
        assert!(config(&"é".repeat(30)).is_ok());
        refused(&"é".repeat(31), "longer than systemd's 255 characters");
        assert_eq!(config("a.b-c_d").unwrap(), "a.b-c_d");
    }

    #[test]
    fn tilde_expands_against_home() {
        let c = load("tunnels:\n  a:\n    host: h\n    known_hosts: ~/.ssh/kh\n    forwards: [{dynamic: 1}]\n").unwrap();
        assert_eq!(
            c.tunnels[0].known_hosts.as_deref(),
            Some(Path::new("/home/u/.ssh/kh"))
        );
        assert_eq!(
            c.warnings.len(),
            1,
            "missing known_hosts warns: {:?}",
            c.warnings
        );
    }

    #[test]
    fn unclean_characters_are_found() {
        assert_eq!(
            unclean_char("ab\u{202e}c").map(|(i, c, _)| (i, c)),
            Some((3, '\u{202e}'))
        );
        for c in [
            '\u{fdd0}',
            '\u{fdef}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{1fffe}',
            '\u{10ffff}',
            '\u{202a}',
            '\u{2069}',
            '\u{200e}',
            '\u{200f}',
            '\u{61c}',
        ] {
            assert!(unclean_char(&c.to_string()).is_some(), "{c:?}");
        }
        for ok in [
            "café_db",
            "\u{fdcf}",
            "\u{fdf0}",
            "\u{fffd}",
            "\u{2029}x",
            "\u{2065}",
            "日本",
        ] {
            assert_eq!(unclean_char(ok), None, "{ok:?}");
        }
    }

    /// Tunnel `a` with `lines` (at the tunnel's indentation) first, from line 3, then a
    /// forward and, unless `lines` set one, `host: h`. Refused: each problem as
    /// (line, message, hint).
    fn tunnel(lines: &[&str]) -> Result<crate::model::Tunnel, Vec<(usize, String, String)>> {
        let mut text = String::from("tunnels:\n  a:\n");
        for line in lines {
            text.push_str(&format!("    {line}\n"));
        }
        text.push_str("    forwards: [{dynamic: 1}]\n");
        if !lines.iter().any(|l| l.starts_with("host:")) {
            text.push_str("    host: h\n");
        }
        match load(&text) {
            Ok(mut c) => Ok(c.tunnels.remove(0)),
            Err(e) => Err(e
                .diagnostics
                .into_iter()
                .map(|d| (d.line, d.message, d.hint.unwrap_or_default()))
                .collect()),
        }
    }

    /// `line` is refused with one problem, on line 3, whose message holds `message`
    /// and whose hint holds `hint`.
    fn refused(line: &str, message: &str, hint: &str) {
        let problems = tunnel(&[line]).expect_err(line);
        let [(at, got, got_hint)] = &problems[..] else {
            panic!("{line:?}: one problem expected, got {problems:?}");
        };
        assert_eq!(*at, 3, "{line:?}: {got}");
        assert!(got.contains(message), "{line:?}: {got:?} lacks {message:?}");
        assert!(
            got_hint.contains(hint),
            "{line:?}: hint {got_hint:?} lacks {hint:?}"
        );
    }

    /// Strings are taken as written, numbers as their text, anything else refused.
    #[test]
    fn host_user_and_jump_values() {
        let t = tunnel(&[
            "host: h.example-1_x",
            "user: alice.b-c_d",
            "jump: bob@bastion.example:2222,[::1]:22,hop2",
        ])
        .unwrap();
        assert_eq!(t.host, "h.example-1_x");
        assert_eq!(t.user.as_deref(), Some("alice.b-c_d"));
        assert_eq!(
            t.jump.as_deref(),
            Some("bob@bastion.example:2222,[::1]:22,hop2")
        );
        assert_eq!(tunnel(&["host: 10"]).unwrap().host, "10");
        assert_eq!(tunnel(&["host: 1.5"]).unwrap().host, "1.5");
        assert_eq!(tunnel(&["host: \"::1\""]).unwrap().host, "::1");
        refused("host: [a]", "`host` must be a string, found a list", "");
        refused(
            "user: {a: 1}",
            "`user` must be a string, found a mapping",
            "",
        );
    }

    #[test]
    fn host_user_and_jump_refusals_say_what_is_wrong() {
        let host_hint = "a host is a name such as `server.example.org` or an IP address";
        refused(
            r#"host: "a\tb""#,
            "contains a control character",
            "one printable line",
        );
        refused(
            r#"host: "a\u202Eb""#,
            "contains U+202E",
            "bidirectional control",
        );
        refused(
            "host: \"h!\"",
            "`host` \"h!\" contains `!`; only letters, digits, `.`, `-` and `_` are allowed in a host name",
            host_hint,
        );
        refused("host: \"-oX\"", "starts with `-`", host_hint);
        refused("host: \"\"", "`host` \"\" is empty", host_hint);
        refused(
            "host: alice@h",
            "contains `@`",
            "put the user in its own key: `user: alice`",
        );
        refused(
            "host: h:2222",
            "contains `:`",
            "put the port in its own key: `port: 2222`",
        );
        refused(
            r#"user: "a\nb""#,
            "`user` \"a\\nb\" contains a control character",
            "",
        );
        refused(
            "user: a@b",
            "`user` \"a@b\" contains `@`; only letters, digits, `.`, `-` and `_` are allowed",
            "use the login name only",
        );
        refused(
            "user: a b",
            "contains whitespace",
            "use the login name only",
        );
        refused(
            r#"jump: "h\u0007""#,
            "`jump` \"h\\u{7}\" contains a control character",
            "",
        );
        let jump_hint = "write `[user@]host[:port]`";
        refused("jump: \"h!\"", "host `h!` contains `!`", jump_hint);
        refused(
            "jump: \"a b@h\"",
            "user `a b` contains whitespace",
            jump_hint,
        );
        refused(
            "jump: h:0",
            "port `0` is not a number from 1 to 65535",
            jump_hint,
        );
        refused("jump: h:65536", "port `65536` is not a number", jump_hint);
        refused("jump: \"[::1\"", "has an unclosed `[`", jump_hint);
        refused("jump: \"[h]\"", "`h` is not an IPv6 address", jump_hint);
        refused("jump: \"[::1]x\"", "unexpected `x` after `]`", jump_hint);
        refused("jump: \"\"", "is empty", jump_hint);
    }

    #[test]
    fn ports_at_their_boundaries() {
        assert_eq!(tunnel(&["port: 1"]).unwrap().port, Some(1));
        assert_eq!(tunnel(&["port: 2222"]).unwrap().port, Some(2222));
        assert_eq!(tunnel(&["port: 65535"]).unwrap().port, Some(65535));
        let hint = "use a TCP port number from 1 to 65535";
        refused("port: 0", "port 0 is outside 1-65535", hint);
        refused("port: 65536", "port 65536 is outside 1-65535", hint);
        refused("port: -22", "port -22 is outside 1-65535", hint);
        refused(
            "port: \"22\"",
            "a port must be a number from 1 to 65535, found a string `22`",
            "without quotes",
        );
        refused("port: [22]", "found a list", "without quotes");
    }

    #[test]
    fn counts_at_their_boundaries() {
        let count = |n: &str| tunnel(&[&format!("keepalive: {{count: {n}}}")]);
        assert_eq!(count("1").unwrap().keepalive.count, 1);
        assert_eq!(count("7").unwrap().keepalive.count, 7);
        assert_eq!(count("1000").unwrap().keepalive.count, 1000);
        let must = "it must be a whole number from 1 to 1000";
        refused(
            "keepalive: {count: 0}",
            &format!("`0` is not a valid count; {must}"),
            "for example `3`",
        );
        refused(
            "keepalive: {count: 1001}",
            "`1001` is not a valid count",
            "",
        );
        refused("keepalive: {count: x}", "`x` is not a valid count", "");
        refused(
            "keepalive: {count: [1]}",
            "`a list` is not a valid count",
            "",
        );
        assert_eq!(
            tunnel(&["probe: {failures: 1000}"]).unwrap().probe.failures,
            1000
        );
        refused("probe: {failures: 1001}", "`1001` is not a valid count", "");
    }

    #[test]
    fn durations_at_their_boundaries() {
        let interval = |d: &str| tunnel(&[&format!("keepalive: {{interval: {d}}}")]);
        assert_eq!(
            interval("30s").unwrap().keepalive.interval,
            Duration::from_secs(30)
        );
        assert_eq!(
            interval("1ms").unwrap().keepalive.interval,
            Duration::from_millis(1)
        );
        // The largest accepted, and one second more.
        assert_eq!(
            interval("2147483s").unwrap().keepalive.interval,
            MAX_DURATION
        );
        refused(
            "keepalive: {interval: 2147484s}",
            "duration `2147484s` is longer than 2147483s",
            "use at most `596h`",
        );
        refused(
            "keepalive: {interval: 0s}",
            "duration `0s` must be longer than zero",
            "for example `500ms` or `15s`",
        );
        // A bare number is read as text, so its missing unit is what is reported.
        refused(
            "keepalive: {interval: 30}",
            "bad duration: ",
            "a whole number and a unit",
        );
        refused(
            "keepalive: {interval: 1.5}",
            "bad duration: ",
            "a whole number and a unit",
        );
        refused(
            "keepalive: {interval: soon}",
            "bad duration: ",
            "a whole number and a unit",
        );
        refused(
            "keepalive: {interval: [1s]}",
            "expected a duration such as `15s`, found a list",
            "",
        );
    }

    #[test]
    fn paths_expand_and_refuse_what_ssh_would_misread() {
        // A bare `~` is YAML for nothing, so the tilde alone is quoted. (known_hosts and
        // metrics_file: a missing identity file is refused further on.)
        let t = tunnel(&["known_hosts: \"~\"", "metrics_file: /m/a.prom"]).unwrap();
        assert_eq!(t.known_hosts.as_deref(), Some(Path::new("/home/u")));
        assert_eq!(t.metrics_file.as_deref(), Some(Path::new("/m/a.prom")));
        let t = tunnel(&["known_hosts: ~/kh"]).unwrap();
        assert_eq!(t.known_hosts.as_deref(), Some(Path::new("/home/u/kh")));
        // Only UserKnownHostsFile is split at whitespace by ssh.
        let t = tunnel(&["metrics_file: /a b/m.prom"]).unwrap();
        assert_eq!(t.metrics_file.as_deref(), Some(Path::new("/a b/m.prom")));
        refused(
            "known_hosts: /a b/kh",
            "`known_hosts` \"/a b/kh\" contains whitespace; ssh would read it as several files",
            "use a path without spaces",
        );
        refused(
            "identity: /a/${HOME}/k",
            "`identity` \"/a/${HOME}/k\" contains `${`, which ssh expands",
            "rename the file or directory",
        );
        refused(
            "identity: ~bob/k",
            "`identity` \"~bob/k\": only `~/` (your own home) is expanded",
            "write the absolute path",
        );
        refused(
            "identity: k",
            "`identity` \"k\" is relative",
            "write an absolute path or one starting with `~/`",
        );
        refused(
            r#"identity: "/k\u0000""#,
            "contains a control character",
            "",
        );
        refused("identity: 5", "`identity` \"5\" is relative", "");
        refused(
            "identity: [a]",
            "`identity` must be a string, found a list",
            "",
        );
    }

    #[test]
    fn env_expansion_is_found() {
        assert!(env_expansion("/a/${X}").is_some_and(|m| m.contains("environment variable")));
        assert_eq!(env_expansion("/a/$X/{y}"), None);
    }

    #[test]
    fn jump_and_host_checks() {
        assert!(check_jump("alice@bastion:2222,b2").is_ok());
        assert!(check_jump("[::1]:22").is_ok());
        assert!(check_jump("-oProxyCommand=x").is_err());
        assert!(check_jump("a;touch /tmp/x").is_err());
        assert!(check_host("-oProxyCommand=x").is_err());
        assert!(check_host("::1").is_ok());
        assert!(check_host("a b").is_err());
    }
}
