//! `SshLog`: what one ssh run said, read line by line from its `-v` stderr.

use crate::model::Forward;
use crate::ssh_stderr::{Reading, Said};

/// What one ssh run said, distilled from its `-v` stderr (pure parsing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshLog {
    pub connected: bool,
    /// The server sent an SSH banner (`Remote protocol version …`).
    pub banner: bool,
    /// `Host '…' is known and matches the … host key.`
    pub host_key_ok: bool,
    /// The auth method from `Authenticated to … using "publickey".`
    pub authenticated: Option<String>,
    pub host_key_unknown: bool,
    pub host_key_changed: bool,
    pub host_key_failed: bool,
    pub permission_denied: Option<String>,
    pub key_problem: Option<String>,
    pub connect_error: Option<String>,
    pub forwarding_disabled: bool,
    pub remote_ok: Vec<u16>,
    pub remote_failed: Vec<u16>,
    pub all_remote_replied: bool,
    /// Ports ssh announced a local/dynamic listener for. The announcement comes before
    /// bind(): on its own it does not mean the port accepts connections yet.
    pub local_listening: Vec<u16>,
    /// `Entering interactive session.`: ssh is in its main loop, so every local listener
    /// it set up is bound and listening (or ssh already exited on a failed one).
    pub main_loop: bool,
    pub local_bind_failed: Vec<String>,
    pub open_failed: Vec<String>,
    /// The server itself closed the connection before its greeting ([`Said::TurnedAway`]):
    /// busy, as the watchdog reads the same lines (it retries in a moment).
    pub server_busy: bool,
    /// What the lines so far said: the next line's meaning may depend on them.
    reading: Reading,
}

impl SshLog {
    /// Takes in the next stderr line of `ssh -v` (the wording is [`crate::ssh_stderr`]'s).
    pub fn feed(&mut self, line: &str) {
        let l = line.trim_end();
        let Some(said) = self.reading.read(l) else {
            return;
        };
        match said {
            Said::Connected => self.connected = true,
            Said::Banner => {
                self.connected = true;
                self.banner = true;
            }
            Said::Authenticated { method } => {
                self.connected = true;
                self.authenticated = Some(method.to_string());
            }
            Said::HostKeyMatches => self.host_key_ok = true,
            Said::HostKeyUnknown => self.host_key_unknown = true,
            Said::HostKeyChanged => self.host_key_changed = true,
            Said::HostKeyVerificationFailed => self.host_key_failed = true,
            Said::AuthRefused => self.permission_denied = Some(l.to_string()),
            Said::KeyProblem => {
                self.key_problem.get_or_insert_with(|| l.to_string());
            }
            Said::ResolveFailed
            | Said::ConnectionRefused
            | Said::BannerTimedOut
            | Said::Unreachable
            | Said::ConnectionTimedOut
            | Said::ClosedBeforeGreeting
            | Said::ConnectFailed => {
                self.connect_error
                    .get_or_insert_with(|| l.trim_start_matches("ssh: ").to_string());
            }
            Said::TurnedAway => {
                self.server_busy = true;
                self.connect_error.get_or_insert_with(|| l.to_string());
            }
            Said::ConnectionClosed { .. } if !self.connected => {
                self.connect_error.get_or_insert_with(|| l.to_string());
            }
            Said::ConnectionClosed { .. } => {}
            Said::ForwardingDisabled => self.forwarding_disabled = true,
            Said::RemoteForwardOk { port } => self.remote_ok.push(port),
            Said::RemoteForwardFailed { port } => {
                if !self.remote_failed.contains(&port) {
                    self.remote_failed.push(port);
                }
            }
            Said::MainLoop => self.main_loop = true,
            Said::AllRemoteReplied => self.all_remote_replied = true,
            Said::LocalListening { port } => self.local_listening.push(port),
            Said::LocalBindFailed { .. } | Said::LocalListenFailed => {
                self.local_bind_failed.push(l.to_string())
            }
            Said::LocalForwardFailed => {}
            Said::OpenFailed { reason } => self.open_failed.push(reason.to_string()),
        }
    }

