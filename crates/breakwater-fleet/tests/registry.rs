//! A fleet from the registry's file: `breakwater.fleet` beside resilience4j's sections.

mod support;

use std::time::Duration;

use breakwater::Registry;
use breakwater_fleet::{FleetBuilder, RegistryFleetError};
use support::RedisServer;

const FILE: &str = "
resilience4j.circuitbreaker:
  instances:
    pg-payment:
      sliding-window-size: 4
      minimum-number-of-calls: 4
breakwater:
  fleet:
    redis-url: REDIS
    quorum: 2
    heartbeat: 100ms
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_fleet_joins_every_breaker_of_the_registry() {
    let Some(redis) = RedisServer::start("registry") else {
        return;
    };
    let registry = Registry::from_yaml(&FILE.replace("REDIS", &redis.url())).unwrap();
    let pg = registry.circuit_breaker("pg-payment");
    let ledger = registry.circuit_breaker("ledger");
    let fleet = FleetBuilder::from_registry(&registry)
        .unwrap()
        .unwrap()
        .instance("pay-1")
        .connect()
        .await
        .unwrap();
    assert!(fleet.is_connected());
    assert_eq!(fleet.join_registry(&registry), 2);
    assert_eq!(fleet.join_registry(&registry), 0, "joined already");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for name in [pg.name(), ledger.name()] {
        let key = format!("breakwater:{name}:i:pay-1");
        while redis.command(&["EXISTS", &key]).as_deref() != Some("1") {
            assert!(std::time::Instant::now() < deadline, "{key} never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The heartbeat the file gave: the TTL is three of them.
    let ttl: u64 = redis
        .command(&["PTTL", "breakwater:pg-payment:i:pay-1"])
        .unwrap()
        .parse()
        .unwrap();
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
}

#[test]
fn no_section_no_fleet() {
    let registry =
        Registry::from_yaml("resilience4j.circuitbreaker:\n  instances:\n    pg: {}\n").unwrap();
    assert!(FleetBuilder::from_registry(&registry).unwrap().is_none());
}

#[test]
fn a_section_that_cannot_be_used_is_refused_naming_key_line_and_value() {
    let refused = |section: &str| -> RegistryFleetError {
        let registry = Registry::from_yaml(&format!("breakwater:\n  fleet:\n{section}")).unwrap();
        FleetBuilder::from_registry(&registry).unwrap_err()
    };
    let cases = [
        (
            "    quorum: 2\n",
            "breakwater.fleet.redis-url (line 3): nothing: required: the Redis server's URL (`redis://127.0.0.1:6379`)",
        ),
        (
            "    redis-url: 6379\n",
            "breakwater.fleet.redis-url (line 3): 6379: a Redis URL (`redis://127.0.0.1:6379`)",
        ),
        (
            "    redis-url: redis://127.0.0.1\n    quorum: 0\n",
            "breakwater.fleet.quorum (line 4): 0: a whole number of instances, at least 1",
        ),
        (
            "    redis-url: redis://127.0.0.1\n    heartbeat: soon\n",
            "breakwater.fleet.heartbeat (line 4): \"soon\": a duration: whole milliseconds (`1000`) or a whole number with a unit (`1s`, `500ms`)",
        ),
        (
            "    redis-url: redis://127.0.0.1\n    heartbeat: 5ms\n",
            "breakwater.fleet.heartbeat (line 4): \"5ms\": must be from 50ms to 1h",
        ),
        (
            "    redis-url: redis://127.0.0.1\n    heartbeat: 1s\n    ttl: 1s\n",
            "breakwater.fleet.ttl (line 5): \"1s\": must be at least two heartbeats, and at most a day",
        ),
        (
            "    redis-url: redis://127.0.0.1\n    quorom: 2\n",
            "breakwater.fleet.quorom (line 4): 2: not a fleet setting; the settings are redis-url, quorum, heartbeat, ttl, key-prefix, max-open, max-probe-time",
        ),
    ];
    for (section, message) in cases {
        assert_eq!(refused(section).to_string(), message, "{section}");
    }
}
