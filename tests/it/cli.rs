//! The command line end to end: plan / apply / plan again, saved plans and their refusal,
//! secrets that never leak, `next`, `crds`, kubectl-style conventions and the state lock.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A DeliveryTarget and a daily ReportSchedule at `at`, as `files/resources.yaml`.
fn write_schedule(sb: &Sandbox, at: &str) -> PathBuf {
    sb.write(
        "resources.yaml",
        &stream(&[
            local_dir("out"),
            report_schedule("daily", "out").set("schedule", &format!("daily:\n  at: \"{at}\"\n")),
        ]),
    )
}

/// The changes of a JSON plan that do something.
fn actions(plan: &Value) -> Vec<&Value> {
    plan["changes"]
        .as_array()
        .expect("changes is a list")
        .iter()
        .filter(|c| c["action"] != "no-op")
        .collect()
}

/// The `create`/`update`/`delete` counts of a JSON plan.
fn counts(plan: &Value) -> (u64, u64, u64) {
    let s = &plan["summary"];
    (
        s["create"].as_u64().expect("create"),
        s["update"].as_u64().expect("update"),
        s["delete"].as_u64().expect("delete"),
    )
}

// ---------------------------------------------------------------------------------------------
// plan, apply, plan again

#[test]
fn plan_then_apply_then_plan_again_reports_no_changes() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");

    let first = sb
        .ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(2);
    assert!(
        first.stdout.contains("+ DeliveryTarget/out"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("+ ReportSchedule/daily"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("Plan: 2 to create, 0 to update, 0 to delete, 0 unchanged."),
        "{}",
        first.stdout
    );

    let apply = sb.apply(&[&files]);
    assert!(
        apply
            .stdout
            .contains("Apply complete: 2 created, 0 updated, 0 deleted (state serial 1)."),
        "{}",
        apply.stdout
    );

    let again = sb
        .ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(0);
    assert!(
        again
            .stdout
            .starts_with("No changes. 2 resource(s) match the state."),
        "{}",
        again.stdout
    );
    let plan = sb.plan_json(&[&files]);
    assert_eq!(counts(&plan), (0, 0, 0));
    assert_eq!(plan["summary"]["unchanged"], json!(2));
    assert!(actions(&plan).is_empty(), "{plan:#}");
    assert_eq!(plan["serial"], json!(1));
}

#[test]
fn every_example_applies_and_then_plans_no_changes() {
    // Every field of every kind survives the round trip through the state unchanged.
    let sb = Sandbox::new();
    let examples = repo().join("examples");
    let first = sb
        .ferry(["plan", "-f", s(&examples), "--detailed-exitcode"])
        .code(2);
    assert!(first.stdout.contains("Plan: "), "{}", first.stdout);
    sb.apply(&[&examples]);
    let again = sb
        .ferry([
            "plan",
            "-f",
            s(&examples),
            "--detailed-exitcode",
            "-o",
            "json",
        ])
        .code(0);
    let plan = again.json();
    assert!(actions(&plan).is_empty(), "{plan:#}");
    assert!(plan["summary"]["unchanged"].as_u64().unwrap() > 20);
}

#[test]
fn editing_one_field_plans_exactly_one_update_of_exactly_that_field() {
    let sb = Sandbox::new();
    sb.apply(&[&write_schedule(&sb, "00:30")]);
    let edited = write_schedule(&sb, "01:30");

    sb.ferry(["plan", "-f", s(&edited), "--detailed-exitcode"])
        .code(2);
    let plan = sb.plan_json(&[&edited]);
    assert_eq!(plan["format_version"], json!("1"));
    assert_eq!(counts(&plan), (0, 1, 0));
    for change in plan["changes"].as_array().unwrap() {
        for key in ["action", "kind", "namespace", "name"] {
            assert!(change[key].is_string(), "change without {key}: {change}");
        }
    }
    let changed = actions(&plan);
    assert_eq!(changed.len(), 1, "{plan:#}");
    let update = changed[0];
    assert_eq!(update["action"], json!("update"));
    assert_eq!(update["kind"], json!("ReportSchedule"));
    assert_eq!(update["namespace"], json!("default"));
    assert_eq!(update["name"], json!("daily"));
    assert_eq!(
        update["fields"],
        json!([{"path": "spec.schedule.daily.at", "before": "00:30", "after": "01:30"}])
    );
    assert_eq!(
        update["next_runs"][0],
        json!({"at": "2026-07-31T01:30:00+09:00", "fileName": "orders_20260731013000.csv"})
    );

    let text = sb.ferry(["plan", "-f", s(&edited)]).success();
    assert!(
        text.stdout
            .contains("~ spec.schedule.daily.at = \"00:30\" -> \"01:30\""),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("Plan: 0 to create, 1 to update, 0 to delete, 1 unchanged."),
        "{}",
        text.stdout
    );
}

#[test]
fn deleting_a_resource_from_the_files_plans_a_delete() {
    let sb = Sandbox::new();
    sb.apply(&[&write_schedule(&sb, "00:30")]);
    let only_target = sb.write("resources.yaml", &local_dir("out").render());

    let plan = sb.plan_json(&[&only_target]);
    assert_eq!(counts(&plan), (0, 0, 1));
    let changed = actions(&plan);
    assert_eq!(changed.len(), 1, "{plan:#}");
    assert_eq!(changed[0]["action"], json!("delete"));
    assert_eq!(changed[0]["kind"], json!("ReportSchedule"));
    assert_eq!(changed[0]["name"], json!("daily"));

    let text = sb.ferry(["plan", "-f", s(&only_target)]).success();
    assert!(
        text.stdout
            .contains("# ReportSchedule/daily will be deleted"),
        "{}",
        text.stdout
    );
    sb.apply(&[&only_target]);
    let left = sb.ferry(["get", "rs", "-o", "json"]).success().json();
    assert_eq!(left, json!([]));
    let targets = sb.ferry(["get", "dt", "-o", "json"]).success().json();
    assert_eq!(targets.as_array().unwrap().len(), 1);
}

#[test]
fn a_markdown_plan_has_a_summary_table_and_collapsible_details() {
    let sb = Sandbox::new();
    sb.apply(&[&write_schedule(&sb, "00:30")]);
    let edited = write_schedule(&sb, "01:30");
    let md = sb
        .ferry(["plan", "-f", s(&edited), "-o", "markdown"])
        .success()
        .stdout;
    assert!(
        md.starts_with("### Ferry plan: 0 to create, 1 to update, 0 to delete, 1 unchanged"),
        "{md}"
    );
    assert!(
        md.contains("| Action | Kind | Namespace | Name | Notes |\n|---|---|---|---|---|\n"),
        "{md}"
    );
    assert!(
        md.contains("| ~ update | ReportSchedule | default | daily |"),
        "{md}"
    );
    assert!(
        md.contains("<details><summary><code>~ ReportSchedule/daily</code></summary>"),
        "{md}"
    );
    assert!(
        md.contains("```diff\n~ spec.schedule.daily.at = \"00:30\" -> \"01:30\"\n```"),
        "{md}"
    );
    assert!(md.contains("</details>"), "{md}");
    assert!(
        !md.contains("DeliveryTarget"),
        "unchanged resources are not listed: {md}"
    );
}

// ---------------------------------------------------------------------------------------------
// saved plans

#[test]
fn a_saved_plan_applies_exactly_what_was_reviewed() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    let plan_file = sb.root().join("reviewed.plan");
    let planned = sb
        .ferry(["plan", "-f", s(&files), "--out", s(&plan_file)])
        .success();
    assert!(
        planned.stdout.contains("Saved the plan to"),
        "{}",
        planned.stdout
    );
    assert!(plan_file.is_file());
    assert_eq!(sb.snapshot().len(), 0, "plan alone applies nothing");

    // The files change after the review; the saved plan still applies what was reviewed.
    write_schedule(&sb, "05:00");
    let applied = sb.ferry(["apply", s(&plan_file)]).success();
    assert!(
        applied
            .stdout
            .contains("Apply complete: 2 created, 0 updated, 0 deleted (state serial 1)."),
        "{}",
        applied.stdout
    );
    let rs = sb.ferry(["get", "rs", "-o", "json"]).success().json();
    assert_eq!(rs[0]["spec"]["schedule"], json!({"daily": {"at": "00:30"}}));
    let reviewed = write_schedule(&sb, "00:30");
    sb.ferry(["plan", "-f", s(&reviewed), "--detailed-exitcode"])
        .code(0);
}

