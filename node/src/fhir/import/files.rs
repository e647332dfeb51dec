//! The case extract's files: DocumentReference attachments and Binary
//! resources with inline data.

use super::*;

/// The case extract's files: every DocumentReference (each `content`
/// attachment) and Binary that `supportingInfo` references. The bytes must
/// travel inline (`data`): the node seals them and cannot fetch a URL.
pub(super) fn import_attachments(
    doc: &Doc<'_>,
    sr: &Res<'_>,
) -> Result<Vec<ImportedAttachment>, FhirError> {
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
