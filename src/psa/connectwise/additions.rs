//! Usage pushed to ConnectWise: agreement additions, looked up by product (not cancelled),
//! created, patched to a quantity and cancelled.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::ConnectWise;
use super::wire::{Conditions, Ref, cw_date, number};
use crate::Result;
use crate::psa::http::Replay;
use crate::psa::model::Addition;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAddition {
    id: i64,
    product: Option<Ref>,
    quantity: Option<f64>,
    effective_date: Option<String>,
    cancelled_date: Option<String>,
}

impl From<CwAddition> for Addition {
    fn from(a: CwAddition) -> Addition {
        let product = a.product.unwrap_or_default();
        Addition {
            id: a.id,
            product_id: product.id.unwrap_or_default(),
            product_identifier: product.identifier.unwrap_or_default(),
            quantity: a.quantity.unwrap_or(0.0),
            effective_date: a.effective_date,
            cancelled_date: a.cancelled_date.filter(|d| !d.is_empty()),
        }
    }
}

impl ConnectWise {
    /// Every active (`cancelledDate=null`) addition on the agreement, all products: one
    /// lookup for a mapping's products on that agreement.
    pub async fn active_additions(&self, agreement_id: i64) -> Result<Vec<Addition>> {
        let conditions = Conditions::new().is_null("cancelledDate").build();
        self.uncancelled_additions(agreement_id, &conditions).await
    }

    /// Active (`cancelledDate=null`) additions of `product_identifier` on the agreement.
    pub async fn additions(
        &self,
        agreement_id: i64,
        product_identifier: &str,
    ) -> Result<Vec<Addition>> {
        let conditions = Conditions::new()
            .eq_str("product/identifier", product_identifier)
            .is_null("cancelledDate")
            .build();
        self.uncancelled_additions(agreement_id, &conditions).await
    }

    /// The agreement's additions matching `conditions`, without any the server returned
    /// cancelled anyway.
    async fn uncancelled_additions(
        &self,
        agreement_id: i64,
        conditions: &str,
    ) -> Result<Vec<Addition>> {
        let path = format!("finance/agreements/{agreement_id}/additions");
        let rows: Vec<CwAddition> = self.list(&path, conditions).await?;
        Ok(rows
            .into_iter()
            .map(Addition::from)
            .filter(|a| a.cancelled_date.is_none())
            .collect())
    }

    /// Adds `quantity` of `product_identifier` to the agreement, billable from `effective`.
    /// Sent once: a 500 or a timeout is reported, not repeated (look up before creating).
    pub async fn create_addition(
        &self,
        agreement_id: i64,
        product_identifier: &str,
        quantity: f64,
        effective: jiff::civil::Date,
        description: &str,
    ) -> Result<Addition> {
        let path = format!("finance/agreements/{agreement_id}/additions");
        let body = json!({
            "product": {"identifier": product_identifier},
            "quantity": number(quantity),
            "billCustomer": "Billable",
            "effectiveDate": cw_date(effective),
            "description": description,
        });
        let reply = self
            .call(Method::POST, &path, Some(&body), Replay::CreateOnce)
            .await?;
        let row: CwAddition = self.expect(&Method::POST, &path, &reply)?;
        Ok(row.into())
    }

    /// Sets the addition's quantity (JSON Patch `replace quantity`).
    pub async fn set_addition_quantity(
        &self,
        agreement_id: i64,
        addition_id: i64,
        quantity: f64,
    ) -> Result<Addition> {
        let path = format!("finance/agreements/{agreement_id}/additions/{addition_id}");
        let body = json!([{"op": "replace", "path": "quantity", "value": number(quantity)}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        let row: CwAddition = self.expect(&Method::PATCH, &path, &reply)?;
        Ok(row.into())
    }

    /// Cancels the addition as of `on` (JSON Patch `replace cancelledDate`).
    pub async fn cancel_addition(
        &self,
        agreement_id: i64,
        addition_id: i64,
        on: jiff::civil::Date,
    ) -> Result<()> {
        let path = format!("finance/agreements/{agreement_id}/additions/{addition_id}");
        let body = json!([{"op": "replace", "path": "cancelledDate", "value": cw_date(on)}]);
        let reply = self
            .call(Method::PATCH, &path, Some(&body), Replay::Safe)
            .await?;
        self.expect::<Value>(&Method::PATCH, &path, &reply)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::super::tests::{client, companyinfo};
    use crate::psa::http::fake::{Answer, Fake, Seen};

    #[tokio::test]
    async fn additions_are_created_patched_and_cancelled_with_the_documented_bodies() {
        let bodies = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = bodies.clone();
        let fake = Fake::start(move |s: Seen| {
            let log = log.clone();
            async move {
                if s.path().starts_with("/login/") {
                    return companyinfo();
                }
                log.lock().unwrap().push((s.method.clone(), s.path().to_string(), s.json(), s.header("content-type")));
                let row = json!({"id": 9, "product": {"id": 4, "identifier": "EP-PROT"}, "quantity": 25, "effectiveDate": "2026-11-01T00:00:00Z", "cancelledDate": null});
                match s.method.as_str() {
                    "POST" => Answer::json(201, row),
                    "PATCH" => Answer::json(200, row),
                    _ => Answer::json(200, json!([row, {"id": 10, "product": {"id": 4, "identifier": "EP-PROT"}, "quantity": 1, "cancelledDate": "2026-01-01T00:00:00Z"}])),
                }
            }
        })
        .await;
        let cw = client(&fake.url);
        let d = jiff::civil::date(2026, 11, 1);
        let created = cw
            .create_addition(12, "EP-PROT", 25.0, d, "Endpoint protection")
            .await
            .unwrap();
        assert_eq!(created.id, 9);
        assert_eq!(created.quantity, 25.0);
        cw.set_addition_quantity(12, 9, 30.0).await.unwrap();
        cw.cancel_addition(12, 9, jiff::civil::date(2026, 11, 30))
            .await
            .unwrap();
        let active = cw.additions(12, "EP-PROT").await.unwrap();
        assert_eq!(active.iter().map(|a| a.id).collect::<Vec<_>>(), [9]);
        let bodies = bodies.lock().unwrap();
        assert_eq!(
            bodies[0].1,
            "/v2025_1/apis/3.0/finance/agreements/12/additions"
        );
        assert_eq!(
            bodies[0].2,
            json!({"product": {"identifier": "EP-PROT"}, "quantity": 25, "billCustomer": "Billable", "effectiveDate": "2026-11-01T00:00:00Z", "description": "Endpoint protection"})
        );
        assert_eq!(bodies[0].3.as_deref(), Some("application/json"));
        assert_eq!(bodies[1].0, "PATCH");
        assert_eq!(
            bodies[1].2,
            json!([{"op": "replace", "path": "quantity", "value": 30}])
        );
        assert_eq!(
            bodies[2].2,
            json!([{"op": "replace", "path": "cancelledDate", "value": "2026-11-30T00:00:00Z"}])
        );
    }
}
