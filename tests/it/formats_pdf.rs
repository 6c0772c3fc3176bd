//! The PDF report writer, checked the way a reader sees the file: text extracted with
//! poppler's `pdftotext`, fonts listed with `pdffonts`, page sizes with `pdfinfo`, pages
//! rendered with `pdftoppm` (which reports broken fonts on stderr).
//!
//! Tools: the tests need poppler-utils and three font packages: IPAGothic (Japanese,
//! TrueType outlines; fonts-ipafont-gothic), Noto Sans CJK (Japanese, CID-keyed CFF
//! outlines in a collection; fonts-noto-cjk) and FreeSerif (Latin, name-keyed CFF;
//! fonts-freefont-otf), at Debian's fixed paths. When any is missing, the first test to
//! need them installs them all with `apt-get update && apt-get install -y ...` (once per
//! test binary, guarded by a `std::sync::Once`). CI runs the tests as root on Debian, where
//! this works; elsewhere install the packages beforehand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use ferry::Error;
use ferry::api::{Orientation, PageSize, PdfFormat};
use ferry::export::pdf::PdfWriter;
use ferry::export::{ColumnSpec, FormatContext, FormatWriter, Value};

/// IPAGothic (TrueType outlines), from Debian's fonts-ipafont-gothic.
const JAPANESE_FONT: &str = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf";
/// Noto Sans CJK (CID-keyed CFF outlines; face 0 is Japanese), from fonts-noto-cjk.
const JAPANESE_CFF_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";
/// FreeSerif (name-keyed CFF outlines), from fonts-freefont-otf.
const LATIN_CFF_FONT: &str = "/usr/share/fonts/opentype/freefont/FreeSerif.otf";

static TOOLS: Once = Once::new();

/// Makes sure poppler's tools and the fonts are installed.
fn tools() {
    TOOLS.call_once(|| {
        let have_poppler = Command::new("pdftotext").arg("-v").output().is_ok();
        let have_fonts = [JAPANESE_FONT, JAPANESE_CFF_FONT, LATIN_CFF_FONT]
            .iter()
            .all(|f| Path::new(f).exists());
        if have_poppler && have_fonts {
            return;
        }
        let status = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                 poppler-utils fonts-ipafont-gothic fonts-noto-cjk fonts-freefont-otf \
                 >/dev/null",
            ])
            .status()
            .expect("run apt-get");
        assert!(
            status.success(),
            "installing poppler-utils, fonts-ipafont-gothic, fonts-noto-cjk and \
             fonts-freefont-otf failed; install them to run these tests"
        );
    });
}

fn context() -> FormatContext {
    let tz = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
    FormatContext {
        title: "order-items-daily".into(),
        generated_at: "2026-07-30T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .to_zoned(tz.clone()),
        time_zone: tz,
    }
}

fn format() -> PdfFormat {
    PdfFormat {
        title: None,
        orientation: Orientation::Portrait,
        page_size: PageSize::A4,
        font_file: None,
    }
}

