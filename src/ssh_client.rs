//! Which client `ssh` is, from what `PROGRAM -V` prints. tunnelctl needs OpenSSH: every
//! probe goes through its control socket (`ControlMaster`, `ControlPath`), and `ssh -G`
//! reads its configuration. Dropbear's client (`dbclient`, often installed as `ssh` on
//! OpenWrt) ignores both, and means other things by `-M`, `-W` and `-J`: a tunnel
//! through it could never be proven and would loop. `check`, `doctor` and the watchdog
//! ask here, and refuse Dropbear with the fix.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `ssh -V` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Client {
    /// `OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 …`: the first line.
    OpenSsh(String),
    /// `Dropbear v2022.83`.
    Dropbear(String),
    /// Anything else (the first line, maybe empty): not known to work or not to.
    Other(String),
}

/// How to get OpenSSH's client where `ssh` is Dropbear's.
pub const FIX: &str = "install OpenSSH's client, which takes over `ssh`: `opkg install \
openssh-client` on OpenWrt, `apk add openssh-client` on Alpine, `apt-get install \
openssh-client` on Debian; `ssh -V` must then name OpenSSH";

/// Reads `PROGRAM -V`'s output (stderr and stdout together).
pub fn classify(output: &str) -> Client {
    let first = output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    if first.starts_with("OpenSSH") {
        Client::OpenSsh(first)
    } else if output.contains("Dropbear") {
        Client::Dropbear(first)
    } else {
        Client::Other(first)
    }
}

impl Client {
    /// Why `program` cannot carry a tunnel, when it cannot (Dropbear).
    pub fn refusal(&self, program: &str) -> Option<String> {
        match self {
            Client::Dropbear(version) => Some(format!(
                "`{program}` is Dropbear's ssh client ({version}), not OpenSSH: it ignores \
                 ControlMaster and ControlPath, so no probe could ever prove a tunnel, and \
                 reads -M, -W and -J differently"
            )),
            Client::OpenSsh(_) | Client::Other(_) => None,
        }
    }
}

/// Runs `program -V` (bounded by `timeout`, killed after it) and classifies its output.
/// `Err`: it could not be run or did not finish.
pub fn identify(program: &str, timeout: Duration) -> Result<Client, String> {
    let mut child = Command::new(program)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline; `-V` prints one line and exits at once.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{program} -V` did not finish within {} ms",
                    timeout.as_millis()
                ));
            }
        }
    }
    // The child has exited: its pipes hold all it wrote (one line, far below a pipe's
    // buffer), so these reads end.
    let mut text = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    Ok(classify(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_are_classified() {
        assert_eq!(
            classify("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024\n"),
            Client::OpenSsh("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024".into())
        );
        let dropbear = classify("Dropbear v2022.83\n");
        assert_eq!(dropbear, Client::Dropbear("Dropbear v2022.83".into()));
        let why = dropbear.refusal("ssh").unwrap();
        assert!(
            why.contains("`ssh` is Dropbear's ssh client (Dropbear v2022.83)"),
            "{why}"
        );
        assert!(why.contains("ControlMaster"), "{why}");
        assert_eq!(classify(""), Client::Other(String::new()));
        assert!(classify("something else 1.0").refusal("ssh").is_none());
        assert!(FIX.contains("opkg install openssh-client"));
    }
}
