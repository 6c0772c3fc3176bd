//! (being written) ftp delivery.

use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::FtpTarget;
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// A `ftp` target.
pub struct FtpTransport {
    name: String,
}

impl FtpTransport {
    /// Resolves the target's secrets.
    pub fn new(
        _namespace: &str,
        name: &str,
        _target: &FtpTarget,
        _secrets: &FileSecrets,
    ) -> Result<Self> {
        Ok(FtpTransport {
            name: name.to_string(),
        })
    }
}

impl Transport for FtpTransport {
    fn deliver<'a>(&'a self, _file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            Err(Error::Delivery {
                target: self.name.clone(),
                message: "ftp delivery is being written".into(),
            })
        })
    }
}
