//! CSV report files: RFC 4180 quoting (a field is quoted only when it holds the delimiter, a
//! quote, CR or LF; quotes inside are doubled), a configurable one-byte delimiter, an optional
//! header row, CRLF or LF line endings, and UTF-8, UTF-8 with a byte order mark or Shift_JIS.
//!
//! Rows are encoded into one buffer that is hashed and written to the file whole records at
//! a time, so [`FormatWriter::finish`] returns the file's SHA-256 without reading it back. The
//! hot path allocates nothing per row: text cells are written from the value's own bytes,
//! every other cell is rendered with [`Value::to_text`] into one reused buffer. The quoting
//! is the `csv` crate's `QuoteStyle::Necessary`, byte for byte (a record of one empty field
//! is written `""`, so that its line is not blank), without its per-field state machine:
//! exports write millions of fields.
//!
//! Shift_JIS cannot represent every character. A row (or the header) holding one that it
//! cannot encode is an [`Error::Export`] naming the row, the column and the character; the
//! row is not written, and neither is anything after it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use encoding_rs::{EncoderResult, SHIFT_JIS};
use jiff::tz::TimeZone;

use super::{ColumnSpec, FormatContext, FormatWriter, HashingWriter, Value};
use crate::api::{Column, CsvEncoding, CsvFormat, LineEnding};
use crate::fsutil::WritebackFile;
use crate::source::{Encoding, FieldWriter, RecordEncoder};
use crate::{Error, Result};

/// Encoded rows are written to the file (and hashed) once this much is pending.
const FLUSH_AT: usize = 256 * 1024;
/// The UTF-8 byte order mark written first by the `utf-8-bom` encoding.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Writes CSV files. See the [module documentation](self).
pub struct CsvWriter {
    path: PathBuf,
    /// `None` once finished.
    file: Option<HashingWriter<WritebackFile>>,
    /// Encoded records not yet written to the file; only whole records.
    pending: Vec<u8>,
    fields: FieldEncoder,
    header: bool,
    time_zone: TimeZone,
    /// Column headers, for error messages (and the header row).
    headers: Vec<String>,
    /// Scratch buffer for rendering non-text cells; reused for every cell.
    text: String,
    /// Set by an error: nothing more is written.
    failed: bool,
}

