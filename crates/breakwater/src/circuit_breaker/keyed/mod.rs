//! One breaker per downstream: a layer that keeps a breaker per key, all from one
//! configuration.
//!
//! A client that calls many hosts through one service (a webhook sender, a crawler, a gateway
//! to partner APIs) wants each host judged on its own: one host's failures must not open the
//! breaker for the others. A [`KeyedCircuitBreakerLayer`] finds the key of each request (by
//! default [`Authority`]: scheme, host and port) and keeps a breaker per key, made from one
//! configuration on the key's first call.
//!
//! - **Fail fast only.** The key is known only in `call`, after `poll_ready` has answered, so
//!   a rejected call fails with a boxed [`CircuitOpen`](crate::CircuitOpen) (whose
//!   [`key`](crate::CircuitOpen::key)
//!   names the downstream) without reaching the inner service; there is no backpressure mode
//!   and no 503 mode. Outcomes are recorded when the response arrives.
//! - **Bounded.** At most [`max_keys`](KeyedBuilder::max_keys) breakers (1024 by default). Idle
//!   keys are swept when the layer meets a new key, at most once every half
//!   [`idle_timeout`](KeyedBuilder::idle_timeout) (10 minutes by default); a sweep evicts the
//!   keys unused since the sweep two before it. A key is so evicted once idle for at least
//!   `idle_timeout`; how much later depends on how often new keys come (without new keys
//!   nothing is swept, and nothing grows either). When every slot
//!   is taken, a new key evicts the least recently used key whose breaker is closed, or, if
//!   every breaker is open or half-open, the least recently used of all. A flood of hosts
//!   therefore cannot grow memory: breakers of evicted keys are recycled (closed, emptied)
//!   for new keys rather than made afresh. An evicted key starts over with an empty window
//!   when it comes back; calls in flight for it are discarded when they end.
//! - **One name.** Every breaker of the layer has the configuration's name: metrics are
//!   labelled with it (the state gauges count the keys in each state), logs add the key
//!   (`name[key]`), and [`health`](KeyedCircuitBreakerLayer::health) lists each key.
//!
//! Build one layer per configuration at start-up, not per request: its breakers are made on
//! demand and recycled from key to key, and they are freed with the layer (its last clone and
//! the services made from it).
//!
//! Cost: making the key and finding its breaker took about 40 ns a call on the machine the
//! benchmarks ran on when a service keeps calling one downstream (it remembers its last key's
//! breaker: no lock), and about 75 ns when it alternates between two (a read lock and a hash
//! lookup), on top of the breaker itself (`cargo bench -p breakwater --bench circuit_breaker
//! -- keyed`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::{CircuitBreaker, CircuitOpen};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let per_host = CircuitBreaker::builder("partner-apis")
//!     .count_window(5)
//!     .minimum_calls(5)
//!     .keyed()
//!     .max_keys(100)
//!     .idle_timeout(Duration::from_secs(300))
//!     .build()?;
//!
//! let mut client = ServiceBuilder::new()
//!     .layer(per_host.clone())
//!     .service_fn(|request: http::Request<()>| async move {
//!         // Stands in for a hyper client: the partner on port 9001 is down.
//!         let status = if request.uri().port_u16() == Some(9001) { 503 } else { 200 };
//!         Ok::<_, tower::BoxError>(http::Response::builder().status(status).body(())?)
//!     });
//!
//! let get = |uri: &str| http::Request::get(uri).body(()).unwrap();
//! for _ in 0..5 {
//!     client.ready().await?.call(get("http://127.0.0.1:9001/hook")).await?;
//! }
//! // The failing partner is cut off; the others are not.
//! let error = client.ready().await?.call(get("http://127.0.0.1:9001/hook")).await.unwrap_err();
//! let open = error.downcast_ref::<CircuitOpen>().unwrap();
//! assert_eq!(open.key(), Some("http://127.0.0.1:9001"));
//! let fine = client.ready().await?.call(get("http://127.0.0.1:9002/hook")).await?;
//! assert_eq!(fine.status(), 200);
//! assert_eq!(per_host.keys(), ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]);
//! # Ok(())
//! # }
//! ```

mod key;
mod pool;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

pub use self::key::{Authority, MakeKey};
pub use self::service::KeyedCircuitBreakerService;

use self::pool::Pool;
use super::MetricsSnapshot;
use super::config::{Builder, ConfigError};
use super::health::{BreakerHealth, HealthReport};
use crate::classify::http::HttpClassifier;

/// The most keys a keyed layer holds by default.
pub const DEFAULT_MAX_KEYS: usize = 1024;
/// How long a key may go unused before it is evicted, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The most keys a keyed layer may be allowed.
const MAX_KEYS: usize = 65_536;

