//! The CSV and XLSX writers through the library API: exact CSV bytes, and XLSX files read back
//! with a real reader (Python's openpyxl, installed with pip when missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ferry::Error;
use ferry::api::{CsvEncoding, CsvFormat, LineEnding, ReportFormat, XlsxFormat};
use ferry::export::csv::CsvWriter;
use ferry::export::xlsx::XlsxWriter;
use ferry::export::{ColumnSpec, FormatContext, FormatWriter, Value, record_encoding};
use jiff::civil::{date, time};
use jiff::tz::TimeZone;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn ctx(zone: &str) -> FormatContext {
    let time_zone = TimeZone::get(zone).unwrap();
    FormatContext {
        title: "orders".into(),
        generated_at: "2026-07-30T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .to_zoned(time_zone.clone()),
        time_zone,
    }
}

fn columns(headers: &[&str]) -> Vec<ColumnSpec> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| ColumnSpec {
            name: format!("c{i}"),
            header: (*h).to_string(),
        })
        .collect()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn csv_opts(delimiter: &str, header: bool, encoding: CsvEncoding, lf: bool) -> CsvFormat {
    CsvFormat {
        delimiter: delimiter.to_string(),
        header,
        encoding,
        line_ending: if lf { LineEnding::Lf } else { LineEnding::Crlf },
    }
}

/// Writes `rows` under `headers` as CSV and returns the file's bytes and the hash `finish`
/// returned. A UTF-8 file is written a second time from records encoded as a source encodes
/// them (`ferry::export::record_encoding`, as PostgreSQL exports do), which must give the
/// same bytes and hash: every test here checks both paths.
fn write_csv(
    opts: &CsvFormat,
    zone: &str,
    headers: &[&str],
    rows: &[Vec<Value>],
) -> (Vec<u8>, Option<[u8; 32]>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let mut writer: Box<dyn FormatWriter> =
        Box::new(CsvWriter::create(&path, opts, &ctx(zone)).unwrap());
    writer.begin(&columns(headers)).unwrap();
    for (i, row) in rows.iter().enumerate() {
        writer.row(i as u64 + 1, row).unwrap();
    }
    let hash = writer.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let format = ReportFormat::Csv(opts.clone());
    let encoding = record_encoding(&format, &ctx(zone), &[]).unwrap();
    if opts.encoding == CsvEncoding::ShiftJis {
        assert!(
            encoding.is_none(),
            "Shift_JIS rows can fail: no source encodes them"
        );
        return (bytes, hash);
    }
    let specs = columns(headers);
    let names: Vec<String> = specs.iter().map(|c| c.name.clone()).collect();
    let mut encoder = encoding.expect("UTF-8 CSV has an encoding")(&names).unwrap();
    let path = dir.path().join("records.csv");
    let mut writer: Box<dyn FormatWriter> =
        Box::new(CsvWriter::create(&path, opts, &ctx(zone)).unwrap());
    writer.begin(&specs).unwrap();
    // Chunks of a few rows, as a source sends them.
    for chunk in rows.chunks(7) {
        let mut records = Vec::new();
        for row in chunk {
            encoder.encode(row, &mut records);
        }
        writer.records(&records).unwrap();
    }
    assert_eq!(
        writer.finish().unwrap(),
        hash,
        "the hash of the records' file"
    );
    assert_eq!(
        as_text_lossy(&std::fs::read(&path).unwrap()),
        as_text_lossy(&bytes),
        "the file of encoded records differs from the file of rows"
    );
    (bytes, hash)
}

fn as_text_lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn as_text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn csv_quotes_only_fields_with_a_delimiter_quote_or_line_break_and_doubles_quotes() {
    let rows = vec![
        vec![text("plain"), text("a,b")],
        vec![text("say \"hi\""), text("line1\nline2")],
        vec![text("cr\r\nlf"), text("  spaced  ")],
        vec![text("a\rb"), text("")],
    ];
    let (bytes, _) = write_csv(&CsvFormat::default(), "UTC", &["name", "note"], &rows);
    assert_eq!(
        as_text(&bytes),
        "name,note\r\n\
         plain,\"a,b\"\r\n\
         \"say \"\"hi\"\"\",\"line1\nline2\"\r\n\
         \"cr\r\nlf\",  spaced  \r\n\
         \"a\rb\",\r\n"
    );
}

