//! PDF report files: a paginated table.
//!
//! Layout (all in points, 1/72 in):
//! - A4 (595 x 842) or Letter (612 x 792), portrait or landscape; 36 pt (0.5 in) margins,
//!   the bottom one holding the footer.
//! - Page 1 starts with the title (`format.pdf.title`, default the schedule's name; up to
//!   two lines) and `Generated <time, RFC 3339, in the report's zone>`.
//! - The table: a shaded header row in bold (repeated at the top of every page), then the
//!   rows, lightly zebra-striped, with rules between rows and columns. Cells are 8 pt text,
//!   wrapped onto up to [`MAX_CELL_LINES`] lines (then cut with an ellipsis), never wider
//!   than their column; numbers (integers, floats, decimals) are right-aligned. A row is
//!   never split across pages.
//! - Column widths come from the widths of the headers and of the first [`SAMPLE_ROWS`]
//!   rows, measured with the font's own metrics, then fitted to the page width (see
//!   [`layout::column_widths`]).
//! - Every page ends with `Page X of Y`. Pages are laid out as rows arrive; the footers are
//!   added at [`FormatWriter::finish`], once Y is known.
//!
//! Fonts: without `fontFile`, the built-in Helvetica (not embedded; Latin-1/WinAnsi text).
//! A character outside it is an error naming the row, the column and the character, and
//! pointing at `format.pdf.fontFile`. With `fontFile` (TrueType or OpenType: `.ttf`, `.otf`,
//! or the first face of a `.ttc`/`.otc` collection), the font is embedded as a subset of
//! the glyphs used (see [`sfnt`]); a character the font has no glyph for is an
//! error too: the report never shows a "tofu" box. Only one face of the file is used, so
//! bold text (title, header) is drawn filled and outlined.
//!
//! Memory: a page is held only while it is laid out. When a row no longer fits, the page's
//! content (shading, rules, text) is encoded and written to the file as a compressed stream
//! ([`file`]), and only its object number is kept. `Page X of Y` needs the page count, so
//! each footer is a second, small content stream of its page (a page's `/Contents` may be an
//! array), written in `finish` with the page objects, the page tree and what only the end
//! knows: the embedded font subset (glyphs are numbered as first drawn, see [`fonts`]) and
//! the document information, both made by printpdf. The file is written (and hashed) under
//! the temporary name the export job gives it, renamed only once complete: a failure never
//! leaves part of a report under its real name. So memory does not grow with the report;
//! [`MAX_ROWS`] only keeps a PDF readable. Measured with `bench/export.sh` (release, the whole
//! `ferry run-now`, 10 columns, A4 landscape, IPAGothic embedded), before -> after: 100,000
//! rows (4,837 pages) 5.12 -> 3.98 s, peak RSS 499 -> 64 MiB; 200,000 rows 12.13 -> 8.13 s,
//! 945 -> 65 MiB (built-in Helvetica: 469 -> 51 and 864 -> 50 MiB, times about equal).

mod draw;
mod file;
mod fonts;
mod layout;
mod sfnt;

use std::fs::File;
use std::path::{Path, PathBuf};

use lopdf::content::Operation;
use lopdf::{Dictionary, Object};
use printpdf::{PdfDocument, PdfPage, PdfSaveOptions, PdfWarnMsg, Pt, Rect};

use super::{ColumnSpec, FormatContext, FormatWriter, Value};
use crate::api::{Orientation, PageSize, PdfFormat};
use crate::{Error, Result};
use draw::{
    TEXT_SIZE, baseline_offset, begin_text, encode, end_text, fill_color, line, line_width,
    plain_text, push_fake_bold, rect, set_font, show_line, stroke_color, text_width,
};
use file::PdfFile;
use fonts::{Fonts, Style};

/// The most rows a PDF report may have; beyond this the export fails and suggests CSV or
/// XLSX. Not a memory bound (pages are written as they fill, see the module doc) but a
/// reading one: a million rows of 10 columns are some 50,000 A4 pages (measured: 72 MiB peak
/// RSS, 46 s, 127 MB with an embedded font), and the page tree lists every page in one array.
pub const MAX_ROWS: u64 = 1_000_000;
/// Rows measured to choose the column widths.
pub const SAMPLE_ROWS: usize = 100;
/// Lines a cell (or header) may wrap onto before it is cut with an ellipsis.
pub const MAX_CELL_LINES: usize = 3;

