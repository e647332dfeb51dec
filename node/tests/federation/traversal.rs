//! A node declared behind NAT publishes only relayed addresses, held by
//! reservations on the federation's bootstrap nodes; peers reach it through
//! a relay, the relayed connection is upgraded to a direct one by hole
//! punching, and reservations move when a relay goes. (Real NATs, where
//! hole punching can fail, are the NAT matrix's job: `deploy/nat-matrix.sh`.)

use super::*;
use konsilium_node::config::{NodeRole, Openness};
use konsilium_protocol::directory::DirectoryRecord;
use konsilium_protocol::reach::Reachability;
use serde_json::Value;

fn bootstrap_role() -> Openness {
    Openness {
        role: NodeRole::Bootstrap,
        reachability: Some(Reachability::Public),
        serves_others: true,
    }
}

async fn start_bootstrap(member: &Member, peers: Vec<Multiaddr>, port: u16) -> NodeHandle {
    let mut setup = member.setup(peers, vec![]);
    setup.openness = bootstrap_role();
    setup.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()];
    node::start(setup).await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bootstrap_addr(member: &Member, port: u16) -> Multiaddr {
    format!(
        "/ip4/127.0.0.1/tcp/{port}/p2p/{}",
        member.org_id().to_peer_id()
    )
    .parse()
    .unwrap()
}

fn record_of(r: &konsilium_protocol::directory::SignedRecord) -> DirectoryRecord {
    r.decode_unverified().unwrap()
}

fn org_of(record: &DirectoryRecord) -> OrgId {
    record.chain.org.decode_unverified().unwrap().org
}

async fn inspect(node: &NodeHandle, what: Inspect) -> Value {
    node.inspect(what).await.unwrap()
}

