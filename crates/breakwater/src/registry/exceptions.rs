//! What resilience4j's `record-exceptions` and `ignore-exceptions` mean for an HTTP client
//! here: Java exception classes, mapped to statuses and errors where the mapping is clear.

use super::binding::Binding;
use crate::classify::Outcome;
use crate::classify::http::{HttpClassifier, Matcher};

/// What one exception class (or predicate) named in a file stands for: a class breakwater
/// knows, or a name the program bound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    Known(Rule),
    Bound(Binding),
}

/// What one exception class breakwater knows stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Response statuses, inclusive (`None`: no status).
    statuses: Option<(u16, u16)>,
    /// A second range, for classes that cover both `4xx` and `5xx`.
    more_statuses: Option<(u16, u16)>,
    /// Errors that are not timeouts (connect, I/O, body).
    errors: bool,
    /// Timeout errors.
    timeouts: bool,
}

const CLIENT: (u16, u16) = (400, 499);
const SERVER: (u16, u16) = (500, 599);

const fn statuses(range: (u16, u16)) -> Rule {
    Rule {
        statuses: Some(range),
        more_statuses: None,
        errors: false,
        timeouts: false,
    }
}

const fn status(code: u16) -> Rule {
    statuses((code, code))
}

const ERROR_STATUSES: Rule = Rule {
    statuses: Some(CLIENT),
    more_statuses: Some(SERVER),
    errors: false,
    timeouts: false,
};
const TIMEOUTS: Rule = Rule {
    statuses: None,
    more_statuses: None,
    errors: false,
    timeouts: true,
};
const ERRORS: Rule = Rule {
    statuses: None,
    more_statuses: None,
    errors: true,
    timeouts: false,
};
/// I/O exceptions include socket timeouts.
const IO: Rule = Rule {
    statuses: None,
    more_statuses: None,
    errors: true,
    timeouts: true,
};
const EVERYTHING: Rule = Rule {
    statuses: Some(CLIENT),
    more_statuses: Some(SERVER),
    errors: true,
    timeouts: true,
};

/// The classes understood, by their fully qualified names (the simple name works too).
const CLASSES: &[(&str, Rule)] = &[
    (
        "org.springframework.web.client.HttpClientErrorException",
        statuses(CLIENT),
    ),
    (
        "org.springframework.web.client.HttpServerErrorException",
        statuses(SERVER),
    ),
    (
        "org.springframework.web.client.HttpStatusCodeException",
        ERROR_STATUSES,
    ),
    (
        "org.springframework.web.client.RestClientResponseException",
        ERROR_STATUSES,
    ),
    (
        "org.springframework.web.reactive.function.client.WebClientResponseException",
        ERROR_STATUSES,
    ),
    ("org.springframework.web.client.ResourceAccessException", IO),
    (
        "org.springframework.web.client.RestClientException",
        EVERYTHING,
    ),
    ("java.util.concurrent.TimeoutException", TIMEOUTS),
    ("java.net.SocketTimeoutException", TIMEOUTS),
    ("java.net.http.HttpTimeoutException", TIMEOUTS),
    ("java.net.http.HttpConnectTimeoutException", TIMEOUTS),
    ("java.io.InterruptedIOException", TIMEOUTS),
    ("java.io.IOException", IO),
    ("java.io.UncheckedIOException", IO),
    ("java.net.ConnectException", ERRORS),
    ("java.net.NoRouteToHostException", ERRORS),
    ("java.net.UnknownHostException", ERRORS),
    ("java.net.SocketException", ERRORS),
    ("java.lang.Exception", EVERYTHING),
    ("java.lang.RuntimeException", EVERYTHING),
    ("java.lang.Throwable", EVERYTHING),
];

/// Spring's subclasses per status, `HttpClientErrorException.NotFound` and the like.
const CLIENT_STATUSES: &[(&str, u16)] = &[
    ("BadRequest", 400),
    ("Unauthorized", 401),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("MethodNotAllowed", 405),
    ("NotAcceptable", 406),
    ("Conflict", 409),
    ("Gone", 410),
    ("UnsupportedMediaType", 415),
    ("UnprocessableEntity", 422),
    ("TooManyRequests", 429),
];
const SERVER_STATUSES: &[(&str, u16)] = &[
    ("InternalServerError", 500),
    ("NotImplemented", 501),
    ("BadGateway", 502),
    ("ServiceUnavailable", 503),
    ("GatewayTimeout", 504),
];

