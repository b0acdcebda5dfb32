//! The demo's chart, as SVG written by hand: confirmation latency over time (log scale), the
//! breaker's state under it, the phases across both.
//!
//! The time axis (see [`super::axis`]) gives every phase a readable width and shortens the
//! stretches in which no call ends (shaded); the phase boundaries are labelled with their
//! real times, and round times inside the phases are ticked.

use std::fmt::Write as _;
use std::time::Duration;

use breakwater::CircuitState;

use super::axis::TimeAxis;
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
/// The latency axis: 0.1 ms to 10 s.
const LOG_MIN: f64 = -4.0;
const LOG_MAX: f64 = 1.0;

pub(crate) fn colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Approved => "#2e7d32",
        Outcome::Rejected => "#1565c0",
        Outcome::Failed => "#c62828",
        Outcome::Unavailable => "#ef6c00",
    }
}

pub(crate) fn state_colour(state: CircuitState) -> &'static str {
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
    let starts: Vec<Duration> = phases.iter().map(|p| p.started).collect();
    let ends: Vec<Duration> = samples.iter().map(|s| s.at + s.latency).collect();
    let axis = TimeAxis::new(&starts, total, &ends, LEFT, WIDTH - RIGHT);
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
    // Stretches without calls, shortened: shaded, with a break mark on the axis.
    for piece in axis.pieces.iter().filter(|p| p.idle) {
        let _ = writeln!(
            svg,
            r##"<rect class="idle" x="{:.1}" y="{PLOT_TOP}" width="{:.1}" height="{PLOT_HEIGHT}" fill="#eeeeee"><title>{:.2} s to {:.2} s: no call ended (shortened)</title></rect>"##,
            piece.x0,
            piece.x1 - piece.x0,
            piece.t0.as_secs_f64(),
            piece.t1.as_secs_f64()
        );
        let bottom = STRIP_TOP + STRIP_HEIGHT;
        for mark in [piece.x0 + 3.0, piece.x1 - 7.0] {
            let _ = writeln!(
                svg,
                r##"<line x1="{mark:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#555"/>"##,
                mark + 4.0,
                bottom + 5.0,
                bottom - 5.0
            );
        }
    }
    // Phases: a line at each start, and the number over the middle.
    for (phase, pair) in phases.iter().zip(axis.bounds.windows(2)) {
        let (px, end) = (pair[0].1, pair[1].1);
        let _ = writeln!(
            svg,
            r##"<line class="phase-start" x1="{px:.1}" x2="{px:.1}" y1="{PLOT_TOP}" y2="{}" stroke="#9e9e9e" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" text-anchor="middle" fill="#333">{}</text>"##,
            STRIP_TOP + STRIP_HEIGHT,
            (px + end) / 2.0,
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
    // Time axis: the real time at each phase boundary, then round times inside the phases
    // on a second row.
    let bottom = STRIP_TOP + STRIP_HEIGHT;
    for &(t, bx) in &axis.bounds {
        let _ = writeln!(
            svg,
            r##"<text x="{bx:.1}" y="{}" text-anchor="middle" fill="#333">{:.2}</text>"##,
            bottom + 14.0,
            t.as_secs_f64()
        );
    }
    for tick in axis.ticks() {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{bottom}" y2="{1}" stroke="#999"/><text x="{0:.1}" y="{2}" text-anchor="middle" fill="#888" font-size="10">{3:.4$}</text>"##,
            tick.x,
            bottom + 4.0,
            bottom + 27.0,
            tick.t.as_secs_f64(),
            tick.decimals
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">seconds since the demo started, when each confirmation ended (phases widened to be seen; shaded: no call ended, shortened)</text>"##,
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

/// Text safe inside an SVG element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
