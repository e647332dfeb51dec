//! The Consent that covers the request, or the emergency override that
//! replaced it; who consented is a role, never a name.

use super::*;

/// The Consent that covers the request. Who gave it is recorded as who they
/// were to the patient (the patient, or a representative) and which
/// physician recorded it; their name is never read.
pub(super) fn import_consent(
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

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}
