//! `tunnelctl trust` against a real sshd: pins an unknown key, recognises it the second
//! time, refuses when a different key is pinned, and pins nothing without a yes.

use crate::common;
use crate::firstrun_support;

use common::sshd::Sshd;
use firstrun_support::*;

const FORWARDS: &str = "      - remote: 40001\n        to: localhost:22\n";

#[test]
fn trust_pins_an_unknown_key_then_says_already_trusted() {
    let Some(sshd) = Sshd::start_default("trust_pins_an_unknown_key_then_says_already_trusted")
    else {
        return;
    };
    let s = setup(&sshd, "t1", &sshd.client_key(), "", FORWARDS);
    let out = tunnelctl(&s.config, &["trust", "t1", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SHA256:") && stdout.contains("(ED25519)"),
        "{}",
        text(&out)
    );
    let pinned = std::fs::read_to_string(&s.known_hosts).unwrap();
    assert_eq!(
        pinned.trim(),
        pinned_line(&sshd),
        "the pinned line must be the server's real key"
    );

    let again = tunnelctl(&s.config, &["trust", "t1", "--yes"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already trusted"),
        "{}",
        text(&again)
    );
    assert_eq!(
        std::fs::read_to_string(&s.known_hosts).unwrap(),
        pinned,
        "nothing appended twice"
    );

    // The pinned key really works for ssh: doctor passes its host-key checks.
    let doctor = tunnelctl(&s.config, &["doctor", "t1", "--timeout", "10s"]);
    assert!(
        text(&doctor).contains("host key matches the pinned one"),
        "{}",
        text(&doctor)
    );
}

#[test]
fn trust_refuses_when_a_different_key_is_pinned() {
    let Some(sshd) = Sshd::start_default("trust_refuses_when_a_different_key_is_pinned") else {
        return;
    };
    let other = new_key(sshd.dir(), "impostor");
    let impostor_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let blob: Vec<&str> = impostor_pub.split_whitespace().take(2).collect();
    let before = format!("[127.0.0.1]:{} {}\n", sshd.port(), blob.join(" "));
    let s = setup(&sshd, "t2", &sshd.client_key(), &before, FORWARDS);
    let out = tunnelctl(&s.config, &["trust", "t2", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing") && err.contains("DIFFERENT key"),
        "{}",
        text(&out)
    );
    assert!(
        err.contains("ssh-keygen -f") && err.contains("-R '[127.0.0.1]:"),
        "the fix is named: {}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&s.known_hosts).unwrap(),
        before,
        "known_hosts untouched"
    );
}

#[test]
fn trust_without_yes_and_without_a_terminal_pins_nothing() {
    let Some(sshd) = Sshd::start_default("trust_without_yes_and_without_a_terminal_pins_nothing")
    else {
        return;
    };
    let s = setup(&sshd, "t3", &sshd.client_key(), "", FORWARDS);
    let out = tunnelctl(&s.config, &["trust", "t3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SHA256:"),
        "fingerprint still shown: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("re-run with --yes"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&s.known_hosts).unwrap(), "");
}

#[test]
fn trust_says_when_no_server_answers() {
    let Some(sshd) = Sshd::start_default("trust_says_when_no_server_answers") else {
        return;
    };
    let s = setup(&sshd, "t4", &sshd.client_key(), "", FORWARDS);
    let port = free_port();
    let yaml = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(&format!("port: {}", sshd.port()), &format!("port: {port}"));
    std::fs::write(&s.config, yaml).unwrap();
    let out = tunnelctl(&s.config, &["trust", "t4", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no host key received"),
        "{}",
        text(&out)
    );
}
