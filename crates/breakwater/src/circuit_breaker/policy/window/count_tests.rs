//! Tests of the count window.

use super::*;

const OK: Sample = Sample {
    failed: false,
    slow: false,
};
const FAIL: Sample = Sample {
    failed: true,
    slow: false,
};
const SLOW: Sample = Sample {
    failed: false,
    slow: true,
};

fn record(w: &CountWindow, sample: Sample) -> Totals {
    let r = w.record(0, sample).expect("current generation");
    w.totals_at(r.head as u64).expect("published")
}

fn totals(calls: u64, failed: u64, slow: u64) -> Totals {
    Totals {
        calls,
        failed,
        slow,
    }
}

#[test]
fn counts_up_to_its_size_then_evicts_the_oldest() {
    let w = CountWindow::new(5);
    assert_eq!(record(&w, FAIL), totals(1, 1, 0));
    assert_eq!(record(&w, FAIL), totals(2, 2, 0));
    assert_eq!(record(&w, SLOW), totals(3, 2, 1));
    assert_eq!(record(&w, OK), totals(4, 2, 1));
    assert_eq!(record(&w, OK), totals(5, 2, 1));
    // The first failure leaves.
    assert_eq!(record(&w, OK), totals(5, 1, 1));
    assert_eq!(record(&w, OK), totals(5, 0, 1));
    // The slow call leaves.
    assert_eq!(record(&w, OK), totals(5, 0, 0));
    assert_eq!(w.totals(0), totals(5, 0, 0));
}

#[test]
fn stays_exact_past_every_counter_wrap() {
    // 2^21 sequence numbers and 2^17 counter values wrap many times over.
    let w = CountWindow::new(3);
    let pattern = [FAIL, OK, SLOW, FAIL, FAIL, OK, OK];
    let mut last = [OK; 3];
    for i in 0..3_000_000usize {
        let sample = pattern[i % pattern.len()];
        let t = record(&w, sample);
        last.rotate_left(1);
        last[2] = sample;
        let calls = (i as u64 + 1).min(3);
        let failed = last
            .iter()
            .rev()
            .take(calls as usize)
            .filter(|s| s.failed)
            .count();
        let slow = last
            .iter()
            .rev()
            .take(calls as usize)
            .filter(|s| s.slow)
            .count();
        assert_eq!(t, totals(calls, failed as u64, slow as u64), "call {i}");
    }
}

#[test]
fn a_missing_baseline_gives_the_exact_totals_of_a_shorter_window() {
    let w = CountWindow::new(4);
    for sample in [FAIL, OK, SLOW, FAIL, OK, FAIL] {
        record(&w, sample);
    }
    let head = w.head();
    // The window is the last 4 calls: SLOW, FAIL, OK, FAIL. Its baseline (after call 2) is
    // lost, as if its writer had been preempted before its store.
    w.slots[1].store(u64::MAX, Ordering::Release);
    assert_eq!(w.totals_at(head), None);
    assert_eq!(w.totals_near(head), Some(totals(3, 2, 0)));
    assert_eq!(w.totals(0), totals(3, 2, 0));
}

#[test]
fn a_window_of_one_holds_the_last_call() {
    let w = CountWindow::new(1);
    assert_eq!(record(&w, FAIL), totals(1, 1, 0));
    assert_eq!(record(&w, OK), totals(1, 0, 0));
    assert_eq!(record(&w, SLOW), totals(1, 0, 1));
}

#[test]
fn skips_a_success_only_into_a_clean_window() {
    let w = CountWindow::new(3);
    // Until the window slides, every success is written.
    for calls in [1, 2, 3, 3] {
        let before = w.head();
        assert_eq!(record(&w, OK), totals(calls, 0, 0));
        assert_ne!(w.head(), before);
    }
    // Full of successes: a success leaves the head as it was.
    let head = w.head();
    assert_eq!(record(&w, OK), totals(3, 0, 0));
    assert_eq!(w.head(), head);
    // A failure is written, and so is every success while it is in the window.
    assert_eq!(record(&w, FAIL), totals(3, 1, 0));
    for expected in [totals(3, 1, 0), totals(3, 1, 0), totals(3, 0, 0)] {
        let before = w.head();
        assert_eq!(record(&w, OK), expected);
        assert_ne!(w.head(), before);
    }
    // Clean again: skipped; a slow call makes it unclean.
    let head = w.head();
    record(&w, OK);
    assert_eq!(w.head(), head);
    assert_eq!(record(&w, SLOW), totals(3, 0, 1));
    assert_ne!(w.head(), head);
    // A stale generation is never skipped, only refused.
    w.reset(1);
    assert!(w.record(0, OK).is_none());
}

#[test]
fn matches_a_plain_list_of_the_last_calls() {
    // Every size up to 9, a long pseudo-random run of mostly successes (so both the skipped
    // and the written paths run), against the last `size` calls kept in a list.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for size in 1..10 {
        let w = CountWindow::new(size);
        let mut last = std::collections::VecDeque::new();
        for i in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let sample = match state % 16 {
                0 => FAIL,
                1 => SLOW,
                2 => Sample {
                    failed: true,
                    slow: true,
                },
                _ => OK,
            };
            last.push_back(sample);
            if last.len() > size as usize {
                last.pop_front();
            }
            let failed = last.iter().filter(|s| s.failed).count() as u64;
            let slow = last.iter().filter(|s| s.slow).count() as u64;
            let expected = totals(last.len() as u64, failed, slow);
            assert_eq!(record(&w, sample), expected, "size {size}, call {i}");
            assert_eq!(w.totals(0), expected, "size {size}, call {i}");
        }
    }
}

