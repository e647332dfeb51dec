//! Multi-node tests: real nodes (libp2p over TCP on 127.0.0.1, sled on disk)
//! in one process. Timeouts only guard against hangs; assertions are about
//! behaviour.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{self, NodeError, NodeEvent, NodeHandle, SendRequest, Target};
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

/// Finds `needle` anywhere in the files under `dir`.
fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            dir_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_reaches_its_recipient_and_only_it_can_open_it() {
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
        &[Specialty::Oncology],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let f = start(&federal, vec![], vec![]).await;
    let fa = addr(&f).await;
    let r = start(&regional, vec![fa.clone()], vec![]).await;
    let d = start(&district, vec![fa], vec![]).await;
    converge(&[&f, &r, &d], 3).await;

    let mut events = d.subscribe();
    let body = b"Questions for the federal oncologist; histology attached.".repeat(500);
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
        "routing picks the federal center"
    );
    delivered(&mut events, sent.id).await;
    let (header, opened) = f.open(sent.id).await.unwrap();
    assert_eq!(opened, body);
    assert_eq!(header.sender, district.org_id());
    assert!(
        matches!(r.open(sent.id).await, Err(NodeError::NotInInbox(_))),
        "the third node has nothing to open"
    );
    assert_eq!(
        d.status().await.unwrap().outbox,
        0,
        "the receipt emptied the outbox"
    );
    for n in [f, r, d] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_after_send_still_delivers_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Neurology],
    ));
    let s = start(&sender, vec![], vec![]).await;
    let r = start(&recipient, vec![addr(&s).await], vec![]).await;
    converge(&[&s, &r], 2).await;
    r.shutdown().await;

    // The recipient is down: the package can only wait in the outbox.
    let body = vec![0x42u8; 300_000];
    let sent = s
        .send(package(
            Target::Org(recipient.org_id()),
            Specialty::Neurology,
            OrgLevel::Regional,
            body.clone(),
        ))
        .await
        .unwrap();
    s.kill().await;

    let s = start(&sender, vec![], vec![]).await;
    let outbox = s.outbox().await.unwrap();
    assert_eq!(
        outbox
            .iter()
            .map(|e| e.package.header.id)
            .collect::<Vec<_>>(),
        vec![sent.id],
        "the package survived the crash"
    );
    let mut events = s.subscribe();
    let r = start(&recipient, vec![addr(&s).await], vec![]).await;
    delivered(&mut events, sent.id).await;
    assert_eq!(r.open(sent.id).await.unwrap().1, body);
    s.shutdown().await;
    r.shutdown().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_package_arrives_intact_and_the_relay_cannot_read_or_alter_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Federal neonatology center",
        OrgLevel::Federal,
        "RU-SPE",
        &[Specialty::Neonatology],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Regional perinatal center",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District maternity ward",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    let f = start(&federal, vec![ra.clone()], vec![]).await;
    let d = start(&district, vec![ra.clone()], vec![regional.org_id()]).await;
    converge(&[&f, &r, &d], 3).await;

    // 1. Through the relay, intact, and the relay's disk never holds plaintext.
    let marker = b"NEONATE-CASE-PLAINTEXT-MARKER-0001".to_vec();
    let body = marker.repeat(2_000);
    let mut relay_events = r.subscribe();
    let mut sender_events = d.subscribe();
    let sent = d
        .send(package(
            Target::Best,
            Specialty::Neonatology,
            OrgLevel::Federal,
            body.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(sent.next_hop, regional.org_id());
    wait_for(&mut relay_events, "custody at the relay", |e| {
        matches!(e, NodeEvent::Relaying { id, .. } if *id == sent.id).then_some(())
    })
    .await;
    delivered(&mut sender_events, sent.id).await;
    assert_eq!(f.open(sent.id).await.unwrap().1, body);
    r.shutdown().await;
    assert!(
        !dir_contains(&regional.data_dir, &marker),
        "the relay stored plaintext"
    );
    assert!(
        dir_contains(&district.data_dir, &sent.id.0)
            || dir_contains(&regional.data_dir, &sent.id.0),
        "the package id is on disk"
    );

    // 2. A relay whose storage flips a byte: the recipient refuses the package.
    f.shutdown().await;
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    d.dial(ra).await.unwrap();
    converge(&[&r, &d], 3).await;
    let mut relay_events = r.subscribe();
    let sent = d
        .send(package(
            Target::Org(federal.org_id()),
            Specialty::Neonatology,
            OrgLevel::Federal,
            body.clone(),
        ))
        .await
        .unwrap();
    wait_for(&mut relay_events, "custody at the relay", |e| {
        matches!(e, NodeEvent::Relaying { id, .. } if *id == sent.id).then_some(())
    })
    .await;
    r.shutdown().await;
    {
        let store = Store::open(&regional.data_dir.join("db")).unwrap();
        let mut entry = store
            .outbox_entry(&sent.id)
            .unwrap()
            .expect("relay holds the package");
        let at = entry.package.body.len() / 2;
        entry.package.body[at] ^= 0x01;
        store.put_outbox(&entry).unwrap();
        store.flush().unwrap();
    }
    let r = start(&regional, vec![], vec![]).await;
    let mut relay_events = r.subscribe();
    let f = start(&federal, vec![addr(&r).await], vec![]).await;
    // Tampering is a permanent refusal: the relay stops retrying.
    let error = wait_for(&mut relay_events, "the recipient to refuse", |e| match e {
        NodeEvent::DeliveryRefused { id, reason } if *id == sent.id => Some(reason.to_string()),
        _ => None,
    })
    .await;
    assert!(error.contains("failed authentication"), "{error}");
    let held = r.outbox().await.unwrap();
    let held = held
        .iter()
        .find(|e| e.package.header.id == sent.id)
        .unwrap();
    assert!(held.refused.as_ref().is_some_and(|r| r.is_permanent()));
    assert!(matches!(
        f.open(sent.id).await,
        Err(NodeError::NotInInbox(_))
    ));
    for n in [f, r, d] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_killed_mid_transfer_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional radiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Radiology],
    ));
    let s = start(&sender, vec![], vec![]).await;
    let sa = addr(&s).await;
    let r = start(&recipient, vec![sa.clone()], vec![]).await;
    converge(&[&s, &r], 2).await;

    let series: Vec<u8> = (0..96u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut sender_events = s.subscribe();
    let mut recipient_events = r.subscribe();
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Radiology, OrgLevel::Regional),
            body: b"CT series for a second opinion".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(series.clone())],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    let (blob, total) = wait_for(
        &mut recipient_events,
        "the transfer to start",
        |e| match e {
            NodeEvent::FetchStarted {
                blob,
                from: 0,
                total,
            } => Some((*blob, *total)),
            _ => None,
        },
    )
    .await;
    let partial = recipient.data_dir.join("blobs").join(format!(
        "{}.partial",
        blob.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let mut seen = 0;
    for _ in 0..20_000 {
        seen = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        seen > 0 && seen < total,
        "caught the transfer in the middle ({seen} of {total})"
    );
    r.kill().await;
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap();
    assert!(kept > 0 && kept < total);

    let r = start(&recipient, vec![sa], vec![]).await;
    let mut recipient_events = r.subscribe();
    let from = wait_for(
        &mut recipient_events,
        "the transfer to resume",
        |e| match e {
            NodeEvent::FetchStarted { blob: b, from, .. } if *b == blob => Some(*from),
            _ => None,
        },
    )
    .await;
    assert!(
        from >= kept,
        "resumed at {from}, {kept} bytes were already on disk: nothing was fetched twice"
    );
    delivered(&mut sender_events, sent.id).await;
    let out = tmp.path().join("restored.bin");
    assert_eq!(
        r.open_attachment(sent.id, 0, out.clone()).await.unwrap(),
        series.len() as u64
    );
    assert!(
        std::fs::read(&out).unwrap() == series,
        "the attachment arrived intact"
    );
    s.shutdown().await;
    r.shutdown().await;
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
async fn an_unreachable_recipient_is_served_through_the_regional_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let other = fed.enrol(OrgSpec::new(
        "Neighbouring district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Pediatrics],
    ));
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    let o = start(&other, vec![ra.clone()], vec![]).await;
    let d = start(&district, vec![ra.clone()], vec![regional.org_id()]).await;
    converge(&[&r, &o, &d], 3).await;
    o.shutdown().await;

    // Same region, so policy says direct; but the recipient is down.
    let mut events = d.subscribe();
    let sent = d
        .send(package(
            Target::Org(other.org_id()),
            Specialty::Pediatrics,
            OrgLevel::District,
            b"x-ray".to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(sent.next_hop, other.org_id());
    let relay = wait_for(&mut events, "the relay to take custody", |e| match e {
        NodeEvent::PackageInCustody { id, relay } if *id == sent.id => Some(*relay),
        _ => None,
    })
    .await;
    assert_eq!(relay, regional.org_id());
    // The recipient comes back, reachable only through the region's center.
    let o = start(&other, vec![ra], vec![]).await;
    delivered(&mut events, sent.id).await;
    assert_eq!(o.open(sent.id).await.unwrap().1, b"x-ray");
    for n in [r, o, d] {
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

/// A regional relay carries its own region's traffic, not anyone's: a
/// package between two other regions is refused for good, and the sender
/// stops retrying and shows why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refuses_what_its_policy_does_not_cover_and_the_sender_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let regional = fed.enrol(OrgSpec::new(
        "Regional center",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let moscow = fed.enrol(OrgSpec::new(
        "Moscow clinic",
        OrgLevel::Regional,
        "RU-MOW",
        &[],
    ));
    let spb = fed.enrol(OrgSpec::new(
        "Saint Petersburg center",
        OrgLevel::Federal,
        "RU-SPE",
        &[Specialty::Cardiology],
    ));
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    let m = start(&moscow, vec![ra.clone()], vec![regional.org_id()]).await;
    let s = start(&spb, vec![ra.clone()], vec![]).await;
    converge(&[&r, &m, &s], 3).await;
    let mut events = m.subscribe();
    let sent = m
        .send(package(
            Target::Org(spb.org_id()),
            Specialty::Cardiology,
            OrgLevel::Federal,
            b"case".to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(sent.next_hop, regional.org_id());
    let reason = wait_for(&mut events, "the relay to refuse", |e| match e {
        NodeEvent::DeliveryRefused { id, reason } if *id == sent.id => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(reason, konsilium_protocol::rpc::Refusal::NotRelayed { .. }),
        "{reason}"
    );
    let attempts = |outbox: Vec<konsilium_node::storage::store::OutboxEntry>| {
        let e = outbox
            .into_iter()
            .find(|e| e.package.header.id == sent.id)
            .expect("kept in the outbox to show why");
        assert!(e.refused.is_some());
        assert!(e.last_error.unwrap().contains("RU-VLG"));
        e.attempts
    };
    let before = attempts(m.outbox().await.unwrap());
    // The first retry would come 3 to 5 s later; none does.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(attempts(m.outbox().await.unwrap()), before);
    for n in [m, s, r] {
        n.shutdown().await;
    }
}

/// An attachment damaged at its source fails its hash at the recipient; a
/// second failure ends the transfer with the reason instead of fetching the
/// same bad bytes forever, and the sender stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_damaged_at_its_source_is_refused_not_fetched_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional cardiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let r = start(&recipient, vec![], vec![]).await;
    let ra = addr(&r).await;
    let s = start(&sender, vec![ra.clone()], vec![]).await;
    converge(&[&s, &r], 2).await;
    r.shutdown().await;

    let mut sender_events = s.subscribe();
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Cardiology, OrgLevel::Regional),
            body: b"ECG attached".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(vec![7u8; 300_000])],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    // The sender's disk flips a byte in the sealed attachment.
    let blob = std::fs::read_dir(sender.data_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 64)
        .expect("the sealed attachment is stored");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blob, bytes).unwrap();

    let r = start(&recipient, vec![], vec![]).await;
    s.dial(addr(&r).await).await.unwrap();
    let reason = wait_for(&mut sender_events, "the recipient to refuse", |e| match e {
        NodeEvent::DeliveryRefused { id, reason } if *id == sent.id => Some(reason.to_string()),
        _ => None,
    })
    .await;
    assert!(reason.contains("failed its hash check 2 times"), "{reason}");
    assert!(matches!(
        r.open(sent.id).await,
        Err(NodeError::NotInInbox(_))
    ));
    for n in [s, r] {
        n.shutdown().await;
    }
}

/// A sending node's sealed attachments are deleted once the recipient's
/// receipt arrives and the retention has passed; the recipient keeps its
/// copy and opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_attachments_are_removed_from_the_sender_after_their_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional radiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Radiology],
    ));
    let r = start(&recipient, vec![], vec![]).await;
    let mut setup = sender.setup(vec![addr(&r).await], vec![]);
    setup.keep_delivered = Duration::ZERO;
    let s = node::start(setup).await.unwrap();
    converge(&[&s, &r], 2).await;
    let mut events = s.subscribe();
    let image = vec![42u8; 2 << 20];
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Radiology, OrgLevel::Regional),
            body: b"X-ray".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(image.clone())],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    let blobs_at = |dir: &Path| {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
            .count()
    };
    assert_eq!(blobs_at(&sender.data_dir), 1);
    delivered(&mut events, sent.id).await;
    wait_for(&mut events, "the sent attachment to be removed", |e| {
        matches!(e, NodeEvent::AttachmentRemoved { .. }).then_some(())
    })
    .await;
    assert_eq!(blobs_at(&sender.data_dir), 0);
    assert_eq!(blobs_at(&recipient.data_dir), 1);
    let out = tmp.path().join("opened");
    assert_eq!(
        r.open_attachment(sent.id, 0, out.clone()).await.unwrap(),
        image.len() as u64
    );
    assert_eq!(std::fs::read(&out).unwrap(), image);
    for n in [s, r] {
        n.shutdown().await;
    }
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