const MARGIN: f32 = 36.0;
const MARGIN_BOTTOM: f32 = 40.0;
const FOOTER_BASELINE: f32 = 20.0;
const TITLE_SIZE: f32 = 14.0;
const TITLE_LINE: f32 = 18.0;
const TITLE_MAX_LINES: usize = 2;
const LINE: f32 = 10.0;
const PAD_X: f32 = 3.0;
const PAD_Y: f32 = 2.5;
/// Narrowest column: below this a column shows about three characters.
const MIN_COLUMN: f32 = 18.0;
/// No column's natural width counts for more than this share of the table.
const MAX_NATURAL_SHARE: f32 = 0.5;
/// Values (numbers, dates, timestamps) are kept on one line up to this share of the table.
const MAX_VALUE_SHARE: f32 = 0.3;

const HEADER_SHADE: f32 = 0.86;
const ZEBRA_SHADE: f32 = 0.955;
const RULE_SHADE: f32 = 0.72;
const BORDER_SHADE: f32 = 0.45;
const SECONDARY_TEXT: f32 = 0.3;

/// Writes PDF files.
pub struct PdfWriter {
    path: PathBuf,
    /// The file being written; taken by `finish`.
    out: Option<PdfFile>,
    width: f32,
    height: f32,
    fonts: Fonts,
    title: Vec<String>,
    generated: String,
    ellipsis: &'static str,
    time_zone: jiff::tz::TimeZone,
    /// The document's metadata and, once the glyphs are known, its font: printpdf writes
    /// their objects at the end (the pages never go through it).
    doc: PdfDocument,
    /// The object number of each written page's content (rules, shading, text; the footer
    /// is a second stream written at the end).
    bodies: Vec<u32>,
    columns: Vec<ColumnSpec>,
    /// Column geometry, once the sample rows are in.
    table: Option<Table>,
    sample: Vec<Row>,
    page: Option<Page>,
    rows: u64,
    /// [`MAX_ROWS`] (lowered by tests).
    row_limit: u64,
}

struct Table {
    /// Left edge of each column, and the right edge of the last one.
    edges: Vec<f32>,
    header: Vec<Vec<String>>,
    header_right: Vec<bool>,
    header_height: f32,
}

impl Table {
    /// Where text `width` points wide starts in column `column`: after the left padding, or
    /// ending at the right padding when `right_aligned`.
    fn text_x(&self, column: usize, right_aligned: bool, width: f32) -> f32 {
        if right_aligned {
            self.edges[column + 1] - PAD_X - width
        } else {
            self.edges[column] + PAD_X
        }
    }
}

struct Row {
    cells: Vec<Cell>,
}

struct Cell {
    text: String,
    /// Right-aligned.
    numeric: bool,
    /// A value (number, date, time, ...) rather than text: one word, kept on one line when
    /// the page allows.
    atomic: bool,
}

/// The page being laid out. Its content is drawn in three passes: shading, then rules (so
/// no stripe covers a rule), then all the text in one text object (so no row needs its own
/// font setting).
struct Page {
    shading: Vec<Operation>,
    rules: Vec<Operation>,
    text: Vec<Operation>,
    /// Where the table starts (its top edge) and where the next row goes.
    table_top: f32,
    y: f32,
}

