//! Fault injection: a layer that, with the probabilities you give it, fails calls, loses
//! responses or adds latency, so you can see what your stack does before production shows you.
//!
//! A [`Chaos`] holds the settings and a call counter; [`Chaos::layer`] wraps any `Service`
//! with them. For each call the layer takes the next number from the counter and makes three
//! draws from a hash of the seed and that number (see [`Chaos::plan`]):
//!
//! - **fault**: with probability [`failure_rate`](ChaosBuilder::failure_rate) the call fails
//!   without reaching the inner service; with probability
//!   [`response_loss_rate`](ChaosBuilder::response_loss_rate) the inner service is called and
//!   its response is thrown away and replaced by the fault (the request had its effect, the
//!   caller never learns it: a lost response); otherwise the call goes through;
//! - **latency**: with probability [`latency_rate`](ChaosBuilder::latency_rate), the call
//!   waits a [latency](ChaosBuilder::latency) first (whatever the fault draw said), uniformly
//!   drawn between the configured bounds.
//!
//! The fault itself comes from a closure you give the layer, because the layer cannot invent
//! your service's error or response type: [`fault::error`] for services whose error converts
//! from [`InjectedFault`] (such as `BoxError`), [`fault::status`] for an HTTP status, or your
//! own `Fn(Injected) -> Result<Response, Error>`.
//!
//! # Off unless enabled
//!
//! A `Chaos` does nothing until it is enabled, with [`ChaosBuilder::enabled`],
//! [`Chaos::set_enabled`] or `enabled: true` in a configuration file: the layer can stay in
//! the stack in production and cost one atomic load per call. A disabled `Chaos` does not
//! count calls.
//!
//! # Replays
//!
//! Draws depend only on the seed and the call number (the hash is fixed: the same seed gives
//! the same faults with every version of this crate, on every machine), and every clone of a
//! `Chaos` and of its layers shares one counter. A sequential run replays exactly; with
//! concurrent callers, the sequence of decisions is the same, but which request gets which
//! number depends on scheduling. [`Chaos::restart`] sets the counter back to zero.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use breakwater::chaos::{self, Chaos, InjectedFault};
//! use breakwater::BoxError;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let chaos = Chaos::builder()
//!     .seed(7)
//!     .failure_rate(0.3)
//!     .latency_rate(0.1)
//!     .latency(Duration::from_millis(1)..=Duration::from_millis(5))
//!     .enabled(true)
//!     .build()?;
//!
//! let mut db = ServiceBuilder::new()
//!     .layer(chaos.layer(chaos::fault::error()))
//!     .service_fn(|sql: &'static str| async move { Ok::<_, BoxError>(sql.len()) });
//!
//! let mut failed = 0;
//! for _ in 0..1_000 {
//!     match db.ready().await?.call("UPDATE payments SET ...").await {
//!         Ok(_) => {}
//!         Err(e) if e.is::<InjectedFault>() => failed += 1,
//!         Err(e) => return Err(e),
//!     }
//! }
//! assert_eq!(chaos.calls(), 1_000);
//! assert!((250..350).contains(&failed));
//! # Ok(())
//! # }
//! ```
//!
//! # From a configuration file
//!
//! A [`Registry`](crate::Registry) reads a `breakwater.chaos` section beside the breakers and
//! hands out one `Chaos` per name with [`Registry::chaos`](crate::Registry::chaos); see the
//! [registry docs](crate::registry#chaos).

mod draw;
pub mod fault;
mod future;
mod layer;

use std::error::Error;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use self::fault::{FaultKind, Injected, InjectedFault};
pub use self::future::ResponseFuture;
pub use self::layer::{ChaosLayer, ChaosService};

use self::draw::{SCALE, Stream, draw, threshold};

/// The longest latency the layer adds: an hour.
const MAX_LATENCY: Duration = Duration::from_secs(60 * 60);

