//! `install --all --root DIR` of 1,000 tunnels, systemd and inittab (before batching: 7.4 s and
//! 30 s before batching). Not a test: prints the times.
//!
//!     cargo bench --bench install_scale [-- --tunnelctl PATH] [--count N]
//!
//! `--tunnelctl` measures another build (for example an older one) on the same configs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut tunnelctl = PathBuf::from(env!("CARGO_BIN_EXE_tunnelctl"));
    let mut count = 1000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tunnelctl" => tunnelctl = args.next().expect("--tunnelctl PATH").into(),
            "--count" => count = args.next().and_then(|n| n.parse().ok()).expect("--count N"),
            _ => {} // cargo bench passes --bench
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tunnels.yaml");
    let mut text = String::from("tunnels:\n");
    for i in 0..count {
        text.push_str(&format!(
            "  scale{i}:\n    host: h{i}.example.org\n    forwards:\n      - local: {}\n        to: localhost:80\n",
            10000 + i
        ));
    }
    std::fs::write(&config, text).unwrap();
    println!(
        "install --all --root DIR of {count} tunnels with {}",
        tunnelctl.display()
    );
    for target in ["systemd", "inittab"] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let root = tempfile::tempdir_in(dir.path()).unwrap();
            std::fs::create_dir_all(root.path().join("etc")).unwrap();
            std::fs::write(root.path().join("etc/inittab"), "id:2:initdefault:\n").unwrap();
            let started = Instant::now();
            let out = Command::new(&tunnelctl)
                .arg("-c")
                .arg(&config)
                .args([
                    "install",
                    "--all",
                    "--target",
                    target,
                    "--watchdog",
                    "/usr/bin/tunnel-watchdog",
                    "--root",
                ])
                .arg(root.path())
                .env("HOME", dir.path())
                .output()
                .unwrap();
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            times.push(took);
        }
        times.sort();
        let show = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        println!(
            "  {target:8} median {} (min {}, max {}) of 3 runs",
            show(times[1]),
            show(times[0]),
            show(times[2])
        );
    }
}
