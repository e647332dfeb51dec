//! The scenarios: each takes a generated federation and a seed and returns a
//! report that depends on nothing else.

use super::network::{Network, NetworkState, RunReport, Strategy, Traffic, full_transfer_bytes};
use crate::SimError;
use crate::rng::SimRng;
use konsilium_protocol::cert::{OrgLevel, Trust};
use konsilium_protocol::directory::SignedRecord;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use std::collections::BTreeSet;

/// Far beyond what gossip needs (rounds grow with log N), so hitting it
/// means the exchange is broken, not slow.
const MAX_ROUNDS: usize = 200;

const REGIONS: [&str; 8] = [
    "RU-MOW", "RU-SPE", "RU-VLG", "RU-KDA", "RU-NVS", "RU-SVE", "RU-TA", "RU-PRI",
];

/// Organizations with their keys and first records, generated once and
/// shared by scenarios: signing is the slow part of setting one up.
pub struct Federation {
    pub testkit: TestFederation,
    pub orgs: Vec<TestOrg>,
    /// Each organization's record with sequence 1.
    pub records: Vec<SignedRecord>,
}

impl Federation {
    /// Every 50th organization is federal (certified by the root, so its
    /// chain lacks the authority certificate), every 10th regional, the rest
    /// district, with one to three specialties: record sizes then vary as
    /// they would in a real federation.
    pub fn generate(label: &str, orgs: usize) -> Self {
        let mut testkit = TestFederation::new(label);
        let orgs: Vec<TestOrg> = (0..orgs as u64)
            .map(|i| {
                let level = match i {
                    _ if i.is_multiple_of(50) => OrgLevel::Federal,
                    _ if i.is_multiple_of(10) => OrgLevel::Regional,
                    _ => OrgLevel::District,
                };
                let all = Specialty::ALL;
                // Offsets 0, 13 and 26 stay distinct modulo the catalogue size.
                let specialties: Vec<Specialty> = (0..1 + i % 3)
                    .map(|k| all[((i * 7 + k * 13) % all.len() as u64) as usize])
                    .collect();
                testkit.org(i, level, REGIONS[i as usize % REGIONS.len()], &specialties)
            })
            .collect();
        let records = orgs.iter().map(|o| o.signed_record(1)).collect();
        Self {
            testkit,
            orgs,
            records,
        }
    }

    pub fn trust(&self) -> &Trust {
        &self.testkit.trust
    }

    pub fn len(&self) -> usize {
        self.orgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orgs.is_empty()
    }

    fn check(&self, nodes: usize, min_nodes: usize, orgs: usize) -> Result<(), SimError> {
        if nodes < min_nodes {
            return Err(SimError::Config(format!(
                "{nodes} nodes; this scenario needs at least {min_nodes}"
            )));
        }
        if orgs == 0 || orgs > self.len() {
            return Err(SimError::Config(format!(
                "{orgs} organizations asked for, the federation has {}",
                self.len()
            )));
        }
        Ok(())
    }

    /// Every node holds the first `orgs` records, each having verified them
    /// itself: a directory cannot be copied without its checks.
    fn converged_network(&self, nodes: usize, orgs: usize) -> Result<Network, SimError> {
        let mut net = Network::new(nodes, self.trust(), NOW);
        for node in 0..nodes {
            net.publish(node, self.records[..orgs].to_vec())?;
        }
        Ok(net)
    }

