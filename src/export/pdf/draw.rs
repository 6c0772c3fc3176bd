//! Drawing primitives of the PDF report: grey levels, rectangles and lines as printpdf
//! operations, a table line of text (one `TJ`, cells placed by offsets) and simulated bold.

use printpdf::{
    Color, Greyscale, Line, LinePoint, Op, PaintMode, Point, Pt, Rect, TextItem, TextMatrix,
    TextRenderingMode,
};

use super::fonts::{Fonts, Style};

/// Size of table text, in points.
pub(super) const TEXT_SIZE: f32 = 8.0;

/// Width in points of a character of table text.
pub(super) fn text_width(fonts: &Fonts, style: Style) -> impl Fn(char) -> f32 + '_ {
    move |c| fonts.char_em(c, style) * TEXT_SIZE
}

/// Distance from the top of a line box to the baseline that centres the text in it.
pub(super) fn baseline_offset(line_height: f32, size: f32) -> f32 {
    (line_height + 0.7 * size) / 2.0
}

pub(super) fn grey(level: f32) -> Color {
    Color::Greyscale(Greyscale::new(level, None))
}

pub(super) fn fill_color(level: f32) -> Op {
    Op::SetFillColor { col: grey(level) }
}

/// Shows pieces of text on one baseline, each `(x, width, text)` in left-to-right order:
/// one `Tm` to the first piece, then a single `TJ` whose kerning numbers move the pen from
/// the end of each piece to the start of the next (widths are measured with the very
/// metrics the viewer applies: Adobe's for Helvetica, the `/W` array for an embedded font).
/// One operation per line instead of two per cell keeps a large document small in memory.
pub(super) fn show_line(
    ops: &mut Vec<Op>,
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
            None => ops.push(Op::SetTextMatrix {
                matrix: TextMatrix::Translate(Pt(x), Pt(baseline)),
            }),
            Some(end) => items.push(TextItem::Offset((end - x) / TEXT_SIZE * 1000.0)),
        }
        fonts.mark_used(&text);
        items.push(TextItem::Text(text));
        pen = Some(x + width);
    }
    if !items.is_empty() {
        // Held until the document is written: no spare capacity.
        items.shrink_to_fit();
        ops.push(Op::ShowText { items });
    }
}

/// Bold for a font without a bold face: glyphs filled and outlined in black.
pub(super) fn push_fake_bold(ops: &mut Vec<Op>, thickness: f32) {
    ops.push(Op::SetOutlineColor { col: grey(0.0) });
    ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
    ops.push(Op::SetTextRenderingMode {
        mode: TextRenderingMode::FillStroke,
    });
}

/// A rectangle filled with the current fill colour.
pub(super) fn rect(x: f32, y: f32, width: f32, height: f32) -> Op {
    Op::DrawRectangle {
        rectangle: Rect {
            x: Pt(x),
            y: Pt(y),
            width: Pt(width),
            height: Pt(height),
            mode: Some(PaintMode::Fill),
            winding_order: None,
        },
    }
}

pub(super) fn line(points: &[(f32, f32)], closed: bool) -> Op {
    Op::DrawLine {
        line: Line {
            points: points
                .iter()
                .map(|&(x, y)| LinePoint {
                    p: Point { x: Pt(x), y: Pt(y) },
                    bezier: false,
                })
                .collect(),
            is_closed: closed,
        },
    }
}
