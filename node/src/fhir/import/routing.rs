//! Where the request goes: the specialty and the consulting organization.

use super::*;

/// The specialty from `code` or, when `code` names none of the catalogue,
/// from `performerType` (the kind of practitioner wanted, which is how some
/// systems, and IHE 360X referrals, say it).
pub(super) fn import_specialty(sr: &Res<'_>) -> Result<Specialty, FhirError> {
    let mut first_miss = None;
    for key in ["code", "performerType"] {
        let Some(concept) = opt_obj(sr.obj, key, &sr.path)? else {
            continue;
        };
        match specialty_in(concept, &sr.at(key))? {
            Ok(specialty) => return Ok(specialty),
            Err(miss) => {
                first_miss.get_or_insert(miss);
            }
        }
    }
    Err(first_miss.unwrap_or_else(|| FhirError::Missing {
        path: sr.at("code"),
        what: "the requested specialty (ServiceRequest.code or performerType)",
    }))
}

/// The specialty one CodeableConcept names. The outer error is bad input;
/// the inner one says why this concept names no specialty, for when no
/// other element does either.
fn specialty_in(
    concept: &Map<String, Value>,
    path: &str,
) -> Result<Result<Specialty, FhirError>, FhirError> {
    const EXPECTED: &str = "a SNOMED CT clinical specialty of the Konsilium catalogue \
                            (e.g. 394579002 cardiology) or a urn:konsilium:specialty slug";
    let codings = opt_array(concept, "coding", path)?;
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
        [] => Ok(Err(unknown.unwrap_or(FhirError::Missing {
            path: format!("{path}.coding"),
            what: "a coding in SNOMED CT (http://snomed.info/sct) or urn:konsilium:specialty",
        }))),
        [(first, _), rest @ ..] => {
            if let Some((other, cpath)) = rest.iter().find(|(s, _)| s != first) {
                return Err(FhirError::Invalid {
                    path: cpath.clone(),
                    reason: format!("names {other}, but an earlier coding names {first}"),
                });
            }
            Ok(Ok(*first))
        }
    }
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

pub(super) fn import_target(doc: &Doc<'_>, sr: &Res<'_>) -> Result<Option<OrgId>, FhirError> {
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
