//! XLSX report files, written with `rust_xlsxwriter` in constant-memory mode: each worksheet
//! streams its rows to an unnamed temporary file (created in the output file's directory, so
//! row data never sits in a memory-backed `/tmp`), and saving copies them into the zip. Memory
//! stays flat however many rows are written.
//!
//! Cells are typed: integers and floats are numbers; decimals are numbers when they survive
//! the trip through a double (at most 15 significant digits), otherwise text with every digit
//! (the same holds for integers beyond 15 significant digits, such as 19-digit ids, which Excel
//! would otherwise round); booleans are booleans; dates, times and wall-clock timestamps are
//! date cells (`yyyy-mm-dd`, `hh:mm:ss`, `yyyy-mm-dd hh:mm:ss`); instants are converted to the
//! report's time zone first; text is text; bytes are lowercase hex; NULL is an empty cell.
//! Dates before 1900, which Excel cannot represent, are written as text.
//!
//! The header row is bold and frozen, an autofilter covers the header and the data, and column
//! widths follow the header and the first [`WIDTH_SAMPLE_ROWS`] rows (East Asian wide
//! characters count double, capped at [`MAX_COLUMN_WIDTH`]). Widths are emitted when the
//! workbook is saved, so they are measured while rows stream rather than by holding rows back.
//!
//! A worksheet holds at most [`MAX_DATA_ROWS_PER_SHEET`] data rows below its header; further
//! rows continue on `<sheetName> (2)`, `(3)`, ... with the same header and formatting.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use rust_xlsxwriter::{DocProperties, Format, Workbook, Worksheet, XlsxError};

use super::{ColumnSpec, FormatContext, FormatWriter, Value};
use crate::api::XlsxFormat;
use crate::{Error, Result};

/// Data rows per worksheet: Excel's 1,048,576 rows less the header.
pub const MAX_DATA_ROWS_PER_SHEET: u32 = 1_048_575;
/// Rows (after the header) that column widths are measured on.
pub const WIDTH_SAMPLE_ROWS: u32 = 1_000;
/// Widest column set, in characters.
pub const MAX_COLUMN_WIDTH: usize = 60;
/// Excel's limit on a worksheet name, in UTF-16 code units.
const MAX_SHEET_NAME: usize = 31;
/// Above this estimate of uncompressed worksheet XML, the zip uses ZIP64 (readers need it past
/// 4 GiB; below, it would only cost compatibility with old readers).
const ZIP64_THRESHOLD: u64 = 3 << 30;
/// Deflate level of the zip container. Compressing the worksheet XML dominates the time to
/// write a large workbook: level 3 (what Excel itself uses) halves it against the default 6,
/// for files about 12% larger.
const ZIP_COMPRESSION_LEVEL: u8 = 3;
/// Buffer between the zip writer and the output file.
const FILE_BUFFER: usize = 256 * 1024;

/// Writes XLSX files. See the [module documentation](self).
pub struct XlsxWriter {
    path: PathBuf,
    /// The output file, opened by `create`; `None` once finished.
    file: Option<File>,
    workbook: Workbook,
    base_name: String,
    time_zone: TimeZone,
    row_limit: u32,
    headers: Vec<String>,
    formats: Formats,
    /// Worksheets so far; the last one is being written.
    sheets: usize,
    /// Data rows on the current worksheet.
    sheet_rows: u32,
    /// Data rows measured for column widths so far.
    sampled: u32,
    /// Widest content seen per column, in character cells.
    widths: Vec<usize>,
    /// Estimated uncompressed worksheet XML, to decide on ZIP64.
    xml_estimate: u64,
    /// Scratch text for rendering cells.
    text: String,
    /// Set by an error: nothing more is written.
    failed: bool,
}

/// The cell formats, registered once.
struct Formats {
    header: Format,
    date: Format,
    date_time: Format,
    time: Format,
}

impl XlsxWriter {
    /// Creates the file at `path` (written when the writer finishes) with the first worksheet
    /// named `opts.sheetName` (truncated to Excel's 31 characters).
    pub fn create(path: &Path, opts: &XlsxFormat, ctx: &FormatContext) -> Result<Self> {
        Self::with_row_limit(path, opts, ctx, MAX_DATA_ROWS_PER_SHEET)
    }