impl PdfWriter {
    /// Creates the file at `path`. Fails early if the font file cannot be used or the title
    /// has characters the font cannot show.
    pub fn create(path: &Path, opts: &PdfFormat, ctx: &FormatContext) -> Result<Self> {
        let fonts = match &opts.font_file {
            Some(font) => Fonts::load(Path::new(font)).map_err(Error::Export)?,
            None => Fonts::builtin(),
        };
        let (mut width, mut height) = match opts.page_size {
            PageSize::A4 => (210.0 / 25.4 * 72.0, 297.0 / 25.4 * 72.0),
            PageSize::Letter => (612.0, 792.0),
        };
        if opts.orientation == Orientation::Landscape {
            std::mem::swap(&mut width, &mut height);
        }
        let title_text = opts.title.clone().unwrap_or_else(|| ctx.title.clone());
        let title_text = clean_text(&title_text).replace('\n', " ");
        let generated = format!(
            "Generated {}",
            ctx.generated_at.strftime("%Y-%m-%dT%H:%M:%S%:z")
        );
        if let Some(c) = fonts.first_missing(&title_text) {
            return Err(unsupported(&fonts, "the title (format.pdf.title)", c));
        }
        for text in [&generated, "Page 0123456789 of"] {
            if let Some(c) = fonts.first_missing(text) {
                return Err(Error::Export(format!(
                    "{} has no glyph for '{c}' (U+{:04X}), which the report needs for its \
                     generation time and page numbers; configure a different font in \
                     format.pdf.fontFile",
                    fonts.describe(),
                    c as u32
                )));
            }
        }
        let ellipsis = if fonts.has('…') {
            "…"
        } else if fonts.has('.') {
            "..."
        } else {
            ""
        };
        let title = layout::wrap(
            &title_text,
            width - 2.0 * MARGIN,
            TITLE_MAX_LINES,
            ellipsis,
            |c| fonts.char_em(c, Style::Bold) * TITLE_SIZE,
        );
        let out = File::create(path)
            .and_then(PdfFile::new)
            .map_err(|e| Error::io(path, e))?;
        let mut doc = PdfDocument::new(&title_text);
        let info = &mut doc.metadata.info;
        info.creator = "Ferry".into();
        info.producer = "Ferry (printpdf)".into();
        if let Ok(date) =
            printpdf::OffsetDateTime::from_unix_timestamp(ctx.generated_at.timestamp().as_second())
        {
            info.creation_date = date;
            info.modification_date = date;
            info.metadata_date = date;
        }
        Ok(PdfWriter {
            path: path.to_path_buf(),
            out: Some(out),
            width,
            height,
            fonts,
            title,
            generated,
            ellipsis,
            time_zone: ctx.time_zone.clone(),
            doc,
            bodies: Vec::new(),
            columns: Vec::new(),
            table: None,
            sample: Vec::with_capacity(SAMPLE_ROWS),
            page: None,
            rows: 0,
            row_limit: MAX_ROWS,
        })
    }

    /// Chooses the column widths from the headers and the sample rows, then lays the
    /// sample rows out.
    fn start_table(&mut self) -> Result<()> {
        self.table = Some(self.measure_table());
        for row in std::mem::take(&mut self.sample) {
            self.place_row(row)?;
        }
        Ok(())
    }

    fn measure_table(&self) -> Table {
        let n = self.columns.len();
        let available = self.width - 2.0 * MARGIN;
        let regular = text_width(&self.fonts, Style::Regular);
        let bold = text_width(&self.fonts, Style::Bold);
        // A long word (a URL, say) may be broken rather than take more than an equal share
        // of the width; a value (number, date, ...) may take up to [`MAX_VALUE_SHARE`].
        let word_cap = (available / n.max(1) as f32).max(MIN_COLUMN);
        let value_cap = available * MAX_VALUE_SHARE;
        let mut natural = Vec::with_capacity(n);
        let mut minimum = Vec::with_capacity(n);
        let mut header_right = Vec::with_capacity(n);
        for (i, column) in self.columns.iter().enumerate() {
            let mut widest = layout::widest_line(&column.header, &bold);
            let mut word = layout::widest_word(&column.header, &bold);
            let mut value = 0.0f32;
            let (mut numbers, mut others) = (0, 0);
            for row in &self.sample {
                let cell = &row.cells[i];
                let line = layout::widest_line(&cell.text, &regular);
                widest = widest.max(line);
                if cell.atomic {
                    value = value.max(line);
                } else {
                    word = word.max(layout::widest_word(&cell.text, &regular));
                }
                match (cell.numeric, cell.text.is_empty()) {
                    (true, _) => numbers += 1,
                    (false, false) => others += 1,
                    (false, true) => {}
                }
            }
            natural.push((widest + 2.0 * PAD_X).min(available * MAX_NATURAL_SHARE));
            let word = (word + 2.0 * PAD_X).clamp(MIN_COLUMN, word_cap);
            minimum.push(word.max((value + 2.0 * PAD_X).min(value_cap)));
            header_right.push(numbers > 0 && others == 0);
        }
        let widths = layout::column_widths(&natural, &minimum, available);
        let mut edges = Vec::with_capacity(n + 1);
        let mut x = MARGIN;
        edges.push(x);
        for w in &widths {
            x += w;
            edges.push(x);
        }
        let header: Vec<Vec<String>> = self
            .columns
            .iter()
            .zip(&widths)
            .map(|(column, w)| {
                layout::wrap(
                    &column.header,
                    w - 2.0 * PAD_X,
                    MAX_CELL_LINES,
                    self.ellipsis,
                    &bold,
                )
            })
            .collect();
        let lines = header.iter().map(Vec::len).max().unwrap_or(0).max(1);
        Table {
            edges,
            header,
            header_right,
            header_height: lines as f32 * LINE + 2.0 * PAD_Y,
        }
    }

