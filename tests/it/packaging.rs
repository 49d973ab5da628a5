//! What the packages ship, checked with the real tools that read it: man pages through
//! groff and man-db, the bash completion through bash, the Homebrew formula through ruby.
//! The .deb install/remove round trip itself is packaging/ci-deb.sh (it needs root and
//! changes the machine, so it is not a cargo test).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const TUNNELCTL: &str = env!("CARGO_BIN_EXE_tunnelctl");
const PAGES: [&str; 3] = ["tunnelctl.1", "tunnel-watchdog.1", "tunnels.yaml.5"];
const COMPLETIONS: [&str; 3] = ["tunnelctl.bash", "_tunnelctl", "tunnelctl.fish"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `tool` can run here; when it cannot, CI fails and a developer gets a skip
/// that says why.
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            !ci(),
            "{tool} is missing on CI: .ci/run must apt-get install {package}"
        );
        eprintln!("SKIPPED: {tool} is not installed (Debian package {package})");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn generate(what: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(what);
    let out = run(Command::new(TUNNELCTL).args(["generate", what]).arg(&dir));
    assert!(
        out.status.success(),
        "generate {what} failed: {}",
        text(&out.stderr)
    );
    (tmp, dir)
}

#[test]
fn generate_man_writes_every_page_and_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/man");
    let out = run(Command::new(TUNNELCTL).args(["generate", "man"]).arg(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let expected: Vec<String> = PAGES
        .iter()
        .map(|p| dir.join(p).display().to_string())
        .collect();
    assert_eq!(listed, expected);
    for page in PAGES {
        let body = fs::read_to_string(dir.join(page)).unwrap();
        assert!(body.contains("\n.TH "), "{page} has no .TH title line");
    }
}

#[test]
fn man_pages_render_without_warnings() {
    let (_tmp, dir) = generate("man");
    if !have("groff", "groff-base") {
        return;
    }
    for page in PAGES {
        let path = dir.join(page);
        let out = run(Command::new("groff").args(["-man", "-ww", "-z"]).arg(&path));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff on {page}: {}",
            text(&out.stderr)
        );
    }
    if !have("man", "man-db") {
        return;
    }
    for page in PAGES {
        let path = dir.join(page);
        let out = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80"));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "man -l {page}: {}",
            text(&out.stderr)
        );
        let shown = text(&out.stdout);
        assert!(
            shown.contains("NAME") && shown.contains("SEE ALSO"),
            "man -l {page} shows:\n{shown}"
        );
    }
}

#[test]
fn tunnelctl_page_has_every_command_and_hides_generate() {
    let (_tmp, dir) = generate("man");
    let page = fs::read_to_string(dir.join("tunnelctl.1")).unwrap();
    for cmd in [
        "check",
        "render",
        "install",
        "uninstall",
        "list",
        "status",
        "metrics",
        "trust",
        "doctor",
        "logs",
        "reconnect",
        "import",
    ] {
        assert!(
            page.contains(&format!(".SS \"tunnelctl {cmd}\"")),
            "no subsection for {cmd}"
        );
    }
    assert!(
        !page.contains("generate"),
        "the hidden generate command is documented"
    );

    let help = run(Command::new(TUNNELCTL).arg("--help"));
    assert!(help.status.success());
    assert!(
        !text(&help.stdout).contains("generate"),
        "generate shows in --help"
    );
}

#[test]
fn watchdog_page_states_the_exit_codes_and_signals() {
    let (_tmp, dir) = generate("man");
    let page = fs::read_to_string(dir.join("tunnel-watchdog.1")).unwrap();
    for needle in [
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        "SIGTERM",
        "RestartPreventExitStatus=2",
        "\\-\\-args\\-file",
    ] {
        assert!(page.contains(needle), "tunnel-watchdog.1 lacks {needle}");
    }
    for code in ["0", "1", "2", "3"] {
        assert!(
            page.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "exit code {code} is not documented"
        );
    }
}

/// Every key the example configuration uses is documented in tunnels.yaml(5).
#[test]
fn file_format_page_documents_every_key_of_the_example() {
    let page = fs::read_to_string(repo().join("packaging/man/tunnels.yaml.5")).unwrap();
    let example = fs::read_to_string(repo().join("examples/tunnels.yaml")).unwrap();
    let mut keys = Vec::new();
    for line in example.lines() {
        let line = line
            .split('#')
            .next()
            .unwrap()
            .trim_start()
            .trim_start_matches("- ");
        // `key:` at the start of a line, and `key:` inside `{ a: 1, b: 2 }` flow maps.
        let mut candidates = vec![line];
        if let Some(flow) = line.split_once('{').map(|(_, rest)| rest) {
            candidates.extend(flow.split(','));
        }
        for candidate in candidates {
            let candidate = candidate.trim();
            if let Some((key, _)) = candidate.split_once(':') {
                let key = key.trim();
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.push(key.to_owned());
                }
            }
        }
    }
    // Tunnel names are the example's own words, not keys.
    keys.retain(|k| k != "db");
    keys.sort();
    keys.dedup();
    assert!(
        keys.len() >= 15,
        "parsed too few keys from the example: {keys:?}"
    );
    for key in &keys {
        let bold = [
            format!(".B {key}\n"),
            format!(".BR {key} "),
            format!(".BR {key}: "),
            format!(".BI \"{key}: \""),
        ];
        assert!(
            bold.iter().any(|b| page.contains(b.as_str())),
            "tunnels.yaml.5 does not document `{key}`"
        );
    }
}

