//! Packages carried by a regional relay: intact and unreadable to it,
//! unreachable recipients served, and what its policy does not cover refused.

use super::*;

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
