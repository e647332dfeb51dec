//! Export: one consultation as a FHIR R4 Bundle of type `collection`.

use super::*;

/// Exports one consultation as a FHIR R4 Bundle of type `collection`.
pub fn export_bundle(record: &ConsultationRecord<'_>) -> Value {
    let mut bundle = Exporter::new(record).bundle();
    prune(&mut bundle);
    bundle
}

/// The record's conclusion, if it is signed by the consulting organization
/// and is this consultation's (and the one the workflow concluded with).
fn verified_conclusion<'a>(
    r: &ConsultationRecord<'a>,
) -> Option<(Conclusion, &'a Signed<Conclusion>)> {
    let signed = r.conclusion?;
    let request = &r.consultation.request;
    let conclusion = signed.open(&request.consultant.verifying_key()).ok()?;
    let concluded = r.consultation.conclusion;
    let ok = conclusion.consultation == request.id
        && conclusion.consultant_org == request.consultant
        && concluded.is_none_or(|h| h == signed.content_hash());
    ok.then_some((conclusion, signed))
}

struct Step<'a> {
    t: Transition,
    signed: &'a Signed<Transition>,
}

struct Exporter<'r, 'a> {
    r: &'r ConsultationRecord<'a>,
    cid: ConsultationId,
    steps: Vec<Step<'a>>,
    requester_org: String,
    consultant_org: String,
    physician: String,
    service_request: String,
    consent: String,
    task: String,
    appointment: String,
    report: String,
    /// The signed conclusion, when there is one and it verifies.
    conclusion: Option<(Conclusion, &'a Signed<Conclusion>)>,
}

impl<'r, 'a> Exporter<'r, 'a> {
    fn new(r: &'r ConsultationRecord<'a>) -> Self {
        let c = r.consultation;
        let cid = c.id();
        let id = |kind: &str| stable_uuid(&[&cid.0, kind.as_bytes()]);
        let org = |o: &OrgId| stable_uuid(&[b"organization", o.as_bytes()]);
        // Steps were verified when applied; one that no longer decodes is
        // left out of the export rather than failing it.
        let steps = c
            .history
            .iter()
            .filter_map(|signed| signed.decode_unverified().ok().map(|t| Step { t, signed }))
            .collect();
        Self {
            r,
            cid,
            steps,
            requester_org: org(&c.request.requester),
            consultant_org: org(&c.request.consultant),
            physician: id("physician"),
            service_request: id("service-request"),
            consent: id("consent"),
            task: id("task"),
            appointment: id("appointment"),
            report: id("diagnostic-report"),
            conclusion: verified_conclusion(r),
        }
    }

    fn cid_hex(&self) -> String {
        self.cid.to_string()
    }

    fn consultation_identifier(&self) -> Value {
        json!({"system": CONSULTATION_SYSTEM, "value": self.cid_hex()})
    }

    fn patient(&self) -> Value {
        json!({
            "type": "Patient",
            "display": format!("The patient of Konsilium consultation {}", self.cid_hex()),
        })
    }

    fn org_ref(&self, org: &OrgId) -> Value {
        let req = &self.r.consultation.request;
        if *org == req.requester {
            json!({"reference": urn(&self.requester_org), "type": "Organization",
                   "display": fhir_string(self.r.requester_name)})
        } else if *org == req.consultant {
            json!({"reference": urn(&self.consultant_org), "type": "Organization",
                   "display": fhir_string(self.r.consultant_name)})
        } else {
            json!({"type": "Organization",
                   "identifier": {"system": ORG_SYSTEM, "value": org.to_string()}})
        }
    }

    fn reference(&self, id: &str) -> Value {
        json!({"reference": urn(id)})
    }

    fn last_time(&self) -> Timestamp {
        let c = self.r.consultation;
        let mut t = c.request.created;
        for s in &self.steps {
            t = t.max(s.t.at);
        }
        for e in self.r.journal {
            t = t.max(e.at);
        }
        if let Some((conclusion, _)) = &self.conclusion {
            t = t.max(conclusion.issued_at);
        }
        t
    }

