//! Classifying `http::Response`s by status.

use std::fmt;
use std::ops::{Range, RangeFrom, RangeInclusive};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Response, StatusCode, header::RETRY_AFTER};

use std::error::Error;

use super::{Classify, Outcome, error_is_timeout, is_timeout, table};

/// Codes 100..=599 have a two-bit entry each in the table; 600..=999 share `nonstandard`.
const FIRST: u16 = 100;
const LAST: u16 = 599;
const SUCCESS: u8 = 0;
const FAILURE: u8 = 1;
const IGNORED: u8 = 2;

/// Classifies `http::Response`s by status; the default of
/// [`CircuitBreaker::layer`](crate::CircuitBreaker::layer).
///
/// Out of the box:
///
/// | result | outcome |
/// |---|---|
/// | `5xx` | [`Failure`](Outcome::Failure) |
/// | `4xx` | [`Ignored`](Outcome::Ignored): the caller's mistake says nothing about the callee |
/// | any other status | [`Success`](Outcome::Success) |
/// | a timeout error (see [`super::is_timeout`]) | [`Failure`](Outcome::Failure) |
/// | any other error (connect, I/O, body) | [`Failure`](Outcome::Failure) |
///
/// Rules added later win over earlier ones and over the defaults. Codes 600–999, which HTTP
/// leaves undefined, share one rule: the last one that names any of them (a success by default).
///
/// With [`retry_after`](Self::retry_after), a `503` or `429` that carries a delta-seconds
/// `Retry-After` header becomes [`Outcome::FailureFor`], which opens the breaker for that long.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use breakwater::classify::{Classify, Outcome, http::HttpClassifier};
/// use http::{Response, StatusCode};
///
/// let classifier = HttpClassifier::new()
///     .failure(StatusCode::TOO_MANY_REQUESTS) // rate limiting counts against the callee
///     .ignore(501)                            // "not implemented" is our mistake
///     .retry_after(Duration::from_secs(60));
///
/// let ok = Response::new(());
/// let limited = Response::builder().status(429).body(()).unwrap();
/// let unavailable = Response::builder().status(503).header("retry-after", "10").body(()).unwrap();
/// let result = |r| -> Result<&Response<()>, &std::io::Error> { Ok(r) };
///
/// assert_eq!(classifier.classify(result(&ok)), Outcome::Success);
/// assert_eq!(classifier.classify(result(&limited)), Outcome::Failure);
/// assert_eq!(
///     classifier.classify(result(&unavailable)),
///     Outcome::FailureFor(Duration::from_secs(10)),
/// );
/// ```
///
/// # Cost
///
/// A classifier is 16 bytes: a handle of its status and error rules, and a pointer to its
/// rules by predicate, if it has any. Each call takes a copy of its layer's classifier in its
/// future: for the default rules (a shared constant) that copy costs nothing, and for rules of
/// its own it is a *view* of them, two numbers, with no reference count to update. Rules by
/// predicate ([`error_when`](Self::error_when), [`response_when`](Self::response_when)) are
/// user closures behind an `Arc`: a classifier that has them counts one more holder for each
/// call. Rules of its own
/// live in a table of a pool reachable from a static, held by the classifiers that own them
/// (cloning one, as a layer does for each service it makes and a service for each clone,
/// counts one more holder); the last holder gives the table back to the pool. A call still in
/// flight when every classifier owning its rules is gone finds them gone, and its outcome is
/// [ignored](Outcome::Ignored).
pub struct HttpClassifier {
    rules: Handle,
    /// Rules by predicate ([`error_when`](Self::error_when),
    /// [`response_when`](Self::response_when)), the latest last.
    matchers: Option<Arc<Matchers>>,
}

/// Rules by predicate, the latest last: behind one `Arc` (one word, where an `Arc` of a slice
/// would be two).
#[derive(Clone, Default)]
struct Matchers(Vec<Matcher>);

