//! Loading resources from YAML files: directories (recursive), multi-document files, dispatch
//! on `apiVersion`/`kind`, unknown fields rejected, and a position for every field so that
//! every later error can name file, line and column.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use granit_parser::{Event, Parser};
use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};
use serde_saphyr::MessageFormatter;

use crate::api::{API_VERSION, DEFAULT_NAMESPACE, Kind, ResourceKey, Spec};
use crate::diagnostic::Diagnostic;

/// The text of one YAML document, with field positions computed on first use (only a
/// diagnostic needs them, so valid files never pay for the extra parse).
#[derive(Debug)]
struct DocumentText {
    text: String,
    /// Lines before the document in its file.
    line_offset: usize,
    positions: OnceLock<HashMap<String, (usize, usize)>>,
}

/// Where a resource came from, and where each of its fields sits in that file.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file the document was read from.
    pub file: Arc<PathBuf>,
    /// Line (1-based) of the document's first node.
    pub line: usize,
    doc: Arc<DocumentText>,
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
    spec_json: OnceLock<Arc<serde_json::Value>>,
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

/// At most this many YAML files are read for one command: `-f` pointed at the wrong
/// directory (a home directory, `/`) fails with a clear error instead of reading for minutes.
pub const MAX_FILES: usize = 50_000;

/// At most this many bytes of YAML are read for one command (10,000 resources are about
/// 9 MiB).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// At most this many directory entries are looked at while walking the `-f` directories.
pub const MAX_ENTRIES: usize = 500_000;

/// The YAML files under some paths, each once, with what was skipped and why.
#[derive(Debug, Default)]
pub struct FileList {
    /// The files to read, in order: each `-f` path in turn, directories walked in name order.
    pub files: Vec<PathBuf>,
    /// The sum of their sizes (as listed; a file that grows is cut at [`MAX_BYTES`]).
    pub bytes: u64,
    /// Paths that cannot be read, and a bound exceeded.
    pub errors: Vec<Diagnostic>,
    /// Entries skipped: symlink loops, directories or files reached twice, special files.
    pub warnings: Vec<Diagnostic>,
}

/// Lists the YAML files under `paths` (`-` is left out: standard input is not a file). A file
/// given directly is read whatever its extension (a pipe such as `<(...)` too); directories
/// are walked in name order, skipping hidden entries such as `.git` and `.ferry`, following
/// symlinks, but visiting each directory and file once (by device and inode): a symlink that
/// leads back to a directory being walked is a loop, reported as a warning and skipped.
pub fn list_files(paths: &[PathBuf]) -> FileList {
    let mut walk = Walk::default();
    for path in paths {
        if path.as_os_str() == "-" {
            continue;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk.directory(path, &m),
            Ok(m) => walk.file(path, &m, true),
            Err(e) => walk
                .list
                .errors
                .push(Diagnostic::file(path, format!("cannot read: {e}"))),
        }
        if walk.stopped {
            break;
        }
    }
    walk.list
}

