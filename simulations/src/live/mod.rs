//! The live engine: the same scenario, at a scale this machine holds, as
//! real nodes. Each organization is a whole `konsilium-node` (its event
//! loop, libp2p swarm over loopback TCP, sled store, gossipsub, the
//! production anti-entropy interval and gossip heartbeat) in this process;
//! nothing is simulated but the patients.
//!
//! It measures what the model measures on the same organizations and the
//! same draws of requests ([`compare`] puts the two side by side): how
//! soon a federation that starts at once has every record everywhere, how
//! soon one organization's changed record reaches 99 % and all of the
//! others, and how long a request takes from the physician's click to the
//! consultant's node, with how many went through a relay. Where the two
//! engines disagree, the model left something out, and the report says
//! what.

pub mod compare;
mod nodes;
pub mod raw;

use crate::SimError;
use crate::scenario::Scenario;
use crate::year::summary::Delivery;
use konsilium_protocol::cert::OrgLevel;
use serde::Serialize;

/// How the nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Links {
    /// TCP on 127.0.0.1, as deployed (two file descriptors a connection,
    /// so a few hundred nodes in one process).
    Tcp,
    /// libp2p's in-process transport, with the same Noise and Yamux on top:
    /// no file descriptors, so memory alone bounds the nodes in a process.
    Memory,
}

impl std::fmt::Display for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Links::Tcp => "loopback TCP",
            Links::Memory => "in-process links",
        })
    }
}

/// What a live run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// Organizations started as nodes (the scenario's own, regional and
    /// federal centers first).
    pub nodes: usize,
    /// Requests a day the model's agenda draws (a Poisson count about
    /// this); live nodes send every one of them.
    pub requests: usize,
    pub seed: u64,
    pub links: Links,
    /// How long the federation rests after its directories fill, before
    /// a record changes (and its CPU at rest is measured).
    pub settle: std::time::Duration,
    /// Which idle connections each node keeps (the production default in
    /// the CLI); the rest begins once the idle ones have closed.
    pub keep: konsilium_protocol::keep::Config,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveOutcome {
    pub nodes: usize,
    pub links: Links,
    /// From the first node's start until every node had started.
    pub start_s: f64,
    /// From the last start until 99 % and all nodes held every record.
    pub directory_p99_s: Option<f64>,
    pub directory_all_s: Option<f64>,
    /// Certified peers a node was connected to, on average, when the
    /// directories were full (before idle connections closed).
    pub peers_when_full: f64,
    /// The CPU every node together used at rest afterwards, in cores.
    pub rest_cpu: Option<f64>,
    /// From one organization's changed record until 99 % and all the
    /// other nodes held it.
    pub update_p99_s: Option<f64>,
    pub update_all_s: Option<f64>,
    /// Plain gossipsub on the same links carrying a message of the
    /// record's size, measured after the nodes stopped: the baseline for
    /// the two figures above.
    pub raw: raw::RawSpread,
    /// From the physician's request to the consultant's node holding the
    /// package.
    pub delivery: Delivery,
    /// Requests no organization in the run could take.
    pub unroutable: usize,
    /// Packages a district handed to its regional center to carry.
    pub relayed: u64,
    /// Gossip while the changed record spread, over all nodes.
    pub gossip: Gossip,
    /// The whole process (every node) at the end.
    pub resident_mib: Option<f64>,
    pub wall_s: f64,
}

/// What the nodes' gossipsub did, from their own metrics.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Gossip {
    /// Records the changed organization's node gossiped: 0 when gossipsub
    /// knew no peer on the topic, and anti-entropy alone carried the change.
    pub published: u64,
    /// Directory messages taken in, dropped as already known or stale,
    /// and refused.
    pub accepted: u64,
    pub ignored: u64,
    pub invalid: u64,
    /// Certified peers a node was connected to, on average.
    pub mean_peers: f64,
    /// Peers whose connections the nodes closed as idle, since they started.
    pub idle_closed: u64,
}

