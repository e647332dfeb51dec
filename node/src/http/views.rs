//! The bodies the API answers with, as types: what a client gets is what
//! they serialize to, and `/openapi.json` describes them from the same
//! definitions. A slot and a consent method are also taken in requests,
//! under the same names. Protocol enums are shown by their API names (a status by
//! its FHIR code), hence the `value_type`s over the strings that carry them.

use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::journal::Role;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{ActionKind, Side, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A time for the video consilium.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Slot)]
pub(super) struct SlotBody {
    #[schema(format = DateTime)]
    pub(super) start: String,
    #[schema(format = DateTime)]
    pub(super) end: String,
}

/// How consent was given, as the API names it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
#[schema(as = ConsentMethod)]
pub(super) enum MethodName {
    Written,
    Electronic,
    Oral,
}

/// One consultation as the list shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct ConsultationSummary {
    pub(super) id: String,
    #[schema(value_type = Status)]
    pub(super) status: &'static str,
    #[schema(value_type = Urgency)]
    pub(super) urgency: String,
    /// Specialty slug, e.g. cardiology
    pub(super) specialty: &'static str,
    /// Which side of the consultation this organization is on
    #[schema(value_type = Side)]
    pub(super) side: String,
    /// The other organization's id
    pub(super) counterpart: String,
    #[schema(format = DateTime)]
    pub(super) created: String,
    #[schema(format = DateTime)]
    pub(super) deadline_due: Option<String>,
    pub(super) time_left_seconds: Option<u64>,
    #[schema(value_type = Option<DeadlineState>)]
    pub(super) deadline_state: Option<&'static str>,
    pub(super) acknowledged: bool,
}

/// The consultations, newest first, a page at a time.
#[derive(Serialize, ToSchema)]
pub(super) struct ConsultationList {
    pub(super) consultations: Vec<ConsultationSummary>,
    /// Where the next page starts (its `after`); none on the last page
    pub(super) next: Option<String>,
}

/// One consultation with its history.
#[derive(Serialize, ToSchema)]
#[schema(as = Consultation)]
pub(super) struct ConsultationDetail {
    #[serde(flatten)]
    pub(super) summary: ConsultationSummary,
    pub(super) requester: String,
    pub(super) consultant: String,
    pub(super) physician: String,
    pub(super) consent: RecordedConsent,
    /// The consultation declined or unanswered elsewhere that this one continues
    pub(super) escalated_from: Option<String>,
    pub(super) appointment: AppointmentView,
    #[schema(format = DateTime)]
    pub(super) first_response: Option<String>,
    pub(super) deadline: Option<DeadlineView>,
    pub(super) extract: CaseExtract,
    pub(super) files: Vec<FileEntry>,
    pub(super) conclusion: Option<ConclusionView>,
    pub(super) history: Vec<HistoryEntry>,
}

/// The patient's consent as the request records it, or the emergency
/// override that went out instead.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum RecordedConsent {
    Given {
        #[schema(schema_with = always_true)]
        given: bool,
        /// Who gave consent, as a role, with the physician who recorded it; never a name
        by: String,
        #[schema(format = DateTime)]
        at: String,
        method: MethodName,
        /// For oral consent
        witness: Option<String>,
    },
    Override {
        #[schema(schema_with = always_false)]
        given: bool,
        emergency_override: OverrideReason,
    },
}

/// Why consent could not be obtained.
#[derive(Serialize, ToSchema)]
pub(super) struct OverrideReason {
    pub(super) reason: String,
}

/// The video consilium's scheduling.
#[derive(Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
#[schema(as = Appointment)]
pub(super) enum AppointmentView {
    None,
    Proposed { slots: Vec<SlotBody> },
    Confirmed { slot: SlotBody },
    Cancelled,
}

/// The consulting organization's deadlines for this consultation.
#[derive(Serialize, ToSchema)]
#[schema(as = Deadline)]
pub(super) struct DeadlineView {
    #[schema(format = DateTime)]
    pub(super) requested: String,
    #[schema(format = DateTime)]
    pub(super) due: String,
    #[schema(format = DateTime)]
    pub(super) first_response_due: Option<String>,
    #[schema(format = DateTime)]
    pub(super) at_risk_from: String,
    #[schema(value_type = DeadlineState)]
    pub(super) state: &'static str,
    #[schema(value_type = Option<DeadlineState>)]
    pub(super) first_response_state: Option<&'static str>,
}

/// One file of the case extract, and where to download it.
#[derive(Serialize, ToSchema)]
pub(super) struct FileEntry {
    pub(super) title: Option<String>,
    pub(super) content_type: String,
    /// Bytes, once decrypted
    #[schema(required = true)]
    pub(super) size: Option<u64>,
    pub(super) blake3: String,
    pub(super) href: String,
}

/// The signed conclusion.
#[derive(Serialize, ToSchema)]
#[schema(as = Conclusion)]
pub(super) struct ConclusionView {
    pub(super) authors: Vec<String>,
    pub(super) diagnosis: String,
    pub(super) recommendations: String,
    pub(super) treatment_plan: String,
    pub(super) further_studies: String,
    #[schema(format = DateTime)]
    pub(super) issued_at: String,
}

/// One signed step of the consultation.
#[derive(Serialize, ToSchema)]
pub(super) struct HistoryEntry {
    pub(super) seq: u32,
    /// The organization that took the step
    pub(super) actor: String,
    #[schema(value_type = Role)]
    pub(super) role: &'static str,
    pub(super) user: String,
    #[schema(format = DateTime)]
    pub(super) at: String,
    #[schema(value_type = ActionKind)]
    pub(super) action: &'static str,
    /// The step's fields, as the action request gave them (a conclusion by its hash)
    #[schema(value_type = Object)]
    pub(super) details: Value,
}

/// A consultation opened and sent.
#[derive(Serialize, ToSchema)]
pub(super) struct Created {
    pub(super) id: String,
    pub(super) recipient: String,
    pub(super) recipient_name: String,
    /// The peer the package went to first
    pub(super) next_hop: String,
    /// The sent package's id
    pub(super) package: String,
}

/// The consultation an identifier already opened.
#[derive(Serialize, ToSchema)]
pub(super) struct Existing {
    pub(super) id: String,
    #[schema(schema_with = always_true)]
    pub(super) existing: bool,
}

fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

/// A consultation's status after a step.
#[derive(Serialize, ToSchema)]
pub(super) struct ActionResult {
    pub(super) id: String,
    #[schema(value_type = Status)]
    pub(super) status: &'static str,
}
