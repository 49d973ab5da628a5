//! Host keys: where ssh will look for a tunnel's server key, what is pinned there, what
//! the server offers, and pinning it. The comparisons are pure; the edges run the
//! OpenSSH tools (`ssh -G`, `ssh-keyscan`, `ssh-keygen -F`/`-lf`) so that hashed
//! entries, `[host]:port` names and the user's ssh_config are read the way ssh reads them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What `ssh -G` says the tunnel's ssh will do (after ssh_config, `-p`, `-l`, `-J`, `-o`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshView {
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub host_key_alias: Option<String>,
    pub user_known_hosts: Vec<PathBuf>,
    pub global_known_hosts: Vec<PathBuf>,
    /// `ProxyJump` or `ProxyCommand` is in effect: ssh-keyscan cannot take that path.
    pub proxy: Option<String>,
    pub identity_files: Vec<PathBuf>,
}

impl SshView {
    /// The name ssh looks the key up by: `host`, or `[host]:port` off port 22.
    pub fn key_name(&self) -> String {
        let host = self.host_key_alias.as_deref().unwrap_or(&self.hostname);
        if self.port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{}", self.port)
        }
    }

    /// Every known_hosts file ssh consults, user files first.
    pub fn all_known_hosts(&self) -> impl Iterator<Item = &PathBuf> {
        self.user_known_hosts.iter().chain(&self.global_known_hosts)
    }
}

impl SshView {
    /// The view of `ssh -G` output; `~/` is expanded against `home`, as ssh does.
    pub fn from_ssh_g(text: &str, home: &Path) -> SshView {
        let expand = |word: &&str| -> PathBuf {
            match word.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(word),
            }
        };
        let g = crate::ssh_g::parse_ssh_g(text);
        SshView {
            hostname: g.hostname.unwrap_or_default().to_string(),
            port: g.port.unwrap_or(22),
            user: g.user.unwrap_or_default().to_string(),
            host_key_alias: g.host_key_alias.map(String::from),
            user_known_hosts: g.user_known_hosts.iter().map(expand).collect(),
            global_known_hosts: g.global_known_hosts.iter().map(expand).collect(),
            proxy: g
                .proxy_jump
                .map(|v| format!("proxyjump {v}"))
                .or(g.proxy_command.map(|v| format!("proxycommand {v}"))),
            identity_files: g.identity_files.iter().map(expand).collect(),
        }
    }
}

/// Runs the tunnel's own ssh argv with `-G` (print the configuration, connect nowhere).
pub fn ssh_g(argv: &[String]) -> Result<SshView, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.arg("-G").args(&argv[1..]);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e} (install openssh-client)", argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`ssh -G` refused the tunnel's ssh options: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(SshView::from_ssh_g(
        &String::from_utf8_lossy(&out.stdout),
        &crate::home::home_dir(),
    ))
}

/// One host key: type (`ssh-ed25519`) and base64 blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKey {
    pub key_type: String,
    pub blob: String,
}

impl HostKey {
    pub fn line(&self, name: &str) -> String {
        format!("{name} {} {}", self.key_type, self.blob)
    }
}