/// What the class `name` stands for: a fully qualified name, a simple name, or a nested
/// status class (`HttpClientErrorException.NotFound` or `...$NotFound`).
pub(crate) fn target(name: &str) -> Option<Rule> {
    let name = name.trim();
    if let Some(&(_, target)) = CLASSES
        .iter()
        .find(|(qualified, _)| *qualified == name || simple_of(qualified) == name)
    {
        return Some(target);
    }
    // A nested class: the outer class's name, then `$` or `.`, then the status's name.
    let (outer, inner) = name.rsplit_once(['$', '.'])?;
    let outer = simple_of(outer);
    let table = match outer {
        "HttpClientErrorException" => CLIENT_STATUSES,
        "HttpServerErrorException" => SERVER_STATUSES,
        _ => return None,
    };
    table
        .iter()
        .find(|(nested, _)| *nested == inner)
        .map(|&(_, code)| status(code))
}

/// The last segment of a dotted class name.
pub(crate) fn simple_of(qualified: &str) -> &str {
    qualified.rsplit('.').next().unwrap_or(qualified)
}

/// The class names understood, for an error message.
pub(crate) fn understood() -> String {
    let mut names: Vec<String> = CLASSES.iter().map(|(name, _)| (*name).to_owned()).collect();
    names.push(
        "HttpClientErrorException.{BadRequest, Unauthorized, Forbidden, NotFound, \
         MethodNotAllowed, NotAcceptable, Conflict, Gone, UnsupportedMediaType, \
         UnprocessableEntity, TooManyRequests}"
            .to_owned(),
    );
    names.push(
        "HttpServerErrorException.{InternalServerError, NotImplemented, BadGateway, \
         ServiceUnavailable, GatewayTimeout}"
            .to_owned(),
    );
    names.join(", ")
}

/// The HTTP classification that `record`, `results` and `ignore` describe, as resilience4j
/// applies them: without `record`, breakwater's default (`5xx` and errors fail, `4xx` is
/// ignored); with it, what it names fails and everything else succeeds; what `results` (a
/// bound `record-result-predicate`) matches fails; what `ignore` names is ignored, whatever
/// the others say.
pub(crate) fn classifier(
    record: &[Target],
    results: &[Target],
    ignore: &[Target],
) -> HttpClassifier {
    let mut classifier = HttpClassifier::new();
    if !record.is_empty() {
        classifier = classifier
            .success(400..=599)
            .on_error(Outcome::Success)
            .on_timeout(Outcome::Success);
        for target in record {
            classifier = apply(classifier, target, Outcome::Failure);
        }
    }
    for target in results {
        classifier = apply(classifier, target, Outcome::Failure);
    }
    // A bound name's predicates are consulted before the status and error rules: what
    // `ignore` names must then be a rule of the same kind, after them, to win over them.
    let bound = record
        .iter()
        .chain(results)
        .any(|t| matches!(t, Target::Bound(_)));
    for target in ignore {
        classifier = apply(classifier, target, Outcome::Ignored);
        if bound {
            classifier = match target {
                Target::Known(rule) => rule.as_matchers(classifier, Outcome::Ignored),
                Target::Bound(binding) => {
                    binding.statuses_as_matchers(classifier, Outcome::Ignored)
                }
            };
        }
    }
    classifier
}

/// A rule naming nothing: as a `record` list, "record nothing" (every status, error and
/// timeout a success, before `results` and `ignore` apply).
pub(crate) const NOTHING: Rule = Rule {
    statuses: None,
    more_statuses: None,
    errors: false,
    timeouts: false,
};

impl Target {
    /// Whether it names client errors (`4xx`) by status.
    pub(crate) fn names_client_errors(&self) -> bool {
        match self {
            Target::Known(rule) => rule.names_client_errors(),
            Target::Bound(binding) => binding.names_client_errors(),
        }
    }
}

