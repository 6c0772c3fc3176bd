//! Subsetting of CFF (PostScript-flavoured OpenType, `.otf`) outlines: the `CFF ` table is
//! rebuilt with only the glyphs kept, renumbered in the order given. Everything glyph ids
//! index is rebuilt to match: the charset (glyph -> name or CID; CIDs keep their original
//! values), the FDSelect of CID-keyed fonts (glyph -> font dict) and the CharStrings. The
//! subroutines no kept glyph calls are emptied (their numbers must stay: charstrings call
//! them by index), which is what shrinks a CJK font from megabytes to kilobytes. CFF2
//! (variable fonts) is not supported.

const OP_CHARSET: u16 = 15;
const OP_ENCODING: u16 = 16;
const OP_CHARSTRINGS: u16 = 17;
const OP_PRIVATE: u16 = 18;
const OP_SUBRS: u16 = 19;
const OP_ROS: u16 = 0x0C1E;
const OP_FD_ARRAY: u16 = 0x0C24;
const OP_FD_SELECT: u16 = 0x0C25;
const OP_FONT_NAME: u16 = 0x0C26;
/// Operators whose operands are string ids: version, Notice, FullName, FamilyName, Weight,
/// Copyright, PostScript, BaseFontName, FontName; and ROS (registry and ordering).
const STRING_OPS: [u16; 10] = [0, 1, 2, 3, 4, 0x0C00, 0x0C15, 0x0C16, OP_FONT_NAME, OP_ROS];
/// String ids below this name the standard strings; the String INDEX holds the rest.
const STANDARD_STRINGS: u16 = 391;

fn byte(d: &[u8], off: usize) -> Result<u8, String> {
    d.get(off)
        .copied()
        .ok_or_else(|| "truncated CFF data".to_string())
}

fn u16_at(d: &[u8], off: usize) -> Result<u16, String> {
    Ok(u16::from_be_bytes([byte(d, off)?, byte(d, off + 1)?]))
}

/// An INDEX: its items (absolute byte ranges) and where it ends.
struct Index {
    items: Vec<(usize, usize)>,
    end: usize,
}

impl Index {
    fn read(d: &[u8], off: usize) -> Result<Index, String> {
        let count = u16_at(d, off)? as usize;
        if count == 0 {
            return Ok(Index {
                items: Vec::new(),
                end: off + 2,
            });
        }
        let size = byte(d, off + 2)? as usize;
        if !(1..=4).contains(&size) {
            return Err("invalid CFF INDEX offset size".into());
        }
        let offsets = off + 3;
        let data = offsets + (count + 1) * size - 1;
        let offset = |i: usize| -> Result<usize, String> {
            let mut v = 0usize;
            for k in 0..size {
                v = v << 8 | byte(d, offsets + i * size + k)? as usize;
            }
            Ok(data + v)
        };
        let mut items = Vec::with_capacity(count);
        let mut start = offset(0)?;
        for i in 1..=count {
            let end = offset(i)?;
            if end < start || end > d.len() {
                return Err("invalid CFF INDEX offsets".into());
            }
            items.push((start, end));
            start = end;
        }
        Ok(Index { items, end: start })
    }
}

