//! Export: one consultation as a FHIR R4 Bundle of type `collection`. Here the
//! Bundle is assembled; each group of resources has its own module.

mod audit;
mod conclusion;
mod documents;
mod parties;
mod provenance;
mod request;
mod workflow;

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
    let conclusion = signed.open_by(request.consultant.checked_key()).ok()?;
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
}
