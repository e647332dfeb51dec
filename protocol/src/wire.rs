//! The wire codec: how protocol values travel between nodes.
//!
//! Every frame is `K S version kind` followed by the postcard encoding of one
//! value. Each message kind has a hard size limit checked before decoding, and
//! decoding never allocates more than the frame holds, so a peer cannot make a
//! node allocate beyond the limit or crash it with malformed bytes.

use crate::cert::{CertChain, RegionCode, RevocationNotice};
use crate::directory::{RecordSummary, SignedRecord, SyncOffer};
use crate::identity::OrgId;
use crate::seal::{EnvelopeHeader, SealedPackage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

pub const WIRE_VERSION: u8 = 1;
const MAGIC: [u8; 2] = *b"KS";
/// Magic, version and kind before every encoded value.
pub const HEADER_LEN: usize = 4;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    DirectoryRecord = 1,
    RevocationNotice = 2,
    CertChain = 3,
    SyncOffer = 4,
    SyncSummaries = 5,
    RecordRequest = 6,
    RecordBatch = 7,
    EnvelopeHeader = 8,
    SealedPackage = 9,
    Request = 10,
    Response = 11,
    PackageBody = 12,
    ConclusionFile = 13,
    Hello = 14,
    HelloAnswer = 15,
    JournalAnchor = 16,
}

impl MessageKind {
    const ALL: [MessageKind; 16] = [
        MessageKind::DirectoryRecord,
        MessageKind::RevocationNotice,
        MessageKind::CertChain,
        MessageKind::SyncOffer,
        MessageKind::SyncSummaries,
        MessageKind::RecordRequest,
        MessageKind::RecordBatch,
        MessageKind::EnvelopeHeader,
        MessageKind::SealedPackage,
        MessageKind::Request,
        MessageKind::Response,
        MessageKind::PackageBody,
        MessageKind::ConclusionFile,
        MessageKind::Hello,
        MessageKind::HelloAnswer,
        MessageKind::JournalAnchor,
    ];

    fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A value that can be sent on its own. `MAX_LEN` bounds the whole frame.
pub trait WireMessage: Serialize + DeserializeOwned {
    const KIND: MessageKind;
    const MAX_LEN: usize;
}

/// Summaries of the buckets that differed (second anti-entropy step).
/// `region` is the answering node's scope when it keeps only one region:
/// the asking node then pushes only that region's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummaries {
    pub buckets: Vec<u8>,
    pub summaries: Vec<RecordSummary>,
    pub region: Option<RegionCode>,
}

/// Records a node asks a peer for (third anti-entropy step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRequest {
    pub orgs: Vec<OrgId>,
}

/// Records sent in answer, or pushed after reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub records: Vec<SignedRecord>,
}

macro_rules! wire_message {
    ($($ty:ty => $kind:ident, $max:expr;)*) => {
        $(impl WireMessage for $ty {
            const KIND: MessageKind = MessageKind::$kind;
            const MAX_LEN: usize = $max;
        })*
    };
}

wire_message! {
    SignedRecord => DirectoryRecord, MIB;
    RevocationNotice => RevocationNotice, 16 * MIB;
    CertChain => CertChain, 16 * KIB;
    SyncOffer => SyncOffer, 16 * KIB;
    SyncSummaries => SyncSummaries, 8 * MIB;
    RecordRequest => RecordRequest, MIB;
    RecordBatch => RecordBatch, 32 * MIB;
    EnvelopeHeader => EnvelopeHeader, 4 * KIB;
    SealedPackage => SealedPackage, 64 * MIB + 4 * KIB;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is shorter than the 4-byte header")]
    TooShort(usize),
    #[error("frame does not start with the Konsilium magic bytes (not a Konsilium peer?)")]
    BadMagic,
    #[error(
        "wire version {got} is not supported (this node speaks version {WIRE_VERSION}); upgrade the older node"
    )]
    UnsupportedVersion { got: u8 },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("expected a {expected} message, got {got}")]
    WrongKind {
        expected: MessageKind,
        got: MessageKind,
    },
    #[error("{kind} message of {len} bytes exceeds its limit of {max} bytes")]
    TooLarge {
        kind: MessageKind,
        len: usize,
        max: usize,
    },
    #[error("malformed {kind} message: {reason}")]
    Malformed { kind: MessageKind, reason: String },
    #[error("{kind} message has {count} bytes after its end")]
    TrailingBytes { kind: MessageKind, count: usize },
}

