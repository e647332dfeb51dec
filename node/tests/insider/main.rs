//! A certified organization whose node an attacker controls: it holds the
//! organization's real keys and certificate, passes admission, and then
//! sends what an honest node never would. Honest nodes must refuse every
//! bit of it and lose nothing.
//!
//! The insider speaks the node's own protocols through the node's codecs,
//! but decides everything itself.

#![cfg(feature = "local-federation")]

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::net::behaviour::{DIRECTORY_TOPIC, REVOCATION_TOPIC};
use konsilium_node::net::codec::{HELLO_PROTOCOL, HelloCodec, RPC_PROTOCOL, RpcCodec};
use konsilium_node::node::{self, NodeEvent, NodeHandle};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::rpc::{Hello, HelloAnswer, Request, Response};
use konsilium_protocol::specialty::Specialty;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, noise, request_response, tcp, yamux};
use std::time::Duration;

mod admission;
mod directory;
mod load;
mod packages;
#[path = "../process/mod.rs"]
mod process;
mod video;

const PATIENCE: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
struct Wire {
    hello: request_response::Behaviour<HelloCodec>,
    rpc: request_response::Behaviour<RpcCodec>,
    /// Any bytes on the RPC protocol, for frames no codec would write.
    raw: request_response::Behaviour<RawCodec>,
    gossip: gossipsub::Behaviour,
}

/// Writes a request's bytes as they are; reads an answer whole (up to
/// 1 MiB). What an attacker's own implementation would do.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()> {
        write_all(io, &bytes).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()> {
        write_all(io, &bytes).await
    }
}

async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(1 << 20).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// The insider's gossip: signed with its key, on the federation's topics.
fn gossip(key: &libp2p::identity::Keypair) -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut gossip =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .unwrap();
    for topic in [DIRECTORY_TOPIC, REVOCATION_TOPIC] {
        gossip
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .unwrap();
    }
    gossip
}

struct Insider {
    swarm: Swarm<Wire>,
    node: PeerId,
    hello: Hello,
    /// Requests the node sent before admission ended on our side (it may
    /// count us admitted first), for the test to take up afterwards.
    early: std::collections::VecDeque<SwarmEvent<WireEvent>>,
}

impl Insider {
    /// Connects to the node at `addr` as `member` and completes admission
    /// both ways.
    async fn connect(member: &Member, addr: Multiaddr, node: PeerId) -> Self {
        Self::try_connect(member, addr, node)
            .await
            .unwrap_or_else(|why| panic!("the node refused the insider: {why}"))
    }

    /// Like [`Insider::connect`], returning the node's refusal.
    async fn try_connect(member: &Member, addr: Multiaddr, node: PeerId) -> Result<Self, String> {
        let key = member.keys.identity().to_libp2p();
        Self::try_connect_as(key, member.chain.clone(), addr, node).await
    }

