//! The prerequisite rule of the unit tests, as the integration tests have it: a test
//! whose prerequisite is missing is skipped with the reason outside CI, and fails under
//! `CI=true`, where a pass by skipping would prove nothing.

/// Whether `test` may go on: `missing` is `None`, or the reason it cannot. A reason is
/// printed (skip) or, under `CI=true`, a panic.
pub(crate) fn require(test: &str, missing: Option<String>) -> bool {
    let Some(reason) = missing else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: prerequisite missing on CI: {reason}");
    }
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// Why `path` cannot be run, or `None`.
pub(crate) fn program(path: &str, package: &str) -> Option<String> {
    (!std::path::Path::new(path).exists()).then(|| format!("{path} is missing (install {package})"))
}

/// Why a program found on `PATH` (as `Command` finds it) cannot be run, or `None`.
pub(crate) fn on_path(program: &str, package: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .any(|dir| std::path::Path::new(dir).join(program).is_file());
    (!found).then(|| format!("{program} is not on PATH (install {package})"))
}

/// Why this test process cannot do what needs root, or `None`.
pub(crate) fn root(why: &str) -> Option<String> {
    (!nix::unistd::geteuid().is_root()).then(|| format!("not running as root ({why})"))
}
