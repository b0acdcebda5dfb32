//! What an injected fault is, and ready-made closures that make one.

use std::error::Error;
use std::fmt;

use http::StatusCode;

/// How the layer disturbed a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// The call failed without reaching the inner service.
    Failed,
    /// The inner service was called; its response (or error) was thrown away.
    ResponseLost,
}

impl FaultKind {
    /// `failed` or `response_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Failed => "failed",
            FaultKind::ResponseLost => "response_lost",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the fault closure is told: which call, and how it was disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Injected {
    /// The call's number (see [`Chaos::plan`](super::Chaos::plan)).
    pub call: u64,
    /// What was done to it.
    pub kind: FaultKind,
}

/// The error of [`error`]: a fault the chaos layer injected.
///
/// # Example
///
/// ```
/// use breakwater::chaos::{FaultKind, Injected, InjectedFault};
///
/// let fault = InjectedFault::new(Injected { call: 17, kind: FaultKind::ResponseLost });
/// assert_eq!(fault.to_string(), "fault injected by the chaos layer: call 17, response lost");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault(Injected);

impl InjectedFault {
    /// The error for `injected`.
    pub fn new(injected: Injected) -> Self {
        Self(injected)
    }

    /// Which call, and how.
    pub fn injected(&self) -> Injected {
        self.0
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.0.kind {
            FaultKind::Failed => "failed before the call",
            FaultKind::ResponseLost => "response lost",
        };
        write!(
            f,
            "fault injected by the chaos layer: call {}, {what}",
            self.0.call
        )
    }
}

impl Error for InjectedFault {}

/// A fault closure for services whose error converts from [`InjectedFault`]: `BoxError`,
/// or your own error with a `From<InjectedFault>`.
///
/// # Example
///
/// ```
/// use breakwater::{BoxError, chaos::{self, Chaos}};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chaos = Chaos::builder().failure_rate(1.0).enabled(true).build().unwrap();
/// let mut service = chaos
///     .layer(chaos::fault::error())
///     .layer(service_fn(|()| async { Ok::<_, BoxError>("reached") }));
/// let error = service.ready().await.unwrap().call(()).await.unwrap_err();
/// assert!(error.is::<chaos::InjectedFault>());
/// # }
/// ```
pub fn error<R, E: From<InjectedFault>>() -> impl Fn(Injected) -> Result<R, E> + Copy {
    |injected| Err(E::from(InjectedFault(injected)))
}

/// A fault closure for HTTP services: a response with `status`, an empty (default) body, and
/// the [`Injected`] in its extensions.
///
/// # Example
///
/// ```
/// use breakwater::chaos::{self, Chaos, Injected};
/// use http::{Request, Response, StatusCode};
/// use tower::{Layer, Service, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chaos = Chaos::builder().failure_rate(1.0).enabled(true).build().unwrap();
/// let mut service = chaos
///     .layer(chaos::fault::status(StatusCode::SERVICE_UNAVAILABLE))
///     .layer(service_fn(|_: Request<()>| async {
///         Ok::<_, std::io::Error>(Response::new(String::from("reached")))
///     }));
/// let response = service.ready().await.unwrap().call(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert!(response.extensions().get::<Injected>().is_some());
/// # }
/// ```
pub fn status<B: Default, E>(
    status: StatusCode,
) -> impl Fn(Injected) -> Result<http::Response<B>, E> + Copy {
    move |injected| {
        let mut response = http::Response::new(B::default());
        *response.status_mut() = status;
        response.extensions_mut().insert(injected);
        Ok(response)
    }
}
