//! A small TrueType/OpenType reader: the character map, advance widths and the metrics the
//! layout needs; the subset itself is made by the `subsetter` crate.
//!
//! printpdf 0.12 subsets fonts only with its `text_layout` feature, which this crate leaves
//! off (it pulls in a whole layout engine). Without it printpdf embeds the complete font
//! program, which for a Japanese font is 5-20 MB per report. So the PDF writer hands printpdf
//! a subset holding only the glyphs the report uses, renumbered densely (`.notdef` first,
//! then the used glyphs in the order the report first drew them, then the components of
//! composite glyphs), made by
//! `subsetter` (the subsetter of typst and krilla). `glyf` fonts keep their hinting, `name`
//! (copyright and licence) and `post`; CFF fonts keep CFF outlines, made CID-keyed (printpdf
//! embeds the bare `CFF ` table).
//! Layout tables (`GSUB`, `GPOS`, `kern`, ...) and embedded bitmaps are dropped, since the
//! report draws every character with its default glyph. The subset has no `cmap`: PDF
//! addresses glyphs by id, and the caller, who chose the order, knows which. Collections
//! (`.ttc`, `.otc`) contribute their first face.

use std::collections::BTreeMap;

use subsetter::GlyphRemapper;

type Tag = [u8; 4];

/// A parsed font face: its tables and the metrics the layout needs.
pub(crate) struct Sfnt {
    data: Vec<u8>,
    tables: BTreeMap<Tag, (usize, usize)>,
    /// Font design units per em.
    pub units_per_em: u16,
    num_glyphs: u16,
    num_h_metrics: u16,
    cmap: Cmap,
    /// `hhea` ascender, in font units.
    pub ascender: i16,
    /// `hhea` descender (negative), in font units.
    pub descender: i16,
    /// `head` bounding box of all glyphs: x min, y min, x max, y max.
    pub bbox: [i16; 4],
    /// `hhea` caret slope (rise, run): the font's italic angle.
    pub caret_slope: (i16, i16),
    /// `OS/2` weight class (400 regular, 700 bold), 0 when absent.
    pub weight_class: u16,
    /// The PostScript name, made safe for a PDF name (`IPAGothic`).
    pub postscript_name: String,
}

#[derive(Clone, Copy)]
enum Cmap {
    /// Format 4 subtable at this offset of `data`.
    Segments(usize),
    /// Format 12 subtable at this offset of `data`.
    Groups(usize),
}

