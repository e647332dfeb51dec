//! One site's WebRTC connection to another site: media both ways and a data
//! channel (chat, shared files), on a str0m `Rtc`.
//!
//! The node relays its browsers' media to the other sites without decoding
//! it, so a link carries frames as opaque bytes: str0m packetizes and
//! reassembles them and never looks inside.

use crate::connection::{
    self, Core, Datagram, Incoming, LocalAddrs, Prepared, add_candidates, new_rtc,
};
use crate::error::LinkError;
use crate::frame::{self, Frame, Track};
use crate::simulcast::{Forwarded, Gate, Pick, Quality, Selector};
use crate::stats::{LinkStats, Meter};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::{Event, IceConnectionState, Rtc};

/// The data channel every link opens.
const CHANNEL: &str = "consilium";
/// How many of one site's participants a link carries, each as a voice
/// and a picture on a media line pair of its own: the other sites see
/// and hear everyone who publishes there, up to this many at once (the
/// room page shows no more tiles than that per site anyway).
pub const PER_SITE: usize = 4;
/// The slots a link is offered with. Most sites have one clinician on
/// camera, and every media line costs the setup (str0m writes, parses and
/// builds each, 0.1 ms or so) and every packet after it (each of the
/// connection's timeouts walks all its streams): nine lines where three
/// serve made a session's setup a millisecond slower and forwarding a
/// tenth dearer. A second publisher at either site grows the link
/// ([`Link::grow`]).
const FIRST_SLOTS: usize = 1;
/// RTP time advances by a 30 fps frame's worth at 90 kHz per frame sent.
const FRAME_TICKS: u64 = 3000;
/// How long a link that lost its path waits for an ICE restart to find a
/// new one before it is given up (and set up anew, DTLS and all).
pub const RECONNECT_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// ICE and DTLS are done: media and data can flow.
    Connected,
    /// The data channel is open both ways.
    ChannelOpen,
    Data(Vec<u8>),
    /// A frame of the other site's participant that `slot` carries.
    Media {
        slot: usize,
        frame: Frame,
    },
    /// The other site's viewers need a keyframe of what this site sends
    /// on `slot`.
    KeyframeWanted {
        slot: usize,
    },
    /// The path stopped answering (the network changed, a NAT forgot its
    /// mapping): the offering side restarts ICE ([`Link::restart`]);
    /// without a new path within [`RECONNECT_WAIT`] the link fails.
    Disconnected,
    /// A path was found again: the same DTLS session carries on.
    Reconnected,
    /// The link is over for good (refused handshake, lost connection).
    Failed(String),
}

/// Where a link stands, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// ICE and DTLS under way.
    Connecting,
    Connected,
    /// Connected once, its path lost: an ICE restart is looking for another.
    Reconnecting,
}

impl LinkState {
    pub const ALL: [LinkState; 3] = [
        LinkState::Connecting,
        LinkState::Connected,
        LinkState::Reconnecting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
        }
    }
}

pub struct Link {
    core: Core,
    /// This side wrote the link's first offer: only it offers again (ICE
    /// restarts, more slots), so the two sites' offers never cross.
    offerer: bool,
    pending: Option<SdpPendingOffer>,
    /// The slots the pending offer adds (a voice's and a picture's line
    /// each), usable once the other site has answered.
    growing: Vec<(Mid, Mid)>,
    /// The media lines of each slot, in the order of the offer: the
    /// `i`-th audio and the `i`-th video line carry one participant.
    audio: Vec<Mid>,
    video: Vec<Mid>,
    events: VecDeque<LinkEvent>,
    frames: u64,
    /// What the path carries, and so which encoding of each participant's
    /// picture goes on it.
    gate: Gate,
    /// What the other site's browsers can take, as it told: its thinnest
    /// path to one of them (it cannot thin what it receives itself).
    asked: Quality,
    /// Per slot: which encoding goes, and the RTP time it goes out with.
    pictures: [Selector; PER_SITE],
    voices: [Selector; PER_SITE],
    meter: Meter,
    /// The DTLS fingerprint line the other site signed: an offer with the
    /// same one restarts ICE on this link, another is a new link.
    remote_fingerprint: Option<String>,
    /// When the path was lost (on the connection's clock).
    lost_at: Option<Instant>,
    connected_once: bool,
}