fn columns(headers: &[&str]) -> Vec<ColumnSpec> {
    headers
        .iter()
        .map(|h| ColumnSpec {
            name: h.to_lowercase(),
            header: h.to_string(),
        })
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Writes a report to `dir/report.pdf`, checking the SHA-256 the writer returns (it hashes
/// the file as it writes it) against the file's.
fn write(
    dir: &Path,
    format: &PdfFormat,
    columns: &[ColumnSpec],
    rows: &[Vec<Value>],
) -> Result<PathBuf, Error> {
    let path = dir.join("report.pdf");
    let mut writer: Box<dyn FormatWriter> = Box::new(PdfWriter::create(&path, format, &context())?);
    writer.begin(columns)?;
    for (i, row) in rows.iter().enumerate() {
        writer.row(i as u64 + 1, row)?;
    }
    let digest = writer
        .finish()?
        .expect("the PDF writer hashes what it writes");
    let (hash, _) = ferry::export::hash_file(&path).unwrap();
    assert_eq!(digest, hash, "the returned SHA-256 is the file's");
    Ok(path)
}

/// The text of each page, in order (`pdftotext` ends every page with a form feed).
fn pages_text(pdf: &Path) -> Vec<String> {
    let text = pdftotext(pdf, None);
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    assert_eq!(pages.pop().as_deref(), Some(""), "text after the last page");
    pages
}

fn run(program: &str, args: &[&str], pdf: &Path) -> String {
    tools();
    let out = Command::new(program)
        .args(args)
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `pdftotext -layout` of the whole file, or of page `page`.
fn pdftotext(pdf: &Path, page: Option<usize>) -> String {
    let mut args = vec!["-layout".to_string()];
    if let Some(p) = page {
        args.extend(["-f".into(), p.to_string(), "-l".into(), p.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("pdftotext", &args, pdf)
}

fn pdfinfo(pdf: &Path) -> String {
    tools();
    let out = Command::new("pdfinfo")
        .arg(pdf)
        .output()
        .expect("run pdfinfo");
    assert!(out.status.success(), "pdfinfo: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn pdffonts(pdf: &Path) -> String {
    tools();
    let out = Command::new("pdffonts")
        .arg(pdf)
        .output()
        .expect("run pdffonts");
    assert!(out.status.success(), "pdffonts: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Renders page 1 and asserts poppler had nothing to complain about (a broken embedded font
/// shows up as errors on stderr).
fn assert_renders_cleanly(pdf: &Path) {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("pdftoppm")
        .args(["-r", "30", "-f", "1", "-l", "1", "-png"])
        .arg(pdf)
        .arg(dir.path().join("page"))
        .output()
        .expect("run pdftoppm");
    assert!(out.status.success(), "pdftoppm: {out:?}");
    assert!(
        out.stderr.is_empty(),
        "pdftoppm complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `pdffonts` line of the one embedded font, split into fields: name, type (one or
/// more words), encoding, emb, sub, uni, object id.
fn embedded_font(pdf: &Path, family: &str) -> Vec<String> {
    let fonts = pdffonts(pdf);
    let line = fonts
        .lines()
        .find(|l| l.contains(family))
        .unwrap_or_else(|| panic!("{family} not listed:\n{fonts}"));
    line.split_whitespace().map(str::to_string).collect()
}

/// Asserts the font is embedded as a subset: a `ABCDEF+Name` name, "emb yes", "sub yes".
fn assert_embedded_subset(fields: &[String], family: &str) {
    let (tag, base) = fields[0].split_once('+').expect("a subset tag");
    assert!(
        tag.len() == 6 && tag.chars().all(|c| c.is_ascii_uppercase()),
        "subset tag {tag}"
    );
    assert!(base.starts_with(family), "{base}");
    let n = fields.len();
    assert_eq!(
        [&fields[n - 6], &fields[n - 5], &fields[n - 4]],
        ["Identity-H", "yes", "yes"],
        "encoding, emb, sub: {fields:?}"
    );
}

fn page_count(pdf: &Path) -> usize {
    pdfinfo(pdf)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo reports the page count")
}

/// Width and height of page 1, in points.
fn page_dimensions(pdf: &Path) -> (f32, f32) {
    let info = pdfinfo(pdf);
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("Page size:"))
        .expect("pdfinfo reports the page size");
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<f32>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// Words on page `page` with their boxes, from `pdftotext -bbox`: (text, x min, x max, y min).
fn words(pdf: &Path, page: usize) -> Vec<(String, f32, f32, f32)> {
    let p = page.to_string();
    let html = run("pdftotext", &["-bbox", "-f", &p, "-l", &p], pdf);
    html.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("<word ")?;
            let attr = |name: &str| -> f32 {
                let start = rest.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end].parse().unwrap()
            };
            let text_start = rest.find('>')? + 1;
            let text_end = rest.rfind("</word>")?;
            Some((
                rest[text_start..text_end].to_string(),
                attr("xMin"),
                attr("xMax"),
                attr("yMin"),
            ))
        })
        .collect()
}

fn export_error(result: Result<PathBuf, Error>) -> String {
    match result {
        Err(Error::Export(message)) => message,
        other => panic!("expected an export error, got {other:?}"),
    }
}

#[test]
fn a_report_shows_its_title_generation_time_headers_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let instant: jiff::Timestamp = "2026-07-29T15:04:05Z".parse().unwrap();
    let rows = vec![
        vec![
            Value::Int(1001),
            text("Espresso beans 1kg"),
            Value::Decimal("12.50".into()),
            Value::Timestamp(instant),
        ],
        vec![
            Value::Int(1002),
            text("Crème brûlée – 5 €"),
            Value::Null,
            Value::Date("2026-07-29".parse().unwrap()),
        ],
        vec![
            Value::Int(1003),
            text(r"Milk (1L) 50% \ off"),
            Value::Float(3.25),
            Value::Bool(true),
        ],
    ];
    let path = write(
        dir.path(),
        &format(),
        &columns(&["Order ID", "Product", "Price", "Updated"]),
        &rows,
    )
    .unwrap();

    let text = pdftotext(&path, None);
    assert!(text.contains("order-items-daily"), "title missing:\n{text}");
    assert!(
        text.contains("Generated 2026-07-30T09:00:00+09:00"),
        "generation time missing:\n{text}"
    );
    for header in ["Order ID", "Product", "Price", "Updated"] {
        assert!(text.contains(header), "header {header} missing:\n{text}");
    }
    for value in [
        "1001",
        "Espresso beans 1kg",
        "12.50",
        "2026-07-30T00:04:05+09:00",
        "Crème brûlée – 5 €",
        "2026-07-29",
        r"Milk (1L) 50% \ off",
        "3.25",
        "true",
    ] {
        assert!(text.contains(value), "value {value} missing:\n{text}");
    }
    assert!(text.contains("Page 1 of 1"), "footer missing:\n{text}");
    assert_eq!(page_count(&path), 1);
}

#[test]
fn the_title_option_replaces_the_schedule_name() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        title: Some("Daily orders".into()),
        ..format()
    };
    let path = write(dir.path(), &opts, &columns(&["A"]), &[vec![Value::Int(1)]]).unwrap();
    let text = pdftotext(&path, None);
    assert!(text.contains("Daily orders"), "{text}");
    assert!(!text.contains("order-items-daily"), "{text}");
}

#[test]
fn a_long_report_repeats_the_header_on_every_page_and_numbers_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<Value>> = (1..=300)
        .map(|i| {
            vec![
                text(&format!("row-{i:04}")),
                Value::Int(i * 7),
                text("some product name"),
            ]
        })
        .collect();
    let path = write(
        dir.path(),
        &format(),
        &columns(&["Reference", "Quantity", "Product"]),
        &rows,
    )
    .unwrap();

    let pages = page_count(&path);
    assert!(
        pages >= 3,
        "300 rows should take several pages, got {pages}"
    );
    let first = pdftotext(&path, Some(1));
    assert!(first.contains(&format!("Page 1 of {pages}")), "{first}");
    let second = pdftotext(&path, Some(2));
    for header in ["Reference", "Quantity", "Product"] {
        assert!(
            second.contains(header),
            "header {header} not repeated on page 2:\n{second}"
        );
    }
    assert!(second.contains(&format!("Page 2 of {pages}")), "{second}");
    assert!(
        !second.contains("order-items-daily"),
        "the title is on page 1 only"
    );
    let last = pdftotext(&path, Some(pages));
    assert!(last.contains(&format!("Page {pages} of {pages}")), "{last}");
    assert!(last.contains("row-0300"), "{last}");

    // Every row appears exactly once: none is lost or split across pages.
    let all = pdftotext(&path, None);
    for i in 1..=300 {
        let reference = format!("row-{i:04}");
        assert_eq!(all.matches(&reference).count(), 1, "{reference}");
    }
}

#[test]
fn long_cell_text_wraps_onto_several_lines_inside_its_column() {
    let dir = tempfile::tempdir().unwrap();
    let long = "The quick brown fox jumps over the lazy dog while the bakery delivers \
                fresh bread to every customer on the street before sunrise";
    let rows = vec![
        vec![Value::Int(1), text(long), Value::Int(42)],
        vec![Value::Int(2), text("short"), Value::Int(7)],
    ];
    let opts = PdfFormat {
        orientation: Orientation::Portrait,
        ..format()
    };
    // Many narrow columns around the long one keep it from taking the whole page.
    let mut cols = columns(&["Id", "Description", "Qty"]);
    cols.extend(columns(&[
        "Warehouse code",
        "Supplier reference",
        "Shipping method",
        "Customer segment",
    ]));
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(|mut r| {
            r.extend([
                text("WH-TOKYO-01"),
                text("SUP-000123-A"),
                text("express overnight"),
                text("wholesale"),
            ]);
            r
        })
        .collect();
    let path = write(dir.path(), &opts, &cols, &rows).unwrap();

    let words = words(&path, 1);
    let find = |w: &str| {
        words
            .iter()
            .find(|(t, ..)| t == w)
            .unwrap_or_else(|| panic!("word {w} missing: {words:?}"))
            .clone()
    };
    // The text is on several lines...
    let (_, _, _, first_y) = find("quick");
    let (_, _, _, later_y) = find("bread");
    assert!(later_y > first_y + 5.0, "the long text is not wrapped");
    // ...and never reaches into the next column.
    let (_, qty_left, ..) = find("Qty");
    let description_right = [
        "quick", "brown", "jumps", "lazy", "bakery", "bread", "customer",
    ]
    .iter()
    .filter_map(|w| words.iter().find(|(t, ..)| t == w))
    .map(|(_, _, right, _)| *right)
    .fold(0.0, f32::max);
    assert!(
        description_right < qty_left,
        "description text ({description_right}) runs into the Qty column ({qty_left})"
    );
}

#[test]
fn text_beyond_three_lines_is_cut_with_an_ellipsis() {
    let dir = tempfile::tempdir().unwrap();
    let long: String = (1..=200).map(|i| format!("word{i} ")).collect();
    let path = write(
        dir.path(),
        &format(),
        &columns(&["Id", "Notes", "Code", "Status"]),
        &[vec![
            Value::Int(1),
            text(&long),
            text("ABC-123"),
            text("done"),
        ]],
    )
    .unwrap();
    let text = pdftotext(&path, None);
    assert!(text.contains("word1 "), "{text}");
    assert!(text.contains('…'), "no ellipsis:\n{text}");
    assert!(!text.contains("word200"), "text was not cut:\n{text}");
    assert!(text.contains("ABC-123") && text.contains("done"), "{text}");
}

#[test]
fn numbers_are_right_aligned_and_text_left_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        vec![text("a"), Value::Int(1)],
        vec![text("bbbbbbbbbb"), Value::Int(123456789)],
        vec![text("cc"), Value::Decimal("45.60".into())],
    ];
    let path = write(dir.path(), &format(), &columns(&["Name", "Amount"]), &rows).unwrap();
    let words = words(&path, 1);
    let get = |w: &str| words.iter().find(|(t, ..)| t == w).unwrap().clone();
    let rights: Vec<f32> = ["1", "123456789", "45.60"]
        .iter()
        .map(|w| get(w).2)
        .collect();
    assert!(
        rights.iter().all(|r| (r - rights[0]).abs() < 0.5),
        "numbers do not share a right edge: {rights:?}"
    );
    let lefts: Vec<f32> = ["a", "bbbbbbbbbb", "cc"].iter().map(|w| get(w).1).collect();
    assert!(
        lefts.iter().all(|l| (l - lefts[0]).abs() < 0.5),
        "text does not share a left edge: {lefts:?}"
    );
}

#[test]
fn japanese_text_is_drawn_with_the_configured_font_embedded_as_a_subset() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        title: Some("受注明細レポート".into()),
        font_file: Some(JAPANESE_FONT.into()),
        ..format()
    };
    let rows: Vec<Vec<Value>> = (1..=120)
        .map(|i| {
            vec![
                Value::Int(i),
                text(if i % 2 == 0 {
                    "東京都千代田区丸の内の本店"
                } else {
                    "大阪支店"
                }),
                text("ｶﾞｲﾄﾞ付き、送料無料（税込）"),
                Value::Int(i * 3),
            ]
        })
        .collect();
    let path = write(
        dir.path(),
        &opts,
        &columns(&["受注ID", "配送先", "備考", "数量"]),
        &rows,
    )
    .unwrap();

    let text = pdftotext(&path, None);
    for expected in [
        "受注明細レポート",
        "受注ID",
        "配送先",
        "備考",
        "数量",
        "東京都千代田区丸の内の本店",
        "大阪支店",
        "ｶﾞｲﾄﾞ付き、送料無料（税込）",
        "Generated 2026-07-30T09:00:00+09:00",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    let pages = page_count(&path);
    assert!(pages >= 2);
    let second = pdftotext(&path, Some(2));
    assert!(second.contains("配送先"), "header not repeated:\n{second}");
    assert!(second.contains(&format!("Page 2 of {pages}")), "{second}");

    let fields = embedded_font(&path, "IPAGothic");
    assert_embedded_subset(&fields, "IPAGothic");
    assert_eq!(fields[0].split_once('+').unwrap().1, "IPAGothic");
    assert_eq!(&fields[1..3], ["CID", "TrueType"], "{fields:?}");
    assert_renders_cleanly(&path);
    // Only the glyphs used are embedded: IPAGothic itself is about 6 MB.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size < 150_000,
        "the PDF is {size} bytes: the font was not subset"
    );
}

