//! Simulated nodes and the exchanges between them.

use crate::SimError;
use crate::rng::SimRng;
use konsilium_protocol::cert::Trust;
use konsilium_protocol::directory::{Directory, DirectoryEntry, Merge, SignedRecord};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire::{
    self, RecordBatch, RecordRequest, SyncSummaries, WireError, WireMessage,
};
use std::collections::{BTreeSet, HashSet};
use std::ops::{AddAssign, Range};

/// Counted per frame, so a simulated cost reads directly as what a node
/// would hand its transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    /// Whole frames, header included.
    pub bytes: u64,
    /// Signed records carried in `RecordBatch` frames.
    pub records: u64,
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.records += other.records;
    }
}

/// Both run on the same peer schedule, so their costs compare as a ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The protocol's exchange: bucket hashes, then summaries of differing
    /// buckets, then only the records that differ, both ways.
    AntiEntropy,
    /// The naive baseline: the initiator pushes its whole directory.
    FullPush,
}

/// Read from the directories themselves, never from the simulation's own
/// bookkeeping, so a broken exchange cannot report itself converged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkState {
    /// 1 when every node holds the same directory.
    pub distinct_digests: usize,
    pub min_records: usize,
    pub max_records: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    pub rounds: usize,
    pub traffic: Traffic,
    pub bytes_per_node: u64,
    pub end: NetworkState,
}

/// The peer gets only what survives `encode` and `decode`: byte counts are
/// real, and a value the codec would refuse stops the run instead of
/// passing silently.
fn transmit<M: WireMessage>(msg: &M, traffic: &mut Traffic) -> Result<M, SimError> {
    let frame = wire::encode(msg)?;
    traffic.messages += 1;
    traffic.bytes += frame.len() as u64;
    Ok(wire::decode(&frame)?)
}

/// Sends a list in as many frames as the message kind's size limit needs,
/// halving until each fits, as a node must for a large directory: one
/// `RecordRequest` holds ~32,000 organization ids, one `RecordBatch` a few
/// tens of thousands of records.
fn transmit_split<M: WireMessage, T>(
    items: Vec<T>,
    wrap: fn(Vec<T>) -> M,
    unwrap: fn(M) -> Vec<T>,
    traffic: &mut Traffic,
) -> Result<Vec<T>, SimError> {
    let msg = wrap(items);
    match transmit(&msg, traffic) {
        Err(SimError::Wire(WireError::TooLarge { .. })) => {
            let mut first = unwrap(msg);
            if first.len() < 2 {
                // A single item over the limit: nothing to split, report it.
                return transmit(&wrap(first), traffic).map(unwrap);
            }
            let second = first.split_off(first.len() / 2);
            let mut received = transmit_split(first, wrap, unwrap, traffic)?;
            received.extend(transmit_split(second, wrap, unwrap, traffic)?);
            Ok(received)
        }
        other => other.map(unwrap),
    }
}

fn transmit_records(
    records: Vec<SignedRecord>,
    traffic: &mut Traffic,
) -> Result<Vec<SignedRecord>, SimError> {
    let received = transmit_split(
        records,
        |records| RecordBatch { records },
        |batch| batch.records,
        traffic,
    )?;
    traffic.records += received.len() as u64;
    Ok(received)
}

fn transmit_request(orgs: Vec<OrgId>, traffic: &mut Traffic) -> Result<Vec<OrgId>, SimError> {
    transmit_split(
        orgs,
        |orgs| RecordRequest { orgs },
        |request| request.orgs,
        traffic,
    )
}

/// Bytes it takes to send these records as `RecordBatch` frames, the
/// yardstick every scenario compares against.
pub fn full_transfer_bytes(records: Vec<SignedRecord>) -> Result<u64, SimError> {
    let mut traffic = Traffic::default();
    transmit_records(records, &mut traffic)?;
    Ok(traffic.bytes)
}

/// All nodes share one `Trust` and one `now`: the scenarios study
/// propagation, not disagreement about the federation or the clock.
pub struct Network<'t> {
    nodes: Vec<Directory>,
    trust: &'t Trust,
    now: Timestamp,
    traffic: Traffic,
}

