//! `objectStore` targets end to end through the binary: S3 against an in-process s3s store
//! that checks SigV4 signatures and `x-amz-checksum-sha256` for real (tests/it/common/s3.rs);
//! GCS against a strict simulator of its XML API that verifies the service account's signed
//! JWT on every request (tests/it/common/gcs.rs); Azure against Azurite, Microsoft's Blob
//! Storage emulator, which checks Shared Key signatures.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::Sandbox;
use common::s3::{BUCKET, FORBIDDEN_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, start_s3};

/// The slot every test runs (00:30 in Tokyo on 31 July 2026).
const SLOT: &str = "2026-07-31T00:30:00+09:00";

/// A schedule of `rows` rows (about 60 bytes each) delivered to `target` and to a local
/// directory `archive` (the bytes every copy is compared with).
fn schedule(rows: u32, target: &str) -> String {
    format!(
        "{}---\n{}",
        schedule_to(
            rows,
            &format!("[{{target: {target}}}, {{target: archive}}]")
        ),
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: archive}
spec:
  localDir: {path: archive}
"#
    )
}

/// The schedule `sales` of `rows` rows, delivered to `deliver_to` (a YAML list).
fn schedule_to(rows: u32, deliver_to: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: sales}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://empty.db"
      query: |
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
        SELECT i AS id, printf('売上 %d of a report written to a bucket', i) AS label FROM n
  columns: [{{name: id}}, {{name: label}}]
  format: {{csv: {{}}}}
  fileName: "sales_{{yyyyMMddHHmmss}}.csv"
  deliverTo: {deliver_to}
  retry: {{attempts: 1}}
"#
    )
}

/// An `objectStore.s3` target on `s3`, with the given secret key and bucket.
fn s3_target(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: bucket}}
spec:
  objectStore:
    s3:
      endpoint: {endpoint}
      region: eu-west-3
      bucket: {bucket}
      accessKeyIdSecretRef: {{name: s3, key: id}}
      secretAccessKeySecretRef: {{name: s3, key: secret}}
{extra}    prefix: "partner/{{yyyy}}/{{MM}}/"
"#
    )
}

fn sandbox(secret_key: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.write_secret("default", "s3", "id", S3_ACCESS_KEY);
    sb.write_secret("default", "s3", "secret", secret_key);
    std::fs::write(sb.root().join("empty.db"), "").unwrap();
    sb.set_env("FERRY_NOW", "2026-07-30T00:00:00Z");
    sb
}

/// Where s3s-fs keeps an object of the test bucket.
fn object_file(s3: &S3Server, key: &str) -> PathBuf {
    s3.root.path().join(BUCKET).join(key)
}

fn receipt(sb: &Sandbox, target: &str) -> serde_json::Value {
    let history = sb
        .ferry(["history", "rs/sales", "-o", "json"])
        .success()
        .json();
    history[0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == target)
        .cloned()
        .unwrap_or_else(|| panic!("no delivery to {target}: {history:#?}"))
}

