//! What a physician sends to open a consultation, as JSON or as the JSON
//! part of a multipart form with attachments.

use super::consent::{ConsentBody, OverrideBody};
use super::params::level_schema;
use konsilium_protocol::urgency::Urgency;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

// Fields the node checks itself (specialty, urgency, consent method, ...)
// are read as text, so that a refusal names the field and the choices.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewConsultation)]
pub(super) struct NewConsultationBody {
    /// Specialty slug, e.g. cardiology
    pub(super) specialty: String,
    #[serde(default)]
    #[schema(schema_with = level_schema)]
    pub(super) min_level: Option<Value>,
    #[schema(value_type = Urgency)]
    pub(super) urgency: String,
    /// Organization id (peer id); omitted: routed by specialty
    #[serde(default)]
    pub(super) target: Option<String>,
    #[serde(default)]
    pub(super) region: Option<String>,
    #[serde(default)]
    pub(super) consent: Option<ConsentBody>,
    #[serde(default)]
    pub(super) emergency_override: Option<OverrideBody>,
    /// Defaults to the token's user
    #[serde(default)]
    pub(super) physician: Option<String>,
    pub(super) summary: String,
    pub(super) questions: String,
    /// As the Idempotency-Key header, for clients that cannot set headers
    #[serde(default)]
    #[schema(max_length = 512)]
    pub(super) idempotency_key: Option<String>,
}