fn write_index(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
    if items.is_empty() {
        return out;
    }
    let total: usize = items.iter().map(|i| i.len()).sum::<usize>() + 1;
    let size = match total {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 3,
        _ => 4,
    };
    out.push(size as u8);
    let mut offset = 1usize;
    let push = |out: &mut Vec<u8>, v: usize| {
        out.extend_from_slice(&(v as u32).to_be_bytes()[4 - size..]);
    };
    push(&mut out, offset);
    for item in items {
        offset += item.len();
        push(&mut out, offset);
    }
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// One DICT entry: its operator, its operands as written, and their integer values.
#[derive(Clone)]
struct Entry {
    op: u16,
    raw: Vec<u8>,
    ints: Vec<i64>,
}

fn parse_dict(d: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let (mut raw, mut ints) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < d.len() {
        let b = d[i];
        let len = match b {
            0..=21 => {
                let op = if b == 12 {
                    0x0C00 | byte(d, i + 1)? as u16
                } else {
                    b as u16
                };
                entries.push(Entry {
                    op,
                    raw: std::mem::take(&mut raw),
                    ints: std::mem::take(&mut ints),
                });
                i += if b == 12 { 2 } else { 1 };
                continue;
            }
            28 => {
                ints.push(i16::from_be_bytes([byte(d, i + 1)?, byte(d, i + 2)?]) as i64);
                3
            }
            29 => {
                let v = [
                    byte(d, i + 1)?,
                    byte(d, i + 2)?,
                    byte(d, i + 3)?,
                    byte(d, i + 4)?,
                ];
                ints.push(i32::from_be_bytes(v) as i64);
                5
            }
            30 => {
                let mut n = 1;
                loop {
                    let nibbles = byte(d, i + n)?;
                    n += 1;
                    if nibbles & 0x0F == 0x0F || nibbles >> 4 == 0x0F {
                        break;
                    }
                }
                ints.push(0); // reals are copied, never interpreted
                n
            }
            32..=246 => {
                ints.push(b as i64 - 139);
                1
            }
            247..=250 => {
                ints.push((b as i64 - 247) * 256 + byte(d, i + 1)? as i64 + 108);
                2
            }
            251..=254 => {
                ints.push(-(b as i64 - 251) * 256 - byte(d, i + 1)? as i64 - 108);
                2
            }
            _ => return Err(format!("invalid CFF DICT byte {b}")),
        };
        raw.extend_from_slice(&d[i..i + len]);
        i += len;
    }
    Ok(entries)
}

fn find(dict: &[Entry], op: u16) -> Option<&[i64]> {
    dict.iter().find(|e| e.op == op).map(|e| e.ints.as_slice())
}

fn offset(dict: &[Entry], op: u16) -> Result<Option<usize>, String> {
    match find(dict, op) {
        None => Ok(None),
        Some([v]) if *v >= 0 => Ok(Some(*v as usize)),
        Some(_) => Err("invalid CFF DICT offset".into()),
    }
}

/// `(size, offset)` of a Private DICT.
fn private(dict: &[Entry]) -> Result<Option<(usize, usize)>, String> {
    match find(dict, OP_PRIVATE) {
        None => Ok(None),
        Some([size, off]) if *size >= 0 && *off >= 0 => Ok(Some((*size as usize, *off as usize))),
        Some(_) => Err("invalid CFF Private DICT reference".into()),
    }
}

/// Writes `dict`, replacing the operands of the operators in `replace` (as fixed-size
/// 5-byte integers, so the size does not depend on the values) and dropping `drop`.
fn write_dict(dict: &[Entry], replace: &[(u16, Vec<i64>)], drop: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in dict.iter().filter(|e| !drop.contains(&e.op)) {
        match replace.iter().find(|(op, _)| *op == entry.op) {
            Some((_, values)) => {
                for v in values {
                    out.push(29);
                    out.extend_from_slice(&(*v as i32).to_be_bytes());
                }
            }
            None => out.extend_from_slice(&entry.raw),
        }
        if entry.op >= 0x0C00 {
            out.extend_from_slice(&[12, entry.op as u8]);
        } else {
            out.push(entry.op as u8);
        }
    }
    out
}

/// A font dict's Private DICT and local subroutines.
struct PrivateDict {
    dict: Vec<Entry>,
    subrs: Option<Index>,
}

fn read_private(d: &[u8], size: usize, off: usize) -> Result<PrivateDict, String> {
    let bytes = d.get(off..off + size).ok_or("truncated CFF Private DICT")?;
    let dict = parse_dict(bytes)?;
    let subrs = match offset(&dict, OP_SUBRS)? {
        Some(rel) => Some(Index::read(d, off + rel)?),
        None => None,
    };
    Ok(PrivateDict { dict, subrs })
}

/// Glyph -> SID (name-keyed) or CID (CID-keyed), from the charset at `off`.
fn read_charset(d: &[u8], off: usize, glyphs: usize) -> Result<Vec<u16>, String> {
    let mut ids = vec![0u16];
    match byte(d, off)? {
        0 => {
            for g in 1..glyphs {
                ids.push(u16_at(d, off + 1 + 2 * (g - 1))?);
            }
        }
        format @ (1 | 2) => {
            let mut pos = off + 1;
            while ids.len() < glyphs {
                let first = u16_at(d, pos)?;
                let left = if format == 1 {
                    byte(d, pos + 2)? as u16
                } else {
                    u16_at(d, pos + 2)?
                };
                pos += if format == 1 { 3 } else { 4 };
                for k in 0..=left {
                    ids.push(first.wrapping_add(k));
                }
            }
            ids.truncate(glyphs);
        }
        f => return Err(format!("unknown CFF charset format {f}")),
    }
    Ok(ids)
}

/// Glyph -> font dict index, from the FDSelect at `off`.
fn read_fd_select(d: &[u8], off: usize, glyphs: usize) -> Result<Vec<u8>, String> {
    match byte(d, off)? {
        0 => d
            .get(off + 1..off + 1 + glyphs)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "truncated CFF FDSelect".into()),
        3 => {
            let ranges = u16_at(d, off + 1)? as usize;
            let mut fds = vec![0u8; glyphs];
            for r in 0..ranges {
                let at = off + 3 + 3 * r;
                let first = u16_at(d, at)? as usize;
                let fd = byte(d, at + 2)?;
                let next = u16_at(d, at + 3)? as usize;
                for slot in fds.iter_mut().take(next.min(glyphs)).skip(first) {
                    *slot = fd;
                }
            }
            Ok(fds)
        }
        f => Err(format!("unknown CFF FDSelect format {f}")),
    }
}

fn bias(count: usize) -> i64 {
    if count < 1240 {
        107
    } else if count < 33900 {
        1131
    } else {
        32768
    }
}

/// A subroutine call with a literal number: where the number's bytes are in the calling
/// charstring, and which subroutine it calls.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    at: usize,
    len: usize,
    global: bool,
    index: usize,
}

