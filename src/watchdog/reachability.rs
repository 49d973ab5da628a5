//! "Does the server greet again?" during a back-off after ssh got no greeting (refused,
//! no route, connect or banner time-out): a TCP connect to the server's address that
//! sends our identification line, waits for the server's `SSH-` line, then closes. The
//! address comes from `ssh -G` with the tunnel's own ssh arguments, which resolves the
//! config without touching the network.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a back-off reuses the server's resolved addresses: a name is looked up
/// again at most this often (each lookup runs `getent`), and still follows a dynamic DNS
/// change within the outage.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(30);

/// After a lookup that found nothing (DNS down, say): not at every check, since each
/// runs a process, but soon enough that the tunnel follows DNS coming back.
pub const RESOLVE_AGAIN_WHEN_EMPTY: Duration = Duration::from_secs(5);

/// Upper bound of one TCP check, and of `ssh -G`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a back-off tries the check: at most one TCP connect a second. sshd sees only
/// the one that succeeds.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// After a check that every address refused, the next comes this soon: a refused connect
/// costs the server's kernel one RST and sshd nothing, and a restarting server (a bastion
/// that a crowd of tunnels waits for) is then seen within this of listening again.
pub const CHECK_AFTER_REFUSED: Duration = Duration::from_millis(250);

/// Only this long into a wait: a restarted sshd listens again within seconds, and a
/// server down for longer gets the once-a-second check, so a fleet of tunnels facing a
/// long outage does not send four connections a second each for minutes.
pub const REFUSED_QUICKLY_FOR: Duration = Duration::from_secs(10);

/// While the path swallows our connects (a black hole: no answer, no refusal), a check
/// gives up on its SYN after this and the next sends a fresh one at once: the path is
/// seen healed within half a second, where the kernel alone retries a SYN after a
/// second. A SYN that goes nowhere costs nobody anything.
pub const SILENT_CONNECT_WITHIN: Duration = Duration::from_millis(500);

/// Every this many checks of a silent path one waits the whole [`CHECK_TIMEOUT`]
/// for its connect, so that a path slower than [`SILENT_CONNECT_WITHIN`] (a satellite
/// link) still gets through.
pub const SILENT_FULL_EVERY: u32 = 4;

/// What one greeting check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    /// The server's `SSH-` line came.
    Greets,
    /// Every address refused the connection: nothing listens there (yet).
    Refused,
    /// No address answered the connect at all in time: the path swallows it.
    Silent,
    /// Anything else: no greeting in time after the connect, no address, an error such
    /// as no route, a reset after the accept, or a listener that does not speak SSH.
    NoGreeting,
}

/// What we send first, as ssh does: a multiplexer in front of sshd (sslh and the like)
/// picks the protocol from the client's first bytes and may stay silent until then.
const CHECK_IDENTIFICATION: &[u8] = b"SSH-2.0-tunnel-watchdog-check\r\n";

