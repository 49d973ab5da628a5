use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::RenderArgs;
use crate::config::{self, Config};
use crate::home::home_dir;
use crate::render::{self, RenderOptions, Rendered};

pub fn run(config: Option<&Path>, args: RenderArgs) -> ExitCode {
    let config = match load_config(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let tunnel = match config.tunnel(&args.name) {
        Ok(tunnel) => tunnel,
        Err(message) => {
            eprintln!("tunnelctl render: {message}");
            return ExitCode::from(2);
        }
    };
    let options = RenderOptions {
        watchdog: args.watchdog.unwrap_or_else(default_watchdog),
        home: home_dir(),
    };
    match render::render(tunnel, args.target, &options) {
        Ok(rendered) => {
            print!("{}", printable(&rendered));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tunnelctl render: {e}");
            ExitCode::from(2)
        }
    }
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

/// Loads the configuration, printing errors exactly as `ConfigError` shows them (exit 2)
/// and warnings to stderr.
pub(crate) fn load_config(explicit: Option<&Path>) -> Result<Config, ExitCode> {
    let path = config::locate(explicit).map_err(|message| {
        eprintln!("tunnelctl: {message}");
        ExitCode::from(2)
    })?;
    let config = config::load(&path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    for warning in &config.warnings {
        eprintln!("{warning}");
    }
    Ok(config)
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
