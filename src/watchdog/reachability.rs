//! "Is the server reachable again?" during a back-off after a network-level failure: a
//! TCP connect to the server's address that waits for its `SSH-` greeting, then closes
//! without sending anything. The address comes
//! from `ssh -G` with the tunnel's own ssh arguments, which resolves the config without
//! touching the network.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound of one TCP check, and of `ssh -G`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a back-off tries the TCP check.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Where ssh would connect, or why the check cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Direct {
        host: String,
        port: u16,
    },
    /// ProxyJump/ProxyCommand: a TCP connect to the final host says nothing.
    Proxied(&'static str),
}

/// Reads `hostname`, `port`, `proxyjump` and `proxycommand` from `ssh -G` output.
pub fn parse_ssh_g(output: &str) -> Option<Target> {
    let mut host = None;
    let mut port = None;
    for line in output.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "hostname" => host = Some(value.trim().to_string()),
            "port" => port = value.trim().parse().ok(),
            "proxyjump" if value.trim() != "none" => return Some(Target::Proxied("ProxyJump")),
            "proxycommand" if value.trim() != "none" => {
                return Some(Target::Proxied("ProxyCommand"));
            }
            _ => {}
        }
    }
    Some(Target::Direct {
        host: host?,
        port: port?,
    })
}

/// Runs `PROGRAM -G ARGS...` (the tunnel's ssh command line, program first), bounded by
/// [`CHECK_TIMEOUT`].
pub fn resolve(ssh: &[String]) -> Result<Target, String> {
    let (program, args) = ssh.split_first().ok_or("no ssh command")?;
    let mut child = Command::new(program)
        .arg("-G")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{program} -G: {e}"))?;
    let deadline = Instant::now() + CHECK_TIMEOUT;
    // Bounded by the deadline; `ssh -G` prints a few KiB, well under a pipe's buffer.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} -G did not finish within 2 s"));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(format!("{program} -G failed ({status})"));
    }
    parse_ssh_g(&out).ok_or_else(|| format!("{program} -G printed no hostname/port"))
}

/// Whether an SSH server answers at `host:port` within `timeout` in total: a TCP connect
/// and the server's `SSH-` identification line, then close, sending nothing. A bare TCP
/// accept is not enough: a middlebox or a wedged server that accepts and never speaks
/// would end every back-off early and walk the tunnel into ConnectTimeout after
/// ConnectTimeout.
pub fn server_greets(host: &str, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    for addr in addresses(host, port, deadline) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, left) {
            // One connection is enough to judge: the server answered TCP here.
            return greets(stream, deadline);
        }
    }
    false
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
    let Ok(mut child) = Command::new("getent")
        .args(["ahosts", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return Vec::new();
    };
    // Bounded by the deadline; getent prints a few lines, well under a pipe's buffer.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Vec::new();
    }
    parse_getent_ahosts(&out, port)
}

/// Elsewhere (macOS, musl) the libc resolver is dynamic or has no modules to load.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn resolve_name(name: &str, port: u16, _deadline: Instant) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    (name, port)
        .to_socket_addrs()
        .map(|addrs| addrs.collect())
        .unwrap_or_default()
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

/// Reads until the first four bytes are in (or the deadline): `SSH-` or not.
fn greets(mut stream: TcpStream, deadline: Instant) -> bool {
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
    fn reads_the_address_and_refuses_proxies() {
        let plain = "user root\nhostname 127.0.0.1\nport 2222\nproxyusefdpass no\n";
        assert_eq!(
            parse_ssh_g(plain),
            Some(Target::Direct {
                host: "127.0.0.1".into(),
                port: 2222
            })
        );
        let jump = "hostname h\nport 22\nproxyjump x@y\n";
        assert_eq!(parse_ssh_g(jump), Some(Target::Proxied("ProxyJump")));
        let command = "hostname h\nport 22\nproxycommand nc %h %p\n";
        assert_eq!(parse_ssh_g(command), Some(Target::Proxied("ProxyCommand")));
        assert_eq!(parse_ssh_g("port 22\n"), None);
    }

    #[test]
    fn ssh_g_of_a_real_client_gives_host_and_port() {
        let args: Vec<String> = ["ssh", "-F", "/dev/null", "-p", "2222", "-N", "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !std::path::Path::new("/usr/bin/ssh").exists() {
            return;
        }
        assert_eq!(
            resolve(&args),
            Ok(Target::Direct {
                host: "127.0.0.1".into(),
                port: 2222
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
        let server = std::thread::spawn(move || {
            let (mut conn, _) = speaking.accept().unwrap();
            let _ = conn.write_all(b"SSH-2.0-test\r\n");
        });
        assert!(server_greets("127.0.0.1", port, Duration::from_secs(2)));
        server.join().unwrap();

        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = Instant::now();
        assert!(!server_greets(
            "127.0.0.1",
            port,
            Duration::from_millis(300)
        ));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the deadline bounds the read"
        );
        drop(silent);
        assert!(!server_greets("127.0.0.1", port, Duration::from_secs(1)));
    }
}
