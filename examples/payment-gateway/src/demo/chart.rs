//! The demo's chart, as SVG written by hand: confirmation latency over time (log scale), the
//! breaker's state under it, the phases across both.
//!
//! The time axis is linear within each phase but gives every phase at least a share of the
//! width: the 30 s open wait would otherwise squeeze the phases that last milliseconds into
//! a line. The phase boundaries are labelled with their real times.

use std::fmt::Write as _;
use std::time::Duration;

use breakwater::CircuitState;

use super::driver::Sample;
use super::report::{Outcome, PhaseReport, Transition};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PLOT_TOP: f64 = 50.0;
const PLOT_HEIGHT: f64 = 300.0;
const STRIP_TOP: f64 = 375.0;
const STRIP_HEIGHT: f64 = 24.0;
const HEIGHT: f64 = 515.0;
/// The least share of the width a phase gets.
const MIN_SHARE: f64 = 0.07;
/// The latency axis: 0.1 ms to 10 s.
const LOG_MIN: f64 = -4.0;
const LOG_MAX: f64 = 1.0;

fn colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "#2e7d32",
        Outcome::Rejected => "#1565c0",
        Outcome::Failed => "#c62828",
        Outcome::Unavailable => "#ef6c00",
    }
}

fn state_colour(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "#a5d6a7",
        CircuitState::Open | CircuitState::ForcedOpen => "#ef9a9a",
        CircuitState::HalfOpen => "#ffe082",
        CircuitState::Disabled | CircuitState::MetricsOnly => "#e0e0e0",
    }
}

