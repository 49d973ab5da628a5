//! An `ssh …` or `autossh …` argv read the way ssh reads it: bundled flags (`-NfR`),
//! attached arguments (`-p2222`, `-oKey=Value`), options after the destination
//! (`ssh server -R …`), `--`, and everything after the destination's first non-option
//! word is the remote command. autossh's own `-M`, `-f` and `AUTOSSH_*` are understood
//! and dropped with a note. Pure.

use super::{ForwardSpec, Found, ImportError, Sourced, derive_name, display_command};

/// ssh's flags that take an argument (OpenSSH 9's getopt string).
const WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOopQRSWw";
/// ssh's flags without one.
const FLAGS: &str = "1246AaCfGgKkMNnPqsTtVvXxYy";

/// What the watchdog does instead of autossh's monitoring, for the notes.
const WATCHDOG_PROBES: &str = "tunnel-watchdog sends data through every forward over ssh's own \
connection and restarts ssh when a round fails, so no monitor port is needed";

/// Reads `argv` (its first word is ssh or autossh, with or without a directory) with
/// the environment `env` it runs with (only `AUTOSSH_*` matters). `source` names where
/// it was found, for messages.
pub fn parse(
    argv: &[String],
    env: &[(String, String)],
    source: &str,
) -> Result<Found, ImportError> {
    let program = argv.first().map(String::as_str).unwrap_or("");
    let autossh = super::program_name(program) == "autossh";
    let mut found = Found {
        source: source.to_string(),
        command: display_command(argv),
        ..Found::default()
    };
    for (key, value) in env {
        if key.starts_with("AUTOSSH_") {
            found.note(format!("{key}={value}"), autossh_env_note(key));
        }
    }
    let mut i = 1;
    let mut host_seen = false;
    let mut terminated = false;
    while i < argv.len() {
        let word = &argv[i];
        if !terminated && word == "--" {
            terminated = true;
            i += 1;
            continue;
        }
        if !terminated && word.len() > 1 && word.starts_with('-') {
            i = flags(argv, i, autossh, &mut found)?;
            continue;
        }
        if host_seen {
            // The first word after the destination that is not an option starts the
            // remote command: the rest of the line is its arguments.
            let command = display_command(&argv[i..]);
            found.note(
                command,
                "a remote command is not carried over: a tunnel runs none (ssh -N) and \
                 tunnel-watchdog keeps the connection up instead",
            );
            break;
        }
        destination(word, &mut found)?;
        host_seen = true;
        i += 1;
    }
    if found.host.is_none() {
        return Err(ImportError::new(
            found.command.clone(),
            "no destination host: ssh needs `[user@]host`",
        ));
    }
    if autossh && !found.notes.iter().any(|n| n.part.starts_with("-M")) {
        found.note(
            "autossh",
            format!("autossh restarted ssh when it exited; {WATCHDOG_PROBES}"),
        );
    }
    let host = found
        .host
        .as_ref()
        .map(|h| h.value.clone())
        .unwrap_or_default();
    found.name = derive_name(&host);
    Ok(found)
}

fn autossh_env_note(key: &str) -> String {
    match key {
        "AUTOSSH_PORT" => format!("autossh's monitor port is not used; {WATCHDOG_PROBES}"),
        "AUTOSSH_POLL" | "AUTOSSH_FIRST_POLL" => {
            "autossh's poll interval is not used; the watchdog probes every `probe.interval` \
             (10s by default)"
                .to_string()
        }
        "AUTOSSH_GATETIME" | "AUTOSSH_MAXSTART" => "autossh's start-up rules are not used; \
             the watchdog backs off between reconnects (`backoff:`) and never gives up"
            .to_string(),
        "AUTOSSH_LOGFILE" | "AUTOSSH_DEBUG" | "AUTOSSH_LOGLEVEL" => {
            "autossh's logging is not used; the watchdog logs to the init system's log \
             (`tunnelctl logs NAME`)"
                .to_string()
        }
        "AUTOSSH_PIDFILE" => {
            "no pid file: the init system runs the watchdog (`tunnelctl status`)".to_string()
        }
        "AUTOSSH_PATH" => "the service runs `ssh` from its PATH".to_string(),
        _ => "autossh's setting has no counterpart; the watchdog supervises ssh itself".to_string(),
    }
}

