//! The node's media plane: one configured UDP port where this site answers
//! other sites' offers, driven on a task of its own so media never waits
//! for the event loop.
//!
//! Two sites' nodes each have one port, so two sessions between the same
//! pair of sites would share one address pair, and DTLS and RTP carry
//! nothing that says which session a datagram is for. A link this site
//! offers therefore gets a socket of its own (an ephemeral port on the
//! same interface): every link has an address pair no other link has.
//!
//! Links are created from the event loop (offers and answers are decided
//! there, with the consultation at hand) and run here: the task feeds them
//! datagrams and timeouts and sends what they emit. Both sides share the
//! links behind a mutex held only for a link's own, short, work. An offer
//! is written off the loop, once its socket is bound and a STUN server had
//! a moment to say what the socket maps to; it comes back as an event.
//! With no STUN or TURN server there is nothing to wait for: it is written
//! at once on a socket bound ahead. Every socket the plane reads (its port,
//! offered links', relays') is bound and read on the plane's thread.
//!
//! With STUN servers configured, the plane's port learns what address its
//! NAT maps it to and every link offers that address beside its own. With
//! TURN servers configured, the plane holds a relay for the links it
//! answers and every offered link allocates one of its own, so a link's
//! relayed address, like its port, is no other link's.

mod demux;
mod outbound;
mod relay;
mod room;
mod socket;
mod stock;
mod task;
mod thread;

pub use room::{Person, SeatId};

use crate::config::{TurnServer, VideoConfig};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::video::SessionId;
use konsilium_video::stun::BindingRequest;
use konsilium_video::{
    Datagram, Link, LinkError, LinkEvent, LinkState, LinkStats, LocalAddrs, Relayed, Seat,
};
use relay::Relay;
use room::{HeldSeat, Room, Seats};
use socket::OwnSocket;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

/// Datagrams read from offered links' sockets, waiting for the task; more
/// are dropped, as the network would.
const INBOUND_QUEUE: usize = 1024;
/// The plane socket's receive buffer, in bytes.
const RECEIVE_BUFFER: usize = 4 << 20;
/// Browsers in sessions here at once: each holds a WebRTC connection, and
/// one user's forgotten tabs must not be able to take the node's memory.
pub const MAX_SEATS: usize = 64;
/// Browsers one user has in sessions here at once (a camera, a screen, a
/// second device), so one user cannot take every seat of the node.
pub const MAX_SEATS_PER_USER: usize = 4;

/// A link and where it sends from.
struct Held {
    link: Link,
    /// The addresses it offered or answered with.
    local: LocalAddrs,
    /// The link's own socket (links we offered); `None` for the plane's.
    own: Option<OwnSocket>,
    /// The relay it offered: its own (links we offered) or the plane's.
    relay: Option<Arc<Relay>>,
}

impl Held {
    /// Whether a datagram that arrived at `destination` (a socket's
    /// address or a relayed one) can be this link's.
    fn reached_at(&self, plane: SocketAddr, destination: SocketAddr) -> bool {
        self.own.as_ref().map_or(plane, |o| o.addr) == destination
            || self.relay.as_ref().is_some_and(|r| r.addr == destination)
    }
}

type Links = HashMap<(SessionId, OrgId), Held>;

/// What the event loop's side and the task share.
/// Locks are taken in the order links, seats, room.
struct Shared {
    links: Mutex<Links>,
    /// This site's clinicians' browsers.
    seats: Mutex<Seats>,
    room: Mutex<Room>,
    wake: Notify,
    /// Offers being written: a second one for the same link is refused.
    preparing: Mutex<HashSet<(SessionId, OrgId)>>,
    /// The plane's last Binding request, until answered.
    asked: Mutex<Option<BindingRequest>>,
    /// What the plane's port maps to, as a STUN server last said.
    reflexive: Mutex<Option<SocketAddr>>,
    /// The relay the links this site answers offer.
    relay: Mutex<Option<Arc<Relay>>>,
    /// Sessions whose frames from other sites are also told to the event
    /// loop: for an application that takes frames itself. The node needs
    /// none (it forwards them to its browsers), so by default each frame
    /// costs the event loop nothing.
    watched: Mutex<HashSet<SessionId>>,
    /// Connections built ahead for the next links and seats.
    stock: Arc<stock::Stock>,
    /// A socket bound ahead for the next offered link (no STUN servers).
    spare: Option<Arc<socket::Spare>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock would be str0m's; what it guards stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn links(&self) -> MutexGuard<'_, Links> {
        lock(&self.links)
    }

