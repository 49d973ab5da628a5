//! The one reader of `ssh -G` output (ssh's resolved configuration for a command line,
//! one `keyword value` a line, keywords lower-case): `trust` and `doctor` read the host
//! key names and files from it (`known_hosts`), the watchdog the address its greeting
//! check connects to (`watchdog::reachability`). Pure, and free of config/render, so the
//! watchdog can use it.

/// The keywords of `ssh -G` that tunnelctl reads, as ssh printed them (`~` unexpanded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshG<'a> {
    pub hostname: Option<&'a str>,
    /// `None` when missing or not a port number.
    pub port: Option<u16>,
    pub user: Option<&'a str>,
    /// `hostkeyalias`, unless `none`.
    pub host_key_alias: Option<&'a str>,
    pub user_known_hosts: Vec<&'a str>,
    pub global_known_hosts: Vec<&'a str>,
    /// `proxyjump`, unless `none`.
    pub proxy_jump: Option<&'a str>,
    /// `proxycommand`, unless `none`.
    pub proxy_command: Option<&'a str>,
    /// Every `identityfile` line, in order.
    pub identity_files: Vec<&'a str>,
    /// `inet`, `inet6` or `any`.
    pub address_family: Option<&'a str>,
    pub bind_address: Option<&'a str>,
    pub bind_interface: Option<&'a str>,
}

/// Parses `ssh -G` output; unknown keywords and malformed lines are skipped.
pub fn parse_ssh_g(text: &str) -> SshG<'_> {
    let mut g = SshG::default();
    let unless_none = |v| (v != "none").then_some(v);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        match key {
            "hostname" => g.hostname = Some(value),
            "port" => g.port = value.parse().ok(),
            "user" => g.user = Some(value),
            "hostkeyalias" => g.host_key_alias = unless_none(value),
            "userknownhostsfile" => g.user_known_hosts = value.split_whitespace().collect(),
            "globalknownhostsfile" => g.global_known_hosts = value.split_whitespace().collect(),
            "proxyjump" => g.proxy_jump = unless_none(value),
            "proxycommand" => g.proxy_command = unless_none(value),
            "identityfile" => g.identity_files.push(value),
            "addressfamily" => g.address_family = Some(value),
            "bindaddress" => g.bind_address = Some(value),
            "bindinterface" => g.bind_interface = Some(value),
            _ => {}
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_keywords_and_skips_none() {
        let g = parse_ssh_g(
            "user bob\nhostname example.org\nport 2222\naddressfamily inet6\n\
             hostkeyalias none\nproxyjump none\nproxycommand nc %h %p\n\
             identityfile ~/.ssh/id_ed25519\nidentityfile /etc/k\n\
             userknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\nnonsense\n",
        );
        assert_eq!(g.hostname, Some("example.org"));
        assert_eq!(g.port, Some(2222));
        assert_eq!(g.user, Some("bob"));
        assert_eq!(g.host_key_alias, None);
        assert_eq!(g.proxy_jump, None);
        assert_eq!(g.proxy_command, Some("nc %h %p"));
        assert_eq!(g.identity_files, ["~/.ssh/id_ed25519", "/etc/k"]);
        assert_eq!(
            g.user_known_hosts,
            ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]
        );
        assert_eq!(g.address_family, Some("inet6"));
        assert_eq!(parse_ssh_g("port x\n").port, None);
    }
}
