//! FHIR R4 (4.0.1) mapping for the hospital information systems on either
//! side of a consultation.
//!
//! # Export
//!
//! [`export_bundle`] turns everything a node knows about one consultation into
//! a Bundle of type `collection`. Not `document`: a document Bundle is one
//! attested clinical document led by a Composition, immutable once issued,
//! whereas this is a snapshot of a workflow that keeps changing (statuses,
//! appointments, audit trail) and that the receiving system files resource by
//! resource. The one attested document in it, the signed conclusion, is a
//! DiagnosticReport whose signature travels in a Provenance.
//!
//! Every resource has an id that is a UUID (version 8, RFC 9562) derived
//! with BLAKE3 from the consultation id and the resource's role, so exporting
//! the same consultation again yields the same ids and a receiving system can
//! update instead of duplicating. The two Organizations are derived from the
//! organization id instead, so one organization has one id in every export.
//! `fullUrl` is `urn:uuid:<id>` and every reference between resources uses
//! that same `urn:uuid:` form.
//!
//! | resource | what |
//! | --- | --- |
//! | Organization ×2 | requesting and consulting organization: name, identifier `urn:konsilium:org` = peer id |
//! | PractitionerRole | the attending physician at the requesting organization (the request's `requester`) |
//! | ServiceRequest | the request: specialty as SNOMED CT and Konsilium code, priority, performer |
//! | Consent | the patient's consent, or the emergency override that replaced it |
//! | Task | the workflow: status, business status, deadline, notes, outputs |
//! | Appointment | the video consilium, when one was proposed |
//! | Communication | each note (an emergency's oral conclusion, say) |
//! | DiagnosticReport | the signed conclusion, when there is one and it verifies |
//! | Provenance | one per signed workflow step (target Task) and one for the conclusion (target DiagnosticReport), carrying the ed25519 signature |
//! | AuditEvent | one per journal entry about the consultation |
//!
//! The patient is never named: Konsilium keeps patient data in sealed
//! packages, not in consultation records. Where FHIR wants a subject, the
//! reference is a display-only `Patient` reference naming the consultation.
//!
//! Signatures: `Provenance.signature.data` is the 64-byte ed25519 signature,
//! `sigFormat` [`SIG_FORMAT`], `who` the signing organization (its key is
//! its peer id), and the exact signed bytes (domain tag and postcard
//! encoding, [`SIGNED_CONTENT_TYPE`]) ride in the [`SIGNED_BYTES_EXTENSION`]
//! extension, so anyone can verify offline without Konsilium's types. The
//! signature type is ASTM E1762 "Author's Signature": the organization signs
//! what it itself issued (a conclusion, a workflow step), which is what
//! "verification signature" (countersigning someone else's content) is not.
//!
//! # Import
//!
//! [`import_service_request`] reads the Bundle a hospital information system
//! sends to open a consultation: one ServiceRequest (`status` active; specialty
//! in `code`, SNOMED CT or `urn:konsilium:specialty`; `priority`; `requester`
//! naming the physician; optionally `performer` naming a Konsilium
//! organization; `reasonCode` texts are the questions, `note` texts the case
//! summary) and optionally the Consent that covers it. Every error names the
//! offending element as a path from the Bundle, e.g.
//! `Bundle.entry[0].resource.priority`. Nothing in the input can make it panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use konsilium_protocol::conclusion::Conclusion;
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::{Action as JournalAction, Entry, Role};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{
    Action, Appointment, Consent, ConsentMethod, Consultation, ConsultationId, Slot, Status,
    Transition,
};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Identifier system of organizations: the value is the peer id.
pub const ORG_SYSTEM: &str = "urn:konsilium:org";
/// Identifier system of consultations: the value is the id in hex.
pub const CONSULTATION_SYSTEM: &str = "urn:konsilium:consultation";
/// Identifier system of signed conclusions: the value is the content hash in hex.
pub const CONCLUSION_SYSTEM: &str = "urn:konsilium:conclusion";
/// Identifier system of sealed packages: the value is the package id in hex.
pub const PACKAGE_SYSTEM: &str = "urn:konsilium:package";
/// Code system of specialties: the code is the catalogue slug.
pub const SPECIALTY_SYSTEM: &str = "urn:konsilium:specialty";
/// Code system of workflow steps (Task.businessStatus, Provenance.activity).
pub const ACTION_SYSTEM: &str = "urn:konsilium:workflow-action";
/// Code system of journal actions (AuditEvent.subtype).
pub const JOURNAL_SYSTEM: &str = "urn:konsilium:journal-action";
/// Code system of the participants' roles.
pub const ROLE_SYSTEM: &str = "urn:konsilium:role";
/// Code system of the legal basis of a Consent (only `emergency-override`).
pub const CONSENT_BASIS_SYSTEM: &str = "urn:konsilium:consent-basis";
/// Code system of Task inputs (only `first-response-due`).
pub const TASK_INPUT_SYSTEM: &str = "urn:konsilium:task-input";
/// Consent extension, `valueCode` written | electronic | oral.
pub const CONSENT_METHOD_EXTENSION: &str = "urn:konsilium:fhir:extension:consent-method";
/// Consent extension, `valueString`: who witnessed an oral consent.
pub const CONSENT_WITNESS_EXTENSION: &str = "urn:konsilium:fhir:extension:consent-witness";
/// Consent extension, `valueString`: why data went without consent. Its
/// presence is what marks a Consent as an emergency override.
pub const OVERRIDE_REASON_EXTENSION: &str =
    "urn:konsilium:fhir:extension:emergency-override-reason";
/// Signature extension, `valueBase64Binary`: the exact bytes that were signed.
pub const SIGNED_BYTES_EXTENSION: &str = "urn:konsilium:fhir:extension:signed-bytes";
/// `Signature.sigFormat`: a bare 64-byte ed25519 signature.
pub const SIG_FORMAT: &str = "application/konsilium-ed25519";
/// `Signature.targetFormat`: Konsilium's domain tag followed by the postcard encoding.
pub const SIGNED_CONTENT_TYPE: &str = "application/konsilium-signed";
/// Scheme of a Consent's scanned form: `urn:konsilium:blake3:<hex>`.
const DOCUMENT_URL_PREFIX: &str = "urn:konsilium:blake3:";
const BLOB_URL_PREFIX: &str = "urn:konsilium:blob:";

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const SIGNATURE_TYPE: &str = "urn:iso-astm:E1762-95:2013";
const AUTHORS_SIGNATURE: &str = "1.2.840.10065.1.12.1.1";

/// Everything the node knows about one consultation, as input to the export.
pub struct ConsultationRecord<'a> {
    pub consultation: &'a Consultation,
    pub requester_name: &'a str,
    pub consultant_name: &'a str,
    pub deadline: Option<&'a Deadline>,
    pub conclusion: Option<&'a Signed<Conclusion>>,
    /// Entries about this consultation; entries about another one are skipped.
    pub journal: &'a [Entry],
}

/// A consultation request as a hospital information system sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRequest {
    pub specialty: Specialty,
    pub urgency: Urgency,
    /// The organization named as performer; `None` routes by specialty.
    pub target: Option<OrgId>,
    /// The attending physician who asks.
    pub physician: String,
    /// `ServiceRequest.reasonCode` texts, one a line; empty when none.
    pub questions: String,
    /// `ServiceRequest.note` texts, separated by blank lines; empty when none.
    pub case_summary: String,
    pub consent: Option<Consent>,
}

/// Why a Bundle could not be imported. `path` names the offending element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("{path}: expected a FHIR Bundle, found {found}")]
    NotABundle { path: String, found: String },
    #[error("{path}: missing {what}")]
    Missing { path: String, what: &'static str },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: unknown code {code:?}; expected {expected}")]
    UnknownCode {
        path: String,
        code: String,
        expected: &'static str,
    },
}

impl FhirError {
    /// The element the error is about, as a path from the Bundle.
    pub fn path(&self) -> &str {
        match self {
            FhirError::NotJson(_) => "",
            FhirError::NotABundle { path, .. }
            | FhirError::Missing { path, .. }
            | FhirError::Invalid { path, .. }
            | FhirError::UnknownCode { path, .. } => path,
        }
    }
}

/// `ServiceRequest.priority` / `Task.priority` for an urgency.
pub fn priority_code(urgency: Urgency) -> &'static str {
    match urgency {
        Urgency::Planned => "routine",
        Urgency::Urgent => "urgent",
        Urgency::Emergency => "stat",
    }
}

/// The urgency for a FHIR request priority. `asap` ("higher priority than
/// urgent") becomes an emergency: a request is never triaged lower than asked.
pub fn urgency_from_priority(code: &str) -> Option<Urgency> {
    match code {
        "routine" => Some(Urgency::Planned),
        "urgent" => Some(Urgency::Urgent),
        "asap" | "stat" => Some(Urgency::Emergency),
        _ => None,
    }
}

/// `ServiceRequest.status` (request-status) for a consultation's state.
pub fn service_request_status(status: Status) -> &'static str {
    match status {
        Status::Requested | Status::Received | Status::Accepted | Status::InProgress => "active",
        Status::OnHold => "on-hold",
        Status::Completed => "completed",
        Status::Rejected | Status::Cancelled | Status::Failed => "revoked",
    }
}

/// `Appointment.status` for the video consilium, `None` when there is none:
/// proposed → `proposed`, confirmed → `booked`, cancelled → `cancelled`; a
/// pending or booked session of a consultation that was rejected, cancelled
/// or failed will not take place, so it is `cancelled` too.
pub fn appointment_status(appointment: &Appointment, status: Status) -> Option<&'static str> {
    let ended = matches!(
        status,
        Status::Rejected | Status::Cancelled | Status::Failed
    );
    match appointment {
        Appointment::None => None,
        Appointment::Cancelled => Some("cancelled"),
        Appointment::Proposed(_) | Appointment::Confirmed(_) if ended => Some("cancelled"),
        Appointment::Proposed(_) => Some("proposed"),
        Appointment::Confirmed(_) => Some("booked"),
    }
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// Exports one consultation as a FHIR R4 Bundle of type `collection`.
pub fn export_bundle(record: &ConsultationRecord<'_>) -> Value {
    let mut bundle = Exporter::new(record).bundle();
    prune(&mut bundle);
    bundle
}

/// A stable UUID (version 8) for `parts`.
fn stable_uuid(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"konsilium/fhir-id/v1\0");
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let hash = h.finalize();
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(hash.as_bytes()) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A FHIR instant: RFC 3339 in UTC; beyond jiff's range (year 9999), its end.
fn instant(t: Timestamp) -> String {
    let ms = i64::try_from(t.unix_millis()).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// A FHIR `string`: no control characters but tab, CR and LF, no surrounding
/// whitespace, and never empty (`None` then, so the element is left out).
fn fhir_string(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [coding(system, code, display)]})
}

fn text_concept(text: &str) -> Value {
    json!({"text": fhir_string(text)})
}

fn specialty_concept(specialty: Specialty) -> Value {
    let name = specialty.name(Lang::En);
    let mut codings = Vec::new();
    if let Some(code) = specialty.snomed() {
        // No display: the catalogue's English name is not always SNOMED's term.
        codings.push(json!({"system": SNOMED, "code": code}));
    }
    codings.push(coding(SPECIALTY_SYSTEM, specialty.slug(), name));
    json!({"coding": codings, "text": name})
}