/// One word of bundled flags starting at `argv[i]`; returns the index of the next word.
fn flags(
    argv: &[String],
    i: usize,
    autossh: bool,
    found: &mut Found,
) -> Result<usize, ImportError> {
    let word = &argv[i];
    let chars: Vec<char> = word[1..].chars().collect();
    let mut next = i + 1;
    for (k, &c) in chars.iter().enumerate() {
        let takes = WITH_ARGUMENT.contains(c) || (autossh && c == 'M');
        if takes {
            let attached: String = chars[k + 1..].iter().collect();
            let (value, part) = if !attached.is_empty() {
                (attached, word.clone())
            } else if let Some(v) = argv.get(next) {
                next += 1;
                (v.clone(), format!("-{c} {v}"))
            } else {
                return Err(ImportError::new(
                    word.clone(),
                    format!("`-{c}` needs an argument"),
                ));
            };
            option_with_argument(c, &value, &part, autossh, found)?;
            return Ok(next);
        }
        if !FLAGS.contains(c) {
            return Err(ImportError::new(
                word.clone(),
                format!("`-{c}` is not an ssh option"),
            ));
        }
        flag(c, autossh, found)?;
    }
    Ok(next)
}

fn flag(c: char, autossh: bool, found: &mut Found) -> Result<(), ImportError> {
    let part = format!("-{c}");
    match c {
        '4' => option(found, "AddressFamily", "inet", &part),
        '6' => option(found, "AddressFamily", "inet6", &part),
        'C' => option(found, "Compression", "yes", &part),
        'f' if autossh => found.note(
            part,
            "autossh went to the background; the init system runs tunnel-watchdog as a \
             service instead",
        ),
        'f' => found.note(
            part,
            "ssh would fork away from tunnel-watchdog, which must stay its parent; the init \
             system runs the tunnel in the background instead",
        ),
        'N' | 'T' | 'n' => {} // what a tunnel does anyway (ssh -N -T)
        't' => found.note(part, "a tunnel has no terminal (ssh -T)"),
        'g' => found.note(
            part,
            "remote hosts may not connect to local forwards: they listen on 127.0.0.1; add \
             `bind: 0.0.0.0` to a forward that must be reachable from elsewhere",
        ),
        'A' => found.note(
            part,
            "agent forwarding is refused for safety (the server could use your keys); the \
             tunnel needs none",
        ),
        'X' | 'Y' => found.note(
            part,
            "X11 forwarding is refused for safety; a tunnel needs none",
        ),
        'q' => found.note(
            part,
            "quiet mode would hide ssh's errors, which the watchdog reads to explain failures",
        ),
        'v' => found.note(
            part,
            "the watchdog logs ssh's errors; no verbose output is kept",
        ),
        'M' => found.note(
            part,
            "tunnel-watchdog runs ssh as the control master of its own socket",
        ),
        'K' => found.note(
            part,
            "Kerberos credential delegation is refused for safety; a tunnel needs none",
        ),
        's' => found.note(part, "a tunnel runs no subsystem (ssh -N)"),
        'G' | 'V' => {
            return Err(ImportError::new(
                part,
                "this ssh command prints and exits; it runs no tunnel",
            ));
        }
        'P' | 'y' => found.note(part, "not needed by a tunnel run as a service"),
        // -1 -2 -a -k -x: protocol 2 only, or "no" for something off by default.
        _ => {}
    }
    Ok(())
}

