//! The libp2p side: the protocols a node speaks, their framing, and the gate
//! that keeps them closed until a peer is admitted.

pub mod behaviour;
pub mod budget;
pub mod codec;
pub mod gate;
pub mod scope;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::{PeerId, Transport, identity::Keypair, noise, yamux};

/// The swarm settings of every node, which baselines that measure a node
/// against plain libp2p take too. A connection idle for five minutes
/// closes. A new stream (each request: a package, a receipt, a video
/// offer) carries its request with the protocol it names instead of
/// waiting a round trip for the other side to confirm it first. That is
/// done only where one protocol is offered (a request's; gossipsub's
/// versions are still offered one by one), and federation peers speak
/// them all: a peer that does not refuses the stream, as before.
pub fn swarm_config(config: libp2p::swarm::Config) -> libp2p::swarm::Config {
    config
        .with_idle_connection_timeout(std::time::Duration::from_secs(300))
        .with_substream_upgrade_protocol_override(Version::V1Lazy)
}

/// In-process links (`/memory/<n>`) with the same Noise and Yamux as TCP:
/// the live simulations run hundreds of nodes in one process, more than
/// its file descriptors allow over TCP. Configuration refuses such a
/// listen address, and a dial to one reaches nothing outside this process.
pub fn in_process(key: &Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}
