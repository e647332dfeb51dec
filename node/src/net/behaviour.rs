//! The libp2p protocols a node speaks, composed into one behaviour.

use crate::net::budget::Budgets;
use crate::net::codec::{HELLO_PROTOCOL, HelloCodec, RPC_PROTOCOL, RpcCodec};
use crate::net::gate::Gate;
use konsilium_protocol::reach::Reachability;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, allow_block_list, autonat, connection_limits, dcutr, gossipsub,
    identify, kad, memory_connection_limits, ping, relay, request_response,
};
use std::time::Duration;

pub const IDENTIFY_PROTOCOL: &str = "/konsilium/id/1";
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/kad/1");
pub const DIRECTORY_TOPIC: &str = "konsilium/directory/1";
pub const REVOCATION_TOPIC: &str = "konsilium/revocations/1";

/// How long a peer has to present a verified certificate chain.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits: what any party on the network can make a node hold
/// before it has proved anything. Federations are hundreds of organizations;
/// these leave room for that and no more.
/// How often each connection is pinged (its round trip, for `konsilium
/// peers`): a federation's links change slowly, and an idle node with 150
/// peers should spend its time on nothing.
const PING_EVERY: Duration = Duration::from_secs(60);
const PING_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PENDING_INCOMING: u32 = 64;
const MAX_ESTABLISHED_INCOMING: u32 = 1024;
const MAX_ESTABLISHED_PER_PEER: u32 = 4;

/// Concurrent inbound streams per connection, per protocol. Hello needs one;
/// an admitted peer pipelines attachment pieces and deliveries (a window
/// of packages, `outbox::WINDOW`, beside the rest). What their frames hold
/// is bounded by the protocol's byte budget, not by this number.
const HELLO_STREAMS: usize = 2;
const RPC_STREAMS: usize = 128;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub memory: memory_connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    /// An address book, and on nodes that serve others a server for
    /// lookups, open to admitted peers only (to a stranger it would list
    /// the federation's members).
    pub kad: Gate<kad::Behaviour<kad::store::MemoryStore>>,
    pub gossipsub: gossipsub::Behaviour,
    /// Open to every connected peer, with a 1 MiB frame limit.
    pub hello: request_response::Behaviour<HelloCodec>,
    /// Open only to admitted peers.
    pub rpc: Gate<request_response::Behaviour<RpcCodec>>,
    /// Reservations on relays and circuits through them, for a node
    /// behind NAT.
    pub relay_client: relay::client::Behaviour,
    /// From a relayed connection, a direct one by hole punching.
    pub dcutr: dcutr::Behaviour,
    /// Asks servers to dial our address candidates back: reachability.
    /// Off when the operator declared it.
    pub autonat: Toggle<autonat::v2::client::Behaviour>,
    /// On nodes that serve others: relay service and dial-backs, for
    /// admitted peers only.
    pub relay: Toggle<Gate<relay::Behaviour>>,
    pub autonat_server: Toggle<Gate<autonat::v2::server::Behaviour>>,
}

/// What a relay lets one certified node hold. Circuits carry packages and
/// attachments when hole punching fails, so they are long and large, unlike
/// libp2p's defaults (2 minutes, 128 KiB) meant only for coordinating a
/// hole punch; their number per peer is what bounds the cost.
fn relay_config() -> relay::Config {
    relay::Config {
        max_reservations: 1024,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 256,
        max_circuits_per_peer: 8,
        max_circuit_duration: Duration::from_secs(3600),
        max_circuit_bytes: 1 << 30,
        ..relay::Config::default()
    }
}

