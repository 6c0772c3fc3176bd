//! The report's font: the built-in Helvetica (Latin text, nothing embedded) or a TrueType
//! font file embedded as a subset. Both answer the same questions: can a character be
//! shown, how wide is a piece of text, how is it encoded in a content stream, and which PDF
//! font draws it.
//!
//! An embedded font's text is encoded as glyph numbers of the subset, two bytes each
//! (`Identity-H`). Pages are written as soon as they are full, long before the subset can be
//! made, so the numbers are fixed as glyphs are first drawn: the first glyph drawn is 1, the
//! next new one 2, and so on (0 is `.notdef`), and the subset is made at the end with its
//! glyphs in that very order (see [`Sfnt::subset`]).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;

use lopdf::{Object, StringFormat};
use printpdf::{
    BuiltinFont, FontId, FontMetrics, FontType, Op, ParsedFont, PdfDocument, PdfFont,
    PdfFontHandle, PdfFontMetricsStub, Pt, TextItem,
};
use sha2::{Digest, Sha256};

use super::sfnt::Sfnt;

/// Text weight: table headers and the title are bold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Regular,
    Bold,
}

/// The PDF resource name of the embedded font (never one of the built-in `F1`..`F14`).
const EMBEDDED_ID: &str = "FerryText";

/// The font every text of a report is set in.
pub(crate) struct Fonts {
    face: Face,
}

enum Face {
    /// Helvetica and Helvetica-Bold (see [`HELVETICA`]).
    Builtin,
    Embedded(Box<Embedded>),
}

struct Embedded {
    sfnt: Sfnt,
    /// The file, for messages.
    path: String,
    /// Glyph id and advance (font units) of every BMP character; glyph 0 = no glyph.
    bmp: Vec<(u16, u16)>,
    /// Characters drawn so far and the glyph numbers given out.
    used: RefCell<Used>,
}

/// What an embedded font's text has used so far.
struct Used {
    /// Characters drawn: the BMP (one bit each) and the others.
    bmp: Vec<u64>,
    other: BTreeSet<char>,
    /// The glyph number (subset glyph id) of each glyph of the font, 0 while not drawn.
    code_of_glyph: Vec<u16>,
    /// The font's glyph behind each number: `glyphs[code]`, `.notdef` (0) first.
    glyphs: Vec<u16>,
}

impl Fonts {
    /// The built-in Helvetica family: nothing is embedded; WinAnsi (Latin-1) text only.
    pub fn builtin() -> Fonts {
        Fonts {
            face: Face::Builtin,
        }
    }

    /// Loads a TrueType font file (`.ttf`, or the first face of a `.ttc`).
    pub fn load(path: &Path) -> Result<Fonts, String> {
        let shown = path.display().to_string();
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read the font file {shown} (format.pdf.fontFile): {e}"))?;
        let sfnt = Sfnt::parse(data).map_err(|e| {
            format!("the font file {shown} (format.pdf.fontFile) cannot be used: {e}")
        })?;
        let num_glyphs = sfnt.num_glyphs() as usize;
        let bmp = (0..=0xFFFFu32)
            .map(|cp| match char::from_u32(cp) {
                Some(c) => {
                    let gid = sfnt.glyph_index(c);
                    (gid, if gid == 0 { 0 } else { sfnt.advance(gid) })
                }
                None => (0, 0),
            })
            .collect();
        Ok(Fonts {
            face: Face::Embedded(Box::new(Embedded {
                sfnt,
                path: shown,
                bmp,
                used: RefCell::new(Used {
                    bmp: vec![0; 1024],
                    other: BTreeSet::new(),
                    code_of_glyph: vec![0; num_glyphs],
                    glyphs: vec![0],
                }),
            })),
        })
    }

    /// Whether this is the built-in font.
    pub fn is_builtin(&self) -> bool {
        matches!(self.face, Face::Builtin)
    }

    /// Says which font this is, for messages: `the built-in Helvetica font` or
    /// `the font /path/ipag.ttf (IPAGothic)`.
    pub fn describe(&self) -> String {
        match &self.face {
            Face::Builtin => "the built-in Helvetica font".to_string(),
            Face::Embedded(e) => format!("the font {} ({})", e.path, e.sfnt.postscript_name),
        }
    }

