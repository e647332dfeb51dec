//! Who is in the federation: convergence and late joiners, scoped
//! candidates, refused organizations, QUIC and DNS-named bootstrap peers.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_converge_and_a_late_joiner_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let members = [
        fed.enrol(OrgSpec::new(
            "Federal cardiology center",
            OrgLevel::Federal,
            "RU-MOW",
            &[Specialty::Cardiology],
        )),
        fed.enrol(OrgSpec::new(
            "Vologda regional hospital",
            OrgLevel::Regional,
            "RU-VLG",
            &[Specialty::Oncology],
        )),
        fed.enrol(OrgSpec::new(
            "Arkhangelsk regional hospital",
            OrgLevel::Regional,
            "RU-ARK",
            &[Specialty::Neurology],
        )),
        fed.enrol(OrgSpec::new(
            "Sokol district hospital",
            OrgLevel::District,
            "RU-VLG",
            &[Specialty::Pediatrics],
        )),
        fed.enrol(OrgSpec::new(
            "Kotlas district hospital",
            OrgLevel::District,
            "RU-ARK",
            &[Specialty::Urology],
        )),
    ];
    let first = start(&members[0], vec![], vec![]).await;
    let first_addr = addr(&first).await;
    let mut nodes = vec![first];
    for m in &members[1..] {
        // A chain: each node knows only the previous one.
        let prev = addr(nodes.last().unwrap()).await;
        nodes.push(start(m, vec![prev], vec![]).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), 5).await;

    let late = fed.enrol(OrgSpec::new(
        "Late district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Rheumatology],
    ));
    let late_node = start(&late, vec![first_addr], vec![]).await;
    let mut all: Vec<&NodeHandle> = nodes.iter().collect();
    all.push(&late_node);
    converge(&all, 6).await;
    for n in nodes {
        n.shutdown().await;
    }
    late_node.shutdown().await;
}

