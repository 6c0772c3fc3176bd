//! Shared helpers of the integration tests: a sandbox per test (its own state file, secrets
//! directory and resource files in a tempdir), a runner for the `ferry` binary with a fixed
//! clock and no colour, and a small builder of YAML documents.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub mod fake_api;
pub mod fault_proxy;
pub mod gcs;
pub mod hosted;
pub mod s3;
pub mod webhook;

/// The instant every test runs at (`FERRY_NOW`).
pub const NOW: &str = "2026-07-30T00:00:00Z";

/// The repository root (examples/, crds/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A daily (00:30 Asia/Tokyo) ReportSchedule `name` exporting `rows` generated rows from the
/// SQLite file `empty.db` the caller writes (empty: the rows come from a recursive query):
/// columns `id` and `payload`, the SQL `printf` of `payload` with the row number (so its
/// length sets the file's size), as CSV `<name>_{yyyyMMdd}.csv` to `target`, with `attempts`
/// attempts 1 s apart.
pub fn generated_export(
    name: &str,
    rows: u32,
    payload: &str,
    target: &str,
    attempts: u32,
) -> String {
    format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {{name: {name}}}
spec:
  schedule: {{daily: {{at: "00:30"}}}}
  timeZone: Asia/Tokyo
  source:
    sql:
      url: "sqlite://empty.db"
      query: |
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
        SELECT i AS id, printf('{payload}', i) AS payload FROM n
  columns: [{{name: id}}, {{name: payload}}]
  format: {{csv: {{}}}}
  fileName: "{name}_{{yyyyMMdd}}.csv"
  deliverTo: [{{target: {target}}}]
  retry: {{attempts: {attempts}, backoff: 1s}}
"#
    )
}

/// Every entry of `dir` with its size (none when `dir` does not exist).
pub fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

/// A name no other test (of this process or another) uses: `<prefix>-<pid>-<nanoseconds>`,
/// for directories on the shared test servers.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos()
    )
}

/// The checkout whose `scripts/test-servers` start the test servers: this one, or the one
/// `FERRY_TEST_SERVERS_FROM` names, so that several worktrees share one set of servers (their
/// ports are fixed; each checkout starting its own would collide).
pub fn servers_root() -> PathBuf {
    std::env::var_os("FERRY_TEST_SERVERS_FROM")
        .map(PathBuf::from)
        .unwrap_or_else(repo)
}

