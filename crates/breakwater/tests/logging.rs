//! A breaker's log lines: a warning when it opens, info for its other transitions. In a test
//! binary of its own: tracing caches whether a call site is enabled, and a test of another
//! thread reaching the same call sites while this one installs its subscriber could leave them
//! cached as disabled.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use breakwater::CircuitBreaker;
use breakwater::clock::ManualClock;

mod support;

use support::{err, ok};

fn window_of_one() -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder("logging")
        .count_window(1)
        .clock(clock.clone())
        .build()
        .unwrap();
    (breaker, clock)
}

/// A tracing subscriber that keeps (level, message) of every event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn transitions_are_logged_warn_when_opening_and_info_otherwise() {
    let captured = Captured::default();
    let (b, clock) = window_of_one();
    tracing::subscriber::with_default(captured.clone(), || {
        err(&b, &clock);
        clock.advance(Duration::from_secs(60));
        ok(&b, &clock);
        b.reset();
    });
    let levels: Vec<_> = captured.0.lock().unwrap().clone();
    assert_eq!(
        levels.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [
            tracing::Level::WARN,
            tracing::Level::INFO,
            tracing::Level::INFO,
            tracing::Level::INFO
        ],
        "{levels:?}"
    );
    assert!(levels[0].1.contains("opened"), "{levels:?}");
    assert!(levels[1].1.contains("half-open"), "{levels:?}");
    assert!(levels[3].1.contains("reset"), "{levels:?}");
}