/// A predicate over the errors of a call (each error of its `source()` chain).
pub(crate) type ErrorPredicate = dyn Fn(&(dyn Error + 'static)) -> bool + Send + Sync;
/// A predicate over a response's status and headers.
pub(crate) type ResponsePredicate = dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync;

/// One rule by predicate, and the outcome of what it matches.
// The rules by kind are made by the registry's file loading only (features `yaml`, `toml`).
#[cfg_attr(not(any(feature = "yaml", feature = "toml")), allow(dead_code))]
#[derive(Clone)]
pub(crate) enum Matcher {
    Error(Arc<ErrorPredicate>, Outcome),
    Response(Arc<ResponsePredicate>, Outcome),
    /// Statuses from the first to the last, as a rule by predicate: ordered among them (a
    /// registry's `ignore-exceptions` over a bound `record-exceptions`).
    Statuses(u16, u16, Outcome),
    /// Errors by kind, as a rule by predicate: timeouts (found through the chain), and the
    /// other errors.
    Errors {
        timeouts: bool,
        others: bool,
        outcome: Outcome,
    },
}

impl Matcher {
    /// The same predicate (the same closure, shared) and outcome.
    fn same(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::Error(a, x), Matcher::Error(b, y)) => {
                std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)) && x == y
            }
            (Matcher::Response(a, x), Matcher::Response(b, y)) => {
                std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)) && x == y
            }
            (Matcher::Statuses(..), Matcher::Statuses(..))
            | (Matcher::Errors { .. }, Matcher::Errors { .. }) => {
                self.kind_key() == other.kind_key()
            }
            _ => false,
        }
    }

    /// The statuses or kinds a rule by kind names, and its outcome.
    fn kind_key(&self) -> Option<(u16, u16, bool, bool, Outcome)> {
        match *self {
            Matcher::Statuses(first, last, outcome) => Some((first, last, false, false, outcome)),
            Matcher::Errors {
                timeouts,
                others,
                outcome,
            } => Some((0, 0, timeouts, others, outcome)),
            _ => None,
        }
    }
}

/// Which rules a classifier decides by: the defaults (`index` 0), or those of the pool's table
/// `index - 1` in its use `tag & !OWNER`; the low bit of `tag` says whether this classifier
/// holds the table (an owner) or only views it (a call's copy).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Handle {
    index: u32,
    tag: u32,
}

/// A table's uses are even numbers: the low bit of a handle's tag is free to mark an owner.
const OWNER: u32 = 1;

impl Handle {
    const DEFAULT: Handle = Handle { index: 0, tag: 0 };

    fn owner(held: table::Held) -> Self {
        Handle {
            index: held.index + 1,
            tag: held.generation | OWNER,
        }
    }

    #[inline]
    fn held(self) -> Option<table::Held> {
        (self.index != 0).then(|| table::Held {
            index: self.index - 1,
            generation: self.tag & !OWNER,
        })
    }

    #[inline]
    fn owns(self) -> bool {
        self.index != 0 && self.tag & OWNER != 0
    }
}

/// What an [`HttpClassifier`] decides by.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Rules {
    table: [u64; 16],
    nonstandard: u8,
    on_error: Outcome,
    on_timeout: Outcome,
    retry_after_cap: Option<Duration>,
}

/// The default rules: `4xx` ignored, `5xx` failure, anything else success, every error a
/// failure.
const DEFAULT_RULES: Rules = Rules {
    table: [0; 16],
    nonstandard: SUCCESS,
    on_error: Outcome::Failure,
    on_timeout: Outcome::Failure,
    retry_after_cap: None,
}
.set((400, 499), IGNORED)
.set((500, 599), FAILURE);

/// The default rules as a table's words: a default classifier reads these as a classifier with
/// rules of its own reads its table, through one path.
static DEFAULT_WORDS: [u64; table::WORDS] = DEFAULT_RULES.encode();

impl HttpClassifier {
    /// The default rules: `5xx` failure, `4xx` ignored, anything else success, every error a
    /// failure.
    pub const fn new() -> Self {
        Self {
            rules: Handle::DEFAULT,
            matchers: None,
        }
    }

    /// `f` of the rules; `None` for a call's view of rules whose owners are all gone.
    #[inline]
    fn with_rules<R>(&self, f: impl FnOnce(&Rules) -> R) -> Option<R> {
        match self.rules.held() {
            None => Some(f(&DEFAULT_RULES)),
            Some(held) => {
                table::read_words(held, std::array::from_fn(|i| i)).map(|w| f(&Rules::decode(&w)))
            }
        }
    }

