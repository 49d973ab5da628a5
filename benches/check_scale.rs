//! `tunnelctl check` at scale: 40,000 bad tunnels, each with two problems of
//! its own (a port out of range, no forwards), then 20,000 tunnels that each
//! listen on a port of their own and share a refused option from `defaults` (found once
//! per tunnel, reported once). The first
//! stresses collecting, deduplicating and printing problems, the second the listener
//! check across tunnels. Goal: each under 2 s. (40,000 tunnels of the second kind would
//! exceed the YAML parser's node budget, which stays: it bounds memory.)
//!
//!     cargo bench --bench check_scale [-- SCALE]     (SCALE 1.0 = the sizes above)
//!
//! `TUNNELCTL_BENCH_BIN=PATH` times another tunnelctl binary (e.g. an older build).
//! Exit status: 0 when both met the goal and reported what they should, else 1.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

const GOAL: Duration = Duration::from_secs(2);

fn main() {
    let scale: f64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("SCALE must be a number"))
        .unwrap_or(1.0);
    let bin = std::env::var("TUNNELCTL_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunnelctl").to_string());
    let n = (40_000.0 * scale) as usize;
    let bad = case(
        &bin,
        "bad tunnels",
        n,
        bad_tunnels(n),
        2 * n + collisions(n),
    );
    let m = (20_000.0 * scale) as usize;
    let port = case(
        &bin,
        "tunnels with forwards",
        m,
        forwards(m),
        1 + collisions(m),
    );
    std::process::exit(if bad && port { 0 } else { 1 });
}

/// Runs check on `yaml`; true when it took at most [`GOAL`] and reported `expected`.
fn case(bin: &str, what: &str, tunnels: usize, yaml: String, expected: usize) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tunnels.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let cpu_before = children_cpu();
    let start = Instant::now();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .arg("check")
        .env_remove("TUNNELCTL_CONFIG")
        .output()
        .expect("run tunnelctl");
    let took = start.elapsed();
    let cpu = children_cpu() - cpu_before;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems = stderr.lines().filter(|l| l.contains(".yaml:")).count();
    let reported = out.status.code() == Some(2) && problems == expected;
    let within = took <= GOAL;
    println!(
        "check of {tunnels} {what}: {:.2} s ({cpu:.2} s CPU; goal {} s: {}), {problems} problems{} ({bin})",
        took.as_secs_f64(),
        GOAL.as_secs(),
        if within { "met" } else { "MISSED" },
        if reported {
            String::new()
        } else {
            format!(
                ", expected exit 2 and {expected}; got {:?}",
                out.status.code()
            )
        }
    );
    if !reported {
        for line in stderr.lines().rev().take(6) {
            println!("  {line}");
        }
    }
    reported && within
}

/// User plus system CPU seconds of this process's waited-for children (Linux:
/// /proc/self/stat fields 16 and 17, in clock ticks of 1/100 s), so a busy machine's
/// wall-clock figure can be read against what check itself used.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: field 3 onwards.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(16) + ticks(17)) / 100.0
}

/// Names whose inittab id (a 4-character hash) an earlier name already has: each is
/// one more problem.
fn collisions(tunnels: usize) -> usize {
    let ids: HashSet<String> = (0..tunnels)
        .map(|i| tunnelctl::config::inittab_id(&format!("t{i}")))
        .collect();
    tunnels - ids.len()
}

fn bad_tunnels(tunnels: usize) -> String {
    let mut yaml = String::from("tunnels:\n");
    for i in 0..tunnels {
        let _ = writeln!(yaml, "  t{i}: {{ host: h{i}, port: {} }}", 70_000 + i);
    }
    yaml
}

fn forwards(tunnels: usize) -> String {
    let mut yaml = String::from("defaults:\n  ssh_options: { ProxyCommand: nc %h %p }\ntunnels:\n");
    for i in 0..tunnels {
        let _ = writeln!(
            yaml,
            "  t{i}: {{ host: h{i}, forwards: [ {{ dynamic: {} }} ] }}",
            10_000 + i
        );
    }
    yaml
}
