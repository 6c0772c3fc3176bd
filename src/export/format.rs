//! The format side of an export: [`Value`] (a typed cell), [`ColumnSpec`] (what is exported
//! under which header), [`FormatContext`] and the [`FormatWriter`] trait each file format
//! implements, with the hashing every writer does on the way. A leaf the formats and sources
//! build on; `export` picks the writer of a format.

use std::io::Write;
use std::path::Path;

use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A typed cell value, as read from a database.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// SQL NULL: an empty cell.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal (PostgreSQL NUMERIC), as its canonical text, e.g. `12.50`.
    Decimal(String),
    /// Text, in any script.
    Text(String),
    /// Binary data (written as lowercase hex).
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(jiff::civil::Date),
    /// A time of day.
    Time(jiff::civil::Time),
    /// A timestamp without time zone (a wall-clock reading).
    DateTime(jiff::civil::DateTime),
    /// An instant (a timestamp with time zone), shown in the report's time zone.
    Timestamp(jiff::Timestamp),
}

impl Value {
    /// The value as text, the way CSV and PDF show it. Instants are rendered in `tz` with
    /// their offset (RFC 3339), wall-clock timestamps as `YYYY-MM-DDTHH:MM:SS[.fff]`.
    pub fn to_text(&self, tz: &TimeZone, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Value::Null => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::Float(f) => {
                let _ = write!(out, "{f}");
            }
            Value::Decimal(d) | Value::Text(d) => out.push_str(d),
            Value::Bytes(b) => {
                for byte in b {
                    let _ = write!(out, "{byte:02x}");
                }
            }
            Value::Date(d) => {
                let _ = write!(out, "{d}");
            }
            Value::Time(t) => {
                let _ = write!(out, "{t}");
            }
            Value::DateTime(dt) => {
                let _ = write!(out, "{dt}");
            }
            Value::Timestamp(ts) => write_timestamp(*ts, tz, out),
        }
    }
}

/// Writes `ts` as wall time in `tz` with its offset, byte for byte what the strftime pattern
/// `%Y-%m-%dT%H:%M:%S%.f%:z` prints (fractional seconds only when non-zero, without trailing
/// zeros; offset seconds only when non-zero, as in historical local mean time), but without
/// interpreting a pattern for every value: exports render millions of these.
fn write_timestamp(ts: jiff::Timestamp, tz: &TimeZone, out: &mut String) {
    fn two(out: &mut String, n: i32) {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    }
    let offset = tz.to_offset(ts);
    let dt = offset.to_datetime(ts);
    let year = i32::from(dt.year());
    if (0..=9999).contains(&year) {
        two(out, year / 100);
        two(out, year % 100);
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{year:05}");
    }
    for (sep, n) in [
        ('-', dt.month()),
        ('-', dt.day()),
        ('T', dt.hour()),
        (':', dt.minute()),
        (':', dt.second()),
    ] {
        out.push(sep);
        two(out, i32::from(n));
    }
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let mut digits = [b'0'; 9];
        let mut n = nanos;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
        out.push('.');
        out.extend(digits[..end].iter().map(|&d| char::from(d)));
    }
    let seconds = offset.seconds();
    out.push(if seconds < 0 { '-' } else { '+' });
    let seconds = seconds.abs();
    two(out, seconds / 3600);
    out.push(':');
    two(out, seconds / 60 % 60);
    if seconds % 60 != 0 {
        out.push(':');
        two(out, seconds % 60);
    }
}

/// One exported column: its name in the query and the header written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name in the query result.
    pub name: String,
    /// Header written in the file.
    pub header: String,
}

/// What a format needs to know besides the rows.
#[derive(Clone, Debug)]
pub struct FormatContext {
    /// Report title (PDF), e.g. the schedule's name.
    pub title: String,
    /// When the file was generated, shown in PDFs.
    pub generated_at: jiff::Zoned,
    /// Time zone instants are shown in.
    pub time_zone: TimeZone,
}

/// Writes one file format. Called as `begin`, then `row` for every row, then `finish`.
pub trait FormatWriter: Send {
    /// Called once, before any row, with the exported columns in order.
    fn begin(&mut self, columns: &[ColumnSpec]) -> Result<()>;
    /// One row; `values` are in column order. `index` counts rows from 1, for error messages.
    fn row(&mut self, index: u64, values: &[Value]) -> Result<()>;
    /// Completes the file (trailers, flush, fsync). Returns the SHA-256 of the file when the
    /// writer computed it while streaming; `None` lets the caller hash the finished file.
    fn finish(self: Box<Self>) -> Result<Option<[u8; 32]>>;
}

/// A row must have one value per column; writers check it before writing anything.
pub fn check_row_width(index: u64, values: &[Value], columns: usize) -> Result<()> {
    if columns != 0 && values.len() != columns {
        return Err(Error::Export(format!(
            "row {index}: {} values for {columns} columns",
            values.len()
        )));
    }
    Ok(())
}

/// A file writer that hashes what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer and the SHA-256 of everything written.
    pub fn into_parts(self) -> (W, [u8; 32]) {
        (self.inner, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 and size of a finished file.
pub fn hash_file(path: &Path) -> Result<([u8; 32], u64)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok((hasher.finalize().into(), bytes))
}