/// Builds a [`KeyedCircuitBreakerLayer`]; made by [`Builder::keyed`], which gives the
/// configuration every key's breaker gets.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::CircuitBreaker;
///
/// let error = CircuitBreaker::builder("webhooks").keyed().max_keys(0).build().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "circuit breaker `webhooks`: max_keys is 0, but it must be from 1 to 65536 keys"
/// );
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedBuilder {
    template: Builder,
    max_keys: usize,
    idle_timeout: Duration,
}

impl Builder {
    /// A layer keeping a breaker of this configuration per key (per downstream): see
    /// [`keyed`](super::keyed). (Defined here, with the layer it builds.)
    pub fn keyed(self) -> KeyedBuilder {
        KeyedBuilder::new(self)
    }
}

impl KeyedBuilder {
    pub(crate) fn new(template: Builder) -> Self {
        Self {
            template,
            max_keys: DEFAULT_MAX_KEYS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// At most this many keys, each with its breaker (1..=65 536; 1024 by default).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// A key unused for this long is evicted (1 s ..= 365 days; 10 minutes by default).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Checks every setting and builds the layer, which classifies `http::Response`s with
    /// [`HttpClassifier`]'s defaults and keys requests by [`Authority`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting out of range.
    pub fn build(self) -> Result<KeyedCircuitBreakerLayer, ConfigError> {
        self.template.check()?;
        let name = self.template.name().to_owned();
        if !(1..=MAX_KEYS).contains(&self.max_keys) {
            return Err(ConfigError::new(
                &name,
                "max_keys",
                self.max_keys.to_string(),
                "from 1 to 65536 keys",
            ));
        }
        if self.idle_timeout < Duration::from_secs(1)
            || self.idle_timeout > Duration::from_secs(365 * 24 * 3600)
        {
            return Err(ConfigError::new(
                &name,
                "idle_timeout",
                format!("{:?}", self.idle_timeout),
                "a duration of at least 1 s and at most 365 days",
            ));
        }
        Ok(self.assemble())
    }

    /// The layer of settings checked before.
    pub(crate) fn assemble(self) -> KeyedCircuitBreakerLayer {
        let clock = self.template.clock_or_tokio();
        KeyedCircuitBreakerLayer {
            pool: Arc::new(Pool::new(
                self.template,
                clock,
                self.max_keys,
                self.idle_timeout,
            )),
            classifier: HttpClassifier::new(),
            make_key: Authority,
        }
    }
}

/// A layer that keeps a breaker per key: see the [module docs](self). Clones share the
/// breakers.
#[derive(Clone)]
pub struct KeyedCircuitBreakerLayer<C = HttpClassifier, K = Authority> {
    pool: Arc<Pool>,
    classifier: C,
    make_key: K,
}

impl<C, K> KeyedCircuitBreakerLayer<C, K> {
    /// Classifies results with `classifier` (a closure or a
    /// [`Classify`](crate::classify::Classify) implementation) instead.
    pub fn classify_with<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<C2, K> {
        KeyedCircuitBreakerLayer {
            pool: self.pool,
            classifier,
            make_key: self.make_key,
        }
    }

    /// Keys requests with `make_key` instead (see [`MakeKey`]).
    pub fn key_with<K2>(self, make_key: K2) -> KeyedCircuitBreakerLayer<C, K2> {
        KeyedCircuitBreakerLayer {
            pool: self.pool,
            classifier: self.classifier,
            make_key,
        }
    }

    /// The name every breaker of the layer has.
    pub fn name(&self) -> &str {
        &self.pool.name
    }

    /// The keys held now, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.pool
            .entries()
            .into_iter()
            .map(|(key, _)| key.to_string())
            .collect()
    }

    /// How many keys are held now (at most the layer's `max_keys`).
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many breakers the layer has made, holding a key or waiting for one: never more
    /// than its `max_keys`.
    pub fn breakers_made(&self) -> usize {
        self.pool.breakers_made()
    }

    /// The state and numbers of `key`'s breaker, if the layer holds the key.
    pub fn metrics(&self, key: &str) -> Option<MetricsSnapshot> {
        self.pool.breaker(key).map(|b| b.metrics())
    }

    /// The health of every key's breaker, by key.
    pub fn health(&self) -> HealthReport {
        HealthReport::from_entries(
            self.pool
                .entries()
                .iter()
                .map(|(key, breaker)| BreakerHealth::of(breaker).for_key(key))
                .collect(),
        )
    }
}

impl<S, C: Clone, K: Clone> Layer<S> for KeyedCircuitBreakerLayer<C, K> {
    type Service = KeyedCircuitBreakerService<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService::new(
            inner,
            self.pool.clone(),
            self.classifier.clone(),
            self.make_key.clone(),
        )
    }
}

impl<C: fmt::Debug, K: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.pool.name)
            .field("keys", &self.pool.len())
            .field("max_keys", &self.pool.max_keys)
            .field("idle_timeout", &self.pool.idle_timeout)
            .field("classifier", &self.classifier)
            .field("make_key", &self.make_key)
            .finish()
    }
}