#[test]
fn japanese_text_with_an_opentype_cff_collection_font_is_embedded_as_a_subset() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        title: Some("月次売上".into()),
        font_file: Some(JAPANESE_CFF_FONT.into()),
        orientation: Orientation::Landscape,
        ..format()
    };
    let rows: Vec<Vec<Value>> = (1..=60)
        .map(|i| {
            vec![
                Value::Int(i),
                text("北海道札幌市中央区、ご注文ありがとうございます"),
                Value::Decimal(format!("{i}980.00")),
            ]
        })
        .collect();
    let path = write(
        dir.path(),
        &opts,
        &columns(&["番号", "お届け先", "金額"]),
        &rows,
    )
    .unwrap();

    let text = pdftotext(&path, None);
    for expected in [
        "月次売上",
        "番号",
        "お届け先",
        "金額",
        "北海道札幌市中央区、ご注文ありがとうございます",
        "60980.00",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    let fields = embedded_font(&path, "NotoSansCJK");
    assert_embedded_subset(&fields, "NotoSansCJKjp");
    assert_eq!(&fields[1..4], ["CID", "Type", "0C"], "{fields:?}");
    assert_renders_cleanly(&path);
    // Noto Sans CJK is a 19 MB collection; the subset holds a few dozen glyphs.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size < 100_000,
        "the PDF is {size} bytes: the font was not subset"
    );
}

