//! When the outbox tries again. Every interval the delivery machine uses is
//! here, with the reason it has that value; the exponential backoff itself
//! is [`delivery::next_attempt`] (from [`delivery::RETRY_BASE`], doubling
//! per attempt up to [`delivery::RETRY_MAX`], +-25% jitter), shared with
//! anything else that retries a delivery.

use crate::delivery;
use std::time::Duration;

/// Unanswered dials to a package's own recipient after which the package
/// goes to the regional relay instead: three dials span several seconds of
/// backoff, long enough for a restart or a brief outage, short enough that a
/// clinician's request does not sit on a laptop that closed its lid.
pub const UNREACHABLE_AFTER: u32 = 3;

/// How soon to ask again when the next hop answered `Fetching`: it is
/// pulling the attachments from us right now, so the answer changes within
/// seconds, and asking is cheap (the next hop answers from its own state).
pub const PROGRESS_RECHECK: Duration = Duration::from_secs(2);

/// How long a sender leaves a package with a relay that took custody before
/// checking back. The relay holds it durably and the receipt normally comes
/// back by itself; checking back rarely still catches a receipt lost on the
/// way and a refusal further on (the relay then answers with it).
pub const CUSTODY_RECHECK: Duration = delivery::RETRY_MAX;

/// Receipts a relay keeps in memory for senders it cannot reach right now.
/// Each one is small, but a sender that never comes back must not grow the
/// relay's memory without bound; a sender whose receipt was dropped learns
/// of the delivery when it checks back ([`CUSTODY_RECHECK`]).
pub const MAX_HELD_RECEIPTS: usize = 4096;

/// A seeded source of jitter (SplitMix64). The machine never reads a clock
/// or the system's randomness: the node seeds it from its own, a test or a
/// simulation from a fixed number, so runs repeat exactly.
#[derive(Debug, Clone)]
pub(super) struct Jitter(u64);

impl Jitter {
    pub(super) fn new(seed: u64) -> Self {
        Jitter(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::NOW;
    use crate::time::Timestamp;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let (mut a, mut b, mut c) = (Jitter::new(7), Jitter::new(7), Jitter::new(8));
        let run = |j: &mut Jitter| -> Vec<Timestamp> {
            (1..8)
                .map(|n| delivery::next_attempt(NOW, n, j.next()))
                .collect()
        };
        let (ra, rb, rc) = (run(&mut a), run(&mut b), run(&mut c));
        assert_eq!(ra, rb);
        assert_ne!(ra, rc);
    }
}
