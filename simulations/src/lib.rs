//! Directory anti-entropy among many simulated nodes, driving the real
//! protocol code.
//!
//! The nodes are plain `Directory` values in one process, but nothing passes
//! between them except wire frames: every message is encoded with
//! `wire::encode` and decoded with `wire::decode`, so byte counts are what a
//! node would hand to its transport (frame header included, transport
//! encryption and framing not), and every record a node accepts goes through
//! the full signature and certificate checks of `Directory::insert_many`.
//!
//! Runs are pure and deterministic: time is the testkit's fixed `NOW` and
//! randomness is blake3 over a seed and a counter, so a report can be
//! reproduced, and compared, from its seed alone.

pub mod network;
pub mod rng;
pub mod scenarios;

pub use network::{Network, NetworkState, RunReport, Strategy, Traffic};
pub use rng::SimRng;
pub use scenarios::{
    ColdStartReport, Federation, JoinSync, LateJoinerReport, PartitionConfig, PartitionReport,
    SmallDeltaReport, cold_start, late_joiner, partition_heal, small_delta,
};

use konsilium_protocol::directory::RecordError;
use konsilium_protocol::limits::FieldError;
use konsilium_protocol::wire::WireError;

/// Why a simulation stopped. Any of these is a finding about the protocol or
/// the scenario, never noise: the simulation has no lossy links.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    #[error("node {node} refused a sync offer: {error}")]
    Offer { node: usize, error: FieldError },
    #[error("node {node} refused a record: {error}")]
    Refused { node: usize, error: RecordError },
    #[error("{nodes} nodes still disagree after {rounds} rounds")]
    NotConverged { nodes: usize, rounds: usize },
    #[error("scenario: {0}")]
    Config(String),
}