/// Which addresses ssh would try (`AddressFamily`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// Where ssh would connect, or why the check would not see what ssh sees.
#[derive(Debug, PartialEq, Eq)]
pub enum Destination {
    Direct {
        host: String,
        port: u16,
        family: Family,
    },
    /// Why a TCP connect from here says nothing about ssh's path, e.g. "it is reached
    /// through ProxyJump".
    Unsuitable(&'static str),
}

/// Reads the address ssh would connect to from `ssh -G` output, or why a check from here
/// would not follow ssh's path (a proxy, or a bound source address or interface).
pub fn destination_of(output: &str) -> Option<Destination> {
    let g = crate::ssh_g::parse_ssh_g(output);
    let unsuitable = if g.proxy_jump.is_some() {
        Some("it is reached through ProxyJump")
    } else if g.proxy_command.is_some() {
        Some("it is reached through ProxyCommand")
    } else if g.bind_address.is_some() {
        Some("ssh binds to a BindAddress")
    } else if g.bind_interface.is_some() {
        Some("ssh binds to a BindInterface")
    } else {
        None
    };
    if let Some(why) = unsuitable {
        return Some(Destination::Unsuitable(why));
    }
    let family = match g.address_family {
        Some("inet") => Family::V4,
        Some("inet6") => Family::V6,
        _ => Family::Any,
    };
    Some(Destination::Direct {
        host: g.hostname?.to_string(),
        port: g.port?,
        family,
    })
}

/// Runs `PROGRAM -G ARGS...` (the tunnel's ssh command line, program first), bounded by
/// [`CHECK_TIMEOUT`].
pub fn resolve(ssh: &[String]) -> Result<Destination, String> {
    let (program, args) = ssh.split_first().ok_or("no ssh command")?;
    let mut command = Command::new(program);
    command.arg("-G").args(args);
    let out = run_bounded(&mut command, Instant::now() + CHECK_TIMEOUT)
        .map_err(|e| format!("{program} -G {e}"))?;
    destination_of(&out).ok_or_else(|| format!("{program} -G printed no hostname/port"))
}

/// The standard output of a short-lived helper (`ssh -G`, `getent`), which must exit
/// successfully by `deadline`; it is killed when it does not.
fn run_bounded(command: &mut Command, deadline: Instant) -> Result<String, String> {
    if Instant::now() >= deadline {
        return Err("had no time left to run".into());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("did not start: {e}"))?;
    // Bounded by the deadline; these print a few KiB at most, under a pipe's buffer.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not finish in time".into());
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if status.success() {
        Ok(out)
    } else {
        Err(format!("failed ({status})"))
    }
}

/// Whether an SSH server answers at `host:port` within `timeout` in total: a TCP connect
/// (each address's bounded by `connect_within` too), our identification line, and the
/// server's `SSH-` line, then close. A bare TCP accept is not enough: a middlebox or a
/// wedged server that accepts and never speaks would let ssh walk into ConnectTimeout
/// after ConnectTimeout.
pub fn server_greets(
    addrs: &[SocketAddr],
    connect_within: Duration,
    timeout: Duration,
) -> Greeting {
    let deadline = Instant::now() + timeout;
    let (mut refused, mut silent) = (0, 0);
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left.min(connect_within)) {
            // One connection is enough to judge: the server answered TCP here.
            Ok(stream) => {
                return if greets(stream, deadline) {
                    Greeting::Greets
                } else {
                    Greeting::NoGreeting
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => silent += 1,
            Err(_) => {}
        }
    }
    if refused > 0 && refused == addrs.len() {
        Greeting::Refused
    } else if silent > 0 && silent == addrs.len() {
        Greeting::Silent
    } else {
        Greeting::NoGreeting
    }
}

/// The addresses ssh would try for `host:port` under its `AddressFamily`.
pub fn addresses_for(host: &str, port: u16, family: Family, deadline: Instant) -> Vec<SocketAddr> {
    let mut found = addresses(host, port, deadline);
    found.retain(|addr| match family {
        Family::Any => true,
        Family::V4 => addr.is_ipv4(),
        Family::V6 => addr.is_ipv6(),
    });
    found
}

/// The addresses of `host`: an IP literal as it is, a name through the system's
/// resolver, in its order; empty when it cannot be resolved by the deadline.
pub fn addresses(host: &str, port: u16, deadline: Instant) -> Vec<SocketAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return vec![SocketAddr::new(ip, port)];
    }
    // An option-like or empty name is no host (getent would read it as a flag).
    if bare.is_empty() || bare.starts_with('-') {
        return Vec::new();
    }
    resolve_name(bare, port, deadline)
}

/// With glibc, through `getent ahosts` rather than getaddrinfo: the shipped watchdog
/// links glibc statically (Cargo.toml, profile release-static), and a static glibc
/// dlopen()s the NSS modules named in /etc/nsswitch.conf (libnss_mymachines, ...), which
/// is only safe with the very glibc it was built with. getent, part of glibc itself, is
/// the system's own dynamically linked resolver: the answers ssh gets.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn resolve_name(name: &str, port: u16, deadline: Instant) -> Vec<SocketAddr> {
    run_bounded(Command::new("getent").args(["ahosts", name]), deadline)
        .map(|out| parse_getent_ahosts(&out, port))
        .unwrap_or_default()
}

