//! `serve` as one instance of a fleet: two servers with one Redis (a `redis-server` of the
//! test's own on loopback; skipped without the binary unless `BREAKWATER_REQUIRE_REDIS=1`).

mod support;

use std::time::{Duration, Instant};

use breakwater::CircuitState;
use breakwater::circuit_breaker::{EventKind, TransitionCause};
use payment_gateway::PG_BREAKER;
use payment_gateway::fleet_run::LocalRedis;
use payment_gateway::mock_pg::MockPg;
use payment_gateway::serve::{FleetOptions, ServeOptions, Server};
use support::TempDb;

fn redis(test: &str) -> Option<LocalRedis> {
    match LocalRedis::start() {
        Ok(redis) => Some(redis),
        Err(e) => {
            assert!(
                std::env::var("BREAKWATER_REQUIRE_REDIS").as_deref() != Ok("1"),
                "{test}: redis-server is required (BREAKWATER_REQUIRE_REDIS=1): {e}"
            );
            println!("{test}: skipped: {e}");
            None
        }
    }
}

fn options(pg: &MockPg, db: &TempDb, fleet: FleetOptions) -> ServeOptions {
    ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        pg_url: pg.url(),
        database_url: format!("sqlite://{}?mode=rwc", db.path().display()),
        log_format: None,
        fleet,
        ..ServeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_one_redis_open_together() {
    let Some(redis) = redis("two instances") else {
        return;
    };
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let fleet = |instance: &str| FleetOptions {
        instance: Some(instance.to_owned()),
        redis_url: Some(redis.url()),
        // Its TTL (1.5 s) is longer than the test: a report gone is one deleted, not expired.
        heartbeat: Some(Duration::from_millis(500)),
        quorum: Some(1),
    };
    let a = Server::start(options(&pg, &db, fleet("pay-a")))
        .await
        .unwrap();
    let b = Server::start(options(&pg, &db, fleet("pay-b")))
        .await
        .unwrap();
    assert_eq!(a.fleet().unwrap().instance(), "pay-a");
    assert!(b.fleet().unwrap().is_connected());
    let (at_a, at_b) = (
        a.registry().circuit_breaker(PG_BREAKER),
        b.registry().circuit_breaker(PG_BREAKER),
    );
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    at_b.on_state_transition(move |e| {
        let _ = tx.send(e.kind().clone());
    });
    at_a.transition_to(CircuitState::Open);
    let event = tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("B opens on A's word")
        .unwrap();
    assert_eq!(
        event,
        EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::FleetQuorum { reporting: 1 },
        }
    );
    // Stopping A leaves the fleet: its report is deleted when `run` returns, well within its
    // TTL.
    let key = format!("breakwater:{PG_BREAKER}:i:pay-a");
    assert_eq!(redis_exists(&redis, &key).await, Some(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(a.run(async {
        let _ = stopped.await;
    }));
    let left = Instant::now();
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(redis_exists(&redis, &key).await, Some(false));
    assert!(left.elapsed() < Duration::from_millis(1_500));
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_fleet_section_joins_and_a_bad_one_is_named() {
    let Some(redis) = redis("file section") else {
        return;
    };
    let pg = MockPg::start().await.unwrap();
    let db = TempDb::new();
    let dir = std::env::temp_dir().join(format!("pgw-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("application.yml");
    let section = format!(
        "\nbreakwater.fleet:\n  redis-url: {}\n  quorum: 2\n  heartbeat: 50ms\n",
        redis.url()
    );
    std::fs::write(
        &config,
        format!("{}{section}", payment_gateway::demo::CONFIG),
    )
    .unwrap();
    let mut opts = options(
        &pg,
        &db,
        FleetOptions {
            instance: Some("pay-file".to_owned()),
            ..FleetOptions::default()
        },
    );
    opts.config = Some(config.clone());
    let server = Server::start(opts.clone()).await.unwrap();
    assert!(server.fleet().unwrap().is_connected());
    // Joined: its first report is written by the fleet's next round.
    let key = format!("breakwater:{PG_BREAKER}:i:pay-file");
    let start = Instant::now();
    while redis_exists(&redis, &key).await != Some(true) {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{key} never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server);
    // A section that cannot be used stops the start-up, naming the key, its line and value.
    let line = payment_gateway::demo::CONFIG.lines().count() + 4;
    std::fs::write(
        &config,
        format!(
            "{}{}",
            payment_gateway::demo::CONFIG,
            section.replace("quorum: 2", "quorum: 0")
        ),
    )
    .unwrap();
    let error = Server::start(opts).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "cannot read the fleet's settings: breakwater.fleet.quorum (line {line}): 0: a whole number of instances, at least 1"
        )
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether `key` exists, asked of Redis directly.
async fn redis_exists(redis: &LocalRedis, key: &str) -> Option<bool> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let url = redis.url();
    let addr = url.trim_start_matches("redis://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("*2\r\n$6\r\nEXISTS\r\n${}\r\n{key}\r\n", key.len());
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.ok()?;
    Some(line.trim_end() == ":1")
}