#[test]
fn a_latin_opentype_cff_font_is_embedded_as_a_subset() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        font_file: Some(LATIN_CFF_FONT.into()),
        ..format()
    };
    let rows = vec![
        vec![Value::Int(1), text("Ça déjà vu — Ελληνικά — Русский")],
        vec![Value::Int(2), text("Łódź, Kraków")],
    ];
    let path = write(dir.path(), &opts, &columns(&["Nº", "Texte"]), &rows).unwrap();
    let text = pdftotext(&path, None);
    for expected in ["Texte", "Ça déjà vu — Ελληνικά — Русский", "Łódź, Kraków"]
    {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    let fields = embedded_font(&path, "FreeSerif");
    assert_embedded_subset(&fields, "FreeSerif");
    assert_renders_cleanly(&path);
    // FreeSerif.otf is 2 MB, 1.5 MB of it CFF outlines and glyph names.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size < 60_000,
        "the PDF is {size} bytes: the font was not subset"
    );
}

#[test]
fn a_character_the_builtin_font_lacks_fails_naming_row_column_and_the_font_setting() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        vec![Value::Int(1), text("Coffee")],
        vec![Value::Int(2), text("注文 tea")],
    ];
    let message = export_error(write(
        dir.path(),
        &format(),
        &columns(&["Id", "Product"]),
        &rows,
    ));
    assert!(message.contains("row 2"), "{message}");
    assert!(message.contains("column \"Product\""), "{message}");
    assert!(message.contains("'注' (U+6CE8)"), "{message}");
    assert!(message.contains("format.pdf.fontFile"), "{message}");
}

