//! The Konsilium node: a tokio + libp2p shell around `konsilium-protocol`.

pub mod admin;
pub mod anchor;
pub mod behaviour;
pub mod blobs;
pub mod codec;
pub mod config;
pub mod datadir;
pub mod doctor;
pub mod federation;
pub mod fhir;
pub mod gate;
pub mod http;
pub use konsilium_keyfile as keys;
pub mod metrics;
pub mod node;
pub mod progress;
pub mod report;
pub mod store;
