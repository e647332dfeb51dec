//! The patient's consent a request must carry, or the emergency override
//! that may replace it, read from a JSON request into what the record keeps.

use super::params::parse_time;
use super::problems::Problem;
use super::views::MethodName;
use crate::fhir::{self, Giver};
use axum::http::StatusCode;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Consent)]
pub(super) struct ConsentBody {
    /// Who gave consent, as a role (default patient); recorded with the physician, never a name
    #[serde(default)]
    #[schema(value_type = Option<Giver>)]
    pub(super) by: Option<String>,
    #[schema(value_type = MethodName)]
    pub(super) method: String,
    #[serde(default)]
    pub(super) witness: Option<String>,
    #[serde(default)]
    #[schema(format = DateTime)]
    pub(super) at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = EmergencyOverride)]
pub(super) struct OverrideBody {
    pub(super) reason: String,
}

/// How far past this node's clock a consent may be dated: the system that
/// recorded it keeps a clock of its own.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// The time consent was given, if it is not later than `now`: a request
/// relies on consent already given, and a consent dated in the future
/// (a typo in the year, a wrong time zone) would stand in the signed
/// record as given after the consultation it allowed.
pub(super) fn given_by(at: Timestamp, now: Timestamp) -> Result<Timestamp, String> {
    if at > now.saturating_add(CLOCK_SKEW) {
        return Err(format!(
            "consent dated {at} is later than now ({now}): give the time it was given"
        ));
    }
    Ok(at)
}

pub(super) fn consent_required(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent-required",
        "Patient consent is required",
        detail,
    )
    .field("consent")
}

/// The consent as recorded: who gave it is a role, with the physician who
/// recorded it (see [`fhir::consent_given_by`]).
pub(super) fn consent_of(
    consent: Option<ConsentBody>,
    emergency: Option<OverrideBody>,
    urgency: Urgency,
    physician: &str,
    now: Timestamp,
) -> Result<Consent, Problem> {
    match (consent, emergency) {
        (Some(_), Some(_)) => Err(Problem::invalid(
            "emergency_override",
            "give either consent or emergency_override, not both",
        )),
        (None, None) => Err(consent_required(
            "the patient's consent (consent: {by, method}) is required; only an emergency may go out with emergency_override: {reason}",
        )),
        (None, Some(o)) => {
            if urgency != Urgency::Emergency {
                return Err(consent_required(
                    "emergency_override is only for emergencies (urgency \"emergency\"); give the patient's consent",
                ));
            }
            if o.reason.trim().is_empty() {
                return Err(consent_required(
                    "emergency_override.reason must say why consent could not be obtained",
                ));
            }
            Ok(Consent::EmergencyOverride { reason: o.reason })
        }
        (Some(c), None) => {
            let giver = match c.by.as_deref().map(|b| b.trim().to_lowercase()).as_deref() {
                None | Some("patient" | "the patient") => fhir::Giver::Patient,
                Some("representative" | "the patient's legal representative") => {
                    fhir::Giver::Representative
                }
                Some(_) => {
                    return Err(Problem::invalid(
                        "consent.by",
                        "consent.by: say who gave consent as \"patient\" or \"representative\"; \
                         the patient is never named in a consultation record",
                    ));
                }
            };
            let method = match c.method.parse::<MethodName>() {
                Ok(MethodName::Written) => ConsentMethod::Written,
                Ok(MethodName::Electronic) => ConsentMethod::Electronic,
                Ok(MethodName::Oral) => {
                    let witness = c.witness.clone().unwrap_or_default();
                    if witness.trim().is_empty() {
                        return Err(Problem::missing("consent.witness", "for oral consent"));
                    }
                    ConsentMethod::Oral { witness }
                }
                Err(_) => {
                    let other = c.method.to_ascii_lowercase();
                    return Err(Problem::invalid(
                        "consent.method",
                        format!(
                            "consent.method: {other:?} is not a method: use written|electronic|oral"
                        ),
                    ));
                }
            };
            if c.witness.is_some() && !matches!(method, ConsentMethod::Oral { .. }) {
                return Err(Problem::invalid(
                    "consent.witness",
                    "consent.witness applies to oral consent only",
                ));
            }
            let at = match &c.at {
                Some(t) => given_by(parse_time("consent.at", t)?, now)
                    .map_err(|e| Problem::invalid("consent.at", format!("consent.at: {e}")))?,
                None => now,
            };
            Ok(Consent::Given {
                by: fhir::consent_given_by(&giver, physician),
                at,
                method,
                document: None,
            })
        }
    }
}
