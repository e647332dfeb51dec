//! A clinician's browser in a session: the WebRTC connection a WHIP or
//! WHEP client (or the node's own room page) opened with its offer.
//!
//! The browser decides the media lines. Those it sends on carry what the
//! clinician publishes; those it only receives on are *slots*, each shown
//! as one tile, which the node fills with another participant's frames.
//! A WHIP client has no slots, a WHEP client publishes nothing, the room
//! page does both on one connection.

use crate::connection::{self, Core, Datagram, Incoming, LocalAddrs, Prepared, new_rtc};
use crate::error::LinkError;
use crate::frame::Layer;
use crate::frame::{self, Frame, Track};
use crate::simulcast::{Encodings, Forwarded, Gate, Pick, Selector};
use crate::stats::{LinkStats, Meter};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use str0m::Event;
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, Mid};

/// How long a browser has from its offer to a connection; a seat whose
/// browser never comes (closed the tab, a firewall in the way) is given up.
pub const CONNECT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub enum SeatEvent {
    /// ICE and DTLS are done.
    Connected,
    /// The browser's data channel is open.
    ChannelOpen,
    Data(Vec<u8>),
    /// A frame the clinician published.
    Media(Frame),
    /// The browser needs a keyframe for what the slot shows.
    KeyframeWanted {
        slot: Slot,
    },
    /// The browser went away or the connection broke.
    Failed(String),
}

/// One receive-only media line of the browser: the `index`-th of its track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub track: Track,
    pub index: usize,
}

pub struct Seat {
    core: Core,
    /// Media lines the browser sends on.
    published: Vec<Mid>,
    /// Media lines it only receives on, in the order of its offer.
    slots: Vec<(Mid, Track)>,
    events: VecDeque<SeatEvent>,
    meter: Meter,
    /// Until when the browser may take to connect; `None` once it did.
    connect_by: Option<Instant>,
    /// What the path to the browser carries, and so which encoding of
    /// each tile's picture it is sent (by video slot index).
    gate: Gate,
    pictures: Vec<Selector>,
    /// The encodings of each video line the browser publishes, when it
    /// sends several (simulcast).
    encodings: HashMap<Mid, Encodings>,
}