    /// These rules, changed by `change`; the shared defaults again if they come back to them.
    fn with(self, change: impl FnOnce(&mut Rules)) -> Self {
        let mut rules = self.with_rules(|rules| *rules).unwrap_or(DEFAULT_RULES);
        change(&mut rules);
        let matchers = self.matchers.clone();
        if rules == DEFAULT_RULES {
            Self {
                matchers,
                ..Self::new()
            }
        } else {
            Self {
                rules: Handle::owner(table::take(&rules.encode())),
                matchers,
            }
        }
    }

    /// These rules and `matcher`, consulted before every earlier one.
    pub(crate) fn matching(mut self, matcher: Matcher) -> Self {
        let mut matchers = self
            .matchers
            .take()
            .map(|m| m.as_ref().clone())
            .unwrap_or_default();
        matchers.0.push(matcher);
        self.matchers = Some(Arc::new(matchers));
        self
    }

    /// Errors that `predicate` matches get `outcome`: it is asked about each error of the
    /// error's [`source()`](Error::source) chain (as timeouts are found), and a match wins over
    /// [`on_error`](Self::on_error), [`on_timeout`](Self::on_timeout) and every earlier rule by
    /// predicate. An error type that is not a `Box<dyn Error>`, an `std::io::Error` or one of
    /// breakwater's and tower's timeout errors cannot be looked into: only `on_error` applies
    /// to it.
    ///
    /// A classifier with rules by predicate counts one more holder of them (a reference
    /// count) for each call (see "Cost" above).
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::classify::{Classify, Outcome, http::HttpClassifier};
    ///
    /// #[derive(Debug)]
    /// struct BusinessError;
    /// impl std::fmt::Display for BusinessError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("insufficient funds")
    ///     }
    /// }
    /// impl std::error::Error for BusinessError {}
    ///
    /// // The business's refusals say nothing about the callee's health.
    /// let classifier =
    ///     HttpClassifier::new().error_when(|e| e.is::<BusinessError>(), Outcome::Ignored);
    /// let refused: tower::BoxError = Box::new(BusinessError);
    /// let broken: tower::BoxError = "connection reset".into();
    /// let classify = |e| Classify::<http::Response<()>, _>::classify(&classifier, Err(e));
    /// assert_eq!(classify(&refused), Outcome::Ignored);
    /// assert_eq!(classify(&broken), Outcome::Failure);
    /// ```
    pub fn error_when(
        self,
        predicate: impl Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
        outcome: Outcome,
    ) -> Self {
        self.matching(Matcher::Error(Arc::new(predicate), outcome))
    }

    /// Responses that `predicate` matches (by status and headers) get `outcome`, over the
    /// status rules, `Retry-After` and every earlier rule by predicate. The costs are
    /// [`error_when`](Self::error_when)'s.
    ///
    /// # Example
    ///
    /// ```
    /// use breakwater::classify::{Classify, Outcome, http::HttpClassifier};
    ///
    /// // A 200 that carries an error header is a failure.
    /// let classifier = HttpClassifier::new()
    ///     .response_when(|_, headers| headers.contains_key("x-upstream-error"), Outcome::Failure);
    /// let failed = http::Response::builder().header("x-upstream-error", "db").body(()).unwrap();
    /// let result: Result<_, &std::io::Error> = Ok(&failed);
    /// assert_eq!(classifier.classify(result), Outcome::Failure);
    /// ```
    pub fn response_when(
        self,
        predicate: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
        outcome: Outcome,
    ) -> Self {
        self.matching(Matcher::Response(Arc::new(predicate), outcome))
    }

