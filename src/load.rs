//! Loading resources from YAML files: directories (recursive), multi-document files, dispatch
//! on `apiVersion`/`kind`, unknown fields rejected, and a position for every field so that
//! every later error can name file, line and column.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use granit_parser::{Event, Parser};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::MessageFormatter;

use crate::api::{API_VERSION, DEFAULT_NAMESPACE, Kind, ResourceKey, Spec};
use crate::validate::Diagnostic;

/// Where a resource came from, and where each of its fields sits in that file.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file the document was read from.
    pub file: Arc<PathBuf>,
    /// Line (1-based) where the document starts.
    pub line: usize,
    positions: Arc<HashMap<String, (usize, usize)>>,
}

impl Origin {
    /// Line and column (1-based) of a field path such as `spec.deliverTo[0].target`. Falls back
    /// to the nearest ancestor that exists in the file (for missing fields), then the document.
    pub fn locate(&self, field_path: &str) -> (usize, usize) {
        let mut path = field_path;
        loop {
            if let Some(pos) = self.positions.get(path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return (self.line, 1),
            }
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
}

/// Everything read from a set of paths: the resources that parsed, and the errors of those
/// that did not. Loading never stops at the first error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Resources that parsed.
    pub resources: Vec<LoadedResource>,
    /// Located errors.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every `.yaml`/`.yml` file under `paths` (files are read whatever their extension;
/// `-` reads standard input). Directories are walked recursively in name order, skipping
/// hidden entries such as `.git` and `.ferry`.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                Ok(_) => load_text(Path::new("<stdin>"), &text, &mut loaded),
                Err(e) => loaded
                    .diagnostics
                    .push(Diagnostic::file(path, format!("cannot read: {e}"))),
            }
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = walk(path, &mut files) {
                    loaded.diagnostics.push(Diagnostic::file(path, e));
                }
            }
            Ok(_) => files.push(path.clone()),
            Err(e) => loaded
                .diagnostics
                .push(Diagnostic::file(path, format!("cannot read: {e}"))),
        }
    }
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&file, &text, &mut loaded),
            Err(e) => loaded
                .diagnostics
                .push(Diagnostic::file(&file, format!("cannot read: {e}"))),
        }
    }
    loaded
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory: {e}"))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
            || (entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) && path.is_dir());
        if is_dir {
            walk(&path, files)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Parses one file's text (possibly several documents) into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded) {
    let file = Arc::new(file.to_path_buf());
    let documents = match scan_documents(text) {
        Ok(docs) => docs,
        Err((line, col, message)) => {
            loaded.diagnostics.push(Diagnostic {
                file: file.as_ref().clone(),
                line,
                col,
                resource: None,
                field: String::new(),
                message: format!("invalid YAML: {message}"),
            });
            return;
        }
    };
    let line_starts = line_starts(text);
    for (i, doc) in documents.iter().enumerate() {
        if doc.empty {
            continue;
        }
        let start = line_starts[doc.first_line - 1];
        let end = documents
            .get(i + 1)
            .map(|next| line_starts[next.first_line - 1])
            .unwrap_or(text.len());
        let origin = Origin {
            file: file.clone(),
            line: doc.content_line,
            positions: Arc::new(doc.positions.clone()),
        };
        match load_document(&text[start..end], doc.first_line - 1, &origin) {
            Ok(resource) => loaded.resources.push(resource),
            Err(d) => loaded.diagnostics.push(*d),
        }
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    starts
}

/// Only what is needed to dispatch and to name the resource in errors.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeaderMeta>,
}

#[derive(Deserialize)]
struct HeaderMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// The full document of one kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: Metadata,
    spec: S,
    /// Accepted (objects exported from a cluster carry it) and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// `metadata` as users write it, also accepting (and ignoring) the server-set fields of an
