//! The Autotask contract writes: `POST /Contracts/{id}/Services` (a service on a Recurring
//! Service contract) and `POST /Contracts/{id}/ServiceAdjustments` (which moves the units).

use serde_json::{Value, json};

use super::data::{
    Contract, ContractService, ContractServiceAdjustment, ContractServiceUnit, RECURRING_SERVICE,
};
use super::fields::Record;
use super::responses::{Body, Fail, on_record, required};
use super::store::Store;

impl Store {
    /// The contract of a child create: the URL's, which the body's `contractID` must repeat.
    fn parent_contract(&self, path_id: i64, b: &mut Body<'_>) -> Result<Contract, Fail> {
        let body_id = b.int("contractID", true);
        if let Some(id) = body_id
            && id != path_id
        {
            b.error(format!(
                "contractID {id} in the body does not match the contract {path_id} in the URL."
            ));
        }
        b.check()?;
        self.contracts
            .get(&path_id)
            .cloned()
            .ok_or_else(|| Fail::invalid(on_record(format!("Contract {path_id} does not exist."))))
    }

    pub(super) fn create_contract_service(
        &mut self,
        contract_id: i64,
        v: &Value,
    ) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let service_id = b.int("serviceID", true);
        let unit_price = b.num("unitPrice", false);
        let contract = self.parent_contract(contract_id, &mut b)?;
        let service_id = service_id.unwrap_or_default();
        if contract.contract_type != RECURRING_SERVICE {
            return Err(Fail::invalid(on_record(format!(
                "Services can only be added to Recurring Service contracts (contractType 7); contract {contract_id} has contractType {}.",
                contract.contract_type
            ))));
        }
        let Some(service) = self.services.get(&service_id) else {
            return Err(Fail::invalid(on_record(format!(
                "Service {service_id} does not exist."
            ))));
        };
        if let Some(existing) = self.contract_service(contract_id, service_id) {
            return Err(Fail::invalid(on_record(format!(
                "Service {service_id} is already on contract {contract_id} (contract service {}).",
                existing.id
            ))));
        }
        let unit_price = unit_price.unwrap_or(service.unit_price);
        let id = self.take_id();
        self.insert_contract_service(ContractService {
            id,
            contract_id,
            service_id,
            unit_price: Some(unit_price),
        });
        Ok(json!({ "itemId": id }))
    }

    pub(super) fn create_adjustment(&mut self, contract_id: i64, v: &Value) -> Result<Value, Fail> {
        let mut b = Body::new(v)?;
        let service_id = b.int("serviceID", true);
        let effective = b.date("effectiveDate", true);
        let change = b.int("unitChange", true);
        let price = b.num("adjustedUnitPrice", false);
        let given_cs = b.int("contractServiceID", false);
        let contract = self.parent_contract(contract_id, &mut b)?;
        let (Some(service_id), Some(effective), Some(change)) = (service_id, effective, change)
        else {
            return Err(Fail::invalid(required("serviceID")));
        };
        if contract.contract_type != RECURRING_SERVICE {
            return Err(Fail::invalid(on_record(format!(
                "Service adjustments can only be made on Recurring Service contracts (contractType 7); contract {contract_id} has contractType {}.",
                contract.contract_type
            ))));
        }
        if contract.status != 1 {
            return Err(Fail::invalid(on_record(format!(
                "Contract {contract_id} is not active (status {}); adjustments need an active contract.",
                contract.status
            ))));
        }
        // "If the API creates a ContractServiceAdjustment entity and the API cannot find the
        // correct ContractService entity, it will create it" (ContractServiceAdjustments, REST).
        let cs = match self.contract_service(contract_id, service_id).cloned() {
            Some(cs) => cs,
            None => {
                let Some(service) = self.services.get(&service_id) else {
                    return Err(Fail::invalid(on_record(format!(
                        "Service {service_id} does not exist."
                    ))));
                };
                let cs = ContractService {
                    id: 0,
                    contract_id,
                    service_id,
                    unit_price: Some(service.unit_price),
                };
                let cs = ContractService {
                    id: self.take_id(),
                    ..cs
                };
                self.insert_contract_service(cs.clone());
                cs
            }
        };
        if let Some(given) = given_cs
            && given != cs.id
        {
            return Err(Fail::invalid(on_record(format!(
                "contractServiceID {given} is not the contract service {} of service {service_id} on contract {contract_id}.",
                cs.id
            ))));
        }
        if i32::try_from(change).is_err() {
            return Err(Fail::invalid(on_record(format!(
                "unitChange: {change} is outside the range of a 32-bit integer."
            ))));
        }
        // ContractServiceUnits (REST API) in Autotask's developer help: an adjustment inside a
        // billing period starts a new units row on its effective date, which runs to the end of
        // the period; later periods carry the new count.
        let periods: Vec<ContractServiceUnit> = self
            .units_of(contract_id)
            .filter(|u| u.contract_service_id == Some(cs.id))
            .cloned()
            .collect();
        let too_low = |units: i64, u: Option<&ContractServiceUnit>| {
            let period = u.map_or_else(
                || format!("the period of {effective}"),
                |u| format!("the period {} to {}", u.start_date, u.end_date),
            );
            Fail::invalid(on_record(format!(
                "The adjustment of {change} units would leave {units} units in {period}; units cannot be negative."
            )))
        };
        for u in &periods {
            if u.end_date >= effective && u.units + change < 0 {
                return Err(too_low(u.units + change, Some(u)));
            }
            if u.end_date >= effective && i32::try_from(u.units + change).is_err() {
                return Err(Fail::invalid(on_record(
                    "units would exceed the range of a 32-bit integer.",
                )));
            }
        }
        let containing = periods
            .iter()
            .find(|u| u.start_date <= effective && effective <= u.end_date)
            .cloned();
        let mut new_rows = Vec::new();
        match &containing {
            Some(row) if row.start_date < effective => {
                // Split: the row ends the day before; a new row from the effective date.
                let Ok(day_before) = effective.yesterday() else {
                    return Err(Fail::invalid(on_record("effectiveDate is out of range.")));
                };
                if let Some(u) = self.units.get_mut(&row.id()) {
                    u.end_date = day_before;
                }
                new_rows.push((
                    effective,
                    row.end_date,
                    row.units + change,
                    price.or(row.price),
                ));
            }
            Some(_) => {}
            None => {
                let before = periods
                    .iter()
                    .filter(|u| u.end_date < effective)
                    .max_by_key(|u| u.end_date);
                let after = periods
                    .iter()
                    .filter(|u| u.start_date > effective)
                    .min_by_key(|u| u.start_date);
                let mut end = effective.last_of_month();
                if let Some(a) = after
                    && let Ok(prev_day) = a.start_date.yesterday()
                    && prev_day < end
                {
                    end = prev_day;
                }
                let units = before.map_or(0, |b| b.units) + change;
                if units < 0 {
                    return Err(too_low(units, None));
                }
                let unit_price = price.or(before.and_then(|b| b.price)).or(cs.unit_price);
                new_rows.push((effective, end, units, unit_price));
            }
        }
        for u in &periods {
            let moves = match &containing {
                Some(row) if row.start_date == effective => u.start_date >= effective,
                _ => u.start_date > effective,
            };
            if moves && let Some(row) = self.units.get_mut(&u.id()) {
                row.units += change;
                if price.is_some() {
                    row.price = price;
                }
            }
        }
        for (start_date, end_date, units, unit_price) in new_rows {
            let id = self.take_id();
            self.insert_unit(ContractServiceUnit {
                id: Some(id),
                contract_id,
                service_id,
                contract_service_id: Some(cs.id),
                start_date,
                end_date,
                units,
                price: unit_price,
            });
        }
        let id = self.take_id();
        self.adjustments.insert(
            id,
            ContractServiceAdjustment {
                id: Some(id),
                contract_id,
                service_id,
                contract_service_id: Some(cs.id),
                effective_date: effective,
                unit_change: change,
                adjusted_unit_price: price,
            },
        );
        Ok(json!({ "itemId": id }))
    }
}
