//! The requests and responses nodes exchange over their authenticated
//! libp2p streams. Each travels as one wire frame with its own size limit.

use crate::cert::{CertChain, OrgLevel, RevocationNotice};
use crate::delivery::Receipt;
use crate::directory::{DigestMatch, SignedRecord, SyncDigest, SyncOffer};
use crate::identity::OrgId;
use crate::seal::SealedPackage;
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use crate::wire::{MessageKind, RecordBatch, RecordRequest, SyncSummaries, WireMessage};
use serde::{Deserialize, Serialize};

/// Sent first on every connection, on its own protocol: who we are, and
/// proof of it. Until a peer's Hello has been verified, it is the only thing
/// the peer can send us, so it has a small limit of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub chain: CertChain,
    pub record: Option<SignedRecord>,
    pub revocations: Vec<RevocationNotice>,
    /// The sender's clock, for skew checks.
    pub time: Timestamp,
}

/// The answer to a Hello: the responder's own Hello, or why it refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloAnswer {
    Welcome(Box<Hello>),
    Refused(String),
}

/// Largest Hello (and answer) a node reads from a peer it has not admitted.
pub const MAX_HELLO_LEN: usize = 1 << 20;

impl Hello {
    /// Keeps the Hello within [`MAX_HELLO_LEN`]: revocation notices that do
    /// not fit are returned, to be sent once the peer is admitted; if the
    /// chain and record alone are too large, the record is left out too (the
    /// peer then gets it by anti-entropy).
    pub fn fit(mut self) -> (Hello, Vec<RevocationNotice>) {
        let mut left_out = Vec::new();
        while crate::wire::encode(&self).is_err() {
            match self.revocations.pop() {
                Some(notice) => left_out.push(notice),
                None if self.record.is_some() => self.record = None,
                None => break,
            }
        }
        left_out.reverse();
        (self, left_out)
    }
}

impl WireMessage for Hello {
    const KIND: MessageKind = MessageKind::Hello;
    const MAX_LEN: usize = MAX_HELLO_LEN;
}

impl WireMessage for HelloAnswer {
    const KIND: MessageKind = MessageKind::HelloAnswer;
    const MAX_LEN: usize = MAX_HELLO_LEN;
}

/// What admitted peers ask each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Anti-entropy after a digest that differed; answered with `Summaries`.
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
    /// The requester lost consultation state since `since`: the responder
    /// seals the history of every consultation the two share that moved
    /// since then to it as `PackageBody::History` packages, and answers
    /// `Recovering` with how many it queued.
    Recover {
        since: Timestamp,
    },
    /// An offer for a video link, signed by the requesting organization;
    /// answered with `VideoAnswer`.
    VideoOffer(Signed<crate::video::Signal>),
    /// An offer for a link that only checks whether media gets through and
    /// how (`konsilium probe --video`): no consultation, nothing carried;
    /// answered with `VideoAnswer`, closed by the prober.
    VideoProbe(Signed<crate::video::Signal>),
    /// First anti-entropy step; answered with `Digest`. Last among the
    /// variants, so the others keep the encoding they had before it.
    SyncDigest(SyncDigest),
    /// Packages as [`Request::Deliver`] takes them, several to one hop
    /// (at most [`crate::outbox::MAX_PARCEL`]); answered with `Answers`,
    /// one answer for each package, in their order, each as `Deliver`'s
    /// would be. One package's refusal is its own: the others are taken.
    DeliverMany(Vec<SealedPackage>),
}

/// Why a node refused a request. Permanent refusals say the same request
/// will never succeed here, so the sender stops retrying and shows the
/// reason; transient ones are retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("organization {0} is not in this node's directory")]
    UnknownRecipient(OrgId),
    #[error("organization {0} is revoked")]
    Revoked(OrgId),
    #[error("this relay does not carry packages for {recipient}: {policy}")]
    NotRelayed { recipient: OrgId, policy: String },
    #[error("the package is not acceptable: {0}")]
    Invalid(String),
    #[error("present a federation certificate first (Hello)")]
    NotAdmitted,
    #[error("{0}")]
    Transient(String),
    /// Bootstrap nodes help nodes find and reach each other; clinical data
    /// never goes to them.
    #[error("this is a bootstrap node: it takes no packages, attachments or consultations")]
    BootstrapNode,
}

impl Refusal {
    /// Whether retrying the same request can ever succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Refusal::Transient(_) | Refusal::NotAdmitted)
    }
}