    /// Whether the font has a glyph for `c`.
    pub fn has(&self, c: char) -> bool {
        match &self.face {
            Face::Builtin => win_ansi(c).is_some(),
            Face::Embedded(e) => e.glyph(c).0 != 0,
        }
    }

    /// The first character of `text` the font cannot show.
    pub fn first_missing(&self, text: &str) -> Option<char> {
        text.chars().find(|&c| !self.has(c))
    }

    /// Advance width of `c` in em (characters without a glyph count as zero).
    pub fn char_em(&self, c: char, style: Style) -> f32 {
        match &self.face {
            Face::Builtin => {
                let table = if style == Style::Bold {
                    &HELVETICA_BOLD
                } else {
                    &HELVETICA
                };
                win_ansi(c).map_or(0.0, |b| table[b as usize - 0x20] as f32 / 1000.0)
            }
            Face::Embedded(e) => e.glyph(c).1 as f32 / e.sfnt.units_per_em as f32,
        }
    }

    /// Width of `text` at `size` points.
    pub fn width(&self, text: &str, style: Style, size: f32) -> f32 {
        text.chars().map(|c| self.char_em(c, style)).sum::<f32>() * size
    }

    /// The PDF font that draws `style`. The embedded font has no bold face; bold text is
    /// drawn with a thin outline instead (see [`Fonts::fake_bold`]).
    pub fn handle(&self, style: Style) -> PdfFontHandle {
        match (&self.face, style) {
            (Face::Builtin, Style::Regular) => PdfFontHandle::Builtin(BuiltinFont::Helvetica),
            (Face::Builtin, Style::Bold) => PdfFontHandle::Builtin(BuiltinFont::HelveticaBold),
            (Face::Embedded(_), _) => PdfFontHandle::External(FontId(EMBEDDED_ID.into())),
        }
    }

    /// Whether bold must be simulated (fill and stroke the glyphs).
    pub fn fake_bold(&self) -> bool {
        !self.is_builtin()
    }

    /// The name content streams select `style` by (`Tf`), the key of its font in the page
    /// resources printpdf writes.
    pub fn resource_name(&self, style: Style) -> String {
        self.handle(style).get_resource_name()
    }

    /// `text` as a string operand of `TJ`: WinAnsi bytes for Helvetica; for an embedded font
    /// two bytes per character, its glyph's number in the subset, recording the glyph as
    /// used. Every character must have a glyph (callers check with [`Fonts::first_missing`]).
    pub fn encode(&self, text: &str) -> Object {
        match &self.face {
            Face::Builtin => Object::String(
                text.chars().map(|c| win_ansi(c).unwrap_or(b'?')).collect(),
                StringFormat::Literal,
            ),
            Face::Embedded(e) => {
                let mut used = e.used.borrow_mut();
                let mut bytes = Vec::with_capacity(2 * text.len());
                for c in text.chars() {
                    let cp = c as usize;
                    if cp <= 0xFFFF {
                        used.bmp[cp / 64] |= 1 << (cp % 64);
                    } else {
                        used.other.insert(c);
                    }
                    let glyph = e.glyph(c).0;
                    let mut code = used.code_of_glyph[glyph as usize];
                    if code == 0 && glyph != 0 {
                        code = used.glyphs.len() as u16;
                        used.glyphs.push(glyph);
                        used.code_of_glyph[glyph as usize] = code;
                    }
                    bytes.extend_from_slice(&code.to_be_bytes());
                }
                Object::String(bytes, StringFormat::Hexadecimal)
            }
        }
    }

    /// Operations that draw every character used so far, in both styles: a page printpdf
    /// is given so that it writes the font objects (widths, the `ToUnicode` map) for all of
    /// them. The page itself is not part of the report.
    pub fn inventory(&self) -> Vec<Op> {
        let text: String = match &self.face {
            Face::Builtin => String::new(),
            Face::Embedded(e) => e.used.borrow().chars().into_iter().collect(),
        };
        let mut ops = vec![Op::StartTextSection];
        for style in [Style::Regular, Style::Bold] {
            ops.push(Op::SetFont {
                font: self.handle(style),
                size: Pt(8.0),
            });
            if !text.is_empty() {
                ops.push(Op::ShowText {
                    items: vec![TextItem::Text(text.clone())],
                });
            }
        }
        ops.push(Op::EndTextSection);
        ops
    }

