//! What can go wrong in the node, as its callers see it.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking thread doing work for the node ended without its result.
    #[error("background work: {0}")]
    Background(String),
    /// The write was made but the flush that would make it durable failed.
    #[error("not durable: {0}")]
    NotDurable(String),
    #[error("this node's own certificate is not valid: {0}")]
    OwnCertificate(CertError),
    #[error(
        "the identity key does not match the certificate (certificate is for {cert}, key is {key})"
    )]
    KeyMismatch { cert: OrgId, key: OrgId },
    #[error("revocation list not adopted: {0}")]
    Revocation(CertError),
    #[error("network: {0}")]
    Network(String),
    #[error("keys: {0}")]
    Keys(String),
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    #[error(transparent)]
    Stun(#[from] crate::stun::StunError),
    #[error("video: {0}")]
    Video(String),
    #[error("no organization in the directory offers this: {0}")]
    NoRoute(String),
    #[error("organization {0} is not in the directory")]
    UnknownOrg(OrgId),
    #[error("organization {name} ({org}) is refused: {reason}")]
    RefusedOrg {
        org: OrgId,
        name: String,
        reason: String,
    },
    #[error("package {0} is not in the inbox")]
    NotInInbox(PackageId),
    #[error("package: {0}")]
    Seal(#[from] seal::SealError),
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
    #[error("the node has stopped")]
    Stopped,
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("consultation: {0}")]
    Workflow(#[from] konsilium_protocol::workflow::WorkflowError),
    #[error("consultation {0} is not known here")]
    UnknownConsultation(ConsultationId),
    #[error("conclusion: {0}")]
    Conclusion(String),
    #[error("workflow step not kept: {0}")]
    Held(String),
    #[error("attachment: {0}")]
    Attachment(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the journal cannot be written, so the operation was not done: {0}")]
    Journal(String),
    #[error(
        "the journal does not match its anchor {anchor}: {reason}. Acknowledged records may \
         have been lost or changed on disk; `konsilium doctor` checks the data directory. To \
         accept the loss and start anyway, move the anchor file away."
    )]
    JournalDamaged {
        anchor: std::path::PathBuf,
        reason: String,
    },
    #[error("backup: {0}")]
    Backup(#[from] crate::storage::backup::BackupError),
    #[error("data directory: {0}")]
    DataDir(#[from] crate::storage::datadir::DataDirError),
    #[error(
        "the identifier already opened consultation {0} with a different request; use a new identifier for a new request"
    )]
    IntakeConflict(ConsultationId),
}

impl From<konsilium_protocol::conclusion::ConclusionError> for NodeError {
    fn from(e: konsilium_protocol::conclusion::ConclusionError) -> Self {
        NodeError::Conclusion(e.to_string())
    }
}

/// The desk's errors keep the kinds the HTTP API maps to statuses.
impl From<konsilium_protocol::desk::DeskError> for NodeError {
    fn from(e: konsilium_protocol::desk::DeskError) -> Self {
        use konsilium_protocol::desk::DeskError;
        match e {
            DeskError::Workflow(w) => NodeError::Workflow(w),
            DeskError::Signed(s) => s.into(),
            DeskError::Conclusion(c) => c.into(),
            DeskError::Unknown(id) => NodeError::UnknownConsultation(id),
            e @ DeskError::ConclusionMismatch => NodeError::Conclusion(e.to_string()),
            e @ (DeskError::TooManyHeld | DeskError::Diverged(_)) => NodeError::Held(e.to_string()),
        }
    }
}

impl From<konsilium_protocol::signed::SignedError> for NodeError {
    fn from(e: konsilium_protocol::signed::SignedError) -> Self {
        NodeError::Workflow(e.into())
    }
}

/// An error and its causes on one line: libp2p's transport errors often
/// say nothing themselves and keep the reason in their source.
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out += ": ";
            }
            out += &text;
        }
        source = cause.source();
    }
    if out.is_empty() {
        out = format!("{e:?}");
    }
    out
}
