//! (being written) sftp delivery.

use super::{BoxFuture, Outgoing, Receipt, Transport};
use crate::api::SftpTarget;
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// A `sftp` target.
pub struct SftpTransport {
    name: String,
}

impl SftpTransport {
    /// Resolves the target's secrets.
    pub fn new(
        _namespace: &str,
        name: &str,
        _target: &SftpTarget,
        _secrets: &FileSecrets,
    ) -> Result<Self> {
        Ok(SftpTransport {
            name: name.to_string(),
        })
    }
}

impl Transport for SftpTransport {
    fn deliver<'a>(&'a self, _file: &'a Outgoing<'a>) -> BoxFuture<'a, Result<Receipt>> {
        Box::pin(async move {
            Err(Error::Delivery {
                target: self.name.clone(),
                message: "sftp delivery is being written".into(),
            })
        })
    }
}
