//! Building the ConnectWise simulator's state from a data file: every id unique, every
//! reference resolved, every value canonical, the indexes built and the records rendered once.

use std::collections::{HashMap, VecDeque};

use super::data::{
    AGREEMENT_STATUSES, BILL_CUSTOMER, BoardStatus, Data, MAX_NAME, board_default_status,
};
use super::dates::normalize_date;
use super::fields::canonical;
use super::state::{Inner, Views};

/// Ticket note text limit is not documented; first ids of created notes and documents.
const NOTE_BASE: i64 = 9000;
const DOCUMENT_BASE: i64 = 30000;

/// Ticket statuses of a board that lists none: (name, closedStatus, defaultFlag).
const DEFAULT_BOARD_STATUSES: [(&str, bool, bool); 4] = [
    ("New", false, true),
    ("In Progress", false, false),
    ("Waiting", false, false),
    ("Closed", true, false),
];

/// First id of additions and tickets created in an empty collection.
const ADDITION_BASE: i64 = 1000;
const TICKET_BASE: i64 = 7000;

/// Builds `id -> index`, refusing duplicates.
fn index_ids<T>(
    what: &str,
    items: &[T],
    id: impl Fn(&T) -> i64,
) -> Result<HashMap<i64, usize>, String> {
    let mut ix = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if ix.insert(id(item), i).is_some() {
            return Err(format!("{what}: duplicate id {}", id(item)));
        }
    }
    Ok(ix)
}

/// Builds `lower-cased key -> index`, refusing duplicates and empty keys.
fn index_names<T>(
    what: &str,
    key: &str,
    items: &[T],
    name: impl Fn(&T) -> &str,
) -> Result<HashMap<String, usize>, String> {
    let mut ix = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = name(item);
        if n.trim().is_empty() {
            return Err(format!("{what}[{i}]: {key} is empty"));
        }
        if ix.insert(n.to_lowercase(), i).is_some() {
            return Err(format!("{what}: duplicate {key} \"{n}\""));
        }
    }
    Ok(ix)
}

/// `key -> indexes` of the items with that key.
pub(super) fn group<T>(items: &[T], key: impl Fn(&T) -> i64) -> HashMap<i64, Vec<usize>> {
    let mut out: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        out.entry(key(item)).or_default().push(i);
    }
    out
}

fn next_id(ids: impl Iterator<Item = i64>, base: i64) -> i64 {
    ids.max().map_or(base, |m| m + 1)
}

