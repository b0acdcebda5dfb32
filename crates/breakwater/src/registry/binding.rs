//! What the program says a Java name of the file means: an exception class (or a predicate
//! class) bound, before loading, to HTTP statuses or to a Rust predicate.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use crate::classify::Outcome;
use crate::classify::http::{ErrorPredicate, HttpClassifier, Matcher, ResponsePredicate, Statuses};

/// What a Java name of a configuration file means here, for [`Loader::bind`](super::Loader::bind):
/// an HTTP status range, a predicate over a call's errors, a predicate over its responses, or
/// several of these ([`or`](Self::or)).
///
/// A bound name takes part in classification as the names breakwater knows do: named in
/// `record-exceptions` (or bound to `record-failure-predicate`, `record-result-predicate`),
/// what it matches is a failure; in `ignore-exceptions` (or `ignore-exception-predicate`),
/// it is ignored; in a retry's `retry-exceptions`, it is retried. What `ignore-exceptions`
/// names wins over what the others name, bound or not. Error predicates are asked about each
/// error of the error's `source()` chain (see [`HttpClassifier::error_when`]), for the error
/// types that can be looked into: a `Box<dyn Error>` (what tower's layers, and the breaker's
/// own error mode, hand on), an `std::io::Error`, and the timeout errors. Over a service with
/// another error type of its own, put a layer that boxes its errors (`MapErr` into
/// `tower::BoxError`) inside the breaker, or the predicates see nothing.
///
/// # Example
///
/// ```
/// use breakwater::registry::Binding;
///
/// #[derive(Debug)]
/// struct BusinessError;
/// impl std::fmt::Display for BusinessError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("refused by the business rules")
///     }
/// }
/// impl std::error::Error for BusinessError {}
///
/// let business = Binding::errors(|e| e.is::<BusinessError>());
/// let conflicts = Binding::statuses(409).or(Binding::statuses(422));
/// # let _ = (business, conflicts);
/// ```
#[derive(Clone)]
pub struct Binding {
    parts: Vec<Part>,
}

#[derive(Clone)]
enum Part {
    Statuses(u16, u16),
    Errors(Arc<ErrorPredicate>),
    Responses(Arc<ResponsePredicate>),
}

impl Binding {
    /// Responses with these statuses (one code or a range, as in
    /// [`HttpClassifier::failure`]).
    pub fn statuses(statuses: impl Statuses) -> Self {
        let (first, last) = statuses.range();
        Self {
            parts: vec![Part::Statuses(first, last)],
        }
    }

    /// Errors that `predicate` matches, such as `|e| e.is::<BusinessError>()`.
    pub fn errors(
        predicate: impl Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            parts: vec![Part::Errors(Arc::new(predicate))],
        }
    }

    /// Responses that `predicate` matches by status and headers: what a
    /// `record-result-predicate` says of results.
    pub fn responses(
        predicate: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            parts: vec![Part::Responses(Arc::new(predicate))],
        }
    }

    /// What `self` matches and what `other` matches.
    #[must_use]
    pub fn or(mut self, other: Binding) -> Self {
        self.parts.extend(other.parts);
        self
    }

    /// Whether it names client errors (`4xx`) by status.
    pub(crate) fn names_client_errors(&self) -> bool {
        self.parts.iter().any(
            |part| matches!(part, Part::Statuses(first, last) if *first <= 499 && *last >= 400),
        )
    }

    /// `classifier` with this binding's statuses as rules by kind, consulted with (and after)
    /// the predicates.
    pub(crate) fn statuses_as_matchers(
        &self,
        mut classifier: HttpClassifier,
        outcome: Outcome,
    ) -> HttpClassifier {
        for part in &self.parts {
            if let Part::Statuses(first, last) = part {
                classifier = classifier.matching(Matcher::Statuses(*first, *last, outcome));
            }
        }
        classifier
    }

    /// `classifier` with what this binding matches given `outcome`.
    pub(crate) fn apply(&self, mut classifier: HttpClassifier, outcome: Outcome) -> HttpClassifier {
        for part in &self.parts {
            classifier = match part {
                Part::Statuses(first, last) => match outcome {
                    Outcome::Ignored => classifier.ignore(*first..=*last),
                    Outcome::Success => classifier.success(*first..=*last),
                    _ => classifier.failure(*first..=*last),
                },
                Part::Errors(predicate) => {
                    classifier.matching(Matcher::Error(predicate.clone(), outcome))
                }
                Part::Responses(predicate) => {
                    classifier.matching(Matcher::Response(predicate.clone(), outcome))
                }
            };
        }
        classifier
    }
}

impl PartialEq for Binding {
    /// The same parts: the same statuses, the same predicates (shared, not merely alike).
    fn eq(&self, other: &Self) -> bool {
        self.parts.len() == other.parts.len()
            && self.parts.iter().zip(&other.parts).all(|pair| match pair {
                (Part::Statuses(a, b), Part::Statuses(c, d)) => (a, b) == (c, d),
                (Part::Errors(a), Part::Errors(b)) => {
                    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
                }
                (Part::Responses(a), Part::Responses(b)) => {
                    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
                }
                _ => false,
            })
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for part in &self.parts {
            match part {
                Part::Statuses(first, last) => list.entry(&(*first..=*last)),
                Part::Errors(_) => list.entry(&"errors matching a predicate"),
                Part::Responses(_) => list.entry(&"responses matching a predicate"),
            };
        }
        list.finish()
    }
}
