//! Tampered, truncated, misaddressed, expired and replayed packages from a
//! certified sender: each refused with a permanent reason, a replay never
//! taken in twice, also after the recipient restarts.

use super::*;
use konsilium_node::net::budget::Framed;
use konsilium_node::net::codec::Inbound;
use konsilium_node::node::{SendRequest, Target};
use konsilium_protocol::delivery::Receipt;
use konsilium_protocol::outbox::{Custody, MAX_PARCEL};
use konsilium_protocol::rpc::{DeliveryAnswer, Refusal};
use konsilium_protocol::seal::{
    self, BlobRef, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage,
};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;

fn sealed(from: &Member, to: &Member, n: u8, expires: Timestamp) -> SealedPackage {
    sealed_listing(from, to, n, expires, Vec::new())
}

/// A package whose header lists `attachments`, none of them sealed.
fn sealed_listing(
    from: &Member,
    to: &Member,
    n: u8,
    expires: Timestamp,
    attachments: Vec<BlobRef>,
) -> SealedPackage {
    let now = node::now();
    let header = EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([n; 16]),
        sender: from.org_id(),
        recipient: to.org_id(),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Planned,
            region: None,
        },
        created: now,
        expires,
        attachments,
    };
    let sender = from.keys.node_keys().sealing;
    let recipient = to.keys.node_keys().sealing.public();
    let body = format!("package {n} from the insider").into_bytes();
    seal::seal(header, &sender, &recipient, [n; 32], &body).unwrap()
}

fn is_permanent_refusal(answer: &Result<Response, String>) -> bool {
    matches!(answer, Ok(Response::Refused(r)) if r.is_permanent())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_truncated_misaddressed_expired_and_replayed_packages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let mut events = f.subscribe();
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let day = node::now().saturating_add(Duration::from_secs(86_400));

    // An honest package first: taken in once, receipted.
    let honest = sealed(&district, &federal, 1, day);
    let Ok(Response::Receipt(receipt)) = insider.ask(Request::Deliver(honest.clone())).await else {
        panic!("an honest package is receipted");
    };

    let mut refused = 0;
    let mut tampered = Vec::new();
    // A flipped byte anywhere in the body, under a fresh id.
    for (i, at) in [0usize, 40, 100].into_iter().enumerate() {
        let mut p = sealed(&district, &federal, 10 + i as u8, day);
        let at = at.min(p.body.len() - 1);
        p.body[at] ^= 0x20;
        tampered.push(("a flipped body byte", p));
    }
    let mut p = sealed(&district, &federal, 20, day);
    p.body.truncate(p.body.len() / 2);
    tampered.push(("a truncated body", p));
    let mut p = sealed(&district, &federal, 21, day);
    p.body.truncate(10);
    tampered.push(("a body shorter than its handshake", p));
    let mut p = sealed(&district, &federal, 22, day);
    p.header.routing.urgency = Urgency::Emergency;
    tampered.push(("a header changed after sealing", p));
    let mut p = sealed(&district, &federal, 23, day);
    p.header.sender = federal.org_id();
    tampered.push(("a forged sender", p));
    let mut p = sealed(&district, &federal, 24, day);
    p.header.expires = node::now().saturating_sub(Duration::from_secs(60));
    tampered.push(("an expired package", p));
    let mut p = sealed(&district, &federal, 25, day);
    p.header.recipient = district.org_id();
    tampered.push(("a package readdressed to another organization", p));
    let mut p = honest.clone();
    p.body[50] ^= 1;
    tampered.push(("other bytes under a delivered package's id", p));
    for (what, package) in tampered {
        let answer = insider.ask(Request::Deliver(package)).await;
        assert!(is_permanent_refusal(&answer), "{what}: {answer:?}");
        refused += 1;
    }
    // The honest package again: the same receipt, not a second intake.
    let again = insider.ask(Request::Deliver(honest.clone())).await;
    assert_eq!(again, Ok(Response::Receipt(receipt.clone())));
    assert_eq!(taken_in(&mut events, district.org_id()), 1, "taken in once");
    assert_eq!(f.open(honest.header.id).await.unwrap().0, honest.header);

    // After a restart of the recipient: still one intake, still refused.
    drop(insider);
    f.shutdown().await;
    let f = start(&federal, vec![]).await;
    let fa = wait::listen_addr(&f, PATIENCE).await.unwrap();
    let mut events = f.subscribe();
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let again = insider.ask(Request::Deliver(honest.clone())).await;
    assert_eq!(
        again,
        Ok(Response::Receipt(receipt)),
        "the same receipt after the restart"
    );
    let mut other = honest.clone();
    other.body[60] ^= 1;
    let answer = insider.ask(Request::Deliver(other)).await;
    assert!(
        matches!(&answer, Ok(Response::Refused(Refusal::Invalid(why))) if why.contains("replay") || why.contains("already")),
        "{answer:?}"
    );
    assert_eq!(
        taken_in(&mut events, district.org_id()),
        0,
        "no second intake after the restart"
    );
    println!(
        "insider packages: {refused} tampered, truncated, forged or expired packages refused; 0 of 2 replays taken in, before and after a restart"
    );
    f.shutdown().await;
}

