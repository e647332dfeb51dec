//! How fast a directory change reaches the federation, at the node's real
//! anti-entropy interval, and what an idle federation costs each node.
//!
//! The model carries records by anti-entropy alone: gossipsub, which
//! carries most records in a live node within seconds, is libp2p's and
//! not a protocol machine. The times here are therefore what the repair
//! path guarantees when gossip loses everything, an upper bound.

use super::world::{self, World};
use crate::SimError;
use crate::scenario::Scenario;
use konsilium_protocol::directory::Scope;
use konsilium_protocol::directory::SyncConfig;
use serde::Serialize;
use std::time::Duration;

/// The longest a change may take before the run calls it unconverged.
const LIMIT: Duration = Duration::from_secs(4 * 3600);
const SAMPLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// Sites that keep the changed organization in their directory.
    pub holders: usize,
    pub interval_s: u64,
    /// Seconds until 99 % and all holders had the change.
    pub p99_s: Option<f64>,
    pub all_s: Option<f64>,
    /// (seconds, share of holders with the change), at each change.
    pub curve: Vec<(f64, f64)>,
    /// Bytes a node sends per hour when nothing changes.
    pub idle_bytes_per_node_hour: f64,
    /// Bytes per holder to spread the change (all nodes' traffic while it
    /// spread, idle traffic included, over the holders).
    pub update_bytes_per_holder: f64,
    /// Copies of the changed record carried beyond the one each holder
    /// needed.
    pub duplicates: u64,
}

pub fn measure(scenario: &Scenario, seed: u64) -> Result<Convergence, SimError> {
    let interval = SyncConfig::new(Scope::Federation, [0; 32]).interval;
    let mut w = World::build(scenario, seed, interval).map_err(SimError::Config)?;
    w.connect(scenario);
    w.net.run_for(5 * interval);
    let before = w.net.total();
    w.net.run_for(Duration::from_secs(3600));
    let idle = w.net.total().bytes - before.bytes;
    let nodes = w.net.len() as f64;
    // The first organization publishes a new version of its record.
    let changed = 0;
    let id = w.ids[changed];
    let record =
        world::record(&scenario.orgs[changed], &w.orgs[changed], 2).map_err(SimError::Config)?;
    let signed = w.orgs[changed].sign(&record);
    let holders: Vec<usize> = (0..w.net.len())
        .filter(|&i| w.directory(i).get(&id).is_some())
        .collect();
    let start = w.net.now();
    let before = w.net.total();
    w.net.node_mut(changed).publish(start, vec![signed]);
    let mut curve = vec![(0.0, 0.0)];
    let mut have = 0;
    let (mut p99, mut all) = (None, None);
    while w.net.now().since(start) < LIMIT {
        w.net.run_for(SAMPLE);
        let now = have;
        have = holders
            .iter()
            .filter(|&&i| {
                w.directory(i)
                    .get(&id)
                    .is_some_and(|e| e.record().sequence == 2)
            })
            .count();
        if have == now {
            continue;
        }
        let t = w.net.now().since(start).as_secs_f64();
        let share = have as f64 / holders.len() as f64;
        curve.push((t, share));
        if p99.is_none() && share >= 0.99 {
            p99 = Some(t);
        }
        if have == holders.len() {
            all = Some(t);
            break;
        }
    }
    let after = w.net.total();
    Ok(Convergence {
        holders: holders.len(),
        interval_s: interval.as_secs(),
        p99_s: p99,
        all_s: all,
        curve,
        idle_bytes_per_node_hour: idle as f64 / nodes,
        update_bytes_per_holder: (after.bytes - before.bytes) as f64 / holders.len() as f64,
        duplicates: (after.records - before.records).saturating_sub(have as u64 - 1),
    })
}
