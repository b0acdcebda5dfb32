//! Helpers shared by the integration tests.
// Each test binary uses some of the helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakwater::circuit_breaker::{Event, EventKind};
use breakwater::classify::Outcome;
use breakwater::clock::ManualClock;
use breakwater::{CircuitBreaker, CircuitState, MetricsSnapshot};

/// Makes one call that takes `took` on `clock` and ends with `outcome`; panics if rejected.
pub(crate) fn call(
    breaker: &CircuitBreaker,
    clock: &ManualClock,
    outcome: Outcome,
    took: Duration,
) {
    let permit = breaker
        .try_acquire()
        .unwrap_or_else(|e| panic!("call rejected: {e}"));
    clock.advance(took);
    permit.record(outcome);
}

pub(crate) fn ok(breaker: &CircuitBreaker, clock: &ManualClock) {
    call(breaker, clock, Outcome::Success, Duration::ZERO);
}

pub(crate) fn err(breaker: &CircuitBreaker, clock: &ManualClock) {
    call(breaker, clock, Outcome::Failure, Duration::ZERO);
}

pub(crate) fn ignored(breaker: &CircuitBreaker, clock: &ManualClock) {
    call(breaker, clock, Outcome::Ignored, Duration::ZERO);
}

/// The numbers resilience4j's tests check, in their order: failure rate, successful,
/// buffered, failed, not permitted.
#[track_caller]
pub(crate) fn assert_metrics(
    breaker: &CircuitBreaker,
    failure_rate: Option<f64>,
    successful: u64,
    buffered: u64,
    failed: u64,
    not_permitted: u64,
) {
    let m: MetricsSnapshot = breaker.metrics();
    assert_eq!(
        (
            m.failure_rate,
            m.successful_calls,
            m.buffered_calls,
            m.failed_calls,
            m.not_permitted_calls
        ),
        (failure_rate, successful, buffered, failed, not_permitted),
        "(failure rate, successful, buffered, failed, not permitted) in {m:?}"
    );
}

/// Records every event a breaker emits.
#[derive(Clone, Default)]
pub(crate) struct EventLog(Arc<Mutex<Vec<Event>>>);

impl EventLog {
    pub(crate) fn all(breaker: &CircuitBreaker) -> Self {
        let log = Self::default();
        let sink = log.clone();
        breaker.on_event(move |e| sink.0.lock().unwrap().push(e.clone()));
        log
    }

    pub(crate) fn transitions(breaker: &CircuitBreaker) -> Self {
        let log = Self::default();
        let sink = log.clone();
        breaker.on_state_transition(move |e| sink.0.lock().unwrap().push(e.clone()));
        log
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub(crate) fn kinds(&self) -> Vec<EventKind> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind().clone())
            .collect()
    }

    pub(crate) fn count(&self, matches: impl Fn(&EventKind) -> bool) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches(e.kind()))
            .count()
    }

    pub(crate) fn states(&self) -> Vec<(CircuitState, CircuitState)> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::StateTransition { from, to, .. } => Some((from, to)),
                _ => None,
            })
            .collect()
    }
}

/// One step of a [`Scripted`] body.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Wait this long (on tokio's clock) before the next step.
    Pause(Duration),
    Data(&'static str),
    Trailers(http::HeaderMap),
    Error(&'static str),
    /// Never answer again.
    Stall,
}

/// A response body that follows a script, then ends. The default script is
/// empty: the body ends at once.
#[derive(Debug, Default)]
pub(crate) struct Scripted {
    steps: std::collections::VecDeque<Step>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Scripted {
    pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            sleep: None,
        }
    }
}

impl http_body::Body for Scripted {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        use std::task::Poll;
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let Some(step) = self.steps.pop_front() else {
                return Poll::Ready(None);
            };
            return match step {
                Step::Pause(wait) => {
                    self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                    continue;
                }
                Step::Data(text) => Poll::Ready(Some(Ok(http_body::Frame::data(
                    bytes::Bytes::from_static(text.as_bytes()),
                )))),
                Step::Trailers(map) => Poll::Ready(Some(Ok(http_body::Frame::trailers(map)))),
                Step::Error(text) => Poll::Ready(Some(Err(std::io::Error::other(text)))),
                Step::Stall => {
                    self.steps.push_front(Step::Stall);
                    Poll::Pending
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty() && self.sleep.is_none()
    }
}

/// Reads a body to its end; the data, or the first error.
/// Waits for `service` to be ready, then calls it with `request`.
pub(crate) async fn send<S, R>(service: &mut S, request: R) -> Result<S::Response, S::Error>
where
    S: tower::Service<R>,
{
    tower::ServiceExt::ready(service).await?.call(request).await
}

pub(crate) async fn read<B>(body: B) -> Result<String, breakwater::BoxError>
where
    B: http_body::Body,
    B::Error: Into<breakwater::BoxError>,
{
    use http_body_util::BodyExt;
    let collected = body.collect().await.map_err(Into::into)?;
    Ok(String::from_utf8_lossy(&collected.to_bytes()).into_owned())
}
