//! Plan output: `text` (terraform-style, coloured on a terminal), `json` (versioned, for
//! tools) and `markdown` (for a pull-request comment).

use std::fmt::Write;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::model::{Action, Change, FieldChange, PasswordAction, Plan};

/// Output format of listings and plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON (documented, versioned).
    Json,
    /// Markdown, for pull-request comments.
    Markdown,
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn action(&self, a: Action, s: &str) -> String {
        self.paint(
            match a {
                Action::Create => "32",
                Action::Update => "33",
                Action::Delete => "31",
                Action::NoOp => "2",
            },
            s,
        )
    }
}

fn verb(a: Action) -> &'static str {
    match a {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Delete => "will be deleted",
        Action::NoOp => "is unchanged",
    }
}

fn title(c: &Change) -> String {
    if c.namespace == crate::api::DEFAULT_NAMESPACE {
        format!("{}/{}", c.kind, c.name)
    } else {
        format!("{}/{} (namespace {})", c.kind, c.name, c.namespace)
    }
}

/// Renders a value as YAML would show it (strings quoted only when needed for clarity).
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).expect("strings serialize"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn multiline(v: &Option<Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if s.contains('\n') => Some(s.as_str()),
        _ => None,
    }
}

/// Field lines of one change, without colour or indentation.
fn field_lines(c: &Change) -> Vec<(char, String)> {
    let width = c
        .fields
        .iter()
        .filter(|f| multiline(&f.before).is_none() && multiline(&f.after).is_none())
        .map(|f| f.path.len())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = Vec::new();
    for f in &c.fields {
        field(f, width, &mut out);
    }
    out
}

fn field(f: &FieldChange, width: usize, out: &mut Vec<(char, String)>) {
    let path = format!("{:width$}", f.path);
    if let (Some(a), Some(b)) = (
        multiline(&f.before).or(Some("")),
        multiline(&f.after).or(Some("")),
    ) && (multiline(&f.before).is_some() || multiline(&f.after).is_some())
    {
        // Multi-line text (a SQL query): a line diff reads better than two blobs.
        let sign = match (&f.before, &f.after) {
            (None, _) => '+',
            (_, None) => '-',
            _ => '~',
        };
        out.push((sign, format!("{} = <<EOT", f.path)));
        let diff = TextDiff::from_lines(a, b);
        for change in diff.iter_all_changes() {
            let (s, line) = match change.tag() {
                ChangeTag::Delete => ('-', change.value()),
                ChangeTag::Insert => ('+', change.value()),
                ChangeTag::Equal => (' ', change.value()),
            };
            out.push((s, format!("    {}", line.trim_end_matches('\n'))));
        }
        out.push((' ', "EOT".into()));
        return;
    }
    match (&f.before, &f.after) {
        (None, Some(b)) => out.push(('+', format!("{path} = {}", show(b)))),
        (Some(a), None) => out.push(('-', format!("{path} = {}", show(a)))),
        (Some(a), Some(b)) => out.push(('~', format!("{path} = {} -> {}", show(a), show(b)))),
        (None, None) => {}
    }
}

/// Terraform-style text. `color` adds ANSI colours (use only on a terminal).
pub fn text(plan: &Plan, color: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    for w in &plan.warnings {
        let _ = writeln!(out, "{} {w}", st.paint("33", "Warning:"));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    if !plan.summary.has_changes() {
        // A cluster plan's actual side is the live objects, not a state.
        let actual = if plan.lineage == super::model::CLUSTER_LINEAGE {
            "the live objects"
        } else {
            "the state"
        };
        let _ = writeln!(
            out,
            "No changes. {} resource(s) match {actual}.",
            plan.summary.unchanged
        );
    } else {
        let _ = writeln!(out, "Ferry will perform the following actions:\n");
    }
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let _ = writeln!(
            out,
            "  {}",
            st.paint("1", &format!("# {} {}", title(c), verb(c.action)))
        );
        let head = format!("{} {}", c.action.symbol(), title(c));
        let _ = write!(out, "  {}", st.action(c.action, &head));
        if let Some(src) = &c.source {
            let _ = write!(out, "  {}", st.paint("2", &format!("({src})")));
        }
        // A deletion has no source line: what it does (a CustomerMapping's deletionPolicy)
        // goes on its own line, where a reviewer looks.
        if c.action == Action::Delete && !c.notes.is_empty() {
            let _ = write!(
                out,
                " {}",
                st.paint("36", &format!("({})", c.notes.join("; ")))
            );
        }
        out.push('\n');
        for note in c.notes.iter().filter(|_| c.action != Action::Delete) {
            let _ = writeln!(out, "      {}", st.paint("36", &format!("> {note}")));
        }
        for (sign, line) in field_lines(c) {
            let a = match sign {
                '+' => Action::Create,
                '-' => Action::Delete,
                '~' => Action::Update,
                _ => Action::NoOp,
            };
            let _ = writeln!(out, "      {}", st.action(a, &format!("{sign} {line}")));
        }
        runs_text(c, &st, &mut out);
        out.push('\n');
    }
    if !plan.hosted_users.is_empty() {
        let _ = writeln!(out, "  {}", st.paint("1", "# hosted SFTP logins"));
        for u in &plan.hosted_users {
            let action = if u.action == Action::NoOp {
                Action::Update
            } else {
                u.action
            };
            let _ = writeln!(
                out,
                "  {}",
                st.action(action, &super::hosted_users::describe(u))
            );
        }
        out.push('\n');
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "  {}", st.paint("1", "# refreshed from the PSA"));
        for d in &plan.drift {
            let label = if d.error {
                st.paint("31", "Error:")
            } else {
                st.paint("33", "Drift:")
            };
            let _ = writeln!(
                out,
                "  {label} customermapping/{}{}: {}",
                d.name,
                if d.namespace == crate::api::DEFAULT_NAMESPACE {
                    String::new()
                } else {
                    format!(" (namespace {})", d.namespace)
                },
                d.message
            );
        }
        out.push('\n');
    }
    let unchanged: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::NoOp && !c.next_runs.is_empty())
        .collect();
    if !unchanged.is_empty() && plan.summary.has_changes() {
        let _ = writeln!(out, "  Next runs of unchanged schedules:");
        for c in unchanged.iter().take(20) {
            let first = &c.next_runs[0];
            let _ = writeln!(
                out,
                "      {}: {}  {}{}",
                c.name,
                first.at,
                first.file_name,
                if c.suspended { "  (suspended)" } else { "" }
            );
        }
        if unchanged.len() > 20 {
            let _ = writeln!(
                out,
                "      ... and {} more (see -o json)",
                unchanged.len() - 20
            );
        }
        out.push('\n');
    } else if !plan.summary.has_changes() {
        for c in unchanged.iter().take(20) {
            runs_text_named(c, &mut out);
        }
        if unchanged.len() > 20 {
            let _ = writeln!(
                out,
                "  ... and {} more schedules (see -o json)",
                unchanged.len() - 20
            );
        }
    }
    if plan.summary.has_changes() {
        let s = &plan.summary;
        let _ = writeln!(
            out,
            "{} {} to create, {} to update, {} to delete, {} unchanged{}.",
            st.paint("1", "Plan:"),
            s.create,
            s.update,
            s.delete,
            s.unchanged,
            passwords_text(plan)
        );
    }
    out
}

