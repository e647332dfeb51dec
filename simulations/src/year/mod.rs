//! A year of consultations in a federation of real sites.
//!
//! Each organization is a `testkit::Site`: the node's admission, directory,
//! outbox and desk machines wired as the node wires them, on the protocol's
//! simulated network with the scenario's latency, loss, outages and
//! partitions. Packages are sealed and opened, steps and conclusions
//! signed and verified, receipts signed, deadlines and escalations timed by
//! the desk itself. The model adds only what is outside the protocol: when
//! patients need a consultation ([`agenda`]), when clinicians take their
//! steps ([`clinic`]), and the faults.

pub mod agenda;
pub mod clinic;
pub mod convergence;
pub mod ledger;
pub mod revocation;
pub mod summary;
pub mod world;

use crate::SimError;
use crate::rng::SimRng;
use crate::scenario::{FaultKind, Scenario};
use agenda::{Agenda, Task};
use clinic::{Clinic, Plan};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::desk::{self, Actor, Desk};
use konsilium_protocol::journal::Role;
use konsilium_protocol::route::{self, RouteRequest};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, Consent, ConsentMethod, ConsultationId, Status};
use ledger::{Case, Ledger};
use std::time::{Duration, Instant};
use world::World;

/// How often the model reads what the desks reported. Clinicians react to
/// a report at its own timestamp, so this bounds only how late a reaction
/// can be scheduled, and every reaction takes minutes.
const TICK: Duration = Duration::from_secs(60);
/// Days after the last new consultation, for the open ones to finish.
pub const TAIL_DAYS: u32 = 7;
const TAIL: Duration = Duration::from_secs(TAIL_DAYS as u64 * 86_400);

/// Reported once a simulated day.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub day: u32,
    pub days: u32,
    pub started: usize,
    pub concluded: usize,
    pub wall: Duration,
}

/// Everything a run measured.
pub struct Outcome {
    pub ledger: Ledger,
    /// Bytes each node sent over the whole run.
    pub bytes: Vec<u64>,
    pub messages_lost: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub wall: Duration,
    pub revocations: Vec<revocation::RevocationSpread>,
    /// Packages each node took custody of to carry for others.
    pub relayed: Vec<u64>,
    /// Packages sealed by all sites together.
    pub sealed: u64,
    /// Where the wall time went, to project a shorter run to a year.
    pub phases: Phases,
}

/// A run's wall time by phase, and the packages sealed in its days of new
/// consultations. Building the federation is paid once however long the
/// run, and the tail after the last new consultation carries only what is
/// still open, so a run of a few days says how fast a year goes only when
/// its days of new consultations are scaled alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Building the sites and admitting every connection.
    pub setup: Duration,
    /// The days on which new consultations arrive.
    pub arrivals: Duration,
    /// Packages sealed during those days.
    pub arrivals_sealed: u64,
}

/// What a year of arrivals would take, projected from a run's phases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YearProjection {
    pub seconds: f64,
    pub packages: f64,
}

/// The days of arrivals a projection scales to.
pub const YEAR_DAYS: u32 = 365;

impl Phases {
    /// What a run that took `wall` spent after its last day of arrivals.
    pub fn tail(&self, wall: Duration) -> Duration {
        wall.saturating_sub(self.setup + self.arrivals)
    }

    /// A year projected from a run of `days` of arrivals that took `wall`
    /// and sealed `sealed` packages in all: its days of arrivals, their
    /// time and their packages alike, scaled to 365; the building and the
    /// tail counted once, as a year pays them.
    pub fn year(&self, days: u32, wall: Duration, sealed: u64) -> YearProjection {
        let scale = f64::from(YEAR_DAYS) / f64::from(days.max(1));
        let tail = self.tail(wall);
        let tail_sealed = sealed.saturating_sub(self.arrivals_sealed);
        YearProjection {
            seconds: (self.setup + tail).as_secs_f64() + self.arrivals.as_secs_f64() * scale,
            packages: self.arrivals_sealed as f64 * scale + tail_sealed as f64,
        }
    }
}

struct Engine<'a> {
    scenario: &'a Scenario,
    world: World,
    agenda: Agenda,
    clinic: Clinic,
    ledger: Ledger,
    /// How many outages hold each node down now (churn overlaps faults).
    down: Vec<u32>,
    revoked: Vec<revocation::Revoked>,
}

