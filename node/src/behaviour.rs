//! The libp2p protocols a node speaks, composed into one behaviour.

use crate::codec::{PROTOCOL, RpcCodec};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, allow_block_list, gossipsub, identify, kad, ping, request_response};
use std::time::Duration;

pub const IDENTIFY_PROTOCOL: &str = "/konsilium/id/1";
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/kad/1");
pub const DIRECTORY_TOPIC: &str = "konsilium/directory/1";
pub const REVOCATION_TOPIC: &str = "konsilium/revocations/1";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<RpcCodec>,
}

/// Gossip tuned for a federation: messages are validated by the node before
/// they propagate, ids are content hashes (so the same record published twice
/// is one message), and peers that send invalid records lose score.
fn gossipsub(key: &Keypair, heartbeat: Duration) -> Result<gossipsub::Behaviour, String> {
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
    let mut score = gossipsub::PeerScoreParams::default();
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
    pub fn new(key: &Keypair, heartbeat: Duration) -> Result<Self, String> {
        let peer = key.public().to_peer_id();
        let mut kad = kad::Behaviour::with_config(
            peer,
            kad::store::MemoryStore::new(peer),
            kad::Config::new(KAD_PROTOCOL),
        );
        kad.set_mode(Some(kad::Mode::Server));
        Ok(Self {
            blocked: Default::default(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("konsilium/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub: gossipsub(key, heartbeat)?,
            rpc: request_response::Behaviour::new(
                [(PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
            ),
        })
    }
}
