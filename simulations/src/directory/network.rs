//! Simulated nodes and the exchanges between them.
//!
//! Every node is the protocol's own directory machine (`DirectorySync`)
//! on the protocol's simulated network (`testkit::SimNet`): the scenarios
//! choose who syncs with whom and when, the machines do everything else,
//! exactly as a node does. Nothing here knows how an exchange goes.

use crate::SimError;
use crate::rng::SimRng;
use konsilium_protocol::cert::Trust;
use konsilium_protocol::directory::frames::record_batches;
use konsilium_protocol::directory::{
    Directory, FrameBudget, Merge, Scope, SignedRecord, SyncConfig,
};
use konsilium_protocol::rpc::{Request, Response};
use konsilium_protocol::testkit::{DirectoryNode, NodeStats, SimConfig, SimNet, seed};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire;
use std::collections::BTreeSet;
use std::ops::{AddAssign, Range};
use std::time::Duration;

/// Counted per frame, so a simulated cost reads directly as what a node
/// would hand its transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    /// Whole frames, header included.
    pub bytes: u64,
    /// Signed records carried in `PushRecords` and `Records` frames.
    pub records: u64,
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.records += other.records;
    }
}

impl Traffic {
    fn between(before: NodeStats, after: NodeStats) -> Self {
        Self {
            messages: after.messages() - before.messages(),
            bytes: after.bytes - before.bytes,
            records: after.records - before.records,
        }
    }
}

/// Both run on the same peer schedule, so their costs compare as a ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The protocol's exchange, run by the directory machines themselves.
    AntiEntropy,
    /// A naive baseline, not a protocol: the initiator pushes its whole
    /// directory (in `PushRecords` frames the receiving machine handles).
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

/// Bytes it takes to send these records as `RecordBatch` frames cut to the
/// wire limit, the yardstick every scenario compares against.
pub fn full_transfer_bytes(records: Vec<SignedRecord>) -> u64 {
    record_batches(records, FrameBudget::default().records)
        .iter()
        .map(|b| wire::encoded_len(b) as u64)
        .sum()
}

/// The scenarios choose every exchange, so the machines' own rounds are
/// set a year apart and never run.
const NO_ROUNDS: Duration = Duration::from_secs(365 * 86_400);

/// All nodes share one `Trust` and one clock: the scenarios study
/// propagation, not disagreement about the federation or the time.
pub struct Network {
    net: SimNet<DirectoryNode>,
    trust: Trust,
    /// Bookkeeping of what each node reported, to turn a refusal or a bad
    /// answer into an error naming the node.
    seen: Vec<(usize, usize)>,
}

impl Network {
    pub fn new(nodes: usize, trust: &Trust, now: Timestamp) -> Self {
        let mut network = Self {
            net: SimNet::new(SimConfig::default(), now),
            trust: trust.clone(),
            seen: Vec::new(),
        };
        for _ in 0..nodes {
            network.join();
        }
        network
    }

    pub fn len(&self) -> usize {
        self.net.len()
    }

    pub fn is_empty(&self) -> bool {
        self.net.is_empty()
    }

    pub fn node(&self, i: usize) -> &Directory {
        self.net.node(i).directory()
    }

    pub fn directories(&self) -> impl Iterator<Item = &Directory> {
        self.net.nodes().iter().map(DirectoryNode::directory)
    }

    /// An empty node, as a hospital's first start; returns its index.
    pub fn join(&mut self) -> usize {
        let i = self.net.len();
        let mut config = SyncConfig::new(Scope::Federation, seed("simulations/node", i as u64));
        config.interval = NO_ROUNDS;
        self.seen.push((0, 0));
        self.net.add(DirectoryNode::new(
            config,
            Directory::new(),
            self.trust.clone(),
        ))
    }

    /// Since the network was made, including rounds run outside
    /// `run_until_converged`.
    pub fn traffic(&self) -> Traffic {
        Traffic::between(NodeStats::default(), self.net.total())
    }

