//! One YAML document to one resource: the stream split into documents, the header
//! (`apiVersion`, `kind`, `metadata`) read leniently so that errors can name the resource,
//! then the spec strictly.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};
use serde_saphyr::MessageFormatter;

use super::positions::*;
use super::resource::*;
use super::words::*;
use crate::api::{API_VERSION, DEFAULT_NAMESPACE, Kind, ResourceKey, Spec};
use crate::diagnostic::Diagnostic;

/// Splits a YAML stream into documents by their `---` / `...` markers: (first line, text).
/// Exact, because YAML forbids a line starting with `---` or `...` inside any scalar.
pub(super) fn split_documents(text: &str) -> Vec<(usize, &str)> {
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
pub(super) fn first_content_line(doc: &str) -> Option<usize> {
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
pub(super) struct Metadata {
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
pub(super) struct Header {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
}

/// The name of a document that is not a Ferry resource, read leniently.
#[derive(Deserialize)]
pub(super) struct LooseMeta {
    #[serde(default)]
    name: Option<String>,
}

/// A parsed document: metadata and the spec of its kind.
pub(super) struct Document {
    metadata: Option<Metadata>,
    spec: Option<Spec>,
}

/// Parses a whole document in one pass, choosing the spec's type from `kind` (which
/// Kubernetes YAML writes first; a spec written before its kind is buffered, then typed).
pub(super) struct DocumentSeed<'a> {
    header: &'a RefCell<Header>,
}

pub(super) const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

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

pub(super) fn kind_of(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == name)
}

/// Types a spec that was written before its `kind`, keeping the failing field's path.
pub(super) fn spec_from_json(kind: Kind, value: serde_json::Value) -> Result<Spec, String> {
    fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
    }
    Ok(match kind {
        Kind::DeliveryTarget => Spec::DeliveryTarget(Box::new(typed(value)?)),
        Kind::ReportSchedule => Spec::ReportSchedule(typed(value)?),
        Kind::CustomerMapping => Spec::CustomerMapping(typed(value)?),
    })
}

pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options
}

/// A serde failure: (field path, line, col, message); line 0 when unknown.
pub(super) type Failure = (String, usize, usize, String);

/// Parses one document, turning a failure into a [`Failure`] with serde's wording made
/// clearer where it speaks of mechanics rather than of the user's YAML.
pub(super) fn parse_document(
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

pub(super) fn load_document(
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
