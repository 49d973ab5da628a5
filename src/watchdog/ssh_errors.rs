//! The failures the ssh client's stderr explains, so the watchdog can report them
//! plainly and choose a back-off (permanent errors wait the maximum).

use crate::ssh_stderr::{Reading, Said};

/// What went wrong, as far as ssh's own words tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshError {
    /// The server refused our key.
    AuthRefused,
    /// The server's host key differs from the pinned one.
    HostKeyChanged,
    /// known_hosts has no key for this server (or ssh refused to verify it).
    HostKeyUnknown,
    /// The server could not bind the remote port of `-R` (taken, often by a stale session).
    RemotePortRefused {
        port: u16,
    },
    /// The local port of `-L`/`-D` is taken on this machine.
    LocalPortBusy {
        port: Option<u16>,
    },
    ResolveFailed,
    ConnectionRefused,
    ConnectionTimedOut,
    /// "No route to host" / "Network is unreachable" while connecting.
    Unreachable,
    /// TCP connected but the server sent no SSH banner in time: something listens there
    /// that is not (or not yet) a working sshd.
    BannerTimedOut,
    /// The port answered, then the server itself closed the connection before its SSH
    /// greeting ([`Said::TurnedAway`]): sshd's `MaxStartups` or `PerSourceMaxStartups`
    /// dropping unauthenticated connections, a load balancer, or an sshd that is
    /// restarting. The server is there; it is busy. (One that greets and then hangs up
    /// is broken, not busy: no `SshError` at all.)
    ServerBusy,
}

impl SshError {
    /// Retrying soon cannot help: back off to the maximum (exit code 3).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SshError::AuthRefused | SshError::HostKeyChanged | SshError::HostKeyUnknown
        )
    }

    /// ssh never got the server's SSH greeting: its name did not resolve, nothing
    /// answered the TCP connect, or what answered stayed silent. Another ssh attempt
    /// fares no better until the server greets, which a cheap check can see.
    pub fn is_no_greeting(&self) -> bool {
        matches!(
            self,
            SshError::ResolveFailed
                | SshError::ConnectionRefused
                | SshError::ConnectionTimedOut
                | SshError::Unreachable
                | SshError::BannerTimedOut
        )
    }

    /// The server is there but turned this login away (see [`SshError::ServerBusy`]): retry
    /// after a short random delay, not the exponential back-off of a server that is down.
    pub fn is_server_busy(&self) -> bool {
        matches!(self, SshError::ServerBusy)
    }

    /// One line for a human: what happened and what to do about it.
    pub fn explain(&self) -> String {
        match self {
            SshError::AuthRefused => "authentication refused by the server: check the identity file and the server's authorized_keys".into(),
            SshError::HostKeyChanged => "the server's host key does not match known_hosts (possible man-in-the-middle, or the server was reinstalled): verify it, then update known_hosts (`tunnelctl trust`)".into(),
            SshError::HostKeyUnknown => "the server's host key is not in known_hosts: add it after checking its fingerprint (`tunnelctl trust`)".into(),
            SshError::RemotePortRefused { port } => format!(
                "remote port {port} busy on server: the server refused to listen on it, most likely a stale listener of an earlier session; set ClientAliveInterval (e.g. 15) and ClientAliveCountMax (e.g. 3) in the server's sshd_config so dead sessions release their ports"
            ),
            SshError::LocalPortBusy { port: Some(port) } => format!("local port {port} is already in use on this machine: stop the other listener or pick another port"),
            SshError::LocalPortBusy { port: None } => "a local forward port is already in use on this machine: stop the other listener or pick another port".into(),
            SshError::ResolveFailed => "cannot resolve the server's host name: check the name and DNS".into(),
            SshError::ConnectionRefused => "the server refused the connection: is sshd running on that port?".into(),
            SshError::ConnectionTimedOut => "connecting to the server timed out: network or firewall problem".into(),
            SshError::Unreachable => "the server's network is unreachable from here (no route): check the network connection".into(),
            SshError::BannerTimedOut => "the server accepted the connection but sent no SSH banner in time: is sshd overloaded, or is something else listening on that port?".into(),
            SshError::ServerBusy => "the server closed the connection before the login: it is busy (too many logins at once, sshd's MaxStartups) or restarting; retrying in a moment".into(),
        }
    }
}