fn role_concept(role: Role) -> Value {
    let display = match role {
        Role::Physician => "Attending physician",
        Role::Coordinator => "Telemedicine coordinator",
        Role::Consultant => "Consultant",
        Role::Operator => "Technical operator",
    };
    concept(ROLE_SYSTEM, role.as_str(), display)
}

/// Code and display of a workflow step.
fn action_code(action: &Action) -> (&'static str, &'static str) {
    match action {
        Action::Receive => ("receive", "Request registered"),
        Action::Accept => ("accept", "Accepted"),
        Action::Assign { .. } => ("assign", "Passed to a consultant"),
        Action::Reject { .. } => ("reject", "Declined"),
        Action::Start => ("start", "Consultant started work"),
        Action::AskMore { .. } => ("ask-more", "More examinations requested"),
        Action::Supply { .. } => ("supply", "More materials supplied"),
        Action::ProposeSlots { .. } => ("propose-slots", "Video consilium times proposed"),
        Action::ConfirmSlot { .. } => ("confirm-slot", "Video consilium time confirmed"),
        Action::CancelAppointment { .. } => ("cancel-appointment", "Video consilium cancelled"),
        Action::Note { .. } => ("note", "Note or oral conclusion"),
        Action::Conclude { .. } => ("conclude", "Signed conclusion issued"),
        Action::Acknowledge => ("acknowledge", "Conclusion acknowledged"),
        Action::Cancel { .. } => ("cancel", "Cancelled by the requester"),
        Action::Fail { .. } => ("fail", "Failed"),
    }
}

/// The free text a step carries, if any.
fn action_text(action: &Action) -> Option<&str> {
    match action {
        Action::Reject { reason, .. }
        | Action::CancelAppointment { reason }
        | Action::Cancel { reason }
        | Action::Fail { reason } => Some(reason),
        Action::AskMore { questions } => Some(questions),
        Action::Supply { note } => Some(note),
        Action::Note { text } => Some(text),
        _ => None,
    }
}

fn period(slot: &Slot) -> Value {
    json!({"start": instant(slot.start), "end": instant(slot.end)})
}

fn signature(who: Value, when: Timestamp, signature: [u8; 64], signed_bytes: &[u8]) -> Value {
    json!({
        "extension": [{
            "url": SIGNED_BYTES_EXTENSION,
            "valueBase64Binary": BASE64.encode(signed_bytes),
        }],
        "type": [coding(SIGNATURE_TYPE, AUTHORS_SIGNATURE, "Author's Signature")],
        "when": instant(when),
        "who": who,
        "targetFormat": SIGNED_CONTENT_TYPE,
        "sigFormat": SIG_FORMAT,
        "data": BASE64.encode(signature),
    })
}

/// Drops nulls and empty arrays and objects, which FHIR JSON never contains,
/// so the builders can write optional elements as `Option`s.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(items) => {
            items.retain_mut(prune);
            !items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, item| prune(item));
            !map.is_empty()
        }
        _ => true,
    }
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
        push(&self.physician, self.practitioner_role());
        push(&self.service_request, self.service_request());
        push(&self.consent, self.consent());
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

    fn practitioner_role(&self) -> Value {
        let req = &self.r.consultation.request;
        json!({
            "resourceType": "PractitionerRole",
            "active": true,
            "practitioner": {"type": "Practitioner", "display": fhir_string(&req.physician)},
            "organization": self.org_ref(&req.requester),
            "code": [role_concept(Role::Physician)],
        })
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
            "supportingInfo": [self.reference(&self.consent)],
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
                map.insert("performer".into(), json!([{"display": fhir_string(by)}]));
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
            json!({"coding": [coding(ACTION_SYSTEM, code, display)], "text": display})
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
            .map(|a| json!({"type": "Practitioner", "display": a}))
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
                    "who": {"type": "Practitioner", "display": a},
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
        let who = match fhir_string(&t.user) {
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
            "activity": concept(ACTION_SYSTEM, code, display),
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

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// Parses text, then imports it as [`import_service_request`] does.
pub fn import_service_request_json(text: &str) -> Result<ImportedRequest, FhirError> {
    let value: Value = serde_json::from_str(text).map_err(|e| FhirError::NotJson(e.to_string()))?;
    import_service_request(&value)
}

/// Reads the ServiceRequest (and its Consent) out of a Bundle a hospital
/// information system sent. See the module documentation for the mapping.
pub fn import_service_request(bundle: &Value) -> Result<ImportedRequest, FhirError> {
    let doc = Doc::parse(bundle)?;
    let requests: Vec<&Res<'_>> = doc
        .resources
        .iter()
        .filter(|r| r.rtype == "ServiceRequest")
        .collect();
    let sr = match requests.as_slice() {
        [] => {
            return Err(FhirError::Missing {
                path: "Bundle.entry".into(),
                what: "a ServiceRequest resource",
            });
        }
        [one] => *one,
        [_, second, ..] => {
            return Err(FhirError::Invalid {
                path: second.path.clone(),
                reason: "a second ServiceRequest: a Bundle carries one consultation request".into(),
            });
        }
    };
    let status = sr.required_str("status", "ServiceRequest.status")?;
    if status != "active" {
        return Err(FhirError::Invalid {
            path: sr.at("status"),
            reason: format!("the request is {status:?}; only an active request can be sent"),
        });
    }
    let intent = sr.required_str("intent", "ServiceRequest.intent")?;
    const INTENTS: &[&str] = &[
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ];
    if !INTENTS.contains(&intent) {
        return Err(FhirError::UnknownCode {
            path: sr.at("intent"),
            code: intent.to_owned(),
            expected: "a request-intent code such as order",
        });
    }
    let specialty = import_specialty(sr)?;
    let urgency = match sr.str("priority")? {
        None => Urgency::Planned,
        Some(code) => urgency_from_priority(code).ok_or_else(|| FhirError::UnknownCode {
            path: sr.at("priority"),
            code: code.to_owned(),
            expected: "routine, urgent, asap or stat",
        })?,
    };
    let physician = import_physician(&doc, sr)?;
    let target = import_target(&doc, sr)?;
    let mut questions = Vec::new();
    for (i, reason) in sr.array("reasonCode")?.iter().enumerate() {
        let path = format!("{}[{i}]", sr.at("reasonCode"));
        let reason = as_object(reason, &path)?;
        if let Some(text) = concept_text(reason, &path)? {
            questions.push(text);
        }
    }
    let mut notes = Vec::new();
    for (i, note) in sr.array("note")?.iter().enumerate() {
        let path = format!("{}[{i}]", sr.at("note"));
        let note = as_object(note, &path)?;
        if let Some(text) = opt_str(note, "text", &path)?.and_then(fhir_string) {
            notes.push(text);
        }
    }
    let consent = import_consent(&doc, sr)?;
    if let Some(Consent::EmergencyOverride { .. }) = &consent
        && urgency != Urgency::Emergency
    {
        return Err(FhirError::Invalid {
            path: sr.at("priority"),
            reason: "an emergency override of consent needs priority stat or asap".into(),
        });
    }
    Ok(ImportedRequest {
        specialty,
        urgency,
        target,
        physician,
        questions: questions.join("\n"),
        case_summary: notes.join("\n\n"),
        consent,
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, FhirError> {
    v.as_object().ok_or_else(|| FhirError::Invalid {
        path: path.to_owned(),
        reason: format!("expected an object, found {}", json_kind(v)),
    })
}

fn opt_str<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v str>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FhirError::Invalid {
            path: format!("{path}.{key}"),
            reason: format!("expected a string, found {}", json_kind(other)),
        }),
    }
}

fn opt_obj<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => as_object(v, &format!("{path}.{key}")).map(Some),
    }
}

fn opt_array<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v [Value], FhirError> {
    match obj.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(FhirError::Invalid {
            path: format!("{path}.{key}"),
            reason: format!("expected an array, found {}", json_kind(other)),
        }),
    }
}

/// A CodeableConcept's text, or its first coding's display.
fn concept_text(cc: &Map<String, Value>, path: &str) -> Result<Option<String>, FhirError> {
    if let Some(text) = opt_str(cc, "text", path)?.and_then(fhir_string) {
        return Ok(Some(text));
    }
    for (j, c) in opt_array(cc, "coding", path)?.iter().enumerate() {
        let cpath = format!("{path}.coding[{j}]");
        if let Some(d) = opt_str(as_object(c, &cpath)?, "display", &cpath)?.and_then(fhir_string) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// One resource of the Bundle (or one contained in another).
#[derive(Clone)]
struct Res<'v> {
    path: String,
    rtype: &'v str,
    obj: &'v Map<String, Value>,
    full_url: Option<&'v str>,
    /// The Bundle entry's resource that holds this one (itself, when it is
    /// not contained) and its path: `#id` references resolve there.
    root: &'v Map<String, Value>,
    root_path: String,
}

impl<'v> Res<'v> {
    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn str(&self, key: &str) -> Result<Option<&'v str>, FhirError> {
        opt_str(self.obj, key, &self.path)
    }

    fn required_str(&self, key: &str, what: &'static str) -> Result<&'v str, FhirError> {
        self.str(key)?.ok_or_else(|| FhirError::Missing {
            path: self.at(key),
            what,
        })
    }

    fn array(&self, key: &str) -> Result<&'v [Value], FhirError> {
        opt_array(self.obj, key, &self.path)
    }

    fn id(&self) -> Option<&'v str> {
        self.obj.get("id").and_then(Value::as_str)
    }
}

struct Doc<'v> {
    resources: Vec<Res<'v>>,
}

impl<'v> Doc<'v> {
    fn parse(bundle: &'v Value) -> Result<Self, FhirError> {
        let not_bundle = |found: String| FhirError::NotABundle {
            path: "Bundle".into(),
            found,
        };
        let obj = bundle
            .as_object()
            .ok_or_else(|| not_bundle(json_kind(bundle).into()))?;
        match obj.get("resourceType") {
            Some(Value::String(t)) if t == "Bundle" => {}
            Some(Value::String(t)) => return Err(not_bundle(format!("a {t} resource"))),
            Some(other) => return Err(not_bundle(format!("resourceType {}", json_kind(other)))),
            None => return Err(not_bundle("an object without resourceType".into())),
        }
        let mut resources = Vec::new();
        for (i, entry) in opt_array(obj, "entry", "Bundle")?.iter().enumerate() {
            let path = format!("Bundle.entry[{i}]");
            let entry = as_object(entry, &path)?;
            let full_url = opt_str(entry, "fullUrl", &path)?;
            let Some(resource) = opt_obj(entry, "resource", &path)? else {
                continue;
            };
            let rpath = format!("{path}.resource");
            let rtype =
                opt_str(resource, "resourceType", &rpath)?.ok_or_else(|| FhirError::Missing {
                    path: format!("{rpath}.resourceType"),
                    what: "the resource type",
                })?;
            resources.push(Res {
                path: rpath.clone(),
                rtype,
                obj: resource,
                full_url,
                root: resource,
                root_path: rpath,
            });
        }
        Ok(Self { resources })
    }