/// The test PostgreSQL's URL (`scripts/test-servers/postgres.sh`), started once per binary.
pub fn pg_url() -> &'static str {
    static START: std::sync::Once = std::sync::Once::new();
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let script = servers_root().join("scripts/test-servers/postgres.sh");
    START.call_once(|| {
        let out = Command::new(&script)
            .arg("start")
            .output()
            .expect("postgres.sh start");
        assert!(
            out.status.success(),
            "postgres.sh start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    URL.get_or_init(|| {
        let out = Command::new(&script)
            .arg("url")
            .output()
            .expect("postgres.sh url");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// The test MariaDB's URL (`scripts/test-servers/mariadb.sh`, `mysql://ferry:ferry@...`),
/// started once per binary.
pub fn mariadb_url() -> &'static str {
    test_server("mariadb")
        .get("MARIADB_URL")
        .expect("mariadb.sh env prints MARIADB_URL")
}

/// A state in a new schema of the test PostgreSQL: the `--state` URL that uses it. With
/// `FERRY_TEST_STATE=postgres` every sandbox gets one, so the CLI suites run against the
/// PostgreSQL backend too.
pub fn postgres_state() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "sb_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let url = pg_url();
    let status = Command::new("psql")
        .arg(url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE SCHEMA {schema}"))
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "CREATE SCHEMA {schema}");
    PathBuf::from(format!("{url}?options=-c%20search_path%3D{schema}"))
}

/// A finished `ferry` process.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Asserts the exit code and returns self.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "expected exit code {code}, got {self:#?}");
        self
    }

    /// Asserts exit code 1 (the documented error code) and returns self.
    #[track_caller]
    pub fn failure(self) -> Self {
        self.code(1)
    }

    /// Standard output parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// The lines of standard error.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// One test's private world: a tempdir holding `state/state.db`, `secrets/` and `files/`.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// `--state`.
    pub state: PathBuf,
    /// `--secrets-dir`.
    pub secrets: PathBuf,
    /// Where [`Sandbox::write`] puts resource files.
    pub files: PathBuf,
    envs: Vec<(String, String)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh sandbox.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a tempdir");
        let state = match std::env::var("FERRY_TEST_STATE").as_deref() {
            Ok("postgres") => postgres_state(),
            _ => dir.path().join("state").join("state.db"),
        };
        let secrets = dir.path().join("secrets");
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).expect("files dir");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        Sandbox {
            dir,
            state,
            secrets,
            files,
            envs: Vec::new(),
        }
    }

    /// The tempdir itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Where ferry keeps files next to the state (staging, hosted SFTP data): the state
    /// file's directory, or `.ferry` in the working directory for a PostgreSQL state.
    pub fn work_dir(&self) -> PathBuf {
        if self.state.to_string_lossy().starts_with("postgres://") {
            self.root().join(".ferry")
        } else {
            self.state.parent().expect("state dir").to_path_buf()
        }
    }

    /// Adds an environment variable to every later run (e.g. `FERRY_SECRET_...`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
    }

    /// Removes a variable added with [`Sandbox::set_env`].
    pub fn remove_env(&mut self, key: &str) {
        self.envs.retain(|(k, _)| k != key);
    }

    /// Writes `text` to `files/<name>` (creating directories) and returns the path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.files.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write fixture");
        path
    }

    /// Writes a secret file `<secrets-dir>/<namespace>/<name>/<key>`.
    pub fn write_secret(&self, namespace: &str, name: &str, key: &str, value: &str) -> PathBuf {
        let path = self.secrets.join(namespace).join(name).join(key);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, value).expect("write secret");
        path
    }

    /// Runs ferry with exactly `args` (no `--state`/`--secrets-dir` added).
    pub fn run_raw<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = ferry_command();
        cmd.args(args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        // Relative paths in the examples (sqlite URLs, out dirs) stay inside the sandbox.
        cmd.current_dir(self.root());
        finish(cmd)
    }

    /// Runs ferry with `args`, then `--state` and `--secrets-dir` of this sandbox.
    pub fn ferry<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        all.push("--state".into());
        all.push(self.state.clone().into_os_string());
        all.push("--secrets-dir".into());
        all.push(self.secrets.clone().into_os_string());
        self.run_raw(all)
    }

    /// `ferry apply -f FILES... --auto-approve`, asserting success.
    #[track_caller]
    pub fn apply(&self, files: &[&Path]) -> Run {
        let mut args: Vec<std::ffi::OsString> = vec!["apply".into(), "-f".into()];
        args.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        args.push("--auto-approve".into());
        self.ferry(args).success()
    }

    /// `ferry plan -f FILES... -o json`, asserting success, parsed.
    #[track_caller]
    pub fn plan_json(&self, files: &[&Path]) -> Value {
        let mut args: Vec<std::ffi::OsString> = vec!["plan".into(), "-f".into()];
        args.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        args.extend(["-o".into(), "json".into()]);
        self.ferry(args).success().json()
    }

    /// Everything observable about the state: lineage, serial, and `ferry get -A -o json` of
    /// every kind. Two equal snapshots mean nothing changed.
    #[track_caller]
    pub fn snapshot(&self) -> StateSnapshot {
        let empty = self.root().join("no-resources.yaml");
        std::fs::write(&empty, "# no resources\n").expect("write");
        let plan = self
            .ferry(["plan", "-f", s(&empty), "-o", "json", "--allow-empty"])
            .success()
            .json();
        let get = |kind: &str| {
            self.ferry(["get", kind, "-A", "-o", "json"])
                .success()
                .json()
        };
        StateSnapshot {
            lineage: plan["lineage"].as_str().expect("lineage").to_string(),
            serial: plan["serial"].as_u64().expect("serial"),
            report_schedules: get("rs"),
            delivery_targets: get("dt"),
            customer_mappings: get("cm"),
        }
    }
}

/// See [`Sandbox::snapshot`].
#[derive(Debug, PartialEq)]
pub struct StateSnapshot {
    pub lineage: String,
    pub serial: u64,
    pub report_schedules: Value,
    pub delivery_targets: Value,
    pub customer_mappings: Value,
}

impl StateSnapshot {
    /// How many resources the state holds.
    pub fn len(&self) -> usize {
        [
            &self.report_schedules,
            &self.delivery_targets,
            &self.customer_mappings,
        ]
        .iter()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum()
    }
}