/// A parcel (`Request::DeliverMany`) is answered package by package, in
/// its order: a tampered package among honest ones is refused alone, one
/// that comes twice is taken in once and receipted twice, and a parcel over
/// the limit is refused whole, for now (its sender retries), with nothing
/// taken in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parcel_is_answered_package_by_package() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let mut events = f.subscribe();
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let day = node::now().saturating_add(Duration::from_secs(86_400));

    let first = sealed(&district, &federal, 1, day);
    let mut tampered = sealed(&district, &federal, 2, day);
    tampered.body[40] ^= 0x20;
    let last = sealed(&district, &federal, 3, day);
    let parcel = vec![first.clone(), tampered, first.clone(), last.clone()];
    let answer = insider.ask(Request::DeliverMany(parcel)).await;
    let Ok(Response::Answers(answers)) = answer else {
        panic!("a parcel is answered with answers: {answer:?}");
    };
    let [receipt, refused, again, receipt_of_last] = answers.as_slice() else {
        panic!("one answer for each package: {answers:?}");
    };
    let (DeliveryAnswer::Receipt(a), DeliveryAnswer::Receipt(b)) = (receipt, again) else {
        panic!("the honest package is receipted both times: {answers:?}");
    };
    assert_eq!(a, b, "the same receipt for the same package");
    let DeliveryAnswer::Receipt(c) = receipt_of_last else {
        panic!("the package after the tampered one is receipted: {answers:?}");
    };
    assert_eq!(c.decode_unverified().unwrap().package, last.header.id);
    assert!(
        matches!(refused, DeliveryAnswer::Refused(r) if r.is_permanent()),
        "the tampered package is refused for good: {refused:?}"
    );
    assert_eq!(
        taken_in(&mut events, district.org_id()),
        2,
        "each taken in once"
    );

    let over: Vec<_> = (0..=MAX_PARCEL as u8)
        .map(|n| sealed(&district, &federal, 100 + n, day))
        .collect();
    let answer = insider.ask(Request::DeliverMany(over)).await;
    assert!(
        matches!(&answer, Ok(Response::Refused(r @ Refusal::Transient(why)))
            if why.contains("parcel") && !r.is_permanent()),
        "{answer:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        taken_in(&mut events, district.org_id()),
        0,
        "nothing of it taken in"
    );
    f.shutdown().await;
}

/// Packages that waited for their recipient leave together once it is
/// back: one parcel, each package completed by its own receipt in the
/// parcel's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_that_waited_for_a_hop_leave_in_one_parcel() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let mut events = f.subscribe();
    let mut sent = Vec::new();
    for n in 0..5u8 {
        let body = format!("for the district, {n}").into_bytes();
        let request = SendRequest {
            target: Target::Org(district.org_id()),
            ..super::process::planned_for(&federal, body)
        };
        sent.push(f.send(request).await.unwrap().id);
    }
    // Each attempt failed (the district is down): none is in flight, so
    // all wait for the hop together.
    let mut failed = std::collections::HashSet::new();
    while failed.len() < sent.len() {
        let event = tokio::time::timeout(PATIENCE, events.recv()).await;
        let event = event.expect("each attempt fails while the district is down");
        if let Ok(NodeEvent::DeliveryRetry { id, .. }) = event {
            failed.insert(id);
        }
    }
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let (packages, channel) = insider.next_parcel().await;
    let mut ids: Vec<_> = packages.iter().map(|p| p.header.id).collect();
    ids.sort();
    sent.sort();
    assert_eq!(ids, sent, "every waiting package in the one parcel");
    let now = node::now();
    let answers = packages
        .iter()
        .map(|p| {
            let receipt = Receipt::for_package(p, now);
            DeliveryAnswer::Receipt(Signed::sign(&district.keys.identity(), &receipt))
        })
        .collect();
    let rpc = &mut insider.swarm.behaviour_mut().rpc;
    rpc.send_response(channel, Response::Answers(answers).into())
        .expect("the parcel's stream is open");
    let mut left: std::collections::HashSet<_> = sent.into_iter().collect();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !left.is_empty() {
        tokio::select! {
            event = events.recv() => {
                if let Ok(NodeEvent::PackageDelivered { id, .. }) = event {
                    left.remove(&id);
                }
            }
            event = insider.swarm.select_next_some() => {
                insider.on_event(event);
            }
            _ = tokio::time::sleep_until(deadline) => {
                panic!("{left:?} not completed by their receipts in the parcel's answer")
            }
        }
    }
    f.shutdown().await;
}

