//! A consultation package's path through the protocol core, every value
//! crossing the wire codec as it would between nodes: certificates, directory
//! convergence by anti-entropy, routing choice, sealing, a relay that sees
//! only the header, opening, replay refusal and revocation.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::directory::{Directory, Query};
use konsilium_protocol::seal::{
    self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealError, SealedPackage,
};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire;
use konsilium_tests::over_the_wire;
use std::collections::BTreeSet;
use std::time::Duration;

fn sync(a: &mut Directory, b: &mut Directory, fed: &TestFederation) {
    konsilium_tests::sync(a, b, &fed.trust, NOW);
}

struct World {
    fed: TestFederation,
    district: TestOrg,
    regional: TestOrg,
    federal: TestOrg,
    dirs: Vec<Directory>,
}

fn world() -> World {
    let mut fed = TestFederation::new("flow");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Pediatrics]);
    let regional = fed.org(
        2,
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Oncology, Specialty::Cardiology],
    );
    let federal = fed.org(
        3,
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology, Specialty::Neonatology],
    );
    // Each node starts knowing only its own record, received over the wire.
    let dirs = [&district, &regional, &federal]
        .iter()
        .map(|o| {
            let mut d = Directory::new();
            d.insert(over_the_wire(&o.signed_record(1)), &fed.trust, NOW)
                .unwrap();
            d
        })
        .collect();
    World {
        fed,
        district,
        regional,
        federal,
        dirs,
    }
}

fn converge(w: &mut World) {
    let (d, rest) = w.dirs.split_at_mut(1);
    let (r, f) = rest.split_at_mut(1);
    sync(&mut d[0], &mut r[0], &w.fed);
    sync(&mut r[0], &mut f[0], &w.fed);
    sync(&mut d[0], &mut r[0], &w.fed);
}

fn header(from: &TestOrg, to: &TestOrg, routing: RoutingHeader, id: u8) -> EnvelopeHeader {
    EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([id; 16]),
        sender: from.id(),
        recipient: to.id(),
        routing,
        created: NOW,
        expires: NOW.saturating_add(Duration::from_secs(4 * 86_400)),
        attachments: Vec::new(),
    }
}

#[test]
fn district_package_reaches_federal_oncology_through_a_relay() {
    let mut w = world();
    converge(&mut w);
    let digests: BTreeSet<_> = w.dirs.iter().map(Directory::digest).collect();
    assert_eq!(digests.len(), 1, "three nodes hold the same directory");
    assert_eq!(w.dirs[0].len(), 3);

    // The district hospital looks for federal-level oncology taking urgent requests.
    let routing = RoutingHeader {
        specialty: Specialty::Oncology,
        min_level: OrgLevel::Federal,
        urgency: Urgency::Urgent,
        region: None,
    };
    let q = Query {
        specialty: Some(routing.specialty),
        min_level: Some(routing.min_level),
        urgency: Some(routing.urgency),
        region: None,
    };
    let found: Vec<_> = w.dirs[0].query(&q).map(|e| e.org()).collect();
    assert_eq!(found, vec![w.federal.id()]);
    let target = w.dirs[0].get(&found[0]).unwrap();

    let case = b"Case extract: 54-year-old, suspected recurrence; CT series attached. Question: resectable?".repeat(1000);
    let package = seal::seal(
        header(&w.district, &w.federal, routing.clone(), 1),
        &w.district.sealing,
        &target.record().sealing_key,
        [7; 32],
        &case,
    )
    .unwrap();

    // The regional center relays it: it decodes the frame, sees the header, stores and forwards.
    let at_relay: SealedPackage = over_the_wire(&package);
    assert_eq!(at_relay.header.routing, routing);
    assert!(
        !at_relay.body.windows(16).any(|win| win == &case[..16]),
        "relay holds no plaintext"
    );
    assert!(
        matches!(
            seal::open(
                &at_relay,
                w.regional.id(),
                &w.regional.sealing,
                &w.dirs[1],
                NOW,
                |_| false
            ),
            Err(SealError::NotForUs { .. })
        ),
        "the relay cannot open it"
    );
    assert!(
        seal::open(
            &at_relay,
            w.federal.id(),
            &w.regional.sealing,
            &w.dirs[1],
            NOW,
            |_| false
        )
        .is_err()
    );

    // The federal center opens it, once.
    let delivered: SealedPackage = over_the_wire(&at_relay);
    let mut seen = BTreeSet::new();
    let opened = seal::open(
        &delivered,
        w.federal.id(),
        &w.federal.sealing,
        &w.dirs[2],
        NOW,
        |id| seen.contains(id),
    )
    .unwrap();
    assert_eq!(opened, case);
    seen.insert(delivered.header.id);
    assert_eq!(
        seal::open(
            &delivered,
            w.federal.id(),
            &w.federal.sealing,
            &w.dirs[2],
            NOW,
            |id| seen.contains(id)
        ),
        Err(SealError::Replay(PackageId([1; 16])))
    );

    // A relay that flips one byte anywhere in the frame is caught.
    let frame = wire::encode(&package).unwrap();
    for i in (0..frame.len()).step_by(997) {
        let mut bad = frame.clone();
        bad[i] ^= 0x20;
        if let Ok(p) = wire::decode::<SealedPackage>(&bad) {
            assert!(
                seal::open(
                    &p,
                    w.federal.id(),
                    &w.federal.sealing,
                    &w.dirs[2],
                    NOW,
                    |_| false
                )
                .is_err(),
                "flip at {i} accepted"
            );
        }
    }
}