/// The failure what one stderr line said explains, or `None` for what explains nothing.
/// `said` is a [`Reading`]'s, which knows the lines before it (the wording and the busy
/// server's pair of lines are [`crate::ssh_stderr`]'s).
pub fn error_of(said: &Said<'_>) -> Option<SshError> {
    Some(match *said {
        Said::AuthRefused => SshError::AuthRefused,
        Said::HostKeyChanged => SshError::HostKeyChanged,
        Said::HostKeyUnknown | Said::HostKeyVerificationFailed => SshError::HostKeyUnknown,
        Said::RemoteForwardFailed { port } => SshError::RemotePortRefused { port },
        Said::LocalBindFailed { port, in_use: true } => SshError::LocalPortBusy { port },
        Said::LocalForwardFailed => SshError::LocalPortBusy { port: None },
        Said::ResolveFailed => SshError::ResolveFailed,
        Said::ConnectionRefused => SshError::ConnectionRefused,
        Said::ConnectionTimedOut => SshError::ConnectionTimedOut,
        Said::Unreachable => SshError::Unreachable,
        Said::BannerTimedOut => SshError::BannerTimedOut,
        Said::TurnedAway => SshError::ServerBusy,
        _ => return None,
    })
}

/// The failures a whole stderr of one ssh run explains, in order and each once (the
/// watchdog reads it line by line as it comes, with the same [`Reading`]).
pub fn errors_in(stderr: &str) -> Vec<SshError> {
    let mut reading = Reading::default();
    let mut errors = Vec::new();
    for error in stderr.lines().filter_map(|l| error_of(&reading.read(l)?)) {
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    // The wording itself is tested in crate::ssh_stderr; this is the watchdog's reading.
    #[test]
    fn recognises_real_openssh_messages() {
        let cases: &[(&str, SshError)] = &[
            (
                "root@127.0.0.1: Permission denied (publickey).",
                SshError::AuthRefused,
            ),
            ("Host key verification failed.", SshError::HostKeyUnknown),
            (
                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
                SshError::HostKeyChanged,
            ),
            (
                "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.",
                SshError::HostKeyChanged,
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.",
                SshError::HostKeyUnknown,
            ),
            (
                "Warning: remote port forwarding failed for listen port 41234",
                SshError::RemotePortRefused { port: 41234 },
            ),
            (
                "Error: remote port forwarding failed for listen port 41234",
                SshError::RemotePortRefused { port: 41234 },
            ),
            (
                "ssh: Could not resolve hostname nosuch.invalid: Name or service not known",
                SshError::ResolveFailed,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                SshError::ConnectionRefused,
            ),
            (
                "ssh: connect to host 10.255.255.1 port 22: Connection timed out",
                SshError::ConnectionTimedOut,
            ),
            (
                "Connection timed out during banner exchange",
                SshError::BannerTimedOut,
            ),
            (
                "ssh: connect to host 192.0.2.1 port 22: No route to host",
                SshError::Unreachable,
            ),
            (
                "ssh: connect to host 192.0.2.1 port 22: Network is unreachable",
                SshError::Unreachable,
            ),
            (
                "bind [127.0.0.1]:8080: Address already in use",
                SshError::LocalPortBusy { port: Some(8080) },
            ),
            (
                "Could not request local forwarding.",
                SshError::LocalPortBusy { port: None },
            ),
            // sshd's MaxStartups drop, the greeting's line then the server's closing
            // (tests/it/watchdog_busy.rs sees them for real).
            (
                "kex_exchange_identification: Connection closed by remote host\nConnection closed by 127.0.0.1 port 2222",
                SshError::ServerBusy,
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer\nConnection reset by 127.0.0.1 port 2222",
                SshError::ServerBusy,
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer\nConnection reset by 2001:db8::1 port 22",
                SshError::ServerBusy,
            ),
            // OpenSSH 7.x clients say the greeting's line alone.
            (
                "ssh_exchange_identification: Connection closed by remote host",
                SshError::ServerBusy,
            ),
            (
                "ssh_exchange_identification: read: Connection reset by peer",
                SshError::ServerBusy,
            ),
        ];
        for (lines, want) in cases {
            assert_eq!(errors_in(lines), std::slice::from_ref(want), "{lines}");
        }
    }

    #[test]
    fn ignores_chatter_and_explains_with_a_fix() {
        assert!(
            errors_in(
                "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts."
            )
            .is_empty()
        );
        assert!(
            errors_in("Authenticated to 127.0.0.1 ([127.0.0.1]:2222) using \"publickey\".")
                .is_empty()
        );
        let text = SshError::RemotePortRefused { port: 1234 }.explain();
        assert!(
            text.contains("1234") && text.contains("ClientAliveInterval"),
            "{text}"
        );
        assert!(
            SshError::AuthRefused.is_permanent() && !SshError::ConnectionRefused.is_permanent()
        );
        assert!(
            SshError::ConnectionRefused.is_no_greeting() && SshError::Unreachable.is_no_greeting()
        );
        assert!(
            SshError::BannerTimedOut.is_no_greeting() && SshError::ResolveFailed.is_no_greeting()
        );
        assert!(!SshError::AuthRefused.is_no_greeting());
        assert!(!SshError::RemotePortRefused { port: 1 }.is_no_greeting());
    }

    /// Busy is its own class: the server greeted or at least accepted, so it is neither
    /// "no greeting" (which waits for a greeting check) nor permanent; and nothing else
    /// is busy.
    #[test]
    fn a_busy_server_is_neither_down_nor_permanent() {
        let busy = SshError::ServerBusy;
        assert!(busy.is_server_busy());
        assert!(!busy.is_no_greeting() && !busy.is_permanent());
        let text = busy.explain();
        assert!(
            text.contains("MaxStartups") && text.contains("retrying"),
            "{text}"
        );
        for other in [
            SshError::AuthRefused,
            SshError::HostKeyChanged,
            SshError::HostKeyUnknown,
            SshError::RemotePortRefused { port: 1 },
            SshError::LocalPortBusy { port: None },
            SshError::ResolveFailed,
            SshError::ConnectionRefused,
            SshError::ConnectionTimedOut,
            SshError::Unreachable,
            SshError::BannerTimedOut,
        ] {
            assert!(!other.is_server_busy(), "{other:?}");
        }
    }

    /// The greeting's own line says nothing yet on newer clients: through ProxyJump a
    /// target that is down reads the same, and only the next line (`… by UNKNOWN port
    /// 65535`) tells. A live session's end is not a busy server either, nor a server
    /// that greets and then hangs up (its closing line without the greeting's).
    #[test]
    fn a_proxy_closing_or_a_session_ending_is_not_a_busy_server() {
        for lines in [
            "kex_exchange_identification: Connection closed by remote host",
            "kex_exchange_identification: read: Connection reset by peer",
            "Connection closed by UNKNOWN port 65535",
            "kex_exchange_identification: Connection closed by remote host\nConnection closed by UNKNOWN port 65535",
            "Connection to 127.0.0.1 closed by remote host.",
            "Read from remote host 127.0.0.1: Connection reset by peer",
            "debug1: kex_exchange_identification: banner line 0: Exceeded MaxStartups",
            "Connection closed by 127.0.0.1 port 2222",
            "Connection reset by 127.0.0.1 port 2222",
            "debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1\nConnection closed by 127.0.0.1 port 2222",
        ] {
            let errors = errors_in(lines);
            assert!(errors.is_empty(), "{lines}: {errors:?}");
        }
    }
}
