//! Strangers at the network edge: a libp2p client with any Noise key and no
//! federation certificate, against a real node on 127.0.0.1.

#![cfg(feature = "local-federation")]

use futures::StreamExt;
use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::net::codec::{RPC_PROTOCOL, RpcCodec};
use konsilium_node::node::{self, Inspect, NodeEvent};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::rpc::Request;
use konsilium_protocol::specialty::Specialty;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, kad, noise, request_response, tcp, yamux};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

#[derive(NetworkBehaviour)]
struct Stranger {
    rpc: request_response::Behaviour<RpcCodec>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

fn stranger() -> libp2p::Swarm<Stranger> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                peer,
                kad::store::MemoryStore::new(peer),
                kad::Config::new(StreamProtocol::new("/konsilium/kad/1")),
            );
            kad.set_mode(Some(kad::Mode::Client));
            Stranger {
                rpc: request_response::Behaviour::new(
                    [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
                kad,
            }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

fn peers_with(report: &serde_json::Value, admission: &str, peer: &str) -> Vec<serde_json::Value> {
    report
        .as_array()
        .expect("peers is a list")
        .iter()
        .filter(|p| p["admission"] == admission && p["org"] == peer)
        .cloned()
        .collect()
}

/// The stranger can open no Konsilium protocol but Hello, learns nothing
/// about the federation's members from Kademlia, is listed as pending while
/// it stays silent, and is cut and listed as refused after the Hello timeout.
/// Cut, it cannot connect again until the cool-down is over; then it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_nothing_but_hello_and_is_cut_when_silent() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let clock = std::sync::Arc::new(node::OffsetClock::default());
    let mut setup = regional.setup(vec![], vec![]);
    setup.clock = clock.clone();
    let r = node::start(setup).await.unwrap();
    let raddr = wait::listen_addr(&r, PATIENCE).await.unwrap();
    let d = node::start(district.setup(vec![raddr.clone()], vec![]))
        .await
        .unwrap();
    wait::converged(&[&r, &d], 2, PATIENCE).await.unwrap();
    let mut events = r.subscribe();

    let mut swarm = stranger();
    let me = *swarm.local_peer_id();
    // A stranger with an ed25519 key is named by the organization id its key
    // would have.
    let me_as_org = konsilium_protocol::identity::OrgId::from_peer_id(&me)
        .unwrap()
        .to_string();
    let node_peer = r.peer_id();
    swarm.dial(raddr.clone()).unwrap();
    swarm
        .behaviour_mut()
        .kad
        .add_address(&node_peer, raddr.clone());
    let rpc = swarm
        .behaviour_mut()
        .rpc
        .send_request(&node_peer, Request::Revocations(Vec::new()).into());
    let query = swarm
        .behaviour_mut()
        .kad
        .get_closest_peers(PeerId::random());

    let (mut rpc_refused, mut kad_done) = (None, None);
    let mut listed_pending = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let closed = loop {
        let event = tokio::select! {
            e = swarm.select_next_some() => e,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if !listed_pending {
                    let report = r.inspect(Inspect::Peers).await.unwrap();
                    let pending = peers_with(&report, "pending", &me_as_org);
                    if let Some(p) = pending.first() {
                        // No gossip mesh slot for a peer not admitted.
                        if let Some(score) = p["gossip_score"].as_f64() {
                            assert!(score < -80.0, "gossip score {score}");
                        }
                        listed_pending = true;
                    }
                }
                assert!(tokio::time::Instant::now() < deadline, "the stranger was never cut");
                continue;
            }
        };
        match event {
            SwarmEvent::Behaviour(StrangerEvent::Rpc(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if request_id == rpc => rpc_refused = Some(error.to_string()),
            SwarmEvent::Behaviour(StrangerEvent::Rpc(request_response::Event::Message {
                ..
            })) => panic!("the node answered an RPC request from a stranger"),
            SwarmEvent::Behaviour(StrangerEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            })) if id == query => {
                let found: Vec<PeerId> = match result {
                    Ok(ok) => ok.peers.into_iter().map(|p| p.peer_id).collect(),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => {
                        peers.into_iter().map(|p| p.peer_id).collect()
                    }
                };
                kad_done = Some(found);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == node_peer => break tokio::time::Instant::now(),
            _ => {}
        }
    };
    let refused = rpc_refused.expect("the RPC request failed");
    assert!(
        refused.to_lowercase().contains("protocol"),
        "RPC refused at negotiation: {refused}"
    );
    if let Some(found) = kad_done {
        assert!(
            !found.contains(&d.peer_id()),
            "Kademlia listed a federation member to a stranger"
        );
    }
    assert!(listed_pending, "the silent stranger was listed as pending");
    assert!(closed <= deadline);

    let reason = wait::event(&mut events, "the stranger refused", PATIENCE, |e| match e {
        NodeEvent::PeerRejected { peer, reason } if *peer == me => Some(reason.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert!(reason.contains("within 10 s"), "{reason}");
    let report = r.inspect(Inspect::Peers).await.unwrap();
    let refused = peers_with(&report, "refused", &me_as_org);
    assert_eq!(refused.len(), 1, "{report}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("certificate")),
        "{report}"
    );
    // The honest member is unaffected.
    assert!(r.status().await.unwrap().peers.contains(&district.org_id()));

    // Dialling again (each second, for `within`): blocked, it never even
    // shows as pending.
    let pending_after_redial = async |swarm: &mut libp2p::Swarm<Stranger>, within: Duration| {
        let until = tokio::time::Instant::now() + within;
        let (mut redial, mut check) = (tokio::time::Instant::now(), tokio::time::Instant::now());
        while tokio::time::Instant::now() < until {
            let now = tokio::time::Instant::now();
            if now >= redial {
                let _ = swarm.dial(raddr.clone());
                redial = now + Duration::from_secs(1);
            }
            if now >= check {
                let report = r.inspect(Inspect::Peers).await.unwrap();
                if !peers_with(&report, "pending", &me_as_org).is_empty() {
                    return true;
                }
                check = now + Duration::from_millis(100);
            }
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = tokio::time::sleep_until(redial.min(check)) => {}
            }
        }
        false
    };
    assert!(
        !pending_after_redial(&mut swarm, Duration::from_secs(3)).await,
        "a cut stranger got in again at once"
    );
    // After the cool-down it may try again (and is refused again if it
    // stays silent).
    clock.advance(Duration::from_secs(31));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        pending_after_redial(&mut swarm, PATIENCE).await,
        "the stranger stayed blocked after the cool-down"
    );
    d.shutdown().await;
    r.shutdown().await;
}

/// libp2p binds TCP with SO_REUSEPORT; a second node on a port in use must
/// refuse to start and name the port, not silently share the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_port_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let spec = |name: &str| OrgSpec::new(name, OrgLevel::District, "RU-VLG", &[]);
    let (a, b) = (fed.enrol(spec("First")), fed.enrol(spec("Second")));
    let first = node::start(a.setup(vec![], vec![])).await.unwrap();
    let taken = wait::listen_addr(&first, PATIENCE).await.unwrap();
    let port = wait::tcp_port(&taken).unwrap();
    let mut setup = b.setup(vec![], vec![]);
    setup.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()];
    let error = match node::start(setup).await {
        Ok(_) => panic!("a second node started on port {port}"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&format!("TCP port {port}")) && error.contains("already in use"),
        "{error}"
    );
    first.shutdown().await;
}
