//! Fleets against a real `redis-server` on loopback (one of each test's own): three instances
//! in one process (three breakers, three fleet handles), real time, short heartbeats, bounded
//! waits.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use breakwater::circuit_breaker::{EventKind, TransitionCause};
use breakwater::classify::Outcome;
use breakwater::{CircuitBreaker, CircuitState};
use breakwater_fleet::{Fleet, FleetEvent};
use support::{RedisServer, eventually};

const HEARTBEAT: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(2);

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder("pg")
        .count_window(4)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .permitted_calls_in_half_open(2)
        .wait_duration_in_open(WAIT)
        .build()
        .unwrap()
}

fn breaker_named_pg() -> CircuitBreaker {
    breaker()
}

async fn fleet(redis: &RedisServer, instance: &str, quorum: u32) -> Fleet {
    Fleet::builder(redis.url())
        .instance(instance)
        .heartbeat(HEARTBEAT)
        .quorum(quorum)
        .connect()
        .await
        .unwrap()
}

/// One instance: its fleet, and its breaker joined.
async fn joined(redis: &RedisServer, instance: &str, quorum: u32) -> (Fleet, CircuitBreaker) {
    let fleet = fleet(redis, instance, quorum).await;
    assert!(fleet.is_connected());
    let breaker = breaker();
    assert!(fleet.join(&breaker));
    (fleet, breaker)
}

/// Three instances, each with its breaker joined.
async fn three(redis: &RedisServer, quorum: u32) -> Vec<(Fleet, CircuitBreaker)> {
    let mut instances = Vec::new();
    for i in 1..=3 {
        instances.push(joined(redis, &format!("pay-{i}"), quorum).await);
    }
    // Everyone has published once.
    tokio::time::sleep(HEARTBEAT * 2).await;
    instances
}

/// The move an instance makes when it probes (for the fleet, or for itself).
fn probing() -> EventKind {
    EventKind::StateTransition {
        from: CircuitState::Open,
        to: CircuitState::HalfOpen,
        cause: TransitionCause::WaitElapsed,
    }
}

