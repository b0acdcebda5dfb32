//! `payment-gateway serve` as a process: the built binary, spawned on loopback against a mock
//! PG in the test, stopped with SIGTERM.

#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use http::StatusCode;
use payment_gateway::demo::CONFIG;
use payment_gateway::mock_pg::{Fault, MockPg};
use payment_gateway::{PaymentState, Store};
use serde_json::Value;
use support::TempDb;
use support::client::{Http, wait_until};
use tokio::sync::mpsc;

const BINARY: &str = env!("CARGO_BIN_EXE_payment-gateway");

/// Every variable `serve` reads, so that none leaks in from the test's environment.
const VARIABLES: [&str; 10] = [
    "PAYMENT_GATEWAY_ADDR",
    "PAYMENT_GATEWAY_PG_URL",
    "DATABASE_URL",
    "PAYMENT_GATEWAY_CONFIG",
    "PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS",
    "PAYMENT_GATEWAY_READ_TIMEOUT_MS",
    "PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS",
    "PAYMENT_GATEWAY_RECONCILE_EVERY_MS",
    "PAYMENT_GATEWAY_CONFIRM_WINDOW_MS",
    "PAYMENT_GATEWAY_LOG_FORMAT",
];

/// A `serve` process, killed if still running when dropped.
struct Serve {
    child: std::process::Child,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Serve {
    /// Spawns `serve` with `args` and `env`, its stdout and stderr piped (not a terminal).
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        assert_this_build();
        let mut command = Command::new(BINARY);
        command.arg("serve").args(args);
        for name in VARIABLES.iter().chain(&["NO_COLOR"]) {
            command.env_remove(name);
        }
        command
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, stdout_lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Self {
            child,
            stdout: stdout_lines,
            stderr: Some(stderr),
        }
    }

    /// The URL of the line `listening on URL`, within 30 s.
    async fn listening(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.recv())
            .await
            .expect("serve says where it listens within 30 s")
            .expect("serve printed `listening on` before it ended");
        line.strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a `listening on` line: {line}"))
            .to_owned()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
    }

    /// Its exit status, within `limit`, and everything it wrote to stderr.
    async fn exit(&mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "serve still running {limit:?} after it was asked to stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fails at once, saying why, when the binary is not the one these tests were built with:
/// a target directory shared with another checkout may have replaced it since.
fn assert_this_build() {
    let help = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS"),
        "{BINARY} is not this build (its `serve --help` has no \
         PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS): was it rebuilt from another checkout sharing \
         the target directory?\n{help}"
    );
}

