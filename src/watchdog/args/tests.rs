//! The watchdog command line's own tests: the option table, `--args-file`, usage errors
//! and the forwards read from the ssh arguments.

use super::*;

#[test]
fn a_held_remote_forward_is_taken_out_of_the_ssh_arguments() {
    let argv = |a: &str| a.split(' ').map(str::to_string).collect::<Vec<_>>();
    let ssh = argv("ssh -p 2222 -R 3001:127.0.0.1:22 -L 8080:web:80 -R4000:h:1 -N -- host");
    let (rest, forward) = without_remote_forward(&ssh, 3001).unwrap();
    assert_eq!(
        rest,
        argv("ssh -p 2222 -L 8080:web:80 -R4000:h:1 -N -- host")
    );
    assert_eq!(forward.describe(), "-R 3001:127.0.0.1:22");
    let (rest, _) = without_remote_forward(&ssh, 4000).unwrap();
    assert_eq!(
        rest,
        argv("ssh -p 2222 -R 3001:127.0.0.1:22 -L 8080:web:80 -N -- host")
    );
    // The value of -p is not a flag, the host ends the options, SOCKS -R stays.
    assert!(without_remote_forward(&ssh, 2222).is_none());
    assert!(without_remote_forward(&argv("ssh -NR 3001:h:1 host"), 3001).is_none());
    assert!(without_remote_forward(&argv("ssh -R 3001 host"), 3001).is_none());
    assert!(without_remote_forward(&argv("ssh host -R 3001:h:1"), 3001).is_none());
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
fn no_file(_: &str) -> Result<String, String> {
    Err("no files in this test".into())
}
fn run(v: &[&str]) -> Options {
    match parse(&s(v), &no_file).unwrap() {
        Parsed::Run(o) => *o,
        other => panic!("{other:?}"),
    }
}

/// The table is what the parser accepts and what `--help` shows, with the defaults
/// the parser applies.
#[test]
fn the_option_table_drives_parser_and_help() {
    let help = usage();
    for o in OPTIONS.iter().filter(|o| o.long != "args-file") {
        let sample = match (o.long, o.value) {
            ("readiness", _) => "none",
            ("procd-watchdog", _) => "30s",
            (_, "DUR") => "7s",
            (_, "N") => "3",
            _ => "/x",
        };
        let arg = format!("--{}={sample}", o.long);
        // The procd options go together.
        let with = match o.long {
            "procd-watchdog" | "ubus-socket" => {
                vec!["--readiness=procd:t/i", "--procd-watchdog=30s"]
            }
            _ => vec![],
        };
        let mut argv = with;
        argv.extend([arg.as_str(), "--", "ssh", "h"]);
        assert!(
            parse(&s(&argv), &no_file).is_ok(),
            "{arg} is in the table but the parser refuses it"
        );
        assert!(
            help.contains(&format!("--{} {}", o.long, o.value)),
            "{}",
            o.long
        );
    }
    assert!(parse(&s(&["--bogus=1", "--", "ssh", "h"]), &no_file).is_err());
    let o = run(&["--", "ssh", "h"]);
    let defaults = |long: &str| (OPTIONS.iter().find(|o| o.long == long).unwrap().default)();
    assert_eq!(
        format_duration(o.probe_interval),
        defaults("probe-interval")
    );
    assert_eq!(format_duration(o.probe_timeout), defaults("probe-timeout"));
    assert_eq!(o.probe_failures.to_string(), defaults("probe-failures"));
    assert_eq!(
        format_duration(o.backoff_initial),
        defaults("backoff-initial")
    );
    assert_eq!(format_duration(o.backoff_max), defaults("backoff-max"));
    assert!(
        help.contains("(default 10s)") && help.contains("(default 5m)"),
        "{help}"
    );
    // backoff.rs: a tunnel counts as proven after max(interval, initial).
    assert!(
        help.contains("max(probe interval, backoff initial)"),
        "{help}"
    );
}

#[test]
fn by_hand_like_autossh() {
    let o = run(&[
        "--probe-interval",
        "1s",
        "--probe-failures=3",
        "--",
        "ssh",
        "-N",
        "-R",
        "1234:localhost:22",
        "host",
    ]);
    assert_eq!(o.probe_interval, Duration::from_secs(1));
    assert_eq!(o.probe_failures, 3);
    assert_eq!(o.name, "host");
    assert_eq!(o.ssh, s(&["ssh", "-N", "-R", "1234:localhost:22", "host"]));
    assert_eq!(
        o.forwards,
        vec![SshForward::Remote {
            bind: None,
            port: 1234,
            host: "localhost".into(),
            host_port: 22
        }]
    );
}

#[test]
fn reads_every_forward_form() {
    let (f, host) = scan_ssh_args(&s(&[
        "-NT",
        "-p2222",
        "-oBatchMode=yes",
        "-L8080:web:80",
        "-L",
        "[::1]:8081:db:5432",
        "-R",
        "*:9000:127.0.0.1:9001",
        "-R9100",
        "-D",
        "1080",
        "-L",
        "/tmp/s:/tmp/t",
        "-R",
        "0:localhost:22",
        "-i",
        "/k",
        "user@example",
        "-L",
        "1:2:3",
    ]))
    .unwrap();
    assert_eq!(host.as_deref(), Some("user@example"));
    // The -L after the host is ssh's too (it reads options after the host, as
    // `ssh -G user@example -L 1:2:3` shows), up to the remote command or `--`.
    assert_eq!(f.len(), 8, "{f:?}");
    for args in [
        &["h", "cmd", "-L", "1:2:3"][..],
        &["h", "--", "-L", "1:2:3"],
    ] {
        let (f, host) = scan_ssh_args(&s(args)).unwrap();
        assert!(f.is_empty(), "{args:?}: {f:?}");
        assert_eq!(host.as_deref(), Some("h"));
    }
    assert_eq!(
        f[0],
        SshForward::Local {
            bind: "localhost".into(),
            port: 8080,
            host: "web".into(),
            host_port: 80
        }
    );
    assert_eq!(
        f[1],
        SshForward::Local {
            bind: "::1".into(),
            port: 8081,
            host: "db".into(),
            host_port: 5432
        }
    );
    assert_eq!(
        f[2],
        SshForward::Remote {
            bind: Some("*".into()),
            port: 9000,
            host: "127.0.0.1".into(),
            host_port: 9001
        }
    );
    assert_eq!(
        f[3],
        SshForward::RemoteDynamic {
            bind: None,
            port: 9100
        }
    );
    assert_eq!(
        f[4],
        SshForward::Dynamic {
            bind: "localhost".into(),
            port: 1080
        }
    );
    assert!(matches!(f[5], SshForward::Unprobed { flag: 'L', .. }));
    assert!(matches!(f[6], SshForward::Unprobed { flag: 'R', .. }));
    assert!(
        scan_ssh_args(&s(&["-L", "nonsense", "h"]))
            .unwrap_err()
            .contains("nonsense")
    );
}

#[test]
fn args_file_and_usage_errors() {
    let file = |_: &str| {
        Ok(
            "# rendered by tunnelctl\n# two comments\n--name\nmy tunnel\n--\nssh\n-N\nhost\n"
                .to_string(),
        )
    };
    match parse(&s(&["--args-file", "/etc/x.args"]), &file).unwrap() {
        Parsed::Run(o) => {
            assert_eq!(o.name, "my tunnel");
            assert_eq!(o.ssh, s(&["ssh", "-N", "host"]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(parse(&s(&["--help"]), &no_file).unwrap(), Parsed::Help);
    assert_eq!(
        parse(&s(&["--version"]), &no_file).unwrap(),
        Parsed::Version
    );
    for (bad, says) in [
        (&["--probe-interval", "10", "--", "ssh", "h"][..], "10s"),
        (
            &["--frobnicate", "1", "--", "ssh", "h"][..],
            "unknown option",
        ),
        (&["--name", "x"][..], "no ssh command"),
        (&["ssh", "h"][..], "after `--`"),
        (
            &["--probe-failures", "0", "--", "ssh", "h"][..],
            "from 1 to 1000",
        ),
        (
            &["--probe-failures", "1001", "--", "ssh", "h"][..],
            "from 1 to 1000",
        ),
        (
            &["--probe-interval", "5124095576030h", "--", "ssh", "h"][..],
            "longer than 2147483s",
        ),
        (
            &["--args-file", "f", "--name", "x"][..],
            "no other arguments",
        ),
    ] {
        let err = parse(&s(bad), &no_file).unwrap_err();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

#[test]
fn readiness_options_parse_and_go_together() {
    let o = run(&["--", "ssh", "h"]);
    assert_eq!(o.readiness, crate::watchdog::readiness::Spec::SdNotify);
    let o = run(&["--readiness", "s6-fd:3", "--", "ssh", "h"]);
    assert_eq!(o.readiness, crate::watchdog::readiness::Spec::S6Fd(3));
    let o = run(&[
        "--readiness",
        "procd:tunnel-a/main",
        "--procd-watchdog",
        "30s",
        "--ubus-socket",
        "/tmp/u.sock",
        "--",
        "ssh",
        "h",
    ]);
    assert_eq!(o.procd_watchdog, Some(std::time::Duration::from_secs(30)));
    assert_eq!(
        o.ubus_socket.as_deref(),
        Some(std::path::Path::new("/tmp/u.sock"))
    );
    for (argv, words) in [
        (&["--readiness", "procd:a/b"][..], "needs --procd-watchdog"),
        (&["--readiness", "procd:ab"][..], "one `/`"),
        (&["--readiness", "s6-fd:1"][..], "stdin, stdout or stderr"),
        (
            &["--procd-watchdog", "30s"][..],
            "only with --readiness procd",
        ),
        (&["--ubus-socket", "/x"][..], "only with --readiness procd"),
        (&["--readiness", "upstart"][..], "unknown protocol"),
    ] {
        let mut all: Vec<&str> = argv.to_vec();
        all.extend(["--", "ssh", "h"]);
        let e = parse(&s(&all), &no_file).unwrap_err();
        assert!(e.contains(words), "{argv:?}: {e}");
    }
}