/// Settings and a call counter, shared by every clone and every layer made from it: see the
/// [module docs](self).
///
/// # Example
///
/// ```
/// use breakwater::chaos::{Chaos, FaultKind};
///
/// let chaos = Chaos::builder().seed(42).failure_rate(0.5).enabled(true).build()?;
/// // What call number 0, 1, 2, ... gets: a pure function of the seed.
/// let faults: Vec<Option<FaultKind>> = (0..4).map(|n| chaos.plan(n).fault()).collect();
/// let again = Chaos::builder().seed(42).failure_rate(0.5).enabled(true).build()?;
/// assert_eq!(faults, (0..4).map(|n| again.plan(n).fault()).collect::<Vec<_>>());
/// # Ok::<(), breakwater::chaos::ChaosConfigError>(())
/// ```
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Inner>,
}

/// The settings, each in its own atomic so that [`Chaos::reconfigure`] and
/// [`Chaos::set_enabled`] reach every layer in use without a lock on the call path. A call that
/// runs during a reconfiguration may see some old settings and some new.
#[derive(Debug)]
struct Inner {
    enabled: AtomicBool,
    seed: AtomicU64,
    /// The rates as `f64` bits (kept as given, so that [`Chaos::settings`] returns them
    /// exactly): draws below the failure threshold fail, those from it up to failure + loss
    /// lose the response.
    failure: AtomicU64,
    loss: AtomicU64,
    latency: AtomicU64,
    latency_min_nanos: AtomicU64,
    latency_max_nanos: AtomicU64,
    calls: AtomicU64,
}

impl Chaos {
    /// A builder, with every rate 0, seed 0, and not enabled.
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder::default()
    }

    /// A `Chaos` that does nothing until [reconfigured](Self::reconfigure) or
    /// [enabled](Self::set_enabled): every rate 0.
    pub fn disabled() -> Self {
        Self {
            inner: Arc::new(Inner::new(&Settings::default())),
        }
    }

    /// A layer that injects faults made by `fault` (see [`fault`] for ready-made ones).
    pub fn layer<F>(&self, fault: F) -> ChaosLayer<F> {
        ChaosLayer::new(self.clone(), fault)
    }

    /// Whether calls are being disturbed.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Turns fault injection on or off for every layer made from this `Chaos`.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(enabled, Ordering::Relaxed);
    }

    /// How many calls were counted (each one drew a decision) since it was made or
    /// [restarted](Self::restart).
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Sets the call counter back to zero: the next calls get the decisions of a new run.
    pub fn restart(&self) {
        self.inner.calls.store(0, Ordering::Relaxed);
    }

    /// Takes every setting of `builder` (the counter goes on).
    ///
    /// # Errors
    ///
    /// As [`ChaosBuilder::build`]; nothing changes then.
    pub fn reconfigure(&self, builder: &ChaosBuilder) -> Result<(), ChaosConfigError> {
        let settings = builder.check()?;
        self.inner.store(&settings);
        Ok(())
    }

    /// The settings in force, as a builder (to change one and [`reconfigure`](Self::reconfigure)).
    pub fn settings(&self) -> ChaosBuilder {
        let inner = &self.inner;
        let rate = |r: &AtomicU64| f64::from_bits(r.load(Ordering::Relaxed));
        ChaosBuilder {
            enabled: inner.enabled.load(Ordering::Relaxed),
            seed: inner.seed.load(Ordering::Relaxed),
            failure_rate: rate(&inner.failure),
            loss_rate: rate(&inner.loss),
            latency_rate: rate(&inner.latency),
            latency: Duration::from_nanos(inner.latency_min_nanos.load(Ordering::Relaxed))
                ..=Duration::from_nanos(inner.latency_max_nanos.load(Ordering::Relaxed)),
        }
    }

    /// What call number `call` (0-based) gets with the settings in force, enabled or not: a
    /// pure function of the seed, the rates and `call`.
    pub fn plan(&self, call: u64) -> Decision {
        let inner = &self.inner;
        let seed = inner.seed.load(Ordering::Relaxed);
        let threshold = |r: &AtomicU64| threshold(f64::from_bits(r.load(Ordering::Relaxed)));
        let failure = threshold(&inner.failure);
        let loss = threshold(&inner.loss);
        let fault_draw = draw(seed, call, Stream::Fault);
        let fault = if fault_draw < failure {
            Some(FaultKind::Failed)
        } else if fault_draw - failure < loss {
            Some(FaultKind::ResponseLost)
        } else {
            None
        };
        let latency = if draw(seed, call, Stream::Latency) < threshold(&inner.latency) {
            let min = inner.latency_min_nanos.load(Ordering::Relaxed);
            let max = inner.latency_max_nanos.load(Ordering::Relaxed);
            let spread = u128::from(max.saturating_sub(min));
            // (spread + 1) × draw / 2⁵³: uniform over [min, max], both ends included.
            let offset =
                (spread + 1) * u128::from(draw(seed, call, Stream::Amount)) / u128::from(SCALE);
            // At most `spread`, so the sum is at most `max`.
            Some(Duration::from_nanos(min + offset as u64))
        } else {
            None
        };
        Decision {
            call,
            fault,
            latency,
        }
    }

    /// The decision for the next call: `None` (and nothing counted) while disabled.
    pub(crate) fn next(&self) -> Option<Decision> {
        if !self.is_enabled() {
            return None;
        }
        let call = self.inner.calls.fetch_add(1, Ordering::Relaxed);
        Some(self.plan(call))
    }
}

