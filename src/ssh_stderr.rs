//! The one vocabulary of the OpenSSH client's stderr: what a line says, in ssh's own
//! words (OpenSSH 9.2p1; sshconnect.c, sshconnect2.c, channels.c, clientloop.c). Both
//! readers use it: `doctor` (which runs ssh with `-v` and follows its progress) and the
//! watchdog (which names the failure and picks a back-off, `watchdog::ssh_errors`). A
//! new wording is taught here, once. Pure, and free of config/render, so the watchdog
//! binary can link it.

/// What one stderr line of ssh says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Said<'a> {
    /// `Connection established.` (-v): the TCP connect succeeded.
    Connected,
    /// `Remote protocol version …` (-v): the server sent its SSH banner.
    Banner,
    /// `Authenticated to HOST ([ADDR]:PORT) using "METHOD".`
    Authenticated { method: &'a str },
    /// `Host 'H' is known and matches the ED25519 host key.` (-v)
    HostKeyMatches,
    /// `No ED25519 host key is known for H and you have requested strict checking.`
    HostKeyUnknown,
    /// `REMOTE HOST IDENTIFICATION HAS CHANGED`, `Host key for H has changed and …`
    HostKeyChanged,
    /// `Host key verification failed.`
    HostKeyVerificationFailed,
    /// `Permission denied (publickey).`, `Too many authentication failures`
    AuthRefused,
    /// `Load key "F": bad permissions`, `no such identity: F: …`
    KeyProblem,
    /// `Server has disabled port forwarding.`, `Remote: Port forwarding disabled …`
    ForwardingDisabled,
    /// `remote forward success for: listen 127.0.0.1:1234, connect …` (-v)
    RemoteForwardOk { port: u16 },
    /// `remote forward failure for: listen …` (-v), `Error:`/`Warning: remote port
    /// forwarding failed for listen port N`: the server would not listen on N.
    RemoteForwardFailed { port: u16 },
    /// `Entering interactive session.` (-v): ssh is in its main loop, every local
    /// listener is bound.
    MainLoop,
    /// `forwarding_success: all expected forwarding replies received` (-v)
    AllRemoteReplied,
    /// `Local forwarding listening on 127.0.0.1 port 8080.` (-v; said before bind())
    LocalListening { port: u16 },
    /// `bind [127.0.0.1]:8080: Address already in use`; `in_use` for that reason.
    LocalBindFailed { port: Option<u16>, in_use: bool },
    /// `channel_setup_fwd_listener_tcpip: cannot listen to port: 8080`
    LocalListenFailed,
    /// `Could not request local forwarding.`
    LocalForwardFailed,
    /// `channel 2: open failed: connect failed: …`: the server could not open a
    /// forwarded channel; `reason` is what follows `open failed: `.
    OpenFailed { reason: &'a str },
    /// `ssh: Could not resolve hostname H: …`
    ResolveFailed,
    /// `ssh: connect to host H port P: Connection refused`
    ConnectionRefused,
    /// `Connection timed out during banner exchange`: TCP connected, no SSH banner.
    BannerTimedOut,
    /// `ssh: connect to host H port P: No route to host` / `Network is unreachable`
    Unreachable,
    /// `… Connection timed out` (`Operation timed out` on macOS and the BSDs)
    ConnectionTimedOut,
    /// `kex_exchange_identification: Connection closed by remote host` or `…: read:
    /// Connection reset by peer`: the connection was closed before the server's SSH
    /// greeting (sshd's `MaxStartups` drop, a load balancer, or, through ProxyJump, a
    /// target the jump host could not reach). OpenSSH 7.x clients say
    /// `ssh_exchange_identification: …` (`older_client`) and print nothing after it;
    /// newer ones follow with `Connection closed by …` / `Connection reset by …`.
    ClosedBeforeGreeting { older_client: bool },
    /// Another `ssh: …` or `kex_exchange_identification: …` line: connecting failed.
    ConnectFailed,
    /// `Connection closed by ADDR port P` / `Connection reset by ADDR port P`: the server
    /// ended the connection before the session began (during the greeting, the key
    /// exchange or the login; a live session's end reads `Connection to HOST closed by
    /// remote host.`). `proxied`: ADDR is `UNKNOWN`, ssh talked through a ProxyJump or
    /// ProxyCommand, so the closing was the proxy's, not the server's.
    ConnectionClosed { proxied: bool },
}

/// What `line` says, or `None` for chatter. Debug lines (`debug1: …`) say only the
/// progress steps marked (-v) above, never a failure.
///
/// Long on purpose: OpenSSH's wordings as one ordered list, one test per wording (the
/// order matters where one wording contains another), so a new wording goes in one place.
pub fn classify(line: &str) -> Option<Said<'_>> {
    let l = line.trim_end();
    if l.contains("Connection established.") {
        return Some(Said::Connected);
    }
    if l.contains("Remote protocol version") {
        return Some(Said::Banner);
    }
    if let Some(rest) = l.strip_prefix("Authenticated to ") {
        let method = rest
            .rsplit(" using ")
            .next()
            .unwrap_or("")
            .trim_matches(|c| c == '"' || c == '.');
        return Some(Said::Authenticated { method });
    }
    if l.contains("is known and matches the") {
        return Some(Said::HostKeyMatches);
    }
    if l.contains(" host key is known for") {
        return Some(Said::HostKeyUnknown);
    }
    if l.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || (l.contains("Host key for ") && l.contains("has changed"))
    {
        return Some(Said::HostKeyChanged);
    }
    if l.contains("Host key verification failed") {
        return Some(Said::HostKeyVerificationFailed);
    }
    if l.contains("Permission denied (") || l.contains("Too many authentication failures") {
        return Some(Said::AuthRefused);
    }
    if l.starts_with("no such identity:")
        || (l.starts_with("Load key") && (l.contains("bad permissions") || !l.contains("debug")))
    {
        return Some(Said::KeyProblem);
    }
    if l.contains("Server has disabled port forwarding")
        || l.contains("Remote: Port forwarding disabled")
    {
        return Some(Said::ForwardingDisabled);
    }
    if let Some(port) = listen_port(l, "remote forward success for: listen ") {
        return Some(Said::RemoteForwardOk { port });
    }
    if let Some(port) = listen_port(l, "remote forward failure for: listen ") {
        return Some(Said::RemoteForwardFailed { port });
    }
    if let Some(rest) = l
        .split("remote port forwarding failed for listen port ")
        .nth(1)
    {
        return leading_number(rest).map(|port| Said::RemoteForwardFailed { port });
    }
    if l.contains("Entering interactive session.") {
        return Some(Said::MainLoop);
    }
    if l.contains("forwarding_success: all expected forwarding replies received") {
        return Some(Said::AllRemoteReplied);
    }
    if let Some(rest) = l.split("Local forwarding listening on ").nth(1) {
        let port = rest
            .trim_end_matches('.')
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        return Some(Said::LocalListening { port });
    }
    if l.starts_with("bind [") || (l.starts_with("bind") && l.contains("Address already in use")) {
        // "bind [127.0.0.1]:8080: Address already in use"
        let port = l
            .split("]:")
            .nth(1)
            .and_then(leading_number)
            .or_else(|| l.split(':').nth(1).and_then(|p| leading_number(p.trim())));
        let in_use = l.contains("Address already in use");
        return Some(Said::LocalBindFailed { port, in_use });
    }
    if l.contains("cannot listen to port") {
        return Some(Said::LocalListenFailed);
    }
    if l.contains("Could not request local forwarding") {
        return Some(Said::LocalForwardFailed);
    }
    // Before the connect failures: "open failed: connect failed: Connection timed out"
    // is the far end of one channel, not ssh's own connection.
    if let Some(reason) = l.split(": open failed: ").nth(1) {
        return Some(Said::OpenFailed { reason });
    }
    if l.starts_with("debug") {
        return None;
    }
    if l.contains("Could not resolve hostname") {
        return Some(Said::ResolveFailed);
    }
    if l.contains("Connection refused") && l.contains("connect to host") {
        return Some(Said::ConnectionRefused);
    }
    // Before the plain time-out: the TCP connect itself succeeded here.
    if l.contains("timed out during banner exchange") {
        return Some(Said::BannerTimedOut);
    }
    if l.contains("connect to host")
        && (l.contains("No route to host") || l.contains("Network is unreachable"))
    {
        return Some(Said::Unreachable);
    }
    if l.contains("Connection timed out") || l.contains("Operation timed out") {
        return Some(Said::ConnectionTimedOut);
    }
    let older_client = l.starts_with("ssh_exchange_identification:");
    if (older_client || l.starts_with("kex_exchange_identification:"))
        && (l.ends_with("Connection closed by remote host")
            || l.ends_with("Connection reset by peer"))
    {
        return Some(Said::ClosedBeforeGreeting { older_client });
    }
    if l.starts_with("ssh: ") || l.starts_with("kex_exchange_identification:") {
        return Some(Said::ConnectFailed);
    }
    if let Some(by) = l
        .strip_prefix("Connection closed by ")
        .or_else(|| l.strip_prefix("Connection reset by "))
    {
        return Some(Said::ConnectionClosed {
            proxied: by.starts_with("UNKNOWN "),
        });
    }
    None
}