    fn bundle(&self) -> Value {
        let mut entries = Vec::new();
        let mut push = |id: &str, mut resource: Value| {
            if let Some(map) = resource.as_object_mut() {
                map.insert("id".into(), Value::String(id.to_owned()));
            }
            entries.push(json!({"fullUrl": urn(id), "resource": resource}));
        };
        let req = &self.r.consultation.request;
        push(
            &self.requester_org,
            self.organization(&req.requester, self.r.requester_name),
        );
        if req.consultant != req.requester {
            push(
                &self.consultant_org,
                self.organization(&req.consultant, self.r.consultant_name),
            );
        }
        for person in self.people() {
            push(&person.practitioner_id, person.practitioner());
            let role = person.role_resource(self.org_ref(&person.org), &person.practitioner_id);
            push(&person.role_id, role);
        }
        push(&self.service_request, self.service_request());
        push(&self.consent, self.consent());
        for (i, file) in self.r.files.iter().enumerate() {
            push(&self.document(i), self.document_reference(file));
        }
        let notes = self.communications();
        push(&self.task, self.task(self.conclusion.is_some(), &notes));
        if let Some(appointment) = self.appointment() {
            push(&self.appointment, appointment);
        }
        for (id, communication) in &notes {
            push(id, communication.clone());
        }
        if let Some((conclusion, signed)) = &self.conclusion {
            push(&self.report, self.diagnostic_report(conclusion, signed));
            let id = stable_uuid(&[&self.cid.0, b"provenance-conclusion"]);
            push(&id, self.conclusion_provenance(conclusion, signed));
        }
        for step in &self.steps {
            let id = stable_uuid(&[&self.cid.0, b"provenance-step", &step.t.seq.to_le_bytes()]);
            push(&id, self.step_provenance(step));
        }
        let mut seen = HashSet::new();
        for entry in self.r.journal {
            let about = entry.action.consultation();
            if about.is_some_and(|id| id != self.cid.0) {
                continue;
            }
            let hash = entry.hash();
            if !seen.insert(hash) {
                continue;
            }
            let id = stable_uuid(&[&self.cid.0, b"audit-event", &hash]);
            push(&id, self.audit_event(entry));
        }
        json!({
            "resourceType": "Bundle",
            "id": stable_uuid(&[&self.cid.0, b"bundle"]),
            "identifier": self.consultation_identifier(),
            "type": "collection",
            "timestamp": instant(self.last_time()),
            "entry": entries,
        })
    }

    fn organization(&self, org: &OrgId, name: &str) -> Value {
        json!({
            "resourceType": "Organization",
            "identifier": [{"system": ORG_SYSTEM, "value": org.to_string()}],
            "active": true,
            "type": [concept(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
                "Healthcare Provider",
            )],
            "name": fhir_string(name),
        })
    }

    /// Who asked and who answered, each as a Practitioner with the
    /// PractitionerRole they acted in: the attending physician first, then
    /// everyone of the consulting organization who took a step or signed
    /// the conclusion, once per (name, role).
    fn people(&self) -> Vec<Person> {
        let req = &self.r.consultation.request;
        let mut people = vec![Person::new(
            self.cid,
            &req.physician,
            Role::Physician,
            req.requester,
        )];
        people[0].role_id.clone_from(&self.physician);
        let mut add = |name: &str, role: Role, org: OrgId| {
            let Some(name) = fhir_string(name) else {
                return;
            };
            if !people
                .iter()
                .any(|p| p.name == name && p.role == role && p.org == org)
            {
                people.push(Person::new(self.cid, &name, role, org));
            }
        };
        for step in &self.steps {
            if step.t.actor == req.consultant {
                add(&step.t.user, step.t.role, step.t.actor);
            }
        }
        if let Some((conclusion, _)) = &self.conclusion {
            for author in &conclusion.authors {
                add(author, Role::Consultant, req.consultant);
            }
        }
        people
    }

    /// The PractitionerRole of a consulting-side person, when exported.
    fn person_ref(&self, name: &str, role: Role) -> Value {
        let req = &self.r.consultation.request;
        match fhir_string(name) {
            Some(name) => {
                let person = Person::new(self.cid, &name, role, req.consultant);
                json!({"reference": urn(&person.role_id), "type": "PractitionerRole",
                       "display": name})
            }
            None => json!({"type": "Practitioner", "display": name}),
        }
    }

