//! tunnelctl's one way to print. A closed stdout or stderr (`| head -1`, a terminal
//! gone) must never change what a command does: `println!` panics there and `?` on a
//! failed write aborts half-way (files written, service never started). Here a failed
//! write is dropped and remembered; the command goes on to its end and exits with its
//! own status, as ripgrep does for a closed pipe. Commands that only print (`status
//! --watch`, `logs -f`) ask [`stdout_closed`] to stop early.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout has failed (nobody reads it any more).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes to stdout; a failure is remembered, never returned.
pub fn stdout_text(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if out.write_fmt(args).and_then(|_| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes to stderr; a failure is dropped (there is nowhere left to say it).
pub fn stderr_text(args: std::fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `print!` that survives a closed stdout.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout_text(format_args!($($arg)*)) };
}

/// `println!` that survives a closed stdout.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::stdout_text(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::stdout_text(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that survives a closed stderr.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::stderr_text(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Stdout as a `Write` whose writes always succeed (install's and uninstall's report):
/// the report is for the reader, the work goes on without one.
pub struct Lenient;

impl Write for Lenient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        if out.write_all(buf).is_err() {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if io::stdout().lock().flush().is_err() {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Hands what a child wrote (captured, so a closed pipe cannot kill it by SIGPIPE
/// half-way through its work) on to our stdout and stderr.
pub fn relay(stdout: &[u8], stderr: &[u8]) {
    if !stdout.is_empty() {
        let _ = Lenient.write_all(stdout);
    }
    if !stderr.is_empty() {
        let _ = io::stderr().lock().write_all(stderr);
    }
}