/// A revocation handed to one node of a running federation reaches every
/// node within a few gossip heartbeats: the organization's record and
/// connections are gone everywhere, it cannot come back, and packages to
/// it are refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_node_of_a_running_federation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let specs = [
        ("Federal cardiology center", OrgLevel::Federal, "RU-MOW"),
        ("Vologda regional hospital", OrgLevel::Regional, "RU-VLG"),
        ("Sokol district hospital", OrgLevel::District, "RU-VLG"),
        ("Kirillov district hospital", OrgLevel::District, "RU-VLG"),
        ("Revoked district hospital", OrgLevel::District, "RU-VLG"),
    ];
    let members: Vec<Member> = specs
        .iter()
        .map(|(name, level, region)| {
            fed.enrol(OrgSpec::new(name, *level, region, &[Specialty::Cardiology]))
        })
        .collect();
    let first = start(&members[0], vec![], vec![]).await;
    let first_addr = addr(&first).await;
    let mut nodes = vec![first];
    for m in &members[1..] {
        nodes.push(start(m, vec![first_addr.clone()], vec![]).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), 5).await;
    let revoked = members[4].org_id();
    let notice = {
        let region = konsilium_protocol::cert::RegionCode::new("RU-VLG").unwrap();
        let issuer: &Issuer = fed.region(&region);
        issuer.revoke(
            1,
            node::now(),
            [LocalFederation::serial_of(&members[4])].into(),
        )
    };

    // Handed to the regional node only, as its operator's reload would.
    let started = std::time::Instant::now();
    assert_eq!(nodes[1].revoke(vec![notice.clone()]).await.unwrap(), 1);
    assert_eq!(
        nodes[1].revoke(vec![notice]).await.unwrap(),
        0,
        "already in force"
    );
    let (honest, gone) = nodes.split_at(4);
    let cut_off = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut done = true;
            for n in honest {
                let s = n.status().await.unwrap();
                done &= s.directory_size == 4 && !s.peers.contains(&revoked);
            }
            done &= gone[0].status().await.unwrap().peers.is_empty();
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(cut_off.is_ok(), "the revocation did not reach every node");
    println!(
        "revocation: every node dropped the organization in {} ms",
        started.elapsed().as_millis()
    );
    for n in honest {
        let refused = n
            .send(package(
                Target::Org(revoked),
                Specialty::Cardiology,
                OrgLevel::District,
                b"x".to_vec(),
            ))
            .await;
        match refused {
            Err(e @ NodeError::RefusedOrg { .. }) => {
                assert!(e.to_string().contains("revoked"), "{e}")
            }
            other => panic!("a package to a revoked organization: {other:?}"),
        }
    }
    // It heard the revocation too (each node that refused it sent it the
    // lists in force before cutting it): its node will not start on the
    // revoked certificate; started afresh, it is refused by everyone.
    let last = nodes.pop().unwrap();
    last.shutdown().await;
    let refused = node::start(members[4].setup(vec![first_addr.clone()], vec![])).await;
    match refused {
        Err(e) => assert!(e.to_string().contains("revoked"), "{e}"),
        Ok(_) => panic!("a node started on its revoked certificate"),
    }
    let mut afresh = members[4].setup(vec![first_addr], vec![]);
    afresh.data_dir = tmp.path().join("afresh");
    let again = node::start(afresh).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(again.status().await.unwrap().peers.is_empty());
    for n in &nodes {
        assert!(!n.status().await.unwrap().peers.contains(&revoked));
    }
    again.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertified_and_revoked_organizations_cannot_join() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let member = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let revoked = fed.enrol(OrgSpec::new(
        "Revoked district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    // A "federation" of its own: self-signed, unknown to the member.
    let mut rogue_fed = LocalFederation::new(&tmp.path().join("rogue"), node::now());
    let rogue = rogue_fed.enrol(OrgSpec::new(
        "Rogue clinic",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));

    let notice = {
        let region = konsilium_protocol::cert::RegionCode::new("RU-VLG").unwrap();
        let issuer: &Issuer = fed.region(&region);
        issuer.revoke(
            1,
            node::now(),
            [LocalFederation::serial_of(&revoked)].into(),
        )
    };
    let mut setup = member.setup(vec![], vec![]);
    setup.revocations = vec![notice];
    let m = node::start(setup).await.unwrap();
    let maddr = addr(&m).await;
    let mut events = m.subscribe();

    for outsider in [&rogue, &revoked] {
        let o = start(outsider, vec![maddr.clone()], vec![]).await;
        let reason = wait_for(&mut events, "the outsider to be refused", |e| match e {
            NodeEvent::PeerRejected { peer, reason } if *peer == o.peer_id() => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
        assert!(
            reason.contains("not a configured federation root") || reason.contains("revoked"),
            "{reason}"
        );
        let status = m.status().await.unwrap();
        assert!(!status.peers.contains(&outsider.org_id()));
        assert_eq!(
            status.directory_size, 1,
            "the outsider's record was not accepted"
        );
        // Refused and disconnected: the outsider ends up with no certified peer.
        let alone = tokio::time::timeout(PATIENCE, async {
            while !o.status().await.unwrap().peers.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(alone.is_ok(), "{} stayed connected", outsider.spec.name);
        o.shutdown().await;
    }
    m.shutdown().await;
}

/// A federation's configs list two bootstrap nodes: with the first one
/// down, a new node joins through the second and learns the whole
/// directory, the absent node's record included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_through_the_second_bootstrap_node_when_the_first_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let spec =
        |name: &str| OrgSpec::new(name, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]);
    let first = fed.enrol(spec("Bootstrap one"));
    let second = fed.enrol(spec("Bootstrap two"));
    let newcomer = fed.enrol(OrgSpec::new(
        "New district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let b1 = start(&first, vec![], vec![]).await;
    let a1 = addr(&b1).await;
    let b2 = start(&second, vec![a1.clone()], vec![]).await;
    let a2 = addr(&b2).await;
    converge(&[&b1, &b2], 2).await;
    b1.shutdown().await;
    let late = start(&newcomer, vec![a1, a2], vec![]).await;
    converge(&[&b2, &late], 3).await;
    assert_eq!(late.status().await.unwrap().peers, vec![second.org_id()]);
    late.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_district_asks_its_regional_center_for_candidates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Federal oncology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology],
    ));
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
        &[],
    ));
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    let f = start(&federal, vec![ra.clone()], vec![]).await;
    let mut scoped = district.setup(vec![ra], vec![regional.org_id()]);
    scoped.scope = konsilium_node::node::DirectoryScope::Region;
    let d = node::start(scoped).await.unwrap();
    converge(&[&r, &f], 3).await;
    // Gossip and anti-entropy have run; the district keeps only its region.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = d.status().await.unwrap();
    assert_eq!(
        status.directory_size, 2,
        "own record and the regional center's; peers {:?}",
        status.peers
    );

    let mut events = d.subscribe();
    let body = b"Which adjuvant regimen?".to_vec();
    let sent = d
        .send(package(
            Target::Best,
            Specialty::Oncology,
            OrgLevel::Federal,
            body.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(
        sent.recipient,
        federal.org_id(),
        "the regional center named the federal candidate"
    );
    delivered(&mut events, sent.id).await;
    assert_eq!(f.open(sent.id).await.unwrap().1, body);
    assert_eq!(d.status().await.unwrap().directory_size, 3);
    for n in [f, r, d] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_also_speak_quic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let a = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Urology],
    ));
    let b = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let quic = |m: &Member, bootstrap: Vec<Multiaddr>| {
        let mut setup = m.setup(bootstrap, vec![]);
        setup.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
        setup
    };
    let na = node::start(quic(&a, vec![])).await.unwrap();
    let qa = addr(&na).await;
    assert!(qa.iter().any(|p| matches!(p, Protocol::QuicV1)), "{qa}");
    let nb = node::start(quic(&b, vec![qa])).await.unwrap();
    converge(&[&na, &nb], 2).await;
    let mut events = nb.subscribe();
    let sent = nb
        .send(package(
            Target::Best,
            Specialty::Urology,
            OrgLevel::Regional,
            b"over QUIC".to_vec(),
        ))
        .await
        .unwrap();
    delivered(&mut events, sent.id).await;
    assert_eq!(na.open(sent.id).await.unwrap().1, b"over QUIC");
    na.shutdown().await;
    nb.shutdown().await;
}

