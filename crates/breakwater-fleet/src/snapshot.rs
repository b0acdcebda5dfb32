//! What an instance publishes about one breaker, as one line of text in Redis, and the strict
//! reading of what others published: anything else (another shape, a number out of range, a
//! value too long) is refused with the reason, never trusted.
//!
//! ```text
//! bw1 inc=9f3a51c2e07d4b18 gen=12 ttl_ms=3000 state=open origin=local open_ms=4200 calls=20 failed=11 slow=0
//! ```
//!
//! `inc` tells one run of an instance from the next (a restart under the same id starts its
//! generations again); `gen` counts the instance's transitions of this breaker, so a reader
//! that saw generation 12 of a run ignores a late write of generation 11. `ttl_ms` is the TTL
//! the snapshot was written with, so a reader knows its age from the time Redis says it has
//! left, whatever TTL the reader itself uses. `open_ms` is how
//! long the breaker stays open from the moment of publishing (0 unless open): no instant
//! crosses machines, whose clocks may differ. `origin` says whether an open state is the
//! instance's own (`local`: its window, its probes) or the fleet's (`fleet`: opened on the
//! others' word); only `local` ones count toward a quorum, so no opening feeds on itself.

use std::fmt;

use breakwater::CircuitState;

/// The longest value read; anything longer is refused unread.
pub(crate) const MAX_LEN: usize = 256;

/// Whose evidence an open state rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The instance's own calls opened it.
    Local,
    /// The fleet opened it (a quorum of others).
    Fleet,
}

/// One instance's report of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) incarnation: u64,
    pub(crate) generation: u64,
    pub(crate) ttl_ms: u64,
    pub(crate) state: CircuitState,
    pub(crate) origin: Origin,
    pub(crate) open_ms: u64,
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

impl Snapshot {
    /// Whether this report counts toward a quorum: open on the instance's own evidence, with
    /// time left. (An instance whose wait is over waits for the fleet's probe: its evidence
    /// is as old as its wait, and counting it would reopen a prober whose probes succeeded.)
    pub(crate) fn reports_open(&self) -> bool {
        self.state == CircuitState::Open && self.origin == Origin::Local && self.open_ms > 0
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bw1 inc={:016x} gen={} ttl_ms={} state={} origin={} open_ms={} calls={} failed={} slow={}",
            self.incarnation,
            self.generation,
            self.ttl_ms,
            self.state.as_str(),
            match self.origin {
                Origin::Local => "local",
                Origin::Fleet => "fleet",
            },
            self.open_ms,
            self.calls,
            self.failed,
            self.slow,
        )
    }
}

/// The longest time read, a day: longer than any wait a breaker is configured with (the fleet
/// caps what it applies further, see `FleetBuilder::max_open`) or any TTL it allows.
pub(crate) const MAX_MS: u64 = 86_400_000;

/// The largest count read (a window holds far fewer).
const MAX_COUNT: u64 = 1 << 40;

