//! Fuzz and property tests, run by CI for a bounded time: the config parser
//! on mutated YAML (the example and golden configs as seeds), render of every target for
//! random durations and counts within what `check` accepts, the watchdog's argument and
//! args-file parser, and the state-file reader with what `status` shows of it.
//! Property everywhere: no panic, no hang, no unbounded allocation.
//!
//! Hand-written on purpose: cargo-fuzz needs a nightly compiler and libFuzzer, neither of
//! which this project's toolchain has. A seeded xorshift generator makes every failure
//! reproducible: the seed is printed (also when the process aborts), and
//! `TUNNELCTL_FUZZ_SEED=N` replays it.
//!
//! Budget, per fuzz target, whichever ends first:
//! - `TUNNELCTL_FUZZ_SECS` (default 3; CI runs 60 for the config parser, which gets the
//!   full budget, and the others half of it),
//! - `TUNNELCTL_FUZZ_CASES` (default 2,400,000 for the config parser, the others a
//!   quarter of it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tunnelctl::config;
use tunnelctl::duration::{MAX_COUNT, MAX_DURATION, format_duration};
use tunnelctl::model::{Endpoint, Forward, Tunnel};
use tunnelctl::state::State;
use tunnelctl::status;
use tunnelctl::targets::Target;
use tunnelctl::targets::{self as render, RenderOptions};
use tunnelctl::watchdog::readiness::sd_notify as notify;
use tunnelctl::watchdog::{args, backoff};

// ---------------------------------------------------------------------------
// Unbounded allocation: more than this live at once fails the allocation, which aborts
// the process with "memory allocation of N bytes failed" (the seed is already printed).

const MEMORY_LIMIT: usize = 1 << 30;

struct Bounded;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > MEMORY_LIMIT {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

// ---------------------------------------------------------------------------
// The loop

/// xorshift64* (Vigna): small, fast, and enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// A number of a random bit length: small and huge values alike.
    fn magnitude(&mut self) -> u64 {
        let bits = self.below(65) as u32;
        if bits == 0 {
            0
        } else {
            self.next() >> (64 - bits)
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `case` on fresh inputs from `make` until the budget is spent, on a worker
/// thread: a panic fails with the seed and the input, a run that overstays its budget
/// by 20 s fails as a hang. Returns the number of cases run.
fn fuzz<I, M, C>(what: &str, share: f64, default_cases: u64, make: M, case: C) -> u64
where
    I: std::fmt::Debug + Send + 'static,
    M: Fn(&mut Rng) -> I + Send + 'static,
    C: Fn(&I) + Send + 'static,
{
    let seed = env_u64("TUNNELCTL_FUZZ_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        nanos ^ u64::from(std::process::id())
    }) | 1;
    let secs = env_u64("TUNNELCTL_FUZZ_SECS").unwrap_or(3) as f64 * share;
    let max_cases = env_u64("TUNNELCTL_FUZZ_CASES")
        .map_or(default_cases, |c| (c as f64 * share) as u64)
        .max(1);
    let budget = Duration::from_secs_f64(secs.max(0.1));
    // Straight to stderr, not through the test harness's capture: still there if the
    // process aborts.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {what}: seed {seed} (TUNNELCTL_FUZZ_SEED={seed} replays it), budget {:.1} s or {max_cases} cases",
        budget.as_secs_f64()
    );
    // The case running now (for a hang report) and, after a panic, its input.
    let current = Arc::new(AtomicU64::new(0));
    let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (done_tx, done_rx) = mpsc::channel();
    let (running, failure) = (Arc::clone(&current), Arc::clone(&failed));
    let worker = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let start = Instant::now();
        let mut n = 0u64;
        while n < max_cases && (!n.is_multiple_of(64) || start.elapsed() < budget) {
            let input = make(&mut rng);
            running.store(n, Ordering::Relaxed);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&input)));
            if outcome.is_err() {
                *failure.lock().unwrap() = Some(format!("{input:?}"));
                break;
            }
            n += 1;
        }
        let _ = done_tx.send(n);
    });
    // Every case is bounded by the budget plus this; a longer one is a hang.
    let ran = match done_rx.recv_timeout(budget + Duration::from_secs(20)) {
        Ok(n) => n,
        Err(_) => {
            let n = current.load(Ordering::Relaxed);
            panic!("fuzz {what}: case {n} runs past the budget by 20 s: a hang (seed {seed})");
        }
    };
    if let Some(input) = failed.lock().unwrap().take() {
        panic!("fuzz {what}: case {ran} panicked (seed {seed}); input:\n{input}");
    }
    worker.join().unwrap();
    let _ = writeln!(std::io::stderr(), "fuzz {what}: {ran} cases, no failure");
    ran
}