/// The fields of one record: the header row or a row of values.
#[derive(Clone, Copy)]
enum Cells<'a> {
    Headers(&'a [String]),
    Values(&'a [Value]),
}

/// How fields and records are written: the character encoding, which bytes make a field
/// quoted, the delimiter and the line ending.
#[derive(Clone)]
struct FieldEncoder {
    /// `quoted[b]`: a field holding byte `b` is quoted.
    quoted: [bool; 256],
    delimiter: u8,
    line_ending: &'static [u8],
    shift_jis: bool,
    /// Shift_JIS only: the current field, encoded.
    encoded: Vec<u8>,
}

impl FieldEncoder {
    fn new(delimiter: u8, line_ending: LineEnding, shift_jis: bool) -> FieldEncoder {
        let mut quoted = [false; 256];
        for b in [delimiter, b'"', b'\r', b'\n'] {
            quoted[usize::from(b)] = true;
        }
        FieldEncoder {
            quoted,
            delimiter,
            line_ending: match line_ending {
                LineEnding::Crlf => b"\r\n",
                LineEnding::Lf => b"\n",
            },
            shift_jis,
            encoded: Vec::new(),
        }
    }

    /// Appends field number `index` of a record (0-based) to `out` in the file's encoding,
    /// after a delimiter unless it is the first, quoted when it must be. Fails with the
    /// first character Shift_JIS cannot represent (leaving `out` with a partial record the
    /// caller discards).
    fn field(
        &mut self,
        index: usize,
        text: &str,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), char> {
        if !self.shift_jis {
            self.bytes(index, text.as_bytes(), out);
            return Ok(());
        }
        let mut encoded = std::mem::take(&mut self.encoded);
        encoded.clear();
        let result = encode_shift_jis(text, &mut encoded);
        if result.is_ok() {
            self.bytes(index, &encoded, out);
        }
        self.encoded = encoded;
        result
    }

    /// Whether `field` holds a byte that makes it quoted: eight bytes at a time, as a
    /// byte-by-byte scan is the export's hottest loop.
    fn needs_quotes(&self, field: &[u8]) -> bool {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // Whether a byte of `word` equals the byte repeated in `byte` (exact: "has a zero
        // byte" of the XOR).
        let holds = |word: u64, byte: u64| {
            let x = word ^ byte;
            x.wrapping_sub(ONES) & !x & HIGHS != 0
        };
        let [delimiter, quote, cr, lf] =
            [self.delimiter, b'"', b'\r', b'\n'].map(|b| u64::from(b) * ONES);
        let mut words = field.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if holds(word, delimiter) | holds(word, quote) | holds(word, cr) | holds(word, lf) {
                return true;
            }
        }
        words
            .remainder()
            .iter()
            .any(|&b| self.quoted[usize::from(b)])
    }

    /// Whether `field` holds a byte that makes it quoted, and whether it holds a byte that is
    /// not ASCII: one pass, eight bytes at a time, for text read straight from a source.
    fn scan(&self, field: &[u8]) -> (bool, bool) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        // The high bit of each byte of `word` that equals the byte repeated in `byte`, and
        // perhaps of a byte after such a byte (the borrow): exact as to whether any does.
        let equal = |word: u64, byte: u64| {
            let x = word ^ byte;
            x.wrapping_sub(ONES) & !x & HIGHS
        };
        let [delimiter, quote, cr, lf] =
            [self.delimiter, b'"', b'\r', b'\n'].map(|b| u64::from(b) * ONES);
        let (mut special, mut high) = (0, 0);
        let mut words = field.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            special |=
                equal(word, delimiter) | equal(word, quote) | equal(word, cr) | equal(word, lf);
            high |= word;
        }
        let (mut quoted, mut ascii) = (special != 0, high & HIGHS == 0);
        for &b in words.remainder() {
            quoted |= self.quoted[usize::from(b)];
            ascii &= b.is_ascii();
        }
        (quoted, !ascii)
    }

    /// Appends a field of UTF-8 text a source read (see [`FieldWriter::text`]); refuses
    /// bytes that are not UTF-8, leaving `out` with a partial record the caller discards.
    fn text(
        &self,
        index: usize,
        field: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), std::str::Utf8Error> {
        let (quoted, non_ascii) = self.scan(field);
        if non_ascii {
            std::str::from_utf8(field)?;
        }
        if index > 0 {
            out.push(self.delimiter);
        }
        if quoted {
            self.quote(field, out);
        } else {
            out.extend_from_slice(field);
        }
        Ok(())
    }

    /// Appends an encoded field (see [`FieldEncoder::field`]).
    fn bytes(&self, index: usize, field: &[u8], out: &mut Vec<u8>) {
        if index > 0 {
            out.push(self.delimiter);
        }
        if !self.needs_quotes(field) {
            out.extend_from_slice(field);
            return;
        }
        self.quote(field, out);
    }

    /// Appends `field` quoted, its quotes doubled.
    fn quote(&self, field: &[u8], out: &mut Vec<u8>) {
        out.push(b'"');
        for part in field.split_inclusive(|&b| b == b'"') {
            out.extend_from_slice(part);
            if part.last() == Some(&b'"') {
                out.push(b'"');
            }
        }
        out.push(b'"');
    }

    /// Ends the record that started at `start` in `out`. A record with no bytes at all (one
    /// empty field) is written `""`, so that a reader does not take it for a blank line.
    fn end_record(&self, start: usize, out: &mut Vec<u8>) {
        if out.len() == start {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(self.line_ending);
    }
}

