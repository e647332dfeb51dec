//! Reading typed elements out of JSON objects; every error names the
//! element's path from the Bundle.

use super::*;

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn as_object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, FhirError> {
    v.as_object().ok_or_else(|| FhirError::Invalid {
        path: path.to_owned(),
        reason: format!("expected an object, found {}", json_kind(v)),
    })
}

pub(super) fn opt_str<'v>(
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

pub(super) fn opt_obj<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => as_object(v, &format!("{path}.{key}")).map(Some),
    }
}

pub(super) fn opt_array<'v>(
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
pub(super) fn concept_text(
    cc: &Map<String, Value>,
    path: &str,
) -> Result<Option<String>, FhirError> {
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