fn u16_at(d: &[u8], off: usize) -> Result<u16, String> {
    d.get(off..off + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated font data".to_string())
}

fn i16_at(d: &[u8], off: usize) -> Result<i16, String> {
    u16_at(d, off).map(|v| v as i16)
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, String> {
    d.get(off..off + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "truncated font data".to_string())
}

impl Sfnt {
    /// Parses a TrueType/OpenType font (`.ttf`, `.otf`) or the first face of a collection
    /// (`.ttc`, `.otc`).
    pub fn parse(data: Vec<u8>) -> Result<Sfnt, String> {
        let mut face = 0usize;
        let magic = data.get(..4).ok_or("the file is too short to be a font")?;
        if magic == b"ttcf" {
            face = u32_at(&data, 12)? as usize;
        }
        let version = data
            .get(face..face + 4)
            .ok_or("truncated font collection")?;
        if !matches!(version, [0, 1, 0, 0] | b"true" | b"OTTO") {
            return Err("it is not a TrueType or OpenType font".into());
        }
        let count = u16_at(&data, face + 4)? as usize;
        let mut tables = BTreeMap::new();
        for i in 0..count {
            let rec = face + 12 + 16 * i;
            let tag: Tag = data
                .get(rec..rec + 4)
                .ok_or("truncated table directory")?
                .try_into()
                .expect("four bytes");
            let off = u32_at(&data, rec + 8)? as usize;
            let len = u32_at(&data, rec + 12)? as usize;
            if off.checked_add(len).is_none_or(|end| end > data.len()) {
                return Err(format!(
                    "its table {} lies outside the file",
                    String::from_utf8_lossy(&tag)
                ));
            }
            tables.insert(tag, (off, len));
        }
        let table = |tag: &Tag| -> Result<usize, String> {
            tables.get(tag).map(|t| t.0).ok_or_else(|| {
                format!(
                    "it has no `{}` table",
                    String::from_utf8_lossy(tag).trim_end()
                )
            })
        };
        let cff = tables.contains_key(b"CFF ");
        if !tables.contains_key(b"glyf") && !cff {
            return Err(if tables.contains_key(b"CFF2") {
                "it is a variable font with CFF2 outlines, which Ferry cannot embed; use a \
                 static .otf or .ttf font"
                    .into()
            } else {
                "it has no glyph outlines (`glyf` or `CFF ` table)".into()
            });
        }
        if !cff {
            table(b"loca")?;
        }
        let head = table(b"head")?;
        let hhea = table(b"hhea")?;
        let maxp = table(b"maxp")?;
        table(b"hmtx")?;
        for (tag, min) in [(b"head", 54), (b"hhea", 36), (b"maxp", 6)] {
            if tables[tag].1 < min {
                return Err(format!(
                    "its `{}` table is too short",
                    String::from_utf8_lossy(tag)
                ));
            }
        }
        let units_per_em = u16_at(&data, head + 18)?;
        if !(16..=16384).contains(&units_per_em) {
            return Err(format!("its unitsPerEm {units_per_em} is invalid"));
        }
        let bbox = [
            i16_at(&data, head + 36)?,
            i16_at(&data, head + 38)?,
            i16_at(&data, head + 40)?,
            i16_at(&data, head + 42)?,
        ];
        let num_glyphs = u16_at(&data, maxp + 4)?;
        let num_h_metrics = u16_at(&data, hhea + 34)?;
        if num_h_metrics == 0 || num_h_metrics > num_glyphs {
            return Err("its hhea/maxp glyph counts are inconsistent".into());
        }
        let weight_class = match tables.get(b"OS/2") {
            Some(&(off, _)) => u16_at(&data, off + 4).unwrap_or(0),
            None => 0,
        };
        let cmap = find_cmap(&data, table(b"cmap")?)?;
        let postscript_name = tables
            .get(b"name")
            .and_then(|&(off, len)| postscript_name(&data[off..off + len]))
            .unwrap_or_else(|| "EmbeddedFont".to_string());
        let sfnt = Sfnt {
            units_per_em,
            num_glyphs,
            num_h_metrics,
            cmap,
            ascender: i16_at(&data, hhea + 4)?,
            descender: i16_at(&data, hhea + 6)?,
            bbox,
            caret_slope: (i16_at(&data, hhea + 18)?, i16_at(&data, hhea + 20)?),
            weight_class,
            postscript_name,
            tables,
            data,
        };
        // Fail now, not at the end of a long export, if the outlines cannot be read: subset
        // the first and the last glyph.
        let remapper = GlyphRemapper::new_from_glyphs_sorted(&[0, num_glyphs - 1]);
        subsetter::subset(&sfnt.data, 0, &remapper)
            .map_err(|e| format!("its outlines cannot be read ({})", e))?;
        Ok(sfnt)
    }

    /// The glyph id of `c`; 0 (`.notdef`) when the font has no glyph for it.
    pub fn glyph_index(&self, c: char) -> u16 {
        let cp = c as u32;
        let gid = match self.cmap {
            Cmap::Segments(off) => lookup_format4(&self.data, off, cp),
            Cmap::Groups(off) => lookup_format12(&self.data, off, cp),
        }
        .unwrap_or(0);
        if gid < self.num_glyphs { gid } else { 0 }
    }

    /// Advance width of glyph `gid`, in font units.
    pub fn advance(&self, gid: u16) -> u16 {
        let hmtx = self.tables[b"hmtx"].0;
        let i = gid.min(self.num_h_metrics - 1) as usize;
        u16_at(&self.data, hmtx + 4 * i).unwrap_or(0)
    }

    /// Number of glyphs in the font.
    pub fn num_glyphs(&self) -> u16 {
        self.num_glyphs
    }

    /// Builds a standalone font (TrueType, or OpenType with CFF outlines) holding `.notdef`
    /// as glyph 0, then `glyphs` (distinct ids of this font, without `.notdef`) as glyphs 1,
    /// 2, ... in this order, then the components of composite glyphs. CFF subsets are
    /// CID-keyed with CID = glyph id, so a PDF addresses both kinds by these numbers.
    pub fn subset(&self, glyphs: &[u16]) -> Result<Vec<u8>, String> {
        let mut remapper = GlyphRemapper::new();
        for (i, &glyph) in glyphs.iter().enumerate() {
            if glyph == 0 || glyph >= self.num_glyphs || remapper.remap(glyph) as usize != i + 1 {
                return Err(format!("glyph {glyph} is not a distinct glyph of the font"));
            }
        }
        subsetter::subset(&self.data, 0, &remapper).map_err(|e| e.to_string())
    }
}

/// Picks the best Unicode subtable: full repertoire (format 12) first, then BMP (format 4).
fn find_cmap(data: &[u8], cmap: usize) -> Result<Cmap, String> {
    let count = u16_at(data, cmap + 2)? as usize;
    let mut best: Option<(u8, Cmap)> = None;
    for i in 0..count {
        let rec = cmap + 4 + 8 * i;
        let platform = u16_at(data, rec)?;
        let encoding = u16_at(data, rec + 2)?;
        let off = cmap + u32_at(data, rec + 4)? as usize;
        let Ok(format) = u16_at(data, off) else {
            continue;
        };
        let unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
        let candidate = match format {
            12 if unicode => (2, Cmap::Groups(off)),
            4 if unicode => (1, Cmap::Segments(off)),
            _ => continue,
        };
        if best.as_ref().is_none_or(|b| candidate.0 > b.0) {
            best = Some(candidate);
        }
    }
    best.map(|b| b.1)
        .ok_or_else(|| "it has no Unicode character map (cmap format 4 or 12)".into())
}

fn lookup_format4(d: &[u8], off: usize, cp: u32) -> Option<u16> {
    if cp > 0xFFFF {
        return None;
    }
    let cp = cp as u16;
    let seg_x2 = u16_at(d, off + 6).ok()? as usize;
    let segs = seg_x2 / 2;
    let ends = off + 14;
    let starts = ends + seg_x2 + 2;
    let deltas = starts + seg_x2;
    let ranges = deltas + seg_x2;
    // First segment whose end code is >= cp.
    let (mut lo, mut hi) = (0usize, segs);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if u16_at(d, ends + 2 * mid).ok()? < cp {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == segs {
        return None;
    }
    let start = u16_at(d, starts + 2 * lo).ok()?;
    if start > cp {
        return None;
    }
    let delta = u16_at(d, deltas + 2 * lo).ok()?;
    let range_pos = ranges + 2 * lo;
    let range = u16_at(d, range_pos).ok()? as usize;
    if range == 0 {
        return Some(cp.wrapping_add(delta));
    }
    let g = u16_at(d, range_pos + range + 2 * (cp - start) as usize).ok()?;
    if g == 0 {
        None
    } else {
        Some(g.wrapping_add(delta))
    }
}

fn lookup_format12(d: &[u8], off: usize, cp: u32) -> Option<u16> {
    let groups = u32_at(d, off + 12).ok()? as usize;
    let (mut lo, mut hi) = (0usize, groups);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let g = off + 16 + 12 * mid;
        let start = u32_at(d, g).ok()?;
        let end = u32_at(d, g + 4).ok()?;
        if cp < start {
            hi = mid;
        } else if cp > end {
            lo = mid + 1;
        } else {
            let gid = u32_at(d, g + 8).ok()? + (cp - start);
            return u16::try_from(gid).ok();
        }
    }
    None
}

/// The PostScript name (name id 6), reduced to characters allowed in a PDF name.
fn postscript_name(name: &[u8]) -> Option<String> {
    let count = u16_at(name, 2).ok()? as usize;
    let strings = u16_at(name, 4).ok()? as usize;
    let mut found: Option<String> = None;
    for i in 0..count {
        let rec = 6 + 12 * i;
        let platform = u16_at(name, rec).ok()?;
        let name_id = u16_at(name, rec + 6).ok()?;
        let len = u16_at(name, rec + 8).ok()? as usize;
        let off = strings + u16_at(name, rec + 10).ok()? as usize;
        if name_id != 6 {
            continue;
        }
        let Some(raw) = name.get(off..off + len) else {
            continue;
        };
        let text: String = match platform {
            0 | 3 => char::decode_utf16(
                raw.chunks_exact(2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]])),
            )
            .map(|c| c.unwrap_or('?'))
            .collect(),
            1 => raw.iter().map(|&b| b as char).collect(),
            _ => continue,
        };
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(63)
            .collect();
        if !clean.is_empty() {
            found = Some(clean);
            if platform == 3 {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPA_GOTHIC: &str = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf";
    const NOTO_CJK: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

    fn font(path: &str) -> Sfnt {
        Sfnt::parse(std::fs::read(path).expect(path)).expect(path)
    }

    impl Sfnt {
        /// Reads a subset's glyph count and advances (it has no `cmap`, which
        /// [`Sfnt::parse`] requires).
        fn parse_subset(data: Vec<u8>) -> Sfnt {
            let table = |tag: &[u8; 4]| -> (usize, usize) {
                let count = u16_at(&data, 4).unwrap() as usize;
                (0..count)
                    .map(|i| 12 + 16 * i)
                    .find(|&rec| &data[rec..rec + 4] == tag)
                    .map(|rec| {
                        (
                            u32_at(&data, rec + 8).unwrap() as usize,
                            u32_at(&data, rec + 12).unwrap() as usize,
                        )
                    })
                    .unwrap()
            };
            let (maxp, hhea) = (table(b"maxp"), table(b"hhea"));
            let tables = BTreeMap::from([
                (*b"hmtx", table(b"hmtx")),
                (*b"maxp", maxp),
                (*b"hhea", hhea),
            ]);
            Sfnt {
                units_per_em: 1000,
                num_glyphs: u16_at(&data, maxp.0 + 4).unwrap(),
                num_h_metrics: u16_at(&data, hhea.0 + 34).unwrap(),
                cmap: Cmap::Segments(0),
                ascender: 0,
                descender: 0,
                bbox: [0; 4],
                caret_slope: (1, 0),
                weight_class: 0,
                postscript_name: String::new(),
                tables,
                data,
            }
        }
    }

    #[test]
    fn characters_map_to_their_glyphs_and_missing_ones_to_notdef() {
        for path in [IPA_GOTHIC, NOTO_CJK] {
            let f = font(path);
            let (a, day) = (f.glyph_index('A'), f.glyph_index('日'));
            assert!(a != 0 && day != 0 && a != day, "{path}: {a} {day}");
            assert_eq!(f.glyph_index('\u{E000}'), 0, "{path}: private use");
            assert!(f.advance(a) > 0, "{path}");
        }
        // Beyond the BMP (a format 12 subtable): U+20B9F, the JIS X 0213 form of 叱.
        assert_ne!(font(NOTO_CJK).glyph_index('\u{20B9F}'), 0);
    }

    #[test]
    fn a_subset_numbers_the_glyphs_in_the_order_given_and_keeps_the_outline_format() {
        for (path, magic) in [(IPA_GOTHIC, &[0u8, 1, 0, 0][..]), (NOTO_CJK, &b"OTTO"[..])] {
            let f = font(path);
            // '日' (a higher glyph id than 'A') was drawn first: it becomes glyph 1.
            let (day, a, comma) = (f.glyph_index('日'), f.glyph_index('A'), f.glyph_index(','));
            assert!(day > a, "{path}");
            let bytes = f.subset(&[day, a, comma]).unwrap();
            // TrueType outlines stay TrueType, CFF stays CFF (printpdf embeds its `CFF ` table).
            assert!(bytes.starts_with(magic), "{path}");
            assert!(bytes.len() < 64 * 1024, "{path}: {}", bytes.len());
            let subset = Sfnt::parse_subset(bytes);
            assert!(subset.num_glyphs >= 4, "{path}");
            // The subset's glyph 1 is '日' (full width), 2 is 'A', 3 is ','.
            assert_eq!(subset.advance(1), f.advance(day), "{path}");
            assert_eq!(subset.advance(2), f.advance(a), "{path}");
            assert_eq!(subset.advance(3), f.advance(comma), "{path}");
            assert_ne!(f.advance(day), f.advance(comma), "{path}");
        }
        let f = font(IPA_GOTHIC);
        let a = f.glyph_index('A');
        assert!(f.subset(&[a, a]).is_err(), "a repeated glyph");
        assert!(f.subset(&[0]).is_err(), ".notdef is always glyph 0");
    }

    #[test]
    fn a_file_that_is_not_a_font_is_refused() {
        let err = Sfnt::parse(b"%PDF-1.7 not a font".to_vec()).err().unwrap();
        assert!(err.contains("not a TrueType or OpenType font"), "{err}");
        let err = Sfnt::parse(b"OTTO\0\0\0\0\0\0\0\0".to_vec()).err().unwrap();
        assert!(err.contains("no glyph outlines"), "{err}");
    }
}
