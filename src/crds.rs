//! CustomResourceDefinitions of the three kinds, as `ferry crds` prints them and `crds/` holds.

use crate::api::Kind;

/// All CRDs as one multi-document YAML stream, in a stable order.
pub fn all_crds_yaml() -> String {
    let mut out = String::new();
    for kind in [
        Kind::CustomerMapping,
        Kind::DeliveryTarget,
        Kind::ReportSchedule,
    ] {
        let crd = kind.crd();
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&crd).expect("CustomResourceDefinitions serialize to YAML"),
        );
    }
    out
}