    /// The outcome of the latest rule by predicate that matches a response.
    #[inline]
    fn matched_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        let code = status.as_u16();
        self.matchers
            .as_deref()?
            .0
            .iter()
            .rev()
            .find_map(|m| match *m {
                Matcher::Response(ref predicate, outcome) if predicate(status, headers) => {
                    Some(outcome)
                }
                Matcher::Statuses(first, last, outcome) if (first..=last).contains(&code) => {
                    Some(outcome)
                }
                _ => None,
            })
    }

    /// The outcome of the latest rule by predicate that matches `error` (a predicate is asked
    /// of each error of its chain; a rule by kind asks whether it is a timeout).
    fn matched_error(&self, error: Option<&(dyn Error + 'static)>) -> Option<Outcome> {
        let matchers = self.matchers.as_deref()?;
        let error = error?;
        matchers.0.iter().rev().find_map(|m| match *m {
            Matcher::Error(ref predicate, outcome) => {
                let mut current = Some(error);
                while let Some(e) = current {
                    if predicate(e) {
                        return Some(outcome);
                    }
                    current = e.source();
                }
                None
            }
            Matcher::Errors {
                timeouts,
                others,
                outcome,
            } => {
                let matched = if is_timeout(error) { timeouts } else { others };
                matched.then_some(outcome)
            }
            Matcher::Response(..) | Matcher::Statuses(..) => None,
        })
    }

    /// Counts these statuses as failures.
    pub fn failure(self, statuses: impl Statuses) -> Self {
        self.with(|rules| *rules = rules.set(statuses.range(), FAILURE))
    }

    /// Counts these statuses as successes.
    pub fn success(self, statuses: impl Statuses) -> Self {
        self.with(|rules| *rules = rules.set(statuses.range(), SUCCESS))
    }

    /// Ignores these statuses: not recorded, neither success nor failure.
    pub fn ignore(self, statuses: impl Statuses) -> Self {
        self.with(|rules| *rules = rules.set(statuses.range(), IGNORED))
    }

    /// The outcome of an error that is not a timeout (connect, I/O, body errors); a failure by
    /// default.
    pub fn on_error(self, outcome: Outcome) -> Self {
        self.with(|rules| rules.on_error = outcome)
    }

    /// The outcome of a timeout error (found through the error's source chain); a failure by
    /// default.
    pub fn on_timeout(self, outcome: Outcome) -> Self {
        self.with(|rules| rules.on_timeout = outcome)
    }

    /// Honours `Retry-After`: a `503` or `429` with a delta-seconds `Retry-After` of `n > 0`
    /// becomes [`Outcome::FailureFor`] of `n` seconds, at most `cap`, so the breaker opens for
    /// that long. HTTP-date values are not followed (the status's rule applies).
    pub fn retry_after(self, cap: Duration) -> Self {
        self.with(|rules| rules.retry_after_cap = Some(cap))
    }

    /// The words at `at` of the rules: the defaults', or a view of the table of its own
    /// (`None` when every owner of that table is gone).
    #[inline]
    fn words<const N: usize>(&self, at: [usize; N]) -> Option<[u64; N]> {
        match self.rules.held() {
            None => Some(at.map(|i| DEFAULT_WORDS.get(i).copied().unwrap_or_default())),
            Some(held) => table::read_words(held, at),
        }
    }

    /// The outcome of a response with this status and headers.
    #[inline]
    pub fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        if self.matchers.is_some() {
            if let Some(outcome) = self.matched_response(status, headers) {
                return outcome;
            }
        }
        let code = status.as_u16();
        let Some([classes, small, cap_secs, cap_nanos]) =
            self.words([status_word(code), SMALL, CAP_SECS, NANOS_2])
        else {
            return Outcome::Ignored;
        };
        if small >> 24 & 1 == 1
            && (status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS)
        {
            if let Some(wait) = retry_after_seconds(headers) {
                let cap = Duration::new(cap_secs, (cap_nanos & 0xffff_ffff) as u32);
                return Outcome::FailureFor(Duration::from_secs(wait).min(cap));
            }
        }
        class_of(code, classes, small)
    }

    /// The outcome of a status by the rules alone (no `Retry-After`).
    #[inline]
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        let code = status.as_u16();
        match self.words([status_word(code), SMALL]) {
            Some([classes, small]) => class_of(code, classes, small),
            None => Outcome::Ignored,
        }
    }

    /// The outcome of an error, a timeout or another.
    #[inline]
    fn classify_error(&self, timeout: bool) -> Outcome {
        // The kind's bits in the small fields, and the nanoseconds' in their word.
        let (secs, kind_at, nanos_at) = if timeout {
            (TIMEOUT_SECS, 16, 32)
        } else {
            (ERROR_SECS, 8, 0)
        };
        let Some([small, secs, nanos]) = self.words([SMALL, secs, NANOS_1]) else {
            return Outcome::Ignored;
        };
        let wait = Duration::new(secs, ((nanos >> nanos_at) & 0xffff_ffff) as u32);
        outcome_of((small >> kind_at) as u8, wait)
    }
}