impl Default for Chaos {
    fn default() -> Self {
        Self::disabled()
    }
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("settings", &self.settings())
            .field("calls", &self.calls())
            .finish()
    }
}

impl Inner {
    fn new(settings: &Settings) -> Self {
        let inner = Self {
            enabled: AtomicBool::new(false),
            seed: AtomicU64::new(0),
            failure: AtomicU64::new(0.0f64.to_bits()),
            loss: AtomicU64::new(0.0f64.to_bits()),
            latency: AtomicU64::new(0.0f64.to_bits()),
            latency_min_nanos: AtomicU64::new(0),
            latency_max_nanos: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        };
        inner.store(settings);
        inner
    }

    fn store(&self, s: &Settings) {
        self.seed.store(s.seed, Ordering::Relaxed);
        self.failure.store(s.failure.to_bits(), Ordering::Relaxed);
        self.loss.store(s.loss.to_bits(), Ordering::Relaxed);
        self.latency.store(s.latency.to_bits(), Ordering::Relaxed);
        self.latency_min_nanos
            .store(s.latency_min_nanos, Ordering::Relaxed);
        self.latency_max_nanos
            .store(s.latency_max_nanos, Ordering::Relaxed);
        // Last: a layer turned on sees the new settings (near enough: the loads are relaxed).
        self.enabled.store(s.enabled, Ordering::Release);
    }
}

/// What the layer does to one call: see [`Chaos::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    call: u64,
    fault: Option<FaultKind>,
    latency: Option<Duration>,
}

impl Decision {
    /// The call's number, from 0.
    pub fn call(&self) -> u64 {
        self.call
    }

    /// The fault injected, if any.
    pub fn fault(&self) -> Option<FaultKind> {
        self.fault
    }

    /// The latency added before the call, if any.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }
}

/// Settings of a [`Chaos`], checked by [`build`](Self::build).
///
/// Rates are fractions from 0 to 1 (0.3 is 30%), as the chance that one call is hit.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::chaos::Chaos;
///
/// let error = Chaos::builder().failure_rate(0.7).response_loss_rate(0.5).build().unwrap_err();
/// assert_eq!(error.setting(), "response_loss_rate");
/// assert_eq!(
///     error.to_string(),
///     "chaos setting `response_loss_rate`: 0.5 is not allowed: it must be a fraction from 0 \
///      to 1 minus failure_rate (0.7): a call fails or loses its response, not both"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosBuilder {
    enabled: bool,
    seed: u64,
    failure_rate: f64,
    loss_rate: f64,
    latency_rate: f64,
    latency: RangeInclusive<Duration>,
}

