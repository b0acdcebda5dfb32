//! The chart's time axis: piecewise linear, so that every phase is wide enough to read.
//!
//! Each phase gets a floor of width, and a share of the rest that grows with the square root
//! of its duration: the 30 s open wait stays the widest phase without squeezing the phases
//! that last milliseconds into a line. Within a phase, time is linear, except that a stretch
//! in which no confirmation ends and which takes most of the phase (phase 8 waiting out the
//! read timeout) is drawn narrow and shaded: the calls that end after it get the width, and
//! the headline's timeouts stand apart from the fast failures that follow them.

use std::time::Duration;

/// The least width of a phase, in pixels (less only when the phases cannot all have it).
pub(crate) const PHASE_FLOOR: f64 = 60.0;
/// A stretch without calls is shortened when it takes more than this share of its phase.
const IDLE_SHARE: f64 = 0.4;
/// The width of a shortened stretch, at most, in pixels.
const IDLE_WIDTH: f64 = 16.0;
/// Ticks are at least this far apart, in pixels.
const TICK_SPACING: f64 = 50.0;
/// Ticks keep this far from the ends of their piece (the phase boundaries' labels).
const TICK_MARGIN: f64 = 20.0;

/// A stretch of the axis: times `t0..=t1` drawn from `x0` to `x1`, linearly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Piece {
    pub(crate) t0: Duration,
    pub(crate) t1: Duration,
    pub(crate) x0: f64,
    pub(crate) x1: f64,
    /// No confirmation ends in it: shortened.
    pub(crate) idle: bool,
}

/// A labelled time on the axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tick {
    pub(crate) t: Duration,
    pub(crate) x: f64,
    /// Decimals that show its step.
    pub(crate) decimals: usize,
}

/// Time to x; see the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct TimeAxis {
    /// Each phase boundary: its time and its x (the first at time zero, the last at the end).
    pub(crate) bounds: Vec<(Duration, f64)>,
    /// The stretches, in order, from time zero to the end.
    pub(crate) pieces: Vec<Piece>,
}

impl TimeAxis {
    /// The axis from `left` to `right` for phases that start at `starts` (the first drawn
    /// from time zero: the set-up before it shows nothing) and end at `total`, with calls
    /// ending at `moments`.
    pub(crate) fn new(
        starts: &[Duration],
        total: Duration,
        moments: &[Duration],
        left: f64,
        right: f64,
    ) -> Self {
        let mut edges: Vec<Duration> = starts.to_vec();
        match edges.first_mut() {
            Some(first) => *first = Duration::ZERO,
            None => edges.push(Duration::ZERO),
        }
        edges.push(total);
        for i in 1..edges.len() {
            edges[i] = edges[i].max(edges[i - 1]);
        }
        let mut moments = moments.to_vec();
        moments.sort_unstable();
        let phases = (edges.len() - 1) as f64;
        let width = right - left;
        let floor = PHASE_FLOOR.min(width / (2.0 * phases));
        let weights: Vec<f64> = edges
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64().sqrt())
            .collect();
        let sum: f64 = weights.iter().sum();
        let spare = width - floor * phases;
        let mut x = left;
        let mut bounds = vec![(edges[0], left)];
        let mut pieces = Vec::new();
        for (i, pair) in edges.windows(2).enumerate() {
            let share = if sum > 0.0 {
                weights[i] / sum
            } else {
                1.0 / phases
            };
            // The last phase ends exactly at `right`, whatever the rounding.
            let end = if i + 2 == edges.len() {
                right
            } else {
                x + floor + spare * share
            };
            pieces.extend(phase_pieces(pair[0], pair[1], x, end, &moments));
            bounds.push((pair[1], end));
            x = end;
        }
        Self { bounds, pieces }
    }

    /// Where `t` is drawn.
    pub(crate) fn x(&self, t: Duration) -> f64 {
        for piece in &self.pieces {
            if t <= piece.t1 {
                let span = piece.t1.saturating_sub(piece.t0).as_secs_f64();
                if span <= 0.0 {
                    return piece.x0;
                }
                let within = t.saturating_sub(piece.t0).as_secs_f64() / span;
                return piece.x0 + within.clamp(0.0, 1.0) * (piece.x1 - piece.x0);
            }
        }
        self.pieces.last().map_or(0.0, |p| p.x1)
    }

    /// Round times inside the pieces that are not idle, at least [`TICK_SPACING`] apart,
    /// clear of the pieces' ends.
    pub(crate) fn ticks(&self) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for piece in self.pieces.iter().filter(|p| !p.idle) {
            let width = piece.x1 - piece.x0;
            let span = piece.t1.saturating_sub(piece.t0).as_secs_f64();
            if width < 2.0 * TICK_MARGIN || span <= 0.0 {
                continue;
            }
            let Some(step) = nice_step(span * TICK_SPACING / width) else {
                continue;
            };
            let decimals = (-step.log10().floor()).clamp(0.0, 3.0) as usize;
            let mut k = (piece.t0.as_secs_f64() / step).ceil();
            loop {
                let seconds = k * step;
                if seconds > piece.t1.as_secs_f64() {
                    break;
                }
                let t = Duration::from_secs_f64(seconds);
                let x = self.x(t);
                if x - piece.x0 >= TICK_MARGIN && piece.x1 - x >= TICK_MARGIN {
                    ticks.push(Tick { t, x, decimals });
                }
                k += 1.0;
            }
        }
        ticks
    }
}