/// What running the kept glyphs found out about the subroutines.
struct Usage {
    /// Per global subroutine: `None` if no kept glyph calls it, else the calls it makes.
    global: Vec<Option<Vec<Call>>>,
    /// The same per font dict, per local subroutine.
    local: Vec<Vec<Option<Vec<Call>>>>,
    /// The font dict whose local subroutines a global subroutine calls.
    global_fd: Vec<Option<usize>>,
    /// Whether the subroutines can be renumbered: every call's number is a literal right
    /// before it, a subroutine makes the same calls wherever it is called from, and a
    /// global subroutine calls the local subroutines of one font dict only.
    renumberable: bool,
}

#[derive(Clone, Copy)]
enum Owner {
    Glyph,
    Global(usize),
    Local(usize),
}

/// Runs a glyph's charstring through its subroutine calls (operands and hints only, no
/// drawing), recording the subroutines used and the calls. Fails (the caller then keeps
/// every subroutine) on what it does not model: computed subroutine numbers, deep nesting,
/// runaway programs.
struct Scan<'a> {
    data: &'a [u8],
    global: &'a [(usize, usize)],
    local: &'a [(usize, usize)],
    fd: usize,
    usage: &'a mut Usage,
    /// The calls of the glyph's own charstring.
    glyph_calls: Vec<Call>,
    /// The flattened charstring, when asked for (see [`Font::scan`]).
    flat: Option<Vec<u8>>,
    stack: Vec<f64>,
    stems: usize,
    steps: usize,
}

impl Scan<'_> {
    /// Runs `range`; `Ok(true)` when the glyph ended (`endchar`).
    fn run(&mut self, range: (usize, usize), depth: usize, owner: Owner) -> Result<bool, ()> {
        if depth > 10 {
            return Err(());
        }
        let cs = &self.data[range.0..range.1];
        let mut calls = Vec::new();
        // The last token, when it was a number: (start, length).
        let mut number: Option<(usize, usize)> = None;
        let mut i = 0;
        let mut ended = false;
        while i < cs.len() {
            self.steps += 1;
            if self.steps > 5_000_000 {
                return Err(());
            }
            let b = cs[i];
            let at = |k: usize| cs.get(i + k).copied().ok_or(());
            let (value, len) = match b {
                28 => (i16::from_be_bytes([at(1)?, at(2)?]) as f64, 3),
                32..=246 => (b as f64 - 139.0, 1),
                247..=250 => ((b as f64 - 247.0) * 256.0 + at(1)? as f64 + 108.0, 2),
                251..=254 => (-(b as f64 - 251.0) * 256.0 - at(1)? as f64 - 108.0, 2),
                255 => {
                    let v = i32::from_be_bytes([at(1)?, at(2)?, at(3)?, at(4)?]);
                    (v as f64 / 65536.0, 5)
                }
                _ => (f64::NAN, 0),
            };
            if len > 0 {
                self.stack.push(value);
                number = Some((i, len));
                if let Some(flat) = &mut self.flat {
                    flat.extend_from_slice(&cs[i..i + len]);
                }
                i += len;
                continue;
            }
            let literal = number.take().filter(|&(start, len)| start + len == i);
            let op_len = match b {
                12 => 2,
                19 | 20 => 1 + (self.stems + self.stack.len() / 2).div_ceil(8),
                _ => 1,
            };
            if let Some(flat) = &mut self.flat {
                match (b, literal) {
                    // A call is replaced by the body called; its number goes too.
                    (10 | 29, Some((_, len))) => flat.truncate(flat.len() - len),
                    (10 | 29, None) => return Err(()),
                    (11, _) => {}
                    _ => flat.extend_from_slice(cs.get(i..i + op_len).ok_or(())?),
                }
            }
            match b {
                // hstem, vstem, hstemhm, vstemhm
                1 | 3 | 18 | 23 => {
                    self.stems += self.stack.len() / 2;
                    self.stack.clear();
                    i += 1;
                }
                // hintmask, cntrmask (with implicit vstems before them)
                19 | 20 => {
                    self.stems += self.stack.len() / 2;
                    self.stack.clear();
                    i += 1 + self.stems.div_ceil(8);
                }
                // callsubr, callgsubr
                10 | 29 => {
                    let global = b == 29;
                    let subrs = if global { self.global } else { self.local };
                    let index = self.stack.pop().ok_or(())? + bias(subrs.len()) as f64;
                    if index.fract() != 0.0 || index < 0.0 || index >= subrs.len() as f64 {
                        return Err(());
                    }
                    let index = index as usize;
                    match literal {
                        Some((start, len)) => calls.push(Call {
                            at: start,
                            len,
                            global,
                            index,
                        }),
                        None => self.usage.renumberable = false,
                    }
                    if let (false, Owner::Global(g)) = (global, owner) {
                        match self.usage.global_fd[g] {
                            Some(fd) if fd != self.fd => self.usage.renumberable = false,
                            _ => self.usage.global_fd[g] = Some(self.fd),
                        }
                    }
                    let callee = if global {
                        Owner::Global(index)
                    } else {
                        Owner::Local(index)
                    };
                    if self.run(subrs[index], depth + 1, callee)? {
                        ended = true;
                        break;
                    }
                    i += 1;
                }
                11 => break,
                14 => {
                    ended = true;
                    break;
                }
                12 => {
                    // Arithmetic and storage operators could compute a subroutine number.
                    if matches!(at(1)?, 3..=5 | 9..=12 | 14 | 15 | 18 | 20..=30) {
                        return Err(());
                    }
                    self.stack.clear();
                    i += 2;
                }
                _ => {
                    self.stack.clear();
                    i += 1;
                }
            }
        }
        let slot = match owner {
            Owner::Glyph => {
                self.glyph_calls = calls;
                return Ok(ended);
            }
            Owner::Global(g) => &mut self.usage.global[g],
            Owner::Local(l) => &mut self.usage.local[self.fd][l],
        };
        match slot {
            None => *slot = Some(calls),
            Some(previous) if *previous != calls => self.usage.renumberable = false,
            Some(_) => {}
        }
        Ok(ended)
    }
}