#[test]
fn completions_are_written_and_bash_loads_them() {
    let (_tmp, dir) = generate("completions");
    for file in COMPLETIONS {
        let body = fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            body.contains("tunnelctl"),
            "{file} does not mention tunnelctl"
        );
        assert!(
            !body.contains("generate"),
            "{file} offers the hidden generate command"
        );
    }
    if !have("bash", "bash") {
        return;
    }
    let bash = dir.join("tunnelctl.bash");
    let out = run(Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p tunnelctl && \
         COMP_WORDS=(tunnelctl '') COMP_CWORD=1 COMP_LINE='tunnelctl ' COMP_POINT=10 && \
         _tunnelctl tunnelctl '' tunnelctl && printf 'offer:%s\\n' \"${{COMPREPLY[@]}}\"",
        bash.display()
    )));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "bash: {}", text(&out.stderr));
    assert!(
        stdout.contains("-F _tunnelctl tunnelctl"),
        "not registered: {stdout}"
    );
    let offered: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("offer:"))
        .collect();
    for cmd in ["check", "render", "install", "uninstall", "status"] {
        assert!(
            offered.contains(&cmd),
            "bash does not offer {cmd}: {offered:?}"
        );
    }
    assert!(!offered.contains(&"generate"), "bash offers generate");
}

#[test]
fn generate_into_a_file_fails_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let out = run(Command::new(TUNNELCTL)
        .args(["generate", "completions"])
        .arg(&file));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn homebrew_formula_is_valid_ruby() {
    let formula = repo().join("packaging/homebrew/tunnelctl.rb");
    let body = fs::read_to_string(&formula).unwrap();
    for needle in [
        "depends_on \"rust\" => :build",
        "std_cargo_args",
        "\"generate\", \"man\"",
        "\"generate\", \"completions\"",
        "--target launchd-agent",
        "test do",
    ] {
        assert!(body.contains(needle), "formula lacks {needle}");
    }
    if !have("ruby", "ruby") {
        return;
    }
    let out = run(Command::new("ruby").args(["-wc"]).arg(&formula));
    assert!(out.status.success(), "ruby -c: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Syntax OK");
    assert!(out.stderr.is_empty(), "ruby warns: {}", text(&out.stderr));
}

/// The formula installs exactly the files `generate` writes.
#[test]
fn homebrew_formula_installs_what_generate_writes() {
    let body = fs::read_to_string(repo().join("packaging/homebrew/tunnelctl.rb")).unwrap();
    for file in PAGES.iter().chain(COMPLETIONS.iter()) {
        assert!(
            body.contains(&format!("/{file}\"")),
            "formula does not install {file}"
        );
    }
}

/// tunnel-watchdog's `--help` and its man page are both written from one option table
/// (`watchdog::args::OPTIONS`); the page must still name every option and every
/// signal the real `--help` names.
#[test]
fn watchdog_page_covers_the_real_watchdog_help() {
    let out = run(Command::new(env!("CARGO_BIN_EXE_tunnel-watchdog")).arg("--help"));
    let help = text(&out.stdout);
    assert!(
        out.status.success(),
        "tunnel-watchdog --help failed: {}",
        text(&out.stderr)
    );
    let (_tmp, dir) = generate("man");
    let page = fs::read_to_string(dir.join("tunnel-watchdog.1")).unwrap();
    let signals: Vec<&str> = help
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("SIG") && w.len() > 3)
        .collect();
    assert!(
        signals.contains(&"SIGTERM"),
        "no signals in --help:\n{help}"
    );
    for signal in signals {
        assert!(
            page.contains(signal),
            "tunnel-watchdog.1 does not mention {signal}"
        );
    }
    let options: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(options.len() >= 8, "too few options in --help:\n{help}");
    for option in options {
        // roff escapes `-` as `\-`.
        let in_page = option.replace('-', "\\-");
        assert!(
            page.contains(&in_page),
            "tunnel-watchdog.1 does not document {option}"
        );
    }
}