/// Which word holds `code`'s class: one of the status table's, or the small fields (whose low
/// byte is the class of the codes 600–999).
#[inline]
fn status_word(code: u16) -> usize {
    if (FIRST..=LAST).contains(&code) {
        usize::from(code - FIRST) / 32
    } else {
        SMALL
    }
}

/// The outcome of `code` by its word of the table (`classes`) and the small fields.
#[inline]
fn class_of(code: u16, classes: u64, small: u64) -> Outcome {
    let class = if (FIRST..=LAST).contains(&code) {
        // Two bits per code, 32 codes per word.
        ((classes >> ((usize::from(code - FIRST) % 32) * 2)) & 0b11) as u8
    } else {
        (small & 0xff) as u8
    };
    outcome_of_class(class)
}

impl Clone for HttpClassifier {
    #[inline]
    fn clone(&self) -> Self {
        if self.rules.owns() {
            if let Some(held) = self.rules.held() {
                table::hold(held);
            }
        }
        Self {
            rules: self.rules,
            matchers: self.matchers.clone(),
        }
    }
}

impl Drop for HttpClassifier {
    #[inline]
    fn drop(&mut self) {
        if self.rules.owns() {
            if let Some(held) = self.rules.held() {
                table::release(held);
            }
        }
    }
}

impl PartialEq for HttpClassifier {
    /// The same rules.
    /// The same rules, and the same rules by predicate (the same closures, shared).
    fn eq(&self, other: &Self) -> bool {
        let matchers = match (self.matchers.as_deref(), other.matchers.as_deref()) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.0.len() == b.0.len() && a.0.iter().zip(&b.0).all(|(a, b)| a.same(b))
            }
            _ => false,
        };
        matchers && self.with_rules(|rules| *rules) == other.with_rules(|rules| *rules)
    }
}

impl Eq for HttpClassifier {}

impl Rules {
    /// These rules with `class` for the codes `start..=end` (a `const fn`: the defaults are
    /// built with it at compile time).
    const fn set(mut self, (start, end): (u16, u16), class: u8) -> Self {
        let mut code = if start > FIRST { start } else { FIRST };
        let last = if end < LAST { end } else { LAST };
        while code <= last {
            let index = (code - FIRST) as usize;
            let shift = (index % 32) * 2;
            let word = self.table[index / 32];
            self.table[index / 32] = (word & !(0b11 << shift)) | ((class as u64) << shift);
            code += 1;
        }
        if end > LAST && start <= 999 {
            self.nonstandard = class;
        }
        self
    }

    /// The rules as the pool's table keeps them: the status table, then one word of small
    /// fields (the non-standard class, the two outcomes' kinds, whether `Retry-After` is
    /// honoured), the three durations' seconds, and their nanoseconds.
    const fn encode(&self) -> [u64; table::WORDS] {
        let mut words = [0; table::WORDS];
        let mut i = 0;
        while i < self.table.len() {
            words[i] = self.table[i];
            i += 1;
        }
        let (error_kind, error_wait) = outcome_parts(self.on_error);
        let (timeout_kind, timeout_wait) = outcome_parts(self.on_timeout);
        let (honoured, cap) = match self.retry_after_cap {
            Some(cap) => (1, cap),
            None => (0, Duration::ZERO),
        };
        words[SMALL] = self.nonstandard as u64
            | (error_kind as u64) << 8
            | (timeout_kind as u64) << 16
            | honoured << 24;
        words[ERROR_SECS] = error_wait.as_secs();
        words[TIMEOUT_SECS] = timeout_wait.as_secs();
        words[CAP_SECS] = cap.as_secs();
        words[NANOS_1] =
            error_wait.subsec_nanos() as u64 | (timeout_wait.subsec_nanos() as u64) << 32;
        words[NANOS_2] = cap.subsec_nanos() as u64;
        words
    }