/// Every file under `dir`, as paths relative to it (s3s-fs keeps metadata in side files).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_report_becomes_one_s3_object_under_the_rendered_prefix_with_etag_and_is_never_sent_twice() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let sb = sandbox(S3_SECRET_KEY);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&s3.endpoint, BUCKET, "      serverSideEncryption: aes256\n"),
            schedule(1000, "bucket")
        ),
    );
    let plan = sb.ferry(["plan", "-f", common::s(&files)]).success();
    assert!(
        plan.stdout.contains(&format!(
            "S3 bucket {BUCKET} at {}, under partner/{{yyyy}}/{{MM}}/",
            s3.endpoint
        )),
        "{plan:#?}"
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    let key = "partner/2026/07/sales_20260731003000.csv";
    assert!(
        run.stdout
            .contains(&format!("bucket: delivered to s3://{BUCKET}/{key}")),
        "{run:#?}"
    );
    let archived = std::fs::read(sb.root().join("archive/sales_20260731003000.csv")).unwrap();
    assert_eq!(std::fs::read(object_file(&s3, key)).unwrap(), archived);

    // The PUT asked for SSE-S3 and carried the SHA-256 the store checked.
    let puts = s3.requests("PutObject");
    assert_eq!(puts.len(), 1, "{puts:#?}");
    assert_eq!(puts[0].path, format!("{BUCKET}/{key}"));
    assert_eq!(puts[0].headers["x-amz-server-side-encryption"], "AES256");
    assert!(
        puts[0].headers.contains_key("x-amz-checksum-sha256"),
        "{puts:#?}"
    );
    assert_eq!(puts[0].headers["content-type"], "text/csv");

    let delivery = receipt(&sb, "bucket");
    assert_eq!(delivery["outcome"], "succeeded");
    assert_eq!(
        delivery["receipt"]["location"],
        format!("s3://{BUCKET}/{key}")
    );
    assert_eq!(delivery["receipt"]["bytes"], archived.len());
    assert!(
        !delivery["receipt"]["details"]["eTag"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{delivery:#?}"
    );

    // The same slot again: the ledger knows it is there, nothing is uploaded.
    nothing_sent_again(&sb);
}

#[test]
fn a_report_larger_than_a_part_goes_up_in_parts_and_arrives_whole() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let sb = sandbox(S3_SECRET_KEY);
    // ~60 bytes a row: 200,000 rows is about 12 MiB, more than one 8 MiB part.
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&s3.endpoint, BUCKET, ""),
            schedule(200_000, "bucket")
        ),
    );
    sb.apply(&[&files]);
    sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    let archived = std::fs::read(sb.root().join("archive/sales_20260731003000.csv")).unwrap();
    assert!(archived.len() > 8 * 1024 * 1024, "{}", archived.len());
    let object =
        std::fs::read(object_file(&s3, "partner/2026/07/sales_20260731003000.csv")).unwrap();
    assert_eq!(object.len(), archived.len());
    assert!(object == archived, "the object differs from the report");
    // In parts, each with its checksum, and nothing left behind but the object.
    let seen = s3.seen.lock().unwrap().clone();
    let parts = seen.iter().filter(|r| r.op == "UploadPart").count();
    assert_eq!(
        parts,
        2,
        "{:?}",
        seen.iter().map(|r| &r.op).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .filter(|r| r.op == "UploadPart")
            .all(|r| r.headers.contains_key("x-amz-checksum-sha256"))
    );
    assert!(seen.iter().any(|r| r.op == "CompleteMultipartUpload"));
    // s3s-fs keeps an object's metadata in hidden side files: the SHA-256 is there.
    let (side, objects): (Vec<String>, Vec<String>) = files_under(s3.root.path())
        .into_iter()
        .partition(|f| f.starts_with('.'));
    assert_eq!(
        objects,
        [format!("{BUCKET}/partner/2026/07/sales_20260731003000.csv")]
    );
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&archived))
    };
    let metadata = side
        .iter()
        .find(|f| f.ends_with(".metadata.json"))
        .map(|f| std::fs::read_to_string(s3.root.path().join(f)).unwrap())
        .unwrap_or_else(|| panic!("no metadata side file: {side:?}"));
    assert!(metadata.contains(&sha), "{metadata}");
}

#[test]
fn a_wrong_secret_key_is_a_recorded_failure_naming_the_refusal_and_never_the_key() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let wrong = "not-the-right-secret-key-4711";
    let sb = sandbox(wrong);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&s3.endpoint, BUCKET, ""),
            schedule(10, "bucket")
        ),
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).failure();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("bucket"), "{run:#?}");
    assert!(
        all.contains("SignatureDoesNotMatch") || all.contains("403"),
        "{run:#?}"
    );
    assert!(!all.contains(wrong), "the secret key is shown: {run:#?}");
    let delivery = receipt(&sb, "bucket");
    assert_eq!(delivery["outcome"], "failed", "{delivery:#?}");
    assert!(!delivery.to_string().contains(wrong));
    assert!(!object_file(&s3, "partner/2026/07/sales_20260731003000.csv").exists());
}

#[test]
fn a_bucket_the_key_may_not_write_is_a_recorded_failure_saying_so() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let sb = sandbox(S3_SECRET_KEY);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&s3.endpoint, FORBIDDEN_BUCKET, ""),
            schedule(10, "bucket")
        ),
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).failure();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(&format!("s3://{FORBIDDEN_BUCKET}/partner/2026/07/")),
        "{run:#?}"
    );
    assert!(
        all.contains("AccessDenied") || all.contains("403"),
        "{run:#?}"
    );
    assert_eq!(receipt(&sb, "bucket")["outcome"], "failed");
}

