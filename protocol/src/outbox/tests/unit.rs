//! One machine at a time: receipts that must not count, and the relay's
//! decision on what it carries.

use super::sim::Dir;
use super::*;
use crate::cert::OrgLevel;
use crate::delivery::Receipt;
use crate::seal::{EnvelopeHeader, PACKAGE_VERSION, RoutingHeader, SealedPackage};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::testkit::{TestFederation, TestOrg};
use crate::urgency::Urgency;

struct World {
    orgs: Vec<TestOrg>,
    dir: Dir,
}

/// Orgs 0 and 1 in RU-VLG, 2 and 3 in RU-MOW, 4 revoked, 5 unknown.
fn world() -> World {
    let mut fed = TestFederation::new("outbox-unit");
    let regions = ["RU-VLG", "RU-VLG", "RU-MOW", "RU-MOW", "RU-VLG", "RU-VLG"];
    let orgs: Vec<TestOrg> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| fed.org(i as u64 + 1, OrgLevel::District, r, &[]))
        .collect();
    let mut dir = Dir::default();
    for org in &orgs[..5] {
        dir.regions.insert(org.id(), org.region.clone());
    }
    dir.revoked.insert(orgs[4].id());
    World { orgs, dir }
}

fn package(from: &TestOrg, to: &TestOrg, id: u8) -> SealedPackage {
    let header = EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([id; 16]),
        sender: from.id(),
        recipient: to.id(),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::District,
            urgency: Urgency::Planned,
            region: None,
        },
        created: NOW,
        expires: at(DAY),
        attachments: Vec::new(),
    };
    crate::seal::seal(header, &from.sealing, &to.sealing.public(), [id; 32], b"x").unwrap()
}

fn machine(w: &World, me: usize, relay: Option<usize>) -> Outbox {
    let config = Config {
        me: w.orgs[me].id(),
        region: w.orgs[me].region.clone(),
        relay: relay.map(|r| w.orgs[r].id()),
        custody: Custody::DEFAULT,
    };
    Outbox::new(config, 0, [])
}

fn drain(outbox: &mut Outbox) -> Vec<Output> {
    std::iter::from_fn(|| outbox.poll_output()).collect()
}

#[test]
fn only_the_recipients_receipt_for_these_bytes_counts_and_only_once() {
    let w = world();
    let mut a = machine(&w, 0, None);
    let p = package(&w.orgs[0], &w.orgs[1], 1);
    let entry = a.entry_for(NOW, PackageMeta::of(&p), &w.dir);
    a.enqueue(NOW, entry.clone()).unwrap();
    assert_eq!(
        a.enqueue(NOW, entry),
        Err(OutboxError::AlreadyQueued(p.header.id))
    );
    a.handle_peer_ready(NOW, w.orgs[1].id());
    let token = match drain(&mut a).as_slice() {
        [.., Output::Deliver { token, .. }] => *token,
        other => panic!("a delivery: {other:?}"),
    };
    // A relay (or anyone but the recipient) cannot fake delivery.
    let forged = Signed::sign(&w.orgs[2].identity, &Receipt::for_package(&p, NOW));
    a.handle_response(NOW, token, Response::Receipt(forged.clone()));
    let out = drain(&mut a);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Retry {
            error: Failure::BadReceipt { .. },
            ..
        })
    )));
    assert!(!out.iter().any(|o| matches!(o, Output::Remove(_))));
    assert!(matches!(
        a.handle_receipt(NOW, forged),
        Err(OutboxError::BadReceipt { .. })
    ));
    // The recipient's receipt for other bytes does not count either.
    let mut other = p.clone();
    other.body[0] ^= 1;
    let wrong = Signed::sign(&w.orgs[1].identity, &Receipt::for_package(&other, NOW));
    assert!(a.handle_receipt(NOW, wrong).is_err());
    assert!(a.get(&p.header.id).is_some());

    let good = Signed::sign(&w.orgs[1].identity, &Receipt::for_package(&p, NOW));
    a.handle_receipt(NOW, good.clone()).unwrap();
    let out = drain(&mut a);
    assert!(matches!(out[0], Output::Event(Event::Delivered { .. })));
    assert_eq!(out[1], Output::Remove(p.header.id));
    // A replay, and a late answer to the old request, change nothing.
    assert_eq!(
        a.handle_receipt(NOW, good.clone()),
        Err(OutboxError::NotQueued(p.header.id))
    );
    a.handle_response(NOW, token, Response::Receipt(good));
    assert!(drain(&mut a).is_empty());
    assert!(a.is_empty());
}

