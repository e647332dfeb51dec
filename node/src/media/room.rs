//! The forwarding unit: what this site's clinicians publish goes to the
//! other sites' links, what the other sites send goes to this site's
//! browsers, and browsers at the same site see each other; no frame is
//! decoded on the way. Chat and shared files ride the data channels, each
//! message stamped here with who sent it: a browser cannot speak as anyone
//! but its token's user, another site as anyone but its organization.
//!
//! A link carries each of the site's publishing clinicians on a slot of
//! its own (a voice and a picture), up to [`PER_SITE`] of them, in the
//! order they joined; one who leaves frees the slot for the next waiting.
//! Each site tells the others who its slots carry, so a tile is labelled
//! with the person, not only the site. A link starts with one slot; the
//! site that offered it grows it when either site has more publishers
//! (the other site's count is what it told).

use super::Links;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::video::SessionId;
use konsilium_video::{Forwarded, Frame, Layer, PER_SITE, Quality, Seat, Slot, Track};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// A browser's connection, named in its WHIP/WHEP resource URL: random,
/// so one participant's URL says nothing about another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeatId(pub [u8; 16]);

impl SeatId {
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut id = [0; 16];
        getrandom::fill(&mut id)?;
        Ok(Self(id))
    }
}

impl std::fmt::Display for SeatId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for SeatId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut id = [0; 16];
        hex::decode_to_slice(s, &mut id)?;
        Ok(Self(id))
    }
}

/// Who sits in a seat, as every participant sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub person: String,
    #[serde(with = "role_text")]
    pub role: Role,
    /// The organization's name.
    pub org: String,
}

impl Person {
    fn label(&self) -> String {
        format!("{} ({}), {}", self.person, self.role.as_str(), self.org)
    }
}

/// A role as people read it ("physician"), as the rest of the API spells it.
mod role_text {
    use konsilium_protocol::journal::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

pub(super) struct HeldSeat {
    pub(super) session: SessionId,
    pub(super) who: Person,
    pub(super) seat: Seat,
    pub(super) joined: Instant,
    /// What each slot index shows (audio and video of one index together).
    tiles: Vec<Source>,
}

impl HeldSeat {
    /// Not over: a seat over (left, or failed) stays until the plane's
    /// task has sent its last datagrams and dropped it, and counts for
    /// nothing meanwhile.
    pub(super) fn is_live(&self) -> bool {
        self.seat.poll_timeout().is_some()
    }

    pub(super) fn new(session: SessionId, who: Person, seat: Seat, joined: Instant) -> Self {
        Self {
            session,
            who,
            seat,
            joined,
            tiles: Vec::new(),
        }
    }
}

pub(super) type Seats = HashMap<SeatId, HeldSeat>;

/// Where a frame or message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// Another site's participant, on a slot of its link.
    Site(OrgId, usize),
    Seat(SeatId),
}

/// What travels on the data channels, to browsers and between sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum RoomMessage {
    /// A chat line; `from` is set by the node, whatever the browser said.
    Chat {
        #[serde(default)]
        from: Option<Person>,
        text: String,
    },
    /// A shared file (an image, an ECG), base64, small enough for one
    /// data channel message.
    File {
        #[serde(default)]
        from: Option<Person>,
        name: String,
        mime: String,
        data: String,
    },
    /// Who is in the room at one site (sent whenever it changes).
    Roster { site: String, people: Vec<Person> },
    /// Who each of the browser's slots shows, by slot index.
    Tiles { tiles: Vec<String> },
    /// Site to site: who each slot of the link carries (the organization
    /// is the sender's, whatever it says).
    Slots { people: Vec<Option<Person>> },
    /// Site to site: the most this site's browsers can take ("full",
    /// "reduced", "audio only"): one on a thin path cannot be sent a
    /// smaller encoding by this node, which receives only the one the
    /// other site chose, so the other site sends that.
    Takes { quality: String },
}

