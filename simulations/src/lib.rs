//! Konsilium at the scale of real federations, driving the real protocol
//! machines.
//!
//! Two kinds of run share the protocol's simulated network
//! (`testkit::SimNet`), where nothing passes between nodes except wire
//! frames, so byte counts are what a node hands to its transport and every
//! record, package and step goes through the full cryptographic checks:
//!
//! - [`directory`]: directory anti-entropy alone (the `DirectorySync`
//!   machine), compared with a naive full push.
//! - [`year`]: whole organizations (`testkit::Site`: admission, directory,
//!   outbox and consultation desk, wired as the node wires them) through a
//!   year of consultations from a [`scenario`], with clinicians, faults and
//!   the measurements an operator plans with; [`output`] writes them as
//!   CSV, JSON, plots and a report.
//! - [`live`]: the same scenario at a scale one machine holds, as real
//!   nodes (libp2p over loopback, sled, the node's event loops), put
//!   beside the model on the same organizations and requests.
//!
//! Runs are pure and deterministic: time is simulated from the testkit's
//! fixed `NOW` and randomness is blake3 over a seed and a stream name, so a
//! report can be reproduced, and compared, from its seed alone.

pub mod directory;
pub mod live;
pub mod output;
pub mod rng;
pub mod scenario;
pub mod year;

pub use directory::network::{Network, NetworkState, RunReport, Strategy, Traffic};
pub use directory::scenarios::{
    ColdStartReport, Federation, JoinSync, LateJoinerReport, PartitionConfig, PartitionReport,
    SmallDeltaReport, cold_start, late_joiner, partition_heal, small_delta,
};
pub use rng::SimRng;

use konsilium_protocol::directory::{RecordError, SyncError};
use konsilium_protocol::testkit::Violation;

/// Why a simulation stopped. Any of these is a finding about the protocol or
/// the scenario, never noise.
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
    #[error("live run: {0}")]
    Live(String),
}
