//! The node's media plane: one UDP socket for every video link this site
//! holds (one per remote site and session), driven on a task of its own so
//! media never waits for the event loop.
//!
//! Links are created from the event loop (offers and answers are decided
//! there, with the consultation at hand) and run here: the task feeds them
//! datagrams and timeouts and sends what they emit. Both sides share the
//! links behind a mutex held only for a link's own, short, work.

use konsilium_protocol::identity::OrgId;
use konsilium_protocol::video::SessionId;
use konsilium_video::{Datagram, Link, LinkError, LinkEvent};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

type Links = HashMap<(SessionId, OrgId), Link>;

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

pub struct MediaPlane {
    links: Arc<Mutex<Links>>,
    wake: Arc<Notify>,
    local: SocketAddr,
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
        let task = tokio::spawn(run(socket, local, links.clone(), wake.clone(), events));
        Ok(Self {
            links,
            wake,
            local,
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

    /// Every link: its session, the other site, and whether it is connected.
    pub fn links(&self) -> Vec<(SessionId, OrgId, bool)> {
        let mut links: Vec<_> = (self.lock().iter())
            .map(|(&(session, org), link)| (session, org, link.is_connected()))
            .collect();
        links.sort();
        links
    }

    /// A new link to `org` that opens with the returned offer.
    pub fn offer(&self, session: SessionId, org: OrgId) -> Result<String, MediaError> {
        let mut links = self.lock();
        if links.contains_key(&(session, org)) {
            return Err(MediaError::Exists { org });
        }
        let (link, offer) = Link::offer(Instant::now(), self.local)?;
        links.insert((session, org), link);
        drop(links);
        self.wake.notify_one();
        Ok(offer)
    }

    /// A new link to `org` from its offer; returns our answer. An offer
    /// again from the same site (it restarted) replaces its link.
    pub fn answer(
        &self,
        session: SessionId,
        org: OrgId,
        offer: &str,
    ) -> Result<String, MediaError> {
        let (link, answer) = Link::answer(Instant::now(), self.local, offer)?;
        self.lock().insert((session, org), link);
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
        let link = (links.get_mut(&(session, org))).ok_or(MediaError::NoLink { org })?;
        let out = f(link)?;
        drop(links);
        self.wake.notify_one();
        Ok(out)
    }
}

async fn run(
    socket: UdpSocket,
    local: SocketAddr,
    links: Arc<Mutex<Links>>,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let next = {
            let links = links.lock().unwrap_or_else(|p| p.into_inner());
            links.values().filter_map(Link::poll_timeout).min()
        };
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let mut received = None;
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => received = Some(Datagram {
                    source,
                    destination: local,
                    contents: buf[..n].to_vec(),
                }),
                Err(e) => tracing::debug!("video socket: {e}"),
            },
            _ = wake.notified() => {}
            _ = due => {}
        }
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut links = links.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = received
                && let Some(link) = links.values_mut().find(|l| l.accepts(now, &d))
            {
                link.handle_datagram(now, &d);
            }
            for (&(session, org), link) in links.iter_mut() {
                if link.poll_timeout().is_some_and(|at| at <= now) {
                    link.handle_timeout(now);
                }
                out.extend(std::iter::from_fn(|| link.poll_transmit()));
                while let Some(event) = link.poll_event() {
                    let _ = events.send(MediaEvent {
                        session,
                        org,
                        event,
                    });
                }
            }
            // A failed link has said why; it holds nothing more.
            links.retain(|_, link| link.poll_timeout().is_some());
        }
        for d in out {
            if let Err(e) = socket.send_to(&d.contents, d.destination).await {
                tracing::debug!(to = %d.destination, "video datagram not sent: {e}");
            }
        }
    }
}
