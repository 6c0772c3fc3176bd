//! What a source sends through its channel: the columns once, then batches of typed rows.

use crate::export::Value;

/// Rows per batch sent through the channel: large enough to amortise channel costs, small
/// enough to keep memory flat.
pub const BATCH_ROWS: usize = 1024;

/// What a source sends, in order: the columns once, then row batches.
#[derive(Debug)]
pub enum SourceEvent {
    /// Result column names, in query order.
    Columns(Vec<String>),
    /// Rows; each row has one value per column.
    Rows(Vec<Vec<Value>>),
}