/// The state of one [`list_files`].
#[derive(Default)]
struct Walk {
    list: FileList,
    /// Directories seen, by (device, inode), with the path they were first reached by.
    dirs: HashMap<(u64, u64), PathBuf>,
    /// Files seen, likewise.
    seen_files: HashMap<(u64, u64), PathBuf>,
    entries: usize,
    /// A bound was exceeded: nothing more is listed.
    stopped: bool,
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl Walk {
    fn warn(&mut self, path: &Path, message: String) {
        self.list.warnings.push(Diagnostic::path(path, message));
    }

    fn stop(&mut self, path: &Path, message: String) {
        self.list.errors.push(Diagnostic::path(path, message));
        self.stopped = true;
    }

    /// A file to read; `explicit` when named by `-f` (then any kind of file is read).
    fn file(&mut self, path: &Path, meta: &std::fs::Metadata, explicit: bool) {
        if !meta.is_file() && !explicit {
            self.warn(
                path,
                "not a regular file (a pipe, socket or device): skipped".to_string(),
            );
            return;
        }
        if meta.is_file() {
            if let Some(first) = self.seen_files.get(&file_id(meta)) {
                let message = format!(
                    "the same file as {} (a link, or given twice): read once",
                    first.display()
                );
                self.warn(path, message);
                return;
            }
            self.seen_files.insert(file_id(meta), path.to_path_buf());
            self.list.bytes += meta.len();
        }
        self.list.files.push(path.to_path_buf());
        if self.list.files.len() > MAX_FILES {
            self.stop(
                path,
                format!(
                    "more than {MAX_FILES} YAML files to read: point -f at the directory that holds the resources"
                ),
            );
        } else if self.list.bytes > MAX_BYTES {
            self.stop(
                path,
                format!(
                    "more than {} MiB of YAML to read: point -f at the directory that holds the resources",
                    MAX_BYTES / (1024 * 1024)
                ),
            );
        }
    }

    /// Walks a directory depth-first in name order, without recursion (a deep tree cannot
    /// exhaust the stack). Each frame holds the directory's identity, so a symlink that leads
    /// to one of them is recognised as a loop.
    fn directory(&mut self, root: &Path, meta: &std::fs::Metadata) {
        let id = file_id(meta);
        if let Some(first) = self.dirs.get(&id) {
            let message = format!(
                "the same directory as {} (given twice, or inside another -f path): read once",
                first.display()
            );
            self.warn(root, message);
            return;
        }
        self.dirs.insert(id, root.to_path_buf());
        let mut stack: Vec<(PathBuf, (u64, u64), std::vec::IntoIter<PathBuf>)> = Vec::new();
        match self.entries_of(root) {
            Some(entries) => stack.push((root.to_path_buf(), id, entries.into_iter())),
            None => return,
        }
        while let Some((_, _, entries)) = stack.last_mut() {
            if self.stopped {
                return;
            }
            let Some(path) = entries.next() else {
                stack.pop();
                continue;
            };
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // A dangling symlink: an error only where a resource file was expected.
                Err(e) if is_yaml => {
                    self.list
                        .errors
                        .push(Diagnostic::file(&path, format!("cannot read: {e}")));
                    continue;
                }
                Err(_) => continue,
            };
            if meta.is_dir() {
                let id = file_id(&meta);
                if let Some((ancestor, _, _)) = stack.iter().find(|(_, a, _)| *a == id) {
                    let message = format!(
                        "symlink loop: leads back to {}, which is being read: skipped",
                        ancestor.display()
                    );
                    self.warn(&path, message);
                    continue;
                }
                if let Some(first) = self.dirs.get(&id) {
                    let message = format!(
                        "the same directory as {} (a symlink): read once",
                        first.display()
                    );
                    self.warn(&path, message);
                    continue;
                }
                self.dirs.insert(id, path.clone());
                if let Some(entries) = self.entries_of(&path) {
                    stack.push((path, id, entries.into_iter()));
                }
            } else if is_yaml {
                self.file(&path, &meta, false);
            }
        }
    }

    /// The non-hidden entries of a directory, sorted by name; counts them against
    /// [`MAX_ENTRIES`].
    fn entries_of(&mut self, dir: &Path) -> Option<Vec<PathBuf>> {
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) => {
                self.list
                    .errors
                    .push(Diagnostic::path(dir, format!("cannot read directory: {e}")));
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in read.flatten() {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                self.stop(
                    dir,
                    format!(
                        "more than {MAX_ENTRIES} directory entries to look at: point -f at the directory that holds the resources"
                    ),
                );
                return None;
            }
            let name = entry.file_name();
            if !name.as_encoded_bytes().starts_with(b".") {
                names.push(name);
            }
        }
        names.sort();
        Some(names.into_iter().map(|n| dir.join(n)).collect())
    }
}