    /// Records arriving at a node from outside the simulation (an
    /// organization publishing through it); costs no traffic. Returns how
    /// many changed the directory.
    pub fn publish(&mut self, node: usize, records: Vec<SignedRecord>) -> Result<usize, SimError> {
        let now = self.net.now();
        let mut changed = 0;
        for result in self.net.node_mut(node).publish(now, records) {
            match result.map_err(|error| SimError::Refused { node, error })? {
                Merge::Added | Merge::Replaced { .. } => changed += 1,
                Merge::Unchanged | Merge::Superseded { .. } => {}
            }
        }
        // Refusals of published records were returned above, not found later.
        let n = self.net.node(node);
        self.seen[node] = (n.rejections.len(), n.errors.len());
        Ok(changed)
    }

    /// Anything a node refused or could not use since last looked: in
    /// these scenarios every record is valid and no link fails, so any of
    /// it is a finding about the protocol.
    fn check(&mut self) -> Result<(), SimError> {
        if let Some(v) = self.net.violations().first() {
            return Err(SimError::Frame(v.clone()));
        }
        for node in 0..self.net.len() {
            let n = self.net.node(node);
            let (rejected, errors) = self.seen[node];
            if let Some(r) = n.rejections.get(rejected) {
                return Err(SimError::Refused {
                    node,
                    error: r.error.clone(),
                });
            }
            if let Some(e) = n.errors.get(errors) {
                return Err(SimError::Exchange {
                    node,
                    error: e.clone(),
                });
            }
        }
        Ok(())
    }

    /// One exchange of the directory machines, `a` initiating, run to its
    /// end. Who initiates matters: an empty initiator pays for summaries
    /// and a request per record that an empty responder does not.
    pub fn sync(&mut self, a: usize, b: usize) -> Result<Traffic, SimError> {
        assert_ne!(a, b, "a node does not sync with itself");
        let before = self.net.total();
        let now = self.net.now();
        if self.net.node_mut(a).start_sync(now, b).is_none() {
            return Err(SimError::Config(format!(
                "node {a} is already syncing with {b}"
            )));
        }
        self.net.settle();
        self.check()?;
        Ok(Traffic::between(before, self.net.total()))
    }

    /// The baseline anti-entropy is measured against: `a` sends `b` its
    /// whole directory.
    pub fn push_full(&mut self, a: usize, b: usize) -> Result<Traffic, SimError> {
        let before = self.net.total();
        let all: Vec<SignedRecord> = self.node(a).entries().map(|e| e.signed().clone()).collect();
        for batch in record_batches(all, FrameBudget::default().records) {
            match self.net.call(a, b, Request::PushRecords(batch)) {
                Ok(Response::Done) => {}
                Ok(other) => {
                    return Err(SimError::Config(format!(
                        "node {b} answered a push with {other:?}"
                    )));
                }
                Err(v) => return Err(SimError::Frame(v)),
            }
        }
        self.check()?;
        Ok(Traffic::between(before, self.net.total()))
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
        let everyone = 0..self.len();
        let mut traffic = Traffic::default();
        for rounds in 0..=max_rounds {
            if self.converged() {
                return Ok(RunReport {
                    rounds,
                    traffic,
                    bytes_per_node: traffic.bytes / self.len() as u64,
                    end: self.state(),
                });
            }
            if rounds < max_rounds {
                traffic += self.round(strategy, std::slice::from_ref(&everyone), rng)?;
            }
        }
        Err(SimError::NotConverged {
            nodes: self.len(),
            rounds: max_rounds,
        })
    }

    pub fn converged(&self) -> bool {
        self.state().distinct_digests <= 1
    }

    pub fn state(&self) -> NetworkState {
        let digests: BTreeSet<[u8; 32]> = self.directories().map(Directory::digest).collect();
        let sizes = || self.directories().map(Directory::len);
        NetworkState {
            distinct_digests: digests.len(),
            min_records: sizes().min().unwrap_or(0),
            max_records: sizes().max().unwrap_or(0),
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
        // The digest and `Differs`, offer, summaries, a batch to 1 and its
        // `Done`, a request, a batch back.
        assert_eq!(t.messages, 8);
        assert_eq!(t.records, 5 + 5 + 1);
        assert_eq!(net.traffic(), t);

        // Converged: only the digest and its `Same`, no bucket hashes.
        let idle = net.sync(1, 0).unwrap();
        assert_eq!((idle.messages, idle.records), (2, 0));
        assert!(idle.bytes < 100, "{idle:?}");
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
