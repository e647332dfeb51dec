//! Which picture a connection gets when its path is thin.
//!
//! A browser may publish its camera as several encodings at once
//! (simulcast, RFC 8853): the full picture and a smaller one. The node
//! never re-encodes, so this is its one lever: each connection a picture
//! leaves on (another site's link, a colleague's browser) is given the
//! encoding its path carries, by str0m's bandwidth estimate for that path.
//! A path too thin even for the small one carries the voices only.
//!
//! Switching encodings mid-stream needs a keyframe of the new one, or the
//! receiver decodes one encoding's frames against the other's reference
//! and shows garbage. So a connection keeps the encoding it has until the
//! new one's keyframe comes (asking the publisher for it), and the picture
//! never freezes while it waits. Each encoding keeps its own RTP clock, so
//! the frames after a switch are re-timed to go on from the last one sent:
//! the receiver sees one stream.

use crate::frame::{Frame, Layer, Track};
use std::time::{Duration, Instant};
use str0m::media::{MediaTime, Rid};

/// What a connection's path carries, by its bandwidth estimate. Ordered
/// from the full picture to voices only: of two, the greater is the
/// thinner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Quality {
    /// The full picture.
    #[default]
    Full,
    /// A publisher's smallest encoding, when it sends several.
    Reduced,
    /// Voices only: the clinicians hear the consilium instead of watching
    /// a frozen picture.
    AudioOnly,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Full, Quality::Reduced, Quality::AudioOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Full => "full",
            Quality::Reduced => "reduced",
            Quality::AudioOnly => "audio only",
        }
    }
}

/// Below this estimate (bit/s) a connection gets no video.
pub const AUDIO_ONLY_BELOW: u64 = 150_000;
/// Video comes back once the estimate is above this again (well above the
/// other threshold, so a path near it does not flap).
pub const VIDEO_RESUMES_AT: u64 = 300_000;
/// Below this estimate a connection gets a publisher's smallest encoding:
/// a browser's full camera encoding runs up to 2.5 Mbit/s and its quarter
/// one near 0.3, so a path under 1.2 Mbit/s would queue the full one.
pub const REDUCED_BELOW: u64 = 1_200_000;
/// The full picture comes back once the estimate is above this again.
pub const FULL_RESUMES_AT: u64 = 2_000_000;

/// A connection's quality, from its bandwidth estimates, with hysteresis.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    quality: Quality,
}

impl Gate {
    /// A new estimate (bit/s); true when video resumes from audio only,
    /// which must start from a keyframe.
    pub(crate) fn handle_estimate(&mut self, bps: u64) -> bool {
        let before = self.quality;
        self.quality = match before {
            _ if bps < AUDIO_ONLY_BELOW => Quality::AudioOnly,
            Quality::AudioOnly if bps < VIDEO_RESUMES_AT => Quality::AudioOnly,
            Quality::Full if bps >= REDUCED_BELOW => Quality::Full,
            _ if bps >= FULL_RESUMES_AT => Quality::Full,
            _ => Quality::Reduced,
        };
        before == Quality::AudioOnly && self.quality != Quality::AudioOnly
    }

    pub(crate) fn quality(&self) -> Quality {
        self.quality
    }
}

/// What became of a frame handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Sent,
    /// Not for this connection (another encoding, or audio only).
    Skipped,
    /// Skipped, and the connection is switching to `Layer`: ask its
    /// publisher for a keyframe of it.
    NeedsKeyframe(Layer),
}

/// An encoding not seen for this long is gone (the publisher's own uplink
/// estimate dropped it); the connection falls back to what still comes.
const STALE: Duration = Duration::from_secs(1);
/// How often a connection waiting to switch asks for the keyframe again:
/// the request or the keyframe may be lost, but a keyframe per frame
/// would flood the publisher's uplink.
const ASK_EVERY: Duration = Duration::from_millis(500);

/// Which encoding of one publisher's video one connection is sent.
#[derive(Debug, Default)]
pub(crate) struct Selector {
    current: Option<Layer>,
    seen: [Option<Instant>; 4],
    asked: Option<Instant>,
    /// Added to the RTP time of the encoding sent now, so it goes on from
    /// the last frame sent, and that frame's time out and arrival.
    offset: i128,
    last: Option<(i128, Instant)>,
    /// Another source took the line: its first frame must be a keyframe.
    restarted: bool,
}

/// What to do with a frame on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Write it with this RTP time.
    Send(MediaTime),
    Hold(Forwarded),
}