#[test]
fn csv_with_a_semicolon_or_tab_delimiter_quotes_that_delimiter_but_not_commas() {
    let rows = vec![vec![text("1,5"), text("a;b"), text("tab\there")]];
    let (bytes, _) = write_csv(
        &csv_opts(";", true, CsvEncoding::Utf8, false),
        "UTC",
        &["x", "y", "z"],
        &rows,
    );
    assert_eq!(as_text(&bytes), "x;y;z\r\n1,5;\"a;b\";tab\there\r\n");

    let (bytes, _) = write_csv(
        &csv_opts("\t", true, CsvEncoding::Utf8, false),
        "UTC",
        &["x", "y", "z"],
        &rows,
    );
    assert_eq!(as_text(&bytes), "x\ty\tz\r\n1,5\ta;b\t\"tab\there\"\r\n");
}

#[test]
fn csv_without_a_header_starts_with_the_first_row() {
    let rows = vec![
        vec![Value::Int(1), text("a")],
        vec![Value::Int(2), text("b")],
    ];
    let (bytes, _) = write_csv(
        &csv_opts(",", false, CsvEncoding::Utf8, false),
        "UTC",
        &["id", "name"],
        &rows,
    );
    assert_eq!(bytes, b"1,a\r\n2,b\r\n");
}

#[test]
fn csv_line_endings_are_exactly_crlf_by_default_or_lf() {
    let rows = vec![vec![Value::Int(1), text("multi\nline")]];
    let (crlf, _) = write_csv(&CsvFormat::default(), "UTC", &["id", "note"], &rows);
    assert_eq!(crlf, b"id,note\r\n1,\"multi\nline\"\r\n");
    let (lf, _) = write_csv(
        &csv_opts(",", true, CsvEncoding::Utf8, true),
        "UTC",
        &["id", "note"],
        &rows,
    );
    assert_eq!(lf, b"id,note\n1,\"multi\nline\"\n");
}

#[test]
fn csv_utf8_bom_encoding_starts_the_file_with_ef_bb_bf() {
    let rows = vec![vec![text("寿司")]];
    let (bytes, _) = write_csv(
        &csv_opts(",", true, CsvEncoding::Utf8Bom, false),
        "UTC",
        &["商品名"],
        &rows,
    );
    let mut expected = vec![0xEF, 0xBB, 0xBF];
    expected.extend_from_slice("商品名\r\n寿司\r\n".as_bytes());
    assert_eq!(bytes, expected);

    let (plain, _) = write_csv(&CsvFormat::default(), "UTC", &["商品名"], &rows);
    assert_eq!(plain, "商品名\r\n寿司\r\n".as_bytes());
}

#[test]
fn csv_shift_jis_encodes_japanese_text_exactly_as_encoding_rs_does() {
    let rows = vec![
        vec![Value::Int(1), text("まぐろ寿司"), text("ｶﾀｶﾅ・全角＆記号①")],
        vec![Value::Int(2), text("ラーメン, 大盛り"), text("\"引用\"")],
    ];
    let (bytes, _) = write_csv(
        &csv_opts(",", true, CsvEncoding::ShiftJis, false),
        "UTC",
        &["受注ID", "商品名", "備考"],
        &rows,
    );
    let expected_text = "受注ID,商品名,備考\r\n\
                         1,まぐろ寿司,ｶﾀｶﾅ・全角＆記号①\r\n\
                         2,\"ラーメン, 大盛り\",\"\"\"引用\"\"\"\r\n";
    let (expected, _, had_errors) = encoding_rs::SHIFT_JIS.encode(expected_text);
    assert!(!had_errors);
    assert_eq!(bytes, expected.as_ref());
    let (decoded, _, _) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert_eq!(decoded, expected_text);
}