#[test]
fn a_saved_plan_is_refused_after_another_apply() {
    let sb = Sandbox::new();
    sb.apply(&[&write_schedule(&sb, "00:30")]);
    let plan_file = sb.root().join("old.plan");
    let v2 = write_schedule(&sb, "01:30");
    sb.ferry(["plan", "-f", s(&v2), "--out", s(&plan_file)])
        .success();
    // Someone else applies in between.
    sb.apply(&[&write_schedule(&sb, "02:30")]);
    let before = sb.snapshot();
    assert_eq!(before.serial, 2);

    let refused = sb.ferry(["apply", s(&plan_file)]).failure();
    assert!(refused.stderr.contains("stale"), "{}", refused.stderr);
    assert!(refused.stderr.contains("serial 1"), "{}", refused.stderr);
    assert!(refused.stderr.contains("serial 2"), "{}", refused.stderr);
    assert!(
        !refused.stdout.contains("Apply complete"),
        "{}",
        refused.stdout
    );
    assert_eq!(sb.snapshot(), before, "a refused plan changes nothing");
}

#[test]
fn a_plan_saved_against_one_state_is_refused_against_another() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    let plan_file = sb.root().join("a.plan");
    sb.ferry(["plan", "-f", s(&files), "--out", s(&plan_file)])
        .success();

    let other = sb.root().join("other").join("state.db");
    let other_target = sb.write("other.yaml", &local_dir("elsewhere").render());
    sb.run_raw([
        "apply",
        "-f",
        s(&other_target),
        "--auto-approve",
        "--state",
        s(&other),
    ])
    .success();
    let get_other = || {
        sb.run_raw(["get", "dt", "-A", "-o", "json", "--state", s(&other)])
            .success()
            .json()
    };
    let before = get_other();

    let refused = sb
        .run_raw(["apply", s(&plan_file), "--state", s(&other)])
        .failure();
    assert!(refused.stderr.contains("lineage"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another state"),
        "{}",
        refused.stderr
    );
    assert_eq!(get_other(), before, "the other state is unchanged");
    let rs = sb
        .run_raw(["get", "rs", "-A", "-o", "json", "--state", s(&other)])
        .success()
        .json();
    assert_eq!(rs, json!([]));

    // The plan still applies to the state it was made against.
    sb.ferry(["apply", s(&plan_file)]).success();
}