impl<'t> Network<'t> {
    pub fn new(nodes: usize, trust: &'t Trust, now: Timestamp) -> Self {
        Self {
            nodes: (0..nodes).map(|_| Directory::new()).collect(),
            trust,
            now,
            traffic: Traffic::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Directory {
        &self.nodes[i]
    }

    pub fn nodes(&self) -> &[Directory] {
        &self.nodes
    }

    /// An empty node, as a hospital's first start; returns its index.
    pub fn join(&mut self) -> usize {
        self.nodes.push(Directory::new());
        self.nodes.len() - 1
    }

    /// Since the network was made, including rounds run outside
    /// `run_until_converged`.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Records arriving at a node from outside the simulation (an
    /// organization publishing through it); costs no traffic. Returns how
    /// many changed the directory.
    pub fn publish(&mut self, node: usize, records: Vec<SignedRecord>) -> Result<usize, SimError> {
        self.merge(node, records)
    }

    fn merge(&mut self, node: usize, records: Vec<SignedRecord>) -> Result<usize, SimError> {
        let mut changed = 0;
        for result in self.nodes[node].insert_many(records, self.trust, self.now) {
            match result.map_err(|error| SimError::Refused { node, error })? {
                Merge::Added | Merge::Replaced { .. } => changed += 1,
                Merge::Unchanged | Merge::Superseded { .. } => {}
            }
        }
        Ok(changed)
    }

    /// Two nodes' directories at once, which indexing alone cannot lend.
    fn pair(&mut self, a: usize, b: usize) -> (&mut Directory, &mut Directory) {
        assert_ne!(a, b, "a node does not sync with itself");
        if a < b {
            let (lo, hi) = self.nodes.split_at_mut(b);
            (&mut lo[a], &mut hi[0])
        } else {
            let (lo, hi) = self.nodes.split_at_mut(a);
            (&mut hi[0], &mut lo[b])
        }
    }

    /// The protocol's exchange with `a` initiating. Who initiates matters:
    /// an empty initiator pays for summaries and a request per record that
    /// an empty responder does not.
    pub fn sync(&mut self, a: usize, b: usize) -> Result<Traffic, SimError> {
        let mut t = Traffic::default();
        let (dir_a, dir_b) = self.pair(a, b);

        let offer = transmit(&dir_a.sync_offer(), &mut t)?;
        let buckets = dir_b
            .differing_buckets(&offer)
            .map_err(|error| SimError::Offer { node: b, error })?;
        // Sent even when empty: it is how `a` learns there is nothing to do.
        let summaries = SyncSummaries {
            summaries: dir_b.summaries(&buckets),
            buckets,
        };
        let summaries = transmit(&summaries, &mut t)?;
        let plan = dir_a.reconcile(&summaries.buckets, &summaries.summaries);

        let mut pushed = Vec::new();
        if !plan.send.is_empty() {
            pushed = transmit_records(plan.send, &mut t)?;
        }
        let mut answered = Vec::new();
        if !plan.want.is_empty() {
            let wanted = transmit_request(plan.want, &mut t)?;
            let held: Vec<SignedRecord> = wanted
                .iter()
                .filter_map(|org| dir_b.get(org))
                .map(|e| e.signed().clone())
                .collect();
            answered = transmit_records(held, &mut t)?;
        }
        self.merge(b, pushed)?;
        self.merge(a, answered)?;
        self.traffic += t;
        Ok(t)
    }

    /// The baseline anti-entropy is measured against: `a` sends `b` its
    /// whole directory.
    pub fn push_full(&mut self, a: usize, b: usize) -> Result<Traffic, SimError> {
        let mut t = Traffic::default();
        let all: Vec<SignedRecord> = self.nodes[a]
            .entries()
            .map(|e| e.signed().clone())
            .collect();
        let received = transmit_records(all, &mut t)?;
        // A record byte-identical to one held would merge as `Unchanged`;
        // skipping it before verification saves the baseline's CPU, not its
        // bytes, and changes no outcome.
        let held: HashSet<[u8; 32]> = self.nodes[b].entries().map(DirectoryEntry::hash).collect();
        let fresh = received
            .into_iter()
            .filter(|r| !held.contains(&r.content_hash()))
            .collect();
        self.merge(b, fresh)?;
        self.traffic += t;
        Ok(t)
    }

    pub fn exchange(
        &mut self,
        strategy: Strategy,
        a: usize,
        b: usize,
    ) -> Result<Traffic, SimError> {
        match strategy {
            Strategy::AntiEntropy => self.sync(a, b),
            Strategy::FullPush => self.push_full(a, b),
        }
    }

    /// Every node of every group, in index order, exchanges with one random
    /// peer of its own group. Exchanges run one after another, each seeing
    /// the effects of earlier ones, as nodes with unsynchronised timers do.
    pub fn round(
        &mut self,
        strategy: Strategy,
        groups: &[Range<usize>],
        rng: &mut SimRng,
    ) -> Result<Traffic, SimError> {
        let mut t = Traffic::default();
        for group in groups {
            for node in group.clone() {
                let peer = rng.peer(node, group.clone());
                t += self.exchange(strategy, node, peer)?;
            }
        }
        Ok(t)
    }

    /// Rounds across the whole network until every node holds the same
    /// directory (0 rounds if it already does).
    pub fn run_until_converged(
        &mut self,
        strategy: Strategy,
        rng: &mut SimRng,
        max_rounds: usize,
    ) -> Result<RunReport, SimError> {
        let everyone = 0..self.nodes.len();
        let mut traffic = Traffic::default();
        for rounds in 0..=max_rounds {
            if self.converged() {
                return Ok(RunReport {
                    rounds,
                    traffic,
                    bytes_per_node: traffic.bytes / self.nodes.len() as u64,
                    end: self.state(),
                });
            }
            if rounds < max_rounds {
                traffic += self.round(strategy, std::slice::from_ref(&everyone), rng)?;
            }
        }
        Err(SimError::NotConverged {
            nodes: self.nodes.len(),
            rounds: max_rounds,
        })
    }

    pub fn converged(&self) -> bool {
        self.state().distinct_digests <= 1
    }

    pub fn state(&self) -> NetworkState {
        let digests: BTreeSet<[u8; 32]> = self.nodes.iter().map(Directory::digest).collect();
        let sizes = self.nodes.iter().map(Directory::len);
        NetworkState {
            distinct_digests: digests.len(),
            min_records: sizes.clone().min().unwrap_or(0),
            max_records: sizes.max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_protocol::cert::OrgLevel;
    use konsilium_protocol::specialty::Specialty;
    use konsilium_protocol::testkit::{NOW, TestFederation};

    #[test]
    fn oversized_lists_are_split_into_frames_that_fit() {
        let id = konsilium_protocol::identity::IdentityKey::from_seed([3; 32]).org_id();
        // 40,000 ids are ~1.25 MiB; a RecordRequest frame may hold 1 MiB.
        let orgs = vec![id; 40_000];
        let mut t = Traffic::default();
        let received = transmit_request(orgs.clone(), &mut t).unwrap();
        assert_eq!(received, orgs);
        assert_eq!(t.messages, 2);
        assert!(t.bytes > 40_000 * 32);
    }

    #[test]
    fn one_sync_moves_exactly_the_differences_both_ways() {
        let mut fed = TestFederation::new("sim-sync");
        let orgs: Vec<_> = (0..40)
            .map(|i| fed.org(i, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]))
            .collect();
        let mut net = Network::new(2, &fed.trust, NOW);
        let shared: Vec<_> = orgs[..30].iter().map(|o| o.signed_record(1)).collect();
        net.publish(0, shared.clone()).unwrap();
        net.publish(1, shared).unwrap();
        net.publish(0, orgs[30..35].iter().map(|o| o.signed_record(1)).collect())
            .unwrap();
        net.publish(1, orgs[35..].iter().map(|o| o.signed_record(1)).collect())
            .unwrap();
        net.publish(1, vec![orgs[0].signed_record(2)]).unwrap();

        let t = net.sync(0, 1).unwrap();
        assert!(net.converged());
        assert_eq!(net.node(0).len(), 40);
        assert_eq!(net.node(0).get(&orgs[0].id()).unwrap().record().sequence, 2);
        // Offer, summaries, a batch to 1, a request, a batch back.
        assert_eq!(t.messages, 5);
        assert_eq!(t.records, 5 + 5 + 1);
        assert_eq!(net.traffic(), t);

        // Converged: only the offer and an empty summaries answer.
        let idle = net.sync(1, 0).unwrap();
        assert_eq!((idle.messages, idle.records), (2, 0));
    }

    #[test]
    fn a_forged_record_stops_the_run_with_the_node_named() {
        let mut fed = TestFederation::new("sim-forged");
        let a = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Urology]);
        let b = fed.org(2, OrgLevel::District, "RU-VLG", &[Specialty::Urology]);
        let mut net = Network::new(2, &fed.trust, NOW);
        let forged = konsilium_protocol::signed::Signed::sign(&b.identity, &a.record(1));
        let e = net.publish(1, vec![forged]).unwrap_err();
        assert!(matches!(e, SimError::Refused { node: 1, .. }), "{e}");
    }
}