    /// Lays out one row, starting a new page first (and writing the full one) if it does
    /// not fit on this one.
    fn place_row(&mut self, row: Row) -> Result<()> {
        let table = self.table.as_ref().expect("table laid out");
        let regular = |c| self.fonts.char_em(c, Style::Regular) * TEXT_SIZE;
        let lines: Vec<Vec<String>> = row
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let inner = table.edges[i + 1] - table.edges[i] - 2.0 * PAD_X;
                layout::wrap(&cell.text, inner, MAX_CELL_LINES, self.ellipsis, regular)
            })
            .collect();
        let line_count = lines.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let height = line_count as f32 * LINE + 2.0 * PAD_Y;
        if self
            .page
            .as_ref()
            .is_some_and(|p| p.y - height < MARGIN_BOTTOM)
        {
            self.end_page()?;
        }
        if self.page.is_none() {
            self.start_page();
        }
        self.rows += 1;
        let table = self.table.as_ref().expect("table laid out");
        let page = self.page.as_mut().expect("page started");
        let (left, right) = (table.edges[0], table.edges[table.edges.len() - 1]);
        let top = page.y;
        let bottom = top - height;
        if self.rows.is_multiple_of(2) {
            rect(&mut page.shading, left, bottom, right - left, height);
        }
        line(&mut page.rules, &[(left, bottom), (right, bottom)], false);
        // Each cell's lines, taken one row line at a time.
        let mut cells: Vec<_> = row
            .cells
            .iter()
            .zip(lines)
            .enumerate()
            .map(|(i, (cell, lines))| (i, cell.numeric, lines.into_iter()))
            .collect();
        for k in 0..line_count {
            let baseline = top - PAD_Y - k as f32 * LINE - baseline_offset(LINE, TEXT_SIZE);
            let pieces = cells.iter_mut().filter_map(|(i, numeric, lines)| {
                let text = lines.next()?;
                let width = self.fonts.width(&text, Style::Regular, TEXT_SIZE);
                Some((table.text_x(*i, *numeric, width), width, text))
            });
            show_line(&mut page.text, &self.fonts, baseline, pieces);
        }
        page.y = bottom;
        Ok(())
    }

    /// Starts a page: on the first, the title block; on every page, the table header.
    fn start_page(&mut self) {
        let mut shading = Vec::new();
        let mut rules = vec![stroke_color(RULE_SHADE), line_width(0.4)];
        let mut text = vec![begin_text(), fill_color(0.0)];
        let mut y = self.height - MARGIN;
        let fake_bold = self.fonts.fake_bold();
        if self.bodies.is_empty() {
            text.push(set_font(&self.fonts, Style::Bold, TITLE_SIZE));
            if fake_bold {
                push_fake_bold(&mut text, 0.5);
            }
            for line in std::mem::take(&mut self.title) {
                let baseline = y - baseline_offset(TITLE_LINE, TITLE_SIZE);
                show_line(&mut text, &self.fonts, baseline, [(MARGIN, 0.0, line)]);
                y -= TITLE_LINE;
            }
            if fake_bold {
                text.push(plain_text());
            }
            text.push(set_font(&self.fonts, Style::Regular, TEXT_SIZE));
            text.push(fill_color(SECONDARY_TEXT));
            y -= 2.0;
            let baseline = y - baseline_offset(LINE, TEXT_SIZE);
            let generated = (MARGIN, 0.0, self.generated.clone());
            show_line(&mut text, &self.fonts, baseline, [generated]);
            y -= LINE + 8.0;
            text.push(fill_color(0.0));
        }
        let table_top = y;
        if let Some(table) = self.table.as_ref().filter(|t| t.edges.len() > 1) {
            let (left, right) = (table.edges[0], table.edges[table.edges.len() - 1]);
            let bottom = y - table.header_height;
            shading.push(fill_color(HEADER_SHADE));
            rect(
                &mut shading,
                left,
                bottom,
                right - left,
                table.header_height,
            );
            line(&mut rules, &[(left, bottom), (right, bottom)], false);
            text.push(set_font(&self.fonts, Style::Bold, TEXT_SIZE));
            if fake_bold {
                push_fake_bold(&mut text, 0.25);
            }
            let lines = table.header.iter().map(Vec::len).max().unwrap_or(0);
            for k in 0..lines {
                let baseline = y - PAD_Y - k as f32 * LINE - baseline_offset(LINE, TEXT_SIZE);
                let pieces = table.header.iter().enumerate().filter_map(|(i, lines)| {
                    let line = lines.get(k)?.clone();
                    let width = self.fonts.width(&line, Style::Bold, TEXT_SIZE);
                    let x = table.text_x(i, table.header_right[i], width);
                    Some((x, width, line))
                });
                show_line(&mut text, &self.fonts, baseline, pieces);
            }
            if fake_bold {
                text.push(plain_text());
            }
            y = bottom;
        }
        // Rows: regular text; zebra stripes in a light shade.
        text.push(set_font(&self.fonts, Style::Regular, TEXT_SIZE));
        shading.push(fill_color(ZEBRA_SHADE));
        self.page = Some(Page {
            shading,
            rules,
            text,
            table_top,
            y,
        });
    }

    /// Closes the current page: column rules and the table border, then writes its content
    /// to the file (compressed) and forgets it.
    fn end_page(&mut self) -> Result<()> {
        let Some(page) = self.page.take() else {
            return Ok(());
        };
        let Page {
            shading,
            mut rules,
            text,
            table_top,
            y,
        } = page;
        if let Some(table) = self.table.as_ref().filter(|t| t.edges.len() > 1) {
            for &x in &table.edges[1..table.edges.len() - 1] {
                line(&mut rules, &[(x, table_top), (x, y)], false);
            }
            let (left, right) = (table.edges[0], table.edges[table.edges.len() - 1]);
            rules.push(stroke_color(BORDER_SHADE));
            rules.push(line_width(0.6));
            line(
                &mut rules,
                &[(left, table_top), (right, table_top), (right, y), (left, y)],
                true,
            );
        }
        let mut ops = Vec::with_capacity(shading.len() + rules.len() + text.len() + 1);
        ops.extend(shading);
        ops.extend(rules);
        ops.extend(text);
        ops.push(end_text());
        let out = self.out.as_mut().expect("file open until finish");
        let id = out
            .add_content(encode(ops))
            .map_err(|e| Error::io(&self.path, e))?;
        self.bodies.push(id.0);
        Ok(())
    }

    /// A note in place of the rows of an empty report.
    fn place_no_rows_note(&mut self) {
        if self.page.is_none() {
            self.start_page();
        }
        let table = self.table.as_ref().filter(|t| t.edges.len() > 1);
        let page = self.page.as_mut().expect("page started");
        let Some(table) = table else {
            return;
        };
        let (left, right) = (table.edges[0], table.edges[table.edges.len() - 1]);
        if self.fonts.first_missing("No rows").is_none() {
            let baseline = page.y - PAD_Y - baseline_offset(LINE, TEXT_SIZE);
            page.text.push(fill_color(SECONDARY_TEXT));
            let note = (left + PAD_X, 0.0, "No rows".to_string());
            show_line(&mut page.text, &self.fonts, baseline, [note]);
            page.text.push(fill_color(0.0));
        }
        page.y -= LINE + 2.0 * PAD_Y;
        line(&mut page.rules, &[(left, page.y), (right, page.y)], false);
    }

    /// The second content stream of page `number` (from 1) of `total`: `Page X of Y`.
    fn footer(&self, number: usize, total: usize) -> Vec<u8> {
        let text = format!("Page {number} of {total}");
        let x = (self.width - self.fonts.width(&text, Style::Regular, TEXT_SIZE)) / 2.0;
        let mut ops = vec![
            begin_text(),
            set_font(&self.fonts, Style::Regular, TEXT_SIZE),
            fill_color(SECONDARY_TEXT),
        ];
        show_line(&mut ops, &self.fonts, FOOTER_BASELINE, [(x, 0.0, text)]);
        ops.push(end_text());
        encode(ops)
    }

    /// The font objects (for every glyph the pages drew) and the document information, as
    /// printpdf writes them: it is handed a one-page document drawing those glyphs, whose
    /// page is then left out. Returns that document (streams compressed) and its trailer.
    fn fonts_and_metadata(&mut self) -> Result<lopdf::Document> {
        // The footers are encoded after the subset is made: their glyphs are numbered now.
        let total = self.bodies.len();
        let digits = if total >= 10 {
            "0123456789"
        } else {
            &"123456789"[..total]
        };
        self.fonts.encode(&format!("Page of {digits}"));
        self.fonts
            .embed(&mut self.doc)
            .map_err(|e| Error::Export(format!("{}: {e}", self.path.display())))?;
        let media = Rect::from_wh(Pt(self.width), Pt(self.height));
        self.doc.pages = vec![PdfPage {
            media_box: media.clone(),
            trim_box: media.clone(),
            crop_box: media,
            ops: self.fonts.inventory(),
        }];
        let options = PdfSaveOptions {
            optimize: true,
            subset_fonts: true,
            secure: true,
            image_optimization: None,
        };
        let mut warnings: Vec<PdfWarnMsg> = Vec::new();
        let mut doc = self.doc.to_lopdf_document(&options, &mut warnings);
        if let Some(w) = warnings
            .iter()
            .find(|w| w.severity == printpdf::PdfParseErrorSeverity::Error)
        {
            return Err(Error::Export(format!(
                "{}: the PDF could not be written correctly: {}",
                self.path.display(),
                w.msg
            )));
        }
        doc.compress();
        Ok(doc)
    }

    /// Writes everything after the pages' content: the fonts, the footers, the page
    /// objects and the page tree, the catalog, the document information and the trailer.
    fn write_document(&mut self) -> Result<(File, [u8; 32])> {
        let printed = self.fonts_and_metadata()?;
        let broken = |what: &str| {
            Error::Export(format!(
                "{}: the PDF could not be written correctly: printpdf's document has no {what}",
                self.path.display()
            ))
        };
        let inventory = *printed.get_pages().get(&1).ok_or_else(|| broken("page"))?;
        let fonts = printed
            .get_dictionary(inventory)
            .and_then(|page| page.get_deref(b"Resources", &printed))
            .and_then(Object::as_dict)
            .and_then(|resources| resources.get(b"Font"))
            .map_err(|_| broken("font resources"))?
            .clone();
        let info = printed
            .trailer
            .get(b"Info")
            .map_err(|_| broken("document information"))?
            .clone();
        let id = printed.trailer.get(b"ID").ok().cloned();
        let mut out = self.out.take().expect("file open until finish");
        let io = |e| Error::io(&self.path, e);
        let fonts = out.import(&printed, &fonts).map_err(io)?;
        let info = out.import(&printed, &info).map_err(io)?;
        drop(printed);
        let resources = out
            .add(Object::Dictionary(Dictionary::from_iter([("Font", fonts)])))
            .map_err(io)?;
        let tree = out.reserve();
        let media = Object::Array(
            [0.0, 0.0, self.width, self.height]
                .into_iter()
                .map(Object::Real)
                .collect(),
        );
        let total = self.bodies.len();
        let mut kids = Vec::with_capacity(total);
        for (i, &body) in self.bodies.iter().enumerate() {
            let footer = out.add_content(self.footer(i + 1, total)).map_err(io)?;
            let page = Dictionary::from_iter([
                ("Type", Object::Name(b"Page".to_vec())),
                ("Parent", Object::Reference(tree)),
                ("MediaBox", media.clone()),
                ("TrimBox", media.clone()),
                ("CropBox", media.clone()),
                ("Resources", Object::Reference(resources)),
                (
                    "Contents",
                    Object::Array(vec![
                        Object::Reference((body, 0)),
                        Object::Reference(footer),
                    ]),
                ),
            ]);
            kids.push(Object::Reference(
                out.add(Object::Dictionary(page)).map_err(io)?,
            ));
        }
        let pages = Dictionary::from_iter([
            ("Type", Object::Name(b"Pages".to_vec())),
            ("Count", Object::Integer(total as i64)),
            ("Kids", Object::Array(kids)),
        ]);
        out.write(tree, Object::Dictionary(pages)).map_err(io)?;
        let catalog = Dictionary::from_iter([
            ("Type", Object::Name(b"Catalog".to_vec())),
            ("Pages", Object::Reference(tree)),
            ("PageLayout", Object::Name(b"OneColumn".to_vec())),
            ("PageMode", Object::Name(b"UseNone".to_vec())),
        ]);
        let catalog = out.add(Object::Dictionary(catalog)).map_err(io)?;
        let mut trailer =
            Dictionary::from_iter([("Root", Object::Reference(catalog)), ("Info", info)]);
        if let Some(id) = id {
            trailer.set("ID", id);
        }
        out.finish(trailer).map_err(io)
    }
}