#[test]
fn revocation_travels_and_removes_the_organization_everywhere() {
    let mut w = world();
    converge(&mut w);
    let serial = w.district.chain.org.decode_unverified().unwrap().serial;
    let notice = over_the_wire(&w.fed.region("RU-VLG").revoke(1, NOW, [serial].into()));
    w.fed.trust.apply_revocations(&notice, NOW).unwrap();
    for d in &mut w.dirs {
        let dropped = d.retain_valid(&w.fed.trust, NOW);
        assert_eq!(
            dropped.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![w.district.id()]
        );
    }
    // A newer record from the revoked organization is refused by everyone.
    for d in &mut w.dirs {
        assert!(
            d.insert(w.district.signed_record(2), &w.fed.trust, NOW)
                .is_err()
        );
        assert_eq!(d.len(), 2);
    }
    // And packages it seals can no longer be checked against any directory.
    let routing = RoutingHeader {
        specialty: Specialty::Oncology,
        min_level: OrgLevel::Regional,
        urgency: Urgency::Planned,
        region: None,
    };
    let p = seal::seal(
        header(&w.district, &w.regional, routing, 2),
        &w.district.sealing,
        &w.regional.sealing.public(),
        [3; 32],
        b"x",
    )
    .unwrap();
    assert_eq!(
        seal::open(
            &p,
            w.regional.id(),
            &w.regional.sealing,
            &w.dirs[1],
            NOW,
            |_| false
        ),
        Err(SealError::UnknownSender(w.district.id()))
    );
}

#[test]
fn sealing_key_rotation_is_honoured_after_the_directory_learns_it() {
    let mut w = world();
    converge(&mut w);
    let rotated = konsilium_protocol::identity::SealingKey::from_seed([99; 32]);
    let mut record = w.federal.record(2);
    record.sealing_key = rotated.public();
    let signed = w.federal.sign(&record);
    w.dirs[2].insert(signed, &w.fed.trust, NOW).unwrap();
    let (d, rest) = w.dirs.split_at_mut(1);
    sync(&mut d[0], &mut rest[1], &w.fed);
    let key = w.dirs[0].get(&w.federal.id()).unwrap().record().sealing_key;
    assert_eq!(key, rotated.public(), "the district learned the new key");
    let routing = RoutingHeader {
        specialty: Specialty::Neonatology,
        min_level: OrgLevel::Federal,
        urgency: Urgency::Emergency,
        region: None,
    };
    let p = seal::seal(
        header(&w.district, &w.federal, routing, 3),
        &w.district.sealing,
        &key,
        [5; 32],
        b"ECG",
    )
    .unwrap();
    assert_eq!(
        seal::open(&p, w.federal.id(), &rotated, &w.dirs[2], NOW, |_| false).unwrap(),
        b"ECG"
    );
    assert!(
        seal::open(
            &p,
            w.federal.id(),
            &w.federal.sealing,
            &w.dirs[2],
            NOW,
            |_| false
        )
        .is_err(),
        "old key no longer opens new packages"
    );
}
