//! The response future: wait the latency, then fail, or call and pass (or lose) the answer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::{Decision, FaultKind, Injected};

pin_project! {
    /// The future of [`ChaosService`](super::ChaosService).
    pub struct ResponseFuture<Fut, F> {
        // The latency still to wait, if any.
        #[pin]
        delay: Option<Sleep>,
        // The inner call; `None` when the call fails without reaching the inner service.
        #[pin]
        inner: Option<Fut>,
        // The fault to answer with, and for which call; taken when it is made.
        fault: Option<(F, Injected)>,
    }
}

impl<Fut, F> ResponseFuture<Fut, F> {
    pub(super) fn pass(inner: Fut) -> Self {
        Self {
            delay: None,
            inner: Some(inner),
            fault: None,
        }
    }

    pub(super) fn new<S, Request>(
        decision: Decision,
        service: &mut S,
        request: Request,
        fault: &F,
    ) -> Self
    where
        S: Service<Request, Future = Fut>,
        F: Clone,
    {
        let inner = match decision.fault {
            Some(FaultKind::Failed) => None,
            _ => Some(service.call(request)),
        };
        Self {
            delay: decision.latency.map(tokio::time::sleep),
            inner,
            fault: decision.fault.map(|kind| {
                let injected = Injected {
                    call: decision.call,
                    kind,
                };
                (fault.clone(), injected)
            }),
        }
    }
}

impl<Fut, F, R, E> Future for ResponseFuture<Fut, F>
where
    Fut: Future<Output = Result<R, E>>,
    F: Fn(Injected) -> Result<R, E>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(delay) = this.delay.as_mut().as_pin_mut() {
            ready!(delay.poll(cx));
            this.delay.set(None);
        }
        let answer = match this.inner.as_mut().as_pin_mut() {
            Some(inner) => {
                let answer = ready!(inner.poll(cx));
                this.inner.set(None);
                Some(answer)
            }
            None => None,
        };
        match (this.fault.take(), answer) {
            // A lost response: the inner call had its effect, the caller gets the fault.
            (Some((fault, injected)), _) => Poll::Ready(fault(injected)),
            (None, Some(answer)) => Poll::Ready(answer),
            (None, None) => panic!("chaos ResponseFuture polled after it completed"),
        }
    }
}

impl<Fut, F> fmt::Debug for ResponseFuture<Fut, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("delayed", &self.delay.is_some())
            .field("calls_inner", &self.inner.is_some())
            .field("fault", &self.fault.as_ref().map(|(_, injected)| injected))
            .finish()
    }
}
