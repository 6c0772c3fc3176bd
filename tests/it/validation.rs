//! Invalid input of every kind: each problem is reported as
//! `path:line:col: Kind/name: field.path: message` on standard error, every problem of a file
//! at once, with exit code 1, and a failed `apply -f` leaves the state exactly as it was.
//! Also: the examples validate, and `validate -o json` has a stable shape.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::json;

/// A sandbox whose state already holds one applied resource, so that "nothing changed" is
/// checked against a non-empty state.
fn sandbox_with_applied_state() -> Sandbox {
    let sb = Sandbox::new();
    let baseline = sb.write("baseline/target.yaml", &local_dir("baseline-out").render());
    sb.apply(&[&baseline]);
    sb
}

/// Checks that `validate -f PATHS` and `apply -f PATHS` both reject the input with exit code 1,
/// the same diagnostics on stderr and nothing on stdout from validate, and that the state is
/// unchanged afterwards. Returns the diagnostics.
#[track_caller]
fn rejected(sb: &Sandbox, paths: &[&Path]) -> String {
    let before = sb.snapshot();
    let mut args: Vec<std::ffi::OsString> = vec!["validate".into(), "-f".into()];
    args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
    let validate = sb.ferry(&args).failure();
    assert_eq!(
        validate.stdout, "",
        "validate prints diagnostics on stderr only"
    );
    assert!(!validate.stderr.is_empty());
    for line in validate.stderr_lines() {
        assert!(
            paths
                .iter()
                .any(|p| line.starts_with(&format!("{}", p.display()))),
            "every diagnostic starts with the file it concerns: {line}"
        );
    }

    let mut args: Vec<std::ffi::OsString> = vec!["apply".into(), "-f".into()];
    args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
    args.push("--auto-approve".into());
    let apply = sb.ferry(&args).failure();
    assert_eq!(
        apply.stderr, validate.stderr,
        "apply reports exactly what validate reports"
    );
    assert!(
        !apply.stdout.contains("Apply complete"),
        "nothing was applied: {apply:#?}"
    );
    let after = sb.snapshot();
    assert_eq!(before, after, "a failed apply changes nothing");
    assert_eq!(after.len(), 1, "the baseline resource is still there");
    validate.stderr
}

#[test]
fn a_yaml_syntax_error_is_reported_at_its_line_and_column() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[local_dir("out")])
        + "---\napiVersion: ferry.dev/v1alpha1\nkind: DeliveryTarget\nmetadata:\n  name: broken\nspec:\n  localDir: {path: [unclosed\n";
    let path = sb.write("broken.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (line, col) = line_col(&text, "[unclosed");
    let message = diag_at(&stderr, &path, line, col);
    // Parsed up to the error, the document already named itself.
    assert!(
        message.starts_with("DeliveryTarget/broken: invalid YAML: "),
        "{message}"
    );
    assert!(message.contains("unclosed"), "{message}");
    assert_eq!(stderr.lines().count(), 1, "one error for one syntax error");
}

#[test]
fn unknown_fields_are_rejected_at_the_top_level_in_the_spec_and_nested() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("top-level", "out").top("foo", "bar"),
        report_schedule("in-spec", "out").set("colour", "red"),
        report_schedule("nested", "out").set("schedule", "daily:\n  at: \"00:30\"\n  extra: 1\n"),
    ]);
    let path = sb.write("unknown.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");

    let (l, c) = line_col(&text, "foo: bar");
    assert_eq!(c, 1);
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportSchedule/top-level: foo: unknown field `foo`"),
        "{m}"
    );

    let (l, c) = line_col(&text, "colour: red");
    assert_eq!(c, 3);
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with(
            "ReportSchedule/in-spec: spec.colour: unknown field `colour`, expected one of"
        ),
        "{m}"
    );
    assert!(
        m.contains("timeZone"),
        "the message lists the known fields: {m}"
    );

    let (l, c) = line_col(&text, "extra: 1");
    assert_eq!(c, 7);
    let m = diag_at(&stderr, &path, l, c);
    assert_eq!(
        m,
        "ReportSchedule/nested: spec.schedule.daily.extra: unknown field `extra`, expected one of at"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_located_at_the_value() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("limit", "out").set("historyLimit", "many"),
        report_schedule("suspend", "out").set("suspend", "maybe"),
    ]);
    let path = sb.write("types.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let (l, c) = line_col(&text, "many");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportSchedule/limit: spec.historyLimit: "),
        "{m}"
    );
    assert_eq!(
        m,
        "ReportSchedule/limit: spec.historyLimit: expected a whole number from 1 to 4294967295, found `many`"
    );

    let (l, c) = line_col(&text, "maybe");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportSchedule/suspend: spec.suspend: "),
        "{m}"
    );
    assert_eq!(
        m,
        "ReportSchedule/suspend: spec.suspend: expected true or false, found `maybe`"
    );
}

