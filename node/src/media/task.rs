//! The media plane's task: feeds every link and seat its datagrams and
//! timeouts, forwards media and messages between them (the room), sends
//! what they emit from the socket each uses, and tells the event loop what
//! happened. STUN answers to the plane's own Binding requests are taken
//! here before anything reaches a link.

use super::demux::Demux;
use super::outbound::MediaSocket;
use super::relay::Relay;
use super::room::{Room, SeatId, Seats, Source};
use super::{Links, MediaEvent, Shared};
use konsilium_protocol::video::SessionId;
use konsilium_video::stun::is_stun;
use konsilium_video::{Datagram, LinkEvent, SeatEvent};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// At most this many datagrams are handed in per round.
const BATCH: usize = 64;

/// The plane's socket, and what offered links' sockets read.
pub(super) struct Sockets {
    pub(super) plane: Arc<MediaSocket>,
    pub(super) local: SocketAddr,
    pub(super) inbound: mpsc::Receiver<Datagram>,
}

pub(super) async fn run(
    mut sockets: Sockets,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let local = sockets.local;
    let mut buf = vec![0u8; 2048];
    let mut demux = Demux::default();
    // Bound on this thread: its reactor owns every socket the plane reads.
    if let Some(spare) = &shared.spare {
        spare.refill();
    }
    loop {
        let next = {
            let links = shared
                .links()
                .values()
                .filter_map(|h| h.link.poll_timeout())
                .min();
            let seats = shared
                .seats()
                .values()
                .filter_map(|h| h.seat.poll_timeout())
                .min();
            links.into_iter().chain(seats).min()
        };
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut received = Vec::new();
        tokio::select! {
            r = sockets.plane.udp().recv_from(&mut buf) => match r {
                Ok((n, source)) => received.push(plane_datagram(&buf[..n], source, local)),
                Err(e) => tracing::debug!("video socket: {e}"),
            },
            Some(d) = sockets.inbound.recv() => received.push(d),
            _ = shared.wake.notified() => {}
            _ = due => {}
        }
        // What else has arrived is taken in the same round: polling every
        // connection once per datagram would cost each datagram the whole
        // plane.
        while received.len() < BATCH {
            match sockets.plane.udp().try_recv_from(&mut buf) {
                Ok((n, source)) => received.push(plane_datagram(&buf[..n], source, local)),
                Err(_) => break,
            }
        }
        while received.len() < BATCH
            && let Ok(d) = sockets.inbound.try_recv()
        {
            received.push(d);
        }
        received.retain(|d| {
            !(d.destination == local && is_stun(&d.contents) && shared.took_stun_answer(d))
        });
        let now = Instant::now();
        let out = step(
            &mut Plane {
                links: &mut shared.links(),
                seats: &mut shared.seats(),
                room: &mut shared.room(),
                watched: &super::lock(&shared.watched),
                stock: &shared.stock,
                spare: shared.spare.as_ref(),
                demux: &mut demux,
            },
            local,
            received,
            now,
            &events,
        );
        // Consecutive datagrams from one socket leave together, so a
        // frame's packets to one address go in one system call.
        let mut batch: Vec<Datagram> = Vec::new();
        let mut from: Option<Via> = None;
        for (via, d) in out {
            if from.as_ref().is_some_and(|f| !f.is(&via))
                && let Some(f) = from.take()
            {
                f.send(&sockets.plane, std::mem::take(&mut batch)).await;
            }
            from = Some(via);
            batch.push(d);
        }
        if let Some(f) = from {
            f.send(&sockets.plane, batch).await;
        }
    }
}

/// A datagram that arrived on the plane's own port.
fn plane_datagram(contents: &[u8], source: SocketAddr, local: SocketAddr) -> Datagram {
    Datagram {
        source,
        destination: local,
        contents: contents.to_vec(),
    }
}

/// Where a datagram a link emits leaves from.
enum Via {
    Plane,
    Own(Arc<MediaSocket>),
    Relay(Arc<Relay>),
}

