//! What a source sends through its channel: the columns once, then batches of typed rows.
//!
//! A batch may come from a [`BatchPool`]: dropped by its consumer, it goes back to the pool
//! with its rows and their text buffers, and the source refills them in place. An export of
//! millions of rows then allocates nothing per row once the first batches have gone round.
//!
//! A consumer whose file is a plain sequence of records (UTF-8 CSV) may instead hand the
//! source an [`Encoding`]: the source then encodes each row into the file's bytes as soon as
//! it is decoded, on the same thread, and sends [`Records`]. Decoded values are then read
//! while they are still in that core's cache, and a split read encodes on every session's
//! task at once; the consumer only hashes and writes.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use crate::Result;
use crate::export::Value;

/// Rows per batch sent through the channel: large enough to amortise channel costs, small
/// enough to keep memory flat.
pub const BATCH_ROWS: usize = 1024;

/// Batches a pool keeps; more are freed. Enough for every batch in flight in one export
/// (the channels between a source and its consumer hold a few dozen at most).
const POOLED_BATCHES: usize = 64;

/// What a source sends, in order: the columns once, then row batches.
#[derive(Debug)]
pub enum SourceEvent {
    /// Result column names, in query order.
    Columns(Vec<String>),
    /// Rows; each row has one value per column.
    Rows(RowBatch),
    /// Rows already encoded by the consumer's [`Encoding`].
    Records(Records),
}

impl SourceEvent {
    /// The rows this event carries.
    pub fn rows(&self) -> u64 {
        match self {
            SourceEvent::Columns(_) => 0,
            SourceEvent::Rows(batch) => batch.len() as u64,
            SourceEvent::Records(records) => records.rows,
        }
    }
}

/// Bytes of encoded records a source gathers before sending them.
pub const RECORDS_CHUNK: usize = 128 * 1024;

/// Whole records of the file, in order, encoded by the source (see [`Encoding`]).
#[derive(Debug, Default)]
pub struct Records {
    /// The records' bytes, exactly as they go into the file.
    pub bytes: Vec<u8>,
    /// How many rows they are.
    pub rows: u64,
}

impl Records {
    /// The bytes to append records to, with room for a whole chunk from the first record on.
    fn bytes_to_fill(&mut self) -> &mut Vec<u8> {
        if self.bytes.capacity() == 0 {
            self.bytes.reserve(RECORDS_CHUNK + RECORDS_CHUNK / 8);
        }
        &mut self.bytes
    }
}

/// Encodes rows into a file's bytes, where the source decodes them. Encoding cannot fail: a
/// format whose rows may be refused (a character set that lacks a character) takes rows.
pub trait RecordEncoder: Send {
    /// Appends the record of `row` (one value per query column, in query order) to `out`.
    fn encode(&mut self, row: &[Value], out: &mut Vec<u8>);

    /// The writer a source that reads its wire values itself may hand fields to one by one,
    /// in query order, instead of decoding a row first: text is then written from the
    /// source's buffer, checked and scanned in one pass, with no copy in between. `None`
    /// when the file's columns are not the query's in order (the source sends rows).
    fn fields(&mut self) -> Option<&mut dyn FieldWriter> {
        None
    }
}

/// Writes a record field by field (see [`RecordEncoder::fields`]). A record is its fields
/// in query order, every one of them, then [`FieldWriter::end`].
pub trait FieldWriter {
    /// Appends field `index`: text as the source read it, which must be UTF-8.
    fn text(
        &mut self,
        index: usize,
        text: &[u8],
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), std::str::Utf8Error>;

    /// Appends field `index`: any value.
    fn value(&mut self, index: usize, value: &Value, out: &mut Vec<u8>);

    /// Ends the record that began at `start` in `out`.
    fn end(&mut self, start: usize, out: &mut Vec<u8>);
}

/// Makes a [`RecordEncoder`] for the query's columns (their names, in order); called once per
/// session reading rows. An error (a selected column the query lacks) fails the read.
pub type Encoding = Arc<dyn Fn(&[String]) -> Result<Box<dyn RecordEncoder>> + Send + Sync>;

/// Gathers encoded records into [`Records`] of about [`RECORDS_CHUNK`] bytes.
pub struct RecordsFiller {
    encoder: Box<dyn RecordEncoder>,
    chunk: Records,
}

impl RecordsFiller {
    /// A filler encoding with `encoder`.
    pub fn new(encoder: Box<dyn RecordEncoder>) -> RecordsFiller {
        RecordsFiller {
            encoder,
            chunk: Records::default(),
        }
    }

    /// Encodes `row`; returns the chunk once it is full.
    pub fn push(&mut self, row: &[Value]) -> Option<Records> {
        self.encoder.encode(row, self.chunk.bytes_to_fill());
        self.written()
    }

    /// The encoder's field writer, if it has one, and the bytes records are appended to.
    pub fn fields(&mut self) -> Option<(&mut dyn FieldWriter, &mut Vec<u8>)> {
        let fields = self.encoder.fields()?;
        Some((fields, self.chunk.bytes_to_fill()))
    }

    /// Counts a record appended to the chunk; returns the chunk once it is full.
    pub fn written(&mut self) -> Option<Records> {
        self.chunk.rows += 1;
        (self.chunk.bytes.len() >= RECORDS_CHUNK).then(|| std::mem::take(&mut self.chunk))
    }

    /// The records encoded since the last chunk, if any.
    pub fn rest(&mut self) -> Option<Records> {
        (self.chunk.rows > 0).then(|| std::mem::take(&mut self.chunk))
    }
}