impl Selector {
    /// `frame` on this connection's line: sent (with the RTP time it goes
    /// out with) or held. A voice is always sent, only re-timed after
    /// [`Selector::new_source`].
    pub(crate) fn handle(&mut self, quality: Quality, frame: &Frame) -> Pick {
        let before = self.current;
        if frame.track == Track::Audio {
            self.current = Some(frame.layer);
        } else {
            let verdict = self.choose(quality, frame);
            if verdict != Forwarded::Sent {
                return Pick::Hold(verdict);
            }
        }
        let time = i128::from(frame.time.numer());
        if before != self.current
            && let Some((out, at)) = self.last
        {
            let elapsed = frame.at.saturating_duration_since(at);
            let ticks = (elapsed.as_secs_f64() * f64::from(frame.time.denom())) as i128;
            self.offset = out + ticks.max(1) - time;
        }
        let out = (time + self.offset).max(0);
        self.last = Some((out, frame.at));
        Pick::Send(MediaTime::new(out as u64, frame.time.frequency()))
    }

    /// The line now carries someone else (a site's participant left and
    /// another took the line): that one's picture starts at a keyframe
    /// (asked of its publisher), and its frames go on from the last frame
    /// sent, so the receiver's decoder and jitter buffer see one stream.
    pub(crate) fn new_source(&mut self) {
        self.current = None;
        self.seen = [None; 4];
        self.asked = None;
        self.restarted = true;
    }

    fn choose(&mut self, quality: Quality, frame: &Frame) -> Forwarded {
        if quality == Quality::AudioOnly {
            self.current = None;
            return Forwarded::Skipped;
        }
        let now = frame.at;
        self.seen[frame.layer.index()] = Some(now);
        let preference = match quality {
            Quality::Reduced => [Layer::Low, Layer::Single, Layer::Middle, Layer::High],
            _ => [Layer::High, Layer::Single, Layer::Middle, Layer::Low],
        };
        let fresh = |l: Layer| {
            self.seen[l.index()].is_some_and(|at| now.saturating_duration_since(at) < STALE)
        };
        let Some(target) = preference.into_iter().find(|l| fresh(*l)) else {
            return Forwarded::Skipped;
        };
        match self.current {
            // The first picture goes as it comes: the receiver asks for
            // the keyframe it lacks, as with any new stream.
            None if frame.layer == target && !self.restarted => {
                self.current = Some(target);
                Forwarded::Sent
            }
            Some(current) if frame.layer == current => Forwarded::Sent,
            _ if frame.layer == target && frame.keyframe => {
                self.current = Some(target);
                self.asked = None;
                self.restarted = false;
                Forwarded::Sent
            }
            _ if frame.layer == target => {
                if self
                    .asked
                    .is_some_and(|at| now.saturating_duration_since(at) < ASK_EVERY)
                {
                    return Forwarded::Skipped;
                }
                self.asked = Some(now);
                Forwarded::NeedsKeyframe(target)
            }
            _ => Forwarded::Skipped,
        }
    }
}

/// Ranks a publisher's encodings by what each sends: RFC 8853 leaves their
/// names (rids) to the client, so the node goes by bitrate, which every
/// simulcast encoder orders the same way.
#[derive(Debug, Default)]
pub(crate) struct Encodings {
    /// Per rid: bytes received, halved every [`HALF_LIFE`], as of `at`.
    rates: Vec<(Rid, f64, Instant)>,
}

const HALF_LIFE: Duration = Duration::from_secs(1);
/// Encodings a publisher may send; RFC 8853 allows more, browsers send three.
const MAX_ENCODINGS: usize = 4;

impl Encodings {
    /// The layer of a frame of `bytes` in encoding `rid`.
    pub(crate) fn layer(&mut self, rid: Option<Rid>, bytes: usize, at: Instant) -> Layer {
        let Some(rid) = rid else {
            return Layer::Single;
        };
        let decayed = |rate, then| decay(rate, then, at);
        match self.rates.iter().position(|(r, ..)| *r == rid) {
            Some(i) => {
                let (_, rate, then) = &mut self.rates[i];
                *rate = decayed(*rate, *then) + bytes as f64;
                *then = at;
            }
            None if self.rates.len() < MAX_ENCODINGS => self.rates.push((rid, bytes as f64, at)),
            None => return Layer::Middle,
        }
        if self.rates.len() < 2 {
            return Layer::Single;
        }
        let now: Vec<(Rid, f64)> = (self.rates.iter())
            .map(|&(r, rate, then)| (r, decayed(rate, then)))
            .collect();
        let mine = now.iter().find(|(r, _)| *r == rid).map_or(0.0, |(_, v)| *v);
        if now.iter().all(|(_, v)| *v <= mine) {
            Layer::High
        } else if now.iter().all(|(_, v)| *v >= mine) {
            Layer::Low
        } else {
            Layer::Middle
        }
    }