#[test]
fn an_endpoint_nobody_answers_or_an_unknown_host_is_a_recorded_failure_naming_it() {
    for (endpoint, named) in [
        ("http://127.0.0.1:9", "127.0.0.1:9"),
        ("http://no-such-store.invalid:9000", "no-such-store.invalid"),
    ] {
        let sb = sandbox(S3_SECRET_KEY);
        let files = sb.write(
            "bucket.yaml",
            &format!(
                "{}---\n{}",
                s3_target(endpoint, BUCKET, ""),
                schedule(10, "bucket")
            ),
        );
        sb.apply(&[&files]);
        let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).failure();
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains(named), "{run:#?}");
        assert!(!all.contains(S3_SECRET_KEY), "{run:#?}");
        assert_eq!(receipt(&sb, "bucket")["outcome"], "failed");
    }
}

#[test]
fn check_writes_reads_back_and_deletes_a_probe_object_or_only_lists() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let sb = sandbox(S3_SECRET_KEY);
    let files = sb.write("bucket.yaml", &s3_target(&s3.endpoint, BUCKET, ""));
    let check = sb
        .ferry(["check", "-f", common::s(&files), "-o", "json"])
        .success()
        .json();
    let result = &check["checks"][0];
    assert_eq!(result["status"], "ok", "{check:#?}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("a probe object was written, read back and deleted at s3://reports/"),
        "{message}"
    );
    // Nothing is left in the bucket but the folders s3s-fs made.
    let left: Vec<String> = files_under(&s3.root.path().join(BUCKET))
        .into_iter()
        .filter(|f| f.contains(".ferry-check-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let listing = sb.write(
        "bucket.yaml",
        &s3_target(&s3.endpoint, BUCKET, "").replace("    prefix:", "    check: list\n    prefix:"),
    );
    let check = sb
        .ferry(["check", "-f", common::s(&listing), "-o", "json"])
        .success()
        .json();
    let message = check["checks"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("was listed (0 entries); nothing written"),
        "{message}"
    );
}

#[test]
fn bad_object_store_fields_are_refused_at_validate_with_their_paths() {
    let sb = sandbox(S3_SECRET_KEY);
    let files = sb.write(
        "bad.yaml",
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: two-stores}
spec:
  objectStore:
    s3: {bucket: a}
    gcs: {bucket: b}
---
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: half-keys}
spec:
  objectStore:
    s3:
      bucket: a
      accessKeyIdSecretRef: {name: s3, key: id}
      kmsKeyId: alias/reports
    prefix: "x/../{link}/"
"#,
    );
    let run = sb.ferry(["validate", "-f", common::s(&files)]).failure();
    for expected in [
        "spec.objectStore: give exactly one of s3, gcs and azure (2 given)",
        "spec.objectStore.s3.secretAccessKeySecretRef",
        "spec.objectStore.s3.kmsKeyId",
        "spec.objectStore.prefix",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {run:#?}");
    }
    assert!(sb.snapshot().len() == 0, "validate changes nothing");
}

/// `addressing: virtualHosted` with a store's endpoint: the bucket goes into the host name
/// (`reports.s3.test`), the key alone into the path. The server reads the bucket from the
/// `Host` header, which the signature covers; it is reached through `HTTP_PROXY`, since no
/// resolver here knows `*.s3.test`.
#[test]
fn virtual_hosted_addressing_puts_the_bucket_in_the_host_and_only_the_key_in_the_path() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let mut sb = sandbox(S3_SECRET_KEY);
    let port = s3.endpoint.rsplit(':').next().unwrap().to_string();
    sb.set_env("HTTP_PROXY", &s3.endpoint);
    sb.set_env("NO_PROXY", "");
    let endpoint = format!("http://{}:{port}", common::s3::VIRTUAL_HOST_DOMAIN);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&endpoint, BUCKET, "      addressing: virtualHosted\n"),
            schedule(50, "bucket")
        ),
    );
    sb.apply(&[&files]);
    sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    let key = "partner/2026/07/sales_20260731003000.csv";
    let archived = std::fs::read(sb.root().join("archive/sales_20260731003000.csv")).unwrap();
    assert_eq!(std::fs::read(object_file(&s3, key)).unwrap(), archived);
    let puts = s3.requests("PutObject");
    assert_eq!(puts.len(), 1, "{puts:#?}");
    assert_eq!(puts[0].path, format!("{BUCKET}/{key}"));
    assert_eq!(
        puts[0].headers["host"],
        format!("{BUCKET}.{}:{port}", common::s3::VIRTUAL_HOST_DOMAIN)
    );
    assert_eq!(receipt(&sb, "bucket")["outcome"], "succeeded");

    // An IP address has no subdomain for the bucket: refused at validate, at its field.
    let bad = sb.write(
        "bad.yaml",
        &s3_target(&s3.endpoint, BUCKET, "      addressing: virtualHosted\n"),
    );
    let run = sb.ferry(["validate", "-f", common::s(&bad)]).failure();
    assert!(
        run.stderr.contains("spec.objectStore.s3.addressing")
            && run.stderr.contains("use addressing: path"),
        "{run:#?}"
    );
}

