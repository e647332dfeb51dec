//! The sockets an offered link gets, and what STUN servers say addresses
//! map to: the plane's own port is asked every `REFRESH` (which also keeps
//! the NAT's mapping alive), an offered link's port once before its offer
//! is written, so the offer can name it. Where no STUN server is
//! configured there is nothing to ask, and a socket bound ahead
//! ([`Spare`]) lets the offer be written at once.

use super::outbound::MediaSocket;
use super::{MediaError, Shared};
use konsilium_video::Datagram;
use konsilium_video::stun::BindingRequest;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How often the plane's port asks again.
const REFRESH: Duration = Duration::from_secs(30);
/// How long an offer waits for a STUN answer before it goes without one.
const STUN_WAIT: Duration = Duration::from_millis(700);

pub(super) struct OwnSocket {
    pub(super) socket: Arc<MediaSocket>,
    pub(super) addr: SocketAddr,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for OwnSocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The servers' addresses now (names may move); one that does not
/// resolve is skipped, said in the log.
async fn resolve(servers: &[String]) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for server in servers {
        match tokio::net::lookup_host(server.as_str()).await {
            Ok(addrs) => found.extend(addrs),
            Err(e) => tracing::warn!(%server, "STUN server does not resolve: {e}"),
        }
    }
    found
}

/// An ephemeral port on `ip`, what the STUN servers say it maps to (if
/// one answers within `STUN_WAIT`), read into `inbound` from then on.
pub(super) async fn own_socket(
    ip: IpAddr,
    servers: &[String],
    inbound: mpsc::Sender<Datagram>,
) -> Result<(OwnSocket, Option<SocketAddr>), MediaError> {
    let (socket, local) = bind(ip).await?;
    let mut mapped = None;
    let targets = resolve(servers).await;
    if !targets.is_empty() {
        let request = BindingRequest::new();
        for target in &targets {
            let _ = socket.send_to(&request.bytes, target).await;
        }
        let mut buf = [0u8; 512];
        let wait = async {
            loop {
                match socket.recv_from(&mut buf).await {
                    Ok((n, source)) if targets.contains(&source) => {
                        if let Some(found) = request.answered_by(&buf[..n]) {
                            return Some(found);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        };
        mapped = tokio::time::timeout(STUN_WAIT, wait).await.ok().flatten();
    }
    Ok((read(socket, local, inbound)?, mapped))
}

async fn bind(ip: IpAddr) -> Result<(UdpSocket, SocketAddr), MediaError> {
    let addr = SocketAddr::new(ip, 0);
    let failed = |source| MediaError::Socket { addr, source };
    let socket = UdpSocket::bind(addr).await.map_err(failed)?;
    let local = socket.local_addr().map_err(failed)?;
    Ok((socket, local))
}

/// Reads `socket` into `inbound` from now on (on the calling runtime).
fn read(
    socket: UdpSocket,
    local: SocketAddr,
    inbound: mpsc::Sender<Datagram>,
) -> Result<OwnSocket, MediaError> {
    let failed = |source| MediaError::Socket {
        addr: local,
        source,
    };
    let socket = Arc::new(MediaSocket::new(socket).map_err(failed)?);
    let reading = socket.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, source)) = reading.udp().recv_from(&mut buf).await {
            let d = Datagram {
                source,
                destination: local,
                contents: buf[..n].to_vec(),
            };
            if let Err(mpsc::error::TrySendError::Closed(_)) = inbound.try_send(d) {
                return;
            }
        }
    });
    Ok(OwnSocket {
        socket,
        addr: local,
        reader,
    })
}

/// An offered link's socket bound ahead, already read: binding one and
/// setting it up for batched sends took 0.2-0.4 ms of every setup while
/// the offer waited. Only where no STUN server is configured: elsewhere
/// the offer waits for a fresh mapping of its port anyway.
pub(super) struct Spare {
    ip: IpAddr,
    inbound: mpsc::Sender<Datagram>,
    ready: Mutex<Option<OwnSocket>>,
    binding: AtomicBool,
}

impl Spare {
    pub(super) fn new(ip: IpAddr, inbound: mpsc::Sender<Datagram>) -> Self {
        Self {
            ip,
            inbound,
            ready: Mutex::new(None),
            binding: AtomicBool::new(false),
        }
    }

    pub(super) fn take(&self) -> Option<OwnSocket> {
        super::lock(&self.ready).take()
    }

    /// Binds the next one in the background, on the calling runtime (the
    /// plane's thread, whose reactor must own it), unless one is ready or
    /// being bound.
    pub(super) fn refill(self: &Arc<Self>) {
        if super::lock(&self.ready).is_some() || self.binding.swap(true, Ordering::AcqRel) {
            return;
        }
        let spare = self.clone();
        tokio::spawn(async move {
            let bound = match bind(spare.ip).await {
                Ok((socket, local)) => read(socket, local, spare.inbound.clone()),
                Err(e) => Err(e),
            };
            match bound {
                Ok(own) => *super::lock(&spare.ready) = Some(own),
                Err(e) => tracing::warn!("video: no socket bound ahead: {e}"),
            }
            spare.binding.store(false, Ordering::Release);
        });
    }
}

/// Asks the servers, from the plane's socket, what it maps to; the task
/// hands their answers to [`Shared::took_stun_answer`].
pub(super) async fn refresh(plane: Arc<MediaSocket>, servers: Vec<String>, shared: Arc<Shared>) {
    loop {
        let targets = resolve(&servers).await;
        let request = BindingRequest::new();
        // Known before it leaves: the answer may be back at once.
        shared.ask(request.clone());
        for target in &targets {
            if let Err(e) = plane.udp().send_to(&request.bytes, target).await {
                tracing::debug!(%target, "STUN request not sent: {e}");
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MediaEvent, MediaPlane};
    use crate::config::VideoConfig;
    use konsilium_protocol::identity::IdentityKey;
    use konsilium_protocol::video::SessionId;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// The port of the socket bound ahead, once the plane's thread has it.
    async fn spare_port(plane: &MediaPlane) -> u16 {
        let spare = plane.shared.spare.as_ref().expect("no STUN: a spare");
        for _ in 0..500 {
            if let Some(own) = super::super::lock(&spare.ready).as_ref() {
                return own.addr.port();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no socket was bound ahead");
    }

    fn offered(event: Option<MediaEvent>) -> String {
        match event {
            Some(MediaEvent::Offer { offer: Ok(sdp), .. }) => sdp,
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn with_nothing_to_ask_an_offer_is_written_at_once_on_the_socket_bound_ahead() {
        let (events, mut heard) = mpsc::unbounded_channel();
        let listen = "127.0.0.1:0".parse().expect("an address");
        let plane = MediaPlane::start(&VideoConfig::on(listen), "test site", events)
            .await
            .expect("the plane starts");
        let port = spare_port(&plane).await;
        let org = IdentityKey::from_seed([7; 32]).org_id();
        plane.offer(SessionId([1; 16]), org).expect("offered");
        // Nothing awaited since: the offer is there already, naming the
        // spare's port as its host candidate.
        let sdp = offered(heard.try_recv().ok());
        assert!(sdp.contains(&format!("127.0.0.1 {port} typ host")), "{sdp}");
        // The spare is used up until a setup settles: the next offer binds
        // its own socket on the plane's thread.
        plane.offer(SessionId([2; 16]), org).expect("offered");
        let later = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
        let sdp = offered(later.expect("the second offer comes"));
        assert!(!sdp.contains(&format!(" {port} typ host")), "{sdp}");
    }
}