impl Insider {
    /// Waits for the node to deliver a package to the insider; leaves it
    /// unanswered, so the node keeps it in its outbox.
    async fn next_delivery(&mut self) -> SealedPackage {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = (self.next_event(deadline).await).expect("a delivery within a minute");
            if let SwarmEvent::Behaviour(WireEvent::Rpc(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request:
                            Framed {
                                frame: Inbound::Frame(Request::Deliver(package)),
                                ..
                            },
                        ..
                    },
                ..
            })) = event
            {
                return package;
            }
            self.on_event(event);
        }
    }
}

impl Insider {
    /// Waits for the node to deliver a parcel to the insider; the caller
    /// answers it on the channel.
    async fn next_parcel(
        &mut self,
    ) -> (
        Vec<SealedPackage>,
        request_response::ResponseChannel<Framed<Response>>,
    ) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = (self.next_event(deadline).await).expect("a parcel within a minute");
            if let SwarmEvent::Behaviour(WireEvent::Rpc(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request:
                            Framed {
                                frame: Inbound::Frame(Request::DeliverMany(packages)),
                                ..
                            },
                        channel,
                        ..
                    },
                ..
            })) = event
            {
                return (packages, channel);
            }
            self.on_event(event);
        }
    }
}

/// Whether the node reports `id` delivered within two seconds.
async fn delivered(
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    id: PackageId,
) -> bool {
    let wait = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PackageDelivered { id: d, .. }) if d == id => return,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    });
    wait.await.is_ok()
}

/// Receipts for a package the node sent to the insider: one signed by
/// another organization and one for other bytes change nothing; the
/// genuine one completes the delivery once, and its replay nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_receipts_complete_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let stranger = fed.enrol(OrgSpec::new("Totma CDH", OrgLevel::District, "RU-VLG", &[]));
    let mut events = f.subscribe();
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let sent = f
        .send(SendRequest {
            target: Target::Org(district.org_id()),
            ..super::process::planned_for(&federal, b"for the district".to_vec())
        })
        .await
        .unwrap();
    let package = insider.next_delivery().await;
    assert_eq!(package.header.id, sent.id);
    let now = node::now();

    let forged = Signed::sign(
        &stranger.keys.identity(),
        &Receipt::for_package(&package, now),
    );
    let mut other_bytes = package.clone();
    other_bytes.body[40] ^= 1;
    let for_other_bytes = Signed::sign(
        &district.keys.identity(),
        &Receipt::for_package(&other_bytes, now),
    );
    for (what, receipt) in [("forged", forged), ("for other bytes", for_other_bytes)] {
        let answer = insider.ask(Request::Receipt(receipt)).await;
        assert_eq!(answer, Ok(Response::Done), "{what}");
        assert!(
            !delivered(&mut events, sent.id).await,
            "a receipt {what} completed it"
        );
    }
    let genuine = Signed::sign(
        &district.keys.identity(),
        &Receipt::for_package(&package, now),
    );
    let answer = insider.ask(Request::Receipt(genuine.clone())).await;
    assert_eq!(answer, Ok(Response::Done));
    assert!(
        delivered(&mut events, sent.id).await,
        "the genuine receipt completes it"
    );
    let answer = insider.ask(Request::Receipt(genuine)).await;
    assert_eq!(answer, Ok(Response::Done));
    assert!(
        !delivered(&mut events, sent.id).await,
        "a replayed receipt counts again"
    );
    println!(
        "insider receipts: a forged receipt and one for other bytes refused; the genuine one counted once, its replay not at all"
    );
    f.shutdown().await;
}

