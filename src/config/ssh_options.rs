//! `ssh_options`: parsed as a mapping, merged (defaults first, the tunnel's own
//! value wins), then held to the policy: some options are refused outright, some
//! only with `allow_insecure_options: true`.

use std::collections::BTreeMap;

use super::Cx;
use super::schema::Partial;
use super::yaml::{Loc, Node, Value};

impl Cx {
    pub(super) fn ssh_options(&mut self, node: &Node) -> Vec<(String, String, Loc, Loc)> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.at,
                format!(
                    "`ssh_options` must be a mapping of ssh option names to values, found {}",
                    node.kind()
                ),
                "e.g. `ssh_options: { Compression: \"yes\" }`",
            );
            return Vec::new();
        };
        let mut out: Vec<(String, String, Loc, Loc)> = Vec::new();
        for (key, value) in entries {
            if key.text.is_empty() || !key.text.chars().all(|c| c.is_ascii_alphanumeric()) {
                self.error(
                    key.at,
                    format!(
                        "{:?} is not an ssh option name (letters and digits only)",
                        key.text
                    ),
                    "see `man ssh_config` for option names",
                );
                continue;
            }
            if let Some((first, ..)) = out.iter().find(|(k, ..)| k.eq_ignore_ascii_case(&key.text))
            {
                self.error(
                    key.at,
                    format!(
                        "ssh option `{}` given twice (ssh option names ignore case; see `{first}`)",
                        key.text
                    ),
                    "keep one of them",
                );
                continue;
            }
            let Some(text) = value.scalar_text() else {
                self.error(
                    value.at,
                    format!(
                        "the value of ssh option `{}` must be a single value, found {}",
                        key.text,
                        value.kind()
                    ),
                    "",
                );
                continue;
            };
            if !self.no_control(value.at, &text, &format!("ssh option `{}` value", key.text)) {
                continue;
            }
            if text.is_empty() {
                self.error(
                    value.at,
                    format!("ssh option `{}` has an empty value", key.text),
                    "",
                );
                continue;
            }
            if key.text.eq_ignore_ascii_case("SetEnv")
                && let Some((what, fix)) = setenv_problem(&text)
            {
                self.error(value.at, format!("ssh option `{}` {what}", key.text), fix);
                continue;
            }
            // Seen with ssh -v against a real sshd: with -N no session channel opens,
            // and ssh sends SetEnv and SendEnv variables only on one.
            if key.text.eq_ignore_ascii_case("SetEnv") || key.text.eq_ignore_ascii_case("SendEnv") {
                self.warn(
                    key.at,
                    format!(
                        "ssh option `{}` has no effect here: ssh sends environment variables \
                         only with a session, and a tunnel opens none (ssh -N)",
                        key.text
                    ),
                    "remove it; nothing on the server sees it",
                );
            }
            out.push((key.text.clone(), text, key.at, value.at));
        }
        out
    }

    /// The merged options of tunnel `name` that pass the policy, by canonical name.
    pub(super) fn ssh_options_policy(
        &mut self,
        name: &str,
        t: &Partial,
        d: &Partial,
        allow: bool,
    ) -> BTreeMap<String, String> {
        // ssh_options: defaults first, the tunnel's own value wins (case-insensitive).
        let mut merged: Vec<(String, String, Loc, Loc)> = d.ssh_options.clone();
        for option in &t.ssh_options {
            merged.retain(|(k, ..)| !k.eq_ignore_ascii_case(&option.0));
            merged.push(option.clone());
        }
        let mut ssh_options = BTreeMap::new();
        for (key, value, key_at, value_at) in merged {
            match classify_option(&key, &value) {
                OptionVerdict::Allowed => {}
                OptionVerdict::Refused(why, hint) => {
                    self.error(
                        key_at,
                        format!("ssh option `{key}` is not allowed: {why}"),
                        hint,
                    );
                    continue;
                }
                OptionVerdict::Insecure(why) if allow => {
                    self.warn(
                        value_at,
                        format!("tunnel `{name}`: insecure ssh option `{key} {value}`: {why}"),
                        "allowed because the tunnel sets `allow_insecure_options: true`",
                    );
                }
                OptionVerdict::Insecure(why) => {
                    self.error(key_at, format!("ssh option `{key} {value}` is refused: {why}"), "remove it, or set `allow_insecure_options: true` on this tunnel if you accept the risk");
                    continue;
                }
            }
            // As the user spelled it (ssh ignores the case of option names): stable,
            // readable output.
            ssh_options.insert(key, value);
        }
        ssh_options
    }
}