/// The part of `scenario` a live run starts: `n` of its organizations, a
/// quarter of them regional and a quarter federal centers (so requests have
/// someone to go to) and the rest the districts that ask, each level in
/// the scenario's order. Faults and weekly consultations are left out (a
/// live run is minutes, not a year), and the yearly volume becomes
/// `requests` in one day, so the model's agenda draws about as many.
pub fn small(scenario: &Scenario, n: usize, requests: usize) -> Scenario {
    let n = n.clamp(2, scenario.orgs.len());
    let of = |level: OrgLevel| {
        (0..scenario.orgs.len()).filter(move |&i| scenario.orgs[i].level == level)
    };
    let quarter = (n / 4).max(1);
    let mut picked: Vec<usize> = of(OrgLevel::Regional).take(quarter).collect();
    picked.extend(of(OrgLevel::Federal).take(quarter));
    let districts = n.saturating_sub(picked.len());
    picked.extend(of(OrgLevel::District).take(districts));
    // A scenario short of one level fills up from the others.
    let rest: Vec<usize> = (0..scenario.orgs.len())
        .filter(|i| !picked.contains(i))
        .take(n.saturating_sub(picked.len()))
        .collect();
    picked.extend(rest);
    picked.sort();
    let mut small = scenario.clone();
    small.orgs = picked.iter().map(|&i| scenario.orgs[i].clone()).collect();
    small.faults.clear();
    small.workload.weekly.clear();
    small.days = 1;
    small.workload.per_year = u32::try_from(requests.saturating_mul(365)).unwrap_or(u32::MAX);
    small
}

/// Starts `scenario`'s organizations as nodes, measures, and stops them.
/// `progress` hears what the run is doing.
pub fn run(
    scenario: &Scenario,
    config: LiveConfig,
    progress: impl FnMut(&str),
) -> Result<LiveOutcome, SimError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| SimError::Live(format!("tokio runtime: {e}")))?;
    runtime.block_on(nodes::run(scenario, config, progress))
}

/// The seconds at which the `ceil(share * total)`-th of `times` came.
fn reached(times: &[f64], total: usize, share: f64) -> Option<f64> {
    let need = ((total as f64) * share).ceil() as usize;
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    need.checked_sub(1).and_then(|i| sorted.get(i).copied())
}

/// This process's resident memory, from `/proc` (Linux).
fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time this process (every node) has used, from `/proc` (Linux,
/// whose clock tick for user programs is 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// What the machine has free now (`MemAvailable`, Linux).
fn available_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_small_federation_keeps_its_centers_and_the_order() {
        let vologda = crate::scenario::vologda::scenario();
        let s = small(&vologda, 8, 10);
        assert_eq!(s.orgs.len(), 8);
        let count = |l| s.orgs.iter().filter(|o| o.level == l).count();
        assert_eq!(
            (
                count(OrgLevel::Regional),
                count(OrgLevel::Federal),
                count(OrgLevel::District)
            ),
            (2, 2, 4)
        );
        assert!(s.check().is_ok(), "someone asks");
        let positions: Vec<usize> = (s.orgs.iter())
            .map(|o| vologda.orgs.iter().position(|v| v.name == o.name).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert!(s.faults.is_empty() && s.days == 1);
        assert_eq!(s.workload.per_year, 3650);
    }

    #[test]
    fn shares_are_read_off_the_sorted_times() {
        let times = [3.0, 1.0, 2.0];
        assert_eq!(reached(&times, 3, 1.0), Some(3.0));
        assert_eq!(reached(&times, 3, 0.5), Some(2.0));
        assert_eq!(reached(&times, 4, 1.0), None, "one never came");
        let d = Delivery::of(vec![Duration::from_millis(5); 3], 1);
        assert_eq!((d.requests, d.undelivered, d.p50_ms), (4, 1, Some(5.0)));
    }
}
