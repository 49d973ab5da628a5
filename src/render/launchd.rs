//! launchd LaunchDaemons and LaunchAgents, written with the `plist` crate so the XML is
//! well-formed whatever the strings hold.

use std::path::PathBuf;

use plist::{Dictionary, Value};

use super::{
    CredentialPaths, RenderOptions, Rendered, RenderedFile, path_str, service_ssh_argv,
    watchdog_args,
};
use crate::model::Tunnel;
use crate::target::Target;

pub fn label(name: &str) -> String {
    format!("org.tunnelctl.{name}")
}

pub fn render(
    tunnel: &Tunnel,
    target: Target,
    options: &RenderOptions,
) -> Result<Rendered, String> {
    let watchdog = path_str(&options.watchdog, "--watchdog")?;
    let name = &tunnel.name;
    let (plist_dir, state_dir, log_dir) = if target == Target::Launchd {
        (
            PathBuf::from("/Library/LaunchDaemons"),
            PathBuf::from("/var/run/tunnelctl").join(name),
            PathBuf::from("/var/log/tunnelctl"),
        )
    } else {
        let home = &options.home;
        (
            home.join("Library/LaunchAgents"),
            home.join("Library/Application Support/tunnelctl")
                .join(name),
            home.join("Library/Logs/tunnelctl"),
        )
    };
    let state_dir = path_str(&state_dir, "state directory")?.to_string();
    let log_file = log_dir.join(format!("{name}.log"));
    let log = path_str(&log_file, "log file")?.to_string();

    let mut argv = vec![watchdog.to_string()];
    argv.extend(watchdog_args(
        tunnel,
        Some(&state_dir),
        None,
        service_ssh_argv(tunnel, CredentialPaths::AsConfigured),
    ));

    let mut dict = Dictionary::new();
    dict.insert("Label".into(), Value::String(label(name)));
    dict.insert(
        "ProgramArguments".into(),
        Value::Array(argv.into_iter().map(Value::String).collect()),
    );
    dict.insert("RunAtLoad".into(), Value::Boolean(true));
    dict.insert("KeepAlive".into(), Value::Boolean(true));
    // The watchdog paces reconnects itself; this only stops a crash loop spinning.
    dict.insert("ThrottleInterval".into(), Value::Integer(10.into()));
    dict.insert("ProcessType".into(), Value::String("Background".into()));
    // launchd kills the job's whole process group (ssh included) when the watchdog exits.
    dict.insert("AbandonProcessGroup".into(), Value::Boolean(false));
    dict.insert("StandardOutPath".into(), Value::String(log.clone()));
    dict.insert("StandardErrorPath".into(), Value::String(log));

    let mut xml = Vec::new();
    Value::Dictionary(dict)
        .to_writer_xml(&mut xml)
        .map_err(|e| format!("writing the plist: {e}"))?;
    let mut contents = String::from_utf8(xml).map_err(|e| format!("plist is not UTF-8: {e}"))?;
    contents.push('\n');
    Ok(Rendered {
        files: vec![RenderedFile {
            path: plist_dir.join(format!("{}.plist", label(name))),
            contents,
            mode: 0o644,
        }],
        dirs: vec![log_dir],
        inittab: None,
    })
}