/// A member sends junk bodies through its regional relay: the relay cannot
/// open what it carries, so the recipient that finds the bodies altered
/// must not charge it. Charged (five points a package, a ban at fifty),
/// ten packages cut a region off from the federal center for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_sent_through_a_relay_does_not_get_the_relay_banned() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let Relayed {
        federal,
        f,
        regional,
        r,
        district,
        mut insider,
    } = relayed(&mut fed, Custody::DEFAULT).await;
    let mut relay_events = r.subscribe();
    let day = node::now().saturating_add(Duration::from_secs(86_400));
    const JUNK: usize = 12;
    for n in 0..JUNK {
        let mut p = sealed(&district, &federal, 100 + n as u8, day);
        let last = p.body.len() - 1;
        p.body[last] ^= 0x20;
        let answer = insider.ask(Request::Deliver(p)).await;
        assert_eq!(answer, Ok(Response::Custody), "the relay takes package {n}");
    }
    // The relay passes all of them on, and the federal center refuses each.
    let mut refused = 0;
    wait::event(&mut relay_events, "the junk refused", PATIENCE, |e| {
        refused += usize::from(matches!(e, NodeEvent::DeliveryRefused { .. }));
        (refused == JUNK).then_some(())
    })
    .await
    .unwrap();
    // The relay is still admitted, and carries on.
    let sent = r
        .send(SendRequest {
            target: Target::Org(federal.org_id()),
            ..super::process::planned_for(&federal, b"from the region".to_vec())
        })
        .await
        .unwrap();
    wait::event(
        &mut relay_events,
        "the regional package delivered",
        PATIENCE,
        |e| matches!(e, NodeEvent::PackageDelivered { id, .. } if *id == sent.id).then_some(()),
    )
    .await
    .unwrap();
    assert!(f.status().await.unwrap().peers.contains(&regional.org_id()));
    r.shutdown().await;
    f.shutdown().await;
}

/// A federal center, Vologda's regional hospital holding at most `custody`
/// for each organization it relays for, and the district whose keys the
/// insider took over, connected to the regional node.
struct Relayed {
    federal: Member,
    f: NodeHandle,
    regional: Member,
    r: NodeHandle,
    district: Member,
    insider: Insider,
}

async fn relayed(fed: &mut LocalFederation, custody: Custody) -> Relayed {
    let federal = federal_center(fed);
    let regional = vologda_regional(fed, &[Specialty::Cardiology]);
    let district = kirillov(fed);
    let f = start(&federal, vec![]).await;
    let fa = wait::listen_addr(&f, PATIENCE).await.unwrap();
    let mut setup = regional.setup(vec![fa], vec![]);
    setup.custody = custody;
    let r = node::start(setup).await.expect("the regional node starts");
    let ra = wait::listen_addr(&r, PATIENCE).await.unwrap();
    let d = start(&district, vec![ra.clone()]).await;
    wait::converged(&[&f, &r, &d], 3, PATIENCE).await.unwrap();
    d.shutdown().await;
    forgotten(&r, &district).await;
    let insider = insider_at(&district, &ra, &r).await;
    Relayed {
        federal,
        f,
        regional,
        r,
        district,
        insider,
    }
}

