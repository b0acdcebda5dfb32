//! Breakers of the same name on several instances, one fleet breaker: state shared over
//! Redis, local-first, with a quorum and one prober for the fleet.
//!
//! Without a fleet, each instance's breaker learns alone: with N instances, a failing
//! downstream takes N times `minimum_calls` failed calls before every instance stops calling
//! it, an instance with little traffic may never reach `minimum_calls`, and at recovery every
//! instance sends its own probes. Joined to a [`Fleet`], breakers of the same name on every
//! instance (each process with its own [`instance`](FleetBuilder::instance) id) act as one:
//!
//! ```no_run
//! use std::time::Duration;
//! use breakwater::CircuitBreaker;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreaker::builder("pg-payment").build()?;
//! let fleet = breakwater_fleet::Fleet::builder("redis://127.0.0.1:6379")
//!     .instance("pay-1")                    // unique per process
//!     .heartbeat(Duration::from_secs(1))    // publish at every transition and this often
//!     .quorum(2)                            // open here when 2 live instances report open
//!     .connect().await?;
//! fleet.join(&breaker);                     // the same name on every instance is one fleet breaker
//! # Ok(())
//! # }
//! ```
//!
//! # What the fleet does
//!
//! - **Nothing on the call path.** Admission and recording stay the breaker's own, lock-free,
//!   local. A background task publishes this instance's snapshot of each joined breaker (state,
//!   generation, how long it stays open, its window's counts) to Redis with a TTL
//!   ([`ttl`](FleetBuilder::ttl), three heartbeats by default) at every transition and every
//!   heartbeat, and reads the other live instances' snapshots in the same round trip. The
//!   fleet listens to transitions only ([`CircuitBreaker::on_state_transition`]), so per-call
//!   events stay off, and it holds each breaker weakly: it does not keep a dropped breaker
//!   alive (see [`breakwater::circuit_breaker::WeakCircuitBreaker`]).
//! - **Quorum, not contagion.** A closed breaker opens here when at least
//!   [`quorum`](FleetBuilder::quorum) live instances report it open on their own evidence
//!   with time left (their window or their probes opened it: an opening the fleet made does
//!   not count, so no opening feeds on itself; nor does one whose wait is over and waits for
//!   the fleet's probe, so a prober whose probes succeeded is not opened again by the
//!   instances waiting on it). Its state is [`Open`](breakwater::CircuitState::Open), its
//!   transition event's cause is
//!   [`FleetQuorum`](breakwater::circuit_breaker::TransitionCause::FleetQuorum) with the
//!   count, and it stays open for the longest time the reporters have left: each publishes
//!   "open for N more ms", and the reader subtracts the snapshot's age as Redis counts it
//!   (no instant crosses machines, whose clocks may differ), capped by
//!   [`max_open`](FleetBuilder::max_open). One instance whose own network path fails opens
//!   alone, as it should, and cuts off nobody else (with a quorum above 1).
//! - **One prober for the fleet.** A joined breaker whose open wait is over does not probe on
//!   its own: the fleet [holds](breakwater::CircuitBreaker::hold_probes) it and asks Redis
//!   for the fleet's probe (`SET NX PX`). The instance that gets it goes half-open and lets its
//!   `permitted_calls_in_half_open` probes through; the others stay open. If the probes
//!   succeed (half-open to closed on its own probes; a reset is not news), the prober leaves
//!   a "closed" mark stamped with Redis's time, and every held instance closes on it when its
//!   own wait is over and the mark is newer than its latest opening (its own, or the
//!   fleet's), with the cause
//!   [`FleetProbesSucceeded`](breakwater::circuit_breaker::TransitionCause::FleetProbesSucceeded);
//!   if they fail, the prober opens again and gives the probe back. The mark stands until an
//!   instance opens again on its own evidence (at most [`max_open`](FleetBuilder::max_open)),
//!   so instances whose waits end later close on it too. So a recovering downstream
//!   sees `permitted_calls_in_half_open` probes in total, not per instance. A prober that dies
//!   loses the probe when its lease (the TTL) runs out, and a prober that gets no traffic goes
//!   back to open after [`max_probe_time`](FleetBuilder::max_probe_time) (cause
//!   `HalfOpenTimedOut`) and gives the probe to another instance. A lease with more time left
//!   than `max_probe_time` was not written by a prober of these settings: it holds nobody.
//!   (Instances of one fleet are meant to share its settings, as they do when they read them
//!   from one file.)
//! - **The fleet never shortens an open wait.** It opens only closed breakers, and closes
//!   only a breaker whose own wait is over, on probes another instance made for all after
//!   that breaker opened (the evidence its own probes would have given). A breaker open here
//!   stays open for its full wait whatever the others report. A "closed" mark older than an
//!   opening of the breaker's own is deleted; one older than an opening the fleet made lets
//!   that breaker probe for itself.
//!
//! # Faults
//!
//! - **Redis down, slow or unreachable never blocks or fails a call**: calls never touch it.
//!   Each round is bounded by a heartbeat, and holds are renewed, for a TTL, only when a whole
//!   round succeeded. Once the last successful round is older than the TTL, the fleet goes
//!   *local-only*: every hold has lapsed (each breaker probes on its own again), others'
//!   reports are no longer applied, and it says so: a [`FleetEvent::LocalOnly`], a `warn`
//!   log line, and the gauge `breakwater_fleet_connected` at 0. When a whole round succeeds
//!   again it rejoins ([`FleetEvent::Rejoined`], an `info` line, the gauge at 1).
//! - **An instance that dies stops counting once its TTL passes**: its snapshot expires in
//!   Redis (Redis's clock), and so does a dead prober's lease.
//! - **Clocks may differ**: generations order one instance's snapshots (a late write of an
//!   older generation of the same run is ignored); wall time is used only for TTLs, by Redis.
//! - **A malformed or hostile value** in the fleet's keys (another shape, a number out of
//!   range, a key of another type, a prober's lease with no TTL) is ignored with a `warn` log
//!   line (once per value), a [`FleetEvent::Ignored`] and the counter
//!   `breakwater_fleet_ignored_total`; it never panics and never blocks the other reports.
//!
//! # Redis
//!
//! One Redis server (or a primary with replicas; not Redis Cluster: a round reads keys it
//! finds in a set), reached through the `redis` crate's
//! [`ConnectionManager`](redis::aio::ConnectionManager), which reconnects by itself. Keys,
//! for a breaker `B` under the [`key_prefix`](FleetBuilder::key_prefix) `P`:
//! `P:B:i:INSTANCE` (a snapshot), `P:B:members` (a set of instance ids), `P:B:probe` (the
//! fleet's prober). A round costs one script call per joined breaker per heartbeat, plus one
//! when a breaker's wait is over, it probes, or it opened; they are made one after the other
//! and must fit in a heartbeat (at least 50 ms), so a fleet of many breakers on a distant
//! Redis wants a longer heartbeat.
//!
//! # The registry's file
//!
//! A `breakwater.fleet` section beside resilience4j's, in the file a
//! [`Registry`](breakwater::Registry) reads (the core keeps it as data; this crate reads it):
//!
//! ```yaml
//! breakwater:
//!   fleet:
//!     redis-url: redis://127.0.0.1:6379   # required
//!     quorum: 2                           # the other keys are optional, as the builder's
//!     heartbeat: 1s                       # ttl, key-prefix, max-open, max-probe-time
//! ```
//!
//! [`FleetBuilder::from_registry`] reads it (an unknown key or a value out of range is an
//! error naming the key path, the line, the value and what is allowed), and
//! [`Fleet::join_registry`] joins every breaker the registry has made. A reload of the
//! registry does not rebuild a fleet.
//!
//! # Lifetime
//!
//! A [`Fleet`] is a handle; clones share one background task. When the last handle is dropped
//! (or [`leave`](Fleet::leave) is awaited) the task lets go of every hold, unsubscribes from
//! the breakers, deletes this instance's snapshots and gives back a probe it held, and ends.
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade, labelled `instance`:
//! `breakwater_fleet_connected` (gauge: 1 joined, 0 local-only),
//! `breakwater_fleet_ignored_total` (counter: values ignored), and
//! `breakwater_fleet_rounds_failed_total` (counter: rounds Redis did not answer in time).