#[test]
fn a_relay_carries_its_regions_traffic_for_known_unrevoked_recipients() {
    let w = world();
    let relay = machine(&w, 0, None);
    let (vlg, mow, mow2) = (&w.orgs[1], &w.orgs[2], &w.orgs[3]);
    let inbound = |from: &TestOrg, to: &TestOrg, id| {
        relay.inbound(NOW, from.id(), &package(from, to, id), &w.dir)
    };
    // Into the region, out of it, within it.
    assert_eq!(inbound(mow, vlg, 1), Inbound::Relay);
    assert_eq!(inbound(vlg, mow, 2), Inbound::Relay);
    assert_eq!(
        inbound(vlg, &w.orgs[4], 3),
        refused(Refusal::Revoked(w.orgs[4].id()))
    );
    assert_eq!(
        inbound(vlg, &w.orgs[5], 4),
        refused(Refusal::UnknownRecipient(w.orgs[5].id()))
    );
    // Between two other regions' organizations: not this relay's traffic.
    assert!(matches!(
        inbound(mow, mow2, 5),
        Inbound::Answer(Response::Refused(Refusal::NotRelayed { .. }))
    ));
    assert_eq!(inbound(vlg, &w.orgs[0], 6), Inbound::ForUs);
    // Expired on arrival.
    let p = package(vlg, mow, 7);
    assert!(matches!(
        relay.inbound(at(2 * DAY), vlg.id(), &p, &w.dir),
        Inbound::Answer(Response::Refused(Refusal::Invalid(_)))
    ));
}

fn refused(refusal: Refusal) -> Inbound {
    Inbound::Answer(Response::Refused(refusal))
}

#[test]
fn a_relay_answers_a_sender_checking_back_from_what_it_holds() {
    let w = world();
    let mut relay = machine(&w, 0, None);
    let (from, to) = (&w.orgs[1], &w.orgs[2]);
    let p = package(from, to, 1);
    let entry = relay.entry_for(NOW, PackageMeta::of(&p), &w.dir);
    assert_eq!((entry.origin, entry.next_hop), (Origin::Relay, to.id()));
    relay.enqueue(NOW, entry).unwrap();
    let held = relay.inbound(NOW, from.id(), &p, &w.dir);
    assert_eq!(held, Inbound::Answer(Response::Custody));
    relay.handle_peer_ready(NOW, to.id());
    let token = drain(&mut relay)
        .into_iter()
        .find_map(|o| match o {
            Output::Deliver { token, .. } => Some(token),
            _ => None,
        })
        .expect("forwarded");
    let reason = Refusal::Invalid("tampered".into());
    relay.handle_response(NOW, token, Response::Refused(reason.clone()));
    let held = relay.inbound(NOW, from.id(), &p, &w.dir);
    assert_eq!(held, refused(reason));
}

