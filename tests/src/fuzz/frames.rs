//! Wire frames: any frame decoded as the kind it claims to be, and the
//! decode-and-re-encode check every target uses.

use super::*;

/// Decodes, then checks that the value survives its own encoding: a decoder
/// that accepts what the encoder cannot reproduce would let two nodes
/// disagree about one message.
pub(super) fn decode<M: WireMessage + PartialEq + std::fmt::Debug>(frame: &[u8]) -> Option<M> {
    match wire::decode::<M>(frame) {
        Ok(m) => {
            let again = wire::encode(&m).expect("a decoded value encodes within its limit");
            assert!(again.len() <= frame.len(), "re-encoding grew the frame");
            assert_eq!(wire::decode::<M>(&again).expect("re-decodes"), m);
            Some(m)
        }
        Err(e) => {
            // Errors are shown to operators; rendering must not panic either.
            let _ = e.to_string();
            None
        }
    }
}

/// Any frame, decoded as the kind it claims to be.
pub fn wire_frame(data: &[u8]) -> bool {
    let Ok(kind) = wire::peek_kind(data) else {
        return false;
    };
    fn show<T: std::fmt::Debug>(v: Option<T>) -> bool {
        v.map(|v| format!("{v:?}")).is_some()
    }
    match kind {
        MessageKind::DirectoryRecord => show(decode::<SignedRecord>(data)),
        MessageKind::RevocationNotice => show(decode::<RevocationNotice>(data)),
        MessageKind::CertChain => show(decode::<CertChain>(data)),
        MessageKind::SyncOffer => show(decode::<SyncOffer>(data)),
        MessageKind::SyncSummaries => show(decode::<SyncSummaries>(data)),
        MessageKind::RecordRequest => show(decode::<RecordRequest>(data)),
        MessageKind::RecordBatch => show(decode::<RecordBatch>(data)),
        MessageKind::EnvelopeHeader => show(decode::<EnvelopeHeader>(data)),
        MessageKind::SealedPackage => show(decode::<SealedPackage>(data)),
        MessageKind::Request => show(decode::<Request>(data)),
        MessageKind::Response => show(decode::<Response>(data).inspect(|r| {
            if let Response::Refused(refusal) = r {
                let _ = (refusal.to_string(), refusal.is_permanent());
            }
        })),
        MessageKind::PackageBody => show(decode::<PackageBody>(data)),
        MessageKind::ConclusionFile => show(decode::<ConclusionFile>(data)),
        MessageKind::Hello => show(decode::<Hello>(data)),
        MessageKind::HelloAnswer => show(decode::<HelloAnswer>(data)),
        MessageKind::JournalAnchor => show(decode::<Signed<Checkpoint>>(data)),
    }
}