// ---------------------------------------------------------------------------------------------
// secrets

const FILE_SECRET: &str = "s3cret-FILE-value-7Qx9wB";
const ENV_SECRET: &str = "s3cret-ENV-value-K4p2zM";
const SECRET_ENV_VAR: &str = "FERRY_SECRET_PARTNER_FTP_PASSWORD";
const SECRET_FIELD: &str = "spec.ftp.passwordSecretRef (value)";

fn write_ftp(sb: &Sandbox) -> PathBuf {
    sb.write("ftp.yaml", &ftp_with_password("partner-ftp").render())
}

/// The secret field of the one change of a JSON plan.
fn secret_field(plan: &Value) -> Value {
    let changed = actions(plan);
    assert_eq!(changed.len(), 1, "{plan:#}");
    changed[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == SECRET_FIELD)
        .cloned()
        .unwrap_or_else(|| panic!("no {SECRET_FIELD} in {plan:#}"))
}

#[test]
fn a_secret_shows_as_sensitive_and_a_changed_value_plans_an_update() {
    let mut sb = Sandbox::new();
    let files = write_ftp(&sb);
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);

    let text = sb.ferry(["plan", "-f", s(&files)]).success();
    assert!(
        text.stdout
            .contains("+ spec.ftp.passwordSecretRef (value) = \"(sensitive)\""),
        "{}",
        text.stdout
    );
    let create = sb.plan_json(&[&files]);
    assert_eq!(
        secret_field(&create),
        json!({"path": SECRET_FIELD, "after": "(sensitive)", "sensitive": true})
    );
    sb.apply(&[&files]);
    sb.ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(0);

    // A new value in the file: an update that shows only that the value changed.
    sb.write_secret("default", "partner-ftp", "password", "rotated-value-1");
    sb.ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(2);
    let update = sb.plan_json(&[&files]);
    assert_eq!(counts(&update), (0, 1, 0));
    assert_eq!(
        secret_field(&update),
        json!({"path": SECRET_FIELD, "before": "(sensitive)", "after": "(sensitive)", "sensitive": true})
    );
    assert_eq!(actions(&update)[0]["fields"].as_array().unwrap().len(), 1);
    let text = sb.ferry(["plan", "-f", s(&files)]).success();
    assert!(
        text.stdout
            .contains("~ spec.ftp.passwordSecretRef (value) = \"(sensitive)\" -> \"(sensitive)\""),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("rotated-value-1"));

    // The environment variable overrides the file: another update.
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    sb.set_env(SECRET_ENV_VAR, ENV_SECRET);
    let update = sb.plan_json(&[&files]);
    assert_eq!(counts(&update), (0, 1, 0));
    assert_eq!(secret_field(&update)["after"], json!("(sensitive)"));
}

#[test]
fn the_secret_environment_variable_overrides_the_secret_file() {
    let mut sb = Sandbox::new();
    let files = write_ftp(&sb);
    sb.set_env(SECRET_ENV_VAR, ENV_SECRET);
    sb.apply(&[&files]);
    // No file at all: the variable alone is the value (no "missing" warning).
    let plan = sb.plan_json(&[&files]);
    assert!(plan.get("warnings").is_none(), "{plan:#}");
    // A file appears with another value: the variable still wins, nothing changes.
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    sb.ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(0);
    // Without the variable, the file's different value is a change.
    sb.remove_env(SECRET_ENV_VAR);
    sb.ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(2);
}

#[test]
fn secret_variable_names_turn_dashes_and_dots_into_underscores() {
    let mut sb = Sandbox::new();
    let files = sb.write(
        "ftps.yaml",
        &Doc::new("DeliveryTarget", "partner-ftps")
            .set(
                "ftp",
                "host: ftp.partner.example\n\
                 username: partner\n\
                 passwordSecretRef: {name: partner-ftps, key: pass-word}\n\
                 caSecretRef: {name: partner-ftps, key: ca.pem}\n",
            )
            .render(),
    );
    let missing = sb.plan_json(&[&files]);
    assert_eq!(
        missing["warnings"].as_array().unwrap().len(),
        2,
        "{missing:#}"
    );
    sb.set_env("FERRY_SECRET_PARTNER_FTPS_PASS_WORD", ENV_SECRET);
    sb.set_env(
        "FERRY_SECRET_PARTNER_FTPS_CA_PEM",
        "-----BEGIN CERTIFICATE-----",
    );
    let found = sb.plan_json(&[&files]);
    assert!(
        found.get("warnings").is_none(),
        "both variables were read: {found:#}"
    );
}