/// The `a=fingerprint:` line of a description.
fn fingerprint(sdp: &str) -> Option<String> {
    (sdp.lines())
        .map(str::trim)
        .find(|line| line.starts_with("a=fingerprint:"))
        .map(str::to_owned)
}

impl Link {
    fn with(now: Instant, rtc: Rtc, local: LocalAddrs) -> Self {
        Self {
            core: Core::new(now, rtc),
            offerer: false,
            pending: None,
            growing: Vec::new(),
            audio: Vec::new(),
            video: Vec::new(),
            events: VecDeque::new(),
            frames: 0,
            gate: Gate::default(),
            asked: Quality::Full,
            pictures: Default::default(),
            voices: Default::default(),
            meter: Meter::new(local.relayed.map(|r| r.addr)),
            remote_fingerprint: None,
            lost_at: None,
            connected_once: false,
        }
    }

    /// The side that opens: a link waiting for the answer to its offer.
    pub fn offer(
        now: Instant,
        local: LocalAddrs,
        prepared: Prepared,
    ) -> Result<(Self, String), LinkError> {
        let mut rtc = new_rtc(now, local, prepared)?;
        let mut change = rtc.sdp_api();
        let (mut audio, mut video) = (Vec::new(), Vec::new());
        for _ in 0..FIRST_SLOTS {
            audio.push(change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
            video.push(change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
        }
        change.add_channel(CHANNEL.into());
        let (offer, pending) = change
            .apply()
            .ok_or(LinkError::Description("nothing to offer".into()))?;
        let mut link = Self::with(now, rtc, local);
        link.offerer = true;
        link.pending = Some(pending);
        (link.audio, link.video) = (audio, video);
        link.drain();
        Ok((link, offer.to_sdp_string()))
    }

    /// The offering side, when one site has more participants to carry
    /// than the link has slots (`wanted`, at most [`PER_SITE`]): an offer
    /// that adds the missing slots over the same connection, sent to the
    /// other site like the first and answered through
    /// [`Link::handle_restart`]; its answer goes to [`Link::handle_answer`],
    /// and the slots carry media from then on. `None` when nothing is
    /// missing, on the answering side (the other site grows the link), or
    /// while the link is not connected or an offer waits: the caller asks
    /// again later.
    pub fn grow(&mut self, now: Instant, wanted: usize) -> Result<Option<String>, LinkError> {
        let wanted = wanted.min(PER_SITE);
        if !self.offerer || self.slots() >= wanted || self.pending.is_some() || !self.is_connected()
        {
            return Ok(None);
        }
        self.core.set_now(now);
        let have = self.slots();
        let mut change = self.core.rtc.sdp_api();
        let mut growing = Vec::new();
        for _ in have..wanted {
            let audio = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let video = change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
            growing.push((audio, video));
        }
        let (offer, pending) = change
            .apply()
            .ok_or(LinkError::Description("nothing to offer".into()))?;
        (self.pending, self.growing) = (Some(pending), growing);
        self.drain();
        Ok(Some(offer.to_sdp_string()))
    }

    /// The side that answers an offer.
    pub fn answer(
        now: Instant,
        local: LocalAddrs,
        prepared: Prepared,
        offer: &str,
    ) -> Result<(Self, String), LinkError> {
        let sdp = offer;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| LinkError::Description(e.to_string()))?;
        let mut rtc = new_rtc(now, local, prepared)?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| LinkError::Description(e.to_string()))?;
        let mut link = Self::with(now, rtc, local);
        let answer = answer.to_sdp_string();
        link.learn_slots(&answer);
        link.meter.remote_description(sdp);
        link.remote_fingerprint = fingerprint(sdp);
        link.drain();
        Ok((link, answer))
    }

    /// The slots an answer has that the link had not, in the order of its
    /// media lines (the offer's order, which both sides then share; str0m
    /// names the lines in events only once it runs).
    fn learn_slots(&mut self, answer: &str) {
        let mids = (answer.lines())
            .filter_map(|line| line.trim().strip_prefix("a=mid:"))
            .map(Mid::from);
        for mid in mids {
            if self.audio.contains(&mid) || self.video.contains(&mid) {
                continue;
            }
            if let Some(media) = self.core.rtc.media(mid) {
                match Track::of(media.kind()) {
                    Track::Audio if self.audio.len() < PER_SITE => self.audio.push(mid),
                    Track::Video if self.video.len() < PER_SITE => self.video.push(mid),
                    _ => {}
                }
            }
        }
    }

