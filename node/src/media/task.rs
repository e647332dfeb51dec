//! The media plane's task: feeds every link its datagrams and timeouts,
//! sends what they emit from the socket each uses, and tells the event
//! loop what happened. STUN answers to the plane's own Binding requests
//! are taken here before anything reaches a link.

use super::relay::Relay;
use super::{Links, MediaEvent, Shared};
use konsilium_video::Datagram;
use konsilium_video::stun::is_stun;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The plane's socket, and what offered links' sockets read.
pub(super) struct Sockets {
    pub(super) plane: Arc<UdpSocket>,
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
    loop {
        let next = {
            let links = shared.links();
            links.values().filter_map(|h| h.link.poll_timeout()).min()
        };
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut received = None;
        tokio::select! {
            r = sockets.plane.recv_from(&mut buf) => match r {
                Ok((n, source)) => received = Some(Datagram {
                    source,
                    destination: local,
                    contents: buf[..n].to_vec(),
                }),
                Err(e) => tracing::debug!("video socket: {e}"),
            },
            Some(d) = sockets.inbound.recv() => received = Some(d),
            _ = shared.wake.notified() => {}
            _ = due => {}
        }
        let received = received.filter(|d| {
            !(d.destination == local && is_stun(&d.contents) && shared.took_stun_answer(d))
        });
        let now = Instant::now();
        let out = step(&mut shared.links(), local, received, now, &events);
        for (via, d) in out {
            let socket = match via {
                Via::Relay(relay) => {
                    relay.send(d);
                    continue;
                }
                Via::Own(socket) => socket,
                Via::Plane => sockets.plane.clone(),
            };
            if let Err(e) = socket.send_to(&d.contents, d.destination).await {
                tracing::debug!(to = %d.destination, "video datagram not sent: {e}");
            }
        }
    }
}

/// Where a datagram a link emits leaves from.
enum Via {
    Plane,
    Own(Arc<UdpSocket>),
    Relay(Arc<Relay>),
}

type Outgoing = Vec<(Via, Datagram)>;

/// One round over the links: the datagram to its link, due timeouts,
/// events out; returns what to send and from which socket.
fn step(
    links: &mut Links,
    local: SocketAddr,
    received: Option<Datagram>,
    now: Instant,
    events: &mpsc::UnboundedSender<MediaEvent>,
) -> Outgoing {
    // A link's address pair is its own: the socket it arrived on, then
    // the sender.
    if let Some(d) = received
        && let Some(held) = (links.values_mut())
            .find(|h| h.reached_at(local, d.destination) && h.link.accepts(now, &d))
    {
        held.link.handle_datagram(now, &d);
    }
    let mut out = Vec::new();
    for (&(session, org), held) in links.iter_mut() {
        let link = &mut held.link;
        if link.poll_timeout().is_some_and(|at| at <= now) {
            link.handle_timeout(now);
        }
        while let Some(d) = link.poll_transmit() {
            let via = match (&held.relay, &held.own) {
                (Some(relay), _) if relay.addr == d.source => Via::Relay(relay.clone()),
                (_, Some(own)) => Via::Own(own.socket.clone()),
                (_, None) => Via::Plane,
            };
            out.push((via, d));
        }
        while let Some(event) = link.poll_event() {
            let _ = events.send(MediaEvent::Link {
                session,
                org,
                event,
            });
        }
    }
    // A failed or closed link has said why; it holds nothing more.
    links.retain(|_, held| held.link.poll_timeout().is_some());
    out
}