impl Rule {
    /// `classifier` with this rule as rules by kind, consulted with (and after) the
    /// predicates.
    fn as_matchers(&self, mut classifier: HttpClassifier, outcome: Outcome) -> HttpClassifier {
        for (first, last) in [self.statuses, self.more_statuses].into_iter().flatten() {
            classifier = classifier.matching(Matcher::Statuses(first, last, outcome));
        }
        if self.errors || self.timeouts {
            classifier = classifier.matching(Matcher::Errors {
                timeouts: self.timeouts,
                others: self.errors,
                outcome,
            });
        }
        classifier
    }

    /// Whether it names client errors (`4xx`).
    fn names_client_errors(&self) -> bool {
        [self.statuses, self.more_statuses]
            .into_iter()
            .flatten()
            .any(|(first, last)| first <= 499 && last >= 400)
    }
}

fn apply(classifier: HttpClassifier, target: &Target, outcome: Outcome) -> HttpClassifier {
    match target {
        Target::Known(rule) => apply_rule(classifier, rule, outcome),
        Target::Bound(binding) => binding.apply(classifier, outcome),
    }
}

fn apply_rule(mut classifier: HttpClassifier, target: &Rule, outcome: Outcome) -> HttpClassifier {
    for (first, last) in [target.statuses, target.more_statuses]
        .into_iter()
        .flatten()
    {
        classifier = match outcome {
            Outcome::Ignored => classifier.ignore(first..=last),
            _ => classifier.failure(first..=last),
        };
    }
    if target.errors {
        classifier = classifier.on_error(outcome);
    }
    if target.timeouts {
        classifier = classifier.on_timeout(outcome);
    }
    classifier
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn names_are_found_qualified_simple_and_nested() {
        let client = target("org.springframework.web.client.HttpClientErrorException");
        assert_eq!(client, Some(statuses(CLIENT)));
        assert_eq!(target("HttpClientErrorException"), client);
        assert_eq!(
            target("HttpClientErrorException$NotFound"),
            Some(status(404))
        );
        assert_eq!(
            target("org.springframework.web.client.HttpServerErrorException.ServiceUnavailable"),
            Some(status(503))
        );
        assert_eq!(target("java.net.SocketTimeoutException"), Some(TIMEOUTS));
        assert_eq!(target("com.example.MyException"), None);
        assert_eq!(target("HttpClientErrorException$Teapot"), None);
        assert!(understood().contains("java.io.IOException"));
    }

    #[test]
    fn record_and_ignore_follow_resilience4j() {
        let of = |c: &HttpClassifier, code| c.classify_status(StatusCode::from_u16(code).unwrap());
        // The seed's configuration: ignore client errors; the rest is breakwater's default.
        let seed = classifier(&[], &[], &[Target::Known(statuses(CLIENT))]);
        assert_eq!(of(&seed, 404), Outcome::Ignored);
        assert_eq!(of(&seed, 500), Outcome::Failure);
        assert_eq!(seed, HttpClassifier::new());
        // Recording only timeouts: statuses and other errors succeed.
        let only_timeouts = classifier(&[Target::Known(TIMEOUTS)], &[], &[]);
        assert_eq!(of(&only_timeouts, 500), Outcome::Success);
        assert_eq!(of(&only_timeouts, 404), Outcome::Success);
        assert_eq!(
            only_timeouts,
            HttpClassifier::new()
                .success(400..=599)
                .on_error(Outcome::Success)
        );
        // Ignoring wins over recording.
        let both = classifier(
            &[Target::Known(EVERYTHING)],
            &[],
            &[Target::Known(status(503)), Target::Known(ERRORS)],
        );
        assert_eq!(of(&both, 503), Outcome::Ignored);
        assert_eq!(of(&both, 502), Outcome::Failure);
        assert_eq!(of(&both, 404), Outcome::Failure);
        assert_eq!(
            both,
            HttpClassifier::new()
                .failure(400..=599)
                .ignore(503)
                .on_error(Outcome::Ignored)
        );
    }
}