impl FormatWriter for PdfWriter {
    fn begin(&mut self, columns: &[ColumnSpec]) -> Result<()> {
        for column in columns {
            if let Some(c) = self.fonts.first_missing(&clean_text(&column.header)) {
                let what = format!("the header of column \"{}\"", column.header);
                return Err(unsupported(&self.fonts, &what, c));
            }
        }
        self.columns = columns
            .iter()
            .map(|c| ColumnSpec {
                name: c.name.clone(),
                header: clean_text(&c.header),
            })
            .collect();
        let available = self.width - 2.0 * MARGIN;
        let fit = (available / MIN_COLUMN) as usize;
        if self.columns.len() > fit {
            return Err(Error::Export(format!(
                "{} columns do not fit on a {} page (at most {fit}); use orientation: \
                 landscape, export fewer columns, or use CSV or XLSX",
                self.columns.len(),
                if self.width > self.height {
                    "landscape"
                } else {
                    "portrait"
                }
            )));
        }
        Ok(())
    }

    fn row(&mut self, index: u64, values: &[Value]) -> Result<()> {
        if self.rows + self.sample.len() as u64 >= self.row_limit {
            return Err(Error::Export(format!(
                "the report has more than {} rows, the most a PDF report may have; narrow \
                 the query or its window, or use the csv or xlsx format, which have no such \
                 limit",
                self.row_limit
            )));
        }
        if values.len() != self.columns.len() {
            return Err(Error::Export(format!(
                "row {index} has {} values for {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        let mut cells = Vec::with_capacity(values.len());
        for (value, column) in values.iter().zip(&self.columns) {
            let mut text = String::new();
            value.to_text(&self.time_zone, &mut text);
            if needs_cleaning(&text) {
                text = clean_text(&text);
            }
            if let Some(c) = self.fonts.first_missing(&text) {
                let what = format!("row {index}, column \"{}\"", column.header);
                return Err(unsupported(&self.fonts, &what, c));
            }
            let numeric = matches!(value, Value::Int(_) | Value::Float(_) | Value::Decimal(_));
            let atomic = !matches!(value, Value::Text(_) | Value::Null);
            cells.push(Cell {
                text,
                numeric,
                atomic,
            });
        }
        let row = Row { cells };
        if self.table.is_some() {
            self.place_row(row)?;
        } else {
            self.sample.push(row);
            if self.sample.len() >= SAMPLE_ROWS {
                self.start_table()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Option<[u8; 32]>> {
        if self.table.is_none() {
            self.start_table()?;
        }
        if self.rows == 0 {
            self.place_no_rows_note();
        }
        self.end_page()?;
        let (file, hash) = self.write_document()?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok(Some(hash))
    }
}

/// The error for a character the font cannot show, in `what` (e.g. `row 3, column "name"`).
fn unsupported(fonts: &Fonts, what: &str, c: char) -> Error {
    let shown = if c.is_control() || c.is_whitespace() {
        String::new()
    } else {
        format!("'{c}' ")
    };
    let code = c as u32;
    Error::Export(if fonts.is_builtin() {
        format!(
            "{what}: the character {shown}(U+{code:04X}) cannot be shown with the built-in \
             Helvetica font, which covers Latin-1 (WinAnsi) text only; configure a TrueType or \
             OpenType font that has it in format.pdf.fontFile (for Japanese, e.g. \
             /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf from the Debian package \
             fonts-ipafont-gothic)"
        )
    } else {
        format!(
            "{what}: {} has no glyph for the character {shown}(U+{code:04X}); configure a \
             font that has it in format.pdf.fontFile, or remove the character from the data",
            fonts.describe()
        )
    })
}

/// Whether `text` has characters [`clean_text`] changes.
fn needs_cleaning(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() || is_invisible(c) || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// Zero-width and variation-selector characters: nothing to draw, dropped.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{FE00}'..='\u{FE0F}')
        || ('\u{E0100}'..='\u{E01EF}').contains(&c)
}

/// Line breaks (`\r\n`, `\r`, U+2028/9) become `\n`, tabs and other control characters a
/// space; invisible characters are dropped.
fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\u{2028}' | '\u{2029}' => out.push('\n'),
            c if c.is_control() => out.push(' '),
            c if is_invisible(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> FormatContext {
        FormatContext {
            title: "t".into(),
            generated_at: jiff::Timestamp::UNIX_EPOCH.to_zoned(jiff::tz::TimeZone::UTC),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }

    fn columns(n: usize) -> Vec<ColumnSpec> {
        (0..n)
            .map(|i| ColumnSpec {
                name: format!("c{i}"),
                header: format!("c{i}"),
            })
            .collect()
    }

    #[test]
    fn rows_beyond_the_limit_fail_and_suggest_csv_or_xlsx() {
        let dir = tempfile::tempdir().unwrap();
        let opts = PdfFormat {
            title: None,
            orientation: Orientation::Landscape,
            page_size: PageSize::A4,
            font_file: None,
        };
        let mut writer = PdfWriter::create(&dir.path().join("a.pdf"), &opts, &context()).unwrap();
        writer.begin(&columns(40)).unwrap();
        assert_eq!(
            writer.row_limit, MAX_ROWS,
            "wide reports are not limited more"
        );
        writer.begin(&columns(2)).unwrap();
        writer.row_limit = 3;
        for i in 1..=3 {
            writer.row(i, &[Value::Int(i as i64), Value::Null]).unwrap();
        }
        let err = writer
            .row(4, &[Value::Int(4), Value::Null])
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 3 rows"), "{err}");
        assert!(err.contains("csv or xlsx"), "{err}");
    }

    #[test]
    fn control_characters_are_cleaned_and_line_breaks_normalised() {
        assert_eq!(clean_text("a\r\nb\rc\td\u{0}e"), "a\nb\nc d e");
        assert_eq!(clean_text("👍\u{FE0F} x\u{200B}y"), "👍 xy");
        assert!(!needs_cleaning("plain text, 日本語"));
        assert!(needs_cleaning("tab\there"));
        assert!(needs_cleaning("line\u{2028}separator"));
    }

    #[test]
    fn an_unsupported_character_error_names_the_place_the_character_and_the_setting() {
        let err = unsupported(&Fonts::builtin(), "row 7, column \"商品\"", '注').to_string();
        assert!(err.contains("row 7, column \"商品\""), "{err}");
        assert!(err.contains("'注' (U+6CE8)"), "{err}");
        assert!(err.contains("format.pdf.fontFile"), "{err}");
    }
}
