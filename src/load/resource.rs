//! What loading produces: a resource with its origin (file, document, field positions found
//! on first use), and the set of resources and problems of one load.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::positions::*;
use crate::api::{ResourceKey, Spec};
use crate::diagnostic::Diagnostic;

/// The text of one YAML document, with field positions computed on first use (only a
/// diagnostic needs them, so valid files never pay for the extra parse).
#[derive(Debug)]
pub(super) struct DocumentText {
    pub(super) text: String,
    /// Lines before the document in its file.
    pub(super) line_offset: usize,
    pub(super) positions: OnceLock<HashMap<String, (usize, usize)>>,
}

/// Where a resource came from, and where each of its fields sits in that file.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file the document was read from.
    pub file: Arc<PathBuf>,
    /// Line (1-based) of the document's first node.
    pub line: usize,
    pub(super) doc: Arc<DocumentText>,
}

impl Origin {
    /// Line and column (1-based) of a field path such as `spec.deliverTo[0].target`. Falls back
    /// to the nearest ancestor that exists in the file (for missing fields), then the document.
    pub fn locate(&self, field_path: &str) -> (usize, usize) {
        let positions = self
            .doc
            .positions
            .get_or_init(|| scan_positions(&self.doc.text, self.doc.line_offset));
        let mut path = field_path;
        loop {
            if let Some(pos) = positions.get(path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return (self.line, 1),
            }
        }
    }

    /// Line and column (1-based) of the character at `offset` of the string `value` found at
    /// `field_path` (a query written as a block or a quoted string): where a problem inside a
    /// value sits in the file. Falls back to the field's own position.
    pub fn locate_in_value(&self, field_path: &str, value: &str, offset: usize) -> (usize, usize) {
        match scalar_span(&self.doc.text, field_path) {
            Some((start, end, style)) => {
                let (line, col) =
                    position_in_scalar(&self.doc.text, start, end, style, value, offset);
                (line + self.doc.line_offset, col)
            }
            None => self.locate(field_path),
        }
    }

    /// The origin of a resource that was not read from a file (a cluster object), named by
    /// `label` in messages; its fields have no positions (line 1).
    pub fn unlocated(label: impl Into<PathBuf>) -> Origin {
        Origin {
            file: Arc::new(label.into()),
            line: 1,
            doc: Arc::new(DocumentText {
                text: String::new(),
                line_offset: 0,
                positions: OnceLock::from(HashMap::new()),
            }),
        }
    }

    /// `file:line` of the document, for plans.
    pub fn short(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// Builds a diagnostic located at `field_path` of this document.
    pub fn diagnostic(
        &self,
        resource: Option<&ResourceKey>,
        field_path: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, col) = self.locate(field_path);
        Diagnostic {
            file: self.file.as_ref().clone(),
            line,
            col,
            resource: resource.map(|k| format!("{}/{}", k.kind, k.name)),
            field: field_path.to_string(),
            message: message.into(),
        }
    }
}

/// Labels and annotations: the parts of `metadata` Ferry keeps and compares.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Meta {
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One resource read from a file.
#[derive(Clone, Debug)]
pub struct LoadedResource {
    /// Kind, namespace and name.
    pub key: ResourceKey,
    /// Labels and annotations.
    pub meta: Meta,
    /// The typed spec.
    pub spec: Spec,
    /// Where it came from.
    pub origin: Origin,
    /// The spec as canonical JSON, computed once (validation and planning both need it).
    pub(super) spec_json: OnceLock<Arc<serde_json::Value>>,
}

impl LoadedResource {
    /// A resource that was not read from a file: a cluster object, already typed.
    pub fn new(key: ResourceKey, meta: Meta, spec: Spec, origin: Origin) -> Self {
        LoadedResource {
            key,
            meta,
            spec,
            origin,
            spec_json: OnceLock::new(),
        }
    }

    /// The spec as canonical JSON, shared (not copied) with the desired state.
    pub fn spec_json(&self) -> &Arc<serde_json::Value> {
        self.spec_json.get_or_init(|| Arc::new(self.spec.to_json()))
    }
}

/// Everything read from a set of paths: the resources that parsed, and the errors of those
/// that did not. Loading never stops at the first error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Resources that parsed.
    pub resources: Vec<LoadedResource>,
    /// Located errors.
    pub diagnostics: Vec<Diagnostic>,
    /// Located problems that do not stop the command (a symlink loop, a directory reached
    /// twice): the entry concerned was skipped.
    pub warnings: Vec<Diagnostic>,
}
