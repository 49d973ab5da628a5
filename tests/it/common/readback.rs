//! Reading rendered files back as their consumers do, for the golden and hostile-value
//! tests: `systemd-analyze verify` on a unit, a plist's ProgramArguments through the
//! `plist` crate and through Python's plistlib, init's rules for an inittab process
//! field, the arguments an args file holds, the words a run script execs, and what the
//! real ssh reads from an argv (`ssh -G`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::commands::stdout_of_success;

use tunnelctl::model::Tunnel;
use tunnelctl::targets as render;
use tunnelctl::targets::Target;

/// `systemd-analyze verify --man=no UNIT`: whether it passed, and what it printed on stderr.
pub fn systemd_verify(unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// ProgramArguments of a plist the `plist` crate parsed.
pub fn plist_program_arguments(dict: &plist::Dictionary) -> Vec<String> {
    dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap().to_string())
        .collect()
}

/// ProgramArguments of the plist file as Python's plistlib reads it.
pub fn python_program_arguments(plist: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            // NUL-separated UTF-8: exact for any string a plist can hold here.
            "import plistlib,sys; a=plistlib.load(open(sys.argv[1],'rb'))['ProgramArguments']; \
             sys.stdout.buffer.write(b'\\0'.join(x.encode() for x in a))",
        ])
        .arg(plist)
        .output()
        .unwrap();
    stdout_of_success(&out, "python3 plistlib");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .map(str::to_string)
        .collect()
}

/// The state directory a launchd plist names for `tunnel` (a daemon's under /var/run, an
/// agent's in the user's Library).
pub fn launchd_state_dir(target: Target, home: &Path, tunnel: &str) -> String {
    if target == Target::Launchd {
        format!("/var/run/tunnelctl/{tunnel}")
    } else {
        format!(
            "{}/Library/Application Support/tunnelctl/{tunnel}",
            home.display()
        )
    }
}

/// The process field of an inittab `line` (as init reads it): at most 127 bytes, which
/// init keeps, and nothing init would hand to /bin/sh.
#[track_caller]
pub fn assert_plain_inittab_process(process: &str, line: &str) {
    assert!(process.len() <= 127, "{line}");
    assert!(
        !process.contains(|c| "~`!$^&*()=|\\{}[];\"'<>?".contains(c)),
        "{line}"
    );
}

/// The watchdog arguments an inittab/BusyBox args file must hold for `tunnel`: its state
/// directory under /run/tunnelctl, its log under /var/log/tunnelctl, then `ssh`.
pub fn inittab_watchdog_args(tunnel: &Tunnel, ssh: Vec<String>) -> Vec<String> {
    let id = tunnelctl::config::inittab_id(&tunnel.name);
    render::watchdog_args(
        tunnel,
        Some(&format!("/run/tunnelctl/{}", tunnel.name)),
        Some(&format!("/var/log/tunnelctl/{id}.log")),
        ssh,
    )
}

/// The arguments an args file holds, one a line, after its leading comment lines.
pub fn args_file_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// What the real ssh makes of the ssh words in a watchdog argv (after `-- ssh`):
/// `ssh -G -F /dev/null` (no config file, no connection), option → value(s), repeated
/// options joined with `|`.
pub fn ssh_reads(argv: &[String]) -> BTreeMap<String, String> {
    let at = argv
        .windows(2)
        .position(|w| w[0] == "--" && w[1] == "ssh")
        .unwrap_or_else(|| panic!("no `-- ssh` in {argv:?}"));
    let out = Command::new("ssh")
        .arg("-G")
        .args(["-F", "/dev/null"])
        .args(&argv[at + 2..])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    stdout_of_success(&out, &format!("ssh -G {:?}", &argv[at + 2..]));
    let mut map = BTreeMap::<String, String>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_string())
            .and_modify(|old| *old = format!("{old}|{v}"))
            .or_insert_with(|| v.to_string());
    }
    map
}

/// The words a run script's last `exec` hands over, as `sh` reads them: the script with
/// that `exec` made a `printf` of each word.
pub fn run_script_words(script: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(script).unwrap();
    let at = text.rfind("\nexec ").expect("an exec line") + 1;
    let probe = format!("{}printf '%s\\0' {}", &text[..at], &text[at + 5..]);
    let out = Command::new("sh").arg("-c").arg(probe).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .map(str::to_string)
        .collect();
    assert_eq!(words.pop().as_deref(), Some(""));
    words
}