/// Appends `v` as a Type 2 charstring number, in its shortest form.
fn push_number(out: &mut Vec<u8>, v: i64) {
    match v {
        -107..=107 => out.push((v + 139) as u8),
        108..=1131 => {
            let w = v - 108;
            out.extend_from_slice(&[(w / 256 + 247) as u8, (w % 256) as u8]);
        }
        -1131..=-108 => {
            let w = -v - 108;
            out.extend_from_slice(&[(w / 256 + 251) as u8, (w % 256) as u8]);
        }
        _ => {
            out.push(28);
            out.extend_from_slice(&(v as i16).to_be_bytes());
        }
    }
}

/// `charstring` with the numbers of its subroutine `calls` replaced by the new numbers.
fn renumber_calls(
    charstring: &[u8],
    calls: &[Call],
    global: &Renumbering,
    local: &Renumbering,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(charstring.len() + 2 * calls.len());
    let mut pos = 0;
    for call in calls {
        out.extend_from_slice(&charstring[pos..call.at]);
        let subrs = if call.global { global } else { local };
        push_number(&mut out, subrs.new_number(call.index));
        pos = call.at + call.len;
    }
    out.extend_from_slice(&charstring[pos..]);
    out
}

/// The used subroutines of one INDEX, renumbered densely in their original order.
struct Renumbering {
    /// Old index -> new index.
    new: Vec<Option<usize>>,
    kept: Vec<usize>,
}

impl Renumbering {
    fn new(used: &[Option<Vec<Call>>]) -> Renumbering {
        let mut new = vec![None; used.len()];
        let mut kept = Vec::new();
        for (old, u) in used.iter().enumerate() {
            if u.is_some() {
                new[old] = Some(kept.len());
                kept.push(old);
            }
        }
        Renumbering { new, kept }
    }

    /// The biased number a charstring calls subroutine `old` by.
    fn new_number(&self, old: usize) -> i64 {
        self.new[old].expect("a called subroutine is kept") as i64 - bias(self.kept.len())
    }
}

/// The subroutines and charstrings of a subset, as written.
struct Programs {
    /// The Global Subrs INDEX.
    global_subrs: Vec<u8>,
    /// Per kept glyph.
    charstrings: Vec<Vec<u8>>,
    /// The Subrs INDEX of each font dict; `None` when it needs none.
    local_subrs: Vec<Option<Vec<u8>>>,
}

/// A parsed CFF table (CFF version 1, one font).
struct Font<'a> {
    d: &'a [u8],
    header_size: usize,
    names: Index,
    strings: Index,
    global: Index,
    top: Vec<Entry>,
    charstrings: Index,
    cid_keyed: bool,
    /// Glyph -> SID (name-keyed) or CID (CID-keyed).
    charset: Vec<u16>,
    /// The FDArray of a CID-keyed font.
    font_dicts: Option<Vec<Vec<Entry>>>,
    /// Glyph -> font dict (all 0 for a name-keyed font).
    fd_of: Vec<u8>,
    /// Per font dict.
    privates: Vec<PrivateDict>,
}