    fn seats(&self) -> MutexGuard<'_, Seats> {
        lock(&self.seats)
    }

    fn room(&self) -> MutexGuard<'_, Room> {
        lock(&self.room)
    }

    /// Writes the offer of a new link on `own` and holds the link, unless
    /// the other site's offer crossed ours and was answered meanwhile: that
    /// link stands, and ours is not sent.
    fn write_offer(
        &self,
        key: (SessionId, OrgId),
        (own, mapped): (OwnSocket, Option<SocketAddr>),
        relay: Option<Relay>,
        relay_only: bool,
    ) -> Result<String, MediaError> {
        let local = addrs(own.addr, mapped, relay.as_ref(), relay_only);
        let (link, offer) = Link::offer(Instant::now(), local, self.stock.take()?)?;
        let held = Held {
            link,
            local,
            own: Some(own),
            relay: relay.map(Arc::new),
        };
        let mut links = self.links();
        if links.contains_key(&key) {
            return Err(MediaError::Exists { org: key.1 });
        }
        links.insert(key, held);
        Ok(offer)
    }

    /// The offer asked for goes back to the event loop, and the task
    /// starts driving its link.
    fn offer_written(
        &self,
        (session, org): (SessionId, OrgId),
        offer: Result<String, MediaError>,
        events: &mpsc::UnboundedSender<MediaEvent>,
    ) {
        lock(&self.preparing).remove(&(session, org));
        self.wake.notify_one();
        let _ = events.send(MediaEvent::Offer {
            session,
            org,
            offer,
        });
    }

    fn ask(&self, request: BindingRequest) {
        *lock(&self.asked) = Some(request);
    }

    /// Whether `d` answers the plane's Binding request (then it is taken).
    fn took_stun_answer(&self, d: &Datagram) -> bool {
        let mut asked = lock(&self.asked);
        let Some(mapped) = asked.as_ref().and_then(|r| r.answered_by(&d.contents)) else {
            return false;
        };
        *asked = None;
        let mut reflexive = lock(&self.reflexive);
        if *reflexive != Some(mapped) {
            tracing::info!(%mapped, "video: the NAT maps this site's port to {mapped}");
            *reflexive = Some(mapped);
        }
        true
    }
}

/// The addresses a link offers: `host`, what it maps to when that differs
/// (no NAT between us and the STUN server: nothing to add), and a relay.
fn addrs(
    host: SocketAddr,
    mapped: Option<SocketAddr>,
    relay: Option<&Relay>,
    relay_only: bool,
) -> LocalAddrs {
    LocalAddrs {
        host,
        reflexive: mapped.filter(|m| *m != host),
        relayed: relay.map(|r| Relayed {
            addr: r.addr,
            base: r.base,
        }),
        relay_only,
    }
}