impl CsvWriter {
    /// Creates (truncates) the file at `path` and writes the byte order mark when the
    /// encoding asks for one. `opts.delimiter` must be one ASCII character other than a
    /// quote, CR or LF.
    pub fn create(path: &Path, opts: &CsvFormat, ctx: &FormatContext) -> Result<Self> {
        let delimiter = parse_delimiter(&opts.delimiter)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut pending = Vec::with_capacity(FLUSH_AT + 64 * 1024);
        if opts.encoding == CsvEncoding::Utf8Bom {
            pending.extend_from_slice(UTF8_BOM);
        }
        Ok(CsvWriter {
            path: path.to_path_buf(),
            file: Some(HashingWriter::new(WritebackFile::new(file))),
            pending,
            fields: FieldEncoder::new(
                delimiter,
                opts.line_ending,
                opts.encoding == CsvEncoding::ShiftJis,
            ),
            header: opts.header,
            time_zone: ctx.time_zone.clone(),
            headers: Vec::new(),
            text: String::with_capacity(64),
            failed: false,
        })
    }

    /// Fails once the file was abandoned after an error or finished.
    fn check_open(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Export(
                "the CSV file was abandoned after an earlier error".into(),
            ));
        }
        if self.file.is_none() {
            return Err(Error::Export("the CSV file is already finished".into()));
        }
        Ok(())
    }

    /// Stops after an error: the records before the failing one are written (the failing
    /// one was taken back), nothing after.
    fn abandon(&mut self) {
        let _ = self.flush();
        self.failed = true;
    }

    /// Writes the pending records to the file.
    fn flush(&mut self) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Export("the CSV file is already finished".into()))?;
        file.write_all(&self.pending)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pending.clear();
        Ok(())
    }

    /// Appends one record to the pending output. `row` names the record in an error (`row
    /// 12`, `header row`); a record that fails is not written.
    fn record(&mut self, row: impl FnOnce() -> String, cells: Cells<'_>) -> Result<()> {
        let CsvWriter {
            pending,
            fields,
            text,
            headers,
            time_zone,
            ..
        } = self;
        let start = pending.len();
        let count = match cells {
            Cells::Headers(h) => h.len(),
            Cells::Values(v) => v.len(),
        };
        for i in 0..count {
            let cell = match cells {
                Cells::Headers(h) => h[i].as_str(),
                Cells::Values(v) => cell_text(&v[i], time_zone, text),
            };
            if let Err(c) = fields.field(i, cell, pending) {
                pending.truncate(start);
                let header = match cells {
                    Cells::Headers(h) => h[i].as_str(),
                    Cells::Values(_) => headers.get(i).map_or("", String::as_str),
                };
                return Err(unencodable(&row(), header, c));
            }
        }
        fields.end_record(start, pending);
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }
}

/// UTF-8 CSV records encoded where the source decodes the rows (see [`Encoding`]): the
/// fields, quoting and rendering of [`CsvWriter::row`], byte for byte, for the selected
/// columns in their order.
struct CsvRecords {
    fields: FieldEncoder,
    time_zone: TimeZone,
    /// The query column of each file column.
    picks: Vec<usize>,
    /// Whether the file's columns are the query's, in order.
    in_order: bool,
    /// Scratch buffer for rendering non-text cells.
    text: String,
    /// Whether values other than text render without a byte that makes a field quoted: the
    /// delimiter is none of the characters numbers, dates, instants, booleans and hex are
    /// written with. Those values then skip the scan.
    plain_values: bool,
}

/// Whether no rendering of a value other than text can hold `delimiter` (see
/// [`Value::to_text`]: digits, `-+.:T`, `true`, `false`, `NaN`, `inf`, hex digits; a
/// decimal's digits, sign, point and exponent), nor a quote, CR or LF.
fn values_render_plain(delimiter: u8) -> bool {
    !delimiter.is_ascii_alphanumeric() && !b"-+.:".contains(&delimiter)
}

impl CsvRecords {
    /// Appends field `i` of the record: `value`.
    fn cell(&mut self, i: usize, value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Text(s) => self.fields.bytes(i, s.as_bytes(), out),
            _ if self.plain_values => {
                if i > 0 {
                    out.push(self.fields.delimiter);
                }
                value.to_text(&self.time_zone, out);
            }
            other => {
                let cell = cell_text(other, &self.time_zone, &mut self.text);
                self.fields.bytes(i, cell.as_bytes(), out);
            }
        }
    }
}