    /// Embeds the font into `doc` as a subset of the glyphs drawn. The subset is tagged
    /// `ABCDEF+Name` as PDF requires of subset fonts; the tag is derived from the glyph set.
    pub fn embed(&self, doc: &mut PdfDocument) -> Result<(), String> {
        let Face::Embedded(e) = &self.face else {
            return Ok(());
        };
        let used = e.used.borrow();
        let chars = used.chars();
        if chars.is_empty() {
            return Ok(());
        }
        let bytes = e
            .sfnt
            .subset(&used.glyphs[1..])
            .map_err(|err| format!("cannot subset {}: {err}", self.describe()))?;
        let mut parsed = ParsedFont::from_bytes(&bytes, 0, &mut Vec::new()).ok_or_else(|| {
            format!(
                "cannot subset {}: the subset does not parse",
                self.describe()
            )
        })?;
        // printpdf reads the widths from the subset (`hmtx`); the subset has no `cmap`, so the
        // character -> glyph map is the numbering the pages were written with.
        parsed.codepoint_to_glyph = chars
            .iter()
            .map(|&c| (c as u32, used.code_of_glyph[e.glyph(c).0 as usize]))
            .collect();
        let hash = Sha256::digest(bytes.as_slice());
        let tag: String = hash[..6].iter().map(|b| (b'A' + b % 26) as char).collect();
        parsed.font_name = Some(format!("{tag}+{}", e.sfnt.postscript_name));
        parsed.font_metrics = FontMetrics {
            ascent: e.sfnt.ascender,
            descent: e.sfnt.descender,
        };
        parsed.font_type = FontType::TrueType;
        let [x_min, y_min, x_max, y_max] = e.sfnt.bbox;
        parsed.pdf_font_metrics = PdfFontMetricsStub {
            units_per_em: e.sfnt.units_per_em,
            x_min,
            y_min,
            x_max,
            y_max,
            caret_slope_rise: e.sfnt.caret_slope.0,
            caret_slope_run: e.sfnt.caret_slope.1,
            us_weight_class: e.sfnt.weight_class,
        };
        doc.resources
            .fonts
            .map
            .insert(FontId(EMBEDDED_ID.into()), PdfFont::new(parsed));
        Ok(())
    }
}

impl Used {
    /// The characters drawn so far.
    fn chars(&self) -> BTreeSet<char> {
        let mut chars: BTreeSet<char> = self.other.clone();
        for (word_index, &word) in self.bmp.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(c) = char::from_u32((word_index * 64 + bit) as u32) {
                    chars.insert(c);
                }
            }
        }
        chars
    }
}

impl Embedded {
    /// Glyph id (0 = none) and advance width of `c`.
    fn glyph(&self, c: char) -> (u16, u16) {
        let cp = c as usize;
        if cp <= 0xFFFF {
            return self.bmp[cp];
        }
        let gid = self.sfnt.glyph_index(c);
        (gid, if gid == 0 { 0 } else { self.sfnt.advance(gid) })
    }
}

/// Advance widths (1/1000 em) of Helvetica and Helvetica-Bold per WinAnsi code from 0x20,
/// from Adobe's AFM files of the standard 14 fonts (0 for the codes WinAnsi leaves unused).
/// Viewers draw the built-in fonts with these metrics, so text measured with them lines up.
#[rustfmt::skip]
const HELVETICA: [u16; 224] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // 20
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 30
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // 40
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // 50
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // 60
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, 0, // 70
    556, 0, 222, 556, 333, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0, // 80
    0, 222, 222, 333, 333, 350, 556, 1000, 333, 1000, 500, 333, 944, 0, 500, 667, // 90
    278, 333, 556, 556, 556, 556, 260, 556, 333, 737, 370, 556, 584, 333, 737, 333, // A0
    400, 584, 333, 333, 333, 556, 537, 278, 333, 333, 365, 556, 834, 834, 834, 611, // B0
    667, 667, 667, 667, 667, 667, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278, // C0
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611, // D0
    556, 556, 556, 556, 556, 556, 889, 500, 556, 556, 556, 556, 278, 278, 278, 278, // E0
    556, 556, 556, 556, 556, 556, 556, 584, 611, 556, 556, 556, 556, 500, 556, 500, // F0
];

