//! `/etc/inittab` as text: find, add, replace and remove our entries, keeping every
//! other byte as it was (pure).

use super::*;
use crate::targets::inittab;

/// Splits into lines that keep their terminators, so joining them gives the input back.
pub(super) fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

pub(super) fn text_of(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Index of our marker line for `id` and how many lines (1 or 2) our entry spans.
pub(super) fn find_entry(bytes: &[u8], id: &str) -> Option<(usize, usize)> {
    let lines = split_lines(bytes);
    let prefix = inittab::marker_prefix(id);
    let at = lines
        .iter()
        .position(|l| text_of(l).starts_with(prefix.as_bytes()))?;
    Some((at, entry_span(&lines, at, id)))
}

/// How many lines (1 or 2) our entry for `id` spans from its marker at `at`: the line
/// after the marker is ours when it names the entry's args file.
fn entry_span(lines: &[&[u8]], at: usize, id: &str) -> usize {
    let args = inittab::args_path(id);
    let next_is_ours = lines
        .get(at + 1)
        .is_some_and(|l| String::from_utf8_lossy(text_of(l)).contains(&args));
    if next_is_ours { 2 } else { 1 }
}

/// Refuses when our marker line for `id` names another tunnel than `name`.
fn check_marker_owner(marker_line: &[u8], id: &str, name: &str) -> Result<(), String> {
    let marker = String::from_utf8_lossy(text_of(marker_line)).into_owned();
    // A marker that ends right after the id (no space) names no owner.
    let owner = marker[inittab::marker_prefix(id).len().min(marker.len())..]
        .split(" — ")
        .next()
        .unwrap_or("");
    if owner != name {
        return Err(id_taken(id, owner));
    }
    Ok(())
}

/// The refusal when `id` is already the id of tunnel `owner`'s entry.
fn id_taken(id: &str, owner: &str) -> String {
    format!(
        "{INITTAB} already has a tunnelctl entry with id {id} for tunnel `{owner}`; \
         uninstall it first or rename one of the tunnels"
    )
}

/// The refusal when line `index` (0-based), not written by tunnelctl, uses `id` (SysV).
fn id_used_by_other_line(index: usize, id: &str) -> String {
    format!(
        "{INITTAB} line {} already uses the id {id} and was not written by tunnelctl; \
         change that entry's id or rename the tunnel",
        index + 1
    )
}

/// Appends `entry` at the end of `out` (the inittab so far). After a last line without
/// a newline, ours goes after a newline we add, and ends without one, so removing our
/// entry (with that newline) restores the file.
fn append_entry(out: &mut Vec<u8>, entry: &InittabEntry) {
    if out.is_empty() || out.ends_with(b"\n") {
        out.extend_from_slice(entry.text().as_bytes());
    } else {
        out.push(b'\n');
        out.extend_from_slice(entry.marker.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(entry.line.as_bytes());
    }
}

/// Writes `entry` (marker line, then the entry) where an old entry stood, keeping the
/// terminator the old entry's last line had (none when it ended the file).
pub(super) fn put_entry_over(out: &mut Vec<u8>, entry: &InittabEntry, last_old: &[u8]) {
    let eol: &[u8] = if last_old.ends_with(b"\r\n") {
        b"\r\n"
    } else if last_old.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    };
    out.extend_from_slice(entry.marker.as_bytes());
    out.extend_from_slice(if eol.is_empty() { b"\n" } else { eol });
    out.extend_from_slice(entry.line.as_bytes());
    out.extend_from_slice(eol);
}

/// The inittab with our entry for `name` in place: replaced where it was, else appended.
/// Every other byte stays as it was. Refuses when a line not written by us uses our id
/// (SysV), or our id's marker names another tunnel.
pub fn inittab_with(existing: &[u8], entry: &InittabEntry, name: &str) -> Result<Vec<u8>, String> {
    let lines = split_lines(existing);
    let found = find_entry(existing, &entry.id);
    if let Some((at, _)) = found {
        check_marker_owner(lines[at], &entry.id, name)?;
    }
    if entry.id_field {
        let ours: Vec<usize> = found
            .map(|(at, n)| (at..at + n).collect())
            .unwrap_or_default();
        let id_prefix = format!("{}:", entry.id);
        for (i, line) in lines.iter().enumerate() {
            let text = text_of(line);
            if !ours.contains(&i)
                && !text.starts_with(b"#")
                && text.starts_with(id_prefix.as_bytes())
            {
                return Err(id_used_by_other_line(i, &entry.id));
            }
        }
    }
    let mut out = Vec::with_capacity(existing.len() + 200);
    match found {
        Some((at, n)) => {
            for line in &lines[..at] {
                out.extend_from_slice(line);
            }
            put_entry_over(&mut out, entry, lines[at + n - 1]);
            for line in &lines[at + n..] {
                out.extend_from_slice(line);
            }
        }
        None => {
            out.extend_from_slice(existing);
            append_entry(&mut out, entry);
        }
    }
    Ok(out)
}

/// Per entry: (it was there before, its lines change).
pub type EntryStates = Vec<(bool, bool)>;

/// The inittab with every entry in place (`(entry, tunnel name)`), the same bytes as
/// applying [`inittab_with`] for each in turn, in one pass over the file (a thousand
/// tunnels once meant a thousand rewrites). Also says, per entry, whether it was there
/// before and whether its lines changed.
pub fn inittab_with_all(
    existing: &[u8],
    entries: &[(&InittabEntry, &str)],
) -> Result<(Vec<u8>, EntryStates), String> {
    use std::collections::HashMap;
    let lines = split_lines(existing);
    // Our markers by id, and the ids other (non-comment) lines start with.
    let mut markers: HashMap<&[u8], usize> = HashMap::new();
    let mut used_ids: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let text = text_of(line);
        if let Some(rest) = text.strip_prefix(b"# tunnelctl:") {
            let id = rest.split(|&b| b == b' ').next().unwrap_or_default();
            markers.entry(id).or_insert(i);
        } else if !text.starts_with(b"#")
            && let Some(colon) = text.iter().position(|&b| b == b':')
        {
            used_ids.entry(&text[..colon]).or_default().push(i);
        }
    }
    let mut replace: HashMap<usize, (usize, &InittabEntry)> = HashMap::new();
    let mut append: Vec<&InittabEntry> = Vec::new();
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut states = Vec::with_capacity(entries.len());
    for &(entry, name) in entries {
        if let Some(first) = seen.insert(entry.id.as_str(), name) {
            return Err(id_taken(&entry.id, first));
        }
        let found = markers
            .get(entry.id.as_bytes())
            .map(|&at| (at, entry_span(&lines, at, &entry.id)));
        if let Some((at, _)) = found {
            check_marker_owner(lines[at], &entry.id, name)?;
        }
        if entry.id_field
            && let Some(users) = used_ids.get(entry.id.as_bytes())
            && let Some(&i) = users
                .iter()
                .find(|&&i| !found.is_some_and(|(at, n)| (at..at + n).contains(&i)))
        {
            return Err(id_used_by_other_line(i, &entry.id));
        }
        match found {
            Some((at, n)) => {
                let old: Vec<&[u8]> = lines[at..at + n].iter().map(|l| text_of(l)).collect();
                let changed = old != [entry.marker.as_bytes(), entry.line.as_bytes()];
                replace.insert(at, (n, entry));
                states.push((true, changed));
            }
            None => {
                append.push(entry);
                states.push((false, true));
            }
        }
    }
    let mut out = Vec::with_capacity(existing.len() + 200 * entries.len());
    let mut i = 0;
    while i < lines.len() {
        let Some(&(n, entry)) = replace.get(&i) else {
            out.extend_from_slice(lines[i]);
            i += 1;
            continue;
        };
        put_entry_over(&mut out, entry, lines[i + n - 1]);
        i += n;
    }
    for entry in append {
        append_entry(&mut out, entry);
    }
    Ok((out, states))
}