#[test]
fn a_character_the_configured_font_lacks_fails_naming_the_font() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        font_file: Some(JAPANESE_FONT.into()),
        ..format()
    };
    let rows = vec![vec![Value::Int(1), text("おいしい 😀")]];
    let message = export_error(write(dir.path(), &opts, &columns(&["Id", "感想"]), &rows));
    assert!(message.contains("row 1"), "{message}");
    assert!(message.contains("column \"感想\""), "{message}");
    assert!(message.contains("U+1F600"), "{message}");
    assert!(message.contains(JAPANESE_FONT), "{message}");
    assert!(message.contains("IPAGothic"), "{message}");
}

#[test]
fn a_header_the_builtin_font_cannot_show_fails_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let message = export_error(write(dir.path(), &format(), &columns(&["数量"]), &[]));
    assert!(message.contains("header of column \"数量\""), "{message}");
    assert!(message.contains("format.pdf.fontFile"), "{message}");
}

#[test]
fn a_missing_font_file_is_an_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-font.ttf");
    let opts = PdfFormat {
        font_file: Some(missing.display().to_string()),
        ..format()
    };
    let message = export_error(write(dir.path(), &opts, &columns(&["A"]), &[]));
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("format.pdf.fontFile"), "{message}");

    let not_a_font = dir.path().join("notes.ttf");
    std::fs::write(&not_a_font, "these are not glyphs").unwrap();
    let opts = PdfFormat {
        font_file: Some(not_a_font.display().to_string()),
        ..format()
    };
    let message = export_error(write(dir.path(), &opts, &columns(&["A"]), &[]));
    assert!(message.contains("notes.ttf"), "{message}");
    assert!(
        message.contains("not a TrueType or OpenType font"),
        "{message}"
    );
}

