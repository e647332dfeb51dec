//! Escalation: a consultation whose consultant did not answer in time, or
//! declined with "forward", is closed and asked of the next candidate by
//! the driver; with no one left it fails.

use super::*;

impl Desk {
    /// The driver opened `to` for the escalation of `from` (and sent it),
    /// or found it could not: `None` records that no one was left.
    pub fn handle_escalated(
        &mut self,
        now: Timestamp,
        from: ConsultationId,
        to: Option<ConsultationId>,
        directory: &Directory,
    ) {
        let Some(case) = self.cases.get_mut(&from) else {
            return;
        };
        case.escalated_to = Some(to.unwrap_or(from));
        let consultant = to
            .and_then(|t| self.cases.get(&t))
            .map(|c| c.consultation.request.consultant);
        self.out.push_back(Output::Persist {
            id: from,
            notes: Vec::new(),
        });
        self.out.push_back(Output::Event(Event::Escalated {
            from,
            to: to.zip(consultant),
        }));
        self.watch(now, from, directory);
    }

    /// An escalation could not be carried out now (no route yet, a disk
    /// error): asked for again after the configured delay. The consultation
    /// it replaces is already closed, so only the desk remembers it is due.
    pub fn retry_escalation(&mut self, now: Timestamp, id: ConsultationId, reason: &'static str) {
        let again = now.saturating_add(self.config.escalation_retry);
        self.retries.insert(id, (again, reason));
    }

    /// Requesting side: the next candidate (same specialty, same or higher
    /// level, never one already asked) gets the case; the unanswered
    /// consultation is cancelled, or failed when no one is left.
    pub(super) fn escalate(
        &mut self,
        now: Timestamp,
        id: ConsultationId,
        reason: &'static str,
        directory: &Directory,
    ) {
        let Some(case) = self.cases.get(&id) else {
            return;
        };
        let request = case.consultation.request.clone();
        let final_status = case.consultation.status.is_final();
        // Everyone asked so far, oldest first, following the escalation links back.
        let mut tried = vec![request.consultant];
        let mut from = request.escalated_from;
        while let Some(prev) = from.and_then(|p| self.cases.get(&p)) {
            tried.insert(0, prev.consultation.request.consultant);
            from = prev.consultation.request.escalated_from;
        }
        tried.insert(0, self.me);
        let original = RouteRequest {
            specialty: request.specialty,
            min_level: crate::cert::OrgLevel::District,
            urgency: request.urgency,
            region: Some(self.region.clone()),
            exclude: [self.me].into(),
            case: id.0,
        };
        let next = route::escalate(directory, &original, &tried, now).map(|b| b.org);
        if !final_status {
            let action = match next {
                Some(_) => Action::Cancel {
                    reason: format!("escalated: {reason}"),
                },
                None => Action::Fail {
                    reason: format!("{reason}; no one left to escalate to"),
                },
            };
            if let Err(e) = self.act(now, id, ESCALATION, action, None, directory) {
                if let DeskError::Workflow(reason) = e {
                    self.out
                        .push_back(Output::Event(Event::StepRefused { id, reason }));
                }
                self.retry_escalation(now, id, reason);
                return;
            }
        }
        match next {
            Some(to) => self.out.push_back(Output::Escalate {
                from: id,
                to,
                reason,
            }),
            None => self.handle_escalated(now, id, None, directory),
        }
    }
}