/// The port of `…MARKER 127.0.0.1:1234, connect localhost:22`.
fn listen_port(line: &str, marker: &str) -> Option<u16> {
    let rest = line.split(marker).nth(1)?;
    let listen = rest.split(',').next()?.trim();
    listen.rsplit(':').next()?.parse().ok()
}

fn leading_number(text: &str) -> Option<u16> {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // OpenSSH 9.2p1 wording. Seen here in real runs: "Permission denied (publickey)",
    // "remote port forwarding failed for listen port" (tests/it/watchdog.rs) and the -v
    // progress lines (tests/it/firstrun_doctor.rs); the others follow the message texts of
    // OpenSSH's sshconnect.c / channels.c.
    #[test]
    fn recognises_real_openssh_messages() {
        let cases: &[(&str, Said)] = &[
            ("debug1: Connection established.", Said::Connected),
            (
                "debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1",
                Said::Banner,
            ),
            (
                "Authenticated to 127.0.0.1 ([127.0.0.1]:2222) using \"publickey\".",
                Said::Authenticated {
                    method: "publickey",
                },
            ),
            (
                "debug1: Host '[127.0.0.1]:2222' is known and matches the ED25519 host key.",
                Said::HostKeyMatches,
            ),
            (
                "root@127.0.0.1: Permission denied (publickey).",
                Said::AuthRefused,
            ),
            (
                "Received disconnect from 127.0.0.1 port 22:2: Too many authentication failures",
                Said::AuthRefused,
            ),
            (
                "Host key verification failed.",
                Said::HostKeyVerificationFailed,
            ),
            (
                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
                Said::HostKeyChanged,
            ),
            (
                "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.",
                Said::HostKeyChanged,
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.",
                Said::HostKeyUnknown,
            ),
            ("Load key \"/k\": bad permissions", Said::KeyProblem),
            (
                "Warning: remote port forwarding failed for listen port 41234",
                Said::RemoteForwardFailed { port: 41234 },
            ),
            (
                "Error: remote port forwarding failed for listen port 41234",
                Said::RemoteForwardFailed { port: 41234 },
            ),
            (
                "debug1: remote forward failure for: listen 41234, connect 127.0.0.1:22",
                Said::RemoteForwardFailed { port: 41234 },
            ),
            (
                "debug1: remote forward success for: listen 127.0.0.1:1234, connect localhost:22",
                Said::RemoteForwardOk { port: 1234 },
            ),
            (
                "debug1: Local forwarding listening on 127.0.0.1 port 8080.",
                Said::LocalListening { port: 8080 },
            ),
            ("debug1: Entering interactive session.", Said::MainLoop),
            (
                "debug1: forwarding_success: all expected forwarding replies received",
                Said::AllRemoteReplied,
            ),
            (
                "ssh: Could not resolve hostname nosuch.invalid: Name or service not known",
                Said::ResolveFailed,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                Said::ConnectionRefused,
            ),
            (
                "ssh: connect to host 10.255.255.1 port 22: Connection timed out",
                Said::ConnectionTimedOut,
            ),
            (
                "Connection timed out during banner exchange",
                Said::BannerTimedOut,
            ),
            (
                "ssh: connect to host 192.0.2.1 port 22: No route to host",
                Said::Unreachable,
            ),
            (
                "ssh: connect to host 192.0.2.1 port 22: Network is unreachable",
                Said::Unreachable,
            ),
            // sshd's MaxStartups drop, seen here (the first two lines are the greeting's,
            // the third the one that follows either of them).
            (
                "kex_exchange_identification: read: Connection reset by peer",
                Said::ClosedBeforeGreeting {
                    older_client: false,
                },
            ),
            (
                "kex_exchange_identification: Connection closed by remote host",
                Said::ClosedBeforeGreeting {
                    older_client: false,
                },
            ),
            (
                "Connection reset by 127.0.0.1 port 2222",
                Said::ConnectionClosed { proxied: false },
            ),
            (
                "Connection closed by 127.0.0.1 port 2222",
                Said::ConnectionClosed { proxied: false },
            ),
            // ProxyJump to a target the jump host cannot reach, seen here.
            (
                "Connection closed by UNKNOWN port 65535",
                Said::ConnectionClosed { proxied: true },
            ),
            // OpenSSH 7.x clients (sshconnect.c's ssh_exchange_identification).
            (
                "ssh_exchange_identification: read: Connection reset by peer",
                Said::ClosedBeforeGreeting { older_client: true },
            ),
            (
                "ssh_exchange_identification: Connection closed by remote host",
                Said::ClosedBeforeGreeting { older_client: true },
            ),
            (
                "kex_exchange_identification: banner line contains invalid characters",
                Said::ConnectFailed,
            ),
            (
                "bind [127.0.0.1]:8080: Address already in use",
                Said::LocalBindFailed {
                    port: Some(8080),
                    in_use: true,
                },
            ),
            (
                "channel_setup_fwd_listener_tcpip: cannot listen to port: 8080",
                Said::LocalListenFailed,
            ),
            (
                "Could not request local forwarding.",
                Said::LocalForwardFailed,
            ),
            (
                "channel 2: open failed: connect failed: Connection timed out",
                Said::OpenFailed {
                    reason: "connect failed: Connection timed out",
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line).as_ref(), Some(want), "{line}");
        }
    }

    #[test]
    fn chatter_and_debug_lines_say_no_failure() {
        for line in [
            "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.",
            "debug1: connect to address 10.255.255.1 port 22: Connection timed out",
            "debug1: Reading configuration data /etc/ssh/ssh_config",
            "debug1: kex_exchange_identification: banner line 0: Exceeded MaxStartups",
        ] {
            assert_eq!(classify(line), None, "{line}");
        }
    }
}
