//! Crashes, injected: a flow's work for one payment (or one subscription period) dropped at a
//! step boundary, as a process that crashed there would leave it. Nothing after that step
//! runs and nothing the flow held in memory survives; what was committed stays, and the
//! reconciler must finish the rest.
//!
//! Which subjects crash, and where, is drawn from a seed and the subject's id (not from a
//! counter): the same seed crashes the same payments at the same steps, whatever the order
//! they run in.
//!
//! ```
//! use payment_gateway::crash::{Crashes, Step};
//!
//! let crashes = Crashes::new(0.05, 7).unwrap();
//! let steps = [Step::AfterPrepare, Step::AfterPgCall];
//! let crashed = (0..10_000)
//!     .filter(|n| crashes.at(&format!("order-{n}"), &steps).is_some())
//!     .count();
//! assert!((400..600).contains(&crashed));
//! assert_eq!(
//!     Crashes::new(1.5, 7).unwrap_err(),
//!     "--crash-rate 1.5 is not allowed: it must be a fraction from 0 to 1 (0.05 is 5%)"
//! );
//! ```

use std::fmt;

use crate::mock_pg::{mix, unit};

/// A step boundary a flow can stop at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// The payment (or attempt) is written `in_progress` (`charging`); the PG not yet called.
    AfterPrepare,
    /// The PG answered; nothing recorded yet.
    AfterPgCall,
    /// The completion was written, or failed to be.
    AfterComplete,
    /// The refund's intent was written; the cancel not yet sent.
    AfterIntent,
    /// The PG cancelled; the cancel not yet recorded.
    AfterCancel,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::AfterPrepare => "after prepare",
            Step::AfterPgCall => "after the PG call",
            Step::AfterComplete => "after complete",
            Step::AfterIntent => "after the refund's intent",
            Step::AfterCancel => "after the cancel",
        })
    }
}

/// Which subjects crash, and where: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Crashes {
    rate: f64,
    seed: u64,
    skip: usize,
}

impl Crashes {
    /// No crash.
    pub fn none() -> Self {
        Self::default()
    }

    /// A share `rate` of the subjects crash, at a step drawn from `seed`.
    ///
    /// # Errors
    ///
    /// A message naming the rate if it is not a fraction from 0 to 1.
    pub fn new(rate: f64, seed: u64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!(
                "--crash-rate {rate} is not allowed: it must be a fraction from 0 to 1 (0.05 is \
                 5%)"
            ));
        }
        Ok(Self {
            rate,
            seed,
            skip: 0,
        })
    }

    /// Draws from each id without its first `len` bytes: a run whose ids share a unique
    /// prefix (a timestamp, say) crashes the same subjects when replayed.
    #[must_use]
    pub fn skipping(mut self, len: usize) -> Self {
        self.skip = len;
        self
    }

    /// Where `subject` crashes, one of `steps`, if it does.
    pub fn at(&self, subject: &str, steps: &[Step]) -> Option<Step> {
        if self.rate <= 0.0 || steps.is_empty() {
            return None;
        }
        // FNV-1a of the id, mixed with the seed.
        let id = subject
            .bytes()
            .skip(self.skip)
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let hash = mix(self.seed ^ 0xC2A5_11ED, id);
        (unit(hash) < self.rate).then(|| steps[(mix(hash, 1) % steps.len() as u64) as usize])
    }
}