// ---------------------------------------------------------------------------
// Config parser

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds() -> Vec<String> {
    let mut paths = vec![repo().join("examples/tunnels.yaml")];
    for entry in std::fs::read_dir(repo().join("tests/golden")).unwrap() {
        paths.push(entry.unwrap().path().join("tunnels.yaml"));
    }
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Boundary values and syntax, as a fuzzing dictionary has them; [`dictionary`] adds
/// the schema's keys.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "999",
    "1000",
    "1001",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551615",
    "0s",
    "1ms",
    "15s",
    "5m",
    "1h",
    "596h",
    "597h",
    "2147483s",
    "2147484s",
    "5124095576030h",
    "18446744073709551615ms",
    "307445734561825m",
    "yes",
    "no",
    "true",
    "null",
    "~",
    "~/",
    "/",
    "/dev/null",
    "%",
    "%%d",
    "${HOME}",
    "$",
    "*",
    "::1",
    "[::1]:22",
    "localhost:22",
    "0.0.0.0",
    "127.0.0.1",
    "a:b:c",
    "-oProxyCommand=x",
    " ",
    "\t",
    "\n",
    "\n  ",
    "\n      - ",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    ": ",
    "- ",
    "#",
    "\"",
    "'",
    "&a",
    "*a",
    "!!str",
    "|",
    ">",
    "---",
    "...",
    "\u{202e}",
    "\u{fdd0}",
    "\u{ffff}",
    "\u{200f}",
    "é",
    "\\",
    "\r",
    "\0",
    "ProxyCommand",
    "LogLevel",
    "QUIET",
    "StrictHostKeyChecking",
];

/// [`TOKENS`] and every key tunnels.yaml knows, from the parser's own table.
fn dictionary() -> Vec<&'static str> {
    let mut words = TOKENS.to_vec();
    for key in config::KEYS.into_iter().flatten() {
        if !words.contains(key) {
            words.push(*key);
        }
    }
    words
}

/// The numbers and durations at and beyond the bounds (`check`'s, parse_duration's).
const NUMBERS: &[&str] = &[
    "1",
    "2",
    "999",
    "1000",
    "1001",
    "4294967295",
    "1ms",
    "2147483s",
    "2147483001ms",
    "2147484s",
    "596h",
    "597h",
    "5124095576030h",
    "18446744073709551615ms",
];

/// A settings line with boundary values, as a tunnel (4 spaces) or `defaults` (2) has it.
fn settings_line(rng: &mut Rng) -> String {
    let v: Vec<&str> = (0..3).map(|_| *rng.pick(NUMBERS)).collect();
    match rng.below(4) {
        0 => format!(
            "probe: {{ interval: {}, timeout: {}, failures: {} }}",
            v[0], v[1], v[2]
        ),
        1 => format!("keepalive: {{ interval: {}, count: {} }}", v[0], v[1]),
        2 => format!("backoff: {{ initial: {}, max: {} }}", v[0], v[1]),
        _ => format!("connect_timeout: {}", v[0]),
    }
}