/// What ssh would make of a `SetEnv` value, read as its config parser reads it
/// (`ssh_path::config_words`, checked against `ssh -G` of OpenSSH 9.2): a word without
/// `=` (also an empty `""`) or an unclosed quote, which ssh refuses so the tunnel never
/// starts; or a part ssh drops without a word (a `#` that starts a word begins a
/// comment; a repeated name keeps only its first value). `None` when ssh takes every
/// `NAME=VALUE` as written. (ssh also takes an empty name, `=x`, so it passes here.)
fn setenv_problem(value: &str) -> Option<(String, &'static str)> {
    let quoting = "several variables are separated by spaces (`A=1 B=2`); a value with \
                   spaces or `#` goes in double quotes (`NAME=\"a b\"`: in YAML \
                   `SetEnv: 'NAME=\"a b\"'`)";
    let Some(parsed) = crate::ssh_path::config_words(value) else {
        return Some((
            format!(
                "value {value:?} has a quote that is not closed: ssh refuses the option \
                 (\"invalid quotes\") and the tunnel would never start"
            ),
            quoting,
        ));
    };
    if let Some(word) = parsed.words.iter().find(|w| !w.contains('=')) {
        return Some((
            format!(
                "value {value:?}: {word:?} is not NAME=VALUE; ssh refuses the option \
                 (\"Invalid SetEnv\") and the tunnel would never start"
            ),
            quoting,
        ));
    }
    if let Some(comment) = parsed.comment {
        return Some((
            format!(
                "value {value:?}: ssh would ignore {comment:?}, as a word starting with `#` \
                 begins a comment"
            ),
            quoting,
        ));
    }
    if parsed.words.is_empty() {
        return Some((
            format!("value {value:?} sets no variable"),
            "write NAME=VALUE",
        ));
    }
    let name = |w: &str| w.split('=').next().unwrap_or("").to_string();
    for (i, word) in parsed.words.iter().enumerate() {
        if let Some(first) = parsed.words[..i].iter().find(|w| name(w) == name(word)) {
            return Some((
                format!(
                    "value {value:?} sets `{}` twice: ssh would send only the first, {first:?}",
                    name(word)
                ),
                "keep one of them",
            ));
        }
    }
    None
}

enum OptionVerdict {
    Allowed,
    /// Never allowed: (why, how to get the same effect).
    Refused(String, String),
    /// Only with `allow_insecure_options: true`.
    Insecure(String),
}