/// The chart of a run that lasted `total`.
pub(crate) fn render(
    samples: &[Sample],
    transitions: &[Transition],
    phases: &[PhaseReport],
    total: Duration,
) -> String {
    let axis = TimeAxis::new(phases, total);
    let x = |t: Duration| axis.x(t);
    let y = |latency: Duration| {
        let log = latency
            .as_secs_f64()
            .max(1e-4)
            .log10()
            .clamp(LOG_MIN, LOG_MAX);
        PLOT_TOP + (LOG_MAX - log) / (LOG_MAX - LOG_MIN) * PLOT_HEIGHT
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="24" font-size="16" font-weight="bold">payment-gateway demo: confirmation latency and the PG breaker's state</text>
"##
    );
    // Latency grid: one line per decade.
    for decade in (LOG_MIN as i32)..=(LOG_MAX as i32) {
        let latency = Duration::from_secs_f64(10f64.powi(decade));
        let gy = y(latency);
        let label = match decade {
            -4 => "0.1 ms",
            -3 => "1 ms",
            -2 => "10 ms",
            -1 => "100 ms",
            0 => "1 s",
            _ => "10 s",
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{gy:.1}" y2="{gy:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            gy + 4.0
        );
    }
    // Phases: a line and a number at each start.
    for phase in phases {
        let px = x(phase.started);
        let width = x(phase.started + phase.took) - px;
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{PLOT_TOP}" y2="{}" stroke="#9e9e9e" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            STRIP_TOP + STRIP_HEIGHT,
            px + width / 2.0,
            PLOT_TOP - 6.0,
            phase.number
        );
    }
    for sample in samples {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}" fill-opacity="0.7"/>"##,
            x(sample.at + sample.latency),
            y(sample.latency),
            colour(sample.outcome)
        );
    }
    // The breaker's state, as bands from one transition to the next.
    let mut state = CircuitState::Closed;
    let mut since = Duration::ZERO;
    for transition in transitions.iter().chain(std::iter::once(&Transition {
        at: total,
        from: CircuitState::Closed,
        to: CircuitState::Closed,
        cause: String::new(),
    })) {
        let (x0, x1) = (x(since), x(transition.at.min(total)));
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{STRIP_TOP}" width="{:.1}" height="{STRIP_HEIGHT}" fill="{}"><title>{state}</title></rect>"##,
            (x1 - x0).max(0.5),
            state_colour(state)
        );
        state = transition.to;
        since = transition.at;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">breaker</text>"##,
        LEFT - 6.0,
        STRIP_TOP + 16.0
    );
    // Time axis: the real time at each phase boundary.
    for (i, &(t, bx)) in axis.bounds.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{bx:.1}" y="{}" text-anchor="middle" fill="#555">{:.2}</text>"##,
            STRIP_TOP + STRIP_HEIGHT + 14.0 + if i % 2 == 1 { 12.0 } else { 0.0 },
            t.as_secs_f64()
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">seconds since the demo started, when each confirmation ended (each phase stretched to be seen)</text>"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        STRIP_TOP + STRIP_HEIGHT + 44.0
    );
    // The phases' names.
    let names: Vec<String> = phases
        .iter()
        .map(|p| format!("{} {}", p.number, p.name))
        .collect();
    let half = names.len().div_ceil(2);
    for (line, chunk) in names.chunks(half.max(1)).enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}" fill="#333" font-size="11">{}</text>"##,
            HEIGHT - 50.0 + 14.0 * line as f64,
            escape(&chunk.join(" · "))
        );
    }
    // Legend.
    let legend: [(&str, &str); 7] = [
        (colour(Outcome::Approved), "approved"),
        (colour(Outcome::Rejected), "rejected (4xx)"),
        (colour(Outcome::Failed), "failed (5xx, timeout)"),
        (colour(Outcome::Unavailable), "unavailable (open)"),
        (state_colour(CircuitState::Closed), "closed"),
        (state_colour(CircuitState::HalfOpen), "half-open"),
        (state_colour(CircuitState::Open), "open"),
    ];
    let mut lx = LEFT;
    for (fill, label) in legend {
        let _ = writeln!(
            svg,
            r##"<rect x="{lx}" y="{}" width="10" height="10" fill="{fill}"/><text x="{}" y="{}">{label}</text>"##,
            HEIGHT - 20.0,
            lx + 14.0,
            HEIGHT - 11.0
        );
        lx += 14.0 + 7.5 * label.len() as f64 + 16.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Time to x: linear within each phase, each phase at least [`MIN_SHARE`] of the width.
struct TimeAxis {
    /// Each phase boundary: its time and its x.
    bounds: Vec<(Duration, f64)>,
}

impl TimeAxis {
    fn new(phases: &[PhaseReport], total: Duration) -> Self {
        // The first phase starts the axis at zero (the set-up before it shows nothing).
        let mut edges: Vec<Duration> = phases.iter().map(|p| p.started).collect();
        match edges.first_mut() {
            Some(first) => *first = Duration::ZERO,
            None => edges.push(Duration::ZERO),
        }
        edges.push(total);
        let span = total.as_secs_f64().max(1e-3);
        let shares: Vec<f64> = edges
            .windows(2)
            .map(|w| ((w[1].saturating_sub(w[0])).as_secs_f64() / span).max(MIN_SHARE))
            .collect();
        let sum: f64 = shares.iter().sum::<f64>().max(1e-9);
        let mut bx = LEFT;
        let mut bounds = vec![(edges[0], bx)];
        for (share, &edge) in shares.iter().zip(&edges[1..]) {
            bx += share / sum * (WIDTH - LEFT - RIGHT);
            bounds.push((edge, bx));
        }
        Self { bounds }
    }

    fn x(&self, t: Duration) -> f64 {
        for pair in self.bounds.windows(2) {
            let ((t0, x0), (t1, x1)) = (pair[0], pair[1]);
            if t <= t1 {
                let span = t1.saturating_sub(t0).as_secs_f64();
                if span <= 0.0 {
                    return x0;
                }
                let within = t.saturating_sub(t0).as_secs_f64() / span;
                return x0 + within.clamp(0.0, 1.0) * (x1 - x0);
            }
        }
        self.bounds.last().map_or(LEFT, |&(_, x)| x)
    }
}

/// Text safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_axis_gives_short_phases_room_and_keeps_order() {
        let phase = |number, started: u64, took: u64| PhaseReport {
            number,
            name: "phase",
            started: Duration::from_millis(started),
            took: Duration::from_millis(took),
            calls: 0,
            approved: 0,
            rejected: 0,
            failed: 0,
            unavailable: 0,
            pg_hits: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            logs: crate::telemetry::LogCounts::default(),
            state_after: CircuitState::Closed,
        };
        let phases = [phase(1, 0, 10), phase(2, 10, 29_990), phase(3, 30_000, 10)];
        let axis = TimeAxis::new(&phases, Duration::from_millis(30_010));
        let width = WIDTH - LEFT - RIGHT;
        let first = axis.x(Duration::from_millis(10)) - axis.x(Duration::ZERO);
        assert!(first >= width * 0.06, "a 10 ms phase gets {first} px");
        assert_eq!(axis.x(Duration::ZERO), LEFT);
        assert!((axis.x(Duration::from_millis(30_010)) - (WIDTH - RIGHT)).abs() < 1e-6);
        let mut last = 0.0;
        for ms in (0..=30_010).step_by(5) {
            let x = axis.x(Duration::from_millis(ms));
            assert!(x >= last, "x goes back at {ms} ms");
            last = x;
        }
    }
}