#[test]
fn landscape_and_letter_pages_have_the_right_size() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (PageSize::A4, Orientation::Portrait, (595.28, 841.89)),
        (PageSize::A4, Orientation::Landscape, (841.89, 595.28)),
        (PageSize::Letter, Orientation::Portrait, (612.0, 792.0)),
        (PageSize::Letter, Orientation::Landscape, (792.0, 612.0)),
    ];
    for (page_size, orientation, (width, height)) in cases {
        let opts = PdfFormat {
            page_size,
            orientation,
            ..format()
        };
        let path = write(dir.path(), &opts, &columns(&["A"]), &[vec![Value::Int(1)]]).unwrap();
        let (w, h) = page_dimensions(&path);
        assert!(
            (w - width).abs() < 0.5 && (h - height).abs() < 0.5,
            "{page_size:?} {orientation:?}: {w} x {h}"
        );
    }
}

#[test]
fn an_empty_result_gives_one_page_with_the_header_and_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format(),
        &columns(&["Order ID", "Product"]),
        &[],
    )
    .unwrap();
    assert_eq!(page_count(&path), 1);
    let text = pdftotext(&path, None);
    assert!(
        text.contains("Order ID") && text.contains("Product"),
        "{text}"
    );
    assert!(text.contains("No rows"), "{text}");
    assert!(text.contains("Page 1 of 1"), "{text}");
}

#[test]
fn too_many_columns_for_the_page_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let headers: Vec<String> = (1..=60).map(|i| format!("c{i}")).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let message = export_error(write(dir.path(), &format(), &columns(&headers), &[]));
    assert!(message.contains("60 columns"), "{message}");
    assert!(message.contains("landscape"), "{message}");
}