/// Elsewhere (macOS, musl) the libc resolver is dynamic or has no modules to load, so
/// getaddrinfo is safe to call; but it ignores any deadline (musl's default is 5 s × 2
/// attempts per name server) and would hold the single-threaded loop, signals included.
/// It runs in a forked child instead, killed at the deadline.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn resolve_name(name: &str, port: u16, deadline: Instant) -> Vec<SocketAddr> {
    in_child_until(deadline, || getaddrinfo(name, port))
}

/// Never compiled into a glibc watchdog (outside tests): a static glibc must not load NSS.
#[cfg(any(test, not(all(target_os = "linux", target_env = "gnu"))))]
fn getaddrinfo(name: &str, port: u16) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    (name, port)
        .to_socket_addrs()
        .map(|addrs| addrs.collect())
        .unwrap_or_default()
}

/// Most a lookup child may write back: a few addresses, some bytes each.
const MAX_ANSWER: usize = 16 * 1024;

/// Runs `lookup` in a forked child, which writes its addresses back over a pipe, one per
/// line; takes what arrived by `deadline` (nothing when the child is not done by then),
/// then SIGKILLs and reaps the child: the watchdog waits at most until `deadline`.
/// A fork without exec is safe here because the watchdog has a single thread (no lock
/// can be held by another thread at the fork); the child only resolves, writes, exits.
#[cfg_attr(
    all(target_os = "linux", target_env = "gnu", not(test)),
    allow(dead_code)
)]
fn in_child_until(deadline: Instant, lookup: impl FnOnce() -> Vec<SocketAddr>) -> Vec<SocketAddr> {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::waitpid;
    use nix::unistd::{ForkResult, fork};
    if Instant::now() >= deadline {
        return Vec::new();
    }
    let Ok((read, write)) = nix::unistd::pipe() else {
        return Vec::new();
    };
    // SAFETY: see above; the child calls only the lookup, write(2) and _exit(2).
    match unsafe { fork() } {
        Err(_) => Vec::new(),
        Ok(ForkResult::Child) => {
            drop(read);
            lookup_child_setup();
            let answer: String = lookup().iter().map(|a| format!("{a}\n")).collect();
            let mut bytes = answer.as_bytes();
            while !bytes.is_empty() {
                match nix::unistd::write(&write, bytes) {
                    Ok(n) if n > 0 => bytes = &bytes[n..],
                    Err(nix::errno::Errno::EINTR) => {}
                    _ => break,
                }
            }
            // SAFETY: ends the child at once: no destructors, no atexit handlers, no
            // flushing of buffers that belong to the parent.
            unsafe { nix::libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write);
            let answer = read_until(&read, deadline);
            // Exited or not, it is ours to end and reap; a zombie keeps its pid until
            // waitpid, so the kill cannot reach another process.
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            answer
                .map(|text| text.lines().filter_map(|l| l.parse().ok()).collect())
                .unwrap_or_default()
        }
    }
}

/// In the lookup child: default signal handling (the watchdog's handlers write to its
/// self-pipe, which the child shares), and on Linux death with the watchdog.
#[cfg_attr(
    all(target_os = "linux", target_env = "gnu", not(test)),
    allow(dead_code)
)]
fn lookup_child_setup() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
    ] {
        // SAFETY: restores the default disposition; no handler code involved.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    }
}