pub fn run(
    scenario: &Scenario,
    seed: u64,
    mut progress: impl FnMut(&Progress),
) -> Result<Outcome, SimError> {
    scenario.check().map_err(SimError::Config)?;
    let wall = Instant::now();
    let mut world =
        World::build(scenario, seed, scenario.directory_interval).map_err(SimError::Config)?;
    world.connect(scenario);
    // Admission both ways on every connection.
    world.net.run_for(Duration::from_secs(60));
    let start = world.net.now();
    let mut phases = Phases {
        setup: wall.elapsed(),
        ..Phases::default()
    };
    let mut rng = SimRng::new(seed, "agenda");
    let agenda = Agenda::plan(scenario, start, &mut rng);
    let mut engine = Engine {
        scenario,
        clinic: Clinic::new(scenario, start, seed),
        ledger: Ledger::new(scenario.orgs.len()),
        down: vec![0; scenario.orgs.len()],
        revoked: Vec::new(),
        world,
        agenda,
    };
    let days = scenario.days;
    let end = start.saturating_add(Duration::from_secs(u64::from(days) * 86_400) + TAIL);
    let mut next_day = start.saturating_add(Duration::from_secs(86_400));
    let mut day = 0;
    while engine.world.net.now() < end {
        let now = engine.world.net.now();
        let until = engine
            .agenda
            .next_at()
            .unwrap_or(end)
            .min(now.saturating_add(TICK))
            .min(end)
            .max(now);
        engine.world.net.run_for(until.since(now));
        engine.read_desks();
        while let Some(task) = engine.agenda.pop_due(until) {
            engine.perform(until, task, &mut rng);
        }
        if until >= next_day {
            day += 1;
            next_day = next_day.saturating_add(Duration::from_secs(86_400));
            if day == days {
                phases.arrivals = wall.elapsed() - phases.setup;
                phases.arrivals_sealed = engine.world.net.nodes().iter().map(|n| n.sealed).sum();
            }
            progress(&Progress {
                day,
                days: days + TAIL_DAYS,
                started: engine.ledger.cases.len(),
                concluded: engine
                    .ledger
                    .cases
                    .iter()
                    .filter(|c| c.concluded.is_some())
                    .count(),
                wall: wall.elapsed(),
            });
        }
    }
    let net = &engine.world.net;
    // A frame over its limit is a protocol bug, never a figure.
    if let Some(v) = net.violations().first() {
        return Err(SimError::Frame(v.clone()));
    }
    let revocations = (engine.revoked.iter())
        .map(|r| r.spread(scenario, &engine.world, &engine.ledger, start))
        .collect();
    Ok(Outcome {
        revocations,
        relayed: (0..net.len()).map(|i| net.node(i).relayed).collect(),
        sealed: net.nodes().iter().map(|n| n.sealed).sum(),
        bytes: (0..net.len()).map(|i| net.stats(i).bytes).collect(),
        messages_lost: net.total().lost,
        start,
        end,
        wall: wall.elapsed(),
        ledger: engine.ledger,
        phases,
    })
}

fn actor(role: Role) -> Actor<'static> {
    let user = match role {
        Role::Physician => "attending physician",
        Role::Coordinator => "telemedicine coordinator",
        Role::Consultant => "consultant on duty",
        Role::Operator => "operator",
    };
    Actor { role, user }
}