/// Every byte of every file under `dir`, with the file name, for leak checks.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_secret_value_never_appears_in_output_state_or_saved_plans() {
    let mut sb = Sandbox::new();
    let files = write_ftp(&sb);
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    let state_dir = sb.state.parent().unwrap().to_path_buf();
    let plan_file = sb.root().join("saved.plan");

    let mut seen: Vec<(String, Run)> = Vec::new();
    let check_state = |when: &str| {
        let files = files_under(&state_dir);
        assert!(!files.is_empty(), "the state exists after {when}");
        for (path, bytes) in files {
            for secret in [FILE_SECRET, ENV_SECRET] {
                assert!(
                    !contains_bytes(&bytes, secret.as_bytes()),
                    "{secret} is in {} after {when}",
                    path.display()
                );
            }
        }
    };
    let mut run = |sb: &Sandbox, args: &[&str]| {
        let r = sb.ferry(args);
        seen.push((args.join(" "), r));
    };

    run(&sb, &["validate", "-f", s(&files)]);
    run(&sb, &["validate", "-f", s(&files), "-o", "json"]);
    for output in ["text", "json", "markdown"] {
        run(&sb, &["plan", "-f", s(&files), "-o", output]);
    }
    run(
        &sb,
        &["-vvv", "plan", "-f", s(&files), "--out", s(&plan_file)],
    );
    // A plan writes no state (issue 16): there is nothing to look into yet.
    assert!(
        !state_dir.exists(),
        "a plan created {}",
        state_dir.display()
    );
    run(&sb, &["-vvv", "apply", s(&plan_file)]);
    check_state("apply of a saved plan");
    // Rotate through the environment override, then apply from files.
    sb.set_env(SECRET_ENV_VAR, ENV_SECRET);
    for output in ["text", "json", "markdown"] {
        run(&sb, &["plan", "-f", s(&files), "-o", output]);
    }
    run(&sb, &["-vvv", "apply", "-f", s(&files), "--auto-approve"]);
    check_state("apply -f");
    for kind in ["dt", "deliverytargets"] {
        run(&sb, &["get", kind]);
        run(&sb, &["get", kind, "-o", "json"]);
        run(&sb, &["get", kind, "partner-ftp", "-o", "json"]);
    }
    check_state("get");

    assert!(
        seen.iter().any(|(_, r)| r.stdout.contains("(sensitive)")),
        "the plans do mention the secret field"
    );
    for (args, r) in &seen {
        assert_eq!(r.code, 0, "ferry {args}: {r:#?}");
        for secret in [FILE_SECRET, ENV_SECRET] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "ferry {args} printed {secret}: {r:#?}"
            );
        }
    }
    let saved = std::fs::read(&plan_file).unwrap();
    assert!(
        !contains_bytes(&saved, FILE_SECRET.as_bytes()),
        "the saved plan holds the secret"
    );
    assert!(
        contains_bytes(&saved, b"partner-ftp"),
        "the saved plan is the real one"
    );
    let db = std::fs::read(&sb.state).unwrap();
    assert!(
        contains_bytes(&db, b"passwordSecretRef"),
        "the state holds the reference"
    );
}

#[test]
fn a_missing_secret_is_a_warning_not_an_error() {
    let sb = Sandbox::new();
    let files = write_ftp(&sb);
    sb.ferry(["validate", "-f", s(&files)]).success();

    let text = sb
        .ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(2);
    let (l, c) = line_col(
        &std::fs::read_to_string(&files).unwrap(),
        "passwordSecretRef:",
    );
    let warning = format!(
        "Warning: {}:{l}:{c}: DeliveryTarget/partner-ftp: spec.ftp.passwordSecretRef: secret partner-ftp/password not found",
        files.display()
    );
    assert!(
        text.stdout.contains(&warning),
        "{warning}\n---\n{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("+ spec.ftp.passwordSecretRef (value) = \"(sensitive, missing)\""),
        "{}",
        text.stdout
    );

    let plan = sb.plan_json(&[&files]);
    let warnings = plan["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{plan:#}");
    assert!(warnings[0].as_str().unwrap().contains("not found"));
    assert_eq!(counts(&plan), (1, 0, 0));

    sb.apply(&[&files]);
    assert_eq!(sb.snapshot().len(), 1);
    // Still missing: no change. Created later: an update.
    sb.ferry(["plan", "-f", s(&files), "--detailed-exitcode"])
        .code(0);
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    let update = sb.plan_json(&[&files]);
    assert_eq!(
        secret_field(&update),
        json!({"path": SECRET_FIELD, "before": "(sensitive, missing)", "after": "(sensitive)", "sensitive": true})
    );
}

// ---------------------------------------------------------------------------------------------
// next

#[test]
fn next_lists_slots_as_json_with_rfc3339_offsets_and_file_names_from_the_slot() {
    let sb = Sandbox::new();
    let quickstart = repo().join("examples").join("quickstart");
    let run = sb
        .ferry([
            "next",
            "rs/order-items-daily",
            "-f",
            s(&quickstart),
            "--after",
            "2026-07-30T00:00:00Z",
            "--count",
            "3",
            "-o",
            "json",
        ])
        .success();
    assert_eq!(
        run.json(),
        json!([
            {"at": "2026-07-31T00:30:00+09:00", "fileName": "order_items_20260731003000.csv"},
            {"at": "2026-08-01T00:30:00+09:00", "fileName": "order_items_20260801003000.csv"},
            {"at": "2026-08-02T00:30:00+09:00", "fileName": "order_items_20260802003000.csv"},
        ])
    );
}

