//! The Autotask simulator (being written).

use serde::Deserialize;
use serde_json::Value;

use super::{Api, Faults, SimRequest, SimResponse};

/// The simulator's data file.
#[derive(Debug, Deserialize)]
pub struct Data {}

/// The simulated API.
pub struct Autotask;

impl Autotask {
    /// Builds the simulator from its data.
    pub fn new(_data: Data) -> Result<Self, String> {
        Ok(Autotask)
    }
}

impl Api for Autotask {
    fn handle(&self, _req: &SimRequest, _faults: &Faults, _base_url: &str) -> SimResponse {
        self.error(500, "not implemented")
    }
    fn error(&self, status: u16, message: &str) -> SimResponse {
        SimResponse::json(status, &serde_json::json!({"message": message}))
    }
    fn state(&self) -> Value {
        Value::Null
    }
}
