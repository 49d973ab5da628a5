//! The YAML as a small tree where every value and key keeps its position.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diagnostic::Diagnostic;

/// Parses `text`; `Ok(None)` when it holds no document at all.
pub(super) fn parse(text: &str) -> Result<Option<Node>, Diagnostic> {
    let options = serde_saphyr::options! {
        // `yes`/`no` stay strings: ssh option values are passed as written.
        strict_booleans: true,
        // Duplicates reach our visitor so we can name both places.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        leading_zero_numbers_as_strings: true,
    };
    serde_saphyr::from_str_with_options::<Option<Node>>(text, options).map_err(|e| {
        let at = e.location().map(|l| Loc::of(&l)).unwrap_or_default();
        let message = e.without_snippet().to_string();
        // The library's text may repeat the position (not always the right one): keep
        // the first line, without it.
        let message = message.lines().next().unwrap_or("invalid YAML");
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => &message[..i],
            _ => message,
        };
        explain(text, at, message)
    })
}

/// The parser's error as a diagnostic, moved to the place the mistake is for the two
/// commonest ones: a tab in the indentation (the parser points at where it gave up,
/// often the end of the line before), and a line indented more or less than the keys
/// it should line up with.
fn explain(text: &str, at: Loc, message: &str) -> Diagnostic {
    let lines: Vec<&str> = text.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    // Where a line's key starts: after the indentation and any `- ` of a list item.
    let key_column = |l: &str| {
        let mut rest = l.trim_start_matches(' ');
        while let Some(r) = rest.strip_prefix("- ") {
            rest = r.trim_start_matches(' ');
        }
        l.len() - rest.len()
    };
    if message.contains("tab") {
        // The first tab in a line's indentation from the reported line on (the report
        // may be one line early); else the first tab at or after it.
        let from = at.line.saturating_sub(1);
        let in_indent = lines.iter().enumerate().skip(from).find_map(|(i, l)| {
            let lead = &l[..l.len() - l.trim_start_matches([' ', '\t']).len()];
            lead.find('\t').map(|c| (i, c))
        });
        let anywhere = || {
            lines
                .iter()
                .enumerate()
                .skip(from)
                .find_map(|(i, l)| l.find('\t').map(|c| (i, c)))
        };
        if let Some((i, byte)) = in_indent.or_else(anywhere) {
            let column = lines[i][..byte].chars().count() + 1;
            return Diagnostic::new(
                i + 1,
                column,
                1,
                "invalid YAML: a tab in the indentation",
            )
            .with_hint("YAML indents with spaces only: replace the tab with spaces, as many as the lines around it use");
        }
    }
    let d = Diagnostic::new(
        at.line,
        at.column,
        at.width,
        format!("invalid YAML: {message}"),
    );
    let indentation_error = message.contains("mapping values are not allowed")
        || message.contains("did not find expected key");
    let Some(line) = lines
        .get(at.line.wrapping_sub(1))
        .filter(|_| indentation_error)
    else {
        return d;
    };
    // The lines above that say something (not blank, not comments).
    let above: Vec<(usize, &str)> = lines[..at.line - 1]
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let Some(&(prev_no, prev)) = above.last() else {
        return d;
    };
    let (n, m) = (indent_of(line), key_column(prev));
    let key = line.trim();
    let key = key.split(':').next().unwrap_or(key);
    let d = Diagnostic::new(
        at.line,
        n + 1,
        key.chars().count().max(1),
        d.message.clone(),
    );
    if n > m && !prev.trim_end().ends_with(':') {
        return d.with_hint(format!(
            "`{key}` is indented {n} spaces, {} more than `{}` on line {prev_no}, which already has a value: \
             to be a key of the same mapping it must line up with it ({m} spaces)",
            n - m,
            prev.trim()
        ));
    }
    // Shallower (or deeper under a `key:`) than anything it could belong to: name the
    // columns the keys above start at.
    let mut levels: Vec<usize> = above
        .iter()
        .flat_map(|(_, l)| [indent_of(l), key_column(l)])
        .collect();
    levels.sort_unstable();
    levels.dedup();
    if levels.contains(&n) {
        return d;
    }
    let levels: Vec<String> = levels.iter().map(usize::to_string).collect();
    d.with_hint(format!(
        "`{key}` is indented {n} spaces, which lines up with no key above (they are indented {}): \
         YAML nests by indentation, so line it up with the keys it belongs with",
        levels.join(", ")
    ))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) width: usize,
}

impl Loc {
    pub(super) fn of(location: &serde_saphyr::Location) -> Loc {
        Loc {
            line: location.line() as usize,
            column: location.column() as usize,
            width: location.span().len().max(1) as usize,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) value: Value,
    pub(super) at: Loc,
}

#[derive(Clone, Debug)]
pub(super) struct Key {
    pub(super) text: String,
    pub(super) at: Loc,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            at: Loc::of(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    text: key.value,
                    at: Loc::of(&key.referenced),
                },
                value,
            ));
        }
        Ok(Value::Map(entries))
    }
}

impl Node {
    pub(super) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a decimal number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The scalar as the user wrote it (numbers and booleans as text).
    pub(super) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    /// (line, column, hint) of the error `text` gets.
    fn error_at(text: &str) -> (usize, usize, String) {
        let d = parse(text).expect_err("should not parse");
        (d.line, d.column, d.hint.clone().unwrap_or_default())
    }

    #[test]
    fn a_tab_is_pointed_at_where_it_is() {
        // The parser gives up at the end of line 3 ("found a tab at line 3, column 11").
        let (line, column, hint) = error_at("tunnels:\n  a:\n    host: x\n\tport: 22\n");
        assert_eq!((line, column), (4, 1));
        assert!(hint.contains("spaces only"), "{hint}");
        let (line, column, _) = error_at("tunnels:\n  a:\n  \thost: x\n");
        assert_eq!((line, column), (3, 3));
        let (line, column, _) =
            error_at("tunnels:\n  a:\n    host: x\n    forwards:\n\t- local: 1\n");
        assert_eq!((line, column), (5, 1));
    }

    #[test]
    fn a_line_indented_one_space_too_far_or_short_gets_a_hint() {
        let (line, column, hint) = error_at("tunnels:\n  a:\n    host: x\n     port: 22\n");
        assert_eq!((line, column), (4, 6));
        assert!(
            hint.contains("`port` is indented 5 spaces, 1 more than `host: x` on line 3")
                && hint.contains("(4 spaces)"),
            "{hint}"
        );
        // Under a list item the keys line up after the `- `.
        let (line, column, hint) = error_at(
            "tunnels:\n  a:\n    host: x\n    forwards:\n      - local: 1\n         to: a:1\n",
        );
        assert_eq!((line, column), (6, 10));
        assert!(hint.contains("(8 spaces)"), "{hint}");
        let (line, column, hint) = error_at("tunnels:\n  a:\n    host: x\n   port: 22\n");
        assert_eq!((line, column), (4, 4));
        assert!(hint.contains("lines up with no key above"), "{hint}");
    }
}
