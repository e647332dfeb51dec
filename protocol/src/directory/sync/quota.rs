//! What each peer's directory requests may cost this node.
//!
//! Answering a digest or an offer over one region hashes that region's
//! records (a pass over the directory, charged as a lookup's), answering
//! an offer or a want builds frames of up to a MiB from the directory, and
//! a pushed record that changes nothing costs a decode (one already held
//! or older) or signature checks (one whose certificate expired costs up
//! to three, unbatched, and is no offence: an honest peer may push it just
//! as it expires) for nothing. An admitted peer asking on every one of its
//! streams could keep a core busy. Honest exchanges move at most the directory once
//! (a newcomer pulling all of it), so each peer may cost twice the
//! directory's bytes at once, and that much again as time passes, one
//! directory's worth every [`REFILL_MS`]. Past it, its requests are refused
//! as transient and its rounds end, to be tried at the next one.

use crate::rpc::{Refusal, Response};
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// How long a peer's spending takes to drain by one directory's worth.
const REFILL_MS: u64 = 10 * 60 * 1000;

/// Room for a small directory's exchanges (summaries of every bucket, a
/// few records): a directory of a few records is no reason to refuse.
const FLOOR: u64 = 4 << 20;

/// Peers with nothing spent are forgotten past this many entries.
const PRUNE_ABOVE: usize = 1024;

/// The answer to a peer past its share, naming when it may ask again.
pub(super) fn refusal(wait_seconds: u64) -> Response {
    Response::Refused(Refusal::Transient(format!(
        "your directory requests have had their share of this node for now: \
         ask again in {wait_seconds} s"
    )))
}

#[derive(Debug, Clone, Copy)]
struct Spent {
    bytes: u64,
    at: Timestamp,
}

#[derive(Debug)]
pub(super) struct Quotas<P> {
    spent: BTreeMap<P, Spent>,
}

impl<P> Default for Quotas<P> {
    fn default() -> Self {
        Self {
            spent: BTreeMap::new(),
        }
    }
}

/// What a directory of `directory` bytes lets a peer spend at once.
fn allowance(directory: usize) -> u64 {
    2 * directory as u64 + FLOOR
}

/// What a peer's spending drains by in `elapsed` milliseconds.
fn drained(directory: usize, elapsed: u64) -> u64 {
    let per_refill = u128::from(directory as u64 + FLOOR);
    u64::try_from(per_refill * u128::from(elapsed) / u128::from(REFILL_MS)).unwrap_or(u64::MAX)
}

impl Spent {
    /// What is left of it at `now`.
    fn at(&self, now: Timestamp, directory: usize) -> u64 {
        let elapsed = now.unix_millis().saturating_sub(self.at.unix_millis());
        self.bytes.saturating_sub(drained(directory, elapsed))
    }
}

impl<P: Copy + Ord> Quotas<P> {
    /// What `peer` has spent as of `now`.
    fn spent(&self, now: Timestamp, peer: &P, directory: usize) -> u64 {
        self.spent.get(peer).map_or(0, |s| s.at(now, directory))
    }

    /// Whether `peer` may be served now, and if not, the seconds until it
    /// may. A request is let in while anything is left: what it costs is
    /// known once it is answered, and is charged then, so a peer overruns
    /// its allowance by at most one request.
    pub(super) fn check(&self, now: Timestamp, peer: &P, directory: usize) -> Result<(), u64> {
        let (spent, allowance) = (self.spent(now, peer, directory), allowance(directory));
        if spent < allowance {
            return Ok(());
        }
        let over = spent - allowance + 1;
        let per_refill = directory as u64 + FLOOR;
        Err((over.saturating_mul(REFILL_MS) / per_refill / 1000).max(1))
    }

    pub(super) fn charge(&mut self, now: Timestamp, peer: P, bytes: u64, directory: usize) {
        if bytes == 0 {
            return;
        }
        let bytes = self.spent(now, &peer, directory).saturating_add(bytes);
        self.spent.insert(peer, Spent { bytes, at: now });
        if self.spent.len() > PRUNE_ABOVE {
            self.spent.retain(|_, s| s.at(now, directory) > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn a_peer_spends_twice_the_directory_then_one_directory_a_refill() {
        let directory = 10 << 20;
        let mut q = Quotas::<u8>::default();
        assert_eq!(q.check(at(0), &1, directory), Ok(()));
        q.charge(at(0), 1, allowance(directory) - 1, directory);
        assert_eq!(q.check(at(0), &1, directory), Ok(()), "one byte is left");
        q.charge(at(0), 1, 1 << 20, directory);
        let wait = q.check(at(0), &1, directory).unwrap_err();
        // A MiB over, draining 14 MiB in ten minutes: about 43 s.
        assert!((40..=50).contains(&wait), "{wait} s");
        assert_eq!(
            q.check(at(0), &2, directory),
            Ok(()),
            "other peers are not charged"
        );
        assert!(q.check(at(wait * 1000 - 2000), &1, directory).is_err());
        assert_eq!(q.check(at(wait * 1000 + 1000), &1, directory), Ok(()));
        // Drained entirely after a full refill.
        assert_eq!(q.spent(at(3 * REFILL_MS), &1, directory), 0);
    }

    #[test]
    fn drained_peers_are_forgotten_past_the_bound() {
        let mut q = Quotas::<u16>::default();
        for peer in 0..=PRUNE_ABOVE as u16 {
            q.charge(at(0), peer, 1, 0);
        }
        q.charge(at(REFILL_MS), 5000, 1, 0);
        assert_eq!(q.spent.len(), 1);
    }
}