    /// Every forward is set up: the point where doctor has seen what it needs.
    pub fn ready(&self, forwards: &[Forward]) -> bool {
        if self.authenticated.is_none() {
            return false;
        }
        let has_remote = forwards.iter().any(|f| matches!(f, Forward::Remote { .. }));
        let locals_up = forwards.iter().all(|f| match f {
            // Not the "listening" line alone: it precedes bind(), and probing then gets
            // "Connection refused" from a listener that is about to exist.
            Forward::Local { port, .. } | Forward::Dynamic { port, .. } => {
                self.main_loop && self.local_listening.contains(port)
            }
            Forward::Remote { .. } => true,
        });
        locals_up && (!has_remote || self.all_remote_replied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_parsing_reads_openssh_9_2_lines() {
        let mut log = SshLog::default();
        for line in [
            "debug1: Connection established.",
            "Authenticated to 127.0.0.1 ([127.0.0.1]:42222) using \"publickey\".",
            "debug1: Local forwarding listening on 127.0.0.1 port 43334.",
            "debug1: remote forward success for: listen 43333, connect localhost:42222",
            "debug1: remote forward failure for: listen 127.0.0.1:43335, connect localhost:42222",
            "Error: remote port forwarding failed for listen port 43335",
            "debug1: forwarding_success: all expected forwarding replies received",
            "channel 1: open failed: administratively prohibited: open failed",
        ] {
            log.feed(line);
        }
        assert!(log.connected);
        assert_eq!(log.authenticated.as_deref(), Some("publickey"));
        assert_eq!(log.local_listening, vec![43334]);
        assert_eq!(log.remote_ok, vec![43333]);
        assert_eq!(log.remote_failed, vec![43335]);
        assert!(log.all_remote_replied);
        assert_eq!(
            log.open_failed,
            vec!["administratively prohibited: open failed".to_string()]
        );
    }

    /// OpenSSH 9.2 order for `-L` (strace: write "listening", then bind, listen, then
    /// "new port-listener", …, "Entering interactive session."). Ready must wait for the
    /// last one: a probe after the first line alone can hit a port nobody listens on yet.
    #[test]
    fn a_local_forward_is_ready_only_after_ssh_enters_its_main_loop() {
        let forwards = vec![Forward::Local {
            bind: "127.0.0.1".into(),
            port: 43334,
            to: crate::model::Endpoint {
                host: "localhost".into(),
                port: 22,
            },
        }];
        let mut log = SshLog::default();
        for line in [
            "Authenticated to 127.0.0.1 ([127.0.0.1]:42222) using \"publickey\".",
            "debug1: Local connections to 127.0.0.1:43334 forwarded to remote address localhost:22",
            "debug1: Local forwarding listening on 127.0.0.1 port 43334.",
            "debug1: channel 0: new port-listener [port listener] (inactive timeout: 0)",
            "debug1: Requesting no-more-sessions@openssh.com",
        ] {
            log.feed(line);
            assert!(!log.ready(&forwards), "ready too early, at {line:?}");
        }
        log.feed("debug1: Entering interactive session.");
        assert!(log.ready(&forwards));
    }

    /// Doctor and the watchdog read the same lines the same way: busy is the server
    /// closing before its greeting (sshd's MaxStartups), never a server that greets and
    /// then hangs up, nor a proxy's closing.
    #[test]
    fn doctor_reads_a_busy_server_as_the_watchdog_does() {
        use crate::watchdog::ssh_errors::errors_in;
        let connected = "debug1: Connection established.";
        let banner = "debug1: Remote protocol version 2.0, remote software version OpenSSH_9.2p1";
        let transcripts: &[(&[&str], bool)] = &[
            // A server that greets, then hangs up.
            (
                &[
                    connected,
                    banner,
                    "Connection closed by 127.0.0.1 port 2222",
                ],
                false,
            ),
            (
                &[connected, banner, "Connection reset by 127.0.0.1 port 2222"],
                false,
            ),
            // sshd's MaxStartups drop.
            (
                &[
                    connected,
                    "kex_exchange_identification: read: Connection reset by peer",
                    "Connection reset by 127.0.0.1 port 2222",
                ],
                true,
            ),
            // ProxyJump to a target that is down.
            (
                &[
                    connected,
                    "kex_exchange_identification: Connection closed by remote host",
                    "Connection closed by UNKNOWN port 65535",
                ],
                false,
            ),
            (
                &["ssh_exchange_identification: Connection closed by remote host"],
                true,
            ),
        ];
        for (lines, busy) in transcripts {
            let mut log = SshLog::default();
            for line in *lines {
                log.feed(line);
            }
            let watchdog = errors_in(&lines.join("\n"));
            assert_eq!(log.server_busy, *busy, "doctor: {lines:?}");
            assert_eq!(
                watchdog.iter().any(|e| e.is_server_busy()),
                *busy,
                "watchdog: {lines:?} {watchdog:?}"
            );
        }
    }
}