impl Engine<'_> {
    /// Hands what the desks reported to the ledger and the clinicians, in
    /// the order it happened across sites (an escalation before the
    /// escalated request's arrival).
    fn read_desks(&mut self) {
        let mut reports = Vec::new();
        for i in self.world.net.take_driven() {
            if self.world.net.node(i).events.is_empty() {
                continue;
            }
            let events = std::mem::take(&mut self.world.net.node_mut(i).events);
            reports.extend(events.into_iter().map(|(at, e)| (at, i, e)));
        }
        reports.sort_by_key(|(at, _, _)| *at);
        for (at, site, event) in reports {
            self.on_event(site, at, event);
        }
    }

    fn on_event(&mut self, site: usize, at: Timestamp, event: desk::Event) {
        match event {
            desk::Event::Updated { id, status } => self.on_update(site, at, id, status),
            desk::Event::Escalated {
                from,
                to: Some((next, _)),
            } => self.ledger.escalated(&from, next, at),
            desk::Event::Forged { .. } => self.ledger.forged += 1,
            desk::Event::Escalated { to: None, .. }
            | desk::Event::StepRefused { .. }
            | desk::Event::Deadline { .. } => {}
        }
    }

    fn on_update(&mut self, site: usize, at: Timestamp, id: ConsultationId, status: Status) {
        let me = self.world.ids[site];
        let Some(case) = self.world.net.node(site).desk().case(&id) else {
            return;
        };
        let request = &case.consultation.request;
        let consulting = request.consultant == me;
        match status {
            // The first report of a request on the consultant's desk; an
            // early cancel can make it arrive as cancelled already.
            _ if consulting => {
                let due = Desk::deadline(request, self.directory(site)).map(|d| d.due);
                let (specialty, urgency) = (request.specialty, request.urgency);
                let first = self.ledger.arrived(&id, site, at);
                if !first || status != Status::Requested {
                    return;
                }
                match self.clinic.plan(at, site, specialty, urgency, due) {
                    Plan::Answer { accept, conclude } => {
                        self.agenda.add(accept, Task::Accept { org: site, id });
                        self.agenda.add(conclude, Task::Conclude { org: site, id });
                    }
                    Plan::Decline { at } => self.agenda.add(at, Task::Decline { org: site, id }),
                }
            }
            Status::Completed if !consulting => {
                let by = self.world.index.get(&request.consultant).copied();
                if by.is_some_and(|by| self.ledger.concluded(&id, by, at)) {
                    let when = self.clinic.acknowledge_at(at);
                    self.agenda.add(when, Task::Acknowledge { org: site, id });
                }
            }
            Status::Failed if !consulting => self.ledger.failed(&id),
            _ => {}
        }
    }

    fn directory(&self, site: usize) -> &konsilium_protocol::directory::Directory {
        self.world.directory(site)
    }

    fn perform(&mut self, now: Timestamp, task: Task, rng: &mut SimRng) {
        match task {
            Task::Ask {
                requester,
                specialty,
                urgency,
                level,
                burst,
            } => self.ask(now, requester, specialty, urgency, level, burst),
            Task::Accept { org, id } => {
                self.act(now, org, id, Role::Coordinator, Action::Accept);
            }
            Task::Decline { org, id } => {
                let reason = "every consultant is booked past the deadline".into();
                let action = Action::Reject {
                    reason,
                    forward: true,
                };
                if self.act(now, org, id, Role::Coordinator, action) {
                    self.ledger.declined(org, &id);
                }
            }
            Task::Conclude { org, id } => self.conclude(now, org, id),
            Task::Acknowledge { org, id } => {
                if self.act(now, org, id, Role::Physician, Action::Acknowledge) {
                    self.ledger.acknowledged(&id, now);
                }
            }
            Task::FaultStart(i) => self.fault(now, i, true, rng),
            Task::FaultEnd(i) => self.fault(now, i, false, rng),
        }
    }

    /// A clinician's step; false when the desk refused it.
    fn act(
        &mut self,
        now: Timestamp,
        org: usize,
        id: ConsultationId,
        role: Role,
        action: Action,
    ) -> bool {
        let site = self.world.net.node_mut(org);
        let done = site.act(now, id, actor(role), action, None).is_ok();
        if !done {
            self.ledger.steps_refused += 1;
        }
        done
    }

    fn conclude(&mut self, now: Timestamp, org: usize, id: ConsultationId) {
        let by = &self.world.orgs[org];
        let signed = Conclusion {
            consultation: id,
            consultant_org: by.id(),
            authors: vec!["consultant on duty".into()],
            diagnosis: "as discussed".into(),
            recommendations: "treatment as per the conclusion".into(),
            treatment_plan: "continue at the requesting hospital".into(),
            further_studies: "none".into(),
            attachments: vec![],
            issued_at: now,
        }
        .sign(&by.identity);
        let Ok(conclusion) = signed else {
            self.ledger.steps_refused += 1;
            return;
        };
        let file = ConclusionFile {
            conclusion,
            chain: by.chain.clone(),
        };
        let action = Action::Conclude {
            conclusion: file.conclusion.content_hash(),
        };
        let site = self.world.net.node_mut(org);
        if site
            .act(now, id, actor(Role::Consultant), action, Some(file))
            .is_err()
        {
            self.ledger.steps_refused += 1;
        }
    }

    fn ask(
        &mut self,
        now: Timestamp,
        requester: usize,
        specialty: Specialty,
        urgency: Urgency,
        level: OrgLevel,
        burst: bool,
    ) {
        let me = self.world.ids[requester];
        let region = self.world.orgs[requester].region.clone();
        let wanted = RouteRequest {
            specialty,
            min_level: level,
            urgency,
            region: Some(region),
            exclude: [me].into(),
            // The node routes a new case by its package's random id; the
            // model draws its stand-in from what is fixed by the seed.
            case: case_key(requester, now, self.ledger.cases.len()),
        };
        let best = route::best(self.directory(requester), &wanted, now).map(|c| c.org);
        let Some(consultant) = best else {
            self.ledger.unroutable += 1;
            return;
        };
        let consent = match urgency {
            Urgency::Emergency => Consent::EmergencyOverride {
                reason: "life-threatening, the patient cannot consent".into(),
            },
            _ => Consent::Given {
                by: "the patient".into(),
                at: now,
                method: ConsentMethod::Written,
                document: None,
            },
        };
        let site = self.world.net.node_mut(requester);
        let Ok(id) = site.ask(now, consultant, urgency, consent, specialty) else {
            self.ledger.steps_refused += 1;
            return;
        };
        let due = self
            .world
            .net
            .node(requester)
            .desk()
            .case(&id)
            .and_then(|c| Desk::deadline(&c.consultation.request, self.directory(requester)))
            .map(|d| d.due);
        let first_consultant = self.world.index.get(&consultant).copied().unwrap_or(0);
        self.ledger.open(
            id,
            Case {
                urgency,
                specialty,
                requester,
                level,
                burst,
                created: now,
                due,
                first_consultant,
                arrived: None,
                concluded: None,
                concluded_by: None,
                acknowledged: None,
                escalations: 0,
                declines: 0,
                failed: false,
            },
        );
    }

    fn fault(&mut self, now: Timestamp, i: usize, starts: bool, rng: &mut SimRng) {
        let fault = self.agenda.fault(i).clone();
        let net = &mut self.world.net;
        match fault.kind {
            FaultKind::Down { org } => {
                if starts {
                    self.down[org] += 1;
                    net.set_online(org, false);
                } else {
                    self.down[org] = self.down[org].saturating_sub(1);
                    if self.down[org] == 0 {
                        net.set_online(org, true);
                        self.world.reconnect(self.scenario, org);
                    }
                }
            }
            FaultKind::RegionCut { region } => {
                if starts {
                    let sides: Vec<usize> = (self.scenario.orgs.iter())
                        .map(|o| usize::from(o.region == region))
                        .collect();
                    net.partition(move |i| sides[i]);
                } else {
                    net.heal();
                }
            }
            FaultKind::Loss { loss } => net.set_default_loss(if starts { loss } else { 0.0 }),
            FaultKind::Unavailable { org } => {
                let until = starts.then(|| now.saturating_add(fault.lasts));
                self.clinic.set_unavailable(org, until);
            }
            FaultKind::EmergencyBurst { count, specialty } if starts => {
                for _ in 0..count {
                    let at = now.saturating_add(fault.lasts.mul_f64(rng.unit()));
                    let requester = self.agenda.requester(rng);
                    self.agenda.add(
                        at,
                        Task::Ask {
                            requester,
                            specialty,
                            urgency: Urgency::Emergency,
                            level: OrgLevel::District,
                            burst: true,
                        },
                    );
                }
            }
            FaultKind::Revoked { org } if starts => self.revoke(now, org),
            FaultKind::EmergencyBurst { .. }
            | FaultKind::Churn { .. }
            | FaultKind::Revoked { .. } => {}
        }
    }
}

