//! A found tunnel as a tunnels.yaml entry: what was not carried over as comments
//! beside it, and, for every line, the part of the source it came from (so a value the
//! configuration check refuses is reported against the source). Also the entry added
//! to an existing file with every other byte kept, or a new file with a header. Pure.

use super::{ForwardSpec, Found};

/// YAML lines and, for each, where in the source it came from (`SOURCE: `PART``; ""
/// for comments and keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub lines: Vec<String>,
    pub parts: Vec<String>,
}

impl Entry {
    fn push(&mut self, line: String, part: &str) {
        self.lines.push(line);
        self.parts.push(part.to_string());
    }

    fn push_from(&mut self, line: String, found: &Found, part: &str) {
        self.lines.push(line);
        self.parts.push(format!("{}: `{part}`", found.source));
    }

    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// A scalar as YAML: plain where that reads back as the same string (or, for ports and
/// counts, the same number), else double-quoted.
pub fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./~@+-".contains(c))
        && !value.starts_with(['-', '.', '~', '@'])
        && (value.bytes().all(|b| b.is_ascii_digit())
            || !value.starts_with(|c: char| c.is_ascii_digit()))
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "yes" | "no" | "true" | "false" | "on" | "off" | "y" | "n" | "null"
        )
        && (value.bytes().all(|b| b.is_ascii_digit()) || value.parse::<f64>().is_err());
    if plain {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One line of comment text: control characters shown escaped.
fn comment(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `found` as the entry `NAME:` under `tunnels:`, its key indented by `indent` spaces
/// and its settings by `indent + step`.
pub fn entry(found: &Found, indent: usize, step: usize) -> Entry {
    let key_pad = " ".repeat(indent);
    let pad = " ".repeat(indent + step);
    let pad2 = " ".repeat(indent + 2 * step);
    let mut e = Entry::default();
    e.lines.push(format!("{key_pad}{}:", scalar(&found.name)));
    e.parts.push(format!(
        "{}: the tunnel's name `{}` (choose another with --name)",
        found.source, found.name
    ));
    e.push(
        format!(
            "{pad}# imported from {}: {}",
            comment(&found.source),
            comment(&found.command)
        ),
        "",
    );
    if !found.notes.is_empty() {
        e.push(format!("{pad}# not carried over:"), "");
        for note in &found.notes {
            e.push(
                format!("{pad}#   {}: {}", comment(&note.part), comment(&note.why)),
                "",
            );
        }
    }
    let field = |e: &mut Entry, key: &str, v: &Option<super::Sourced>| {
        if let Some(v) = v {
            e.push_from(format!("{pad}{key}: {}", scalar(&v.value)), found, &v.part);
        }
    };
    field(&mut e, "host", &found.host);
    field(&mut e, "user", &found.user);
    field(&mut e, "port", &found.port);
    field(&mut e, "identity", &found.identity);
    field(&mut e, "known_hosts", &found.known_hosts);
    field(&mut e, "jump", &found.jump);
    field(&mut e, "connect_timeout", &found.connect_timeout);
    if found.keepalive_interval.is_some() || found.keepalive_count.is_some() {
        e.push(format!("{pad}keepalive:"), "");
        for (key, v) in [
            ("interval", &found.keepalive_interval),
            ("count", &found.keepalive_count),
        ] {
            if let Some(v) = v {
                e.push_from(format!("{pad2}{key}: {}", scalar(&v.value)), found, &v.part);
            }
        }
    }
    if !found.forwards.is_empty() {
        e.push(format!("{pad}forwards:"), "");
    }
    let item = format!("{pad2}  ");
    for (spec, part) in &found.forwards {
        let (kind, bind, port, to) = match spec {
            ForwardSpec::Local { bind, port, to } => ("local", bind, port, Some(to)),
            ForwardSpec::Remote { bind, port, to } => ("remote", bind, port, Some(to)),
            ForwardSpec::Dynamic { bind, port } => ("dynamic", bind, port, None),
        };
        e.push_from(format!("{pad2}- {kind}: {}", scalar(port)), found, part);
        if let Some(to) = to {
            e.push_from(format!("{item}to: {}", scalar(to)), found, part);
        }
        if let Some(bind) = bind {
            e.push_from(format!("{item}bind: {}", scalar(bind)), found, part);
        }
    }
    if !found.ssh_options.is_empty() {
        e.push(format!("{pad}ssh_options:"), "");
        for (key, v) in &found.ssh_options {
            e.push_from(
                format!("{pad2}{}: {}", scalar(key), scalar(&v.value)),
                found,
                &v.part,
            );
        }
    }
    e
}

/// The header of a configuration file that import creates.
pub const HEADER: &str = "\
# tunnels.yaml: the tunnels tunnelctl keeps alive (created by `tunnelctl import`).
#
# `tunnelctl check` validates it; `tunnelctl trust NAME` pins a server's host key;
# `tunnelctl install NAME` starts a tunnel as a service. Every key is described in
# tunnels.yaml(5) and in the commented example shipped as examples/tunnels.yaml.

tunnels:
";

/// A new configuration file holding `found`: the text and, per line, the source part.
pub fn new_file(found: &[Found]) -> (String, Vec<String>) {
    let mut text = HEADER.to_string();
    let mut parts = vec![String::new(); HEADER.lines().count()];
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            text.push('\n');
            parts.push(String::new());
        }
        let e = entry(f, 2, 2);
        text.push_str(&e.text());
        parts.extend(e.parts);
    }
    (text, parts)
}

