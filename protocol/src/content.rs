//! What the sealed body of a package carries. Only the two organizations
//! ever see this; relays see the envelope header.

use crate::conclusion::ConclusionFile;
use crate::signed::Signed;
use crate::time::Timestamp;
use crate::wire::{MessageKind, WireMessage};
use crate::workflow::{ConsultationRequest, Transition};
use serde::{Deserialize, Serialize};

/// The clinical part of a request: what the attending physician wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseExtract {
    /// A detailed extract of the case history and examination results.
    pub summary: String,
    /// The questions for the consultant.
    pub questions: String,
}

/// What a clinician needs to open one of the case extract's attachments,
/// which travel as the package's blobs and carry only a hash and a size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub title: Option<String>,
    /// A media type such as `application/pdf` or `application/dicom`.
    pub content_type: String,
}

impl Default for FileInfo {
    /// Bytes whose kind the sender did not say.
    fn default() -> Self {
        FileInfo {
            title: None,
            content_type: "application/octet-stream".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageBody {
    /// Opens a consultation; attachments (images, ECG, DICOM) travel as the
    /// package's blobs, described by `files` in the same order.
    Consultation {
        request: Signed<ConsultationRequest>,
        extract: CaseExtract,
        files: Vec<FileInfo>,
    },
    /// One workflow step; a conclusion travels with the step that concludes.
    Step {
        step: Signed<Transition>,
        conclusion: Option<Box<ConclusionFile>>,
    },
    /// Anything else a hospital system exchanges, unparsed.
    Opaque(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A consultation as the sender holds it, for a counterpart that lost
    /// its own copy (`Request::Recover`). Every step in it is signed by the
    /// organization that took it, so the sender can leave steps out but
    /// cannot alter or invent any.
    History(Box<SharedHistory>),
    /// An operator's end-to-end check (`konsilium probe`): sealed, carried
    /// and receipted like any package, and otherwise ignored.
    Probe { sent_at: Timestamp },
}

/// Everything two organizations share about one consultation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedHistory {
    pub request: Signed<ConsultationRequest>,
    pub extract: CaseExtract,
    pub files: Vec<FileInfo>,
    /// The accepted steps, in order.
    pub steps: Vec<Signed<Transition>>,
    pub conclusion: Option<ConclusionFile>,
}

impl WireMessage for PackageBody {
    const KIND: MessageKind = MessageKind::PackageBody;
    const MAX_LEN: usize = 64 << 20;
}
