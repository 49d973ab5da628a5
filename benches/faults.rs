//! Fault bench: how fast tunnelctl, autossh (two ways) and a plain
//! respawn loop bring an SSH tunnel back after ten kinds of fault, and what
//! they cost while idle. Needs root (namespaces, nftables, a user manager).
//!
//!     cargo bench --bench faults -- [--quick] [--tools A,B,C,D] [--faults 1,2,...]
//!                                   [--trials N] [--footprint-minutes M]
//!
//! Exit status: 0 when every selected trial of tool A recovered (or A was not
//! selected), 1 otherwise, 2 on a usage or setup error.
//!
//! A crate root looks for its modules next to itself, so each one is pointed at
//! its file under benches/faults/ (one concern per file).

#[path = "faults/cli.rs"]
mod cli;
#[path = "faults/faults.rs"]
mod faults;
#[path = "faults/firewall.rs"]
mod firewall;
#[path = "faults/freeze.rs"]
mod freeze;
#[path = "faults/lane.rs"]
mod lane;
#[path = "faults/measure.rs"]
mod measure;
#[path = "faults/netns.rs"]
mod netns;
#[path = "faults/procs.rs"]
mod procs;
#[path = "faults/report.rs"]
mod report;
#[path = "faults/setup.rs"]
mod setup;
#[path = "faults/slowlink.rs"]
mod slowlink;
#[path = "faults/sockets.rs"]
mod sockets;
#[path = "faults/sshd.rs"]
mod sshd;
#[path = "faults/stop.rs"]
mod stop;
#[path = "faults/targets.rs"]
mod targets;
// Shared with the integration tests (tests/it/main.rs includes the same file).
#[path = "../tests/testkit/mod.rs"]
mod testkit;
#[path = "faults/tools.rs"]
mod tools;
#[path = "faults/usermgr.rs"]
mod usermgr;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use faults::Fault;
use tools::Tool;

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the package (absolute).
pub fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::path::absolute(&dir).unwrap_or(dir)
}

fn out_dir() -> PathBuf {
    target_dir().join("fault-bench")
}

/// What one lane's thread brings back: its trials or its footprint, or why it died.
type LaneResult = Result<
    (
        Vec<lane::TrialResult>,
        Vec<(Tool, measure::Footprint, measure::StopOutcome)>,
    ),
    String,
>;

