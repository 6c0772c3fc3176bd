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
        if row.len() != self.columns {
            return Err(Error::Source(
                "unexpected COPY data from PostgreSQL: a row with a different number of columns"
                    .into(),
            ));
        }
        self.next_fields(data, |i, bytes| value(i, bytes, &mut row[i]))
    }

    /// As [`CopyReader::next_row`], but each field goes to `field` (`None`: NULL) in order,
    /// with nothing kept: a row cut short has had its first fields given already, which the
    /// caller takes back when the answer is `None`.
    pub(super) fn next_fields(
        &mut self,
        data: &[u8],
        mut field: impl FnMut(usize, Option<&[u8]>) -> Result<()>,
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
        if fields as usize != self.columns {
            return Err(broken("a row with a different number of columns"));
        }
        // One pass: a row cut short (its message split, which PostgreSQL does not do) leaves
        // the fields before the cut decoded, and is decoded again whole once it is complete.
        let mut at = 2;
        for i in 0..self.columns {
            let Some(len) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            match usize::try_from(len) {
                Err(_) => field(i, None)?,
                Ok(len) => {
                    let Some(bytes) = data.get(at..at + len) else {
                        return Ok(None);
                    };
                    field(i, Some(bytes))?;
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

/// A binary COPY stream, for tests: header, `rows` (fields `None` for NULL), end marker.
#[cfg(test)]
pub(super) fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
    let mut out = COPY_SIGNATURE.to_vec();
    out.extend_from_slice(&0u32.to_be_bytes()); // flags
    out.extend_from_slice(&0u32.to_be_bytes()); // header extension
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for field in row {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `data` the way the source does, one item at a time; with `cut`, each item is
    /// first offered only up to every shorter length, which must read as "not yet".
    fn read_all(data: &[u8], columns: usize, cut: bool) -> Vec<Vec<Value>> {
        let mut reader = CopyReader::new(columns);
        let mut row = vec![Value::Null; columns];
        let mut rows = Vec::new();
        let mut at = 0;
        while !reader.finished {
            let decode = |_: usize, bytes: Option<&[u8]>, slot: &mut Value| {
                *slot = match bytes {
                    None => Value::Null,
                    Some(b) => Value::Text(String::from_utf8(b.to_vec()).unwrap()),
                };
                Ok(())
            };
            let (item, used) = reader
                .next_row(&data[at..], &mut row, decode)
                .unwrap()
                .expect("a complete item");
            if cut {
                // A reader in the state this one was in before the item.
                let mut before = CopyReader {
                    columns,
                    header_done: item != CopyItem::Header,
                    finished: false,
                };
                for short in 0..used {
                    let partial = before
                        .next_row(&data[at..at + short], &mut row.clone(), decode)
                        .unwrap();
                    assert_eq!(partial, None, "{short} of {used} bytes read as complete");
                }
            }
            at += used;
            if item == CopyItem::Row {
                rows.push(row.clone());
            }
        }
        assert_eq!(at, data.len());
        rows
    }

    #[test]
    fn rows_are_read_whole_and_a_row_cut_anywhere_is_not_yet_a_row() {
        let long = vec![b'x'; 300];
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"1"), None, Some(b"")],
            vec![Some(b"22"), Some(&long), None],
            vec![None, None, None],
        ];
        let data = stream(&rows);
        let expected: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|f| {
                        f.map_or(Value::Null, |b| {
                            Value::Text(String::from_utf8(b.to_vec()).unwrap())
                        })
                    })
                    .collect()
            })
            .collect();
        assert_eq!(read_all(&data, 3, false), expected);
        assert_eq!(read_all(&data, 3, true), expected);
    }

    #[test]
    fn a_row_with_another_number_of_fields_or_data_after_the_end_is_an_error() {
        let data = stream(&[vec![Some(b"1"), Some(b"2")]]);
        let mut reader = CopyReader::new(3);
        let mut row = vec![Value::Null; 3];
        let ok = |_: usize, _: Option<&[u8]>, _: &mut Value| Ok(());
        let (_, used) = reader.next_row(&data, &mut row, ok).unwrap().unwrap();
        let err = reader.next_row(&data[used..], &mut row, ok).unwrap_err();
        assert!(
            err.to_string().contains("different number of columns"),
            "{err}"
        );

        let data = stream(&[]);
        let mut reader = CopyReader::new(1);
        let mut row = vec![Value::Null];
        let (_, header) = reader.next_row(&data, &mut row, ok).unwrap().unwrap();
        let (item, _) = reader
            .next_row(&data[header..], &mut row, ok)
            .unwrap()
            .unwrap();
        assert_eq!(item, CopyItem::End);
        let err = reader.next_row(b"\0\x01", &mut row, ok).unwrap_err();
        assert!(err.to_string().contains("after the end marker"), "{err}");
    }
}