#[cfg(any(feature = "yaml", feature = "toml"))]
mod registry;
mod scripts;
mod snapshot;
mod task;
mod view;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::circuit_breaker::{EventKind, SubscriptionId, TransitionCause, WeakCircuitBreaker};
use tokio::sync::{Notify, broadcast};

#[cfg(any(feature = "yaml", feature = "toml"))]
pub use self::registry::RegistryFleetError;
pub use self::view::Peer;

/// The shortest heartbeat. A round (one to four round trips to Redis per joined breaker) must
/// fit in a heartbeat, or it counts as failed; under 50 ms, a scheduling hiccup on a loaded
/// machine would be enough to make the fleet local-only.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// Builds a [`Fleet`]: [`Fleet::builder`].
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use breakwater_fleet::Fleet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), breakwater_fleet::FleetError> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379")
///     .instance("pay-1")
///     .heartbeat(Duration::from_millis(500))
///     .ttl(Duration::from_millis(1500))          // three heartbeats, the default
///     .quorum(2)
///     .key_prefix("payments")
///     .max_open(Duration::from_secs(300))
///     .max_probe_time(Duration::from_secs(20))
///     .connect()
///     .await?;
/// # let _ = fleet;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct FleetBuilder {
    url: String,
    instance: Option<String>,
    heartbeat: Duration,
    ttl: Option<Duration>,
    quorum: u32,
    prefix: String,
    max_open: Duration,
    max_probe_time: Duration,
}

