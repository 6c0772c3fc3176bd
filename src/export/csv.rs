//! CSV report files: RFC 4180 quoting (a field is quoted only when it holds the delimiter, a
//! quote, CR or LF; quotes inside are doubled), a configurable one-byte delimiter, an optional
//! header row, CRLF or LF line endings, and UTF-8, UTF-8 with a byte order mark or Shift_JIS.
//!
//! Rows stream straight to the file through a large buffer and are hashed on the way, so
//! [`FormatWriter::finish`] returns the file's SHA-256 without reading it back. The hot path
//! allocates nothing per row: text cells are written from the value's own bytes, every other
//! cell is rendered with [`Value::to_text`] into one reused buffer.
//!
//! Shift_JIS cannot represent every character. A row (or the header) holding one that it
//! cannot encode is an [`Error::Export`] naming the row, the column and the character; the
//! row is not written, and neither is anything after it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use encoding_rs::{EncoderResult, SHIFT_JIS};
use jiff::tz::TimeZone;

use super::{ColumnSpec, FormatContext, FormatWriter, HashingWriter, Value};
use crate::api::{CsvEncoding, CsvFormat, LineEnding};
use crate::{Error, Result};

/// Buffer between the hashing writer and the file.
const FILE_BUFFER: usize = 256 * 1024;
/// The CSV encoder's own output buffer, handed to the hashing writer when full.
const CSV_BUFFER: usize = 64 * 1024;
/// The UTF-8 byte order mark written first by the `utf-8-bom` encoding.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

type Sink = HashingWriter<BufWriter<File>>;

/// Writes CSV files. See the [module documentation](self).
pub struct CsvWriter {
    path: PathBuf,
    /// `None` once finished.
    out: Option<::csv::Writer<Sink>>,
    header: bool,
    shift_jis: bool,
    time_zone: TimeZone,
    /// Column headers, for error messages (and the header row).
    headers: Vec<String>,
    /// Scratch buffer for rendering non-text cells; reused for every cell.
    text: String,
    /// Shift_JIS only: the encoded fields of the current row, back to back.
    encoded: Vec<u8>,
    /// Shift_JIS only: where each field of `encoded` ends.
    ends: Vec<usize>,
    /// Set by an error: nothing more is written.
    failed: bool,
}

impl CsvWriter {
    /// Creates (truncates) the file at `path` and writes the byte order mark when the
    /// encoding asks for one. `opts.delimiter` must be one ASCII character other than a
    /// quote, CR or LF.
    pub fn create(path: &Path, opts: &CsvFormat, ctx: &FormatContext) -> Result<Self> {
        let delimiter = parse_delimiter(&opts.delimiter)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut sink = HashingWriter::new(BufWriter::with_capacity(FILE_BUFFER, file));
        if opts.encoding == CsvEncoding::Utf8Bom {
            sink.write_all(UTF8_BOM).map_err(|e| Error::io(path, e))?;
        }
        let terminator = match opts.line_ending {
            LineEnding::Crlf => ::csv::Terminator::CRLF,
            LineEnding::Lf => ::csv::Terminator::Any(b'\n'),
        };
        let out = ::csv::WriterBuilder::new()
            .delimiter(delimiter)
            .terminator(terminator)
            .quote_style(::csv::QuoteStyle::Necessary)
            .quote(b'"')
            .double_quote(true)
            .has_headers(false)
            .buffer_capacity(CSV_BUFFER)
            .from_writer(sink);
        Ok(CsvWriter {
            path: path.to_path_buf(),
            out: Some(out),
            header: opts.header,
            shift_jis: opts.encoding == CsvEncoding::ShiftJis,
            time_zone: ctx.time_zone.clone(),
            headers: Vec::new(),
            text: String::with_capacity(64),
            encoded: Vec::new(),
            ends: Vec::new(),
            failed: false,
        })
    }

    fn out(&mut self) -> Result<&mut ::csv::Writer<Sink>> {
        if self.failed {
            return Err(Error::Export(
                "the CSV file was abandoned after an earlier error".into(),
            ));
        }
        self.out
            .as_mut()
            .ok_or_else(|| Error::Export("the CSV file is already finished".into()))
    }

    fn csv_error(&self, e: ::csv::Error) -> Error {
        match e.into_kind() {
            ::csv::ErrorKind::Io(io) => Error::io(&self.path, io),
            other => Error::Export(format!("{}: {other:?}", self.path.display())),
        }
    }

    /// Writes one record whose fields are `fields` (already rendered, UTF-8).
    fn write_utf8_record<'a>(&mut self, fields: impl Iterator<Item = &'a str>) -> Result<()> {
        let out = self.out()?;
        let mut result = Ok(());
        for field in fields {
            result = out.write_field(field.as_bytes());
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = out.write_record(None::<&[u8]>);
        }
        result.map_err(|e| self.csv_error(e))
    }

    /// Writes the fields collected in `encoded`/`ends` as one record.
    fn write_encoded_record(&mut self) -> Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::Export("the CSV file is already finished".into()))?;
        let mut start = 0;
        let mut result = Ok(());
        for &end in &self.ends {
            result = out.write_field(&self.encoded[start..end]);
            if result.is_err() {
                break;
            }
            start = end;
        }
        if result.is_ok() {
            result = out.write_record(None::<&[u8]>);
        }
        result.map_err(|e| self.csv_error(e))
    }
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
        self.headers = columns.iter().map(|c| c.header.clone()).collect();
        if !self.header {
            return Ok(());
        }
        let result = if self.shift_jis {
            self.out()?;
            self.encoded.clear();
            self.ends.clear();
            let mut result = Ok(());
            for header in &self.headers {
                if let Err(c) = encode_shift_jis(header, &mut self.encoded) {
                    result = Err(unencodable("header row", header, c));
                    break;
                }
                self.ends.push(self.encoded.len());
            }
            result.and_then(|()| self.write_encoded_record())
        } else {
            let headers = std::mem::take(&mut self.headers);
            let result = self.write_utf8_record(headers.iter().map(String::as_str));
            self.headers = headers;
            result
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn row(&mut self, index: u64, values: &[Value]) -> Result<()> {
        self.out()?;
        if let Err(e) = super::check_row_width(index, values, self.headers.len()) {
            self.failed = true;
            return Err(e);
        }
        let result = if self.shift_jis {
            self.encoded.clear();
            self.ends.clear();
            let mut result = Ok(());
            for (i, value) in values.iter().enumerate() {
                let field = cell_text(value, &self.time_zone, &mut self.text);
                if let Err(c) = encode_shift_jis(field, &mut self.encoded) {
                    let header = self.headers.get(i).map_or("", String::as_str);
                    result = Err(unencodable(&format!("row {index}"), header, c));
                    break;
                }
                self.ends.push(self.encoded.len());
            }
            result.and_then(|()| self.write_encoded_record())
        } else {
            // Split the borrows: the writer, the zone and the scratch buffer are disjoint.
            let CsvWriter {
                out,
                time_zone,
                text,
                ..
            } = self;
            let out = out.as_mut().expect("checked by out()");
            let mut result = Ok(());
            for value in values {
                result = out.write_field(cell_text(value, time_zone, text).as_bytes());
                if result.is_err() {
                    break;
                }
            }
            if result.is_ok() {
                result = out.write_record(None::<&[u8]>);
            }
            result.map_err(|e| self.csv_error(e))
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn finish(mut self: Box<Self>) -> Result<Option<[u8; 32]>> {
        self.out()?;
        let out = self.out.take().expect("checked above");
        let sink = out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        let (buffered, sha256) = sink.into_parts();
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
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
