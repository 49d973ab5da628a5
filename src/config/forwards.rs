//! Forwards (`remote`, `local`, `dynamic`) and the listeners they open: two on one
//! address and port cannot both start.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Cx;
use super::schema::{FORWARD_KEYS, Located, Partial};
use super::values::check_hostname;
use super::yaml::{Key, Loc, Node, Value};
use crate::model::{Endpoint, Forward};

#[derive(Clone, Debug)]
pub(super) struct LocatedForward {
    pub(super) forward: Forward,
    /// The port's location: duplicate binds point here.
    pub(super) at: Loc,
}

/// A `-R` listener as written in a file: the clash check across a fleet's files
/// compares these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteListener {
    pub tunnel: String,
    /// `host:port` of the ssh server, the host lowercased.
    pub server: String,
    /// The bind address on the server (`localhost` when the forward names none).
    pub bind: String,
    pub port: u16,
    /// Where the port is written.
    pub line: usize,
    pub column: usize,
}

impl RemoteListener {
    /// Whether both would listen on one address and port of one server.
    pub fn clashes_with(&self, other: &RemoteListener) -> bool {
        self.server == other.server
            && self.port == other.port
            && binds_overlap(&self.bind, &other.bind)
    }
}

/// A listener already taken: (bind address, tunnel name, where its port is written).
type Listener<'a> = (String, &'a str, Loc);

impl Cx {
    pub(super) fn forwards(
        &mut self,
        key: &Key,
        node: &Node,
    ) -> Option<Located<Vec<LocatedForward>>> {
        let items = match &node.value {
            Value::Seq(items) => items,
            Value::Null => {
                self.error(
                    key.at,
                    "`forwards` is empty",
                    "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
                );
                return None;
            }
            _ => {
                self.error(
                    node.at,
                    format!("`forwards` must be a list, found {}", node.kind()),
                    "write one `- local: PORT` (or remote/dynamic) entry per line",
                );
                return None;
            }
        };
        if items.is_empty() {
            self.error(
                node.at,
                "`forwards` is empty",
                "add at least one `- remote:`, `- local:` or `- dynamic:` entry",
            );
            return None;
        }
        let mut out = Vec::new();
        for item in items {
            if let Some(f) = self.forward(item) {
                out.push(f);
            }
        }
        Some(Located {
            value: out,
            at: node.at,
        })
    }