/// What `ssh_options` may hold. Refused outright: what tunnelctl or the watchdog set
/// themselves (ssh keeps the first value it sees, so a duplicate would silently lose
/// or win), what has its own key here, and what breaks the tunnel model (a remote
/// command, a tty, forking away from the watchdog, tun devices, gateway ports that
/// bypass `bind:`). Insecure: what weakens or turns off host-key checking, runs local
/// commands or loads code, hands the server our agent, display or Kerberos credentials,
/// or hides the errors the watchdog classifies (`LogLevel QUIET`).
///
/// Longer than most functions here on purpose: it is the policy as one table, one arm
/// per option, so a reviewer reads it in one place.
fn classify_option(key: &str, value: &str) -> OptionVerdict {
    let k = key.to_ascii_lowercase();
    let v = value.trim().to_ascii_lowercase();
    let refused = |why: &str, hint: &str| OptionVerdict::Refused(why.to_string(), hint.to_string());
    match k.as_str() {
        "batchmode" | "exitonforwardfailure" => {
            refused("tunnelctl always sets it to yes", "remove it")
        }
        "serveraliveinterval" => refused(
            "it comes from `keepalive.interval`",
            "set `keepalive: { interval: 15s }`",
        ),
        "serveralivecountmax" => refused(
            "it comes from `keepalive.count`",
            "set `keepalive: { count: 3 }`",
        ),
        "connecttimeout" => refused(
            "it comes from `connect_timeout`",
            "set `connect_timeout: 15s`",
        ),
        "controlmaster" | "controlpath" | "controlpersist" => refused(
            "tunnel-watchdog owns the control socket it probes through",
            "remove it",
        ),
        "stricthostkeychecking" => match v.as_str() {
            "no" | "off" | "accept-new" => OptionVerdict::Insecure(
                "it turns off host-key checking (a man in the middle could read the tunnel)".into(),
            ),
            _ => refused(
                "tunnelctl always sets it to yes",
                "remove it; pin the key with `tunnelctl trust NAME`",
            ),
        },
        "userknownhostsfile" => {
            if v == "/dev/null" || v == "none" {
                OptionVerdict::Insecure(
                    "with no known hosts every server key is accepted or refused blindly".into(),
                )
            } else {
                refused(
                    "it comes from `known_hosts`",
                    "set `known_hosts: /path/to/known_hosts`",
                )
            }
        }
        "proxycommand" => OptionVerdict::Insecure(
            "it runs a local shell command; use `jump:` for a bastion host".into(),
        ),
        "localcommand" => OptionVerdict::Insecure("it runs a local shell command".into()),
        "permitlocalcommand" if v != "no" => {
            OptionVerdict::Insecure("it lets LocalCommand run local shell commands".into())
        }
        "knownhostscommand" => OptionVerdict::Insecure(
            "it runs a local command to decide which host keys to trust".into(),
        ),
        "globalknownhostsfile" => OptionVerdict::Insecure(
            "it trusts host keys from another file besides `known_hosts`".into(),
        ),
        "hostkeyalias" => OptionVerdict::Insecure(
            "it checks the server's key under another name, so a key pinned for another host passes"
                .into(),
        ),
        "verifyhostkeydns" if v != "no" => OptionVerdict::Insecure(
            "it trusts host keys from DNS (SSHFP records), only as safe as the resolver".into(),
        ),
        "gssapidelegatecredentials" if v != "no" => {
            OptionVerdict::Insecure("it hands the server your Kerberos credentials".into())
        }
        "loglevel" if v == "quiet" => OptionVerdict::Insecure(
            "it hides ssh's errors, so the watchdog cannot tell a refused key or host key from a network failure"
                .into(),
        ),
        "pkcs11provider" | "securitykeyprovider" => {
            OptionVerdict::Insecure("it loads a shared library into ssh".into())
        }
        "forwardagent" if v != "no" => {
            OptionVerdict::Insecure("it lets the server use your ssh agent".into())
        }
        "forwardx11" | "forwardx11trusted" if v != "no" => {
            OptionVerdict::Insecure("it lets the server reach your X display".into())
        }
        "certificatefile" | "identityagent" if value.contains("${") => refused(
            "its path contains `${`, which ssh expands from the service's environment (not \
             yours) and cannot escape",
            "write the path out in full",
        ),
        "identityfile" => refused(
            "it comes from `identity`",
            "set `identity: ~/.ssh/id_ed25519`",
        ),
        "port" => refused("it comes from `port`", "set `port: 2222`"),
        "user" => refused("it comes from `user`", "set `user: alice`"),
        "proxyjump" => refused("it comes from `jump`", "set `jump: bastion.example.org`"),
        "hostname" => refused("the tunnel's `host` says where to connect", "set `host:`"),
        "localforward" | "remoteforward" | "dynamicforward" => refused(
            "forwards must be declared in `forwards:` so the watchdog can probe them",
            "add a `forwards:` entry",
        ),
        "clearallforwardings" => refused("it would drop the tunnel's forwards", "remove it"),
        "gatewayports" => refused(
            "it makes local forwards listen on every interface, bypassing `bind:`",
            "set `bind:` on the forward instead",
        ),
        "remotecommand" | "sessiontype" | "requesttty" | "stdinnull" => refused(
            "a tunnel runs no remote command and no terminal (ssh -N -T)",
            "remove it",
        ),
        "forkafterauthentication" => refused(
            "ssh would fork away from tunnel-watchdog, which must stay its parent",
            "remove it",
        ),
        "tunnel" | "tunneldevice" => refused(
            "tun/tap forwarding is not a port forward the watchdog can probe",
            "remove it",
        ),
        "include" | "host" | "match" => refused(
            "config blocks and includes cannot be given on the command line",
            "remove it",
        ),
        _ => OptionVerdict::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::setenv_problem;

    #[test]
    fn setenv_values_are_held_to_what_ssh_takes() {
        for ok in [
            "A=1",
            "A=1 B=2",
            "A=1\tB=2",
            "A=",
            "A=b=c",
            "\"A=a b\"",
            "A=\"a b\" B='c d'",
            "A=a\\ b",
            "A=x#y",
            "A=\"#x\"",
            "=x",
            "1X=a-b",
        ] {
            assert_eq!(setenv_problem(ok), None, "{ok:?}");
        }
        for (bad, why) in [
            ("A", "\"A\" is not NAME=VALUE"),
            ("A=a b", "\"b\" is not NAME=VALUE"),
            ("A=1 \"\"", "\"\" is not NAME=VALUE"),
            ("A B=c", "\"A\" is not NAME=VALUE"),
            ("\"A=1", "not closed"),
            ("A='1", "not closed"),
            ("A=1 #B=2", "ssh would ignore \"#B=2\""),
            ("#A=1", "ssh would ignore \"#A=1\""),
            ("A=1 A=2", "sets `A` twice"),
            ("   ", "sets no variable"),
        ] {
            let (what, _) = setenv_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(what.contains(why), "{bad:?}: {what}");
        }
    }
}