/// Running the slot again sends nothing: both targets say "already delivered".
fn nothing_sent_again(sb: &Sandbox) {
    let again = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    assert_eq!(
        again.stdout.matches("already delivered").count(),
        2,
        "{again:#?}"
    );
}

/// `ferry check` of target `bucket` passes: a probe object written, read back and deleted in
/// the store of URL scheme `scheme`.
fn probe_checked(sb: &Sandbox, files: &Path, scheme: &str) {
    let check = sb
        .ferry([
            "check",
            "-f",
            common::s(files),
            "--only",
            "dt/bucket",
            "-o",
            "json",
        ])
        .success()
        .json();
    let message = check["checks"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "a probe object was written, read back and deleted at {scheme}://"
        )),
        "{message}"
    );
}

/// `ferry run-now rs/sales --slot SLOT` with failpoint `point`: it must die of SIGKILL there.
fn killed_at(sb: &Sandbox, point: &str) {
    common::run_now_killed_at(sb, "sales", SLOT, point);
}

#[test]
fn killed_after_the_upload_the_object_is_recognised_and_not_sent_again_and_killed_before_it_is_sent()
 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3());
    let sb = sandbox(S3_SECRET_KEY);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            s3_target(&s3.endpoint, BUCKET, ""),
            schedule_to(1000, "[{target: bucket}]")
        ),
    );
    sb.apply(&[&files]);
    let puts = || s3.requests("PutObject").len();
    let key = "partner/2026/07/sales_20260731003000.csv";

    // The object is in the bucket, the ledger does not know: the restart recognises it.
    killed_at(&sb, "delivered-unrecorded");
    assert_eq!(puts(), 1);
    let before = std::fs::metadata(object_file(&s3, key)).unwrap();
    sb.ferry(["run", "--once", "-f", common::s(&files)])
        .success();
    let delivery = receipt(&sb, "bucket");
    assert_eq!(delivery["outcome"], "succeeded", "{delivery:#?}");
    assert_eq!(
        delivery["receipt"]["details"]["confirmedBy"], "sha256Metadata",
        "{delivery:#?}"
    );
    assert_eq!(puts(), 1, "not uploaded again");
    let after = std::fs::metadata(object_file(&s3, key)).unwrap();
    assert_eq!(
        (after.ino(), after.modified().unwrap()),
        (before.ino(), before.modified().unwrap())
    );

    // Killed at the point of no return, before the PUT: the restart uploads it.
    let sb = sandbox(S3_SECRET_KEY);
    let other = s3_target(&s3.endpoint, BUCKET, "").replace("partner/", "second/");
    let files = sb.write(
        "bucket.yaml",
        &format!("{other}---\n{}", schedule_to(1000, "[{target: bucket}]")),
    );
    sb.apply(&[&files]);
    killed_at(&sb, "delivering-recorded");
    assert_eq!(puts(), 1, "nothing sent before the kill");
    assert!(!object_file(&s3, "second/2026/07/sales_20260731003000.csv").exists());
    sb.ferry(["run", "--once", "-f", common::s(&files)])
        .success();
    assert_eq!(receipt(&sb, "bucket")["outcome"], "succeeded");
    assert_eq!(puts(), 2);
    assert!(object_file(&s3, "second/2026/07/sales_20260731003000.csv").exists());
}

// ---- Google Cloud Storage ---------------------------------------------------------------------

