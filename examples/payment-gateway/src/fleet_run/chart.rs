//! The fleet run's chart, SVG written by hand: for each run (fleet off, fleet on), one lane
//! per instance showing its breaker's state over time, with a tick per confirmation it
//! answered, coloured by outcome, and the outage and the recovery marked.

use std::fmt::Write as _;
use std::time::Duration;

use breakwater::CircuitState;

use super::{FleetReport, FleetRunOptions, RunReport};
use crate::demo::chart::{colour, state_colour};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const LANE: f64 = 26.0;
const GAP: f64 = 8.0;
const BLOCK_TOP: f64 = 60.0;

/// The chart of both runs, on one time scale.
pub(super) fn render(report: &FleetReport, options: &FleetRunOptions) -> String {
    let total = report.off.total.max(report.on.total).as_secs_f64().max(1.0);
    let x = |t: Duration| LEFT + t.as_secs_f64() / total * (WIDTH - LEFT - RIGHT);
    let lanes = options.instances as f64;
    let block = 40.0 + lanes * (LANE + GAP);
    let height = BLOCK_TOP + 2.0 * block + 60.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="15">payment-gateway fleet: {} instances, a PG outage and its recovery, fleet off and on</text>"#,
        options.instances
    );
    for (k, run) in [&report.off, &report.on].into_iter().enumerate() {
        let top = BLOCK_TOP + k as f64 * block;
        lanes_of(&mut svg, run, top, &x);
    }
    // Time ticks, every 2 s.
    let axis = height - 40.0;
    let mut t = 0.0;
    while t <= total {
        let at = x(Duration::from_secs_f64(t));
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{axis}" x2="{at:.1}" y2="{:.1}" stroke="#555"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"##,
            axis + 5.0,
            axis + 18.0
        );
        t += 2.0;
    }
    let legend = [
        ("closed", state_colour(CircuitState::Closed)),
        ("open", state_colour(CircuitState::Open)),
        ("half-open", state_colour(CircuitState::HalfOpen)),
    ];
    for (i, (name, fill)) in legend.iter().enumerate() {
        let lx = LEFT + i as f64 * 110.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{:.1}" width="14" height="10" fill="{fill}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            height - 14.0,
            lx + 18.0,
            height - 5.0
        );
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

fn lanes_of(svg: &mut String, run: &RunReport, top: f64, x: &impl Fn(Duration) -> f64) {
    let title = if run.fleet { "fleet on" } else { "fleet off" };
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.1}" font-weight="bold">{title}: {} probes at recovery</text>"#,
        top + 14.0,
        run.probes()
    );
    let lanes_top = top + 24.0;
    for (i, lane) in run.lanes.iter().enumerate() {
        let y = lanes_top + i as f64 * (LANE + GAP);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{:.1}">{} ({} probes)</text>"#,
            y + LANE * 0.65,
            lane.instance,
            lane.probes
        );
        // The state, segment by segment.
        let mut from = Duration::ZERO;
        let mut state = CircuitState::Closed;
        for (at, to, _) in lane.transitions.iter().chain(std::iter::once(&(
            run.total,
            CircuitState::Closed,
            String::new(),
        ))) {
            let (x0, x1) = (x(from), x(*at));
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{LANE}" fill="{}"/>"#,
                (x1 - x0).max(0.5),
                state_colour(state)
            );
            from = *at;
            state = *to;
        }
        for (at, outcome) in &lane.calls {
            let cx = x(*at);
            let _ = writeln!(
                svg,
                r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="{}"/>"#,
                y + 4.0,
                y + LANE - 4.0,
                colour(*outcome)
            );
        }
    }
    let bottom = lanes_top + run.lanes.len() as f64 * (LANE + GAP);
    for (at, label) in [
        (run.outage, "PG answers 500"),
        (run.recovery, "PG recovers"),
    ] {
        let at = x(at);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="#000" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">{label}</text>"##,
            lanes_top - 4.0,
            at + 3.0,
            lanes_top - 6.0
        );
    }
}
