//! The workflow: the Task with its statuses and notes, the video
//! consilium's Appointment, and a Communication per note.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    /// The step that ended the consultation, when it has ended.
    pub(super) fn final_step(&self) -> Option<&Step<'a>> {
        if !self.r.consultation.status.is_final() {
            return None;
        }
        self.steps.iter().rev().find(|s| {
            matches!(
                s.t.action,
                Action::Conclude { .. }
                    | Action::Reject { .. }
                    | Action::Cancel { .. }
                    | Action::Fail { .. }
            )
        })
    }

    pub(super) fn actor_label(&self, t: &Transition) -> String {
        let req = &self.r.consultation.request;
        let org = if t.actor == req.requester {
            fhir_string(self.r.requester_name)
        } else if t.actor == req.consultant {
            fhir_string(self.r.consultant_name)
        } else {
            None
        }
        .unwrap_or_else(|| t.actor.to_string());
        match fhir_string(&t.user) {
            Some(user) => format!("{user} ({}, {org})", t.role),
            None => format!("{} ({org})", t.role),
        }
    }

    pub(super) fn task(&self, concluded: bool, notes: &[(String, Value)]) -> Value {
        let c = self.r.consultation;
        let req = &c.request;
        let last = self.steps.last();
        let business_status = last.map(|s| {
            let (code, display) = action_code(&s.t.action);
            json!({"coding": [coding(ACTION_SYSTEM, &code, display)], "text": display})
        });
        let final_step = self.final_step();
        let status_reason = final_step
            .filter(|s| !matches!(s.t.action, Action::Conclude { .. }))
            .and_then(|s| action_text(&s.t.action))
            .map(text_concept);
        let started = self
            .steps
            .iter()
            .find(|s| matches!(s.t.action, Action::Start))
            .map(|s| s.t.at);
        let ended = final_step.map(|s| s.t.at);
        let started = started.filter(|start| ended.is_none_or(|end| *start <= end));
        let execution = json!({"start": started.map(instant), "end": ended.map(instant)});
        let last_modified = last.map_or(req.created, |s| s.t.at.max(req.created));
        let restriction = self
            .r
            .deadline
            .map(|d| json!({"period": {"start": instant(d.requested), "end": instant(d.due)}}));
        let first_response = self
            .r
            .deadline
            .and_then(|d| d.first_response_due)
            .map(|due| {
                vec![json!({
                    "type": {
                        "coding": [coding(TASK_INPUT_SYSTEM, "first-response-due",
                            "First response due (emergency)")],
                    },
                    "valueInstant": instant(due),
                })]
            });
        let task_notes: Vec<Value> = self
            .steps
            .iter()
            .filter(|s| !matches!(s.t.action, Action::Note { .. }))
            .filter_map(|s| {
                let text = fhir_string(action_text(&s.t.action)?)?;
                let (_, display) = action_code(&s.t.action);
                Some(json!({
                    "authorString": self.actor_label(&s.t),
                    "time": instant(s.t.at),
                    "text": format!("{display}: {text}"),
                }))
            })
            .collect();
        let mut outputs: Vec<Value> = Vec::new();
        if concluded {
            outputs.push(json!({
                "type": concept(LOINC, "11488-4", "Consult note"),
                "valueReference": self.reference(&self.report),
            }));
        }
        for (id, _) in notes {
            outputs.push(json!({
                "type": {"text": "Note or oral conclusion"},
                "valueReference": self.reference(id),
            }));
        }
        json!({
            "resourceType": "Task",
            "identifier": [self.consultation_identifier()],
            "basedOn": [self.reference(&self.service_request)],
            "status": c.status.fhir_code(),
            "statusReason": status_reason,
            "businessStatus": business_status,
            "intent": "order",
            "priority": priority_code(req.urgency),
            "code": concept(
                "http://hl7.org/fhir/CodeSystem/task-code",
                "fulfill",
                "Fulfill the focal request",
            ),
            "description": format!(
                "Teleconsultation in {} requested by {}",
                req.specialty.name(Lang::En),
                fhir_string(self.r.requester_name).unwrap_or_else(|| req.requester.to_string()),
            ),
            "focus": self.reference(&self.service_request),
            "for": self.patient(),
            "executionPeriod": execution,
            "authoredOn": instant(req.created),
            "lastModified": instant(last_modified),
            "requester": self.org_ref(&req.requester),
            "owner": self.org_ref(&req.consultant),
            "restriction": restriction,
            "note": task_notes,
            "input": first_response,
            "output": outputs,
        })
    }

    pub(super) fn appointment(&self) -> Option<Value> {
        let c = self.r.consultation;
        let req = &c.request;
        let status = appointment_status(&c.appointment, c.status)?;
        // Details the current state no longer holds come from the history:
        // when the times were proposed, and who cancelled, and why.
        let mut proposed_at = None;
        let mut proposed: Vec<Slot> = Vec::new();
        let mut confirmed: Option<Slot> = None;
        let mut cancelled: Option<(&str, bool)> = None;
        for s in &self.steps {
            match &s.t.action {
                Action::ProposeSlots { slots } => {
                    proposed_at = Some(s.t.at);
                    proposed.clone_from(slots);
                    confirmed = None;
                    cancelled = None;
                }
                Action::ConfirmSlot { slot } => confirmed = Some(*slot),
                Action::CancelAppointment { reason } => {
                    cancelled = Some((reason, s.t.actor == req.requester));
                }
                _ => {}
            }
        }
        match &c.appointment {
            Appointment::Proposed(slots) => {
                proposed.clone_from(slots);
                confirmed = None;
            }
            Appointment::Confirmed(slot) => confirmed = Some(*slot),
            _ => {}
        }
        let cancel_reason = if status == "cancelled" {
            cancelled
                .and_then(|(reason, _)| fhir_string(reason))
                .or_else(|| {
                    self.final_step()
                        .and_then(|s| action_text(&s.t.action))
                        .and_then(fhir_string)
                })
                .or_else(|| Some("The consultation ended".into()))
        } else {
            None
        };
        let (requesting, consulting) = match (status, cancelled) {
            ("proposed", _) => ("needs-action", "accepted"),
            ("booked", _) => ("accepted", "accepted"),
            (_, Some((_, true))) => ("declined", "accepted"),
            (_, Some((_, false))) => (
                if confirmed.is_some() {
                    "accepted"
                } else {
                    "needs-action"
                },
                "declined",
            ),
            _ => (
                if confirmed.is_some() {
                    "accepted"
                } else {
                    "needs-action"
                },
                "accepted",
            ),
        };
        let (start, end, requested) = match confirmed {
            Some(slot) => (Some(instant(slot.start)), Some(instant(slot.end)), vec![]),
            None => (None, None, proposed.iter().map(period).collect()),
        };
        Some(json!({
            "resourceType": "Appointment",
            "identifier": [self.consultation_identifier()],
            "status": status,
            "cancelationReason": cancel_reason.map(|r| json!({"text": r})),
            "serviceType": [{"text": "Video consilium (telemedicine consultation)"}],
            "specialty": [specialty_concept(req.specialty)],
            "description": format!(
                "Video consilium in {} for Konsilium consultation {}",
                req.specialty.name(Lang::En),
                self.cid_hex(),
            ),
            "start": start,
            "end": end,
            "created": proposed_at.map(instant),
            "basedOn": [self.reference(&self.service_request)],
            "participant": [
                {
                    "type": [concept(PARTICIPATION_TYPE, "CON", "consultant")],
                    "required": "required",
                    "status": consulting,
                },
                {
                    "type": [concept(PARTICIPATION_TYPE, "REF", "referrer")],
                    "actor": {
                        "reference": urn(&self.physician),
                        "type": "PractitionerRole",
                        "display": fhir_string(&req.physician),
                    },
                    "required": "required",
                    "status": requesting,
                },
                {
                    "actor": self.patient(),
                    "required": "required",
                    "status": requesting,
                },
            ],
            "requestedPeriod": requested,
        }))
    }

    /// One Communication per note, with its resource id.
    pub(super) fn communications(&self) -> Vec<(String, Value)> {
        let req = &self.r.consultation.request;
        self.steps
            .iter()
            .filter_map(|s| {
                let Action::Note { text } = &s.t.action else {
                    return None;
                };
                let id = stable_uuid(&[&self.cid.0, b"communication", &s.t.seq.to_le_bytes()]);
                let recipient = if s.t.actor == req.requester {
                    req.consultant
                } else {
                    req.requester
                };
                let communication = json!({
                    "resourceType": "Communication",
                    "basedOn": [self.reference(&self.service_request)],
                    "partOf": [self.reference(&self.task)],
                    "status": "completed",
                    "category": [{"text": "Note or oral conclusion"}],
                    "priority": priority_code(req.urgency),
                    "subject": self.patient(),
                    "sent": instant(s.t.at),
                    "recipient": [self.org_ref(&recipient)],
                    "sender": self.org_ref(&s.t.actor),
                    "payload": [{
                        "contentString": fhir_string(text).unwrap_or_else(|| "(empty note)".into()),
                    }],
                    "note": [{
                        "authorString": self.actor_label(&s.t),
                        "time": instant(s.t.at),
                        "text": format!("Step {} of the signed workflow history", s.t.seq),
                    }],
                });
                Some((id, communication))
            })
            .collect()
    }
}
