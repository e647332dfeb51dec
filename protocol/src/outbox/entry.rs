//! What the outbox machine knows about a package, and what it tells the node.

use crate::delivery::{Receipt, ReceiptError};
use crate::identity::OrgId;
use crate::rpc::Refusal;
use crate::seal::{PackageId, SealedPackage};
use crate::signed::Signed;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The little of a sealed package that delivery decisions need. The bytes
/// stay in the node's storage: the machine holds thousands of these, and the
/// node reads a package's bytes only when it sends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageMeta {
    pub id: PackageId,
    pub sender: OrgId,
    pub recipient: OrgId,
    pub expires: Timestamp,
    /// BLAKE3 of the sealed body, so a receipt can be checked without the body.
    pub body_hash: [u8; 32],
    /// What holding it costs a node's disk: the body and its attachments.
    pub bytes: u64,
}

impl PackageMeta {
    /// Hashes the body: call it where hashing a large body is acceptable
    /// (when the package is sealed or received, or when loading at start).
    pub fn of(package: &SealedPackage) -> Self {
        PackageMeta {
            id: package.header.id,
            sender: package.header.sender,
            recipient: package.header.recipient,
            expires: package.header.expires,
            body_hash: *blake3::hash(&package.body).as_bytes(),
            bytes: held_bytes(package),
        }
    }
}

/// The body and the attachments it lists: what a node holding the package
/// keeps on disk.
pub(super) fn held_bytes(package: &SealedPackage) -> u64 {
    let attachments = package.header.attachments.iter();
    attachments.fold(package.body.len() as u64, |sum, b| {
        sum.saturating_add(b.size)
    })
}

/// Whose package an entry is, which decides when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Sealed here: done only when the recipient's signed receipt arrives,
    /// even if a relay took custody on the way.
    Local,
    /// Held for another organization: done when the next hop takes it
    /// (a receipt, which then travels back to the sender, or custody).
    Relay,
}

/// Where a package stands between attempts. Delivered and expired packages
/// are not a status: their entries are removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Waiting for its next attempt.
    Queued,
    /// A relay holds it durably and forwards it; the sender waits for the
    /// receipt and checks back rarely.
    InCustody { relay: OrgId },
    /// Refused for good. Kept until it expires so the operator sees why it
    /// did not arrive, and a sender checking back with a relay learns it.
    Refused(Refusal),
}

/// One outbox entry as the node persists it (beside the package's bytes).
/// The node builds these from storage at start; afterwards it only applies
/// [`Output::Persist`] and [`Output::Remove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub package: PackageMeta,
    pub origin: Origin,
    /// The recipient itself, or a relay.
    pub next_hop: OrgId,
    /// Attempts that did not deliver: failed dials, failed requests and refusals.
    pub attempts: u32,
    pub next_attempt: Timestamp,
    pub status: Status,
    /// Why the last attempt failed, for the operator; nothing acts on it.
    pub last_error: Option<String>,
    pub queued_at: Timestamp,
}

impl Entry {
    pub fn id(&self) -> PackageId {
        self.package.id
    }
}

/// Names one `Request::Deliver` the machine asked for, so its answer or
/// failure finds its package again. Answers for tokens the machine no longer
/// knows (the package was delivered another way meanwhile) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub(super) u64);

impl Token {
    /// For a transport that correlates answers by number.
    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn from_raw(raw: u64) -> Self {
        Token(raw)
    }
}

/// Why an attempt did not deliver, when it will be tried again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot reach {hop}: {reason}")]
    Unreachable { hop: OrgId, reason: String },
    #[error("to {hop}: {reason}")]
    Request { hop: OrgId, reason: String },
    #[error("{hop} refused for now: {reason}")]
    Refused { hop: OrgId, reason: Refusal },
    #[error("{hop} answered with a receipt that does not match the package: {error}")]
    BadReceipt { hop: OrgId, error: ReceiptError },
    #[error(
        "{hop} answered a delivery with something other than a receipt, custody, progress or a refusal"
    )]
    Unexpected { hop: OrgId },
}

/// What the node carries out, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `Request::Deliver` with package `id`, read from storage, to
    /// `to` (which is ready), and report its answer or failure with `token`.
    Deliver {
        token: Token,
        to: OrgId,
        id: PackageId,
    },
    /// Packages or receipts wait for `to`: connect, unless a connection is
    /// already being set up. A dial that fails goes to `handle_dial_failed`,
    /// one that succeeds ends in `handle_peer_ready`.
    Dial {
        to: OrgId,
    },
    /// Send `Request::Receipt` to `to` (ready); its answer does not matter.
    SendReceipt {
        to: OrgId,
        receipt: Signed<Receipt>,
    },
    /// Write the entry's new state beside its package.
    Persist(Entry),
    /// Delete the entry and its package from the outbox.
    Remove(PackageId),
    Event(Event),
}

/// What happened to a package, for the application and the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The recipient's receipt arrived. For a relayed package the receipt is
    /// on its way back to the sender; for our own it is the proof to keep.
    /// Comes before the entry's [`Output::Remove`], so the node can still
    /// read the package (its attachments) when it handles this.
    Delivered {
        id: PackageId,
        recipient: OrgId,
        origin: Origin,
        attempts: u32,
        receipt: Signed<Receipt>,
    },
    /// A relay holds the package.
    Custody { id: PackageId, relay: OrgId },
    /// Refused for good: no more attempts.
    Refused { id: PackageId, reason: Refusal },
    /// An attempt failed; another follows.
    Retry { id: PackageId, error: Failure },
    /// The next hop is fetching the attachments (`have` of `total` bytes).
    Progress {
        id: PackageId,
        have: u64,
        total: u64,
    },
    /// Undelivered when it expired.
    Expired { id: PackageId, origin: Origin },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    #[error("package {0} is already in the outbox")]
    AlreadyQueued(PackageId),
    #[error("package {id} expired at {expires}, before it was queued")]
    Expired { id: PackageId, expires: Timestamp },
    #[error("no package {0} in the outbox (delivered already, or never sent)")]
    NotQueued(PackageId),
    #[error("receipt for {id}: {error}")]
    BadReceipt { id: PackageId, error: ReceiptError },
    #[error("receipt cannot be read: {0}")]
    Unreadable(crate::signed::SignedError),
}