    fn decode(words: &[u64; table::WORDS]) -> Self {
        let mut table = [0; 16];
        table.copy_from_slice(&words[..16]);
        let small = words[SMALL];
        let wait = |secs: u64, nanos: u64| Duration::new(secs, (nanos & 0xffff_ffff) as u32);
        Rules {
            table,
            nonstandard: (small & 0xff) as u8,
            on_error: outcome_of((small >> 8) as u8, wait(words[ERROR_SECS], words[NANOS_1])),
            on_timeout: outcome_of(
                (small >> 16) as u8,
                wait(words[TIMEOUT_SECS], words[NANOS_1] >> 32),
            ),
            retry_after_cap: (small >> 24 & 1 == 1).then(|| wait(words[CAP_SECS], words[NANOS_2])),
        }
    }
}

/// Where the table keeps what is not the status table: the small fields (the non-standard
/// class, the two outcomes' kinds, whether `Retry-After` is honoured), the seconds of the
/// error's, the timeout's and the cap's durations, the nanoseconds of the first two, of the cap.
const SMALL: usize = 16;
const ERROR_SECS: usize = 17;
const TIMEOUT_SECS: usize = 18;
const CAP_SECS: usize = 19;
const NANOS_1: usize = 20;
const NANOS_2: usize = 21;

fn outcome_of_class(class: u8) -> Outcome {
    match class {
        FAILURE => Outcome::Failure,
        IGNORED => Outcome::Ignored,
        _ => Outcome::Success,
    }
}

/// An outcome's kind, and its wait for a `FailureFor`.
const fn outcome_parts(outcome: Outcome) -> (u8, Duration) {
    match outcome {
        Outcome::Success => (0, Duration::ZERO),
        Outcome::Failure => (1, Duration::ZERO),
        Outcome::Ignored => (2, Duration::ZERO),
        Outcome::FailureFor(wait) => (3, wait),
    }
}

fn outcome_of(kind: u8, wait: Duration) -> Outcome {
    match kind {
        0 => Outcome::Success,
        2 => Outcome::Ignored,
        3 => Outcome::FailureFor(wait),
        _ => Outcome::Failure,
    }
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Show the rules as ranges rather than the packed table.
        let mut failures = Vec::new();
        let mut ignored = Vec::new();
        let mut code = FIRST;
        while code <= LAST {
            let outcome = self.classify_status(StatusCode::from_u16(code).unwrap_or_default());
            let start = code;
            while code < LAST
                && self.classify_status(StatusCode::from_u16(code + 1).unwrap_or_default())
                    == outcome
            {
                code += 1;
            }
            match outcome {
                Outcome::Failure => failures.push(start..=code),
                Outcome::Ignored => ignored.push(start..=code),
                _ => {}
            }
            code += 1;
        }
        f.debug_struct("HttpClassifier")
            .field("failure", &failures)
            .field("ignored", &ignored)
            .field("on_error", &self.with_rules(|rules| rules.on_error))
            .field("on_timeout", &self.with_rules(|rules| rules.on_timeout))
            .field(
                "retry_after_cap",
                &self.with_rules(|rules| rules.retry_after_cap),
            )
            .field(
                "rules_by_predicate",
                &self.matchers.as_deref().map_or(0, |m| m.0.len()),
            )
            .finish()
    }
}

impl<B, E: 'static> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response.status(), response.headers()),
            Err(error) => {
                if self.matchers.is_some() {
                    if let Some(outcome) = self.matched_error(super::as_error(error)) {
                        return outcome;
                    }
                }
                self.classify_error(error_is_timeout(error))
            }
        }
    }

    /// A view of the rules, for a call to take with it: no holder counted (see "Cost").
    fn for_call(&self) -> Self {
        Self {
            rules: Handle {
                index: self.rules.index,
                tag: self.rules.tag & !OWNER,
            },
            matchers: self.matchers.clone(),
        }
    }

    /// A body that fails has the outcome of an error: `on_timeout` for a body deadline,
    /// `on_error` otherwise.
    fn classify_body_error(&self, _head: Outcome, error: &(dyn Error + 'static)) -> Outcome {
        if let Some(outcome) = self.matched_error(Some(error)) {
            return outcome;
        }
        self.classify_error(is_timeout(error))
    }
}

