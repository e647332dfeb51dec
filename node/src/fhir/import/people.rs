//! The requesting physician, read through PractitionerRole to Practitioner;
//! a patient is never read as a practitioner.

use super::*;

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

/// The name of the practitioner a Reference points at, resolving within the
/// Bundle (and through a PractitionerRole to its Practitioner, one level).
/// A reference to a Patient, RelatedPerson or Group is refused rather than
/// read: a patient's name must never become a practitioner's.
fn referenced_person(
    doc: &Doc<'_>,
    reference: &Map<String, Value>,
    path: &str,
    container: &Res<'_>,
) -> Result<Option<String>, FhirError> {
    let target = opt_str(reference, "reference", path)?;
    let resource = target.and_then(|t| doc.resolve(t, container));
    let kind = resource
        .as_ref()
        .map(|r| r.rtype)
        .or(opt_str(reference, "type", path)?)
        .or_else(|| target.and_then(|t| t.rsplit('/').nth(1)));
    if let Some(kind @ ("Patient" | "RelatedPerson" | "Group")) = kind {
        return Err(FhirError::Invalid {
            path: path.to_owned(),
            reason: format!("names a {kind}; a practitioner is needed here"),
        });
    }
    if let Some(display) = opt_str(reference, "display", path)?.and_then(fhir_string) {
        return Ok(Some(display));
    }
    let Some(resource) = resource else {
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
        "Practitioner" => human_name(resource.obj),
        _ => None,
    })
}

pub(super) fn import_physician(doc: &Doc<'_>, sr: &Res<'_>) -> Result<String, FhirError> {
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