impl RecordEncoder for CsvRecords {
    fn encode(&mut self, row: &[Value], out: &mut Vec<u8>) {
        let start = out.len();
        for i in 0..self.picks.len() {
            self.cell(i, &row[self.picks[i]], out);
        }
        self.fields.end_record(start, out);
    }

    fn fields(&mut self) -> Option<&mut dyn FieldWriter> {
        self.in_order.then_some(self as &mut dyn FieldWriter)
    }
}

impl FieldWriter for CsvRecords {
    fn text(
        &mut self,
        index: usize,
        text: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), std::str::Utf8Error> {
        self.fields.text(index, text, out)
    }

    fn value(&mut self, index: usize, value: &Value, out: &mut Vec<u8>) {
        self.cell(index, value, out);
    }

    fn end(&mut self, start: usize, out: &mut Vec<u8>) {
        self.fields.end_record(start, out);
    }
}

/// How a source may encode the records of a CSV file itself: UTF-8 files (with or without a
/// byte order mark) only, as Shift_JIS may refuse a row (and the error names the row, which a
/// split read cannot know). `selection` picks the columns, as for the header row.
pub fn record_encoding(
    opts: &CsvFormat,
    ctx: &FormatContext,
    selection: &[Column],
) -> Result<Option<Encoding>> {
    if opts.encoding == CsvEncoding::ShiftJis {
        return Ok(None);
    }
    let delimiter = parse_delimiter(&opts.delimiter)?;
    let fields = FieldEncoder::new(delimiter, opts.line_ending, false);
    let time_zone = ctx.time_zone.clone();
    let selection = selection.to_vec();
    Ok(Some(Arc::new(move |names: &[String]| {
        let (_, picks) = super::format::select_columns(names, &selection)?;
        let in_order = picks.len() == names.len() && picks.iter().enumerate().all(|(i, &p)| i == p);
        Ok(Box::new(CsvRecords {
            fields: fields.clone(),
            time_zone: time_zone.clone(),
            picks,
            in_order,
            text: String::with_capacity(64),
            plain_values: values_render_plain(delimiter),
        }) as Box<dyn RecordEncoder>)
    })))
}

/// The error for a character Shift_JIS cannot encode; `row` is `row 12` or `header row`.
fn unencodable(row: &str, header: &str, c: char) -> Error {
    Error::Export(format!(
        "{row}, column \"{header}\": the character '{c}' (U+{:04X}) cannot be encoded in \
         Shift_JIS",
        c as u32
    ))
}

/// The delimiter byte of `delimiter`, which must be one ASCII character that is not a quote,
/// CR or LF.
fn parse_delimiter(delimiter: &str) -> Result<u8> {
    match delimiter.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\r' | b'\n') => Ok(*b),
        _ => Err(Error::Export(format!(
            "the CSV delimiter must be one ASCII character other than a quote, CR or LF, not \
             {delimiter:?}"
        ))),
    }
}

/// Appends `text` in Shift_JIS to `out`, or returns the first character Shift_JIS cannot
/// represent (leaving `out` with a partial field the caller discards).
fn encode_shift_jis(text: &str, out: &mut Vec<u8>) -> std::result::Result<(), char> {
    let mut encoder = SHIFT_JIS.new_encoder();
    let needed = encoder
        .max_buffer_length_from_utf8_without_replacement(text.len())
        .unwrap_or(usize::MAX);
    out.reserve(needed);
    let (result, _read) = encoder.encode_from_utf8_to_vec_without_replacement(text, out, true);
    match result {
        EncoderResult::InputEmpty => Ok(()),
        EncoderResult::Unmappable(c) => Err(c),
        // Unreachable: the buffer was reserved for the worst case.
        EncoderResult::OutputFull => Err('\u{FFFD}'),
    }
}

/// The text of a cell: text and decimals as they are, everything else rendered into `buf`.
fn cell_text<'a>(value: &'a Value, tz: &TimeZone, buf: &'a mut String) -> &'a str {
    match value {
        Value::Text(s) | Value::Decimal(s) => s,
        Value::Null => "",
        other => {
            buf.clear();
            other.to_text(tz, buf);
            buf
        }
    }
}

