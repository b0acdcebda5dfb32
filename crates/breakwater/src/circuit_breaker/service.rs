use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;
use tower_service::Service;

use super::future::ResponseFuture;
use super::generation::Core;
use super::policy::slot::Slot;
use super::policy::state::Word;
use super::policy::{Next, Rejection};
use super::recording::{AtResponse, Finish, RecordAt};
use super::reject::{OnOpen, WithError};
use super::{CallPermit, CircuitBreaker, CircuitOpen, CircuitState};
use std::sync::Arc;

/// A service behind a circuit breaker; made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// Admission is decided in `poll_ready`, as `tower::limit::ConcurrencyLimit` decides: the
/// service holds the decision (a permit, or a rejection) until `call` uses it. A clone does not
/// copy it; dropping the service, or the response future, gives a half-open permit back.
///
/// By default an open breaker fails fast: `poll_ready` is ready at once, without polling the
/// inner service, and `call` returns a future that resolves to a [`CircuitOpen`] error (boxed)
/// without calling it. With [`backpressure`](super::CircuitBreakerLayer::backpressure),
/// `poll_ready` waits instead.
///
/// By default the error type is [`BoxError`](crate::BoxError): the inner service's errors,
/// converted, or [`CircuitOpen`]. With [`respond_503`](super::CircuitBreakerLayer::respond_503)
/// (the mode `R`) a rejected call is answered `503` instead, and the inner error type stays.
/// The mode `P` decides when the classifier `C` records the outcome (see [`RecordAt`]).
///
/// # Example
///
/// ```
/// use breakwater::{CircuitBreaker, classify::FailOnError};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breaker = CircuitBreaker::builder("echo").build()?;
/// let mut echo = breaker
///     .layer_with(FailOnError)
///     .layer(service_fn(|s: String| async move { Ok::<_, std::io::Error>(s) }));
///
/// let reply = echo.ready().await?.call("hello".to_string()).await?;
/// assert_eq!(reply, "hello");
/// assert_eq!(breaker.metrics().successful_calls, 1);
/// # Ok(())
/// # }
/// ```
pub struct CircuitBreakerService<S, C, R = WithError, P = AtResponse> {
    inner: S,
    /// The breaker's generation this service calls through: one `Arc`, so a clone of the
    /// service costs one atomic update. A reconfiguration retires it; the service then moves
    /// to its successor.
    core: Arc<Core>,
    /// The generation's slot (its state word), one load nearer than through `core`.
    slot: &'static Slot,
    classifier: C,
    backpressure: bool,
    /// The decision `poll_ready` made, when it fits in the state word's form: a closed state
    /// word (a call admitted while closed, in its epoch) or a rejection (fail fast), or
    /// `NOTHING`. One word, stored and read back whole: a wider value assembled from narrower
    /// stores and read back at once stalls the load, and `call` reads it right after
    /// `poll_ready`.
    held: u64,
    /// Any other admission: a permit to keep (a probe, metrics only, disabled).
    permit: Option<CallPermit>,
    waiter: Option<Box<Waiter>>,
    mode: PhantomData<fn() -> (R, P)>,
}

/// `held` when no decision is held: not a state word (no state has code 7).
const NOTHING: u64 = u64::MAX;

enum Decision {
    Admitted(CallPermit),
    Rejected(Rejection),
}

