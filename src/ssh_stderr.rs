//! The one vocabulary of the OpenSSH client's stderr: what a line says, in ssh's own
//! words (OpenSSH 9.2p1; sshconnect.c, sshconnect2.c, channels.c, clientloop.c), read
//! in order by a [`Reading`]. Both readers use it: `doctor` (which runs ssh with `-v`
//! and follows its progress) and the watchdog (which names the failure and picks a
//! back-off, `watchdog::ssh_errors`), so they agree on what a run said. A new wording is
//! taught here, once. Pure, and free of config/render, so the watchdog binary can link it.

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
    /// target the jump host could not reach); the next line tells which
    /// ([`Said::TurnedAway`]). OpenSSH 7.x clients say `ssh_exchange_identification: …`
    /// and print nothing after it: a [`Reading`] says `TurnedAway` for that line itself.
    ClosedBeforeGreeting,
    /// The server itself closed the connection before its SSH greeting, as sshd does past
    /// `MaxStartups`: the server is there and busy. Only a [`Reading`] says it, for
    /// [`Said::ConnectionClosed`] (not proxied) after [`Said::ClosedBeforeGreeting`], or
    /// for an OpenSSH 7.x client's `ssh_exchange_identification: …` line. A server that
    /// greets and then hangs up is not turned away: it reads as `ConnectionClosed`.
    TurnedAway,
    /// Another `ssh: …` or `kex_exchange_identification: …` line: connecting failed.
    ConnectFailed,
    /// `Connection closed by ADDR port P` / `Connection reset by ADDR port P`: the server
    /// ended the connection before the session began (during the greeting, the key
    /// exchange or the login; a live session's end reads `Connection to HOST closed by
    /// remote host.`). `proxied`: ADDR is `UNKNOWN`, ssh talked through a ProxyJump or
    /// ProxyCommand, so the closing was the proxy's, not the server's.
    ConnectionClosed { proxied: bool },
}

/// One ssh run's stderr, read line by line in order: what each line says, given the
/// lines before it. Only the busy server needs the order: sshd's `MaxStartups` drop reads
/// as the greeting's line, then `Connection closed by ADDR port P` (OpenSSH 9.2), while
/// the closing line alone is a server that greeted and then hung up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// A [`Said::ClosedBeforeGreeting`] line was read.
    closed_before_greeting: bool,
}

impl Reading {
    /// What `line` says after the lines read before it, or `None` for chatter.
    pub fn read<'a>(&mut self, line: &'a str) -> Option<Said<'a>> {
        let l = line.trim_end();
        if l.starts_with("ssh_exchange_identification:") && closes_before_greeting(l) {
            return Some(Said::TurnedAway);
        }
        let said = classify(l)?;
        match said {
            Said::ClosedBeforeGreeting => self.closed_before_greeting = true,
            Said::ConnectionClosed { proxied: false } if self.closed_before_greeting => {
                return Some(Said::TurnedAway);
            }
            _ => {}
        }
        Some(said)
    }
}

/// What `line` says on its own, or `None` for chatter ([`Reading::read`] adds what the
/// lines before it tell). Debug lines (`debug1: …`) say only the progress steps marked
/// (-v) above, never a failure.
///
/// Long on purpose: OpenSSH's wordings as one ordered list, one test per wording (the
/// order matters where one wording contains another), so a new wording goes in one place.
fn classify(line: &str) -> Option<Said<'_>> {
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
    if l.starts_with("kex_exchange_identification:") && closes_before_greeting(l) {
        return Some(Said::ClosedBeforeGreeting);
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

/// The end of a greeting's line (`kex_exchange_identification: …`) when the connection
/// was closed or reset there.
fn closes_before_greeting(line: &str) -> bool {
    line.ends_with("Connection closed by remote host") || line.ends_with("Connection reset by peer")
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
            // the third the one that follows either of them: `Reading` pairs them).
            (
                "kex_exchange_identification: read: Connection reset by peer",
                Said::ClosedBeforeGreeting,
            ),
            (
                "kex_exchange_identification: Connection closed by remote host",
                Said::ClosedBeforeGreeting,
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

    /// Turned away is the pair (the greeting's line, then the server's closing), or an
    /// older client's greeting line alone; the closing line alone, or a proxy's, is not.
    #[test]
    fn a_reading_says_turned_away_only_for_the_server_closing_before_its_greeting() {
        let read = |lines: &[&'static str]| -> Vec<Said<'static>> {
            let mut reading = Reading::default();
            lines.iter().filter_map(|l| reading.read(l)).collect()
        };
        for closing in [
            "Connection reset by 127.0.0.1 port 2222",
            "Connection closed by 127.0.0.1 port 2222",
        ] {
            for greeting in [
                "kex_exchange_identification: read: Connection reset by peer",
                "kex_exchange_identification: Connection closed by remote host",
            ] {
                let said = read(&["debug1: Connection established.", greeting, closing]);
                assert_eq!(
                    said,
                    [
                        Said::Connected,
                        Said::ClosedBeforeGreeting,
                        Said::TurnedAway
                    ]
                );
            }
            // A server that greets, then hangs up (during the key exchange or the login).
            let said = read(&[
                "debug1: Connection established.",
                "debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1",
                closing,
            ]);
            assert_eq!(
                said,
                [
                    Said::Connected,
                    Said::Banner,
                    Said::ConnectionClosed { proxied: false }
                ]
            );
        }
        // ProxyJump to a target the jump host cannot reach, seen here.
        let said = read(&[
            "kex_exchange_identification: Connection closed by remote host",
            "Connection closed by UNKNOWN port 65535",
        ]);
        assert_eq!(
            said,
            [
                Said::ClosedBeforeGreeting,
                Said::ConnectionClosed { proxied: true }
            ]
        );
        // OpenSSH 7.x clients (sshconnect.c's ssh_exchange_identification) say nothing after.
        for line in [
            "ssh_exchange_identification: read: Connection reset by peer",
            "ssh_exchange_identification: Connection closed by remote host",
        ] {
            assert_eq!(read(&[line]), [Said::TurnedAway], "{line}");
        }
    }
}