/// Reads every `.yaml`/`.yml` file under `paths` (see [`list_files`]; `-` reads standard
/// input), each once, within [`MAX_FILES`] and [`MAX_BYTES`].
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    let list = list_files(paths);
    loaded.diagnostics.extend(list.errors);
    loaded.warnings.extend(list.warnings);
    if paths.iter().any(|p| p.as_os_str() == "-") {
        match read_text(&mut std::io::stdin().lock(), Path::new("<stdin>")) {
            Ok(text) => load_text(Path::new("<stdin>"), &text, &mut loaded),
            Err(d) => loaded.diagnostics.push(*d),
        }
    }
    let files = list.files;
    // Files parse independently: spread them over the cores, keep the results in file order.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Loaded> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|group| {
                scope.spawn(move || {
                    let mut part = Loaded::default();
                    for file in group {
                        let text = std::fs::File::open(file)
                            .map_err(|e| {
                                Box::new(Diagnostic::file(file, format!("cannot read: {e}")))
                            })
                            .and_then(|mut f| read_text(&mut f, file));
                        match text {
                            Ok(text) => load_text(file, &text, &mut part),
                            Err(d) => part.diagnostics.push(*d),
                        }
                    }
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a loader thread panicked"))
            .collect()
    });
    for part in parts {
        loaded.resources.extend(part.resources);
        loaded.diagnostics.extend(part.diagnostics);
    }
    loaded
}

/// Reads UTF-8 text, at most [`MAX_BYTES`]. A byte that is not UTF-8 is reported at its own
/// line and column.
fn read_text(reader: &mut impl std::io::Read, file: &Path) -> Result<String, Box<Diagnostic>> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Box::new(Diagnostic::file(file, format!("cannot read: {e}"))))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Box::new(Diagnostic::path(
            file,
            format!(
                "more than {} MiB of YAML: not read",
                MAX_BYTES / (1024 * 1024)
            ),
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // Everything before the bad byte is valid UTF-8.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .count()
            + 1;
        Box::new(Diagnostic {
            file: file.to_path_buf(),
            line,
            col,
            resource: None,
            field: String::new(),
            message: format!(
                "byte 0x{:02X} is not UTF-8 text: save the file as UTF-8",
                bytes[valid]
            ),
        })
    })
}

/// Parses one file's text (possibly several documents) into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded) {
    let file = Arc::new(file.to_path_buf());
    for (first_line, slice) in split_documents(text) {
        let Some(content_line) = first_content_line(slice) else {
            continue; // an empty document: only separators, blanks and comments
        };
        let origin = Origin {
            file: file.clone(),
            line: first_line + content_line,
            doc: Arc::new(DocumentText {
                text: slice.to_string(),
                line_offset: first_line - 1,
                positions: OnceLock::new(),
            }),
        };
        match load_document(slice, first_line - 1, &origin) {
            Ok(resource) => loaded.resources.push(resource),
            Err(d) => loaded.diagnostics.push(*d),
        }
    }
}

/// Splits a YAML stream into documents by their `---` / `...` markers: (first line, text).
/// Exact, because YAML forbids a line starting with `---` or `...` inside any scalar.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let is_marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let mut docs = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        if is_marker(line, "---") && offset > start {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
        if is_marker(line, "...") {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = line_no + 1;
        }
    }
    if start < text.len() {
        docs.push((start_line, &text[start..]));
    }
    docs
}

/// Index (0-based) of the first line holding YAML content, if any.
fn first_content_line(doc: &str) -> Option<usize> {
    doc.lines().position(|line| {
        let body = line
            .strip_prefix("---")
            .or_else(|| line.strip_prefix("..."))
            .unwrap_or(line)
            .trim();
        !body.is_empty() && !body.starts_with('#') && !line.starts_with('%')
    })
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

/// What a document says about itself, recorded while it is parsed so that an error later in
/// the document can still name its kind and resource.
#[derive(Default)]
struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

/// The name of a document that is not a Ferry resource, read leniently.
#[derive(Deserialize)]
struct LooseMeta {
    #[serde(default)]
    name: Option<String>,
}

/// A parsed document: metadata and the spec of its kind.
struct Document {
    metadata: Option<Metadata>,
    spec: Option<Spec>,
}

/// Parses a whole document in one pass, choosing the spec's type from `kind` (which
/// Kubernetes YAML writes first; a spec written before its kind is buffered, then typed).
struct DocumentSeed<'a> {
    header: &'a RefCell<Header>,
}

