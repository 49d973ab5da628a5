//! A tiny TCP target on 127.0.0.1 for forwards: records when each connection arrived
//! and optionally speaks first (an `SSH-2.0-` banner), like an sshd behind `-R … :22`.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct TcpTarget {
    pub port: u16,
    connections: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    /// While set, new connections get no banner (a target that changed its ways).
    hushed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpTarget {
    /// `banner`: bytes sent on accept (None: a silent target that waits for the client).
    pub fn start(banner: Option<&'static [u8]>) -> TcpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        Self::serve(listener, banner, true)
    }

    /// On `port`: sends an SSH banner and hangs up at once, like a server that greets
    /// and then drops every connection (ssh fails after the greeting, every time).
    pub fn greet_and_hang_up(port: u16) -> TcpTarget {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind greeter");
        Self::serve(listener, Some(b"SSH-2.0-OpenSSH_9.2p1 greeter\r\n"), false)
    }

    fn serve(listener: TcpListener, banner: Option<&'static [u8]>, keep: bool) -> TcpTarget {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let hushed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop, hushed) = (connections.clone(), stop.clone(), hushed.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            connections.lock().unwrap().push(Instant::now());
                            if let Some(b) = banner
                                && !hushed.load(Ordering::Relaxed)
                            {
                                let _ = stream.write_all(b);
                            }
                            if keep {
                                held.push(stream);
                            }
                            // Keep a few open (a real service would), drop old ones.
                            if held.len() > 8 {
                                held.remove(0);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TcpTarget {
            port,
            connections,
            stop,
            hushed,
            thread: Some(thread),
        }
    }

    /// From now on, connections get no banner (`false`: the banner again).
    pub fn hush(&self, hushed: bool) {
        self.hushed.store(hushed, Ordering::Relaxed);
    }

    pub fn connections(&self) -> Vec<Instant> {
        self.connections.lock().unwrap().clone()
    }
}

impl Drop for TcpTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
