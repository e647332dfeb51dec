//! Harness shared by Konsilium's cross-crate tests: ways to move protocol
//! values between simulated nodes exactly as real nodes move them.

pub mod fuzz;

use konsilium_protocol::cert::Trust;
use konsilium_protocol::directory::{Directory, Scope, SyncConfig};
use konsilium_protocol::testkit::{DirectoryNode, SimConfig, SimNet, seed};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire::{self, WireMessage};

/// Sends a value through the codec, as a node would.
pub fn over_the_wire<M: WireMessage>(m: &M) -> M {
    wire::decode(&wire::encode(m).expect("encodes within limits")).expect("decodes")
}

/// One anti-entropy exchange initiated by `a`, run by the protocol's
/// directory machines on the simulated network (every message encoded and
/// decoded). Returns the number of records that moved.
pub fn sync(a: &mut Directory, b: &mut Directory, trust: &Trust, now: Timestamp) -> usize {
    let mut net = SimNet::new(SimConfig::default(), now);
    for (i, dir) in [&mut *a, &mut *b].into_iter().enumerate() {
        let config = SyncConfig::new(Scope::Federation, seed("konsilium-tests/sync", i as u64));
        net.add(DirectoryNode::new(
            config,
            std::mem::take(dir),
            trust.clone(),
        ));
    }
    net.node_mut(0).start_sync(now, 1);
    net.settle();
    assert_eq!(net.violations(), &[], "frames within their limits");
    let moved = net.total().records as usize;
    let mut nodes = net.into_nodes().into_iter();
    for (dir, node) in [a, b].into_iter().zip(&mut nodes) {
        assert_eq!(node.rejections, vec![], "every record valid");
        *dir = node.into_directory();
    }
    moved
}
