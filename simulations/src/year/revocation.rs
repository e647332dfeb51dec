//! A revoked organization: its issuer's new revocation list is put in
//! force by one operator, at a hub of the organization's region, and
//! spreads from node to node as the node passes it on. Measured: how soon
//! every node refuses the organization, and what it could still do while
//! the list was on its way.

use super::ledger::Ledger;
use super::world::World;
use crate::scenario::Scenario;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::time::Timestamp;
use serde::Serialize;

/// A revocation the model put in force.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub org: usize,
    pub at: Timestamp,
    pub issuer: AuthorityKey,
    pub sequence: u64,
    /// The node whose operator put the list in force.
    pub handed_to: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevocationSpread {
    pub organization: String,
    pub handed_to: String,
    /// Days from the run's start.
    pub day: f64,
    /// Nodes other than the revoked one, and how many put the list in force.
    pub nodes: usize,
    pub reached: usize,
    pub p99_ms: Option<f64>,
    /// `None` unless every node was reached.
    pub all_ms: Option<f64>,
    /// Requests routed to it after the list was issued (by nodes that did
    /// not hold the list yet).
    pub routed_to_it: usize,
    /// Requests it made after the list was issued, and how many of them a
    /// consultant's node took in (one the list had not reached yet).
    pub asked_by_it: usize,
    pub taken_in_from_it: usize,
}

/// The node an operator hands the list to: a regional or federal center
/// of the organization's region, else any such center.
pub fn operator_site(scenario: &Scenario, org: usize) -> usize {
    let hub = |i: usize| i != org && scenario.orgs[i].level != OrgLevel::District;
    let region = &scenario.orgs[org].region;
    (0..scenario.orgs.len())
        .find(|&i| hub(i) && scenario.orgs[i].region == *region)
        .or_else(|| (0..scenario.orgs.len()).find(|&i| hub(i)))
        .unwrap_or(usize::from(org == 0))
}

impl Revoked {
    pub fn spread(
        &self,
        scenario: &Scenario,
        world: &World,
        ledger: &Ledger,
        start: Timestamp,
    ) -> RevocationSpread {
        let mut delays: Vec<f64> = (0..world.net.len())
            .filter(|&i| i != self.org)
            .filter_map(|i| {
                let adopted = &world.net.node(i).org_node().revocations_adopted;
                adopted
                    .iter()
                    .find(|(t, issuer, seq)| {
                        *issuer == self.issuer && *seq >= self.sequence && *t >= self.at
                    })
                    .map(|(t, _, _)| t.since(self.at).as_secs_f64() * 1000.0)
            })
            .collect();
        delays.sort_by(f64::total_cmp);
        let nodes = world.net.len() - 1;
        let after = |c: &&super::ledger::Case| c.created >= self.at;
        let routed_to_it = (ledger.cases.iter())
            .filter(after)
            .filter(|c| c.first_consultant == self.org)
            .count();
        let asked: Vec<_> = (ledger.cases.iter())
            .filter(after)
            .filter(|c| c.requester == self.org)
            .collect();
        RevocationSpread {
            organization: scenario.orgs[self.org].name.clone(),
            handed_to: scenario.orgs[self.handed_to].name.clone(),
            day: self.at.since(start).as_secs_f64() / 86_400.0,
            nodes,
            reached: delays.len(),
            // Of all the nodes: one not reached counts as never.
            p99_ms: (delays.get((nodes as f64 * 0.99).ceil() as usize - 1)).copied(),
            all_ms: (delays.len() == nodes)
                .then(|| delays.last().copied())
                .flatten(),
            routed_to_it,
            asked_by_it: asked.len(),
            taken_in_from_it: asked.iter().filter(|c| c.arrived.is_some()).count(),
        }
    }
}
