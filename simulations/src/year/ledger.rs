//! What happened to each patient's consultation, read from what the sites'
//! desks reported: a consultation escalated to another organization stays
//! one case, timed from the first request, because the patient's deadline
//! does not restart when the consultant changes.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::ConsultationId;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub urgency: Urgency,
    pub specialty: Specialty,
    pub requester: usize,
    /// The level asked for at the start.
    pub level: OrgLevel,
    /// Part of a burst of emergencies (a fault), not the ordinary stream.
    pub burst: bool,
    pub created: Timestamp,
    /// When the conclusion is late, by the first consultant's calendar.
    pub due: Option<Timestamp>,
    pub first_consultant: usize,
    /// When the first request reached the first consultant's desk.
    pub arrived: Option<Timestamp>,
    /// When the conclusion reached the requester's desk.
    pub concluded: Option<Timestamp>,
    pub concluded_by: Option<usize>,
    pub acknowledged: Option<Timestamp>,
    pub escalations: u32,
    pub declines: u32,
    /// Failed: nobody was left to ask.
    pub failed: bool,
}

impl Case {
    pub fn in_time(&self) -> bool {
        match (self.concluded, self.due) {
            (Some(c), Some(d)) => c < d,
            _ => false,
        }
    }

    pub fn time_to_conclusion(&self) -> Option<Duration> {
        self.concluded.map(|c| c.since(self.created))
    }
}

/// What one organization carried.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Load {
    pub asked: u32,
    pub received: u32,
    pub concluded: u32,
    pub declined: u32,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub cases: Vec<Case>,
    /// Every consultation id (escalations included) to its case.
    ids: HashMap<ConsultationId, usize>,
    pub load: Vec<Load>,
    /// From a request's creation to its arrival at the consultant's desk,
    /// escalated requests included.
    pub deliveries: Vec<Duration>,
    /// Requests for which the directory named no consultant.
    pub unroutable: u32,
    /// Steps the clinicians tried that the desk refused (the case had
    /// moved on: cancelled by an escalation, say).
    pub steps_refused: u32,
    /// Steps or conclusions a desk judged forged: must stay 0.
    pub forged: u32,
    /// Requests sent and not yet arrived, by id, for delivery times.
    sent: HashMap<ConsultationId, Timestamp>,
    arrivals: HashSet<ConsultationId>,
    /// Requests that reached a desk before their sending was read, with
    /// when. Desks' reports are read in time order, but the model's clock
    /// counts whole milliseconds: over a fast link an escalated request
    /// arrives within the millisecond its escalation is reported in, and
    /// the arrival may be read first.
    early: HashMap<ConsultationId, Timestamp>,
}

impl Ledger {
    pub fn new(orgs: usize) -> Self {
        Self {
            load: vec![Load::default(); orgs],
            ..Default::default()
        }
    }

    pub fn open(&mut self, id: ConsultationId, case: Case) {
        self.load[case.requester].asked += 1;
        self.sending(id, case.created);
        self.ids.insert(id, self.cases.len());
        self.cases.push(case);
    }

    pub fn escalated(&mut self, from: &ConsultationId, to: ConsultationId, at: Timestamp) {
        if let Some(&c) = self.ids.get(from) {
            self.cases[c].escalations += 1;
            self.ids.insert(to, c);
            self.sending(to, at);
        }
    }

    fn sending(&mut self, id: ConsultationId, at: Timestamp) {
        match self.early.remove(&id) {
            Some(arrived) => self.deliveries.push(arrived.since(at)),
            None => {
                self.sent.insert(id, at);
            }
        }
    }

    /// A request reached its consultant's desk; false when it had already.
    pub fn arrived(&mut self, id: &ConsultationId, org: usize, at: Timestamp) -> bool {
        if !self.arrivals.insert(*id) {
            return false;
        }
        self.load[org].received += 1;
        match self.sent.remove(id) {
            Some(sent) => self.deliveries.push(at.since(sent)),
            None => {
                self.early.insert(*id, at);
            }
        }
        if let Some(&c) = self.ids.get(id) {
            self.cases[c].arrived.get_or_insert(at);
        }
        true
    }

    pub fn declined(&mut self, org: usize, id: &ConsultationId) {
        self.load[org].declined += 1;
        if let Some(&c) = self.ids.get(id) {
            self.cases[c].declines += 1;
        }
    }

    /// The conclusion reached the requester; false when it was known
    /// already (the desk reports the status again on later steps).
    pub fn concluded(&mut self, id: &ConsultationId, by: usize, at: Timestamp) -> bool {
        let Some(&c) = self.ids.get(id) else {
            return false;
        };
        let case = &mut self.cases[c];
        if case.concluded.is_some() {
            return false;
        }
        case.concluded = Some(at);
        case.concluded_by = Some(by);
        self.load[by].concluded += 1;
        true
    }

    pub fn acknowledged(&mut self, id: &ConsultationId, at: Timestamp) {
        if let Some(&c) = self.ids.get(id) {
            self.cases[c].acknowledged.get_or_insert(at);
        }
    }

    pub fn failed(&mut self, id: &ConsultationId) {
        if let Some(&c) = self.ids.get(id) {
            let case = &mut self.cases[c];
            case.failed = case.concluded.is_none();
        }
    }

    /// Requests never delivered, by the time the run ended.
    pub fn undelivered(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(created: Timestamp) -> Case {
        Case {
            urgency: Urgency::Emergency,
            specialty: Specialty::Cardiology,
            requester: 0,
            level: OrgLevel::Regional,
            burst: false,
            created,
            due: None,
            first_consultant: 1,
            arrived: None,
            concluded: None,
            concluded_by: None,
            acknowledged: None,
            escalations: 0,
            declines: 0,
            failed: false,
        }
    }

    #[test]
    fn an_escalated_request_read_as_arrived_before_its_escalation_is_delivered() {
        let at = |ms: u64| Timestamp::from_unix_millis(1_000_000 + ms);
        let (first, second) = (ConsultationId([1; 16]), ConsultationId([2; 16]));
        let mut ledger = Ledger::new(3);
        ledger.open(first, case(at(0)));
        assert!(ledger.arrived(&first, 1, at(5)));
        // The next consultant's report of the escalated request is read
        // before the requester's report of the escalation, same millisecond.
        assert!(ledger.arrived(&second, 2, at(900)));
        ledger.escalated(&first, second, at(900));
        assert_eq!(ledger.undelivered(), 0);
        assert_eq!(
            ledger.deliveries,
            vec![Duration::from_millis(5), Duration::ZERO]
        );
        assert_eq!(ledger.cases[0].escalations, 1);
    }

    #[test]
    fn a_request_that_never_arrives_is_undelivered() {
        let at = |ms: u64| Timestamp::from_unix_millis(1_000_000 + ms);
        let mut ledger = Ledger::new(2);
        ledger.open(ConsultationId([1; 16]), case(at(0)));
        ledger.escalated(&ConsultationId([1; 16]), ConsultationId([2; 16]), at(7));
        assert_eq!(ledger.undelivered(), 2);
        assert!(ledger.deliveries.is_empty());
    }
}