#[test]
fn a_missing_required_field_is_located_at_the_mapping_that_lacks_it() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("nameless-file", "out").unset("fileName"),
    ]);
    let path = sb.write("missing.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (_, _, m) = diag_for(&stderr, &path, "ReportSchedule/nameless-file", "spec");
    assert_eq!(m, "missing field `fileName`");
    // The `spec:` key of the second document, not some sibling key such as `deliverTo:`.
    let (l, c) = nth_line_col(&text, "spec:", 1);
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "ReportSchedule/nameless-file: spec: missing field `fileName`"
    );
}

#[test]
fn an_unknown_api_version_or_kind_is_rejected() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out").api_version("ferry.dev/v2"),
        Doc::new("ReportScheduler", "typo"),
    ]);
    let path = sb.write("header.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let (l, c) = line_col(&text, "ferry.dev/v2");
    assert_eq!((l, c), (1, 13));
    let m = diag_at(&stderr, &path, l, c);
    // The kind and name are known even when the apiVersion is wrong: name them.
    assert!(m.starts_with("DeliveryTarget/out: apiVersion: "), "{m}");
    assert!(
        m.contains("`ferry.dev/v2`") && m.contains("expected ferry.dev/v1alpha1"),
        "{m}"
    );

    let (l, c) = line_col(&text, "ReportScheduler");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportScheduler/typo: kind: unknown kind `ReportScheduler`"),
        "{m}"
    );
    assert!(
        m.contains("ReportSchedule, DeliveryTarget or CustomerMapping"),
        "{m}"
    );
}

#[test]
fn delivery_references_must_name_an_existing_non_psa_target() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        connectwise("cw"),
        report_schedule("to-nowhere", "nowhere"),
        report_schedule("to-psa", "cw"),
    ]);
    let path = sb.write("refs.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let (l, c) = line_col(&text, "target: nowhere");
    assert_eq!(
        diag_at(&stderr, &path, l, c + "target: ".len()),
        "ReportSchedule/to-nowhere: spec.deliverTo[0].target: DeliveryTarget `nowhere` not found in namespace `default`"
    );
    let (l, c) = line_col(&text, "target: cw");
    let m = diag_at(&stderr, &path, l, c + "target: ".len());
    assert!(
        m.starts_with("ReportSchedule/to-psa: spec.deliverTo[0].target: DeliveryTarget `cw` is a connectwise PSA connection"),
        "{m}"
    );
}

#[test]
fn a_customer_mapping_must_name_an_existing_psa_target() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        customer_mapping("to-local", "out"),
        customer_mapping("to-ghost", "ghost"),
    ]);
    let path = sb.write("psa.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let (l, c) = line_col(&text, "{target: out}");
    let m = diag_at(&stderr, &path, l, c + "{target: ".len());
    assert_eq!(
        m,
        "CustomerMapping/to-local: spec.psa.target: DeliveryTarget `out` is localDir, not a PSA connection (connectwise or autotask)"
    );
    let (l, c) = line_col(&text, "ghost}");
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "CustomerMapping/to-ghost: spec.psa.target: DeliveryTarget `ghost` not found in namespace `default`"
    );
}

