//! The desired state: files loaded and validated (or cluster objects taken as they are), then
//! each resource with its secrets reduced to keyed digests, ready for the plan. Loading
//! touches no state, so bad input is refused before a state is opened, locked or created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::api::SecretRef;
use crate::diagnostic::Diagnostic;
use crate::load::{self, LoadedResource};
use crate::plan::DesiredResource;
use crate::validate::{self, secret_refs};
use crate::{Error, Result};

/// Resources that loaded and validated, and the problems that did not stop them (a symlink
/// loop skipped), for the caller to show.
#[derive(Debug)]
pub struct Valid {
    /// The resources.
    pub resources: Vec<LoadedResource>,
    /// Located warnings.
    pub warnings: Vec<Diagnostic>,
}

/// Loads and validates `files`; any problem is an [`Error::Invalid`] listing all of them,
/// sorted by place. Input without any resource is an [`Error::NoResources`] unless
/// `allow_empty`: applied, it would delete every resource in the state.
pub fn load_files(files: &[PathBuf], allow_empty: bool) -> Result<Valid> {
    let loaded = load::load_paths(files);
    let mut diags = loaded.diagnostics;
    diags.extend(validate::validate(&loaded.resources));
    if !diags.is_empty() {
        diags.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        return Err(Error::Invalid(diags));
    }
    if loaded.resources.is_empty() && !allow_empty {
        return Err(Error::NoResources(
            files
                .iter()
                .map(|f| {
                    Diagnostic::path(
                        if f.as_os_str() == "-" {
                            Path::new("<stdin>")
                        } else {
                            f
                        },
                        "no resources here (an empty directory or file, or only comments). \
                         Applied, this input would delete every resource in the state: \
                         nothing was done; pass --allow-empty if that is what you want",
                    )
                })
                .collect(),
        ));
    }
    Ok(Valid {
        resources: loaded.resources,
        warnings: loaded.warnings,
    })
}

/// The problems of each resource among `resources`, validated together (references cross
/// resources): what the controller reports per object.
pub fn problems_by_resource(
    resources: &[LoadedResource],
) -> BTreeMap<crate::api::ResourceKey, Vec<Diagnostic>> {
    let mut by_key: BTreeMap<crate::api::ResourceKey, Vec<Diagnostic>> = BTreeMap::new();
    let labels: BTreeMap<String, &crate::api::ResourceKey> = resources
        .iter()
        .map(|r| (format!("{}/{}", r.key.kind, r.key.name), &r.key))
        .collect();
    for d in validate::validate(resources) {
        // A diagnostic names its resource (`Kind/name`) and comes from its origin: both are
        // needed to tell apart two objects of one name in different namespaces.
        let owner = resources.iter().find(|r| {
            r.origin.file.as_path() == d.file.as_path()
                && d.resource.as_deref() == Some(&format!("{}/{}", r.key.kind, r.key.name))
        });
        let key = match owner {
            Some(r) => r.key.clone(),
            None => match d.resource.as_deref().and_then(|l| labels.get(l)) {
                Some(k) => (*k).clone(),
                None => continue,
            },
        };
        by_key.entry(key).or_default().push(d);
    }
    by_key
}

/// Computes the secret digests of `desired` again with `digest`: for a saved plan made where
/// no state (so no digest key) existed yet, applied to the state created for it.
pub fn redigest(
    desired: &mut [DesiredResource],
    mut digest: impl FnMut(&str, &SecretRef) -> crate::Result<Option<String>>,
) -> crate::Result<()> {
    for d in desired {
        let mut digests = BTreeMap::new();
        for (path, sref) in secret_refs(d.spec_json(), "spec") {
            digests.insert(path, digest(&d.key.namespace, &sref)?);
        }
        d.secret_digests = digests;
    }
    Ok(())
}

/// Builds the desired state. `digest` resolves a secret reference to the keyed hash of its
/// value (`None` when it does not exist); missing secrets become warnings, not errors, so a
/// plan can be reviewed where the secrets are not available (e.g. in pull-request CI).
pub fn desired_state(
    loaded: &[LoadedResource],
    mut digest: impl FnMut(&str, &SecretRef) -> crate::Result<Option<String>>,
) -> crate::Result<(Vec<DesiredResource>, Vec<String>)> {
    let mut desired = Vec::with_capacity(loaded.len());
    let mut warnings = Vec::new();
    let mut cache: std::collections::HashMap<(String, SecretRef), Option<String>> =
        std::collections::HashMap::new();
    for r in loaded {
        let mut secret_digests = BTreeMap::new();
        for (path, sref) in secret_refs(r.spec_json(), "spec") {
            // Many resources share a secret: resolve each one once.
            let cache_key = (r.key.namespace.clone(), sref.clone());
            let d = match cache.get(&cache_key) {
                Some(d) => d.clone(),
                None => {
                    let d = digest(&r.key.namespace, &sref)?;
                    cache.insert(cache_key, d.clone());
                    d
                }
            };
            if d.is_none() {
                let (line, col) = r.origin.locate(&path);
                warnings.push(format!(
                    "{}:{line}:{col}: {}/{}: {path}: secret {}/{} not found; runs will fail until it exists",
                    r.origin.file.display(),
                    r.key.kind,
                    r.key.name,
                    sref.name,
                    sref.key
                ));
            }
            secret_digests.insert(path, d);
        }
        desired.push(DesiredResource::new(
            r.key.clone(),
            r.meta.clone(),
            r.spec.clone(),
            secret_digests,
            Some(r.origin.short()),
            // As text: the files' JSON trees go with the loaded files, before the state is
            // read (see `LazyJson`).
            Some(crate::state::LazyJson::text_of(r.spec_json())),
        ));
    }
    Ok((desired, warnings))
}