/// An `objectStore.gcs` target on `gcs`'s endpoint, bucket `bucket`, key Secret `gcs/key.json`.
fn gcs_target(endpoint: &str, bucket: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: bucket}}
spec:
  objectStore:
    gcs:
      bucket: {bucket}
      endpoint: {endpoint}
      serviceAccountKeySecretRef: {{name: gcs, key: key.json}}
    prefix: "{{schedule}}/{{yyyyMMdd}}"
"#
    )
}

#[test]
fn a_report_becomes_a_gcs_object_signed_by_the_service_account_with_its_metadata() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gcs = runtime.block_on(common::gcs::start_gcs());
    let sb = sandbox(S3_SECRET_KEY);
    sb.write_secret("default", "gcs", "key.json", &gcs.key_json);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            gcs_target(&gcs.endpoint, common::gcs::GCS_BUCKET),
            schedule(1000, "bucket")
        ),
    );
    let plan = sb.ferry(["plan", "-f", common::s(&files)]).success();
    assert!(
        plan.stdout.contains(&format!(
            "GCS bucket {}, under {{schedule}}/{{yyyyMMdd}}/",
            common::gcs::GCS_BUCKET
        )),
        "{plan:#?}"
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    let object = "sales/20260731/sales_20260731003000.csv";
    assert!(
        run.stdout.contains(&format!(
            "bucket: delivered to gs://{}/{object}",
            common::gcs::GCS_BUCKET
        )),
        "{run:#?}"
    );
    let archived = std::fs::read(sb.root().join("archive/sales_20260731003000.csv")).unwrap();
    let stored = gcs.objects.lock().unwrap()[object].clone();
    assert!(
        stored.data.as_ref() == archived.as_slice(),
        "the object differs"
    );
    assert_eq!(stored.content_type, "text/csv");
    let history = sb
        .ferry(["history", "rs/sales", "-o", "json"])
        .success()
        .json();
    assert_eq!(
        stored.metadata["sha256"],
        history[0]["sha256"].as_str().unwrap()
    );
    let delivery = receipt(&sb, "bucket");
    assert_eq!(delivery["receipt"]["details"]["eTag"], stored.etag);
    assert_eq!(
        delivery["receipt"]["details"]["versionId"],
        stored.generation.to_string()
    );

    // The slot again: nothing sent. A check: a probe written, read back and deleted.
    nothing_sent_again(&sb);
    probe_checked(&sb, &files, "gs");
    assert_eq!(
        gcs.objects
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        [object],
        "the probe is gone"
    );
    // Every request was signed by the service account (the simulator answers 401 otherwise).
    assert!(
        gcs.seen
            .lock()
            .unwrap()
            .iter()
            .all(|(_, _, status)| *status != 401),
        "{:?}",
        gcs.seen.lock().unwrap()
    );
}

#[test]
fn gcs_refusals_are_recorded_failures_naming_the_bucket_and_never_the_key() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gcs = runtime.block_on(common::gcs::start_gcs());
    let other = runtime.block_on(common::gcs::start_gcs());
    for (bucket, key, expected) in [
        (
            common::gcs::GCS_FORBIDDEN_BUCKET,
            &gcs.key_json,
            "AccessDenied",
        ),
        (common::gcs::GCS_BUCKET, &other.key_json, "401"),
    ] {
        let sb = sandbox(S3_SECRET_KEY);
        sb.write_secret("default", "gcs", "key.json", key);
        let files = sb.write(
            "bucket.yaml",
            &format!(
                "{}---\n{}",
                gcs_target(&gcs.endpoint, bucket),
                schedule(10, "bucket")
            ),
        );
        sb.apply(&[&files]);
        let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).failure();
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains(&format!("gs://{bucket}/sales/")), "{run:#?}");
        assert!(all.contains(expected), "{expected}: {run:#?}");
        assert!(!all.contains("PRIVATE KEY"), "{run:#?}");
        assert_eq!(receipt(&sb, "bucket")["outcome"], "failed");
    }
    assert!(gcs.objects.lock().unwrap().is_empty());
}

// ---- Azure Blob Storage -----------------------------------------------------------------------