impl Seat {
    /// Answers a browser's offer (which carries its candidates: WHIP and
    /// WHEP clients gather before they post).
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
        let answer = (rtc.sdp_api())
            .accept_offer(offer)
            .map_err(|e| LinkError::Description(e.to_string()))?;
        let mut seat = Self {
            core: Core::new(now, rtc),
            published: Vec::new(),
            slots: Vec::new(),
            events: VecDeque::new(),
            meter: Meter::new(local.relayed.map(|r| r.addr)),
            connect_by: Some(now + CONNECT_WAIT),
            gate: Gate::default(),
            pictures: Vec::new(),
            encodings: HashMap::new(),
        };
        let answer = answer.to_sdp_string();
        // str0m names the media lines in events only once the connection
        // runs; the answer names them now.
        let mids = (answer.lines())
            .filter_map(|line| line.trim().strip_prefix("a=mid:"))
            .map(Mid::from);
        for mid in mids {
            let Some(media) = seat.core.rtc.media(mid) else {
                continue; // the data channel's line
            };
            if media.direction().is_receiving() {
                seat.published.push(mid);
            }
            if media.direction().is_sending() {
                let track = Track::of(media.kind());
                seat.slots.push((mid, track));
                if track == Track::Video {
                    seat.pictures.push(Selector::default());
                }
            }
        }
        seat.meter.remote_description(sdp);
        seat.drain();
        if seat.published.is_empty() && seat.slots.is_empty() {
            return Err(LinkError::Description(
                "the offer has no audio or video to send or receive".into(),
            ));
        }
        Ok((seat, answer))
    }

    /// How many slots of `track` the browser shows.
    pub fn slots(&self, track: Track) -> usize {
        self.slots.iter().filter(|(_, t)| *t == track).count()
    }

    /// Whether the browser publishes anything.
    pub fn publishes(&self) -> bool {
        !self.published.is_empty()
    }

    pub fn accepts(&self, incoming: &Incoming) -> bool {
        self.core.failed.is_none() && connection::accepts(&self.core.rtc, incoming)
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
        if self.connect_by.is_some_and(|by| now >= by) {
            return self.fail("the browser did not connect in time".into());
        }
        if let Err(e) = self.core.handle_timeout(now) {
            self.fail(e.to_string());
        }
        self.drain();
    }

    /// Shows `frame` in `slot` if it is the encoding the path carries; a
    /// slot the browser does not have, or a connection not up yet, drops
    /// it as the network would.
    pub fn show(&mut self, slot: Slot, frame: &Frame) -> Result<Forwarded, LinkError> {
        self.core.usable()?;
        if !self.core.rtc.is_connected() {
            return Err(LinkError::NotReady("not connected"));
        }
        let mid = (self.slots.iter())
            .filter(|(_, t)| *t == slot.track)
            .nth(slot.index)
            .map(|(mid, _)| *mid)
            .ok_or(LinkError::NotReady("no such slot"))?;
        let pick = match (slot.track, self.pictures.get_mut(slot.index)) {
            (Track::Video, Some(tile)) => tile.handle(self.gate.quality(), frame),
            _ => Pick::Send(frame.time),
        };
        let time = match pick {
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

    /// Asks the browser for a keyframe of the video it publishes: of one
    /// encoding, or of every one (`None`).
    pub fn request_keyframe(&mut self, layer: Option<Layer>) {
        if self.core.failed.is_some() || !self.core.rtc.is_connected() {
            return;
        }
        for &mid in &self.published {
            let video = self.core.rtc.media(mid).map(|m| m.kind());
            if video != Some(str0m::media::MediaKind::Video) {
                continue;
            }
            let rids: Vec<Option<str0m::media::Rid>> = match self.encodings.get(&mid) {
                None => vec![None],
                Some(e) => match layer.and_then(|l| e.rid(l)) {
                    Some(rid) => vec![Some(rid)],
                    None => e.rids().map(Some).collect(),
                },
            };
            if let Some(mut writer) = self.core.rtc.writer(mid) {
                for rid in rids {
                    // No packet of it yet: nothing to ask for.
                    let _ = writer.request_keyframe(rid, KeyframeRequestKind::Pli);
                }
            }
        }
        self.drain();
    }

    /// Writes a message on the browser's data channel; `Ok(false)` when
    /// its buffer is full.
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<bool, LinkError> {
        let written = self.core.send_data(bytes)?;
        self.drain();
        Ok(written)
    }

    pub fn is_connected(&self) -> bool {
        self.core.failed.is_none() && self.core.rtc.is_connected()
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            quality: self.gate.quality(),
            ..self.meter.stats
        }
    }

    /// The estimated capacity of the path to the browser (bit/s; the seat
    /// feeds str0m's estimates in itself): below
    /// [`REDUCED_BELOW`](crate::REDUCED_BELOW) each tile shows its
    /// publisher's smallest encoding, below
    /// [`AUDIO_ONLY_BELOW`](crate::AUDIO_ONLY_BELOW) no video, only voices;
    /// once video resumes, every tile asks for a keyframe.
    pub fn handle_estimate(&mut self, bps: u64) {
        if self.gate.handle_estimate(bps) {
            for index in 0..self.slots(Track::Video) {
                let slot = Slot {
                    track: Track::Video,
                    index,
                };
                self.events.push_back(SeatEvent::KeyframeWanted { slot });
            }
        }
    }

    /// The clinician left (DELETE of the WHIP resource) or the session ended.
    pub fn close(&mut self) {
        self.connect_by = None;
        self.core.stop("closed".into());
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.core.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SeatEvent> {
        self.events.pop_front()
    }

    /// `None` once the seat is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.core.timeout, self.connect_by) {
            (Some(t), Some(by)) => Some(t.min(by)),
            (t, _) => t,
        }
    }

    fn fail(&mut self, reason: String) {
        self.connect_by = None;
        if self.core.stop(reason.clone()) {
            self.events.push_back(SeatEvent::Failed(reason));
        }
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
                self.connect_by = None;
                self.events.push_back(SeatEvent::Connected);
            }
            Event::ChannelOpen(id, _) => {
                self.core.channel = Some(id);
                self.events.push_back(SeatEvent::ChannelOpen);
            }
            Event::ChannelData(d) => self.events.push_back(SeatEvent::Data(d.data)),
            Event::MediaData(m) => {
                let mut frame = Frame::received(&m);
                if frame.track == Track::Video {
                    self.meter.video_frame_received();
                    if m.rid.is_some() {
                        let encodings = self.encodings.entry(m.mid).or_default();
                        frame.layer = encodings.layer(m.rid, m.data.len(), m.network_time);
                    }
                }
                self.events.push_back(SeatEvent::Media(frame));
            }
            Event::KeyframeRequest(r) => {
                let found = (self.slots.iter())
                    .filter(|(_, t)| *t == Track::Video)
                    .position(|(mid, _)| *mid == r.mid);
                if let Some(index) = found {
                    let slot = Slot {
                        track: Track::Video,
                        index,
                    };
                    self.events.push_back(SeatEvent::KeyframeWanted { slot });
                }
            }
            Event::PeerStats(stats) => self.meter.handle_stats(&stats),
            Event::EgressBitrateEstimate(kind) => {
                if let Some(bps) = connection::estimate(&kind) {
                    self.handle_estimate(bps);
                }
            }
            Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                self.fail("the browser stopped answering".into());
            }
            _ => {}
        }
    }
}