/// What the media plane tells the event loop.
#[derive(Debug)]
pub enum MediaEvent {
    /// What a link did.
    Link {
        session: SessionId,
        org: OrgId,
        event: LinkEvent,
    },
    /// The offer asked for with [`MediaPlane::offer`], ready to sign and
    /// send (or why there is none).
    Offer {
        session: SessionId,
        org: OrgId,
        offer: Result<String, MediaError>,
    },
    /// A clinician's browser connected (`left: None`) or is gone.
    Seat {
        session: SessionId,
        seat: SeatId,
        who: Person,
        left: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("video: {0}")]
    Link(#[from] LinkError),
    #[error("video: no link to {org} in this session")]
    NoLink { org: OrgId },
    #[error("video: a link to {org} in this session exists already")]
    Exists { org: OrgId },
    #[error("video: no participant {seat} in this session")]
    NoSeat { seat: SeatId },
    #[error("video: no randomness for a participant's id: {0}")]
    Random(String),
    #[error("video: {MAX_SEATS} browsers are in sessions here already")]
    Full,
    #[error("video: {person} has {MAX_SEATS_PER_USER} browsers in sessions here already")]
    FullForUser { person: String },
    #[error("video socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// One clinician's browser as `konsilium sessions` shows it.
#[derive(Debug, Clone)]
pub struct SeatView {
    pub session: SessionId,
    pub seat: SeatId,
    pub who: Person,
    pub connected: bool,
    pub stats: LinkStats,
}

/// One link as `konsilium sessions` shows it.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub session: SessionId,
    pub org: OrgId,
    pub state: LinkState,
    pub stats: LinkStats,
}

pub struct MediaPlane {
    shared: Arc<Shared>,
    local: SocketAddr,
    stun: Arc<Vec<String>>,
    turn: Arc<Vec<TurnServer>>,
    relay_only: bool,
    inbound: mpsc::Sender<Datagram>,
    events: mpsc::UnboundedSender<MediaEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    thread: thread::MediaThread,
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl MediaPlane {
    /// Binds the configured address (an interface's: a host candidate
    /// cannot be 0.0.0.0) and starts the task; asks the STUN servers what
    /// the port maps to and the TURN servers for a relay; link events go
    /// to `events`.
    pub async fn start(
        config: &VideoConfig,
        site_name: &str,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        let addr = config.listen;
        let failed = |source| MediaError::Socket { addr, source };
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let spare = (config.stun.is_empty())
            .then(|| Arc::new(socket::Spare::new(addr.ip(), inbound.clone())));
        let shared = Arc::new(Shared {
            links: Mutex::new(Links::new()),
            seats: Mutex::new(Seats::new()),
            room: Mutex::new(Room::new(site_name.to_owned())),
            wake: Notify::new(),
            preparing: Mutex::new(HashSet::new()),
            asked: Mutex::new(None),
            reflexive: Mutex::new(None),
            relay: Mutex::new(None),
            watched: Mutex::new(HashSet::new()),
            stock: Arc::new(stock::Stock::default()),
            spare,
        });
        shared.stock.refill();
        // Every browser and site sends to this one port: a burst larger than
        // the kernel's default buffer (about 200 KiB, 40 ms of 20 sessions)
        // would be dropped before the task reads it. The kernel caps the
        // size at net.core.rmem_max.
        let configure = move |socket: &UdpSocket| {
            if let Err(e) =
                rustix::net::sockopt::set_socket_recv_buffer_size(socket, RECEIVE_BUFFER)
            {
                tracing::warn!(%addr, "video socket: receive buffer left at the default: {e}");
            }
        };
        let run = {
            let (shared, events) = (shared.clone(), events.clone());
            move |plane: Arc<outbound::MediaSocket>, local: SocketAddr| async move {
                let sockets = task::Sockets {
                    plane,
                    local,
                    inbound: inbound_rx,
                };
                task::run(sockets, shared, events).await
            }
        };
        let (socket, local, thread) = thread::start(thread::name(), addr, configure, run)
            .await
            .map_err(failed)?;
        let mut tasks = Vec::new();
        let (stun, turn) = (config.stun.clone(), Arc::new(config.turn.clone()));
        if !stun.is_empty() {
            let refresh = socket::refresh(socket, stun.clone(), shared.clone());
            tasks.push(tokio::spawn(refresh));
        }
        if !turn.is_empty() {
            let keep = relay::keep(local.ip(), turn.clone(), shared.clone(), inbound.clone());
            tasks.push(thread.spawn(keep));
        }
        Ok(Self {
            shared,
            local,
            stun: Arc::new(stun),
            turn,
            relay_only: config.relay_only,
            inbound,
            events,
            tasks,
            thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What this site's port maps to, when a STUN server said.
    pub fn reflexive(&self) -> Option<SocketAddr> {
        *lock(&self.shared.reflexive)
    }

    /// The relayed address the links this site answers offer, and the
    /// TURN server that granted it.
    pub fn relay(&self) -> Option<(SocketAddr, String)> {
        (lock(&self.shared.relay).as_ref()).map(|r| (r.addr, r.server.clone()))
    }

    /// Every live link, by session and site (a closed one may wait a
    /// moment for the task to drop it).
    pub fn links(&self) -> Vec<LinkView> {
        let mut links: Vec<_> = (self.shared.links().iter())
            .filter(|(_, held)| held.link.poll_timeout().is_some())
            .map(|(&(session, org), held)| LinkView {
                session,
                org,
                state: held.link.state(),
                stats: held.link.stats(),
            })
            .collect();
        links.sort_by_key(|l| (l.session, l.org));
        links
    }

    /// Frames other sites send in the session come as
    /// [`MediaEvent::Link`] too, until the session is closed.
    pub fn watch(&self, session: SessionId) {
        lock(&self.shared.watched).insert(session);
    }

    /// Ends every link and seat of the session; returns the sites the
    /// links went to.
    pub fn close(&self, session: SessionId) -> Vec<OrgId> {
        lock(&self.shared.watched).remove(&session);
        let mut links = self.shared.links();
        let mut closed = Vec::new();
        for (&(s, org), held) in links.iter_mut() {
            if s == session {
                held.link.close();
                closed.push(org);
            }
        }
        for held in self.shared.seats().values_mut() {
            if held.session == session {
                held.seat.close();
            }
        }
        self.shared.room().end(session);
        drop(links);
        // The task drops them.
        self.shared.wake.notify_one();
        closed.sort();
        closed
    }

    /// Ends one link (its offer could not be sent).
    pub fn close_link(&self, session: SessionId, org: OrgId) {
        if let Some(held) = self.shared.links().get_mut(&(session, org)) {
            held.link.close();
        }
        self.shared.wake.notify_one();
    }

    /// Whether a link to `org` in the session exists or is being offered.
    pub fn is_linked(&self, session: SessionId, org: OrgId) -> bool {
        lock(&self.shared.preparing).contains(&(session, org))
            || self.shared.links().contains_key(&(session, org))
    }

    /// Whether `offer` from `org` restarts ICE on our link with it in the
    /// session (rather than sets up a new link).
    pub fn is_restart(&self, session: SessionId, org: OrgId, offer: &str) -> bool {
        (self.shared.links().get(&(session, org))).is_some_and(|h| h.link.is_restarted_by(offer))
    }

    /// Whether our offer to `org` in the session is being written or
    /// waits for its answer.
    pub fn is_offering(&self, session: SessionId, org: OrgId) -> bool {
        lock(&self.shared.preparing).contains(&(session, org))
            || (self.shared.links().get(&(session, org))).is_some_and(|h| h.link.is_offering())
    }

    /// Starts a new link to `org` on a socket of its own; its offer comes
    /// back as [`MediaEvent::Offer`]: at once when there is nothing to
    /// wait for (a socket bound ahead, no relay to ask for), else once its
    /// socket is bound, its mapping asked for and its relay granted.
    pub fn offer(&self, session: SessionId, org: OrgId) -> Result<(), MediaError> {
        let key = (session, org);
        if self.shared.links().contains_key(&key) || !lock(&self.shared.preparing).insert(key) {
            return Err(MediaError::Exists { org });
        }
        let spare = self.shared.spare.as_ref().and_then(|s| s.take());
        let spare = match spare {
            Some(own) if self.turn.is_empty() => {
                let offer = self
                    .shared
                    .write_offer(key, (own, None), None, self.relay_only);
                self.shared.offer_written(key, offer, &self.events);
                return Ok(());
            }
            spare => spare,
        };
        let (shared, stun, turn) = (self.shared.clone(), self.stun.clone(), self.turn.clone());
        let (inbound, events) = (self.inbound.clone(), self.events.clone());
        let (ip, relay_only) = (self.local.ip(), self.relay_only);
        self.thread.spawn(async move {
            let own = async {
                match spare {
                    Some(own) => Ok((own, None)),
                    None => socket::own_socket(ip, &stun, inbound.clone()).await,
                }
            };
            // No TURN servers: no relay, at once.
            let (own, relay) = tokio::join!(own, relay::allocate(ip, &turn, inbound.clone()));
            let offer = own.and_then(|own| shared.write_offer(key, own, relay, relay_only));
            shared.offer_written(key, offer, &events);
        });
        Ok(())
    }

    /// A new link to `org` from its offer, on the plane's port; returns our
    /// answer. An offer again from the same site restarts ICE on its link
    /// when it names the same DTLS certificate, and replaces the link when
    /// not (the site restarted).
    pub fn answer(
        &self,
        session: SessionId,
        org: OrgId,
        offer: &str,
    ) -> Result<String, MediaError> {
        let (local, relay) = self.answering_addrs();
        if let Some(held) = self.shared.links().get_mut(&(session, org))
            && held.link.is_restarted_by(offer)
        {
            // The plane's relay now, which may have replaced the one the
            // link began with.
            let answer = held.link.handle_restart(Instant::now(), offer, local)?;
            (held.local, held.relay) = (local, relay);
            self.shared.wake.notify_one();
            return Ok(answer);
        }
        let (link, answer) = Link::answer(Instant::now(), local, self.shared.stock.take()?, offer)?;
        let held = Held {
            link,
            local,
            own: None,
            relay,
        };
        self.shared.links().insert((session, org), held);
        self.shared.wake.notify_one();
        Ok(answer)
    }

    /// What a connection answered on the plane's port offers: the port,
    /// its mapping, the plane's relay.
    fn answering_addrs(&self) -> (LocalAddrs, Option<Arc<Relay>>) {
        let relay = lock(&self.shared.relay).clone();
        let local = addrs(
            self.local,
            self.reflexive(),
            relay.as_deref(),
            self.relay_only,
        );
        (local, relay)
    }

    /// Restarts ICE on a link this site offered (its path was lost). Where
    /// TURN servers are configured, a fresh relay is asked for first: the
    /// old one may be what was lost (its server restarted, the network
    /// under it changed). The offer comes back as [`MediaEvent::Offer`] and
    /// goes to the other site like the first. False for a link this site
    /// answered: the other site restarts it.
    pub fn restart(&self, session: SessionId, org: OrgId) -> Result<bool, MediaError> {
        let key = (session, org);
        match self.shared.links().get(&key) {
            None => return Err(MediaError::NoLink { org }),
            Some(held) if held.own.is_none() => return Ok(false),
            Some(_) => {}
        }
        let (shared, turn, inbound) =
            (self.shared.clone(), self.turn.clone(), self.inbound.clone());
        let (events, ip) = (self.events.clone(), self.local.ip());
        self.thread.spawn(async move {
            // No TURN servers: no relay, at once.
            let fresh = relay::allocate(ip, &turn, inbound).await.map(Arc::new);
            let offer = match shared.links().get_mut(&key) {
                None => Err(MediaError::NoLink { org }),
                Some(held) => {
                    // None granted: the old one may still work.
                    let relay = fresh.or_else(|| held.relay.clone());
                    let was = held.local;
                    let local = addrs(was.host, was.reflexive, relay.as_deref(), was.relay_only);
                    let offer = held.link.restart(Instant::now(), local);
                    if offer.is_ok() {
                        (held.local, held.relay) = (local, relay);
                    }
                    offer.map_err(MediaError::from)
                }
            };
            shared.wake.notify_one();
            let _ = events.send(MediaEvent::Offer {
                session,
                org,
                offer,
            });
        });
        Ok(true)
    }

    pub fn answered(&self, session: SessionId, org: OrgId, answer: &str) -> Result<(), MediaError> {
        self.with(session, org, |link| link.handle_answer(answer))
    }

    /// What another site is called, for the room's rosters and chat.
    pub fn name_site(&self, org: OrgId, name: String) {
        self.shared.room().names.insert(org, name);
    }

    /// A clinician's browser joins the session with its offer (WHIP or
    /// WHEP); returns the seat's id and our answer.
    pub fn join(
        &self,
        session: SessionId,
        who: Person,
        offer: &str,
    ) -> Result<(SeatId, String), MediaError> {
        let seat = SeatId::random().map_err(|e| MediaError::Random(e.to_string()))?;
        let (local, _) = self.answering_addrs();
        let now = Instant::now();
        let seats = self.shared.seats();
        if seats.len() >= MAX_SEATS {
            return Err(MediaError::Full);
        }
        // Browsers that left and have yet to be dropped are not counted:
        // a clinician leaving and coming back at once is not refused.
        let same_user =
            |h: &&HeldSeat| h.is_live() && h.who.person == who.person && h.who.role == who.role;
        if seats.values().filter(same_user).count() >= MAX_SEATS_PER_USER {
            return Err(MediaError::FullForUser { person: who.person });
        }
        drop(seats);
        let (held, answer) = Seat::answer(now, local, self.shared.stock.take()?, offer)?;
        (self.shared.seats()).insert(seat, HeldSeat::new(session, who, held, now));
        self.shared.wake.notify_one();
        Ok((seat, answer))
    }

    /// A clinician leaves (DELETE of the WHIP/WHEP resource); returns who.
    /// Only `by`, who joined with the seat, can take it out: any user of
    /// the API may learn a seat's id (the metrics name it), and must not
    /// be able to put another clinician out of the room with it.
    pub fn leave(
        &self,
        session: SessionId,
        seat: SeatId,
        (person, role): (String, konsilium_protocol::journal::Role),
    ) -> Result<Person, MediaError> {
        let mut links = self.shared.links();
        let mut seats = self.shared.seats();
        // A seat over is no seat to leave: leaving it twice would say so
        // twice in the journal.
        let held = (seats.get_mut(&seat))
            .filter(|h| h.session == session && h.who.person == person && h.who.role == role)
            .filter(|h| h.is_live())
            .ok_or(MediaError::NoSeat { seat })?;
        held.seat.close();
        let who = held.who.clone();
        let mut room = self.shared.room();
        room.seat_left(&mut links, &mut seats, seat);
        room.announce(&mut links, &mut seats, session);
        drop((room, seats, links));
        self.shared.wake.notify_one();
        Ok(who)
    }

    /// Every browser in a session here.
    pub fn seats(&self) -> Vec<SeatView> {
        let mut seats: Vec<_> = (self.shared.seats().iter())
            .filter(|(_, held)| held.is_live())
            .map(|(&seat, held)| SeatView {
                session: held.session,
                seat,
                who: held.who.clone(),
                connected: held.seat.is_connected(),
                stats: held.seat.stats(),
            })
            .collect();
        seats.sort_by_key(|s| (s.session, s.who.person.clone(), s.seat));
        seats
    }

    pub fn send_data(
        &self,
        session: SessionId,
        org: OrgId,
        bytes: &[u8],
    ) -> Result<bool, MediaError> {
        self.with(session, org, |link| link.send_data(bytes))
    }

    pub fn send_frame(
        &self,
        session: SessionId,
        org: OrgId,
        frame: &[u8],
    ) -> Result<(), MediaError> {
        self.with(session, org, |link| link.send_media(Instant::now(), frame))
    }

    fn with<T>(
        &self,
        session: SessionId,
        org: OrgId,
        f: impl FnOnce(&mut Link) -> Result<T, LinkError>,
    ) -> Result<T, MediaError> {
        let mut links = self.shared.links();
        let held = (links.get_mut(&(session, org))).ok_or(MediaError::NoLink { org })?;
        let out = f(&mut held.link)?;
        drop(links);
        self.shared.wake.notify_one();
        Ok(out)
    }
}