/// How often the room looks whether its browsers' paths changed what the
/// other sites should send it: estimates move over hundreds of
/// milliseconds, and a simulcast switch waits for a keyframe anyway.
const TELL_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The largest message a browser may put on the data channel; what is
/// larger is dropped (the page keeps files under it).
pub(super) const MAX_MESSAGE: usize = 256 * 1024;

/// The room's state beyond the connections: the other sites' names and
/// rosters as they told them.
#[derive(Default)]
pub(super) struct Room {
    pub(super) names: HashMap<OrgId, String>,
    rosters: HashMap<(SessionId, OrgId), Vec<Person>>,
    /// Who each slot of another site's link carries, as it told.
    their_slots: HashMap<(SessionId, OrgId), Vec<Option<Person>>>,
    /// Which of this site's browsers each slot of the session's links
    /// carries.
    carried: HashMap<SessionId, [Option<SeatId>; PER_SITE]>,
    /// Sessions where a link this site offered may carry fewer slots than
    /// a site has publishers: looked at until every such link has grown.
    growing: HashSet<SessionId>,
    /// What the other sites were last told this site's browsers take,
    /// and when it is next looked at.
    told: HashMap<SessionId, Quality>,
    next_tell: Option<Instant>,
    /// Our organization's name, for our own roster.
    me: String,
}

impl Room {
    pub(super) fn new(me: String) -> Self {
        Self {
            me,
            ..Self::default()
        }
    }

    fn site_name(&self, org: OrgId) -> String {
        (self.names.get(&org).cloned()).unwrap_or_else(|| org.to_string())
    }

    /// Who a tile shows: the person, or for another site's slot whom
    /// that site said it carries, or else the site's name.
    fn label(&self, session: SessionId, source: Source, seats: &Seats) -> String {
        match source {
            Source::Seat(id) => seats.get(&id).map_or("someone".into(), |s| s.who.label()),
            Source::Site(org, slot) => {
                let told = (self.their_slots.get(&(session, org)))
                    .and_then(|people| people.get(slot))
                    .and_then(Option::as_ref);
                match told {
                    Some(person) => person.label(),
                    None => self.site_name(org),
                }
            }
        }
    }

    /// The link slot that carries `seat`, if one does.
    fn slot_of(&self, session: SessionId, seat: SeatId) -> Option<usize> {
        let carried = self.carried.get(&session)?;
        carried.iter().position(|s| *s == Some(seat))
    }

    /// Gives free link slots to this site's publishing browsers that have
    /// none, oldest first; each slot taken starts anew on every link.
    /// True when any changed hands.
    fn fill_slots(&mut self, links: &mut Links, seats: &Seats, session: SessionId) -> bool {
        let mut waiting: Vec<_> = (seats.iter())
            .filter(|(_, s)| s.session == session && s.seat.publishes() && s.seat.is_connected())
            .map(|(&id, s)| (s.joined, id))
            .collect();
        waiting.sort();
        let carried = self.carried.entry(session).or_default();
        let mut changed = false;
        for (_, id) in waiting {
            if carried.contains(&Some(id)) {
                continue;
            }
            let Some(free) = carried.iter().position(Option::is_none) else {
                break;
            };
            carried[free] = Some(id);
            changed = true;
            self.growing.insert(session);
            for ((s, _), held) in links.iter_mut() {
                if *s == session {
                    held.link.new_source(free);
                }
            }
        }
        changed
    }

    /// A browser here connected: if it publishes, it takes a free slot
    /// on the links, and the other sites learn who the slot carries.
    pub(super) fn seat_connected(&mut self, links: &mut Links, seats: &mut Seats, seat: SeatId) {
        let Some(session) = seats.get(&seat).map(|s| s.session) else {
            return;
        };
        if self.fill_slots(links, seats, session) {
            self.announce(links, seats, session);
        }
    }

