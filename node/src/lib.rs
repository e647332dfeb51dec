//! The Konsilium node: a tokio + libp2p shell around `konsilium-protocol`.

pub mod behaviour;
pub mod codec;
pub mod node;
pub mod store;
