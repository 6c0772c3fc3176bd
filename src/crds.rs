//! CustomResourceDefinitions of the three kinds, as `ferry crds` prints them and `crds/` holds,
//! and a Markdown field reference generated from the same schemas (so docs cannot drift).

use serde_json::Value;

use crate::api::Kind;

/// Kinds in the order CRDs are printed (alphabetical, like `kubectl get crds`).
const ORDER: [Kind; 3] = [
    Kind::CustomerMapping,
    Kind::DeliveryTarget,
    Kind::ReportSchedule,
];

/// All CRDs as one multi-document YAML stream, in a stable order.
pub fn all_crds_yaml() -> String {
    let mut out = String::new();
    for kind in ORDER {
        let crd = kind.crd();
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&crd).expect("CustomResourceDefinitions serialize to YAML"),
        );
    }
    out
}

/// A Markdown reference of every field of every kind: path, type, default and description.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Resource reference (ferry.dev/v1alpha1)\n\n\
         Generated from the CRD schemas by `ferry crds --reference`; `kubectl explain` shows the \
         same descriptions in a cluster. Do not edit by hand.\n",
    );
    for kind in [
        Kind::ReportSchedule,
        Kind::DeliveryTarget,
        Kind::CustomerMapping,
    ] {
        let crd = serde_json::to_value(kind.crd()).expect("CRDs serialize to JSON");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        out.push_str(&format!("\n## {kind}\n\n"));
        if let Some(d) = schema["description"].as_str() {
            out.push_str(&format!("{d}\n\n"));
        }
        for section in ["spec", "status"] {
            out.push_str(&format!(
                "### {section}\n\n| Field | Type | Default | Description |\n|---|---|---|---|\n"
            ));
            walk(&schema["properties"][section], section, &mut out);
            out.push('\n');
        }
    }
    out
}

fn walk(schema: &Value, path: &str, out: &mut String) {
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in props {
        let child = format!("{path}.{name}");
        let mut ty = type_name(field);
        if required.contains(&name.as_str()) {
            ty.push_str(", required");
        }
        let default = match &field["default"] {
            Value::Null => String::new(),
            v => format!("`{v}`"),
        };
        let description = field["description"]
            .as_str()
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        out.push_str(&format!(
            "| `{child}` | {ty} | {default} | {description} |\n"
        ));
        walk(field, &child, out);
        if field["type"] == "array" {
            walk(&field["items"], &format!("{child}[]"), out);
        }
    }
}

fn type_name(field: &Value) -> String {
    let base = field["type"].as_str().unwrap_or("object");
    match base {
        "array" => format!("[]{}", field["items"]["type"].as_str().unwrap_or("object")),
        "string" => match field["enum"].as_array() {
            Some(values) => values
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" \\| "),
            None => "string".into(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked_in(path: &str) -> String {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    #[test]
    fn the_checked_in_crds_match_the_types() {
        let expected = all_crds_yaml();
        for path in [
            "crds/ferry.dev_crds.yaml",
            "charts/ferry/crds/ferry.dev_crds.yaml",
        ] {
            assert!(
                checked_in(path) == expected,
                "{path} is stale: run `cargo run -- crds > {path}`"
            );
        }
    }

    #[test]
    fn the_checked_in_reference_matches_the_types() {
        assert!(
            checked_in("docs/resources.md") == reference_markdown(),
            "docs/resources.md is stale: run `cargo run -- crds --reference > docs/resources.md`"
        );
    }

    #[test]
    fn the_reference_documents_nested_fields_with_their_descriptions() {
        let md = reference_markdown();
        assert!(md.contains("| `spec.schedule.monthly.day` | integer, required |"));
        assert!(md.contains("| `spec.sftp.hostKeys` | []string, required |"));
        assert!(md.contains("`spec.timeZone` | string | `\"UTC\"` | IANA time zone"));
    }
}
