//! Tests of the time window.

use super::*;

const OK: Sample = Sample {
    failed: false,
    slow: false,
};
const FAIL: Sample = Sample {
    failed: true,
    slow: false,
};
const SLOW_FAIL: Sample = Sample {
    failed: true,
    slow: true,
};
const SEC: u64 = 1_000_000_000;

fn totals(calls: u64, failed: u64, slow: u64) -> Totals {
    Totals {
        calls,
        failed,
        slow,
    }
}

fn record(w: &TimeWindow, sample: Sample, now: u64) -> Totals {
    let r = w.record(0, sample, now).expect("current generation");
    w.totals_at(r.head, None).expect("published")
}

#[test]
fn calls_leave_the_window_after_its_span() {
    let w = TimeWindow::new(5);
    assert_eq!(record(&w, FAIL, 0), totals(1, 1, 0));
    assert_eq!(record(&w, OK, SEC / 2), totals(2, 1, 0));
    assert_eq!(record(&w, SLOW_FAIL, 2 * SEC), totals(3, 2, 1));
    assert_eq!(record(&w, OK, 4 * SEC + SEC - 1), totals(4, 2, 1));
    assert_eq!(w.totals(0, 4 * SEC), totals(4, 2, 1));
    // At second 5, second 0 (two calls) has left.
    assert_eq!(w.totals(0, 5 * SEC), totals(2, 1, 1));
    assert_eq!(record(&w, OK, 5 * SEC), totals(3, 1, 1));
    // At second 7, second 2 leaves too.
    assert_eq!(w.totals(0, 7 * SEC), totals(2, 0, 0));
    // Long after, nothing is left.
    assert_eq!(w.totals(0, 10 * SEC), totals(0, 0, 0));
    assert_eq!(w.totals(0, 100_000 * SEC), totals(0, 0, 0));
    assert_eq!(record(&w, FAIL, 100_000 * SEC), totals(1, 1, 0));
}

#[test]
fn a_lagging_clock_read_counts_in_the_current_second() {
    let w = TimeWindow::new(2);
    record(&w, OK, 10 * SEC);
    // Another thread read the clock just before second 10 began.
    assert_eq!(record(&w, FAIL, 10 * SEC - 1), totals(2, 1, 0));
    assert_eq!(w.totals(0, 11 * SEC), totals(2, 1, 0));
    assert_eq!(w.totals(0, 12 * SEC), totals(0, 0, 0));
}

#[test]
fn idle_gaps_longer_than_the_ring_publish_only_what_can_be_read() {
    let w = TimeWindow::new(3);
    for s in 0..3 {
        record(&w, FAIL, s * SEC);
    }
    assert_eq!(record(&w, OK, 1_000 * SEC), totals(1, 0, 0));
    assert_eq!(record(&w, OK, 1_001 * SEC), totals(2, 0, 0));
    assert_eq!(record(&w, FAIL, 1_003 * SEC), totals(2, 1, 0));
}

#[test]
fn reset_empties_the_window_and_refuses_stale_calls() {
    let w = TimeWindow::new(10);
    record(&w, FAIL, 3 * SEC);
    w.reset(1, 4 * SEC);
    assert_eq!(w.totals(1, 4 * SEC), totals(0, 0, 0));
    assert!(w.record(0, FAIL, 4 * SEC).is_none());
    let r = w
        .record(1, OK, 5 * SEC)
        .expect("a call of the current generation is recorded");
    assert_eq!(w.totals_at(r.head, None), Some(totals(1, 0, 0)));
    // A newer generation's call resets by itself.
    let r = w
        .record(2, FAIL, 6 * SEC)
        .expect("a call of the current generation is recorded");
    assert_eq!(w.totals_at(r.head, None), Some(totals(1, 1, 0)));
    w.reset(2, 6 * SEC);
    assert_eq!(w.totals(2, 6 * SEC), totals(1, 1, 0));
}

#[test]
fn many_calls_in_one_second_are_counted_exactly() {
    let w = TimeWindow::new(1);
    for i in 0..100_000u64 {
        w.record(0, if i % 4 == 0 { FAIL } else { OK }, 7 * SEC)
            .expect("a call of the current generation is recorded");
    }
    assert_eq!(w.totals(0, 7 * SEC), totals(100_000, 25_000, 0));
    assert_eq!(w.totals(0, 8 * SEC), totals(0, 0, 0));
}

#[test]
fn concurrent_recorders_across_seconds_leave_exact_totals() {
    let w = std::sync::Arc::new(TimeWindow::new(60));
    // All four threads finish each second before any starts the next, so every call lands
    // in the second it was stamped with.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (w, barrier) = (w.clone(), barrier.clone());
            std::thread::spawn(move || {
                for second in 0..20u64 {
                    for i in 0..1_000u64 {
                        let now = second * SEC + i * 1_000 + t;
                        w.record(0, if t == 0 { FAIL } else { OK }, now)
                            .expect("a call of the current generation is recorded");
                    }
                    barrier.wait();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("the thread ran to its end");
    }
    assert_eq!(w.totals(0, 19 * SEC), totals(80_000, 20_000, 0));
    // Second 0 leaves at second 60: 4 threads x 1000 calls, 1000 of them failures.
    assert_eq!(w.totals(0, 60 * SEC), totals(76_000, 19_000, 0));
    assert_eq!(w.totals(0, 79 * SEC), totals(0, 0, 0));
}

#[test]
fn concurrent_recorders_across_a_reset_count_only_their_generation() {
    let w = std::sync::Arc::new(TimeWindow::new(60));
    let go = std::sync::Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (w, go) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                let (mut tag, mut in_new) = (0, 0u64);
                for i in 0..10_000u64 {
                    // Seconds 0 to 9, all within the window.
                    let now = (i / 1_000) * SEC + t;
                    match w.record(tag, FAIL, now) {
                        Some(_) if tag == 1 => in_new += 1,
                        Some(_) => {}
                        None => {
                            tag = 1;
                            w.record(1, FAIL, now)
                                .expect("a call of the current generation is recorded");
                            in_new += 1;
                        }
                    }
                }
                in_new
            })
        })
        .collect();
    go.wait();
    w.reset(1, 0);
    let in_new: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("the thread ran to its end"))
        .sum();
    assert_eq!(w.totals(1, 9 * SEC), totals(in_new, in_new, 0));
    assert!(w.record(0, OK, 9 * SEC).is_none());
}