/// A setting of a [`FleetBuilder`] that cannot be used, or a Redis URL that cannot be read.
///
/// # Example
///
/// ```
/// use breakwater_fleet::Fleet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let error = Fleet::builder("redis://127.0.0.1:6379")
///     .instance("pay-1")
///     .quorum(0)
///     .connect()
///     .await
///     .unwrap_err();
/// assert_eq!(error.to_string(), "fleet setting `quorum` = \"0\": must be at least 1");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetError {
    /// A setting out of range: which, the value given, and what is allowed.
    Setting {
        /// The setting's name, as the builder's method (and the registry's key) spells it.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// The Redis URL cannot be read (the `redis` crate's message).
    Url {
        /// The URL given.
        url: String,
        /// Why it cannot be read.
        reason: String,
    },
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setting {
                setting,
                value,
                allowed,
            } => write!(f, "fleet setting `{setting}` = {value:?}: {allowed}"),
            Self::Url { url, reason } => write!(f, "fleet setting `redis-url` = {url:?}: {reason}"),
        }
    }
}

impl std::error::Error for FleetError {}

/// What the fleet itself reports (the breakers report their own transitions):
/// [`Fleet::events`].
///
/// # Example
///
/// ```no_run
/// use breakwater_fleet::{Fleet, FleetEvent};
///
/// # async fn watch(fleet: Fleet) {
/// let mut events = fleet.events();
/// while let Ok(event) = events.recv().await {
///     match event {
///         FleetEvent::LocalOnly { .. } => eprintln!("alone: {event}"),
///         FleetEvent::Rejoined => eprintln!("{event}"),
///         other => eprintln!("{other}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FleetEvent {
    /// The last fleet view is older than the TTL (Redis down, slow or unreachable): every
    /// joined breaker decides alone until Redis answers again.
    LocalOnly {
        /// Why the last round failed.
        error: String,
    },
    /// Redis answers again: the breakers are back in the fleet.
    Rejoined,
    /// A value in the fleet's keys was ignored: the key and why.
    Ignored {
        /// The Redis key.
        key: String,
        /// Why it was ignored.
        reason: String,
    },
}

impl fmt::Display for FleetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalOnly { error } => {
                write!(
                    f,
                    "fleet view older than its TTL ({error}): breakers decide alone"
                )
            }
            Self::Rejoined => f.write_str("Redis answers again: breakers rejoined the fleet"),
            Self::Ignored { key, reason } => write!(f, "ignored {key}: {reason}"),
        }
    }
}

impl FleetBuilder {
    /// The Redis server, replacing the one given to [`Fleet::builder`] (a command-line flag
    /// over a file's `redis-url`, say).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// This process's id in the fleet: unique per process (two processes with one id
    /// overwrite each other's reports). 1 to 64 characters of `A-Z a-z 0-9 . _ -`. Required.
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// How often snapshots are published and the others' read, besides at every transition
    /// (default 1 s; at least [`MIN_HEARTBEAT`]). Instances agree within two heartbeats.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long a snapshot lives in Redis, and how old the last fleet view may get before the
    /// breakers go local-only (default three heartbeats; at least two).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How many live instances must report a breaker open (on their own evidence) for it to
    /// open here (default 2; at least 1: with 1, one instance's opening opens every instance).
    pub fn quorum(mut self, instances: u32) -> Self {
        self.quorum = instances;
        self
    }

    /// The prefix of the fleet's Redis keys (default `breakwater`): fleets sharing a Redis
    /// server under different prefixes do not see each other.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest the fleet opens a breaker for, whatever the reports say (default 10 min):
    /// a hostile or broken report cannot open the fleet for a day.
    pub fn max_open(mut self, wait: Duration) -> Self {
        self.max_open = wait;
        self
    }