/// The relays (organization ids) the node holds an active reservation on.
async fn active_reservations(node: &NodeHandle) -> Vec<String> {
    let status = inspect(node, Inspect::Status).await;
    let mut relays: Vec<String> = status["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "active")
        .map(|r| r["relay"].as_str().unwrap().to_owned())
        .collect();
    relays.sort();
    relays
}

async fn until(what: &str, check: impl AsyncFnMut() -> bool) {
    until_within(PATIENCE, what, check).await
}

async fn until_within(patience: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(patience, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn link_to(node: &NodeHandle, org: OrgId) -> Option<String> {
    let peers = inspect(node, Inspect::Peers).await;
    peers.as_array().unwrap().iter().find_map(|p| {
        (p["org"] == org.to_string() && p["admission"] == "admitted")
            .then(|| p["link"].as_str().map(str::to_owned))
            .flatten()
    })
}

/// The rung of each open connection to the organization.
async fn connections_to(node: &NodeHandle, org: OrgId) -> Vec<String> {
    let peers = inspect(node, Inspect::Peers).await;
    (peers.as_array().unwrap().iter())
        .filter(|p| p["org"] == org.to_string() && p["admission"] == "admitted")
        .flat_map(|p| p["connections"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_nat_is_reached_through_relays_punched_through_and_moves_its_reservations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let infra = |name: &str| OrgSpec::new(name, OrgLevel::Regional, "RU-VLG", &[]);
    let (one, two, three) = (
        fed.enrol(infra("Bootstrap one")),
        fed.enrol(infra("Bootstrap two")),
        fed.enrol(infra("Bootstrap three")),
    );
    let hospital = fed.enrol(OrgSpec::new(
        "District hospital behind NAT",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Urology],
    ));
    let center = fed.enrol(OrgSpec::new(
        "Regional center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let ports = [free_port(), free_port(), free_port()];
    let addrs: Vec<Multiaddr> = [&one, &two, &three]
        .iter()
        .zip(ports)
        .map(|(m, p)| bootstrap_addr(m, p))
        .collect();
    let b1 = start_bootstrap(&one, vec![], ports[0]).await;
    let b2 = start_bootstrap(&two, vec![addrs[0].clone()], ports[1]).await;

    // Says it is behind NAT: reachable through relays.
    let mut setup = hospital.setup(addrs.clone(), vec![]);
    setup.openness.reachability = Some(Reachability::Private);
    let h = node::start(setup).await.unwrap();
    let mut expected = vec![one.org_id().to_string(), two.org_id().to_string()];
    expected.sort();
    until("reservations on both bootstrap nodes", async || {
        active_reservations(&h).await == expected
    })
    .await;
    let status = inspect(&h, Inspect::Status).await;
    assert_eq!(status["nat"], "private");
    assert_eq!(status["role"], "organization");
    for r in status["reservations"].as_array().unwrap() {
        let address = r["addresses"][0].as_str().expect("a relayed address");
        assert!(address.contains("/p2p-circuit"), "{address}");
    }

    // The center is behind NAT too: neither can dial the other's own
    // addresses, both know only relayed ones.
    let mut setup = center.setup(vec![addrs[0].clone()], vec![]);
    setup.openness.reachability = Some(Reachability::Private);
    let c = node::start(setup).await.unwrap();
    converge(&[&h, &c], 2).await;
    let record = c
        .records()
        .await
        .unwrap()
        .iter()
        .map(record_of)
        .find(|r| org_of(r) == hospital.org_id())
        .unwrap();
    let published = &record.addresses;
    assert!(!published.is_empty());
    assert!(
        published
            .iter()
            .all(|a| a.iter().any(|p| p == Protocol::P2pCircuit)),
        "{published:?}"
    );

    let (urology, district) = (Specialty::Urology, OrgLevel::District);
    deliver(
        &c,
        hospital.org_id(),
        urology,
        district,
        b"Ultrasound findings?",
    )
    .await;
    // The circuit was the way in; hole punching then made a direct
    // connection (on loopback nothing stops it).
    until("a hole-punched connection", async || {
        link_to(&c, hospital.org_id()).await.as_deref() == Some("hole-punched")
    })
    .await;
    // The hospital learns it from its own side of the exchange, which may
    // finish a moment later.
    until("the hospital's hole-punched connection", async || {
        link_to(&h, center.org_id()).await.as_deref() == Some("hole-punched")
    })
    .await;
    // The operator's end-to-end check says the same.
    let probe = c.probe(hospital.org_id(), PATIENCE).await.unwrap();
    assert_eq!(probe.link.as_deref(), Some("hole-punched"));
    assert_eq!(probe.org, hospital.org_id().to_string());
    assert!(probe.round_trip_ms > 0.0);
    // The circuit closes beside the direct connection (requests would
    // otherwise take turns on the two), on whichever side closes it first.
    for (node, other) in [(&c, hospital.org_id()), (&h, center.org_id())] {
        until("the relayed circuit to close", async || {
            let links = connections_to(node, other).await;
            !links.is_empty() && links.iter().all(|l| l != "relayed")
        })
        .await;
    }
    // DCUtR tells the side whose dial made the connection.
    let metrics = h.metrics().await.unwrap() + &c.metrics().await.unwrap();
    assert!(
        metrics.contains("konsilium_hole_punches_total{result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("konsilium_peer_links{link=\"hole-punched\"} 1"),
        "{metrics}"
    );
    let relays = b1.metrics().await.unwrap() + &b2.metrics().await.unwrap();
    assert!(
        relays.contains("konsilium_relay_served_total{event=\"circuit_accepted\"}"),
        "{relays}"
    );

    // The first bootstrap node goes; a third comes up at an address the
    // hospital's config already lists. Its reservation moves there. The
    // third often reaches the hospital first through the second's relay:
    // the hospital still dials it at its own address, and reserves there.
    b1.shutdown().await;
    let b3 = start_bootstrap(&three, vec![addrs[1].clone()], ports[2]).await;
    let mut expected = vec![two.org_id().to_string(), three.org_id().to_string()];
    expected.sort();
    // The hospital's tries at the third address backed off while it was
    // down, doubling up to reach's 120 s maximum (reached when the steps
    // before took long on a loaded machine): it may wait that long again.
    let backoff = konsilium_protocol::reach::Config::default().max_retry;
    let patience = backoff + Duration::from_secs(30);
    until_within(
        patience,
        "reservations on the second and third",
        async || active_reservations(&h).await == expected,
    )
    .await;

    // A new node whose first bootstrap peer is down joins through the
    // second and reaches the hospital.
    let late_member = fed.enrol(OrgSpec::new(
        "Federal center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology],
    ));
    let late = start(&late_member, addrs[..2].to_vec(), vec![]).await;
    converge(&[&h, &c, &late], 3).await;
    deliver(
        &late,
        hospital.org_id(),
        urology,
        district,
        b"Second opinion",
    )
    .await;

    // Bootstrap nodes take no packages: they are not in the directory at
    // all, and one asked directly refuses.
    assert!(
        c.records()
            .await
            .unwrap()
            .iter()
            .all(|r| ![one.org_id(), two.org_id(), three.org_id()]
                .contains(&org_of(&record_of(r))))
    );
    for n in [late, c, h, b2, b3] {
        n.shutdown().await;
    }
}