    /// The session ended here: what the room knew of it goes.
    pub(super) fn end(&mut self, session: SessionId) {
        self.carried.remove(&session);
        self.growing.remove(&session);
        self.told.remove(&session);
        self.rosters.retain(|(s, _), _| *s != session);
        self.their_slots.retain(|(s, _), _| *s != session);
    }

    /// A frame from `source` to everyone in the session who should see it.
    pub(super) fn forward(
        &self,
        links: &mut Links,
        seats: &mut Seats,
        session: SessionId,
        source: Source,
        frame: &Frame,
    ) {
        // Encodings of the source's picture some connection switches to.
        let mut wanted: Vec<Layer> = Vec::new();
        let mut note = |sent: Result<Forwarded, _>| {
            if let Ok(Forwarded::NeedsKeyframe(layer)) = sent
                && !wanted.contains(&layer)
            {
                wanted.push(layer);
            }
        };
        if let Source::Seat(id) = source
            && let Some(slot) = self.slot_of(session, id)
        {
            for ((s, _), held) in links.iter_mut() {
                if *s == session && held.link.is_connected() {
                    note(held.link.forward(slot, frame));
                }
            }
        }
        let mut retitled = Vec::new();
        for (&id, held) in seats.iter_mut() {
            if held.session != session || Source::Seat(id) == source {
                continue;
            }
            let index = match held.tiles.iter().position(|t| *t == source) {
                Some(index) => index,
                None => {
                    let room = held
                        .seat
                        .slots(Track::Video)
                        .max(held.seat.slots(Track::Audio));
                    if held.tiles.len() >= room {
                        continue;
                    }
                    held.tiles.push(source);
                    retitled.push(id);
                    held.tiles.len() - 1
                }
            };
            let slot = Slot {
                track: frame.track,
                index,
            };
            if index < held.seat.slots(frame.track) {
                note(held.seat.show(slot, frame));
            }
        }
        for layer in wanted {
            self.keyframe_from(links, seats, session, source, Some(layer));
        }
        for id in retitled {
            // A new tile starts with a keyframe, and its browser learns who it shows.
            self.keyframe_from(links, seats, session, source, None);
            self.send_tiles(seats, id);
        }
    }

    /// Someone needs a keyframe of what `source` sends: of one of its
    /// encodings, or of all (`None`). Another site sends one encoding.
    pub(super) fn keyframe_from(
        &self,
        links: &mut Links,
        seats: &mut Seats,
        session: SessionId,
        source: Source,
        layer: Option<Layer>,
    ) {
        match source {
            Source::Seat(id) => {
                if let Some(held) = seats.get_mut(&id) {
                    held.seat.request_keyframe(layer);
                }
            }
            Source::Site(org, slot) => {
                if let Some(held) = links.get_mut(&(session, org)) {
                    let _ = held.link.request_keyframe(slot);
                }
            }
        }
    }

    /// The browser in `seat` asked for a keyframe of a slot.
    pub(super) fn keyframe_for(
        &self,
        links: &mut Links,
        seats: &mut Seats,
        seat: SeatId,
        slot: Slot,
    ) {
        let Some(held) = seats.get(&seat) else { return };
        let (session, source) = (held.session, held.tiles.get(slot.index).copied());
        if let Some(source) = source {
            self.keyframe_from(links, seats, session, source, None);
        }
    }

    /// The other site asked for a keyframe of what this site sends on
    /// `slot`.
    pub(super) fn keyframe_for_site(&self, seats: &mut Seats, session: SessionId, slot: usize) {
        let carried = self
            .carried
            .get(&session)
            .and_then(|c| c.get(slot).copied());
        if let Some(Some(id)) = carried
            && let Some(held) = seats.get_mut(&id)
        {
            held.seat.request_keyframe(None);
        }
    }