#[test]
fn an_unknown_time_zone_is_rejected() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("mars", "out").set("timeZone", "Mars/Olympus_Mons"),
    ]);
    let path = sb.write("tz.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (l, c) = line_col(&text, "Mars/Olympus_Mons");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportSchedule/mars: spec.timeZone: unknown time zone `Mars/Olympus_Mons`"),
        "{m}"
    );
}

#[test]
fn an_invalid_cron_expression_is_rejected() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("bad-cron", "out").set("schedule", "cron: \"61 * * * *\"\n"),
    ]);
    let path = sb.write("cron.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (l, c) = line_col(&text, "\"61 * * * *\"");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with(
            "ReportSchedule/bad-cron: spec.schedule.cron: invalid cron expression `61 * * * *`"
        ),
        "{m}"
    );
}

#[test]
fn a_time_of_day_must_be_hh_mm_on_a_24_hour_clock() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("midnight", "out").set("schedule", "daily:\n  at: \"24:00\"\n"),
        report_schedule("one-digit", "out").set("schedule", "daily:\n  at: \"7:30\"\n"),
        report_schedule("weekly", "out").set("schedule", "weekly:\n  on: [mon]\n  at: \"08:60\"\n"),
    ]);
    let path = sb.write("times.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    for (resource, field, value) in [
        ("midnight", "spec.schedule.daily.at", "24:00"),
        ("one-digit", "spec.schedule.daily.at", "7:30"),
        ("weekly", "spec.schedule.weekly.at", "08:60"),
    ] {
        let (l, c) = line_col(&text, &format!("\"{value}\""));
        let m = diag_at(&stderr, &path, l, c);
        assert!(
            m.starts_with(&format!(
                "ReportSchedule/{resource}: {field}: invalid time `{value}`"
            )),
            "{m}"
        );
        assert!(m.contains("HH:MM"), "{m}");
    }
}

#[test]
fn a_monthly_day_must_be_between_1_and_31() {
    let sb = sandbox_with_applied_state();
    let monthly = |day: u32| format!("monthly:\n  day: {day}\n  at: \"06:00\"\n");
    let text = stream(&[
        local_dir("out"),
        report_schedule("day-zero", "out").set("schedule", &monthly(0)),
        report_schedule("day-32", "out").set("schedule", &monthly(32)),
        report_schedule("day-31", "out").set("schedule", &monthly(31)),
    ]);
    let path = sb.write("days.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "day 31 is valid: {stderr}");
    let (l, c) = line_col(&text, "day: 0");
    assert_eq!(
        diag_at(&stderr, &path, l, c + "day: ".len()),
        "ReportSchedule/day-zero: spec.schedule.monthly.day: expected a day of the month from 1 to 31, found `0`"
    );
    let (l, c) = line_col(&text, "day: 32");
    assert_eq!(
        diag_at(&stderr, &path, l, c + "day: ".len()),
        "ReportSchedule/day-32: spec.schedule.monthly.day: expected a day of the month from 1 to 31, found `32`"
    );
}

#[test]
fn invalid_durations_are_rejected_wherever_they_occur() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("deadline", "out").set("startingDeadline", "5x"),
        report_schedule("backoff", "out").set("retry", "attempts: 3\nbackoff: never\n"),
        report_schedule("every", "out").set("schedule", "every: soon\n"),
        report_schedule("every-zero", "out").set("schedule", "every: 0s\n"),
    ]);
    let path = sb.write("durations.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 4, "{stderr}");
    for (resource, field, value) in [
        ("deadline", "spec.startingDeadline", "5x"),
        ("backoff", "spec.retry.backoff", "never"),
        ("every", "spec.schedule.every", "soon"),
    ] {
        let (l, c) = line_col(&text, &format!(": {value}\n"));
        let m = diag_at(&stderr, &path, l, c + 2);
        assert!(
            m.starts_with(&format!(
                "ReportSchedule/{resource}: {field}: invalid duration `{value}`"
            )),
            "{m}"
        );
        assert!(
            m.contains("30s, 15m, 6h, 7d"),
            "the message shows the syntax: {m}"
        );
    }
    let (l, c) = line_col(&text, "every: 0s\n");
    let m = diag_at(&stderr, &path, l, c + "every: ".len());
    assert_eq!(
        m,
        "ReportSchedule/every-zero: spec.schedule.every: duration `0s` must be greater than zero"
    );
}

