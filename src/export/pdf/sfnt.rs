//! A small TrueType/OpenType reader and subsetter (`glyf` outlines here, CFF outlines in
//! [`super::cff`]).
//!
//! printpdf 0.12 subsets fonts only with its `text_layout` feature, which this crate leaves
//! off (it pulls in a whole layout engine). Without it printpdf embeds the complete font
//! program, which for a Japanese font is 5-20 MB per report. So the PDF writer subsets
//! the font itself, here, and hands printpdf a small self-contained font that holds only
//! the glyphs the report uses: glyphs are renumbered densely (`.notdef` first, then the
//! used glyphs and the components of composite glyphs), and `head`, `hhea`, `maxp`,
//! `hmtx`, `cmap`, `post` and the outlines (`loca` + `glyf`, or `CFF `) are rebuilt.
//! Hinting (`cvt `, `fpgm`, `prep`, `gasp`), `OS/2` and `name` (which carries the font's
//! copyright and licence) are copied; layout tables (`GSUB`, `GPOS`, `kern`, ...) and
//! embedded bitmaps are dropped, since the report draws every character with its default
//! glyph. Collections (`.ttc`, `.otc`) contribute their first face.

use std::collections::{BTreeMap, BTreeSet};

type Tag = [u8; 4];

/// A parsed font face: its tables and the metrics the layout needs.
pub(crate) struct Sfnt {
    data: Vec<u8>,
    tables: BTreeMap<Tag, (usize, usize)>,
    /// Font design units per em.
    pub units_per_em: u16,
    num_glyphs: u16,
    num_h_metrics: u16,
    outlines: Outlines,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outlines {
    /// `glyf` outlines located by `loca`, whose offsets are 32-bit (`true`) or 16-bit.
    TrueType { long_offsets: bool },
    /// A `CFF ` table.
    Cff,
}

#[derive(Clone, Copy)]
enum Cmap {
    /// Format 4 subtable at this offset of `data`.
    Segments(usize),
    /// Format 12 subtable at this offset of `data`.
    Groups(usize),
}

/// The result of subsetting: a standalone font (TrueType, or OpenType with CFF outlines)
/// and how to address its glyphs.
pub(crate) struct Subset {
    /// The font program.
    pub bytes: Vec<u8>,
    /// Character -> glyph id in the subset.
    pub char_to_glyph: BTreeMap<u32, u16>,
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
        let outlines = if cff {
            Outlines::Cff
        } else {
            Outlines::TrueType {
                long_offsets: i16_at(&data, head + 50)? != 0,
            }
        };
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
            outlines,
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
        // Fail now, not at the end of a long export, if the outlines cannot be read.
        match outlines {
            Outlines::TrueType { .. } => {
                sfnt.glyph_data(0)?;
                sfnt.glyph_data(num_glyphs - 1)?;
            }
            Outlines::Cff => {
                let table = sfnt.table(b"CFF ").expect("checked above");
                super::cff::subset(table, &[0]).map_err(|e| format!("its CFF table: {e}"))?;
            }
        }
        Ok(sfnt)
    }