fn retry_after_seconds(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for u64 means "a very long time": the cap applies.
    let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
    (seconds > 0).then_some(seconds)
}

/// Statuses a rule of [`HttpClassifier`] applies to: one code (`u16` or `StatusCode`) or a range
/// of codes (`500..=599`, `500..600`, `500..`).
///
/// # Example
///
/// ```
/// use breakwater::classify::http::HttpClassifier;
///
/// let classifier = HttpClassifier::new().failure(408).failure(http::StatusCode::TOO_MANY_REQUESTS).ignore(500..=501);
/// # let _ = classifier;
/// ```
pub trait Statuses: sealed::Sealed {
    /// The first and last code, inclusive.
    #[doc(hidden)]
    fn range(self) -> (u16, u16);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u16 {}
    impl Sealed for http::StatusCode {}
    impl Sealed for std::ops::Range<u16> {}
    impl Sealed for std::ops::RangeInclusive<u16> {}
    impl Sealed for std::ops::RangeFrom<u16> {}
}

impl Statuses for u16 {
    fn range(self) -> (u16, u16) {
        (self, self)
    }
}

impl Statuses for StatusCode {
    fn range(self) -> (u16, u16) {
        (self.as_u16(), self.as_u16())
    }
}

impl Statuses for RangeInclusive<u16> {
    fn range(self) -> (u16, u16) {
        (*self.start(), *self.end())
    }
}

impl Statuses for Range<u16> {
    fn range(self) -> (u16, u16) {
        // An empty range (end <= start) names no code.
        match self.end.checked_sub(1) {
            Some(last) if last >= self.start => (self.start, last),
            _ => (1, 0),
        }
    }
}

