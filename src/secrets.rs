//! Secret resolution. In file mode a `SecretRef {name, key}` is the file
//! `<secrets-dir>/<namespace>/<name>/<key>` (the layout of a mounted Kubernetes Secret), or the
//! environment variable `FERRY_SECRET_<NAME>_<KEY>`. Values are wrapped so they cannot be
//! printed by accident; the state keeps only a keyed hash of each value to detect changes.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::SecretRef;
use crate::{Error, Result};

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps bytes read from a secret source.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    /// The raw bytes, for the one place that must use them (a login, a signature).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as UTF-8 text, without one trailing newline (as `echo` writes files).
    pub fn expose_str(&self) -> Result<&str> {
        let s = std::str::from_utf8(&self.0)
            .map_err(|_| Error::Secret("secret value is not UTF-8 text".into()))?;
        Ok(s.strip_suffix('\n')
            .map(|s| s.strip_suffix('\r').unwrap_or(s))
            .unwrap_or(s))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        // Best effort: do not leave the value lying around in freed memory.
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// Reads secrets in file mode.
#[derive(Clone, Debug)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    /// Secrets under `dir` (`--secrets-dir`, env `FERRY_SECRETS_DIR`, default `.ferry/secrets`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSecrets { dir: dir.into() }
    }

    /// The secrets directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The environment variable that overrides a reference.
    pub fn env_name(r: &SecretRef) -> String {
        let norm = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '-' | '.' => '_',
                    c => c.to_ascii_uppercase(),
                })
                .collect::<String>()
        };
        format!("FERRY_SECRET_{}_{}", norm(&r.name), norm(&r.key))
    }

    /// The file a reference resolves to.
    pub fn path(&self, namespace: &str, r: &SecretRef) -> PathBuf {
        self.dir.join(namespace).join(&r.name).join(&r.key)
    }

    /// Resolves a reference: `Ok(None)` when neither the variable nor the file exists.
    pub fn get(&self, namespace: &str, r: &SecretRef) -> Result<Option<SecretValue>> {
        if let Some(v) = std::env::var_os(Self::env_name(r)) {
            return Ok(Some(SecretValue::new(v.into_encoded_bytes())));
        }
        let path = self.path(namespace, r);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(SecretValue::new(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Secret(format!(
                "secret {}/{} ({}): {e}",
                r.name,
                r.key,
                path.display()
            ))),
        }
    }

    /// Like [`get`](Self::get), but a missing secret is an error that says where it was looked for.
    pub fn require(&self, namespace: &str, r: &SecretRef) -> Result<SecretValue> {
        self.get(namespace, r)?.ok_or_else(|| {
            Error::Secret(format!(
                "secret {}/{} not found: create {} or set {}",
                r.name,
                r.key,
                self.path(namespace, r).display(),
                Self::env_name(r)
            ))
        })
    }

    /// Writes a secret file (owner-only permissions), e.g. a generated key.
    pub fn put(&self, namespace: &str, r: &SecretRef, value: &[u8]) -> Result<PathBuf> {
        let path = self.path(namespace, r);
        let dir = path.parent().expect("secret paths have a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::fsutil::write_atomic(&path, value, 0o600)?;
        Ok(path)
    }
}

/// A keyed hash of a secret value: detects changes without storing anything reversible.
pub fn digest(hash_key: &[u8], value: &SecretValue) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(hash_key).expect("HMAC takes keys of any size");
    mac.update(value.expose());
    hex::encode(&mac.finalize().into_bytes()[..16])
}
