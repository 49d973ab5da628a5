//! Exact paths for ssh: a tunnel named with `%` and state directories with a space run
//! under the real watchdog against a real sshd and carry data through `-L` and `-R`,
//! started by hand and as the systemd-user unit tunnelctl renders (a real
//! `systemd --user`). ssh expands `%` tokens in ControlPath, IdentityFile and
//! UserKnownHostsFile and splits `-o` values at whitespace; before the fix a `%` name
//! never came up ("unix_listener: cannot bind to path") and a space in the state
//! directory made ssh exit 255 ("extra arguments at end of line").

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::prereq::{Prereq, require};
use common::sshd::Sshd;
use common::tunnel_env::{EchoServer, WATCHDOG, free_port, wait_roundtrip};
use common::user_unit::UserUnitRig;
use common::wait_until;
use tunnelctl::model::{Endpoint, Forward, Tunnel};

/// A watchdog started by hand; SIGTERM on drop, SIGKILL if it does not stop.
struct Watchdog {
    child: Child,
    log: PathBuf,
}

impl Watchdog {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The tunnel as tunnelctl's model holds it: `-L lport` and `-R rport`, both to the echo
/// server, over root@127.0.0.1 with the given key and known_hosts files.
fn tunnel(name: &str, sshd: &Sshd, identity: &Path, known_hosts: &Path, fw: Ports) -> Tunnel {
    let to = Endpoint {
        host: "127.0.0.1".into(),
        port: fw.echo,
    };
    let mut t = Tunnel::new(
        name,
        "127.0.0.1",
        vec![
            Forward::Local {
                bind: "127.0.0.1".into(),
                port: fw.local,
                to: to.clone(),
            },
            Forward::Remote {
                bind: Some("127.0.0.1".into()),
                port: fw.remote,
                to,
            },
        ],
    );
    t.port = Some(sshd.port());
    t.user = Some("root".into());
    t.identity = Some(identity.to_path_buf());
    t.known_hosts = Some(known_hosts.to_path_buf());
    t.keepalive.interval = Duration::from_secs(2);
    t.keepalive.count = 2;
    t.connect_timeout = Duration::from_secs(5);
    t
}

#[derive(Clone, Copy)]
struct Ports {
    local: u16,
    remote: u16,
    echo: u16,
}

impl Ports {
    fn new(echo: &EchoServer) -> Ports {
        Ports {
            local: free_port(),
            remote: free_port(),
            echo: echo.port(),
        }
    }
}

/// Copies a file into `dir` (created) under `name`, keeping it private (ssh refuses a
/// key others can read).
fn copy_private(from: &Path, dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join(name);
    std::fs::copy(from, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    to
}

fn start_by_hand(name: &str, state_dir: &Path, log: PathBuf, ssh: &[String]) -> Watchdog {
    let child = Command::new(WATCHDOG)
        .args([
            "--name",
            name,
            "--probe-interval",
            "1s",
            "--probe-timeout",
            "1s",
        ])
        .args([
            "--backoff-initial",
            "1s",
            "--backoff-max",
            "4s",
            "--state-dir",
        ])
        .arg(state_dir)
        .arg("--log-file")
        .arg(&log)
        .arg("--")
        .args(ssh)
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .spawn()
        .expect("run tunnel-watchdog");
    Watchdog { child, log }
}

/// The one ssh whose argv holds our ControlPath option, and that option.
fn ssh_with_control_path(ctl: &Path) -> (Vec<i32>, String) {
    let needle = tunnelctl::watchdog::process::control_path_option(ctl);
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| tunnelctl::procinfo::argv(p).is_some_and(|a| a.contains(&needle)))
        .map(|p| p as i32)
        .collect();
    (pids, needle)
}

/// Both forwards carry data, ssh runs with the exact ControlPath and its socket is at
/// that very path (the watchdog's probes connect there, so READY depends on it).
fn assert_carries_data(what: &str, ports: Ports, ctl: &Path, log: &dyn Fn() -> String) {
    let started = Instant::now();
    for port in [ports.local, ports.remote] {
        wait_roundtrip(port, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{what}: port {port} carries no data: {e}\n{}", log()));
    }
    eprintln!("{what}: -L and -R carry data after {:?}", started.elapsed());
    let (pids, needle) = ssh_with_control_path(ctl);
    assert_eq!(pids.len(), 1, "{what}: one ssh with {needle}: {pids:?}");
    assert!(
        ctl.exists(),
        "{what}: no control socket at {}\n{}",
        ctl.display(),
        log()
    );
}

#[test]
fn percent_names_and_spaced_state_dirs_carry_data_when_started_by_hand() {
    let test = "percent_names_and_spaced_state_dirs_carry_data_when_started_by_hand";
    if !require(test, &[Prereq::Root, Prereq::Sshd]) {
        return;
    }
    let Some(sshd) = Sshd::start_default(test) else {
        return;
    };
    let echo = EchoServer::start();
    let tmp = common::temp_dir("exactpaths");
    // The key and known_hosts too, in paths with `%` tokens and spaces: the renderer's
    // IdentityFile and UserKnownHostsFile must reach ssh exactly.
    let key = copy_private(&sshd.client_key(), &tmp.path().join("keys %h %%"), "id %d");
    let known_hosts = copy_private(&sshd.known_hosts(), &tmp.path().join("known hosts"), "kh%r");
    let cases = [
        ("a%db", tmp.path().join("a%db")),
        ("spaced", tmp.path().join("state dir/spaced")),
    ];
    let mut running = Vec::new();
    for (name, state_dir) in &cases {
        let ports = Ports::new(&echo);
        let t = tunnel(name, &sshd, &key, &known_hosts, ports);
        let ssh = tunnelctl::ssh_command::ssh_argv(&t, &Default::default());
        assert!(
            ssh.iter().any(|a| a.starts_with("IdentityFile=\"")),
            "a key path with % goes as a quoted IdentityFile: {ssh:?}"
        );
        let log = tmp.path().join(format!("{}.log", name.replace('%', "pct")));
        running.push((start_by_hand(name, state_dir, log, &ssh), ports, state_dir));
    }
    for (wd, ports, state_dir) in &running {
        let what = format!("by hand, state dir {}", state_dir.display());
        assert_carries_data(&what, *ports, &state_dir.join("ctl"), &|| wd.log());
        // Its own probes, through the control socket at that path, prove both forwards.
        assert!(
            wait_until(Duration::from_secs(10), || wd
                .log()
                .contains("up: 2 forward(s) proven end to end")),
            "{what}: the watchdog never proved its forwards:\n{}",
            wd.log()
        );
    }
}

#[test]
fn percent_name_in_a_spaced_home_carries_data_as_a_systemd_user_unit() {
    // HOME with a space: the unit's StateDirectory= (252: under ~/.config) has one too,
    // and the tunnel's name adds a `%`.
    let test = "percent_name_in_a_spaced_home_carries_data_as_a_systemd_user_unit";
    let Some(rig) = UserUnitRig::start(test, "user mgr ") else {
        return;
    };
    let manager = &rig.manager;
    let ports = Ports::new(&rig.echo);
    let name = "a%db";
    let unit = "tunnel-a\\x25db.service";
    let config = write_two_forward_config(&rig, name, ports);
    // Type=notify: `start` returns once the watchdog proved both forwards (READY=1).
    rig.install_and_start(&config, name, unit);
    let props = manager.show(unit, &["ActiveState", "SubState", "NRestarts"]);
    assert_eq!(
        (props["ActiveState"].as_str(), props["NRestarts"].as_str()),
        ("active", "0"),
        "{props:?}\n{}",
        manager.log()
    );
    // systemd 252 puts a user unit's StateDirectory= under $XDG_CONFIG_HOME; newer ones
    // under $XDG_STATE_HOME.
    let state_dir = [".config", ".local/state"]
        .iter()
        .map(|base| manager.home().join(base).join("tunnelctl").join(name))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no state directory for {name}\n{}", manager.log()));
    let spaced = state_dir.to_str().unwrap();
    assert!(spaced.contains(' ') && spaced.contains('%'), "{spaced}");
    assert_carries_data(
        &format!("systemd-user, state dir {spaced}"),
        ports,
        &state_dir.join("ctl"),
        &|| manager.log(),
    );
    manager.systemctl_ok(&["stop", unit]);
    let (left, _) = ssh_with_control_path(&state_dir.join("ctl"));
    assert!(
        wait_until(Duration::from_secs(15), || ssh_with_control_path(
            &state_dir.join("ctl")
        )
        .0
        .is_empty()),
        "stop left ssh running: {left:?}"
    );
}

/// `HOME/tunnels.yaml` with one tunnel `name`: `-L` and `-R` of `ports` over the rig's
/// sshd, with a copy of the client key under `HOME/my keys`.
fn write_two_forward_config(rig: &UserUnitRig, name: &str, ports: Ports) -> PathBuf {
    let (sshd, manager) = (&rig.sshd, &rig.manager);
    let key = copy_private(&sshd.client_key(), &manager.home().join("my keys"), "id");
    let config = manager.home().join("tunnels.yaml");
    std::fs::write(
        &config,
        format!(
            "tunnels:\n  \"{name}\":\n    host: 127.0.0.1\n    port: {port}\n    user: root\n    identity: \"{key}\"\n    known_hosts: {kh}\n    keepalive: {{ interval: 2s, count: 2 }}\n    probe: {{ interval: 1s, timeout: 1s, failures: 2 }}\n    backoff: {{ initial: 1s, max: 4s }}\n    connect_timeout: 5s\n    forwards:\n      - local: {lport}\n        to: 127.0.0.1:{echo}\n      - remote: {rport}\n        to: 127.0.0.1:{echo}\n",
            port = sshd.port(),
            key = key.display(),
            kh = sshd.known_hosts().display(),
            lport = ports.local,
            rport = ports.remote,
            echo = ports.echo,
        ),
    )
    .unwrap();
    config
}
