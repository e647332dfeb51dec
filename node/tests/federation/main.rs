//! Multi-node tests: real nodes (libp2p over TCP on 127.0.0.1, sled on disk)
//! in one process. Timeouts only guard against hangs; assertions are about
//! behaviour.
//!
//! Here: starting members and waiting on them; one module per topic.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{self, Inspect, NodeError, NodeEvent, NodeHandle, SendRequest, Target};
use konsilium_node::storage::store::Store;
use konsilium_protocol::cert::{Issuer, OrgLevel};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::{PackageId, RoutingHeader};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::path::Path;
use std::time::Duration;
use tokio::sync::broadcast;

mod delivery;
mod membership;
#[path = "../process/mod.rs"]
mod process;
mod relay;
mod rotation;
mod traversal;

use process::dir_contains;

const PATIENCE: Duration = Duration::from_secs(60);

async fn addr(node: &NodeHandle) -> Multiaddr {
    wait::listen_addr(node, PATIENCE).await.unwrap()
}

/// Waits until every node holds `size` records with one digest.
async fn converge(nodes: &[&NodeHandle], size: usize) {
    wait::converged(nodes, size, PATIENCE).await.unwrap();
}

async fn wait_for<T>(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    pick: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    wait::event(rx, what, PATIENCE, pick)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn delivered(rx: &mut broadcast::Receiver<NodeEvent>, id: PackageId) {
    wait_for(rx, "the receipt", |e| {
        matches!(e, NodeEvent::PackageDelivered { id: got, .. } if *got == id).then_some(())
    })
    .await
}

fn routing(specialty: Specialty, min_level: OrgLevel) -> RoutingHeader {
    RoutingHeader {
        specialty,
        min_level,
        urgency: Urgency::Urgent,
        region: None,
    }
}

fn package(
    target: Target,
    specialty: Specialty,
    min_level: OrgLevel,
    body: Vec<u8>,
) -> SendRequest {
    SendRequest {
        target,
        routing: routing(specialty, min_level),
        body,
        attachments: Vec::new(),
        lifetime: Duration::from_secs(86_400),
    }
}

/// Sends `body` straight to `to` and waits for its receipt.
async fn deliver(
    from: &NodeHandle,
    to: OrgId,
    specialty: Specialty,
    level: OrgLevel,
    body: &[u8],
) -> PackageId {
    let mut events = from.subscribe();
    let sent = from
        .send(package(Target::Org(to), specialty, level, body.to_vec()))
        .await
        .unwrap();
    delivered(&mut events, sent.id).await;
    sent.id
}

async fn start(member: &Member, bootstrap: Vec<Multiaddr>, relay_via: Vec<OrgId>) -> NodeHandle {
    // A node killed a moment ago may still be releasing its database lock.
    for _ in 0..50 {
        match node::start(member.setup(bootstrap.clone(), relay_via.clone())).await {
            Ok(n) => return n,
            Err(NodeError::Store(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("cannot start {}: {e}", member.spec.name),
        }
    }
    panic!("database of {} stayed locked", member.spec.name);
}
