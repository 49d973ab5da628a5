//! Reading rendered files back as their consumers do, for the golden and hostile-value
//! tests: `systemd-analyze verify` on a unit, a plist's ProgramArguments through the
//! `plist` crate and through Python's plistlib, init's rules for an inittab process
//! field, the arguments an args file holds, the words a run script execs, and what the
//! real ssh reads from an argv (`ssh -G`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::commands::stdout_of_success;

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

/// Probe 10s/5s/2 and back-off 2s doubling to 5m: the watchdog's options where the
/// tunnel sets none.
pub const DEFAULT_WATCHDOG: [(&str, &str); 5] = [
    ("--probe-interval", "10s"),
    ("--probe-timeout", "5s"),
    ("--probe-failures", "2"),
    ("--backoff-initial", "2s"),
    ("--backoff-max", "5m"),
];

/// What `ssh -G` reads for every tunnel: no remote command and no tty, never a prompt,
/// a forward that fails fails the connection, host keys checked strictly; keepalive
/// 15 s × 3 and a 15 s connect timeout unless the tunnel says otherwise.
pub const EVERY_SSH: [(&str, &str); 8] = [
    ("sessiontype", "none"),
    ("requesttty", "false"),
    ("batchmode", "yes"),
    ("exitonforwardfailure", "yes"),
    ("stricthostkeychecking", "true"),
    ("serveraliveinterval", "15"),
    ("serveralivecountmax", "3"),
    ("connecttimeout", "15"),
];

/// What one tunnel must make the watchdog and ssh do, written by hand from its YAML and
/// the documented defaults, never from the renderer: a renderer bug then shows even
/// where the expected files were regenerated with it.
#[derive(Clone, Debug)]
pub struct Intent {
    pub name: String,
    /// The watchdog's options every target passes, as (flag, value): `--name`, probe and
    /// back-off, metrics file, on-change words in order.
    pub options: Vec<(String, String)>,
    /// What `ssh -G` reads where it is not ssh's own default or [`EVERY_SSH`]: lower-case
    /// keys, repeated options joined by `|`. `hostname` is required.
    pub ssh: Vec<(String, String)>,
}

impl Intent {
    /// `--name NAME`, [`DEFAULT_WATCHDOG`] with `watchdog` on top (an option given there
    /// replaces the default of that name; the others are added), and `ssh`.
    pub fn new(name: &str, watchdog: &[(&str, &str)], ssh: &[(&str, &str)]) -> Intent {
        let mut options = vec![("--name".to_string(), name.to_string())];
        for (flag, value) in DEFAULT_WATCHDOG {
            if !watchdog.iter().any(|(f, _)| *f == flag) {
                options.push((flag.into(), value.into()));
            }
        }
        options.extend(watchdog.iter().map(|(f, v)| (f.to_string(), v.to_string())));
        Intent {
            name: name.into(),
            options,
            ssh: ssh
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// `argv` (the program first) is what this tunnel intends: `program`, then options as
    /// (flag, value) pairs equal to [`Intent::options`] plus `per_target` (state folder,
    /// log, readiness), in any order but repeated flags in order; then `-- ssh` and words
    /// from which `ssh -G -F /dev/null` reads exactly what it reads for the bare host
    /// with [`EVERY_SSH`] and [`Intent::ssh`] on top.
    #[track_caller]
    pub fn assert_argv(
        &self,
        argv: &[String],
        program: &str,
        per_target: &[(&str, &str)],
        label: &str,
    ) {
        assert_eq!(
            argv.first().map(String::as_str),
            Some(program),
            "{label}: {argv:?}"
        );
        let at = argv
            .windows(2)
            .position(|w| w[0] == "--" && w[1] == "ssh")
            .unwrap_or_else(|| panic!("{label}: no `-- ssh` in {argv:?}"));
        let options = &argv[1..at];
        assert!(options.len().is_multiple_of(2), "{label}: {options:?}");
        let mut got: Vec<(&str, &str)> = options
            .chunks(2)
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
            .collect();
        let mut want: Vec<(&str, &str)> = self
            .options
            .iter()
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .chain(per_target.iter().copied())
            .collect();
        // Stable: repeated flags (`--on-change`) keep their order.
        got.sort_by_key(|(flag, _)| *flag);
        want.sort_by_key(|(flag, _)| *flag);
        assert_eq!(got, want, "{label}: the watchdog's options");

        let host = self
            .ssh
            .iter()
            .find(|(k, _)| k == "hostname")
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{}: an intent names its host", self.name));
        let mut want = ssh_reads(&["--".into(), "ssh".into(), host.into()]);
        for (key, value) in EVERY_SSH.iter().map(|(k, v)| (*k, *v)) {
            want.insert(key.into(), value.into());
        }
        for (key, value) in &self.ssh {
            want.insert(key.clone(), value.clone());
        }
        let got = ssh_reads(&argv[at..]);
        for key in want.keys().chain(got.keys()) {
            assert_eq!(
                got.get(key),
                want.get(key),
                "{label}: ssh -G reads `{key}` otherwise"
            );
        }
    }
}
