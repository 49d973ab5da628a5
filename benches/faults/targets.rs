//! The endpoints the forwards lead to, and the silent server of fault 7.
//!
//! A line server speaks first (a banner line, so ssh-level probes such as
//! tunnel-watchdog's that expect a greeting get one), then echoes one line back:
//! a check that sends a nonce and reads it back proves data flows both ways.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::netns::Netns;

/// Connections served at once; beyond that a connection is closed at once (never reached in practice).
const MAX_ACTIVE: usize = 256;

/// The first line of a bulk upload (fault 10): the line server then discards what follows.
pub const BULK: &str = "bulk\n";

pub struct LineServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Waits up to 200 ms for a connection; None on timeout.
fn accept_some(listener: &TcpListener) -> Option<TcpStream> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(200u16)) {
        Ok(n) if n > 0 => listener.accept().ok().map(|(s, _)| s),
        _ => None,
    }
}

fn bind_in(ns: &Netns, addr: SocketAddr) -> Result<TcpListener, String> {
    ns.enter(|| TcpListener::bind(addr))
        .map_err(|e| format!("bind {addr} in {}: {e}", ns.name))
}

impl LineServer {
    pub fn start(ns: &Netns, addr: SocketAddr, banner: &str) -> Result<LineServer, String> {
        let listener = bind_in(ns, addr)?;
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let banner = format!("{banner}\n");
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Some(conn) = accept_some(&listener) else {
                    continue;
                };
                if active.load(Ordering::SeqCst) >= MAX_ACTIVE {
                    continue; // dropped: closes the connection
                }
                active.fetch_add(1, Ordering::SeqCst);
                let active = active.clone();
                let banner = banner.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &banner);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(LineServer {
            stop,
            thread: Some(thread),
        })
    }
}

fn serve(mut conn: TcpStream, banner: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(banner.as_bytes())?;
    let mut line = String::new();
    // One line, at most 200 bytes: a probe that only wants the banner just closes.
    let mut reader = BufReader::new(conn.try_clone()?).take(200);
    if reader.read_line(&mut line)? > 0 {
        if line == BULK {
            // Fault 10's upload: swallow everything until the sender stops.
            conn.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut sink = reader.into_inner();
            let mut buf = vec![0u8; 64 * 1024];
            while sink.read(&mut buf)? > 0 {}
            return Ok(());
        }
        conn.write_all(line.as_bytes())?;
    }
    Ok(())
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts TCP and never sends a byte. Accepted connections are kept open until
/// the server is dropped, so a client mid-handshake waits for its own timeout.
pub struct SilentServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub fn start(ns: &Netns, addrs: &[SocketAddr]) -> Result<SilentServer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        // Bind every port before starting a thread, so a failed bind leaves nothing running.
        let listeners = addrs
            .iter()
            .map(|&a| bind_in(ns, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut threads = Vec::new();
        for listener in listeners {
            let (stop, held) = (stop.clone(), held.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(conn) = accept_some(&listener) {
                        let mut held = held.lock().unwrap();
                        if held.len() < 1000 {
                            held.push(conn);
                        }
                    }
                }
                // The listener closes here; accepted connections stay in `held`.
            }));
        }
        Ok(SilentServer {
            stop,
            threads,
            held,
        })
    }

    /// Closes the listening sockets (so sshd can bind again) but keeps the accepted ones.
    pub fn stop_listening(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    pub fn accepted(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop_listening();
        self.held.lock().unwrap().clear();
    }
}

/// One end-to-end check: connect, read the banner, send a nonce, read it back.
pub fn check(ns: &Netns, addr: SocketAddr, banner: &str, timeout: Duration) -> bool {
    let Ok(conn) = ns.enter(|| TcpStream::connect_timeout(&addr, timeout)) else {
        return false;
    };
    let go = || -> std::io::Result<bool> {
        conn.set_read_timeout(Some(timeout))?;
        conn.set_write_timeout(Some(timeout))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim_end() != banner {
            return Ok(false);
        }
        let nonce = format!(
            "nonce-{}\n",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        (&conn).write_all(nonce.as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        Ok(line == nonce)
    };
    go().unwrap_or(false)
}