/// Everything the child wrote, if it closed the pipe by `deadline`.
#[cfg_attr(
    all(target_os = "linux", target_env = "gnu", not(test)),
    allow(dead_code)
)]
fn read_until(read: &std::os::fd::OwnedFd, deadline: Instant) -> Option<String> {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded by the deadline and by MAX_ANSWER.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || answer.len() > MAX_ANSWER {
            return None;
        }
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, crate::watchdog::poll_timeout(left)) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        match nix::unistd::read(read.as_fd(), &mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// `ADDRESS STREAM [NAME]` lines of `getent ahosts` (each address also comes with DGRAM
/// and RAW lines), in order.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn parse_getent_ahosts(output: &str, port: u16) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for line in output.lines() {
        let mut fields = line.split_whitespace();
        if let (Some(addr), Some("STREAM")) = (fields.next(), fields.next())
            && let Ok(ip) = addr.parse::<IpAddr>()
        {
            let addr = SocketAddr::new(ip, port);
            if !found.contains(&addr) {
                found.push(addr);
            }
        }
    }
    found
}

/// Sends our identification, then reads until the first four bytes are in (or the
/// deadline): `SSH-` or not.
fn greets(mut stream: TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero()
        || stream.set_write_timeout(Some(left)).is_err()
        || stream.write_all(CHECK_IDENTIFICATION).is_err()
    {
        return false;
    }
    let mut got = Vec::with_capacity(4);
    let mut buf = [0u8; 64];
    while got.len() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"SSH-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_and_refuses_what_a_check_cannot_follow() {
        let plain =
            "user root\nhostname 127.0.0.1\nport 2222\naddressfamily any\nproxyusefdpass no\n";
        assert_eq!(
            destination_of(plain),
            Some(Destination::Direct {
                host: "127.0.0.1".into(),
                port: 2222,
                family: Family::Any,
            })
        );
        let v6 = "hostname h\nport 22\naddressfamily inet6\n";
        assert!(matches!(
            destination_of(v6),
            Some(Destination::Direct {
                family: Family::V6,
                ..
            })
        ));
        for (output, why) in [
            ("hostname h\nport 22\nproxyjump x@y\n", "ProxyJump"),
            (
                "hostname h\nport 22\nproxycommand nc %h %p\n",
                "ProxyCommand",
            ),
            ("hostname h\nport 22\nbindaddress 10.0.0.2\n", "BindAddress"),
            ("hostname h\nport 22\nbindinterface wg0\n", "BindInterface"),
        ] {
            match destination_of(output) {
                Some(Destination::Unsuitable(reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert_eq!(destination_of("port 22\n"), None);
    }

    #[test]
    fn ssh_g_of_a_real_client_gives_host_and_port() {
        let args: Vec<String> = ["ssh", "-F", "/dev/null", "-p", "2222", "-N", "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !crate::test_prereq::require(
            "ssh_g_of_a_real_client_gives_host_and_port",
            crate::test_prereq::program("/usr/bin/ssh", "openssh-client"),
        ) {
            return;
        }
        assert_eq!(
            resolve(&args),
            Ok(Destination::Direct {
                host: "127.0.0.1".into(),
                port: 2222,
                family: Family::Any,
            })
        );
    }

    #[test]
    fn addresses_of_literals_and_of_names() {
        let soon = Instant::now() + Duration::from_secs(2);
        assert_eq!(
            addresses("127.0.0.1", 22, soon),
            vec![SocketAddr::from(([127, 0, 0, 1], 22))]
        );
        assert_eq!(
            addresses("[::1]", 22, soon),
            vec!["[::1]:22".parse().unwrap()]
        );
        assert_eq!(addresses("-s", 22, soon), Vec::<SocketAddr>::new());
        let past = Instant::now();
        assert_eq!(addresses("localhost", 22, past), Vec::<SocketAddr>::new());
        // /etc/hosts names localhost on every Debian: no DNS query leaves the machine.
        if std::path::Path::new("/usr/bin/getent").exists() {
            let local = addresses("localhost", 22, soon);
            assert!(
                !local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 22),
                "{local:?}"
            );
        }
    }

    #[test]
    fn a_lookup_in_a_child_answers_or_is_cut_off_at_the_deadline() {
        let soon = || Instant::now() + Duration::from_secs(5);
        let local = in_child_until(soon(), || getaddrinfo("localhost", 22));
        assert!(
            !local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 22),
            "{local:?}"
        );
        let literal: SocketAddr = "[::1]:2222".parse().unwrap();
        assert_eq!(in_child_until(soon(), || vec![literal]), vec![literal]);
        assert!(in_child_until(soon(), Vec::new).is_empty());
        // A resolver that hangs (a black-holed name server) costs the deadline, no more.
        let started = Instant::now();
        let hung = in_child_until(Instant::now() + Duration::from_millis(300), || {
            std::thread::sleep(Duration::from_secs(30));
            vec![literal]
        });
        assert!(hung.is_empty(), "{hung:?}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(in_child_until(Instant::now(), || vec![literal]).is_empty());
    }

    /// A listener whose accept queue is full drops further SYNs without an answer, as a
    /// black-holed path does: the check gives up after its connect bound and says so.
    #[test]
    fn a_connect_nobody_answers_is_silent_and_bounded() {
        use nix::sys::socket::{
            AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen,
            socket,
        };
        use std::os::fd::AsRawFd;
        let listener = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        listen(&listener, Backlog::new(0).unwrap()).unwrap();
        let port = getsockname::<SockaddrIn>(listener.as_raw_fd())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Never accepted: these fill the queue (bounded: a few connects).
        let fillers: Vec<TcpStream> = (0..4)
            .map_while(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
            .collect();
        assert!(!fillers.is_empty(), "the queue took no connection at all");
        let started = Instant::now();
        let found = server_greets(&[addr], Duration::from_millis(300), Duration::from_secs(2));
        let took = started.elapsed();
        assert_eq!(found, Greeting::Silent);
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "the connect bound, not the whole time-out, ended it: {took:?}"
        );
    }

    #[test]
    fn reads_getent_ahosts() {
        let out = "::1             STREAM localhost\n::1             DGRAM  \n\
                   ::1             RAW    \n127.0.0.1       STREAM \n127.0.0.1       DGRAM  \n";
        assert_eq!(
            parse_getent_ahosts(out, 2222),
            vec![
                "[::1]:2222".parse::<SocketAddr>().unwrap(),
                "127.0.0.1:2222".parse().unwrap()
            ]
        );
        assert!(parse_getent_ahosts("", 22).is_empty());
    }

    #[test]
    fn only_a_server_that_greets_counts() {
        use std::io::Write;
        let speaking = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = speaking.local_addr().unwrap().port();
        // Like a protocol multiplexer: it speaks only after the client's first line.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = speaking.accept().unwrap();
            let mut first = [0u8; 8];
            conn.read_exact(&mut first).unwrap();
            let _ = conn.write_all(b"SSH-2.0-test\r\n");
            first
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        let addrs = addresses_for("127.0.0.1", port, Family::Any, deadline);
        assert_eq!(
            server_greets(&addrs, Duration::from_secs(2), Duration::from_secs(2)),
            Greeting::Greets
        );
        assert_eq!(&server.join().unwrap(), b"SSH-2.0-");
        assert!(
            addresses_for("127.0.0.1", port, Family::V6, deadline).is_empty(),
            "AddressFamily inet6 never tries 127.0.0.1"
        );

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let addrs = addresses_for("127.0.0.1", port, Family::Any, deadline);
        let started = Instant::now();
        assert_eq!(
            server_greets(&addrs, Duration::from_secs(2), Duration::from_millis(300)),
            Greeting::NoGreeting
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the deadline bounds the read"
        );
        drop(silent);
        // Nothing listens: refused, which the back-off checks again sooner.
        assert_eq!(
            server_greets(&addrs, Duration::from_secs(1), Duration::from_secs(1)),
            Greeting::Refused
        );
        assert_eq!(
            server_greets(&[], Duration::from_secs(1), Duration::from_secs(1)),
            Greeting::NoGreeting
        );
    }
}
