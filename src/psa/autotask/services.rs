//! Usage pushed to Autotask: catalog services, the contract services attached to a
//! contract, and their units (ContractServiceUnits rows, read per contract or for the period
//! containing a day), changed by unit adjustments.
//!
//! To find the units period containing a day, the filter is `startDate lte "{day}T23:59:59"`
//! and `endDate gte "{day}"` (correct whether the server compares datetimes or ISO strings,
//! and whether it stores dates with or without a time), and the row is checked again here.
//! `unitChange` and `units` are 32-bit integers; callers round first.

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Autotask, eq};
use crate::Result;
use crate::psa::model::{ContractService, Service};

/// A day as sent in queries and bodies: `YYYY-MM-DD`.
pub fn at_date(date: jiff::civil::Date) -> String {
    date.to_string()
}

/// The filter of the units period containing `on` (see the module documentation).
pub fn units_filter(contract_id: i64, service_id: i64, on: jiff::civil::Date) -> Value {
    json!([
        eq("contractID", contract_id),
        eq("serviceID", service_id),
        {"op": "lte", "field": "startDate", "value": format!("{}T23:59:59", at_date(on))},
        {"op": "gte", "field": "endDate", "value": at_date(on)},
    ])
}

/// The day of an Autotask date or datetime (`2026-11-01`, `2026-11-01T00:00:00`, with or
/// without offset).
fn day_of(s: &str) -> Option<jiff::civil::Date> {
    s.trim().get(..10)?.parse().ok()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtService {
    id: i64,
    name: Option<String>,
    unit_price: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct AtContractService {
    id: i64,
    #[serde(rename = "contractID")]
    contract_id: i64,
    #[serde(rename = "serviceID")]
    service_id: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtUnits {
    #[serde(rename = "serviceID", default)]
    service_id: Option<i64>,
    start_date: Option<String>,
    end_date: Option<String>,
    units: Option<f64>,
}

/// One ContractServiceUnits row: a service's units over a part of a billing period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnitRow {
    /// `serviceID`.
    pub service_id: i64,
    /// `startDate` (day).
    pub start: jiff::civil::Date,
    /// `endDate` (day).
    pub end: jiff::civil::Date,
    /// `units`.
    pub units: f64,
}

impl Autotask {
    /// Catalog services named `name`.
    pub async fn services_by_name(&self, name: &str) -> Result<Vec<Service>> {
        let rows: Vec<AtService> = self.query("Services", json!([eq("name", name)])).await?;
        Ok(rows
            .into_iter()
            .map(|s| Service {
                id: s.id,
                name: s.name.unwrap_or_default(),
                unit_price: s.unit_price,
            })
            .collect())
    }

    /// The contract service of `service_id` on the contract, if it is attached.
    pub async fn contract_service(
        &self,
        contract_id: i64,
        service_id: i64,
    ) -> Result<Option<ContractService>> {
        let rows: Vec<AtContractService> = self
            .query(
                "ContractServices",
                json!([eq("contractID", contract_id), eq("serviceID", service_id)]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .find(|r| r.contract_id == contract_id && r.service_id == service_id)
            .map(|r| ContractService {
                id: r.id,
                contract_id: r.contract_id,
                service_id: r.service_id,
            }))
    }

    /// Every contract service of the contract: one lookup for a mapping's services.
    pub async fn contract_services(&self, contract_id: i64) -> Result<Vec<ContractService>> {
        let rows: Vec<AtContractService> = self
            .query("ContractServices", json!([eq("contractID", contract_id)]))
            .await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.contract_id == contract_id)
            .map(|r| ContractService {
                id: r.id,
                contract_id: r.contract_id,
                service_id: r.service_id,
            })
            .collect())
    }

    /// Every units row (one per service and billing period, split by mid-period adjustments)
    /// of the contract, in one query.
    pub async fn unit_rows(&self, contract_id: i64) -> Result<Vec<UnitRow>> {
        let rows: Vec<AtUnits> = self
            .query(
                "ContractServiceUnits",
                json!([eq("contractID", contract_id)]),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(UnitRow {
                    service_id: r.service_id?,
                    start: r.start_date.as_deref().and_then(day_of)?,
                    end: r.end_date.as_deref().and_then(day_of)?,
                    units: r.units.unwrap_or(0.0),
                })
            })
            .collect())
    }

    /// Attaches the service to the contract (`POST /Contracts/{id}/Services`; `unitPrice`
    /// omitted when `None`); returns the contract service id. Sent once (see
    /// [`crate::psa::http::Replay`]).
    pub async fn add_contract_service(
        &self,
        contract_id: i64,
        service_id: i64,
        unit_price: Option<f64>,
    ) -> Result<i64> {
        let mut body = json!({"contractID": contract_id, "serviceID": service_id});
        if let Some(p) = unit_price {
            body["unitPrice"] = json!(p);
        }
        self.create(&format!("Contracts/{contract_id}/Services"), &body)
            .await
    }

    /// Units of the ContractServiceUnits row whose period contains `on` (0 when there is
    /// none; the latest-starting one should periods overlap).
    pub async fn current_units(
        &self,
        contract_id: i64,
        service_id: i64,
        on: jiff::civil::Date,
    ) -> Result<f64> {
        let rows: Vec<AtUnits> = self
            .query(
                "ContractServiceUnits",
                units_filter(contract_id, service_id, on),
            )
            .await?;
        let containing = rows
            .into_iter()
            .filter_map(|r| {
                let start = r.start_date.as_deref().and_then(day_of)?;
                let end = r.end_date.as_deref().and_then(day_of)?;
                (start <= on && on <= end).then_some((start, r.units.unwrap_or(0.0)))
            })
            .max_by_key(|(start, _)| *start);
        Ok(containing.map_or(0.0, |(_, units)| units))
    }

    /// Changes the units by `unit_change` whole units from `effective`
    /// (`POST /Contracts/{id}/ServiceAdjustments`); returns the itemId. Sent once: the change
    /// is a delta, and repeating an applied one would double it.
    pub async fn adjust_units(
        &self,
        contract_id: i64,
        service_id: i64,
        effective: jiff::civil::Date,
        unit_change: i32,
        adjusted_unit_price: Option<f64>,
    ) -> Result<i64> {
        let mut body = json!({
            "contractID": contract_id,
            "serviceID": service_id,
            "effectiveDate": at_date(effective),
            "unitChange": unit_change,
        });
        if let Some(p) = adjusted_unit_price {
            body["adjustedUnitPrice"] = json!(p);
        }
        self.create(
            &format!("Contracts/{contract_id}/ServiceAdjustments"),
            &body,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, fake, items, zone};
    use super::*;
    use crate::psa::http::fake::Seen;

    #[test]
    fn the_units_filter_finds_the_period_containing_the_day() {
        assert_eq!(
            units_filter(3, 4, jiff::civil::date(2026, 11, 21)),
            json!([
                {"op": "eq", "field": "contractID", "value": 3},
                {"op": "eq", "field": "serviceID", "value": 4},
                {"op": "lte", "field": "startDate", "value": "2026-11-21T23:59:59"},
                {"op": "gte", "field": "endDate", "value": "2026-11-21"},
            ])
        );
        assert_eq!(
            day_of("2026-11-01T00:00:00Z"),
            Some(jiff::civil::date(2026, 11, 1))
        );
        assert_eq!(day_of("2026-11-30"), Some(jiff::civil::date(2026, 11, 30)));
        assert_eq!(day_of("junk"), None);
    }

    #[tokio::test]
    async fn current_units_come_from_the_period_containing_the_day() {
        let fake = fake(|s: Seen, url: String| async move {
            if s.path().ends_with("zoneInformation") {
                return zone(&url, 1);
            }
            items(json!([
                {"id": 1, "startDate": "2026-10-01T00:00:00", "endDate": "2026-10-31T00:00:00", "units": 10},
                {"id": 2, "startDate": "2026-11-01T00:00:00", "endDate": "2026-11-30T00:00:00", "units": 12},
            ]))
        })
        .await;
        let at = client(&fake.url);
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 11, 1))
                .await
                .unwrap(),
            12.0
        );
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 10, 31))
                .await
                .unwrap(),
            10.0
        );
        assert_eq!(
            at.current_units(3, 4, jiff::civil::date(2026, 12, 1))
                .await
                .unwrap(),
            0.0
        );
    }
}