/// The Python interpreter for test helpers: `FERRY_TEST_PYTHON` (the virtualenv
/// `scripts/test.sh` makes under `target/`, with openpyxl and the other test packages), else
/// `python3` from PATH.
pub fn python() -> PathBuf {
    std::env::var_os("FERRY_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// The ferry binary with a clean environment: fixed clock, no colour, no inherited FERRY_*
/// variables (state, secrets dir, secret overrides, log filter).
pub fn ferry_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FERRY_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("FERRY_NOW", NOW)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn finish(mut cmd: Command) -> Run {
    let out = cmd.output().expect("ferry runs");
    Run {
        code: out
            .status
            .code()
            .expect("ferry exits (not killed by a signal)"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
#[track_caller]
pub fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in fixture:\n{text}"));
    line_col_at(text, at)
}

/// 1-based line and column of the `nth` (0-based) occurrence of `needle` in `text`.
#[track_caller]
pub fn nth_line_col(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("occurrence {nth} of `{needle}` not in fixture:\n{text}"))
        .0;
    line_col_at(text, at)
}

fn line_col_at(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The stderr line located at `path:line:col: `, with that prefix removed. Panics (showing all
/// of stderr) when there is none.
#[track_caller]
pub fn diag_at<'a>(stderr: &'a str, path: &Path, line: usize, col: usize) -> &'a str {
    let prefix = format!("{}:{line}:{col}: ", path.display());
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no diagnostic at `{prefix}` in stderr:\n{stderr}"))
}

/// The stderr line for `resource` (`Kind/name`) and `field`, whatever its position: returns
/// `(line, col, message)`.
#[track_caller]
pub fn diag_for<'a>(
    stderr: &'a str,
    path: &Path,
    resource: &str,
    field: &str,
) -> (usize, usize, &'a str) {
    let file_prefix = format!("{}:", path.display());
    let middle = format!(": {resource}: {field}: ");
    for l in stderr.lines() {
        let Some(rest) = l.strip_prefix(&file_prefix) else {
            continue;
        };
        let Some(i) = rest.find(&middle) else {
            continue;
        };
        let mut pos = rest[..i].split(':');
        let (Some(line), Some(col), None) = (pos.next(), pos.next(), pos.next()) else {
            continue;
        };
        let (Ok(line), Ok(col)) = (line.parse(), col.parse()) else {
            continue;
        };
        return (line, col, &rest[i + middle.len()..]);
    }
    panic!("no diagnostic `{file_prefix}L:C{middle}...` in stderr:\n{stderr}")
}

/// A YAML document under construction: `apiVersion`, `kind`, `metadata` and an ordered list
/// of top-level `spec` fields. Values are YAML text: one line (`"00:30"`, `{daily: {at:
/// "00:30"}}`) or several lines written at indentation 0, which are indented under the key.
#[derive(Clone, Debug)]
pub struct Doc {
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    top: Vec<(String, String)>,
    spec: Vec<(String, String)>,
}

impl Doc {
    /// A document of `kind` named `name` with an empty spec.
    pub fn new(kind: &str, name: &str) -> Self {
        Doc {
            api_version: "ferry.dev/v1alpha1".into(),
            kind: kind.into(),
            name: name.into(),
            namespace: None,
            top: Vec::new(),
            spec: Vec::new(),
        }
    }

    /// Sets `metadata.namespace`.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// Replaces `apiVersion`.
    pub fn api_version(mut self, v: &str) -> Self {
        self.api_version = v.into();
        self
    }

    /// Adds a top-level field next to `spec` (e.g. an unknown one).
    pub fn top(mut self, key: &str, value: &str) -> Self {
        self.top.push((key.into(), value.into()));
        self
    }

    /// Sets a spec field (replacing it in place when present, else appending it).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        match self.spec.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.into(),
            None => self.spec.push((key.into(), value.into())),
        }
        self
    }

    /// Removes a spec field.
    pub fn unset(mut self, key: &str) -> Self {
        self.spec.retain(|(k, _)| k != key);
        self
    }

    /// The YAML text (ends with a newline).
    pub fn render(&self) -> String {
        let mut out = format!(
            "apiVersion: {}\nkind: {}\nmetadata:\n  name: {}\n",
            self.api_version, self.kind, self.name
        );
        if let Some(ns) = &self.namespace {
            out.push_str(&format!("  namespace: {ns}\n"));
        }
        for (k, v) in &self.top {
            field(&mut out, 0, k, v);
        }
        if self.spec.is_empty() {
            out.push_str("spec: {}\n");
        } else {
            out.push_str("spec:\n");
            for (k, v) in &self.spec {
                field(&mut out, 2, k, v);
            }
        }
        out
    }
}

fn field(out: &mut String, indent: usize, key: &str, value: &str) {
    let pad = " ".repeat(indent);
    if value.contains('\n') {
        out.push_str(&format!("{pad}{key}:\n"));
        for line in value.trim_end_matches('\n').lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("{pad}  {line}\n"));
            }
        }
    } else {
        out.push_str(&format!("{pad}{key}: {value}\n"));
    }
}