#[test]
fn an_unknown_file_name_token_is_rejected() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("lowercase-month", "out").set("fileName", "\"orders_{yyyymmdd}.csv\""),
    ]);
    let path = sb.write("tokens.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (l, c) = line_col(&text, "\"orders_{yyyymmdd}.csv\"");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("ReportSchedule/lowercase-month: spec.fileName: unknown token `{yyyymmdd}`"),
        "{m}"
    );
    assert!(
        m.contains("{yyyyMMdd}"),
        "the message lists the allowed tokens: {m}"
    );
}

#[test]
fn a_duplicate_resource_names_the_file_and_line_of_the_first_definition() {
    let sb = sandbox_with_applied_state();
    let first_text = format!("# the first definition\n{}", local_dir("out").render());
    let first = sb.write("dup/a.yaml", &first_text);
    let second_text = stream(&[
        local_dir("other"),
        local_dir("out"),
        // Same name, other kind or other namespace: not a duplicate.
        report_schedule("out", "out"),
        local_dir("out").namespace("team-b"),
    ]);
    let second = sb.write("dup/b.yaml", &second_text);
    let stderr = rejected(&sb, &[&sb.files.join("dup")]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (l, c) = nth_line_col(&second_text, "name: out", 0);
    let m = diag_at(&stderr, &second, l, c + "name: ".len());
    assert_eq!(
        m,
        format!(
            "DeliveryTarget/out: metadata.name: duplicate DeliveryTarget `out` in namespace `default` (first defined at {}:2)",
            first.display()
        )
    );
}

#[test]
fn a_duplicate_target_does_not_replace_the_first_definition_for_references() {
    // The first `cw` is a ConnectWise connection; a second `cw` (a duplicate, reported as
    // such) must not make the mapping's reference resolve to the duplicate's localDir, nor hide
    // that a schedule delivers to the PSA connection.
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        connectwise("cw"),
        local_dir("out"),
        customer_mapping("acme", "cw"),
        report_schedule("to-psa", "cw"),
        local_dir("cw"),
    ]);
    let path = sb.write("shadow.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (_, _, m) = diag_for(&stderr, &path, "DeliveryTarget/cw", "metadata.name");
    assert!(m.starts_with("duplicate DeliveryTarget `cw`"), "{m}");
    let (_, _, m) = diag_for(
        &stderr,
        &path,
        "ReportSchedule/to-psa",
        "spec.deliverTo[0].target",
    );
    assert!(m.contains("is a connectwise PSA connection"), "{m}");
    assert!(
        !stderr.contains("CustomerMapping/acme"),
        "the mapping refers to the first `cw`, a ConnectWise connection:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[test]
fn a_delivery_target_needs_exactly_one_variant() {
    let sb = sandbox_with_applied_state();
    let both = Doc::new("DeliveryTarget", "both")
        .set("ftp", "host: ftp.example\nusername: u\n")
        .set("localDir", "path: out\n");
    let text = stream(&[Doc::new("DeliveryTarget", "empty"), both]);
    let path = sb.write("variants.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let (l, c) = line_col(&text, "spec: {}");
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "DeliveryTarget/empty: spec: choose exactly one of ftp, sftp, email, localDir, hostedSftp, objectStore, webhook, connectwise, autotask"
    );
    let (l, c) = line_col(&text, "localDir:");
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "DeliveryTarget/both: spec.localDir: choose exactly one of ftp, sftp, email, localDir, hostedSftp, objectStore, webhook, connectwise, autotask (found ftp and localDir)"
    );
}

#[test]
fn a_schedule_needs_exactly_one_kind() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("two-kinds", "out").set(
            "schedule",
            "daily:\n  at: \"00:30\"\nweekly:\n  on: [mon]\n  at: \"01:00\"\n",
        ),
    ]);
    let path = sb.write("two-kinds.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (l, c, m) = diag_for(&stderr, &path, "ReportSchedule/two-kinds", "spec.schedule");
    assert!(m.contains("exactly one"), "{m}");
    let schedule_at = line_col(&text, "schedule:");
    let weekly_at = line_col(&text, "weekly:");
    assert!(
        (schedule_at.0..=weekly_at.0).contains(&l),
        "located in the schedule ({l}:{c})"
    );
}