impl From<crate::seal::SealError> for Refusal {
    /// A package that cannot be checked *yet* (its sender's record or new
    /// key has not reached this node, or the clocks disagree) may pass
    /// later; a tampered, expired, misaddressed or replayed one never will.
    fn from(e: crate::seal::SealError) -> Self {
        use crate::seal::SealError as E;
        match e {
            E::UnknownSender(_) | E::SenderKeyMismatch(_) | E::FromTheFuture { .. } => {
                Refusal::Transient(e.to_string())
            }
            _ => Refusal::Invalid(e.to_string()),
        }
    }
}

/// Largest piece of an attachment one `FetchBlob` may ask for.
pub const MAX_BLOB_CHUNK: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Summaries(SyncSummaries),
    Records(RecordBatch),
    Receipt(Signed<Receipt>),
    /// A relay stored the package durably and will forward it.
    Custody,
    Done,
    Refused(Refusal),
    /// The package's header was accepted; its attachments are being fetched
    /// from the requester (`have` of `total` bytes so far).
    Fetching {
        have: u64,
        total: u64,
    },
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
    Recovering {
        consultations: u32,
    },
    VideoAnswer(Signed<crate::video::Signal>),
    Digest(DigestMatch),
    /// The answers to a `DeliverMany`, in its packages' order.
    Answers(Vec<DeliveryAnswer>),
}

/// What a delivered package is answered with. Its own type inside
/// `Response::Answers`, so an answer cannot nest answers: a peer's frame
/// of answers within answers would take the decoder as deep as its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryAnswer {
    Receipt(Signed<Receipt>),
    Custody,
    Refused(Refusal),
    Fetching { have: u64, total: u64 },
}

impl From<DeliveryAnswer> for Response {
    fn from(answer: DeliveryAnswer) -> Self {
        match answer {
            DeliveryAnswer::Receipt(receipt) => Response::Receipt(receipt),
            DeliveryAnswer::Custody => Response::Custody,
            DeliveryAnswer::Refused(refusal) => Response::Refused(refusal),
            DeliveryAnswer::Fetching { have, total } => Response::Fetching { have, total },
        }
    }
}

impl TryFrom<Response> for DeliveryAnswer {
    /// A response no delivery is answered with.
    type Error = Response;

    fn try_from(response: Response) -> Result<Self, Response> {
        Ok(match response {
            Response::Receipt(receipt) => DeliveryAnswer::Receipt(receipt),
            Response::Custody => DeliveryAnswer::Custody,
            Response::Refused(refusal) => DeliveryAnswer::Refused(refusal),
            Response::Fetching { have, total } => DeliveryAnswer::Fetching { have, total },
            other => return Err(other),
        })
    }
}

impl WireMessage for Request {
    const KIND: MessageKind = MessageKind::Request;
    const MAX_LEN: usize = 80 << 20;
}

impl WireMessage for Response {
    const KIND: MessageKind = MessageKind::Response;
    const MAX_LEN: usize = 40 << 20;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{NOW, TestFederation};

    #[test]
    fn a_hello_too_large_for_its_limit_leaves_revocations_for_later() {
        let mut fed = TestFederation::new("hello");
        let a = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]);
        let small = fed.root.revoke(1, NOW, [5, 6].into());
        // Hundreds of thousands of serials: a real list after years of
        // revocations, larger than a Hello may be.
        let large = fed.root.revoke(2, NOW, (0..400_000).collect());
        let hello = Hello {
            chain: a.chain.clone(),
            record: Some(a.signed_record(1)),
            revocations: vec![small.clone(), large.clone()],
            time: NOW,
        };
        assert!(crate::wire::encode(&hello).is_err());
        let (fitted, left_out) = hello.fit();
        let frame = crate::wire::encode(&fitted).expect("the fitted Hello encodes");
        assert!(frame.len() <= MAX_HELLO_LEN);
        assert_eq!(fitted.revocations, vec![small]);
        assert_eq!(left_out, vec![large]);
        assert!(fitted.record.is_some());
        assert_eq!(crate::wire::decode::<Hello>(&frame).unwrap(), fitted);
    }

    #[test]
    fn refusals_that_can_pass_later_are_transient() {
        use crate::seal::SealError;
        let org = TestFederation::new("r")
            .org(1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology])
            .id();
        assert!(!Refusal::from(SealError::UnknownSender(org)).is_permanent());
        assert!(!Refusal::from(SealError::SenderKeyMismatch(org)).is_permanent());
        assert!(Refusal::from(SealError::Tampered { chunk: 2 }).is_permanent());
        assert!(Refusal::from(SealError::Truncated).is_permanent());
        assert!(Refusal::UnknownRecipient(org).is_permanent());
        assert!(Refusal::Revoked(org).is_permanent());
        assert!(!Refusal::Transient("disk full".into()).is_permanent());
        assert!(!Refusal::NotAdmitted.is_permanent());
    }
}