    /// Connects with `key` and says Hello with `chain`, whatever it holds.
    async fn try_connect_as(
        key: libp2p::identity::Keypair,
        chain: konsilium_protocol::cert::CertChain,
        addr: Multiaddr,
        node: PeerId,
    ) -> Result<Self, String> {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|key| Wire {
                hello: request_response::Behaviour::new(
                    [(HELLO_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
                rpc: request_response::Behaviour::new(
                    [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
                raw: request_response::Behaviour::new(
                    [(RPC_PROTOCOL, request_response::ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30))
                        .with_max_concurrent_streams(10_000),
                ),
                gossip: gossip(key),
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let hello = Hello {
            chain,
            record: None,
            revocations: Vec::new(),
            time: node::now(),
        };
        swarm.dial(addr).unwrap();
        let mut insider = Self {
            swarm,
            node,
            hello,
            early: Default::default(),
        };
        // Our Hello goes out once the connection is up: sent earlier,
        // request-response would dial the node itself, with no address.
        let mut ours = None;
        let (mut welcomed, mut answered) = (false, false);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !(welcomed && answered) {
            let event = tokio::time::timeout_at(deadline, insider.swarm.select_next_some())
                .await
                .expect("admission within a minute");
            match event {
                SwarmEvent::Behaviour(WireEvent::Hello(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) if Some(request_id) == ours => match response {
                    HelloAnswer::Welcome(_) => welcomed = true,
                    HelloAnswer::Refused(why) => return Err(why),
                },
                SwarmEvent::ConnectionEstablished { peer_id, .. }
                    if peer_id == node && ours.is_none() =>
                {
                    let hello = insider.hello.clone();
                    ours = Some(
                        insider
                            .swarm
                            .behaviour_mut()
                            .hello
                            .send_request(&node, hello.into()),
                    );
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(format!("connection refused: {error}"));
                }
                SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } => return Err("connection closed before admission".into()),
                request @ SwarmEvent::Behaviour(WireEvent::Rpc(
                    request_response::Event::Message {
                        message: request_response::Message::Request { .. },
                        ..
                    },
                )) => insider.early.push_back(request),
                other => answered |= insider.on_event(other),
            }
        }
        Ok(insider)
    }

    /// Waits until the node closes the connection; false if it stays open
    /// for a minute.
    async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if !self.swarm.is_connected(&self.node) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Err(_) => return false,
                Ok(SwarmEvent::ConnectionClosed {
                    peer_id,
                    num_established: 0,
                    ..
                }) if peer_id == self.node => return true,
                Ok(other) => {
                    self.on_event(other);
                }
            }
        }
    }

    /// Answers the node's Hello with ours; true when it did.
    fn on_event(&mut self, event: SwarmEvent<WireEvent>) -> bool {
        if let SwarmEvent::Behaviour(WireEvent::Hello(request_response::Event::Message {
            message: request_response::Message::Request { channel, .. },
            ..
        })) = event
        {
            let welcome = HelloAnswer::Welcome(Box::new(self.hello.clone()));
            let _ = self
                .swarm
                .behaviour_mut()
                .hello
                .send_response(channel, welcome);
            return true;
        }
        false
    }

    /// The next event: one held from admission first.
    async fn next_event(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<SwarmEvent<WireEvent>> {
        if let Some(early) = self.early.pop_front() {
            return Some(early);
        }
        tokio::time::timeout_at(deadline, self.swarm.select_next_some())
            .await
            .ok()
    }

    /// Sends `request` and waits for its answer (or why none came).
    async fn ask(&mut self, request: Request) -> Result<Response, String> {
        let node = self.node;
        let id = (self.swarm.behaviour_mut().rpc).send_request(&node, request.into());
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| "no answer within a minute".to_owned())?;
            match event {
                SwarmEvent::Behaviour(WireEvent::Rpc(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) if request_id == id => return Ok(response.frame),
                SwarmEvent::Behaviour(WireEvent::Rpc(
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    },
                )) if request_id == id => return Err(error.to_string()),
                other => {
                    self.on_event(other);
                }
            }
        }
    }
}

async fn start(member: &Member, bootstrap: Vec<Multiaddr>) -> NodeHandle {
    let started = node::start(member.setup(bootstrap, vec![])).await;
    started.unwrap_or_else(|e| panic!("cannot start {}: {e}", member.spec.name))
}

/// The federal cardiology center the insider tests talk to.
fn federal_center(fed: &mut LocalFederation) -> Member {
    let cardiology = [Specialty::Cardiology];
    fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &cardiology,
    ))
}

/// The district hospital whose keys the insider takes over.
fn kirillov(fed: &mut LocalFederation) -> Member {
    fed.enrol(OrgSpec::new(
        "Kirillov CDH",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ))
}

/// Vologda's regional hospital, with `specialties`.
fn vologda_regional(fed: &mut LocalFederation, specialties: &[Specialty]) -> Member {
    fed.enrol(OrgSpec::new(
        "Vologda regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        specialties,
    ))
}

/// A federal center and a district hospital that knows it; the district's
/// node is then stopped, so its keys can be taken over by the insider
/// while the federal center still holds its directory record. Returns the
/// federal center, its node, the district and where the node listens.
async fn federal_and_turned_district(
    fed: &mut LocalFederation,
) -> (Member, NodeHandle, Member, Multiaddr) {
    federal_with_video_and_turned_district(fed, None).await
}

/// The same, the federal center's node with the media plane `video`.
async fn federal_with_video_and_turned_district(
    fed: &mut LocalFederation,
    video: Option<konsilium_node::config::VideoConfig>,
) -> (Member, NodeHandle, Member, Multiaddr) {
    let federal = federal_center(fed);
    let district = kirillov(fed);
    let mut setup = federal.setup(vec![], vec![]);
    setup.video = video;
    let f = node::start(setup).await.expect("the federal node starts");
    let fa = wait::listen_addr(&f, PATIENCE).await.unwrap();
    let d = start(&district, vec![fa.clone()]).await;
    wait::converged(&[&f, &d], 2, PATIENCE).await.unwrap();
    d.shutdown().await;
    forgotten(&f, &district).await;
    (federal, f, district, fa)
}

/// Waits until `node` no longer lists `member` among its peers. The insider
/// takes a member's place on a connection of its own: one opened while the
/// node still holds the old one would meet a peer it has admitted already,
/// which sends no Hello of its own.
async fn forgotten(node: &NodeHandle, member: &Member) {
    let gone = async {
        loop {
            let peers = node.inspect(node::Inspect::Peers).await.unwrap();
            let listed =
                (peers.as_array().unwrap().iter()).any(|p| p["org"] == member.org_id().to_string());
            if !listed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, gone)
        .await
        .expect("the node notices the member's node stopped");
}

/// How many times the node took a package in, from its events so far.
fn taken_in(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, from: OrgId) -> usize {
    let mut n = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, NodeEvent::PackageReceived { sender, .. } if sender == from) {
            n += 1;
        }
    }
    n
}
