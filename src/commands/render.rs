use std::path::PathBuf;
use std::process::ExitCode;

use super::{Context, Error};
use crate::cli::RenderArgs;
use crate::home::home_dir;
use crate::targets::{self as render, RenderOptions, Rendered};

pub fn run(cx: &Context, args: RenderArgs) -> Result<ExitCode, Error> {
    let tunnel = cx.tunnel(&args.name)?;
    let options = RenderOptions {
        watchdog: args.watchdog.unwrap_or_else(default_watchdog),
        home: home_dir(),
    };
    let rendered =
        render::render(tunnel, args.target, &options).map_err(|e| Error::usage(e.to_string()))?;
    crate::out!("{}", printable(&rendered));
    Ok(ExitCode::SUCCESS)
}

/// What `render` prints: a service file as it is; for inittab targets the inittab lines
/// and the args file, each under a `# ==> PATH <==` header.
pub fn printable(rendered: &Rendered) -> String {
    let Some(entry) = &rendered.inittab else {
        return rendered.files.iter().map(|f| f.contents.as_str()).collect();
    };
    let mut out = format!("# ==> {} <==\n{}", crate::install::INITTAB, entry.text());
    for file in &rendered.files {
        out.push_str(&format!(
            "# ==> {} <==\n{}",
            file.path.display(),
            file.contents
        ));
    }
    out
}

/// `tunnel-watchdog` next to the running tunnelctl when it is there (a package or a
/// `cargo build` tree), else /usr/bin/tunnel-watchdog.
pub(crate) fn default_watchdog() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .map(|exe| exe.with_file_name("tunnel-watchdog"))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/tunnel-watchdog"))
}