impl FormatWriter for CsvWriter {
    fn begin(&mut self, columns: &[ColumnSpec]) -> Result<()> {
        self.check_open()?;
        self.headers = columns.iter().map(|c| c.header.clone()).collect();
        if !self.header {
            return Ok(());
        }
        let headers = std::mem::take(&mut self.headers);
        let result = self.record(|| "header row".into(), Cells::Headers(&headers));
        self.headers = headers;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn row(&mut self, index: u64, values: &[Value]) -> Result<()> {
        self.check_open()?;
        let result = super::check_row_width(index, values, self.headers.len())
            .and_then(|()| self.record(|| format!("row {index}"), Cells::Values(values)));
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn records(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_open()?;
        // After the header or rows still pending; a chunk of records is large enough to go
        // to the file as it is, without a copy.
        if !self.pending.is_empty() {
            self.flush()?;
        }
        let file = self.file.as_mut().expect("checked above");
        file.write_all(bytes).map_err(|e| Error::io(&self.path, e))
    }

    fn finish(mut self: Box<Self>) -> Result<Option<[u8; 32]>> {
        self.check_open()?;
        self.flush()?;
        let (file, sha256) = self.file.take().expect("checked above").into_parts();
        file.into_inner()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(Some(sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_must_be_one_ascii_character_other_than_quote_or_newline() {
        assert_eq!(parse_delimiter(",").unwrap(), b',');
        assert_eq!(parse_delimiter("\t").unwrap(), b'\t');
        assert_eq!(parse_delimiter(";").unwrap(), b';');
        for bad in ["", ",,", "\"", "\n", "\r", "、"] {
            assert!(parse_delimiter(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// The encoder writes what the `csv` crate writes with `QuoteStyle::Necessary`, for every
    /// delimiter, line ending and awkward field.
    #[test]
    fn fields_and_records_are_quoted_exactly_like_the_csv_crate() {
        let pieces = [
            "", "a", ",", ";", "\t", "\"", "\r", "\n", "\r\n", " ", "é", "x\"y", "|", "0",
        ];
        let mut records: Vec<Vec<String>> =
            vec![vec![String::new()], vec![], vec!["".into(), "".into()]];
        for a in pieces {
            for b in pieces {
                records.push(vec![format!("{a}{b}")]);
                records.push(vec![a.into(), b.into(), format!("{b}{a}{b}")]);
            }
        }
        for delimiter in [b',', b';', b'\t', b'|', b'0'] {
            for line_ending in [LineEnding::Crlf, LineEnding::Lf] {
                let mut reference = ::csv::WriterBuilder::new()
                    .delimiter(delimiter)
                    .terminator(match line_ending {
                        LineEnding::Crlf => ::csv::Terminator::CRLF,
                        LineEnding::Lf => ::csv::Terminator::Any(b'\n'),
                    })
                    .quote_style(::csv::QuoteStyle::Necessary)
                    .flexible(true)
                    .has_headers(false)
                    .from_writer(Vec::new());
                let mut fields = FieldEncoder::new(delimiter, line_ending, false);
                let mut ours = Vec::new();
                for record in &records {
                    reference.write_record(record).unwrap();
                    let start = ours.len();
                    for (i, field) in record.iter().enumerate() {
                        fields.field(i, field, &mut ours).unwrap();
                    }
                    fields.end_record(start, &mut ours);
                }
                let reference = reference.into_inner().unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&reference),
                    "delimiter {:?}",
                    delimiter as char
                );
            }
        }
    }

    /// Records a source encodes are the rows the writer writes, byte for byte, for every kind
    /// of value and delimiters inside and outside the characters values are written with.
    #[test]
    fn encoded_records_are_the_rows_the_writer_writes() {
        use jiff::civil::{date, time};
        let instant: jiff::Timestamp = "2024-07-01T12:00:00.25Z".parse().unwrap();
        let rows = vec![
            vec![
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Int(-42),
                Value::Int(i64::MIN),
                Value::Float(2.5),
                Value::Float(-1e20),
                Value::Float(f64::NAN),
                Value::Float(f64::NEG_INFINITY),
                Value::Decimal("-0.001".into()),
            ],
            vec![
                Value::Text("a,b;c\td|e-f.g:hT0 x\"y\r\nz".into()),
                Value::Text(String::new()),
                Value::Bytes(vec![0xde, 0xad, 0x01]),
                Value::Bytes(Vec::new()),
                Value::Date(date(2024, 2, 29)),
                Value::Date(date(-1, 1, 1)),
                Value::Time(time(7, 5, 0, 250_000_000)),
                Value::DateTime(date(9999, 12, 31).at(23, 59, 58, 1)),
                Value::Timestamp(instant),
                Value::Timestamp(jiff::Timestamp::MIN),
            ],
            vec![Value::Null; 10],
            [
                Value::Decimal("+1.5E-3".into()),
                Value::Decimal("12.50".into()),
            ]
            .into_iter()
            .chain(vec![Value::Null; 8])
            .collect(),
        ];
        let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let specs: Vec<ColumnSpec> = names
            .iter()
            .map(|n| ColumnSpec {
                name: n.clone(),
                header: n.clone(),
            })
            .collect();
        let ctx = FormatContext {
            title: "t".into(),
            generated_at: instant.to_zoned(TimeZone::get("Asia/Kathmandu").unwrap()),
            time_zone: TimeZone::get("Asia/Kathmandu").unwrap(),
        };
        let dir = tempfile::tempdir().unwrap();
        for delimiter in [
            ",", ";", "\t", "|", " ", "-", "+", ".", ":", "T", "0", "e", "a", "N", "f",
        ] {
            assert_eq!(
                values_render_plain(delimiter.as_bytes()[0]),
                ",;\t| ".contains(delimiter)
            );
            for line_ending in [LineEnding::Crlf, LineEnding::Lf] {
                let opts = CsvFormat {
                    delimiter: delimiter.into(),
                    header: false,
                    encoding: CsvEncoding::Utf8,
                    line_ending,
                };
                let path = dir.path().join("rows.csv");
                let mut writer = CsvWriter::create(&path, &opts, &ctx).unwrap();
                writer.begin(&specs).unwrap();
                for (i, row) in rows.iter().enumerate() {
                    writer.row(i as u64 + 1, row).unwrap();
                }
                Box::new(writer).finish().unwrap();
                let written = std::fs::read(&path).unwrap();

                let encoding = record_encoding(&opts, &ctx, &[]).unwrap().unwrap();
                let mut encoder = encoding(&names).unwrap();
                let mut encoded = Vec::new();
                for row in &rows {
                    encoder.encode(row, &mut encoded);
                }
                assert_eq!(
                    String::from_utf8_lossy(&encoded),
                    String::from_utf8_lossy(&written),
                    "delimiter {delimiter:?}"
                );

                // Field by field, text handed over as raw bytes: the same records.
                let fields = encoder.fields().expect("every column, in order");
                let mut by_field = Vec::new();
                for row in &rows {
                    let start = by_field.len();
                    for (i, value) in row.iter().enumerate() {
                        match value {
                            Value::Text(text) => {
                                fields.text(i, text.as_bytes(), &mut by_field).unwrap()
                            }
                            other => fields.value(i, other, &mut by_field),
                        }
                    }
                    fields.end(start, &mut by_field);
                }
                assert_eq!(
                    String::from_utf8_lossy(&by_field),
                    String::from_utf8_lossy(&written),
                    "delimiter {delimiter:?}, field by field"
                );
            }
        }
        // A selection that drops or reorders columns takes whole rows.
        let opts = CsvFormat {
            delimiter: ",".into(),
            header: false,
            encoding: CsvEncoding::Utf8,
            line_ending: LineEnding::Lf,
        };
        let encoding = record_encoding(&opts, &ctx, &[column("c1"), column("c0")]).unwrap();
        assert!(encoding.unwrap()(&names).unwrap().fields().is_none());
    }

    fn column(name: &str) -> Column {
        Column {
            name: name.into(),
            header: None,
        }
    }

    /// Text a source hands over raw is checked as UTF-8 in the same pass that looks for bytes
    /// to quote: both answers agree with a byte-by-byte look, and bytes that are not UTF-8
    /// are refused before anything is written.
    #[test]
    fn raw_text_is_scanned_and_checked_in_one_pass() {
        for delimiter in [b',', b';', b'\t', b'|'] {
            let fields = FieldEncoder::new(delimiter, LineEnding::Lf, false);
            for len in 0..40 {
                for at in 0..len {
                    for special in [delimiter, b'"', b'\r', b'\n', b'a', 0x80, 0xff, 0x00, 0x7f] {
                        let mut field = vec![b'x'; len];
                        field[at] = special;
                        let quoted = field.iter().any(|&b| fields.quoted[usize::from(b)]);
                        let ascii = field.is_ascii();
                        assert_eq!(fields.scan(&field), (quoted, !ascii), "{field:?}");
                        let mut out = b"kept".to_vec();
                        let written = fields.text(1, &field, &mut out);
                        assert_eq!(written.is_ok(), ascii, "{field:?}");
                        if ascii {
                            let mut expected = b"kept".to_vec();
                            fields.bytes(1, &field, &mut expected);
                            assert_eq!(out, expected);
                        } else {
                            assert_eq!(out, b"kept");
                        }
                    }
                }
            }
        }
        let fields = FieldEncoder::new(b',', LineEnding::Lf, false);
        let mut out = Vec::new();
        fields
            .text(0, "東京, \"本社\"".as_bytes(), &mut out)
            .unwrap();
        assert_eq!(out, "\"東京, \"\"本社\"\"\"".as_bytes());
        // Cut inside a character, or an encoded surrogate.
        assert!(fields.text(0, &"東京".as_bytes()[..4], &mut out).is_err());
        assert!(fields.text(0, b"\xed\xa0\x80 abcdefgh", &mut out).is_err());
    }

    /// The word-at-a-time scan agrees with a byte-by-byte one at every position.
    #[test]
    fn the_quote_scan_finds_a_special_byte_anywhere() {
        for delimiter in [b',', b';', b'\t', b'|'] {
            let fields = FieldEncoder::new(delimiter, LineEnding::Lf, false);
            for len in 0..40 {
                for at in 0..len {
                    for special in [delimiter, b'"', b'\r', b'\n', b'a', 0x80, 0xff, 0x00] {
                        let mut field = vec![b'x'; len];
                        field[at] = special;
                        let expected = field.iter().any(|&b| fields.quoted[usize::from(b)]);
                        assert_eq!(fields.needs_quotes(&field), expected, "{field:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn shift_jis_encoding_reports_the_first_unencodable_character() {
        let mut out = Vec::new();
        encode_shift_jis("商品A", &mut out).unwrap();
        assert_eq!(out, SHIFT_JIS.encode("商品A").0.as_ref());
        assert_eq!(encode_shift_jis("寿司🍣と🍺", &mut Vec::new()), Err('🍣'));
    }

    #[test]
    fn timestamps_render_exactly_like_the_rfc3339_strftime_pattern() {
        let zones = [
            "UTC",
            "Asia/Tokyo",
            "America/New_York",
            "Europe/Amsterdam",
            "Africa/Monrovia",
            "Asia/Kathmandu",
            "America/St_Johns",
            "Pacific/Chatham",
        ];
        let mut fast = String::new();
        for zone in zones {
            let tz = TimeZone::get(zone).unwrap();
            let mut seconds = -62_000_000_000_i64; // year 5 BCE-ish, then every ~90 days
            let mut instants = vec![jiff::Timestamp::MIN, jiff::Timestamp::MAX];
            while seconds < 250_000_000_000 {
                for nanos in [0, 1, 120_000_000, 123_456_789, 999_999_999] {
                    instants.push(jiff::Timestamp::new(seconds, nanos).unwrap());
                }
                seconds += 17_777_777;
            }
            for ts in instants {
                let reference = ts
                    .to_zoned(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
                    .to_string();
                fast.clear();
                Value::Timestamp(ts).to_text(&tz, &mut fast);
                assert_eq!(fast, reference, "{zone} {ts}");
            }
        }
    }
}