#[test]
fn an_sftp_target_must_pin_host_keys() {
    let sb = sandbox_with_applied_state();
    let sftp = "host: sftp.example\nusername: ecforce\ndirectory: /upload\nprivateKeySecretRef: {name: key, key: id_rsa}\n";
    let text = stream(&[
        Doc::new("DeliveryTarget", "unpinned").set("sftp", sftp),
        Doc::new("DeliveryTarget", "empty-pins").set("sftp", &format!("{sftp}hostKeys: []\n")),
    ]);
    let path = sb.write("sftp.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let (_, _, m) = diag_for(&stderr, &path, "DeliveryTarget/unpinned", "spec.sftp");
    assert_eq!(m, "missing field `hostKeys`");
    let (l, c) = line_col(&text, "hostKeys: []");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("DeliveryTarget/empty-pins: spec.sftp.hostKeys: pin at least one host key"),
        "{m}"
    );
}

#[test]
fn an_email_with_a_link_needs_the_link_token_in_its_body() {
    let sb = sandbox_with_applied_state();
    let email = "smtp: {host: smtp.example, port: 587}\n\
                 from: \"Reports <reports@example.com>\"\n\
                 to: [finance@partner.example]\n\
                 subject: \"Report {yyyy}-{MM}-{dd}\"\n\
                 body: \"Your report is ready.\"\n\
                 link:\n  s3: {endpoint: \"https://s3.example\", bucket: reports, accessKeyIdSecretRef: {name: s3, key: id}, secretAccessKeySecretRef: {name: s3, key: secret}}\n  expiresIn: 7d\n";
    let text = Doc::new("DeliveryTarget", "mail")
        .set("email", email)
        .render();
    let path = sb.write("email.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (l, c) = line_col(&text, "\"Your report is ready.\"");
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "DeliveryTarget/mail: spec.email.body: the body must contain {link}, or recipients never see where the report is"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_connectwise_mapping_needs_a_company_identifier() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        connectwise("cw"),
        customer_mapping("acme", "cw").set("company", "{}"),
    ]);
    let path = sb.write("cw.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (l, c) = line_col(&text, "company: {}");
    let m = diag_at(&stderr, &path, l, c);
    assert!(
        m.starts_with("CustomerMapping/acme: spec.company.identifier: ConnectWise companies are matched on their identifier"),
        "{m}"
    );
}

#[test]
fn general_settings_refuse_a_local_usage_sync() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        connectwise("cw"),
        customer_mapping("acme", "cw").set(
            "usageSync",
            "enabled: true\nsource:\n  sql: {url: \"sqlite://usage.db\", query: \"SELECT customer, product, quantity FROM usage\"}\n",
        ),
    ]);
    let path = sb.write("general.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (l, c) = line_col(&text, "usageSync:");
    assert_eq!(
        diag_at(&stderr, &path, l, c),
        "CustomerMapping/acme: spec.usageSync: ignored with settings: general (the PSA target's defaults apply); remove it or set settings: custom"
    );
}