#[test]
fn csv_shift_jis_reports_the_row_column_and_character_it_cannot_encode_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let opts = csv_opts(",", true, CsvEncoding::ShiftJis, false);
    let mut writer: Box<dyn FormatWriter> =
        Box::new(CsvWriter::create(&path, &opts, &ctx("Asia/Tokyo")).unwrap());
    writer.begin(&columns(&["受注ID", "商品名"])).unwrap();
    for i in 1..=11 {
        writer
            .row(i, &[Value::Int(i as i64), text("寿司")])
            .unwrap();
    }
    let err = writer
        .row(12, &[Value::Int(12), text("特上🍣セット")])
        .unwrap_err();
    assert!(matches!(err, Error::Export(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "export: row 12, column \"商品名\": the character '🍣' (U+1F363) cannot be encoded in \
         Shift_JIS"
    );
    // Nothing more is accepted, and finishing reports the failure.
    assert!(writer.row(13, &[Value::Int(13), text("寿司")]).is_err());
    assert!(writer.finish().is_err());
    let bytes = std::fs::read(&path).unwrap();
    let (content, _, _) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(content.ends_with("11,寿司\r\n"), "{content}");
    assert!(!content.contains("12,"), "{content}");

    // In the header, the row is called the header row.
    let path = dir.path().join("header.csv");
    let mut writer = CsvWriter::create(&path, &opts, &ctx("UTC")).unwrap();
    let err = writer.begin(&columns(&["id", "Ω≈ç"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "export: header row, column \"Ω≈ç\": the character '≈' (U+2248) cannot be encoded in \
         Shift_JIS"
    );
}

#[test]
fn csv_null_is_an_empty_field() {
    let rows = vec![
        vec![Value::Null, Value::Int(1), Value::Null],
        vec![Value::Null, Value::Null, Value::Null],
    ];
    let (bytes, _) = write_csv(&CsvFormat::default(), "UTC", &["a", "b", "c"], &rows);
    assert_eq!(as_text(&bytes), "a,b,c\r\n,1,\r\n,,\r\n");
}

#[test]
fn csv_renders_timestamps_in_the_context_zone_with_offset_and_other_types_as_text() {
    let instant: jiff::Timestamp = "2024-01-15T15:30:00Z".parse().unwrap();
    let summer: jiff::Timestamp = "2024-07-01T12:00:00.25Z".parse().unwrap();
    let row = vec![
        Value::Timestamp(instant),
        Value::Timestamp(summer),
        Value::DateTime(date(2024, 3, 31).at(23, 59, 58, 0)),
        Value::Date(date(2024, 2, 29)),
        Value::Time(time(7, 5, 0, 0)),
        Value::Bool(true),
        Value::Int(-42),
        Value::Float(2.5),
        Value::Decimal("12345678901234567890.12".into()),
        Value::Bytes(vec![0xde, 0xad, 0x01]),
    ];
    let headers = ["t1", "t2", "dt", "d", "tm", "b", "i", "f", "dec", "bytes"];
    let (tokyo, _) = write_csv(
        &CsvFormat::default(),
        "Asia/Tokyo",
        &headers,
        std::slice::from_ref(&row),
    );
    assert_eq!(
        as_text(&tokyo).split("\r\n").nth(1).unwrap(),
        "2024-01-16T00:30:00+09:00,2024-07-01T21:00:00.25+09:00,2024-03-31T23:59:58,\
         2024-02-29,07:05:00,true,-42,2.5,12345678901234567890.12,dead01"
    );
    let (new_york, _) = write_csv(&CsvFormat::default(), "America/New_York", &headers, &[row]);
    assert!(
        as_text(&new_york)
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("2024-01-15T10:30:00-05:00,2024-07-01T08:00:00.25-04:00,"),
        "{}",
        as_text(&new_york)
    );
}

#[test]
fn csv_finish_returns_the_sha256_of_the_bytes_in_the_file() {
    let rows: Vec<Vec<Value>> = (0..20_000)
        .map(|i| vec![Value::Int(i), text(&format!("item {i}, \"quoted\""))])
        .collect();
    for encoding in [
        CsvEncoding::Utf8,
        CsvEncoding::Utf8Bom,
        CsvEncoding::ShiftJis,
    ] {
        let (bytes, hash) = write_csv(
            &csv_opts(",", true, encoding, false),
            "UTC",
            &["id", "name"],
            &rows,
        );
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(hash, Some(expected), "{encoding:?}");
        assert!(bytes.len() > 500_000);
    }
}

#[test]
fn csv_rejects_a_row_with_the_wrong_number_of_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let mut writer = CsvWriter::create(&path, &CsvFormat::default(), &ctx("UTC")).unwrap();
    writer.begin(&columns(&["a", "b"])).unwrap();
    let err = writer.row(1, &[Value::Int(1)]).unwrap_err();
    assert_eq!(err.to_string(), "export: row 1: 1 values for 2 columns");
}

// ---------------------------------------------------------------------------------------------
// XLSX, read back with openpyxl.

/// The Python that reads XLSX back: `FERRY_TEST_PYTHON` (the virtualenv `scripts/test.sh`
/// makes under `target/`, with openpyxl), else `python3` from PATH.
fn python() -> std::path::PathBuf {
    std::env::var_os("FERRY_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| "python3".into(), Into::into)
}

/// Makes sure that Python can import openpyxl. Nothing is installed here (a system Python
/// refuses pip, PEP 668): `scripts/test.sh` provides it in its virtualenv.
fn ensure_openpyxl() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let importable = Command::new(python())
            .args(["-c", "import openpyxl"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            importable,
            "{} cannot import openpyxl, which reads the XLSX files back: run the tests with \
             scripts/test.sh (it installs openpyxl into target/test-venv and sets \
             FERRY_TEST_PYTHON), or set FERRY_TEST_PYTHON to a Python that has it",
            python().display()
        );
    });
}

const READ_BACK: &str = r#"
import datetime, json, sys
import openpyxl

wb = openpyxl.load_workbook(sys.argv[1])
sheets = []
for ws in wb.worksheets:
    rows = []
    for row in ws.iter_rows():
        cells = []
        for c in row:
            v = c.value
            if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
                v = v.isoformat()
            cells.append({
                "value": v,
                "type": c.data_type,
                "py": type(c.value).__name__,
                "date": c.is_date,
                "bold": bool(c.font.b),
                "format": c.number_format,
            })
        rows.append(cells)
    sheets.append({
        "name": ws.title,
        "freeze": ws.freeze_panes,
        "filter": ws.auto_filter.ref,
        "widths": {k: d.width for k, d in ws.column_dimensions.items()},
        "rows": rows,
    })
print(json.dumps(sheets))
"#;

/// The workbook at `path` as openpyxl sees it: one JSON object per worksheet.
fn read_xlsx(path: &Path) -> Vec<Json> {
    ensure_openpyxl();
    let out = Command::new(python())
        .args(["-c", READ_BACK])
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "openpyxl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Json::Array(sheets) => sheets,
        other => panic!("unexpected output {other}"),
    }
}