/// `text` with `found` added at the end of its `tunnels:` mapping (or a new one at the
/// end), indented as the file's entries are; every other byte is kept. Returns the new
/// text and the source part of each line (empty for the file's own lines).
pub fn add(text: &str, found: &[Found]) -> Result<(String, Vec<String>), String> {
    let lines: Vec<&str> = text.lines().collect();
    let top = lines.iter().position(|l| {
        l.strip_prefix("tunnels:")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    });
    if top.is_none() && lines.iter().any(|l| l.starts_with("tunnels:")) {
        return Err(
            "its `tunnels:` is written in flow style (`tunnels: {…}`); write it as a block \
             (one `NAME:` per line) or add the printed entry by hand"
                .into(),
        );
    }
    let mut body = String::new();
    let mut body_parts = Vec::new();
    let (insert_at, indent, step) = match top {
        None => {
            body.push_str("\ntunnels:\n");
            body_parts.extend([String::new(), String::new()]);
            (lines.len(), 2, 2)
        }
        Some(top) => {
            let mut last = top;
            let mut indent = None;
            for (i, line) in lines.iter().enumerate().skip(top + 1) {
                let first = line.chars().next();
                match first {
                    None => continue,
                    Some(' ') => {
                        last = i;
                        let trimmed = line.trim_start();
                        if indent.is_none() && !trimmed.starts_with('#') && !trimmed.is_empty() {
                            indent = Some(line.len() - trimmed.len());
                        }
                    }
                    Some('#') => continue,
                    Some('\t') => {
                        return Err("it indents with tabs, which YAML does not allow".into());
                    }
                    Some(_) => break,
                }
            }
            let indent = indent.unwrap_or(2);
            (last + 1, indent, indent)
        }
    };
    for (i, f) in found.iter().enumerate() {
        if i > 0 || top.is_some_and(|t| insert_at > t + 1) {
            body.push('\n');
            body_parts.push(String::new());
        }
        let e = entry(f, indent, step);
        body.push_str(&e.text());
        body_parts.extend(e.parts);
    }
    let mut out = String::new();
    let mut parts = Vec::new();
    for line in &lines[..insert_at] {
        out.push_str(line);
        out.push('\n');
        parts.push(String::new());
    }
    out.push_str(&body);
    parts.extend(body_parts);
    // The rest of the file, byte for byte (its last line keeps or lacks its newline).
    let head_len: usize = lines[..insert_at].iter().map(|l| l.len() + 1).sum();
    let rest = text.get(head_len.min(text.len())..).unwrap_or("");
    out.push_str(rest);
    parts.extend(rest.lines().map(|_| String::new()));
    Ok((out, parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{Note, Sourced};

    fn found(name: &str) -> Found {
        Found {
            name: name.into(),
            source: "the command line".into(),
            command: "ssh -N -R 1234:localhost:22 me@server".into(),
            host: Some(Sourced::new("server", "me@server")),
            user: Some(Sourced::new("me", "me@server")),
            forwards: vec![(
                ForwardSpec::Remote {
                    bind: None,
                    port: "1234".into(),
                    to: "localhost:22".into(),
                },
                "-R 1234:localhost:22".into(),
            )],
            ssh_options: vec![("Compression".into(), Sourced::new("yes", "-C"))],
            notes: vec![Note {
                part: "-f".into(),
                why: "no fork".into(),
            }],
            ..Found::default()
        }
    }

    #[test]
    fn scalars_read_back_as_strings() {
        assert_eq!(scalar("server"), "server");
        assert_eq!(scalar("1234"), "1234");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("localhost:22"), "\"localhost:22\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("a\"b\n"), "\"a\\\"b\\u000a\"");
    }

    #[test]
    fn entry_loads_and_maps_lines() {
        let (text, parts) = new_file(&[found("server")]);
        assert_eq!(text.lines().count(), parts.len());
        let c =
            crate::config::load_str(&text, std::path::Path::new("t"), std::path::Path::new("/h"))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.tunnels[0].name, "server");
        let at = text
            .lines()
            .position(|l| l.contains("remote: 1234"))
            .unwrap();
        assert_eq!(parts[at], "the command line: `-R 1234:localhost:22`");
    }

    #[test]
    fn add_keeps_every_other_byte() {
        let original = "# mine\ndefaults:\n  user: bob # why\n\ntunnels:\n    a:   # keep\n        host: h\n        forwards: [{dynamic: 1}]\n    # trailing comment\n\n# about the end\nextra: 1\n";
        let (text, parts) = add(original, &[found("server")]).unwrap();
        assert_eq!(text.lines().count(), parts.len());
        assert!(text.starts_with("# mine\ndefaults:\n  user: bob # why\n\ntunnels:\n    a:   # keep\n        host: h\n        forwards: [{dynamic: 1}]\n    # trailing comment\n\n    server:\n        # imported"), "{text}");
        assert!(text.ends_with("\n\n# about the end\nextra: 1\n"), "{text}");
        let (text, _) = add("defaults: {}\n", &[found("s")]).unwrap();
        assert!(
            text.starts_with("defaults: {}\n\ntunnels:\n  s:\n"),
            "{text}"
        );
        assert!(add("tunnels: {a: {}}\n", &[found("s")]).is_err());
    }
}