#[test]
fn next_prints_slots_and_file_names_as_text() {
    let sb = Sandbox::new();
    let quickstart = repo().join("examples").join("quickstart");
    let run = sb
        .ferry([
            "next",
            "reportschedule/order-items-daily",
            "-f",
            s(&quickstart),
            "--after",
            "2026-07-30T00:00:00Z",
            "--count",
            "2",
        ])
        .success();
    assert_eq!(
        run.stdout,
        "2026-07-31T00:30:00+09:00  order_items_20260731003000.csv\n\
         2026-08-01T00:30:00+09:00  order_items_20260801003000.csv\n"
    );
    // Without --after, "now" is FERRY_NOW.
    let default_after = sb
        .ferry([
            "next",
            "rs/order-items-daily",
            "-f",
            s(&quickstart),
            "--count",
            "1",
        ])
        .success();
    assert_eq!(
        default_after.stdout,
        "2026-07-31T00:30:00+09:00  order_items_20260731003000.csv\n"
    );
}

#[test]
fn a_monthly_day_31_schedule_runs_on_the_last_day_of_shorter_months() {
    let sb = Sandbox::new();
    let files = sb.write(
        "billing.yaml",
        &stream(&[
            local_dir("out"),
            report_schedule("month-end", "out")
                .set("schedule", "monthly:\n  day: 31\n  at: \"06:00\"\n")
                .set("timeZone", "Europe/Paris")
                .set("fileName", "\"statement_{yyyyMMdd}_{HH}{mm}.pdf\""),
        ]),
    );
    let leap = sb
        .ferry([
            "next",
            "rs/month-end",
            "-f",
            s(&files),
            "--after",
            "2028-01-15T00:00:00Z",
            "--count",
            "3",
            "-o",
            "json",
        ])
        .success();
    assert_eq!(
        leap.json(),
        json!([
            {"at": "2028-01-31T06:00:00+01:00", "fileName": "statement_20280131_0600.pdf"},
            {"at": "2028-02-29T06:00:00+01:00", "fileName": "statement_20280229_0600.pdf"},
            {"at": "2028-03-31T06:00:00+02:00", "fileName": "statement_20280331_0600.pdf"},
        ])
    );
    let common_year = sb
        .ferry([
            "next",
            "rs/month-end",
            "-f",
            s(&files),
            "--after",
            "2027-02-01T00:00:00Z",
            "--count",
            "2",
        ])
        .success();
    assert_eq!(
        common_year.stdout,
        "2027-02-28T06:00:00+01:00  statement_20270228_0600.pdf\n\
         2027-03-31T06:00:00+02:00  statement_20270331_0600.pdf\n"
    );
}

// ---------------------------------------------------------------------------------------------
// crds

const REGENERATE: &str = "run `cargo run -- crds > crds/ferry.dev_crds.yaml`";

fn crds_output() -> String {
    Sandbox::new().ferry(["crds"]).success().stdout
}

#[test]
fn crds_output_equals_the_checked_in_file_byte_for_byte() {
    let path = repo().join("crds").join("ferry.dev_crds.yaml");
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read ({e}): {REGENERATE}", path.display()));
    let printed = crds_output();
    assert!(
        printed == checked_in,
        "`ferry crds` differs from {}: {REGENERATE}",
        path.display()
    );
}

/// Paths of schema properties without a description.
fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            let p = format!("{path}.{k}");
            if !v["description"].is_string() {
                out.push(p.clone());
            }
            undescribed(v, &p, out);
        }
    }
    if schema["items"].is_object() {
        undescribed(&schema["items"], &format!("{path}[]"), out);
    }
    if schema["additionalProperties"].is_object() {
        undescribed(&schema["additionalProperties"], &format!("{path}{{}}"), out);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for s in schema[key].as_array().into_iter().flatten() {
            undescribed(s, path, out);
        }
    }
}

#[test]
fn crds_define_the_three_kinds_of_ferry_dev_v1alpha1_with_short_names_and_descriptions() {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&crds_output()).expect("the CRDs are YAML");
    let docs: Vec<&Value> = docs.iter().filter(|d| !d.is_null()).collect();
    assert_eq!(docs.len(), 3);
    let mut kinds = Vec::new();
    for crd in &docs {
        assert_eq!(crd["apiVersion"], json!("apiextensions.k8s.io/v1"));
        assert_eq!(crd["kind"], json!("CustomResourceDefinition"));
        let spec = &crd["spec"];
        assert_eq!(spec["group"], json!("ferry.dev"));
        assert_eq!(spec["scope"], json!("Namespaced"));
        let names = &spec["names"];
        let kind = names["kind"].as_str().expect("kind").to_string();
        let (plural, short) = match kind.as_str() {
            "ReportSchedule" => ("reportschedules", "rs"),
            "DeliveryTarget" => ("deliverytargets", "dt"),
            "CustomerMapping" => ("customermappings", "cm"),
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(names["plural"], json!(plural));
        assert_eq!(names["shortNames"], json!([short]));
        assert_eq!(
            crd["metadata"]["name"],
            json!(format!("{plural}.ferry.dev"))
        );
        let versions = spec["versions"].as_array().expect("versions");
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0]["name"], json!("v1alpha1"));
        assert_eq!(versions[0]["served"], json!(true));
        assert_eq!(versions[0]["storage"], json!(true));
        let schema = &versions[0]["schema"]["openAPIV3Schema"];
        assert!(
            schema["properties"]["spec"].is_object(),
            "{kind} has a spec"
        );
        let mut missing = Vec::new();
        undescribed(&schema["properties"]["spec"], "spec", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind}: fields without a description: {missing:?}"
        );
        if kind == "ReportSchedule" {
            let tz = &schema["properties"]["spec"]["properties"]["timeZone"];
            assert!(
                tz["description"]
                    .as_str()
                    .expect("timeZone has a description")
                    .starts_with("IANA time zone"),
                "{tz}"
            );
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["CustomerMapping", "DeliveryTarget", "ReportSchedule"]
    );
}