#[test]
fn our_own_packages_go_straight_within_the_region_and_through_the_relay_beyond_it() {
    let w = world();
    let a = machine(&w, 1, Some(0));
    let hop = |to: usize| {
        let p = package(&w.orgs[1], &w.orgs[to], to as u8);
        a.entry_for(NOW, PackageMeta::of(&p), &w.dir).next_hop
    };
    assert_eq!(hop(0), w.orgs[0].id(), "to the relay itself: straight");
    assert_eq!(hop(2), w.orgs[0].id());
    assert_eq!(hop(5), w.orgs[5].id(), "unknown region: straight, as today");
    let alone = machine(&w, 1, None);
    let p = package(&w.orgs[1], &w.orgs[2], 9);
    assert_eq!(
        alone.entry_for(NOW, PackageMeta::of(&p), &w.dir).next_hop,
        w.orgs[2].id()
    );
}

#[test]
fn a_relay_is_done_with_a_package_once_the_next_hop_holds_it() {
    let w = world();
    let mut relay = machine(&w, 0, None);
    let (from, to) = (&w.orgs[1], &w.orgs[2]);
    let p = package(from, to, 1);
    let entry = relay.entry_for(NOW, PackageMeta::of(&p), &w.dir);
    relay.enqueue(NOW, entry).unwrap();
    relay.handle_peer_ready(NOW, to.id());
    let token = drain(&mut relay)
        .into_iter()
        .find_map(|o| match o {
            Output::Deliver { token, .. } => Some(token),
            _ => None,
        })
        .expect("forwarded");
    relay.handle_response(NOW, token, Response::Custody);
    let id = p.header.id;
    assert_eq!(
        drain(&mut relay),
        vec![
            Output::Remove(id),
            Output::Event(Event::Custody { id, relay: to.id() })
        ]
    );
    assert!(relay.is_empty());
    assert_eq!(relay.poll_timeout(), None);
}

/// A parcel's receipts are checked together; a forged one among them
/// fails only its own package, and the others are delivered all the same.
#[test]
fn a_parcels_receipts_count_each_for_its_own_package() {
    let w = world();
    let mut a = machine(&w, 0, None);
    let hop = w.orgs[1].id();
    a.handle_peer_ready(NOW, hop);
    let packages: Vec<SealedPackage> = (0..4).map(|i| package(&w.orgs[0], &w.orgs[1], i)).collect();
    for p in &packages {
        let entry = a.entry_for(NOW, PackageMeta::of(p), &w.dir);
        a.enqueue(NOW, entry).unwrap();
    }
    let sent = deliveries(&drain(&mut a));
    assert_eq!(sent.len(), 4);
    let receipt = |id: PackageId, signer: &TestOrg| {
        let p = packages.iter().find(|p| p.header.id == id).unwrap();
        Response::Receipt(Signed::sign(
            &signer.identity,
            &Receipt::for_package(p, NOW),
        ))
    };
    // The first two answered in one parcel, all good.
    let good: Vec<_> = (sent[..2].iter())
        .map(|&(token, id)| (token, receipt(id, &w.orgs[1])))
        .collect();
    a.handle_answers(NOW, good);
    let delivered = |out: &[Output]| -> Vec<PackageId> {
        (out.iter())
            .filter_map(|o| match o {
                Output::Event(Event::Delivered { id, .. }) => Some(*id),
                _ => None,
            })
            .collect()
    };
    assert_eq!(delivered(&drain(&mut a)), [sent[0].1, sent[1].1]);
    // The other two: one receipt forged by another organization.
    let (forged, honest) = (sent[2], sent[3]);
    let answers = vec![
        (forged.0, receipt(forged.1, &w.orgs[2])),
        (honest.0, receipt(honest.1, &w.orgs[1])),
    ];
    a.handle_answers(NOW, answers);
    let out = drain(&mut a);
    assert_eq!(delivered(&out), [honest.1]);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::Retry { id, error: Failure::BadReceipt { .. } }) if *id == forged.1
    )));
    assert!(
        a.get(&forged.1).is_some(),
        "the forged receipt's package waits"
    );
    assert_eq!(a.len(), 1);
}