    /// A data channel message from a browser: stamped with its user and
    /// passed to everyone else in the session.
    pub(super) fn said_by_seat(
        &self,
        links: &mut Links,
        seats: &mut Seats,
        seat: SeatId,
        bytes: &[u8],
    ) -> Result<(), String> {
        let Some(held) = seats.get(&seat) else {
            return Ok(());
        };
        let (session, who) = (held.session, held.who.clone());
        if bytes.len() > MAX_MESSAGE {
            return Err(format!(
                "a message of {} bytes is over the limit",
                bytes.len()
            ));
        }
        let message = match serde_json::from_slice::<RoomMessage>(bytes) {
            Ok(RoomMessage::Chat { text, .. }) => RoomMessage::Chat {
                from: Some(who),
                text,
            },
            Ok(RoomMessage::File {
                name, mime, data, ..
            }) => RoomMessage::File {
                from: Some(who),
                name,
                mime,
                data,
            },
            Ok(_) => return Err("a browser may send chat and files only".into()),
            Err(e) => return Err(format!("not a room message: {e}")),
        };
        let bytes = encode(&message);
        for ((s, org), held) in links.iter_mut() {
            if *s == session {
                undelivered(held.link.send_data(&bytes), || format!("site {org}"));
            }
        }
        for (&id, held) in seats.iter_mut() {
            if held.session == session && id != seat {
                undelivered(held.seat.send_data(&bytes), || format!("browser {id}"));
            }
        }
        Ok(())
    }

    /// Tells the other sites, when it changed, the most this site's
    /// browsers in each session can take: the thinnest of their paths.
    /// Looked at every [`TELL_EVERY`], not every round of datagrams.
    pub(super) fn tell_quality(&mut self, now: Instant, links: &mut Links, seats: &Seats) {
        if self.next_tell.is_some_and(|at| now < at) {
            return;
        }
        self.next_tell = Some(now + TELL_EVERY);
        let mut thinnest: HashMap<SessionId, Quality> = HashMap::new();
        // Only browsers shown video count: a WHIP publisher's path back
        // carries nothing to estimate by.
        let viewing = |s: &&HeldSeat| s.seat.is_connected() && s.seat.slots(Track::Video) > 0;
        for held in seats.values().filter(viewing) {
            let q = thinnest.entry(held.session).or_default();
            *q = (*q).max(held.seat.stats().quality);
        }
        for session in self.told.keys().copied().collect::<Vec<_>>() {
            thinnest.entry(session).or_default();
        }
        for (session, quality) in thinnest {
            if self.told.get(&session).copied().unwrap_or_default() == quality {
                continue;
            }
            self.told.insert(session, quality);
            let bytes = takes(quality);
            for ((s, _), held) in links.iter_mut() {
                if *s == session {
                    let _ = held.link.send_data(&bytes);
                }
            }
        }
    }

