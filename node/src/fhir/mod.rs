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
//! | Practitioner + PractitionerRole | who asked (the attending physician, the request's `requester`) and who answered (everyone of the consulting organization who took a step or signed the conclusion), each with role and organization |
//! | ServiceRequest | the request: specialty as SNOMED CT and Konsilium code, priority, performer, the case summary as `reasonCode`, the questions as `note` |
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
//! sends to open a consultation (`collection` or `transaction`), the way FHIR
//! R4 and the IHE 360X closed-loop referral profile use the elements:
//!
//! - the reason for referral, which is the case summary, from `reasonCode`
//!   and `reasonReference`;
//! - the questions for the consultant from `note`, or from the
//!   [`QUESTIONS_EXTENSION`] when a system uses `note` for something else.
//!   `Task.input` is not read: the questions belong to the request, and a
//!   referral Bundle need not carry a Task;
//! - the case extract's files from `supportingInfo`: DocumentReference
//!   attachments and Binary resources with inline `data`, which become the
//!   consultation's sealed attachments;
//! - urgency from `priority`; the specialty from `code`, or `performerType`;
//!   the consulting organization from `performer`; the physician from
//!   `requester` (through PractitionerRole to Practitioner);
//! - the client's identifier from `identifier`, for idempotent intake;
//! - the Consent that covers it.
//!
//! The patient is not read: routing needs nothing of them, and a Patient
//! (or RelatedPerson) is refused wherever a practitioner is expected. Who
//! consented is recorded as a role and the physician who recorded it
//! ([`consent_given_by`]), never by name.
//!
//! Every error names the offending element as a path from the Bundle, e.g.
//! `Bundle.entry[0].resource.priority`. Nothing in the input can make it panic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use konsilium_protocol::conclusion::Conclusion;
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::{Action as JournalAction, Entry, Role, VideoStep};
use konsilium_protocol::seal::BlobRef;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{
    Action, ActionKind, Appointment, Consent, ConsentMethod, Consultation, ConsultationId, Slot,
    Status, Transition,
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
/// ServiceRequest extension, `valueString`: the questions for the
/// consultant, for a system that uses `note` for something else.
pub const QUESTIONS_EXTENSION: &str = "urn:konsilium:fhir:extension:questions";
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
/// `DocumentReference.identifier`: the BLAKE3 hash of a sealed file, in hex.
pub const BLOB_SYSTEM: &str = "urn:konsilium:blob";

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
    /// What the physician wrote: the export carries it so that an import of
    /// the export opens the same consultation.
    pub extract: &'a CaseExtract,
    pub requester_name: &'a str,
    pub consultant_name: &'a str,
    pub deadline: Option<&'a Deadline>,
    pub conclusion: Option<&'a Signed<Conclusion>>,
    /// Entries about this consultation; entries about another one are skipped.
    pub journal: &'a [Entry],
    /// The case extract's files, in the request's order.
    pub files: &'a [ExportedFile],
}

/// One file of the case extract as the export shows it: a DocumentReference
/// in the ServiceRequest's `supportingInfo`, which an import reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    pub info: FileInfo,
    pub blob: BlobRef,
    /// Where the HTTP API serves the file, relative to its base URL.
    pub url: String,
    /// The bytes, when the export carries them inline (`Attachment.data`);
    /// without them an import of the export cannot open the consultation
    /// again with this file.
    pub data: Option<Vec<u8>>,
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
    /// The questions for the consultant: the [`QUESTIONS_EXTENSION`], or
    /// else the `note` texts separated by blank lines; empty when none.
    pub questions: String,
    /// The reason for referral and case summary: `reasonCode` and
    /// `reasonReference` texts, one a line; empty when none.
    pub case_summary: String,
    /// The case extract's files from `supportingInfo`, sealed as the
    /// consultation's attachments.
    pub attachments: Vec<ImportedAttachment>,
    /// The client's identifier of the request (`system|value`), from the
    /// first `ServiceRequest.identifier`: what makes a retry idempotent.
    pub identifier: Option<String>,
    pub consent: Option<Consent>,
}

/// One file of the case extract (a DocumentReference's attachment or a Binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedAttachment {
    pub title: Option<String>,
    pub content_type: String,
    pub data: Vec<u8>,
}

impl ImportedRequest {
    /// What decides whether a retry under the same identifier is the same
    /// request: BLAKE3 over the imported content (not the Bundle's bytes, so
    /// a system that regenerates `Bundle.id`, timestamps or entry order on
    /// a retry is still recognised), with each attachment by its hash.
    /// The identifier itself is left out: it is the key, not the content.
    pub fn fingerprint(&self) -> [u8; 32] {
        let attachments: Vec<(Option<&str>, &str, [u8; 32])> = self
            .attachments
            .iter()
            .map(|a| {
                (
                    a.title.as_deref(),
                    a.content_type.as_str(),
                    *blake3::hash(&a.data).as_bytes(),
                )
            })
            .collect();
        let content = (
            self.specialty,
            self.urgency,
            self.target,
            &self.physician,
            &self.questions,
            &self.case_summary,
            &attachments,
            &self.consent,
        );
        let bytes = postcard::to_stdvec(&content).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(b"konsilium/fhir-intake/v1\0");
        h.update(&bytes);
        *h.finalize().as_bytes()
    }
}

/// Who gave consent, as far as the record may say: a role, never a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Giver {
    Patient,
    Representative,
}

/// What an imported consent records as given `by`: the giver's role and
/// the physician who recorded it. The patient's name stays in the hospital
/// information system; Konsilium records must not identify the patient.
pub fn consent_given_by(giver: &Giver, physician: &str) -> String {
    let who = match giver {
        Giver::Patient => "the patient",
        Giver::Representative => "the patient's legal representative",
    };
    match fhir_string(physician) {
        Some(p) => format!("{who}; recorded by {p}"),
        None => who.to_owned(),
    }
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

pub mod example;
mod export;
mod import;
#[cfg(test)]
mod tests;

pub use export::export_bundle;
pub use import::{import_service_request, import_service_request_json};

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
    hex::encode(bytes)
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

/// Code and display of a workflow step: the code is the action's one name
/// ([`ActionKind`]), hyphenated as FHIR codes are.
fn action_code(action: &Action) -> (String, &'static str) {
    let display = match action.kind() {
        ActionKind::Receive => "Request registered",
        ActionKind::Accept => "Accepted",
        ActionKind::Assign => "Passed to a consultant",
        ActionKind::Reject => "Declined",
        ActionKind::Start => "Consultant started work",
        ActionKind::AskMore => "More examinations requested",
        ActionKind::Supply => "More materials supplied",
        ActionKind::ProposeSlots => "Video consilium times proposed",
        ActionKind::ConfirmSlot => "Video consilium time confirmed",
        ActionKind::CancelAppointment => "Video consilium cancelled",
        ActionKind::Note => "Note or oral conclusion",
        ActionKind::Conclude => "Signed conclusion issued",
        ActionKind::Acknowledge => "Conclusion acknowledged",
        ActionKind::Cancel => "Cancelled by the requester",
        ActionKind::Fail => "Failed",
        ActionKind::Invite => "Organization invited into the consilium",
    };
    (action.name().replace('_', "-"), display)
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