    fn service_request(&self) -> Value {
        let c = self.r.consultation;
        let req = &c.request;
        let replaces = req.escalated_from.map(|from| {
            vec![json!({
                "type": "ServiceRequest",
                "identifier": {"system": CONSULTATION_SYSTEM, "value": from.to_string()},
            })]
        });
        json!({
            "resourceType": "ServiceRequest",
            "identifier": [self.consultation_identifier()],
            "replaces": replaces,
            "status": service_request_status(c.status),
            "intent": "order",
            "category": [{
                "coding": [{"system": SNOMED, "code": "11429006"}],
                "text": "Consultation",
            }],
            "priority": priority_code(req.urgency),
            "code": specialty_concept(req.specialty),
            "subject": self.patient(),
            "authoredOn": instant(req.created),
            "requester": {
                "reference": urn(&self.physician),
                "type": "PractitionerRole",
                "display": fhir_string(&req.physician),
            },
            "performer": [self.org_ref(&req.consultant)],
            // The reason for referral is the case summary the physician
            // wrote; the questions for the consultant travel as the note.
            "reasonCode": fhir_string(&self.r.extract.summary).map(|t| vec![json!({"text": t})]),
            "note": fhir_string(&self.r.extract.questions).map(|t| vec![json!({"text": t})]),
            "supportingInfo": std::iter::once(self.reference(&self.consent))
                .chain((0..self.r.files.len()).map(|i| self.reference(&self.document(i))))
                .collect::<Vec<_>>(),
        })
    }

    fn document(&self, index: usize) -> String {
        stable_uuid(&[&self.cid.0, b"document", &(index as u64).to_le_bytes()])
    }

    /// A file of the case extract, where an import looks for it.
    fn document_reference(&self, file: &ExportedFile) -> Value {
        json!({
            "resourceType": "DocumentReference",
            "identifier": [{"system": BLOB_SYSTEM, "value": file.blob.hex()}],
            "status": "current",
            "subject": self.patient(),
            "date": instant(self.r.consultation.request.created),
            "description": file.info.title.as_deref().and_then(fhir_string),
            "content": [{
                "attachment": {
                    "contentType": file.info.content_type,
                    "title": file.info.title.as_deref().and_then(fhir_string),
                    "url": file.url,
                    // unsignedInt stops at 2^31 - 1; a larger size is left out.
                    "size": konsilium_protocol::seal::plaintext_len(file.blob.size)
                        .and_then(|n| i32::try_from(n).ok()),
                    "data": file.data.as_ref().map(|d| BASE64.encode(d)),
                },
            }],
            "context": {"related": [self.reference(&self.service_request)]},
        })
    }