/// Azurite's one account and its published key (learn.microsoft.com, "Use the Azurite emulator").
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite (Microsoft's Blob Storage emulator, npm `azurite`, installed under target/azurite by
/// scripts/test.sh), in memory on a free port, with container `reports` made through
/// Microsoft's own Python client (`azure-storage-blob`); killed when dropped. Azurite checks
/// Shared Key signatures.
struct Azurite {
    child: std::process::Child,
    /// The account's URL, path-style: `http://127.0.0.1:PORT/devstoreaccount1`.
    endpoint: String,
}

impl Azurite {
    fn start() -> Azurite {
        let binary = common::repo().join("target/azurite/node_modules/.bin/azurite-blob");
        assert!(
            binary.exists(),
            "{} is missing: scripts/test.sh installs it",
            binary.display()
        );
        let port = common::hosted::free_port();
        let child = std::process::Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--silent", "--disableTelemetry"])
            .args(["--skipApiVersionCheck"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("azurite starts");
        let azurite = Azurite {
            child,
            endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "azurite did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let made = azurite.python(&format!("client.create_container('{BUCKET}')"));
        assert_eq!(made, "", "container created");
        azurite
    }

    /// Runs `statement` in Python with `client`, a BlobServiceClient of the account; returns
    /// what it prints.
    fn python(&self, statement: &str) -> String {
        let script = format!(
            "from azure.storage.blob import BlobServiceClient\n\
             client = BlobServiceClient.from_connection_string(\
             'DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
             AccountKey={AZURITE_KEY};BlobEndpoint={}')\n{statement}\n",
            self.endpoint
        );
        let out = std::process::Command::new(common::python())
            .args(["-c", &script])
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn azure_target(endpoint: &str, container: &str) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: bucket}}
spec:
  objectStore:
    azure:
      account: {AZURITE_ACCOUNT}
      container: {container}
      endpoint: {endpoint}
      accessKeySecretRef: {{name: azure, key: key}}
    prefix: "partner/{{yyyy}}/"
"#
    )
}

#[test]
fn a_report_becomes_an_azure_blob_with_its_metadata_and_a_wrong_key_is_refused() {
    let azurite = Azurite::start();
    let sb = sandbox(S3_SECRET_KEY);
    sb.write_secret("default", "azure", "key", AZURITE_KEY);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            azure_target(&azurite.endpoint, BUCKET),
            schedule(1000, "bucket")
        ),
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).success();
    let blob = "partner/2026/sales_20260731003000.csv";
    assert!(
        run.stdout.contains(&format!(
            "bucket: delivered to azure://{AZURITE_ACCOUNT}/{BUCKET}/{blob}"
        )),
        "{run:#?}"
    );
    // Read back with Microsoft's client: the bytes, the type and the SHA-256 metadata.
    let archived = std::fs::read(sb.root().join("archive/sales_20260731003000.csv")).unwrap();
    let seen = azurite.python(&format!(
        "import hashlib, json\n\
         blob = client.get_blob_client('{BUCKET}', '{blob}')\n\
         data = blob.download_blob().readall()\n\
         props = blob.get_blob_properties()\n\
         print(json.dumps({{'sha': hashlib.sha256(data).hexdigest(), 'size': len(data), \
         'type': props.content_settings.content_type, 'meta': props.metadata}}))"
    ));
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    let history = sb
        .ferry(["history", "rs/sales", "-o", "json"])
        .success()
        .json();
    let sha = history[0]["sha256"].as_str().unwrap();
    assert_eq!(seen["size"], archived.len());
    assert_eq!(seen["sha"], sha);
    assert_eq!(seen["meta"]["sha256"], sha);
    assert_eq!(seen["type"], "text/csv");
    nothing_sent_again(&sb);
    probe_checked(&sb, &files, "azure");
    let names = azurite.python(&format!(
        "print([b.name for b in client.get_container_client('{BUCKET}').list_blobs()])"
    ));
    assert_eq!(names.trim(), format!("['{blob}']"), "the probe is gone");

    // Another key: Azurite checks the Shared Key signature and refuses it.
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let sb = sandbox(S3_SECRET_KEY);
    sb.write_secret("default", "azure", "key", wrong);
    let files = sb.write(
        "bucket.yaml",
        &format!(
            "{}---\n{}",
            azure_target(&azurite.endpoint, BUCKET).replace("partner/", "other/"),
            schedule(10, "bucket")
        ),
    );
    sb.apply(&[&files]);
    let run = sb.ferry(["run-now", "rs/sales", "--slot", SLOT]).failure();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("403"), "{run:#?}");
    assert!(!all.contains(wrong), "the key is shown: {run:#?}");
    assert_eq!(receipt(&sb, "bucket")["outcome"], "failed");
}
