//! The random draws: a pure function of the seed, the call number and a stream, so that a run
//! replays exactly on any machine, in any process, for any clone of the layer.

/// Which decision a draw is for: each has its own stream, so changing one rate does not move
/// the draws of another.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// Fail, lose the response, or let through.
    Fault = 1,
    /// Add latency or not.
    Latency = 2,
    /// How much latency, within the configured range.
    Amount = 3,
}

/// Draws are 53-bit: a rate `r` fires when `draw < r × 2⁵³`, which is exact for 0 and 1.
pub(crate) const SCALE: u64 = 1 << 53;

/// The draw of call `call` (0-based) in `stream`: `splitmix64`'s finaliser over the seed, the
/// stream and the call number, in `[0, 2⁵³)`. Part of the replay contract: a given seed gives
/// the same faults in every version of this crate.
pub(crate) fn draw(seed: u64, call: u64, stream: Stream) -> u64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
        ^ call.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 11
}

/// A rate in `[0, 1]` as a threshold on the draws.
pub(crate) fn threshold(rate: f64) -> u64 {
    // Exact: `rate` is checked to be in [0, 1], and 2⁵³ × rate fits f64's mantissa.
    (rate * SCALE as f64).round() as u64
}

/// A threshold back as a rate.
#[cfg(test)]
fn rate(threshold: u64) -> f64 {
    threshold as f64 / SCALE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_fixed_for_a_seed() {
        // The replay contract: these values must never change (computed again, independently, in
        // Python from the formula in the docs).
        let first: Vec<u64> = (0..3).map(|n| draw(7, n, Stream::Fault)).collect();
        assert_eq!(
            first,
            [
                4_036_850_422_959_356,
                3_428_650_760_570_298,
                8_778_291_132_973_983
            ]
        );
        assert_ne!(draw(7, 0, Stream::Fault), draw(7, 0, Stream::Latency));
        assert_ne!(draw(7, 0, Stream::Fault), draw(8, 0, Stream::Fault));
    }

    #[test]
    fn draws_are_uniform_enough() {
        let n = 100_000u64;
        let mean = (0..n).map(|c| rate(draw(1, c, Stream::Fault))).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((0..n).all(|c| draw(1, c, Stream::Amount) < SCALE));
    }

    #[test]
    fn thresholds_are_exact_at_the_ends() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), SCALE);
        assert!((rate(threshold(0.3)) - 0.3).abs() < 1e-15);
    }
}
