//! (being written) email delivery.

use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::EmailTarget;
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// A `email` target.
pub struct EmailTransport {
    name: String,
}

impl EmailTransport {
    /// Resolves the target's secrets.
    pub fn new(
        _namespace: &str,
        name: &str,
        _target: &EmailTarget,
        _secrets: &FileSecrets,
    ) -> Result<Self> {
        Ok(EmailTransport {
            name: name.to_string(),
        })
    }
}

impl Transport for EmailTransport {
    fn deliver<'a>(&'a self, _file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            Err(Error::Delivery {
                target: self.name.clone(),
                message: "email delivery is being written".into(),
            })
        })
    }
}
