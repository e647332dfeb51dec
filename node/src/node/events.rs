//! What the node reports as it works, and its status at a glance.

use super::*;

/// What a node reports as it works; the demo narrates these and tests wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Listening(Multiaddr),
    /// A video link to another site changed (connected, data, failed), or
    /// brought a frame in a session asked for with `NodeHandle::watch_video`.
    Video {
        session: konsilium_protocol::video::SessionId,
        org: OrgId,
        event: konsilium_video::LinkEvent,
    },
    PeerCertified {
        org: OrgId,
        name: String,
        level: OrgLevel,
    },
    PeerRejected {
        peer: PeerId,
        reason: String,
    },
    RecordAccepted {
        org: OrgId,
        sequence: u64,
    },
    RecordRejected {
        reason: String,
    },
    PackageQueued {
        id: PackageId,
        next_hop: OrgId,
    },
    PackageInCustody {
        id: PackageId,
        relay: OrgId,
    },
    PackageDelivered {
        id: PackageId,
        recipient: OrgId,
    },
    PackageReceived {
        id: PackageId,
        sender: OrgId,
        bytes: usize,
    },
    Relaying {
        id: PackageId,
        recipient: OrgId,
    },
    /// A sent or relayed attachment was deleted after its retention.
    AttachmentRemoved {
        blob: [u8; 32],
    },
    /// The next hop refused the package for good; it will not be retried.
    DeliveryRefused {
        id: PackageId,
        reason: Refusal,
    },
    DeliveryRetry {
        id: PackageId,
        error: String,
    },
    /// The next hop is fetching the package's attachments.
    DeliveryProgress {
        id: PackageId,
        have: u64,
        total: u64,
    },
    /// Fetching an attachment started (or resumed, when `from` > 0).
    FetchStarted {
        blob: [u8; 32],
        from: u64,
        total: u64,
    },
    /// Pieces of an attachment arrived, in order, up to `have` bytes.
    FetchProgress {
        blob: [u8; 32],
        have: u64,
        total: u64,
    },
    FetchCompleted {
        blob: [u8; 32],
    },
    /// A consultation's deadline became at risk (75% of the time used) or breached.
    Deadline {
        id: ConsultationId,
        state: konsilium_protocol::deadline::DeadlineState,
        due: Timestamp,
    },
    /// A consultation went to the next candidate.
    Escalated {
        from: ConsultationId,
        to: ConsultationId,
        consultant: OrgId,
    },
    ConsultationUpdated {
        id: ConsultationId,
        status: WorkflowStatus,
    },
}

#[derive(Debug, Clone)]
pub struct Status {
    pub org: OrgId,
    pub name: String,
    pub level: OrgLevel,
    pub region: RegionCode,
    pub listen: Vec<Multiaddr>,
    pub peers: Vec<OrgId>,
    pub directory_size: usize,
    pub directory_digest: [u8; 32],
    pub outbox: usize,
    pub inbox: usize,
}
