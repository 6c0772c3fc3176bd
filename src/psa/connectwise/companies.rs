//! Companies (active by their status's `inactiveFlag`, read once, and not deleted) and their
//! agreements.

use reqwest::Method;
use serde::Deserialize;

use super::client::ConnectWise;
use super::wire::{CompanyStatus, Conditions, Ref};
use crate::Result;
use crate::psa::http::Replay;
use crate::psa::model::{Agreement, Company};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwCompany {
    id: i64,
    identifier: Option<String>,
    name: Option<String>,
    status: Option<Ref>,
    deleted_flag: Option<bool>,
}

impl CwCompany {
    /// Active when not deleted and its status's `inactiveFlag` is false; a status missing
    /// from the tenant's list counts as inactive (and the status text says so); a company
    /// without a status counts as active. The status text gains ` (deleted)` when
    /// `deletedFlag` is set.
    fn into_company(self, statuses: &[CompanyStatus]) -> Company {
        let c = self;
        let deleted = c.deleted_flag.unwrap_or(false);
        let status_id = c.status.as_ref().and_then(|s| s.id);
        let mut status_name = c.status.and_then(|s| s.name);
        let inactive = match status_id {
            None => false,
            Some(id) => match statuses.iter().find(|s| s.id == id) {
                Some(s) => s.inactive_flag,
                None => {
                    status_name = Some(format!(
                        "{} (unknown status #{id})",
                        status_name.unwrap_or_default()
                    ));
                    true
                }
            },
        };
        let active = !deleted && !inactive;
        let mut status = status_name.unwrap_or_default();
        if deleted {
            status = if status.is_empty() {
                "deleted".into()
            } else {
                format!("{status} (deleted)")
            };
        }
        Company {
            id: c.id,
            identifier: c.identifier,
            name: c.name.unwrap_or_default(),
            active,
            status,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CwAgreement {
    id: i64,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Ref>,
    agreement_status: Option<String>,
    cancelled_flag: Option<bool>,
}

impl From<CwAgreement> for Agreement {
    fn from(a: CwAgreement) -> Agreement {
        let cancelled = a.cancelled_flag.unwrap_or(false);
        let status = a.agreement_status.unwrap_or_default();
        let active = status.eq_ignore_ascii_case("Active") && !cancelled;
        let status = match (cancelled, status.as_str()) {
            (true, "") => "Cancelled".to_string(),
            (true, s) if !s.eq_ignore_ascii_case("Cancelled") => format!("{s} (cancelled)"),
            _ => status,
        };
        Agreement {
            id: a.id,
            name: a.name.unwrap_or_default(),
            active,
            status,
            kind: a.kind.and_then(|k| k.name).unwrap_or_default(),
            accepts_services: true,
        }
    }
}

impl ConnectWise {
    /// Companies whose identifier equals `identifier` (all of them, including inactive and
    /// deleted ones: the caller decides).
    pub async fn companies_by_identifier(&self, identifier: &str) -> Result<Vec<Company>> {
        let conditions = Conditions::new().eq_str("identifier", identifier).build();
        let rows: Vec<CwCompany> = self.list("company/companies", &conditions).await?;
        let statuses = self.company_statuses().await?;
        Ok(rows.into_iter().map(|c| c.into_company(statuses)).collect())
    }

    /// The tenant's company statuses, read once.
    pub async fn company_statuses(&self) -> Result<&[CompanyStatus]> {
        self.inner
            .company_statuses
            .get_or_try_init(|| async { self.list("company/companies/statuses", "").await })
            .await
            .map(Vec::as_slice)
    }

    /// The company `id`; `None` when ConnectWise answers 404.
    pub async fn company(&self, id: i64) -> Result<Option<Company>> {
        let path = format!("company/companies/{id}");
        let reply = self.call(Method::GET, &path, None, Replay::Safe).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let row: CwCompany = self.expect(&Method::GET, &path, &reply)?;
        let statuses = self.company_statuses().await?;
        Ok(Some(row.into_company(statuses)))
    }

    /// All agreements of the company, any status.
    pub async fn agreements(&self, company_id: i64) -> Result<Vec<Agreement>> {
        let conditions = Conditions::new().eq_int("company/id", company_id).build();
        let rows: Vec<CwAgreement> = self.list("finance/agreements", &conditions).await?;
        Ok(rows.into_iter().map(Agreement::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companies_are_active_by_their_status_s_inactive_flag_not_its_name() {
        let statuses = [
            CompanyStatus {
                id: 1,
                name: "Active".into(),
                inactive_flag: false,
            },
            CompanyStatus {
                id: 2,
                name: "Active (do not bill)".into(),
                inactive_flag: true,
            },
            CompanyStatus {
                id: 3,
                name: "Kunde".into(),
                inactive_flag: false,
            },
        ];
        let c = |status: Option<(i64, &str)>, deleted: bool| {
            CwCompany {
                id: 1,
                identifier: Some("A".into()),
                name: Some("A".into()),
                status: status.map(|(id, s)| Ref {
                    id: Some(id),
                    identifier: None,
                    name: Some(s.into()),
                }),
                deleted_flag: Some(deleted),
            }
            .into_company(&statuses)
        };
        assert!(c(Some((1, "Active")), false).active);
        assert!(
            c(Some((3, "Kunde")), false).active,
            "any name can be active"
        );
        assert!(!c(Some((2, "Active (do not bill)")), false).active);
        let unknown = c(Some((9, "Gone")), false);
        assert!(!unknown.active);
        assert_eq!(unknown.status, "Gone (unknown status #9)");
        assert!(c(None, false).active);
        let d = c(Some((1, "Active")), true);
        assert!(!d.active);
        assert_eq!(d.status, "Active (deleted)");
    }

    #[test]
    fn agreements_are_active_only_when_active_and_not_cancelled() {
        let a = |status: &str, cancelled: bool| {
            Agreement::from(CwAgreement {
                id: 1,
                name: Some("MSA".into()),
                kind: Some(Ref {
                    id: Some(3),
                    identifier: None,
                    name: Some("Managed Services".into()),
                }),
                agreement_status: Some(status.into()),
                cancelled_flag: Some(cancelled),
            })
        };
        let ok = a("Active", false);
        assert!(ok.active && ok.accepts_services);
        assert_eq!(ok.kind, "Managed Services");
        assert!(!a("Active", true).active);
        assert!(!a("Expired", false).active);
    }
}
