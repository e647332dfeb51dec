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