fn mutate_config(rng: &mut Rng, seeds: &[String], dict: &[&str]) -> String {
    let mut text: Vec<char> = rng.pick(seeds).chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(text.len() + 1);
        match rng.below(9) {
            // After some line that sets a host (a tunnel) or opens `defaults:`.
            7 => {
                let source: String = text.iter().collect();
                let anchors: Vec<(usize, &str)> = source
                    .match_indices("\n    host:")
                    .map(|(i, _)| (i, "    "))
                    .chain(source.match_indices("defaults:").map(|(i, _)| (i, "  ")))
                    .collect();
                if anchors.is_empty() {
                    continue;
                }
                let (i, indent) = *rng.pick(&anchors);
                let line_end = source[i + 1..]
                    .find('\n')
                    .map_or(source.len(), |e| i + 1 + e);
                let insert = format!("\n{indent}{}", settings_line(rng));
                let char_at = source[..line_end].chars().count();
                text.splice(char_at..char_at, insert.chars());
            }
            // Replace the value after a `: ` on some line with a token or a number.
            0 | 1 => {
                let line_start = text[..at]
                    .iter()
                    .rposition(|c| *c == '\n')
                    .map_or(0, |i| i + 1);
                let line_end = text[at..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(text.len(), |i| at + i);
                let line: String = text[line_start..line_end].iter().collect();
                if let Some(colon) = line.rfind(": ") {
                    let value = if rng.chance(2) {
                        rng.pick(dict).to_string()
                    } else {
                        format!(
                            "{}{}",
                            rng.magnitude(),
                            rng.pick(&["", "ms", "s", "m", "h"])
                        )
                    };
                    let start = line_start + line[..colon + 2].chars().count();
                    // Keep a flow mapping's closing brace or a comma after the value.
                    let tail = line[colon + 2..]
                        .find([',', '}', ']'])
                        .map_or(line_end, |i| start + line[colon + 2..][..i].chars().count());
                    text.splice(start..tail, value.chars());
                }
            }
            2 => {
                let token = rng.pick(dict);
                text.splice(at..at, token.chars());
            }
            3 => {
                let end = (at + 1 + rng.below(8)).min(text.len());
                text.drain(at..end);
            }
            // Duplicate a chunk (duplicate keys, tunnels, forwards).
            4 => {
                let end = (at + rng.below(200)).min(text.len());
                let chunk: Vec<char> = text[at..end].to_vec();
                let to = rng.below(text.len() + 1);
                text.splice(to..to, chunk);
            }
            5 if at < text.len() => {
                text[at] = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
            }
            6 => {
                let c = char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}');
                text.insert(at, c);
            }
            8 => text.truncate(at),
            _ => {}
        }
    }
    text.into_iter().collect()
}

/// What follows from an accepted config: the values render uses, the watchdog's view of
/// its own command line, and its back-off arithmetic. Every 64th accepted config is also
/// rendered in full for every target (templating is slow).
fn exercise_tunnel(t: &Tunnel, full: bool) {
    let _ = render::systemd::watchdog_sec(t);
    let _ = render::systemd::timeout_start_sec(t);
    let ssh = tunnelctl::ssh_command::ssh_argv(t, &Default::default());
    let words = render::watchdog_args(t, Some("/run/x"), None, ssh);
    match args::parse(&words, &|_| Err("no files".into())) {
        Ok(args::Parsed::Run(o)) => watchdog_arithmetic(&o),
        other => panic!("the watchdog refuses what render wrote: {other:?}\n{words:?}"),
    }
    if full {
        let options = RenderOptions {
            watchdog: PathBuf::from("/usr/bin/tunnel-watchdog"),
            home: PathBuf::from("/home/u"),
        };
        for target in Target::ALL {
            let _ = render::render(t, target, &options);
        }
    }
}