/// The pieces of the phase `a..=b`, drawn from `x0` to `x1`, given the sorted `moments` at
/// which calls end.
fn phase_pieces(a: Duration, b: Duration, x0: f64, x1: f64, moments: &[Duration]) -> Vec<Piece> {
    let whole = vec![Piece {
        t0: a,
        t1: b,
        x0,
        x1,
        idle: false,
    }];
    let span = b.saturating_sub(a).as_secs_f64();
    let first = moments.partition_point(|&m| m < a);
    let last = moments.partition_point(|&m| m <= b);
    if first == last || span <= 0.0 {
        return whole;
    }
    let mut stops = vec![a];
    stops.extend_from_slice(&moments[first..last]);
    stops.push(b);
    let idle: Vec<(Duration, Duration)> = stops
        .windows(2)
        .filter(|w| (w[1] - w[0]).as_secs_f64() > IDLE_SHARE * span)
        .map(|w| (w[0], w[1]))
        .collect();
    if idle.is_empty() {
        return whole;
    }
    let width = x1 - x0;
    let idle_width = IDLE_WIDTH.min(width * 0.2 / idle.len() as f64);
    let idle_time: f64 = idle.iter().map(|(g0, g1)| (*g1 - *g0).as_secs_f64()).sum();
    let busy_time = span - idle_time;
    let busy_width = width - idle_width * idle.len() as f64;
    // Widths first, then positions: scaled to fill the phase exactly (when every call ends
    // at one instant, the idle stretches fill it).
    let mut stretches: Vec<(Duration, Duration, f64, bool)> = Vec::new();
    let mut t = a;
    for (g0, g1) in idle {
        if g0 > t {
            let share = (g0 - t).as_secs_f64() / busy_time.max(f64::MIN_POSITIVE);
            stretches.push((t, g0, busy_width * share, false));
        }
        stretches.push((g0, g1, idle_width, true));
        t = g1;
    }
    if b > t {
        let share = (b - t).as_secs_f64() / busy_time.max(f64::MIN_POSITIVE);
        stretches.push((t, b, busy_width * share, false));
    }
    let total: f64 = stretches.iter().map(|s| s.2).sum();
    let scale = if total > 0.0 { width / total } else { 0.0 };
    let mut x = x0;
    let mut pieces = Vec::with_capacity(stretches.len());
    for (t0, t1, w, idle) in stretches {
        pieces.push(Piece {
            t0,
            t1,
            x0: x,
            x1: x + w * scale,
            idle,
        });
        x += w * scale;
    }
    if let Some(last) = pieces.last_mut() {
        last.x1 = x1;
    }
    pieces
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> Option<f64> {
    if !(raw.is_finite() && raw > 0.0) {
        return None;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&step| step >= raw * (1.0 - 1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The phases of a real run of the demo (seconds since its start) and when its calls
    /// ended: phase 5 waits out 30 s; phase 8 waits 3 s for the read timeout, then fails
    /// fast for 0.1 s.
    fn real_run() -> (Vec<Duration>, Duration, Vec<Duration>) {
        let starts = [30, 110, 140, 430, 740, 30_150, 30_170, 30_220]
            .map(ms)
            .to_vec();
        let total = ms(33_490);
        let mut moments: Vec<Duration> = Vec::new();
        moments.extend((0..10).map(|i| ms(35 + 7 * i)));
        moments.extend((0..5).map(|i| ms(115 + 5 * i)));
        moments.extend((0..100).map(|i| ms(141 + 3 * i)));
        moments.extend((0..100).map(|i| ms(431 + 3 * i)));
        moments.extend((0..59).map(|i| ms(741 + 500 * i)));
        moments.extend((0..5).map(|i| ms(30_152 + 3 * i)));
        moments.extend((0..10).map(|i| ms(30_172 + 4 * i)));
        moments.extend((0..10).map(|i| ms(33_226 + i)));
        moments.extend((0..100).map(|i| ms(33_240 + 2 * i)));
        (starts, total, moments)
    }

    #[test]
    fn every_phase_of_a_real_run_is_at_least_the_floor_wide_and_the_wait_stays_widest() {
        let (starts, total, moments) = real_run();
        let axis = TimeAxis::new(&starts, total, &moments, 70.0, 980.0);
        let widths: Vec<f64> = axis.bounds.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert_eq!(widths.len(), 8);
        for (i, width) in widths.iter().enumerate() {
            assert!(*width >= PHASE_FLOOR, "phase {} is {width:.1} px", i + 1);
        }
        let widest = widths.iter().copied().fold(0.0, f64::max);
        assert_eq!(widest, widths[4], "{widths:?}");
        assert!(widest < 0.4 * 910.0, "the wait takes {widest:.1} px");
        assert_eq!(axis.bounds[0], (Duration::ZERO, 70.0));
        assert_eq!(axis.bounds[8], (total, 980.0));
    }

    #[test]
    fn the_wait_for_the_read_timeout_is_shortened_and_the_calls_after_it_get_the_width() {
        let (starts, total, moments) = real_run();
        let axis = TimeAxis::new(&starts, total, &moments, 70.0, 980.0);
        let idle: Vec<&Piece> = axis.pieces.iter().filter(|p| p.idle).collect();
        assert_eq!(idle.len(), 1, "{:?}", axis.pieces);
        assert_eq!((idle[0].t0, idle[0].t1), (ms(30_220), ms(33_226)));
        assert!((idle[0].x1 - idle[0].x0 - IDLE_WIDTH).abs() < 1e-9);
        // The timeouts at 3 s and the last fast failure, 0.2 s later: apart.
        let timeouts = axis.x(ms(33_226));
        let fast = axis.x(ms(33_438));
        assert!(fast - timeouts >= 40.0, "{timeouts:.1} to {fast:.1}");
    }

    #[test]
    fn x_rises_with_time_from_left_to_right() {
        let (starts, total, moments) = real_run();
        let axis = TimeAxis::new(&starts, total, &moments, 70.0, 980.0);
        let mut last = axis.x(Duration::ZERO);
        assert_eq!(last, 70.0);
        for step in 1..=33_490 {
            let x = axis.x(ms(step));
            assert!(x >= last, "x goes back at {step} ms");
            last = x;
        }
        assert!((last - 980.0).abs() < 1e-9);
        assert_eq!(axis.x(ms(40_000)), 980.0);
    }

    #[test]
    fn ticks_are_round_times_where_they_are_drawn() {
        let (starts, total, moments) = real_run();
        let axis = TimeAxis::new(&starts, total, &moments, 70.0, 980.0);
        let ticks = axis.ticks();
        // The wait, phase 5: whole seconds in steps of 5 s or less.
        let wait: Vec<&Tick> = ticks
            .iter()
            .filter(|t| t.t > ms(740) && t.t < ms(30_150))
            .collect();
        assert!(wait.len() >= 3, "{ticks:?}");
        for tick in &wait {
            assert_eq!(tick.t.subsec_nanos(), 0, "{tick:?}");
            assert_eq!(tick.decimals, 0);
        }
        for tick in &ticks {
            assert!((axis.x(tick.t) - tick.x).abs() < 1e-9, "{tick:?}");
        }
        for pair in ticks.windows(2) {
            assert!(pair[1].x > pair[0].x, "{pair:?}");
        }
    }

    #[test]
    fn no_calls_or_no_phases_give_one_linear_axis() {
        let axis = TimeAxis::new(&[], ms(1_000), &[], 0.0, 100.0);
        assert_eq!(axis.bounds, vec![(Duration::ZERO, 0.0), (ms(1_000), 100.0)]);
        assert_eq!(axis.x(ms(250)), 25.0);
        // Every call at one instant, after a long silence: still inside the phase.
        let axis = TimeAxis::new(&[ms(0)], ms(1_000), &[ms(900)], 0.0, 100.0);
        let x = axis.x(ms(900));
        assert!(x > 0.0 && x < 100.0, "{x}");
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.3), Some(0.5));
        assert_eq!(nice_step(1.0), Some(1.0));
        assert_eq!(nice_step(1.2), Some(2.0));
        assert_eq!(nice_step(7.0), Some(10.0));
        assert_eq!(nice_step(0.0), None);
    }
}