// ---------------------------------------------------------------------------------------------
// CLI conventions

#[test]
fn kinds_are_accepted_in_every_spelling_by_get_and_next() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    sb.apply(&[&files]);
    for kind in [
        "reportschedule",
        "reportschedules",
        "rs",
        "ReportSchedule",
        "RS",
    ] {
        let list = sb.ferry(["get", kind, "-o", "json"]).success().json();
        assert_eq!(list.as_array().unwrap().len(), 1, "get {kind}");
        assert_eq!(list[0]["metadata"]["name"], json!("daily"), "get {kind}");
        let one = sb
            .ferry(["get", &format!("{kind}/daily"), "-o", "json"])
            .success()
            .json();
        assert_eq!(one, list, "get {kind}/daily");
        let next = sb
            .ferry([
                "next",
                &format!("{kind}/daily"),
                "-f",
                s(&files),
                "--count",
                "1",
                "-o",
                "json",
            ])
            .success()
            .json();
        assert_eq!(
            next,
            json!([{"at": "2026-07-31T00:30:00+09:00", "fileName": "orders_20260731003000.csv"}]),
            "next {kind}/daily"
        );
    }
    for kind in ["deliverytarget", "deliverytargets", "dt", "DeliveryTarget"] {
        let list = sb.ferry(["get", kind, "-o", "json"]).success().json();
        assert_eq!(list[0]["metadata"]["name"], json!("out"), "get {kind}");
    }
    for kind in [
        "customermapping",
        "customermappings",
        "cm",
        "CustomerMapping",
    ] {
        let list = sb.ferry(["get", kind, "-o", "json"]).success().json();
        assert_eq!(list, json!([]), "get {kind}");
    }
}

#[test]
fn state_and_secrets_dir_are_accepted_before_or_after_the_subcommand() {
    let sb = Sandbox::new();
    let files = sb.write(
        "both.yaml",
        &stream(&[ftp_with_password("partner-ftp"), local_dir("out")]),
    );
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    let (state, secrets) = (s(&sb.state), s(&sb.secrets));

    let before = sb
        .run_raw([
            "--state",
            state,
            "--secrets-dir",
            secrets,
            "plan",
            "-f",
            s(&files),
        ])
        .success();
    let after = sb
        .run_raw([
            "plan",
            "-f",
            s(&files),
            "--state",
            state,
            "--secrets-dir",
            secrets,
        ])
        .success();
    assert_eq!(before.stdout, after.stdout);
    assert!(
        before.stdout.contains("= \"(sensitive)\""),
        "the secret was found: {}",
        before.stdout
    );

    sb.run_raw([
        "--state",
        state,
        "apply",
        "--secrets-dir",
        secrets,
        "-f",
        s(&files),
        "--auto-approve",
    ])
    .success();
    let listed = sb
        .run_raw(["get", "dt", "-o", "json", "--state", state])
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let listed_before = sb
        .run_raw(["--state", state, "get", "dt", "-o", "json"])
        .success()
        .json();
    assert_eq!(listed, listed_before);
    assert!(
        !sb.root().join(".ferry").exists(),
        "the default paths were not used"
    );
}

#[test]
fn the_ferry_state_and_ferry_secrets_dir_variables_select_the_state_and_secrets() {
    let mut sb = Sandbox::new();
    let files = write_ftp(&sb);
    sb.write_secret("default", "partner-ftp", "password", FILE_SECRET);
    let state = sb.state.clone();
    sb.set_env("FERRY_STATE", s(&state));
    let secrets = sb.secrets.clone();
    sb.set_env("FERRY_SECRETS_DIR", s(&secrets));

    let plan = sb.run_raw(["plan", "-f", s(&files)]).success();
    assert!(plan.stdout.contains("= \"(sensitive)\""), "{}", plan.stdout);
    sb.run_raw(["apply", "-f", s(&files), "--auto-approve"])
        .success();
    assert!(state.is_file(), "FERRY_STATE named the state file");
    assert!(
        !sb.root().join(".ferry").exists(),
        "the default paths were not used"
    );
    let listed = sb.run_raw(["get", "dt", "-o", "json"]).success().json();
    assert_eq!(listed[0]["metadata"]["name"], json!("partner-ftp"));
    // The flag wins over the variable.
    let other = sb.root().join("other.db");
    let empty = sb
        .run_raw(["get", "dt", "-o", "json", "--state", s(&other)])
        .success()
        .json();
    assert_eq!(empty, json!([]));
}

