//! What a coordinator of several instances asks of a breaker: breakwater-fleet, which shares
//! breaker state over Redis, is one. A breaker joined to nothing never sees any of this.
//!
//! The coordinator stays off the call path: it reads the breaker (state, remaining wait,
//! window) and moves it with these methods from a task of its own. Three things are needed:
//!
//! - opening a closed breaker on the fleet's word, for as long as the fleet says
//!   ([`open_by_fleet`](CircuitBreaker::open_by_fleet));
//! - one prober for the fleet: an open breaker whose wait is over stays open while the
//!   coordinator [holds](CircuitBreaker::hold_probes) it, until the coordinator either lets
//!   it probe ([`start_probing`](CircuitBreaker::start_probing)) or closes it because another
//!   instance's probes succeeded ([`close_by_fleet`](CircuitBreaker::close_by_fleet));
//! - a lease on that hold, so a coordinator that stops answering (its Redis down or slow)
//!   cannot keep a breaker open: once the lease runs out, the breaker probes on its own.
//!
//! None of these shortens an open wait, and none closes a breaker whose wait is not over.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::policy::{Policy, TransitionCause};
use super::{CircuitBreaker, CircuitState};

impl CircuitBreaker {
    /// Opens the breaker for `wait` (at least a millisecond) if it is
    /// [`Closed`](CircuitState::Closed), with the cause
    /// [`FleetQuorum`](TransitionCause::FleetQuorum)`{ reporting }`: `reporting` live
    /// instances of a fleet reported it open. `false`, and nothing happens, in any other state.
    ///
    /// The open state is the breaker's own from then on: the wait ends by its clock, and what
    /// follows is as after any opening (half-open probes, unless a coordinator
    /// [holds](Self::hold_probes) them).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg").build()?;
    /// assert!(breaker.open_by_fleet(Duration::from_secs(12), 2));
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// let left = breaker.metrics().retry_after.unwrap();
    /// assert!(left > Duration::from_secs(11) && left < Duration::from_secs(13));
    /// assert!(!breaker.open_by_fleet(Duration::from_secs(60), 3)); // open already
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn open_by_fleet(&self, wait: Duration, reporting: u32) -> bool {
        let cause = TransitionCause::FleetQuorum { reporting };
        self.core()
            .coordinate(|policy, core| policy.open_closed_for(wait, cause, core))
    }

    /// Holds the move to half-open for `lease` from now: while the lease runs, an open
    /// breaker whose wait is over stays [`Open`](CircuitState::Open) (its rejections say
    /// when the lease ends) instead of letting probe calls through, and the automatic
    /// transition waits too. Renew it before it runs out to keep holding; once it runs out,
    /// the breaker behaves as if never held. A zero `lease` ends the hold.
    ///
    /// For a coordinator that lets one instance of a fleet probe at a time: it holds every
    /// joined breaker, and moves the one that won the fleet's probe with
    /// [`start_probing`](Self::start_probing). Costs a call nothing unless the breaker is
    /// open with its wait over (one atomic load then).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::{CircuitBreaker, CircuitOpen, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg")
    ///     .wait_duration_in_open(Duration::from_millis(1))
    ///     .build()?;
    /// breaker.hold_probes(Duration::from_secs(60));
    /// breaker.transition_to(CircuitState::Open);
    /// std::thread::sleep(Duration::from_millis(5)); // the wait is over...
    /// assert!(breaker.try_acquire().is_err()); // ...but the hold keeps it open
    /// assert!(breaker.start_probing()); // the coordinator lets it probe
    /// assert_eq!(breaker.state(), CircuitState::HalfOpen);
    /// assert!(breaker.try_acquire().is_ok());
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn hold_probes(&self, lease: Duration) {
        let shared = self.shared();
        let until = if lease.is_zero() {
            0
        } else {
            let lease = u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX);
            shared.id.time.now().saturating_add(lease).max(1)
        };
        shared.hold.store(until, Ordering::Release);
    }

    /// Whether a [hold](Self::hold_probes) is in force now.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder("pg").build()?;
    /// assert!(!breaker.probes_held());
    /// breaker.hold_probes(Duration::from_secs(3));
    /// assert!(breaker.probes_held());
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn probes_held(&self) -> bool {
        let shared = self.shared();
        shared.id.time.now() < shared.hold.load(Ordering::Acquire)
    }

    /// Moves an open breaker whose wait is over to [`HalfOpen`](CircuitState::HalfOpen) (cause
    /// [`WaitElapsed`](TransitionCause::WaitElapsed)), whatever [holds](Self::hold_probes) it:
    /// this instance probes for the fleet. `false`, and nothing happens, if the breaker is not
    /// open or its wait is not over.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg")
    ///     .wait_duration_in_open(Duration::from_secs(30))
    ///     .build()?;
    /// breaker.transition_to(CircuitState::Open);
    /// assert!(!breaker.start_probing()); // the wait is not over: never shortened
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn start_probing(&self) -> bool {
        self.core().coordinate(Policy::probe_now)
    }

    /// Closes an open breaker whose wait is over (cause
    /// [`FleetProbesSucceeded`](TransitionCause::FleetProbesSucceeded)): it was held while
    /// another instance probed for the fleet, and those probes succeeded. `false`, and nothing
    /// happens, if the breaker is not open or its wait is not over: a breaker still waiting
    /// waits its full time.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use breakwater::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg")
    ///     .wait_duration_in_open(Duration::from_secs(30))
    ///     .build()?;
    /// breaker.transition_to(CircuitState::Open);
    /// assert!(!breaker.close_by_fleet()); // still waiting: never shortened
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn close_by_fleet(&self) -> bool {
        self.core().coordinate(Policy::close_held)
    }

    /// Moves a [`HalfOpen`](CircuitState::HalfOpen) breaker back to open for its configured
    /// wait (the cause is
    /// [`HalfOpenTimedOut`](TransitionCause::HalfOpenTimedOut), as with
    /// [`max_wait_in_half_open`](super::Builder::max_wait_in_half_open)): it probed for the
    /// fleet and no probe finished in the time the fleet gives, so another instance may probe
    /// instead. `false`, and nothing happens, in any other state.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg").build()?;
    /// assert!(!breaker.end_probing()); // closed: nothing to end
    /// breaker.transition_to(CircuitState::HalfOpen);
    /// assert!(breaker.end_probing());
    /// assert_eq!(breaker.state(), CircuitState::Open);
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn end_probing(&self) -> bool {
        self.core().coordinate(Policy::end_probing)
    }

    /// Whether the breaker is [`Open`](CircuitState::Open) with its wait over: it would let
    /// probe calls through now, unless [held](Self::hold_probes).
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::{CircuitBreaker, CircuitState};
    ///
    /// let breaker = CircuitBreaker::builder("pg").build()?;
    /// breaker.transition_to(CircuitState::Open); // 60 s by default
    /// assert!(!breaker.wait_over());
    /// # Ok::<(), breakwater::ConfigError>(())
    /// ```
    pub fn wait_over(&self) -> bool {
        let snapshot = self.metrics();
        snapshot.state == CircuitState::Open && snapshot.retry_after.is_some_and(|d| d.is_zero())
    }
}