/// Writes `rows` under `headers` as XLSX with at most `limit` rows per sheet.
fn write_xlsx(
    dir: &Path,
    sheet_name: &str,
    limit: Option<u32>,
    headers: &[&str],
    rows: &[Vec<Value>],
) -> PathBuf {
    let path = dir.join("report.xlsx");
    let opts = XlsxFormat {
        sheet_name: sheet_name.to_string(),
    };
    let ctx = ctx("Asia/Tokyo");
    let writer = match limit {
        Some(limit) => XlsxWriter::with_row_limit(&path, &opts, &ctx, limit),
        None => XlsxWriter::create(&path, &opts, &ctx),
    };
    let mut writer: Box<dyn FormatWriter> = Box::new(writer.unwrap());
    writer.begin(&columns(headers)).unwrap();
    for (i, row) in rows.iter().enumerate() {
        writer.row(i as u64 + 1, row).unwrap();
    }
    assert_eq!(writer.finish().unwrap(), None);
    path
}

#[test]
fn xlsx_cells_are_typed_numbers_dates_booleans_and_strings() {
    let dir = tempfile::tempdir().unwrap();
    let instant: jiff::Timestamp = "2024-01-15T15:30:00Z".parse().unwrap();
    let headers = [
        "int", "float", "dec", "dec20", "bool", "date", "datetime", "instant", "time", "text",
        "bytes", "null", "bigint",
    ];
    let row = vec![
        Value::Int(42),
        Value::Float(-2.75),
        Value::Decimal("12.50".into()),
        Value::Decimal("12345678901234567890".into()),
        Value::Bool(true),
        Value::Date(date(2024, 2, 29)),
        Value::DateTime(date(2024, 3, 31).at(23, 59, 58, 0)),
        Value::Timestamp(instant),
        Value::Time(time(7, 5, 30, 0)),
        text("まぐろ寿司"),
        Value::Bytes(vec![0xca, 0xfe]),
        Value::Null,
        Value::Int(1_234_567_890_123_456_789),
    ];
    let path = write_xlsx(dir.path(), "Orders", None, &headers, &[row]);
    let sheets = read_xlsx(&path);
    assert_eq!(sheets.len(), 1);
    let sheet = &sheets[0];
    assert_eq!(sheet["name"], "Orders");
    let header: Vec<&str> = sheet["rows"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(header, headers);
    let cells = &sheet["rows"][1];
    let cell = |i: usize| &cells[i];

    assert_eq!(
        (&cell(0)["type"], &cell(0)["value"]),
        (&"n".into(), &42.into())
    );
    assert_eq!(
        (&cell(1)["type"], &cell(1)["value"]),
        (&"n".into(), &(-2.75).into())
    );
    assert_eq!(
        (&cell(2)["type"], &cell(2)["value"]),
        (&"n".into(), &12.5.into())
    );
    // 20 digits do not fit a double: kept as text, every digit.
    assert_eq!(
        (&cell(3)["type"], &cell(3)["value"]),
        (&"s".into(), &"12345678901234567890".into())
    );
    assert_eq!(
        (&cell(4)["type"], &cell(4)["value"]),
        (&"b".into(), &true.into())
    );

    assert_eq!(cell(5)["date"], true);
    assert_eq!(cell(5)["format"], "yyyy-mm-dd");
    assert_eq!(cell(5)["value"], "2024-02-29T00:00:00");
    assert_eq!(cell(6)["date"], true);
    assert_eq!(cell(6)["format"], "yyyy-mm-dd hh:mm:ss");
    assert_eq!(cell(6)["value"], "2024-03-31T23:59:58");
    // The instant, as wall time in the report's zone (Asia/Tokyo, UTC+9).
    assert_eq!(cell(7)["date"], true);
    assert_eq!(cell(7)["value"], "2024-01-16T00:30:00");
    assert_eq!(cell(8)["date"], true);
    assert_eq!(cell(8)["format"], "hh:mm:ss");
    assert_eq!(cell(8)["value"], "07:05:30");

    assert_eq!(
        (&cell(9)["type"], &cell(9)["value"]),
        (&"s".into(), &"まぐろ寿司".into())
    );
    assert_eq!(
        (&cell(10)["type"], &cell(10)["value"]),
        (&"s".into(), &"cafe".into())
    );
    assert_eq!(cell(11)["value"], Json::Null);
    assert_eq!(
        (&cell(12)["type"], &cell(12)["value"]),
        (&"s".into(), &"1234567890123456789".into())
    );
}

#[test]
fn xlsx_header_is_bold_and_frozen_with_an_autofilter_and_long_columns_are_wider() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<Value>> = (1..=30)
        .map(|i| {
            vec![
                Value::Int(i),
                text(&format!(
                    "A rather long product description, item number {i}"
                )),
                text("寿司寿司寿司寿司寿司寿司"),
            ]
        })
        .collect();
    let path = write_xlsx(
        dir.path(),
        "Orders",
        None,
        &["id", "description", "商品"],
        &rows,
    );
    let sheet = &read_xlsx(&path)[0];
    for header in sheet["rows"][0].as_array().unwrap() {
        assert_eq!(header["bold"], true, "{header}");
    }
    assert_eq!(sheet["rows"][1][0]["bold"], false);
    assert_eq!(sheet["freeze"], "A2");
    assert_eq!(sheet["filter"], "A1:C31");
    assert_eq!(sheet["rows"].as_array().unwrap().len(), 31);
    let width = |col: &str| sheet["widths"][col].as_f64().unwrap();
    // Excel's default width is 8.43 characters.
    assert!(width("B") > 40.0, "{}", sheet["widths"]);
    assert!(width("A") < width("B"), "{}", sheet["widths"]);
    // 12 wide characters count as 24.
    assert!(width("C") > 24.0, "{}", sheet["widths"]);
}