#[test]
fn get_json_lists_applied_resources_with_generation_and_status() {
    let sb = Sandbox::new();
    let docs = |at: &str| {
        stream(&[
            local_dir("out"),
            connectwise("cw"),
            report_schedule("daily", "out").set("schedule", &format!("daily:\n  at: \"{at}\"\n")),
            customer_mapping("acme", "cw"),
        ])
    };
    let files = sb.write("all.yaml", &docs("00:30"));
    sb.apply(&[&files]);

    let targets = sb.ferry(["get", "dt", "-o", "json"]).success().json();
    let names: Vec<&str> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cw", "out"]);
    let mappings = sb.ferry(["get", "cm", "-o", "json"]).success().json();
    assert_eq!(
        mappings[0]["spec"]["company"],
        json!({"identifier": "ACME01"})
    );

    let rs = sb.ferry(["get", "rs", "-o", "json"]).success().json();
    assert_eq!(rs.as_array().unwrap().len(), 1);
    let daily = &rs[0];
    assert_eq!(daily["apiVersion"], json!("ferry.dev/v1alpha1"));
    assert_eq!(daily["kind"], json!("ReportSchedule"));
    assert_eq!(daily["metadata"]["name"], json!("daily"));
    assert_eq!(daily["metadata"]["namespace"], json!("default"));
    assert_eq!(daily["metadata"]["generation"], json!(1));
    assert_eq!(daily["metadata"]["creationTimestamp"], json!(NOW));
    assert_eq!(daily["spec"]["timeZone"], json!("Asia/Tokyo"));
    assert_eq!(daily["spec"]["deliverTo"], json!([{"target": "out"}]));
    assert_eq!(daily["status"]["observedGeneration"], json!(1));
    let ready = daily["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready["status"], json!("True"));

    sb.apply(&[&sb.write("all.yaml", &docs("01:30"))]);
    let rs = sb
        .ferry(["get", "rs", "daily", "-o", "json"])
        .success()
        .json();
    assert_eq!(rs[0]["metadata"]["generation"], json!(2));
    assert_eq!(rs[0]["status"]["observedGeneration"], json!(2));
    let cw = sb.ferry(["get", "dt/cw", "-o", "json"]).success().json();
    assert_eq!(
        cw[0]["metadata"]["generation"],
        json!(1),
        "unchanged resources keep theirs"
    );

    let table = sb.ferry(["get", "rs"]).success().stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "GEN", "READY", "DETAIL", "UPDATED"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["default", "daily", "2", "True"]);
    assert!(table.contains("next 2026-07-31T01:30:00+09:00"), "{table}");
}

