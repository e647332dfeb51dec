//! Directory anti-entropy among many simulated nodes, driving the real
//! protocol machines.
//!
//! Each node is the protocol's `DirectorySync` machine, the one the node
//! runs, on the protocol's simulated network: nothing passes between them
//! except wire frames (`wire::encode`, `wire::decode`), so byte counts are
//! what a node would hand to its transport (frame header included,
//! transport encryption and framing not), and every record a node accepts
//! goes through the full signature and certificate checks.
//!
//! Runs are pure and deterministic: time is simulated from the testkit's
//! fixed `NOW` and randomness is blake3 over a seed and a counter, so a
//! report can be reproduced, and compared, from its seed alone.

pub mod network;
pub mod rng;
pub mod scenarios;

pub use network::{Network, NetworkState, RunReport, Strategy, Traffic};
pub use rng::SimRng;
pub use scenarios::{
    ColdStartReport, Federation, JoinSync, LateJoinerReport, PartitionConfig, PartitionReport,
    SmallDeltaReport, cold_start, late_joiner, partition_heal, small_delta,
};

use konsilium_protocol::directory::{RecordError, SyncError};
use konsilium_protocol::testkit::Violation;

/// Why a simulation stopped. Any of these is a finding about the protocol or
/// the scenario, never noise: the simulation has no lossy links.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("node {} sent a {} frame of {} bytes, over its limit of {}", .0.from, .0.what, .0.len, .0.max)]
    Frame(Violation),
    #[error("node {node} could not use an answer: {error}")]
    Exchange { node: usize, error: SyncError },
    #[error("node {node} refused a record: {error}")]
    Refused { node: usize, error: RecordError },
    #[error("{nodes} nodes still disagree after {rounds} rounds")]
    NotConverged { nodes: usize, rounds: usize },
    #[error("scenario: {0}")]
    Config(String),
}