/// Failures until the breaker opens on its own (four at most: a window of four).
fn trip(breaker: &CircuitBreaker) {
    for _ in 0..4 {
        if breaker.state() == CircuitState::Closed {
            breaker.try_acquire().unwrap().record(Outcome::Failure);
        }
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

fn transitions(
    breaker: &CircuitBreaker,
) -> tokio::sync::mpsc::UnboundedReceiver<(EventKind, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    breaker.on_state_transition(move |e| {
        let _ = tx.send((e.kind().clone(), Instant::now()));
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_two_opens_the_third_within_two_heartbeats_for_their_time_left() {
    let Some(redis) = RedisServer::start("quorum") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    let (a, b, c) = (&fleet[0].1, &fleet[1].1, &fleet[2].1);
    let mut at_c = transitions(c);
    trip(a);
    // One instance alone: the others stay closed (checked again below, at length).
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert_eq!(c.state(), CircuitState::Closed);
    trip(b);
    let second = Instant::now();
    let (event, when) = tokio::time::timeout(HEARTBEAT * 10, at_c.recv())
        .await
        .expect("C opens")
        .unwrap();
    assert_eq!(
        event,
        EventKind::StateTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            cause: TransitionCause::FleetQuorum { reporting: 2 },
        }
    );
    let took = when - second;
    assert!(
        took <= HEARTBEAT * 2,
        "C opened {took:?} after the quorum, more than two heartbeats"
    );
    // For the longest time the reporters had left (A's, opened earlier, is shorter than B's),
    // less the time the news took: never longer than B's own wait.
    let left = c.metrics().retry_after.unwrap();
    assert!(
        left <= WAIT && left >= WAIT - HEARTBEAT * 3,
        "C stays open {left:?}"
    );
    // The view names both reporters, open on their own evidence.
    let view = fleet[2].0.view("pg").unwrap();
    let mut open: Vec<_> = view
        .iter()
        .filter(|p| p.own_evidence)
        .map(|p| p.instance.as_str())
        .collect();
    open.sort_unstable();
    assert_eq!(open, ["pay-1", "pay-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_failing_alone_does_not_open_the_others() {
    let Some(redis) = RedisServer::start("alone") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    trip(&fleet[0].1);
    tokio::time::sleep(HEARTBEAT * 8).await;
    assert_eq!(fleet[1].1.state(), CircuitState::Closed);
    assert_eq!(fleet[2].1.state(), CircuitState::Closed);
    // Both saw it: it is not that the news did not arrive.
    for (handle, _) in &fleet[1..] {
        let view = handle.view("pg").unwrap();
        let a = view.iter().find(|p| p.instance == "pay-1").unwrap();
        assert_eq!(a.state, CircuitState::Open);
        assert!(a.own_evidence);
        assert_eq!((a.calls, a.failed), (4, 4));
    }
    // An opening the fleet made does not count toward a quorum: with quorum 1, A's opening
    // opens B and C, and they are reported as the fleet's.
    let Some(redis) = RedisServer::start("alone, quorum 1") else {
        return;
    };
    let fleet = three(&redis, 1).await;
    trip(&fleet[0].1);
    let opened = eventually(HEARTBEAT * 10, || {
        fleet[1..]
            .iter()
            .all(|(_, b)| b.state() == CircuitState::Open)
    })
    .await;
    assert!(opened.is_some());
    tokio::time::sleep(HEARTBEAT * 2).await;
    let view = fleet[0].0.view("pg").unwrap();
    assert_eq!(view.len(), 2);
    assert!(
        view.iter()
            .all(|p| p.state == CircuitState::Open && !p.own_evidence)
    );
}

/// Calls every 5 ms on each instance for `time`, against a downstream that has recovered;
/// returns the calls each instance let through while half-open (its probes).
async fn traffic(fleet: &[(Fleet, CircuitBreaker)], time: Duration) -> Vec<usize> {
    let probes: Vec<Arc<AtomicUsize>> = fleet.iter().map(|_| Arc::default()).collect();
    let start = Instant::now();
    while start.elapsed() < time {
        for ((_, breaker), probes) in fleet.iter().zip(&probes) {
            // Admitted while not closed: a probe (the first one moves it from open).
            let probe = breaker.state() != CircuitState::Closed;
            if let Ok(permit) = breaker.try_acquire() {
                if probe {
                    probes.fetch_add(1, Ordering::Relaxed);
                }
                permit.record(Outcome::Success);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    probes.iter().map(|p| p.load(Ordering::Relaxed)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_downstream_sees_one_instances_probes_and_the_fleet_closes_on_them() {
    let Some(redis) = RedisServer::start("prober") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    let mut events: Vec<_> = fleet.iter().map(|(_, b)| transitions(b)).collect();
    trip(&fleet[0].1);
    trip(&fleet[1].1);
    assert!(
        eventually(HEARTBEAT * 10, || fleet[2].1.state() == CircuitState::Open)
            .await
            .is_some()
    );
    // Past every wait, with calls arriving all along.
    let probes = traffic(&fleet, WAIT + HEARTBEAT * 10).await;
    assert_eq!(
        probes.iter().sum::<usize>(),
        2,
        "probes per instance: {probes:?}"
    );
    assert!(fleet.iter().all(|(_, b)| b.state() == CircuitState::Closed));
    // The prober closed on its probes; the two others on the fleet's word.
    let mut causes = Vec::new();
    for rx in &mut events {
        while let Ok((event, _)) = rx.try_recv() {
            if let EventKind::StateTransition {
                to: CircuitState::Closed,
                cause,
                ..
            } = event
            {
                causes.push(cause);
            }
        }
    }
    let fleet_closed = causes
        .iter()
        .filter(|c| **c == TransitionCause::FleetProbesSucceeded)
        .count();
    let probed = causes
        .iter()
        .filter(|c| **c == TransitionCause::ProbesSucceeded)
        .count();
    assert_eq!((probed, fleet_closed), (1, 2), "{causes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fleet_every_instance_probes() {
    // The same traffic with no fleet: three instances, three sets of probes (the figure the
    // fleet's test above is measured against).
    let fleet: Vec<(Option<Fleet>, CircuitBreaker)> = (0..3).map(|_| (None, breaker())).collect();
    for (_, b) in &fleet {
        trip(b);
    }
    let mut probes = 0;
    let start = Instant::now();
    while start.elapsed() < WAIT + HEARTBEAT * 5 {
        for (_, breaker) in &fleet {
            let probe = breaker.state() != CircuitState::Closed;
            if let Ok(permit) = breaker.try_acquire() {
                probes += usize::from(probe);
                permit.record(Outcome::Success);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(probes, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_calls_never_wait_breakers_go_local_and_rejoin() {
    let Some(mut redis) = RedisServer::start("restart") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    let mut events = fleet[2].0.events();
    redis.kill();
    // Calls go on at their usual pace: 3,000 through the three breakers.
    let start = Instant::now();
    for _ in 0..1_000 {
        for (_, b) in &fleet {
            b.try_acquire().unwrap().record(Outcome::Success);
        }
    }
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    // Local-only once the view is older than the TTL (three heartbeats), said once.
    let event = tokio::time::timeout(HEARTBEAT * 10, events.recv())
        .await
        .expect("local-only is announced")
        .unwrap();
    assert!(matches!(event, FleetEvent::LocalOnly { .. }), "{event:?}");
    assert!(
        eventually(HEARTBEAT * 5, || fleet
            .iter()
            .all(|(f, _)| !f.is_connected()))
        .await
        .is_some()
    );
    assert!(fleet.iter().all(|(_, b)| !b.probes_held()));
    // Alone, each breaker still works: A opens by itself and probes by itself.
    trip(&fleet[0].1);
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert_eq!(fleet[1].1.state(), CircuitState::Closed);
    redis.restart();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("rejoined is announced")
        .unwrap();
    assert_eq!(event, FleetEvent::Rejoined);
    assert!(
        eventually(HEARTBEAT * 10, || fleet
            .iter()
            .all(|(f, _)| f.is_connected()))
        .await
        .is_some()
    );
    // And the fleet works again: B opens too, so C opens on the quorum.
    trip(&fleet[1].1);
    assert!(
        eventually(HEARTBEAT * 10, || fleet[2].1.state() == CircuitState::Open)
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_lets_a_held_breaker_go_and_probe_by_itself() {
    let Some(redis) = RedisServer::start("stall") else {
        return;
    };
    let (fleet, breaker) = joined(&redis, "pay-1", 2).await;
    // Another instance holds the fleet's probe, for 20 s (within max-probe-time's 30 s).
    redis.command(&[
        "SET",
        "breakwater:pg:probe",
        "probe pay-9 00000000000000aa",
        "PX",
        "20000",
    ]);
    trip(&breaker);
    tokio::time::sleep(WAIT + HEARTBEAT * 2).await;
    assert!(breaker.probes_held());
    assert!(breaker.try_acquire().is_err(), "held while pay-9 probes");
    let mut events = fleet.events();
    redis.stall();
    // The hold runs out with the TTL: the breaker probes alone, calls never waited.
    let start = Instant::now();
    let freed = eventually(HEARTBEAT * 10, || breaker.try_acquire().is_ok()).await;
    assert!(
        freed.is_some(),
        "still held {:?} after Redis stalled",
        start.elapsed()
    );
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let event = tokio::time::timeout(HEARTBEAT * 10, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, FleetEvent::LocalOnly { .. }), "{event:?}");
    redis.resume();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, FleetEvent::Rejoined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_stops_counting_once_its_ttl_passes() {
    let Some(redis) = RedisServer::start("expiry") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    // pay-9's last words before it died: open on its own evidence, for a minute, with a
    // TTL of 300 ms.
    let dead = "bw1 inc=00000000000000aa gen=3 ttl_ms=300 state=open origin=local open_ms=60000 calls=4 failed=4 slow=0";
    redis.command(&["SET", "breakwater:pg:i:pay-9", dead, "PX", "300"]);
    redis.command(&["SADD", "breakwater:pg:members", "pay-9"]);
    assert!(
        eventually(HEARTBEAT * 5, || fleet[1]
            .0
            .view("pg")
            .unwrap()
            .iter()
            .any(|p| p.instance == "pay-9"))
        .await
        .is_some()
    );
    tokio::time::sleep(Duration::from_millis(300) + HEARTBEAT * 2).await;
    assert!(
        fleet[1]
            .0
            .view("pg")
            .unwrap()
            .iter()
            .all(|p| p.instance != "pay-9")
    );
    assert_eq!(
        redis
            .command(&["SISMEMBER", "breakwater:pg:members", "pay-9"])
            .as_deref(),
        Some("0")
    );
    // pay-1 alone now: no quorum with a dead instance.
    trip(&fleet[0].1);
    tokio::time::sleep(HEARTBEAT * 5).await;
    assert_eq!(fleet[1].1.state(), CircuitState::Closed);
    assert_eq!(fleet[2].1.state(), CircuitState::Closed);
    // A live instance that leaves deletes its report at once.
    let (leaving, _breaker) = fleet.into_iter().next().unwrap();
    leaving.leave().await;
    assert_eq!(
        redis
            .command(&["EXISTS", "breakwater:pg:i:pay-1"])
            .as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_redis_is_ignored_with_a_word_and_never_panics() {
    let Some(redis) = RedisServer::start("garbage") else {
        return;
    };
    let fleet = three(&redis, 2).await;
    let mut events = fleet[2].0.events();
    let keys = ["hello", "text", "list", "forever", "huge"];
    redis.command(&["SET", "breakwater:pg:i:hello", "hello", "PX", "60000"]);
    redis.command(&["SET", "breakwater:pg:i:text", "bw1 inc=zz", "PX", "60000"]);
    redis.command(&["RPUSH", "breakwater:pg:i:list", "a", "b"]);
    redis.command(&["PEXPIRE", "breakwater:pg:i:list", "60000"]);
    let open = "bw1 inc=00000000000000aa gen=1 ttl_ms=60000 state=open origin=local open_ms=60000 calls=4 failed=4 slow=0";
    // No TTL: a report that would never expire.
    redis.command(&["SET", "breakwater:pg:i:forever", open]);
    let huge = format!("bw1 {}", "9".repeat(10_000));
    redis.command(&["SET", "breakwater:pg:i:huge", &huge, "PX", "60000"]);
    // Members last: a member without its key is dropped from the set by the next round.
    for key in keys {
        redis.command(&["SADD", "breakwater:pg:members", key]);
    }
    let mut ignored = std::collections::BTreeSet::new();
    let deadline = Instant::now() + HEARTBEAT * 20;
    while ignored.len() < keys.len() && Instant::now() < deadline {
        if let Ok(Ok(FleetEvent::Ignored { key, .. })) =
            tokio::time::timeout(HEARTBEAT * 2, events.recv()).await
        {
            ignored.insert(key);
        }
    }
    let expected: std::collections::BTreeSet<String> = keys
        .iter()
        .map(|k| format!("breakwater:pg:i:{k}"))
        .collect();
    assert_eq!(ignored, expected);
    // Reported once each: the next rounds say nothing more.
    tokio::time::sleep(HEARTBEAT * 3).await;
    assert!(events.try_recv().is_err());
    // The fleet still works: the real reports count, the garbage does not (the report with no
    // TTL would have made a quorum with pay-1's).
    assert!(fleet[2].0.is_connected());
    trip(&fleet[0].1);
    tokio::time::sleep(HEARTBEAT * 5).await;
    assert_eq!(fleet[2].1.state(), CircuitState::Closed);
    trip(&fleet[1].1);
    assert!(
        eventually(HEARTBEAT * 10, || fleet[2].1.state() == CircuitState::Open)
            .await
            .is_some()
    );
    // A hostile prober's lease that never expires does not hold anyone forever.
    redis.command(&["SET", "breakwater:pg:probe", "probe pay-9 00000000000000aa"]);
    let started = eventually(WAIT + HEARTBEAT * 10, || {
        fleet[2].1.state() == CircuitState::HalfOpen
    })
    .await;
    assert!(started.is_some(), "held by a lease with no TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_breaker_leaves_the_fleet_and_its_report_goes() {
    let Some(redis) = RedisServer::start("weak") else {
        return;
    };
    let fleet = fleet(&redis, "pay-1", 2).await;
    let breaker = breaker_named_pg();
    let weak = breaker.downgrade();
    assert!(fleet.join(&breaker));
    assert!(!fleet.join(&breaker), "joined once");
    let other = breaker_named_pg();
    assert!(!fleet.join(&other), "one breaker per name");
    assert!(
        eventually(HEARTBEAT * 5, || redis
            .command(&["EXISTS", "breakwater:pg:i:pay-1"])
            .as_deref()
            == Some("1"))
        .await
        .is_some()
    );
    drop(breaker);
    // A round holds it for the round's length at most.
    assert!(
        eventually(HEARTBEAT, || weak.upgrade().is_none())
            .await
            .is_some(),
        "the fleet does not keep it alive"
    );
    assert!(
        eventually(HEARTBEAT * 5, || redis
            .command(&["EXISTS", "breakwater:pg:i:pay-1"])
            .as_deref()
            == Some("0"))
        .await
        .is_some()
    );
    assert_eq!(fleet.view("pg"), None);
    // The name is free again.
    assert!(fleet.join(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_starts_local_only_when_redis_is_down_and_joins_when_it_comes() {
    let Some(mut redis) = RedisServer::start("late") else {
        return;
    };
    redis.kill();
    let fleet = fleet(&redis, "pay-1", 2).await;
    assert!(!fleet.is_connected());
    let mut events = fleet.events();
    redis.restart();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, FleetEvent::Rejoined);
    assert!(fleet.is_connected());
}

#[tokio::test]
async fn settings_out_of_range_are_refused_by_name() {
    let cases = [
        (
            Fleet::builder("redis://127.0.0.1:1"),
            "fleet setting `instance` = \"\": must be 1 to 64 characters of A-Z a-z 0-9 . _ - (and unique per process)",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1").instance("pay 1"),
            "fleet setting `instance` = \"pay 1\": must be 1 to 64 characters of A-Z a-z 0-9 . _ - (and unique per process)",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .heartbeat(Duration::from_millis(5)),
            "fleet setting `heartbeat` = \"5ms\": must be from 50ms to 1h",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .ttl(Duration::from_millis(1500)),
            "fleet setting `ttl` = \"1.5s\": must be at least two heartbeats, and at most a day",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .quorum(0),
            "fleet setting `quorum` = \"0\": must be at least 1",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .key_prefix(""),
            "fleet setting `key-prefix` = \"\": must be 1 to 64 characters",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .max_open(Duration::ZERO),
            "fleet setting `max-open` = \"0ns\": must be from 1ms to a day",
        ),
        (
            Fleet::builder("redis://127.0.0.1:1")
                .instance("p")
                .max_probe_time(Duration::from_millis(10)),
            "fleet setting `max-probe-time` = \"10ms\": must be at least the TTL (a prober's lease), and at most a day",
        ),
    ];
    for (builder, message) in cases {
        assert_eq!(builder.connect().await.unwrap_err().to_string(), message);
    }
    let error = Fleet::builder("http://example")
        .instance("p")
        .connect()
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("fleet setting `redis-url` = \"http://example\": "),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_key_that_is_not_text_holds_nobody_and_the_round_goes_on() {
    let Some(redis) = RedisServer::start("binary probe key") else {
        return;
    };
    let (fleet, breaker) = joined(&redis, "pay-1", 2).await;
    let mut events = fleet.events();
    // Not UTF-8, and no TTL.
    redis.command(&["SET", "breakwater:pg:probe", "\u{7f}\u{0}"]);
    assert!(
        redis
            .command(&[
                "EVAL",
                "return redis.call('SET', KEYS[1], string.char(255, 254))",
                "1",
                "breakwater:pg:probe"
            ])
            .is_some()
    );
    trip(&breaker);
    assert!(
        eventually(WAIT + HEARTBEAT * 5, || breaker.state()
            == CircuitState::HalfOpen)
        .await
        .is_some(),
        "held by a value that is not text"
    );
    let mut ignored = false;
    while let Ok(event) = events.try_recv() {
        ignored |=
            matches!(&event, FleetEvent::Ignored { key, .. } if key == "breakwater:pg:probe");
        assert!(!matches!(event, FleetEvent::LocalOnly { .. }), "{event:?}");
    }
    assert!(ignored);
    assert!(fleet.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_mark_older_than_an_opening_closes_nothing_and_is_cleared() {
    let Some(redis) = RedisServer::start("stale mark") else {
        return;
    };
    let (_fleet, breaker) = joined(&redis, "pay-1", 2).await;
    let mut events = transitions(&breaker);
    trip(&breaker);
    tokio::time::sleep(HEARTBEAT * 3).await;
    // A mark from a recovery long ago (Redis's time 1 µs), with a minute to live.
    redis.command(&[
        "SET",
        "breakwater:pg:probe",
        "closed pay-9 00000000000000aa 1",
        "PX",
        "60000",
    ]);
    assert!(
        eventually(WAIT + HEARTBEAT * 5, || breaker.state()
            == CircuitState::HalfOpen)
        .await
        .is_some()
    );
    events.recv().await.unwrap();
    let (event, _) = events.recv().await.unwrap();
    assert_eq!(event, probing());
    // It probes for the fleet now: the lease is its own.
    assert!(
        redis
            .command(&["GET", "breakwater:pg:probe"])
            .unwrap()
            .starts_with("probe pay-1 ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_reset_by_hand_tells_the_fleet_nothing_and_another_probes() {
    let Some(redis) = RedisServer::start("reset prober") else {
        return;
    };
    let fleet = three(&redis, 3).await;
    let (a, b) = (&fleet[0].1, &fleet[1].1);
    trip(a);
    tokio::time::sleep(HEARTBEAT * 5).await;
    trip(b);
    let mut at_b = transitions(b);
    // A's wait ends first: A probes for the fleet.
    assert!(
        eventually(WAIT + HEARTBEAT * 5, || a.state() == CircuitState::HalfOpen)
            .await
            .is_some()
    );
    a.reset();
    // B's wait ends: nothing said the probes succeeded, so B probes itself.
    assert!(
        eventually(WAIT, || b.state() != CircuitState::Open)
            .await
            .is_some()
    );
    let (event, _) = at_b.recv().await.unwrap();
    assert_eq!(event, probing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_without_traffic_goes_back_open_and_another_probes() {
    let Some(redis) = RedisServer::start("idle prober") else {
        return;
    };
    let mut instances = Vec::new();
    for i in 1..=2 {
        let fleet = Fleet::builder(redis.url())
            .instance(format!("pay-{i}"))
            .heartbeat(HEARTBEAT)
            .quorum(2)
            .max_probe_time(Duration::from_millis(400))
            .connect()
            .await
            .unwrap();
        let breaker = breaker();
        fleet.join(&breaker);
        instances.push((fleet, breaker));
    }
    let (a, b) = (&instances[0].1, &instances[1].1);
    let mut at_a = transitions(a);
    trip(a);
    tokio::time::sleep(HEARTBEAT * 5).await;
    trip(b);
    assert!(
        eventually(WAIT + HEARTBEAT * 5, || a.state() == CircuitState::HalfOpen)
            .await
            .is_some()
    );
    // No call reaches A: after 400 ms it is open again, and B, its wait over, probes.
    assert!(
        eventually(Duration::from_secs(2), || b.state()
            == CircuitState::HalfOpen)
        .await
        .is_some()
    );
    let kinds: Vec<EventKind> =
        std::iter::from_fn(|| at_a.try_recv().ok().map(|(k, _)| k)).collect();
    assert!(
        kinds.contains(&EventKind::StateTransition {
            from: CircuitState::HalfOpen,
            to: CircuitState::Open,
            cause: TransitionCause::HalfOpenTimedOut,
        }),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_the_fleet_opened_never_closes_on_a_mark_older_than_that_opening() {
    let Some(redis) = RedisServer::start("old mark, fleet opening") else {
        return;
    };
    let mut instances = vec![
        joined(&redis, "pay-1", 1).await,
        joined(&redis, "pay-2", 1).await,
    ];
    tokio::time::sleep(HEARTBEAT * 2).await;
    let (a, b) = (instances[0].1.clone(), instances[1].1.clone());
    let mut at_b = transitions(&b);
    trip(&a);
    let (event, _) = tokio::time::timeout(HEARTBEAT * 10, at_b.recv())
        .await
        .expect("B opens on A's word")
        .unwrap();
    assert!(matches!(
        event,
        EventKind::StateTransition {
            cause: TransitionCause::FleetQuorum { .. },
            ..
        }
    ));
    // A leaves the fleet: B alone meets the mark below.
    let (a_fleet, _) = instances.remove(0);
    a_fleet.leave().await;
    // A mark from a recovery long before (as a Redis restored from a snapshot would bring
    // back), with a minute to live.
    redis.command(&[
        "SET",
        "breakwater:pg:probe",
        "closed pay-9 00000000000000aa 1",
        "PX",
        "60000",
    ]);
    // B's wait ends: the mark is older than the opening the fleet made, so B probes itself.
    assert!(
        eventually(WAIT + HEARTBEAT * 5, || b.state() == CircuitState::HalfOpen)
            .await
            .is_some()
    );
    let mut kinds = Vec::new();
    while let Ok((kind, _)) = at_b.try_recv() {
        kinds.push(kind);
    }
    assert_eq!(kinds, [probing()]);
    // The mark is left for whoever it was meant for.
    assert!(
        redis
            .command(&["GET", "breakwater:pg:probe"])
            .unwrap()
            .starts_with("closed pay-9")
    );
    drop(a);
}