impl Inner {
    /// Builds the state from its data, checking ids are unique and references resolve.
    pub(super) fn load(mut data: Data) -> Result<Inner, String> {
        let codebase = data.codebase.trim_matches('/').to_string();
        if codebase.is_empty() || codebase.contains('/') {
            return Err(format!(
                "codebase \"{}\" must be one path segment such as v2025_1/",
                data.codebase
            ));
        }
        data.codebase = format!("{codebase}/");
        for (key, value) in [
            ("companyId", &data.company_id),
            ("clientId", &data.client_id),
            ("publicKey", &data.public_key),
            ("privateKey", &data.private_key),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key} is empty"));
            }
        }
        if data.company_id.contains(['+', ':', '/']) || data.public_key.contains(':') {
            return Err("companyId must not contain '+', ':' or '/', nor publicKey ':'".into());
        }
        if let Some(rl) = &data.rate_limit
            && rl.requests > 0
            && rl.per_seconds == 0
        {
            return Err("rateLimit.perSeconds must be at least 1".into());
        }

        let company_ix = index_ids("companies", &data.companies, |c| c.id)?;
        let company_by_ident = index_names("companies", "identifier", &data.companies, |c| {
            &c.identifier
        })?;
        for c in &data.companies {
            if c.name.trim().is_empty() {
                return Err(format!("companies: company {} has an empty name", c.id));
            }
        }

        let agreement_ix = index_ids("agreements", &data.agreements, |a| a.id)?;
        let mut agreement_types = HashMap::new();
        for a in &mut data.agreements {
            if !company_ix.contains_key(&a.company_id) {
                return Err(format!(
                    "agreements: agreement {} refers to company {}, which does not exist",
                    a.id, a.company_id
                ));
            }
            a.status = canonical(&a.status, &AGREEMENT_STATUSES)
                .ok_or_else(|| {
                    format!(
                        "agreements: agreement {} has status \"{}\" (expected one of {})",
                        a.id,
                        a.status,
                        AGREEMENT_STATUSES.join(", ")
                    )
                })?
                .to_string();
            if a.name.trim().is_empty() || a.name.chars().count() > MAX_NAME {
                return Err(format!(
                    "agreements: agreement {} needs a name of 1 to {MAX_NAME} characters",
                    a.id
                ));
            }
            for (key, date) in [
                ("startDate", &mut a.start_date),
                ("endDate", &mut a.end_date),
            ] {
                if let Some(d) = date {
                    *d = normalize_date(d).ok_or_else(|| {
                        format!(
                            "agreements: agreement {}: {key} \"{d}\" is not a date",
                            a.id
                        )
                    })?;
                }
            }
            let next = agreement_types.len() as i64 + 1;
            agreement_types.entry(a.kind.to_lowercase()).or_insert(next);
        }

        let product_ix = index_ids("products", &data.products, |p| p.id)?;
        let product_by_ident =
            index_names("products", "identifier", &data.products, |p| &p.identifier)?;
        let board_ix = index_ids("boards", &data.boards, |b| b.id)?;
        let board_by_name = index_names("boards", "name", &data.boards, |b| &b.name)?;
        let mut board_status_ids = std::collections::HashSet::new();
        for (bi, b) in data.boards.iter_mut().enumerate() {
            if b.statuses.is_empty() {
                b.statuses = DEFAULT_BOARD_STATUSES
                    .iter()
                    .enumerate()
                    .map(|(i, (name, closed, default))| BoardStatus {
                        id: b.id * 100 + i as i64 + 1,
                        name: (*name).into(),
                        closed_status: *closed,
                        inactive: false,
                        default_flag: *default,
                        sort_order: i as i64,
                    })
                    .collect();
            }
            index_names(
                &format!("boards[{bi}].statuses"),
                "name",
                &b.statuses,
                |s| &s.name,
            )?;
            for st in &b.statuses {
                if !board_status_ids.insert(st.id) {
                    return Err(format!("board statuses: duplicate id {}", st.id));
                }
            }
            if b.statuses.iter().filter(|s| s.default_flag).count() > 1 {
                return Err(format!(
                    "board \"{}\" has more than one default status",
                    b.name
                ));
            }
        }
        index_ids("companyStatuses", &data.company_statuses, |s| s.id)?;
        let company_status_by_name =
            index_names("companyStatuses", "name", &data.company_statuses, |s| {
                &s.name
            })?;
        for c in &mut data.companies {
            let Some(&i) = company_status_by_name.get(&c.status.to_lowercase()) else {
                return Err(format!(
                    "companies: company {} has status \"{}\", which is not in companyStatuses",
                    c.id, c.status
                ));
            };
            c.status = data.company_statuses[i].name.clone();
        }

        let addition_ix = index_ids("additions", &data.additions, |a| a.id)?;
        for a in &mut data.additions {
            if !agreement_ix.contains_key(&a.agreement_id) {
                return Err(format!(
                    "additions: addition {} refers to agreement {}, which does not exist",
                    a.id, a.agreement_id
                ));
            }
            let Some(&p) = product_by_ident.get(&a.product_identifier.to_lowercase()) else {
                return Err(format!(
                    "additions: addition {} refers to product \"{}\", which is not in products",
                    a.id, a.product_identifier
                ));
            };
            a.product_identifier = data.products[p].identifier.clone();
            a.bill_customer = canonical(&a.bill_customer, &BILL_CUSTOMER)
                .ok_or_else(|| {
                    format!(
                        "additions: addition {} has billCustomer \"{}\" (expected one of {})",
                        a.id,
                        a.bill_customer,
                        BILL_CUSTOMER.join(", ")
                    )
                })?
                .to_string();
            for (key, date) in [
                ("effectiveDate", &mut a.effective_date),
                ("cancelledDate", &mut a.cancelled_date),
            ] {
                if let Some(d) = date {
                    *d = normalize_date(d).ok_or_else(|| {
                        format!("additions: addition {}: {key} \"{d}\" is not a date", a.id)
                    })?;
                }
            }
        }

        let ticket_ix = index_ids("tickets", &data.tickets, |t| t.id)?;
        let first_board = data.boards.first().map(|b| b.name.clone());
        for t in &mut data.tickets {
            if !company_ix.contains_key(&t.company_id) {
                return Err(format!(
                    "tickets: ticket {} refers to company {}, which does not exist",
                    t.id, t.company_id
                ));
            }
            if t.board.trim().is_empty() {
                t.board = first_board.clone().ok_or_else(|| {
                    format!(
                        "tickets: ticket {} has no board and there are no boards",
                        t.id
                    )
                })?;
            }
            let Some(&b) = board_by_name.get(&t.board.to_lowercase()) else {
                return Err(format!(
                    "tickets: ticket {} is on board \"{}\", which is not in boards",
                    t.id, t.board
                ));
            };
            t.board = data.boards[b].name.clone();
            let board = &data.boards[b];
            let status = if t.status.trim().is_empty() {
                board_default_status(board)
            } else {
                board
                    .statuses
                    .iter()
                    .find(|s| s.name.eq_ignore_ascii_case(t.status.trim()))
            };
            let Some(status) = status else {
                return Err(format!(
                    "tickets: ticket {} has status \"{}\", which is not a status of board \"{}\"",
                    t.id, t.status, board.name
                ));
            };
            t.status = status.name.clone();
            t.closed = status.closed_status;
            if t.summary.chars().count() > MAX_NAME {
                return Err(format!(
                    "tickets: ticket {} has a summary over {MAX_NAME} characters",
                    t.id
                ));
            }
        }

        let next_addition = next_id(data.additions.iter().map(|a| a.id), ADDITION_BASE);
        let next_ticket = next_id(data.tickets.iter().map(|t| t.id), TICKET_BASE);
        let ticket_ids: std::collections::HashSet<i64> =
            data.tickets.iter().map(|t| t.id).collect();
        index_ids("ticketNotes", &data.ticket_notes, |n| n.id)?;
        for n in &data.ticket_notes {
            if !ticket_ids.contains(&n.ticket_id) {
                return Err(format!(
                    "ticketNotes: note {} refers to ticket {}, which does not exist",
                    n.id, n.ticket_id
                ));
            }
        }
        index_ids("documents", &data.documents, |d| d.id)?;
        let next_note = next_id(data.ticket_notes.iter().map(|n| n.id), NOTE_BASE);
        let next_document = next_id(data.documents.iter().map(|d| d.id), DOCUMENT_BASE);
        let agreements_by_company = group(&data.agreements, |a| a.company_id);
        let additions_by_agreement = group(&data.additions, |a| a.agreement_id);
        let tickets_by_company = group(&data.tickets, |t| t.company_id);
        let mut inner = Inner {
            data,
            codebase,
            company_ix,
            company_by_ident,
            agreement_ix,
            agreement_types,
            product_ix,
            product_by_ident,
            board_ix,
            board_by_name,
            addition_ix,
            ticket_ix,
            agreements_by_company,
            additions_by_agreement,
            tickets_by_company,
            next_addition,
            next_ticket,
            next_note,
            next_document,
            company_status_by_name,
            window: VecDeque::new(),
            views: Views::default(),
        };
        let views = Views {
            companies: inner
                .data
                .companies
                .iter()
                .map(|c| inner.company_json(c))
                .collect(),
            agreements: (inner.data.agreements.iter())
                .map(|a| inner.agreement_json(a))
                .collect(),
            products: inner
                .data
                .products
                .iter()
                .map(Inner::product_json)
                .collect(),
            additions: (inner.data.additions.iter())
                .map(|a| inner.addition_json(a))
                .collect(),
            boards: inner.data.boards.iter().map(Inner::board_json).collect(),
            tickets: inner
                .data
                .tickets
                .iter()
                .map(|t| inner.ticket_json(t))
                .collect(),
            company_statuses: (inner.data.company_statuses.iter())
                .map(Inner::company_status_json)
                .collect(),
            board_statuses: (inner.data.boards.iter())
                .flat_map(|b| {
                    b.statuses
                        .iter()
                        .map(move |s| Inner::board_status_json(b, s))
                })
                .collect(),
            notes: inner
                .data
                .ticket_notes
                .iter()
                .map(Inner::note_json)
                .collect(),
            documents: inner
                .data
                .documents
                .iter()
                .map(Inner::document_json)
                .collect(),
        };
        inner.views = views;
        Ok(inner)
    }
}