    fn forward(&mut self, node: &Node) -> Option<LocatedForward> {
        let map = self.map(node, FORWARD_KEYS, "in a forward")?;
        let kinds: Vec<&str> = ["remote", "local", "dynamic"]
            .into_iter()
            .filter(|k| map.contains_key(*k))
            .collect();
        let kind = match kinds.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    node.at,
                    "a forward needs one of `remote:`, `local:` or `dynamic:`",
                    "e.g. `- local: 8080` with `to: intranet:80`",
                );
                return None;
            }
            _ => {
                let (second, _) = map[kinds[1]];
                self.error(
                    second.at,
                    format!("a forward has both `{}` and `{}`", kinds[0], kinds[1]),
                    "write each forward as its own `- ` entry",
                );
                return None;
            }
        };
        let (_, port_node) = map[kind];
        let port = self.port(port_node);
        let bind = match map.get("bind") {
            Some((_, b)) => self.bind(b).map(|v| (v, b.at)),
            None => None,
        };
        let bind_given = map.contains_key("bind");
        let to = match (kind, map.get("to")) {
            ("dynamic", Some((k, _))) => {
                self.error(k.at, "a dynamic forward has no `to:` (it is a SOCKS proxy; the client picks the destination)", "remove `to:`");
                return None;
            }
            ("dynamic", None) => None,
            (_, Some((_, t))) => Some(self.endpoint(t)?),
            (_, None) => {
                self.error(
                    node.at,
                    format!("a {kind} forward needs `to: HOST:PORT`"),
                    "e.g. `to: localhost:22`",
                );
                return None;
            }
        };
        let port = port?;
        if bind_given && bind.is_none() {
            return None;
        }
        let forward = match kind {
            "remote" => {
                if let Some((b, at)) = &bind
                    && !is_loopback(b)
                {
                    self.warn(*at, format!("remote forward {port} binds {b} on the server; anyone who reaches the server there reaches `to`"), "only works if the server's GatewayPorts allows it; remove `bind:` to stay on the server's loopback");
                }
                Forward::Remote {
                    bind: bind.map(|(b, _)| b),
                    port,
                    to: to?,
                }
            }
            "local" | "dynamic" => {
                let bind = match bind {
                    Some((b, at)) => {
                        if !is_loopback(&b) {
                            self.warn(at, format!("{kind} forward {port} listens on {b}, not only on this machine's loopback"), "other hosts on that network can use the tunnel; remove `bind:` to listen on 127.0.0.1");
                        }
                        b
                    }
                    None => "127.0.0.1".to_string(),
                };
                if kind == "local" {
                    Forward::Local {
                        bind,
                        port,
                        to: to?,
                    }
                } else {
                    Forward::Dynamic { bind, port }
                }
            }
            _ => unreachable!(),
        };
        Some(LocatedForward {
            forward,
            at: port_node.at,
        })
    }

    fn bind(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node, "bind")?;
        if !self.no_control(node.at, &text, "`bind`") {
            return None;
        }
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(&text);
        if bare == "*" || bare.parse::<IpAddr>().is_ok() || check_hostname(bare).is_ok() {
            Some(bare.to_string())
        } else {
            self.error(
                node.at,
                format!("`bind` {text:?} is not an address"),
                "write an IP address such as `127.0.0.1`, `::1`, `0.0.0.0`, or `localhost`",
            );
            None
        }
    }

    fn endpoint(&mut self, node: &Node) -> Option<Endpoint> {
        let text = self.string(node, "to")?;
        if !self.no_control(node.at, &text, "`to`") {
            return None;
        }
        let hint = "write `to: HOST:PORT`, e.g. `localhost:22`, `10.0.0.5:80` or `[::1]:22`";
        let parsed = if let Some(rest) = text.strip_prefix('[') {
            rest.split_once("]:")
                .and_then(|(h, p)| h.parse::<Ipv6Addr>().ok().map(|_| (h.to_string(), p)))
        } else {
            text.rsplit_once(':')
                .filter(|(h, _)| !h.contains(':'))
                .map(|(h, p)| (h.to_string(), p))
        };
        let Some((host, port)) = parsed else {
            let extra = if text.matches(':').count() > 1 {
                " (put an IPv6 address in brackets: `[::1]:22`)"
            } else {
                ""
            };
            self.error(
                node.at,
                format!("`to` {text:?} is not HOST:PORT{extra}"),
                hint,
            );
            return None;
        };
        let port = match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => p as u16,
            _ => {
                self.error(
                    node.at,
                    format!("`to` {text:?}: port `{port}` is not a number from 1 to 65535"),
                    hint,
                );
                return None;
            }
        };
        if host.parse::<Ipv6Addr>().is_err()
            && let Err(message) = check_hostname(&host)
        {
            self.error(node.at, format!("`to` {text:?}: host {message}"), hint);
            return None;
        }
        Some(Endpoint { host, port })
    }

    /// Two listeners on one address and port cannot both start: local/dynamic
    /// forwards on this machine (across all tunnels), remote ones per server.
    pub(super) fn check_binds(
        &mut self,
        tunnels: &[(String, Option<String>, Option<u16>, Partial)],
    ) {
        // Indexed by port (and server): only listeners on the same port can collide, so
        // 40,000 tunnels are not compared with each other pairwise. Each list keeps file
        // order, so the first tunnel on a port is the one named.
        let mut local: HashMap<u16, Vec<Listener>> = HashMap::new();
        let mut remote: HashMap<(String, u16), Vec<Listener>> = HashMap::new();
        for (name, host, ssh_port, partial) in tunnels {
            let Some(forwards) = &partial.forwards else {
                continue;
            };
            for lf in &forwards.value {
                match &lf.forward {
                    Forward::Local { bind, port, .. } | Forward::Dynamic { bind, port } => {
                        let taken = local.entry(*port).or_default();
                        if let Some((b, other, at)) =
                            taken.iter().find(|(b, ..)| binds_overlap(b, bind))
                        {
                            self.error(
                                lf.at,
                                format!("port {port} on {bind} is already used by tunnel `{other}` (line {}, bind {b})", at.line),
                                "pick another port, or a different bind address",
                            );
                        } else {
                            taken.push((bind.clone(), name, lf.at));
                        }
                    }
                    Forward::Remote { bind, port, .. } => {
                        let Some(host) = host else { continue };
                        let server =
                            format!("{}:{}", host.to_ascii_lowercase(), ssh_port.unwrap_or(22));
                        let bind = bind.clone().unwrap_or_else(|| "localhost".into());
                        self.remote_listeners.push(RemoteListener {
                            tunnel: name.clone(),
                            server: server.clone(),
                            bind: bind.clone(),
                            port: *port,
                            line: lf.at.line,
                            column: lf.at.column,
                        });
                        let taken = remote.entry((server, *port)).or_default();
                        if let Some((b, other, at)) =
                            taken.iter().find(|(b, ..)| binds_overlap(b, &bind))
                        {
                            self.error(
                                lf.at,
                                format!("remote port {port} on {} is already forwarded by tunnel `{other}` (line {}, bind {b})", host, at.line),
                                "the second ssh would fail with \"remote port forwarding failed\"; pick another port",
                            );
                        } else {
                            taken.push((bind, name, lf.at));
                        }
                    }
                }
            }
        }
    }
}

