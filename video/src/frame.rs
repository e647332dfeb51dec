//! What a node forwards: media frames exactly as str0m reassembled them,
//! never decoded. A frame received on one connection (a clinician's
//! browser, another site) is written on others in the payload type each of
//! them negotiated for the same codec.

use crate::error::LinkError;
use std::sync::Arc;
use std::time::Instant;
use str0m::format::PayloadParams;
use str0m::media::{MediaData, MediaKind, MediaTime, Mid};
use str0m::{Rtc, RtcConfig};

/// Which of a participant's tracks a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Audio,
    Video,
}

impl Track {
    pub(crate) fn of(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Audio => Track::Audio,
            MediaKind::Video => Track::Video,
        }
    }
}

/// Which of its publisher's encodings a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layer {
    /// The publisher sends one encoding (no simulcast), or the frame came
    /// from another site, which chose the encoding for this one already.
    #[default]
    Single,
    /// The encoding with the least bitrate.
    Low,
    /// Neither the least nor the most (a third encoding).
    Middle,
    /// The encoding with the most bitrate: the full picture.
    High,
}

impl Layer {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One reassembled media frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: Track,
    /// The codec and its parameters: what the next connection matches.
    pub params: PayloadParams,
    /// RTP time, kept as it came so the receiver's jitter buffer sees the
    /// sender's own timing.
    pub time: MediaTime,
    /// When its first packet arrived: the wall clock it is written with.
    pub at: Instant,
    pub data: Arc<[u8]>,
    /// Whether a decoder can start here (a VP8 keyframe; every audio frame).
    pub keyframe: bool,
    /// Which of its publisher's encodings it is.
    pub layer: Layer,
}

/// Two frames are the same frame when they carry the same bytes at the
/// same RTP time; when each arrived is not part of it.
impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.track == other.track && self.time == other.time && self.data == other.data
    }
}

impl Eq for Frame {}

impl Frame {
    pub(crate) fn received(m: &MediaData) -> Self {
        let track = if m.params.spec().codec.is_audio() {
            Track::Audio
        } else {
            Track::Video
        };
        Self {
            track,
            params: m.params,
            time: m.time,
            at: m.network_time,
            data: m.data.clone(),
            keyframe: track == Track::Audio || m.is_keyframe(),
            layer: Layer::Single,
        }
    }
}

/// Every connection a node holds speaks the same two codecs, VP8 and Opus,
/// which every browser sends: a frame from any of them can be written on
/// any other without transcoding.
pub(crate) fn codecs(config: RtcConfig) -> RtcConfig {
    config
        .clear_codecs()
        .enable_vp8(true)
        .enable_opus(true, false)
}

/// Writes `frame` on `mid` in the payload type this connection agreed for
/// its codec, at RTP time `time` (its own, or re-timed after a switch of
/// encodings).
pub(crate) fn write(
    rtc: &mut Rtc,
    mid: Mid,
    frame: &Frame,
    time: MediaTime,
) -> Result<(), LinkError> {
    send_unpaced(rtc, mid);
    let writer = (rtc.writer(mid)).ok_or(LinkError::NotReady("no media writer"))?;
    let pt = (writer.match_params(frame.params)).ok_or(LinkError::Description(
        "the codec was not negotiated".into(),
    ))?;
    (writer.write(pt, frame.at, time, frame.data.clone()))
        .map_err(|e| LinkError::Failed(e.to_string()))
}

/// Sends what is written on `mid` as it comes instead of through str0m's
/// pacer. Its publisher (a browser, another site's node) already paced it
/// and chose its bitrate; pacing it again at 1.1 times this path's
/// estimate only delays each frame by the time its bytes take at that
/// rate, and a forwarding node cannot send fewer bytes anyway. What the
/// estimate decides here is which encoding a path is sent (`simulcast`),
/// and it still learns from every packet's transport-wide feedback.
/// Set on every write: a renegotiation can make the stream anew.
pub(crate) fn send_unpaced(rtc: &mut Rtc, mid: Mid) {
    let mut api = rtc.direct_api();
    if let Some(stream) = api.stream_tx_by_mid(mid, None) {
        stream.set_unpaced(true);
    }
}