    /// Like [`create`](Self::create), with at most `row_limit` data rows per worksheet (at
    /// least 1, at most [`MAX_DATA_ROWS_PER_SHEET`]); lets tests exercise sheet rollover.
    pub fn with_row_limit(
        path: &Path,
        opts: &XlsxFormat,
        ctx: &FormatContext,
        row_limit: u32,
    ) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut workbook = Workbook::new();
        workbook.set_zip_compression_level(ZIP_COMPRESSION_LEVEL);
        // Temporary row data goes next to the output: that file system must hold the result
        // anyway, and the system temp dir may be memory-backed (tmpfs).
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        workbook.set_tempdir(dir).map_err(|e| xlsx_error(path, e))?;
        let created = ctx.generated_at.timestamp().to_zoned(TimeZone::UTC);
        workbook.set_properties(
            &DocProperties::new()
                .set_title(&ctx.title)
                .set_creation_datetime(&created.datetime()),
        );
        let mut writer = XlsxWriter {
            path: path.to_path_buf(),
            file: Some(file),
            workbook,
            base_name: opts.sheet_name.clone(),
            time_zone: ctx.time_zone.clone(),
            row_limit: row_limit.clamp(1, MAX_DATA_ROWS_PER_SHEET),
            headers: Vec::new(),
            formats: Formats {
                header: Format::new().set_bold(),
                date: Format::new().set_num_format("yyyy-mm-dd"),
                date_time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
                time: Format::new().set_num_format("hh:mm:ss"),
            },
            sheets: 0,
            sheet_rows: 0,
            sampled: 0,
            widths: Vec::new(),
            xml_estimate: 0,
            text: String::with_capacity(64),
            failed: false,
        };
        writer.add_sheet()?;
        Ok(writer)
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(Error::Export(
                "the XLSX file was abandoned after an earlier error".into(),
            ));
        }
        if self.file.is_none() {
            return Err(Error::Export("the XLSX file is already finished".into()));
        }
        Ok(())
    }

    /// Adds the next worksheet and writes its header (once the columns are known).
    fn add_sheet(&mut self) -> Result<()> {
        let name = sheet_name(&self.base_name, self.sheets + 1);
        let path = &self.path;
        let sheet = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(|e| xlsx_error(path, e))?;
        self.sheets += 1;
        self.sheet_rows = 0;
        sheet
            .set_name(&name)
            .map_err(|e| Error::Export(format!("worksheet name {name:?}: {e}")))?;
        if !self.headers.is_empty() {
            write_header(sheet, &self.headers, &self.formats.header)
                .map_err(|e| xlsx_error(path, e))?;
        }
        Ok(())
    }

    fn current_sheet(&mut self) -> Result<&mut Worksheet> {
        let index = self.sheets - 1;
        let path = &self.path;
        self.workbook
            .worksheet_from_index(index)
            .map_err(|e| xlsx_error(path, e))
    }

    /// Sets the autofilter of the current worksheet over its header and data.
    fn close_sheet(&mut self) -> Result<()> {
        let (rows, columns) = (self.sheet_rows, self.headers.len());
        if columns == 0 {
            return Ok(());
        }
        let path = self.path.clone();
        let last_col = u16::try_from(columns - 1).unwrap_or(u16::MAX);
        self.current_sheet()?
            .autofilter(0, 0, rows, last_col)
            .map_err(|e| xlsx_error(&path, e))?;
        Ok(())
    }

    /// Measures `values` for column widths.
    fn sample(&mut self, values: &[Value]) {
        for (value, width) in values.iter().zip(self.widths.iter_mut()) {
            let w = value_width(value, &self.time_zone, &mut self.text);
            *width = (*width).max(w);
        }
        self.sampled += 1;
    }
}

/// Writes the bold header row and freezes the panes below it.
fn write_header(sheet: &mut Worksheet, headers: &[String], bold: &Format) -> Result<(), XlsxError> {
    for (col, header) in headers.iter().enumerate() {
        sheet.write_string_with_format(0, column(col)?, header, bold)?;
    }
    sheet.set_freeze_panes(1, 0)?;
    Ok(())
}

fn column(index: usize) -> Result<u16, XlsxError> {
    u16::try_from(index).map_err(|_| XlsxError::RowColumnLimitError)
}

fn xlsx_error(path: &Path, e: XlsxError) -> Error {
    match e {
        XlsxError::IoError(io) => Error::io(path, io),
        other => Error::Export(format!("{}: {other}", path.display())),
    }
}

