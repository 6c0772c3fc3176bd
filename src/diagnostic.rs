//! One located problem in the input: file, line and column, the resource, the field path and
//! the message. Structured so that each edge renders it its own way (a `path:line:col: ...`
//! line for the CLI, a condition message for the controller, JSON for `-o json`); it sits at
//! the bottom of the module tree, so loading, validation and errors all use it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One located problem, rendered as `path:line:col: Kind/name: field.path: message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub col: usize,
    /// `Kind/name`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Field path such as `spec.schedule.daily.at`; empty for whole-document problems.
    pub field: String,
    /// What is wrong, and what is expected.
    pub message: String,
}

impl Diagnostic {
    /// A problem with a whole file (unreadable, missing).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            resource: None,
            field: String::new(),
            message: message.into(),
        }
    }

    /// A problem with a path as a whole (a directory, a bound exceeded): no line and column
    /// (0 in JSON), rendered `path: message`.
    pub fn path(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            line: 0,
            col: 0,
            ..Diagnostic::file(path, message)
        }
    }

    /// The warning rendering: `path:line:col: warning: message`.
    pub fn as_warning(&self) -> String {
        let mut plain = self.clone();
        plain.message = format!("warning: {}", self.message);
        plain.to_string()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Groups diagnostics by file, for summaries.
pub fn count_by_file(diags: &[Diagnostic]) -> BTreeMap<&Path, usize> {
    let mut out = BTreeMap::new();
    for d in diags {
        *out.entry(d.file.as_path()).or_default() += 1;
    }
    out
}
