//! The format side of an export: [`Value`] (a typed cell), [`ColumnSpec`] (what is exported
//! under which header), [`FormatContext`] and the [`FormatWriter`] trait each file format
//! implements, with the hashing every writer does on the way. A leaf the formats and sources
//! build on; `export` picks the writer of a format.

use std::io::Write;
use std::path::Path;

use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};

use crate::api::Column;
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
    /// Makes this value the text `text`, in its own buffer when it holds text already: the
    /// sources refill the rows of returned batches (see `source::BatchPool`), so a text
    /// column costs no allocation per row.
    pub fn set_text(&mut self, text: &str) {
        match self {
            Value::Text(buffer) => {
                buffer.clear();
                buffer.push_str(text);
            }
            other => *other = Value::Text(text.to_owned()),
        }
    }

    /// The value as text, the way CSV and PDF show it. Instants are rendered in `tz` with
    /// their offset (RFC 3339), wall-clock timestamps as `YYYY-MM-DDTHH:MM:SS[.fff]`.
    pub fn to_text(&self, tz: &TimeZone, out: &mut impl TextOut) {
        match self {
            Value::Null => {}
            Value::Bool(b) => out.ascii(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.ascii(itoa::Buffer::new().format(*i).as_bytes()),
            Value::Float(f) => push_float(*f, out),
            Value::Decimal(d) | Value::Text(d) => out.text(d),
            Value::Bytes(b) => {
                for byte in b {
                    out.fmt(format_args!("{byte:02x}"));
                }
            }
            Value::Date(d) => push_date(*d, out),
            Value::Time(t) => out.fmt(format_args!("{t}")),
            Value::DateTime(dt) => out.fmt(format_args!("{dt}")),
            Value::Timestamp(ts) => write_timestamp(*ts, tz, out),
        }
    }
}

/// Where [`Value::to_text`] writes: a `String`, or the bytes of a file being written, which
/// take rendered numbers, dates and instants without checking again that ASCII is UTF-8.
pub trait TextOut {
    /// Appends `text`, which is ASCII.
    fn ascii(&mut self, text: &[u8]);
    /// Appends `text`.
    fn text(&mut self, text: &str);
    /// Appends formatted text.
    fn fmt(&mut self, args: std::fmt::Arguments<'_>);
}

impl TextOut for String {
    fn ascii(&mut self, text: &[u8]) {
        self.push_str(std::str::from_utf8(text).unwrap_or_default());
    }

    fn text(&mut self, text: &str) {
        self.push_str(text);
    }

    fn fmt(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = std::fmt::Write::write_fmt(self, args);
    }
}

impl TextOut for Vec<u8> {
    fn ascii(&mut self, text: &[u8]) {
        self.extend_from_slice(text);
    }

    fn text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }

    fn fmt(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = std::io::Write::write_fmt(self, args);
    }
}

/// Appends `f` exactly as `format!("{f}")` prints it (the shortest digits that read back as
/// `f`, never an exponent), through `ryu` where the two must agree, which is several times
/// faster: exports render millions of these.
///
/// Both print the shortest digits that read back as `f`, and of those the closest to `f`.
/// They can differ only when that leaves a tie: `f` exactly halfway between two candidates
/// (`1658206780088562.25`: `ryu` prints `.2`, the standard formatter `.3`), or a candidate
/// exactly on the edge of the values that read back as `f`. Either means a value of at most
/// 17 + 1 significant digits sits exactly at `f` or half a unit in the last place from it.
/// So `ryu` is used when:
/// - it prints at most 15 significant digits: candidates that short are further apart than
///   `f`'s rounding interval is wide, so at most one reads back; or
/// - `f`'s exact decimal expansion has more than 18 significant digits (then so do its
///   interval's edges): no such tie can exist. Most doubles with a fraction are like this
///   (`1/7` has 52 digits).
///
/// Everything else, and what `ryu` writes with an exponent (below 1e-5 or from 1e16), comes
/// from the standard formatter.
pub fn push_float(f: f64, out: &mut impl TextOut) {
    if f.is_finite() {
        let mut digits = ryu::Buffer::new();
        let text = digits.format_finite(f);
        // `ryu` writes integral values as `2.0`; the standard formatter as `2`.
        let text = text.strip_suffix(".0").unwrap_or(text);
        if !text.contains('e') && (significant_digits(text) <= 15 || long_expansion(f)) {
            out.ascii(text.as_bytes());
            return;
        }
    }
    out.fmt(format_args!("{f}"));
}

