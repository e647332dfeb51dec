//! The case extract's files as DocumentReferences.

use super::*;

impl<'r, 'a> Exporter<'r, 'a> {
    pub(super) fn document(&self, index: usize) -> String {
        stable_uuid(&[&self.cid.0, b"document", &(index as u64).to_le_bytes()])
    }

    /// A file of the case extract, where an import looks for it.
    pub(super) fn document_reference(&self, file: &ExportedFile) -> Value {
        json!({
            "resourceType": "DocumentReference",
            "identifier": [{"system": BLOB_SYSTEM, "value": file.blob.hex()}],
            "status": "current",
            "subject": self.patient(),
            "date": instant(self.r.consultation.request.created),
            "description": file.info.title.as_deref().and_then(fhir_string),
            "content": [{
                "attachment": {
                    "contentType": file.info.content_type,
                    "title": file.info.title.as_deref().and_then(fhir_string),
                    "url": file.url,
                    // unsignedInt stops at 2^31 - 1; a larger size is left out.
                    "size": konsilium_protocol::seal::plaintext_len(file.blob.size)
                        .and_then(|n| i32::try_from(n).ok()),
                    "data": file.data.as_ref().map(|d| BASE64.encode(d)),
                },
            }],
            "context": {"related": [self.reference(&self.service_request)]},
        })
    }
}