const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Document;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Document, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Ferry resource (a mapping with apiVersion, kind, metadata and spec)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut doc = Document {
            metadata: None,
            spec: None,
        };
        let mut buffered: Option<serde_json::Value> = None;
        while let Some(key) = map.next_key::<String>()? {
            let foreign = {
                let h = self.header.borrow();
                h.api_version.as_deref().is_some_and(|v| v != API_VERSION)
                    || h.kind.as_deref().is_some_and(|k| kind_of(k).is_none())
            };
            match key.as_str() {
                "apiVersion" => self.header.borrow_mut().api_version = Some(map.next_value()?),
                "kind" => self.header.borrow_mut().kind = Some(map.next_value()?),
                "metadata" if foreign => {
                    // Not ours, but its name makes the error easier to find.
                    let m: LooseMeta = map.next_value()?;
                    self.header.borrow_mut().name = m.name;
                }
                "metadata" => {
                    let m: Metadata = map.next_value()?;
                    let mut h = self.header.borrow_mut();
                    h.name = Some(m.name.clone());
                    h.namespace = m.namespace.clone();
                    doc.metadata = Some(m);
                }
                "spec" if !foreign => {
                    let kind = self.header.borrow().kind.as_deref().and_then(kind_of);
                    match kind {
                        Some(Kind::DeliveryTarget) => {
                            doc.spec = Some(Spec::DeliveryTarget(Box::new(map.next_value()?)))
                        }
                        Some(Kind::ReportSchedule) => {
                            doc.spec = Some(Spec::ReportSchedule(map.next_value()?))
                        }
                        Some(Kind::CustomerMapping) => {
                            doc.spec = Some(Spec::CustomerMapping(map.next_value()?))
                        }
                        None => buffered = Some(map.next_value()?),
                    }
                }
                "status" => {
                    // Objects exported from a cluster carry it: accepted and ignored.
                    map.next_value::<IgnoredAny>()?;
                }
                other if foreign => {
                    let _ = other;
                    map.next_value::<IgnoredAny>()?;
                }
                other => return Err(de::Error::unknown_field(other, TOP_FIELDS)),
            }
        }
        if let (Some(value), Some(kind)) = (
            buffered,
            self.header.borrow().kind.as_deref().and_then(kind_of),
        ) {
            doc.spec = Some(spec_from_json(kind, value).map_err(de::Error::custom)?);
        }
        Ok(doc)
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}

/// Types a spec that was written before its `kind`, keeping the failing field's path.
fn spec_from_json(kind: Kind, value: serde_json::Value) -> Result<Spec, String> {
    fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
    }
    Ok(match kind {
        Kind::DeliveryTarget => Spec::DeliveryTarget(Box::new(typed(value)?)),
        Kind::ReportSchedule => Spec::ReportSchedule(typed(value)?),
        Kind::CustomerMapping => Spec::CustomerMapping(typed(value)?),
    })
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options
}

/// A serde failure: (field path, line, col, message); line 0 when unknown.
type Failure = (String, usize, usize, String);