/// object exported from a cluster.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    uid: Option<IgnoredAny>,
    #[serde(default)]
    resource_version: Option<IgnoredAny>,
    #[serde(default)]
    generation: Option<IgnoredAny>,
    #[serde(default)]
    creation_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<IgnoredAny>,
    #[serde(default)]
    managed_fields: Option<IgnoredAny>,
    #[serde(default)]
    finalizers: Option<IgnoredAny>,
    #[serde(default)]
    owner_references: Option<IgnoredAny>,
    #[serde(default)]
    generate_name: Option<IgnoredAny>,
    #[serde(default)]
    self_link: Option<IgnoredAny>,
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options
}

/// Deserializes `T` from one document, turning a failure into (field path, line, col, message).
fn deserialize<T: DeserializeOwned>(
    text: &str,
    line_offset: usize,
) -> Result<T, (String, usize, usize, String)> {
    // The failing field's path is kept aside: returning the error itself from the closure
    // stops serde-saphyr from reading on (and reporting trailing content instead).
    let mut failed_path = String::new();
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
                failed_path = e.path().to_string();
                e.into_inner()
            })
        });
    match result {
        Ok(value) => Ok(value),
        Err(err) => {
            let message = serde_saphyr::UserMessageFormatter
                .format_message(&err)
                .into_owned();
            let (line, col) = err
                .location()
                .map(|l| (l.line() as usize + line_offset, l.column() as usize))
                .unwrap_or((0, 0));
            let mut path = if failed_path == "." {
                String::new()
            } else {
                failed_path
            };
            let mut message = message;
            if message.contains("expected end of mapping after enum variant") {
                // `{daily: ..., weekly: ...}`: name the choice, not serde's mechanics.
                let chosen = path.rsplit('.').next().unwrap_or_default().to_string();
                if let Some(i) = path.rfind('.') {
                    path.truncate(i);
                }
                message = format!(
                    "give exactly one kind here: found `{chosen}` and another key after it"
                );
            }
            if message.contains("expected string key for externally tagged enum") {
                let choices = if path.ends_with("schedule") {
                    "daily, weekly, monthly, cron, every"
                } else if path.ends_with("format") {
                    "csv, xlsx, pdf"
                } else {
                    "the documented keys"
                };
                message = format!("give exactly one of {choices}");
            }
            Err((path, line, col, message))
        }
    }
}

fn load_document(
    text: &str,
    line_offset: usize,
    origin: &Origin,
) -> Result<LoadedResource, Box<Diagnostic>> {
    let fail = |key: Option<&ResourceKey>,
                (path, line, col, message): (String, usize, usize, String)| {
        let missing_field = message.starts_with("missing field");
        let mut d = origin.diagnostic(key, &path, message);
        // serde reports a missing field where it stopped reading (the last key); the mapping
        // that lacks it is where the user has to look.
        if line > 0 && !missing_field {
            d.line = line;
            d.col = col;
        }
        Box::new(d)
    };
    let header: Header = deserialize(text, line_offset).map_err(|e| fail(None, e))?;
    let api_version = header.api_version.unwrap_or_default();
    let kind_name = header.kind.unwrap_or_default();
    let name = header
        .metadata
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_default();
    let named =
        |kind: &str| (!kind.is_empty() && !name.is_empty()).then(|| format!("{kind}/{name}"));
    let with_name = |mut d: Diagnostic, kind: &str| {
        d.resource = named(kind);
        Box::new(d)
    };
    if api_version.is_empty() {
        return Err(Box::new(origin.diagnostic(
            None,
            "apiVersion",
            format!("missing apiVersion (expected {API_VERSION})"),
        )));
    }
    if api_version != API_VERSION {
        let d = origin.diagnostic(
            None,
            "apiVersion",
            format!("apiVersion `{api_version}` is not a Ferry resource (expected {API_VERSION})"),
        );
        return Err(with_name(d, &kind_name));
    }
    let kind = match Kind::ALL.into_iter().find(|k| k.as_str() == kind_name) {
        Some(kind) => kind,
        None => {
            let d = origin.diagnostic(
                None,
                "kind",
                format!(
                    "unknown kind `{kind_name}` (expected ReportSchedule, DeliveryTarget or CustomerMapping)"
                ),
            );
            return Err(with_name(d, &kind_name));
        }
    };
    let namespace = header
        .metadata
        .and_then(|m| m.namespace)
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let key = ResourceKey::new(kind, namespace, name);
    let (metadata, spec) = match kind {
        Kind::DeliveryTarget => {
            parse_envelope(text, line_offset, |s| Spec::DeliveryTarget(Box::new(s)))
        }
        Kind::ReportSchedule => parse_envelope(text, line_offset, Spec::ReportSchedule),
        Kind::CustomerMapping => parse_envelope(text, line_offset, Spec::CustomerMapping),
    }
    .map_err(|e| fail(Some(&key), e))?;
    Ok(LoadedResource {
        key,
        meta: Meta {
            labels: metadata.labels,
            annotations: metadata.annotations,
        },
        spec,
        origin: origin.clone(),
    })
}

