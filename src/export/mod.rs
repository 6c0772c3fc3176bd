//! Exports: a source yields typed rows, a format writes them to a file. The pieces meet
//! here: [`Value`] (a typed cell), [`ColumnSpec`] (what is exported under which header) and
//! [`FormatWriter`] (one per file format). Rows stream through; nothing holds a whole result.

pub mod csv;
pub mod format;
pub mod job;
pub mod pdf;
pub mod xlsx;

use std::path::Path;

pub use format::{
    ColumnSpec, FormatContext, FormatWriter, HashingWriter, Value, check_row_width, hash_file,
};

use crate::Result;
use crate::api::{Column, ReportFormat};
use crate::source::Encoding;

/// Opens the writer of `format`, writing to `path`.
pub fn writer_for(
    format: &ReportFormat,
    path: &Path,
    ctx: &FormatContext,
) -> Result<Box<dyn FormatWriter>> {
    Ok(match format {
        ReportFormat::Csv(opts) => Box::new(csv::CsvWriter::create(path, opts, ctx)?),
        ReportFormat::Xlsx(opts) => Box::new(xlsx::XlsxWriter::create(path, opts, ctx)?),
        ReportFormat::Pdf(opts) => Box::new(pdf::PdfWriter::create(path, opts, ctx)?),
    })
}

/// How a source may encode the rows of `format` itself, for the columns `selection` picks
/// (see [`Encoding`]): `None` when the format takes rows (XLSX, PDF, Shift_JIS CSV).
pub fn record_encoding(
    format: &ReportFormat,
    ctx: &FormatContext,
    selection: &[Column],
) -> Result<Option<Encoding>> {
    match format {
        ReportFormat::Csv(opts) => csv::record_encoding(opts, ctx, selection),
        ReportFormat::Xlsx(_) | ReportFormat::Pdf(_) => Ok(None),
    }
}