    /// A data channel message from another site: names checked against
    /// who sent it, then to this site's browsers.
    pub(super) fn said_by_site(
        &mut self,
        links: &mut Links,
        seats: &mut Seats,
        session: SessionId,
        org: OrgId,
        bytes: &[u8],
    ) {
        let site = self.site_name(org);
        let message = match serde_json::from_slice::<RoomMessage>(bytes) {
            Ok(RoomMessage::Takes { quality }) => {
                let quality = Quality::ALL.into_iter().find(|q| q.as_str() == quality);
                if let (Some(quality), Some(held)) = (quality, links.get_mut(&(session, org))) {
                    held.link.handle_asked(quality);
                }
                return;
            }
            Ok(RoomMessage::Roster { people, .. }) => {
                let people: Vec<_> = (people.into_iter())
                    .map(|p| Person {
                        org: site.clone(),
                        ..p
                    })
                    .collect();
                self.rosters.insert((session, org), people.clone());
                RoomMessage::Roster { site, people }
            }
            Ok(RoomMessage::Slots { people }) => {
                let people = (people.into_iter().take(PER_SITE))
                    .map(|p| {
                        p.map(|p| Person {
                            org: site.clone(),
                            ..p
                        })
                    })
                    .collect();
                self.their_slots.insert((session, org), people);
                self.growing.insert(session);
                // The browsers showing that site's slots learn who they show.
                let showing: Vec<SeatId> = (seats.iter())
                    .filter(|(_, s)| s.session == session)
                    .filter(|(_, s)| {
                        s.tiles
                            .iter()
                            .any(|t| matches!(t, Source::Site(o, _) if *o == org))
                    })
                    .map(|(&id, _)| id)
                    .collect();
                for id in showing {
                    self.send_tiles(seats, id);
                }
                return;
            }
            Ok(RoomMessage::Chat { from, text }) => RoomMessage::Chat {
                from: from.map(|p| Person { org: site, ..p }),
                text,
            },
            Ok(RoomMessage::File {
                from,
                name,
                mime,
                data,
            }) => RoomMessage::File {
                from: from.map(|p| Person { org: site, ..p }),
                name,
                mime,
                data,
            },
            // Not ours to show (a test's, a probe's bytes, a browser-only message).
            _ => return,
        };
        let bytes = encode(&message);
        for (id, held) in seats.iter_mut() {
            if held.session == session {
                undelivered(held.seat.send_data(&bytes), || format!("browser {id}"));
            }
        }
    }

    /// Who is here, to this site's browsers and the other sites; and to
    /// a browser that just connected, everyone else's rosters too.
    pub(super) fn announce(&self, links: &mut Links, seats: &mut Seats, session: SessionId) {
        let mut people: Vec<_> = (seats.values())
            .filter(|s| s.session == session && s.seat.is_connected())
            .map(|s| (s.joined, s.who.clone()))
            .collect();
        people.sort_by_key(|(joined, _)| *joined);
        let ours = RoomMessage::Roster {
            site: self.me.clone(),
            people: people.into_iter().map(|(_, p)| p).collect(),
        };
        let ours = encode(&ours);
        let carried = self.carried.get(&session).copied().unwrap_or_default();
        let slots = encode(&RoomMessage::Slots {
            people: (carried.iter())
                .map(|s| s.and_then(|id| seats.get(&id)).map(|s| s.who.clone()))
                .collect(),
        });
        let takes = takes(self.told.get(&session).copied().unwrap_or_default());
        for ((s, _), held) in links.iter_mut() {
            if *s == session {
                for bytes in [&ours, &slots, &takes] {
                    let _ = held.link.send_data(bytes);
                }
            }
        }
        let theirs: Vec<_> = (self.rosters.iter())
            .filter(|((s, _), _)| *s == session)
            .map(|(&(_, org), people)| {
                encode(&RoomMessage::Roster {
                    site: self.site_name(org),
                    people: people.clone(),
                })
            })
            .collect();
        let mut here = Vec::new();
        for (&id, held) in seats.iter_mut().filter(|(_, s)| s.session == session) {
            for bytes in std::iter::once(&ours).chain(&theirs) {
                let _ = held.seat.send_data(bytes);
            }
            here.push(id);
        }
        // And whom their tiles show, which a browser whose channel opened
        // after its first tiles has not heard yet.
        for id in here {
            self.send_tiles(seats, id);
        }
    }

    /// Another site's link is up: that site hears who is here, and the
    /// link, begun with one slot, grows to those already wanted.
    pub(super) fn site_joined(&mut self, links: &mut Links, seats: &mut Seats, session: SessionId) {
        self.growing.insert(session);
        self.announce(links, seats, session);
    }