impl<'a> Font<'a> {
    fn parse(d: &'a [u8]) -> Result<Font<'a>, String> {
        if byte(d, 0)? != 1 {
            return Err("CFF2 (variable) outlines are not supported".into());
        }
        let header_size = byte(d, 2)? as usize;
        let names = Index::read(d, header_size)?;
        let tops = Index::read(d, names.end)?;
        let strings = Index::read(d, tops.end)?;
        let global = Index::read(d, strings.end)?;
        let &(top_start, top_end) = tops.items.first().ok_or("the CFF table has no font")?;
        let top = parse_dict(&d[top_start..top_end])?;
        let charstrings = Index::read(
            d,
            offset(&top, OP_CHARSTRINGS)?.ok_or("the CFF font has no CharStrings")?,
        )?;
        let glyphs = charstrings.items.len();
        let cid_keyed = find(&top, OP_ROS).is_some();
        let charset = match offset(&top, OP_CHARSET)?.unwrap_or(0) {
            // ISOAdobe: glyph i is named by standard string i.
            0 if !cid_keyed => (0..glyphs as u16).collect(),
            off if off > 2 => read_charset(d, off, glyphs)?,
            _ => return Err("the CFF font uses an unsupported predefined charset".into()),
        };
        let (font_dicts, fd_of) = if cid_keyed {
            let array = Index::read(d, offset(&top, OP_FD_ARRAY)?.ok_or("no FDArray")?)?;
            let dicts = array
                .items
                .iter()
                .map(|&(s, e)| parse_dict(&d[s..e]))
                .collect::<Result<Vec<_>, _>>()?;
            let select =
                read_fd_select(d, offset(&top, OP_FD_SELECT)?.ok_or("no FDSelect")?, glyphs)?;
            if select.iter().any(|&fd| fd as usize >= dicts.len()) {
                return Err("the CFF FDSelect refers to a missing font dict".into());
            }
            (Some(dicts), select)
        } else {
            (None, vec![0u8; glyphs])
        };
        let privates = match &font_dicts {
            Some(dicts) => dicts
                .iter()
                .map(|dict| {
                    let (size, off) =
                        private(dict)?.ok_or("a CFF font dict has no Private DICT")?;
                    read_private(d, size, off)
                })
                .collect::<Result<Vec<_>, String>>()?,
            None => {
                let (size, off) = private(&top)?.ok_or("the CFF font has no Private DICT")?;
                vec![read_private(d, size, off)?]
            }
        };
        Ok(Font {
            d,
            header_size,
            names,
            strings,
            global,
            top,
            charstrings,
            cid_keyed,
            charset,
            font_dicts,
            fd_of,
            privates,
        })
    }

    /// The local subroutines of each font dict.
    fn local_subrs(&self) -> Vec<&[(usize, usize)]> {
        self.privates
            .iter()
            .map(|p| p.subrs.as_ref().map_or(&[][..], |s| &s.items[..]))
            .collect()
    }

    /// Runs glyph `gid` with a fresh scan, recording into `usage`; also returns the glyph's
    /// charstring with every subroutine call replaced by the subroutine's body when
    /// `flatten` (equal flattened charstrings draw equal glyphs).
    fn scan(&self, gid: u16, usage: &mut Usage, flatten: bool) -> Result<(Vec<Call>, Vec<u8>), ()> {
        let fd = self.fd_of[gid as usize] as usize;
        let locals = self.local_subrs();
        let mut scan = Scan {
            data: self.d,
            global: &self.global.items,
            local: locals[fd],
            fd,
            usage,
            glyph_calls: Vec::new(),
            flat: flatten.then(Vec::new),
            stack: Vec::new(),
            stems: 0,
            steps: 0,
        };
        scan.run(self.charstrings.items[gid as usize], 0, Owner::Glyph)?;
        Ok((scan.glyph_calls, scan.flat.unwrap_or_default()))
    }

    fn new_usage(&self) -> Usage {
        Usage {
            global: vec![None; self.global.items.len()],
            local: self
                .local_subrs()
                .iter()
                .map(|l| vec![None; l.len()])
                .collect(),
            global_fd: vec![None; self.global.items.len()],
            renumberable: true,
        }
    }
}

/// Checks a subset against its original: every kept glyph draws the same (its flattened
/// charstring is unchanged), in the same font dict, under the same name or CID. Run in
/// debug builds (so by the tests) on every subset made.
#[cfg(debug_assertions)]
fn check_subset(original: &[u8], subset: &[u8], keep: &[u16]) -> Result<(), String> {
    let (a, b) = (Font::parse(original)?, Font::parse(subset)?);
    if b.charstrings.items.len() != keep.len() {
        return Err("wrong glyph count".into());
    }
    let string = |font: &Font, sid: u16| -> Vec<u8> {
        match sid.checked_sub(STANDARD_STRINGS) {
            Some(i) => font
                .strings
                .items
                .get(i as usize)
                .map_or(Vec::new(), |&(s, e)| font.d[s..e].to_vec()),
            None => sid.to_be_bytes().to_vec(),
        }
    };
    let (mut usage_a, mut usage_b) = (a.new_usage(), b.new_usage());
    for (new, &old) in keep.iter().enumerate() {
        let new = new as u16;
        let (Ok((_, flat_a)), Ok((_, flat_b))) = (
            a.scan(old, &mut usage_a, true),
            b.scan(new, &mut usage_b, true),
        ) else {
            continue; // not flattenable (subroutines were then kept as they are)
        };
        if flat_a != flat_b {
            return Err(format!("glyph {old} draws differently"));
        }
        if a.fd_of[old as usize] != b.fd_of[new as usize] {
            return Err(format!("glyph {old} changed font dict"));
        }
        let (id_a, id_b) = (a.charset[old as usize], b.charset[new as usize]);
        let same = if a.cid_keyed {
            id_a == id_b
        } else {
            string(&a, id_a) == string(&b, id_b)
        };
        if !same {
            return Err(format!("glyph {old} changed name or CID"));
        }
    }
    Ok(())
}

/// Builds a CFF table holding the glyphs `keep` (old glyph ids, `.notdef` first), in that
/// order.
pub(crate) fn subset(d: &[u8], keep: &[u16]) -> Result<Vec<u8>, String> {
    let out = build_subset(d, keep)?;
    #[cfg(debug_assertions)]
    check_subset(d, &out, keep).map_err(|e| format!("internal error: CFF subset check: {e}"))?;
    Ok(out)
}

fn build_subset(d: &[u8], keep: &[u16]) -> Result<Vec<u8>, String> {
    let font = Font::parse(d)?;
    let Font {
        header_size,
        ref names,
        ref strings,
        ref global,
        ref top,
        ref charstrings,
        cid_keyed,
        ref charset,
        ref font_dicts,
        ref fd_of,
        ref privates,
        ..
    } = font;
    if keep.iter().any(|&g| g as usize >= charstrings.items.len()) {
        return Err("a glyph id is beyond the CFF CharStrings".into());
    }

    // Which subroutines the kept glyphs call.
    let local_items = font.local_subrs();
    let mut usage = font.new_usage();
    let mut glyph_calls = Vec::with_capacity(keep.len());
    let mut scanned = true;
    for &gid in keep {
        match font.scan(gid, &mut usage, false) {
            Ok((calls, _)) => glyph_calls.push(calls),
            Err(()) => {
                scanned = false;
                break;
            }
        }
    }

    // Three ways to cut the subroutines, best first: keep only those used, renumbered
    // (the calls in the kept charstrings rewritten); or keep every number but empty the
    // unused ones (a bare `return`); or, when the scan failed, keep them all.
    let bytes = |&(s, e): &(usize, usize)| &d[s..e];
    let programs = if scanned && usage.renumberable {
        let global_new = Renumbering::new(&usage.global);
        let local_new: Vec<Renumbering> = usage.local.iter().map(|l| Renumbering::new(l)).collect();
        let none = Renumbering::new(&[]);
        let global_bodies: Vec<Vec<u8>> = global_new
            .kept
            .iter()
            .map(|&old| {
                let calls = usage.global[old].as_deref().unwrap_or_default();
                let local = usage.global_fd[old].map_or(&none, |fd| &local_new[fd]);
                renumber_calls(bytes(&global.items[old]), calls, &global_new, local)
            })
            .collect();
        let glyphs = keep
            .iter()
            .zip(&glyph_calls)
            .map(|(&gid, calls)| {
                let local = &local_new[fd_of[gid as usize] as usize];
                renumber_calls(
                    bytes(&charstrings.items[gid as usize]),
                    calls,
                    &global_new,
                    local,
                )
            })
            .collect();
        let locals = local_new
            .iter()
            .enumerate()
            .map(|(fd, renumbering)| {
                if renumbering.kept.is_empty() {
                    return None;
                }
                let bodies: Vec<Vec<u8>> = renumbering
                    .kept
                    .iter()
                    .map(|&old| {
                        let calls = usage.local[fd][old].as_deref().unwrap_or_default();
                        renumber_calls(
                            bytes(&local_items[fd][old]),
                            calls,
                            &global_new,
                            renumbering,
                        )
                    })
                    .collect();
                Some(write_index(
                    &bodies.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                ))
            })
            .collect();
        Programs {
            global_subrs: write_index(&global_bodies.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            charstrings: glyphs,
            local_subrs: locals,
        }
    } else {
        // Unused subroutines become a bare `return` (all are kept if the scan failed).
        let emptied = |items: &[(usize, usize)], used: &[Option<Vec<Call>>]| {
            let bodies: Vec<&[u8]> = items
                .iter()
                .zip(used)
                .map(|(item, u)| {
                    if u.is_some() || !scanned {
                        bytes(item)
                    } else {
                        &[11u8][..]
                    }
                })
                .collect();
            write_index(&bodies)
        };
        let glyphs = keep
            .iter()
            .map(|&g| bytes(&charstrings.items[g as usize]).to_vec())
            .collect();
        let locals = privates
            .iter()
            .zip(&local_items)
            .zip(&usage.local)
            .map(|((p, items), used)| p.subrs.as_ref().map(|_| emptied(items, used)))
            .collect();
        Programs {
            global_subrs: emptied(&global.items, &usage.global),
            charstrings: glyphs,
            local_subrs: locals,
        }
    };

    // Strings: only those still referenced (a name-keyed font names every glyph, and the
    // names of the glyphs dropped are most of its String INDEX), renumbered.
    let string_operands = |dict: &[Entry]| -> Vec<(u16, Vec<i64>)> {
        dict.iter()
            .filter(|e| STRING_OPS.contains(&e.op))
            .map(|e| (e.op, e.ints.clone()))
            .collect()
    };
    let is_sid = |op: u16, position: usize| op != OP_ROS || position < 2;
    let mut referenced = std::collections::BTreeSet::new();
    let dicts_with_strings = std::iter::once(top).chain(font_dicts.iter().flatten());
    for (op, values) in dicts_with_strings.flat_map(|d| string_operands(d)) {
        for (k, &v) in values.iter().enumerate() {
            if is_sid(op, k) && v >= STANDARD_STRINGS as i64 {
                referenced.insert(v as u16);
            }
        }
    }
    if !cid_keyed {
        referenced.extend(
            keep.iter()
                .map(|&g| charset[g as usize])
                .filter(|&s| s >= STANDARD_STRINGS),
        );
    }
    let mut new_sid = std::collections::BTreeMap::new();
    let mut kept_strings: Vec<&[u8]> = Vec::with_capacity(referenced.len());
    for &sid in &referenced {
        let &(s, e) = strings
            .items
            .get((sid - STANDARD_STRINGS) as usize)
            .ok_or("the CFF font refers to a missing string")?;
        new_sid.insert(sid, STANDARD_STRINGS + kept_strings.len() as u16);
        kept_strings.push(&d[s..e]);
    }
    let map_sid = |sid: i64| match u16::try_from(sid) {
        Ok(sid) if sid >= STANDARD_STRINGS => new_sid[&sid] as i64,
        _ => sid,
    };
    let renamed = |dict: &[Entry]| -> Vec<(u16, Vec<i64>)> {
        string_operands(dict)
            .into_iter()
            .map(|(op, values)| {
                let values = values
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| if is_sid(op, k) { map_sid(v) } else { v })
                    .collect();
                (op, values)
            })
            .collect()
    };
    let strings_out = write_index(&kept_strings);

    // The parts, then their offsets, then the bytes.
    let mut charset_out = vec![0u8];
    for &gid in &keep[1..] {
        let id = charset[gid as usize];
        let id = if cid_keyed {
            id
        } else {
            map_sid(id as i64) as u16
        };
        charset_out.extend_from_slice(&id.to_be_bytes());
    }
    let fd_select_out: Vec<u8> = std::iter::once(0)
        .chain(keep.iter().map(|&g| fd_of[g as usize]))
        .collect();
    let charstrings_out = write_index(
        &programs
            .charstrings
            .iter()
            .map(Vec::as_slice)
            .collect::<Vec<_>>(),
    );
    let privates_out: Vec<(Vec<u8>, Vec<u8>)> = privates
        .iter()
        .zip(programs.local_subrs)
        .map(|(p, subrs)| {
            // Subrs go right after the dict: its offset is the dict's own (fixed) size.
            let probe = write_dict(&p.dict, &[(OP_SUBRS, vec![0])], &[]);
            let dict = match &subrs {
                Some(_) => write_dict(&p.dict, &[(OP_SUBRS, vec![probe.len() as i64])], &[]),
                None => write_dict(&p.dict, &[], &[OP_SUBRS]),
            };
            (dict, subrs.unwrap_or_default())
        })
        .collect();

    let top_strings = renamed(top);
    let top_replace =
        |charset: i64, charstrings: i64, fd_select: i64, fd_array: i64, private: (i64, i64)| {
            let mut r = vec![
                (OP_CHARSET, vec![charset]),
                (OP_CHARSTRINGS, vec![charstrings]),
            ];
            if cid_keyed {
                r.push((OP_FD_SELECT, vec![fd_select]));
                r.push((OP_FD_ARRAY, vec![fd_array]));
            } else {
                r.push((OP_PRIVATE, vec![private.0, private.1]));
            }
            r.extend(top_strings.iter().cloned());
            r
        };
    // The charset operator may be absent (ISOAdobe): make sure the top dict has one.
    let mut top = top.clone();
    if find(&top, OP_CHARSET).is_none() {
        top.push(Entry {
            op: OP_CHARSET,
            raw: Vec::new(),
            ints: vec![0],
        });
    }
    // A custom Encoding would refer to the old glyph ids; glyphs are addressed by id here.
    let top_len = write_dict(&top, &top_replace(0, 0, 0, 0, (0, 0)), &[OP_ENCODING]).len();
    let top_index_len = write_index(&[&vec![0u8; top_len]]).len();

    let mut at = names.end + top_index_len + strings_out.len() + programs.global_subrs.len();
    let charset_at = at;
    at += charset_out.len();
    let fd_select_at = at;
    if cid_keyed {
        at += fd_select_out.len();
    }
    let charstrings_at = at;
    at += charstrings_out.len();
    // FDArray: font dicts whose Private offsets follow the array.
    let fd_array_at = at;
    let font_dict = |dict: &[Entry], private: Vec<i64>| {
        let mut replace = renamed(dict);
        replace.push((OP_PRIVATE, private));
        write_dict(dict, &replace, &[])
    };
    let font_dict_len = |dict: &[Entry]| font_dict(dict, vec![0, 0]).len();
    if let Some(dicts) = &font_dicts {
        let probe: Vec<Vec<u8>> = dicts
            .iter()
            .map(|dict| vec![0u8; font_dict_len(dict)])
            .collect();
        let probe: Vec<&[u8]> = probe.iter().map(Vec::as_slice).collect();
        at += write_index(&probe).len();
    }
    let mut private_at = Vec::with_capacity(privates_out.len());
    for (dict, subrs) in &privates_out {
        private_at.push(at);
        at += dict.len() + subrs.len();
    }

    let mut out = Vec::with_capacity(at);
    out.extend_from_slice(&d[..header_size]);
    out.extend_from_slice(&d[header_size..names.end]);
    let top_out = write_dict(
        &top,
        &top_replace(
            charset_at as i64,
            charstrings_at as i64,
            fd_select_at as i64,
            fd_array_at as i64,
            (privates_out[0].0.len() as i64, private_at[0] as i64),
        ),
        &[OP_ENCODING],
    );
    out.extend_from_slice(&write_index(&[&top_out]));
    out.extend_from_slice(&strings_out);
    out.extend_from_slice(&programs.global_subrs);
    out.extend_from_slice(&charset_out);
    if cid_keyed {
        out.extend_from_slice(&fd_select_out);
    }
    out.extend_from_slice(&charstrings_out);
    if let Some(dicts) = &font_dicts {
        let written: Vec<Vec<u8>> = dicts
            .iter()
            .zip(&privates_out)
            .zip(&private_at)
            .map(|((dict, (private, _)), &offset)| {
                font_dict(dict, vec![private.len() as i64, offset as i64])
            })
            .collect();
        let written: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
        out.extend_from_slice(&write_index(&written));
    }
    for (dict, subrs) in &privates_out {
        out.extend_from_slice(dict);
        out.extend_from_slice(subrs);
    }
    debug_assert_eq!(out.len(), at);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_written_then_read_gives_back_its_items() {
        let long = vec![7u8; 300];
        let items: Vec<&[u8]> = vec![b"ab", b"", &long, b"xyz"];
        let bytes = write_index(&items);
        let index = Index::read(&bytes, 0).unwrap();
        assert_eq!(index.end, bytes.len());
        let read: Vec<&[u8]> = index.items.iter().map(|&(s, e)| &bytes[s..e]).collect();
        assert_eq!(read, items);
        assert_eq!(Index::read(&write_index(&[]), 0).unwrap().end, 2);
    }

    #[test]
    fn a_dict_keeps_its_operands_and_rewrites_offsets_at_a_fixed_size() {
        // 1000 CharStrings; 100 -3 Private; 1 1 1 ROS.
        let dict = [28, 0x03, 0xE8, 17, 0xEF, 0x88, 18, 0x8C, 0x8C, 0x8C, 12, 30];
        let parsed = parse_dict(&dict).unwrap();
        assert_eq!(find(&parsed, OP_CHARSTRINGS), Some(&[1000i64][..]));
        assert_eq!(find(&parsed, OP_PRIVATE), Some(&[100i64, -3][..]));
        assert_eq!(find(&parsed, OP_ROS), Some(&[1i64, 1, 1][..]));
        assert_eq!(write_dict(&parsed, &[], &[]), dict);
        let small = write_dict(&parsed, &[(OP_CHARSTRINGS, vec![1])], &[]);
        let large = write_dict(&parsed, &[(OP_CHARSTRINGS, vec![1_000_000])], &[]);
        assert_eq!(small.len(), large.len());
        let again = parse_dict(&large).unwrap();
        assert_eq!(find(&again, OP_CHARSTRINGS), Some(&[1_000_000i64][..]));
        assert_eq!(find(&again, OP_PRIVATE), Some(&[100i64, -3][..]));
    }

    #[test]
    fn a_charstring_scan_records_the_subroutines_called_and_flattens_the_glyph() {
        // Local subr 0 calls global subr 1; the glyph calls local 0 (numbers are biased by
        // -107), sets a hint mask after two stems, then ends.
        let data: Vec<u8> = [
            &[139 - 107 + 1, 29, 11][..], // local 0: callgsubr(1), return
            &[11][..],                    // global 0
            &[0x8D, 0x8D, 21, 11][..],    // global 1: 2 2 rmoveto, return
            &[139, 139, 139, 139, 1, 19, 0xC0, 139 - 107, 10, 14][..], // glyph
        ]
        .concat();
        let local = [(0, 3)];
        let global = [(3, 4), (4, 8)];
        let mut usage = Usage {
            global: vec![None; 2],
            local: vec![vec![None; 1]],
            global_fd: vec![None; 2],
            renumberable: true,
        };
        let mut scan = Scan {
            data: &data,
            global: &global,
            local: &local,
            fd: 0,
            usage: &mut usage,
            glyph_calls: Vec::new(),
            flat: Some(Vec::new()),
            stack: Vec::new(),
            stems: 0,
            steps: 0,
        };
        assert_eq!(scan.run((8, data.len()), 0, Owner::Glyph), Ok(true));
        assert_eq!(scan.stems, 2);
        let call = |at, global, index| Call {
            at,
            len: 1,
            global,
            index,
        };
        assert_eq!(scan.glyph_calls, vec![call(7, false, 0)]);
        assert_eq!(
            scan.flat.as_deref(),
            Some(&[139, 139, 139, 139, 1, 19, 0xC0, 0x8D, 0x8D, 21, 14][..])
        );
        assert_eq!(usage.global, vec![None, Some(vec![])]);
        assert_eq!(usage.local, vec![vec![Some(vec![call(0, true, 1)])]]);
        assert!(usage.renumberable);
    }

    #[test]
    fn numbers_are_written_in_their_shortest_charstring_form() {
        for (v, bytes) in [
            (0i64, vec![139u8]),
            (-107, vec![32]),
            (107, vec![246]),
            (108, vec![247, 0]),
            (1131, vec![250, 255]),
            (-1131, vec![254, 255]),
            (1132, vec![28, 4, 108]),
            (-32768, vec![28, 128, 0]),
        ] {
            let mut out = Vec::new();
            push_number(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
    }
}
