//! The Autotask simulator's tables and the helpers every handler uses. A leaf of its own so
//! that the dispatch (`mod.rs`) and the handlers can all name it without depending on each
//! other.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use super::data::{
    Company, Contract, ContractService, ContractServiceAdjustment, ContractServiceUnit,
    PicklistValue, Service, Ticket, TicketAttachment, picklist,
};
use super::fields::Record;
use super::fields::{Kind, Pick};
use super::filters::Cond;

/// The tables, behind the simulator's lock.
pub(super) struct Store {
    pub(super) companies: BTreeMap<i64, Company>,
    pub(super) contracts: BTreeMap<i64, Contract>,
    pub(super) services: BTreeMap<i64, Service>,
    pub(super) contract_services: BTreeMap<i64, ContractService>,
    /// Contract service ids by (contract, service).
    pub(super) pairs: HashMap<(i64, i64), i64>,
    pub(super) units: BTreeMap<i64, ContractServiceUnit>,
    /// Unit row ids by contract (rows are never deleted nor moved to another contract).
    pub(super) units_by_contract: HashMap<i64, Vec<i64>>,
    pub(super) adjustments: BTreeMap<i64, ContractServiceAdjustment>,
    pub(super) tickets: BTreeMap<i64, Ticket>,
    pub(super) attachments: BTreeMap<i64, TicketAttachment>,
    /// Attachment bytes accepted in the last five minutes.
    pub(super) attachment_window: VecDeque<(Instant, usize)>,
    pub(super) queues: Vec<PicklistValue>,
    pub(super) statuses: Vec<PicklistValue>,
    pub(super) priorities: Vec<PicklistValue>,
    pub(super) next_id: i64,
}

/// Runs `$body` with `$rows` bound to the table of `$kind`.
macro_rules! on_table {
    ($store:expr, $kind:expr, $rows:ident => $body:expr) => {
        match $kind {
            Kind::Companies => {
                let $rows = &$store.companies;
                $body
            }
            Kind::Contracts => {
                let $rows = &$store.contracts;
                $body
            }
            Kind::Services => {
                let $rows = &$store.services;
                $body
            }
            Kind::ContractServices => {
                let $rows = &$store.contract_services;
                $body
            }
            Kind::ContractServiceUnits => {
                let $rows = &$store.units;
                $body
            }
            Kind::ContractServiceAdjustments => {
                let $rows = &$store.adjustments;
                $body
            }
            Kind::Tickets => {
                let $rows = &$store.tickets;
                $body
            }
            Kind::TicketAttachments => {
                let $rows = &$store.attachments;
                $body
            }
        }
    };
}

pub(super) use on_table;

const CONTRACT_TYPES: &[(i64, &str)] = &[
    (1, "Time & Materials"),
    (3, "Fixed Price"),
    (4, "Block Hours"),
    (6, "Retainer"),
    (7, "Recurring Service"),
    (8, "Per Ticket"),
];
const CONTRACT_STATUSES: &[(i64, &str)] = &[(0, "Inactive"), (1, "Active")];
const COMPANY_TYPES: &[(i64, &str)] = &[
    (1, "Customer"),
    (2, "Lead"),
    (3, "Prospect"),
    (4, "Dead"),
    (6, "Cancellation"),
    (7, "Vendor"),
    (8, "Partner"),
];

pub(super) fn active(list: &[PicklistValue], id: i64) -> bool {
    list.iter().any(|p| p.id == id && p.is_active)
}

impl Store {
    pub(super) fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(super) fn picklist(&self, pick: Pick) -> Vec<PicklistValue> {
        match pick {
            Pick::Queues => self.queues.clone(),
            Pick::TicketStatuses => self.statuses.clone(),
            Pick::TicketPriorities => self.priorities.clone(),
            Pick::ContractTypes => picklist(CONTRACT_TYPES),
            Pick::ContractStatuses => picklist(CONTRACT_STATUSES),
            Pick::CompanyTypes => picklist(COMPANY_TYPES),
        }
    }

    pub(super) fn contract_service(&self, contract: i64, service: i64) -> Option<&ContractService> {
        self.pairs
            .get(&(contract, service))
            .and_then(|id| self.contract_services.get(id))
    }

    pub(super) fn insert_unit(&mut self, u: ContractServiceUnit) {
        let id = u.id();
        self.units_by_contract
            .entry(u.contract_id)
            .or_default()
            .push(id);
        self.units.insert(id, u);
    }

    /// The unit rows of `contract`.
    pub(super) fn units_of(&self, contract: i64) -> impl Iterator<Item = &ContractServiceUnit> {
        self.units_by_contract
            .get(&contract)
            .into_iter()
            .flatten()
            .filter_map(|id| self.units.get(id))
    }

    /// When `cond` requires `contractID` to be one of a few values, the unit rows that can
    /// match (a copy of a small part of the table), so a query need not scan every row.
    pub(super) fn narrowed_units(&self, cond: &Cond) -> Option<BTreeMap<i64, ContractServiceUnit>> {
        let contract_field = Kind::ContractServiceUnits.field("contractID")?;
        let contracts = cond.required_ints(contract_field)?;
        Some(
            contracts
                .iter()
                .flat_map(|c| self.units_of(*c))
                .map(|u| (u.id(), u.clone()))
                .collect(),
        )
    }

    pub(super) fn insert_contract_service(&mut self, cs: ContractService) {
        self.pairs.insert((cs.contract_id, cs.service_id), cs.id);
        self.contract_services.insert(cs.id, cs);
    }
}