fn sqlite(db: &TempDb) -> String {
    format!("sqlite://{}?mode=rwc", db.path().display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let (pg_url, database) = (pg.url(), sqlite(&db));
    let mut serve = Serve::spawn(
        &[
            "--addr",
            "127.0.0.1:0",
            "--pg-url",
            &pg_url,
            "--database-url",
            &database,
        ],
        &[],
    );
    let http = Http::new(serve.listening().await);
    assert_eq!(http.create("o-1", 25_000).await.0, StatusCode::CREATED);

    pg.set_fault(Fault::Slow(Duration::from_millis(800)));
    let confirming = tokio::spawn({
        let http = http.clone();
        async move { http.success("o-1", 25_000).await }
    });
    wait_until(
        "the confirmation reaches the PG",
        Duration::from_secs(5),
        || pg.hits() == 1,
    )
    .await;
    serve.terminate();

    let (status, body) = confirming.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["state"], "done");
    let (exit, stderr) = serve.exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{stderr}");
    // Text, written to a pipe: no escape sequences.
    assert!(!stderr.contains("\x1b["), "escape sequences in\n{stderr}");
    for expected in [
        "INFO payment_gateway::serve: [SERVE] payment service listening on http://127.0.0.1:",
        "[SHUTDOWN] SIGTERM received",
        "[SHUTDOWN] stopped: every request in flight finished",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_shutdown_timeout_is_cut_off_and_serve_exits_1() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let (pg_url, database) = (pg.url(), sqlite(&db));
    let mut serve = Serve::spawn(
        &[
            "--addr",
            "127.0.0.1:0",
            "--pg-url",
            &pg_url,
            "--database-url",
            &database,
            "--read-timeout-ms",
            "20000",
            "--shutdown-timeout-ms",
            "300",
        ],
        &[],
    );
    let http = Http::new(serve.listening().await);
    assert_eq!(http.create("o-1", 25_000).await.0, StatusCode::CREATED);

    pg.set_fault(Fault::Hang);
    let confirming = tokio::spawn({
        let http = http.clone();
        let path = Http::success_path("o-1", 25_000);
        async move { http.send(http::Method::POST, &path, "").await }
    });
    wait_until(
        "the confirmation reaches the PG",
        Duration::from_secs(5),
        || pg.hits() == 1,
    )
    .await;
    serve.terminate();

    // Well before the 20 s read timeout: the 300 ms drain, then the exit cuts it off.
    let (exit, stderr) = serve.exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(1), "{stderr}");
    let expected = "payment-gateway: requests were still in flight after the shutdown timeout \
                    of 300 ms (--shutdown-timeout-ms) and were cut off; their payments are left \
                    to the reconciler";
    assert!(stderr.contains(expected), "no `{expected}` in\n{stderr}");
    let answer = confirming.await.unwrap();
    assert!(
        answer.is_err(),
        "the cut-off request was answered: {answer:?}"
    );
    // As a crash would leave it: charged or not, the reconciler asks the PG.
    let store = Store::sqlite_file(db.path()).await.unwrap();
    assert_eq!(
        store.payment("o-1").await.unwrap().state,
        PaymentState::InProgress
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_comes_from_the_environment_and_json_logs_parse_line_by_line() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let config = std::env::temp_dir().join(format!(
        "payment-gateway-serve-process-{}.yml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        CONFIG.replace("read-timeout: 3s", "read-timeout: 1700ms"),
    )
    .unwrap();
    let (pg_url, database) = (pg.url(), sqlite(&db));
    let config_path = config.display().to_string();
    let mut serve = Serve::spawn(
        &[],
        &[
            ("PAYMENT_GATEWAY_ADDR", "127.0.0.1:0"),
            ("PAYMENT_GATEWAY_PG_URL", &pg_url),
            ("DATABASE_URL", &database),
            ("PAYMENT_GATEWAY_CONFIG", &config_path),
            ("PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS", "900"),
            ("PAYMENT_GATEWAY_SHUTDOWN_TIMEOUT_MS", "5000"),
            ("PAYMENT_GATEWAY_RECONCILE_EVERY_MS", "500"),
            ("PAYMENT_GATEWAY_LOG_FORMAT", "json"),
        ],
    );
    let http = Http::new(serve.listening().await);
    assert_eq!(http.create("o-1", 25_000).await.0, StatusCode::CREATED);
    let (status, body) = http.success("o-1", 25_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serve.terminate();
    let (exit, stderr) = serve.exit(Duration::from_secs(10)).await;
    let _ = std::fs::remove_file(&config);
    assert_eq!(exit.code(), Some(0), "{stderr}");

    // Its PG and its database are the environment's.
    assert_eq!(pg.ledger().len(), 1);
    let store = Store::sqlite_file(db.path()).await.unwrap();
    assert_eq!(
        store.payment("o-1").await.unwrap().state,
        PaymentState::Done
    );

    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let message = |line: &Value| line["message"].as_str().unwrap_or_default().to_owned();
    let started = lines
        .iter()
        .find(|l| message(l).starts_with("[SERVE] payment service listening on"))
        .unwrap_or_else(|| panic!("no start-up line in\n{stderr}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "payment_gateway::serve");
    assert_eq!(started["pg"], pg_url.as_str());
    // The environment's connect timeout over the file's 1100 ms; the file's read timeout.
    assert_eq!(started["connect_timeout_ms"], 900);
    assert_eq!(started["read_timeout_ms"], 1700);
    let draining = lines
        .iter()
        .find(|l| message(l).starts_with("[SHUTDOWN] no new connections"))
        .unwrap_or_else(|| panic!("no shutdown line in\n{stderr}"));
    assert_eq!(draining["drain_ms"], 5000);
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
        "{stderr}"
    );
}

#[test]
fn serve_help_names_every_environment_variable() {
    let output = Command::new(BINARY)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for name in VARIABLES {
        assert!(
            help.contains(&format!("[env: {name}")),
            "no {name} in\n{help}"
        );
    }
}