/// Pages are written to the file as they fill, the footers at the end: a report of many
/// pages must still have every row exactly once, in order, and `Page X of Y` on every page.
#[test]
fn a_report_of_thousands_of_rows_keeps_every_row_and_numbers_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<Value>> = (1..=6000)
        .map(|i| {
            vec![
                Value::Int(i),
                text(&format!("customer-{i:05}")),
                Value::Decimal(format!("{}.{:02}", i * 3, i % 100)),
                text(if i % 7 == 0 {
                    "Crème brûlée (à emporter)"
                } else {
                    ""
                }),
            ]
        })
        .collect();
    let opts = PdfFormat {
        orientation: Orientation::Landscape,
        ..format()
    };
    let path = write(
        dir.path(),
        &opts,
        &columns(&["Id", "Customer", "Amount", "Note"]),
        &rows,
    )
    .unwrap();

    let pages = pages_text(&path);
    assert_eq!(pages.len(), page_count(&path));
    assert!(pages.len() > 150, "{} pages", pages.len());
    let total = pages.len();
    let mut next = 1;
    for (i, page) in pages.iter().enumerate() {
        let footer = format!("Page {} of {total}", i + 1);
        assert_eq!(page.matches(&footer).count(), 1, "page {}: {page}", i + 1);
        assert_eq!(page.matches("Page ").count(), 1, "page {}", i + 1);
        assert!(page.contains("Customer"), "page {}: no header", i + 1);
        // The rows continue where the previous page stopped.
        let first = format!("customer-{next:05}");
        assert!(page.contains(&first), "page {}: {first} missing", i + 1);
        while next <= 6000 && page.contains(&format!("customer-{next:05}")) {
            next += 1;
        }
    }
    assert_eq!(next, 6001, "rows missing after customer-{next:05}");
    let all = pages.concat();
    assert_eq!(all.matches("customer-").count(), 6000);
    assert_eq!(all.matches("Crème brûlée (à emporter)").count(), 6000 / 7);
    assert!(
        pages[total - 1].contains("18000.00"),
        "the last row's amount"
    );
    assert_renders_cleanly(&path);
}

/// With an embedded font, glyphs are numbered as they are first drawn and the subset is made
/// at the end: characters that first appear on the last page, after many pages were written,
/// must still show and extract correctly, and only the glyphs used be embedded.
#[test]
fn glyphs_first_used_on_late_pages_are_in_the_embedded_subset() {
    tools();
    let dir = tempfile::tempdir().unwrap();
    let opts = PdfFormat {
        font_file: Some(JAPANESE_FONT.into()),
        ..format()
    };
    let names = ["東京", "大阪", "名古屋", "札幌", "福岡"];
    let rows: Vec<Vec<Value>> = (1..=3000)
        .map(|i| {
            let place = if i == 3000 {
                "鹿児島県霧島市（最終行）".to_string()
            } else {
                names[i as usize % names.len()].to_string()
            };
            vec![Value::Int(i), text(&place)]
        })
        .collect();
    let path = write(dir.path(), &opts, &columns(&["番号", "支店"]), &rows).unwrap();

    let pages = pages_text(&path);
    let total = pages.len();
    assert!(total > 40, "{total} pages");
    let last = &pages[total - 1];
    assert!(last.contains("鹿児島県霧島市（最終行）"), "{last}");
    assert!(last.contains(&format!("Page {total} of {total}")), "{last}");
    assert!(
        pages[0].contains(&format!("Page 1 of {total}")),
        "{}",
        pages[0]
    );
    for name in names {
        assert_eq!(
            pages.concat().matches(name).count(),
            (1..3000)
                .filter(|i| names[*i % names.len()] == name)
                .count(),
            "{name}"
        );
    }
    let fields = embedded_font(&path, "IPAGothic");
    assert_embedded_subset(&fields, "IPAGothic");
    assert_eq!(&fields[1..3], ["CID", "TrueType"], "{fields:?}");
    // Page 1 renders without complaint, and so does the last (its new glyphs).
    assert_renders_cleanly(&path);
    let out = Command::new("pdftoppm")
        .args([
            "-r",
            "30",
            "-f",
            &total.to_string(),
            "-l",
            &total.to_string(),
            "-png",
        ])
        .arg(&path)
        .arg(dir.path().join("last"))
        .output()
        .expect("run pdftoppm");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "pdftoppm: {out:?}"
    );
    // Only the glyphs used: IPAGothic itself is about 6 MB.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < 400_000, "the PDF is {size} bytes");
}