fn option_with_argument(
    c: char,
    value: &str,
    part: &str,
    autossh: bool,
    found: &mut Found,
) -> Result<(), ImportError> {
    match c {
        'M' if autossh => found.note(
            part,
            format!("autossh's monitor port is not used; {WATCHDOG_PROBES}"),
        ),
        'L' | 'R' | 'D' => {
            let spec = parse_forward(c, value).map_err(|m| ImportError::new(part, m))?;
            found.forwards.push((spec, part.to_string()));
        }
        'p' => set(&mut found.port, value, part),
        'l' => set(&mut found.user, value, part),
        'i' => identity(found, value, part),
        'J' => set(&mut found.jump, value, part),
        'o' => {
            let (key, val) = split_option(value)
                .ok_or_else(|| ImportError::new(part, "`-o` needs `Key=Value` or \"Key Value\""))?;
            option(found, &key, &val, part);
        }
        'b' => option(found, "BindAddress", value, part),
        'B' => option(found, "BindInterface", value, part),
        'c' => option(found, "Ciphers", value, part),
        'm' => option(found, "MACs", value, part),
        'E' => found.note(
            part,
            "the watchdog logs ssh's errors to the init system's log (`tunnelctl logs NAME`)",
        ),
        'e' => {} // the escape character only matters with a terminal
        'F' => found.note(
            part,
            "the service's ssh reads the default ssh_config of the user it runs as; copy \
             the options that matter from this file into `ssh_options:`",
        ),
        'S' => found.note(
            part,
            "tunnel-watchdog owns the control socket it probes through",
        ),
        'I' => found.note(
            part,
            "loading a PKCS#11 library is refused for safety; use `identity:` with a key file",
        ),
        'w' => {
            return Err(ImportError::new(
                part,
                "tun/tap forwarding is not a port forward tunnelctl can keep or probe",
            ));
        }
        'W' => {
            return Err(ImportError::new(
                part,
                "a stdio forward (ssh -W) is a proxy for another ssh, not a tunnel",
            ));
        }
        'O' | 'Q' => {
            return Err(ImportError::new(
                part,
                "this ssh command talks to a running ssh or prints a list; it runs no tunnel",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The first value wins, as in ssh.
fn set(slot: &mut Option<Sourced>, value: &str, part: &str) {
    if slot.is_none() {
        *slot = Some(Sourced::new(value, part));
    }
}

fn identity(found: &mut Found, value: &str, part: &str) {
    if found.identity.is_some() {
        found.note(
            part,
            "a tunnel uses one key (`identity:`); the first one given is kept",
        );
    } else {
        found.identity = Some(Sourced::new(value, part));
    }
}

/// `Key=Value`, `Key Value`, `Key = Value` (as ssh's `-o` accepts); the value's
/// surrounding double quotes are removed.
pub fn split_option(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let end = text.find(|c: char| c == '=' || c.is_whitespace())?;
    let key = &text[..end];
    let rest = text[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    if key.is_empty() || rest.is_empty() {
        return None;
    }
    let value = rest
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(rest);
    Some((key.to_string(), value.to_string()))
}

/// One ssh option (from `-o`, a flag, or an ssh_config line) carried over where
/// tunnels.yaml has it, as `ssh_options` where it is allowed there, or as a note.
pub fn option(found: &mut Found, key: &str, value: &str, part: &str) {
    let v = value.trim().to_ascii_lowercase();
    match key.to_ascii_lowercase().as_str() {
        "hostname" => set(&mut found.host, value, part),
        "port" => set(&mut found.port, value, part),
        "user" => set(&mut found.user, value, part),
        "identityfile" => identity(found, value, part),
        "proxyjump" if v == "none" => {}
        "proxyjump" => set(&mut found.jump, value, part),
        "serveraliveinterval" => set(&mut found.keepalive_interval, &seconds(value), part),
        "serveralivecountmax" => set(&mut found.keepalive_count, value, part),
        "connecttimeout" => set(&mut found.connect_timeout, &seconds(value), part),
        "localforward" | "remoteforward" | "dynamicforward" => {
            let flag = match key.to_ascii_lowercase().as_str() {
                "localforward" => 'L',
                "remoteforward" => 'R',
                _ => 'D',
            };
            // ssh_config writes `[bind:]port host:hostport`: ssh joins the two with `:`.
            let joined = value.split_whitespace().collect::<Vec<_>>().join(":");
            match parse_forward(flag, &joined) {
                Ok(spec) => found.forwards.push((spec, part.to_string())),
                Err(message) => found.note(part, format!("not carried over: {message}")),
            }
        }
        "userknownhostsfile" if v == "/dev/null" || v == "none" => found.note(
            part,
            "a known_hosts file that pins nothing is refused for safety; tunnelctl checks \
             the server's host key: pin it with `tunnelctl trust NAME`",
        ),
        "userknownhostsfile" => {
            let first = value.split_whitespace().next().unwrap_or(value);
            set(&mut found.known_hosts, first, part)
        }
        "stricthostkeychecking" if v == "no" || v == "off" || v == "accept-new" => found.note(
            part,
            "turning host-key checking off is refused for safety; tunnelctl always checks \
             it: pin the server's key once with `tunnelctl trust NAME`",
        ),
        "stricthostkeychecking" => {}              // tunnelctl sets yes
        "batchmode" | "exitonforwardfailure" => {} // tunnelctl always sets both to yes
        "controlmaster" | "controlpath" | "controlpersist" => found.note(
            part,
            "tunnel-watchdog owns the control socket it probes through",
        ),
        "forkafterauthentication" if v == "yes" => found.note(
            part,
            "ssh would fork away from tunnel-watchdog, which must stay its parent",
        ),
        "sessiontype" | "requesttty" | "stdinnull" | "forkafterauthentication" => {}
        "remotecommand" if v != "none" => found.note(
            part,
            "a remote command is not carried over: a tunnel runs none (ssh -N)",
        ),
        "remotecommand" => {}
        "gatewayports" if v == "yes" => found.note(
            part,
            "local forwards listen on 127.0.0.1; add `bind: 0.0.0.0` to a forward that must \
             be reachable from elsewhere",
        ),
        "gatewayports" | "clearallforwardings" => {}
        "proxycommand" if v != "none" => found.note(
            part,
            "a proxy command runs a local shell command and is refused for safety; use \
             `jump:` for a bastion host",
        ),
        "proxycommand" => {}
        "localcommand"
        | "permitlocalcommand"
        | "knownhostscommand"
        | "pkcs11provider"
        | "securitykeyprovider"
        | "globalknownhostsfile"
        | "hostkeyalias" => found.note(
            part,
            "refused for safety (it runs or loads code, or trusts host keys from elsewhere); \
             add it under `ssh_options:` with `allow_insecure_options: true` only if you \
             accept the risk",
        ),
        "forwardagent" | "forwardx11" | "forwardx11trusted" | "gssapidelegatecredentials"
            if v != "no" =>
        {
            found.note(
                part,
                "handing credentials or a display to the server is refused for safety; a \
                 tunnel needs none",
            )
        }
        "loglevel" if v == "quiet" => found.note(
            part,
            "it would hide ssh's errors, which the watchdog reads to explain failures",
        ),
        "tunnel" | "tunneldevice" => found.note(
            part,
            "tun/tap forwarding is not a port forward tunnelctl can keep or probe",
        ),
        _ => {
            if !found
                .ssh_options
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(key))
            {
                found
                    .ssh_options
                    .push((key.to_string(), Sourced::new(value, part)));
            }
        }
    }
}

/// ssh's time values (`60`, `1m`) as tunnels.yaml durations: a bare number is seconds.
fn seconds(value: &str) -> String {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        format!("{v}s")
    } else {
        v.to_ascii_lowercase()
    }
}

/// The `:`-separated fields of a forward; `[…]` keeps an IPv6 address whole.
fn fields(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if current.is_empty() => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(c) => inner.push(c),
                        None => return Err(format!("`{spec}` has a `[` without its `]`")),
                    }
                }
                current = inner;
                if let Some(&next) = chars.peek()
                    && next != ':'
                {
                    return Err(format!("`{spec}`: `]` must be followed by `:`"));
                }
            }
            ':' => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    Ok(out)
}

/// A forward spec of `-L`, `-R` or `-D` (`flag`) in every form ssh accepts for TCP.
pub fn parse_forward(flag: char, spec: &str) -> Result<ForwardSpec, String> {
    let f = fields(spec)?;
    if f.iter().any(|x| x.contains('/')) {
        return Err(format!(
            "`{spec}` forwards a unix socket; tunnelctl keeps TCP forwards only"
        ));
    }
    let bind = |b: &str| -> Option<String> {
        // An empty bind address means every interface, as `*` does.
        Some(if b.is_empty() {
            "*".to_string()
        } else {
            b.to_string()
        })
    };
    let endpoint = |host: &str, port: &str| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    match (flag, f.as_slice()) {
        ('D', [port]) => Ok(ForwardSpec::Dynamic {
            bind: None,
            port: port.clone(),
        }),
        ('D', [b, port]) => Ok(ForwardSpec::Dynamic {
            bind: bind(b),
            port: port.clone(),
        }),
        ('L', [port, host, hostport]) => Ok(ForwardSpec::Local {
            bind: None,
            port: port.clone(),
            to: endpoint(host, hostport),
        }),
        ('L', [b, port, host, hostport]) => Ok(ForwardSpec::Local {
            bind: bind(b),
            port: port.clone(),
            to: endpoint(host, hostport),
        }),
        ('R', [port, host, hostport]) => Ok(ForwardSpec::Remote {
            bind: None,
            port: port.clone(),
            to: endpoint(host, hostport),
        }),
        ('R', [b, port, host, hostport]) => Ok(ForwardSpec::Remote {
            bind: bind(b),
            port: port.clone(),
            to: endpoint(host, hostport),
        }),
        ('R', [_] | [_, _]) => Err(format!(
            "`-R {spec}` is a reverse SOCKS proxy; tunnelctl keeps `-R PORT:HOST:PORT` forwards"
        )),
        _ => Err(format!(
            "`-{flag} {spec}` is not a forward ssh understands ({})",
            match flag {
                'L' => "[bind:]port:host:hostport",
                'R' => "[bind:]port:host:hostport",
                _ => "[bind:]port",
            }
        )),
    }
}

/// `user@host` (the last `@` splits, as in ssh) or `ssh://[user@]host[:port]`.
fn destination(word: &str, found: &mut Found) -> Result<(), ImportError> {
    let (user_host, port) = match word.strip_prefix("ssh://") {
        Some(rest) => {
            let rest = rest.trim_end_matches('/');
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                    (h.to_string(), Some(p.to_string()))
                }
                _ => (rest.to_string(), None),
            }
        }
        None => (word.to_string(), None),
    };
    let (user, host) = match user_host.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, user_host),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(str::to_string)
        .unwrap_or(host);
    if host.is_empty() {
        return Err(ImportError::new(word, "no host after `@`"));
    }
    if let Some(user) = user {
        set(&mut found.user, &user, word);
    }
    if let Some(port) = port {
        set(&mut found.port, &port, word);
    }
    // `-o HostName=` given before the destination names where ssh connects; the
    // destination is then only the alias.
    if found.host.is_none() {
        found.host = Some(Sourced::new(host, word));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn autossh_recipe() {
        let f = parse(
            &words("autossh -M 20000 -f -N server -R 1234:localhost:22 -C"),
            &[],
            "the command line",
        )
        .unwrap();
        assert_eq!(f.name, "server");
        assert_eq!(f.host.unwrap().value, "server");
        assert_eq!(
            f.forwards,
            vec![(
                ForwardSpec::Remote {
                    bind: None,
                    port: "1234".into(),
                    to: "localhost:22".into()
                },
                "-R 1234:localhost:22".into()
            )]
        );
        assert_eq!(f.ssh_options[0].0, "Compression");
        let parts: Vec<&str> = f.notes.iter().map(|n| n.part.as_str()).collect();
        assert_eq!(parts, ["-M 20000", "-f"]);
    }

    #[test]
    fn every_forward_form() {
        let f = parse(
            &words(
                "ssh -NfL8080:intranet:80 -L [::1]:5432:[::1]:5432 -L :9000:h:90 -D 1080 -D*:1081 \
                 -R 0.0.0.0:2222:localhost:22 -oLocalForward=7000:h:70 me@host",
            ),
            &[],
            "x",
        );
        let f = f.unwrap();
        let specs: Vec<&ForwardSpec> = f.forwards.iter().map(|(s, _)| s).collect();
        assert_eq!(specs.len(), 7);
        assert_eq!(
            specs[1],
            &ForwardSpec::Local {
                bind: Some("::1".into()),
                port: "5432".into(),
                to: "[::1]:5432".into()
            }
        );
        assert_eq!(
            specs[2],
            &ForwardSpec::Local {
                bind: Some("*".into()),
                port: "9000".into(),
                to: "h:90".into()
            }
        );
        assert_eq!(f.user.unwrap().value, "me");
        assert!(parse_forward('L', "/tmp/s:h:1").is_err());
        assert!(parse_forward('R', "8080").is_err());
    }

    #[test]
    fn options_in_both_spellings_and_remote_command() {
        let argv: Vec<String> = [
            "/usr/bin/ssh",
            "-f",
            "-N",
            "-o",
            "ServerAliveInterval 180",
            "-o",
            "StrictHostKeyChecking=no",
            "-p",
            "2222",
            "-i",
            "~/.ssh/k",
            "-J",
            "jump",
            "-R",
            "55002:localhost:22",
            "user@publicip",
            "sleep 365d",
        ]
        .map(String::from)
        .to_vec();
        let f = parse(&argv, &[], "x").unwrap();
        assert_eq!(f.keepalive_interval.unwrap().value, "180s");
        assert_eq!(f.port.unwrap().value, "2222");
        assert_eq!(f.identity.unwrap().value, "~/.ssh/k");
        assert_eq!(f.jump.unwrap().value, "jump");
        let parts: Vec<&str> = f.notes.iter().map(|n| n.part.as_str()).collect();
        assert_eq!(parts, ["-f", "-o StrictHostKeyChecking=no", "'sleep 365d'"]);
    }

    #[test]
    fn refusals_name_the_part() {
        let e = parse(&words("ssh -W h:22 host"), &[], "x").unwrap_err();
        assert_eq!(e.part, "-W h:22");
        let e = parse(&words("ssh -Z host"), &[], "x").unwrap_err();
        assert!(e.message.contains("-Z"), "{e}");
        assert!(parse(&words("ssh -N"), &[], "x").is_err());
    }
}
