//! Fault 10: a bulk upload through every tool's `-L` forward over a rate-limited
//! uplink, and what each tool does meanwhile: does it restart ssh (a false alarm
//! that cuts the upload), and how slow is a check through the tunnel.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::lane::Lane;
use crate::tools::{Instance, Tool, server_banner};
use crate::{procs, stop, targets};

/// How long the upload runs.
pub const UPLOAD: Duration = Duration::from_secs(60);
/// One end-to-end check through `-L` this often while the upload runs.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A check slower than this counts as failed (far above any probe timeout in the bench).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug, Default)]
pub struct SlowStats {
    /// ssh processes that appeared in the unit's cgroup during the upload (restarts of ssh).
    pub ssh_started: usize,
    /// Times the unit's main process changed (the supervisor itself restarted).
    pub unit_restarts: usize,
    /// Times the upload's connection was cut (then reopened after 1 s).
    pub uploads_cut: usize,
    pub bytes: u64,
    /// Latencies of the checks that passed, seconds.
    pub check_secs: Vec<f64>,
    pub checks_failed: usize,
}

/// Runs the upload and the observation for `d` on every instance at once.
pub fn run(lane: &Lane, d: Duration) -> BTreeMap<Tool, SlowStats> {
    let end = Instant::now() + d;
    std::thread::scope(|s| {
        let handles: Vec<_> = lane
            .instances
            .iter()
            .map(|inst| {
                s.spawn(move || {
                    let up = s.spawn(move || upload(lane, inst, end));
                    let checks = s.spawn(move || checks(lane, inst, end));
                    let mut st = watch(lane, inst, end);
                    let (cut, bytes) = up.join().unwrap_or_default();
                    let (ok, failed) = checks.join().unwrap_or_default();
                    st.uploads_cut = cut;
                    st.bytes = bytes;
                    st.check_secs = ok;
                    st.checks_failed = failed;
                    (inst.tool, st)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// Samples the unit every 250 ms: new ssh processes, main pid changes.
fn watch(lane: &Lane, inst: &Instance, end: Instant) -> SlowStats {
    let mut st = SlowStats::default();
    let cgroup = lane.mgr.unit_cgroup_dir(&inst.unit);
    let ssh_now = || -> BTreeSet<i32> {
        cgroup
            .as_ref()
            .map(|d| procs::cgroup_pids(d))
            .unwrap_or_default()
            .into_iter()
            .filter(|&p| procs::comm(p) == "ssh")
            .collect()
    };
    let mut seen = ssh_now();
    let mut main = lane.mgr.main_pid(&inst.unit);
    while Instant::now() < end && !stop::requested() {
        std::thread::sleep(Duration::from_millis(250));
        for p in ssh_now() {
            if seen.insert(p) {
                st.ssh_started += 1;
            }
        }
        let m = lane.mgr.main_pid(&inst.unit);
        if m.is_some() && m != main {
            st.unit_restarts += 1;
            main = m;
        }
    }
    st
}

/// Writes as fast as the tunnel takes it; reopens a cut upload after 1 s. Returns
/// (times cut, bytes written into the forward).
fn upload(lane: &Lane, inst: &Instance, end: Instant) -> (usize, u64) {
    let addr: SocketAddr = ([127, 0, 0, 1], inst.local_port).into();
    let chunk = vec![b'x'; 16 * 1024];
    let mut cut = 0;
    let mut bytes = 0u64;
    while Instant::now() < end && !stop::requested() {
        let opened = (|| -> std::io::Result<TcpStream> {
            let conn = lane
                .client
                .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?;
            conn.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line)?;
            if line.is_empty() {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            (&conn).write_all(targets::BULK.as_bytes())?;
            conn.set_write_timeout(Some(Duration::from_millis(500)))?;
            Ok(conn)
        })();
        let Ok(mut conn) = opened else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        loop {
            if Instant::now() >= end || stop::requested() {
                return (cut, bytes);
            }
            match conn.write(&chunk) {
                Ok(n) => bytes += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    cut += 1;
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
    (cut, bytes)
}

/// An end-to-end check through `-L` every 2 s; (latencies of those that passed, failed count).
fn checks(lane: &Lane, inst: &Instance, end: Instant) -> (Vec<f64>, usize) {
    let addr: SocketAddr = ([127, 0, 0, 1], inst.local_port).into();
    let banner = server_banner(lane.n);
    let mut ok = Vec::new();
    let mut failed = 0;
    while Instant::now() + Duration::from_millis(100) < end && !stop::requested() {
        let t0 = Instant::now();
        if targets::check(&lane.client, addr, &banner, CHECK_TIMEOUT) {
            ok.push(t0.elapsed().as_secs_f64());
        } else {
            failed += 1;
        }
        let next = t0 + CHECK_EVERY;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(end.saturating_duration_since(Instant::now())));
        }
    }
    (ok, failed)
}