    /// Resolves a literal reference: a contained `#id`, a `fullUrl`, or
    /// `Type/id` (relative, or the tail of an absolute URL).
    fn resolve(&self, reference: &str, container: &Res<'v>) -> Option<Res<'v>> {
        if let Some(local) = reference.strip_prefix('#') {
            let contained = container.root.get("contained")?.as_array()?;
            return contained.iter().enumerate().find_map(|(k, c)| {
                let obj = c.as_object()?;
                (obj.get("id")?.as_str()? == local).then(|| Res {
                    path: format!("{}.contained[{k}]", container.root_path),
                    rtype: obj
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    obj,
                    full_url: None,
                    root: container.root,
                    root_path: container.root_path.clone(),
                })
            });
        }
        let found = self.resources.iter().find(|r| {
            if r.full_url == Some(reference) {
                return true;
            }
            let Some(id) = r.id() else { return false };
            let relative = format!("{}/{id}", r.rtype);
            reference == relative || reference.ends_with(&format!("/{relative}"))
        })?;
        Some(found.clone())
    }
}

fn import_specialty(sr: &Res<'_>) -> Result<Specialty, FhirError> {
    const EXPECTED: &str = "a SNOMED CT clinical specialty of the Konsilium catalogue \
                            (e.g. 394579002 cardiology) or a urn:konsilium:specialty slug";
    let path = sr.at("code");
    let code = opt_obj(sr.obj, "code", &sr.path)?.ok_or_else(|| FhirError::Missing {
        path: path.clone(),
        what: "the requested specialty (ServiceRequest.code)",
    })?;
    let codings = opt_array(code, "coding", &path)?;
    let mut found: Vec<(Specialty, String)> = Vec::new();
    let mut unknown: Option<FhirError> = None;
    for (j, c) in codings.iter().enumerate() {
        let cpath = format!("{path}.coding[{j}]");
        let c = as_object(c, &cpath)?;
        let system = opt_str(c, "system", &cpath)?;
        let Some(value) = opt_str(c, "code", &cpath)? else {
            continue;
        };
        let specialty = match system {
            Some(SNOMED) => Specialty::ALL
                .iter()
                .copied()
                .find(|s| s.snomed() == Some(value)),
            Some(SPECIALTY_SYSTEM) => Specialty::from_slug(value),
            _ => continue,
        };
        match specialty {
            Some(s) => found.push((s, cpath)),
            None => {
                unknown.get_or_insert(FhirError::UnknownCode {
                    path: format!("{cpath}.code"),
                    code: value.to_owned(),
                    expected: EXPECTED,
                });
            }
        }
    }
    match found.as_slice() {
        [] => Err(unknown.unwrap_or(FhirError::Missing {
            path: format!("{path}.coding"),
            what: "a coding in SNOMED CT (http://snomed.info/sct) or urn:konsilium:specialty",
        })),
        [(first, _), rest @ ..] => {
            if let Some((other, cpath)) = rest.iter().find(|(s, _)| s != first) {
                return Err(FhirError::Invalid {
                    path: cpath.clone(),
                    reason: format!("names {other}, but an earlier coding names {first}"),
                });
            }
            Ok(*first)
        }
    }
}

/// A person's name from a Practitioner, Patient or RelatedPerson.
fn human_name(obj: &Map<String, Value>) -> Option<String> {
    let name = obj.get("name")?.as_array()?.first()?.as_object()?;
    if let Some(text) = name
        .get("text")
        .and_then(Value::as_str)
        .and_then(fhir_string)
    {
        return Some(text);
    }
    let words = |key: &str| -> Vec<String> {
        name.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut parts = words("prefix");
    parts.extend(words("given"));
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family.to_owned());
    }
    fhir_string(&parts.join(" "))
}

/// The display name of whoever a Reference points at, resolving within the
/// Bundle (and through a PractitionerRole to its Practitioner, one level).
fn referenced_person(
    doc: &Doc<'_>,
    reference: &Map<String, Value>,
    path: &str,
    container: &Res<'_>,
) -> Result<Option<String>, FhirError> {
    if let Some(display) = opt_str(reference, "display", path)?.and_then(fhir_string) {
        return Ok(Some(display));
    }
    let Some(target) = opt_str(reference, "reference", path)? else {
        return Ok(None);
    };
    let Some(resource) = doc.resolve(target, container) else {
        return Ok(None);
    };
    Ok(match resource.rtype {
        "PractitionerRole" => match resource.obj.get("practitioner").and_then(Value::as_object) {
            Some(p) => match p
                .get("display")
                .and_then(Value::as_str)
                .and_then(fhir_string)
            {
                Some(d) => Some(d),
                None => p
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(|r| doc.resolve(r, &resource))
                    .filter(|r| r.rtype == "Practitioner")
                    .and_then(|r| human_name(r.obj)),
            },
            None => None,
        },
        "Organization" => None,
        _ => human_name(resource.obj),
    })
}

fn import_physician(doc: &Doc<'_>, sr: &Res<'_>) -> Result<String, FhirError> {
    let path = sr.at("requester");
    let requester = opt_obj(sr.obj, "requester", &sr.path)?.ok_or_else(|| FhirError::Missing {
        path: path.clone(),
        what: "the requesting physician (a Practitioner or PractitionerRole)",
    })?;
    let kind = opt_str(requester, "type", &path)?;
    if kind == Some("Organization") {
        return Err(FhirError::Invalid {
            path,
            reason: "names an organization; the requesting physician is needed".into(),
        });
    }
    referenced_person(doc, requester, &path, sr)?.ok_or(FhirError::Missing {
        path,
        what: "the requesting physician's name (display, or a Practitioner in the Bundle)",
    })
}

/// The organization id in an Identifier, if it is in [`ORG_SYSTEM`].
fn konsilium_org(ident: &Map<String, Value>, path: &str) -> Result<Option<OrgId>, FhirError> {
    if opt_str(ident, "system", path)? != Some(ORG_SYSTEM) {
        return Ok(None);
    }
    let value = opt_str(ident, "value", path)?.ok_or_else(|| FhirError::Missing {
        path: format!("{path}.value"),
        what: "the organization's peer id",
    })?;
    value.parse().map(Some).map_err(|e| FhirError::Invalid {
        path: format!("{path}.value"),
        reason: format!("{e}"),
    })
}

