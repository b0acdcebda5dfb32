//! Classifying gRPC calls by their `grpc-status`.

use std::error::Error;
use std::fmt;

use http::{HeaderMap, Response, StatusCode};

use super::{Classify, Outcome, error_is_timeout, is_timeout};

/// A gRPC status code.
///
/// # Example
///
/// ```
/// use breakwater::classify::grpc::GrpcCode;
///
/// assert_eq!(GrpcCode::from_i32(14), Some(GrpcCode::Unavailable));
/// assert_eq!(GrpcCode::Unavailable.as_i32(), 14);
/// assert_eq!(GrpcCode::from_i32(17), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are gRPC's
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code with this number, if gRPC defines one.
    pub fn from_i32(code: i32) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The code's number.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Classifies gRPC calls by `grpc-status`, from the response headers (a trailers-only
/// response) or from the trailers.
///
/// | `grpc-status` | outcome |
/// |---|---|
/// | `OK` | success |
/// | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS`, `RESOURCE_EXHAUSTED` | failure: the server is in trouble |
/// | every other code (`INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `CANCELLED`, `ABORTED`, `UNIMPLEMENTED`) | ignored: the caller's business |
/// | an HTTP status other than 200, without `grpc-status` | its gRPC code by the [gRPC spec's mapping][mapping] (`503` is `UNAVAILABLE`, ...) |
/// | a response whose body ended with no `grpc-status` at all | failure (`UNKNOWN`) |
/// | an error (transport, timeout): no server answered | failure ([`on_error`](Self::on_error), [`on_timeout`](Self::on_timeout)) |
///
/// Successful gRPC responses carry their status in the trailers, after the body: use it with
/// [`CircuitBreaker::grpc_layer`](crate::CircuitBreaker::grpc_layer) (or
/// [`end_of_stream`](crate::CircuitBreakerLayer::end_of_stream)) so that the breaker waits for
/// them. Recording at the response head, it can only see trailers-only responses (which is
/// how servers answer most errors) and counts the rest as successes.
///
/// [mapping]: https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
///
/// # Example
///
/// ```
/// use breakwater::classify::{Classify, Outcome};
/// use breakwater::classify::grpc::{GrpcClassifier, GrpcCode};
/// use http::{HeaderMap, Response};
///
/// // A resource-exhausted answer is quota, not ill health, for this service.
/// let classifier = GrpcClassifier::new().ignore(GrpcCode::ResourceExhausted);
///
/// let head = Response::new(());
/// let head = Classify::<_, std::io::Error>::classify(&classifier, Ok(&head));
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// let end = Classify::<Response<()>, std::io::Error>::classify_end(&classifier, head, Some(&trailers));
/// assert_eq!(end, Outcome::Failure);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
    ignored: u32,
    on_error: Outcome,
    on_timeout: Outcome,
}

impl GrpcClassifier {
    /// The default rules of the table above.
    pub const fn new() -> Self {
        let failures = GrpcCode::Unavailable.bit()
            | GrpcCode::DeadlineExceeded.bit()
            | GrpcCode::Internal.bit()
            | GrpcCode::Unknown.bit()
            | GrpcCode::DataLoss.bit()
            | GrpcCode::ResourceExhausted.bit();
        Self {
            failures,
            ignored: !failures & !GrpcCode::Ok.bit(),
            on_error: Outcome::Failure,
            on_timeout: Outcome::Failure,
        }
    }

    /// The outcome of an error that is not a timeout (the connection failed, the stream was
    /// reset): a failure by default. Unlike a `grpc-status`, no server answered.
    pub const fn on_error(mut self, outcome: Outcome) -> Self {
        self.on_error = outcome;
        self
    }

    /// The outcome of a timeout error: a failure by default.
    pub const fn on_timeout(mut self, outcome: Outcome) -> Self {
        self.on_timeout = outcome;
        self
    }

    /// Counts `code` as a failure.
    pub const fn failure(mut self, code: GrpcCode) -> Self {
        self.failures |= code.bit();
        self.ignored &= !code.bit();
        self
    }

