//! The ConnectWise agreement writes: `POST` and `PATCH finance/agreements/{id}/additions`
//! (only on an active agreement, with a catalog product and a known `billCustomer`).

use serde_json::{Map, Value};

use super::super::api::SimResponse;
use super::data::{Addition, BILL_CUSTOMER};
use super::dates::normalize_date;
use super::fields::{Res, canonical};
use super::responses::{FieldError, invalid};
use super::state::Inner;

impl Inner {
    pub(super) fn create_addition(
        &mut self,
        agreement_id: i64,
        body: &Map<String, Value>,
    ) -> SimResponse {
        let mut errors = Vec::new();
        let agreement = &self.data.agreements[self.agreement_ix[&agreement_id]];
        if agreement.status != "Active" {
            errors.push(FieldError::invalid(
                "agreement",
                format!(
                    "agreement {agreement_id} is {}; additions can only be added to an Active agreement",
                    agreement.status
                ),
            ));
        } else if agreement.cancelled {
            errors.push(FieldError::invalid(
                "agreement",
                format!(
                    "agreement {agreement_id} is cancelled (status Active, cancelledFlag true)"
                ),
            ));
        }
        let product = match body.get("product") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("product"));
                None
            }
            Some(Value::Object(p)) => {
                let found = match (p.get("id"), p.get("identifier")) {
                    (Some(id), _) if !id.is_null() => {
                        match id.as_i64() {
                            Some(id) => self.product_ix.get(&id).copied().ok_or_else(|| {
                                format!("product id {id} was not found in the catalog")
                            }),
                            None => Err("product/id must be a number".to_string()),
                        }
                    }
                    (_, Some(Value::String(ident))) if !ident.trim().is_empty() => self
                        .product_by_ident
                        .get(&ident.to_lowercase())
                        .copied()
                        .ok_or_else(|| format!("product \"{ident}\" was not found in the catalog")),
                    _ => Err("product needs an id or an identifier".to_string()),
                };
                match found {
                    Ok(i) => Some(i),
                    Err(message) => {
                        errors.push(FieldError::new("NotFound", "product", message));
                        None
                    }
                }
            }
            Some(_) => {
                errors.push(FieldError::invalid(
                    "product",
                    "product must be an object with an id or an identifier",
                ));
                None
            }
        };
        let bill_customer = match body.get("billCustomer") {
            None | Some(Value::Null) => {
                errors.push(FieldError::missing("billCustomer"));
                None
            }
            Some(v) => match v.as_str().and_then(|s| canonical(s, &BILL_CUSTOMER)) {
                Some(b) => Some(b.to_string()),
                None => {
                    errors.push(FieldError::invalid(
                        "billCustomer",
                        format!(
                            "billCustomer {v} is not one of {}",
                            BILL_CUSTOMER.join(", ")
                        ),
                    ));
                    None
                }
            },
        };
        let mut number = |key: &str| -> Option<f64> {
            match body.get(key) {
                None | Some(Value::Null) => None,
                Some(v) => v.as_f64().or_else(|| {
                    errors.push(FieldError::invalid(key, format!("{key} must be a number")));
                    None
                }),
            }
        };
        let quantity = number("quantity");
        let unit_price = number("unitPrice");
        let mut date = |key: &str| -> Option<String> { opt_date(body.get(key), key, &mut errors) };
        let effective_date = date("effectiveDate");
        let cancelled_date = date("cancelledDate");
        let description = match body.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(FieldError::invalid(
                    "description",
                    "description must be a string",
                ));
                None
            }
        };
        if !errors.is_empty() {
            return invalid(Res::Addition(agreement_id).name(), &errors);
        }
        let (Some(product), Some(bill_customer)) = (product, bill_customer) else {
            return invalid(Res::Addition(agreement_id).name(), &errors);
        };
        let product = &self.data.products[product];
        let id = self.next_addition;
        self.next_addition += 1;
        let addition = Addition {
            id,
            agreement_id,
            product_identifier: product.identifier.clone(),
            quantity: quantity.unwrap_or(1.0),
            unit_price,
            effective_date,
            cancelled_date,
            bill_customer,
            description: description.unwrap_or_else(|| product.description.clone()),
        };
        let json = self.addition_json(&addition);
        self.addition_ix.insert(id, self.data.additions.len());
        (self.additions_by_agreement.entry(agreement_id).or_default())
            .push(self.data.additions.len());
        self.data.additions.push(addition);
        self.views.additions.push(json.clone());
        SimResponse::json(201, &json)
    }

    pub(super) fn patch_addition(&mut self, index: usize, ops: &[(String, Value)]) -> SimResponse {
        let mut a = self.data.additions[index].clone();
        let mut errors = Vec::new();
        for (path, value) in ops {
            match path.to_ascii_lowercase().as_str() {
                "quantity" | "unitprice" => match value.as_f64() {
                    Some(n) if path.eq_ignore_ascii_case("quantity") => a.quantity = n,
                    Some(n) => a.unit_price = Some(n),
                    None => errors.push(FieldError::invalid(path, format!("{path} must be a number"))),
                },
                "description" => match value.as_str() {
                    Some(s) => a.description = s.to_string(),
                    None => errors.push(FieldError::invalid(path, "description must be a string")),
                },
                "effectivedate" => {
                    let before = errors.len();
                    let d = opt_date(Some(value), "effectiveDate", &mut errors);
                    if errors.len() == before {
                        a.effective_date = d;
                    }
                }
                "cancelleddate" => {
                    let before = errors.len();
                    let d = opt_date(Some(value), "cancelledDate", &mut errors);
                    if errors.len() == before {
                        a.cancelled_date = d;
                    }
                }
                "billcustomer" => match value.as_str().and_then(|s| canonical(s, &BILL_CUSTOMER)) {
                    Some(b) => a.bill_customer = b.to_string(),
                    None => errors.push(FieldError::invalid(
                        "billCustomer",
                        format!("billCustomer {value} is not one of {}", BILL_CUSTOMER.join(", ")),
                    )),
                },
                _ => errors.push(FieldError::invalid(
                    path,
                    format!(
                        "{path} cannot be patched (quantity, unitPrice, description, effectiveDate, cancelledDate, billCustomer)"
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return invalid("agreementAddition", &errors);
        }
        let json = self.addition_json(&a);
        self.data.additions[index] = a;
        self.views.additions[index] = json.clone();
        SimResponse::json(200, &json)
    }
}

/// An optional date field of a request body, stored as `YYYY-MM-DD`.
fn opt_date(v: Option<&Value>, key: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => normalize_date(s).or_else(|| {
            errors.push(FieldError::invalid(
                key,
                format!("{key} \"{s}\" is not a date (2026-01-01T00:00:00Z)"),
            ));
            None
        }),
        Some(other) => {
            errors.push(FieldError::invalid(
                key,
                format!("{key} must be a date string, not {other}"),
            ));
            None
        }
    }
}
