//! A one-line progress indicator on stderr for commands that take seconds (today
//! `doctor`). It draws only when stderr is a terminal, so logs and pipes get
//! nothing but the command's real output.
//!
//! ```no_run
//! let mut p = tunnelctl::progress::Progress::new(3);
//! p.step("alpha");        // "[1/3] alpha"
//! p.message("connecting"); // "[1/3] alpha: connecting 2s"  (redrawn in place)
//! p.clear();              // erase the line before printing a result
//! ```

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    enabled: bool,
    total: usize,
    current: usize,
    label: String,
    started: Instant,
    drawn: bool,
}

impl Progress {
    /// `total` steps (0 when the count is unknown: no `[i/n]` prefix).
    pub fn new(total: usize) -> Progress {
        Progress::with_output(total, std::io::stderr().is_terminal())
    }

    /// As [`Progress::new`], forcing drawing on or off (tests, `--quiet`).
    pub fn with_output(total: usize, enabled: bool) -> Progress {
        Progress {
            enabled,
            total,
            current: 0,
            label: String::new(),
            started: Instant::now(),
            drawn: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Starts the next step, named `label`.
    pub fn step(&mut self, label: &str) {
        self.current += 1;
        self.label = label.to_string();
        self.started = Instant::now();
        self.draw("");
    }

    /// Redraws the current step with a detail and the seconds spent on the step so far.
    pub fn message(&mut self, detail: &str) {
        self.draw(detail);
    }

    /// Erases the line, so the next println starts clean. Safe to call when nothing is drawn.
    pub fn clear(&mut self) {
        if self.enabled && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// The text a draw shows (pure; for tests).
    pub fn line(&self, detail: &str) -> String {
        let mut line = String::new();
        if self.total > 0 {
            line.push_str(&format!("[{}/{}] ", self.current, self.total));
        }
        line.push_str(&self.label);
        if !detail.is_empty() {
            line.push_str(&format!(": {detail} {}s", self.started.elapsed().as_secs()));
        }
        line
    }

    fn draw(&mut self, detail: &str) {
        if !self.enabled {
            return;
        }
        let line = self.line(detail);
        let mut err = std::io::stderr().lock();
        // \r + erase line: redraw in place; no newline until clear().
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_step_count_and_detail() {
        let mut p = Progress::with_output(3, false);
        p.step("alpha");
        assert_eq!(p.line(""), "[1/3] alpha");
        assert!(p.line("connecting").starts_with("[1/3] alpha: connecting "));
        let mut q = Progress::with_output(0, false);
        q.step("doctor demo");
        assert_eq!(q.line(""), "doctor demo");
    }
}
