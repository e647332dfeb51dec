//! The requests and responses nodes exchange over their authenticated
//! libp2p streams. Each travels as one wire frame with its own size limit.

use crate::cert::{CertChain, OrgLevel, RevocationNotice};
use crate::delivery::Receipt;
use crate::directory::{SignedRecord, SyncOffer};
use crate::seal::SealedPackage;
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use crate::wire::{MessageKind, RecordBatch, RecordRequest, SyncSummaries, WireMessage};
use serde::{Deserialize, Serialize};

/// Sent first on every connection: who we are, and proof of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub chain: CertChain,
    pub record: Option<SignedRecord>,
    pub revocations: Vec<RevocationNotice>,
    /// The sender's clock, for skew checks.
    pub time: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello(Box<Hello>),
    /// First anti-entropy step; answered with `Summaries`.
    SyncOffer(SyncOffer),
    /// Records the requester holds newer; answered with `Done`.
    PushRecords(RecordBatch),
    /// Records the requester wants; answered with `Records`.
    WantRecords(RecordRequest),
    /// A package for the responder, or for it to relay; answered with a
    /// `Receipt` (final recipient) or `Custody` (relay).
    Deliver(SealedPackage),
    /// An end-to-end receipt travelling back to the package's sender.
    Receipt(Signed<Receipt>),
    Revocations(Vec<RevocationNotice>),
    /// Directory records of the best organizations for a request, for a
    /// node whose directory is scoped to its region; answered with `Records`.
    Candidates {
        specialty: Specialty,
        min_level: OrgLevel,
        urgency: Urgency,
    },
    /// A piece of a sealed attachment the responder holds; answered with `Blob`.
    FetchBlob {
        hash: [u8; 32],
        offset: u64,
        len: u32,
    },
}

/// Largest piece of an attachment one `FetchBlob` may ask for.
pub const MAX_BLOB_CHUNK: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello(Box<Hello>),
    Summaries(SyncSummaries),
    Records(RecordBatch),
    Receipt(Signed<Receipt>),
    /// A relay stored the package durably and will forward it.
    Custody,
    Done,
    Refused(String),
    /// The package's header was accepted; its attachments are being fetched
    /// from the requester (`have` of `total` bytes so far).
    Fetching {
        have: u64,
        total: u64,
    },
    Blob(Vec<u8>),
}

impl WireMessage for Request {
    const KIND: MessageKind = MessageKind::Request;
    const MAX_LEN: usize = 80 << 20;
}

impl WireMessage for Response {
    const KIND: MessageKind = MessageKind::Response;
    const MAX_LEN: usize = 40 << 20;
}