pub fn encode<M: WireMessage>(msg: &M) -> Result<Vec<u8>, WireError> {
    // Sized first: grown as postcard writes, a directory offer's 8 KiB
    // went through a dozen reallocations.
    let mut frame = Vec::with_capacity(encoded_len(msg).min(M::MAX_LEN));
    frame.extend_from_slice(&[MAGIC[0], MAGIC[1], WIRE_VERSION, M::KIND as u8]);
    let frame = postcard::to_extend(msg, frame).map_err(|e| WireError::Malformed {
        kind: M::KIND,
        reason: e.to_string(),
    })?;
    if frame.len() > M::MAX_LEN {
        return Err(WireError::TooLarge {
            kind: M::KIND,
            len: frame.len(),
            max: M::MAX_LEN,
        });
    }
    Ok(frame)
}

/// Length of the frame `encode` would produce, without building it: lets a
/// sender cut a list into frames that fit before spending memory on them.
pub fn encoded_len<M: WireMessage>(msg: &M) -> usize {
    HEADER_LEN + body_len(msg)
}

/// Bytes the postcard encoding of any part of a message takes. A value
/// postcard cannot encode counts as `usize::MAX`, so it never looks small
/// enough to fit anywhere and `encode` reports it.
pub fn body_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Reads a frame's kind without decoding it, to dispatch.
pub fn peek_kind(frame: &[u8]) -> Result<MessageKind, WireError> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::TooShort(frame.len()));
    }
    if frame[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if frame[2] != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { got: frame[2] });
    }
    MessageKind::from_byte(frame[3]).ok_or(WireError::UnknownKind(frame[3]))
}