    /// Ignores `code`: not recorded.
    pub const fn ignore(mut self, code: GrpcCode) -> Self {
        self.failures &= !code.bit();
        self.ignored |= code.bit();
        self
    }

    /// Counts `code` as a success.
    pub const fn success(mut self, code: GrpcCode) -> Self {
        self.failures &= !code.bit();
        self.ignored &= !code.bit();
        self
    }

    /// The outcome of a gRPC code.
    pub const fn classify_code(&self, code: GrpcCode) -> Outcome {
        if self.failures & code.bit() != 0 {
            Outcome::Failure
        } else if self.ignored & code.bit() != 0 {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }

    /// The outcome of a `grpc-status` value; one that is not a number gRPC defines counts as
    /// `UNKNOWN`.
    fn classify_status(&self, value: &http::HeaderValue) -> Outcome {
        let code = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i32>().ok())
            .and_then(GrpcCode::from_i32)
            .unwrap_or(GrpcCode::Unknown);
        self.classify_code(code)
    }
}

/// The gRPC code of an HTTP status, by the gRPC spec's mapping.
fn code_of_http_status(status: StatusCode) -> GrpcCode {
    match status.as_u16() {
        400 => GrpcCode::Internal,
        401 => GrpcCode::Unauthenticated,
        403 => GrpcCode::PermissionDenied,
        404 => GrpcCode::Unimplemented,
        429 | 502..=504 => GrpcCode::Unavailable,
        _ => GrpcCode::Unknown,
    }
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GrpcClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |mask: u32| -> Vec<GrpcCode> {
            GrpcCode::ALL
                .into_iter()
                .filter(|c| mask & c.bit() != 0)
                .collect()
        };
        f.debug_struct("GrpcClassifier")
            .field("failures", &with(self.failures))
            .field("ignored", &with(self.ignored))
            .field("on_error", &self.on_error)
            .field("on_timeout", &self.on_timeout)
            .finish()
    }
}

const GRPC_STATUS: &str = "grpc-status";

