//! The service of a keyed layer: one breaker per downstream, chosen in `call`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::key::MakeKey;
use super::pool::{Entry, Pool};
use crate::BoxError;
use crate::circuit_breaker::future::ResponseFuture;
use crate::circuit_breaker::recording::{AtResponse, RecordAt, ResponseCall};
use crate::circuit_breaker::{CallPermit, CircuitOpen, WithError};
use crate::classify::Classify;

/// A service behind a breaker per key (per downstream); made by
/// [`KeyedCircuitBreakerLayer`](super::KeyedCircuitBreakerLayer).
///
/// The key is known only in `call`, so `poll_ready` polls the inner service, and `call` finds
/// the key's breaker and admits or rejects the call there: keyed breakers fail fast (a call
/// rejected by its key's breaker fails with a boxed [`CircuitOpen`] whose
/// [`key`](CircuitOpen::key) names the downstream, without reaching the inner service). There
/// is no backpressure mode. Outcomes are recorded when the response arrives.
///
/// The service remembers the last key it served, so a service that keeps calling one
/// downstream finds its breaker without taking the layer's lock.
pub struct KeyedCircuitBreakerService<S, C, K> {
    inner: S,
    pool: Arc<Pool>,
    classifier: C,
    make_key: K,
    /// The key of the current call, in a buffer kept from call to call.
    key: String,
    /// The entry of the last key served.
    last: Option<Arc<Entry>>,
}

impl<S, C, K> KeyedCircuitBreakerService<S, C, K> {
    pub(super) fn new(inner: S, pool: Arc<Pool>, classifier: C, make_key: K) -> Self {
        Self {
            inner,
            pool,
            classifier,
            make_key,
            key: String::new(),
            last: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Admits the call of `self.key` on its breaker, or says why not.
    fn admit(&mut self) -> Result<CallPermit, CircuitOpen> {
        loop {
            let fresh = matches!(&self.last, Some(e) if *e.key == *self.key && !e.evicted());
            if !fresh {
                self.last = None;
            }
            let (pool, key) = (&self.pool, &self.key);
            let entry = self.last.get_or_insert_with(|| pool.entry(key));
            entry.touch(&self.pool);
            let core = entry.core();
            match core.try_acquire() {
                // Evicted meanwhile: the breaker may serve another key now. Ask again.
                _ if entry.evicted() => self.last = None,
                Ok(admission) => {
                    let permit = CallPermit::new(&core, admission);
                    // Checked after the permit was taken: see `Entry::evicted`.
                    if !entry.evicted() {
                        return Ok(permit);
                    }
                    self.last = None;
                }
                Err(rejection) => {
                    core.rejected(&rejection);
                    return Err(CircuitOpen::new(&core, &rejection).with_key(entry.key.clone()));
                }
            }
        }
    }
}

impl<S: Clone, C: Clone, K: Clone> Clone for KeyedCircuitBreakerService<S, C, K> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.pool.clone(),
            self.classifier.clone(),
            self.make_key.clone(),
        )
    }
}

impl<S, C, K, Request> Service<Request> for KeyedCircuitBreakerService<S, C, K>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    K: MakeKey<Request>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, ResponseCall<C>, WithError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.key.clear();
        self.make_key.make_key(&request, &mut self.key);
        match self.admit() {
            Ok(mut permit) => {
                let call = <AtResponse as RecordAt<C, Request, S::Response, S::Error>>::start(
                    &self.classifier,
                    &request,
                );
                permit.start_timing();
                ResponseFuture::called(self.inner.call(request), permit, call)
            }
            Err(open) => ResponseFuture::rejected(Box::new(open)),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, K: fmt::Debug> fmt::Debug
    for KeyedCircuitBreakerService<S, C, K>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.pool.name)
            .field("classifier", &self.classifier)
            .field("make_key", &self.make_key)
            .field("last_key", &self.last.as_ref().map(|e| &*e.key))
            .finish()
    }
}