/// Deployments name bootstrap peers by DNS name: a node dials another by
/// `/dns4/localhost/...` and they converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_peer_named_by_dns_is_dialled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let spec = |name: &str| OrgSpec::new(name, OrgLevel::District, "RU-VLG", &[]);
    let (a, b) = (fed.enrol(spec("First")), fed.enrol(spec("Second")));
    let first = start(&a, vec![], vec![]).await;
    let port = wait::tcp_port(&addr(&first).await).unwrap();
    let by_name: Multiaddr = format!("/dns4/localhost/tcp/{port}/p2p/{}", first.peer_id())
        .parse()
        .unwrap();
    let second = start(&b, vec![by_name], vec![]).await;
    converge(&[&first, &second], 2).await;
    for n in [first, second] {
        n.shutdown().await;
    }
}

/// A directory changes a few times a day, so honest mesh peers deliver
/// almost nothing, and gossipsub counts that against them once they have
/// been in the mesh a few seconds. Their time in the mesh must outweigh
/// it: were they scored below zero, a stricter threshold could drop their
/// gossip, revocations included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_honest_peers_keep_their_gossip_score() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let r = fed.enrol(OrgSpec::new(
        "Vologda regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let federal = start(&f, vec![], vec![]).await;
    let regional = start(&r, vec![addr(&federal).await], vec![]).await;
    converge(&[&federal, &regional], 2).await;
    // Well past gossipsub's 5 s activation of the delivery requirement,
    // at 200 ms heartbeats.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for (node, other) in [(&federal, &regional), (&regional, &federal)] {
        let report = node.inspect(Inspect::Peers).await.unwrap();
        let score = (report.as_array().unwrap().iter())
            .find(|p| p["org"] == other.org().to_string())
            .and_then(|p| p["gossip_score"].as_f64())
            .unwrap_or_else(|| panic!("no gossip score for the other node: {report}"));
        assert!(score >= 0.0, "gossip score {score}");
    }
    federal.shutdown().await;
    regional.shutdown().await;
}
