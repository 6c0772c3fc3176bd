//! How `ferry check` shows its results: one line per check (text), a JSON document, or a
//! Markdown table for a pull-request comment.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CheckResult, Status};

/// Counts by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Checks that passed.
    pub ok: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks not made.
    pub skipped: usize,
}

impl Summary {
    /// The counts of `results`.
    pub fn of(results: &[CheckResult]) -> Summary {
        let count = |s: Status| results.iter().filter(|r| r.status == s).count();
        Summary {
            ok: count(Status::Ok),
            failed: count(Status::Failed),
            skipped: count(Status::Skipped),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} checks: {} ok, {} failed, {} skipped",
            self.ok + self.failed + self.skipped,
            self.ok,
            self.failed,
            self.skipped
        )
    }
}

/// `file:line`, or `state` for an applied resource.
fn location(r: &CheckResult) -> String {
    match r.line {
        0 => r.file.display().to_string(),
        line => format!("{}:{line}", r.file.display()),
    }
}

/// One line per check: `file:line: Kind/name: check: status[: message]`, then the counts.
pub fn text(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(
            out,
            "{}: {}/{}: {}: {}: {}",
            location(r),
            r.kind.as_str(),
            r.name,
            r.check,
            r.status.as_str(),
            r.message
        );
    }
    let _ = writeln!(out, "{}", Summary::of(results).line());
    out
}

/// `{"checks": [...], "summary": {"ok", "failed", "skipped"}}`.
pub fn json(results: &[CheckResult]) -> String {
    let doc = serde_json::json!({
        "checks": results,
        "summary": Summary::of(results),
    });
    serde_json::to_string_pretty(&doc).expect("check results serialize")
}

/// A Markdown report for a pull-request comment: failures first, in a table.
pub fn markdown(results: &[CheckResult]) -> String {
    let summary = Summary::of(results);
    let mut out = String::from("### ferry check\n\n");
    let _ = writeln!(
        out,
        "{} **{}**\n",
        if summary.failed == 0 { "✅" } else { "❌" },
        summary.line()
    );
    if results.is_empty() {
        return out;
    }
    out.push_str("| Status | Resource | Check | Where | Details |\n");
    out.push_str("|---|---|---|---|---|\n");
    let order = |s: &Status| match s {
        Status::Failed => 0,
        Status::Skipped => 1,
        Status::Ok => 2,
    };
    let mut sorted: Vec<&CheckResult> = results.iter().collect();
    sorted.sort_by_key(|r| order(&r.status));
    for r in sorted {
        let _ = writeln!(
            out,
            "| {} | `{}/{}` | {} | `{}` | {} |",
            r.status.as_str(),
            r.kind.as_str(),
            r.name,
            r.check,
            location(r),
            cell(&r.message)
        );
    }
    out
}

/// Text that stays inside one table cell.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Kind;

    fn result(status: Status, message: &str) -> CheckResult {
        CheckResult {
            kind: Kind::DeliveryTarget,
            namespace: "default".into(),
            name: "sftp-out".into(),
            check: "delivery".into(),
            file: "deploy/targets.yaml".into(),
            line: 7,
            status,
            message: message.into(),
        }
    }

    #[test]
    fn text_names_the_location_resource_check_and_outcome() {
        let out = text(&[result(Status::Failed, "login refused")]);
        assert_eq!(
            out,
            "deploy/targets.yaml:7: DeliveryTarget/sftp-out: delivery: failed: login refused\n\
             1 checks: 0 ok, 1 failed, 0 skipped\n"
        );
    }

    #[test]
    fn markdown_lists_failures_first_and_keeps_cells_whole() {
        let out = markdown(&[
            result(Status::Ok, "fine"),
            result(Status::Failed, "a | b\nc"),
        ]);
        assert!(
            out.contains("❌ **2 checks: 1 ok, 1 failed, 0 skipped**"),
            "{out}"
        );
        let failed = out.find("| failed |").unwrap();
        let ok = out.find("| ok |").unwrap();
        assert!(failed < ok, "{out}");
        assert!(out.contains("a \\| b c"), "{out}");
    }

    #[test]
    fn json_has_every_check_and_the_counts() {
        let doc: serde_json::Value =
            serde_json::from_str(&json(&[result(Status::Skipped, "why")])).unwrap();
        assert_eq!(doc["checks"][0]["status"], "skipped");
        assert_eq!(doc["checks"][0]["line"], 7);
        assert_eq!(doc["summary"]["skipped"], 1);
    }
}