fn deliveries(out: &[Output]) -> Vec<(Token, PackageId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Deliver { token, id, .. } => Some((*token, *id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_beyond_the_window_waits_for_answers_instead_of_failing() {
    let w = world();
    let mut a = machine(&w, 0, None);
    let hop = w.orgs[1].id();
    a.handle_peer_ready(NOW, hop);
    let packages: Vec<SealedPackage> = (0..WINDOW + 4)
        .map(|i| package(&w.orgs[0], &w.orgs[1], i as u8))
        .collect();
    for p in &packages {
        let entry = a.entry_for(NOW, PackageMeta::of(p), &w.dir);
        a.enqueue(NOW, entry).unwrap();
    }
    let out = drain(&mut a);
    let first = deliveries(&out);
    assert_eq!(first.len(), WINDOW, "a window's worth goes out");
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::Retry { .. })))
    );
    // The rest wait for answers, not for a time: nothing to wake for.
    assert_eq!(a.poll_timeout(), None);

    // A receipt makes room for one more, which goes in the same step
    // instead of waiting for a timeout.
    let (token, id) = first[0];
    let p = packages.iter().find(|p| p.header.id == id).unwrap();
    let receipt = Signed::sign(&w.orgs[1].identity, &Receipt::for_package(p, NOW));
    a.handle_response(NOW, token, Response::Receipt(receipt));
    let next = deliveries(&drain(&mut a));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, packages[WINDOW].header.id, "oldest first");
    assert_eq!(a.poll_timeout(), None, "nothing left due");

    // A failed request makes room too (its own package backs off).
    a.handle_failure(NOW, first[1].0, "stream reset");
    let next = deliveries(&drain(&mut a));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, packages[WINDOW + 1].header.id);

    // So does a receipt that came another way (through a relay) for a
    // package whose request is still out.
    let (_, id) = first[2];
    let p = packages.iter().find(|p| p.header.id == id).unwrap();
    let receipt = Signed::sign(&w.orgs[1].identity, &Receipt::for_package(p, NOW));
    a.handle_receipt(NOW, receipt).unwrap();
    let next = deliveries(&drain(&mut a));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, packages[WINDOW + 2].header.id);

    // The hop gone: what it still held is due at once (and dialled for),
    // not left waiting for answers that will not come.
    a.handle_peer_gone(hop);
    assert_eq!(a.poll_timeout(), Some(NOW));
    a.handle_timeout(NOW);
    let out = drain(&mut a);
    assert!(out.contains(&Output::Dial { to: hop }), "{out:?}");
    assert!(deliveries(&out).is_empty());
}

fn relay_holding(w: &World, custody: Custody) -> Outbox {
    let config = Config {
        custody,
        ..machine(w, 0, None).config
    };
    Outbox::new(config, 0, [])
}

/// Takes `p` into the relay's custody as the node would: asked, then queued.
fn carry(relay: &mut Outbox, w: &World, from: &TestOrg, p: &SealedPackage) {
    assert_eq!(relay.inbound(NOW, from.id(), p, &w.dir), Inbound::Relay);
    let entry = relay.entry_for(NOW, PackageMeta::of(p), &w.dir);
    relay.enqueue(NOW, entry).unwrap();
}

fn is_transient(inbound: &Inbound) -> bool {
    matches!(
        inbound,
        Inbound::Answer(Response::Refused(Refusal::Transient(_)))
    )
}