/// A batch of rows, one value per column each. It reads as a `Vec` of rows; dropped, it
/// returns to the [`BatchPool`] it came from, if any.
#[derive(Debug, Default)]
pub struct RowBatch {
    rows: Vec<Vec<Value>>,
    pool: Option<BatchPool>,
}

impl RowBatch {
    /// A batch that will return to `pool` when dropped.
    pub fn pooled(rows: Vec<Vec<Value>>, pool: &BatchPool) -> RowBatch {
        RowBatch {
            rows,
            pool: Some(pool.clone()),
        }
    }

    /// The rows, taken out of the pool's reach.
    pub fn into_rows(mut self) -> Vec<Vec<Value>> {
        std::mem::take(&mut self.rows)
    }
}

impl From<Vec<Vec<Value>>> for RowBatch {
    fn from(rows: Vec<Vec<Value>>) -> RowBatch {
        RowBatch { rows, pool: None }
    }
}

impl Deref for RowBatch {
    type Target = Vec<Vec<Value>>;
    fn deref(&self) -> &Vec<Vec<Value>> {
        &self.rows
    }
}

impl DerefMut for RowBatch {
    fn deref_mut(&mut self) -> &mut Vec<Vec<Value>> {
        &mut self.rows
    }
}

impl IntoIterator for RowBatch {
    type Item = Vec<Value>;
    type IntoIter = std::vec::IntoIter<Vec<Value>>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_rows().into_iter()
    }
}

impl Drop for RowBatch {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool
            && self.rows.capacity() > 0
        {
            pool.give(std::mem::take(&mut self.rows));
        }
    }
}

/// Used row batches waiting to be refilled: shared by a source's readers, fed by the
/// batches its consumer drops.
#[derive(Clone, Debug, Default)]
pub struct BatchPool(Arc<Mutex<Vec<Vec<Vec<Value>>>>>);

impl BatchPool {
    /// A used batch (its rows still in it, to be overwritten), if one came back.
    pub fn take(&self) -> Option<Vec<Vec<Value>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give(&self, rows: Vec<Vec<Value>>) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_BATCHES {
            pool.push(rows);
        }
    }
}

/// Fills batches with rows whose values are overwritten in place: rows come from returned
/// batches while there are some, new ones otherwise.
#[derive(Debug, Default)]
pub struct BatchFiller {
    pool: BatchPool,
    batch: Vec<Vec<Value>>,
    /// Rows of returned batches, to be refilled.
    spare: Vec<Vec<Value>>,
}

impl BatchFiller {
    /// A filler drawing on (and feeding) `pool`.
    pub fn new(pool: BatchPool) -> BatchFiller {
        BatchFiller {
            pool,
            batch: Vec::with_capacity(BATCH_ROWS),
            spare: Vec::new(),
        }
    }

    /// A row to fill, `width` values long (their old contents left to be overwritten). It
    /// is in the batch only once [`BatchFiller::push`] puts it there; a row never pushed is
    /// simply dropped.
    pub fn row(&mut self, width: usize) -> Vec<Value> {
        let mut row = self.spare.pop().unwrap_or_default();
        row.resize(width, Value::Null);
        row
    }

    /// Adds a filled row; returns the batch once it holds [`BATCH_ROWS`] rows.
    pub fn push(&mut self, row: Vec<Value>) -> Option<RowBatch> {
        self.batch.push(row);
        (self.batch.len() >= BATCH_ROWS).then(|| self.next_batch())
    }

    /// The rows pushed since the last batch, if any.
    pub fn rest(&mut self) -> Option<RowBatch> {
        (!self.batch.is_empty()).then(|| self.next_batch())
    }

    fn next_batch(&mut self) -> RowBatch {
        let next = match self.pool.take() {
            Some(mut used) => {
                self.spare.append(&mut used);
                used
            }
            None => Vec::with_capacity(BATCH_ROWS),
        };
        RowBatch::pooled(std::mem::replace(&mut self.batch, next), &self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_batch_returns_its_rows_and_buffers_for_the_next_batches() {
        let pool = BatchPool::default();
        let mut filler = BatchFiller::new(pool.clone());
        let mut first = None;
        for i in 0..BATCH_ROWS {
            let mut row = filler.row(2);
            row[0] = Value::Int(i as i64);
            row[1] = Value::Text(format!("row {i} with some text"));
            first = first.or(filler.push(row));
        }
        let first = first.expect("a full batch");
        assert_eq!(first.len(), BATCH_ROWS);
        let buffer = match &first[5][1] {
            Value::Text(s) => s.as_ptr(),
            other => panic!("{other:?}"),
        };
        drop(first);
        // Batches after the pool got the first one back refill its rows.
        let mut row = filler.row(2);
        assert_eq!(row.len(), 2);
        assert!(filler.rest().is_none());
        row[0] = Value::Int(0);
        drop(row);
        let mut seen = false;
        for _ in 0..2 * BATCH_ROWS {
            let mut row = filler.row(2);
            match &mut row[1] {
                Value::Text(s) => {
                    seen |= s.as_ptr() == buffer;
                    s.clear();
                    s.push_str("again");
                }
                other => *other = Value::Text("again".into()),
            }
            if let Some(batch) = filler.push(row) {
                assert!(batch.iter().all(|r| r[1] == Value::Text("again".into())));
            }
        }
        assert!(seen, "no text buffer of the dropped batch was reused");
    }

    #[test]
    fn a_batch_taken_apart_does_not_return_to_the_pool() {
        let pool = BatchPool::default();
        let batch = RowBatch::pooled(vec![vec![Value::Int(1)]], &pool);
        assert_eq!(batch.into_rows(), vec![vec![Value::Int(1)]]);
        assert!(pool.take().is_none());
    }
}