/// What a service in backpressure mode waits on: the breaker's notifications, and the time at
/// which the rejection may end by itself.
#[derive(Default)]
struct Waiter {
    notified: Option<Pin<Box<OwnedNotified>>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` with `breaker`, classifying results with `classifier`. A layer made by
    /// [`CircuitBreaker::layer`] or [`layer_with`](CircuitBreaker::layer_with) offers the other
    /// modes.
    pub fn new(inner: S, breaker: &CircuitBreaker, classifier: C) -> Self {
        Self::with_mode(inner, breaker, classifier, false)
    }
}

impl<S, C, R, P> CircuitBreakerService<S, C, R, P> {
    pub(crate) fn with_mode(
        inner: S,
        breaker: &CircuitBreaker,
        classifier: C,
        backpressure: bool,
    ) -> Self {
        Self::with_core(inner, breaker.core(), classifier, backpressure)
    }

    fn with_core(inner: S, core: Arc<Core>, classifier: C, backpressure: bool) -> Self {
        Self {
            inner,
            slot: core.slot(),
            core,
            classifier,
            backpressure,
            held: NOTHING,
            permit: None,
            waiter: None,
            mode: PhantomData,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service; a held admission is dropped (a half-open permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The name of the breaker.
    pub fn breaker_name(&self) -> &str {
        self.core.name()
    }

    /// What a call attempt now gets; with `take_probe` false, `None` when it would be a
    /// half-open probe (none is taken).
    fn decide(&mut self, take_probe: bool) -> Option<Decision> {
        loop {
            let next = if take_probe {
                match self.core.try_acquire() {
                    Ok(admission) => Next::Admit(admission),
                    Err(rejection) => Next::Reject(rejection),
                }
            } else {
                self.core.next(false)
            };
            match next {
                Next::Admit(admission) => {
                    return Some(Decision::Admitted(CallPermit::new(&self.core, admission)));
                }
                Next::Probe => return None,
                // The breaker was reconfigured: from now on, go straight to its latest
                // generation. A backpressure waiter listens to the retired one, which will
                // never be told anything again: listen afresh.
                Next::Reject(rejection) if rejection.retired() => {
                    self.core = self.core.latest();
                    self.slot = self.core.slot();
                    if let Some(waiter) = &mut self.waiter {
                        waiter.notified = None;
                    }
                }
                Next::Reject(rejection) => return Some(Decision::Rejected(rejection)),
            }
        }
    }

    /// Decides, taking a probe permit if the call would be a probe.
    fn admit(&mut self) -> Decision {
        loop {
            // With probes allowed, every attempt decides.
            if let Some(decision) = self.decide(true) {
                return decision;
            }
        }
    }

    /// Backpressure: `Pending` until something may have changed; `Ready` means "decide again".
    fn wait(&mut self, cx: &mut Context<'_>, rejection: &Rejection) -> Poll<()> {
        let core = &self.core;
        let waiter = self.waiter.get_or_insert_with(Box::default);
        let Some(notified) = &mut waiter.notified else {
            // Listen before deciding again, so a transition in between is not missed.
            let mut notified = Box::pin(Arc::clone(&core.notify).notified_owned());
            notified.as_mut().enable();
            waiter.notified = Some(notified);
            return Poll::Ready(());
        };
        if notified.as_mut().poll(cx).is_ready() {
            waiter.notified = None;
            return Poll::Ready(());
        }
        // Past the deadline and still rejected, the automatic transition's timer is about to
        // move the breaker on, and will notify: wait for that rather than spin on the clock.
        let deadline = rejection.deadline();
        let after = deadline.saturating_sub(core.now());
        if deadline != u64::MAX && after > 0 {
            let deadline = tokio::time::Instant::now() + Duration::from_nanos(after);
            let sleep = waiter
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            sleep.as_mut().reset(deadline);
            if sleep.as_mut().poll(cx).is_ready() {
                waiter.notified = None;
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl<S: Clone, C: Clone, R, P> Clone for CircuitBreakerService<S, C, R, P> {
    fn clone(&self) -> Self {
        // A clone of a service that was never called since a reconfiguration (a router's
        // template, cloned per request) starts on the latest generation, not the retired one.
        let core = if self.slot.load().is_retired() {
            self.core.latest()
        } else {
            Arc::clone(&self.core)
        };
        Self::with_core(
            self.inner.clone(),
            core,
            self.classifier.clone(),
            self.backpressure,
        )
    }
}

/// What a call answers, in mode `P` with classifier `C`, when the inner service answers `Res`
/// or fails with `E`.
type Output<P, C, Req, Res, E> = <<P as RecordAt<C, Req, Res, E>>::Call as Finish<Res, E>>::Output;

impl<S, C, R, P, Request> Service<Request> for CircuitBreakerService<S, C, R, P>
where
    S: Service<Request>,
    P: RecordAt<C, Request, S::Response, S::Error>,
    R: OnOpen<Output<P, C, Request, S::Response, S::Error>, S::Error>,
{
    type Response = Output<P, C, Request, S::Response, S::Error>;
    type Error = R::Error;
    type Future = ResponseFuture<S::Future, P::Call, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The closed path, kept small: one load of the state word, the inner service, and the
        // admission kept as one word (a closed call holds nothing to give back).
        // A held closed admission or rejection is simply decided again.
        if self.permit.is_none() {
            let word = self.slot.load();
            if word.state() == CircuitState::Closed {
                if self.waiter.is_some() {
                    // Backpressure waited for this: nothing to wait for now.
                    self.waiter = None;
                }
                self.held = word.0;
                let ready = self.inner.poll_ready(cx);
                if let Poll::Ready(Err(_)) = ready {
                    // Not a call: nothing recorded.
                    self.held = NOTHING;
                }
                return ready.map_err(R::error);
            }
        }
        self.poll_ready_slow(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The closed path, kept small (the rest is out of line): an admission held as one word
        // of a state that still lasts. One call of the inner service, which the compiler can
        // then inline, moving the request straight into it.
        let held = std::mem::replace(&mut self.held, NOTHING);
        let word = Word(held);
        let permit = if held != NOTHING
            && word.state() == CircuitState::Closed
            && self.slot.load().epoch() == word.epoch()
        {
            CallPermit::closed(&self.core, self.slot, word.epoch())
        } else {
            match self.decide_call(held) {
                Ok(permit) => permit,
                Err(open) => return ResponseFuture::rejected(open),
            }
        };
        let call = P::start(&self.classifier, &request);
        let mut permit = permit;
        permit.start_timing();
        ResponseFuture::called(self.inner.call(request), permit, call)
    }
}

impl<S, C, R, P> CircuitBreakerService<S, C, R, P> {
    /// `call` off the closed path. A held rejection is answered; a permit taken in a state
    /// that has ended since `poll_ready` (the breaker opened, say) no longer admits the call;
    /// without `poll_ready` first (a broken tower contract), decide now.
    #[inline(never)]
    fn decide_call(&mut self, held: u64) -> Result<CallPermit, Box<CircuitOpen>> {
        let decision = if held != NOTHING && Word(held).state() != CircuitState::Closed {
            Decision::Rejected(Rejection::from_bits(held))
        } else {
            match self.permit.take() {
                Some(permit) if permit.is_current() => Decision::Admitted(permit),
                _ => self.admit(),
            }
        };
        match decision {
            Decision::Admitted(permit) => Ok(permit),
            Decision::Rejected(rejection) => {
                self.core.rejected(&rejection);
                Err(Box::new(CircuitOpen::new(&self.core, &rejection)))
            }
        }
    }

    /// `poll_ready` off the closed path: a held decision, a free probe, a rejection, a wait.
    #[inline(never)]
    fn poll_ready_slow<Request>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), R::Error>>
    where
        S: Service<Request>,
        P: RecordAt<C, Request, S::Response, S::Error>,
        R: OnOpen<Output<P, C, Request, S::Response, S::Error>, S::Error>,
    {
        // A held closed admission or rejection is decided again: the breaker has moved on.
        self.held = NOTHING;
        loop {
            let mut inner_ready = false;
            let decision = match self.permit.take() {
                // A permit is kept across polls while its state lasts.
                Some(permit) if permit.is_current() => Decision::Admitted(permit),
                // A rejection, or a permit of a state that has ended, is decided again: the
                // breaker may have moved on.
                _ => match self.decide(false) {
                    Some(decision) => decision,
                    // A probe is free: it goes to a service that can use it, so the inner
                    // service must be ready before one is taken. One that is not holds none.
                    None => match self.inner.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(R::error(error))),
                        Poll::Ready(Ok(())) => {
                            inner_ready = true;
                            self.admit()
                        }
                    },
                },
            };
            match decision {
                Decision::Admitted(permit) => {
                    self.waiter = None;
                    if inner_ready {
                        self.permit = Some(permit);
                        return Poll::Ready(Ok(()));
                    }
                    return match self.inner.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            self.permit = Some(permit);
                            Poll::Ready(Ok(()))
                        }
                        // A probe goes to a service that can use it: one whose inner service
                        // is no longer ready gives it back (and takes one again once ready).
                        Poll::Pending if permit.is_probe() => Poll::Pending,
                        Poll::Pending => {
                            self.permit = Some(permit);
                            Poll::Pending
                        }
                        // The permit is dropped: not a call, nothing recorded.
                        Poll::Ready(Err(error)) => Poll::Ready(Err(R::error(error))),
                    };
                }
                Decision::Rejected(rejection) if !self.backpressure => {
                    self.held = rejection.to_bits();
                    return Poll::Ready(Ok(()));
                }
                Decision::Rejected(rejection) => {
                    if self.wait(cx, &rejection).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, R, P> fmt::Debug for CircuitBreakerService<S, C, R, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = match (&self.permit, Word(self.held)) {
            (Some(_), _) => "admitted",
            (None, _) if self.held == NOTHING => "none",
            (None, word) if word.state() == CircuitState::Closed => "admitted",
            (None, _) => "rejected",
        };
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.core.name())
            .field("classifier", &self.classifier)
            .field("backpressure", &self.backpressure)
            .field("decision", &decision)
            .finish()
    }
}