/// See [`HELVETICA`].
#[rustfmt::skip]
const HELVETICA_BOLD: [u16; 224] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, // 20
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, // 30
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, // 40
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, // 50
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, // 60
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, 0, // 70
    556, 0, 278, 556, 500, 1000, 556, 556, 333, 1000, 667, 333, 1000, 0, 611, 0, // 80
    0, 278, 278, 500, 500, 350, 556, 1000, 333, 1000, 556, 333, 944, 0, 500, 667, // 90
    278, 333, 556, 556, 556, 556, 280, 556, 333, 737, 370, 556, 584, 333, 737, 333, // A0
    400, 584, 333, 333, 333, 611, 556, 278, 333, 333, 365, 556, 834, 834, 834, 611, // B0
    722, 722, 722, 722, 722, 722, 1000, 722, 667, 667, 667, 667, 278, 278, 278, 278, // C0
    722, 722, 778, 778, 778, 778, 778, 584, 778, 722, 722, 722, 722, 667, 667, 611, // D0
    556, 556, 556, 556, 556, 556, 889, 556, 556, 556, 556, 556, 278, 278, 278, 278, // E0
    611, 611, 611, 611, 611, 611, 611, 584, 611, 611, 611, 611, 611, 556, 611, 556, // F0
];

/// The WinAnsiEncoding code of `c`, the encoding of the built-in fonts (PDF 32000-1 D.2).
pub(crate) fn win_ansi(c: char) -> Option<u8> {
    match c as u32 {
        cp @ (0x20..=0x7E | 0xA0..=0xFF) => Some(cp as u8),
        _ => Some(match c {
            '€' => 0x80,
            '‚' => 0x82,
            'ƒ' => 0x83,
            '„' => 0x84,
            '…' => 0x85,
            '†' => 0x86,
            '‡' => 0x87,
            'ˆ' => 0x88,
            '‰' => 0x89,
            'Š' => 0x8A,
            '‹' => 0x8B,
            'Œ' => 0x8C,
            'Ž' => 0x8E,
            '\u{2018}' => 0x91,
            '\u{2019}' => 0x92,
            '\u{201C}' => 0x93,
            '\u{201D}' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '˜' => 0x98,
            '™' => 0x99,
            'š' => 0x9A,
            '›' => 0x9B,
            'œ' => 0x9C,
            'ž' => 0x9E,
            'Ÿ' => 0x9F,
            _ => return None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_helvetica_widths_match_the_adobe_metrics() {
        let fonts = Fonts::builtin();
        // Helvetica.afm / Helvetica-Bold.afm advance widths.
        for (c, regular, bold) in [
            (' ', 278, 278),
            ('a', 556, 556),
            ('i', 222, 278),
            ('m', 833, 889),
            ('W', 944, 944),
            ('0', 556, 556),
            ('é', 556, 556),
            ('…', 1000, 1000),
            ('€', 556, 556),
            ('\u{201D}', 333, 500),
            ('±', 584, 584),
            ('µ', 556, 611),
            ('\u{A0}', 278, 278),
        ] {
            assert_eq!(
                (fonts.char_em(c, Style::Regular) * 1000.0).round() as u16,
                regular,
                "regular {c}"
            );
            assert_eq!(
                (fonts.char_em(c, Style::Bold) * 1000.0).round() as u16,
                bold,
                "bold {c}"
            );
        }
    }

    #[test]
    fn builtin_font_shows_latin1_and_winansi_punctuation_only() {
        let fonts = Fonts::builtin();
        assert_eq!(fonts.first_missing("Crème brûlée – 5 €"), None);
        assert_eq!(fonts.first_missing("注文 A"), Some('注'));
        assert_eq!(fonts.first_missing("Łódź"), Some('Ł'));
    }

    #[test]
    fn a_missing_font_file_is_an_error_naming_the_path() {
        let err = Fonts::load(Path::new("/nonexistent/fonts/x.ttf"))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/fonts/x.ttf"), "{err}");
        assert!(err.contains("format.pdf.fontFile"), "{err}");
    }
}
