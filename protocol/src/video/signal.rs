//! What two sites exchange to open a video connection: an offer and an
//! answer, each signed by its organization's identity key. The connection
//! itself (str0m) is the `konsilium-video` crate's; these messages travel
//! in the node's RPC like any other request.

use crate::identity::OrgId;
use crate::signed::{Signable, Signed, SignedError};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The longest session description taken in, from a site or a browser:
/// the room page's offer (eight tiles of two media lines) is over 64 KiB.
pub const MAX_DESCRIPTION_LEN: usize = 256 * 1024;

/// One video session of a consultation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

/// A WebRTC session description (SDP). Its `a=fingerprint` line is the
/// DTLS certificate the site will present: signed with the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Description {
    Offer(String),
    Answer(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub session: SessionId,
    pub from: OrgId,
    pub to: OrgId,
    pub description: Description,
    pub at: Timestamp,
}

impl Signable for Signal {
    const DOMAIN: &'static [u8] = b"konsilium/video-signal/v1\0";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("the signal is for {to}, not this organization")]
    NotForUs { to: OrgId },
    #[error("{from} is not a participant of video session {session:?}")]
    NotAParticipant { from: OrgId, session: SessionId },
    #[error("the signal is not for video session {session:?}")]
    OtherSession { session: SessionId },
    #[error("the session description is {len} bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("signal: {0}")]
    Signed(#[from] SignedError),
}

/// Takes a signal in: addressed to `me`, for `session`, from one of its
/// `participants`, signed by that participant's identity key, and with a
/// description of at most [`MAX_DESCRIPTION_LEN`] bytes (the RPC frame
/// allows 80 MiB, and the description is parsed on the node's event loop).
pub fn accept(
    signed: &Signed<Signal>,
    me: OrgId,
    session: SessionId,
    participants: &[OrgId],
) -> Result<Signal, SignalError> {
    let signal = signed.decode_unverified()?;
    if signal.session != session {
        return Err(SignalError::OtherSession { session });
    }
    if signal.to != me {
        return Err(SignalError::NotForUs { to: signal.to });
    }
    if signal.from == me || !participants.contains(&signal.from) {
        return Err(SignalError::NotAParticipant {
            from: signal.from,
            session,
        });
    }
    let (Description::Offer(sdp) | Description::Answer(sdp)) = &signal.description;
    if sdp.len() > MAX_DESCRIPTION_LEN {
        return Err(SignalError::TooLong {
            len: sdp.len(),
            max: MAX_DESCRIPTION_LEN,
        });
    }
    signed.verify_by(signal.from.checked_key())?;
    Ok(signal)
}