/// Digits of a plain decimal from its first non-zero digit on.
fn significant_digits(text: &str) -> usize {
    text.bytes()
        .skip_while(|b| matches!(b, b'-' | b'0' | b'.'))
        .filter(u8::is_ascii_digit)
        .count()
}

/// Whether the exact decimal expansion of finite `f` has more than 18 significant digits.
/// `f` is `m * 2^-k` with `m` odd; for `k > 0` its expansion is `m * 5^k` shifted by `k`
/// places, which ends in 5, so it has as many significant digits as `m * 5^k` has digits.
fn long_expansion(f: f64) -> bool {
    let bits = f.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, power) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), exponent - 1075)
    };
    if mantissa == 0 {
        return false;
    }
    let zeros = mantissa.trailing_zeros();
    let (odd, k) = (mantissa >> zeros, -(power + zeros as i32));
    if k <= 0 {
        return false; // an integer
    }
    // 5^27 alone exceeds 10^18.
    k >= 27 || u128::from(odd) * 5u128.pow(k as u32) >= 1_000_000_000_000_000_000
}

/// Appends `d` exactly as its `Display` prints it (`YYYY-MM-DD`), without the formatting
/// machinery for the years 0 to 9999.
fn push_date(d: jiff::civil::Date, out: &mut impl TextOut) {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        out.fmt(format_args!("{d}"));
        return;
    }
    let mut text = Ascii::<10>::default();
    text.four(year);
    text.byte(b'-');
    text.two(d.month().into());
    text.byte(b'-');
    text.two(d.day().into());
    out.ascii(text.as_bytes());
}

