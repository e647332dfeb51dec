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
//! links behind a mutex held only for a link's own, short, work.

use konsilium_protocol::identity::OrgId;
use konsilium_protocol::video::SessionId;
use konsilium_video::{Datagram, Link, LinkError, LinkEvent, LinkStats, LocalAddrs};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

/// Datagrams read from offered links' sockets, waiting for the task; more
/// are dropped, as the network would.
const INBOUND_QUEUE: usize = 1024;

/// A link and where it sends from.
struct Held {
    link: Link,
    /// The link's own socket (links we offered); `None` for the plane's.
    own: Option<OwnSocket>,
}

struct OwnSocket {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for OwnSocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Held {
    fn local(&self, plane: SocketAddr) -> SocketAddr {
        self.own.as_ref().map_or(plane, |o| o.addr)
    }
}

type Links = HashMap<(SessionId, OrgId), Held>;

/// What a link did, for the event loop.
#[derive(Debug, Clone)]
pub struct MediaEvent {
    pub session: SessionId,
    pub org: OrgId,
    pub event: LinkEvent,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("video: {0}")]
    Link(#[from] LinkError),
    #[error("video: no link to {org} in this session")]
    NoLink { org: OrgId },
    #[error("video: a link to {org} in this session exists already")]
    Exists { org: OrgId },
    #[error("video socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// One link as `konsilium sessions` shows it.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub session: SessionId,
    pub org: OrgId,
    pub connected: bool,
    pub stats: LinkStats,
}

pub struct MediaPlane {
    links: Arc<Mutex<Links>>,
    wake: Arc<Notify>,
    local: SocketAddr,
    inbound: mpsc::Sender<Datagram>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MediaPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MediaPlane {
    /// Binds `addr` (an interface's address: a host candidate cannot be
    /// 0.0.0.0) and starts the task; link events go to `events`.
    pub async fn start(
        addr: SocketAddr,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        let failed = |source| MediaError::Socket { addr, source };
        let socket = UdpSocket::bind(addr).await.map_err(failed)?;
        let local = socket.local_addr().map_err(failed)?;
        let links = Arc::new(Mutex::new(Links::new()));
        let wake = Arc::new(Notify::new());
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let task = tokio::spawn(run(
            Sockets {
                plane: socket,
                local,
                inbound: inbound_rx,
            },
            links.clone(),
            wake.clone(),
            events,
        ));
        Ok(Self {
            links,
            wake,
            local,
            inbound,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        // A panic while holding the lock would be str0m's; the links stay usable.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every link, by session and site.
    pub fn links(&self) -> Vec<LinkView> {
        let mut links: Vec<_> = (self.lock().iter())
            .map(|(&(session, org), held)| LinkView {
                session,
                org,
                connected: held.link.is_connected(),
                stats: held.link.stats(),
            })
            .collect();
        links.sort_by_key(|l| (l.session, l.org));
        links
    }

    /// Ends every link of the session; returns the sites they went to.
    pub fn close(&self, session: SessionId) -> Vec<OrgId> {
        let mut links = self.lock();
        let mut closed = Vec::new();
        for (&(s, org), held) in links.iter_mut() {
            if s == session {
                held.link.close();
                closed.push(org);
            }
        }
        drop(links);
        // The task drops them.
        self.wake.notify_one();
        closed.sort();
        closed
    }

    /// Whether our offer to `org` in the session still waits for its answer.
    pub fn is_offering(&self, session: SessionId, org: OrgId) -> bool {
        (self.lock().get(&(session, org))).is_some_and(|h| h.link.is_offering())
    }

    /// A new link to `org` that opens with the returned offer, on a socket
    /// of its own.
    pub fn offer(&self, session: SessionId, org: OrgId) -> Result<String, MediaError> {
        let mut links = self.lock();
        if links.contains_key(&(session, org)) {
            return Err(MediaError::Exists { org });
        }
        let own = self.own_socket()?;
        let local = LocalAddrs {
            host: own.addr,
            reflexive: None,
        };
        let (link, offer) = Link::offer(Instant::now(), local)?;
        let own = Some(own);
        links.insert((session, org), Held { link, own });
        drop(links);
        self.wake.notify_one();
        Ok(offer)
    }

    /// An ephemeral port on the plane's interface, read into the task.
    fn own_socket(&self) -> Result<OwnSocket, MediaError> {
        let addr = SocketAddr::new(self.local.ip(), 0);
        let failed = |source| MediaError::Socket { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(failed)?;
        socket.set_nonblocking(true).map_err(failed)?;
        let socket = Arc::new(UdpSocket::from_std(socket).map_err(failed)?);
        let destination = socket.local_addr().map_err(failed)?;
        let (reading, inbound) = (socket.clone(), self.inbound.clone());
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, source)) = reading.recv_from(&mut buf).await {
                let d = Datagram {
                    source,
                    destination,
                    contents: buf[..n].to_vec(),
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = inbound.try_send(d) {
                    return;
                }
            }
        });
        Ok(OwnSocket {
            socket,
            addr: destination,
            reader,
        })
    }

    /// A new link to `org` from its offer, on the plane's port; returns our
    /// answer. An offer again from the same site (it restarted) replaces
    /// its link.
    pub fn answer(
        &self,
        session: SessionId,
        org: OrgId,
        offer: &str,
    ) -> Result<String, MediaError> {
        let local = LocalAddrs {
            host: self.local,
            reflexive: None,
        };
        let (link, answer) = Link::answer(Instant::now(), local, offer)?;
        self.lock().insert((session, org), Held { link, own: None });
        self.wake.notify_one();
        Ok(answer)
    }

    pub fn answered(&self, session: SessionId, org: OrgId, answer: &str) -> Result<(), MediaError> {
        self.with(session, org, |link| link.handle_answer(answer))
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
        let mut links = self.lock();
        let held = (links.get_mut(&(session, org))).ok_or(MediaError::NoLink { org })?;
        let out = f(&mut held.link)?;
        drop(links);
        self.wake.notify_one();
        Ok(out)
    }
}

/// The plane's socket, and what offered links' sockets read.
struct Sockets {
    plane: UdpSocket,
    local: SocketAddr,
    inbound: mpsc::Receiver<Datagram>,
}

async fn run(
    mut sockets: Sockets,
    links: Arc<Mutex<Links>>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let local = sockets.local;
    let mut buf = vec![0u8; 2048];
    loop {
        let next = {
            let links = links.lock().unwrap_or_else(|p| p.into_inner());
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
            _ = wake.notified() => {}
            _ = due => {}
        }
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
            // A link's address pair is its own: the socket it arrived on,
            // then the sender.
            if let Some(d) = received
                && let Some(held) = (links.values_mut())
                    .find(|h| h.local(local) == d.destination && h.link.accepts(now, &d))
            {
                held.link.handle_datagram(now, &d);
            }
            for (&(session, org), held) in links.iter_mut() {
                let link = &mut held.link;
                if link.poll_timeout().is_some_and(|at| at <= now) {
                    link.handle_timeout(now);
                }
                let socket = held.own.as_ref().map(|o| o.socket.clone());
                out.extend(
                    std::iter::from_fn(|| link.poll_transmit()).map(|d| (socket.clone(), d)),
                );
                while let Some(event) = link.poll_event() {
                    let _ = events.send(MediaEvent {
                        session,
                        org,
                        event,
                    });
                }
            }
            // A failed or closed link has said why; it holds nothing more.
            links.retain(|_, held| held.link.poll_timeout().is_some());
        }
        for (socket, d) in out {
            let socket = socket.as_deref().unwrap_or(&sockets.plane);
            if let Err(e) = socket.send_to(&d.contents, d.destination).await {
                tracing::debug!(to = %d.destination, "video datagram not sent: {e}");
            }
        }
    }
}
