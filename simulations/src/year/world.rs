//! A scenario's organizations as real sites on the simulated network: each
//! certified by its region's authority (federal ones by the root), each
//! publishing a signed directory record of its consultants, calendar and
//! deadlines, each running the node's machines.
//!
//! Every site starts with the whole directory already verified, as the
//! node's default scope (`federation`) holds it: verifying it once and
//! cloning it keeps a 5,200-node federation's start in seconds. How fast a
//! change spreads is measured separately (`year::convergence`), at the
//! node's real anti-entropy interval.
//!
//! Region-scoped sites are not modelled: one routes through candidates it
//! asks its regional center for, which the testkit site does not do. (The
//! model found that a region-scoped node was pushed every record outside
//! its region on each anti-entropy round; offers and answers now carry the
//! scope.)

use crate::scenario::{Org, Scenario};
use konsilium_protocol::calendar::{TimeZoneName, WorkingCalendar};
use konsilium_protocol::cert::RegionCode;
use konsilium_protocol::cert::{OrgLevel, Trust};
use konsilium_protocol::directory::{
    Consultant, ConsultantId, Directory, DirectoryRecord, Language, Scope, Service, SignedRecord,
    SyncConfig,
};
use konsilium_protocol::identity::{IdentityKey, OrgId};
use konsilium_protocol::testkit::{
    DirectoryNode, Link, NOW, OrgNode, SimConfig, SimNet, Site, TestFederation, TestOrg, seed,
};
use konsilium_protocol::urgency::{Deadlines, Urgency};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct World {
    pub net: SimNet<Site>,
    pub orgs: Vec<TestOrg>,
    pub ids: Vec<OrgId>,
    pub index: HashMap<OrgId, usize>,
    pub trust: Trust,
    /// The authorities, for revocation lists.
    pub fed: TestFederation,
}

/// Each organization's record: its consultants, one per head count, each
/// answering the specialty; every urgency accepted; its own calendar and
/// planned deadline.
pub fn record(spec: &Org, org: &TestOrg, sequence: u64) -> Result<DirectoryRecord, String> {
    let mut record = org.record(sequence);
    let zone = TimeZoneName::new(spec.time_zone).map_err(|e| format!("{}: {e}", spec.name))?;
    record.calendar = WorkingCalendar::weekdays(zone);
    record.deadlines = Deadlines::new(
        spec.planned_days,
        Deadlines::MAX_URGENT,
        Deadlines::MAX_EMERGENCY,
        Deadlines::DEFAULT_EMERGENCY_RESPONSE,
    )
    .map_err(|e| format!("{}: {e}", spec.name))?;
    let ru = Language::new("ru").map_err(|e| e.to_string())?;
    record.consultants = spec
        .offers
        .iter()
        .flat_map(|o| (0..o.consultants).map(move |k| (o.specialty, k)))
        .enumerate()
        .map(|(n, (specialty, k))| Consultant {
            id: ConsultantId(n as u32 + 1),
            name: format!("{} consultant {}", specialty.slug(), k + 1),
            specialties: [specialty].into(),
            languages: [ru.clone()].into(),
        })
        .collect();
    record.services = spec
        .offers
        .iter()
        .map(|o| Service {
            specialty: o.specialty,
            urgencies: Urgency::ALL.into(),
            deadlines: None,
        })
        .collect();
    Ok(record)
}

/// Connections a node keeps open: to its region's regional centers (its
/// hubs, as bootstrap nodes are), and among regional and federal centers.
/// Everything else is dialled when a package needs it, as the node's
/// outbox does, so a 5,000-node federation is not a full mesh.
fn keeps(specs: &[Org], a: usize, b: usize) -> bool {
    let hub = |i: usize| specs[i].level != OrgLevel::District;
    (specs[a].region == specs[b].region && (hub(a) || hub(b))) || (hub(a) && hub(b))
}

/// The regional center a district organization's packages for other
/// regions go through, when the scenario has relays.
pub fn relay_of(scenario: &Scenario, org: usize) -> Option<usize> {
    let spec = &scenario.orgs[org];
    if !scenario.relays || spec.level != OrgLevel::District {
        return None;
    }
    (scenario.orgs.iter()).position(|o| o.level == OrgLevel::Regional && o.region == spec.region)
}

impl World {
    pub fn build(scenario: &Scenario, seed_: u64, interval: Duration) -> Result<World, String> {
        let label = format!("{}-{seed_}", scenario.name);
        let mut fed = TestFederation::new(&label);
        // The year, its tail and margin.
        fed.certify_for(u64::from(scenario.days) + 30);
        let mut orgs = Vec::with_capacity(scenario.orgs.len());
        let mut records = Vec::with_capacity(scenario.orgs.len());
        for (i, spec) in scenario.orgs.iter().enumerate() {
            RegionCode::new(spec.region.as_str()).map_err(|e| format!("{}: {e}", spec.name))?;
            let specialties: Vec<_> = spec.offers.iter().map(|o| o.specialty).collect();
            let org = fed.org(i as u64, spec.level, &spec.region, &specialties);
            let signed: SignedRecord = org.sign(&record(spec, &org, 1)?);
            records.push(signed);
            orgs.push(org);
        }
        let trust = fed.trust.clone();
        // The whole directory, verified once and cloned into every site:
        // entries are shared, so 5,000 copies cost pointers.
        let mut directory = Directory::new();
        for result in directory.insert_many(records, &trust, NOW) {
            result.map_err(|e| format!("a generated record was refused: {e}"))?;
        }
        // Fills the bucket hashes the clones then share instead of each
        // computing them again.
        directory.digest();
        let sim = SimConfig {
            link: Link {
                latency: scenario.latency,
                jitter: scenario.jitter,
                loss: 0.0,
            },
            failure_after: Duration::from_secs(10),
            seed: seed_,
        };
        let mut net = SimNet::new(sim, NOW);
        for (i, org) in orgs.iter().enumerate() {
            let region = org.region.clone();
            let mut sync = SyncConfig::new(Scope::Federation, seed(&label, i as u64));
            sync.interval = interval;
            let directory = DirectoryNode::new(sync, directory.clone(), trust.clone());
            let site = Site::new(
                OrgNode::new(org.id(), org.chain.clone(), directory),
                IdentityKey::from_seed(*org.identity.to_seed()),
                org.sealing.clone(),
                region,
            );
            net.add(match relay_of(scenario, i) {
                Some(hub) => site.relaying_via(orgs[hub].id()),
                None => site,
            });
        }
        let ids: Vec<OrgId> = orgs.iter().map(|o| o.id()).collect();
        let index: HashMap<OrgId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let addresses = Arc::new(index.clone());
        for i in 0..net.len() {
            net.node_mut(i).set_addresses(addresses.clone());
        }
        Ok(World {
            net,
            orgs,
            ids,
            index,
            trust,
            fed,
        })
    }

    pub fn directory(&self, site: usize) -> &Directory {
        self.net.node(site).org_node().directory().directory()
    }

    /// Opens the connections every node keeps (see [`keeps`]).
    pub fn connect(&mut self, scenario: &Scenario) {
        let n = scenario.orgs.len();
        for a in 0..n {
            for b in a + 1..n {
                if keeps(&scenario.orgs, a, b) {
                    self.net.connect(a, b);
                }
            }
        }
    }

    /// Reconnects `org` after an outage, as its node dials the peers it
    /// keeps again.
    pub fn reconnect(&mut self, scenario: &Scenario, org: usize) {
        for b in 0..scenario.orgs.len() {
            if b != org && keeps(&scenario.orgs, org, b) {
                self.net.connect(org, b);
            }
        }
    }
}
