//! The layer and the service.

use std::fmt;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{Chaos, Injected};

/// Wraps services with a [`Chaos`]'s fault injection; made by [`Chaos::layer`].
///
/// `F` makes the fault: `Fn(Injected) -> Result<S::Response, S::Error>` (see
/// [`fault`](super::fault)).
///
/// # Example
///
/// ```
/// use breakwater::chaos::{self, Chaos, ChaosLayer};
/// use breakwater::BoxError;
/// use tower::{ServiceBuilder, service_fn};
///
/// let chaos = Chaos::disabled(); // in the stack, and inert until enabled
/// let service = ServiceBuilder::new()
///     .layer(ChaosLayer::new(chaos.clone(), chaos::fault::error::<u32, BoxError>()))
///     .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }));
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct ChaosLayer<F> {
    chaos: Chaos,
    fault: F,
}

impl<F> ChaosLayer<F> {
    /// A layer disturbing calls as `chaos` says, with faults made by `fault`.
    pub fn new(chaos: Chaos, fault: F) -> Self {
        Self { chaos, fault }
    }
}

impl<S, F: Clone> Layer<S> for ChaosLayer<F> {
    type Service = ChaosService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        ChaosService {
            inner,
            chaos: self.chaos.clone(),
            fault: self.fault.clone(),
        }
    }
}

impl<F> fmt::Debug for ChaosLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("chaos", &self.chaos)
            .finish_non_exhaustive()
    }
}

/// A service whose calls a [`Chaos`] disturbs; made by [`ChaosLayer`].
///
/// Readiness is the inner service's. A call the layer fails without calling the inner service
/// leaves the readiness it reserved unused (as a caller that drops a ready service does).
/// Latency is waited before the inner service's future is first polled: for a lazy future
/// (hyper's client, an `async fn`) the request leaves late. The wait is a `tokio::time`
/// sleep, made when the call is: a call drawn a latency must be made inside a Tokio runtime
/// (with its timer), as for [`TimeoutLayer`](crate::TimeoutLayer).
///
/// # Example
///
/// ```
/// use breakwater::chaos::{self, Chaos};
/// use breakwater::BoxError;
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let chaos = Chaos::disabled();
/// let mut service = chaos
///     .layer(chaos::fault::error())
///     .layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }));
/// assert_eq!(service.ready().await?.call(1).await?, 2);
/// assert_eq!(chaos.calls(), 0); // disabled: not even counted
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ChaosService<S, F> {
    inner: S,
    chaos: Chaos,
    fault: F,
}

impl<S, F> ChaosService<S, F> {
    /// The `Chaos` driving this service.
    pub fn chaos(&self) -> &Chaos {
        &self.chaos
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, Request> Service<Request> for ChaosService<S, F>
where
    S: Service<Request>,
    F: Fn(Injected) -> Result<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.chaos.next() {
            None => ResponseFuture::pass(self.inner.call(request)),
            Some(decision) => ResponseFuture::new(decision, &mut self.inner, request, &self.fault),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for ChaosService<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosService")
            .field("inner", &self.inner)
            .field("chaos", &self.chaos)
            .finish_non_exhaustive()
    }
}