impl Via {
    fn is(&self, other: &Via) -> bool {
        match (self, other) {
            (Via::Plane, Via::Plane) => true,
            (Via::Own(a), Via::Own(b)) => Arc::ptr_eq(a, b),
            (Via::Relay(a), Via::Relay(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    async fn send(self, plane: &MediaSocket, batch: Vec<Datagram>) {
        match self {
            Via::Plane => plane.send(&batch).await,
            Via::Own(socket) => socket.send(&batch).await,
            Via::Relay(relay) => {
                for d in batch {
                    relay.send(d);
                }
            }
        }
    }
}

type Outgoing = Vec<(Via, Datagram)>;

/// Everything the task drives, locked for one round.
struct Plane<'a> {
    links: &'a mut Links,
    seats: &'a mut Seats,
    room: &'a mut Room,
    watched: &'a HashSet<SessionId>,
    stock: &'a Arc<super::stock::Stock>,
    spare: Option<&'a Arc<super::socket::Spare>>,
    demux: &'a mut Demux,
}

/// What one round's connections said, to be acted on once every
/// connection has been polled.
enum Heard {
    Site(SessionId, konsilium_protocol::identity::OrgId, LinkEvent),
    Seat(SeatId, SeatEvent),
}

/// One round: the datagrams to their connections, due timeouts, what they
/// said forwarded or passed to the event loop; returns what to send and
/// from which socket.
fn step(
    plane: &mut Plane,
    local: SocketAddr,
    received: Vec<Datagram>,
    now: Instant,
    events: &mpsc::UnboundedSender<MediaEvent>,
) -> Outgoing {
    for d in received {
        (plane.demux).deliver(plane.links, plane.seats, local, &d, now);
    }
    let mut heard = Vec::new();
    let mut settled = false;
    for (&(session, org), held) in plane.links.iter_mut() {
        if held.link.poll_timeout().is_some_and(|at| at <= now) {
            held.link.handle_timeout(now);
        }
        while let Some(event) = held.link.poll_event() {
            settled |= matches!(event, LinkEvent::ChannelOpen | LinkEvent::Failed(_));
            heard.push(Heard::Site(session, org, event));
        }
    }
    for (&id, held) in plane.seats.iter_mut() {
        if held.seat.poll_timeout().is_some_and(|at| at <= now) {
            held.seat.handle_timeout(now);
        }
        while let Some(event) = held.seat.poll_event() {
            settled |= matches!(event, SeatEvent::ChannelOpen | SeatEvent::Failed(_));
            heard.push(Heard::Seat(id, event));
        }
    }
    for heard in heard {
        act(plane, heard, events);
    }
    plane.room.tell_quality(now, plane.links, plane.seats);
    for (session, org, offer) in plane.room.grow(plane.links, now) {
        let offer = Ok(offer);
        let _ = events.send(MediaEvent::Offer {
            session,
            org,
            offer,
        });
    }
    if settled {
        plane.stock.refill();
        if let Some(spare) = plane.spare {
            spare.refill();
        }
    }
    let mut out = Vec::new();
    for held in plane.links.values_mut() {
        while let Some(d) = held.link.poll_transmit() {
            let via = match (&held.relay, &held.own) {
                (Some(relay), _) if relay.addr == d.source => Via::Relay(relay.clone()),
                (_, Some(own)) if own.addr == d.source => Via::Own(own.socket.clone()),
                (_, None) if d.source == local => Via::Plane,
                // From an address given up (a relay an ICE restart
                // replaced): never from another socket, which would show
                // the other site an address a relay-only site hides.
                _ => continue,
            };
            out.push((via, d));
        }
    }
    for held in plane.seats.values_mut() {
        while let Some(d) = held.seat.poll_transmit() {
            out.push((Via::Plane, d));
        }
    }
    // A failed or closed connection has said why; it holds nothing more.
    let before = plane.links.len() + plane.seats.len();
    plane
        .links
        .retain(|_, held| held.link.poll_timeout().is_some());
    plane.seats.retain(|_, held| held.is_live());
    // Only this task removes connections, so the remembered pairs can only
    // have gone stale in a round that removed one; checking them every
    // round cost more than the parsing the memory saves.
    if plane.links.len() + plane.seats.len() < before {
        plane.demux.retain(plane.links, plane.seats);
    }
    out
}

/// What a connection said: media and messages forwarded in the room,
/// what the event loop must know passed on.
fn act(plane: &mut Plane, heard: Heard, events: &mpsc::UnboundedSender<MediaEvent>) {
    let Plane {
        links,
        seats,
        room,
        watched,
        ..
    } = plane;
    match heard {
        Heard::Site(session, org, LinkEvent::Media { slot, frame }) => {
            room.forward(links, seats, session, Source::Site(org, slot), &frame);
            if watched.contains(&session) {
                let event = LinkEvent::Media { slot, frame };
                let _ = events.send(MediaEvent::Link {
                    session,
                    org,
                    event,
                });
            }
        }
        Heard::Site(session, _, LinkEvent::KeyframeWanted { slot }) => {
            room.keyframe_for_site(seats, session, slot)
        }
        Heard::Site(session, org, event) => {
            match &event {
                LinkEvent::Data(bytes) => room.said_by_site(links, seats, session, org, bytes),
                LinkEvent::ChannelOpen => room.site_joined(links, seats, session),
                LinkEvent::Failed(_) => room.site_left(seats, session, org),
                _ => {}
            }
            let _ = events.send(MediaEvent::Link {
                session,
                org,
                event,
            });
        }
        Heard::Seat(id, event) => {
            let Some(held) = seats.get(&id) else { return };
            let (session, who) = (held.session, held.who.clone());
            match event {
                SeatEvent::Media(frame) => {
                    room.forward(links, seats, session, Source::Seat(id), &frame)
                }
                SeatEvent::KeyframeWanted { slot } => room.keyframe_for(links, seats, id, slot),
                SeatEvent::Data(bytes) => {
                    if let Err(e) = room.said_by_seat(links, seats, id, &bytes) {
                        tracing::debug!(seat = %id, "room message dropped: {e}");
                    }
                }
                SeatEvent::ChannelOpen => room.announce(links, seats, session),
                SeatEvent::Connected => {
                    // The other sites start the newcomer's tiles with keyframes.
                    for ((s, _), held) in links.iter_mut() {
                        if *s == session {
                            for slot in 0..held.link.slots() {
                                let _ = held.link.request_keyframe(slot);
                            }
                        }
                    }
                    room.seat_connected(links, seats, id);
                    let _ = events.send(MediaEvent::Seat {
                        session,
                        seat: id,
                        who,
                        left: None,
                    });
                }
                SeatEvent::Failed(reason) => {
                    room.seat_left(links, seats, id);
                    let left = Some(reason);
                    let _ = events.send(MediaEvent::Seat {
                        session,
                        seat: id,
                        who,
                        left,
                    });
                    room.announce(links, seats, session);
                }
            }
        }
    }
}
