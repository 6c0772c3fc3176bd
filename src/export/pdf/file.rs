//! The PDF file, written one object at a time: a page's content goes to disk as soon as the
//! page is full, so a report of any length is written in the memory of one page. What only
//! the end knows (page count, the font subset) comes after the pages: PDF objects may appear
//! in any order, the cross-reference table at the end says where each one starts.
//!
//! Objects are serialized with lopdf (the library printpdf writes with, see [`serialize`]),
//! so every string, name and stream is escaped and framed the way printpdf's own output is;
//! only the file structure around them (header, `obj`/`endobj`, the cross-reference table
//! and the trailer) is written here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};

use lopdf::content::{Content, Operation};
use lopdf::{Dictionary, Object, ObjectId, Stream};

use crate::export::HashingWriter;
use crate::fsutil::WritebackFile;

/// The header: version, then a comment of four bytes above 127 telling transfer tools the
/// file is binary (ISO 32000-1, 7.5.2). 1.7: the embedded OpenType fonts (`/FontFile3`
/// `/OpenType`) need at least 1.6.
const HEADER: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n";

/// A PDF file being written, object by object.
pub(super) struct PdfFile {
    out: HashingWriter<BufWriter<WritebackFile>>,
    /// Byte offset of each object, by object number less one; `None` while only reserved.
    offsets: Vec<Option<u64>>,
}

impl PdfFile {
    /// Starts the file with its header.
    pub fn new(file: File) -> io::Result<PdfFile> {
        let mut out = HashingWriter::new(BufWriter::with_capacity(
            256 * 1024,
            WritebackFile::new(file),
        ));
        out.write_all(HEADER)?;
        Ok(PdfFile {
            out,
            offsets: Vec::new(),
        })
    }

    /// A new object number, for an object written later (one that others refer to before
    /// it is complete, like the page tree its pages name as parent).
    pub fn reserve(&mut self) -> ObjectId {
        self.offsets.push(None);
        (self.offsets.len() as u32, 0)
    }

    /// Writes `object` as the reserved object `id`.
    pub fn write(&mut self, id: ObjectId, object: Object) -> io::Result<()> {
        let bytes = serialize(object)?;
        let slot = &mut self.offsets[id.0 as usize - 1];
        assert!(slot.is_none(), "object {} written twice", id.0);
        *slot = Some(self.out.bytes());
        writeln!(self.out, "{} 0 obj", id.0)?;
        self.out.write_all(&bytes)?;
        self.out.write_all(b"\nendobj\n")
    }

    /// Writes `object` under a new number.
    pub fn add(&mut self, object: Object) -> io::Result<ObjectId> {
        let id = self.reserve();
        self.write(id, object)?;
        Ok(id)
    }

    /// Writes a content stream, Flate-compressed as printpdf compresses its streams.
    pub fn add_content(&mut self, content: Vec<u8>) -> io::Result<ObjectId> {
        let mut stream = Stream::new(Dictionary::new(), content);
        stream.compress().map_err(io_error)?;
        self.add(Object::Stream(stream))
    }

    /// Copies `root` and every object it refers to, directly or not, out of `doc` (a
    /// document printpdf made) into this file under new numbers; returns `root` with its
    /// references renumbered.
    pub fn import(&mut self, doc: &lopdf::Document, root: &Object) -> io::Result<Object> {
        let mut numbers: HashMap<ObjectId, ObjectId> = HashMap::new();
        let mut pending: Vec<ObjectId> = Vec::new();
        collect_references(root, &mut pending);
        let mut order = Vec::new();
        while let Some(old) = pending.pop() {
            if numbers.contains_key(&old) {
                continue;
            }
            let object = doc.get_object(old).map_err(|e| {
                io::Error::other(format!("printpdf's document lacks object {old:?}: {e}"))
            })?;
            numbers.insert(old, self.reserve());
            order.push(old);
            collect_references(object, &mut pending);
        }
        for old in order {
            let object = renumber(doc.get_object(old).map_err(io_error)?, &numbers);
            self.write(numbers[&old], object)?;
        }
        Ok(renumber(root, &numbers))
    }

