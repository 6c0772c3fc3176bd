//! The Autotask routes: a request's method and path (case-insensitive) to what it asks for,
//! or the refusal Autotask gives.

use super::fields::Kind;
use super::responses::{Fail, not_allowed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Items,
    Count,
    Next,
    Prev,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Query(Kind, Mode),
    Get(Kind, i64),
    CreateTicket,
    UpdateTicket,
    CreateContractService(i64),
    CreateAdjustment(i64),
    CreateTicketAttachment(i64),
    EntityInfo(Kind),
    FieldsInfo(Kind),
    UdfInfo(Kind),
}

impl Route {
    /// The endpoint the thread limit counts on.
    pub(super) fn endpoint(self) -> Kind {
        match self {
            Route::Query(k, _)
            | Route::Get(k, _)
            | Route::EntityInfo(k)
            | Route::FieldsInfo(k)
            | Route::UdfInfo(k) => k,
            Route::CreateTicket | Route::UpdateTicket => Kind::Tickets,
            Route::CreateContractService(_) => Kind::ContractServices,
            Route::CreateAdjustment(_) => Kind::ContractServiceAdjustments,
            Route::CreateTicketAttachment(_) => Kind::TicketAttachments,
        }
    }
}

pub(super) fn ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The route of `rest` (the path after `v1.0/`).
pub(super) fn route(method: &str, rest: &[&str]) -> Result<Route, Fail> {
    let m = method.to_ascii_uppercase();
    let not_found = || {
        Fail::new(
            404,
            format!(
                "No HTTP resource was found that matches /{}.",
                rest.join("/")
            ),
        )
    };
    let Some((first, tail)) = rest.split_first() else {
        return Err(not_found());
    };
    let Some(kind) = Kind::from_path(first) else {
        return Err(not_found());
    };
    let get_only = |r: Route| {
        if m == "GET" {
            Ok(r)
        } else {
            Err(not_allowed(&m, None))
        }
    };
    let post_only = |r: Route| {
        if m == "POST" {
            Ok(r)
        } else {
            Err(not_allowed(
                &m,
                Some("nextPageUrl and prevPageUrl are followed with POST and the query body."),
            ))
        }
    };
    let numeric = |s: &str| s.parse::<i64>().ok();
    match tail {
        [] => match (kind, m.as_str()) {
            (Kind::Tickets, "POST") => Ok(Route::CreateTicket),
            (Kind::Tickets, "PATCH") => Ok(Route::UpdateTicket),
            (Kind::ContractServices, _) => Err(not_allowed(
                &m,
                Some(
                    "Contract services are created through POST /Contracts/{contractId}/Services.",
                ),
            )),
            (Kind::TicketAttachments, _) => Err(not_allowed(
                &m,
                Some(
                    "Ticket attachments are created through POST /Tickets/{ticketId}/Attachments.",
                ),
            )),
            (Kind::ContractServiceAdjustments, _) => Err(not_allowed(
                &m,
                Some(
                    "Adjustments are created through POST /Contracts/{contractId}/ServiceAdjustments.",
                ),
            )),
            _ => Err(not_allowed(&m, None)),
        },
        [q, rest @ ..] if ci(q, "query") => {
            if !kind.can_query() {
                return Err(not_allowed(
                    &m,
                    Some(&format!("{} cannot be queried.", kind.path())),
                ));
            }
            let mode = match rest {
                [] => Mode::Items,
                [c] if ci(c, "count") => Mode::Count,
                // The paging URLs take POST with the query body, as the first page did; a GET
                // there is refused (tphakala/go-autotask iter.go posts them).
                [n] if ci(n, "next") => return post_only(Route::Query(kind, Mode::Next)),
                [p] if ci(p, "prev") => return post_only(Route::Query(kind, Mode::Prev)),
                _ => return Err(not_found()),
            };
            if m == "GET" || m == "POST" {
                Ok(Route::Query(kind, mode))
            } else {
                Err(not_allowed(&m, None))
            }
        }
        [e] if ci(e, "entityInformation") => get_only(Route::EntityInfo(kind)),
        [e, f] if ci(e, "entityInformation") && ci(f, "fields") => {
            get_only(Route::FieldsInfo(kind))
        }
        [e, f] if ci(e, "entityInformation") && ci(f, "userDefinedFields") => {
            get_only(Route::UdfInfo(kind))
        }
        [id] => match numeric(id) {
            Some(id) if kind.can_get() => get_only(Route::Get(kind, id)),
            Some(_) => Err(not_allowed(
                &m,
                Some(&format!("{} can only be queried.", kind.path())),
            )),
            None => Err(not_found()),
        },
        [id, child] if kind == Kind::Tickets && ci(child, "Attachments") => match numeric(id) {
            Some(id) => match m.as_str() {
                "POST" => Ok(Route::CreateTicketAttachment(id)),
                _ => Err(not_allowed(&m, None)),
            },
            None => Err(not_found()),
        },
        [id, child] if kind == Kind::Contracts => match numeric(id) {
            Some(id) if ci(child, "Services") => match m.as_str() {
                "POST" => Ok(Route::CreateContractService(id)),
                _ => Err(not_allowed(&m, None)),
            },
            Some(id) if ci(child, "ServiceAdjustments") => match m.as_str() {
                "POST" => Ok(Route::CreateAdjustment(id)),
                _ => Err(not_allowed(
                    &m,
                    Some("Contract service adjustments are create-only."),
                )),
            },
            _ => Err(not_found()),
        },
        _ => Err(not_found()),
    }
}