impl Statuses for RangeFrom<u16> {
    fn range(self) -> (u16, u16) {
        (self.start, 999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Response<()> {
        Response::builder().status(code).body(()).unwrap()
    }

    fn classify(c: &HttpClassifier, r: &Response<()>) -> Outcome {
        Classify::<Response<()>, std::io::Error>::classify(c, Ok(r))
    }

    #[test]
    fn default_rules_follow_the_status_class() {
        let c = HttpClassifier::new();
        for (code, outcome) in [
            (100, Outcome::Success),
            (200, Outcome::Success),
            (204, Outcome::Success),
            (302, Outcome::Success),
            (399, Outcome::Success),
            (400, Outcome::Ignored),
            (404, Outcome::Ignored),
            (429, Outcome::Ignored),
            (499, Outcome::Ignored),
            (500, Outcome::Failure),
            (503, Outcome::Failure),
            (599, Outcome::Failure),
            (600, Outcome::Success),
            (999, Outcome::Success),
        ] {
            assert_eq!(classify(&c, &status(code)), outcome, "status {code}");
        }
    }

    #[test]
    fn later_rules_win_and_ranges_apply_exactly() {
        let c = HttpClassifier::new()
            .failure(429)
            .ignore(500..502)
            .success(503..=503)
            .failure(600..);
        assert_eq!(classify(&c, &status(428)), Outcome::Ignored);
        assert_eq!(classify(&c, &status(429)), Outcome::Failure);
        assert_eq!(classify(&c, &status(430)), Outcome::Ignored);
        assert_eq!(classify(&c, &status(500)), Outcome::Ignored);
        assert_eq!(classify(&c, &status(501)), Outcome::Ignored);
        assert_eq!(classify(&c, &status(502)), Outcome::Failure);
        assert_eq!(classify(&c, &status(503)), Outcome::Success);
        assert_eq!(classify(&c, &status(504)), Outcome::Failure);
        assert_eq!(classify(&c, &status(700)), Outcome::Failure);
        // An empty range names nothing.
        let unchanged = HttpClassifier::new().success(500..500);
        assert_eq!(unchanged, HttpClassifier::new());
    }

    #[test]
    fn errors_and_timeouts_have_their_own_outcomes() {
        let c = HttpClassifier::new().on_error(Outcome::Ignored);
        let timeout: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let refused: tower::BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let classify_err = |c: &HttpClassifier, e| Classify::<Response<()>, _>::classify(c, Err(e));
        assert_eq!(classify_err(&c, &timeout), Outcome::Failure);
        assert_eq!(classify_err(&c, &refused), Outcome::Ignored);
        let c = c.on_timeout(Outcome::Ignored).on_error(Outcome::Failure);
        assert_eq!(classify_err(&c, &timeout), Outcome::Ignored);
        assert_eq!(classify_err(&c, &refused), Outcome::Failure);
    }

    #[test]
    fn retry_after_is_honoured_only_when_asked_and_capped() {
        let with = |code, value: &str| {
            Response::builder()
                .status(code)
                .header(RETRY_AFTER, value)
                .body(())
                .unwrap()
        };
        let plain = HttpClassifier::new();
        assert_eq!(classify(&plain, &with(503, "5")), Outcome::Failure);
        assert_eq!(classify(&plain, &with(429, "5")), Outcome::Ignored);

        let c = HttpClassifier::new().retry_after(Duration::from_secs(30));
        let secs = |s| Outcome::FailureFor(Duration::from_secs(s));
        assert_eq!(classify(&c, &with(503, "5")), secs(5));
        assert_eq!(classify(&c, &with(429, " 7 ")), secs(7));
        assert_eq!(classify(&c, &with(503, "3600")), secs(30));
        assert_eq!(
            classify(&c, &with(503, "99999999999999999999999")),
            secs(30)
        );
        // Not delta-seconds, zero, or another status: the status rule applies.
        assert_eq!(
            classify(&c, &with(503, "Wed, 21 Oct 2015 07:28:00 GMT")),
            Outcome::Failure
        );
        assert_eq!(classify(&c, &with(503, "+5")), Outcome::Failure);
        assert_eq!(classify(&c, &with(503, "0")), Outcome::Failure);
        assert_eq!(classify(&c, &with(500, "5")), Outcome::Failure);
        assert_eq!(classify(&c, &with(429, "")), Outcome::Ignored);
    }

    #[test]
    fn rules_of_its_own_survive_the_pool_and_clones_share_them() {
        let rules = HttpClassifier::new()
            .failure(429)
            .on_error(Outcome::FailureFor(Duration::new(7, 250)))
            .on_timeout(Outcome::Ignored)
            .retry_after(Duration::new(30, 5));
        let clone = rules.clone();
        drop(rules);
        assert_eq!(classify(&clone, &status(429)), Outcome::Failure);
        assert_eq!(classify(&clone, &status(430)), Outcome::Ignored);
        let refused: tower::BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let timeout: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        let classify_err = |c: &HttpClassifier, e| Classify::<Response<()>, _>::classify(c, Err(e));
        assert_eq!(
            classify_err(&clone, &refused),
            Outcome::FailureFor(Duration::new(7, 250))
        );
        assert_eq!(classify_err(&clone, &timeout), Outcome::Ignored);
        let text = format!("{clone:?}");
        assert!(
            text.contains("retry_after_cap: Some(Some(30.000000005s))"),
            "{text}"
        );
        // Back to the defaults: the shared constant again.
        assert_eq!(
            HttpClassifier::new().failure(429).ignore(429),
            HttpClassifier::new()
        );
    }

    #[test]
    fn a_calls_view_reads_the_rules_while_an_owner_lives_and_is_ignored_after() {
        let owner = HttpClassifier::new().failure(404);
        let view = Classify::<Response<()>, std::io::Error>::for_call(&owner);
        assert_eq!(classify(&view, &status(404)), Outcome::Failure);
        assert_eq!(view, owner);
        drop(view.clone());
        assert_eq!(
            classify(&owner, &status(404)),
            Outcome::Failure,
            "a view holds nothing"
        );
        drop(owner);
        assert_eq!(classify(&view, &status(404)), Outcome::Ignored);
        assert_eq!(classify(&view, &status(500)), Outcome::Ignored);
        // The default rules never go.
        let default = Classify::<Response<()>, std::io::Error>::for_call(&HttpClassifier::new());
        assert_eq!(classify(&default, &status(500)), Outcome::Failure);
    }

    #[test]
    fn debug_shows_rules_as_ranges() {
        let text = format!("{:?}", HttpClassifier::new().failure(429));
        assert!(text.contains("failure: [429..=429, 500..=599]"), "{text}");
        assert!(text.contains("ignored: [400..=428, 430..=499]"), "{text}");
    }
}
