//! The people at a consulting organization, as the model sees them: a
//! coordinator who accepts a request or declines it, and consultants who
//! each work on one case at a time, oldest first.
//!
//! The protocol decides nothing here; this only chooses when the clinicians
//! take the steps the node then signs, sends and times. What the protocol
//! does with a late answer, a decline or silence is the finding.

use crate::rng::SimRng;
use crate::scenario::{Answering, Scenario, Span};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use std::collections::HashMap;

/// What the consulting side will do with a request that just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Accept at `accept`; conclude at `conclude`.
    Answer {
        accept: Timestamp,
        conclude: Timestamp,
    },
    /// Every consultant is booked past the deadline: decline at `at` and
    /// ask the requester to forward the case.
    Decline { at: Timestamp },
}

pub struct Clinic {
    answering: Answering,
    levels: Vec<OrgLevel>,
    /// Each consultant's next free instant, per organization and specialty.
    free_at: HashMap<(usize, Specialty), Vec<Timestamp>>,
    /// Nobody at the organization answers before this instant.
    unavailable_until: Vec<Option<Timestamp>>,
    rng: SimRng,
}

fn draw(rng: &mut SimRng, at: Timestamp, span: Span) -> Timestamp {
    at.saturating_add(rng.between(span.min, span.max))
}

impl Clinic {
    pub fn new(scenario: &Scenario, start: Timestamp, seed: u64) -> Self {
        let mut free_at = HashMap::new();
        for (i, org) in scenario.orgs.iter().enumerate() {
            for offer in &org.offers {
                let n = offer.consultants.max(1) as usize;
                free_at.insert((i, offer.specialty), vec![start; n]);
            }
        }
        Self {
            answering: scenario.answering.clone(),
            levels: scenario.orgs.iter().map(|o| o.level).collect(),
            free_at,
            unavailable_until: vec![None; scenario.orgs.len()],
            rng: SimRng::new(seed, "clinic"),
        }
    }

    pub fn set_unavailable(&mut self, org: usize, until: Option<Timestamp>) {
        self.unavailable_until[org] = until;
    }

    /// When the physician who asked reads a conclusion that arrived at `at`.
    pub fn acknowledge_at(&mut self, at: Timestamp) -> Timestamp {
        draw(&mut self.rng, at, self.answering.acknowledge)
    }

    /// Emergencies go to whoever is on call, ahead of the queue (unless
    /// the whole organization is unavailable, a fault). Other cases
    /// wait for the first free consultant; when even that one would finish
    /// after the deadline, a regional or district coordinator declines so
    /// the requester can forward the case, while a federal center, the last
    /// resort, takes it late.
    pub fn plan(
        &mut self,
        arrived: Timestamp,
        org: usize,
        specialty: Specialty,
        urgency: Urgency,
        due: Option<Timestamp>,
    ) -> Plan {
        let u = Answering::of(urgency);
        let mut accept = draw(&mut self.rng, arrived, self.answering.accept[u]);
        // Emergencies go to whoever is on call: nobody is away for them.
        if urgency != Urgency::Emergency && self.rng.unit() < self.answering.away {
            accept = draw(&mut self.rng, accept, self.answering.away_for);
        }
        if let Some(until) = self.unavailable_until[org].filter(|t| *t > accept) {
            accept = draw(&mut self.rng, until, self.answering.accept[u]);
        }
        let work = self
            .rng
            .between(self.answering.work[u].min, self.answering.work[u].max);
        if urgency == Urgency::Emergency {
            return Plan::Answer {
                accept,
                conclude: accept.saturating_add(work),
            };
        }
        let Some(slots) = self.free_at.get_mut(&(org, specialty)) else {
            // Asked for a specialty it does not offer: no one to answer.
            return Plan::Decline { at: accept };
        };
        let (k, free) = slots
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, t)| *t)
            .expect("at least one consultant");
        let conclude = accept.max(free).saturating_add(work);
        let late = due.is_some_and(|d| conclude > d);
        if late && self.levels[org] != OrgLevel::Federal {
            return Plan::Decline { at: accept };
        }
        slots[k] = conclude;
        Plan::Answer { accept, conclude }
    }
}