impl Engine<'_> {
    /// The issuer's next list, put in force by one operator.
    fn revoke(&mut self, now: Timestamp, org: usize) {
        let Some(notice) = self.world.fed.revoke(&self.world.orgs[org], now) else {
            return;
        };
        let Ok(list) = notice.list.decode_unverified() else {
            return;
        };
        let handed_to = revocation::operator_site(self.scenario, org);
        let site = self.world.net.node_mut(handed_to).org_node_mut();
        if site.revoke(now, vec![notice]).is_ok() {
            self.revoked.push(revocation::Revoked {
                org,
                at: now,
                issuer: list.issuer,
                sequence: list.sequence,
                handed_to,
            });
        }
    }
}

fn case_key(requester: usize, now: Timestamp, count: usize) -> [u8; 16] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(requester as u64).to_le_bytes());
    hasher.update(&now.unix_millis().to_le_bytes());
    hasher.update(&(count as u64).to_le_bytes());
    let hash = hasher.finalize();
    std::array::from_fn(|i| hash.as_bytes()[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weeks_run_is_projected_by_its_days_of_arrivals_alone() {
        let phases = Phases {
            setup: Duration::from_secs(5),
            arrivals: Duration::from_secs(7),
            arrivals_sealed: 700,
        };
        // A second of tail after them, which sealed 30 conclusions.
        let year = phases.year(7, Duration::from_secs(13), 730);
        assert_eq!(year.seconds, 5.0 + 365.0 + 1.0);
        assert_eq!(year.packages, 36_500.0 + 30.0);
        // A run of a whole year's arrivals is its own figure.
        let whole = Phases {
            arrivals: Duration::from_secs(365),
            ..phases
        };
        let year = whole.year(365, Duration::from_secs(371), 36_530);
        assert_eq!((year.seconds, year.packages), (371.0, 36_530.0));
    }
}
