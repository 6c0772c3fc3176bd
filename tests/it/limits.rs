//! Many schedules due at one slot against a server that allows 3 connections at once (the
//! test sshd behind the fault-injecting proxy, which refuses a connection that finds 3 others
//! open, as `MaxStartups` or a per-user cap would): with `maxConnections: 3` every run
//! succeeds and nothing is refused; with more, the server refuses some, so the limit is what
//! made the difference. `--max-concurrent-runs` queues the runs the same way. The proxy passes
//! each session at a partner's uplink speed (about a second per report), so sessions overlap
//! as they do on a real link whatever the machine's speed: on a loopback a session can end
//! before the next run reaches its delivery, and the control experiment would then prove
//! nothing.
//! Through the binary: `ferry run --once`.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use common::fault_proxy::{Fault, FaultProxy, Faults};
use common::{Sandbox, s};

const SCHEDULES: usize = 30;
/// The partner's uplink each way: ~400 KB reports take about a second.
const UPLINK_BYTES_PER_SEC: u64 = 400_000;

fn server(key: &str) -> String {
    common::test_server("sshd")
        .get(key)
        .unwrap_or_else(|| panic!("sshd.sh env has no {key}"))
        .clone()
}

/// `SCHEDULES` schedules due at 2026-07-31 00:30 Tokyo, each exporting ~400 KB to the SFTP
/// target `partner` behind `proxy`, at most `max_connections` at once.
fn many_schedules(
    sb: &Sandbox,
    proxy: &FaultProxy,
    dir: &str,
    max_connections: u32,
) -> std::path::PathBuf {
    let key = std::fs::read_to_string(server("SFTP_KEY_ED25519")).unwrap();
    sb.write_secret("default", "sftp", "id_ed25519", &key);
    std::fs::write(sb.root().join("empty.db"), "").unwrap();
    let mut docs = vec![format!(
        r#"apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: partner}}
spec:
  sftp:
    host: 127.0.0.1
    port: {port}
    directory: {dir}
    username: {user}
    privateKeySecretRef: {{name: sftp, key: id_ed25519}}
    hostKeys: ["{host_key}"]
    maxConnections: {max_connections}
"#,
        port = proxy.port(),
        user = server("SFTP_KEY_USER"),
        host_key = server("SFTP_HOST_KEY_ED25519"),
    )];
    for i in 0..SCHEDULES {
        docs.push(common::generated_export(
            &format!("r{i:02}"),
            8_000,
            "row %09d of one of many reports due at the same slot",
            "partner",
            2,
        ));
    }
    sb.write("many.yaml", &docs.join("---\n"))
}

/// Applies the schedules, then `ferry run --once --max-concurrent-runs RUNS` ten seconds after
/// their slot, through a proxy allowing `server_limit` connections; returns the proxy, the
/// run and the local directory the server wrote to.
fn due_at_once(
    max_connections: u32,
    runs: &str,
    server_limit: usize,
) -> (FaultProxy, common::Run, std::path::PathBuf, Sandbox) {
    let mut sb = Sandbox::new();
    let upstream: SocketAddr = format!("127.0.0.1:{}", server("SFTP_PORT"))
        .parse()
        .unwrap();
    let uplink = Fault::Slow {
        bytes_per_sec: UPLINK_BYTES_PER_SEC,
    };
    let proxy = FaultProxy::start_limited(upstream, Faults::all(uplink), server_limit);
    let dir = format!("upload/{}", common::unique_name("limits"));
    let files = many_schedules(&sb, &proxy, &dir, max_connections);
    sb.set_env("FERRY_NOW", "2026-07-30T10:00:00Z");
    sb.apply(&[&files]);
    // Ten seconds after 2026-07-31 00:30 Tokyo: every schedule is due.
    sb.set_env("FERRY_NOW", "2026-07-30T15:30:10Z");
    let run = sb.ferry([
        "run",
        "--once",
        "--max-concurrent-runs",
        runs,
        "-f",
        s(&files),
    ]);
    let local = Path::new(&server("SFTP_KEY_USER_HOME")).join(&dir);
    (proxy, run, local, sb)
}

/// The files in `dir` (then removes it).
fn delivered(dir: &Path) -> usize {
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(dir);
    n
}

#[test]
fn thirty_runs_due_at_once_stay_within_max_connections_and_all_deliver() {
    let (proxy, run, dir, _sb) = due_at_once(3, "30", 3);
    let run = run.success();
    assert!(
        run.stdout.contains(&format!("{SCHEDULES} succeeded"))
            || run.stderr.contains(&format!("{SCHEDULES} succeeded")),
        "{run:#?}"
    );
    assert_eq!(proxy.refused(), 0, "the server never had to refuse");
    assert_eq!(
        proxy.connections(),
        SCHEDULES,
        "one session per run, no retry"
    );
    assert_eq!(
        delivered(&dir),
        SCHEDULES,
        "every report arrived, nothing else"
    );
}

#[test]
fn without_a_low_enough_max_connections_the_same_server_refuses_sessions() {
    // The control experiment: the same runs allowed 12 sessions at once.
    let (proxy, _run, dir, _sb) = due_at_once(12, "30", 3);
    assert!(
        proxy.refused() > 0,
        "more than 3 sessions at once reached the server: {} refused",
        proxy.refused()
    );
    delivered(&dir);
}

#[test]
fn runs_beyond_max_concurrent_runs_wait_their_turn_and_all_run() {
    // maxConnections above the limit: the run limit is what keeps the sessions within it.
    let (proxy, run, dir, sb) = due_at_once(16, "2", 2);
    run.success();
    assert_eq!(proxy.refused(), 0, "two runs at a time");
    assert_eq!(delivered(&dir), SCHEDULES);
    // History tells how long after its slot each run started: `ferry run` came ten seconds
    // after the slot (FERRY_NOW holds the clock there, so queueing adds nothing visible).
    let history = sb.ferry(["history", "rs/r00"]).success();
    assert!(history.stdout.contains("STARTED"), "{}", history.stdout);
    assert!(history.stdout.contains("+10s"), "{}", history.stdout);
    let json = sb.ferry(["history", "rs/r29", "-o", "json"]).success();
    let runs: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(runs[0]["trigger"], "schedule");
    assert!(
        runs[0]["start_delay_seconds"].as_i64().unwrap() >= 10,
        "{runs}"
    );
}