#[test]
fn xlsx_rows_beyond_the_sheet_limit_continue_on_numbered_sheets_with_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<Value>> = (1..=25)
        .map(|i| vec![Value::Int(i), text(&format!("row {i}"))])
        .collect();
    let path = write_xlsx(dir.path(), "Orders", Some(10), &["id", "name"], &rows);
    let sheets = read_xlsx(&path);
    let names: Vec<&str> = sheets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Orders", "Orders (2)", "Orders (3)"]);
    let mut next_id = 1;
    for (sheet, (data_rows, filter)) in
        sheets
            .iter()
            .zip([(10, "A1:B11"), (10, "A1:B11"), (5, "A1:B6")])
    {
        let table = sheet["rows"].as_array().unwrap();
        assert_eq!(table.len(), data_rows + 1, "{}", sheet["name"]);
        assert_eq!(table[0][0]["value"], "id");
        assert_eq!(table[0][1]["value"], "name");
        assert_eq!(table[0][0]["bold"], true);
        assert_eq!(sheet["freeze"], "A2");
        assert_eq!(sheet["filter"], filter);
        for row in &table[1..] {
            assert_eq!(row[0]["value"], next_id);
            assert_eq!(row[1]["value"], format!("row {next_id}"));
            next_id += 1;
        }
    }
    assert_eq!(next_id, 26);
}