/// The Konsilium organization id among an Organization's identifiers.
fn org_identifier(resource: &Res<'_>) -> Result<Option<OrgId>, FhirError> {
    for (k, ident) in resource.array("identifier")?.iter().enumerate() {
        let ipath = format!("{}[{k}]", resource.at("identifier"));
        if let Some(id) = konsilium_org(as_object(ident, &ipath)?, &ipath)? {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn import_target(doc: &Doc<'_>, sr: &Res<'_>) -> Result<Option<OrgId>, FhirError> {
    let performers = sr.array("performer")?;
    for (k, performer) in performers.iter().enumerate() {
        let ppath = format!("{}[{k}]", sr.at("performer"));
        let performer = as_object(performer, &ppath)?;
        if let Some(ident) = opt_obj(performer, "identifier", &ppath)?
            && let Some(id) = konsilium_org(ident, &format!("{ppath}.identifier"))?
        {
            return Ok(Some(id));
        }
        let Some(reference) = opt_str(performer, "reference", &ppath)? else {
            continue;
        };
        let Some(mut resource) = doc.resolve(reference, sr) else {
            continue;
        };
        if resource.rtype == "PractitionerRole" {
            let Some(org) = resource
                .obj
                .get("organization")
                .and_then(Value::as_object)
                .and_then(|o| o.get("reference"))
                .and_then(Value::as_str)
                .and_then(|r| doc.resolve(r, &resource))
            else {
                continue;
            };
            resource = org;
        }
        if resource.rtype != "Organization" {
            continue;
        }
        if let Some(id) = org_identifier(&resource)? {
            return Ok(Some(id));
        }
    }
    if performers.is_empty() {
        Ok(None)
    } else {
        Err(FhirError::Invalid {
            path: sr.at("performer"),
            reason: format!(
                "names no organization with an identifier in {ORG_SYSTEM}; \
                 leave performer out to route by specialty"
            ),
        })
    }
}

/// A FHIR dateTime; a date without a time counts from its first instant, UTC.
fn parse_date_time(s: &str, path: &str) -> Result<Timestamp, FhirError> {
    let invalid = |why: &str| FhirError::Invalid {
        path: path.to_owned(),
        reason: format!("{s:?} is not a FHIR dateTime: {why}"),
    };
    let ts = if s.contains('T') {
        s.parse::<jiff::Timestamp>()
            .map_err(|e| invalid(&e.to_string()))?
    } else {
        let fields: Vec<&str> = s.split('-').collect();
        if fields.len() > 3 {
            return Err(invalid("expected YYYY, YYYY-MM or YYYY-MM-DD"));
        }
        let number = |i: usize, default: i64| -> Result<i64, FhirError> {
            match fields.get(i) {
                None => Ok(default),
                Some(p) if (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map_err(|_| invalid("not a number"))
                }
                Some(_) => Err(invalid("expected YYYY, YYYY-MM or YYYY-MM-DD")),
            }
        };
        let (year, month, day) = (number(0, 0)?, number(1, 1)?, number(2, 1)?);
        let (Ok(year), Ok(month), Ok(day)) =
            (i16::try_from(year), i8::try_from(month), i8::try_from(day))
        else {
            return Err(invalid("out of range"));
        };
        jiff::civil::Date::new(year, month, day)
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|z| z.timestamp())
            .map_err(|e| invalid(&e.to_string()))?
    };
    u64::try_from(ts.as_millisecond())
        .map(Timestamp::from_unix_millis)
        .map_err(|_| invalid("before 1970"))
}

fn import_consent(doc: &Doc<'_>, sr: &Res<'_>) -> Result<Option<Consent>, FhirError> {
    let mut candidates: Vec<Res<'_>> = Vec::new();
    for (k, info) in sr.array("supportingInfo")?.iter().enumerate() {
        let ipath = format!("{}[{k}]", sr.at("supportingInfo"));
        let info = as_object(info, &ipath)?;
        if let Some(reference) = opt_str(info, "reference", &ipath)?
            && let Some(r) = doc.resolve(reference, sr)
            && r.rtype == "Consent"
        {
            candidates.push(r);
        }
    }
    if candidates.is_empty() {
        candidates = doc
            .resources
            .iter()
            .filter(|r| r.rtype == "Consent")
            .cloned()
            .collect();
    }
    let consent = match candidates.as_slice() {
        [] => return Ok(None),
        [one] => one,
        [_, second, ..] => {
            return Err(FhirError::Invalid {
                path: second.path.clone(),
                reason: "more than one Consent; reference the one that applies from \
                         ServiceRequest.supportingInfo"
                    .into(),
            });
        }
    };
    let status = consent.required_str("status", "Consent.status")?;
    if status != "active" {
        return Err(FhirError::Invalid {
            path: consent.at("status"),
            reason: format!("the consent is {status:?}; only an active consent permits sending"),
        });
    }
    let mut method = None;
    let mut witness = None;
    let mut override_reason = None;
    for (k, ext) in consent.array("extension")?.iter().enumerate() {
        let epath = format!("{}[{k}]", consent.at("extension"));
        let ext = as_object(ext, &epath)?;
        match opt_str(ext, "url", &epath)? {
            Some(CONSENT_METHOD_EXTENSION) => {
                let code =
                    opt_str(ext, "valueCode", &epath)?.ok_or_else(|| FhirError::Missing {
                        path: format!("{epath}.valueCode"),
                        what: "the consent method",
                    })?;
                method = Some((code, format!("{epath}.valueCode")));
            }
            Some(CONSENT_WITNESS_EXTENSION) => witness = opt_str(ext, "valueString", &epath)?,
            Some(OVERRIDE_REASON_EXTENSION) => {
                let reason = opt_str(ext, "valueString", &epath)?.and_then(fhir_string);
                override_reason = Some(reason.ok_or_else(|| FhirError::Missing {
                    path: format!("{epath}.valueString"),
                    what: "the reason consent could not be obtained",
                })?);
            }
            _ => {}
        }
    }
    if let Some(reason) = override_reason {
        return Ok(Some(Consent::EmergencyOverride { reason }));
    }
    if let Some(provision) = opt_obj(consent.obj, "provision", &consent.path)?
        && opt_str(provision, "type", &consent.at("provision"))? == Some("deny")
    {
        return Err(FhirError::Invalid {
            path: format!("{}.type", consent.at("provision")),
            reason: "the patient denied consent".into(),
        });
    }
    let at = parse_date_time(
        consent.required_str("dateTime", "when consent was given (Consent.dateTime)")?,
        &consent.at("dateTime"),
    )?;
    let mut by = None;
    for (k, performer) in consent.array("performer")?.iter().enumerate() {
        let ppath = format!("{}[{k}]", consent.at("performer"));
        by = referenced_person(doc, as_object(performer, &ppath)?, &ppath, consent)?;
        if by.is_some() {
            break;
        }
    }
    let by = by.ok_or_else(|| FhirError::Missing {
        path: consent.at("performer"),
        what: "who gave consent (the patient or their representative)",
    })?;
    let attachment = opt_obj(consent.obj, "sourceAttachment", &consent.path)?;
    let document = match attachment {
        Some(a) => {
            let apath = consent.at("sourceAttachment");
            match opt_str(a, "url", &apath)?.and_then(|u| u.strip_prefix(DOCUMENT_URL_PREFIX)) {
                Some(h) => Some(parse_hash(h).ok_or_else(|| FhirError::Invalid {
                    path: format!("{apath}.url"),
                    reason: "expected 64 hex digits of a BLAKE3 hash".into(),
                })?),
                None => None,
            }
        }
        None => None,
    };
    let method = match method {
        Some(("written", _)) => ConsentMethod::Written,
        Some(("electronic", _)) => ConsentMethod::Electronic,
        Some(("oral", _)) => ConsentMethod::Oral {
            witness: witness
                .and_then(fhir_string)
                .ok_or_else(|| FhirError::Missing {
                    path: consent.at("extension"),
                    what: "the witness of an oral consent (the consent-witness extension)",
                })?,
        },
        Some((code, path)) => {
            return Err(FhirError::UnknownCode {
                path,
                code: code.to_owned(),
                expected: "written, electronic or oral",
            });
        }
        // A foreign system says nothing of the method: a source document
        // means a signed form, otherwise it was recorded electronically.
        None if attachment.is_some() || consent.obj.contains_key("sourceReference") => {
            ConsentMethod::Written
        }
        None => ConsentMethod::Electronic,
    };
    Ok(Some(Consent::Given {
        by,
        at,
        method,
        document,
    }))
}

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64 || !h.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_protocol::cert::OrgLevel;
    use konsilium_protocol::journal::{ConsultationRef, Journal};
    use konsilium_protocol::seal::{BlobRef, PackageId};
    use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
    use konsilium_protocol::urgency::Deadlines;
    use konsilium_protocol::workflow::{self, ConsultationRequest};
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    // -- Validation ---------------------------------------------------------
    //
    // The official HL7 FHIR R4 JSON schema (fhir.schema.json, CC0) checks
    // structure, datatypes, primitive formats and unknown elements. The
    // overlay generated from the R4 StructureDefinitions and ValueSets by
    // tests/data/fhir-r4/make_overlay.py adds what the schema leaves out by
    // design: mandatory elements (min >= 1) and required code bindings.

    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fhir-r4")
    }

    fn read_json(name: &str) -> Value {
        let text = std::fs::read_to_string(data_dir().join(name)).expect("test data present");
        serde_json::from_str(&text).expect("test data is JSON")
    }

    /// The schema with every overlay fragment joined to its definition.
    fn r4_schema() -> &'static Value {
        static SCHEMA: OnceLock<Value> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            let mut schema = read_json("fhir.schema.json");
            let overlay = read_json("fhir.overlay.json");
            let defs = schema["definitions"].as_object_mut().expect("definitions");
            for (name, fragment) in overlay["definitions"].as_object().expect("overlay") {
                let original = defs
                    .remove(name)
                    .expect("overlay names a schema definition");
                defs.insert(name.clone(), json!({"allOf": [original, fragment]}));
            }
            schema
        })
    }

    /// A validator for one resource type (rooted at its definition).
    fn validator(resource_type: &str) -> Option<Arc<jsonschema::Validator>> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
            OnceLock::new();
        let mut cache = CACHE.get_or_init(Default::default).lock().expect("lock");
        if let Some(v) = cache.get(resource_type) {
            return Some(v.clone());
        }
        let mut schema = r4_schema().clone();
        schema["definitions"].get(resource_type)?;
        let root = schema.as_object_mut()?;
        root.remove("oneOf");
        root.remove("discriminator");
        root.insert(
            "allOf".into(),
            json!([{"$ref": format!("#/definitions/{resource_type}")}]),
        );
        let v = Arc::new(jsonschema::draft6::new(&schema).expect("schema compiles"));
        cache.insert(resource_type.to_owned(), v.clone());
        Some(v)
    }

    /// Schema errors of one resource, each with its JSON pointer.
    fn schema_errors(resource: &Value) -> Vec<String> {
        let Some(rtype) = resource.get("resourceType").and_then(Value::as_str) else {
            return vec!["no resourceType".into()];
        };
        let Some(v) = validator(rtype) else {
            return vec![format!("{rtype} is not an R4 resource type")];
        };
        v.iter_errors(resource)
            .map(|e| {
                let at = e.schema_path().to_string();
                let what = match mandatory_names(&at) {
                    Some(names) => format!("missing mandatory element {names}"),
                    None => e.masked().to_string(),
                };
                let mut msg = format!("{rtype}{}: {what} [{at}]", e.instance_path());
                msg.truncate(400);
                msg
            })
            .collect()
    }

    /// For an overlay's `anyOf` of `required`: the element's JSON names.
    fn mandatory_names(schema_path: &str) -> Option<String> {
        let alternatives = r4_schema().pointer(schema_path)?.as_array()?;
        let names: Option<Vec<&str>> = alternatives
            .iter()
            .map(|a| a.get("required")?.get(0)?.as_str())
            .collect();
        Some(names?.join(" or "))
    }

    /// Everything wrong with a Bundle: the Bundle itself against the schema
    /// (which reaches every entry through ResourceList), each entry on its
    /// own for precise messages, references that do not resolve inside the
    /// Bundle, and the invariants this mapping must keep that JSON schema
    /// cannot express.
    fn r4_errors(bundle: &Value) -> Vec<String> {
        let bundle = &with_reference_types(bundle);
        let mut errors = schema_errors(bundle);
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let mut full_urls = HashSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let resource = &entry["resource"];
            errors.extend(
                schema_errors(resource)
                    .into_iter()
                    .map(|e| format!("entry[{i}] {e}")),
            );
            let full_url = entry["fullUrl"].as_str().unwrap_or_default();
            if !full_urls.insert(full_url.to_owned()) {
                errors.push(format!("entry[{i}]: duplicate fullUrl {full_url}"));
            }
            // A fullUrl names its resource: urn:uuid:<id>, or a URL ending Type/id.
            if let (Some(id), Some(rtype)) =
                (resource["id"].as_str(), resource["resourceType"].as_str())
                && full_url != urn(id)
                && !full_url.ends_with(&format!("/{rtype}/{id}"))
            {
                errors.push(format!(
                    "entry[{i}]: fullUrl {full_url} does not name {rtype}/{id}"
                ));
            }
            errors.extend(
                invariant_errors(resource)
                    .into_iter()
                    .map(|e| format!("entry[{i}] {e}")),
            );
        }
        let mut references = Vec::new();
        collect_references(bundle, &mut references);
        for r in references {
            if r.starts_with("urn:uuid:") && !full_urls.contains(&r) {
                errors.push(format!("reference {r} does not resolve in the Bundle"));
            }
        }
        errors
    }

    /// A copy in which every reference to a Bundle entry states the type it
    /// points at, so the overlay's target-type rules check every reference.
    fn with_reference_types(bundle: &Value) -> Value {
        let types: HashMap<String, String> = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|e| {
                let rtype = e["resource"]["resourceType"].as_str().unwrap_or_default();
                let url = e["fullUrl"].as_str().map(str::to_owned);
                let relative = e["resource"]["id"]
                    .as_str()
                    .map(|id| format!("{rtype}/{id}"));
                [url, relative]
                    .into_iter()
                    .flatten()
                    .map(move |key| (key, rtype.to_owned()))
            })
            .collect();
        fn annotate(v: &mut Value, types: &HashMap<String, String>) {
            match v {
                Value::Object(map) => {
                    let target = map
                        .get("reference")
                        .and_then(Value::as_str)
                        .and_then(|r| types.get(r));
                    if let Some(t) = target
                        && !map.contains_key("type")
                    {
                        map.insert("type".into(), json!(t));
                    }
                    map.values_mut().for_each(|item| annotate(item, types));
                }
                Value::Array(items) => items.iter_mut().for_each(|i| annotate(i, types)),
                _ => {}
            }
        }
        let mut annotated = bundle.clone();
        annotate(&mut annotated, &types);
        annotated
    }

    fn collect_references(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, item) in map {
                    if k == "reference"
                        && let Some(s) = item.as_str()
                    {
                        out.push(s.to_owned());
                    }
                    collect_references(item, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect_references(i, out)),
            _ => {}
        }
    }

    /// A dateTime with a time, for comparisons; the schema reports bad ones.
    fn time(v: &Value) -> Option<jiff::Timestamp> {
        v.as_str()?.parse().ok()
    }

    /// The R4 invariants (FHIRPath constraints) that the resources here can
    /// break and JSON schema does not check.
    fn invariant_errors(r: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, what: &str| {
            if !ok {
                errors.push(what.to_owned());
            }
        };
        match r["resourceType"].as_str() {
            Some("Appointment") => {
                let status = r["status"].as_str().unwrap_or_default();
                let has_start = r.get("start").is_some();
                check(
                    has_start == r.get("end").is_some(),
                    "app-2: either start and end are specified, or neither",
                );
                check(
                    has_start || matches!(status, "proposed" | "cancelled" | "waitlist"),
                    "app-3: only proposed or cancelled appointments can miss start/end",
                );
                check(
                    r.get("cancelationReason").is_none()
                        || matches!(status, "cancelled" | "noshow"),
                    "app-4: cancelationReason only for cancelled appointments",
                );
                for p in r["participant"].as_array().into_iter().flatten() {
                    check(
                        p.get("type").is_some() || p.get("actor").is_some(),
                        "app-1: a participant needs a type or an actor",
                    );
                }
            }
            Some("Consent") => check(
                r.get("policy").is_some() || r.get("policyRule").is_some(),
                "ppc-1: either a policy or a policyRule",
            ),
            Some("Task") => {
                if let (Some(a), Some(m)) = (time(&r["authoredOn"]), time(&r["lastModified"])) {
                    check(m >= a, "tsk-1: lastModified >= authoredOn");
                }
                let p = &r["executionPeriod"];
                if let (Some(s), Some(e)) = (time(&p["start"]), time(&p["end"])) {
                    check(s <= e, "per-1: period start <= end");
                }
            }
            Some("Organization") => check(
                r.get("identifier").is_some() || r.get("name").is_some(),
                "org-1: a name or an identifier",
            ),
            _ => {}
        }
        errors
    }

    #[track_caller]
    fn assert_valid(bundle: &Value) {
        let errors = r4_errors(bundle);
        assert!(
            errors.is_empty(),
            "not valid FHIR R4:\n{}",
            errors.join("\n")
        );
    }

    // -- A consultation to export --------------------------------------------

    const CID: ConsultationId = ConsultationId([0x42; 16]);

    struct Case {
        district: TestOrg,
        federal: TestOrg,
        consultation: Consultation,
        deadline: Deadline,
        conclusion: Option<Signed<Conclusion>>,
        journal: Vec<Entry>,
    }

    impl Case {
        fn record(&self) -> ConsultationRecord<'_> {
            ConsultationRecord {
                consultation: &self.consultation,
                requester_name: "Kirillov central district hospital",
                consultant_name: "Federal center of cardiology",
                deadline: Some(&self.deadline),
                conclusion: self.conclusion.as_ref(),
                journal: &self.journal,
            }
        }

        fn export(&self) -> Value {
            export_bundle(&self.record())
        }

        fn step(&mut self, consulting: bool, role: Role, minutes: u64, action: Action) {
            let key = if consulting {
                &self.federal.identity
            } else {
                &self.district.identity
            };
            let user = match role {
                Role::Physician => "Dr. Anna Ivanova",
                Role::Coordinator => "coordinator Orlova",
                Role::Consultant => "Prof. Petrov",
                Role::Operator => "operator",
            };
            let step = self.consultation.step(key, role, user, at(minutes), action);
            self.consultation.apply(&step).expect("a valid step");
        }
    }

    fn at(minutes: u64) -> Timestamp {
        NOW.saturating_add(Duration::from_secs(minutes * 60))
    }

    fn slot(hours: u64) -> Slot {
        Slot {
            start: at(hours * 60),
            end: at(hours * 60 + 45),
        }
    }

    fn written_consent() -> Consent {
        Consent::Given {
            by: "Ivan Petrovich Sidorov".into(),
            at: NOW.saturating_sub(Duration::from_secs(600)),
            method: ConsentMethod::Written,
            document: Some([0xab; 32]),
        }
    }

    fn open(urgency: Urgency, consent: Consent) -> Case {
        let mut fed = TestFederation::new("fhir");
        let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        let request = ConsultationRequest {
            id: CID,
            requester: district.id(),
            consultant: federal.id(),
            specialty: Specialty::Cardiology,
            urgency,
            created: NOW,
            consent,
            physician: "Dr. Anna Ivanova".into(),
            escalated_from: Some(ConsultationId([0x41; 16])),
        };
        let signed = workflow::request(&district.identity, request).expect("request");
        let consultation = Consultation::open(&signed).expect("opens");
        let deadline = Deadline::compute(
            urgency,
            NOW,
            &federal.record(1).calendar,
            &Deadlines::default(),
        );
        Case {
            district,
            federal,
            consultation,
            deadline,
            conclusion: None,
            journal: Vec::new(),
        }
    }

    /// Request with consent; received, accepted, started; more examinations
    /// asked and supplied; a video consilium proposed and confirmed; an oral
    /// note; the signed conclusion; acknowledged. With its journal.
    fn full_case() -> Case {
        use Role::*;
        let mut case = open(Urgency::Urgent, written_consent());
        case.step(true, Coordinator, 5, Action::Receive);
        case.step(true, Coordinator, 10, Action::Accept);
        case.step(true, Consultant, 20, Action::Start);
        case.step(
            true,
            Consultant,
            30,
            Action::AskMore {
                questions: "Echocardiography, please".into(),
            },
        );
        case.step(
            false,
            Physician,
            90,
            Action::Supply {
                note: "Echo attached: EF 35%".into(),
            },
        );
        case.step(
            true,
            Coordinator,
            100,
            Action::ProposeSlots {
                slots: vec![slot(4), slot(5)],
            },
        );
        case.step(false, Physician, 110, Action::ConfirmSlot { slot: slot(5) });
        case.step(
            true,
            Consultant,
            120,
            Action::Note {
                text: "Preliminary: no indication for emergency surgery".into(),
            },
        );
        let conclusion = Conclusion {
            consultation: CID,
            consultant_org: case.federal.id(),
            authors: vec!["Prof. Petrov".into(), "Dr. Smirnova".into()],
            diagnosis: "Ischemic cardiomyopathy, NYHA III".into(),
            recommendations: "CRT-D implantation".into(),
            treatment_plan: "Optimise heart failure therapy first".into(),
            further_studies: String::new(),
            attachments: vec![BlobRef {
                hash: [9; 32],
                size: 123_456,
            }],
            issued_at: at(360),
        }
        .sign(&case.federal.identity)
        .expect("signs");
        case.step(
            true,
            Consultant,
            360,
            Action::Conclude {
                conclusion: conclusion.content_hash(),
            },
        );
        case.step(false, Physician, 400, Action::Acknowledge);
        case.conclusion = Some(conclusion);
        let mut journal = Journal::new();
        let id = CID.0;
        let user = |s: &str| Some(s.to_owned());
        case.journal = vec![
            journal.append(
                NOW,
                user("dr.ivanova"),
                Some(Physician),
                JournalAction::Create(ConsultationRef {
                    id,
                    requester: case.district.id(),
                    consultant: case.federal.id(),
                    specialty: Specialty::Cardiology,
                    urgency: Urgency::Urgent,
                }),
            ),
            journal.append(
                at(1),
                None,
                None,
                JournalAction::Send {
                    consultation: id,
                    package: PackageId([1; 16]),
                },
            ),
            journal.append(
                at(91),
                None,
                None,
                JournalAction::Receive {
                    consultation: id,
                    package: PackageId([2; 16]),
                },
            ),
            journal.append(
                at(95),
                user("prof.petrov"),
                Some(Consultant),
                JournalAction::Open { consultation: id },
            ),
            journal.append(
                at(360),
                None,
                None,
                JournalAction::Transition {
                    consultation: id,
                    from: "in-progress".into(),
                    to: "completed".into(),
                },
            ),
            journal.append(
                at(361),
                None,
                None,
                JournalAction::Conclusion {
                    consultation: id,
                    deadline_met: false,
                },
            ),
            journal.append(
                at(2),
                None,
                None,
                JournalAction::Login {
                    user: "dr.ivanova".into(),
                },
            ),
            // A user name typed by whoever tried, control characters included.
            journal.append(
                at(3),
                None,
                None,
                JournalAction::FailedLogin {
                    user: "mallory\u{7}\u{1b}[2J".into(),
                },
            ),
            // About another consultation: not exported.
            journal.append(
                at(4),
                None,
                None,
                JournalAction::Open {
                    consultation: [7; 16],
                },
            ),
        ];
        case
    }

    fn resources<'b>(bundle: &'b Value, rtype: &str) -> Vec<&'b Value> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == rtype)
            .collect()
    }

    fn one<'b>(bundle: &'b Value, rtype: &str) -> &'b Value {
        let found = resources(bundle, rtype);
        assert_eq!(found.len(), 1, "one {rtype}");
        found[0]
    }

    fn b64(v: &Value) -> Vec<u8> {
        BASE64
            .decode(v.as_str().expect("base64 string"))
            .expect("base64")
    }

    // -- Export ---------------------------------------------------------------

    #[test]
    fn full_consultation_exports_as_valid_fhir_r4() {
        let case = full_case();
        let bundle = case.export();
        assert_valid(&bundle);
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle, case.export(), "the export is deterministic");

        let count = |t| resources(&bundle, t).len();
        assert_eq!(count("Organization"), 2);
        assert_eq!(count("ServiceRequest"), 1);
        assert_eq!(count("Task"), 1);
        assert_eq!(count("Appointment"), 1);
        assert_eq!(count("Communication"), 1);
        assert_eq!(count("DiagnosticReport"), 1);
        assert_eq!(count("Consent"), 1);
        // One per signed step, and one for the conclusion.
        assert_eq!(count("Provenance"), case.consultation.history.len() + 1);
        // The entry about another consultation is left out.
        assert_eq!(count("AuditEvent"), case.journal.len() - 1);

        let sr = one(&bundle, "ServiceRequest");
        assert_eq!(sr["intent"], "order");
        assert_eq!(sr["status"], "completed");
        assert_eq!(sr["code"]["coding"][0]["system"], SNOMED);
        assert_eq!(sr["code"]["coding"][0]["code"], "394579002");
        assert_eq!(sr["code"]["coding"][1]["system"], SPECIALTY_SYSTEM);
        assert_eq!(sr["code"]["coding"][1]["code"], "cardiology");
        assert_eq!(sr["replaces"][0]["identifier"]["value"], "41".repeat(16));

        let task = one(&bundle, "Task");
        assert_eq!(task["status"], "completed");
        assert_eq!(task["intent"], "order");
        assert_eq!(task["priority"], "urgent");
        assert_eq!(
            task["focus"]["reference"],
            json!(urn(sr["id"].as_str().unwrap()))
        );
        assert_eq!(
            task["restriction"]["period"]["end"],
            json!(instant(case.deadline.due))
        );
        assert_eq!(task["executionPeriod"]["start"], json!(instant(at(20))));
        assert_eq!(task["executionPeriod"]["end"], json!(instant(at(360))));
        assert_eq!(task["businessStatus"]["coding"][0]["code"], "acknowledge");
        let notes: Vec<&str> = task["note"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            notes,
            [
                "More examinations requested: Echocardiography, please",
                "More materials supplied: Echo attached: EF 35%"
            ]
        );
        let orgs: Vec<&Value> = resources(&bundle, "Organization");
        let requester = orgs
            .iter()
            .find(|o| o["identifier"][0]["value"] == case.district.id().to_string())
            .expect("requesting organization");
        assert_eq!(requester["identifier"][0]["system"], ORG_SYSTEM);
        assert_eq!(
            task["requester"]["reference"],
            json!(urn(requester["id"].as_str().unwrap()))
        );

        let appointment = one(&bundle, "Appointment");
        assert_eq!(appointment["status"], "booked");
        assert_eq!(appointment["start"], json!(instant(slot(5).start)));

        let report = one(&bundle, "DiagnosticReport");
        assert_eq!(report["status"], "final");
        let text = report["conclusion"].as_str().unwrap();
        assert!(
            text.contains("Diagnosis:\nIschemic cardiomyopathy, NYHA III"),
            "{text}"
        );
        assert!(
            text.contains("Recommendations:\nCRT-D implantation"),
            "{text}"
        );
        assert!(
            !text.contains("Further studies"),
            "empty sections are left out"
        );
        let form = String::from_utf8(b64(&report["presentedForm"][0]["data"])).unwrap();
        assert!(form.contains("Prof. Petrov, Dr. Smirnova"), "{form}");

        // The conclusion's Provenance carries its exact signature and bytes.
        let signed = case.conclusion.as_ref().unwrap();
        let report_ref = json!(urn(report["id"].as_str().unwrap()));
        let provenance = resources(&bundle, "Provenance")
            .into_iter()
            .find(|p| p["target"][0]["reference"] == report_ref)
            .expect("the conclusion's provenance");
        let sig = &provenance["signature"][0];
        assert_eq!(sig["type"][0]["code"], AUTHORS_SIGNATURE);
        assert_eq!(sig["sigFormat"], SIG_FORMAT);
        assert_eq!(b64(&sig["data"]), signed.signature().to_bytes());
        assert_eq!(
            b64(&sig["extension"][0]["valueBase64Binary"]),
            signed.signed_bytes()
        );
        let consultant_ref = json!(urn(orgs
            .iter()
            .find(|o| o["identifier"][0]["value"] == case.federal.id().to_string())
            .unwrap()["id"]
            .as_str()
            .unwrap()));
        assert_eq!(sig["who"]["reference"], consultant_ref);

        // Journal entries: types, times, and no control characters.
        let audits = resources(&bundle, "AuditEvent");
        assert_eq!(audits[0]["recorded"], json!(instant(NOW)));
        assert_eq!(audits[0]["type"]["code"], "110110");
        assert_eq!(audits[0]["action"], "C");
        let failed = audits
            .iter()
            .find(|a| a["outcome"] == "4")
            .expect("the failed login");
        assert_eq!(failed["subtype"][0]["code"], "110122");
        let name = failed["agent"][0]["name"].as_str().unwrap();
        assert!(!name.chars().any(|c| c.is_control()), "{name:?}");

        let consent = one(&bundle, "Consent");
        assert_eq!(consent["scope"]["coding"][0]["code"], "patient-privacy");
        assert_eq!(consent["provision"]["type"], "permit");
        assert_eq!(consent["extension"][0]["valueCode"], "written");
    }

    /// The validation is real: breaking one element of one resource fails it.
    #[test]
    fn validation_catches_broken_resources() {
        let bundle = full_case().export();
        assert_valid(&bundle);
        type Mutation = fn(&mut Map<String, Value>);
        let cases: &[(&str, &str, Mutation)] = &[
            ("Task", "Task.intent removed", |r| {
                r.remove("intent");
            }),
            ("Task", "Task.status removed", |r| {
                r.remove("status");
            }),
            ("Task", "Task.priority high", |r| {
                r.insert("priority".into(), json!("high"));
            }),
            ("ServiceRequest", "ServiceRequest.priority high", |r| {
                r.insert("priority".into(), json!("high"));
            }),
            ("ServiceRequest", "ServiceRequest.intent removed", |r| {
                r.remove("intent");
            }),
            ("ServiceRequest", "ServiceRequest.subject removed", |r| {
                r.remove("subject");
            }),
            ("Appointment", "Appointment.status confirmed", |r| {
                r.insert("status".into(), json!("confirmed"));
            }),
            (
                "Appointment",
                "Appointment.participant.status removed",
                |r| {
                    if let Some(p) = r["participant"][0].as_object_mut() {
                        p.remove("status");
                    }
                },
            ),
            ("AuditEvent", "AuditEvent.recorded not an instant", |r| {
                r.insert("recorded".into(), json!("yesterday"));
            }),
            ("AuditEvent", "AuditEvent.agent.requestor removed", |r| {
                if let Some(a) = r["agent"][0].as_object_mut() {
                    a.remove("requestor");
                }
            }),
            ("Provenance", "Provenance.signature.type removed", |r| {
                if let Some(s) = r["signature"][0].as_object_mut() {
                    s.remove("type");
                }
            }),
            ("Provenance", "Provenance.target removed", |r| {
                r.remove("target");
            }),
            ("DiagnosticReport", "DiagnosticReport.status done", |r| {
                r.insert("status".into(), json!("done"));
            }),
            ("Consent", "Consent.scope removed", |r| {
                r.remove("scope");
            }),
            ("Appointment", "an Organization as a participant", |r| {
                r.insert(
                    "participant".into(),
                    json!([{
                        "actor": {"type": "Organization", "display": "Federal center"},
                        "status": "accepted",
                    }]),
                );
            }),
            ("Task", "Task.owner pointing at the ServiceRequest", |r| {
                let focus = r["focus"].clone();
                r.insert("owner".into(), focus);
            }),
            ("Organization", "an element R4 does not have", |r| {
                r.insert("nickname".into(), json!("the district"));
            }),
            ("Communication", "Communication.sent a date in words", |r| {
                r.insert("sent".into(), json!("28 May 2026"));
            }),
        ];
        for (rtype, what, mutate) in cases {
            let mut broken = bundle.clone();
            let entry = broken["entry"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|e| e["resource"]["resourceType"] == *rtype)
                .unwrap();
            mutate(entry["resource"].as_object_mut().unwrap());
            let errors = r4_errors(&broken);
            assert!(!errors.is_empty(), "{what}: accepted as valid");
            assert!(
                errors.iter().any(|e| e.contains(rtype)),
                "{what}: errors do not name {rtype}: {errors:?}"
            );
        }
        let mut broken = bundle.clone();
        broken["type"] = json!("pile");
        assert!(!r4_errors(&broken).is_empty(), "Bundle.type pile");
        let mut dangling = bundle;
        dangling["entry"].as_array_mut().unwrap().remove(0);
        assert!(
            r4_errors(&dangling)
                .iter()
                .any(|e| e.contains("does not resolve")),
            "a reference to a removed Organization"
        );
    }

    #[test]
    fn priority_follows_urgency() {
        for (urgency, code) in [
            (Urgency::Planned, "routine"),
            (Urgency::Urgent, "urgent"),
            (Urgency::Emergency, "stat"),
        ] {
            assert_eq!(priority_code(urgency), code);
            assert_eq!(urgency_from_priority(code), Some(urgency));
            let bundle = open(urgency, written_consent()).export();
            assert_valid(&bundle);
            assert_eq!(one(&bundle, "ServiceRequest")["priority"], code);
            assert_eq!(one(&bundle, "Task")["priority"], code);
        }
        assert_eq!(urgency_from_priority("asap"), Some(Urgency::Emergency));
        assert_eq!(urgency_from_priority("high"), None);
        assert_eq!(
            urgency_from_priority("STAT"),
            None,
            "FHIR codes are case-sensitive"
        );
    }

    #[test]
    fn task_status_follows_the_workflow() {
        use Role::*;
        type Steps = fn(&mut Case);
        let scenarios: &[(Steps, &str, &str)] = &[
            (|_| {}, "requested", "active"),
            (
                |c| c.step(true, Coordinator, 1, Action::Receive),
                "received",
                "active",
            ),
            (
                |c| c.step(true, Coordinator, 1, Action::Accept),
                "accepted",
                "active",
            ),
            (
                |c| {
                    c.step(true, Coordinator, 1, Action::Accept);
                    c.step(true, Consultant, 2, Action::Start);
                },
                "in-progress",
                "active",
            ),
            (
                |c| {
                    c.step(true, Coordinator, 1, Action::Accept);
                    c.step(
                        true,
                        Consultant,
                        2,
                        Action::AskMore {
                            questions: "MRI".into(),
                        },
                    );
                },
                "on-hold",
                "on-hold",
            ),
            (
                |c| {
                    c.step(true, Coordinator, 1, Action::Accept);
                    c.step(
                        true,
                        Consultant,
                        2,
                        Action::Conclude {
                            conclusion: [1; 32],
                        },
                    );
                },
                "completed",
                "completed",
            ),
            (
                |c| {
                    c.step(
                        true,
                        Coordinator,
                        1,
                        Action::Reject {
                            reason: "no capacity this week".into(),
                            forward: true,
                        },
                    )
                },
                "rejected",
                "revoked",
            ),
            (
                |c| {
                    c.step(
                        false,
                        Physician,
                        1,
                        Action::Cancel {
                            reason: "transferred".into(),
                        },
                    )
                },
                "cancelled",
                "revoked",
            ),
            (
                |c| {
                    c.step(
                        false,
                        Operator,
                        1,
                        Action::Fail {
                            reason: "deadline missed".into(),
                        },
                    )
                },
                "failed",
                "revoked",
            ),
        ];
        for (steps, task_status, request_status) in scenarios {
            let mut case = open(Urgency::Planned, written_consent());
            steps(&mut case);
            assert_eq!(case.consultation.status.fhir_code(), *task_status);
            let bundle = case.export();
            assert_valid(&bundle);
            let task = one(&bundle, "Task");
            assert_eq!(task["status"], *task_status);
            assert_eq!(one(&bundle, "ServiceRequest")["status"], *request_status);
            if *task_status == "rejected" {
                assert_eq!(task["statusReason"]["text"], "no capacity this week");
                assert_eq!(task["executionPeriod"]["end"], json!(instant(at(1))));
            }
        }
        // A conclusion hash without the signed conclusion: no report, no output.
        let mut case = open(Urgency::Planned, written_consent());
        case.step(true, Coordinator, 1, Action::Accept);
        case.step(
            true,
            Consultant,
            2,
            Action::Conclude {
                conclusion: [1; 32],
            },
        );
        let bundle = case.export();
        assert!(resources(&bundle, "DiagnosticReport").is_empty());
        assert!(one(&bundle, "Task").get("output").is_none());
    }

    /// Empty and control-character strings and the largest timestamps still
    /// give valid FHIR (FHIR strings are never empty and hold no controls).
    #[test]
    fn odd_values_still_export_valid_fhir() {
        let mut fed = TestFederation::new("fhir-odd");
        let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[]);
        let far = Timestamp::from_unix_millis(u64::MAX - 1);
        let farthest = Timestamp::from_unix_millis(u64::MAX);
        let request = ConsultationRequest {
            id: CID,
            requester: district.id(),
            consultant: federal.id(),
            specialty: Specialty::ALL[Specialty::ALL.len() - 1],
            urgency: Urgency::Emergency,
            created: far,
            consent: Consent::Given {
                by: " \u{0} ".into(),
                at: far,
                method: ConsentMethod::Oral {
                    witness: String::new(),
                },
                document: None,
            },
            physician: "\u{1b}[31m".into(),
            escalated_from: None,
        };
        let mut consultation =
            Consultation::open(&workflow::request(&district.identity, request).unwrap()).unwrap();
        for (key, role, action) in [
            (&federal.identity, Role::Consultant, Action::Accept),
            (
                &federal.identity,
                Role::Consultant,
                Action::Note { text: "\n".into() },
            ),
            (
                &federal.identity,
                Role::Coordinator,
                Action::ProposeSlots {
                    slots: vec![Slot {
                        start: far,
                        end: farthest,
                    }],
                },
            ),
            (
                &district.identity,
                Role::Physician,
                Action::CancelAppointment {
                    reason: "\t".into(),
                },
            ),
        ] {
            let step = consultation.step(key, role, "", far, action);
            consultation.apply(&step).unwrap();
        }
        let deadline = Deadline::compute(
            Urgency::Emergency,
            far,
            &federal.record(1).calendar,
            &Deadlines::default(),
        );
        let journal = vec![Journal::new().append(
            far,
            Some("\u{7}".into()),
            None,
            JournalAction::FailedLogin {
                user: String::new(),
            },
        )];
        let bundle = export_bundle(&ConsultationRecord {
            consultation: &consultation,
            requester_name: "",
            consultant_name: "\u{0}",
            deadline: Some(&deadline),
            conclusion: None,
            journal: &journal,
        });
        assert_valid(&bundle);
        assert_eq!(
            one(&bundle, "Task")["authoredOn"],
            json!(jiff::Timestamp::MAX.to_string())
        );
    }

    #[test]
    fn a_conclusion_that_does_not_verify_is_not_exported() {
        let mut case = full_case();
        // Signed by the requesting organization, not the consulting one.
        let forged = Signed::sign(
            &case.district.identity,
            &case
                .conclusion
                .as_ref()
                .unwrap()
                .decode_unverified()
                .unwrap(),
        );
        case.conclusion = Some(forged);
        let bundle = case.export();
        assert_valid(&bundle);
        assert!(resources(&bundle, "DiagnosticReport").is_empty());
    }

    #[test]
    fn appointment_status_mapping() {
        use Role::*;
        let none = open(Urgency::Urgent, written_consent());
        assert!(resources(&none.export(), "Appointment").is_empty());

        let mut case = open(Urgency::Urgent, written_consent());
        case.step(true, Coordinator, 1, Action::Accept);
        case.step(
            true,
            Coordinator,
            2,
            Action::ProposeSlots {
                slots: vec![slot(3), slot(4)],
            },
        );
        let bundle = case.export();
        assert_valid(&bundle);
        let a = one(&bundle, "Appointment");
        assert_eq!(a["status"], "proposed");
        assert!(a.get("start").is_none());
        assert_eq!(a["requestedPeriod"].as_array().unwrap().len(), 2);
        assert_eq!(
            a["requestedPeriod"][1]["start"],
            json!(instant(slot(4).start))
        );
        assert_eq!(a["participant"][1]["status"], "needs-action");
        assert_eq!(a["created"], json!(instant(at(2))));

        case.step(false, Physician, 3, Action::ConfirmSlot { slot: slot(4) });
        let bundle = case.export();
        assert_valid(&bundle);
        let a = one(&bundle, "Appointment");
        assert_eq!(a["status"], "booked");
        assert_eq!(a["start"], json!(instant(slot(4).start)));
        assert_eq!(a["end"], json!(instant(slot(4).end)));
        assert_eq!(a["participant"][1]["status"], "accepted");

        let mut ended = case.clone_consultation();
        ended.step(
            false,
            Physician,
            4,
            Action::Cancel {
                reason: "transferred".into(),
            },
        );
        let bundle = ended.export();
        assert_valid(&bundle);
        let a = one(&bundle, "Appointment");
        assert_eq!(a["status"], "cancelled", "the consultation ended");
        assert_eq!(a["cancelationReason"]["text"], "transferred");

        case.step(
            false,
            Physician,
            4,
            Action::CancelAppointment {
                reason: "patient too ill to travel".into(),
            },
        );
        let bundle = case.export();
        assert_valid(&bundle);
        let a = one(&bundle, "Appointment");
        assert_eq!(a["status"], "cancelled");
        assert_eq!(a["cancelationReason"]["text"], "patient too ill to travel");
        assert_eq!(
            a["start"],
            json!(instant(slot(4).start)),
            "the booked time stays"
        );
        assert_eq!(a["participant"][1]["status"], "declined");

        for (appointment, status, expected) in [
            (Appointment::None, Status::InProgress, None),
            (
                Appointment::Proposed(vec![slot(1)]),
                Status::Accepted,
                Some("proposed"),
            ),
            (
                Appointment::Confirmed(slot(1)),
                Status::InProgress,
                Some("booked"),
            ),
            (
                Appointment::Confirmed(slot(1)),
                Status::Completed,
                Some("booked"),
            ),
            (
                Appointment::Cancelled,
                Status::InProgress,
                Some("cancelled"),
            ),
            (
                Appointment::Confirmed(slot(1)),
                Status::Failed,
                Some("cancelled"),
            ),
        ] {
            assert_eq!(appointment_status(&appointment, status), expected);
        }
    }

    impl Case {
        fn clone_consultation(&self) -> Case {
            let mut fed = TestFederation::new("fhir");
            Case {
                district: fed.org(1, OrgLevel::District, "RU-VLG", &[]),
                federal: fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]),
                consultation: self.consultation.clone(),
                deadline: self.deadline,
                conclusion: self.conclusion.clone(),
                journal: self.journal.clone(),
            }
        }
    }

    #[test]
    fn emergency_override_exports_and_imports() {
        let reason = "unconscious, no relatives reachable";
        let mut case = open(
            Urgency::Emergency,
            Consent::EmergencyOverride {
                reason: reason.into(),
            },
        );
        case.step(true, Role::Consultant, 1, Action::Accept);
        case.step(
            true,
            Role::Consultant,
            4,
            Action::Note {
                text: "Oral conclusion: thrombolysis now".into(),
            },
        );
        let mut journal = Journal::new();
        case.journal = vec![journal.append(
            NOW,
            Some("dr.ivanova".into()),
            Some(Role::Physician),
            JournalAction::ConsentOverride {
                consultation: CID.0,
                reason: reason.into(),
            },
        )];
        let bundle = case.export();
        assert_valid(&bundle);
        let consent = one(&bundle, "Consent");
        assert_eq!(consent["extension"][0]["url"], OVERRIDE_REASON_EXTENSION);
        assert_eq!(consent["extension"][0]["valueString"], reason);
        assert_eq!(consent["provision"]["purpose"][0]["code"], "ETREAT");
        let task = one(&bundle, "Task");
        assert_eq!(task["priority"], "stat");
        assert_eq!(
            task["input"][0]["valueInstant"],
            json!(instant(case.deadline.first_response_due.unwrap()))
        );
        let note = one(&bundle, "Communication");
        assert_eq!(
            note["payload"][0]["contentString"],
            "Oral conclusion: thrombolysis now"
        );
        assert_eq!(
            task["output"][0]["valueReference"]["reference"],
            json!(urn(note["id"].as_str().unwrap()))
        );
        let audit = one(&bundle, "AuditEvent");
        assert_eq!(audit["type"]["code"], "110113");
        assert_eq!(audit["subtype"][0]["code"], "110127");
        assert_eq!(audit["entity"][0]["detail"][0]["valueString"], reason);

        // The request as exported before anyone answered imports back.
        let fresh = open(
            Urgency::Emergency,
            Consent::EmergencyOverride {
                reason: reason.into(),
            },
        );
        let imported = import_service_request(&fresh.export()).expect("imports");
        assert_eq!(imported.urgency, Urgency::Emergency);
        assert_eq!(
            imported.consent,
            Some(Consent::EmergencyOverride {
                reason: reason.into()
            })
        );
    }

    #[test]
    fn export_round_trips_through_import() {
        for consent in [
            written_consent(),
            Consent::Given {
                by: "Maria Sidorova (daughter)".into(),
                at: at(1),
                method: ConsentMethod::Oral {
                    witness: "nurse Kuznetsova".into(),
                },
                document: None,
            },
            Consent::Given {
                by: "the patient".into(),
                at: Timestamp::from_unix_millis(1_780_000_000_123),
                method: ConsentMethod::Electronic,
                document: None,
            },
        ] {
            let case = open(Urgency::Urgent, consent.clone());
            let bundle = case.export();
            assert_valid(&bundle);
            let imported = import_service_request(&bundle).expect("imports");
            assert_eq!(
                imported,
                ImportedRequest {
                    specialty: Specialty::Cardiology,
                    urgency: Urgency::Urgent,
                    target: Some(case.federal.id()),
                    physician: "Dr. Anna Ivanova".into(),
                    questions: String::new(),
                    case_summary: String::new(),
                    consent: Some(consent),
                }
            );
        }
    }

    // -- Import ----------------------------------------------------------------

    /// A request as a hospital information system would write it: SNOMED CT
    /// cardiology, priority stat, the physician and the patient as resources
    /// referenced by `Type/id`, the target organization by its Konsilium id.
    fn his_bundle(target: &OrgId) -> Value {
        let base = "https://his.kirillov-crh.example/fhir";
        json!({
            "resourceType": "Bundle",
            "id": "req-2026-0042",
            "type": "collection",
            "timestamp": "2026-05-28T09:45:00+03:00",
            "entry": [
                {
                    "fullUrl": format!("{base}/ServiceRequest/sr-42"),
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": "sr-42",
                        "identifier": [{"system": format!("{base}/sid/order"), "value": "42"}],
                        "status": "active",
                        "intent": "order",
                        "priority": "stat",
                        "code": {
                            "coding": [{
                                "system": "http://snomed.info/sct",
                                "code": "394579002",
                                "display": "Cardiology"
                            }],
                            "text": "Cardiology teleconsultation"
                        },
                        "subject": {"reference": "Patient/p-7"},
                        "authoredOn": "2026-05-28T09:40:00+03:00",
                        "requester": {"reference": "Practitioner/dr-ivanova"},
                        "performer": [{"reference": "Organization/fcc"}],
                        "reasonCode": [
                            {"text": "Is CRT-D indicated?"},
                            {"text": "Which anticoagulation before the procedure?"}
                        ],
                        "supportingInfo": [{"reference": "Consent/consent-7"}],
                        "note": [
                            {"text": "72 years old, NYHA III, EF 35% on echo."},
                            {"text": "Atrial fibrillation since 2024."}
                        ]
                    }
                },
                {
                    "fullUrl": format!("{base}/Practitioner/dr-ivanova"),
                    "resource": {
                        "resourceType": "Practitioner",
                        "id": "dr-ivanova",
                        "name": [{"family": "Ivanova", "given": ["Anna"], "prefix": ["Dr."]}]
                    }
                },
                {
                    "fullUrl": format!("{base}/Patient/p-7"),
                    "resource": {
                        "resourceType": "Patient",
                        "id": "p-7",
                        "name": [{"family": "Sidorov", "given": ["Ivan", "Petrovich"]}],
                        "gender": "male",
                        "birthDate": "1954-02-11"
                    }
                },
                {
                    "fullUrl": format!("{base}/Organization/fcc"),
                    "resource": {
                        "resourceType": "Organization",
                        "id": "fcc",
                        "identifier": [
                            {"system": "urn:oid:1.2.643.5.1.13", "value": "1.2.643.5.1.13.13.12.2.77.7974"},
                            {"system": ORG_SYSTEM, "value": target.to_string()}
                        ],
                        "name": "Federal center of cardiology"
                    }
                },
                {
                    "fullUrl": format!("{base}/Consent/consent-7"),
                    "resource": {
                        "resourceType": "Consent",
                        "id": "consent-7",
                        "status": "active",
                        "scope": {"coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                            "code": "patient-privacy"
                        }]},
                        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                        "patient": {"reference": "Patient/p-7"},
                        "dateTime": "2026-05-28T09:30:00+03:00",
                        "performer": [{"reference": "Patient/p-7"}],
                        "policyRule": {"coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "OPTIN"
                        }]},
                        "provision": {"type": "permit"}
                    }
                }
            ]
        })
    }

    fn target() -> OrgId {
        let mut fed = TestFederation::new("fhir-import");
        fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology])
            .id()
    }

    #[test]
    fn imports_a_hand_written_request() {
        let target = target();
        let bundle = his_bundle(&target);
        // The fixture itself is valid FHIR R4, so the import is tested on
        // what a conformant system sends (and the validator accepts it).
        assert_valid(&bundle);

        let imported = import_service_request(&bundle).expect("imports");
        assert_eq!(
            imported,
            ImportedRequest {
                specialty: Specialty::Cardiology,
                urgency: Urgency::Emergency,
                target: Some(target),
                physician: "Dr. Anna Ivanova".into(),
                questions: "Is CRT-D indicated?\nWhich anticoagulation before the procedure?"
                    .into(),
                case_summary: "72 years old, NYHA III, EF 35% on echo.\n\n\
                               Atrial fibrillation since 2024."
                    .into(),
                consent: Some(Consent::Given {
                    by: "Ivan Petrovich Sidorov".into(),
                    at: Timestamp::from_unix_millis(
                        "2026-05-28T06:30:00Z"
                            .parse::<jiff::Timestamp>()
                            .unwrap()
                            .as_millisecond() as u64
                    ),
                    method: ConsentMethod::Electronic,
                    document: None,
                }),
            }
        );
        let text = serde_json::to_string(&bundle).unwrap();
        assert_eq!(import_service_request_json(&text), Ok(imported));
    }

    #[test]
    fn import_variants() {
        let target = target();
        // The Konsilium code alone; priority absent means routine; a
        // PractitionerRole with a display; no performer and no consent.
        let mut bundle = his_bundle(&target);
        let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
        sr.insert(
            "code".into(),
            json!({"coding": [{"system": SPECIALTY_SYSTEM, "code": "neonatology"}]}),
        );
        sr.remove("priority");
        sr.remove("performer");
        sr.remove("supportingInfo");
        sr.insert(
            "requester".into(),
            json!({"reference": "#role", "display": "Dr. Olga Belova"}),
        );
        bundle["entry"].as_array_mut().unwrap().truncate(3);
        let imported = import_service_request(&bundle).expect("imports");
        assert_eq!(imported.specialty, Specialty::Neonatology);
        assert_eq!(imported.urgency, Urgency::Planned);
        assert_eq!(imported.target, None);
        assert_eq!(imported.physician, "Dr. Olga Belova");
        assert_eq!(imported.consent, None);

        // Contained PractitionerRole → contained Practitioner; performer as a
        // logical reference by identifier; priority asap.
        let mut bundle = his_bundle(&target);
        let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
        sr.insert(
            "contained".into(),
            json!([
                {"resourceType": "Practitioner", "id": "p", "name": [{"text": "Dr. Ilya Orlov"}]},
                {"resourceType": "PractitionerRole", "id": "r", "practitioner": {"reference": "#p"}}
            ]),
        );
        sr.insert("requester".into(), json!({"reference": "#r"}));
        sr.insert(
            "performer".into(),
            json!([{"type": "Organization",
                    "identifier": {"system": ORG_SYSTEM, "value": target.to_string()}}]),
        );
        sr.insert("priority".into(), json!("asap"));
        let imported = import_service_request(&bundle).expect("imports");
        assert_eq!(imported.physician, "Dr. Ilya Orlov");
        assert_eq!(imported.target, Some(target));
        assert_eq!(imported.urgency, Urgency::Emergency);

        // A date-only consent date counts from midnight UTC.
        let mut bundle = his_bundle(&target);
        bundle["entry"][4]["resource"]["dateTime"] = json!("2026-05-28");
        let Some(Consent::Given { at, .. }) = import_service_request(&bundle).unwrap().consent
        else {
            panic!("consent given")
        };
        assert_eq!(instant(at), "2026-05-28T00:00:00Z");
    }

    #[track_caller]
    fn import_error(bundle: &Value) -> FhirError {
        match import_service_request(bundle) {
            Ok(imported) => panic!("imported {imported:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn import_errors_name_the_element() {
        let target = target();
        type Mutation = fn(&mut Value);
        let cases: &[(Mutation, &str, &str)] = &[
            (
                |b| {
                    b["entry"][0]["resource"]
                        .as_object_mut()
                        .unwrap()
                        .remove("code");
                },
                "Bundle.entry[0].resource.code",
                "specialty",
            ),
            (
                |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("394582007x"),
                "Bundle.entry[0].resource.code.coding[0].code",
                "unknown code \"394582007x\"",
            ),
            (
                // Allergy and immunology exists, but not this SNOMED concept.
                |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("22298006"),
                "Bundle.entry[0].resource.code.coding[0].code",
                "SNOMED CT clinical specialty",
            ),
            (
                |b| {
                    b["entry"][0]["resource"]["code"] = json!({"coding": [
                        {"system": "http://snomed.info/sct", "code": "394579002"},
                        {"system": SPECIALTY_SYSTEM, "code": "oncology"}
                    ]})
                },
                "Bundle.entry[0].resource.code.coding[1]",
                "oncology",
            ),
            (
                |b| b["entry"][0]["resource"]["code"] = json!({"text": "cardiology"}),
                "Bundle.entry[0].resource.code.coding",
                "missing",
            ),
            (
                |b| b["entry"][0]["resource"]["priority"] = json!("high"),
                "Bundle.entry[0].resource.priority",
                "routine, urgent, asap or stat",
            ),
            (
                |b| b["entry"][0]["resource"]["priority"] = json!(3),
                "Bundle.entry[0].resource.priority",
                "expected a string",
            ),
            (
                |b| b["entry"][0]["resource"]["status"] = json!("revoked"),
                "Bundle.entry[0].resource.status",
                "active",
            ),
            (
                |b| {
                    b["entry"][0]["resource"]
                        .as_object_mut()
                        .unwrap()
                        .remove("intent");
                },
                "Bundle.entry[0].resource.intent",
                "missing",
            ),
            (
                |b| {
                    b["entry"][0]["resource"]
                        .as_object_mut()
                        .unwrap()
                        .remove("requester");
                },
                "Bundle.entry[0].resource.requester",
                "physician",
            ),
            (
                |b| {
                    b["entry"][0]["resource"]["requester"] =
                        json!({"reference": "Organization/fcc"})
                },
                "Bundle.entry[0].resource.requester",
                "physician",
            ),
            (
                |b| b["entry"][3]["resource"]["identifier"][1]["value"] = json!("not-a-peer-id"),
                "Bundle.entry[3].resource.identifier[1].value",
                "not an organization id",
            ),
            (
                |b| {
                    b["entry"][3]["resource"]["identifier"]
                        .as_array_mut()
                        .unwrap()
                        .remove(1);
                },
                "Bundle.entry[0].resource.performer",
                ORG_SYSTEM,
            ),
            (
                |b| b["entry"][4]["resource"]["status"] = json!("rejected"),
                "Bundle.entry[4].resource.status",
                "only an active consent",
            ),
            (
                |b| b["entry"][4]["resource"]["provision"]["type"] = json!("deny"),
                "Bundle.entry[4].resource.provision.type",
                "denied",
            ),
            (
                |b| {
                    b["entry"][4]["resource"]
                        .as_object_mut()
                        .unwrap()
                        .remove("dateTime");
                },
                "Bundle.entry[4].resource.dateTime",
                "missing",
            ),
            (
                |b| b["entry"][4]["resource"]["dateTime"] = json!("28.05.2026"),
                "Bundle.entry[4].resource.dateTime",
                "not a FHIR dateTime",
            ),
            (
                |b| {
                    b["entry"][4]["resource"]
                        .as_object_mut()
                        .unwrap()
                        .remove("performer");
                },
                "Bundle.entry[4].resource.performer",
                "who gave consent",
            ),
            (
                |b| {
                    b["entry"][4]["resource"]["extension"] =
                        json!([{"url": CONSENT_METHOD_EXTENSION, "valueCode": "telepathic"}])
                },
                "Bundle.entry[4].resource.extension[0].valueCode",
                "written, electronic or oral",
            ),
            (
                |b| {
                    b["entry"][4]["resource"]["extension"] =
                        json!([{"url": OVERRIDE_REASON_EXTENSION, "valueString": "unconscious"}]);
                    b["entry"][0]["resource"]["priority"] = json!("routine");
                },
                "Bundle.entry[0].resource.priority",
                "emergency override",
            ),
            (
                |b| {
                    let second = b["entry"][0].clone();
                    b["entry"].as_array_mut().unwrap().push(second);
                },
                "Bundle.entry[5].resource",
                "second ServiceRequest",
            ),
            (
                |b| {
                    b["entry"].as_array_mut().unwrap().remove(0);
                },
                "Bundle.entry",
                "ServiceRequest",
            ),
            (
                |b| b["entry"][2]["resource"] = json!("Patient"),
                "Bundle.entry[2].resource",
                "expected an object",
            ),
        ];
        for (mutate, path, message) in cases {
            let mut bundle = his_bundle(&target);
            mutate(&mut bundle);
            let e = import_error(&bundle);
            assert_eq!(e.path(), *path, "{e}");
            let text = e.to_string();
            assert!(text.starts_with(path), "{text}");
            assert!(
                text.contains(message),
                "{text:?} does not mention {message:?}"
            );
        }
    }

    #[test]
    fn import_refuses_non_bundles_and_garbage_without_panicking() {
        for garbage in [
            json!(null),
            json!(42),
            json!("Bundle"),
            json!([{"resourceType": "Bundle"}]),
            json!({}),
            json!({"resourceType": 7}),
            json!({"resourceType": "Patient", "id": "p"}),
            json!({"resourceType": "ServiceRequest", "status": "active"}),
        ] {
            assert!(
                matches!(import_error(&garbage), FhirError::NotABundle { .. }),
                "{garbage}"
            );
        }
        for text in ["", "{", "{\"resourceType\": \"Bundle\",}", "\u{0}", "[1, 2"] {
            assert!(matches!(
                import_service_request_json(text),
                Err(FhirError::NotJson(_))
            ));
        }
        assert!(matches!(
            import_error(&json!({"resourceType": "Bundle", "entry": 5})),
            FhirError::Invalid { .. }
        ));
        assert!(matches!(
            import_error(&json!({"resourceType": "Bundle", "type": "collection"})),
            FhirError::Missing { .. }
        ));
        // Every element of a valid request replaced by every kind of wrong
        // value: an error or a result, never a panic.
        let bundle = his_bundle(&target());
        let mut pointers = Vec::new();
        fn walk(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => m.iter().for_each(|(k, c)| {
                    walk(c, format!("{at}/{k}"), out);
                }),
                Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                    walk(c, format!("{at}/{i}"), out);
                }),
                _ => {}
            }
            out.push(at);
        }
        walk(&bundle, String::new(), &mut pointers);
        let replacements = [
            json!(null),
            json!(-1),
            json!(""),
            json!("#"),
            json!("urn:uuid:0"),
            json!([]),
            json!([null]),
            json!({}),
            json!({"reference": "#x"}),
        ];
        let mut outcomes = 0;
        for pointer in &pointers {
            for replacement in &replacements {
                let mut mutated = bundle.clone();
                match mutated.pointer_mut(pointer) {
                    Some(slot) => *slot = replacement.clone(),
                    None => continue,
                }
                let _ = import_service_request(&mutated);
                outcomes += 1;
            }
        }
        assert!(outcomes > 500, "{outcomes}");
    }
}