#[test]
fn a_relay_holds_at_most_its_bound_for_each_sender_and_takes_more_once_delivered() {
    let w = world();
    let (vlg, mow) = (&w.orgs[1], &w.orgs[2]);
    let bound = Custody {
        packages: 2,
        bytes: 1 << 30,
    };
    let mut relay = relay_holding(&w, bound);
    let (first, second, third) = (
        package(vlg, mow, 1),
        package(vlg, mow, 2),
        package(vlg, mow, 3),
    );
    carry(&mut relay, &w, vlg, &first);
    carry(&mut relay, &w, vlg, &second);
    let bytes = PackageMeta::of(&first).bytes + PackageMeta::of(&second).bytes;
    assert_eq!(relay.carried_for(&vlg.id()), (2, bytes));

    // A third from the same sender waits at the sender; another sender's
    // package is still taken.
    let full = relay.inbound(NOW, vlg.id(), &third, &w.dir);
    assert!(is_transient(&full), "{full:?}");
    carry(&mut relay, &w, mow, &package(mow, vlg, 4));
    // Asking again about one held is still answered with custody.
    let held = relay.inbound(NOW, vlg.id(), &first, &w.dir);
    assert_eq!(held, Inbound::Answer(Response::Custody));

    // The bound holds across a restart: the stored entries count again.
    let entries: Vec<Entry> = [&first, &second]
        .iter()
        .map(|p| relay.entry_for(NOW, PackageMeta::of(p), &w.dir))
        .collect();
    let restarted = Outbox::new(relay.config.clone(), 0, entries.clone());
    assert_eq!(restarted.carried_for(&vlg.id()), (2, bytes));
    assert!(is_transient(&restarted.inbound(
        NOW,
        vlg.id(),
        &third,
        &w.dir
    )));

    // One delivered: room for the third.
    relay.handle_peer_ready(NOW, mow.id());
    let token = drain(&mut relay)
        .into_iter()
        .find_map(|o| match o {
            Output::Deliver { token, id, .. } if id == first.header.id => Some(token),
            _ => None,
        })
        .expect("the first forwarded");
    let receipt = Signed::sign(&mow.identity, &Receipt::for_package(&first, NOW));
    relay.handle_response(NOW, token, Response::Receipt(receipt));
    assert_eq!(relay.carried_for(&vlg.id()).0, 1);
    carry(&mut relay, &w, vlg, &third);
}

#[test]
fn a_relay_bounds_the_bytes_it_holds_for_a_sender_and_refuses_for_good_what_never_fits() {
    let w = world();
    let (vlg, mow) = (&w.orgs[1], &w.orgs[2]);
    let size = PackageMeta::of(&package(vlg, mow, 1)).bytes;
    let mut relay = relay_holding(
        &w,
        Custody {
            packages: 100,
            bytes: 2 * size + size / 2,
        },
    );
    carry(&mut relay, &w, vlg, &package(vlg, mow, 1));
    carry(&mut relay, &w, vlg, &package(vlg, mow, 2));
    let over = relay.inbound(NOW, vlg.id(), &package(vlg, mow, 3), &w.dir);
    assert!(is_transient(&over), "{over:?}");

    // Larger than all one sender may have held: no use asking again.
    let tiny = relay_holding(
        &w,
        Custody {
            packages: 100,
            bytes: size - 1,
        },
    );
    match tiny.inbound(NOW, vlg.id(), &package(vlg, mow, 1), &w.dir) {
        Inbound::Answer(Response::Refused(r @ Refusal::NotRelayed { .. })) => {
            assert!(r.is_permanent());
            assert!(r.to_string().contains("more than"), "{r}");
        }
        other => panic!("refused for good: {other:?}"),
    }
}

#[test]
fn a_relay_takes_a_package_only_from_its_sender() {
    let w = world();
    let (vlg, mow, mow2) = (&w.orgs[1], &w.orgs[2], &w.orgs[3]);
    let relay = machine(&w, 0, None);
    // A member of the region hands over a package naming another sender
    // (the header is not signed for the relay): the deliverer would make
    // the relay hold it on the named sender's account.
    let named = package(mow2, vlg, 1);
    match relay.inbound(NOW, mow.id(), &named, &w.dir) {
        Inbound::Answer(Response::Refused(Refusal::NotRelayed { policy, .. })) => {
            assert!(policy.contains("only from its sender"), "{policy}")
        }
        other => panic!("refused: {other:?}"),
    }
    assert_eq!(
        relay.inbound(NOW, mow2.id(), &named, &w.dir),
        Inbound::Relay
    );
}