/// Runs one lane (its fault's trials, or the footprint window) in a thread of `s`.
fn spawn_lane<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    lane: &'env lane::Lane,
    trials: u32,
    deadline: Duration,
    footprint_window: Duration,
) -> std::thread::ScopedJoinHandle<'scope, LaneResult> {
    s.spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if lane.fault.is_some() {
                (lane.run_fault(trials, deadline), Vec::new())
            } else {
                (Vec::new(), lane.run_footprint(footprint_window))
            }
        }));
        r.map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            format!("lane {} panicked: {msg}", lane.n)
        })
    })
}

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "error: the fault bench needs root (network namespaces, nftables, sshd, a systemd user manager)"
        );
        return ExitCode::from(2);
    }
    for tool in [
        "ip",
        "nft",
        "unshare",
        "ssh",
        "ssh-keygen",
        "/usr/sbin/sshd",
        "/usr/lib/systemd/systemd",
        "systemctl",
    ] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
                .unwrap_or(false)
        };
        if !found {
            eprintln!(
                "error: `{tool}` is missing (Debian: iproute2 nftables util-linux openssh-client openssh-server systemd)"
            );
            return ExitCode::from(2);
        }
    }
    if opts.tools.iter().any(|t| matches!(t, Tool::B | Tool::C))
        && !Path::new("/usr/bin/autossh").exists()
    {
        eprintln!(
            "error: /usr/bin/autossh is missing (Debian package autossh), needed for tools B and C"
        );
        return ExitCode::from(2);
    }
    firewall::self_check();
    report::self_check();
    stop::install_handlers();
    netns::remember_home();
    netns::remove_stale();

    let started = Instant::now();
    let deadline = Duration::from_secs(opts.deadline_secs);
    let machine = report::machine();
    let mut errors = Vec::new();
    let mut trials = Vec::new();
    let mut footprint = Vec::new();
    let (a_unavailable, a_unit, bench_dir);
    let out = out_dir();
    {
        let mut bench = setup::Bench::new();
        if let Err(e) = bench.setup(&opts) {
            eprintln!("error: setup failed: {e}");
            save_logs(&bench.dir, &out.join("logs"));
            return ExitCode::from(2);
        }
        a_unavailable = bench.a_unavailable.clone();
        a_unit = bench.a_unit_text();
        bench_dir = bench.dir.clone();
        eprintln!(
            "[run] setup took {:.1} s; lanes: {}",
            started.elapsed().as_secs_f64(),
            bench.lanes.len()
        );
        let footprint_window = Duration::from_secs_f64(opts.footprint_minutes * 60.0);
        // The crowd's lane logs in 20 tunnels per tool at once, a burst that loads the
        // machine under whatever other lane is recovering then: it runs once the other
        // faults are done (the footprint lane, never faulted, still runs beside it).
        let (crowd, rest): (Vec<&lane::Lane>, Vec<&lane::Lane>) = bench
            .lanes
            .iter()
            .partition(|lane| lane.fault == Some(Fault::Crowd));
        let trials_n = opts.trials;
        std::thread::scope(|s| {
            let run = |lane| spawn_lane(s, lane, trials_n, deadline, footprint_window);
            let (faulted, footprint_lanes): (Vec<&lane::Lane>, Vec<&lane::Lane>) =
                rest.into_iter().partition(|lane| lane.fault.is_some());
            let footprint_handles: Vec<_> = footprint_lanes.into_iter().map(run).collect();
            let mut collect = |handles: Vec<std::thread::ScopedJoinHandle<'_, LaneResult>>| {
                for h in handles {
                    match h.join() {
                        Ok(Ok((t, f))) => {
                            trials.extend(t);
                            footprint.extend(f);
                        }
                        Ok(Err(e)) => errors.push(e),
                        Err(_) => errors.push("a lane thread died".into()),
                    }
                }
            };
            collect(faulted.into_iter().map(run).collect());
            collect(crowd.into_iter().map(run).collect());
            collect(footprint_handles);
        });
        save_logs(&bench.dir, &out.join("logs"));
        // Dropping the bench tears everything down.
    }
    if stop::requested() {
        errors.push("interrupted (Ctrl-C): the results are partial".into());
    }
    trials.sort_by_key(|r| (r.fault, r.tool, r.trial));

    let rep = report::Report {
        opts: &opts,
        machine,
        wall_secs: started.elapsed().as_secs_f64(),
        trials,
        footprint,
        a_unavailable,
        a_unit,
        errors,
        bench_dir,
    };
    let md = rep.markdown();
    println!("{md}");
    let svg = rep.svg();
    let writes = [
        ("report.md", md.as_str()),
        ("results.json", &rep.json()),
        ("recovery.svg", &svg),
    ];
    for (name, text) in writes {
        let path = out.join(name);
        if let Err(e) = std::fs::create_dir_all(&out).and_then(|_| std::fs::write(&path, text)) {
            eprintln!("error: {}: {e}", path.display());
        }
    }
    eprintln!(
        "[run] wrote {}/{{report.md,results.json,recovery.svg}}",
        out.display()
    );
    if (opts.is_full_run() || opts.save_docs) && !stop::requested() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let md_doc = md.replace("](recovery.svg)", "](fault-bench.svg)");
        let _ = std::fs::write(docs.join("fault-bench.md"), md_doc);
        let _ = std::fs::write(docs.join("fault-bench.svg"), &svg);
        eprintln!("[run] wrote docs/fault-bench.md and docs/fault-bench.svg");
    }

    // Exit status: did A recover every time it was asked to?
    if !opts.tools.contains(&Tool::A) {
        return if rep.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let a_trials: Vec<_> = rep.trials.iter().filter(|r| r.tool == Tool::A).collect();
    let all_faults_ran = opts
        .faults
        .iter()
        .all(|f| a_trials.iter().any(|r| r.fault == *f && r.healthy_before));
    let ok = rep.a_unavailable.is_none()
        && rep.errors.is_empty()
        && all_faults_ran
        && a_trials
            .iter()
            .all(|r| r.healthy_before && r.recovery_secs.is_some());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("tool A did not recover from every fault trial (or did not run)");
        ExitCode::FAILURE
    }
}

/// Copies sshd, user manager and autossh logs out of the bench's temp folder before it is removed.
fn save_logs(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let _ = std::fs::create_dir_all(to);
    if let Ok(rd) = std::fs::read_dir(from) {
        for e in rd.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n.ends_with(".log")
                || n.ends_with(".conf")
                || n == "tunnels.yaml"
                || n.ends_with(".service")
            {
                let _ = std::fs::copy(e.path(), to.join(&name));
            }
        }
    }
}
