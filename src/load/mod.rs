//! Loading resources from YAML files: directories (recursive), multi-document files, dispatch
//! on `apiVersion`/`kind`, unknown fields rejected, and a position for every field so that
//! every later error can name file, line and column.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::diagnostic::Diagnostic;

mod document;
mod positions;
mod resource;
mod walk;
mod words;

use document::*;
pub use resource::*;
pub use walk::*;

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
pub(super) fn read_text(
    reader: &mut impl std::io::Read,
    file: &Path,
) -> Result<String, Box<Diagnostic>> {
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