    /// How long a prober keeps the fleet's probe while its probes do not finish (default
    /// 30 s; at least the TTL): a prober that gets no traffic goes back to open (cause
    /// `HalfOpenTimedOut`) and gives the probe to another instance. A lease in Redis with more
    /// time left than this was not written by this fleet's settings, and holds nobody.
    pub fn max_probe_time(mut self, time: Duration) -> Self {
        self.max_probe_time = time;
        self
    }

    fn validate(self) -> Result<(task::Config, redis::Client), FleetError> {
        let setting = |setting, value: String, allowed| FleetError::Setting {
            setting,
            value,
            allowed,
        };
        let instance = self.instance.unwrap_or_default();
        if instance.is_empty()
            || instance.len() > 64
            || !instance
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(setting(
                "instance",
                instance,
                "must be 1 to 64 characters of A-Z a-z 0-9 . _ - (and unique per process)",
            ));
        }
        if self.heartbeat < MIN_HEARTBEAT || self.heartbeat > Duration::from_secs(3_600) {
            return Err(setting(
                "heartbeat",
                format!("{:?}", self.heartbeat),
                "must be from 50ms to 1h",
            ));
        }
        let ttl = self.ttl.unwrap_or(self.heartbeat * 3);
        if ttl < self.heartbeat * 2 || ttl > Duration::from_secs(86_400) {
            return Err(setting(
                "ttl",
                format!("{ttl:?}"),
                "must be at least two heartbeats, and at most a day",
            ));
        }
        if self.quorum == 0 {
            return Err(setting("quorum", "0".to_owned(), "must be at least 1"));
        }
        if self.prefix.is_empty() || self.prefix.len() > 64 {
            return Err(setting(
                "key-prefix",
                self.prefix,
                "must be 1 to 64 characters",
            ));
        }
        if self.max_open < Duration::from_millis(1) || self.max_open > Duration::from_secs(86_400) {
            return Err(setting(
                "max-open",
                format!("{:?}", self.max_open),
                "must be from 1ms to a day",
            ));
        }
        if self.max_probe_time < ttl || self.max_probe_time > Duration::from_secs(86_400) {
            return Err(setting(
                "max-probe-time",
                format!("{:?}", self.max_probe_time),
                "must be at least the TTL (a prober's lease), and at most a day",
            ));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|e| FleetError::Url {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let config = task::Config {
            instance,
            incarnation: incarnation(),
            heartbeat: self.heartbeat,
            ttl,
            quorum: self.quorum,
            prefix: self.prefix,
            max_open: self.max_open,
            max_probe_time: self.max_probe_time,
        };
        Ok((config, client))
    }

    /// Checks the settings, starts the fleet's background task (on the current tokio
    /// runtime), and makes a first round trip to Redis, bounded by the TTL.
    ///
    /// Redis being down is not an error: the fleet starts local-only (a `warn` log line and
    /// the gauge at 0; the [`FleetEvent::LocalOnly`] of that first round goes out before
    /// anyone can subscribe) and joins when Redis answers ([`FleetEvent::Rejoined`]);
    /// [`Fleet::is_connected`] tells which.
    ///
    /// # Errors
    ///
    /// [`FleetError`] for a setting out of range or a URL that cannot be read, naming the
    /// setting, the value and what is allowed.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns its task there), like `tokio::spawn`.
    pub async fn connect(self) -> Result<Fleet, FleetError> {
        let (config, client) = self.validate()?;
        let inner = Arc::new(Inner::new(config));
        let handle = task::spawn(Arc::clone(&inner), client).await;
        Ok(Fleet {
            handle: Arc::new(Handle {
                inner,
                task: Mutex::new(Some(handle)),
            }),
        })
    }
}

/// A run of this process: tells its snapshots from an earlier run's under the same id.
fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    hasher.finish()
}

/// A fleet of instances sharing breaker state through Redis: see the [crate docs](crate).
///
/// Cheap to clone; the clones share one background task, which ends when the last is dropped.
///
/// # Example
///
/// ```no_run
/// use breakwater::CircuitBreaker;
/// use breakwater_fleet::Fleet;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = Fleet::builder("redis://127.0.0.1:6379").instance("pay-1").connect().await?;
/// let breaker = CircuitBreaker::builder("pg-payment").build()?;
/// fleet.join(&breaker);
/// println!("{} joined, Redis answering: {}", fleet.instance(), fleet.is_connected());
/// for peer in fleet.view("pg-payment").unwrap_or_default() {
///     println!("{}: {} ({} of {} calls failed)", peer.instance, peer.state, peer.failed, peer.calls);
/// }
/// fleet.leave().await; // at shutdown: this instance's reports go at once
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Fleet {
    handle: Arc<Handle>,
}

