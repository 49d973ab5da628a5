//! `tunnelctl doctor` against a real sshd: a working tunnel passes, and each first-run
//! failure gets its own verdict and fix.

use crate::common;
use crate::firstrun_support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::child::KillOnDrop;
use common::sshd::{Sshd, SshdOptions};
use common::watchdog_cmd::remote_forward_ssh_args;
use firstrun_support::*;

fn forwards(remote: u16, local: u16, sshd: &Sshd) -> String {
    format!(
        "      - remote: {remote}\n        to: localhost:{p}\n      - local: {local}\n        to: localhost:{p}\n",
        p = sshd.port()
    )
}

fn doctor(s: &Setup, name: &str) -> (Option<i32>, String) {
    let out = tunnelctl(&s.config, &["doctor", name, "--timeout", "10s"]);
    (out.status.code(), text(&out))
}

#[test]
fn doctor_passes_a_working_tunnel() {
    let Some(sshd) = Sshd::start_default("doctor_passes_a_working_tunnel") else {
        return;
    };
    let s = setup(
        &sshd,
        "ok",
        &sshd.client_key(),
        &pinned_line(&sshd),
        &forwards(free_port(), free_port(), &sshd),
    );
    let (code, out) = doctor(&s, "ok");
    assert_eq!(code, Some(0), "{out}");
    for expected in [
        "ok    ssh ",
        "OpenSSH_",
        "mode 0600",
        "is pinned in",
        "host key matches the pinned one",
        "logged in as root with publickey",
        "the server listens on its port",
        "a test connection got an answer through the tunnel",
        "ClientAliveInterval",
        "the tunnel works",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
}

#[test]
fn doctor_says_the_host_key_is_not_pinned() {
    let Some(sshd) = Sshd::start_default("doctor_says_the_host_key_is_not_pinned") else {
        return;
    };
    let s = setup(
        &sshd,
        "unpinned",
        &sshd.client_key(),
        "",
        &forwards(free_port(), free_port(), &sshd),
    );
    let (code, out) = doctor(&s, "unpinned");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("host key not pinned") && out.contains("run `tunnelctl trust unpinned`"),
        "{out}"
    );
    assert!(!out.contains("logged in"), "{out}");
}

