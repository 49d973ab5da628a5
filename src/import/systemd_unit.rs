//! A systemd unit's `ExecStart=` as systemd runs it: the unit file and its drop-ins
//! (`;`/`#` comments, `\` continuations, an empty `ExecStart=` resetting the list), the
//! command prefixes (`-@:+!`), systemd's own quoting (`"…"`, `'…'`, C escapes), its
//! specifiers (`%i`, `%I`, `%n`, `%h`, …, `%%`), and `Environment=`/`EnvironmentFile=`
//! values expanded as `${NAME}` in a word and `$NAME` as a word of its own (split on
//! blanks), `$$` a literal `$`. Pure: the caller reads the files.

use super::ImportError;

/// What the specifiers of one unit expand to.
#[derive(Clone, Debug, Default)]
pub struct Specifiers {
    /// The full unit name: `secure-tunnel@alpha.service`.
    pub unit: String,
    pub home: String,
    pub user: String,
    pub uid: String,
    pub hostname: String,
    /// `/run` for the system manager, `$XDG_RUNTIME_DIR` for a user's.
    pub runtime_dir: String,
    /// `/etc` for the system manager, `~/.config` for a user's.
    pub config_dir: String,
}

/// The `[Service]` settings that matter, read from the unit and its drop-ins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// The command's words, unquoted and with specifiers expanded (the `@` prefix's
    /// argv[0] already dropped).
    pub exec_start: Vec<String>,
    /// Where `ExecStart=` is: `FILE line N`.
    pub exec_start_at: String,
    /// Whether `$`-expansion applies (no `:` prefix).
    pub expand: bool,
    /// `Environment=` assignments in order.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=` paths (specifiers expanded) and whether a missing one is fine (`-`).
    pub environment_files: Vec<(String, bool)>,
    /// `User=`, when the unit runs as someone.
    pub user: Option<String>,
}

/// Reads `files` (the unit file first, then its drop-ins in order): `(path, text)`.
pub fn service(files: &[(String, String)], spec: &Specifiers) -> Result<Service, ImportError> {
    let mut service = Service {
        expand: true,
        ..Service::default()
    };
    let mut exec: Option<(String, String)> = None;
    for (path, text) in files {
        let mut section = String::new();
        for (line_no, line) in logical_lines(text) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            if section != "Service" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let at = format!("{path} line {line_no}");
            match key {
                "ExecStart" if value.is_empty() => exec = None,
                "ExecStart" => exec = Some((value.to_string(), at)),
                "Environment" if value.is_empty() => service.environment.clear(),
                "Environment" => {
                    for word in words(value).map_err(|m| ImportError::new(line, m))? {
                        let word =
                            specifiers(&word, spec).map_err(|m| ImportError::new(line, m))?;
                        if let Some((k, v)) = word.split_once('=') {
                            service.environment.push((k.to_string(), v.to_string()));
                        }
                    }
                }
                "EnvironmentFile" if value.is_empty() => service.environment_files.clear(),
                "EnvironmentFile" => {
                    let (optional, file) = match value.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, value),
                    };
                    let file = specifiers(file, spec).map_err(|m| ImportError::new(line, m))?;
                    service.environment_files.push((file, optional));
                }
                "User" => service.user = Some(value.to_string()),
                _ => {}
            }
        }
    }
    let Some((value, at)) = exec else {
        return Err(ImportError::new(
            spec.unit.as_str(),
            "the unit has no `ExecStart=` in [Service]",
        ));
    };
    let part = format!("ExecStart={value}");
    let mut rest = value.as_str();
    let mut argv0_given = false;
    while let Some(c) = rest.chars().next().filter(|c| "-@:+!".contains(*c)) {
        match c {
            '@' => argv0_given = true,
            ':' => service.expand = false,
            _ => {}
        }
        rest = &rest[1..];
    }
    let mut command = Vec::new();
    for (word, separator) in split(rest).map_err(|m| ImportError::new(&part, m))? {
        if separator {
            break;
        }
        command.push(specifiers(&word, spec).map_err(|m| ImportError::new(&part, m))?);
    }
    if argv0_given && command.len() > 1 {
        command.remove(1);
    }
    if command.is_empty() {
        return Err(ImportError::new(part, "`ExecStart=` names no program"));
    }
    service.exec_start = command;
    service.exec_start_at = at;
    Ok(service)
}

/// Lines with `\` continuations joined, each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        // Comment lines inside a continuation are skipped, as systemd does.
        if !joined.is_empty()
            && (line.trim_start().starts_with('#') || line.trim_start().starts_with(';'))
        {
            pending = Some((start, joined));
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(line);
                out.push((start, joined));
            }
        }
    }
    if let Some(p) = pending {
        out.push(p);
    }
    out
}