/// A short ASCII text built on the stack and appended in one go: rendering a date or an
/// instant character by character into a `String` costs several times more.
struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Ascii<N> {
    fn default() -> Self {
        Ascii {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Ascii<N> {
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// `n` (0..=99) as two digits.
    fn two(&mut self, n: i16) {
        self.byte(b'0' + (n / 10 % 10) as u8);
        self.byte(b'0' + (n % 10) as u8);
    }

    /// `n` (0..=9999) as four digits.
    fn four(&mut self, n: i16) {
        self.two(n / 100);
        self.two(n % 100);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes `ts` as wall time in `tz` with its offset, byte for byte what the strftime pattern
/// `%Y-%m-%dT%H:%M:%S%.f%:z` prints (fractional seconds only when non-zero, without trailing
/// zeros; offset seconds only when non-zero, as in historical local mean time), but without
/// interpreting a pattern for every value: exports render millions of these.
fn write_timestamp(ts: jiff::Timestamp, tz: &TimeZone, out: &mut impl TextOut) {
    let offset = tz.to_offset(ts);
    let dt = offset.to_datetime(ts);
    let year = dt.year();
    // 2026-12-07T09:30:00.123456789+05:45:30
    let mut text = Ascii::<40>::default();
    if (0..=9999).contains(&year) {
        text.four(year);
    } else {
        out.fmt(format_args!("{year:05}"));
    }
    for (sep, n) in [
        (b'-', dt.month()),
        (b'-', dt.day()),
        (b'T', dt.hour()),
        (b':', dt.minute()),
        (b':', dt.second()),
    ] {
        text.byte(sep);
        text.two(n.into());
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
        text.byte(b'.');
        for &d in &digits[..end] {
            text.byte(d);
        }
    }
    let seconds = offset.seconds();
    text.byte(if seconds < 0 { b'-' } else { b'+' });
    let seconds = seconds.abs();
    text.two((seconds / 3600) as i16);
    text.byte(b':');
    text.two((seconds / 60 % 60) as i16);
    if seconds % 60 != 0 {
        text.byte(b':');
        text.two((seconds % 60) as i16);
    }
    out.ascii(text.as_bytes());
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
    /// Records a source encoded with this format's own encoding (only CSV has one, see
    /// [`super::record_encoding`]), after the rows and records before them.
    fn records(&mut self, _bytes: &[u8]) -> Result<()> {
        Err(Error::Export(
            "this format takes rows, not records encoded by the source".into(),
        ))
    }
    /// Completes the file (trailers, flush, fsync). Returns the SHA-256 of the file when the
    /// writer computed it while streaming; `None` lets the caller hash the finished file.
    fn finish(self: Box<Self>) -> Result<Option<[u8; 32]>>;
}

/// Maps the `columns` selection onto the query's columns: headers and indices.
pub fn select_columns(
    names: &[String],
    selection: &[Column],
) -> Result<(Vec<ColumnSpec>, Vec<usize>)> {
    if selection.is_empty() {
        let specs = names
            .iter()
            .map(|n| ColumnSpec {
                name: n.clone(),
                header: n.clone(),
            })
            .collect();
        return Ok((specs, (0..names.len()).collect()));
    }
    let mut specs = Vec::with_capacity(selection.len());
    let mut indices = Vec::with_capacity(selection.len());
    for column in selection {
        let Some(i) = names.iter().position(|n| n == &column.name) else {
            return Err(Error::Export(format!(
                "column `{}` (spec.columns) is not in the query result; the query returns: {}",
                column.name,
                names.join(", ")
            )));
        };
        indices.push(i);
        specs.push(ColumnSpec {
            name: column.name.clone(),
            header: column.header.clone().unwrap_or_else(|| column.name.clone()),
        });
    }
    Ok((specs, indices))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Floats: every value prints as the standard formatter prints it.
    #[test]
    fn floats_render_exactly_like_the_standard_formatter() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -2.0,
            0.1,
            0.30000000000000004,
            1e-5,
            9.99e-6,
            1e15,
            9_999_999_999_999_998.0,
            1e16,
            1e300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        values.extend((1..20_000).map(|i| f64::from(i) / 7.0));
        values.extend((1..20_000).map(|i| f64::from(i) / 100.0));
        // Halfway ties and their neighbours, where ryu and the standard formatter disagree.
        for whole in [
            1_658_206_780_088_562_u64,
            4_503_599_627_370_497,
            123_456_789_012_345,
        ] {
            for quarter in 0..8 {
                let f = whole as f64 + f64::from(quarter) * 0.25;
                values.extend([f, -f, f / 1024.0, f * 0.5]);
            }
        }
        // Bit patterns from a xorshift generator: every exponent and mantissa shape.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        values.extend((0..300_000).map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f64::from_bits(state)
        }));
        // Few fraction bits: short exact expansions, where ties live.
        values.extend((0..300_000).map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mantissa = (state >> 11) >> (i % 40);
            mantissa as f64 / f64::from(1u32 << (i % 30))
        }));
        let mut fast = String::new();
        for f in values {
            fast.clear();
            push_float(f, &mut fast);
            assert_eq!(fast, format!("{f}"), "bits {:#x}", f.to_bits());
        }
    }

    /// Dates: every day of a wide range prints as `Display` prints it.
    #[test]
    fn dates_render_exactly_like_display() {
        let mut fast = String::new();
        let mut day = jiff::civil::date(-20, 1, 1);
        let end = jiff::civil::date(9998, 12, 31);
        while day < end {
            fast.clear();
            push_date(day, &mut fast);
            assert_eq!(fast, day.to_string());
            day = day.checked_add(jiff::Span::new().days(3)).unwrap();
        }
        for day in [
            jiff::civil::Date::MIN,
            jiff::civil::Date::MAX,
            jiff::civil::date(0, 2, 29),
        ] {
            fast.clear();
            push_date(day, &mut fast);
            assert_eq!(fast, day.to_string());
        }
    }
}