/// What the handles share; dropping the last stops the task.
struct Handle {
    inner: Arc<Inner>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// What the handles and the background task share.
pub(crate) struct Inner {
    pub(crate) config: task::Config,
    /// The joined breakers.
    pub(crate) members: Mutex<Vec<Arc<Member>>>,
    /// Names whose dropped breaker a new one replaced before the task saw it go.
    pub(crate) replaced: Mutex<Vec<Arc<str>>>,
    /// Wakes the task: a transition, a join, or the end.
    pub(crate) wake: Arc<Notify>,
    pub(crate) stopping: AtomicBool,
    pub(crate) connected: AtomicBool,
    pub(crate) events: broadcast::Sender<FleetEvent>,
}

impl Inner {
    fn new(config: task::Config) -> Self {
        Self {
            config,
            members: Mutex::new(Vec::new()),
            replaced: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            stopping: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            events: broadcast::channel(64).0,
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(crate) fn members(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Member>>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A joined breaker, as the fleet follows it.
pub(crate) struct Member {
    pub(crate) name: Arc<str>,
    pub(crate) breaker: WeakCircuitBreaker,
    /// This instance's transitions of the breaker (its snapshots' generation).
    pub(crate) generation: AtomicU64,
    /// Whether the breaker's latest opening was the fleet's (a quorum), not its own.
    pub(crate) fleet_opened: AtomicBool,
    /// How many times the breaker opened on its own evidence: each one makes the fleet's
    /// last "probes succeeded" out of date, until a round has told Redis so.
    pub(crate) local_openings: AtomicU64,
    /// How many times the fleet opened the breaker (a quorum): each is stamped with Redis's
    /// time, so only a "closed" mark written after it may close the breaker.
    pub(crate) fleet_openings: AtomicU64,
    /// Whether the breaker's latest transition was half-open to closed on its own probes:
    /// only then does a prober tell the fleet its probes succeeded.
    pub(crate) probes_succeeded: AtomicBool,
    pub(crate) subscription: Mutex<Option<SubscriptionId>>,
    /// The others' last reports, for [`Fleet::view`].
    pub(crate) peers: Mutex<Vec<Peer>>,
}

impl Member {
    /// What a transition tells the fleet (called by the breaker, on its transition's path:
    /// atomics and a wake-up only).
    fn transitioned(&self, event: &breakwater::circuit_breaker::Event, wake: &Notify) {
        use breakwater::CircuitState::{Closed, HalfOpen, Open};
        let (from, to, cause) = match event.kind() {
            EventKind::StateTransition { from, to, cause } => (*from, *to, Some(*cause)),
            EventKind::Reset | EventKind::Reconfigured => (Closed, Closed, None),
            _ => return,
        };
        // Openings that are not evidence of a failing downstream: the fleet's word, and a
        // prober put back because no probe finished in time.
        let not_evidence = matches!(
            cause,
            Some(TransitionCause::FleetQuorum { .. } | TransitionCause::HalfOpenTimedOut)
        );
        let open = to == Open;
        self.fleet_opened
            .store(open && not_evidence, Ordering::Release);
        if open && !not_evidence {
            self.local_openings.fetch_add(1, Ordering::AcqRel);
        }
        if open && matches!(cause, Some(TransitionCause::FleetQuorum { .. })) {
            self.fleet_openings.fetch_add(1, Ordering::AcqRel);
        }
        self.probes_succeeded.store(
            from == HalfOpen && to == Closed && cause == Some(TransitionCause::ProbesSucceeded),
            Ordering::Release,
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        wake.notify_one();
    }
}

impl Fleet {
    /// Starts building a fleet on the Redis server at `url` (`redis://HOST:PORT/DB`, with
    /// `redis://:PASSWORD@...` or `rediss://` as the `redis` crate reads them).
    pub fn builder(url: impl Into<String>) -> FleetBuilder {
        FleetBuilder {
            url: url.into(),
            instance: None,
            heartbeat: Duration::from_secs(1),
            ttl: None,
            quorum: 2,
            prefix: "breakwater".to_owned(),
            max_open: Duration::from_secs(600),
            max_probe_time: Duration::from_secs(30),
        }
    }

    /// Joins `breaker` to the fleet: breakers of its name on every instance are one fleet
    /// breaker. Held weakly (dropping every handle of the breaker leaves the fleet), followed
    /// through its transitions only. Published at once.
    ///
    /// `false`, and nothing changes, if this breaker, or another of the same name, is joined
    /// already (one instance has one report per name; the second is logged), or the fleet was
    /// left.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run(fleet: breakwater_fleet::Fleet) -> Result<(), breakwater::ConfigError> {
    /// let breaker = breakwater::CircuitBreaker::builder("pg-payment").build()?;
    /// assert!(fleet.join(&breaker));
    /// assert!(!fleet.join(&breaker)); // once is enough
    /// # Ok(())
    /// # }
    /// ```
    pub fn join(&self, breaker: &CircuitBreaker) -> bool {
        let inner = &self.handle.inner;
        if inner.stopping.load(Ordering::Acquire) {
            tracing::warn!(
                breaker = breaker.name(),
                instance = %inner.config.instance,
                "the fleet was left: this breaker stays local"
            );
            return false;
        }
        let member = {
            let mut members = inner.members();
            if let Some(at) = members.iter().position(|m| &*m.name == breaker.name()) {
                match members[at].breaker.upgrade() {
                    // A dropped breaker the task has not cleared yet: this one replaces it
                    // (the task forgets what it knew of the old one first).
                    None => {
                        let old = members.remove(at);
                        inner
                            .replaced
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Arc::clone(&old.name));
                    }
                    Some(other) if &other == breaker => return false,
                    Some(_) => {
                        tracing::warn!(
                            breaker = breaker.name(),
                            instance = %inner.config.instance,
                            "another breaker of this name is joined to the fleet already: this one stays local"
                        );
                        return false;
                    }
                }
            }
            let member = Arc::new(Member {
                name: breaker.name().into(),
                breaker: breaker.downgrade(),
                generation: AtomicU64::new(0),
                fleet_opened: AtomicBool::new(false),
                // Open when it joins: on its own evidence, as far as the fleet knows.
                local_openings: AtomicU64::new(u64::from(
                    breaker.state() == breakwater::CircuitState::Open,
                )),
                fleet_openings: AtomicU64::new(0),
                probes_succeeded: AtomicBool::new(false),
                subscription: Mutex::new(None),
                peers: Mutex::new(Vec::new()),
            });
            members.push(Arc::clone(&member));
            member
        };
        let (listener, wake) = (Arc::clone(&member), Arc::clone(&inner.wake));
        let id = breaker.on_state_transition(move |event| listener.transitioned(event, &wake));
        *member
            .subscription
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(id);
        inner.wake.notify_one();
        true
    }

    /// This process's id in the fleet.
    pub fn instance(&self) -> &str {
        &self.handle.inner.config.instance
    }

    /// Whether the fleet view is fresh (the last round trip to Redis is within the TTL):
    /// `false` while local-only.
    pub fn is_connected(&self) -> bool {
        self.handle.inner.connected.load(Ordering::Acquire)
    }

    /// The other live instances' last reports of the breaker `name`, as of the last round;
    /// `None` if no breaker of that name is joined. Empty while local-only.
    pub fn view(&self, name: &str) -> Option<Vec<Peer>> {
        let members = self.handle.inner.members();
        let member = members.iter().find(|m| &*m.name == name)?;
        let peers = member.peers.lock().unwrap_or_else(PoisonError::into_inner);
        Some(peers.clone())
    }

    /// What the fleet itself reports from now on: going local-only, rejoining, ignored
    /// values. A receiver that falls 64 events behind skips ahead.
    pub fn events(&self) -> broadcast::Receiver<FleetEvent> {
        self.handle.inner.events.subscribe()
    }

    /// Leaves the fleet now and waits (up to a TTL) until this instance's reports are
    /// deleted and any probe it held is given back. Other handles stop working with the
    /// fleet too.
    pub async fn leave(self) {
        self.handle.inner.stop();
        let task = self
            .handle
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(self.handle.inner.config.ttl, task).await;
        }
    }
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.handle.inner;
        f.debug_struct("Fleet")
            .field("instance", &inner.config.instance)
            .field("quorum", &inner.config.quorum)
            .field("heartbeat", &inner.config.heartbeat)
            .field("connected", &self.is_connected())
            .field("joined", &inner.members().len())
            .finish()
    }
}