/// Parses one document, turning a failure into a [`Failure`] with serde's wording made
/// clearer where it speaks of mechanics rather than of the user's YAML.
fn parse_document(
    text: &str,
    line_offset: usize,
    header: &RefCell<Header>,
) -> Result<Document, Failure> {
    // The failing field's path is kept aside: returning the error itself from the closure
    // stops serde-saphyr from reading on (and reporting trailing content instead).
    let mut failed_path = String::new();
    let result =
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            let mut track = serde_path_to_error::Track::new();
            let result = DocumentSeed { header }
                .deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
            result.inspect_err(|_| failed_path = track.path().to_string())
        });
    let err = match result {
        Ok(doc) => return Ok(doc),
        Err(err) => err,
    };
    let (line, col) = err
        .location()
        .map(|l| (l.line() as usize + line_offset, l.column() as usize))
        .unwrap_or((0, 0));
    let mut path = if failed_path == "." {
        String::new()
    } else {
        failed_path
    };
    if let Some(key) = duplicate_key(&err) {
        // serde saw the second key before it knew its name: the path ends in `?`.
        let parent = path.strip_suffix(".?").unwrap_or(&path).to_string();
        path = if parent.is_empty() || parent == "?" {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        };
        let first = scan_positions(text, line_offset).get(&path).copied();
        let message = match first {
            Some((first_line, first_col)) if (first_line, first_col) != (line, col) => format!(
                "duplicate key `{key}`: it is already given at line {first_line}, column {first_col} (each key once per mapping)"
            ),
            _ => format!("duplicate key `{key}` (each key once per mapping)"),
        };
        return Err((path, line, col, message));
    }
    if is_limit(&err) {
        // `status.f[2][5][6][6][0]` says nothing more than `status.f`.
        path.truncate(path.find('[').unwrap_or(path.len()));
    }
    let mut message = in_words(&err, &path, text).unwrap_or_else(|| {
        serde_saphyr::UserMessageFormatter
            .format_message(&err)
            .into_owned()
    });
    if let Some((line, col, syntax)) = syntax_error(text) {
        // A type error is often the symptom of a syntax error further on: report the cause.
        return Err((
            String::new(),
            line + line_offset,
            col,
            if syntax.contains("recursion limit exceeded") {
                "invalid YAML: brackets or indentation nest too deeply (a resource needs a few \
                 levels; a file this deep is not one)"
                    .to_string()
            } else {
                format!("invalid YAML: {syntax}")
            },
        ));
    }
    if path.is_empty()
        && let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
    {
        path = field.to_string();
    }
    if let Some(rest) = message.strip_prefix("spec.")
        && let Some((inner_path, inner_message)) = rest.split_once(": ")
    {
        // A buffered spec (written before its kind) reports its own path.
        path = format!("spec.{inner_path}");
        message = inner_message.to_string();
    }
    if message.contains("expected end of mapping after enum variant") {
        // `{daily: ..., weekly: ...}`: name the choice, not serde's mechanics.
        let chosen = path.rsplit('.').next().unwrap_or_default().to_string();
        if let Some(i) = path.rfind('.') {
            path.truncate(i);
        }
        message = format!("give exactly one kind here: found `{chosen}` and another key after it");
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

fn load_document(
    text: &str,
    line_offset: usize,
    origin: &Origin,
) -> Result<LoadedResource, Box<Diagnostic>> {
    let header = RefCell::new(Header::default());
    let parsed = parse_document(text, line_offset, &header);
    let header = header.into_inner();
    let api_version = header.api_version.unwrap_or_default();
    let kind_name = header.kind.unwrap_or_default();
    let name = header.name.unwrap_or_default();
    let kind = kind_of(&kind_name);
    let named =
        |kind: &str| (!kind.is_empty() && !name.is_empty()).then(|| format!("{kind}/{name}"));
    let located = |field: &str, message: String| {
        let mut d = origin.diagnostic(None, field, message);
        d.resource = named(&kind_name);
        Box::new(d)
    };
    let doc = match parsed {
        Ok(doc) => doc,
        Err((path, line, col, message)) => {
            // Header problems explain a failure better than its symptom.
            if api_version.is_empty() || api_version == API_VERSION && kind.is_some() {
                let missing_field = message.starts_with("missing field");
                let mut d = located(&path, message);
                // serde reports a missing field where it stopped reading (the last key); the
                // mapping that lacks it is where the user has to look.
                if line > 0 && !missing_field {
                    d.line = line;
                    d.col = col;
                }
                return Err(d);
            }
            Document {
                metadata: None,
                spec: None,
            }
        }
    };
    if api_version.is_empty() {
        return Err(located(
            "apiVersion",
            format!("missing apiVersion (expected {API_VERSION})"),
        ));
    }
    if api_version != API_VERSION {
        return Err(located(
            "apiVersion",
            format!("apiVersion `{api_version}` is not a Ferry resource (expected {API_VERSION})"),
        ));
    }
    let Some(kind) = kind else {
        return Err(located(
            "kind",
            format!(
                "unknown kind `{kind_name}` (expected ReportSchedule, DeliveryTarget or CustomerMapping)"
            ),
        ));
    };
    let Some(metadata) = doc.metadata else {
        return Err(located("metadata", "missing field `metadata`".into()));
    };
    let Some(spec) = doc.spec else {
        return Err(located("spec", "missing field `spec`".into()));
    };
    let namespace = metadata
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    Ok(LoadedResource {
        key: ResourceKey::new(kind, namespace, metadata.name),
        meta: Meta {
            labels: metadata.labels,
            annotations: metadata.annotations,
        },
        spec,
        origin: origin.clone(),
        spec_json: OnceLock::new(),
    })
}

/// Whether the error is a YAML size limit (aliases expanded too far).
fn is_limit(err: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match err {
        E::Budget { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => true,
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => is_limit(error),
        _ => false,
    }
}

/// The key of a duplicate-key error.
fn duplicate_key(err: &serde_saphyr::Error) -> Option<&str> {
    match err {
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => Some(key.as_deref().unwrap_or("?")),
        serde_saphyr::Error::AliasError { error, .. }
        | serde_saphyr::Error::WithSnippet { error, .. } => duplicate_key(error),
        _ => None,
    }
}

/// serde-saphyr's error in the user's words where its own speak of Rust types (`invalid u32`)
/// or of the parser's limits (`Nodes { nodes: 250001 }`): what was expected, with its range,
/// and what was found. `None` when its own message is clear already.
fn in_words(err: &serde_saphyr::Error, path: &str, text: &str) -> Option<String> {
    use serde_saphyr::Error as E;
    let found = |location: &serde_saphyr::Location| {
        found_at(text, location.line() as usize, location.column() as usize)
    };
    Some(match err {
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => {
            return in_words(error, path, text);
        }
        E::InvalidScalar { ty, location } => {
            format!(
                "expected {}, found {}",
                expected_words(ty, path),
                found(location)
            )
        }
        E::InvalidBooleanStrict { location } => {
            format!("expected true or false, found {}", found(location))
        }
        E::NullIntoString { location } => {
            format!("expected a string, found {}", found(location))
        }
        E::Unexpected { expected, location } => format!(
            "expected {}, found {}",
            expected_words(expected, path),
            found(location)
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!(
            "expected {}, found {unexpected}",
            expected_words(expected, path)
        ),
        E::ExternallyTaggedEnumExpectedScalarOrMapping { location } => format!(
            "expected exactly one of {} (a mapping), found {}",
            choices(path),
            found(location)
        ),
        E::Budget { breach, .. } => limit_words(breach),
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "its aliases (`*name`) expand into too much data: YAML aliases are limited, so a small \
             file cannot grow into gigabytes in memory; write the repeated parts out"
                .to_string()
        }
        _ => return None,
    })
}

/// A YAML size limit, as a sentence.
fn limit_words(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let what = match breach {
        B::Nodes { nodes } => format!(
            "more than {} values (it reached {nodes}, most likely aliases `*name` repeating an anchor)",
            nodes - 1
        ),
        B::Events { events } => format!("more than {} YAML events ({events})", events - 1),
        B::Aliases { aliases } => format!("more than {} aliases (`*name`)", aliases - 1),
        B::Anchors { anchors } => format!("more than {} anchors (`&name`)", anchors - 1),
        B::Depth { depth } => format!("nesting deeper than {} levels", depth - 1),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("{total_scalar_bytes} bytes of text values")
        }
        other => format!("too much of something ({other:?})"),
    };
    format!(
        "the document holds {what}: YAML input is limited so that a small file cannot use all \
         memory; a Ferry resource needs far less"
    )
}

/// The resource kinds to choose from at an enum-valued field.
fn choices(path: &str) -> &'static str {
    if path.ends_with("schedule") {
        "daily, weekly, monthly, cron, every"
    } else if path.ends_with("format") {
        "csv, xlsx, pdf"
    } else {
        "the documented keys"
    }
}