/// Keys from known_hosts-format text (ssh-keyscan output, `ssh-keygen -F` output):
/// comments and `@cert-authority`/`@revoked` lines are skipped — they do not pin a key.
pub fn parse_keys(text: &str) -> Vec<HostKey> {
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 3 {
            let key = HostKey {
                key_type: fields[1].to_string(),
                blob: fields[2].to_string(),
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// No key is pinned for the name.
    Nothing,
    /// A key the server offers is pinned, and no pinned key contradicts the offer.
    Same,
    /// Something is pinned that the server does not offer: a changed key, or an attack.
    Different { pinned: Vec<HostKey> },
}

/// Compares what is pinned with what the server offers (pure).
pub fn compare(pinned: &[HostKey], offered: &[HostKey]) -> Pinned {
    if pinned.is_empty() {
        return Pinned::Nothing;
    }
    let contradicts = |p: &HostKey| {
        offered
            .iter()
            .any(|o| o.key_type == p.key_type && o.blob != p.blob)
    };
    let any_match = pinned.iter().any(|p| offered.contains(p));
    if any_match && !pinned.iter().any(contradicts) {
        Pinned::Same
    } else {
        Pinned::Different {
            pinned: pinned.to_vec(),
        }
    }
}

/// What `file` pins for `name` (`ssh-keygen -F`, which also matches hashed entries).
/// A missing file pins nothing.
pub fn pinned_keys(file: &Path, name: &str) -> Result<Vec<HostKey>, String> {
    if !file.exists() {
        return Ok(Vec::new());
    }
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(name)
        .arg("-f")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e} (install openssh-client)"))?;
    // Exit 1 with no output: not found. Anything on stderr with no match is a real error.
    if !out.status.success() && !out.stderr.is_empty() && out.stdout.is_empty() {
        return Err(format!(
            "ssh-keygen -F {name} -f {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_keys(&String::from_utf8_lossy(&out.stdout)))
}

/// Why a TCP connection to host:port fails now (`Connection refused`), if it does;
/// bounded to 2 s per address.
fn connect_error(host: &str, port: u16) -> Option<String> {
    use std::net::ToSocketAddrs;
    let addrs = (host, port).to_socket_addrs().ok()?;
    let mut last = None;
    for addr in addrs.take(4) {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => return None,
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    last
}

/// Fetches the server's host keys. Directly with `ssh-keyscan`; through a jump host or
/// proxy command (which ssh-keyscan cannot use) by letting ssh itself connect with
/// `StrictHostKeyChecking=accept-new` into a throwaway known_hosts file and with every
/// authentication method off, so it stops right after the key exchange. The jump host
/// itself is checked against the user's own known_hosts as usual. That path yields the
/// one key type ssh negotiates, which is the one it will check.
pub fn fetch_keys(view: &SshView, timeout: Duration) -> Result<(Vec<HostKey>, String), String> {
    let secs = timeout.as_secs().max(1).to_string();
    match &view.proxy {
        None => {
            let started = std::time::Instant::now();
            let out = Command::new("ssh-keyscan")
                .args([
                    "-T",
                    &secs,
                    "-p",
                    &view.port.to_string(),
                    "--",
                    &view.hostname,
                ])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ssh-keyscan: {e} (install openssh-client)"))?;
            let keys = parse_keys(&String::from_utf8_lossy(&out.stdout));
            if keys.is_empty() {
                let said = String::from_utf8_lossy(&out.stderr);
                let mut said: Vec<String> = said
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .map(String::from)
                    .collect();
                // ssh-keyscan says nothing about a refused connection: a quick answer is
                // one, and one connect (bounded by what is left of the time) tells which.
                let quick = started.elapsed() < timeout;
                if said.is_empty() && quick {
                    said.extend(connect_error(&view.hostname, view.port));
                }
                let when = if quick {
                    String::new()
                } else {
                    format!(" within {secs}s")
                };
                return Err(format!(
                    "no host key received from {} port {}{when}: is an SSH server listening there?{}",
                    view.hostname,
                    view.port,
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", said.join("; "))
                    }
                ));
            }
            Ok((keys, "fetched directly with ssh-keyscan".to_string()))
        }
        Some(proxy) => {
            let dir = tempdir()?;
            let file = dir.0.join("known_hosts");
            let mut cmd = Command::new("ssh");
            cmd.args([
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "HashKnownHosts=no",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", file.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "UpdateHostKeys=no",
            ])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PasswordAuthentication=no",
            ])
            .args([
                "-o",
                "KbdInteractiveAuthentication=no",
                "-o",
                "GSSAPIAuthentication=no",
            ])
            .args(["-o", "HostbasedAuthentication=no"])
            .arg("-o")
            .arg(format!("ConnectTimeout={secs}"))
            .arg("-o")
            .arg(format!(
                "{}={}",
                if proxy.starts_with("proxyjump") {
                    "ProxyJump"
                } else {
                    "ProxyCommand"
                },
                proxy.split_once(' ').map(|x| x.1).unwrap_or("")
            ))
            .args([
                "-p",
                &view.port.to_string(),
                "-l",
                &view.user,
                "--",
                &view.hostname,
                "true",
            ]);
            let out = cmd
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ssh: {e} (install openssh-client)"))?;
            let keys = parse_keys(&std::fs::read_to_string(&file).unwrap_or_default());
            if keys.is_empty() {
                return Err(format!(
                    "no host key received from {} port {} through `{proxy}`: {}",
                    view.hostname,
                    view.port,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok((
                keys,
                format!("fetched through `{proxy}` (ssh with accept-new into a temporary file)"),
            ))
        }
    }
}

/// A temp directory removed on drop (no tempfile crate outside tests).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir, String> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!("tunnelctl-trust-{}-{attempt}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(TempDir(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "cannot create a temporary directory in {}: {e}",
                    base.display()
                ));
            }
        }
    }
    Err(format!(
        "cannot create a temporary directory in {}",
        base.display()
    ))
}

use std::os::unix::fs::DirBuilderExt;