impl std::str::FromStr for Snapshot {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_LEN {
            return Err(format!(
                "{} bytes, more than the {MAX_LEN} a snapshot has",
                text.len()
            ));
        }
        let mut fields = text.split(' ');
        if fields.next() != Some("bw1") {
            return Err("does not start with `bw1`".to_owned());
        }
        let mut field = |name: &str| -> Result<&str, String> {
            let field = fields
                .next()
                .ok_or_else(|| format!("`{name}=` is missing"))?;
            field
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .ok_or_else(|| format!("expected `{name}=`, found `{field}`"))
        };
        let count = |name: &str, value: &str, max: u64| -> Result<u64, String> {
            match value.parse::<u64>() {
                Ok(n) if n <= max && !value.starts_with('+') => Ok(n),
                _ => Err(format!(
                    "`{name}={value}`: not a whole number from 0 to {max}"
                )),
            }
        };
        let inc = field("inc")?;
        let incarnation = (inc.len() == 16)
            .then(|| u64::from_str_radix(inc, 16).ok())
            .flatten()
            .ok_or_else(|| format!("`inc={inc}`: not 16 hexadecimal digits"))?;
        let generation = count("gen", field("gen")?, u64::MAX >> 1)?;
        let ttl_ms = count("ttl_ms", field("ttl_ms")?, MAX_MS)?;
        let state = match field("state")? {
            "closed" => CircuitState::Closed,
            "open" => CircuitState::Open,
            "half_open" => CircuitState::HalfOpen,
            "disabled" => CircuitState::Disabled,
            "forced_open" => CircuitState::ForcedOpen,
            "metrics_only" => CircuitState::MetricsOnly,
            other => return Err(format!("`state={other}`: not a breaker state")),
        };
        let origin = match field("origin")? {
            "local" => Origin::Local,
            "fleet" => Origin::Fleet,
            other => return Err(format!("`origin={other}`: neither `local` nor `fleet`")),
        };
        let open_ms = count("open_ms", field("open_ms")?, MAX_MS)?;
        let calls = count("calls", field("calls")?, MAX_COUNT)?;
        let failed = count("failed", field("failed")?, calls)?;
        let slow = count("slow", field("slow")?, calls)?;
        if let Some(extra) = fields.next() {
            return Err(format!("unexpected `{extra}` after the last field"));
        }
        if open_ms > 0 && state != CircuitState::Open {
            return Err(format!(
                "`open_ms={open_ms}` for a breaker that is not open"
            ));
        }
        Ok(Self {
            incarnation,
            generation,
            ttl_ms,
            state,
            origin,
            open_ms,
            calls,
            failed,
            slow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Snapshot {
        Snapshot {
            incarnation: 0x9f3a_51c2_e07d_4b18,
            generation: 12,
            ttl_ms: 3000,
            state: CircuitState::Open,
            origin: Origin::Local,
            open_ms: 4200,
            calls: 20,
            failed: 11,
            slow: 0,
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let text = open().to_string();
        assert_eq!(
            text,
            "bw1 inc=9f3a51c2e07d4b18 gen=12 ttl_ms=3000 state=open origin=local open_ms=4200 calls=20 failed=11 slow=0"
        );
        assert_eq!(text.parse::<Snapshot>(), Ok(open()));
        for state in [
            CircuitState::Closed,
            CircuitState::HalfOpen,
            CircuitState::Disabled,
            CircuitState::ForcedOpen,
            CircuitState::MetricsOnly,
        ] {
            let s = Snapshot {
                state,
                open_ms: 0,
                origin: Origin::Fleet,
                ..open()
            };
            assert_eq!(s.to_string().parse::<Snapshot>(), Ok(s));
        }
    }

    #[test]
    fn only_an_open_state_of_its_own_counts_toward_a_quorum() {
        assert!(open().reports_open());
        let fleet = Snapshot {
            origin: Origin::Fleet,
            ..open()
        };
        assert!(!fleet.reports_open());
        let half = Snapshot {
            state: CircuitState::HalfOpen,
            open_ms: 0,
            ..open()
        };
        assert!(!half.reports_open());
        let waiting_for_a_probe = Snapshot {
            open_ms: 0,
            ..open()
        };
        assert!(!waiting_for_a_probe.reports_open());
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        let cases = [
            ("", "does not start with `bw1`"),
            ("hello", "does not start with `bw1`"),
            ("bw1", "`inc=` is missing"),
            ("bw1 inc=xyz", "`inc=xyz`: not 16 hexadecimal digits"),
            ("bw1 gen=1", "expected `inc=`, found `gen=1`"),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=-1",
                "`gen=-1`: not a whole number from 0 to 9223372036854775807",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=86400001",
                "`ttl_ms=86400001`: not a whole number from 0 to 86400000",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=ajar",
                "`state=ajar`: not a breaker state",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=open origin=mars",
                "`origin=mars`: neither `local` nor `fleet`",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=open origin=local open_ms=18446744073709551615 calls=0 failed=0 slow=0",
                "`open_ms=18446744073709551615`: not a whole number from 0 to 86400000",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=open origin=local open_ms=5 calls=2 failed=3 slow=0",
                "`failed=3`: not a whole number from 0 to 2",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=closed origin=local open_ms=5 calls=2 failed=0 slow=0",
                "`open_ms=5` for a breaker that is not open",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=1 ttl_ms=1 state=open origin=local open_ms=5 calls=2 failed=0 slow=0 x=1",
                "unexpected `x=1` after the last field",
            ),
            (
                "bw1 inc=9f3a51c2e07d4b18 gen=+1 ttl_ms=1 state=open origin=local open_ms=5 calls=2 failed=0 slow=0",
                "`gen=+1`: not a whole number from 0 to 9223372036854775807",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(text.parse::<Snapshot>(), Err(reason.to_owned()), "{text}");
        }
        let long = format!("bw1 {}", "x".repeat(300));
        assert_eq!(
            long.parse::<Snapshot>(),
            Err("304 bytes, more than the 256 a snapshot has".to_owned())
        );
    }
}
