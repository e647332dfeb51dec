//! When things happen that the protocol does not decide: a patient needing
//! a consultation, a clinician's next step, a fault starting or ending.
//!
//! Ordinary consultations arrive as a Poisson process at the scenario's
//! yearly rate, from organizations in proportion to their share, with the
//! scenario's specialty demand and urgency mix; weekly ones on their day.

use crate::rng::SimRng;
use crate::scenario::{DAY, Fault, FaultKind, Scenario};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::ConsultationId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Task {
    Ask {
        requester: usize,
        specialty: Specialty,
        urgency: Urgency,
        level: OrgLevel,
        burst: bool,
    },
    Accept {
        org: usize,
        id: ConsultationId,
    },
    Decline {
        org: usize,
        id: ConsultationId,
    },
    Conclude {
        org: usize,
        id: ConsultationId,
    },
    Acknowledge {
        org: usize,
        id: ConsultationId,
    },
    /// Index into [`Agenda::fault`].
    FaultStart(usize),
    FaultEnd(usize),
}

pub struct Agenda {
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    tasks: BTreeMap<u64, Task>,
    seq: u64,
    /// The scenario's faults, churn expanded into single outages.
    faults: Vec<Fault>,
    asks: Vec<f64>,
}

impl Agenda {
    pub fn plan(scenario: &Scenario, start: Timestamp, rng: &mut SimRng) -> Self {
        let mut agenda = Agenda {
            queue: BinaryHeap::new(),
            tasks: BTreeMap::new(),
            seq: 0,
            faults: expand(scenario, rng),
            asks: scenario.orgs.iter().map(|o| o.asks.max(0.0)).collect(),
        };
        let year = Duration::from_secs(365 * 86_400);
        let span = DAY * scenario.days;
        let w = &scenario.workload;
        if w.per_year > 0 {
            let gap = year / w.per_year;
            let demand: Vec<f64> = w.demand.iter().map(|d| d.weight.max(0.0)).collect();
            let mix = w.mix.weights().map(|x| x.max(0.0));
            let mut t = rng.exponential(gap);
            while t < span {
                let d = w.demand[rng.weighted(&demand)];
                let urgency = Urgency::ALL[rng.weighted(&mix)];
                let level = if rng.unit() < d.federal {
                    OrgLevel::Federal
                } else {
                    OrgLevel::District
                };
                let requester = agenda.requester(rng);
                agenda.add(
                    start.saturating_add(t),
                    Task::Ask {
                        requester,
                        specialty: d.specialty,
                        urgency,
                        level,
                        burst: false,
                    },
                );
                t += rng.exponential(gap);
            }
        }
        for weekly in &w.weekly {
            // Tuesdays at 10:00 from the start, whatever weekday that is.
            let mut t = DAY + Duration::from_secs(10 * 3600);
            while t < span {
                agenda.add(
                    start.saturating_add(t),
                    Task::Ask {
                        requester: weekly.requester,
                        specialty: weekly.specialty,
                        urgency: Urgency::Planned,
                        level: weekly.level,
                        burst: false,
                    },
                );
                t += 7 * DAY;
            }
        }
        for i in 0..agenda.faults.len() {
            let (at, lasts) = (agenda.faults[i].at, agenda.faults[i].lasts);
            agenda.add(start.saturating_add(at), Task::FaultStart(i));
            agenda.add(start.saturating_add(at + lasts), Task::FaultEnd(i));
        }
        agenda
    }

    pub fn add(&mut self, at: Timestamp, task: Task) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.tasks.insert(self.seq, task);
    }

    pub fn next_at(&self) -> Option<Timestamp> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// The next task due at or before `now`, oldest first.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<Task> {
        match self.queue.peek() {
            Some(Reverse((t, _))) if *t <= now => {
                let Reverse((_, seq)) = self.queue.pop()?;
                self.tasks.remove(&seq)
            }
            _ => None,
        }
    }

    pub fn fault(&self, i: usize) -> &Fault {
        &self.faults[i]
    }

    /// An asking organization, in proportion to its share.
    pub fn requester(&self, rng: &mut SimRng) -> usize {
        rng.weighted(&self.asks)
    }
}

/// Churn becomes single outages: each organization goes down about
/// `per_org_year` times a year (a Poisson count over the fault's span), at
/// uniform times, for exponentially distributed outages.
fn expand(scenario: &Scenario, rng: &mut SimRng) -> Vec<Fault> {
    let year = Duration::from_secs(365 * 86_400);
    let mut faults = Vec::new();
    for fault in &scenario.faults {
        let FaultKind::Churn {
            per_org_year,
            outage,
        } = fault.kind
        else {
            faults.push(fault.clone());
            continue;
        };
        if per_org_year <= 0.0 {
            continue;
        }
        let gap = year.div_f64(per_org_year);
        for org in 0..scenario.orgs.len() {
            let mut t = rng.exponential(gap);
            while t < fault.lasts {
                faults.push(Fault {
                    at: fault.at + t,
                    lasts: rng.exponential(outage),
                    kind: FaultKind::Down { org },
                });
                t += rng.exponential(gap);
            }
        }
    }
    faults
}
