//! Import: the consultation request a hospital information system sends.
//! Here the ServiceRequest is found and checked; each part has its own module.

mod bundle;
mod consent;
mod elements;
mod extract;
mod files;
mod people;
mod routing;

use super::*;
use bundle::{Doc, Res};
use consent::import_consent;
use elements::*;
use extract::{import_identifier, import_questions, import_reasons};
use files::import_attachments;
use people::import_physician;
use routing::{import_specialty, import_target};

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
    let case_summary = import_reasons(&doc, sr)?;
    let questions = import_questions(sr)?;
    let attachments = import_attachments(&doc, sr)?;
    let identifier = import_identifier(sr)?;
    let consent = import_consent(&doc, sr, &physician)?;
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
        questions,
        case_summary,
        attachments,
        identifier,
        consent,
    })
}