/// Joins documents into one multi-document stream.
pub fn stream(docs: &[Doc]) -> String {
    docs.iter()
        .map(Doc::render)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A `localDir` DeliveryTarget.
pub fn local_dir(name: &str) -> Doc {
    Doc::new("DeliveryTarget", name).set("localDir", &format!("path: out/{name}\n"))
}

/// An FTP DeliveryTarget whose password is the secret `{name: <name>, key: password}`.
pub fn ftp_with_password(name: &str) -> Doc {
    Doc::new("DeliveryTarget", name).set(
        "ftp",
        &format!(
            "host: ftp.partner.example\nusername: partner\npasswordSecretRef:\n  name: {name}\n  key: password\n"
        ),
    )
}

/// A ConnectWise (PSA) DeliveryTarget.
pub fn connectwise(name: &str) -> Doc {
    Doc::new("DeliveryTarget", name).set(
        "connectwise",
        "site: api-na.myconnectwise.net\n\
         companyId: mymsp\n\
         clientId: 7b2c0000-0000-0000-0000-000000000000\n\
         publicKeySecretRef: {name: cw, key: public}\n\
         privateKeySecretRef: {name: cw, key: private}\n",
    )
}

/// A valid daily ReportSchedule at 00:30 Asia/Tokyo delivering CSV to `target`.
pub fn report_schedule(name: &str, target: &str) -> Doc {
    Doc::new("ReportSchedule", name)
        .set("schedule", "daily:\n  at: \"00:30\"\n")
        .set("timeZone", "Asia/Tokyo")
        .set(
            "source",
            "sql:\n  url: \"sqlite://shop.db\"\n  query: \"SELECT id, total FROM orders\"\nwindow: previousDay\n",
        )
        .set("format", "csv:\n  header: true\n")
        .set("fileName", "\"orders_{yyyyMMddHHmmss}.csv\"")
        .set("deliverTo", &format!("- target: {target}\n"))
}

/// A valid CustomerMapping of `customer` to the ConnectWise target `psa`, on general settings.
pub fn customer_mapping(name: &str, psa: &str) -> Doc {
    Doc::new("CustomerMapping", name)
        .set("customer", name)
        .set("psa", &format!("{{target: {psa}}}"))
        .set("company", "{identifier: ACME01}")
        .set(
            "contracts",
            "- {product: endpoint-protection, agreement: \"Managed Services\", item: EP-PROT}\n",
        )
        .set("settings", "general")
}

/// A path as `&str`, to mix paths and flags in one argument list (tempdir paths are UTF-8).
#[track_caller]
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The `KEY=VALUE` lines of `scripts/test-servers/<server>.sh env`, after `start` made sure the
/// server runs (once per test binary and server). Panics with the script's output when it
/// cannot start: a missing server fails the tests, it never skips them.
pub fn test_server(server: &str) -> &'static std::collections::BTreeMap<String, String> {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, OnceLock};
    static SERVERS: OnceLock<Mutex<BTreeMap<String, &'static BTreeMap<String, String>>>> =
        OnceLock::new();
    let mut servers = SERVERS.get_or_init(Default::default).lock().unwrap();
    if let Some(env) = servers.get(server) {
        return env;
    }
    let script = servers_root().join(format!("scripts/test-servers/{server}.sh"));
    let start = Command::new("bash")
        .arg(&script)
        .arg("start")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        start.status.success(),
        "{server}.sh start failed:\n{}{}",
        String::from_utf8_lossy(&start.stdout),
        String::from_utf8_lossy(&start.stderr)
    );
    let out = Command::new("bash")
        .arg(&script)
        .arg("env")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(out.status.success(), "{server}.sh env failed");
    let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env: &'static BTreeMap<String, String> = Box::leak(Box::new(env));
    servers.insert(server.to_string(), env);
    env
}

/// `ferry run-now rs/SCHEDULE --slot SLOT` in `sb` (its clock at 2026-07-30) with failpoint
/// `point` (`src/failpoint.rs`): it must die of SIGKILL there.
pub fn run_now_killed_at(sb: &Sandbox, schedule: &str, slot: &str, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = ferry_command()
        .args(["run-now", &format!("rs/{schedule}"), "--slot", slot])
        .arg("--state")
        .arg(&sb.state)
        .arg("--secrets-dir")
        .arg(&sb.secrets)
        .env("FERRY_NOW", "2026-07-30T00:00:00Z")
        .env("FERRY_FAILPOINT", point)
        .current_dir(sb.root())
        .output()
        .expect("ferry runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "ferry must be killed at {point}: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.contains(&format!("failpoint {point}")), "{stderr}");
}