fn is_loopback(bind: &str) -> bool {
    bind.eq_ignore_ascii_case("localhost")
        || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_wildcard(bind: &str) -> bool {
    bind == "*" || bind.is_empty() || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether two listeners on the same port would collide.
fn binds_overlap(a: &str, b: &str) -> bool {
    if is_wildcard(a) || is_wildcard(b) {
        return true;
    }
    let canon = |s: &str| -> Vec<String> {
        if s.eq_ignore_ascii_case("localhost") {
            vec![
                Ipv4Addr::LOCALHOST.to_string(),
                Ipv6Addr::LOCALHOST.to_string(),
            ]
        } else {
            vec![
                s.parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|_| s.to_ascii_lowercase()),
            ]
        }
    };
    let (a, b) = (canon(a), canon(b));
    a.iter().any(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{errors, load};
    use super::*;

    #[test]
    fn to_parses_ipv6_and_refuses_bare() {
        let c = load("tunnels:\n  a:\n    host: h\n    forwards: [{local: 1, to: '[::1]:22'}]\n")
            .unwrap();
        assert_eq!(
            c.tunnels[0].forwards[0],
            Forward::Local {
                bind: "127.0.0.1".into(),
                port: 1,
                to: Endpoint {
                    host: "::1".into(),
                    port: 22
                }
            }
        );
        let e = errors("tunnels:\n  a:\n    host: h\n    forwards: [{local: 1, to: '::1:22'}]\n");
        assert!(e[0].2.contains("brackets"), "{e:?}");
    }

    #[test]
    fn bind_overlap_rules() {
        assert!(binds_overlap("127.0.0.1", "localhost"));
        assert!(binds_overlap("0.0.0.0", "127.0.0.2"));
        assert!(!binds_overlap("127.0.0.1", "127.0.0.2"));
        assert!(binds_overlap("::1", "[::1]".trim_matches(['[', ']'])));
    }
}