/// systemd's word splitting with quote removal and C unescaping.
pub fn words(text: &str) -> Result<Vec<String>, String> {
    Ok(split(text)?.into_iter().map(|(w, _)| w).collect())
}

/// [`words`], each with whether it is the command separator (a `;` written alone).
fn split(text: &str) -> Result<Vec<(String, bool)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let start = i;
        while i < chars.len() {
            let c = chars[i];
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    let (decoded, used) = c_escape(&chars[i + 1..])?;
                    word.push_str(&decoded);
                    i += used;
                }
                (_, c) => word.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err(format!("a `{q}` is not closed"));
        }
        let separator = i == start + 1 && chars[start] == ';';
        out.push((word, separator));
    }
    Ok(out)
}

/// One C escape after a backslash: its text and how many characters it used.
fn c_escape(rest: &[char]) -> Result<(String, usize), String> {
    let hex = |n: usize| -> Result<(String, usize), String> {
        let digits: String = rest.iter().skip(1).take(n).collect();
        let code = u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.len() == n)
            .and_then(char::from_u32)
            .ok_or_else(|| format!("`\\{}{digits}` is not a valid escape", rest[0]))?;
        Ok((code.to_string(), n + 1))
    };
    let Some(&c) = rest.first() else {
        return Ok((String::new(), 0));
    };
    let simple = match c {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        's' => Some(' '),
        '\\' | '"' | '\'' | ';' | ' ' => Some(c),
        _ => None,
    };
    if let Some(s) = simple {
        // `\;` stays a word of its own that is not the command separator.
        return Ok((s.to_string(), 1));
    }
    match c {
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        '0'..='7' => {
            let digits: String = rest.iter().take(3).collect();
            let code = u32::from_str_radix(&digits, 8)
                .ok()
                .filter(|_| digits.len() == 3)
                .and_then(char::from_u32)
                .ok_or_else(|| format!("`\\{digits}` is not a valid octal escape"))?;
            Ok((code.to_string(), 3))
        }
        _ => Err(format!("`\\{c}` is not an escape systemd knows")),
    }
}

/// `%` specifiers of `word` expanded for the unit `spec.unit`.
pub fn specifiers(word: &str, spec: &Specifiers) -> Result<String, String> {
    let unit = spec.unit.as_str();
    let stem = unit.rsplit_once('.').map_or(unit, |(s, _)| s);
    let (prefix, instance) = match stem.split_once('@') {
        Some((p, i)) => (p, i),
        None => (stem, ""),
    };
    let mut out = String::new();
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(s) = chars.next() else {
            return Err(format!(
                "`{word}` ends with a lone `%` (write `%%` for a `%`)"
            ));
        };
        let value = match s {
            '%' => "%".to_string(),
            'n' => unit.to_string(),
            'N' => stem.to_string(),
            'p' => prefix.to_string(),
            'P' => unescape(prefix),
            'i' => instance.to_string(),
            'I' => unescape(instance),
            'j' => prefix.rsplit('-').next().unwrap_or(prefix).to_string(),
            'J' => unescape(prefix.rsplit('-').next().unwrap_or(prefix)),
            'f' => format!(
                "/{}",
                unescape(if instance.is_empty() {
                    prefix
                } else {
                    instance
                })
                .trim_start_matches('/')
            ),
            'h' => spec.home.clone(),
            'u' => spec.user.clone(),
            'U' => spec.uid.clone(),
            'H' => spec.hostname.clone(),
            'l' => spec.hostname.split('.').next().unwrap_or("").to_string(),
            't' => spec.runtime_dir.clone(),
            'E' => spec.config_dir.clone(),
            'T' => "/tmp".to_string(),
            'V' => "/var/tmp".to_string(),
            other => {
                return Err(format!(
                    "the specifier `%{other}` in `{word}` depends on the machine tunnelctl \
                     cannot see (or is not one systemd knows); write its value out"
                ));
            }
        };
        out.push_str(&value);
    }
    Ok(out)
}

/// systemd's unescaping of a unit name part: `-` is `/`, `\xNN` a byte.
fn unescape(part: &str) -> String {
    let mut bytes = Vec::new();
    let raw = part.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\'
            && raw.get(i + 1) == Some(&b'x')
            && let Some(b) = part
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            bytes.push(b);
            i += 4;
            continue;
        }
        bytes.push(if raw[i] == b'-' { b'/' } else { raw[i] });
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `EnvironmentFile=`'s assignments: `KEY=VALUE` lines, `#`/`;` comments, quotes removed.
pub fn environment_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, line) in logical_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) if value.len() >= 2 && value.ends_with(q) => {
                value[1..value.len() - 1].to_string()
            }
            _ => value.to_string(),
        };
        out.push((key.trim().to_string(), value));
    }
    out
}

