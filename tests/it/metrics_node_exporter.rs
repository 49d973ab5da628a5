//! `tunnelctl metrics` read by Debian's real `prometheus-node-exporter`: its textfile
//! collector parses the exposition (and says `node_textfile_scrape_error 1` for a file it
//! rejects), it is scraped over HTTP on 127.0.0.1, and the samples are checked against a
//! live tunnel (real sshd, real tunnel-watchdog) and a degraded one.

use crate::common;
use crate::firstrun_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::child::StopOnDrop;
use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::wait_until;
use common::watchdog_cmd::{start_remote_forward_watchdog, state_log_and_ssh};
use firstrun_support::{free_port, text, tunnelctl};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

/// node_exporter on 127.0.0.1:`port` with only the textfile collector, reading `dir`.
fn start_node_exporter(port: u16, dir: &Path, log: &Path) -> StopOnDrop {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    StopOnDrop(child)
}

/// `GET /metrics` over HTTP/1.0 (the server closes: read to the end); the body, or why not.
fn scrape(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {response:?}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {head}"));
    }
    Ok(body.to_string())
}

/// Samples as `name{labels}` (exactly as exposed) → value; comments skipped.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Writes `text` into `dir/name` atomically (node_exporter may read at any moment).
fn write_prom(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn status_json(state_dir: &Path) -> serde_json::Value {
    let out = tunnelctl(
        Path::new("/nonexistent.yaml"),
        &[
            "status",
            "--json",
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
}

#[test]
fn node_exporter_reads_tunnelctl_metrics_of_a_live_and_a_degraded_tunnel() {
    let test = "node_exporter_reads_tunnelctl_metrics_of_a_live_and_a_degraded_tunnel";
    if !require(test, &[Prereq::Root, Prereq::Sshd, Prereq::NodeExporter]) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("metrics")
        .tempdir()
        .unwrap();
    let states: PathBuf = dir.path().join("states");
    let textfiles = dir.path().join("textfile");
    std::fs::create_dir_all(&textfiles).unwrap();
    let live_dir = states.join("live");
    let wd = start_remote_forward_watchdog(
        &sshd,
        "live",
        &live_dir,
        &states.join("live.log"),
        free_port(),
    );
    let live_up = || {
        let doc = status_json(&live_dir);
        doc["tunnels"][0]["state"] == "up"
    };
    assert!(
        wait_until(Duration::from_secs(20), live_up),
        "the live tunnel never came up: {}\nwatchdog log:\n{}",
        status_json(&live_dir),
        std::fs::read_to_string(states.join("live.log")).unwrap_or_default()
    );

    // The degraded tunnel: a real watchdog whose -R works and whose -L target refuses
    // (nothing listens on its port): transport up, one forward target-down.
    let deg_dir = states.join("deg");
    let (deg_local, deg_target, deg_remote) = (free_port(), free_port(), free_port());
    let deg_l = format!("-L 127.0.0.1:{deg_local}:127.0.0.1:{deg_target}");
    let deg_r = format!("-R {deg_remote}:localhost:{}", sshd.port());
    let mut deg_ssh = sshd.ssh_base_args();
    deg_ssh.extend(["-N", "-o", "ExitOnForwardFailure=yes"].map(String::from));
    for spec in [&deg_l, &deg_r] {
        deg_ssh.extend(spec.split(' ').map(String::from));
    }
    deg_ssh.push(sshd.host().to_string());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunnel-watchdog"));
    cmd.args([
        "--name",
        "deg",
        "--probe-interval",
        "1s",
        "--probe-timeout",
        "1s",
    ]);
    state_log_and_ssh(&mut cmd, &deg_dir, &states.join("deg.log"), &deg_ssh).stdin(Stdio::null());
    let deg_wd = StopOnDrop(cmd.spawn().unwrap());
    let deg_degraded = || status_json(&deg_dir)["tunnels"][0]["state"] == "degraded";
    assert!(
        wait_until(Duration::from_secs(20), deg_degraded),
        "the tunnel with a refusing target never showed degraded: {}\nwatchdog log:\n{}",
        status_json(&deg_dir),
        std::fs::read_to_string(states.join("deg.log")).unwrap_or_default()
    );
    let degraded_seen = now();

    // status agrees before metrics are looked at: exit 3 for degraded, 0 for up.
    let out = tunnelctl(
        Path::new("/nonexistent.yaml"),
        &["status", "-v", "--state-dir", states.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!("target down: 127.0.0.1:{deg_target} ({deg_l})"))
            && table.contains(&format!("\n  {deg_l}  target-down  since ")),
        "{}",
        text(&out)
    );

    let out = tunnelctl(
        Path::new("/nonexistent.yaml"),
        &["metrics", "--state-dir", states.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let exposition = String::from_utf8(out.stdout.clone()).unwrap();
    write_prom(&textfiles, "tunnelctl.prom", &exposition);

    let port = free_port();
    let log = dir.path().join("node_exporter.log");
    let mut exporter = start_node_exporter(port, &textfiles, &log);
    let started = Instant::now();
    let mut body = Err(String::new());
    let listening = wait_until(Duration::from_secs(20), || {
        if let Ok(Some(status)) = exporter.0.try_wait() {
            panic!(
                "node_exporter exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        body = scrape(port);
        body.is_ok()
    });
    assert!(
        listening,
        "no scrape from node_exporter on 127.0.0.1:{port}: {body:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!("node_exporter answered after {:?}", started.elapsed());
    let body = body.unwrap();
    let got = samples(&body);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let expect = |series: &str, value: f64| {
        assert_eq!(
            got.get(series),
            Some(&value),
            "{series}\nscraped:\n{body}\nnode_exporter log:\n{}",
            log_text()
        );
    };
    // The textfile collector parsed the file (a malformed one makes this 1).
    expect("node_textfile_scrape_error", 0.0);
    let live = &status_json(&live_dir)["tunnels"][0];
    expect("tunnelctl_tunnel_up{tunnel=\"live\"}", 1.0);
    expect("tunnelctl_tunnel_degraded{tunnel=\"live\"}", 0.0);
    expect("tunnelctl_tunnel_state{state=\"up\",tunnel=\"live\"}", 1.0);
    expect(
        "tunnelctl_restarts_total{tunnel=\"live\"}",
        live["restarts"].as_f64().unwrap(),
    );
    expect("tunnelctl_backoff_remaining_seconds{tunnel=\"live\"}", 0.0);
    // Forward lines come from the watchdog once it fills them: each then exports as up.
    for f in live["forwards"].as_array().unwrap() {
        let spec = f["spec"].as_str().unwrap();
        expect(
            &format!("tunnelctl_forward_up{{forward=\"{spec}\",tunnel=\"live\"}}"),
            1.0,
        );
    }
    let deg = &status_json(&deg_dir)["tunnels"][0];
    expect("tunnelctl_tunnel_up{tunnel=\"deg\"}", 1.0);
    expect("tunnelctl_tunnel_degraded{tunnel=\"deg\"}", 1.0);
    expect(
        "tunnelctl_tunnel_state{state=\"degraded\",tunnel=\"deg\"}",
        1.0,
    );
    expect("tunnelctl_tunnel_state{state=\"up\",tunnel=\"deg\"}", 0.0);
    expect(
        &format!("tunnelctl_forward_up{{forward=\"{deg_l}\",tunnel=\"deg\"}}"),
        0.0,
    );
    expect(
        &format!("tunnelctl_forward_up{{forward=\"{deg_r}\",tunnel=\"deg\"}}"),
        1.0,
    );
    let r_latency_ms = deg["forwards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["spec"] == deg_r.as_str())
        .and_then(|f| f["latency_ms"].as_f64())
        .unwrap_or_else(|| panic!("no latency for {deg_r}: {deg}"));
    expect(
        &format!("tunnelctl_forward_probe_latency_seconds{{forward=\"{deg_r}\",tunnel=\"deg\"}}"),
        r_latency_ms / 1000.0,
    );
    expect(
        "tunnelctl_restarts_total{tunnel=\"deg\"}",
        deg["restarts"].as_f64().unwrap(),
    );
    expect(
        "tunnelctl_reconnects_total{tunnel=\"deg\"}",
        deg["reconnects"].as_f64().unwrap(),
    );
    // Degraded since about when the test first saw it (the exposition was taken after).
    let in_state = got["tunnelctl_state_seconds{tunnel=\"deg\"}"];
    let at_most = (now() - degraded_seen + 2) as f64;
    assert!(
        (0.0..=at_most).contains(&in_state),
        "deg degraded for {in_state} s, but it was seen degraded at most {at_most} s ago"
    );
    eprintln!(
        "node_exporter: {} tunnelctl samples scraped, scrape_error 0",
        got.keys().filter(|k| k.starts_with("tunnelctl_")).count()
    );

    // The check can fail: a file node_exporter cannot parse is reported, not skipped.
    write_prom(
        &textfiles,
        "broken.prom",
        "tunnelctl_broken{tunnel=\"x\" 1\n",
    );
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = scrape(port).unwrap_or_default();
            samples(&seen).get("node_textfile_scrape_error") == Some(&1.0)
        }),
        "node_exporter accepted a malformed file:\n{seen}"
    );
    drop(exporter);
    drop(deg_wd);
    drop(wd);
}