/// The insider on a connection of its own to `node`, asking again while
/// the node refuses the connection.
async fn insider_at(district: &Member, addr: &Multiaddr, node: &NodeHandle) -> Insider {
    loop {
        match Insider::try_connect(district, addr.clone(), node.peer_id()).await {
            Ok(insider) => break insider,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A member hands its relay packages for an unreachable federal center:
/// the relay holds its bound for that member, refuses the rest for now
/// (they wait at the sender), also after a restart, and refuses for good a
/// package naming another sender. Without the bound one member's packages
/// (held until they expire, up to 30 days) could fill the relay's disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_holds_a_bounded_amount_for_each_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    const BOUND: usize = 4;
    let custody = Custody {
        packages: BOUND,
        bytes: 1 << 30,
    };
    let Relayed {
        federal,
        f,
        regional,
        r,
        district,
        mut insider,
    } = relayed(&mut fed, custody).await;
    f.shutdown().await;
    let day = node::now().saturating_add(Duration::from_secs(86_400));
    for n in 0..BOUND as u8 {
        let p = sealed(&district, &federal, 100 + n, day);
        let answer = insider.ask(Request::Deliver(p)).await;
        assert_eq!(answer, Ok(Response::Custody), "the relay takes package {n}");
    }
    let over = sealed(&district, &federal, 120, day);
    let answer = insider.ask(Request::Deliver(over.clone())).await;
    let Ok(Response::Refused(Refusal::Transient(why))) = answer else {
        panic!("one over the bound is refused for now: {answer:?}");
    };
    assert!(why.contains(&format!("holds {BOUND} packages")), "{why}");
    // A package naming the regional hospital as its sender: the deliverer
    // would make the relay hold it on another member's account.
    let named = sealed(&regional, &federal, 121, day);
    let answer = insider.ask(Request::Deliver(named)).await;
    assert!(
        matches!(&answer, Ok(Response::Refused(r @ Refusal::NotRelayed { .. })) if r.is_permanent()),
        "{answer:?}"
    );

    // The bound holds after the relay restarts, counted from what it stored.
    drop(insider);
    r.shutdown().await;
    let mut setup = regional.setup(vec![], vec![]);
    setup.custody = custody;
    let r = node::start(setup)
        .await
        .expect("the regional node restarts");
    let ra = wait::listen_addr(&r, PATIENCE).await.unwrap();
    let mut insider = insider_at(&district, &ra, &r).await;
    let answer = insider.ask(Request::Deliver(over)).await;
    assert!(
        matches!(answer, Ok(Response::Refused(Refusal::Transient(_)))),
        "{answer:?}"
    );
    let held = r.outbox().await.unwrap();
    assert_eq!(held.len(), BOUND, "what it took is still held");
    r.shutdown().await;
}

/// Packages wait on the recipient's disk while their attachments are
/// fetched from whoever delivered them. An insider that lists attachments
/// it never serves gets 64 held, then refusals; held packages go when they
/// expire, and then there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_whose_attachments_never_come_wait_in_bounded_numbers_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let soon = node::now().saturating_add(Duration::from_secs(4));
    let day = node::now().saturating_add(Duration::from_secs(86_400));
    let never_served = |n: u8| {
        vec![BlobRef {
            hash: [n; 32],
            size: 1 << 20,
        }]
    };
    for n in 0..64u8 {
        let p = sealed_listing(&district, &federal, 100 + n, soon, never_served(n));
        let answer = insider.ask(Request::Deliver(p)).await;
        assert!(
            matches!(answer, Ok(Response::Fetching { have: 0, .. })),
            "package {n} waits for its attachment: {answer:?}"
        );
    }
    let p = sealed_listing(&district, &federal, 200, day, never_served(200));
    let answer = insider.ask(Request::Deliver(p.clone())).await;
    assert!(
        matches!(&answer, Ok(Response::Refused(Refusal::Transient(why))) if why.contains("64 packages from you")),
        "{answer:?}"
    );
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(5)).await;
    let answer = insider.ask(Request::Deliver(p)).await;
    assert!(
        matches!(answer, Ok(Response::Fetching { .. })),
        "room again once the others expired: {answer:?}"
    );
    f.shutdown().await;
}

/// An attachment is served only to an organization a package queued at
/// the node goes to (its next hop or its recipient): another certified
/// organization naming it by hash is refused, sealed as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_served_only_to_whom_their_package_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let stranger = fed.enrol(OrgSpec::new("Totma CDH", OrgLevel::District, "RU-VLG", &[]));
    let mut insider = Insider::connect(&district, fa.clone(), f.peer_id()).await;
    f.send(SendRequest {
        target: Target::Org(district.org_id()),
        attachments: vec![node::Attachment::Bytes(vec![0x17; 300_000])],
        ..super::process::planned_for(&federal, b"with a scan".to_vec())
    })
    .await
    .unwrap();
    let package = insider.next_delivery().await;
    let hash = package.header.attachments[0].hash;
    let piece = || Request::FetchBlob {
        hash,
        offset: 0,
        len: 1024,
    };
    let mut outsider = Insider::connect(&stranger, fa, f.peer_id()).await;
    let refused = outsider.ask(piece()).await;
    assert!(
        matches!(&refused, Ok(Response::Refused(Refusal::Invalid(why)))
            if why.contains("no package queued here")),
        "{refused:?}"
    );
    let served = insider.ask(piece()).await;
    assert!(
        matches!(&served, Ok(Response::Blob(bytes)) if bytes.len() == 1024),
        "{served:?}"
    );
    f.shutdown().await;
}