impl<B, E: 'static> Classify<Response<B>, E> for GrpcClassifier {
    /// The head: a non-200 HTTP status, or a `grpc-status` header (a trailers-only response),
    /// decides; otherwise the call is a success so far, and the trailers decide.
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            // A `grpc-status` wins over the HTTP status, as in tonic and the gRPC spec.
            Ok(response) => match response.headers().get(GRPC_STATUS) {
                Some(status) => self.classify_status(status),
                None if response.status() != StatusCode::OK => {
                    self.classify_code(code_of_http_status(response.status()))
                }
                None => Outcome::Success,
            },
            Err(error) if error_is_timeout(error) => self.on_timeout,
            Err(_) => self.on_error,
        }
    }

    fn classify_end(&self, head: Outcome, trailers: Option<&HeaderMap>) -> Outcome {
        match trailers.and_then(|t| t.get(GRPC_STATUS)) {
            Some(status) => self.classify_status(status),
            // The head carried the status (or a non-200 HTTP status) itself.
            None if head != Outcome::Success => head,
            // A gRPC response must end with a status: one that does not is broken.
            None => self.classify_code(GrpcCode::Unknown),
        }
    }

    fn classify_body_error(&self, _head: Outcome, error: &(dyn Error + 'static)) -> Outcome {
        if is_timeout(error) {
            self.on_timeout
        } else {
            self.on_error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Res = Response<()>;

    fn head(c: &GrpcClassifier, response: &Res) -> Outcome {
        Classify::<Res, std::io::Error>::classify(c, Ok(response))
    }

    fn end(c: &GrpcClassifier, head: Outcome, trailers: Option<&HeaderMap>) -> Outcome {
        Classify::<Res, std::io::Error>::classify_end(c, head, trailers)
    }

    fn status(code: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(GRPC_STATUS, code.parse().unwrap());
        map
    }

    #[test]
    fn codes_follow_the_default_table() {
        let c = GrpcClassifier::new();
        let failures = [2, 4, 8, 13, 14, 15];
        for code in 0..=16 {
            let expected = match code {
                0 => Outcome::Success,
                n if failures.contains(&n) => Outcome::Failure,
                _ => Outcome::Ignored,
            };
            let trailers = status(&code.to_string());
            assert_eq!(
                end(&c, Outcome::Success, Some(&trailers)),
                expected,
                "code {code}"
            );
        }
    }

    #[test]
    fn trailers_only_responses_decide_at_the_head() {
        let c = GrpcClassifier::new();
        let mut response = Res::new(());
        *response.headers_mut() = status("14");
        assert_eq!(head(&c, &response), Outcome::Failure);
        // And the end keeps that verdict when no trailers follow.
        assert_eq!(end(&c, Outcome::Failure, None), Outcome::Failure);
        *response.headers_mut() = status("3");
        assert_eq!(head(&c, &response), Outcome::Ignored);
        assert_eq!(end(&c, Outcome::Ignored, None), Outcome::Ignored);
    }

    #[test]
    fn a_plain_head_waits_for_the_trailers() {
        let c = GrpcClassifier::new();
        assert_eq!(head(&c, &Res::new(())), Outcome::Success);
        assert_eq!(
            end(&c, Outcome::Success, Some(&status("0"))),
            Outcome::Success
        );
        assert_eq!(
            end(&c, Outcome::Success, Some(&status("13"))),
            Outcome::Failure
        );
        // No status at all, or one that is not a gRPC code: UNKNOWN.
        assert_eq!(end(&c, Outcome::Success, None), Outcome::Failure);
        assert_eq!(
            end(&c, Outcome::Success, Some(&HeaderMap::new())),
            Outcome::Failure
        );
        assert_eq!(
            end(&c, Outcome::Success, Some(&status("99"))),
            Outcome::Failure
        );
        assert_eq!(
            end(&c, Outcome::Success, Some(&status("x"))),
            Outcome::Failure
        );
    }

    #[test]
    fn a_grpc_status_wins_over_the_http_status() {
        let c = GrpcClassifier::new();
        let mut response = Response::builder().status(503).body(()).unwrap();
        *response.headers_mut() = status("5");
        assert_eq!(head(&c, &response), Outcome::Ignored);
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        let c = GrpcClassifier::new();
        let with = |code: u16| Response::builder().status(code).body(()).unwrap();
        assert_eq!(head(&c, &with(503)), Outcome::Failure);
        assert_eq!(head(&c, &with(429)), Outcome::Failure);
        assert_eq!(head(&c, &with(401)), Outcome::Ignored);
        assert_eq!(head(&c, &with(404)), Outcome::Ignored);
        assert_eq!(head(&c, &with(400)), Outcome::Failure);
        assert_eq!(head(&c, &with(500)), Outcome::Failure);
    }

    #[test]
    fn rules_can_be_changed_and_errors_fail() {
        let c = GrpcClassifier::new()
            .ignore(GrpcCode::ResourceExhausted)
            .failure(GrpcCode::NotFound)
            .success(GrpcCode::Cancelled);
        assert_eq!(
            c.classify_code(GrpcCode::ResourceExhausted),
            Outcome::Ignored
        );
        assert_eq!(c.classify_code(GrpcCode::NotFound), Outcome::Failure);
        assert_eq!(c.classify_code(GrpcCode::Cancelled), Outcome::Success);
        let error = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            Classify::<Res, std::io::Error>::classify(&c, Err(&error)),
            Outcome::Failure
        );
        let c = c.on_error(Outcome::Ignored);
        assert_eq!(
            Classify::<Res, std::io::Error>::classify(&c, Err(&error)),
            Outcome::Ignored
        );
        let text = format!("{c:?}");
        assert!(
            text.contains("NotFound") && text.contains("ResourceExhausted"),
            "{text}"
        );
    }
}