/// Gossip tuned for a federation: messages are validated by the node before
/// they propagate, ids are content hashes (so the same record published twice
/// is one message), and peers that send invalid records lose score. Public
/// for the live simulations, which time plain gossipsub with these settings
/// as the baseline for the node's directory updates.
pub fn gossipsub(key: &Keypair, heartbeat: Duration) -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(heartbeat)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
        })
        .max_transmit_size(2 << 20)
        .build()
        .map_err(|e| e.to_string())?;
    let mut behaviour =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)?;
    // No penalty for peers that share an IP address. It guards open
    // networks against one host posing as many peers; here a peer is
    // admitted only with its organization's certificate, and hospitals of
    // one regional network behind one NAT, or peers reached through one
    // relay, do share an address. With the penalty, past ten such peers
    // every one of them fell below the graylist and gossip reached nobody.
    let mut score = gossipsub::PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    for topic in [DIRECTORY_TOPIC, REVOCATION_TOPIC] {
        let topic = gossipsub::IdentTopic::new(topic).hash();
        score.topics.insert(
            topic,
            gossipsub::TopicScoreParams {
                invalid_message_deliveries_weight: -100.0,
                ..Default::default()
            },
        );
    }
    behaviour.with_peer_score(score, gossipsub::PeerScoreThresholds::default())?;
    Ok(behaviour)
}

impl Behaviour {
    /// `serves_others`: this node relays, answers reachability probes and
    /// Kademlia lookups for admitted peers (bootstrap and relay nodes).
    /// `declared`: the operator said whether we are public or behind NAT,
    /// so nothing is probed; behind NAT, identify tells peers only our
    /// external (relayed) addresses, as our record does.
    pub fn new(
        key: &Keypair,
        heartbeat: Duration,
        relay_client: relay::client::Behaviour,
        serves_others: bool,
        declared: Option<Reachability>,
        max_resident: usize,
        budgets: &Budgets,
    ) -> Result<Self, String> {
        let behind_nat = declared == Some(Reachability::Private);
        let peer = key.public().to_peer_id();
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_periodic_bootstrap_interval(None);
        let mut kad =
            kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), kad_config);
        // A node others can dial answers lookups (gated: certified peers
        // only); one behind NAT only asks. Without a declared role, the
        // swarm's confirmed external addresses decide.
        kad.set_mode(if serves_others {
            Some(kad::Mode::Server)
        } else if declared == Some(Reachability::Private) {
            Some(kad::Mode::Client)
        } else {
            None
        });
        let relay = serves_others.then(|| {
            let mut relay = relay::Behaviour::new(peer, relay_config());
            // Served whatever its addresses look like: a bootstrap node is
            // public by configuration, not by what it observed.
            relay.set_status(Some(relay::Status::Enable));
            Gate::new(relay)
        });
        Ok(Self {
            blocked: Default::default(),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                    .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
                    .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER)),
            ),
            memory: memory_connection_limits::Behaviour::with_max_bytes(max_resident),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("konsilium/{}", env!("CARGO_PKG_VERSION")))
                    .with_hide_listen_addrs(behind_nat),
            ),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_EVERY)
                    .with_timeout(PING_TIMEOUT),
            ),
            kad: Gate::new(kad),
            gossipsub: gossipsub(key, heartbeat)?,
            hello: request_response::Behaviour::with_codec(
                HelloCodec::new(budgets.hello.clone()),
                [(HELLO_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(HELLO_TIMEOUT)
                    .with_max_concurrent_streams(HELLO_STREAMS),
            ),
            rpc: Gate::new(request_response::Behaviour::with_codec(
                RpcCodec::new(budgets.requests.clone()),
                [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(120))
                    .with_max_concurrent_streams(RPC_STREAMS),
            )),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer),
            autonat: declared
                .is_none()
                .then(autonat::v2::client::Behaviour::default)
                .into(),
            relay: relay.into(),
            autonat_server: serves_others
                .then(|| Gate::new(autonat::v2::server::Behaviour::default()))
                .into(),
        })
    }

    /// Opens what is reserved to certified peers to one whose chain verified.
    pub fn admit(&mut self, peer: PeerId) {
        self.rpc.admit(peer);
        self.kad.admit(peer);
        if let Some(relay) = self.relay.as_mut() {
            relay.admit(peer);
        }
        if let Some(server) = self.autonat_server.as_mut() {
            server.admit(peer);
        }
    }

    /// Closes it again (refused or revoked).
    pub fn close(&mut self, peer: PeerId) {
        self.rpc.close(peer);
        self.kad.close(peer);
        if let Some(relay) = self.relay.as_mut() {
            relay.close(peer);
        }
        if let Some(server) = self.autonat_server.as_mut() {
            server.close(peer);
        }
    }
}
