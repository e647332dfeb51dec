//! Seeded randomness from blake3.
//!
//! Built on `testkit::seed` rather than an RNG crate so the stream depends
//! only on the seed and the stream's name: no crate upgrade can silently
//! change a recorded run, and scenarios that draw from differently named
//! streams cannot disturb each other's choices.

use konsilium_protocol::testkit::seed;
use std::ops::Range;
use std::time::Duration;

/// A deterministic stream of random numbers: blake3(label, counter).
#[derive(Debug, Clone)]
pub struct SimRng {
    label: String,
    counter: u64,
}

impl SimRng {
    pub fn new(seed: u64, stream: &str) -> Self {
        Self {
            label: format!("konsilium-simulations/{stream}/{seed}"),
            counter: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let bytes = seed(&self.label, self.counter);
        self.counter += 1;
        u64::from_le_bytes(bytes[..8].try_into().expect("8 of 32 bytes"))
    }

    /// Uniform in `0..n`, without the modulo bias that would favour low
    /// node indices.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "below(0) has no value to return");
        let n = n as u64;
        // 2^64 mod n: rejecting that many lowest values leaves a multiple of n.
        let reject = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= reject {
                return (x % n) as usize;
            }
        }
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi.saturating_sub(lo)).mul_f64(self.unit())
    }

    /// Exponentially distributed with this mean: the gaps between arrivals
    /// that come independently of each other (a Poisson process).
    pub fn exponential(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(-(1.0 - self.unit()).ln())
    }

    /// An index drawn in proportion to `weights` (none may be negative and
    /// one at least must be positive).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// A uniformly chosen member of `group` other than `me`.
    pub fn peer(&mut self, me: usize, group: Range<usize>) -> usize {
        assert!(
            group.contains(&me) && group.len() >= 2,
            "node {me} has no peer in {group:?}"
        );
        let k = group.start + self.below(group.len() - 1);
        if k >= me { k + 1 } else { k }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let draw = |seed, stream| {
            let mut r = SimRng::new(seed, stream);
            (0..32).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, "a"), draw(7, "a"));
        assert_ne!(draw(7, "a"), draw(8, "a"));
        assert_ne!(draw(7, "a"), draw(7, "b"));
    }

    #[test]
    fn peers_are_uniform_in_the_group_and_never_self() {
        let mut r = SimRng::new(1, "peers");
        let mut counts = [0usize; 10];
        for _ in 0..9_000 {
            let p = r.peer(5, 2..10);
            assert!((2..10).contains(&p) && p != 5, "{p}");
            counts[p] += 1;
        }
        // 7 candidates, 9,000 draws: each expects ~1,286 (sd ~33).
        for (i, &c) in counts.iter().enumerate() {
            match i {
                0 | 1 | 5 => assert_eq!(c, 0, "node {i}"),
                _ => assert!((1_100..1_470).contains(&c), "node {i} drawn {c} times"),
            }
        }
    }
}
