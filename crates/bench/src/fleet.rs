//! The rows with a fleet joined: breakwater's breaker joined to a breakwater-fleet on a local
//! Redis, to show that joining costs the call path nothing (the fleet's task publishes and
//! reads on a runtime of its own, as it would on a worker of the application's runtime).

use std::sync::OnceLock;
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater_fleet::Fleet;
use tokio::runtime::Runtime;

/// The fleet of the run, on a runtime of its own; `None` when no Redis answers.
struct Joined {
    fleet: Fleet,
    /// The joined breakers' handles: the fleet holds its breakers weakly, and a row's service
    /// alone does not keep a breaker joined. Kept until the run ends.
    kept: std::sync::Mutex<Vec<CircuitBreaker>>,
    _runtime: Runtime,
}

static FLEET: OnceLock<Option<Joined>> = OnceLock::new();

fn url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn connect() -> Option<Joined> {
    let url = url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fleet")
        .enable_all()
        .build()
        .ok()?;
    let fleet = runtime.block_on(async {
        Fleet::builder(url.as_str())
            .instance(format!("bench-{}", std::process::id()))
            .key_prefix("breakwater-bench")
            .heartbeat(Duration::from_secs(1))
            .quorum(2)
            .connect()
            .await
    });
    match fleet {
        Ok(fleet) if fleet.is_connected() => {
            println!(
                "(The rows \"breakwater, fleet joined\": its breaker joined to a fleet on {url}, \
                 instance {}, heartbeat 1 s.)\n",
                fleet.instance()
            );
            Some(Joined {
                fleet,
                kept: std::sync::Mutex::default(),
                _runtime: runtime,
            })
        }
        Ok(_) => {
            println!(
                "(No Redis answers at {url}: the rows \"breakwater, fleet joined\" are left out. \
                 Start one, e.g. `redis-server --port 6379`, or set BENCH_REDIS_URL.)\n"
            );
            None
        }
        Err(e) => {
            println!("(BENCH_REDIS_URL {url}: {e}: the fleet rows are left out.)\n");
            None
        }
    }
}

/// `breaker`, joined to the run's fleet; `None` (and the run said why) without a Redis.
pub(crate) fn joined(breaker: CircuitBreaker) -> Option<CircuitBreaker> {
    let joined = FLEET.get_or_init(connect).as_ref()?;
    if !joined.fleet.join(&breaker) {
        return None;
    }
    joined
        .kept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(breaker.clone());
    Some(breaker)
}