    pub fn handle_answer(&mut self, answer: &str) -> Result<(), LinkError> {
        let pending = (self.pending.take()).ok_or(LinkError::Description(
            "no offer is waiting for an answer".into(),
        ))?;
        let growing = std::mem::take(&mut self.growing);
        self.meter.remote_description(answer);
        self.remote_fingerprint = self.remote_fingerprint.take().or(fingerprint(answer));
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| LinkError::Description(e.to_string()))?;
        (self.core.rtc.sdp_api())
            .accept_answer(pending, answer)
            .map_err(|e| LinkError::Description(e.to_string()))?;
        for (audio, video) in growing {
            self.audio.push(audio);
            self.video.push(video);
        }
        self.drain();
        Ok(())
    }

    /// The offering side, when the path was lost or the network changed:
    /// new ICE credentials and candidates (`local` may name new addresses)
    /// over the same DTLS session; the returned offer goes to the other
    /// site like the first one, and its answer to [`Link::handle_answer`].
    pub fn restart(&mut self, now: Instant, local: LocalAddrs) -> Result<String, LinkError> {
        self.usable()?;
        if self.pending.is_some() {
            return Err(LinkError::NotReady("an offer waits for its answer"));
        }
        self.core.set_now(now);
        add_candidates(&mut self.core.rtc, local)?;
        let mut change = self.core.rtc.sdp_api();
        change.ice_restart(true);
        let (offer, pending) = change
            .apply()
            .ok_or(LinkError::Description("nothing to offer".into()))?;
        self.pending = Some(pending);
        self.drain();
        Ok(offer.to_sdp_string())
    }

    /// Whether `offer` restarts this link (the same DTLS certificate as
    /// the description the other site signed first) rather than replaces
    /// it (the other site restarted: a new certificate).
    pub fn is_restarted_by(&self, offer: &str) -> bool {
        self.remote_fingerprint.is_some() && self.remote_fingerprint == fingerprint(offer)
    }

    /// The answering side of [`Link::restart`] and [`Link::grow`]: returns
    /// the answer, which names `local`'s addresses too when they are new
    /// (a relay granted since the link began); slots the offer adds carry
    /// media from now on.
    pub fn handle_restart(
        &mut self,
        now: Instant,
        offer: &str,
        local: LocalAddrs,
    ) -> Result<String, LinkError> {
        self.usable()?;
        if !self.is_restarted_by(offer) {
            return Err(LinkError::Description(
                "the offer names another DTLS certificate: a new link, not a restart".into(),
            ));
        }
        self.core.set_now(now);
        add_candidates(&mut self.core.rtc, local)?;
        let sdp = offer;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| LinkError::Description(e.to_string()))?;
        let answer = (self.core.rtc.sdp_api())
            .accept_offer(offer)
            .map_err(|e| LinkError::Description(e.to_string()))?
            .to_sdp_string();
        self.learn_slots(&answer);
        self.meter.remote_description(sdp);
        self.drain();
        Ok(answer)
    }

    /// Whether a datagram arriving on a socket several links share is this
    /// link's (its remote's address, or an ICE check with its credentials).
    pub fn accepts(&self, incoming: &Incoming) -> bool {
        connection::accepts(&self.core.rtc, incoming)
    }

    /// A datagram from the socket, read once ([`Incoming::read`]) also to
    /// find whose it is.
    pub fn handle_datagram(&mut self, incoming: Incoming) {
        if self.core.failed.is_some() {
            return;
        }
        if let Err(e) = self.core.receive(incoming) {
            self.fail(e);
        }
        self.drain();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.core.failed.is_some() {
            return;
        }
        if self.lost_at.is_some_and(|at| now >= at + RECONNECT_WAIT) {
            self.fail("the other site stopped answering".into());
            return;
        }
        if let Err(e) = self.core.handle_timeout(now) {
            self.fail(e.to_string());
        }
        self.drain();
    }

    /// Writes a message on the data channel; `Ok(false)` when its buffer
    /// is full (try again after the next datagrams).
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<bool, LinkError> {
        let written = self.core.send_data(bytes)?;
        self.drain();
        Ok(written)
    }

    /// Sends one video frame made here, as opaque bytes (a probe's, a
    /// test's): VP8 packetizing carries any bytes.
    pub fn send_media(&mut self, now: Instant, frame: &[u8]) -> Result<(), LinkError> {
        let mid = self.ready_mid(Track::Video, 0)?;
        let writer = (self.core.rtc.writer(mid)).ok_or(LinkError::NotReady("no media writer"))?;
        let pt = (writer.payload_params().next())
            .ok_or(LinkError::Description("no codec negotiated".into()))?
            .pt();
        self.frames += 1;
        let time = MediaTime::from_90khz(self.frames * FRAME_TICKS);
        (writer.write(pt, now, time, frame.to_vec()))
            .map_err(|e| LinkError::Failed(e.to_string()))?;
        self.meter.video_frame_sent();
        self.drain();
        Ok(())
    }

    /// Forwards a frame one of this site's clinicians sent, on the slot
    /// that carries them, if it is the encoding the path carries.
    pub fn forward(&mut self, slot: usize, frame: &Frame) -> Result<Forwarded, LinkError> {
        let mid = self.ready_mid(frame.track, slot)?;
        let quality = self.quality();
        let selector = match frame.track {
            Track::Audio => &mut self.voices[slot],
            Track::Video => &mut self.pictures[slot],
        };
        let time = match selector.handle(quality, frame) {
            Pick::Send(time) => time,
            Pick::Hold(verdict) => return Ok(verdict),
        };
        frame::write(&mut self.core.rtc, mid, frame, time)?;
        if frame.track == Track::Video {
            self.meter.video_frame_sent();
        }
        self.drain();
        Ok(Forwarded::Sent)
    }

    /// `slot` carries someone else from now on: their picture starts at
    /// a keyframe, their frames go on from the last ones sent (the other
    /// site's browsers see one stream per slot).
    pub fn new_source(&mut self, slot: usize) {
        if let (Some(picture), Some(voice)) =
            (self.pictures.get_mut(slot), self.voices.get_mut(slot))
        {
            picture.new_source();
            voice.new_source();
        }
    }

    /// How many of a site's participants this link carries: one at first,
    /// up to [`PER_SITE`] as it grows.
    pub fn slots(&self) -> usize {
        self.audio.len().min(self.video.len())
    }

    /// Asks the other site for a keyframe of the video it sends on `slot`
    /// (a viewer here joined, or lost packets).
    pub fn request_keyframe(&mut self, slot: usize) -> Result<(), LinkError> {
        let mid = self.ready_mid(Track::Video, slot)?;
        let mut writer =
            (self.core.rtc.writer(mid)).ok_or(LinkError::NotReady("no media writer"))?;
        (writer.request_keyframe(None, KeyframeRequestKind::Pli))
            .map_err(|_| LinkError::NotReady("no video from the other site yet"))?;
        self.drain();
        Ok(())
    }

    /// The media line of a slot's track, once the link can carry media
    /// on it.
    fn ready_mid(&self, track: Track, slot: usize) -> Result<Mid, LinkError> {
        self.usable()?;
        if !self.core.rtc.is_connected() {
            // str0m drops media written before the connection is up.
            return Err(LinkError::NotReady("not connected"));
        }
        let mids = match track {
            Track::Audio => &self.audio,
            Track::Video => &self.video,
        };
        (mids.get(slot).copied()).ok_or(LinkError::NotReady("no media negotiated on that slot"))
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            quality: self.quality(),
            ..self.meter.stats
        }
    }

    /// What goes on the link: the thinner of what the path carries and
    /// what the other site asked for.
    fn quality(&self) -> Quality {
        self.gate.quality().max(self.asked)
    }

    /// The other site's browsers can take no more than `quality` (one of
    /// them is on a thin path): the link sends the publishers' smaller
    /// encoding, or no video, as if its own path were that thin.
    pub fn handle_asked(&mut self, quality: Quality) {
        let before = self.quality();
        self.asked = quality;
        self.resumed(before);
    }

    /// Video that comes back after voices only starts with keyframes.
    fn resumed(&mut self, before: Quality) {
        if before == Quality::AudioOnly && self.quality() != Quality::AudioOnly {
            for slot in 0..self.slots() {
                self.events.push_back(LinkEvent::KeyframeWanted { slot });
            }
        }
    }

    /// The path's estimated capacity (bit/s, str0m's bandwidth estimate,
    /// fed in by the link itself): below
    /// [`REDUCED_BELOW`](crate::REDUCED_BELOW) the presenter's smallest
    /// encoding goes, below [`AUDIO_ONLY_BELOW`](crate::AUDIO_ONLY_BELOW)
    /// none, and video comes back above
    /// [`VIDEO_RESUMES_AT`](crate::VIDEO_RESUMES_AT), starting with a keyframe.
    pub fn handle_estimate(&mut self, bps: u64) {
        let before = self.quality();
        self.gate.handle_estimate(bps);
        self.resumed(before);
    }

    /// Ends the link on purpose (the session ended): the other site hears
    /// of it from DTLS, and nothing more is sent or reported.
    pub fn close(&mut self) {
        self.stop("closed".into());
    }

    /// Whether an offer of ours still waits for its answer.
    pub fn is_offering(&self) -> bool {
        self.pending.is_some()
    }

    /// ICE and DTLS are done.
    pub fn is_connected(&self) -> bool {
        self.core.failed.is_none() && self.core.rtc.is_connected()
    }

    pub fn state(&self) -> LinkState {
        match (self.connected_once, self.lost_at) {
            (true, Some(_)) => LinkState::Reconnecting,
            _ if self.is_connected() => LinkState::Connected,
            _ => LinkState::Connecting,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.core.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`Link::handle_timeout`] is due; `None` once the link failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let give_up = self.lost_at.map(|at| at + RECONNECT_WAIT);
        match (self.core.timeout, give_up) {
            (Some(t), Some(g)) => Some(t.min(g)),
            (t, _) => t,
        }
    }

    fn usable(&self) -> Result<(), LinkError> {
        self.core.usable()
    }

    fn fail(&mut self, reason: String) {
        if self.stop(reason.clone()) {
            self.events.push_back(LinkEvent::Failed(reason));
        }
    }

    /// False when it was over already.
    fn stop(&mut self, reason: String) -> bool {
        self.lost_at = None;
        self.core.stop(reason)
    }

    fn drain(&mut self) {
        let (events, broke) = self.core.drain();
        for event in events {
            self.on_event(event);
        }
        if let Some(reason) = broke {
            self.fail(reason);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected_once = true;
                self.events.push_back(LinkEvent::Connected);
            }
            Event::ChannelOpen(id, _) => {
                self.core.channel = Some(id);
                self.events.push_back(LinkEvent::ChannelOpen);
            }
            Event::ChannelData(d) => self.events.push_back(LinkEvent::Data(d.data)),
            Event::MediaData(m) => {
                let frame = Frame::received(&m);
                let mids = match frame.track {
                    Track::Audio => &self.audio,
                    Track::Video => &self.video,
                };
                let Some(slot) = mids.iter().position(|mid| *mid == m.mid) else {
                    return;
                };
                if frame.track == Track::Video {
                    self.meter.video_frame_received();
                }
                self.events.push_back(LinkEvent::Media { slot, frame });
            }
            Event::KeyframeRequest(r) => {
                if let Some(slot) = self.video.iter().position(|mid| *mid == r.mid) {
                    self.events.push_back(LinkEvent::KeyframeWanted { slot });
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                if let Some(bps) = connection::estimate(&kind) {
                    self.handle_estimate(bps);
                }
            }
            Event::PeerStats(stats) => self.meter.handle_stats(&stats),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.lost_at.is_none() =>
            {
                self.lost_at = Some(self.core.now());
                self.events.push_back(LinkEvent::Disconnected);
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.lost_at.is_some() => {
                self.lost_at = None;
                self.events.push_back(LinkEvent::Reconnected);
            }
            _ => {}
        }
    }
}
