//! `systemd-analyze security`, the score the system unit is held to (by the golden tests
//! on every rendered unit, and by the nspawn test on the unit it runs).

use std::path::Path;
use std::time::Duration;

use super::user_manager::run_bounded;

/// `systemd-analyze security --offline=yes UNIT`: the overall exposure score.
pub fn exposure(unit: &Path) -> f64 {
    let mut cmd = std::process::Command::new("systemd-analyze");
    cmd.args(["security", "--offline=yes", "--no-pager"])
        .arg(unit);
    let out = run_bounded(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score from systemd-analyze security:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // "→ Overall exposure level for tunnel-itest.service: 1.2 OK 🙂"
    // In the C locale the arrow and smiley are "->" and ":-)": take the word after
    // "service: ", not after the last colon.
    line.split_once(".service: ")
        .map(|(_, rest)| rest)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("score")
}
