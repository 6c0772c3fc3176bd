//! The ConnectWise simulator's state: the data plus the indexes and the rendered views every
//! request uses. A leaf of its own so that the dispatch (`mod.rs`) and the route handlers can
//! all name it without depending on each other.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::data::Data;

/// The data and its indexes, behind the simulator's lock.
pub(super) struct Inner {
    pub(super) data: Data,
    /// The configured codebase without slashes.
    pub(super) codebase: String,
    pub(super) company_ix: HashMap<i64, usize>,
    pub(super) company_by_ident: HashMap<String, usize>,
    pub(super) agreement_ix: HashMap<i64, usize>,
    pub(super) agreement_types: HashMap<String, i64>,
    pub(super) product_ix: HashMap<i64, usize>,
    pub(super) product_by_ident: HashMap<String, usize>,
    pub(super) board_ix: HashMap<i64, usize>,
    pub(super) board_by_name: HashMap<String, usize>,
    pub(super) addition_ix: HashMap<i64, usize>,
    pub(super) ticket_ix: HashMap<i64, usize>,
    /// Indexes of the agreements of each company.
    pub(super) agreements_by_company: HashMap<i64, Vec<usize>>,
    /// Indexes of the additions of each agreement.
    pub(super) additions_by_agreement: HashMap<i64, Vec<usize>>,
    /// Indexes of the tickets of each company.
    pub(super) tickets_by_company: HashMap<i64, Vec<usize>>,
    pub(super) next_addition: i64,
    pub(super) next_ticket: i64,
    pub(super) next_note: i64,
    pub(super) next_document: i64,
    /// Company statuses by lower-cased name.
    pub(super) company_status_by_name: HashMap<String, usize>,
    /// Times of the requests inside the rate-limit window.
    pub(super) window: VecDeque<Instant>,
    pub(super) views: Views,
}

/// Every record rendered in the API's shape, index-aligned with the lists of [`Data`] and kept
/// in step by the writes, so a list request does not re-render thousands of records.
#[derive(Default)]
pub(super) struct Views {
    pub(super) companies: Vec<Value>,
    pub(super) agreements: Vec<Value>,
    pub(super) products: Vec<Value>,
    pub(super) additions: Vec<Value>,
    pub(super) boards: Vec<Value>,
    pub(super) tickets: Vec<Value>,
    pub(super) company_statuses: Vec<Value>,
    /// Every board's statuses, board after board.
    pub(super) board_statuses: Vec<Value>,
    pub(super) notes: Vec<Value>,
    /// Documents without their bytes.
    pub(super) documents: Vec<Value>,
}