#[test]
fn fuzz_config_parser() {
    let seeds = seeds();
    let dict = dictionary();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let ran = fuzz(
        "config parser",
        1.0,
        2_400_000,
        move |rng| mutate_config(rng, &seeds, &dict),
        move |text: &String| match config::load_str(
            text,
            Path::new("t.yaml"),
            Path::new("/nonexistent-home"),
        ) {
            Ok(cfg) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                for t in &cfg.tunnels {
                    exercise_tunnel(t, n.is_multiple_of(64));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        },
    );
    let accepted = accepted.load(Ordering::Relaxed);
    let _ = writeln!(
        std::io::stderr(),
        "fuzz config parser: {accepted} of {ran} inputs accepted"
    );
    assert!(ran > 0);
    // Mutations that the parser always refuses would test its error path only.
    assert!(
        accepted > 0,
        "none of {ran} mutated configs was accepted: the seeds or mutations are broken"
    );
}

// ---------------------------------------------------------------------------
// Render and the watchdog's arithmetic, for values check accepts

/// A duration `check` accepts (1 ms to [`MAX_DURATION`]), boundaries often.
fn duration(rng: &mut Rng) -> Duration {
    let max = MAX_DURATION.as_millis() as u64;
    let ms = match rng.below(8) {
        0 => max,
        1 => 1,
        2 => max - rng.below(1000) as u64,
        _ => 1 + rng.magnitude() % max,
    };
    Duration::from_millis(ms)
}

fn count(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => MAX_COUNT,
        1 => 1,
        _ => 1 + rng.below(MAX_COUNT as usize) as u32,
    }
}

fn random_tunnel(rng: &mut Rng) -> Tunnel {
    let mut t = Tunnel::new(
        "t",
        "h.example.org",
        vec![
            Forward::Remote {
                bind: None,
                port: 1 + rng.below(65535) as u16,
                to: Endpoint {
                    host: "localhost".into(),
                    port: 22,
                },
            },
            Forward::Dynamic {
                bind: "127.0.0.1".into(),
                port: 1 + rng.below(65535) as u16,
            },
        ],
    );
    t.keepalive.interval = duration(rng);
    t.keepalive.count = count(rng);
    t.probe.interval = duration(rng);
    t.probe.timeout = duration(rng);
    t.probe.failures = count(rng);
    let (a, b) = (duration(rng), duration(rng));
    t.backoff.initial = a.min(b);
    t.backoff.max = a.max(b);
    t.connect_timeout = duration(rng);
    t
}

/// The arithmetic the watchdog does with its options (src/watchdog/mod.rs, backoff.rs,
/// probe/, readiness/sd_notify.rs), with the values its parser accepted.
fn watchdog_arithmetic(o: &args::Options) {
    let now = Instant::now();
    let watchdog = notify::watchdog_interval(Some("18446744073709551615"), None);
    let interval = notify::effective_interval(o.probe_interval, watchdog);
    let _ = now + interval;
    let _ = now + o.probe_timeout;
    let _ = now + o.backoff_max;
    let budget = interval
        .saturating_mul(o.probe_failures)
        .saturating_add(o.probe_timeout);
    let _ = (o.backoff_max + budget + Duration::from_secs(5)).as_micros();
    let _ = (o.probe_timeout / 2).min(Duration::from_secs(1));
    let proven = backoff::proven_after(interval, o.backoff_initial);
    for failures in [0, 1, 2, 31, 63, 64, 1000, u32::MAX] {
        let wait = backoff::wait_before_connect(failures, true, o.backoff_initial, o.backoff_max);
        let _ = now + backoff::with_jitter(wait, 0.999_999);
        let _ = backoff::after_failure(
            failures,
            false,
            Some(o.backoff_max),
            failures.is_multiple_of(2),
            proven,
            o.backoff_initial,
            o.backoff_max,
        );
    }
    let _ = backoff::failures_for_max(o.backoff_initial, o.backoff_max);
}