#[test]
fn every_error_of_a_multi_error_file_is_reported_at_once_one_per_line_in_file_order() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("many-problems", "nowhere")
            .set("schedule", "daily:\n  at: \"24:00\"\n")
            .set("timeZone", "Mars/Olympus_Mons")
            .set("startingDeadline", "5x")
            .set("fileName", "\"orders_{yyyymmdd}.csv\""),
        report_schedule("unknown-field", "out").set("colour", "red"),
        report_schedule("day-zero", "out").set("schedule", "monthly:\n  day: 0\n  at: \"06:00\"\n"),
        Doc::new("DeliveryTarget", "empty"),
    ]);
    let path = sb.write("many.yaml", &text);
    let stderr = rejected(&sb, &[&path]);

    let expected = [
        (
            line_col(&text, "\"24:00\""),
            "ReportSchedule/many-problems: spec.schedule.daily.at: ",
        ),
        (
            line_col(&text, "Mars/Olympus_Mons"),
            "ReportSchedule/many-problems: spec.timeZone: ",
        ),
        (
            line_col(&text, "\"orders_{yyyymmdd}.csv\""),
            "ReportSchedule/many-problems: spec.fileName: ",
        ),
        (
            {
                let (l, c) = line_col(&text, "target: nowhere");
                (l, c + "target: ".len())
            },
            "ReportSchedule/many-problems: spec.deliverTo[0].target: ",
        ),
        (
            {
                let (l, c) = line_col(&text, "startingDeadline: 5x");
                (l, c + "startingDeadline: ".len())
            },
            "ReportSchedule/many-problems: spec.startingDeadline: ",
        ),
        (
            line_col(&text, "colour: red"),
            "ReportSchedule/unknown-field: spec.colour: ",
        ),
        (
            {
                let (l, c) = line_col(&text, "day: 0");
                (l, c + "day: ".len())
            },
            "ReportSchedule/day-zero: spec.schedule.monthly.day: ",
        ),
        (line_col(&text, "spec: {}"), "DeliveryTarget/empty: spec: "),
    ];
    let lines = stderr.lines().collect::<Vec<_>>();
    assert_eq!(lines.len(), expected.len(), "one line per error:\n{stderr}");
    for ((l, c), start) in &expected {
        let m = diag_at(&stderr, &path, *l, *c);
        assert!(m.starts_with(start), "at {l}:{c}: {m}");
    }
    let mut positions: Vec<(usize, usize)> = expected.iter().map(|e| e.0).collect();
    positions.sort();
    let reported: Vec<(usize, usize)> = lines
        .iter()
        .map(|line| {
            let rest = line
                .strip_prefix(&format!("{}:", path.display()))
                .expect("starts with the path");
            let mut parts = rest.splitn(3, ':');
            let l = parts.next().unwrap().parse().unwrap();
            let c = parts.next().unwrap().parse().unwrap();
            (l, c)
        })
        .collect();
    assert_eq!(reported, positions, "diagnostics come in file order");
}

