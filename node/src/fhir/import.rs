//! Import: the consultation request a hospital information system sends.

use super::*;

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

/// The reason for referral: every `reasonCode` (its text, or its first
/// coding's display) and every `reasonReference` (its display, or the text
/// of the referenced resource's `code`), one a line, in that order.
fn import_reasons(doc: &Doc<'_>, sr: &Res<'_>) -> Result<String, FhirError> {
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
fn import_questions(sr: &Res<'_>) -> Result<String, FhirError> {
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
fn import_identifier(sr: &Res<'_>) -> Result<Option<String>, FhirError> {
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

/// The case extract's files: every DocumentReference (each `content`
/// attachment) and Binary that `supportingInfo` references. The bytes must
/// travel inline (`data`): the node seals them and cannot fetch a URL.
fn import_attachments(doc: &Doc<'_>, sr: &Res<'_>) -> Result<Vec<ImportedAttachment>, FhirError> {
    let mut out = Vec::new();
    for (k, info) in sr.array("supportingInfo")?.iter().enumerate() {
        let ipath = format!("{}[{k}]", sr.at("supportingInfo"));
        let info = as_object(info, &ipath)?;
        let Some(reference) = opt_str(info, "reference", &ipath)? else {
            continue;
        };
        let Some(resource) = doc.resolve(reference, sr) else {
            if matches!(
                opt_str(info, "type", &ipath)?,
                Some("DocumentReference" | "Binary")
            ) {
                return Err(FhirError::Invalid {
                    path: format!("{ipath}.reference"),
                    reason: format!("{reference:?} does not resolve to a resource in the Bundle"),
                });
            }
            continue;
        };
        match resource.rtype {
            "DocumentReference" => {
                let contents = resource.array("content")?;
                if contents.is_empty() {
                    return Err(FhirError::Missing {
                        path: resource.at("content"),
                        what: "the document's content (DocumentReference.content)",
                    });
                }
                let doc_title = resource.str("description")?;
                for (c, content) in contents.iter().enumerate() {
                    let cpath = format!("{}[{c}]", resource.at("content"));
                    let content = as_object(content, &cpath)?;
                    let attachment = opt_obj(content, "attachment", &cpath)?.ok_or_else(|| {
                        FhirError::Missing {
                            path: format!("{cpath}.attachment"),
                            what: "the attachment",
                        }
                    })?;
                    out.push(read_attachment(
                        attachment,
                        &format!("{cpath}.attachment"),
                        doc_title,
                    )?);
                }
            }
            "Binary" => out.push(read_attachment(resource.obj, &resource.path, None)?),
            _ => {}
        }
    }
    Ok(out)
}

/// One Attachment (or Binary: the same `contentType` and `data`).
fn read_attachment(
    obj: &Map<String, Value>,
    path: &str,
    fallback_title: Option<&str>,
) -> Result<ImportedAttachment, FhirError> {
    let data = opt_str(obj, "data", path)?.ok_or_else(|| FhirError::Missing {
        path: format!("{path}.data"),
        what: "the attachment's bytes (data, base64); a url cannot be fetched",
    })?;
    let bytes = BASE64.decode(data.trim()).map_err(|e| FhirError::Invalid {
        path: format!("{path}.data"),
        reason: format!("not base64: {e}"),
    })?;
    if bytes.is_empty() {
        return Err(FhirError::Invalid {
            path: format!("{path}.data"),
            reason: "the attachment is empty".into(),
        });
    }
    let content_type = opt_str(obj, "contentType", path)?
        .and_then(fhir_string)
        .unwrap_or_else(|| "application/octet-stream".into());
    let title = opt_str(obj, "title", path)?
        .or(fallback_title)
        .and_then(fhir_string);
    Ok(ImportedAttachment {
        title,
        content_type,
        data: bytes,
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

/// The specialty from `code` or, when `code` names none of the catalogue,
/// from `performerType` (the kind of practitioner wanted, which is how some
/// systems, and IHE 360X referrals, say it).
fn import_specialty(sr: &Res<'_>) -> Result<Specialty, FhirError> {
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

/// The Consent that covers the request. Who gave it is recorded as who they
/// were to the patient (the patient, or a representative) and which
/// physician recorded it; their name is never read.
fn import_consent(
    doc: &Doc<'_>,
    sr: &Res<'_>,
    physician: &str,
) -> Result<Option<Consent>, FhirError> {
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
    let by = consent_given_by(&consent_giver(doc, consent)?, physician);
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

/// Who agreed, as a role: a RelatedPerson performer is the patient's
/// representative; anyone else (the Patient, a display, nothing) counts as
/// the patient. Only resource types are looked at, never names.
fn consent_giver(doc: &Doc<'_>, consent: &Res<'_>) -> Result<Giver, FhirError> {
    for (k, performer) in consent.array("performer")?.iter().enumerate() {
        let ppath = format!("{}[{k}]", consent.at("performer"));
        let performer = as_object(performer, &ppath)?;
        let target = opt_str(performer, "reference", &ppath)?;
        let kind = target
            .and_then(|t| doc.resolve(t, consent))
            .map(|r| r.rtype)
            .or(opt_str(performer, "type", &ppath)?)
            .or_else(|| target.and_then(|t| t.rsplit('/').nth(1)));
        if kind == Some("RelatedPerson") {
            return Ok(Giver::Representative);
        }
    }
    Ok(Giver::Patient)
}

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}