#[test]
fn reaching_the_minimum_is_reported_once() {
    let w = CountWindow::new(4);
    let reached: Vec<bool> = (0..8)
        .map(|_| {
            let r = w
                .record(0, OK)
                .expect("a call of the current generation is recorded");
            w.reached(r.head as u64, 3)
        })
        .collect();
    assert_eq!(
        reached,
        [false, false, true, false, false, false, false, false]
    );
}

#[test]
fn reset_starts_an_empty_generation_and_refuses_stale_calls() {
    let w = CountWindow::new(10);
    record(&w, FAIL);
    record(&w, FAIL);
    w.reset(1);
    assert_eq!(w.totals(1), totals(0, 0, 0));
    assert_eq!(w.totals(0), Totals::default());
    // A call from generation 0 arrives late: discarded.
    assert!(w.record(0, FAIL).is_none());
    assert_eq!(w.totals(1), totals(0, 0, 0));
    // Resetting to an older or the same generation changes nothing.
    let r = w
        .record(1, FAIL)
        .expect("a call of the current generation is recorded");
    assert_eq!(w.totals_at(r.head as u64), Some(totals(1, 1, 0)));
    w.reset(0);
    w.reset(1);
    assert_eq!(w.totals(1), totals(1, 1, 0));
}

#[test]
fn a_call_of_a_newer_generation_resets_the_window_itself() {
    let w = CountWindow::new(10);
    record(&w, FAIL);
    let r = w.record(2, OK).expect("newer generation");
    assert_eq!(w.totals_at(r.head as u64), Some(totals(1, 0, 0)));
    // The transition's own reset comes late and changes nothing.
    w.reset(2);
    assert_eq!(w.totals(2), totals(1, 0, 0));
}

#[test]
fn slots_of_an_old_generation_are_never_taken_as_baselines() {
    let w = CountWindow::new(2);
    for _ in 0..5 {
        record(&w, FAIL);
    }
    w.reset(1);
    // Generation 1 fills its window: every baseline comes from generation 1.
    assert_eq!(
        w.record(1, OK).map(|r| w.totals_at(r.head as u64)),
        Some(Some(totals(1, 0, 0)))
    );
    assert_eq!(
        w.record(1, OK).map(|r| w.totals_at(r.head as u64)),
        Some(Some(totals(2, 0, 0)))
    );
    assert_eq!(
        w.record(1, FAIL).map(|r| w.totals_at(r.head as u64)),
        Some(Some(totals(2, 1, 0)))
    );
}

#[test]
fn concurrent_recorders_leave_exact_totals() {
    // A window larger than all calls made: its totals must equal the sum of every call.
    let w = std::sync::Arc::new(CountWindow::new(MAX_SIZE));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..16_000u64 {
                    let sample = Sample {
                        failed: t == 0,
                        slow: i % 2 == 0,
                    };
                    let r = w
                        .record(0, sample)
                        .expect("a call of the current generation is recorded");
                    let seen = w
                        .totals_at(r.head as u64)
                        .expect("the baseline is published");
                    assert!(seen.failed <= seen.calls && seen.slow <= seen.calls);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("the thread ran to its end");
    }
    assert_eq!(w.totals(0), totals(64_000, 16_000, 32_000));
}

#[test]
fn concurrent_recorders_slide_a_small_window() {
    let w = std::sync::Arc::new(CountWindow::new(100));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = std::sync::Arc::clone(&w);
            std::thread::spawn(move || {
                for i in 0..50_000 {
                    let sample = Sample {
                        failed: i % 3 == 0,
                        slow: false,
                    };
                    let head = w
                        .record(0, sample)
                        .expect("a call of the current generation is recorded")
                        .head as u64;
                    // Exact at this call's head, or, if a whole window of calls overtook
                    // this thread, at a later head: never missing, never inconsistent.
                    let h = Head(head);
                    let expected = if h.full() { 100 } else { h.seq() };
                    let t = match w.totals_at(head) {
                        Some(t) => {
                            assert_eq!(t.calls, expected);
                            t
                        }
                        None => w.totals_near(head).unwrap_or_else(|| w.totals(0)),
                    };
                    assert!(t.calls > expected.saturating_sub(64) && t.calls <= 100);
                    assert!(t.failed <= t.calls);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("the thread ran to its end");
    }
    assert_eq!(w.totals(0).calls, 100);
    // Whatever interleaving happened, 100 known calls replace it exactly.
    for _ in 0..100 {
        w.record(0, FAIL)
            .expect("a call of the current generation is recorded");
    }
    assert_eq!(w.totals(0), totals(100, 100, 0));
}

#[test]
fn concurrent_recorders_across_a_reset_count_only_their_generation() {
    let w = std::sync::Arc::new(CountWindow::new(MAX_SIZE));
    let go = std::sync::Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (w, go) = (std::sync::Arc::clone(&w), std::sync::Arc::clone(&go));
            std::thread::spawn(move || {
                go.wait();
                // Record in generation 0 until it is closed, then in generation 1, as
                // calls admitted after the transition would.
                let (mut tag, mut in_new) = (0, 0u64);
                for _ in 0..10_000 {
                    match w.record(tag, FAIL) {
                        Some(_) if tag == 1 => in_new += 1,
                        Some(_) => {}
                        None => {
                            tag = 1;
                            w.record(1, FAIL)
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
    w.reset(1);
    let in_new: u64 = threads
        .into_iter()
        .map(|t| t.join().expect("the thread ran to its end"))
        .sum();
    assert_eq!(w.totals(1), totals(in_new, in_new, 0));
    assert!(w.record(0, OK).is_none());
}