    /// Entries, over all nodes, that miss the organization's newest record
    /// (`latest[i]` is organization i's newest sequence; organizations past
    /// its end are not in the scenario).
    fn stale_entries(&self, net: &Network, latest: &[u64]) -> usize {
        net.directories()
            .map(|dir| {
                self.orgs
                    .iter()
                    .zip(latest)
                    .filter(|(org, seq)| {
                        dir.get(&org.id())
                            .is_none_or(|e| e.record().sequence != **seq)
                    })
                    .count()
            })
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStartReport {
    pub nodes: usize,
    pub orgs: usize,
    /// All records in `RecordBatch` frames: what one full-state push costs
    /// once everyone knows everything.
    pub full_directory_bytes: u64,
    pub anti_entropy: RunReport,
    pub full_push: RunReport,
}

impl ColdStartReport {
    /// How many times more bytes full-state push needs to converge.
    pub fn byte_ratio(&self) -> f64 {
        self.full_push.traffic.bytes as f64 / self.anti_entropy.traffic.bytes as f64
    }
}

/// Every organization's record starts on its home node only (organization
/// `i` on node `i % nodes`); each round every node exchanges with one random
/// peer. Both strategies see the same peer schedule.
pub fn cold_start(
    fed: &Federation,
    nodes: usize,
    orgs: usize,
    seed: u64,
) -> Result<ColdStartReport, SimError> {
    fed.check(nodes, 2, orgs)?;
    let run = |strategy| {
        let mut net = Network::new(nodes, fed.trust(), NOW);
        for home in 0..nodes {
            let own = fed.records[..orgs]
                .iter()
                .skip(home)
                .step_by(nodes)
                .cloned()
                .collect();
            net.publish(home, own)?;
        }
        net.run_until_converged(strategy, &mut SimRng::new(seed, "cold-start"), MAX_ROUNDS)
    };
    Ok(ColdStartReport {
        nodes,
        orgs,
        full_directory_bytes: full_transfer_bytes(fed.records[..orgs].to_vec()),
        anti_entropy: run(Strategy::AntiEntropy)?,
        full_push: run(Strategy::FullPush)?,
    })
}

/// Kept per initiator: which side starts changes what the sync costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSync {
    pub traffic: Traffic,
    /// Every node, newcomer included, holds the same directory right after.
    pub converged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateJoinerReport {
    pub nodes: usize,
    pub orgs: usize,
    pub full_directory_bytes: u64,
    /// The newcomer starts: it learns every summary and asks for every record by id.
    pub joiner_initiated: JoinSync,
    /// A member starts: the newcomer's empty answer makes it push everything.
    pub member_initiated: JoinSync,
    /// A later sync of a converged node: the steady cost of anti-entropy.
    pub idle_sync: Traffic,
}

/// A converged network of `nodes`; a first newcomer syncs with a random
/// member, then a random member syncs a second newcomer. Two newcomers
/// rather than one, because after its first sync a newcomer is no longer new.
pub fn late_joiner(
    fed: &Federation,
    nodes: usize,
    orgs: usize,
    seed: u64,
) -> Result<LateJoinerReport, SimError> {
    fed.check(nodes, 1, orgs)?;
    let mut rng = SimRng::new(seed, "late-joiner");
    let mut net = fed.converged_network(nodes, orgs)?;
    let full_directory_bytes =
        full_transfer_bytes(net.node(0).entries().map(|e| e.signed().clone()).collect());

    let first = net.join();
    let traffic = net.sync(first, rng.below(nodes))?;
    let joiner_initiated = JoinSync {
        traffic,
        converged: net.converged(),
    };
    let second = net.join();
    let traffic = net.sync(rng.below(nodes), second)?;
    let member_initiated = JoinSync {
        traffic,
        converged: net.converged(),
    };
    let idle_sync = net.sync(first, rng.below(nodes))?;
    Ok(LateJoinerReport {
        nodes,
        orgs,
        full_directory_bytes,
        joiner_initiated,
        member_initiated,
        idle_sync,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionConfig {
    pub nodes: usize,
    pub orgs: usize,
    pub rounds_apart: usize,
    /// Records published on each side in each round apart.
    pub updates_per_round: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionReport {
    pub config: PartitionConfig,
    /// Updated records published while apart, both sides together.
    pub updates: usize,
    /// Organizations that published on both sides: the conflicts healing must settle.
    pub conflicting_orgs: usize,
    pub apart: Traffic,
    /// Agreement just before healing: more than one directory if the
    /// halves really drifted apart.
    pub before_heal: NetworkState,
    pub heal: RunReport,
    /// Entries on any node not holding the organization's newest record.
    pub stale_entries: usize,
}

/// A converged network splits into two halves that sync only within their
/// half while organizations publish new records through nodes on either
/// side, then heals. Sequences come from one counter per organization, so
/// the newest record is the one every node must end with. An organization
/// may publish on both sides (it can reach nodes on both), which makes the
/// conflicts the merge rule has to settle.
pub fn partition_heal(
    fed: &Federation,
    config: PartitionConfig,
    seed: u64,
) -> Result<PartitionReport, SimError> {
    let PartitionConfig {
        nodes,
        orgs,
        rounds_apart,
        updates_per_round,
    } = config;
    fed.check(nodes, 4, orgs)?;
    let mut rng = SimRng::new(seed, "partition-heal");
    let mut net = fed.converged_network(nodes, orgs)?;
    let halves = [0..nodes / 2, nodes / 2..nodes];

    let mut latest = vec![1u64; orgs];
    let mut published_on = vec![[false; 2]; orgs];
    let mut apart = Traffic::default();
    for _ in 0..rounds_apart {
        for (side, half) in halves.iter().enumerate() {
            for _ in 0..updates_per_round {
                let org = rng.below(orgs);
                latest[org] += 1;
                published_on[org][side] = true;
                let node = half.start + rng.below(half.len());
                net.publish(node, vec![fed.orgs[org].signed_record(latest[org])])?;
            }
        }
        apart += net.round(Strategy::AntiEntropy, &halves, &mut rng)?;
    }
    let before_heal = net.state();
    let heal = net.run_until_converged(Strategy::AntiEntropy, &mut rng, MAX_ROUNDS)?;
    Ok(PartitionReport {
        config,
        updates: 2 * rounds_apart * updates_per_round,
        conflicting_orgs: published_on.iter().filter(|s| s[0] && s[1]).count(),
        apart,
        before_heal,
        heal,
        stale_entries: fed.stale_entries(&net, &latest),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallDeltaReport {
    pub orgs: usize,
    pub differing: usize,
    pub full_directory_bytes: u64,
    pub sync: Traffic,
    pub converged: bool,
    pub stale_entries: usize,
}

impl SmallDeltaReport {
    /// The sync's bytes as a fraction of sending the whole directory.
    pub fn byte_ratio(&self) -> f64 {
        self.sync.bytes as f64 / self.full_directory_bytes as f64
    }
}

/// Two nodes agree on all but `differing` organizations, half of which
/// published a newer record through each node; one sync.
pub fn small_delta(
    fed: &Federation,
    orgs: usize,
    differing: usize,
    seed: u64,
) -> Result<SmallDeltaReport, SimError> {
    fed.check(2, 2, orgs)?;
    if differing > orgs {
        return Err(SimError::Config(format!(
            "{differing} differing records among {orgs} organizations"
        )));
    }
    let mut rng = SimRng::new(seed, "small-delta");
    let mut changed = BTreeSet::new();
    let mut order = Vec::with_capacity(differing);
    while order.len() < differing {
        let org = rng.below(orgs);
        if changed.insert(org) {
            order.push(org);
        }
    }
    let (on_first, on_second) = order.split_at(differing / 2);

    let mut net = Network::new(2, fed.trust(), NOW);
    for (node, updated) in [on_first, on_second].into_iter().enumerate() {
        let records = (0..orgs)
            .map(|i| {
                if updated.contains(&i) {
                    fed.orgs[i].signed_record(2)
                } else {
                    fed.records[i].clone()
                }
            })
            .collect();
        net.publish(node, records)?;
    }
    let full_directory_bytes =
        full_transfer_bytes(net.node(0).entries().map(|e| e.signed().clone()).collect());
    let sync = net.sync(0, 1)?;
    let latest: Vec<u64> = (0..orgs)
        .map(|i| if changed.contains(&i) { 2 } else { 1 })
        .collect();
    Ok(SmallDeltaReport {
        orgs,
        differing,
        full_directory_bytes,
        sync,
        converged: net.converged(),
        stale_entries: fed.stale_entries(&net, &latest),
    })
}