#[test]
fn render_every_target_for_values_check_accepts() {
    let options = RenderOptions {
        watchdog: PathBuf::from("/usr/bin/tunnel-watchdog"),
        home: PathBuf::from("/home/u"),
    };
    fuzz("render", 0.5, 600_000, random_tunnel, move |t: &Tunnel| {
        let watchdog_sec = render::systemd::watchdog_sec(t);
        // systemd keeps it in microseconds in a u64.
        assert!(
            watchdog_sec < u64::MAX / 1_000_000,
            "WatchdogSec={watchdog_sec}s"
        );
        assert!(render::systemd::timeout_start_sec(t) < u64::MAX / 1_000_000);
        for target in Target::ALL {
            render::render(t, target, &options).unwrap_or_else(|e| panic!("{target}: {e}"));
        }
        let words = render::watchdog_args(t, None, None, vec!["ssh".into(), "h".into()]);
        match args::parse(&words, &|_| Err("no files".into())) {
            Ok(args::Parsed::Run(o)) => {
                assert_eq!(o.probe_interval, t.probe.interval);
                assert_eq!(o.backoff_max, t.backoff.max);
                watchdog_arithmetic(&o);
            }
            other => panic!("the watchdog refuses what render wrote: {other:?}\n{words:?}"),
        }
    });
}

// ---------------------------------------------------------------------------
// The watchdog's argument and args-file parser

#[derive(Debug)]
enum WatchdogInput {
    Argv(Vec<String>),
    ArgsFile(String),
}

const WATCHDOG_TOKENS: &[&str] = &[
    "--",
    "--name",
    "--probe-interval",
    "--probe-timeout",
    "--probe-failures",
    "--backoff-initial",
    "--backoff-max",
    "--state-dir",
    "--log-file",
    "--args-file",
    "--args-file=f",
    "--probe-interval=",
    "--name=",
    "-h",
    "-V",
    "ssh",
    "-L",
    "-R",
    "-D",
    "-NR",
    "-o",
    "-p",
    "-L8080:h:80",
    "-R0:h:1",
    "-R1234",
    "-D[::1]:1080",
    "-L/tmp/s:h:1",
    "-R[::1]:1:[::1]:22",
    "1:h:2",
    "127.0.0.1:1:h:2",
    "0",
    "1",
    "1000",
    "1001",
    "4294967296",
    "10s",
    "0s",
    "2147483s",
    "2147484s",
    "5124095576030h",
    "18446744073709551615ms",
    "-",
    "",
    "h",
    "x y",
    "%",
    "${X}",
    "\u{202e}",
    "#",
];

fn mutate_watchdog(rng: &mut Rng, seeds: &[Vec<String>]) -> WatchdogInput {
    let mut words = rng.pick(seeds).clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(words.len() + 1);
        match rng.below(5) {
            0 => words.insert(at, rng.pick(WATCHDOG_TOKENS).to_string()),
            1 if at < words.len() => {
                words.remove(at);
            }
            2 if at < words.len() => words[at] = rng.pick(WATCHDOG_TOKENS).to_string(),
            3 if at < words.len() => {
                let n = rng.magnitude();
                words[at] = format!("{n}{}", rng.pick(&["", "ms", "s", "m", "h", "x"]));
            }
            _ => words.truncate(at),
        }
    }
    if rng.chance(2) {
        let mut text = String::new();
        if rng.chance(4) {
            text.push_str("# generated\n");
        }
        text.push_str(&words.join(if rng.chance(8) { "\r\n" } else { "\n" }));
        if rng.chance(2) {
            text.push('\n');
        }
        WatchdogInput::ArgsFile(text)
    } else {
        WatchdogInput::Argv(words)
    }
}

