//! `serve`'s own start-up path, in-process (`payment_gateway::serve`): health, where the PG
//! client's timeouts come from, and graceful shutdown. The spawned binary is tested in
//! `serve_process.rs`, breaker metrics in `serve_metrics.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breakwater::CircuitState;
use http::{Method, StatusCode};
use payment_gateway::demo::CONFIG;
use payment_gateway::mock_pg::{Fault, MockPg};
use payment_gateway::serve::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, ServeError, ServeOptions, Server,
};
use payment_gateway::{PG_BREAKER, PaymentState, Store};
use serde_json::json;
use support::TempDb;
use support::client::{Http, wait_until};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn options(pg: &MockPg, db: &TempDb) -> ServeOptions {
    ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        pg_url: pg.url(),
        database_url: format!("sqlite://{}?mode=rwc", db.path().display()),
        log_format: None,
        ..ServeOptions::default()
    }
}

/// A server running until `stop` is sent.
struct Running {
    http: Http,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

fn run(server: Server) -> Running {
    let http = Http::new(server.url());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running { http, stop, task }
}

impl Running {
    /// Asks it to stop; how `run` ended, within `limit`.
    async fn stop(self, limit: Duration) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        tokio::time::timeout(limit, self.task)
            .await
            .expect("serve stops within its bound")
            .unwrap()
    }
}

/// A configuration file of its own, removed when dropped.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(text: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "payment-gateway-serve-{}-{}.yml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn ready_stays_200_with_the_breaker_open_and_reports_it() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let server = Server::start(options(&pg, &db)).await.unwrap();
    let breaker = server.registry().circuit_breaker(PG_BREAKER);
    let running = run(server);
    let http = running.http.clone();

    let (status, body) = http.json(Method::GET, "/health/live", "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "up" })));
    let (status, body) = http.json(Method::GET, "/health/ready", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "up");
    assert_eq!(body["database"], json!({ "status": "up" }));
    assert_eq!(body["breakerStatus"], "up");
    assert_eq!(body["breakers"].as_array().unwrap().len(), 1);
    assert_eq!(body["breakers"][0]["name"], PG_BREAKER);
    assert_eq!(body["breakers"][0]["state"], "closed");

    // Open and forced open alike: reported, and still ready.
    for (state, name) in [
        (CircuitState::Open, "open"),
        (CircuitState::ForcedOpen, "forced_open"),
    ] {
        breaker.transition_to(state);
        for path in ["/health/ready", "/health"] {
            let (status, body) = http.json(Method::GET, path, "").await;
            assert_eq!(status, StatusCode::OK, "{path} with the breaker {name}");
            assert_eq!(body["status"], "up", "{path}");
            assert_eq!(body["database"], json!({ "status": "up" }), "{path}");
            assert_eq!(body["breakerStatus"], "down", "{path}");
            assert_eq!(body["breakers"][0]["name"], PG_BREAKER, "{path}");
            assert_eq!(body["breakers"][0]["state"], name, "{path}");
        }
    }
    breaker.transition_to(CircuitState::HalfOpen);
    let (status, body) = http.json(Method::GET, "/health/ready", "").await;
    assert_eq!(
        (status, &body["breakerStatus"]),
        (StatusCode::OK, &json!("degraded"))
    );

    running.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn ready_is_503_when_the_database_does_not_answer_and_live_stays_200() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let server = Server::start(options(&pg, &db)).await.unwrap();
    let store = server.store().clone();
    let running = run(server);
    let http = running.http.clone();

    store.close().await;
    for path in ["/health/ready", "/health"] {
        let (status, body) = http.json(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["status"], "down", "{path}");
        assert_eq!(body["database"]["status"], "down", "{path}");
        let error = body["database"]["error"].as_str().unwrap();
        assert!(error.starts_with("database error: "), "{path}: {error}");
        // The breakers are still reported.
        assert_eq!(body["breakerStatus"], "up", "{path}");
        assert_eq!(body["breakers"][0]["state"], "closed", "{path}");
    }
    let (status, body) = http.json(Method::GET, "/health/live", "").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "up" })));

    running.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_connections_and_finishes_the_requests_in_flight() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let server = Server::start(options(&pg, &db)).await.unwrap();
    let addr = server.addr();
    let running = run(server);
    let http = running.http.clone();
    assert_eq!(http.create("o-1", 25_000).await.0, StatusCode::CREATED);

    pg.set_fault(Fault::Slow(Duration::from_secs(2)));
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
    let stop = running.stop;
    let _ = stop.send(());

    // The listener closes at once; the confirmation is still waiting for the PG.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting connections 1 s after the shutdown began"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!confirming.is_finished(), "the confirmation ended early");

    let (status, body) = confirming.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["state"], "done");
    let ran = tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("serve stops once the request is done")
        .unwrap();
    assert_eq!(ran, Ok(()));
    let store = Store::sqlite_file(db.path()).await.unwrap();
    assert_eq!(
        store.payment("o-1").await.unwrap().state,
        PaymentState::Done
    );
}

