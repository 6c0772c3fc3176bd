//! PostgreSQL's binary COPY format: [`CopyReader`] cuts the `COPY ... TO STDOUT (FORMAT
//! binary)` stream into rows, and [`copy_refused`] tells a server that cannot COPY a
//! statement from a failing query. The values themselves are decoded elsewhere.

use crate::export::Value;
use crate::{Error, Result};

/// Whether `e` says the server cannot COPY this statement (a syntax error in the COPY
/// wrapper, the statement having been prepared fine, or an unsupported feature).
pub(super) fn copy_refused(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code == "42601" || code.starts_with("0A")),
        _ => false,
    }
}

/// Reads PostgreSQL's binary COPY format: an 11-byte signature, flags and a header
/// extension, then per row a 16-bit field count and per field a 32-bit length (-1: NULL) and
/// the value's bytes; a field count of -1 ends the data.
pub(super) struct CopyReader {
    columns: usize,
    header_done: bool,
    pub(super) finished: bool,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyReader {
    pub(super) fn new(columns: usize) -> CopyReader {
        CopyReader {
            columns,
            header_done: false,
            finished: false,
        }
    }

    /// The next item in `data`: `None` when `data` holds no complete item; otherwise the bytes
    /// used and what they were. A row is decoded into `row` (one value per column, overwritten
    /// in place); `value` decodes field `i` (`None`: NULL) into its slot.
    pub(super) fn next_row(
        &mut self,
        data: &[u8],
        row: &mut [Value],
        mut value: impl FnMut(usize, Option<&[u8]>, &mut Value) -> Result<()>,
    ) -> Result<Option<(CopyItem, usize)>> {
        let broken =
            |what: &str| Error::Source(format!("unexpected COPY data from PostgreSQL: {what}"));
        if data.is_empty() {
            return Ok(None);
        }
        if !self.header_done {
            if data.len() < 19 {
                return Ok(None);
            }
            if &data[..11] != COPY_SIGNATURE {
                return Err(broken("no binary COPY signature"));
            }
            let ext = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
            if data.len() < 19 + ext {
                return Ok(None);
            }
            self.header_done = true;
            return Ok(Some((CopyItem::Header, 19 + ext)));
        }
        if self.finished {
            return Err(broken("data after the end marker"));
        }
        if data.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([data[0], data[1]]);
        if fields == -1 {
            self.finished = true;
            return Ok(Some((CopyItem::End, 2)));
        }
        if fields as usize != self.columns || row.len() != self.columns {
            return Err(broken("a row with a different number of columns"));
        }
        // The whole row must be here before any field is decoded.
        let mut at = 2;
        for _ in 0..self.columns {
            let Some(len) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4 + usize::try_from(len).unwrap_or(0);
        }
        if data.len() < at {
            return Ok(None);
        }
        let mut at = 2;
        for (i, slot) in row.iter_mut().enumerate() {
            let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            at += 4;
            match usize::try_from(len) {
                Err(_) => value(i, None, slot)?,
                Ok(len) => {
                    value(i, Some(&data[at..at + len]), slot)?;
                    at += len;
                }
            }
        }
        Ok(Some((CopyItem::Row, at)))
    }
}

/// What [`CopyReader::next_row`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CopyItem {
    /// The header: nothing to send.
    Header,
    /// A row, now in the row it was given.
    Row,
    /// The end marker.
    End,
}