pub fn decode<M: WireMessage>(frame: &[u8]) -> Result<M, WireError> {
    let kind = peek_kind(frame)?;
    if kind != M::KIND {
        return Err(WireError::WrongKind {
            expected: M::KIND,
            got: kind,
        });
    }
    if frame.len() > M::MAX_LEN {
        return Err(WireError::TooLarge {
            kind,
            len: frame.len(),
            max: M::MAX_LEN,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<M>(&frame[HEADER_LEN..]).map_err(|e| WireError::Malformed {
            kind,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes {
            kind,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// A list of 32-byte hashes travels as one byte string: postcard writes and
/// reads a fixed array one byte at a time, and a directory offer is 256 of
/// them, sent to every peer on every round. Decoding copies out of the frame,
/// so it allocates no more than the frame holds.
pub(crate) mod hash_list {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(hashes: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(hashes.as_flattened())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        struct Hashes;
        impl Visitor<'_> for Hashes {
            type Value = Vec<[u8; 32]>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string of 32-byte hashes")
            }
            fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                match bytes.as_chunks::<32>() {
                    (hashes, []) => Ok(hashes.to_vec()),
                    _ => Err(E::invalid_length(bytes.len(), &self)),
                }
            }
        }
        d.deserialize_bytes(Hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::OrgLevel;
    use crate::directory::Directory;
    use crate::seal::{PACKAGE_VERSION, PackageId, RoutingHeader, seal};
    use crate::specialty::Specialty;
    use crate::testkit::{NOW, TestFederation};
    use crate::urgency::Urgency;
    use proptest::prelude::*;
    use std::time::Duration;

    /// One frame of every kind, from a small real federation.
    fn samples() -> Vec<(MessageKind, Vec<u8>)> {
        let mut fed = TestFederation::new("wire");
        let a = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]);
        let b = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        let mut dir = Directory::new();
        dir.insert(a.signed_record(1), &fed.trust, NOW).unwrap();
        let header = EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId([7; 16]),
            sender: a.id(),
            recipient: b.id(),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Federal,
                urgency: Urgency::Emergency,
                region: None,
            },
            created: NOW,
            expires: NOW.saturating_add(Duration::from_secs(3600)),
            attachments: Vec::new(),
        };
        let package = seal(
            header.clone(),
            &a.sealing,
            &b.sealing.public(),
            [1; 32],
            b"ECG attached",
        )
        .unwrap();
        let notice = fed.root.revoke(1, NOW, [5, 6].into());
        let hello = crate::rpc::Hello {
            chain: a.chain.clone(),
            record: Some(a.signed_record(1)),
            revocations: vec![notice.clone()],
            time: NOW,
        };
        vec![
            (
                MessageKind::DirectoryRecord,
                encode(&a.signed_record(1)).unwrap(),
            ),
            (MessageKind::RevocationNotice, encode(&notice).unwrap()),
            (MessageKind::CertChain, encode(&a.chain).unwrap()),
            (
                MessageKind::SyncOffer,
                encode(&dir.sync_offer(None)).unwrap(),
            ),
            (
                MessageKind::SyncSummaries,
                encode(&SyncSummaries {
                    buckets: vec![1, 2],
                    summaries: dir.summaries(&[0], None),
                    region: None,
                })
                .unwrap(),
            ),
            (
                MessageKind::RecordRequest,
                encode(&RecordRequest {
                    orgs: vec![a.id(), b.id()],
                })
                .unwrap(),
            ),
            (
                MessageKind::RecordBatch,
                encode(&RecordBatch {
                    records: vec![a.signed_record(1), b.signed_record(1)],
                })
                .unwrap(),
            ),
            (MessageKind::EnvelopeHeader, encode(&header).unwrap()),
            (MessageKind::SealedPackage, encode(&package).unwrap()),
            (
                MessageKind::Request,
                encode(&crate::rpc::Request::Deliver(package.clone())).unwrap(),
            ),
            (
                MessageKind::Response,
                encode(&crate::rpc::Response::Refused(
                    crate::rpc::Refusal::Invalid("expired".into()),
                ))
                .unwrap(),
            ),
            (MessageKind::Hello, encode(&hello).unwrap()),
            (
                MessageKind::JournalAnchor,
                encode(&crate::journal::Journal::new().checkpoint(&a.identity, NOW)).unwrap(),
            ),
            (
                MessageKind::HelloAnswer,
                encode(&crate::rpc::HelloAnswer::Welcome(Box::new(hello))).unwrap(),
            ),
        ]
    }

    /// Decodes a frame as whatever kind it says it is.
    fn decode_any(frame: &[u8]) -> Result<(), WireError> {
        match peek_kind(frame)? {
            MessageKind::DirectoryRecord => decode::<SignedRecord>(frame).map(drop),
            MessageKind::RevocationNotice => decode::<RevocationNotice>(frame).map(drop),
            MessageKind::CertChain => decode::<CertChain>(frame).map(drop),
            MessageKind::SyncOffer => decode::<SyncOffer>(frame).map(drop),
            MessageKind::SyncSummaries => decode::<SyncSummaries>(frame).map(drop),
            MessageKind::RecordRequest => decode::<RecordRequest>(frame).map(drop),
            MessageKind::RecordBatch => decode::<RecordBatch>(frame).map(drop),
            MessageKind::EnvelopeHeader => decode::<EnvelopeHeader>(frame).map(drop),
            MessageKind::SealedPackage => decode::<SealedPackage>(frame).map(drop),
            MessageKind::Request => decode::<crate::rpc::Request>(frame).map(drop),
            MessageKind::Response => decode::<crate::rpc::Response>(frame).map(drop),
            MessageKind::PackageBody => decode::<crate::content::PackageBody>(frame).map(drop),
            MessageKind::ConclusionFile => {
                decode::<crate::conclusion::ConclusionFile>(frame).map(drop)
            }
            MessageKind::Hello => decode::<crate::rpc::Hello>(frame).map(drop),
            MessageKind::HelloAnswer => decode::<crate::rpc::HelloAnswer>(frame).map(drop),
            MessageKind::JournalAnchor => {
                decode::<crate::signed::Signed<crate::journal::Checkpoint>>(frame).map(drop)
            }
        }
    }

    #[test]
    fn every_kind_round_trips_and_every_truncation_fails() {
        for (kind, frame) in samples() {
            assert_eq!(peek_kind(&frame), Ok(kind));
            decode_any(&frame).unwrap();
            for cut in 0..frame.len() {
                assert!(
                    decode_any(&frame[..cut]).is_err(),
                    "{kind} accepted at {cut} of {} bytes",
                    frame.len()
                );
            }
            let mut longer = frame.clone();
            longer.push(0);
            assert!(
                matches!(decode_any(&longer), Err(WireError::TrailingBytes { .. })),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_offer_travels_as_one_byte_string_of_whole_hashes() {
        let offer = SyncOffer {
            buckets: (0..=255u8).map(|b| [b; 32]).collect(),
            region: None,
        };
        let frame = encode(&offer).unwrap();
        // Header, a two-byte length (8,192), the hashes, no region.
        assert_eq!(frame.len(), HEADER_LEN + 2 + 256 * 32 + 1);
        assert_eq!(
            &frame[HEADER_LEN + 2..][..64],
            offer.buckets[..2].as_flattened()
        );
        assert_eq!(decode::<SyncOffer>(&frame).unwrap(), offer);
        // 33 bytes: a hash and one byte of the next.
        let mut torn = frame[..HEADER_LEN].to_vec();
        torn.push(33);
        torn.extend_from_slice(&[9; 33]);
        torn.push(0);
        let err = decode::<SyncOffer>(&torn).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Malformed {
                    kind: MessageKind::SyncOffer,
                    ..
                }
            ),
            "{err}"
        );
        // The same bytes with 32 of them are a hash.
        torn[HEADER_LEN] = 32;
        torn.remove(HEADER_LEN + 1);
        assert_eq!(decode::<SyncOffer>(&torn).unwrap().buckets, vec![[9; 32]]);
    }

    #[test]
    fn header_errors_are_named() {
        let (_, frame) = samples().remove(2);
        assert_eq!(
            decode::<CertChain>(&frame[..3]),
            Err(WireError::TooShort(3))
        );
        let mut f = frame.clone();
        f[0] = b'X';
        assert_eq!(decode::<CertChain>(&f), Err(WireError::BadMagic));
        let mut f = frame.clone();
        f[2] = 9;
        let e = decode::<CertChain>(&f).unwrap_err();
        assert_eq!(e, WireError::UnsupportedVersion { got: 9 });
        assert!(e.to_string().contains("upgrade"));
        let mut f = frame.clone();
        f[3] = 200;
        assert_eq!(decode::<CertChain>(&f), Err(WireError::UnknownKind(200)));
        assert_eq!(
            decode::<SyncOffer>(&frame),
            Err(WireError::WrongKind {
                expected: MessageKind::SyncOffer,
                got: MessageKind::CertChain
            })
        );
    }

    #[test]
    fn limits_hold_both_ways() {
        let huge = RecordRequest {
            orgs: vec![crate::identity::IdentityKey::from_seed([1; 32]).org_id(); MIB / 32 + 1],
        };
        assert!(matches!(
            encode(&huge),
            Err(WireError::TooLarge {
                kind: MessageKind::RecordRequest,
                ..
            })
        ));
        let mut frame = encode(&RecordRequest { orgs: vec![] }).unwrap();
        frame.resize(MIB + 1, 0);
        assert!(matches!(
            decode::<RecordRequest>(&frame),
            Err(WireError::TooLarge { .. })
        ));
        // A length prefix claiming far more elements than the frame holds fails cleanly.
        let mut lying = vec![b'K', b'S', WIRE_VERSION, MessageKind::RecordRequest as u8];
        lying.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            decode::<RecordRequest>(&lying),
            Err(WireError::Malformed { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Random bytes behind a valid header never panic, whatever the kind.
        #[test]
        fn garbage_never_panics(kind in 1u8..=13, body in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut frame = vec![b'K', b'S', WIRE_VERSION, kind];
            frame.extend(body);
            let _ = decode_any(&frame);
        }

        /// Flipping any byte of a real frame of any kind never panics the decoder.
        #[test]
        fn mutated_frames_never_panic(which in 0usize..11, pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let (_, mut frame) = samples().remove(which);
            let i = pos.index(frame.len());
            frame[i] ^= flip;
            let _ = decode_any(&frame);
        }
    }
}
