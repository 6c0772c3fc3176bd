//! Resolving a mapping in its PSA: the company (exists, unique, active), then per product the
//! agreement/contract (exists, unique, active, takes services) and, on Autotask, the catalog
//! service (looked up once per sync cycle for all mappings).

use std::collections::HashMap;

use serde::Serialize;
use tokio::sync::Mutex;

use crate::Result;
use crate::api::CustomerMappingSpec;
use crate::psa::client::PsaClient;
use crate::psa::model::{Agreement, Company, Service};
use crate::psa::product::Product;

/// A product's agreement/contract and item, resolved in the PSA.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedProduct {
    /// Our product key.
    pub product: String,
    /// The agreement (ConnectWise) or contract (Autotask).
    pub agreement: Agreement,
    /// ConnectWise product identifier, or Autotask service name.
    pub item: String,
    /// Autotask: the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
}

/// A mapping resolved in its PSA.
#[derive(Clone, Debug, Serialize)]
pub struct Resolution {
    /// The verified company.
    pub company: Company,
    /// The products that resolved.
    pub products: Vec<ResolvedProduct>,
    /// Why the others did not.
    pub problems: Vec<String>,
}

/// Picks the mapping's company among the PSA's matches: exactly one, and active.
pub fn choose_company(
    product: Product,
    key: &str,
    candidates: &[Company],
) -> Result<Company, String> {
    let list = |cs: &[Company]| {
        cs.iter()
            .map(|c| format!("#{} \"{}\" ({})", c.id, c.name, c.status))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match candidates {
        [] => Err(format!("company `{key}` not found in {product}")),
        [one] if !one.active => Err(format!(
            "company `{key}` (#{}) is not active in {product}: status {}",
            one.id, one.status
        )),
        [one] => Ok(one.clone()),
        many => Err(format!(
            "company `{key}` is ambiguous in {product}: {} companies match: {}",
            many.len(),
            list(many)
        )),
    }
}

/// Picks the agreement/contract named `name`: exactly one active one that accepts services.
pub fn choose_agreement(
    product: Product,
    name: &str,
    company: &Company,
    agreements: &[Agreement],
) -> Result<Agreement, String> {
    let what = product.agreement_word();
    let named: Vec<&Agreement> = agreements.iter().filter(|a| a.name == name).collect();
    let active: Vec<&Agreement> = named.iter().copied().filter(|a| a.active).collect();
    match (named.as_slice(), active.as_slice()) {
        ([], _) => {
            let mut names: Vec<&str> = agreements.iter().map(|a| a.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Err(format!(
                "no {what} named `{name}` for company #{} ({}); its {what}s: {}",
                company.id,
                company.name,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
        (all, []) => Err(format!(
            "{what} `{name}` (#{}) is not active: status {}",
            all[0].id, all[0].status
        )),
        (_, [one]) if !one.accepts_services => Err(format!(
            "{what} `{name}` (#{}) has contract type {}, not Recurring Service (7): services \
             and units cannot be attached to it",
            one.id, one.kind
        )),
        (_, [one]) => Ok((*one).clone()),
        (_, many) => Err(format!(
            "{what} `{name}` is ambiguous: {} active {what}s have that name ({})",
            many.len(),
            many.iter()
                .map(|a| format!("#{}", a.id))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Resolves the mapping: its company (an error when missing, ambiguous or inactive), then each
/// product (problems collected, the other products still resolve).
pub async fn resolve(
    client: &PsaClient,
    spec: &CustomerMappingSpec,
) -> Result<std::result::Result<Resolution, String>> {
    resolve_with(client, spec, &ServiceCache::default()).await
}

/// Autotask services by name, shared by the mappings of one sync cycle (the catalog is the
/// same for all of them: one lookup per service, not one per mapping).
pub type ServiceCache = Mutex<HashMap<String, std::result::Result<Service, String>>>;

/// [`resolve`], with services looked up through `services`.
pub async fn resolve_with(
    client: &PsaClient,
    spec: &CustomerMappingSpec,
    services: &ServiceCache,
) -> Result<std::result::Result<Resolution, String>> {
    let key = client.company_key(&spec.company)?;
    let candidates = client.companies(&spec.company).await?;
    let company = match choose_company(client.product(), key, &candidates) {
        Ok(c) => c,
        Err(problem) => return Ok(Err(problem)),
    };
    let agreements = client.agreements(company.id).await?;
    let mut products = Vec::new();
    let mut problems = Vec::new();
    for c in &spec.contracts {
        let agreement =
            match choose_agreement(client.product(), &c.agreement, &company, &agreements) {
                Ok(a) => a,
                Err(p) => {
                    problems.push(format!("{}: {p}", c.product));
                    continue;
                }
            };
        let service = match client {
            PsaClient::ConnectWise(_) => None,
            PsaClient::Autotask(at) => {
                let cached = services.lock().await.get(&c.item).cloned();
                let chosen = match cached {
                    Some(c) => c,
                    None => {
                        let found = at.services_by_name(&c.item).await?;
                        let chosen = match found.as_slice() {
                            [] => Err(format!("service `{}` not found in Autotask", c.item)),
                            [one] => Ok(one.clone()),
                            many => Err(format!(
                                "service `{}` is ambiguous: {} services have that name",
                                c.item,
                                many.len()
                            )),
                        };
                        services.lock().await.insert(c.item.clone(), chosen.clone());
                        chosen
                    }
                };
                match chosen {
                    Ok(s) => Some(s),
                    Err(p) => {
                        problems.push(format!("{}: {p}", c.product));
                        continue;
                    }
                }
            }
        };
        products.push(ResolvedProduct {
            product: c.product.clone(),
            agreement,
            item: c.item.clone(),
            service,
        });
    }
    Ok(Ok(Resolution {
        company,
        products,
        problems,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company(id: i64, name: &str, active: bool) -> Company {
        Company {
            id,
            identifier: Some(format!("ID{id}")),
            name: name.into(),
            active,
            status: if active { "Active" } else { "Inactive" }.into(),
        }
    }

    fn agreement(id: i64, name: &str, active: bool, services: bool) -> Agreement {
        Agreement {
            id,
            name: name.into(),
            active,
            status: if active { "Active" } else { "Cancelled" }.into(),
            kind: if services { "7" } else { "1" }.into(),
            accepts_services: services,
        }
    }

    #[test]
    fn a_missing_company_is_named_and_an_ambiguous_one_lists_its_candidates() {
        assert_eq!(
            choose_company(Product::Autotask, "Acme", &[]).unwrap_err(),
            "company `Acme` not found in Autotask"
        );
        let err = choose_company(
            Product::Autotask,
            "Acme",
            &[company(1, "Acme", true), company(2, "Acme", true)],
        )
        .unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("#1 \"Acme\" (Active)") && err.contains("#2"),
            "{err}"
        );
    }

    #[test]
    fn an_inactive_company_is_refused_with_its_status() {
        let err = choose_company(
            Product::ConnectWise,
            "ACME01",
            &[company(250, "Acme", false)],
        )
        .unwrap_err();
        assert!(err.contains("#250") && err.contains("Inactive"), "{err}");
    }

    #[test]
    fn an_agreement_must_exist_be_active_unique_and_accept_services() {
        let c = company(250, "Acme", true);
        let list = [
            agreement(1, "Managed", true, true),
            agreement(2, "Old", false, true),
            agreement(3, "Hourly", true, false),
            agreement(4, "Twice", true, true),
            agreement(5, "Twice", true, true),
        ];
        assert_eq!(
            choose_agreement(Product::Autotask, "Managed", &c, &list)
                .unwrap()
                .id,
            1
        );
        let missing = choose_agreement(Product::ConnectWise, "Nope", &c, &list).unwrap_err();
        assert!(missing.contains("no agreement named `Nope`"), "{missing}");
        assert!(missing.contains("Managed"), "candidates listed: {missing}");
        let inactive = choose_agreement(Product::ConnectWise, "Old", &c, &list).unwrap_err();
        assert!(
            inactive.contains("not active: status Cancelled"),
            "{inactive}"
        );
        let wrong = choose_agreement(Product::Autotask, "Hourly", &c, &list).unwrap_err();
        assert!(wrong.contains("not Recurring Service (7)"), "{wrong}");
        let twice = choose_agreement(Product::Autotask, "Twice", &c, &list).unwrap_err();
        assert!(
            twice.contains("ambiguous") && twice.contains("#4, #5"),
            "{twice}"
        );
    }

    #[test]
    fn an_inactive_duplicate_does_not_hide_the_active_agreement() {
        let c = company(250, "Acme", true);
        let list = [
            agreement(1, "Managed", false, true),
            agreement(2, "Managed", true, true),
        ];
        assert_eq!(
            choose_agreement(Product::ConnectWise, "Managed", &c, &list)
                .unwrap()
                .id,
            2
        );
    }
}
