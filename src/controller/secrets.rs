//! Secrets in cluster mode: the Secrets a namespace's objects refer to are read from the
//! Kubernetes API and mirrored into a private directory (mode 0700, files 0600; mount an
//! `emptyDir: {medium: Memory}` there) in the layout of a mounted Secret,
//! `<dir>/<namespace>/<name>/<key>`. Everything downstream (exports, transports, PSA clients,
//! the secret digests that tell a plan a secret changed) then reads them exactly as in file
//! mode, through [`FileSecrets`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::objects::Namespace;
use crate::secrets::FileSecrets;
use crate::{Error, Result};

/// The mirror directory and its reader.
#[derive(Clone, Debug)]
pub struct SecretMirror {
    dir: PathBuf,
    files: FileSecrets,
}

impl SecretMirror {
    /// A mirror in `dir` (created, owner-only).
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(SecretMirror {
            dir: dir.to_path_buf(),
            files: FileSecrets::new(dir),
        })
    }

    /// The mirrored secrets, read like file-mode secrets.
    pub fn files(&self) -> &FileSecrets {
        &self.files
    }

    /// The Secret names the objects of `objects` refer to.
    pub fn referenced(objects: &Namespace) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for r in &objects.resources {
            for (_, secret) in crate::validate::secret_refs(r.spec_json(), "spec") {
                names.insert(secret.name);
            }
        }
        names
    }

    /// Reads every Secret the objects of `namespace` refer to and mirrors it; a Secret that
    /// does not exist (any more) is removed from the mirror, so it reads as missing.
    pub async fn mirror(
        &self,
        client: &Client,
        namespace: &str,
        objects: &Namespace,
    ) -> Result<()> {
        self.mirror_names(client, namespace, Self::referenced(objects))
            .await
    }

    /// Reads the Secrets `names` of `namespace` and mirrors them (a missing one is removed):
    /// a Job executing one run mirrors only what its schedule and targets refer to.
    pub async fn mirror_names(
        &self,
        client: &Client,
        namespace: &str,
        names: BTreeSet<String>,
    ) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in names {
            let secret = api
                .get_opt(&name)
                .await
                .map_err(|e| Error::Secret(format!("Secret {namespace}/{name}: {e}")))?;
            let dir = self.dir.join(namespace).join(&name);
            match secret {
                None => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Some(secret) => {
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    let mut keys = BTreeSet::new();
                    for (key, value) in secret.data.unwrap_or_default() {
                        write_private(&dir.join(&key), &value.0)?;
                        keys.insert(key);
                    }
                    for (key, value) in secret.string_data.unwrap_or_default() {
                        write_private(&dir.join(&key), value.as_bytes())?;
                        keys.insert(key);
                    }
                    // Keys removed from the Secret disappear from the mirror too.
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        for entry in entries.flatten() {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            if !keys.contains(&name) && !name.starts_with('.') {
                                let _ = std::fs::remove_file(entry.path());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` (0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(path, bytes, 0o600)
}
