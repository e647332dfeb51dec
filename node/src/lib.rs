//! The Konsilium node: a tokio + libp2p shell around `konsilium-protocol`.

pub mod api;
pub mod behaviour;
pub mod blobs;
pub mod codec;
pub mod config;
pub mod federation;
pub mod fhir;
pub mod keys;
pub mod node;
pub mod store;
