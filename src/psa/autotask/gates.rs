//! Autotask's thread limit: at most [`MAX_CONCURRENT_PER_ENDPOINT`] requests per endpoint on
//! the wire at once, the endpoint of a path being its entity ([`endpoint_of`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Autotask's thread limit: concurrent requests per integration per endpoint.
pub const MAX_CONCURRENT_PER_ENDPOINT: usize = 3;

/// The endpoint (thread-limit key) of a path under `v1.0/`; see the module documentation.
pub fn endpoint_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let key = match segments.as_slice() {
        [parent, id, child, ..] if id.bytes().all(|b| b.is_ascii_digit()) => {
            let singular = parent.strip_suffix('s').unwrap_or(parent);
            format!("{singular}{child}")
        }
        [first, ..] => first.to_string(),
        [] => String::new(),
    };
    key.to_ascii_lowercase()
}

/// One semaphore per endpoint (lower-cased entity name).
#[derive(Default)]
pub(super) struct Gates(Mutex<HashMap<String, Arc<Semaphore>>>);

impl Gates {
    /// The semaphore of an endpoint.
    pub(super) fn gate(&self, endpoint: &str) -> Arc<Semaphore> {
        let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(endpoint.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(MAX_CONCURRENT_PER_ENDPOINT)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_entities_and_child_collections_are_their_own_entity() {
        assert_eq!(endpoint_of("Companies/query"), "companies");
        assert_eq!(endpoint_of("Companies/query/next?paging=1"), "companies");
        assert_eq!(endpoint_of("Companies/12"), "companies");
        assert_eq!(endpoint_of("Tickets/entityInformation/fields"), "tickets");
        assert_eq!(endpoint_of("Tickets"), "tickets");
        assert_eq!(endpoint_of("Contracts/7/Services"), "contractservices");
        assert_eq!(
            endpoint_of("Contracts/7/ServiceAdjustments"),
            "contractserviceadjustments"
        );
        assert_eq!(
            endpoint_of("ContractServiceUnits/query"),
            "contractserviceunits"
        );
    }
}