impl Default for ChaosBuilder {
    fn default() -> Self {
        Self {
            enabled: false,
            seed: 0,
            failure_rate: 0.0,
            loss_rate: 0.0,
            latency_rate: 0.0,
            latency: Duration::ZERO..=Duration::ZERO,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    enabled: bool,
    seed: u64,
    failure: f64,
    loss: f64,
    latency: f64,
    latency_min_nanos: u64,
    latency_max_nanos: u64,
}

impl ChaosBuilder {
    /// Whether the layers disturb calls at all (default: `false`, nothing happens).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The seed of the draws (default 0): the same seed, the same faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The chance that a call fails without reaching the inner service (default 0).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// The chance that a call reaches the inner service and its response is replaced by the
    /// fault (default 0). At most `1 − failure_rate`.
    pub fn response_loss_rate(mut self, rate: f64) -> Self {
        self.loss_rate = rate;
        self
    }

    /// The chance that a call waits a [`latency`](Self::latency) first (default 0).
    pub fn latency_rate(mut self, rate: f64) -> Self {
        self.latency_rate = rate;
        self
    }

    /// How long a delayed call waits: a fixed `Duration`, or a range (`min..=max`) drawn from
    /// uniformly. At most an hour.
    pub fn latency(mut self, latency: impl Into<LatencyRange>) -> Self {
        self.latency = latency.into().0;
        self
    }

    /// A [`Chaos`] with these settings.
    ///
    /// # Errors
    ///
    /// A [`ChaosConfigError`] naming the setting, the value and what is allowed: a rate that
    /// is not a fraction from 0 to 1, failure and loss rates adding up to more than 1, a
    /// latency range whose minimum is above its maximum, or a latency over an hour.
    pub fn build(&self) -> Result<Chaos, ChaosConfigError> {
        let settings = self.check()?;
        Ok(Chaos {
            inner: Arc::new(Inner::new(&settings)),
        })
    }

    fn check(&self) -> Result<Settings, ChaosConfigError> {
        const FRACTION: &str = "a fraction from 0 to 1 (0.3 is 30%)";
        for (setting, value) in [
            ("failure_rate", self.failure_rate),
            ("response_loss_rate", self.loss_rate),
            ("latency_rate", self.latency_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ChaosConfigError::new(
                    setting,
                    value.to_string(),
                    FRACTION.into(),
                ));
            }
        }
        if threshold(self.failure_rate) + threshold(self.loss_rate) > SCALE {
            return Err(ChaosConfigError::new(
                "response_loss_rate",
                self.loss_rate.to_string(),
                format!(
                    "a fraction from 0 to 1 minus failure_rate ({}): a call fails or loses its \
                     response, not both",
                    self.failure_rate
                ),
            ));
        }
        let (min, max) = (*self.latency.start(), *self.latency.end());
        if min > max {
            return Err(ChaosConfigError::new(
                "latency",
                format!("{min:?}..={max:?}"),
                "a range whose minimum is at most its maximum".into(),
            ));
        }
        if max > MAX_LATENCY {
            return Err(ChaosConfigError::new(
                "latency",
                format!("{max:?}"),
                format!("at most {MAX_LATENCY:?}"),
            ));
        }
        // At most an hour: the nanoseconds fit in u64.
        let nanos = |d: Duration| d.as_nanos() as u64;
        Ok(Settings {
            enabled: self.enabled,
            seed: self.seed,
            failure: self.failure_rate,
            loss: self.loss_rate,
            latency: self.latency_rate,
            latency_min_nanos: nanos(min),
            latency_max_nanos: nanos(max),
        })
    }
}

/// A latency: one `Duration`, or a `RangeInclusive<Duration>` drawn from uniformly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyRange(RangeInclusive<Duration>);

impl From<Duration> for LatencyRange {
    fn from(d: Duration) -> Self {
        LatencyRange(d..=d)
    }
}

impl From<RangeInclusive<Duration>> for LatencyRange {
    fn from(range: RangeInclusive<Duration>) -> Self {
        LatencyRange(range)
    }
}

/// A chaos setting is out of range: names the setting, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosConfigError {
    setting: &'static str,
    value: String,
    allowed: String,
}

impl ChaosConfigError {
    fn new(setting: &'static str, value: String, allowed: String) -> Self {
        Self {
            setting,
            value,
            allowed,
        }
    }

    /// The setting, as the builder method names it.
    pub fn setting(&self) -> &str {
        self.setting
    }

    /// The value given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the setting allows.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ChaosConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos setting `{}`: {} is not allowed: it must be {}",
            self.setting, self.value, self.allowed
        )
    }
}

impl Error for ChaosConfigError {}