    fn consent(&self) -> Value {
        let req = &self.r.consultation.request;
        let recipient = json!({
            "role": concept(PARTICIPATION_TYPE, "IRCP", "information recipient"),
            "reference": self.org_ref(&req.consultant),
        });
        let mut consent = json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": concept(
                "http://terminology.hl7.org/CodeSystem/consentscope",
                "patient-privacy",
                "Privacy Consent",
            ),
            "patient": self.patient(),
            "organization": [self.org_ref(&req.requester)],
        });
        let Some(map) = consent.as_object_mut() else {
            return consent;
        };
        match &req.consent {
            Consent::Given {
                by,
                at,
                method,
                document,
            } => {
                let (method_code, witness) = match method {
                    ConsentMethod::Written => ("written", None),
                    ConsentMethod::Electronic => ("electronic", None),
                    ConsentMethod::Oral { witness } => ("oral", fhir_string(witness)),
                };
                let mut extensions =
                    vec![json!({"url": CONSENT_METHOD_EXTENSION, "valueCode": method_code})];
                if let Some(witness) = witness {
                    extensions
                        .push(json!({"url": CONSENT_WITNESS_EXTENSION, "valueString": witness}));
                }
                map.insert("extension".into(), Value::Array(extensions));
                map.insert(
                    "category".into(),
                    json!([concept(LOINC, "59284-0", "Patient Consent")]),
                );
                map.insert("dateTime".into(), json!(instant(*at)));
                // A representative is typed so an import reads the role back;
                // nothing else about the giver is known or exported.
                let giver_type = by
                    .starts_with(&consent_given_by(&Giver::Representative, ""))
                    .then_some("RelatedPerson");
                map.insert(
                    "performer".into(),
                    json!([{"type": giver_type, "display": fhir_string(by)}]),
                );
                if let Some(hash) = document {
                    map.insert(
                        "sourceAttachment".into(),
                        json!({
                            "url": format!("{DOCUMENT_URL_PREFIX}{}", hex(hash)),
                            "title": "Signed consent form",
                        }),
                    );
                }
                map.insert(
                    "policyRule".into(),
                    concept(
                        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "OPTIN",
                        "opt-in",
                    ),
                );
                map.insert(
                    "provision".into(),
                    json!({
                        "type": "permit",
                        "actor": [recipient],
                        "purpose": [coding(ACT_REASON, "TREAT", "treatment")],
                    }),
                );
            }
            Consent::EmergencyOverride { reason } => {
                let reason = fhir_string(reason).unwrap_or_else(|| "(no reason given)".into());
                map.insert(
                    "extension".into(),
                    json!([{"url": OVERRIDE_REASON_EXTENSION, "valueString": reason}]),
                );
                map.insert(
                    "category".into(),
                    json!([{
                        "coding": [coding(CONSENT_BASIS_SYSTEM, "emergency-override",
                            "Emergency disclosure without consent")],
                        "text": "Emergency disclosure without the patient's consent",
                    }]),
                );
                map.insert("dateTime".into(), json!(instant(req.created)));
                map.insert(
                    "performer".into(),
                    json!([{
                        "reference": urn(&self.physician),
                        "type": "PractitionerRole",
                        "display": fhir_string(&req.physician),
                    }]),
                );
                map.insert(
                    "policyRule".into(),
                    json!({
                        "coding": [coding(CONSENT_BASIS_SYSTEM, "emergency-override",
                            "Emergency disclosure without consent")],
                        "text": "Emergency exception: the patient's consent could not be obtained",
                    }),
                );
                map.insert(
                    "provision".into(),
                    json!({
                        "type": "permit",
                        "actor": [recipient],
                        "purpose": [coding(ACT_REASON, "ETREAT", "Emergency Treatment")],
                    }),
                );
            }
        }
        consent
    }

    /// The step that ended the consultation, when it has ended.
    fn final_step(&self) -> Option<&Step<'a>> {
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

    fn actor_label(&self, t: &Transition) -> String {
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

    fn task(&self, concluded: bool, notes: &[(String, Value)]) -> Value {
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

    fn appointment(&self) -> Option<Value> {
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
    fn communications(&self) -> Vec<(String, Value)> {
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

    fn diagnostic_report(&self, conclusion: &Conclusion, signed: &Signed<Conclusion>) -> Value {
        let req = &self.r.consultation.request;
        let sections: Vec<String> = [
            ("Diagnosis", &conclusion.diagnosis),
            ("Recommendations", &conclusion.recommendations),
            ("Treatment plan", &conclusion.treatment_plan),
            ("Further studies", &conclusion.further_studies),
        ]
        .into_iter()
        .filter_map(|(heading, text)| fhir_string(text).map(|t| format!("{heading}:\n{t}")))
        .collect();
        let summary = sections.join("\n\n");
        let authors: Vec<String> = conclusion
            .authors
            .iter()
            .filter_map(|a| fhir_string(a))
            .collect();
        let document = format!(
            "Teleconsultation conclusion\nConsultation: {}\nSpecialty: {}\nIssued: {} by {}\nAuthors: {}\n\n{}\n",
            self.cid_hex(),
            req.specialty.name(Lang::En),
            instant(conclusion.issued_at),
            fhir_string(self.r.consultant_name).unwrap_or_else(|| req.consultant.to_string()),
            authors.join(", "),
            summary,
        );
        let mut forms = vec![json!({
            "contentType": "text/plain; charset=utf-8",
            "data": BASE64.encode(document.as_bytes()),
            "title": "Teleconsultation conclusion",
            "creation": instant(conclusion.issued_at),
        })];
        for (i, blob) in conclusion.attachments.iter().enumerate() {
            forms.push(json!({
                "url": format!("{BLOB_URL_PREFIX}{}", blob.hex()),
                // unsignedInt stops at 2^31 - 1; a larger size is left out.
                "size": i32::try_from(blob.size).ok(),
                "title": format!("Attachment {} (BLAKE3 {})", i + 1, blob.hex()),
            }));
        }
        let interpreters: Vec<Value> = authors
            .iter()
            .map(|a| self.person_ref(a, Role::Consultant))
            .collect();
        json!({
            "resourceType": "DiagnosticReport",
            "identifier": [{
                "system": CONCLUSION_SYSTEM,
                "value": hex(&signed.content_hash()),
            }],
            "basedOn": [self.reference(&self.service_request)],
            "status": "final",
            "code": {
                "coding": [coding(LOINC, "11488-4", "Consult note")],
                "text": "Teleconsultation conclusion",
            },
            "subject": self.patient(),
            "effectiveDateTime": instant(conclusion.issued_at),
            "issued": instant(conclusion.issued_at),
            "performer": [self.org_ref(&req.consultant)],
            "resultsInterpreter": interpreters,
            "conclusion": fhir_string(&summary),
            "presentedForm": forms,
        })
    }

    fn conclusion_provenance(&self, conclusion: &Conclusion, signed: &Signed<Conclusion>) -> Value {
        let org = self.org_ref(&conclusion.consultant_org);
        let mut agents: Vec<Value> = conclusion
            .authors
            .iter()
            .filter_map(|a| fhir_string(a))
            .map(|a| {
                json!({
                    "type": concept(
                        "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "author",
                        "Author",
                    ),
                    "role": [role_concept(Role::Consultant)],
                    "who": self.person_ref(&a, Role::Consultant),
                    "onBehalfOf": org.clone(),
                })
            })
            .collect();
        if agents.is_empty() {
            agents.push(json!({
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                ),
                "who": org.clone(),
            }));
        }
        json!({
            "resourceType": "Provenance",
            "target": [self.reference(&self.report)],
            "occurredDateTime": instant(conclusion.issued_at),
            "recorded": instant(conclusion.issued_at),
            "activity": concept(
                "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion",
                "LA",
                "legally authenticated",
            ),
            "agent": agents,
            "signature": [signature(
                org,
                conclusion.issued_at,
                signed.signature().to_bytes(),
                signed.signed_bytes(),
            )],
        })
    }

    fn step_provenance(&self, step: &Step<'_>) -> Value {
        let t = &step.t;
        let org = self.org_ref(&t.actor);
        let (code, display) = action_code(&t.action);
        // Consulting-side people are exported as PractitionerRoles; the
        // requesting side's users other than the physician are not.
        let consulting = t.actor == self.r.consultation.request.consultant;
        let who = match fhir_string(&t.user) {
            Some(user) if consulting => self.person_ref(&user, t.role),
            Some(user) => json!({"type": "Practitioner", "display": user}),
            None => org.clone(),
        };
        json!({
            "resourceType": "Provenance",
            "target": [self.reference(&self.task)],
            "occurredDateTime": instant(t.at),
            "recorded": instant(t.at),
            "reason": action_text(&t.action)
                .filter(|_| !matches!(t.action, Action::Note { .. }))
                .and_then(fhir_string)
                .map(|r| vec![json!({"text": r})]),
            "activity": concept(ACTION_SYSTEM, &code, display),
            "agent": [{
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "author",
                    "Author",
                ),
                "role": [role_concept(t.role)],
                "who": who,
                "onBehalfOf": org.clone(),
            }],
            "signature": [signature(
                org,
                t.at,
                step.signed.signature().to_bytes(),
                step.signed.signed_bytes(),
            )],
        })
    }

    fn audit_event(&self, entry: &Entry) -> Value {
        struct Kind {
            type_code: (&'static str, &'static str),
            subtype: Option<(&'static str, &'static str)>,
            action: &'static str,
            outcome: &'static str,
            journal: &'static str,
        }
        let kind = |type_code, subtype, action, outcome, journal| Kind {
            type_code,
            subtype,
            action,
            outcome,
            journal,
        };
        const RECORD: (&str, &str) = ("110110", "Patient Record");
        const LOGIN: (&str, &str) = ("110122", "Login");
        const AUTH: (&str, &str) = ("110114", "User Authentication");
        let k = match &entry.action {
            JournalAction::Create(_) => kind(RECORD, None, "C", "0", "create"),
            JournalAction::Send { .. } => kind(("110106", "Export"), None, "R", "0", "send"),
            JournalAction::Receive { .. } => kind(("110107", "Import"), None, "C", "0", "receive"),
            JournalAction::Open { .. } => kind(RECORD, None, "R", "0", "open"),
            JournalAction::Transition { .. } => kind(RECORD, None, "U", "0", "transition"),
            JournalAction::Conclusion { .. } => kind(RECORD, None, "C", "0", "conclusion"),
            JournalAction::ConsentOverride { .. } => kind(
                ("110113", "Security Alert"),
                Some(("110127", "Emergency Override Started")),
                "E",
                "0",
                "consent-override",
            ),
            JournalAction::FailedLogin { .. } => kind(AUTH, Some(LOGIN), "E", "4", "failed-login"),
            JournalAction::Login { .. } => kind(AUTH, Some(LOGIN), "E", "0", "login"),
        };
        let mut subtypes = Vec::new();
        if let Some((code, display)) = k.subtype {
            subtypes.push(coding(DCM, code, display));
        }
        subtypes.push(json!({"system": JOURNAL_SYSTEM, "code": k.journal}));
        let detail = |name: &str, value: &str| {
            fhir_string(value).map(|v| json!({"type": name, "valueString": v}))
        };
        let task_entity = |details: Vec<Option<Value>>| {
            json!({
                "what": self.reference(&self.task),
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "2",
                    "System Object",
                ),
                "detail": details,
            })
        };
        let package_entity = |package: &[u8]| {
            json!({
                "what": {
                    "type": "Binary",
                    "identifier": {"system": PACKAGE_SYSTEM, "value": hex(package)},
                },
                "type": coding(
                    "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "2",
                    "System Object",
                ),
            })
        };
        let mut purpose = None;
        let mut outcome_desc = None;
        let entities = match &entry.action {
            JournalAction::Create(_) | JournalAction::Open { .. } => vec![task_entity(vec![])],
            JournalAction::Send { package, .. } | JournalAction::Receive { package, .. } => {
                vec![task_entity(vec![]), package_entity(&package.0)]
            }
            JournalAction::Transition { from, to, .. } => {
                vec![task_entity(vec![detail("from", from), detail("to", to)])]
            }
            JournalAction::Conclusion { deadline_met, .. } => {
                if !deadline_met {
                    outcome_desc = Some("Conclusion delivered after the deadline");
                }
                vec![task_entity(vec![detail(
                    "deadline-met",
                    if *deadline_met { "true" } else { "false" },
                )])]
            }
            JournalAction::ConsentOverride { reason, .. } => {
                purpose = Some(vec![concept(ACT_REASON, "ETREAT", "Emergency Treatment")]);
                vec![json!({
                    "what": self.reference(&self.consent),
                    "type": coding(
                        "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                        "2",
                        "System Object",
                    ),
                    "detail": [detail("reason", reason)],
                })]
            }
            JournalAction::FailedLogin { .. } | JournalAction::Login { .. } => vec![],
        };
        let user = match &entry.action {
            JournalAction::FailedLogin { user } | JournalAction::Login { user } => {
                fhir_string(user)
            }
            _ => entry.actor.as_deref().and_then(fhir_string),
        };
        let agent = match user {
            Some(user) => json!({
                "role": entry.role.map(|r| vec![role_concept(r)]),
                "who": {"display": user.clone()},
                "name": user,
                "requestor": true,
            }),
            None => json!({
                "type": concept(DCM, "110150", "Application"),
                "role": entry.role.map(|r| vec![role_concept(r)]),
                "who": {"type": "Device", "display": "Konsilium node"},
                "requestor": false,
            }),
        };
        json!({
            "resourceType": "AuditEvent",
            "type": coding(DCM, k.type_code.0, k.type_code.1),
            "subtype": subtypes,
            "action": k.action,
            "recorded": instant(entry.at),
            "outcome": k.outcome,
            "outcomeDesc": outcome_desc,
            "purposeOfEvent": purpose,
            "agent": [agent],
            "source": {
                "site": format!("Konsilium journal, entry {}", entry.seq),
                "observer": {"type": "Device", "display": "Konsilium node"},
                "type": [coding(
                    "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "4",
                    "Application Server",
                )],
            },
            "entity": entities,
        })
    }
}

/// A practitioner who asked or answered, with the ids of their resources.
struct Person {
    name: String,
    role: Role,
    org: OrgId,
    practitioner_id: String,
    role_id: String,
}

impl Person {
    fn new(cid: ConsultationId, name: &str, role: Role, org: OrgId) -> Self {
        let key = |kind: &[u8]| {
            stable_uuid(&[
                &cid.0,
                kind,
                org.as_bytes(),
                role.as_str().as_bytes(),
                name.as_bytes(),
            ])
        };
        Self {
            name: name.to_owned(),
            role,
            org,
            practitioner_id: key(b"practitioner"),
            role_id: key(b"practitioner-role"),
        }
    }

    fn practitioner(&self) -> Value {
        json!({
            "resourceType": "Practitioner",
            "active": true,
            "name": [{"text": fhir_string(&self.name)}],
        })
    }

    fn role_resource(&self, organization: Value, practitioner_id: &str) -> Value {
        json!({
            "resourceType": "PractitionerRole",
            "active": true,
            "practitioner": {
                "reference": urn(practitioner_id),
                "type": "Practitioner",
                "display": fhir_string(&self.name),
            },
            "organization": organization,
            "code": [role_concept(self.role)],
        })
    }
}