/// What a field expects, in words: the type, and the range where the field has one.
fn expected_words(ty: &str, path: &str) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    let range = match field {
        "port" => Some("a port number from 1 to 65535"),
        "attempts" | "historyLimit" => Some("a whole number from 1 to 4294967295"),
        "day" => Some("a day of the month from 1 to 31"),
        _ => None,
    };
    let words = match ty.trim_start_matches("a ").trim_start_matches("an ") {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "boolean" => "true or false",
        "char" => "a single character",
        "string scalar" | "string" | "str" => "a string",
        "mapping start" | "mapping" | "map" | "struct" => {
            if path.is_empty() {
                "a Ferry resource (a mapping with apiVersion, kind, metadata and spec)"
            } else {
                "a mapping (`key: value` lines)"
            }
        }
        "sequence start" | "sequence" => "a list (`- item` lines or `[a, b]`)",
        other => return range.map_or_else(|| other.to_string(), str::to_string),
    };
    match range {
        Some(r) if !matches!(ty, "string scalar" | "mapping start" | "sequence start") => {
            r.to_string()
        }
        _ => words.to_string(),
    }
}

/// What the YAML holds at a 1-based line and column, in words: a scalar as written (quoted
/// when it was), `a list`, `a mapping`.
fn found_at(text: &str, line: usize, col: usize) -> String {
    use granit_parser::ScalarStyle;
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let (l, c) = (span.start.line(), span.start.col() + 1);
        if l > line {
            break;
        }
        if (l, c) != (line, col) {
            continue;
        }
        return match event {
            Event::Scalar(value, style, ..) => {
                let mut shown: String = value.chars().take(40).collect();
                if value.chars().count() > 40 {
                    shown.push('…');
                }
                match style {
                    ScalarStyle::Plain if value.is_empty() || value == "~" || value == "null" => {
                        "nothing (an empty value)".to_string()
                    }
                    ScalarStyle::Plain => format!("`{shown}`"),
                    _ => format!("the text {shown:?}"),
                }
            }
            Event::SequenceStart(..) => "a list".to_string(),
            Event::MappingStart(..) => "a mapping".to_string(),
            Event::Alias(..) => "an alias".to_string(),
            _ => continue,
        };
    }
    "something else".to_string()
}