#[test]
fn xlsx_long_sheet_names_are_truncated_to_31_characters_including_the_number() {
    let dir = tempfile::tempdir().unwrap();
    let base = "Monthly order items per customer and product";
    let rows: Vec<Vec<Value>> = (1..=3).map(|i| vec![Value::Int(i)]).collect();
    let path = write_xlsx(dir.path(), base, Some(2), &["id"], &rows);
    let names: Vec<String> = read_xlsx(&path)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [&base[..31], &format!("{} (2)", &base[..27])]);
}

#[test]
fn xlsx_with_no_rows_still_has_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_xlsx(dir.path(), "Report", None, &["id", "name"], &[]);
    let sheet = &read_xlsx(&path)[0];
    assert_eq!(sheet["rows"].as_array().unwrap().len(), 1);
    assert_eq!(sheet["filter"], "A1:B1");
    assert_eq!(sheet["freeze"], "A2");
}

#[test]
fn xlsx_text_beyond_excels_cell_limit_is_an_error_naming_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.xlsx");
    let opts = XlsxFormat {
        sheet_name: "Report".into(),
    };
    let mut writer: Box<dyn FormatWriter> =
        Box::new(XlsxWriter::create(&path, &opts, &ctx("UTC")).unwrap());
    writer.begin(&columns(&["id", "note"])).unwrap();
    writer.row(1, &[Value::Int(1), text("fine")]).unwrap();
    let err = writer
        .row(2, &[Value::Int(2), text(&"x".repeat(40_000))])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "export: row 2, column \"note\": String exceeds Excel's limit of 32,767 characters."
    );
    assert!(writer.finish().is_err());
}

#[test]
fn xlsx_files_written_twice_with_the_same_context_are_identical() {
    let rows: Vec<Vec<Value>> = (1..=50)
        .map(|i| vec![Value::Int(i), text("寿司"), Value::Date(date(2024, 1, 1))])
        .collect();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = write_xlsx(first.path(), "Orders", None, &["id", "name", "day"], &rows);
    let b = write_xlsx(second.path(), "Orders", None, &["id", "name", "day"], &rows);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}