#[test]
fn errors_in_several_files_are_all_reported() {
    let sb = sandbox_with_applied_state();
    let a_text = stream(&[report_schedule("a", "out").set("timeZone", "Nowhere/City")]);
    let b_text = stream(&[
        local_dir("out"),
        report_schedule("b", "out").set("fileName", "\"{bogus}.csv\""),
    ]);
    let a = sb.write("several/a.yaml", &a_text);
    let b = sb.write("several/b.yaml", &b_text);
    let stderr = rejected(&sb, &[&sb.files.join("several")]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let (l, c) = line_col(&a_text, "Nowhere/City");
    assert!(diag_at(&stderr, &a, l, c).starts_with("ReportSchedule/a: spec.timeZone: "));
    let (l, c) = line_col(&b_text, "\"{bogus}.csv\"");
    assert!(diag_at(&stderr, &b, l, c).starts_with("ReportSchedule/b: spec.fileName: "));
}

#[test]
fn empty_documents_and_a_trailing_separator_are_ignored() {
    let sb = Sandbox::new();
    let text = format!(
        "---\n{}---\n# nothing in this document\n---\n{}---\n",
        local_dir("out").render(),
        report_schedule("daily", "out").render()
    );
    let path = sb.write("separators.yaml", &text);
    let run = sb.ferry(["validate", "-f", s(&path)]);
    assert_eq!(run.code, 0, "empty documents are not resources: {run:#?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout.trim(),
        "Valid: 2 resource(s) (1 ReportSchedule, 1 DeliveryTarget, 0 CustomerMapping)."
    );
}

#[test]
fn the_same_name_in_another_namespace_or_kind_is_not_a_duplicate() {
    let sb = Sandbox::new();
    let path = sb.write(
        "namespaces.yaml",
        &stream(&[
            local_dir("out"),
            local_dir("out").namespace("team-b"),
            report_schedule("out", "out"),
            report_schedule("out", "out").namespace("team-b"),
        ]),
    );
    let run = sb.ferry(["validate", "-f", s(&path)]).success();
    assert_eq!(
        run.stdout.trim(),
        "Valid: 4 resource(s) (2 ReportSchedule, 2 DeliveryTarget, 0 CustomerMapping)."
    );
}

#[test]
fn a_database_url_with_a_password_is_refused_without_showing_the_password() {
    let sb = sandbox_with_applied_state();
    let password = "pw-QUOKKA-5150";
    let text = stream(&[
        local_dir("out"),
        report_schedule("leaky", "out").set(
            "source",
            &format!("sql:\n  url: \"postgres://reports:{password}@db.example/shop\"\n  query: \"SELECT 1\"\n"),
        ),
    ]);
    let path = sb.write("leaky.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (_, _, m) = diag_for(
        &stderr,
        &path,
        "ReportSchedule/leaky",
        "spec.source.sql.url",
    );
    assert!(m.contains("connectionSecretRef"), "{m}");
    assert!(!stderr.contains(password), "the password leaked: {stderr}");
}

/// The five example folders, by name.
const EXAMPLES: [&str; 5] = [
    "autotask-usage",
    "connectwise-billing",
    "ecommerce-sftp",
    "partner-reports",
    "quickstart",
];

/// `Valid: N resource(s) (...)` -> N.
fn valid_count(stdout: &str) -> usize {
    stdout
        .strip_prefix("Valid: ")
        .and_then(|s| s.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a validate summary: {stdout}"))
}

#[test]
fn every_example_folder_validates_alone_and_all_together() {
    let sb = Sandbox::new();
    let mut total = 0;
    for name in EXAMPLES {
        let dir = repo().join("examples").join(name);
        assert!(dir.is_dir(), "{} exists", dir.display());
        let run = sb.ferry(["validate", "-f", s(&dir)]);
        let run = run.success();
        assert_eq!(run.stderr, "", "{name}");
        let n = valid_count(&run.stdout);
        assert!(n > 0, "{name} holds resources");
        total += n;
    }
    let all = repo().join("examples");
    let run = sb.ferry(["validate", "-f", s(&all)]).success();
    assert_eq!(
        valid_count(&run.stdout),
        total,
        "examples/ is the five folders together"
    );
}

#[test]
fn validate_json_reports_validity_resource_count_and_errors() {
    let sb = Sandbox::new();
    let quickstart = repo().join("examples").join("quickstart");
    let run = sb
        .ferry(["validate", "-f", s(&quickstart), "-o", "json"])
        .success();
    let text_run = sb.ferry(["validate", "-f", s(&quickstart)]).success();
    assert_eq!(
        run.json(),
        json!({"valid": true, "resources": valid_count(&text_run.stdout), "errors": []})
    );

    let text = stream(&[
        local_dir("out"),
        report_schedule("daily", "out").set("timeZone", "Mars/Olympus_Mons"),
    ]);
    let path = sb.write("bad.yaml", &text);
    let run = sb
        .ferry(["validate", "-f", s(&path), "-o", "json"])
        .failure();
    let (line, col) = line_col(&text, "Mars/Olympus_Mons");
    let doc = run.json();
    assert_eq!(doc["valid"], json!(false));
    let errors = doc["errors"].as_array().expect("errors is a list");
    assert_eq!(errors.len(), 1, "{doc:#}");
    let e = &errors[0];
    assert_eq!(e["file"], json!(path.display().to_string()));
    assert_eq!(e["line"], json!(line));
    assert_eq!(e["col"], json!(col));
    assert_eq!(e["resource"], json!("ReportSchedule/daily"));
    assert_eq!(e["field"], json!("spec.timeZone"));
    assert!(
        e["message"]
            .as_str()
            .expect("message is a string")
            .starts_with("unknown time zone `Mars/Olympus_Mons`"),
        "{e}"
    );
}

#[test]
fn query_parameters_must_be_known_and_windowed_parameters_need_a_window() {
    let sb = sandbox_with_applied_state();
    let text = stream(&[
        local_dir("out"),
        report_schedule("unbounded", "out").set(
            "source",
            "sql:\n  url: \"sqlite://shop.db\"\n  query: \"SELECT id FROM orders WHERE at >= :window_start\"\nwindow: all\n",
        ),
        report_schedule("typo", "out").set(
            "source",
            "sql:\n  url: \"sqlite://shop.db\"\n  query: \"SELECT id FROM orders WHERE at >= :windowstart\"\nwindow: previousDay\n",
        ),
    ]);
    let path = sb.write("params.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let (_, _, m) = diag_for(
        &stderr,
        &path,
        "ReportSchedule/unbounded",
        "spec.source.window",
    );
    assert!(
        m.contains(":window_start/:window_end but window is `all`"),
        "{m}"
    );
    let (_, _, m) = diag_for(
        &stderr,
        &path,
        "ReportSchedule/typo",
        "spec.source.sql.query",
    );
    assert!(m.contains("windowstart"), "{m}");
}

#[test]
fn smtp_auth_is_refused_over_an_unencrypted_connection_and_without_a_password() {
    let sb = sandbox_with_applied_state();
    let email = "smtp: {host: smtp.example, port: 25, tls: none, username: reports}\n\
                 from: \"Reports <reports@example.com>\"\n\
                 to: [finance@partner.example]\n\
                 subject: \"Report\"\n\
                 attach: true\n";
    let text = Doc::new("DeliveryTarget", "mail")
        .set("email", email)
        .render();
    let path = sb.write("email.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    assert!(
        stderr.contains(
            "DeliveryTarget/mail: spec.email.smtp.passwordSecretRef: AUTH needs a password"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("DeliveryTarget/mail: spec.email.smtp.tls: AUTH over an unencrypted connection would send the password in clear"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}

#[test]
fn a_max_connections_of_zero_is_refused_at_its_line() {
    let sb = sandbox_with_applied_state();
    let text = ftp_with_password("partner")
        .set(
            "ftp",
            "host: ftp.partner.example\nusername: partner\npasswordSecretRef: {name: partner, key: password}\nmaxConnections: 0\n",
        )
        .render();
    let path = sb.write("zero.yaml", &text);
    let stderr = rejected(&sb, &[&path]);
    let (line, col) = line_col(&text, "0\n");
    let message = diag_at(&stderr, &path, line, col);
    assert!(
        message.contains("spec.ftp.maxConnections: must be between 1 and 256, got 0"),
        "{stderr}"
    );
}
