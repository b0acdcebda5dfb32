//! What this instance makes of the others' reports: who is live, who reports the breaker
//! open on their own evidence, and for how long the fleet would open it here.

use std::collections::HashMap;
use std::time::Duration;

use breakwater::CircuitState;

use crate::snapshot::{Origin, Snapshot};

/// Another instance's last report of a breaker, as this instance read it:
/// [`Fleet::view`](crate::Fleet::view).
///
/// # Example
///
/// ```no_run
/// # fn show(fleet: &breakwater_fleet::Fleet) {
/// let open_here_too = fleet
///     .view("pg-payment")
///     .unwrap_or_default()
///     .iter()
///     .filter(|peer| peer.own_evidence)
///     .count();
/// # let _ = open_here_too;
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The instance's id.
    pub instance: String,
    /// The breaker's state there.
    pub state: CircuitState,
    /// Whether an open state there rests on that instance's own calls (only those count
    /// toward the quorum); `false` when the fleet opened it.
    pub own_evidence: bool,
    /// How long it stays open there, from when this instance read the report.
    pub open_for: Option<Duration>,
    /// The calls in its window, and how many of them failed.
    pub calls: u64,
    /// See `calls`.
    pub failed: u64,
}

/// One report read from Redis: the instance, its snapshot, and how old the snapshot is
/// (its TTL minus the time it has left to live: Redis's clock, not ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) instance: String,
    pub(crate) snapshot: Snapshot,
    pub(crate) age: Duration,
}

impl Report {
    /// How long the reporter stays open from now: what it published, less the snapshot's age.
    pub(crate) fn open_left(&self) -> Duration {
        Duration::from_millis(self.snapshot.open_ms).saturating_sub(self.age)
    }

    pub(crate) fn peer(&self) -> Peer {
        let s = &self.snapshot;
        Peer {
            instance: self.instance.clone(),
            state: s.state,
            own_evidence: s.state == CircuitState::Open && s.origin == Origin::Local,
            open_for: (s.state == CircuitState::Open).then(|| self.open_left()),
            calls: s.calls,
            failed: s.failed,
        }
    }
}

/// The run and generation last read from each instance: a report older than one already
/// read (the same run, a lower generation) is stale.
#[derive(Debug, Default)]
pub(crate) struct Seen(HashMap<String, (u64, u64)>);

impl Seen {
    /// Whether `report` is no older than what was read from its instance; remembers it if so.
    pub(crate) fn fresh(&mut self, report: &Report) -> bool {
        let now = (report.snapshot.incarnation, report.snapshot.generation);
        match self.0.get_mut(&report.instance) {
            Some(last) if last.0 == now.0 && now.1 < last.1 => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                self.0.insert(report.instance.clone(), now);
                true
            }
        }
    }

    /// Forgets instances no longer live.
    pub(crate) fn retain(&mut self, live: &[Report]) {
        self.0
            .retain(|instance, _| live.iter().any(|r| &r.instance == instance));
    }
}

/// Whether the fleet opens a closed breaker here, and for how long: when at least `quorum`
/// live instances report it open on their own evidence, for the longest time they have left
/// (at least `floor`, so a breaker whose reporters wait for a probe joins that wait; at most
/// `cap`). The count is the second value.
pub(crate) fn quorum_open(
    reports: &[Report],
    quorum: u32,
    floor: Duration,
    cap: Duration,
) -> Option<(Duration, u32)> {
    let open: Vec<&Report> = reports
        .iter()
        .filter(|r| r.snapshot.reports_open())
        .collect();
    let count = u32::try_from(open.len()).unwrap_or(u32::MAX);
    if count < quorum {
        return None;
    }
    let longest = open.iter().map(|r| r.open_left()).max().unwrap_or_default();
    Some((longest.max(floor).min(cap), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        instance: &str,
        state: CircuitState,
        origin: Origin,
        open_ms: u64,
        age_ms: u64,
    ) -> Report {
        Report {
            instance: instance.to_owned(),
            snapshot: Snapshot {
                incarnation: 1,
                generation: 1,
                ttl_ms: 3000,
                state,
                origin,
                open_ms,
                calls: 10,
                failed: 6,
                slow: 0,
            },
            age: Duration::from_millis(age_ms),
        }
    }

    const FLOOR: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(600);

    #[test]
    fn a_quorum_of_own_openings_opens_for_the_longest_time_left() {
        let reports = [
            report("a", CircuitState::Open, Origin::Local, 5_000, 300),
            report("b", CircuitState::Open, Origin::Local, 9_000, 1_000),
            report("c", CircuitState::Closed, Origin::Local, 0, 0),
        ];
        assert_eq!(
            quorum_open(&reports, 2, FLOOR, CAP),
            Some((Duration::from_millis(8_000), 2))
        );
        assert_eq!(quorum_open(&reports, 3, FLOOR, CAP), None);
    }

    #[test]
    fn openings_made_by_the_fleet_probers_and_waits_over_do_not_count() {
        let reports = [
            report("a", CircuitState::Open, Origin::Local, 5_000, 0),
            report("b", CircuitState::Open, Origin::Fleet, 9_000, 0),
            report("c", CircuitState::HalfOpen, Origin::Local, 0, 0),
            report("d", CircuitState::ForcedOpen, Origin::Local, 0, 0),
            report("e", CircuitState::Open, Origin::Local, 0, 0),
        ];
        assert_eq!(quorum_open(&reports, 2, FLOOR, CAP), None);
        assert_eq!(
            quorum_open(&reports, 1, FLOOR, CAP),
            Some((Duration::from_millis(5_000), 1))
        );
    }

    #[test]
    fn the_wait_is_at_least_the_floor_and_at_most_the_cap() {
        let nearly_over = [
            report("a", CircuitState::Open, Origin::Local, 20, 0),
            report("b", CircuitState::Open, Origin::Local, 50, 80),
        ];
        assert_eq!(quorum_open(&nearly_over, 2, FLOOR, CAP), Some((FLOOR, 2)));
        let long = [report(
            "a",
            CircuitState::Open,
            Origin::Local,
            86_400_000,
            0,
        )];
        assert_eq!(quorum_open(&long, 1, FLOOR, CAP), Some((CAP, 1)));
    }

    #[test]
    fn a_late_report_of_an_earlier_generation_is_stale_but_a_new_run_is_not() {
        let mut seen = Seen::default();
        let mut r = report("a", CircuitState::Open, Origin::Local, 1, 0);
        r.snapshot.generation = 5;
        assert!(seen.fresh(&r));
        r.snapshot.generation = 4;
        assert!(!seen.fresh(&r));
        r.snapshot.generation = 5;
        assert!(seen.fresh(&r));
        // The instance restarted: its generations start again.
        r.snapshot.incarnation = 2;
        r.snapshot.generation = 0;
        assert!(seen.fresh(&r));
        seen.retain(&[]);
        assert!(seen.0.is_empty());
    }
}
