//! Drawing primitives of the PDF report, as content-stream operations (lopdf's, encoded by
//! lopdf): grey levels, rectangles and lines, a table line of text (one `TJ`, cells placed
//! by offsets) and simulated bold.
//!
//! printpdf builds content streams only while saving a whole document (its operation
//! encoder is private), and a page must be encoded as soon as it is full for the report
//! to be written in bounded memory; so the page is built from lopdf's operations, the ones
//! printpdf would have produced for the same drawing.

use lopdf::Object;
use lopdf::content::{Content, Operation};

use super::fonts::{Fonts, Style};

/// Size of table text, in points.
pub(super) const TEXT_SIZE: f32 = 8.0;

/// Text rendering modes (`Tr`): glyphs filled, or filled and outlined (simulated bold).
const FILL: i64 = 0;
const FILL_STROKE: i64 = 2;

/// Width in points of a character of table text.
pub(super) fn text_width(fonts: &Fonts, style: Style) -> impl Fn(char) -> f32 + '_ {
    move |c| fonts.char_em(c, style) * TEXT_SIZE
}

/// Distance from the top of a line box to the baseline that centres the text in it.
pub(super) fn baseline_offset(line_height: f32, size: f32) -> f32 {
    (line_height + 0.7 * size) / 2.0
}

/// The bytes of a content stream made of `ops`.
pub(super) fn encode(ops: Vec<Operation>) -> Vec<u8> {
    Content { operations: ops }
        .encode()
        .expect("encoding into memory cannot fail")
}

fn op(operator: &str, operands: Vec<Object>) -> Operation {
    Operation::new(operator, operands)
}

/// Fill colour: a grey level from 0 (black) to 1 (white).
pub(super) fn fill_color(level: f32) -> Operation {
    op("g", vec![Object::Real(level)])
}

/// Stroke colour: a grey level.
pub(super) fn stroke_color(level: f32) -> Operation {
    op("G", vec![Object::Real(level)])
}

/// Line width, in points.
pub(super) fn line_width(points: f32) -> Operation {
    op("w", vec![Object::Real(points)])
}

pub(super) fn begin_text() -> Operation {
    op("BT", vec![])
}

pub(super) fn end_text() -> Operation {
    op("ET", vec![])
}

/// Selects the report's font in `style` at `size` points.
pub(super) fn set_font(fonts: &Fonts, style: Style, size: f32) -> Operation {
    op(
        "Tf",
        vec![
            Object::Name(fonts.resource_name(style).into_bytes()),
            Object::Real(size),
        ],
    )
}

/// Back to plain filled glyphs after [`push_fake_bold`].
pub(super) fn plain_text() -> Operation {
    op("Tr", vec![Object::Integer(FILL)])
}

/// Shows pieces of text on one baseline, each `(x, width, text)` in left-to-right order:
/// one `Tm` to the first piece, then a single `TJ` whose kerning numbers move the pen from
/// the end of each piece to the start of the next (widths are measured with the very
/// metrics the viewer applies: Adobe's for Helvetica, the `/W` array for an embedded font).
pub(super) fn show_line(
    ops: &mut Vec<Operation>,
    fonts: &Fonts,
    baseline: f32,
    pieces: impl IntoIterator<Item = (f32, f32, String)>,
) {
    let mut items = Vec::new();
    let mut pen = None;
    for (x, width, text) in pieces {
        if text.is_empty() {
            continue;
        }
        match pen {
            None => ops.push(op(
                "Tm",
                [1.0, 0.0, 0.0, 1.0, x, baseline]
                    .into_iter()
                    .map(Object::Real)
                    .collect(),
            )),
            Some(end) => items.push(Object::Real((end - x) / TEXT_SIZE * 1000.0)),
        }
        items.push(fonts.encode(&text));
        pen = Some(x + width);
    }
    if !items.is_empty() {
        ops.push(op("TJ", vec![Object::Array(items)]));
    }
}

/// Bold for a font without a bold face: glyphs filled and outlined in black.
pub(super) fn push_fake_bold(ops: &mut Vec<Operation>, thickness: f32) {
    ops.push(stroke_color(0.0));
    ops.push(line_width(thickness));
    ops.push(op("Tr", vec![Object::Integer(FILL_STROKE)]));
}

/// A rectangle filled with the current fill colour.
pub(super) fn rect(ops: &mut Vec<Operation>, x: f32, y: f32, width: f32, height: f32) {
    ops.push(op(
        "re",
        [x, y, width, height]
            .into_iter()
            .map(Object::Real)
            .collect(),
    ));
    ops.push(op("f", vec![]));
}

/// A line through `points`, stroked with the current stroke colour and width; `closed`
/// joins the last point to the first.
pub(super) fn line(ops: &mut Vec<Operation>, points: &[(f32, f32)], closed: bool) {
    for (i, &(x, y)) in points.iter().enumerate() {
        let operator = if i == 0 { "m" } else { "l" };
        ops.push(op(operator, vec![Object::Real(x), Object::Real(y)]));
    }
    ops.push(op(if closed { "s" } else { "S" }, vec![]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_line_is_one_positioning_and_one_kerned_show_text() {
        let fonts = Fonts::builtin();
        let mut ops = vec![begin_text(), set_font(&fonts, Style::Regular, TEXT_SIZE)];
        let a = fonts.width("ab", Style::Regular, TEXT_SIZE);
        show_line(
            &mut ops,
            &fonts,
            100.0,
            [
                (10.0, a, "ab".to_string()),
                (50.0, 0.0, String::new()),
                (60.0, 5.0, "(c)".to_string()),
            ],
        );
        ops.push(end_text());
        let text = String::from_utf8(encode(ops)).unwrap();
        // The pen ends piece one at 10 + width; the offset (in 1/1000 text space units,
        // negative = move right) brings it to 60. The empty piece draws nothing.
        let kern = (10.0 + a - 60.0) / TEXT_SIZE * 1000.0;
        assert_eq!(
            text,
            format!("BT\n/F5 8 Tf\n1 0 0 1 10 100 Tm\n[(ab) {kern}((c))] TJ\nET")
        );
    }

    #[test]
    fn shapes_are_filled_rectangles_and_stroked_lines() {
        let mut ops = vec![fill_color(0.5), stroke_color(0.25), line_width(0.4)];
        rect(&mut ops, 1.0, 2.0, 3.0, 4.5);
        line(&mut ops, &[(0.0, 0.0), (10.0, 0.0)], false);
        line(&mut ops, &[(0.0, 0.0), (10.0, 0.0), (10.0, 5.0)], true);
        let text = String::from_utf8(encode(ops)).unwrap();
        assert_eq!(
            text,
            "0.5 g\n0.25 G\n0.4 w\n1 2 3 4.5 re\nf\n0 0 m\n10 0 l\nS\n0 0 m\n10 0 l\n10 5 l\ns"
        );
    }
}
