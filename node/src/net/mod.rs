//! The libp2p side: the protocols a node speaks, their framing, and the gate
//! that keeps them closed until a peer is admitted.

pub mod behaviour;
pub mod codec;
pub mod gate;
pub mod scope;