    /// Ends the file: the cross-reference table, then the trailer (`trailer` plus `/Size`).
    /// Returns the file, flushed but not synced, and the SHA-256 of everything written.
    pub fn finish(mut self, mut trailer: Dictionary) -> io::Result<(File, [u8; 32])> {
        let start = self.out.bytes();
        let size = self.offsets.len() + 1;
        write!(self.out, "xref\n0 {size}\n0000000000 65535 f \n")?;
        for (i, offset) in self.offsets.iter().enumerate() {
            let offset = offset.ok_or_else(|| {
                io::Error::other(format!(
                    "PDF object {} was reserved but never written",
                    i + 1
                ))
            })?;
            // Each entry is exactly 20 bytes: 10-digit offset, generation, `n`, space, LF.
            writeln!(self.out, "{offset:010} 00000 n ")?;
        }
        trailer.set("Size", size as i64);
        self.out.write_all(b"trailer\n")?;
        let trailer = serialize(Object::Dictionary(trailer))?;
        self.out.write_all(&trailer)?;
        write!(self.out, "\nstartxref\n{start}\n%%EOF\n")?;
        let (buffered, hash) = self.out.into_parts();
        let file = buffered
            .into_inner()
            .map_err(|e| e.into_error())?
            .into_inner();
        Ok((file, hash))
    }
}

/// lopdf's serialization of `object`. lopdf keeps its object writer to itself, but its
/// content-stream encoder writes each operand with it, then a space and the operator: the
/// encoding of an operation without operator is the object and a space.
fn serialize(object: Object) -> io::Result<Vec<u8>> {
    let operation = Operation::new("", vec![object]);
    let mut bytes = Content {
        operations: vec![operation],
    }
    .encode()
    .map_err(io_error)?;
    if bytes.pop() != Some(b' ') {
        return Err(io::Error::other(
            "lopdf encoded an operand without its separator",
        ));
    }
    Ok(bytes)
}

/// Adds the objects `object` refers to to `out`.
fn collect_references(object: &Object, out: &mut Vec<ObjectId>) {
    match object {
        Object::Reference(id) => out.push(*id),
        Object::Array(items) => items.iter().for_each(|o| collect_references(o, out)),
        Object::Dictionary(dict) => dict.iter().for_each(|(_, o)| collect_references(o, out)),
        Object::Stream(stream) => stream
            .dict
            .iter()
            .for_each(|(_, o)| collect_references(o, out)),
        _ => {}
    }
}

/// `object` with its references renumbered by `numbers`.
fn renumber(object: &Object, numbers: &HashMap<ObjectId, ObjectId>) -> Object {
    let dict = |d: &Dictionary| -> Dictionary {
        let mut out = Dictionary::new();
        for (key, value) in d.iter() {
            out.set(key.clone(), renumber(value, numbers));
        }
        out
    };
    match object {
        Object::Reference(id) => Object::Reference(numbers[id]),
        Object::Array(items) => Object::Array(items.iter().map(|o| renumber(o, numbers)).collect()),
        Object::Dictionary(d) => Object::Dictionary(dict(d)),
        Object::Stream(s) => {
            let mut stream = s.clone();
            stream.dict = dict(&s.dict);
            Object::Stream(stream)
        }
        other => other.clone(),
    }
}

