//! Install's own tests: the inittab text edits and diffs.

use super::*;
use crate::targets::inittab;

fn entry() -> InittabEntry {
    InittabEntry {
        id: "tabc".into(),
        id_field: true,
        marker: inittab::marker("tabc", "web"),
        line: "tabc:2345:respawn:/usr/bin/tunnel-watchdog --args-file /etc/tunnelctl/run/tabc.args"
            .into(),
    }
}

/// An empty inittab (or one ending in a newline) gets our entry as its own lines, ending
/// with a newline; only after a last line without one is a newline put first.
#[test]
fn an_entry_is_whole_lines_after_an_empty_or_terminated_inittab() {
    let text = format!("{}\n{}\n", entry().marker, entry().line);
    assert_eq!(inittab_with(b"", &entry(), "web").unwrap(), text.as_bytes());
    assert_eq!(
        inittab_with(b"id:2:initdefault:\n", &entry(), "web").unwrap(),
        format!("id:2:initdefault:\n{text}").as_bytes()
    );
    assert_eq!(
        inittab_with(b"id:2:initdefault:", &entry(), "web").unwrap(),
        format!("id:2:initdefault:\n{}\n{}", entry().marker, entry().line).as_bytes()
    );
}

/// A replaced entry keeps the line ending of the last line it replaces: here the file's
/// last line, which has none.
#[test]
fn a_replaced_entry_keeps_the_ending_of_its_last_line() {
    let old = entry();
    let installed = inittab_with(b"id:2:initdefault:\n", &old, "web").unwrap();
    let existing = installed.strip_suffix(b"\n").unwrap();
    let mut new = entry();
    new.line.push_str(" --new");
    let (out, _) = inittab_with_all(existing, &[(&new, "web")]).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("id:2:initdefault:\n{}\n{}", new.marker, new.line)
    );
}

/// `stop` comments our entry's line out, `start` takes the `#` away again; every other
/// byte stays, and asking for the state it already has (or of another id) is None.
#[test]
fn an_entry_switched_off_and_on_again() {
    let e = entry();
    let mut existing = inittab_with(b"id:2:initdefault:\n", &e, "web").unwrap();
    existing.extend_from_slice(b"x:3:once:/bin/true\n");
    assert!(!inittab_entry_off(&existing, "tabc"));
    let off = inittab_entry_switched(&existing, "tabc", false).unwrap();
    assert_eq!(
        String::from_utf8(off.clone()).unwrap(),
        format!(
            "id:2:initdefault:\n{}\n#{}\nx:3:once:/bin/true\n",
            e.marker, e.line
        )
    );
    assert!(inittab_entry_off(&off, "tabc"));
    assert_eq!(inittab_entry_switched(&off, "tabc", false), None);
    assert_eq!(inittab_entry_switched(&existing, "tabc", true), None);
    assert_eq!(
        inittab_entry_switched(&off, "tabc", true).unwrap(),
        existing
    );
    assert_eq!(inittab_entry_switched(&existing, "tzzz", false), None);
    assert!(!inittab_entry_off(&existing, "tzzz"));
    // A marker whose line is gone: nothing to switch, and not "off".
    let marker_only = format!("id:2:initdefault:\n{}\n", e.marker);
    assert_eq!(
        inittab_entry_switched(marker_only.as_bytes(), "tabc", false),
        None
    );
    assert!(!inittab_entry_off(marker_only.as_bytes(), "tabc"));
}

/// Mutation testing leaves one mutant alive here, and it is equivalent: `at > 0` →
/// `at >= 0` in `inittab_without`. With `at == 0` and our entry ending the file, nothing
/// was copied to `out`, so the `pop()` that condition guards does nothing either way.
#[test]
fn inittab_round_trips_byte_for_byte() {
    for original in [
        &b""[..],
        b"id:2:initdefault:\n# comment\n",
        b"id:2:initdefault:\r\n1:2345:respawn:/sbin/getty 38400 tty1",
        b"# only a comment without newline",
    ] {
        let with = inittab_with(original, &entry(), "web").unwrap();
        assert!(with.starts_with(original));
        assert!(String::from_utf8_lossy(&with).contains(&entry().line));
        // Installing again changes nothing.
        assert_eq!(inittab_with(&with, &entry(), "web").unwrap(), with);
        assert_eq!(
            inittab_without(&with, "tabc").unwrap(),
            original,
            "{:?}",
            String::from_utf8_lossy(original)
        );
    }
}

