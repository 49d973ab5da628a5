//! What doctor reports: a `Finding` (verdict, subject, detail, fix) and its rendering.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works now, but something will bite later.
    Warn,
    /// The tunnel cannot work until this is fixed.
    Fail,
    /// Advice that cannot be checked from here.
    Note,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Note => "note",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    /// Short subject: `ssh`, `key`, `host key`, `server`, `login`, `forward -R 1234:…`.
    pub subject: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    pub(super) fn new(
        verdict: Verdict,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Finding {
        Finding {
            verdict,
            subject: subject.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    pub(super) fn fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }
}

/// Renders the checks as aligned lines (pure); colour only when asked.
pub fn render(checks: &[Finding], colour: bool) -> String {
    let width = checks
        .iter()
        .map(|c| c.subject.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let label = format!("{:<4}", c.verdict.label());
        let label = match (colour, c.verdict) {
            (true, Verdict::Ok) => format!("\x1b[32m{label}\x1b[0m"),
            (true, Verdict::Warn) | (true, Verdict::Note) => format!("\x1b[33m{label}\x1b[0m"),
            (true, Verdict::Fail) => format!("\x1b[1;31m{label}\x1b[0m"),
            (false, _) => label,
        };
        out.push_str(&format!("  {label}  {:<width$}  {}\n", c.subject, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("        {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_aligns_and_shows_fixes() {
        let checks = vec![
            Finding::new(Verdict::Ok, "ssh", "OpenSSH_9.2p1"),
            Finding::new(Verdict::Fail, "host key", "not pinned").fix("run `tunnelctl trust x`"),
        ];
        let text = render(&checks, false);
        assert!(text.contains("  ok    ssh       OpenSSH_9.2p1\n"), "{text}");
        assert!(text.contains("  FAIL  host key  not pinned\n"), "{text}");
        assert!(text.contains("fix: run `tunnelctl trust x`"), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
