//! What the store keeps, record by record: packages going out and come
//! in, consultations with what rebuilds them, intake identifiers.

use konsilium_protocol::conclusion::ConclusionFile;
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::delivery::Receipt;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::{PackageId, SealedPackage};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::workflow::{ConsultationId, ConsultationRequest, Transition};
use serde::{Deserialize, Serialize};

/// Why a package sits in the outbox: the delivery machine's own type, so
/// both agree on it (postcard encodes it as before: `Local`, then `Relay`).
pub use konsilium_protocol::outbox::Origin;

/// A package waiting to be delivered, and what happened so far. The
/// delivery machine decides every field but the package; the node writes
/// its decisions here so they survive a restart and the operator sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub package: SealedPackage,
    pub origin: Origin,
    /// Where the package goes next: the recipient, or a relay.
    pub next_hop: OrgId,
    pub attempts: u32,
    pub next_attempt: Timestamp,
    pub last_error: Option<String>,
    /// A relay that holds the package durably for us.
    pub custody: Option<OrgId>,
    pub queued_at: Timestamp,
    /// Refused for good by the next hop: no more attempts. Kept until the
    /// package expires so the operator sees why it did not arrive.
    pub refused: Option<konsilium_protocol::rpc::Refusal>,
}

/// A package delivered to this organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    pub package: SealedPackage,
    pub receipt: Signed<Receipt>,
    pub received_at: Timestamp,
}

/// A package this organization sent that was delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SentEntry {
    pub recipient: OrgId,
    pub receipt: Signed<Receipt>,
    pub attempts: u32,
}

/// A consultation as persisted: everything needed to rebuild its state by
/// replaying the signed steps through the protocol's state machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConsultation {
    pub request: Signed<ConsultationRequest>,
    pub extract: CaseExtract,
    pub history: Vec<Signed<Transition>>,
    /// Steps that arrived before the ones they follow.
    pub early: Vec<Signed<Transition>>,
    pub conclusion: Option<ConclusionFile>,
    /// The consultation this one was escalated to, once it was.
    pub escalated_to: Option<ConsultationId>,
    /// The attachments sealed to this organization itself (requesting side),
    /// listed in this header, for sealing anew on escalation.
    pub own_copy: Option<konsilium_protocol::seal::EnvelopeHeader>,
    /// What each attachment of the request is, in the package's order.
    pub files: Vec<FileInfo>,
    /// The package that brought the request (consulting side), whose
    /// attachments are the case files.
    pub received_in: Option<PackageId>,
}

impl StoredConsultation {
    /// A consultation as it starts: its request, no steps yet.
    pub fn new(
        request: Signed<ConsultationRequest>,
        extract: CaseExtract,
        files: Vec<FileInfo>,
    ) -> Self {
        StoredConsultation {
            request,
            extract,
            files,
            received_in: None,
            history: Vec::new(),
            early: Vec::new(),
            conclusion: None,
            escalated_to: None,
            own_copy: None,
        }
    }
}

/// The consultation a client-supplied identifier opened, and a hash of what
/// the client sent, so a retry finds it and a different request under the
/// same identifier is told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeRecord {
    pub consultation: ConsultationId,
    pub fingerprint: [u8; 32],
    pub at: Timestamp,
}

/// The key of an intake record: the organization, then the identifier in
/// the client's namespace. The organization comes first so that one node's
/// records could never answer for another's identifiers.
pub fn intake_key(org: &OrgId, identifier: &str) -> Vec<u8> {
    let mut key = org.as_bytes().to_vec();
    key.extend_from_slice(identifier.as_bytes());
    key
}

/// A workflow step that arrived before its consultation, with the
/// organization that sent it and the conclusion it may carry.
pub use konsilium_protocol::desk::EarlyStep;