    /// The rid of an encoding, as the publisher named it, as of the last
    /// frame received.
    pub(crate) fn rid(&self, layer: Layer) -> Option<Rid> {
        let at = self.rates.iter().map(|(.., then)| *then).max()?;
        let by_rate = (self.rates.iter()).map(|&(r, rate, then)| (r, decay(rate, then, at)));
        match layer {
            Layer::High => by_rate.max_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r),
            Layer::Low => by_rate.min_by(|a, b| a.1.total_cmp(&b.1)).map(|(r, _)| r),
            Layer::Single | Layer::Middle => None,
        }
    }

    /// Every rid the publisher sends.
    pub(crate) fn rids(&self) -> impl Iterator<Item = Rid> + '_ {
        self.rates.iter().map(|(r, ..)| *r)
    }
}

/// `rate` as of `then`, decayed to `at`.
fn decay(rate: f64, then: Instant, at: Instant) -> f64 {
    let halvings = at.saturating_duration_since(then).as_secs_f64() / HALF_LIFE.as_secs_f64();
    rate * 0.5f64.powf(halvings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(layer: Layer, at: Instant, keyframe: bool) -> Frame {
        Frame {
            track: Track::Video,
            params: str0m::format::PayloadParams::new(
                96.into(),
                None,
                str0m::format::CodecSpec {
                    codec: str0m::format::Codec::Vp8,
                    clock_rate: str0m::media::Frequency::NINETY_KHZ,
                    channels: None,
                    format: Default::default(),
                },
            ),
            time: str0m::media::MediaTime::from_90khz(0),
            at,
            data: Arc::from(&b"vp8"[..]),
            keyframe,
            layer,
        }
    }

    #[test]
    fn the_gate_steps_down_and_back_up_with_hysteresis() {
        let mut gate = Gate::default();
        assert!(!gate.handle_estimate(REDUCED_BELOW));
        assert_eq!(gate.quality(), Quality::Full);
        gate.handle_estimate(REDUCED_BELOW - 1);
        assert_eq!(gate.quality(), Quality::Reduced);
        gate.handle_estimate(FULL_RESUMES_AT - 1);
        assert_eq!(gate.quality(), Quality::Reduced, "no flapping");
        gate.handle_estimate(FULL_RESUMES_AT);
        assert_eq!(gate.quality(), Quality::Full);
        gate.handle_estimate(AUDIO_ONLY_BELOW - 1);
        assert_eq!(gate.quality(), Quality::AudioOnly, "straight down");
        assert!(!gate.handle_estimate(VIDEO_RESUMES_AT - 1));
        assert!(gate.handle_estimate(FULL_RESUMES_AT), "video resumes");
        assert_eq!(gate.quality(), Quality::Full);
    }

    /// What the connection did with a frame, without its time.
    fn verdict(pick: Pick) -> Forwarded {
        match pick {
            Pick::Send(_) => Forwarded::Sent,
            Pick::Hold(v) => v,
        }
    }

    #[test]
    fn a_thin_path_switches_to_the_small_encoding_at_its_keyframe_and_back() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Selector::default();
        let both = |s: &mut Selector, q, ms, high_key, low_key| {
            (
                verdict(s.handle(q, &frame(Layer::High, at(ms), high_key))),
                verdict(s.handle(q, &frame(Layer::Low, at(ms), low_key))),
            )
        };
        use Forwarded::*;
        assert_eq!(
            both(&mut s, Quality::Full, 0, false, false),
            (Sent, Skipped)
        );
        // The path thins: the full picture goes on until the small one's
        // keyframe, asked for once per interval.
        assert_eq!(
            both(&mut s, Quality::Reduced, 33, false, false),
            (Sent, NeedsKeyframe(Layer::Low))
        );
        assert_eq!(
            both(&mut s, Quality::Reduced, 66, false, false),
            (Sent, Skipped)
        );
        assert_eq!(
            both(&mut s, Quality::Reduced, 600, false, false),
            (Sent, NeedsKeyframe(Layer::Low)),
            "asked again"
        );
        assert_eq!(
            both(&mut s, Quality::Reduced, 633, false, true),
            (Sent, Sent)
        );
        assert_eq!(
            both(&mut s, Quality::Reduced, 666, false, false),
            (Skipped, Sent)
        );
        // Audio only: no video at all, then the picture it resumes with.
        assert_eq!(
            both(&mut s, Quality::AudioOnly, 700, true, true),
            (Skipped, Skipped)
        );
        assert_eq!(
            both(&mut s, Quality::Full, 733, false, false),
            (Sent, Skipped)
        );
        // The full encoding stops (the publisher's uplink thinned): after
        // a second without it the small one takes over at its keyframe.
        for ms in (766..1800).step_by(33) {
            let low = verdict(s.handle(Quality::Full, &frame(Layer::Low, at(ms), false)));
            assert_ne!(low, Sent, "switched without a keyframe at {ms} ms");
        }
        assert_eq!(
            verdict(s.handle(Quality::Full, &frame(Layer::Low, at(1833), true))),
            Sent
        );
        // A publisher without simulcast is passed as it comes.
        let mut single = Selector::default();
        for (ms, q) in [(0, Quality::Full), (33, Quality::Reduced)] {
            assert_eq!(
                verdict(single.handle(q, &frame(Layer::Single, at(ms), false))),
                Sent
            );
        }
    }

    #[test]
    fn after_a_switch_the_stream_goes_on_from_the_last_frame_sent() {
        let t0 = Instant::now();
        // Each encoding has its own RTP clock.
        let f = |layer, ms: u64, rtp: u64, key| Frame {
            time: MediaTime::from_90khz(rtp),
            ..frame(layer, t0 + Duration::from_millis(ms), key)
        };
        let mut s = Selector::default();
        let rtp = |t: u64| Pick::Send(MediaTime::from_90khz(t));
        assert_eq!(
            s.handle(Quality::Full, &f(Layer::High, 0, 1_000, false)),
            rtp(1_000)
        );
        assert_eq!(
            s.handle(Quality::Reduced, &f(Layer::Low, 0, 500_000, false)),
            Pick::Hold(Forwarded::NeedsKeyframe(Layer::Low))
        );
        // 33 ms on: 2970 ticks of 90 kHz after the last frame sent.
        assert_eq!(
            s.handle(Quality::Reduced, &f(Layer::Low, 33, 502_970, true)),
            rtp(3_970)
        );
        assert_eq!(
            s.handle(Quality::Reduced, &f(Layer::Low, 66, 505_940, false)),
            rtp(6_940)
        );
    }

    #[test]
    fn a_voice_from_someone_else_goes_on_from_the_last_one_sent() {
        let t0 = Instant::now();
        let voice = |ms: u64, rtp: u64| Frame {
            track: Track::Audio,
            time: MediaTime::new(rtp, str0m::media::Frequency::FORTY_EIGHT_KHZ),
            ..frame(Layer::Single, t0 + Duration::from_millis(ms), true)
        };
        let mut s = Selector::default();
        let out = |p: Pick| match p {
            Pick::Send(t) => t.numer(),
            Pick::Hold(v) => panic!("a voice held: {v:?}"),
        };
        assert_eq!(out(s.handle(Quality::AudioOnly, &voice(0, 960))), 960);
        assert_eq!(out(s.handle(Quality::AudioOnly, &voice(20, 1_920))), 1_920);
        s.new_source();
        // 20 ms later at 48 kHz: 960 ticks on, whatever the new clock says.
        assert_eq!(out(s.handle(Quality::Full, &voice(40, 800_000))), 2_880);
        assert_eq!(out(s.handle(Quality::Full, &voice(60, 800_960))), 3_840);
    }

    #[test]
    fn encodings_are_ranked_by_what_they_send_whatever_they_are_named() {
        let t0 = Instant::now();
        let mut e = Encodings::default();
        let (big, small): (Rid, Rid) = ("a".into(), "b".into());
        assert_eq!(e.layer(None, 100, t0), Layer::Single);
        assert_eq!(e.layer(Some(big), 8_000, t0), Layer::Single, "one so far");
        let mut last = (Layer::Single, Layer::Single);
        for i in 1..30 {
            let at = t0 + Duration::from_millis(33 * i);
            last = (e.layer(Some(small), 700, at), e.layer(Some(big), 8_000, at));
        }
        assert_eq!(last, (Layer::Low, Layer::High));
        assert_eq!(e.rid(Layer::High), Some(big));
        assert_eq!(e.rid(Layer::Low), Some(small));
        assert_eq!(e.rids().count(), 2);
    }
}