/// The name of worksheet `n` (from 1): `base`, then `base (2)`, `base (3)`, ..., with `base`
/// truncated so the whole fits Excel's 31 UTF-16 code units.
pub fn sheet_name(base: &str, n: usize) -> String {
    let suffix = if n <= 1 {
        String::new()
    } else {
        format!(" ({n})")
    };
    let room = MAX_SHEET_NAME - suffix.len();
    let mut name = String::with_capacity(base.len() + suffix.len());
    let mut used = 0;
    for c in base.chars() {
        used += c.len_utf16();
        if used > room {
            break;
        }
        name.push(c);
    }
    name.push_str(&suffix);
    name
}

/// Writes one cell; returns an estimate of its XML size.
fn write_cell(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    value: &Value,
    formats: &Formats,
    tz: &TimeZone,
    text: &mut String,
) -> Result<usize, XlsxError> {
    const CELL: usize = 48;
    match value {
        Value::Null => return Ok(0),
        Value::Bool(b) => sheet.write_boolean(row, col, *b)?,
        Value::Int(i) => {
            if int_is_exact(*i) {
                sheet.write_number(row, col, *i as f64)?
            } else {
                text.clear();
                value.to_text(tz, text);
                sheet.write_string(row, col, text.as_str())?
            }
        }
        Value::Float(f) => sheet.write_number(row, col, *f)?,
        Value::Decimal(d) => match decimal_as_f64(d) {
            Some(n) => sheet.write_number(row, col, n)?,
            None => sheet.write_string(row, col, d)?,
        },
        Value::Text(s) => {
            sheet.write_string(row, col, s)?;
            return Ok(CELL + s.len());
        }
        Value::Bytes(b) => {
            text.clear();
            value.to_text(tz, text);
            sheet.write_string(row, col, text.as_str())?;
            return Ok(CELL + 2 * b.len());
        }
        Value::Date(d) => match excel_date(*d) {
            Some(serial) => sheet.write_number_with_format(row, col, serial, &formats.date)?,
            None => write_text(sheet, row, col, value, tz, text)?,
        },
        Value::Time(t) => {
            sheet.write_number_with_format(row, col, excel_time(*t), &formats.time)?
        }
        Value::DateTime(dt) => match excel_date_time(*dt) {
            Some(serial) => sheet.write_number_with_format(row, col, serial, &formats.date_time)?,
            None => write_text(sheet, row, col, value, tz, text)?,
        },
        Value::Timestamp(ts) => match excel_date_time(tz.to_datetime(*ts)) {
            Some(serial) => sheet.write_number_with_format(row, col, serial, &formats.date_time)?,
            None => write_text(sheet, row, col, value, tz, text)?,
        },
    };
    Ok(CELL)
}

/// Writes `value` as its text.
fn write_text<'a>(
    sheet: &'a mut Worksheet,
    row: u32,
    col: u16,
    value: &Value,
    tz: &TimeZone,
    text: &mut String,
) -> Result<&'a mut Worksheet, XlsxError> {
    text.clear();
    value.to_text(tz, text);
    sheet.write_string(row, col, text.as_str())
}

/// Whether an integer survives Excel's doubles shown to 15 significant digits.
fn int_is_exact(i: i64) -> bool {
    let mut n = i.unsigned_abs();
    if n < 1_000_000_000_000_000 {
        return true;
    }
    while n.is_multiple_of(10) {
        n /= 10;
    }
    n < 1_000_000_000_000_000
}