fn io_error(e: lopdf::Error) -> io::Error {
    match e {
        lopdf::Error::IO(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn name(n: &str) -> Object {
        Object::Name(n.as_bytes().to_vec())
    }

    /// The offsets the cross-reference table of `bytes` gives, by object number.
    fn table(bytes: &[u8]) -> Vec<usize> {
        let find = |needle: &[u8]| bytes.windows(needle.len()).rposition(|w| w == needle);
        let tail = &bytes[find(b"startxref\n").unwrap() + 10..];
        let start: usize = std::str::from_utf8(tail)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let table = std::str::from_utf8(&bytes[start..]).unwrap();
        let mut lines = table.lines();
        assert_eq!(lines.next(), Some("xref"));
        let size: usize = lines
            .next()
            .unwrap()
            .strip_prefix("0 ")
            .unwrap()
            .parse()
            .unwrap();
        // Fixed 20-byte entries (ISO 32000-1, 7.5.4).
        let entries = &table[table.find("0000000000 65535 f \n").unwrap()..];
        (0..size)
            .map(|i| {
                let entry = &entries[20 * i..20 * (i + 1)];
                assert!(
                    entry.ends_with(if i == 0 { " f \n" } else { " n \n" }),
                    "{entry:?}"
                );
                entry[..10].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn objects_are_indexed_by_the_cross_reference_table_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pdf");
        let mut pdf = PdfFile::new(File::create(&path).unwrap()).unwrap();
        let tree = pdf.reserve();
        let text = b"BT /F1 12 Tf 72 700 Td (Hello \\(world\\)) Tj ET\n".repeat(40);
        let content = pdf.add_content(text.clone()).unwrap();
        let page = Dictionary::from_iter([
            ("Type", name("Page")),
            ("Parent", Object::Reference(tree)),
            (
                "MediaBox",
                Object::Array([0, 0, 595, 842].map(Object::Integer).to_vec()),
            ),
            ("Contents", Object::Array(vec![Object::Reference(content)])),
        ]);
        let page = pdf.add(Object::Dictionary(page)).unwrap();
        let pages = Dictionary::from_iter([
            ("Type", name("Pages")),
            ("Count", Object::Integer(1)),
            ("Kids", Object::Array(vec![Object::Reference(page)])),
        ]);
        pdf.write(tree, Object::Dictionary(pages)).unwrap();
        let catalog = Dictionary::from_iter([
            ("Type", name("Catalog")),
            ("Pages", Object::Reference(tree)),
        ]);
        let catalog = pdf.add(Object::Dictionary(catalog)).unwrap();
        let trailer = Dictionary::from_iter([("Root", Object::Reference(catalog))]);
        let (file, hash) = pdf.finish(trailer).unwrap();
        drop(file);

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(&bytes)));
        assert!(bytes.starts_with(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n"));
        assert!(bytes.ends_with(b"%%EOF\n"));
        let offsets = table(&bytes);
        assert_eq!(offsets.len(), 5, "object 0 and four objects");
        for (number, &offset) in offsets.iter().enumerate().skip(1) {
            let at = &bytes[offset..];
            assert!(
                at.starts_with(format!("{number} 0 obj\n").as_bytes()),
                "entry {number} points at {:?}",
                String::from_utf8_lossy(&at[..20])
            );
        }
        let trailer = String::from_utf8_lossy(&bytes[bytes.len() - 100..]).into_owned();
        assert!(
            trailer.contains("/Size 5"),
            "the trailer counts the objects: {trailer}"
        );

        let doc = lopdf::Document::load_mem(&bytes).unwrap();
        let pages = doc.get_pages();
        assert_eq!(pages.len(), 1);
        let stream = doc.get_object(content).unwrap().as_stream().unwrap();
        assert_eq!(
            stream.dict.get(b"Filter").unwrap(),
            &name("FlateDecode"),
            "content streams are compressed"
        );
        assert!(stream.content.len() < text.len() / 4);
        assert!(
            stream.decompressed_content().unwrap() == text,
            "the content reads back"
        );
        assert!(
            doc.get_page_content(pages[&1]).starts_with(&text),
            "and is the page's"
        );
    }

    #[test]
    fn an_imported_object_brings_what_it_refers_to_under_new_numbers() {
        let mut source = lopdf::Document::with_version("1.7");
        let leaf = source.add_object(Object::Integer(7));
        let unrelated = source.add_object(Object::Integer(8));
        let middle = source.add_object(Dictionary::from_iter([
            ("Leaf", Object::Reference(leaf)),
            (
                "Twice",
                Object::Array(vec![Object::Reference(leaf), Object::Reference(leaf)]),
            ),
        ]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pdf");
        let mut pdf = PdfFile::new(File::create(&path).unwrap()).unwrap();
        pdf.add(Object::Null).unwrap();
        let root = pdf.import(&source, &Object::Reference(middle)).unwrap();
        assert_eq!(root, Object::Reference((2, 0)));
        let catalog = pdf
            .add(Object::Dictionary(Dictionary::from_iter([(
                "Imported", root,
            )])))
            .unwrap();
        let (file, _) = pdf
            .finish(Dictionary::from_iter([(
                "Root",
                Object::Reference(catalog),
            )]))
            .unwrap();
        drop(file);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            table(&bytes).len(),
            5,
            "the object before, two imported, the catalog"
        );
        let doc = lopdf::Document::load_mem(&bytes).unwrap();
        let middle = doc.get_dictionary((2, 0)).unwrap();
        let leaf = middle.get(b"Leaf").unwrap().as_reference().unwrap();
        assert_eq!(leaf, (3, 0));
        assert_eq!(doc.get_object(leaf).unwrap(), &Object::Integer(7));
        assert_eq!(
            middle.get(b"Twice").unwrap(),
            &Object::Array(vec![Object::Reference(leaf), Object::Reference(leaf)])
        );
        assert!(
            !doc.objects.values().any(|o| o == &Object::Integer(8)),
            "{unrelated:?} is not referred to and stays behind"
        );
    }

    #[test]
    fn a_reserved_object_never_written_fails_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut pdf = PdfFile::new(File::create(dir.path().join("t.pdf")).unwrap()).unwrap();
        pdf.reserve();
        let err = pdf.finish(Dictionary::new()).err().unwrap();
        assert!(err.to_string().contains("never written"), "{err}");
    }
}