/// `, 1 password to generate` (or nothing).
fn passwords_text(plan: &Plan) -> String {
    let count = |a: PasswordAction| {
        plan.hosted_users
            .iter()
            .filter(|u| u.password == Some(a))
            .count()
    };
    let mut out = String::new();
    for (n, what) in [
        (count(PasswordAction::Generate), "to generate"),
        (count(PasswordAction::Drop), "to drop"),
    ] {
        if n > 0 {
            let _ = write!(
                out,
                ", {n} password{} {what}",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    out
}

fn runs_text(c: &Change, st: &Style, out: &mut String) {
    if c.next_runs.is_empty() {
        return;
    }
    let label = if c.suspended {
        "next slots (suspended: they run only with `ferry run-now`):"
    } else {
        "next runs:"
    };
    let _ = writeln!(out, "      {}", st.paint("36", label));
    for r in &c.next_runs {
        let _ = writeln!(out, "        {}  {}", r.at, r.file_name);
    }
}

fn runs_text_named(c: &Change, out: &mut String) {
    let _ = writeln!(
        out,
        "  {}{}",
        title(c),
        if c.suspended { " (suspended)" } else { "" }
    );
    for r in &c.next_runs {
        let _ = writeln!(out, "      {}  {}", r.at, r.file_name);
    }
}

/// The versioned JSON document.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("plans serialize to JSON") + "\n"
}

/// Markdown for a pull-request comment: a summary table and a collapsible diff per resource.
pub fn markdown(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Ferry plan: {} to create, {} to update, {} to delete, {} unchanged{}\n",
        s.create,
        s.update,
        s.delete,
        s.unchanged,
        passwords_text(plan)
    );
    for w in &plan.warnings {
        let _ = writeln!(out, "> **Warning:** {}", escape_md(w));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    if !s.has_changes() {
        out.push_str("No changes.\n");
    } else {
        out.push_str("| Action | Kind | Namespace | Name | Notes |\n|---|---|---|---|---|\n");
        for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            let _ = writeln!(
                out,
                "| {} {} | {} | {} | {} | {} |",
                c.action.symbol(),
                match c.action {
                    Action::Create => "create",
                    Action::Update => "update",
                    Action::Delete => "delete",
                    Action::NoOp => "no-op",
                },
                c.kind,
                c.namespace,
                escape_md(&c.name),
                escape_md(&c.notes.join("; "))
            );
        }
        out.push('\n');
        for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            let _ = writeln!(
                out,
                "<details><summary><code>{} {}</code></summary>\n\n```diff",
                c.action.symbol(),
                title(c)
            );
            for (sign, line) in field_lines(c) {
                let _ = writeln!(out, "{sign} {line}");
            }
            out.push_str("```\n");
            if !c.next_runs.is_empty() {
                out.push_str("\nNext runs");
                if c.suspended {
                    out.push_str(" (suspended)");
                }
                out.push_str(":\n\n");
                for r in &c.next_runs {
                    let _ = writeln!(out, "- `{}` `{}`", r.at, r.file_name);
                }
            }
            out.push_str("\n</details>\n\n");
        }
        if !plan.drift.is_empty() {
            out.push_str("Refreshed from the PSA:\n\n");
            for d in &plan.drift {
                let _ = writeln!(
                    out,
                    "- **{}** `customermapping/{}`: {}",
                    if d.error { "Error" } else { "Drift" },
                    d.name,
                    escape_md(&d.message)
                );
            }
            out.push('\n');
        }
        if !plan.hosted_users.is_empty() {
            out.push_str("Hosted SFTP logins:\n\n");
            for u in &plan.hosted_users {
                let _ = writeln!(out, "- `{}`", super::hosted_users::describe(u));
            }
            out.push('\n');
        }
    }
    out
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