    /// A site's link ended: its people are gone from the room.
    pub(super) fn site_left(&mut self, seats: &mut Seats, session: SessionId, org: OrgId) {
        self.their_slots.remove(&(session, org));
        for held in seats.values_mut().filter(|s| s.session == session) {
            held.tiles
                .retain(|t| !matches!(t, Source::Site(o, _) if *o == org));
        }
        if self.rosters.remove(&(session, org)).is_none() {
            return;
        }
        let bytes = encode(&RoomMessage::Roster {
            site: self.site_name(org),
            people: Vec::new(),
        });
        for held in seats.values_mut().filter(|s| s.session == session) {
            let _ = held.seat.send_data(&bytes);
        }
    }

    /// A browser left: its tiles elsewhere are freed, and its link slot
    /// goes to the next publisher waiting for one. The caller announces.
    pub(super) fn seat_left(&mut self, links: &mut Links, seats: &mut Seats, seat: SeatId) {
        for held in seats.values_mut() {
            held.tiles.retain(|t| *t != Source::Seat(seat));
        }
        let Some(session) = seats.get(&seat).map(|s| s.session) else {
            return;
        };
        if let Some(slot) = (self.carried.get_mut(&session))
            .and_then(|carried| carried.iter_mut().find(|s| **s == Some(seat)))
        {
            *slot = None;
            self.fill_slots(links, seats, session);
        }
    }

    /// The slots a link to `org` in the session must carry: up to the last
    /// one taken, here or (as it told) there.
    fn slots_wanted(&self, session: SessionId, org: OrgId) -> usize {
        let ours = (self.carried.get(&session))
            .and_then(|carried| carried.iter().rposition(Option::is_some));
        let theirs = (self.their_slots.get(&(session, org)))
            .and_then(|people| people.iter().rposition(Option::is_some));
        [ours, theirs]
            .into_iter()
            .flatten()
            .map(|last| last + 1)
            .max()
            .unwrap_or(0)
    }

    /// Grows the links this site offered that carry fewer slots than are
    /// wanted; returns the offers that do so, for the event loop to sign
    /// and send. A link not ready to grow (still connecting, an offer out)
    /// is looked at again next time.
    pub(super) fn grow(
        &mut self,
        links: &mut Links,
        now: Instant,
    ) -> Vec<(SessionId, OrgId, String)> {
        let mut offers = Vec::new();
        if self.growing.is_empty() {
            return offers;
        }
        let mut short = HashSet::new();
        for (&(session, org), held) in links.iter_mut() {
            if !self.growing.contains(&session) || held.own.is_none() {
                continue;
            }
            let wanted = self.slots_wanted(session, org).min(PER_SITE);
            if held.link.slots() >= wanted {
                continue;
            }
            match held.link.grow(now, wanted) {
                Ok(Some(offer)) => offers.push((session, org, offer)),
                Ok(None) => {
                    short.insert(session);
                }
                // The slots it has go on carrying.
                Err(e) => tracing::warn!(%org, "video: the link did not grow: {e}"),
            }
        }
        self.growing = short;
        offers
    }

    fn send_tiles(&self, seats: &mut Seats, id: SeatId) {
        let Some(held) = seats.get(&id) else { return };
        let tiles = (held.tiles.iter())
            .map(|t| self.label(held.session, *t, seats))
            .collect();
        let bytes = encode(&RoomMessage::Tiles { tiles });
        if let Some(held) = seats.get_mut(&id) {
            let _ = held.seat.send_data(&bytes);
        }
    }
}

fn takes(quality: Quality) -> Vec<u8> {
    encode(&RoomMessage::Takes {
        quality: quality.as_str().to_owned(),
    })
}

fn encode(message: &RoomMessage) -> Vec<u8> {
    serde_json::to_vec(message).unwrap_or_default()
}

/// A chat message or shared file that a connection's channel could not
/// take (its buffer and queue full, or the channel gone), said in the log
/// instead of dropped without a word.
fn undelivered(written: Result<bool, konsilium_video::LinkError>, to: impl Fn() -> String) {
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            "room message not passed on to {}: its channel is full",
            to()
        ),
        Err(e) => tracing::warn!("room message not passed on to {}: {e}", to()),
    }
}