#[test]
fn doctor_says_the_host_key_changed() {
    let Some(sshd) = Sshd::start_default("doctor_says_the_host_key_changed") else {
        return;
    };
    let impostor = new_key(sshd.dir(), "impostor");
    let blob: Vec<String> = std::fs::read_to_string(impostor.with_extension("pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    let kh = format!("[127.0.0.1]:{} {}\n", sshd.port(), blob.join(" "));
    let s = setup(
        &sshd,
        "changed",
        &sshd.client_key(),
        &kh,
        &forwards(free_port(), free_port(), &sshd),
    );
    let (code, out) = doctor(&s, "changed");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT the pinned one"), "{out}");
    assert!(
        !out.contains("host key not pinned"),
        "a changed key is not an unknown one: {out}"
    );
}

#[test]
fn doctor_explains_a_key_with_wrong_permissions() {
    let Some(sshd) = Sshd::start_default("doctor_explains_a_key_with_wrong_permissions") else {
        return;
    };
    let key = sshd.dir().join("loose_key");
    std::fs::copy(sshd.client_key(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = setup(
        &sshd,
        "loose",
        &key,
        &pinned_line(&sshd),
        &forwards(free_port(), free_port(), &sshd),
    );
    // The config loader refuses such a key before anything runs, and says how to fix it.
    let (code, out) = doctor(&s, "loose");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("accessible by group or others") && out.contains("chmod 600"),
        "{out}"
    );
    // doctor's own check says the same when handed the key directly.
    let check = tunnelctl::doctor::check_identity(Some(&key), None);
    assert_eq!(check.verdict, tunnelctl::doctor::Verdict::Fail);
    assert!(
        check.detail.contains("0644")
            && check.fix.as_deref() == Some(&*format!("chmod 600 {}", key.display())),
        "{check:?}"
    );
}

#[test]
fn doctor_says_the_login_was_refused() {
    let Some(sshd) = Sshd::start_default("doctor_says_the_login_was_refused") else {
        return;
    };
    let stranger = new_key(sshd.dir(), "stranger");
    let s = setup(
        &sshd,
        "refused",
        &stranger,
        &pinned_line(&sshd),
        &forwards(free_port(), free_port(), &sshd),
    );
    let (code, out) = doctor(&s, "refused");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the server refused to log in root") && out.contains("authorized_keys"),
        "{out}"
    );
    assert!(
        out.contains("stranger.pub"),
        "the fix names the public key to install: {out}"
    );
}

#[test]
fn doctor_says_the_remote_port_is_taken() {
    let Some(sshd) = Sshd::start_default("doctor_says_the_remote_port_is_taken") else {
        return;
    };
    let port = free_port();
    // Another session holds the remote port, as a dead session of the tunnel would.
    let holder = KillOnDrop(
        Command::new("ssh")
            .args(remote_forward_ssh_args(
                &sshd,
                &format!("{port}:localhost:{}", sshd.port()),
            ))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let holder_pid = holder.0.id();
    assert!(
        common::wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the holder session (pid {holder_pid}) never took port {port}"
    );
    let s = setup(
        &sshd,
        "taken",
        &sshd.client_key(),
        &pinned_line(&sshd),
        &forwards(port, free_port(), &sshd),
    );
    let (code, out) = doctor(&s, "taken");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "remote port {port} is already taken on the server"
        )),
        "{out}"
    );
    assert!(out.contains("ClientAliveInterval 15"), "{out}");
}

#[test]
fn doctor_says_the_server_refuses_forwarding() {
    // The fixture's config says `AllowTcpForwarding yes` and sshd keeps an option's first
    // value, so the refusal goes in a Match block, which overrides it.
    let options = SshdOptions {
        extra_config: vec!["Match User root".into(), "  AllowTcpForwarding no".into()],
        ..SshdOptions::default()
    };
    let Some(sshd) = Sshd::start_with("doctor_says_the_server_refuses_forwarding", options) else {
        return;
    };
    let remote = setup(
        &sshd,
        "noremote",
        &sshd.client_key(),
        &pinned_line(&sshd),
        &format!(
            "      - remote: {}\n        to: localhost:22\n",
            free_port()
        ),
    );
    let (code, out) = doctor(&remote, "noremote");
    assert_eq!(code, Some(1), "{out}");
    if out.contains("the server listens on its port") {
        panic!("the fixture sshd did not apply AllowTcpForwarding no: {out}");
    }
    assert!(
        out.contains("the server refuses port forwarding for this login"),
        "{out}"
    );
    assert!(out.contains("AllowTcpForwarding yes"), "{out}");

    let local = setup(
        &sshd,
        "nolocal",
        &sshd.client_key(),
        &pinned_line(&sshd),
        &format!(
            "      - local: {}\n        to: localhost:{}\n",
            free_port(),
            sshd.port()
        ),
    );
    let (code, out) = doctor(&local, "nolocal");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the server refuses to open the connection")
            && out.contains("administratively prohibited"),
        "{out}"
    );
}

#[test]
fn doctor_says_when_nothing_listens() {
    let Some(sshd) = Sshd::start_default("doctor_says_when_nothing_listens") else {
        return;
    };
    let s = setup(
        &sshd,
        "nothing",
        &sshd.client_key(),
        "",
        &forwards(free_port(), free_port(), &sshd),
    );
    let yaml = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("port: {}", sshd.port()),
        &format!("port: {}", free_port()),
    );
    std::fs::write(&s.config, yaml).unwrap();
    let (code, out) = doctor(&s, "nothing");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot reach 127.0.0.1 port") && out.contains("Connection refused"),
        "{out}"
    );
}