/// The inittab without our entry for `id`, or None when it has none.
pub fn inittab_without(existing: &[u8], id: &str) -> Option<Vec<u8>> {
    let (at, n) = find_entry(existing, id)?;
    let lines = split_lines(existing);
    let mut out = Vec::with_capacity(existing.len());
    for line in &lines[..at] {
        out.extend_from_slice(line);
    }
    for line in &lines[at + n..] {
        out.extend_from_slice(line);
    }
    let ended_file_without_newline = at + n == lines.len() && !lines[at + n - 1].ends_with(b"\n");
    if ended_file_without_newline && at > 0 {
        // Undo the newline we added before our entry (see append_entry).
        out.pop();
    }
    Some(out)
}

/// The inittab with our entry for `id` switched off (a `#` before its line: init no
/// longer runs it) or on again; None when there is no entry or it already is so.
pub fn inittab_entry_switched(existing: &[u8], id: &str, on: bool) -> Option<Vec<u8>> {
    let (at, n) = find_entry(existing, id)?;
    if n < 2 {
        return None;
    }
    let lines = split_lines(existing);
    let line = lines[at + 1];
    let switched: Vec<u8> = match (on, line.strip_prefix(b"#")) {
        (true, Some(rest)) => rest.to_vec(),
        (false, None) => [b"#", line].concat(),
        _ => return None,
    };
    let mut out = Vec::with_capacity(existing.len() + 1);
    for (i, l) in lines.iter().enumerate() {
        out.extend_from_slice(if i == at + 1 { &switched } else { l });
    }
    Some(out)
}

/// Whether our entry for `id` is switched off (see [`inittab_entry_switched`]).
pub fn inittab_entry_off(existing: &[u8], id: &str) -> bool {
    find_entry(existing, id)
        .is_some_and(|(at, n)| n == 2 && split_lines(existing)[at + 1].starts_with(b"#"))
}

// ---------------------------------------------------------------- unified diff
