//! Companies (by name) and their contracts (active when `status` is 1; only Recurring
//! Service contracts take services).

use serde::Deserialize;
use serde_json::json;

use super::client::{Autotask, Single, eq};
use crate::Result;
use crate::psa::model::{Agreement, Company};

/// Contract type "Recurring Service", the only one that takes services.
pub const RECURRING_SERVICE: i64 = 7;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtCompany {
    id: i64,
    company_name: Option<String>,
    company_number: Option<String>,
    is_active: Option<bool>,
}

impl From<AtCompany> for Company {
    fn from(c: AtCompany) -> Company {
        let active = c.is_active.unwrap_or(false);
        Company {
            id: c.id,
            identifier: c.company_number.filter(|n| !n.is_empty()),
            name: c.company_name.unwrap_or_default(),
            active,
            status: if active { "Active" } else { "Inactive" }.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtContract {
    id: i64,
    contract_name: Option<String>,
    contract_type: Option<i64>,
    status: Option<i64>,
}

impl From<AtContract> for Agreement {
    fn from(c: AtContract) -> Agreement {
        let active = c.status == Some(1);
        Agreement {
            id: c.id,
            name: c.contract_name.unwrap_or_default(),
            active,
            status: match c.status {
                Some(1) => "Active".into(),
                Some(n) => format!("Inactive (status {n})"),
                None => "Inactive (no status)".into(),
            },
            kind: c.contract_type.map(|t| t.to_string()).unwrap_or_default(),
            accepts_services: c.contract_type == Some(RECURRING_SERVICE),
        }
    }
}

impl Autotask {
    /// Companies named `name` (`companyName eq`; all, active or not).
    pub async fn companies_by_name(&self, name: &str) -> Result<Vec<Company>> {
        let rows: Vec<AtCompany> = self
            .query("Companies", json!([eq("companyName", name)]))
            .await?;
        Ok(rows.into_iter().map(Company::from).collect())
    }

    /// The company `id`; `None` when Autotask answers `{"item":null}`.
    pub async fn company(&self, id: i64) -> Result<Option<Company>> {
        let row: Single<AtCompany> = self.get(&format!("Companies/{id}")).await?;
        Ok(row.item.map(Company::from))
    }

    /// The contracts of the company (`companyID eq`), any status.
    pub async fn contracts(&self, company_id: i64) -> Result<Vec<Agreement>> {
        let rows: Vec<AtContract> = self
            .query("Contracts", json!([eq("companyID", company_id)]))
            .await?;
        Ok(rows.into_iter().map(Agreement::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_accept_services_only_when_recurring() {
        let c = |t: i64, s: i64| {
            Agreement::from(AtContract {
                id: 1,
                contract_name: Some("C".into()),
                contract_type: Some(t),
                status: Some(s),
            })
        };
        let ok = c(7, 1);
        assert!(ok.active && ok.accepts_services);
        assert_eq!((ok.kind.as_str(), ok.status.as_str()), ("7", "Active"));
        let other = c(1, 0);
        assert!(!other.active && !other.accepts_services);
        assert_eq!(other.status, "Inactive (status 0)");
    }
}
