//! Command line of the fault bench. Hand-parsed: cargo passes `--bench` and the
//! bench has a handful of flags, not worth a clap derive in a bench target.

use crate::faults::Fault;
use crate::tools::Tool;

/// Fault 11's tunnels per tool: twice sshd's default MaxStartups start (10), so that a
/// reconnect all at once meets its random early drop.
pub const CROWD: u16 = 20;
/// The smoke's crowd: still past MaxStartups' start, at a fraction of the processes.
const CROWD_QUICK: u16 = 12;

pub const USAGE: &str = "\
usage: cargo bench --bench faults -- [--quick] [--tools A,B,C,D] [--faults 1,2,...]
                                     [--trials N] [--footprint-minutes M] [--deadline SECS]
                                     [--crowd N]

  --quick                one trial, footprint over 1 minute (CI smoke; at most 4 minutes)
  --tools LIST           tools to run: A tunnelctl, B autossh -M 0, C autossh -M port, D sh loop
  --faults LIST          faults 1-11 (see docs/fault-bench.md)
  --trials N             trials per fault (default 5, quick 1)
  --footprint-minutes M  idle minutes for the footprint lane (default 10, quick 1; 0 = skip)
  --deadline SECS        a tool not recovered this long after the fault counts as failed (default 120)
  --crowd N              fault 11: tunnels per tool to the one sshd (default 20, quick 12)
  --save-docs            also write docs/fault-bench.md and docs/fault-bench.svg
                         (done automatically by a full run: all tools, all faults, 5 trials, 10 minutes)
";

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub tools: Vec<Tool>,
    pub faults: Vec<Fault>,
    pub trials: u32,
    pub footprint_minutes: f64,
    pub deadline_secs: u64,
    /// Fault 11: how many tunnels each tool runs to the one sshd.
    pub crowd: u16,
    pub save_docs: bool,
}

impl Options {
    /// A run with every default: the one whose report belongs in docs/.
    pub fn is_full_run(&self) -> bool {
        !self.quick
            && self.tools.len() == 4
            && self.faults.len() == Fault::ALL.len()
            && self.trials == 5
            && self.footprint_minutes >= 10.0
            && self.deadline_secs == 120
            && self.crowd == CROWD
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut quick = false;
    let mut tools = None;
    let mut faults = None;
    let mut trials = None;
    let mut footprint = None;
    let mut deadline = 120;
    let mut save_docs = false;
    let mut crowd = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        // `--key=value` and `--key value` both work.
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match key.as_str() {
            // cargo bench appends `--bench` to every bench binary's arguments.
            "--bench" => {}
            "--quick" => quick = true,
            "--save-docs" => save_docs = true,
            "--tools" => tools = Some(parse_tools(&value("--tools")?)?),
            "--faults" => faults = Some(parse_faults(&value("--faults")?)?),
            "--trials" => {
                let v = value("--trials")?;
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("--trials: `{v}` is not a whole number"))?;
                if !(1..=50).contains(&n) {
                    return Err(format!("--trials: {n} is outside 1..=50"));
                }
                trials = Some(n);
            }
            "--footprint-minutes" => {
                let v = value("--footprint-minutes")?;
                let m: f64 = v
                    .parse()
                    .map_err(|_| format!("--footprint-minutes: `{v}` is not a number"))?;
                if !(0.0..=60.0).contains(&m) {
                    return Err(format!("--footprint-minutes: {m} is outside 0..=60"));
                }
                footprint = Some(m);
            }
            "--deadline" => {
                let v = value("--deadline")?;
                deadline = v
                    .parse()
                    .map_err(|_| format!("--deadline: `{v}` is not a whole number of seconds"))?;
                if !(10..=600).contains(&deadline) {
                    return Err(format!("--deadline: {deadline} is outside 10..=600"));
                }
            }
            "--crowd" => {
                let v = value("--crowd")?;
                let n: u16 = v
                    .parse()
                    .map_err(|_| format!("--crowd: `{v}` is not a whole number"))?;
                if !(1..=crate::tools::CROWD_MAX).contains(&n) {
                    return Err(format!(
                        "--crowd: {n} is outside 1..={}",
                        crate::tools::CROWD_MAX
                    ));
                }
                crowd = Some(n);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Options {
        quick,
        tools: tools.unwrap_or_else(|| Tool::ALL.to_vec()),
        faults: faults.unwrap_or_else(|| Fault::ALL.to_vec()),
        trials: trials.unwrap_or(if quick { 1 } else { 5 }),
        footprint_minutes: footprint.unwrap_or(if quick { 1.0 } else { 10.0 }),
        deadline_secs: deadline,
        crowd: crowd.unwrap_or(if quick { CROWD_QUICK } else { CROWD }),
        save_docs,
    })
}

fn parse_tools(list: &str) -> Result<Vec<Tool>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let tool = Tool::from_letter(part)
            .ok_or_else(|| format!("--tools: unknown tool `{part}` (use A, B, C, D)"))?;
        if !out.contains(&tool) {
            out.push(tool);
        }
    }
    if out.is_empty() {
        return Err("--tools: empty list".into());
    }
    out.sort();
    Ok(out)
}

fn parse_faults(list: &str) -> Result<Vec<Fault>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let fault = part
            .parse::<u8>()
            .ok()
            .and_then(Fault::from_number)
            .ok_or_else(|| format!("--faults: unknown fault `{part}` (use 1 to 11)"))?;
        if !out.contains(&fault) {
            out.push(fault);
        }
    }
    if out.is_empty() {
        return Err("--faults: empty list".into());
    }
    out.sort();
    Ok(out)
}
