//! The Konsilium node: a tokio + libp2p shell around `konsilium-protocol`.
//!
//! Layers, each using only those before it: `config` and `storage` (with
//! the protocol types), `telemetry`, `net` and `media`, the event loop in `node`, then
//! `http`, `ops` and `fhir` on top.

pub mod config;
#[cfg(feature = "local-federation")]
pub mod federation;
pub mod fhir;
pub mod http;
pub mod media;
pub use konsilium_keyfile as keys;
pub mod net;
pub mod node;
pub mod ops;
pub mod storage;
pub mod stun;
pub mod telemetry;