/// A decimal's value as a double, when it round-trips exactly: plain decimal notation with at
/// most 15 significant digits, within the range of normal doubles. `None` keeps it as text.
fn decimal_as_f64(text: &str) -> Option<f64> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.len() > 15 {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (value.is_normal() || (value == 0.0 && significant.is_empty())).then_some(value)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(date: Date) -> i64 {
    let (y, m, d) = (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Excel serial number of a date (1900 date system, with Excel's phantom 1900-02-29), or
/// `None` before 1900, which Excel cannot show as a date.
fn excel_date(date: Date) -> Option<f64> {
    if date.year() < 1900 {
        return None;
    }
    let serial = days_from_civil(date) + 25_569;
    // Before 1900-03-01 Excel counts one day fewer (it believes 1900 was a leap year).
    Some((if serial <= 60 { serial - 1 } else { serial }) as f64)
}

/// A time of day as Excel's fraction of a day.
fn excel_time(time: Time) -> f64 {
    let seconds =
        i32::from(time.hour()) * 3_600 + i32::from(time.minute()) * 60 + i32::from(time.second());
    (f64::from(seconds) + f64::from(time.subsec_nanosecond()) / 1e9) / 86_400.0
}

fn excel_date_time(dt: DateTime) -> Option<f64> {
    Some(excel_date(dt.date())? + excel_time(dt.time()))
}

/// How many character cells a value takes in its column: East Asian wide characters count
/// two; multi-line text counts its longest line.
fn value_width(value: &Value, tz: &TimeZone, text: &mut String) -> usize {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 5,
        Value::Int(_) | Value::Float(_) => {
            text.clear();
            value.to_text(tz, text);
            // Excel's General format shows at most 11 characters of a number.
            if matches!(value, Value::Int(i) if !int_is_exact(*i)) {
                text.len()
            } else {
                text.len().min(11)
            }
        }
        Value::Decimal(d) => match decimal_as_f64(d) {
            Some(_) => d.len().min(11),
            None => d.len(),
        },
        Value::Text(s) => text_width(s),
        Value::Bytes(b) => 2 * b.len(),
        Value::Date(_) => 10,
        Value::Time(_) => 8,
        Value::DateTime(_) | Value::Timestamp(_) => 19,
    }
}

/// Display width of text in character cells: the widest line, wide characters counting two.
pub fn text_width(s: &str) -> usize {
    s.split('\n')
        .map(|line| line.chars().map(char_width).sum())
        .max()
        .unwrap_or(0)
}

/// 2 for East Asian wide and fullwidth characters (CJK, kana, hangul, fullwidth forms, emoji),
/// else 1.
fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// The width of a column in Excel's character units, from its header and widest value.
fn column_width(header: &str, widest_value: usize) -> f64 {
    // The bold header also shows the autofilter's drop-down button.
    let header = text_width(header) + 3;
    let value = widest_value + 1;
    header.max(value).clamp(4, MAX_COLUMN_WIDTH) as f64
}

impl FormatWriter for XlsxWriter {
    fn begin(&mut self, columns: &[ColumnSpec]) -> Result<()> {
        self.check()?;
        self.headers = columns.iter().map(|c| c.header.clone()).collect();
        self.widths = vec![0; columns.len()];
        let index = self.sheets - 1;
        let XlsxWriter {
            workbook,
            headers,
            formats,
            path,
            ..
        } = self;
        let result = workbook
            .worksheet_from_index(index)
            .and_then(|sheet| write_header(sheet, headers, &formats.header))
            .map_err(|e| xlsx_error(path, e));
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn row(&mut self, index: u64, values: &[Value]) -> Result<()> {
        self.check()?;
        if let Err(e) = super::check_row_width(index, values, self.headers.len()) {
            self.failed = true;
            return Err(e);
        }
        if self.sheet_rows >= self.row_limit {
            let next = self.close_sheet().and_then(|()| self.add_sheet());
            if next.is_err() {
                self.failed = true;
                return next;
            }
        }
        if self.sampled < WIDTH_SAMPLE_ROWS {
            self.sample(values);
        }
        let row = self.sheet_rows + 1;
        let sheet = self.sheets - 1;
        let XlsxWriter {
            workbook,
            formats,
            time_zone,
            text,
            headers,
            xml_estimate,
            ..
        } = self;
        let sheet = workbook
            .worksheet_from_index(sheet)
            .map_err(|e| Error::Export(e.to_string()))?;
        let mut bytes = 40;
        for (col, value) in values.iter().enumerate() {
            let written = column(col)
                .and_then(|c| write_cell(sheet, row, c, value, formats, time_zone, text));
            match written {
                Ok(n) => bytes += n,
                Err(e) => {
                    self.failed = true;
                    let header = headers.get(col).map_or("", String::as_str);
                    return Err(Error::Export(format!(
                        "row {index}, column \"{header}\": {e}"
                    )));
                }
            }
        }
        *xml_estimate += bytes as u64;
        self.sheet_rows += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Option<[u8; 32]>> {
        self.check()?;
        self.close_sheet()?;
        let widths: Vec<f64> = self
            .headers
            .iter()
            .zip(&self.widths)
            .map(|(header, widest)| column_width(header, *widest))
            .collect();
        let path = self.path.clone();
        for index in 0..self.sheets {
            let sheet = self
                .workbook
                .worksheet_from_index(index)
                .map_err(|e| xlsx_error(&path, e))?;
            for (col, width) in widths.iter().enumerate() {
                sheet
                    .set_column_width(column(col).map_err(|e| xlsx_error(&path, e))?, *width)
                    .map_err(|e| xlsx_error(&path, e))?;
            }
        }
        if self.xml_estimate > ZIP64_THRESHOLD {
            self.workbook.use_zip_large_file(true);
        }
        let mut file = self.file.take().expect("checked above");
        let mut out = BufWriter::with_capacity(FILE_BUFFER, &mut file);
        self.workbook
            .save_to_writer(&mut out)
            .map_err(|e| xlsx_error(&path, e))?;
        out.flush().map_err(|e| Error::io(&path, e))?;
        drop(out);
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_get_a_number_and_fit_in_31_characters() {
        assert_eq!(sheet_name("Orders", 1), "Orders");
        assert_eq!(sheet_name("Orders", 2), "Orders (2)");
        let long = "A very long worksheet name indeed, too long";
        assert_eq!(sheet_name(long, 1), &long[..31]);
        assert_eq!(sheet_name(long, 12), format!("{} (12)", &long[..26]));
        assert_eq!(sheet_name(long, 12).len(), 31);
        // Astral characters count two UTF-16 units, as Excel counts them.
        let emoji = "🍣".repeat(20);
        assert_eq!(sheet_name(&emoji, 1), "🍣".repeat(15));
    }

    #[test]
    fn excel_serial_dates_match_excel() {
        let d = |y, m, d| jiff::civil::date(y, m, d);
        assert_eq!(excel_date(d(1900, 1, 1)), Some(1.0));
        assert_eq!(excel_date(d(1900, 2, 28)), Some(59.0));
        assert_eq!(excel_date(d(1900, 3, 1)), Some(61.0));
        assert_eq!(excel_date(d(1970, 1, 1)), Some(25_569.0));
        assert_eq!(excel_date(d(2024, 2, 29)), Some(45_351.0));
        assert_eq!(excel_date(d(9999, 12, 31)), Some(2_958_465.0));
        assert_eq!(excel_date(d(1899, 12, 31)), None);
        // Agrees with jiff's own day arithmetic everywhere after 1900-03-01.
        let epoch = d(1899, 12, 30);
        let mut day = d(1900, 3, 1);
        while day.year() < 2200 {
            let days = day.since((jiff::Unit::Day, epoch)).unwrap().get_days();
            assert_eq!(excel_date(day), Some(f64::from(days)), "{day}");
            day = day.checked_add(jiff::Span::new().days(37)).unwrap();
        }
        let noon = jiff::civil::time(12, 0, 0, 0);
        assert_eq!(excel_time(noon), 0.5);
        let dt = d(2024, 1, 1).at(6, 0, 0, 0);
        assert_eq!(excel_date_time(dt), Some(45_292.25));
    }

    #[test]
    fn only_numbers_that_keep_every_digit_are_written_as_numbers() {
        assert_eq!(decimal_as_f64("12.50"), Some(12.5));
        assert_eq!(decimal_as_f64("-0.001"), Some(-0.001));
        assert_eq!(decimal_as_f64("0"), Some(0.0));
        assert_eq!(
            decimal_as_f64("123456789012345"),
            Some(123_456_789_012_345.0)
        );
        assert_eq!(
            decimal_as_f64("1234567890.12345"),
            Some(1_234_567_890.123_45)
        );
        assert_eq!(decimal_as_f64("1234567890.123456"), None);
        assert_eq!(decimal_as_f64("12345678901234567890"), None);
        assert_eq!(decimal_as_f64("NaN"), None);
        assert_eq!(decimal_as_f64("1e5"), None);
        assert_eq!(decimal_as_f64(""), None);
        assert_eq!(decimal_as_f64("."), None);
        assert!(int_is_exact(999_999_999_999_999));
        assert!(int_is_exact(-999_999_999_999_999));
        assert!(int_is_exact(1_000_000_000_000_000_000));
        assert!(!int_is_exact(1_234_567_890_123_456));
        assert!(!int_is_exact(i64::MIN));
    }

    #[test]
    fn wide_characters_count_double_in_column_widths() {
        assert_eq!(text_width("abc"), 3);
        assert_eq!(text_width("商品名"), 6);
        assert_eq!(text_width("ｱｲｳ"), 3);
        assert_eq!(text_width("short\nlonger line"), 11);
        assert_eq!(column_width("id", 0), 5.0);
        assert_eq!(column_width("x", 500), MAX_COLUMN_WIDTH as f64);
    }
}
