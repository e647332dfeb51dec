//! The case extract's text: the reason for referral, the questions for
//! the consultant, and the client's identifier of the request.

use super::*;

/// The reason for referral: every `reasonCode` (its text, or its first
/// coding's display) and every `reasonReference` (its display, or the text
/// of the referenced resource's `code`), one a line, in that order.
pub(super) fn import_reasons(doc: &Doc<'_>, sr: &Res<'_>) -> Result<String, FhirError> {
    let mut reasons = Vec::new();
    for (i, reason) in sr.array("reasonCode")?.iter().enumerate() {
        let path = format!("{}[{i}]", sr.at("reasonCode"));
        if let Some(text) = concept_text(as_object(reason, &path)?, &path)? {
            reasons.push(text);
        }
    }
    for (i, reason) in sr.array("reasonReference")?.iter().enumerate() {
        let path = format!("{}[{i}]", sr.at("reasonReference"));
        let reason = as_object(reason, &path)?;
        if let Some(display) = opt_str(reason, "display", &path)?.and_then(fhir_string) {
            reasons.push(display);
            continue;
        }
        let Some(target) = opt_str(reason, "reference", &path)? else {
            continue;
        };
        let resource = doc.resolve(target, sr).ok_or_else(|| FhirError::Invalid {
            path: format!("{path}.reference"),
            reason: format!("{target:?} does not resolve to a resource in the Bundle"),
        })?;
        if let Some(code) = opt_obj(resource.obj, "code", &resource.path)?
            && let Some(text) = concept_text(code, &resource.at("code"))?
        {
            reasons.push(text);
        }
    }
    Ok(reasons.join("\n"))
}

/// The questions for the consultant: the [`QUESTIONS_EXTENSION`] when the
/// request carries it (a system that uses `note` for something else says so
/// explicitly), otherwise the `note` texts, separated by blank lines.
pub(super) fn import_questions(sr: &Res<'_>) -> Result<String, FhirError> {
    for (k, ext) in sr.array("extension")?.iter().enumerate() {
        let epath = format!("{}[{k}]", sr.at("extension"));
        let ext = as_object(ext, &epath)?;
        if opt_str(ext, "url", &epath)? == Some(QUESTIONS_EXTENSION) {
            let text = opt_str(ext, "valueString", &epath)?.ok_or_else(|| FhirError::Missing {
                path: format!("{epath}.valueString"),
                what: "the questions for the consultant",
            })?;
            return Ok(fhir_string(text).unwrap_or_default());
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
    Ok(notes.join("\n\n"))
}

/// The client's identifier of the request, `system|value` (FHIR token
/// search syntax), from the first `ServiceRequest.identifier` with a value.
pub(super) fn import_identifier(sr: &Res<'_>) -> Result<Option<String>, FhirError> {
    for (k, ident) in sr.array("identifier")?.iter().enumerate() {
        let ipath = format!("{}[{k}]", sr.at("identifier"));
        let ident = as_object(ident, &ipath)?;
        let Some(value) = opt_str(ident, "value", &ipath)?.and_then(fhir_string) else {
            continue;
        };
        let system = opt_str(ident, "system", &ipath)?.unwrap_or_default();
        return Ok(Some(format!("{system}|{value}")));
    }
    Ok(None)
}
