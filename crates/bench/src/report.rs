//! What the run prints: one Markdown table per scenario, and the targets.

/// One of the targets, as measured in this run.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) what: String,
    pub(crate) measured: String,
    pub(crate) met: bool,
}

impl Target {
    pub(crate) fn new(what: impl Into<String>, measured: String, met: bool) -> Self {
        Self {
            what: what.into(),
            measured,
            met,
        }
    }
}

/// Prints the targets table.
pub(crate) fn targets(targets: &[Target]) {
    println!("## Targets\n");
    println!(
        "Ratios of added nanoseconds (what a row costs over the bare service), all measured in \
         this run.\n"
    );
    println!("| target | measured | met |");
    println!("|---|---|---|");
    for target in targets {
        println!(
            "| {} | {} | {} |",
            target.what,
            target.measured,
            if target.met { "yes" } else { "**no**" }
        );
    }
    println!();
}

/// breakwater's figure (its row labelled `breakwater`), and the lowest of the peers' (the rows
/// not labelled `breakwater…` or `bare…`).
fn ours_and_best_peer(labels: &[&'static str], added: &[f64]) -> (f64, f64, &'static str) {
    let ours = labels.iter().position(|l| *l == "breakwater").unwrap_or(0);
    let (best, best_label) = labels
        .iter()
        .zip(added)
        .filter(|(label, _)| !label.starts_with("breakwater") && !label.starts_with("bare"))
        .fold((f64::INFINITY, "no peer"), |(best, at), (label, added)| {
            if *added < best {
                (*added, *label)
            } else {
                (best, at)
            }
        });
    (added[ours], best, best_label)
}

/// breakwater at most `fraction` of the best peer.
pub(crate) fn within(what: &str, labels: &[&'static str], added: &[f64], fraction: f64) -> Target {
    against_best_peer(what, labels, added, |ours, best| ours <= fraction * best)
}

/// breakwater below every peer.
pub(crate) fn below_every(what: &str, labels: &[&'static str], added: &[f64]) -> Target {
    against_best_peer(what, labels, added, |ours, best| ours < best)
}

/// breakwater's figure against the best peer's, met when `met` says so.
fn against_best_peer(
    what: &str,
    labels: &[&'static str],
    added: &[f64],
    met: impl FnOnce(f64, f64) -> bool,
) -> Target {
    let (ours, best, peer) = ours_and_best_peer(labels, added);
    Target::new(
        what,
        format!(
            "{ours:.1} ns against {best:.1} ns ({peer}): {:.2}×",
            ours / best
        ),
        met(ours, best),
    )
}

/// Prints one scenario's table; returns what each row adds over the bare service (the first
/// row, when `over_bare`), or each row's own cost.
pub(crate) fn table(
    title: &str,
    note: &str,
    labels: &[&str],
    ns: &[f64],
    over_bare: bool,
) -> Vec<f64> {
    let bare = if over_bare { ns[0] } else { 0.0 };
    let added: Vec<f64> = ns.iter().map(|n| (n - bare).max(0.0)).collect();
    let ours = labels
        .iter()
        .position(|l| l.starts_with("breakwater"))
        .map_or(f64::NAN, |i| added[i]);
    println!("## {title}\n");
    println!("{note}.\n");
    println!("| subject | ns per call | added | × breakwater |");
    println!("|---|---:|---:|---:|");
    for (i, (label, n)) in labels.iter().zip(ns).enumerate() {
        if over_bare && i == 0 {
            println!("| {label} | {n:.1} | | |");
        } else {
            println!(
                "| {label} | {n:.1} | {:.1} | {:.2} |",
                added[i],
                added[i] / ours
            );
        }
    }
    println!();
    added
}