#[test]
fn the_namespace_flag_filters_get() {
    let sb = Sandbox::new();
    let files = sb.write(
        "namespaces.yaml",
        &stream(&[
            local_dir("out"),
            local_dir("out").namespace("team-b"),
            local_dir("only-b").namespace("team-b"),
        ]),
    );
    sb.apply(&[&files]);
    let names = |args: &[&str]| -> Vec<(String, String)> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        sb.ferry(all)
            .success()
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metadata"]["namespace"].as_str().unwrap().to_string(),
                    r["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |ns: &str, n: &str| (ns.to_string(), n.to_string());
    assert_eq!(names(&["dt"]), [pair("default", "out")]);
    assert_eq!(
        names(&["dt", "-n", "team-b"]),
        [pair("team-b", "only-b"), pair("team-b", "out")]
    );
    assert_eq!(
        names(&["dt", "--namespace", "team-b", "out"]),
        [pair("team-b", "out")]
    );
    assert_eq!(names(&["dt", "-A"]).len(), 3);
    assert_eq!(names(&["dt", "-n", "nobody"]), []);

    let missing = sb.ferry(["get", "dt/only-b"]).failure();
    assert!(
        missing
            .stderr
            .contains("`only-b` not found in namespace `default`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn an_unknown_kind_is_a_clear_error() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    let get = sb.ferry(["get", "widgets"]).failure();
    assert_eq!(get.stdout, "");
    assert!(
        get.stderr.contains("unknown kind `widgets`"),
        "{}",
        get.stderr
    );
    assert!(
        get.stderr.contains("reportschedule/rs"),
        "the message lists the kinds: {}",
        get.stderr
    );
    let next = sb
        .ferry(["next", "widgets/daily", "-f", s(&files)])
        .failure();
    assert!(
        next.stderr.contains("unknown kind `widgets`"),
        "{}",
        next.stderr
    );
    let wrong_kind = sb.ferry(["next", "dt/out", "-f", s(&files)]).failure();
    assert!(
        wrong_kind.stderr.contains("expected reportschedule/NAME"),
        "{}",
        wrong_kind.stderr
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    let sb = Sandbox::new();
    let no_files = sb.ferry(["validate"]).failure();
    assert!(
        no_files.stderr.contains("--filename"),
        "{}",
        no_files.stderr
    );
    let unknown_command = sb.run_raw(["frobnicate"]).failure();
    assert!(
        unknown_command.stderr.contains("frobnicate"),
        "{}",
        unknown_command.stderr
    );
    let unknown_flag = sb.ferry(["plan", "-f", "x.yaml", "--bogus"]).failure();
    assert!(
        unknown_flag.stderr.contains("--bogus"),
        "{}",
        unknown_flag.stderr
    );
    let bad_output = sb.ferry(["plan", "-f", "x.yaml", "-o", "yaml"]).failure();
    assert!(bad_output.stderr.contains("yaml"), "{}", bad_output.stderr);
    let nothing_to_apply = sb.ferry(["apply"]).failure();
    assert!(
        nothing_to_apply.stderr.contains("give files to apply"),
        "{}",
        nothing_to_apply.stderr
    );
    let bad_after = sb
        .ferry(["next", "rs/x", "-f", "x.yaml", "--after", "yesterday"])
        .failure();
    assert!(!bad_after.stderr.is_empty());
    sb.run_raw(["--help"]).success();
    sb.run_raw(["--version"]).success();
}

#[test]
fn apply_without_confirmation_changes_nothing() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    // Standard input is empty: no "yes".
    let cancelled = sb.ferry(["apply", "-f", s(&files)]).failure();
    assert!(
        cancelled.stdout.contains("Only 'yes' is accepted"),
        "{}",
        cancelled.stdout
    );
    assert!(
        cancelled.stderr.contains("cancelled"),
        "{}",
        cancelled.stderr
    );
    let snapshot = sb.snapshot();
    assert_eq!((snapshot.serial, snapshot.len()), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// lock

#[test]
fn apply_fails_fast_while_the_state_is_locked_and_succeeds_once_released() {
    let sb = Sandbox::new();
    let files = write_schedule(&sb, "00:30");
    let mut lock_path = sb.state.clone().into_os_string();
    lock_path.push(".lock");
    std::fs::create_dir_all(sb.state.parent().unwrap()).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .expect("open the lock file");
    lock.try_lock().expect("take the lock");

    let started = Instant::now();
    let refused = sb
        .ferry(["apply", "-f", s(&files), "--auto-approve"])
        .failure();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, took {:?}",
        started.elapsed()
    );
    assert!(refused.stderr.contains("lock"), "{}", refused.stderr);
    assert!(
        !refused.stdout.contains("Apply complete"),
        "{}",
        refused.stdout
    );
    let saved = sb.root().join("p.plan");
    sb.ferry(["plan", "-f", s(&files), "--out", s(&saved)])
        .success();
    let refused_saved = sb.ferry(["apply", s(&saved)]).failure();
    assert!(
        refused_saved.stderr.contains("lock"),
        "{}",
        refused_saved.stderr
    );
    let snapshot = sb.snapshot();
    assert_eq!((snapshot.serial, snapshot.len()), (0, 0), "nothing applied");

    lock.unlock().expect("release the lock");
    drop(lock);
    let applied = sb.apply(&[&files]);
    assert!(
        applied.stdout.contains("Apply complete: 2 created"),
        "{}",
        applied.stdout
    );
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn reading_commands_on_a_missing_state_leave_no_file_and_a_plan_saved_there_still_applies() {
    let sb = Sandbox::new();
    if sb.state.to_string_lossy().starts_with("postgres://") {
        return; // about the SQLite file; the PostgreSQL side is in state_postgres
    }
    sb.write_secret("default", "partner-ftp", "password", "Sup3r-secret");
    let files = sb.write(
        "resources.yaml",
        &stream(&[
            local_dir("out"),
            ftp_with_password("partner-ftp"),
            report_schedule("daily", "out"),
        ]),
    );
    let plan_file = sb.root().join("review.plan");
    let before = tree(sb.root());

    sb.ferry(["validate", "-f", s(&files)]).success();
    let plan = sb.plan_json(&[&files]);
    assert_eq!(counts(&plan), (3, 0, 0));
    assert_eq!(plan["lineage"], "", "planned against no state: {plan}");
    sb.ferry(["plan", "-f", s(&files), "--out", s(&plan_file)])
        .success();
    let listed = sb.ferry(["get", "dt", "-A", "-o", "json"]).success().json();
    assert_eq!(listed, json!([]));
    sb.ferry(["history", "rs/daily"]).failure();
    sb.ferry(["next", "rs/daily", "-f", s(&files)]).success();

    let mut after = tree(sb.root());
    after.retain(|f| f != "review.plan");
    assert_eq!(after, before, "no state, no state directory, no lock");
    assert!(!sb.state.exists());

    // The saved plan creates the state; its secret digests are keyed with the new state's
    // key, so the next plan has nothing to change.
    sb.ferry(["apply", s(&plan_file)]).success();
    assert!(sb.state.exists());
    assert_eq!(counts(&sb.plan_json(&[&files])), (0, 0, 0));
}

#[test]
fn reading_commands_on_an_existing_state_leave_its_bytes_unchanged() {
    let sb = Sandbox::new();
    if sb.state.to_string_lossy().starts_with("postgres://") {
        return; // about the SQLite file; the PostgreSQL side is in state_postgres
    }
    let files = write_schedule(&sb, "00:30");
    sb.apply(&[&files]);
    let bytes = std::fs::read(&sb.state).expect("state");
    let changed = write_schedule(&sb, "01:30");

    let plan = sb.plan_json(&[&changed]);
    assert_eq!(counts(&plan), (0, 1, 0));
    sb.ferry(["plan", "-f", s(&changed), "--out", s(&sb.root().join("p"))])
        .success();
    sb.ferry(["get", "rs", "-A", "-o", "json"]).success();
    sb.ferry(["history", "rs/daily"]).success();
    sb.ferry(["validate", "-f", s(&changed)]).success();
    // An invalid file: refused, and still nothing written.
    let broken = sb.write(
        "broken.yaml",
        "apiVersion: ferry.dev/v1alpha1\nkind: Nope\n",
    );
    sb.ferry(["plan", "-f", s(&broken)]).failure();

    assert!(
        std::fs::read(&sb.state).expect("state") == bytes,
        "the state file's bytes changed"
    );
}
