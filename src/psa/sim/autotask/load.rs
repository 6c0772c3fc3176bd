//! Building the Autotask tables from a data file: every id unique (across entities, as
//! Autotask's are) and every reference resolved.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use jiff::Timestamp;

use super::data::{ContractServiceUnit, Data};
use super::store::Store;

fn unique(
    what: &str,
    ids: impl IntoIterator<Item = i64>,
    seen: &mut HashSet<i64>,
) -> Result<(), String> {
    seen.clear();
    for id in ids {
        if !seen.insert(id) {
            return Err(format!("{what}: duplicate id {id}"));
        }
    }
    Ok(())
}

impl Store {
    pub(super) fn load(data: Data) -> Result<Store, String> {
        let mut seen = HashSet::new();
        unique("companies", data.companies.iter().map(|c| c.id), &mut seen)?;
        unique("contracts", data.contracts.iter().map(|c| c.id), &mut seen)?;
        unique("services", data.services.iter().map(|s| s.id), &mut seen)?;
        unique(
            "contractServices",
            data.contract_services.iter().map(|c| c.id),
            &mut seen,
        )?;
        unique(
            "contractServiceUnits",
            data.contract_service_units.iter().filter_map(|u| u.id),
            &mut seen,
        )?;
        unique(
            "contractServiceAdjustments",
            data.contract_service_adjustments
                .iter()
                .filter_map(|a| a.id),
            &mut seen,
        )?;
        unique("tickets", data.tickets.iter().map(|t| t.id), &mut seen)?;
        unique(
            "ticketAttachments",
            data.ticket_attachments.iter().map(|a| a.id),
            &mut seen,
        )?;
        unique("queues", data.queues.iter().map(|q| q.id), &mut seen)?;
        unique(
            "ticketStatuses",
            data.ticket_statuses.iter().map(|q| q.id),
            &mut seen,
        )?;
        unique(
            "ticketPriorities",
            data.ticket_priorities.iter().map(|q| q.id),
            &mut seen,
        )?;

        let max_id = data
            .companies
            .iter()
            .map(|c| c.id)
            .chain(data.contracts.iter().map(|c| c.id))
            .chain(data.services.iter().map(|s| s.id))
            .chain(data.contract_services.iter().map(|c| c.id))
            .chain(data.contract_service_units.iter().filter_map(|u| u.id))
            .chain(
                data.contract_service_adjustments
                    .iter()
                    .filter_map(|a| a.id),
            )
            .chain(data.tickets.iter().map(|t| t.id))
            .chain(data.ticket_attachments.iter().map(|a| a.id))
            .max()
            .unwrap_or(0);
        let mut store = Store {
            companies: data.companies.into_iter().map(|c| (c.id, c)).collect(),
            contracts: BTreeMap::new(),
            services: data.services.into_iter().map(|s| (s.id, s)).collect(),
            contract_services: BTreeMap::new(),
            pairs: HashMap::new(),
            units: BTreeMap::new(),
            units_by_contract: HashMap::new(),
            adjustments: BTreeMap::new(),
            tickets: BTreeMap::new(),
            attachments: BTreeMap::new(),
            attachment_window: VecDeque::new(),
            queues: data.queues,
            statuses: data.ticket_statuses,
            priorities: data.ticket_priorities,
            next_id: max_id.max(0) + 1,
        };
        for c in data.contracts {
            if !store.companies.contains_key(&c.company_id) {
                return Err(format!(
                    "contracts: contract {} refers to company {}, which is not in companies",
                    c.id, c.company_id
                ));
            }
            if c.start_date > c.end_date {
                return Err(format!(
                    "contracts: contract {} ends ({}) before it starts ({})",
                    c.id, c.end_date, c.start_date
                ));
            }
            store.contracts.insert(c.id, c);
        }
        for mut cs in data.contract_services {
            if !store.contracts.contains_key(&cs.contract_id) {
                return Err(format!(
                    "contractServices: contract service {} refers to contract {}, which is not in contracts",
                    cs.id, cs.contract_id
                ));
            }
            let Some(service) = store.services.get(&cs.service_id) else {
                return Err(format!(
                    "contractServices: contract service {} refers to service {}, which is not in services",
                    cs.id, cs.service_id
                ));
            };
            if let Some(other) = store.contract_service(cs.contract_id, cs.service_id) {
                return Err(format!(
                    "contractServices: service {} is on contract {} twice (contract services {} and {})",
                    cs.service_id, cs.contract_id, other.id, cs.id
                ));
            }
            cs.unit_price = cs.unit_price.or(Some(service.unit_price));
            store.insert_contract_service(cs);
        }
        for mut u in data.contract_service_units {
            let Some(cs) = store.contract_service(u.contract_id, u.service_id) else {
                return Err(format!(
                    "contractServiceUnits: service {} is not on contract {} (add it to contractServices)",
                    u.service_id, u.contract_id
                ));
            };
            if let Some(given) = u.contract_service_id
                && given != cs.id
            {
                return Err(format!(
                    "contractServiceUnits: contractServiceID {given} is not the contract service {} of service {} on contract {}",
                    cs.id, u.service_id, u.contract_id
                ));
            }
            if u.start_date > u.end_date {
                return Err(format!(
                    "contractServiceUnits: the period {} to {} of contract {} service {} ends before it starts",
                    u.start_date, u.end_date, u.contract_id, u.service_id
                ));
            }
            if u.units < 0 {
                return Err(format!(
                    "contractServiceUnits: negative units ({}) for contract {} service {}",
                    u.units, u.contract_id, u.service_id
                ));
            }
            u.contract_service_id = Some(cs.id);
            u.price = u.price.or(cs.unit_price);
            let id = match u.id {
                Some(id) => id,
                None => store.take_id(),
            };
            u.id = Some(id);
            store.insert_unit(u);
        }
        let mut periods: HashMap<i64, Vec<&ContractServiceUnit>> = HashMap::new();
        for u in store.units.values() {
            periods
                .entry(u.contract_service_id.unwrap_or_default())
                .or_default()
                .push(u);
        }
        for list in periods.values_mut() {
            list.sort_by_key(|u| u.start_date);
            if let Some(w) = list.windows(2).find(|w| w[1].start_date <= w[0].end_date) {
                return Err(format!(
                    "contractServiceUnits: the periods {} to {} and {} to {} of contract {} service {} overlap",
                    w[0].start_date,
                    w[0].end_date,
                    w[1].start_date,
                    w[1].end_date,
                    w[1].contract_id,
                    w[1].service_id
                ));
            }
        }
        drop(periods);
        for mut a in data.contract_service_adjustments {
            let Some(cs) = store.contract_service(a.contract_id, a.service_id) else {
                return Err(format!(
                    "contractServiceAdjustments: service {} is not on contract {} (add it to contractServices)",
                    a.service_id, a.contract_id
                ));
            };
            a.contract_service_id = Some(cs.id);
            let id = match a.id {
                Some(id) => id,
                None => store.take_id(),
            };
            a.id = Some(id);
            store.adjustments.insert(id, a);
        }
        let now = Timestamp::now();
        for mut t in data.tickets {
            // Tickets loaded from data may lack a due date; everything else must hold.
            let mut errors = Vec::new();
            store.check_ticket(&t, &["dueDateTime"], &mut errors);
            if let Some(e) = errors.first() {
                return Err(format!("tickets: ticket {}: {e}", t.id));
            }
            t.create_date = t.create_date.or(Some(now));
            store.tickets.insert(t.id, t);
        }
        for a in data.ticket_attachments {
            if !store.tickets.contains_key(&a.parent_id) {
                return Err(format!(
                    "ticketAttachments: attachment {} refers to ticket {}, which is not in tickets",
                    a.id, a.parent_id
                ));
            }
            store.attachments.insert(a.id, a);
        }
        Ok(store)
    }
}