#[test]
fn inittab_with_all_is_inittab_with_in_turn() {
    let e = |id: &str, name: &str, process: &str| InittabEntry {
        id: id.into(),
        id_field: true,
        marker: inittab::marker(id, name),
        line: format!("{id}:2345:respawn:{process} --args-file /etc/tunnelctl/run/{id}.args"),
    };
    let a = e("taaa", "a", "/w");
    let b = e("tbbb", "b", "/w");
    let b2 = e("tbbb", "b", "/w2");
    let c = e("tccc", "c", "/w");
    let with_b = inittab_with(b"x:1:y\r\n", &b, "b").unwrap();
    for original in [&b""[..], b"id:2:initdefault:\n", b"no newline", &with_b[..]] {
        for set in [
            vec![(&a, "a")],
            vec![(&a, "a"), (&b2, "b"), (&c, "c")],
            vec![(&b2, "b"), (&a, "a")],
        ] {
            let mut expected = original.to_vec();
            for (entry, name) in &set {
                expected = inittab_with(&expected, entry, name).unwrap();
            }
            let (all, states) = inittab_with_all(original, &set).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&all),
                String::from_utf8_lossy(&expected)
            );
            let b_was_there = original == &with_b[..];
            for ((entry, _), (existed, changed)) in set.iter().zip(states) {
                assert_eq!(existed, entry.id == "tbbb" && b_was_there);
                assert!(changed);
            }
        }
    }
    let (_, states) = inittab_with_all(&with_b, &[(&b, "b")]).unwrap();
    assert_eq!(states, vec![(true, false)]);
    let err = inittab_with_all(b"", &[(&a, "a"), (&a, "x")]).unwrap_err();
    assert!(err.contains("`a`"), "{err}");
    let err = inittab_with_all(b"taaa:2345:respawn:/bin/other\n", &[(&a, "a")]).unwrap_err();
    assert!(err.contains("line 1"), "{err}");
    assert!(
        inittab_with_all(&with_b, &[(&b, "other")])
            .unwrap_err()
            .contains("`b`")
    );
}

#[test]
fn inittab_replaces_in_place_and_refuses_foreign_ids() {
    let old = format!(
        "a:1:x\n{}\ntabc:2345:respawn:/old --args-file /etc/tunnelctl/run/tabc.args\nz:3:y\n",
        inittab::marker("tabc", "web")
    );
    let new = inittab_with(old.as_bytes(), &entry(), "web").unwrap();
    let new = String::from_utf8(new).unwrap();
    assert!(new.starts_with("a:1:x\n# tunnelctl:tabc web"));
    assert!(new.ends_with("tunnel-watchdog --args-file /etc/tunnelctl/run/tabc.args\nz:3:y\n"));
    let err = inittab_with(b"tabc:2345:respawn:/bin/other\n", &entry(), "web").unwrap_err();
    assert!(err.contains("line 1"), "{err}");
    let err = inittab_with(old.as_bytes(), &entry(), "api").unwrap_err();
    assert!(err.contains("`web`"), "{err}");
}

#[test]
fn diff_shows_changes_with_context() {
    let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
    let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
    let diff = unified_diff("x", "x", old, new);
    assert_eq!(
        diff,
        "--- x\n+++ x\n@@ -1,7 +1,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n"
    );
    assert_eq!(unified_diff("x", "x", old, old), "");
    let diff = unified_diff("/dev/null", "y", "", "one\ntwo\n");
    assert_eq!(diff, "--- /dev/null\n+++ y\n@@ -0,0 +1,2 @@\n+one\n+two\n");
}
