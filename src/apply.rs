//! `apply`'s plan and its account (pure): what each tunnel gets (added, changed,
//! unchanged, removed), the guard against removing most of a machine's tunnels, and the
//! one line per tunnel or the one JSON object that says what happened. The command that
//! computes and carries out the plan is `commands/apply.rs`; the files and init tools
//! are install's.

use crate::targets::Target;

/// What `apply` does to one tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// In the configuration, nothing of it installed yet: installed and started.
    Added,
    /// Installed, but its files differ from the rendering: rewritten and restarted.
    Changed,
    /// Installed exactly as rendered: not touched (not restarted).
    Unchanged,
    /// Installed by tunnelctl, gone from the configuration: stopped and removed.
    Removed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Changed => "changed",
            Action::Unchanged => "unchanged",
            Action::Removed => "removed",
        }
    }
}

/// One tunnel's part of the plan, and how carrying it out went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub action: Action,
    /// The unified diff of every file written (or that would be), empty when unchanged.
    pub diff: String,
    /// Why the step failed, and whether the tunnel was left as it was (`false`: its
    /// files are the new ones, but a later part, such as the restart, failed).
    pub failure: Option<Failure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error: String,
    pub left_as_it_was: bool,
}

impl Step {
    /// Whether this step changed the machine (or would, in a dry run).
    fn changes(&self) -> bool {
        self.action != Action::Unchanged && self.failure.as_ref().is_none_or(|f| !f.left_as_it_was)
    }
}

/// The whole account of one `apply` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub target: Target,
    pub dry_run: bool,
    pub steps: Vec<Step>,
}

impl Report {
    /// Something was changed (in a dry run: would be).
    pub fn changed(&self) -> bool {
        self.steps.iter().any(Step::changes)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.failure.is_some())
    }

    /// One line per tunnel: `web (systemd): added`.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let mut line = format!("{} ({}): {}", step.name, self.target, step.action.as_str());
            if self.dry_run && step.action != Action::Unchanged {
                line.push_str(" (dry run, nothing written)");
            }
            match &step.failure {
                Some(f) if f.left_as_it_was => line.push_str(" FAILED, left as it was"),
                Some(_) => line.push_str(" FAILED after its files were written"),
                None => {}
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The one object an engine reads (`apply --json`), documented in the man page.
    pub fn json(&self) -> serde_json::Value {
        let count = |a: Action| self.steps.iter().filter(|s| s.action == a).count();
        let diff: String = self.steps.iter().map(|s| s.diff.as_str()).collect();
        serde_json::json!({
            "schema": 1,
            "changed": self.changed(),
            "failed": self.failed().count() > 0,
            "dry_run": self.dry_run,
            "target": self.target.as_str(),
            "message": self.summary(),
            "counts": {
                "added": count(Action::Added),
                "changed": count(Action::Changed),
                "unchanged": count(Action::Unchanged),
                "removed": count(Action::Removed),
            },
            "tunnels": self.steps.iter().map(|s| serde_json::json!({
                "name": s.name,
                "action": s.action.as_str(),
                "diff": s.diff,
                "error": s.failure.as_ref().map(|f| f.error.as_str()),
                "left_as_it_was": s.failure.as_ref().map(|f| f.left_as_it_was),
            })).collect::<Vec<_>>(),
            "diff": diff,
        })
    }

    /// `2 added, 1 changed, 0 removed, 3 unchanged` (and the failures).
    pub fn summary(&self) -> String {
        let count = |a: Action| self.steps.iter().filter(|s| s.action == a).count();
        let mut text = format!(
            "{} added, {} changed, {} removed, {} unchanged",
            count(Action::Added),
            count(Action::Changed),
            count(Action::Removed),
            count(Action::Unchanged)
        );
        if self.dry_run {
            text.push_str(" (dry run, nothing written)");
        }
        let failed: Vec<&str> = self.failed().map(|s| s.name.as_str()).collect();
        if !failed.is_empty() {
            text.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        text
    }
}

/// Removing more than half of the installed tunnels needs `--prune-many`: a typo in a
/// fleet's template (a wrong variable, a half-rendered file) must not take every box
/// offline.
pub fn prune_guard(installed: usize, removing: &[&str], allowed: bool) -> Result<(), String> {
    if allowed || removing.is_empty() || removing.len() * 2 <= installed {
        return Ok(());
    }
    Err(format!(
        "this would stop and remove {} of the {installed} installed tunnels ({}): more than \
         half, which is more often a broken configuration than a wish. Nothing was changed. \
         If the configuration is right, run again with --prune-many",
        removing.len(),
        removing.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, action: Action) -> Step {
        Step {
            name: name.into(),
            action,
            diff: String::new(),
            failure: None,
        }
    }

    #[test]
    fn the_guard_allows_at_most_half() {
        assert!(prune_guard(4, &["a", "b"], false).is_ok());
        assert!(prune_guard(3, &["a"], false).is_ok());
        let refused = prune_guard(3, &["a", "b"], false).unwrap_err();
        assert!(refused.contains("2 of the 3") && refused.contains("--prune-many"));
        assert!(prune_guard(1, &["a"], false).is_err());
        assert!(prune_guard(1, &["a"], true).is_ok());
        assert!(prune_guard(0, &[], false).is_ok());
    }

    #[test]
    fn changed_counts_what_was_done_or_would_be() {
        let mut report = Report {
            target: Target::Systemd,
            dry_run: false,
            steps: vec![step("a", Action::Unchanged)],
        };
        assert!(!report.changed());
        assert_eq!(report.json()["changed"], false);
        report.steps.push(Step {
            failure: Some(Failure {
                error: "disk full".into(),
                left_as_it_was: true,
            }),
            ..step("b", Action::Added)
        });
        assert!(!report.changed(), "a step left as it was changed nothing");
        assert_eq!(report.json()["failed"], true);
        assert!(
            report
                .human()
                .contains("b (systemd): added FAILED, left as it was")
        );
        report.steps.push(step("c", Action::Removed));
        assert!(report.changed());
        let json = report.json();
        assert_eq!(json["tunnels"][2]["action"], "removed");
        assert_eq!(json["counts"]["removed"], 1);
        assert_eq!(
            json["message"],
            "1 added, 0 changed, 1 removed, 1 unchanged; failed: b"
        );
    }
}
