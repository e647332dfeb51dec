//! Video signalling: the offers and answers sites exchange to open a link,
//! signed by their organization, in the RPC frames that carry them.

use super::*;
use konsilium_protocol::video::{self, Description, SessionId, Signal};

/// The session the fixed world's two organizations are in.
pub(super) const SESSION: SessionId = SessionId([9; 16]);

/// A signal from the district to the federal center, as the federal
/// center's node takes it in.
pub(super) fn signal(description: Description) -> Signed<Signal> {
    let w = &*WORLD;
    Signed::sign(
        &w.district.identity,
        &Signal {
            session: SESSION,
            from: w.district.id(),
            to: w.federal.id(),
            description,
            at: NOW,
        },
    )
}

/// A `Request::VideoOffer` (or `VideoProbe`) or `Response::VideoAnswer` frame, taken in by
/// the federal center for its session with the district: the outsider,
/// a forger, another session or another recipient are refused.
pub fn video_signal(data: &[u8]) -> bool {
    let signed = match wire::peek_kind(data) {
        Ok(MessageKind::Response) => match decode::<Response>(data) {
            Some(Response::VideoAnswer(s)) => s,
            _ => return false,
        },
        _ => match decode::<Request>(data) {
            Some(Request::VideoOffer(s) | Request::VideoProbe(s)) => s,
            _ => return false,
        },
    };
    let w = &*WORLD;
    let participants = [w.district.id(), w.federal.id()];
    match video::accept(&signed, w.federal.id(), SESSION, &participants) {
        Ok(signal) => {
            assert_eq!(
                signal.from,
                w.district.id(),
                "only the district signs to us"
            );
            assert_eq!(signal.to, w.federal.id());
            assert_eq!(signal.session, SESSION);
            signed
                .verify(&w.district.id().verifying_key())
                .expect("an accepted signal is the district's");
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}
