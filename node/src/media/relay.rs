//! TURN relays (RFC 8656): an address on a TURN server that forwards to
//! this site, for the sites whose NATs defeat every direct path (a
//! symmetric NAT facing a port-restricted one) and for operators who want
//! no hospital address in any description. The protocol is the `turn`
//! crate's client, on a UDP socket of the relay's own; what arrives
//! through the relay reaches the links as if the relay's address were one
//! of this host's, and what a link sends from that address goes back
//! through the server.

use super::{Shared, lock};
use crate::config::TurnServer;
use konsilium_video::Datagram;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

/// How long one server gets to grant an allocation before the next is
/// asked (two round trips on a working path).
const ALLOCATE_WAIT: Duration = Duration::from_secs(2);
/// How often a relay asks its server for a Binding: it keeps the NAT's
/// mapping of the relay's socket alive (Linux forgets an idle UDP mapping
/// after 30 s, and a new mapping is a stranger to the server, which has
/// the allocation on the old one) and tells whether the server still
/// answers.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// A relay whose server has not answered for this long, or through which
/// nothing could be sent for this long, is given up.
const SILENCE: Duration = Duration::from_secs(35);
/// Datagrams waiting to go through the server; more are dropped, as the
/// network would. Sending to a new peer waits for its permission (a round
/// trip to the server), which must never hold up the media plane's task.
const OUTBOUND_QUEUE: usize = 512;

pub(super) struct Relay {
    /// The relayed address: where other sites send to reach this one.
    pub(super) addr: SocketAddr,
    /// The local socket the allocation was made from.
    pub(super) base: SocketAddr,
    /// `host:port` of the server granting it.
    pub(super) server: String,
    conn: Arc<dyn Conn + Send + Sync>,
    client: Arc<Client>,
    outbound: mpsc::Sender<Datagram>,
    /// When the server last answered a Binding.
    answered: Arc<Mutex<Instant>>,
    /// Since when every send through the relay has failed. A server that
    /// restarted still answers Bindings, but has forgotten the allocation:
    /// then no permission is granted and nothing gets through.
    failing: Arc<Mutex<Option<Instant>>>,
    tasks: [tokio::task::JoinHandle<()>; 3],
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Tell the server at once rather than let the allocation time out.
        let (conn, client) = (self.conn.clone(), self.client.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = conn.close().await;
                let _ = client.close().await;
            });
        }
    }
}

impl Relay {
    /// Queues a link's datagram (its source is this relay's address) to go
    /// through the server to its destination.
    pub(super) fn send(&self, d: Datagram) {
        let _ = self.outbound.try_send(d);
    }

    /// Whether the server answered on the allocation's socket lately, and
    /// takes what is sent through it.
    pub(super) fn answering(&self) -> bool {
        lock(&self.answered).elapsed() < SILENCE
            && lock(&self.failing).is_none_or(|since| since.elapsed() < SILENCE)
    }
}

/// An allocation from the first of `servers` that grants one, made from
/// an ephemeral port on `ip`; what arrives through it goes to `inbound`.
/// `None` (said in the log) when none does.
pub(super) async fn allocate(
    ip: IpAddr,
    servers: &[TurnServer],
    inbound: mpsc::Sender<Datagram>,
) -> Option<Relay> {
    for server in servers {
        match allocate_on(ip, server).await {
            Ok((conn, client, base)) => {
                return Some(Relay::start(conn, client, base, server, inbound));
            }
            Err(e) => tracing::warn!(server = %server.server, "no TURN relay: {e}"),
        }
    }
    None
}

type Granted = (Arc<dyn Conn + Send + Sync>, Client, SocketAddr);

async fn allocate_on(ip: IpAddr, server: &TurnServer) -> Result<Granted, String> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("no local socket on {ip}: {e}"))?;
    let base = socket.local_addr().map_err(|e| e.to_string())?;
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.server.clone(),
        turn_serv_addr: server.server.clone(),
        username: server.username.clone(),
        password: server.password.clone(),
        // The server names its realm in its first answer.
        realm: String::new(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(socket),
        vnet: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    let granted = async {
        client.listen().await?;
        client.allocate().await
    };
    match tokio::time::timeout(ALLOCATE_WAIT, granted).await {
        Ok(Ok(conn)) => Ok((Arc::new(conn), client, base)),
        failed => {
            // Its reading task holds the socket until told to stop.
            let _ = client.close().await;
            Err(match failed {
                Ok(Err(e)) => format!("the server refused an allocation: {e}"),
                _ => format!("the server granted no allocation within {ALLOCATE_WAIT:?}"),
            })
        }
    }
}

impl Relay {
    fn start(
        conn: Arc<dyn Conn + Send + Sync>,
        client: Client,
        base: SocketAddr,
        server: &TurnServer,
        inbound: mpsc::Sender<Datagram>,
    ) -> Self {
        let addr = conn.local_addr().unwrap_or(base);
        tracing::info!(relayed = %addr, server = %server.server, "video: TURN relay allocated");
        let (outbound, mut queued) = mpsc::channel::<Datagram>(OUTBOUND_QUEUE);
        let (writing, name) = (conn.clone(), server.server.clone());
        let failing = Arc::new(Mutex::new(None));
        let noting_failure = failing.clone();
        let writer = tokio::spawn(async move {
            while let Some(d) = queued.recv().await {
                let sent = writing.send_to(&d.contents, d.destination).await;
                let mut since = lock(&noting_failure);
                match sent {
                    Ok(_) => *since = None,
                    Err(e) => {
                        tracing::debug!(to = %d.destination, server = %name, "video datagram not relayed: {e}");
                        since.get_or_insert_with(Instant::now);
                    }
                }
            }
        });
        let reading = conn.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, source)) = reading.recv_from(&mut buf).await {
                let d = Datagram {
                    source,
                    destination: addr,
                    contents: buf[..n].to_vec(),
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = inbound.try_send(d) {
                    return;
                }
            }
        });
        let client = Arc::new(client);
        let answered = Arc::new(Mutex::new(Instant::now()));
        let (asking, noting) = (client.clone(), answered.clone());
        let keepalive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                let asked = asking.send_binding_request();
                if let Ok(Ok(_)) = tokio::time::timeout(ALLOCATE_WAIT, asked).await {
                    *lock(&noting) = Instant::now();
                }
            }
        });
        Self {
            addr,
            base,
            server: server.server.clone(),
            conn,
            client,
            outbound,
            answered,
            failing,
            tasks: [reader, writer, keepalive],
        }
    }
}

/// How often the plane's relay is checked, and how long after a failed
/// allocation the servers are asked again.
const CHECK_EVERY: Duration = KEEPALIVE;

/// Holds the plane's relay: allocates one, checks every `CHECK_EVERY` that
/// its server still answers, and allocates anew (from whichever server
/// grants it) when it stops. Links answered meanwhile keep the relay they
/// offered; new ones offer the new relay.
pub(super) async fn keep(
    ip: IpAddr,
    servers: Arc<Vec<TurnServer>>,
    shared: Arc<Shared>,
    inbound: mpsc::Sender<Datagram>,
) {
    loop {
        let held = lock(&shared.relay).clone();
        match held {
            None => {
                if let Some(relay) = allocate(ip, &servers, inbound.clone()).await {
                    *lock(&shared.relay) = Some(Arc::new(relay));
                    continue;
                }
            }
            Some(relay) if !relay.answering() => {
                tracing::warn!(server = %relay.server, "video: the TURN server stopped answering; asking for a new relay");
                *lock(&shared.relay) = None;
                continue;
            }
            Some(_) => {}
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