    fn table(&self, tag: &Tag) -> Option<&[u8]> {
        self.tables
            .get(tag)
            .map(|&(off, len)| &self.data[off..off + len])
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

    fn left_side_bearing(&self, gid: u16) -> i16 {
        let hmtx = self.tables[b"hmtx"].0;
        let nhm = self.num_h_metrics as usize;
        let g = gid as usize;
        let off = if g < nhm {
            hmtx + 4 * g + 2
        } else {
            hmtx + 4 * nhm + 2 * (g - nhm)
        };
        i16_at(&self.data, off).unwrap_or(0)
    }

    fn glyph_data(&self, gid: u16) -> Result<&[u8], String> {
        let (loca, loca_len) = self.tables[b"loca"];
        let (glyf, glyf_len) = self.tables[b"glyf"];
        let g = gid as usize;
        let (start, end) = if self.outlines == (Outlines::TrueType { long_offsets: true }) {
            if 4 * (g + 2) > loca_len {
                return Err("its `loca` table is too short".into());
            }
            (
                u32_at(&self.data, loca + 4 * g)? as usize,
                u32_at(&self.data, loca + 4 * g + 4)? as usize,
            )
        } else {
            if 2 * (g + 2) > loca_len {
                return Err("its `loca` table is too short".into());
            }
            (
                2 * u16_at(&self.data, loca + 2 * g)? as usize,
                2 * u16_at(&self.data, loca + 2 * g + 2)? as usize,
            )
        };
        if start > end || end > glyf_len {
            return Err(format!("glyph {gid} lies outside the `glyf` table"));
        }
        Ok(&self.data[glyf + start..glyf + end])
    }

    /// Builds a font holding only `.notdef` and the glyphs of `chars` (every one of which
    /// must have a glyph), plus the components of composite glyphs.
    pub fn subset(&self, chars: &BTreeSet<char>) -> Result<Subset, String> {
        let mut keep = BTreeSet::from([0u16]);
        let mut char_gid = Vec::with_capacity(chars.len());
        for &c in chars {
            let gid = self.glyph_index(c);
            if gid != 0 {
                keep.insert(gid);
                char_gid.push((c as u32, gid));
            }
        }
        if self.outlines == Outlines::Cff {
            return self.subset_cff(keep, &char_gid);
        }
        // Composite glyphs refer to other glyphs: keep those too (transitively).
        let mut pending: Vec<u16> = keep.iter().copied().collect();
        while let Some(gid) = pending.pop() {
            for (_, component) in components(self.glyph_data(gid)?)? {
                if component >= self.num_glyphs {
                    return Err(format!("glyph {gid} refers to a missing glyph"));
                }
                if keep.insert(component) {
                    pending.push(component);
                }
            }
        }
        let new_id: BTreeMap<u16, u16> = keep
            .iter()
            .enumerate()
            .map(|(i, &g)| (g, i as u16))
            .collect();
        let count = keep.len();

        let mut glyf = Vec::new();
        let mut loca = Vec::with_capacity(4 * (count + 1));
        let mut hmtx = Vec::with_capacity(4 * count);
        for &gid in &keep {
            loca.extend_from_slice(&(glyf.len() as u32).to_be_bytes());
            let data = self.glyph_data(gid)?;
            let start = glyf.len();
            glyf.extend_from_slice(data);
            for (pos, component) in components(data)? {
                glyf[start + pos..start + pos + 2]
                    .copy_from_slice(&new_id[&component].to_be_bytes());
            }
            while !glyf.len().is_multiple_of(4) {
                glyf.push(0);
            }
            hmtx.extend_from_slice(&self.advance(gid).to_be_bytes());
            hmtx.extend_from_slice(&self.left_side_bearing(gid).to_be_bytes());
        }
        loca.extend_from_slice(&(glyf.len() as u32).to_be_bytes());

        let mut tables = self.common_tables(count, hmtx, &char_to_glyph(&char_gid, &new_id))?;
        let head = tables.iter_mut().find(|t| &t.0 == b"head").expect("head");
        head.1[50..52].copy_from_slice(&1i16.to_be_bytes()); // long loca offsets
        tables.push((*b"glyf", glyf));
        tables.push((*b"loca", loca));
        for tag in [b"cvt ", b"fpgm", b"gasp", b"prep"] {
            if let Some(t) = self.table(tag) {
                tables.push((*tag, t.to_vec()));
            }
        }
        Ok(Subset {
            bytes: assemble(0x0001_0000, tables),
            char_to_glyph: char_to_glyph(&char_gid, &new_id),
        })
    }

    /// The subset of a CFF-flavoured font: the CFF table cut down to `keep`.
    fn subset_cff(&self, keep: BTreeSet<u16>, char_gid: &[(u32, u16)]) -> Result<Subset, String> {
        let keep: Vec<u16> = keep.into_iter().collect();
        let new_id: BTreeMap<u16, u16> = keep
            .iter()
            .enumerate()
            .map(|(i, &g)| (g, i as u16))
            .collect();
        let cff = super::cff::subset(self.table(b"CFF ").ok_or("no CFF table")?, &keep)?;
        let mut hmtx = Vec::with_capacity(4 * keep.len());
        for &gid in &keep {
            hmtx.extend_from_slice(&self.advance(gid).to_be_bytes());
            hmtx.extend_from_slice(&self.left_side_bearing(gid).to_be_bytes());
        }
        let map = char_to_glyph(char_gid, &new_id);
        let mut tables = self.common_tables(keep.len(), hmtx, &map)?;
        tables.push((*b"CFF ", cff));
        Ok(Subset {
            bytes: assemble(u32::from_be_bytes(*b"OTTO"), tables),
            char_to_glyph: map,
        })
    }

    /// The tables every subset has: `head`, `hhea`, `maxp`, `hmtx`, `cmap`, `post`, and the
    /// copied `OS/2` and `name`.
    fn common_tables(
        &self,
        count: usize,
        hmtx: Vec<u8>,
        char_to_glyph: &BTreeMap<u32, u16>,
    ) -> Result<Vec<(Tag, Vec<u8>)>, String> {
        let mut head = self.table(b"head").ok_or("no head")?.to_vec();
        head[8..12].fill(0); // checkSumAdjustment, set when assembled
        let mut hhea = self.table(b"hhea").ok_or("no hhea")?.to_vec();
        hhea[34..36].copy_from_slice(&(count as u16).to_be_bytes());
        let mut maxp = self.table(b"maxp").ok_or("no maxp")?.to_vec();
        maxp[4..6].copy_from_slice(&(count as u16).to_be_bytes());
        // post version 3: metrics only, no glyph names.
        let mut post = vec![0u8; 32];
        if let Some(orig) = self.table(b"post").filter(|p| p.len() >= 32) {
            post.copy_from_slice(&orig[..32]);
            post[16..32].fill(0); // memory usage hints
        }
        post[0..4].copy_from_slice(&0x0003_0000u32.to_be_bytes());
        let mut tables = vec![
            (*b"cmap", build_cmap(char_to_glyph)),
            (*b"head", head),
            (*b"hhea", hhea),
            (*b"hmtx", hmtx),
            (*b"maxp", maxp),
            (*b"post", post),
        ];
        for tag in [b"OS/2", b"name"] {
            if let Some(t) = self.table(tag) {
                tables.push((*tag, t.to_vec()));
            }
        }
        Ok(tables)
    }
}

/// Character -> glyph id in the subset.
fn char_to_glyph(char_gid: &[(u32, u16)], new_id: &BTreeMap<u16, u16>) -> BTreeMap<u32, u16> {
    char_gid.iter().map(|&(c, g)| (c, new_id[&g])).collect()
}

/// The components of a composite glyph: (byte position of the glyph index, glyph index).
fn components(glyph: &[u8]) -> Result<Vec<(usize, u16)>, String> {
    const ARGS_ARE_WORDS: u16 = 0x0001;
    const HAVE_SCALE: u16 = 0x0008;
    const MORE_COMPONENTS: u16 = 0x0020;
    const HAVE_XY_SCALE: u16 = 0x0040;
    const HAVE_TWO_BY_TWO: u16 = 0x0080;
    let mut out = Vec::new();
    if glyph.len() < 10 || i16_at(glyph, 0)? >= 0 {
        return Ok(out); // empty or simple glyph
    }
    let mut pos = 10;
    loop {
        let flags = u16_at(glyph, pos)?;
        out.push((pos + 2, u16_at(glyph, pos + 2)?));
        pos += 4 + if flags & ARGS_ARE_WORDS != 0 { 4 } else { 2 };
        pos += if flags & HAVE_SCALE != 0 {
            2
        } else if flags & HAVE_XY_SCALE != 0 {
            4
        } else if flags & HAVE_TWO_BY_TWO != 0 {
            8
        } else {
            0
        };
        if flags & MORE_COMPONENTS == 0 {
            return Ok(out);
        }
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

/// A `cmap` with a format 4 subtable (BMP) and, when needed, a format 12 one (all planes).
fn build_cmap(map: &BTreeMap<u32, u16>) -> Vec<u8> {
    // Format 4: runs where both the character and the glyph id advance by one.
    let mut segments: Vec<(u16, u16, u16)> = Vec::new(); // start, end, first glyph
    for (&c, &g) in map.range(..0xFFFF) {
        let c = c as u16;
        match segments.last_mut() {
            Some((start, end, first))
                if *end + 1 == c && first.checked_add(c - *start) == Some(g) =>
            {
                *end = c
            }
            _ => segments.push((c, c, g)),
        }
    }
    segments.push((0xFFFF, 0xFFFF, 0));
    let seg_count = segments.len();
    let mut f4 = Vec::with_capacity(16 + 8 * seg_count);
    let len = 16 + 8 * seg_count;
    let pow = 1usize << (usize::BITS - 1 - seg_count.leading_zeros());
    for v in [4, len as u16, 0, (2 * seg_count) as u16] {
        f4.extend_from_slice(&v.to_be_bytes());
    }
    for v in [
        (2 * pow) as u16,
        pow.trailing_zeros() as u16,
        (2 * (seg_count - pow)) as u16,
    ] {
        f4.extend_from_slice(&v.to_be_bytes());
    }
    segments
        .iter()
        .for_each(|s| f4.extend_from_slice(&s.1.to_be_bytes()));
    f4.extend_from_slice(&[0, 0]);
    segments
        .iter()
        .for_each(|s| f4.extend_from_slice(&s.0.to_be_bytes()));
    for &(start, _, first) in &segments {
        let delta = if start == 0xFFFF {
            1
        } else {
            first.wrapping_sub(start)
        };
        f4.extend_from_slice(&delta.to_be_bytes());
    }
    segments.iter().for_each(|_| f4.extend_from_slice(&[0, 0]));

    let astral = map.range(0x10000..).next().is_some();
    let mut f12 = Vec::new();
    if astral {
        let mut groups: Vec<(u32, u32, u32)> = Vec::new();
        for (&c, &g) in map {
            let g = g as u32;
            match groups.last_mut() {
                Some((start, end, first))
                    if *end + 1 == c && first.checked_add(c - *start) == Some(g) =>
                {
                    *end = c
                }
                _ => groups.push((c, c, g)),
            }
        }
        f12.extend_from_slice(&12u16.to_be_bytes());
        f12.extend_from_slice(&0u16.to_be_bytes());
        f12.extend_from_slice(&((16 + 12 * groups.len()) as u32).to_be_bytes());
        f12.extend_from_slice(&0u32.to_be_bytes());
        f12.extend_from_slice(&(groups.len() as u32).to_be_bytes());
        for (s, e, g) in groups {
            for v in [s, e, g] {
                f12.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    let subtables = if astral { 2u16 } else { 1 };
    let header = 4 + 8 * subtables as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&subtables.to_be_bytes());
    out.extend_from_slice(&[0, 3, 0, 1]); // Windows, Unicode BMP
    out.extend_from_slice(&header.to_be_bytes());
    if astral {
        out.extend_from_slice(&[0, 3, 0, 10]); // Windows, Unicode full repertoire
        out.extend_from_slice(&(header + f4.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(&f4);
    out.extend_from_slice(&f12);
    out
}

fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

/// Writes an sfnt: the table directory (tables sorted by tag), then the 4-byte aligned
/// tables, then the `head` checksum adjustment.
fn assemble(version: u32, mut tables: Vec<(Tag, Vec<u8>)>) -> Vec<u8> {
    tables.sort_by_key(|t| t.0);
    let n = tables.len();
    let pow = 1usize << (usize::BITS - 1 - n.leading_zeros());
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_be_bytes());
    for v in [n, 16 * pow, pow.trailing_zeros() as usize, 16 * (n - pow)] {
        out.extend_from_slice(&(v as u16).to_be_bytes());
    }
    let mut offset = 12 + 16 * n;
    let mut head_at = None;
    for (tag, data) in &tables {
        out.extend_from_slice(tag);
        out.extend_from_slice(&checksum(data).to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        if tag == b"head" {
            head_at = Some(offset);
        }
        offset += data.len().next_multiple_of(4);
    }
    for (_, data) in &tables {
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    if let Some(head) = head_at {
        let adjustment = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
        out[head + 8..head + 12].copy_from_slice(&adjustment.to_be_bytes());
    }
    out
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

    #[test]
    fn a_format4_cmap_built_for_a_subset_maps_every_character_back() {
        let map: BTreeMap<u32, u16> = [
            (0x20, 1),
            (0x41, 2),
            (0x42, 3),
            (0x43, 4),
            (0x65e5, 5),
            (0x672c, 6),
        ]
        .into_iter()
        .collect();
        let cmap = build_cmap(&map);
        let Cmap::Segments(off) = find_cmap(&cmap, 0).unwrap() else {
            panic!("expected a format 4 subtable");
        };
        for (&c, &g) in &map {
            assert_eq!(lookup_format4(&cmap, off, c), Some(g), "U+{c:04X}");
        }
        assert_eq!(lookup_format4(&cmap, off, 0x44), None);
        assert_eq!(lookup_format4(&cmap, off, 0x1F600), None);
    }

    #[test]
    fn a_cmap_with_characters_beyond_the_bmp_gets_a_format12_subtable() {
        let map: BTreeMap<u32, u16> = [(0x41, 1), (0x20B9F, 2), (0x20BA0, 3)]
            .into_iter()
            .collect();
        let cmap = build_cmap(&map);
        let Cmap::Groups(off) = find_cmap(&cmap, 0).unwrap() else {
            panic!("expected a format 12 subtable");
        };
        for (&c, &g) in &map {
            assert_eq!(lookup_format12(&cmap, off, c), Some(g), "U+{c:04X}");
        }
        assert_eq!(lookup_format12(&cmap, off, 0x42), None);
    }

    #[test]
    fn a_composite_glyph_lists_its_components_and_where_they_are_written() {
        // numberOfContours -1, bbox, then two components (word args, then byte args + scale).
        let mut g = vec![0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0];
        g.extend_from_slice(&[0x00, 0x21, 0x00, 0x07, 0, 0, 0, 0]); // words + more
        g.extend_from_slice(&[0x00, 0x08, 0x00, 0x09, 0, 0, 0x40, 0x00]); // scale
        assert_eq!(components(&g).unwrap(), vec![(12, 7), (20, 9)]);
        assert!(
            components(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_file_that_is_not_a_font_is_refused() {
        let err = Sfnt::parse(b"%PDF-1.7 not a font".to_vec()).err().unwrap();
        assert!(err.contains("not a TrueType or OpenType font"), "{err}");
        let err = Sfnt::parse(b"OTTO\0\0\0\0\0\0\0\0".to_vec()).err().unwrap();
        assert!(err.contains("no glyph outlines"), "{err}");
    }
}
