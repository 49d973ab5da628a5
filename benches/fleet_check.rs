//! `tunnelctl check DIR` over a fleet: HOSTS host files (default 100), each with two
//! reverse tunnels to one of a few shared bastions on ports of its own, and exactly one
//! remote port claimed by two hosts on the same bastion. Goal: that one clash, and
//! nothing else, reported in under a second (median of 5 runs).
//!
//!     cargo bench --bench fleet_check [-- HOSTS]
//!
//! `TUNNELCTL_BENCH_BIN=PATH` times another tunnelctl binary. Exit status: 0 when the
//! goal was met and the report was exactly the one clash, else 1.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

const GOAL: Duration = Duration::from_secs(1);
const RUNS: usize = 5;

fn main() {
    let hosts: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("HOSTS must be a number"))
        .unwrap_or(100);
    assert!(hosts >= 2, "HOSTS must be at least 2");
    let bin = std::env::var("TUNNELCTL_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tunnelctl").to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    for host in 0..hosts {
        std::fs::write(
            dir.path().join(format!("box{host:04}.yaml")),
            host_file(host, hosts),
        )
        .expect("write host file");
    }
    let mut times = Vec::new();
    let mut ok = true;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = Command::new(&bin)
            .arg("check")
            .arg(dir.path())
            .env_remove("TUNNELCTL_CONFIG")
            .output()
            .expect("run tunnelctl");
        times.push(start.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let clashes: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("is also claimed by"))
            .collect();
        // The last host re-uses host 0's first port on host 0's bastion.
        let exact = clashes.len() == 1
            && clashes[0].contains(&format!("box{:04}.yaml:", hosts - 1))
            && clashes[0].contains("box0000.yaml:")
            && clashes[0].contains("remote port 20000 on bastion0.example.org:22");
        if out.status.code() != Some(2) || !exact {
            eprintln!(
                "fleet_check: expected exactly the one clash (exit 2), got exit {:?}:\n{stderr}",
                out.status.code()
            );
            ok = false;
            break;
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let met = median <= GOAL;
    println!(
        "check DIR of {hosts} host files ({} tunnels): median {:.3} s of {} runs (goal {} s): {}",
        2 * hosts,
        median.as_secs_f64(),
        times.len(),
        GOAL.as_secs(),
        if met && ok { "ok" } else { "FAILED" }
    );
    std::process::exit(if met && ok { 0 } else { 1 });
}

/// One host's tunnels.yaml: two reverse tunnels (ssh and a web console) to bastion
/// `host % 4`, ports 20000 + 2·host and the one after; the last host is on host 0's
/// bastion and its first port is host 0's.
fn host_file(host: usize, hosts: usize) -> String {
    let last = host == hosts - 1;
    let bastion = if last { 0 } else { host % 4 };
    let mut yaml = String::from(
        "defaults:\n  user: tunnel\n  identity: /etc/tunnelctl/id_ed25519\ntunnels:\n",
    );
    for (i, (name, to)) in [("ssh", "localhost:22"), ("console", "localhost:8443")]
        .iter()
        .enumerate()
    {
        let _ = write!(
            yaml,
            "  {name}:\n    host: bastion{bastion}.example.org\n    forwards:\n      - remote: {}\n        to: {to}\n",
            if last && i == 0 {
                20_000
            } else {
                20_000 + 2 * host + i
            }
        );
    }
    yaml
}
