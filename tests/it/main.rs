//! The integration tests: one crate (as ripgrep's tests/ is), so the helpers in
//! [`common`] are compiled and linked once, not once per file.
//!
//! A new test file is `tests/it/NAME.rs` plus one `mod NAME;` line below; it reaches the
//! helpers with `use crate::common;`. Run one file's tests with
//! `cargo test --test it NAME::` and one test with
//! `cargo test --test it -- --exact NAME::TEST`.
//! Data the tests read stays outside the crate: tests/golden, tests/data.

mod common;
mod firstrun_support;
// Shared with the fault bench (benches/faults.rs includes the same file).
#[path = "../testkit/mod.rs"]
mod testkit;

mod ansible;
mod apply;
mod check;
mod dropbear;
mod everyday;
mod everyday_lifecycle;
mod firstrun_demo;
mod firstrun_doctor;
mod firstrun_status;
mod firstrun_trust;
mod fixture_sshd;
mod fuzz;
mod golden;
mod hostile;
mod import_handover;
mod import_roundtrip;
mod init_busybox;
mod init_driven;
mod init_harnesses;
mod init_openrc;
mod init_systemd_system;
mod init_systemd_user;
mod init_sysv;
mod install;
mod launchd_plist;
mod metrics_node_exporter;
mod packaging;
mod remote_half_bound;
mod router_package;
mod watchdog;
mod watchdog_busy;
mod watchdog_cli;
mod watchdog_foreign_folders;
mod watchdog_hooks;
mod watchdog_netevents;
mod watchdog_orphans;
mod watchdog_paths;
mod watchdog_probe;
mod watchdog_readiness;

/// `autotests = false` (Cargo.toml) means a test file nobody lists is never compiled:
/// every `tests/it/*.rs` must have its `mod` line here, and no test file may sit
/// directly under tests/ any more.
#[test]
fn every_test_file_is_in_this_crate() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = include_str!("main.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(tests.join("it")).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module != "main" && !main.lines().any(|l| l == format!("mod {module};")) {
            missing.push(format!(
                "tests/it/{name}: add `mod {module};` to tests/it/main.rs"
            ));
        }
    }
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            missing.push(format!(
                "{}: never compiled; move it to tests/it/ and add its `mod` line",
                path.display()
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