#[test]
fn fuzz_watchdog_arguments_and_args_file() {
    // Seeds: the golden configs that hold every kind of argument (-L, -R, -D, a jump
    // host, an on-change hook, a metrics file), loaded for real with the golden home
    // whose key files they name.
    let home = crate::common::golden_home();
    let mut tunnels = Vec::new();
    for case in ["full-example", "jump-host", "health-hooks"] {
        let path = repo().join(format!("tests/golden/{case}/tunnels.yaml"));
        let cfg = config::load_str(&std::fs::read_to_string(&path).unwrap(), &path, &home)
            .unwrap_or_else(|e| panic!("the fuzz seed {case} does not load: {e}"));
        tunnels.extend(cfg.tunnels);
    }
    let seeds: Vec<Vec<String>> = tunnels
        .iter()
        .map(|t| {
            let ssh = tunnelctl::ssh_command::ssh_argv(t, &Default::default());
            render::watchdog_args(t, Some("/run/tunnelctl/t"), Some("/var/log/t.log"), ssh)
        })
        .collect();
    let words: Vec<&str> = seeds.iter().flatten().map(String::as_str).collect();
    for kind in ["-L", "-R", "-D", "-J", "--on-change", "--metrics-file"] {
        assert!(
            words.contains(&kind),
            "no seed holds {kind}: the fuzz would never mutate it"
        );
    }
    fuzz(
        "watchdog arguments",
        0.5,
        600_000,
        move |rng| mutate_watchdog(rng, &seeds),
        |input: &WatchdogInput| {
            let parsed = match input {
                WatchdogInput::Argv(words) => args::parse(words, &|_| Err("no files".into())),
                WatchdogInput::ArgsFile(text) => {
                    let text = text.clone();
                    args::parse(&["--args-file".into(), "f".into()], &move |_| {
                        Ok(text.clone())
                    })
                }
            };
            if let Ok(args::Parsed::Run(o)) = parsed {
                watchdog_arithmetic(&o);
                for f in &o.forwards {
                    let _ = f.describe();
                    if let args::SshForward::Remote { port, .. } = f {
                        let _ = args::without_remote_forward(&o.ssh, *port);
                    }
                }
            }
        },
    );
}

// ---------------------------------------------------------------------------
// The state-file reader, and what `status` makes of it

const STATE_KEYS: &[&str] = &[
    "state",
    "pid",
    "ssh_pid",
    "connected_since",
    "last_probe_ok",
    "last_probe_ms",
    "consecutive_failures",
    "restarts",
    "last_error",
    "backoff_until",
    "proven",
    "network_error",
    "no_greeting",
];

const STATE_VALUES: &[&str] = &[
    "up",
    "connecting",
    "backing-off",
    "failed",
    "stopped",
    "0",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "",
    "x",
    "=",
    "\u{202e}",
    "yes",
];

fn mutate_state(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(20) {
        match rng.below(10) {
            0 => text.push_str("# comment"),
            1 => text.push_str(rng.pick::<&str>(STATE_VALUES)),
            2 => {
                let key = rng.pick(STATE_KEYS);
                text.push_str(&format!("{key}={}", rng.magnitude()));
            }
            _ => {
                let key = rng.pick(STATE_KEYS);
                let value = rng.pick(STATE_VALUES);
                text.push_str(&format!("{key}={value}"));
            }
        }
        text.push_str(rng.pick::<&str>(&["\n", "\n", "\n", "\r\n", "", "\n\n"]));
    }
    text
}

#[test]
fn fuzz_state_file_reader() {
    fuzz("state file", 0.5, 600_000, mutate_state, |text: &String| {
        let Ok(state) = State::from_text(text) else {
            return;
        };
        // What the watchdog writes, it reads back the same.
        assert_eq!(State::from_text(&state.to_text()).as_ref(), Ok(&state));
        let row = status::Row {
            name: "t".into(),
            target: Some(Target::Systemd),
            state_file: Some(PathBuf::from("/run/tunnelctl/t/state")),
            state: Some(state.clone()),
            running: true,
            init: None,
            problem: None,
        };
        for now in [0, 1, state.backoff_until, state.connected_since, u64::MAX] {
            let _ = status::cells(&row, now);
            let _ = status::json(&row, now);
        }
        let _ = status::table(std::slice::from_ref(&row), u64::MAX, true, true);
    });
}

#[test]
fn formatted_durations_round_trip_within_the_bounds() {
    // The renderer writes durations with format_duration and the watchdog reads them with
    // its bounded parser: the largest value check accepts must survive the trip.
    for d in [
        MAX_DURATION,
        Duration::from_millis(1),
        Duration::from_millis(2_147_482_999),
    ] {
        let text = format_duration(d);
        assert_eq!(tunnelctl::duration::parse_bounded(&text), Ok(d), "{text}");
    }
}