/// The first syntax error of a document, if any: (line, column, message).
fn syntax_error(text: &str) -> Option<(usize, usize, String)> {
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        if let Err(e) = event {
            let m = e.marker();
            let mut col = m.col() + 1;
            let info = e.info().to_string();
            // The parser stops after a tab it refuses: point at the tab.
            if info.contains("tab")
                && col > 1
                && text
                    .lines()
                    .nth(m.line().saturating_sub(1))
                    .and_then(|l| l.chars().nth(col - 2))
                    == Some('\t')
            {
                col -= 1;
            }
            return Some((m.line(), col, info));
        }
    }
    None
}

/// The source span (start and end character index) and style of the scalar at `field_path`.
fn scalar_span(text: &str, field_path: &str) -> Option<(usize, usize, granit_parser::ScalarStyle)> {
    let mut parser = Parser::new_from_str(text);
    let mut positions = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(Ok((event, span))) = parser.next_event() {
        let pos = (span.start.line(), span.start.col() + 1);
        match event {
            Event::Scalar(value, style, ..) => {
                let path = node(&mut positions, &mut stack, pos, false, Some(value.as_ref()));
                if path == field_path {
                    return Some((span.start.index(), span.end.index(), style));
                }
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                node(&mut positions, &mut stack, pos, false, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = node(&mut positions, &mut stack, pos, true, None);
                if matches!(event, Event::MappingStart(..)) {
                    stack.push(Frame::Map { path, key: None });
                } else {
                    stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    None
}

/// Where the character `target` of a scalar's value sits in the source, (line, column) within
/// `text`. The value is aligned with its source greedily: each visible character of the value
/// is the next equal character of the source, so a block's indentation, folded line breaks,
/// quotes and escapes are stepped over.
fn position_in_scalar(
    text: &str,
    start: usize,
    end: usize,
    style: granit_parser::ScalarStyle,
    value: &str,
    target: usize,
) -> (usize, usize) {
    use granit_parser::ScalarStyle;
    let source: Vec<char> = text.chars().collect();
    let end = end.min(source.len());
    let mut i = start.min(end);
    match style {
        // Content starts on the line after the `|` or `>` header (and its comment), when the
        // span starts at the header.
        ScalarStyle::Literal | ScalarStyle::Folded if matches!(source.get(i), Some('|' | '>')) => {
            while i < end && source[i] != '\n' {
                i += 1;
            }
            i = (i + 1).min(end);
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => i = (i + 1).min(end),
        _ => {}
    }
    let mut at = i;
    for (k, c) in value.chars().enumerate() {
        if c.is_whitespace() {
            if i < end && source[i].is_whitespace() {
                at = i;
                i += 1;
            }
        } else if let Some(j) = (i..end).find(|&j| source[j] == c) {
            at = j;
            i = j + 1;
        }
        if k == target {
            break;
        }
    }
    if target >= value.chars().count() {
        at = i.min(end.saturating_sub(1)).max(start);
    }
    let before = &source[..at];
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let col = at - before.iter().rposition(|&c| c == '\n').map_or(0, |p| p + 1) + 1;
    (line, col)
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

/// Walks one document's YAML events, recording for every field path
/// (`spec.deliverTo[0].target`) the line and column of its value (scalars) or key
/// (collections). On a syntax error, the positions seen so far.
fn scan_positions(text: &str, line_offset: usize) -> HashMap<String, (usize, usize)> {
    let mut parser = Parser::new_from_str(text);
    let mut positions = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(Ok((event, span))) = parser.next_event() {
        let pos = (span.start.line() + line_offset, span.start.col() + 1);
        match event {
            Event::Scalar(value, ..) | Event::UnresolvedAlias(value) => {
                node(&mut positions, &mut stack, pos, false, Some(value.as_ref()));
            }
            Event::Alias(_) => {
                node(&mut positions, &mut stack, pos, false, Some("*"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = node(&mut positions, &mut stack, pos, true, None);
                if matches!(event, Event::MappingStart(..)) {
                    stack.push(Frame::Map { path, key: None });
                } else {
                    stack.push(Frame::Seq { path, index: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    positions
}

/// Records one node; returns its path. `key_text` is the scalar text (used when the node is
/// a mapping key).
fn node(
    positions: &mut HashMap<String, (usize, usize)>,
    stack: &mut [Frame],
    pos: (usize, usize),
    collection: bool,
    key_text: Option<&str>,
) -> String {
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
                // A duplicate key keeps the first position (its error names the first).
                positions.entry(child.clone()).or_insert(at);
                child
            }
        },
        Frame::Seq { path, index } => {
            let child = format!("{path}[{index}]");
            *index += 1;
            positions.insert(child.clone(), pos);
            child
        }
    }
}
