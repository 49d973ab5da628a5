//! `/proc/PID/stat` and `/proc/PID/cmdline`.

use super::{ProcInfo, RunState};

pub fn inspect(pid: i32) -> Option<ProcInfo> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `PID (COMM) STATE ...`; COMM may itself hold `)` and spaces, so the last `)` ends it.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let state = match stat[close + 1..].trim_start().chars().next()? {
        'T' | 't' => RunState::Stopped,
        // X (dead) is only ever seen in the instant before the pid disappears.
        'Z' | 'X' => RunState::Zombie,
        _ => RunState::Active,
    };
    Some(ProcInfo { name, state })
}

/// The children of `parent` (pid, zombie), from every `/proc/PID/stat` we can see.
pub fn children(parent: u32) -> Vec<(u32, bool)> {
    let Ok(listing) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, zombie) = parent_of(&stat)?;
            (ppid == parent).then_some((pid, zombie))
        })
        .collect()
}

/// `PID (COMM) STATE PPID ...` → PPID and whether STATE is a zombie.
fn parent_of(stat: &str) -> Option<(u32, bool)> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state == "Z" || state == "X"))
}

/// The socket inodes a process holds (its /proc/PID/fd links `socket:[N]`).
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .take(4096)
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let s = link.to_str()?;
            s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `/proc/PID/cmdline`: the arguments, each NUL-terminated. Empty for a zombie (and a
/// kernel thread), which has no argv.
pub fn argv(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    Some(
        raw.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_lines() {
        let p = parse_stat("42 (tunnel-watchdog) S 1 42 42 0 -1").unwrap();
        assert_eq!(p.name, "tunnel-watchdog");
        assert_eq!(p.state, RunState::Active);
        let odd = parse_stat("7 (a) b (c) T 1 2").unwrap();
        assert_eq!(
            (odd.name.as_str(), odd.state),
            ("a) b (c", RunState::Stopped)
        );
        assert_eq!(parse_stat("8 (ssh) Z 1").unwrap().state, RunState::Zombie);
        assert_eq!(parse_stat("8 (ssh) t 1").unwrap().state, RunState::Stopped);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("9 (ssh)"), None);
        assert_eq!(parent_of("7 (a) b (c) S 42 7 7"), Some((42, false)));
        assert_eq!(parent_of("8 (sleep) Z 1 8"), Some((1, true)));
        assert_eq!(parent_of("8 (sleep)"), None);
    }
}