#[tokio::test]
async fn the_pg_timeouts_come_from_the_options_over_the_file_over_the_defaults() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let timeouts = |server: &Server| {
        let pg = server.pg_settings();
        (pg.connect_timeout, pg.read_timeout)
    };

    // The built-in application.yml gives the defaults' values.
    let server = Server::start(options(&pg, &db)).await.unwrap();
    assert_eq!(
        timeouts(&server),
        (Duration::from_millis(1100), Duration::from_secs(3))
    );
    drop(server);

    let file = ConfigFile::new(
        &CONFIG
            .replace("connect-timeout: 1100ms", "connect-timeout: 2s")
            .replace("read-timeout: 3s", "read-timeout: 1500"),
    );
    let mut with_file = options(&pg, &db);
    with_file.config = Some(file.path().to_owned());
    let server = Server::start(with_file.clone()).await.unwrap();
    assert_eq!(
        timeouts(&server),
        (Duration::from_secs(2), Duration::from_millis(1500))
    );
    drop(server);

    with_file.connect_timeout = Some(Duration::from_millis(700));
    let server = Server::start(with_file).await.unwrap();
    assert_eq!(
        timeouts(&server),
        (Duration::from_millis(700), Duration::from_millis(1500))
    );
    drop(server);

    // A file silent on them: the defaults.
    let silent = ConfigFile::new(
        "resilience4j.circuitbreaker:\n  instances:\n    beeceptor-payment:\n      \
         sliding-window-size: 10\n",
    );
    let mut with_silent = options(&pg, &db);
    with_silent.config = Some(silent.path().to_owned());
    let server = Server::start(with_silent).await.unwrap();
    assert_eq!(
        timeouts(&server),
        (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT)
    );
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_the_key_the_value_and_what_is_allowed() {
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let text = CONFIG.replace("read-timeout: 3s", "read-timeout: 3 seconds");
    let line = text
        .lines()
        .position(|l| l.contains("read-timeout: 3 seconds"))
        .unwrap()
        + 1;
    let file = ConfigFile::new(&text);
    let mut bad = options(&pg, &db);
    bad.config = Some(file.path().to_owned());
    assert_eq!(
        Server::start(bad).await.unwrap_err().to_string(),
        format!(
            "`payment-gateway.pg.read-timeout` at line {line} of {} is `3 seconds`: it must be \
             a duration from 1ms to 10m: whole milliseconds (`3000`) or a whole number with a \
             unit of ms, s or m (`1100ms`, `3s`)",
            file.path().display()
        )
    );

    let mut zero = options(&pg, &db);
    zero.read_timeout = Some(Duration::ZERO);
    assert_eq!(
        Server::start(zero).await.unwrap_err().to_string(),
        "--read-timeout-ms 0 is not allowed: it must be from 1 to 600000"
    );

    let mut toml = options(&pg, &db);
    toml.config = Some(PathBuf::from("application.toml"));
    assert_eq!(
        Server::start(toml).await.unwrap_err().to_string(),
        "--config application.toml is not allowed: it must be a YAML file (.yml or .yaml)"
    );
}
