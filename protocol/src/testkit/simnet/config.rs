//! How the simulated network behaves (links, loss, timeouts) and what it
//! counts (traffic per node, frames it could not send).

use super::NodeId;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub latency: Duration,
    /// Each message takes up to this much longer, uniformly: messages sent
    /// in order can arrive out of order.
    pub jitter: Duration,
    /// Probability that a message (request or response) is lost.
    pub loss: f64,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    pub link: Link,
    /// When a lost request or response is reported to the requester.
    pub failure_after: Duration,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            link: Link::default(),
            failure_after: Duration::from_secs(10),
            seed: 0,
        }
    }
}

/// Traffic a node sent, counted per frame as its transport would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub requests: u64,
    pub responses: u64,
    pub bytes: u64,
    /// Signed records carried in `PushRecords` and `Records` frames.
    pub records: u64,
    pub lost: u64,
    pub largest_frame: usize,
}

impl NodeStats {
    pub fn messages(&self) -> u64 {
        self.requests + self.responses
    }
}

/// A frame that could not be sent: over its kind's limit, or refused by
/// the codec. Each is a protocol bug, so tests assert there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub from: NodeId,
    pub what: &'static str,
    pub len: usize,
    pub max: usize,
}
