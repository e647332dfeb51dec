//! Idempotent creation: client identifiers and the fingerprint that decides
//! whether a retry is the same request.

use super::problems::Problem;
use super::uploads::Upload;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// The longest client identifier kept (an idempotency key, or a FHIR
/// `system|value`): enough for any URI system with a UUID value.
pub const MAX_IDENTIFIER: usize = 512;

pub(super) fn check_identifier(field: &str, identifier: &str) -> Result<(), Problem> {
    if identifier.trim().is_empty() {
        return Err(Problem::invalid(field, format!("{field} is empty")));
    }
    if identifier.len() > MAX_IDENTIFIER {
        return Err(Problem::invalid(
            field,
            format!("{field} is longer than {MAX_IDENTIFIER} bytes"),
        ));
    }
    Ok(())
}

/// The idempotency key of a JSON request: the `Idempotency-Key` header or
/// the body's `idempotency_key` (the same value if both are given).
pub(super) fn idempotency_key(
    headers: &HeaderMap,
    field: Option<&str>,
) -> Result<Option<String>, Problem> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Problem::invalid("Idempotency-Key", "Idempotency-Key is not text"))?
                .trim()
                .to_owned(),
        ),
    };
    let key = match (header, field) {
        (Some(h), Some(f)) if h != f.trim() => {
            return Err(Problem::invalid(
                "idempotency_key",
                "the Idempotency-Key header and idempotency_key differ; give one, or the same",
            ));
        }
        (Some(h), _) => Some(h),
        (None, Some(f)) => Some(f.trim().to_owned()),
        (None, None) => None,
    };
    if let Some(k) = &key {
        check_identifier("Idempotency-Key", k)?;
    }
    Ok(key)
}

/// What decides whether a JSON request under a used idempotency key is the
/// same request: BLAKE3 over the body as canonical JSON (object keys sorted,
/// no whitespace, `idempotency_key` left out) followed by each attachment's
/// BLAKE3 hash in order. Values the node fills in when absent (the consent
/// time, the physician) are hashed as the client sent them, so a retry is
/// the same even though "now" has moved.
pub(super) fn json_fingerprint(body: &[u8], files: &[Upload]) -> Result<[u8; 32], Problem> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid("request", format!("the body is not JSON: {e}")))?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("idempotency_key");
    }
    value.sort_all_objects();
    let mut h = blake3::Hasher::new();
    h.update(b"konsilium/json-intake/v1\0");
    h.update(value.to_string().as_bytes());
    for (i, upload) in files.iter().enumerate() {
        let mut part = blake3::Hasher::new();
        part.update(upload.info.title.as_deref().unwrap_or("").as_bytes());
        part.update(&[0]);
        part.update(upload.info.content_type.as_bytes());
        part.update(&[0]);
        let mut reader = upload.file.reopen().map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload-storage",
                "The attachment could not be read",
                format!("attachment {i} could not be read back: {e}"),
            )
        })?;
        std::io::copy(&mut reader, &mut part).map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload-storage",
                "The attachment could not be read",
                format!("attachment {i} could not be read back: {e}"),
            )
        })?;
        h.update(part.finalize().as_bytes());
    }
    Ok(*h.finalize().as_bytes())
}