fn parse_envelope<S: DeserializeOwned>(
    text: &str,
    line_offset: usize,
    wrap: fn(S) -> Spec,
) -> Result<(Metadata, Spec), (String, usize, usize, String)> {
    let envelope: Envelope<S> = deserialize(text, line_offset)?;
    Ok((envelope.metadata, wrap(envelope.spec)))
}

/// One document of a YAML stream, with the position of every field path in it.
struct ScannedDocument {
    /// First line of the document's text (its `---` line when explicit).
    first_line: usize,
    /// Line of the document's first node.
    content_line: usize,
    /// The document holds no node (e.g. a trailing `---`).
    empty: bool,
    positions: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map {
        path: String,
        /// The key whose value comes next, with the key's position.
        key: Option<(String, (usize, usize))>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

/// Walks the YAML events once, splitting documents and recording, for every field path
/// (`spec.deliverTo[0].target`), the line and column of its value (scalars) or key
/// (collections).
fn scan_documents(text: &str) -> Result<Vec<ScannedDocument>, (usize, usize, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut docs: Vec<ScannedDocument> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            (m.line(), m.col() + 1, e.info().to_string())
        })?;
        let pos = (span.start.line(), span.start.col() + 1);
        match event {
            Event::DocumentStart(..) => {
                docs.push(ScannedDocument {
                    first_line: span.start.line(),
                    content_line: span.start.line(),
                    empty: true,
                    positions: HashMap::new(),
                });
                stack.clear();
            }
            Event::Scalar(value, ..) | Event::UnresolvedAlias(value) => {
                let Some(doc) = docs.last_mut() else { continue };
                if stack.is_empty() && span.start.index() == span.end.index() {
                    // The implicit null of an empty document (`---` then nothing).
                    continue;
                }
                node(doc, &mut stack, pos, false, Some(value.as_ref()));
            }
            Event::Alias(_) => {
                let Some(doc) = docs.last_mut() else { continue };
                node(doc, &mut stack, pos, false, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let Some(doc) = docs.last_mut() else { continue };
                let path = node(doc, &mut stack, pos, true, None);
                if matches!(event, Event::MappingStart(..)) {
                    stack.push(Frame::Map { path, key: None });
                } else {
                    stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(docs)
}

/// Records one node; returns its path. `key_text` is the scalar text (used when the node is
/// a mapping key).
fn node(
    doc: &mut ScannedDocument,
    stack: &mut [Frame],
    pos: (usize, usize),
    collection: bool,
    key_text: Option<&str>,
) -> String {
    if doc.empty {
        doc.empty = false;
        doc.content_line = pos.0;
    }
    let Some(frame) = stack.last_mut() else {
        return String::new();
    };
    match frame {
        Frame::Map { path, key } => match key.take() {
            None => {
                // This node is a key.
                *key = Some((key_text.unwrap_or("?").to_string(), pos));
                String::new()
            }
            Some((k, key_at)) => {
                let child = if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                };
                let at = if collection { key_at } else { pos };
                doc.positions.insert(child.clone(), at);
                child
            }
        },
        Frame::Seq { path, index } => {
            let child = format!("{path}[{index}]");
            *index += 1;
            doc.positions.insert(child.clone(), pos);
            child
        }
    }
}