/// `$NAME` as a word of its own (split on blanks), `${NAME}` anywhere, `$$` a `$`; an
/// unset variable is an error naming it (systemd would make it empty, which is never
/// what a tunnel meant).
pub fn expand(words: &[String], env: &[(String, String)]) -> Result<Vec<String>, ImportError> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let mut out = Vec::new();
    for word in words {
        if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
            let value = lookup(name).ok_or_else(|| unset(word, name))?;
            out.extend(value.split_whitespace().map(str::to_string));
            continue;
        }
        let mut expanded = String::new();
        let mut rest = word.as_str();
        while let Some(at) = rest.find('$') {
            expanded.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                expanded.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('{')
                && let Some(end) = inner.find('}')
            {
                let name = &inner[..end];
                expanded.push_str(&lookup(name).ok_or_else(|| unset(word, name))?);
                rest = &inner[end + 1..];
            } else {
                expanded.push('$');
                rest = after;
            }
        }
        expanded.push_str(rest);
        out.push(expanded);
    }
    Ok(out)
}

fn unset(word: &str, name: &str) -> ImportError {
    ImportError::new(
        word,
        format!(
            "`{name}` is not set by the unit's Environment= or EnvironmentFile=; systemd \
             would run the command with it empty"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(unit: &str) -> Specifiers {
        Specifiers {
            unit: unit.into(),
            home: "/root".into(),
            user: "root".into(),
            uid: "0".into(),
            hostname: "box.example".into(),
            runtime_dir: "/run".into(),
            config_dir: "/etc".into(),
        }
    }

    #[test]
    fn template_with_environment_file() {
        let unit = "[Unit]\nDescription=Setup a secure tunnel to %I\n\n[Service]\n\
                    Environment=\"LOCAL_ADDR=localhost\"\n\
                    EnvironmentFile=/etc/default/secure-tunnel@%i\n\
                    ExecStart=/usr/bin/ssh -NT -o ServerAliveInterval=60 -o ExitOnForwardFailure=yes \\\n  \
                    -L ${LOCAL_ADDR}:${LOCAL_PORT}:localhost:${REMOTE_PORT} ${TARGET}\n";
        let s = service(
            &[(
                "/etc/systemd/system/secure-tunnel@.service".into(),
                unit.into(),
            )],
            &spec("secure-tunnel@jump.service"),
        )
        .unwrap();
        assert_eq!(
            s.environment_files,
            [("/etc/default/secure-tunnel@jump".into(), false)]
        );
        assert_eq!(
            s.exec_start_at,
            "/etc/systemd/system/secure-tunnel@.service line 7"
        );
        let mut env = s.environment.clone();
        env.extend(environment_file(
            "TARGET=jump\nLOCAL_PORT=8080\n# c\nREMOTE_PORT='80'\n",
        ));
        let argv = expand(&s.exec_start, &env).unwrap();
        assert_eq!(argv[6], "-L");
        assert_eq!(argv[7], "localhost:8080:localhost:80");
        assert_eq!(argv[8], "jump");
        let e = expand(&["${NOPE}".to_string()], &env).unwrap_err();
        assert!(e.message.contains("NOPE"), "{e}");
    }

    #[test]
    fn quoting_escapes_and_specifiers() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\x41 g\;"#).unwrap(),
            ["a", "b c", "d e", "fA", "g;"]
        );
        assert!(words("\"x").is_err());
        let s = spec("t@a\\x2db.service");
        assert_eq!(
            specifiers("%i %I %p %n %%i", &s).unwrap(),
            "a\\x2db a-b t t@a\\x2db.service %i"
        );
        assert!(specifiers("%z", &s).is_err());
        let s = service(
            &[("u".into(), "[Service]\nExecStart=@/usr/bin/ssh my-ssh -N h\nExecStart=\nExecStart=-/usr/bin/autossh -M 0 h\n".into())],
            &spec("u.service"),
        )
        .unwrap();
        assert_eq!(s.exec_start, ["/usr/bin/autossh", "-M", "0", "h"]);
        let s = service(
            &[(
                "u".into(),
                "[Service]\nExecStart=@/usr/bin/ssh my-ssh -N h\n".into(),
            )],
            &spec("u.service"),
        )
        .unwrap();
        assert_eq!(s.exec_start, ["/usr/bin/ssh", "-N", "h"]);
    }
}