/// `256 SHA256:… (ED25519)` for each key, from `ssh-keygen -lf -`.
pub fn fingerprints(keys: &[HostKey]) -> Result<Vec<String>, String> {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh-keygen: {e} (install openssh-client)"))?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for key in keys {
            // "-" as the name keeps the output to bits, fingerprint and type.
            let _ = writeln!(stdin, "{}", key.line("-"));
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = text.lines().map(|l| l.replace(" - (", " (")).collect();
    if lines.len() != keys.len() {
        return Err(format!(
            "ssh-keygen could not read the host keys: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(lines)
}

/// `existing` with one `name type blob` line per key appended (pure).
pub fn appended(existing: &[u8], name: &str, keys: &[HostKey]) -> Vec<u8> {
    let mut out = existing.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    for key in keys {
        out.extend_from_slice(key.line(name).as_bytes());
        out.push(b'\n');
    }
    out
}

/// Appends the keys to `file` atomically (temp file + rename, relative to its checked
/// directory; a missing parent is created 0700 like `~/.ssh`). The file is 0644 (host
/// keys are public), or 0600 when it was private before; owner and mode are set, never
/// copied. A `file` that is a symlink (the `ln -s /dev/null ~/.ssh/known_hosts` idiom,
/// or a link into a dotfiles checkout) is refused rather than replaced or followed: the
/// link is the user's decision, and writing through it would give its target our mode.
pub fn pin(file: &Path, name: &str, keys: &[HostKey]) -> Result<(), String> {
    use crate::safe_fs;
    let absolute = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", file.display()))?
            .join(file)
    };
    let (dir_path, file_name) = safe_fs::split(&absolute)?;
    let dir = safe_fs::open_abs(dir_path, Some(0o700), safe_fs::Trust::Private)
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    if let Err((_, why)) = dir.check_destination(file_name) {
        return Err(format!(
            "{why}; tunnelctl does not write through links or replace them. Fix: point the              tunnel's `known_hosts:` at the real file, or remove the link (`rm {}`) and trust again",
            file.display()
        ));
    }
    let private = dir
        .lstat(file_name)?
        .is_some_and(|st| st.st_mode & 0o044 == 0);
    let existing = dir
        .read_optional(file_name, 64 * 1024 * 1024)?
        .unwrap_or_default();
    let mode = if private { 0o600 } else { 0o644 };
    dir.write_file(file_name, &appended(&existing, name, keys), mode)
        .map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, b: &str) -> HostKey {
        HostKey {
            key_type: t.into(),
            blob: b.into(),
        }
    }

    #[test]
    fn ssh_g_view_and_key_name() {
        let text = "user bob\nhostname 10.0.0.1\nport 2222\nhostkeyalias none\n\
                    userknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\n\
                    globalknownhostsfile /etc/ssh/ssh_known_hosts\nproxyjump none\nidentityfile ~/.ssh/id_ed25519\n";
        let v = SshView::from_ssh_g(text, Path::new("/home/bob"));
        assert_eq!(v.key_name(), "[10.0.0.1]:2222");
        assert_eq!(
            v.user_known_hosts[0],
            PathBuf::from("/home/bob/.ssh/known_hosts")
        );
        assert_eq!(v.proxy, None);
        let v = SshView::from_ssh_g(
            "hostname h\nport 22\nhostkeyalias alias\nproxyjump j@b:22\n",
            Path::new("/"),
        );
        assert_eq!(v.key_name(), "alias");
        assert_eq!(v.proxy.as_deref(), Some("proxyjump j@b:22"));
    }

    #[test]
    fn compare_tells_nothing_same_and_different() {
        let ed = key("ssh-ed25519", "AAA1");
        let rsa = key("ssh-rsa", "BBB1");
        assert_eq!(compare(&[], std::slice::from_ref(&ed)), Pinned::Nothing);
        assert_eq!(
            compare(std::slice::from_ref(&ed), &[ed.clone(), rsa.clone()]),
            Pinned::Same
        );
        let other = key("ssh-ed25519", "AAA2");
        assert!(matches!(
            compare(std::slice::from_ref(&other), std::slice::from_ref(&ed)),
            Pinned::Different { .. }
        ));
        // One key matches but another pinned key of an offered type contradicts: refuse.
        let other_rsa = key("ssh-rsa", "BBB2");
        assert!(matches!(
            compare(&[ed.clone(), other_rsa], &[ed.clone(), rsa]),
            Pinned::Different { .. }
        ));
    }

    #[test]
    fn parse_keys_skips_comments_and_markers() {
        let text = "# Host x found: line 1\n@cert-authority * ssh-ed25519 CA\n|1|salt|hash ssh-ed25519 AAA1\nx ssh-rsa BBB comment\n";
        assert_eq!(
            parse_keys(text),
            vec![key("ssh-ed25519", "AAA1"), key("ssh-rsa", "BBB")]
        );
    }

    #[test]
    fn appended_keeps_existing_bytes_and_adds_a_newline_when_missing() {
        let out = appended(b"a ssh-rsa X", "[h]:2", &[key("ssh-ed25519", "Y")]);
        assert_eq!(out, b"a ssh-rsa X\n[h]:2 ssh-ed25519 Y\n");
        assert_eq!(appended(b"", "h", &[key("t", "b")]), b"h t b\n");
    }
}
