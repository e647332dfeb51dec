//! The directory's merge rule, validation and anti-entropy primitives.

use super::*;
use crate::testkit::{NOW, TestFederation, TestOrg};
use Specialty::*;
use proptest::prelude::*;

fn three() -> (TestFederation, Vec<TestOrg>) {
    let mut fed = TestFederation::new("dir");
    let orgs = vec![
        fed.org(1, OrgLevel::District, "RU-VLG", &[Pediatrics]),
        fed.org(2, OrgLevel::Regional, "RU-VLG", &[Cardiology, Oncology]),
        fed.org(3, OrgLevel::Federal, "RU-MOW", &[Cardiology, Neonatology]),
    ];
    (fed, orgs)
}

#[test]
fn queries_by_specialty_level_region_urgency() {
    let (fed, orgs) = three();
    let mut dir = Directory::new();
    for o in &orgs {
        assert_eq!(
            dir.insert(o.signed_record(1), &fed.trust, NOW),
            Ok(Merge::Added)
        );
    }
    let names = |dir: &Directory, q: Query| dir.query(&q).map(|e| e.org()).collect::<Vec<_>>();
    let cardio = names(
        &dir,
        Query {
            specialty: Some(Cardiology),
            ..Default::default()
        },
    );
    assert_eq!(cardio.len(), 2);
    assert_eq!(
        names(
            &dir,
            Query {
                specialty: Some(Cardiology),
                min_level: Some(OrgLevel::Federal),
                ..Default::default()
            }
        ),
        vec![orgs[2].id()]
    );
    assert_eq!(
        names(
            &dir,
            Query {
                specialty: Some(Cardiology),
                region: Some(RegionCode::new("RU-VLG").unwrap()),
                ..Default::default()
            }
        ),
        vec![orgs[1].id()]
    );
    assert!(
        names(
            &dir,
            Query {
                specialty: Some(Urology),
                ..Default::default()
            }
        )
        .is_empty()
    );
    // An organization that takes no emergencies for a specialty is not offered for them.
    let mut rec = orgs[0].record(2);
    rec.services[0].urgencies = [Urgency::Planned].into();
    dir.insert(orgs[0].sign(&rec), &fed.trust, NOW).unwrap();
    let q = |u| Query {
        specialty: Some(Pediatrics),
        urgency: Some(u),
        ..Default::default()
    };
    assert_eq!(names(&dir, q(Urgency::Planned)), vec![orgs[0].id()]);
    assert!(names(&dir, q(Urgency::Emergency)).is_empty());
}

#[test]
fn higher_sequence_wins_and_ties_break_the_same_everywhere() {
    let (fed, orgs) = three();
    let o = &orgs[0];
    let mut dir = Directory::new();
    dir.insert(o.signed_record(5), &fed.trust, NOW).unwrap();
    assert_eq!(
        dir.insert(o.signed_record(5), &fed.trust, NOW),
        Ok(Merge::Unchanged)
    );
    assert_eq!(
        dir.insert(o.signed_record(4), &fed.trust, NOW),
        Ok(Merge::Superseded { held_sequence: 5 })
    );
    assert_eq!(
        dir.insert(o.signed_record(6), &fed.trust, NOW),
        Ok(Merge::Replaced {
            previous_sequence: 5
        })
    );
    assert_eq!(dir.get(&o.id()).unwrap().record().sequence, 6);

    let mut a = o.record(7);
    a.issued_at = Timestamp::from_unix_millis(1);
    let mut b = o.record(7);
    b.issued_at = Timestamp::from_unix_millis(2);
    let (a, b) = (o.sign(&a), o.sign(&b));
    let mut d1 = Directory::new();
    let mut d2 = Directory::new();
    d1.insert(a.clone(), &fed.trust, NOW).unwrap();
    d1.insert(b.clone(), &fed.trust, NOW).unwrap();
    d2.insert(b, &fed.trust, NOW).unwrap();
    d2.insert(a, &fed.trust, NOW).unwrap();
    assert_eq!(d1.digest(), d2.digest());
    assert_eq!(
        d1.get(&o.id()).unwrap().hash(),
        d2.get(&o.id()).unwrap().hash()
    );
}

#[test]
fn invalid_records_are_refused_with_a_reason_and_lose_nothing() {
    let (mut fed, orgs) = three();
    let mut dir = Directory::new();
    dir.insert(orgs[0].signed_record(1), &fed.trust, NOW)
        .unwrap();
    let before = dir.digest();

    // Signed by someone else than the organization it describes.
    let forged = Signed::sign(&orgs[1].identity, &orgs[0].record(9));
    let e = dir.insert(forged, &fed.trust, NOW).unwrap_err();
    assert!(
        matches!(e, RecordError::Signed(SignedError::BadSignature { .. })),
        "{e}"
    );

    // Broken fields.
    let mut rec = orgs[0].record(9);
    rec.consultants.push(rec.consultants[0].clone());
    let e = dir.insert(orgs[0].sign(&rec), &fed.trust, NOW).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");

    // Expired certificate.
    let later = Timestamp::from_unix_millis(NOW.unix_millis() + 400 * crate::testkit::DAY_MS);
    assert!(matches!(
        dir.insert(orgs[0].signed_record(9), &fed.trust, later),
        Err(RecordError::Chain(CertError::Expired { .. }))
    ));

    // Revoked: refused, and the held record is dropped by retain_valid.
    let serial = orgs[0].chain.org.decode_unverified().unwrap().serial;
    let notice = fed.region("RU-VLG").revoke(1, NOW, [serial].into());
    fed.trust.apply_revocations(&notice, NOW).unwrap();
    assert!(matches!(
        dir.insert(orgs[0].signed_record(9), &fed.trust, NOW),
        Err(RecordError::Chain(CertError::Revoked { .. }))
    ));
    assert_eq!(dir.digest(), before, "refusals changed nothing");
    let dropped = dir.retain_valid(&fed.trust, NOW);
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].0, orgs[0].id());
    assert!(dir.is_empty());
    assert_ne!(dir.digest(), before);
}

/// The digest is kept between changes, and every kind of change forgets
/// it: it must always be the hash of the bucket hashes an offer carries,
/// or two directories that differ would end their rounds at the digest.
#[test]
fn the_kept_digest_is_always_the_hash_of_the_offers_bucket_hashes() {
    let (mut fed, orgs) = three();
    let from_offer =
        |dir: &Directory| *blake3::hash(dir.sync_offer(None).buckets.as_flattened()).as_bytes();
    let mut dir = Directory::new();
    let empty = dir.digest();
    assert_eq!(empty, from_offer(&dir));
    let records: Vec<_> = orgs.iter().map(|o| o.signed_record(1)).collect();
    dir.insert_many(records.clone(), &fed.trust, NOW);
    let built = dir.digest();
    assert_ne!(built, empty);
    assert_eq!(built, from_offer(&dir));
    assert_eq!(dir.sync_digest(None).digest, built);
    dir.insert(orgs[1].signed_record(2), &fed.trust, NOW)
        .unwrap();
    let updated = dir.digest();
    assert_ne!(updated, built);
    assert_eq!(updated, from_offer(&dir));
    // A clone keeps the digest, and changes of its own forget its copy only.
    let mut copy = dir.clone();
    copy.insert(orgs[2].signed_record(2), &fed.trust, NOW)
        .unwrap();
    assert_eq!(dir.digest(), updated);
    assert_eq!(copy.digest(), from_offer(&copy));
    assert_ne!(copy.digest(), updated);
    let serial = orgs[0].chain.org.decode_unverified().unwrap().serial;
    let notice = fed.region("RU-VLG").revoke(1, NOW, [serial].into());
    fed.trust.apply_revocations(&notice, NOW).unwrap();
    assert_eq!(dir.retain_valid(&fed.trust, NOW).len(), 1);
    assert_ne!(dir.digest(), updated);
    assert_eq!(dir.digest(), from_offer(&dir));
    // One region's digest hashes that region's bucket hashes.
    let region = RegionCode::new("RU-VLG").unwrap();
    let within = dir.sync_offer(Some(&region)).buckets;
    assert_eq!(
        dir.digest_within(Some(&region)),
        *blake3::hash(within.as_flattened()).as_bytes()
    );
}

/// An update whose chain is the one held skips the chain's signatures
/// (checked when stored); any other chain, even the same certificate
/// signed by someone else, is checked in full.
#[test]
fn an_update_with_another_chain_than_the_held_one_is_checked_in_full() {
    let (fed, orgs) = three();
    let mut dir = Directory::new();
    dir.insert(orgs[0].signed_record(1), &fed.trust, NOW)
        .unwrap();
    let before = dir.digest();

    let cert = orgs[0].chain.org.decode_unverified().unwrap();
    let mut record = orgs[0].record(9);
    record.chain.org = Signed::sign(&orgs[1].identity, &cert);
    let e = dir
        .insert(orgs[0].sign(&record), &fed.trust, NOW)
        .unwrap_err();
    assert!(
        matches!(e, RecordError::Signed(SignedError::BadSignature { .. })),
        "{e}"
    );
    assert_eq!(dir.digest(), before, "the refusal changed nothing");

    // The held chain again, in a record of its own signature: taken.
    assert!(matches!(
        dir.insert(orgs[0].signed_record(9), &fed.trust, NOW),
        Ok(Merge::Replaced { .. })
    ));
}

#[test]
fn an_address_longer_than_its_limit_is_refused() {
    let (fed, orgs) = three();
    let mut dir = Directory::new();
    let mut rec = orgs[0].record(1);
    let host = "a".repeat(MAX_ADDRESS_LEN);
    rec.addresses = vec![format!("/dns/{host}/tcp/4001").parse().unwrap()];
    assert!(rec.addresses[0].len() > MAX_ADDRESS_LEN);
    let e = dir.insert(orgs[0].sign(&rec), &fed.trust, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            RecordError::Field(FieldError::Invalid {
                field: "addresses",
                ..
            })
        ),
        "{e}"
    );
    assert!(dir.is_empty());
    rec.addresses = vec!["/ip4/10.0.0.1/tcp/4001".parse().unwrap()];
    assert_eq!(
        dir.insert(orgs[0].sign(&rec), &fed.trust, NOW),
        Ok(Merge::Added)
    );
}

#[test]
fn batch_insert_equals_one_by_one_even_with_bad_records() {
    let (fed, orgs) = three();
    let mut batch = vec![
        orgs[0].signed_record(1),
        orgs[1].signed_record(3),
        orgs[2].signed_record(2),
    ];
    batch.insert(1, Signed::sign(&orgs[2].identity, &orgs[1].record(8)));
    batch.push(orgs[1].signed_record(2));
    let mut a = Directory::new();
    let ra = a.insert_many(batch.clone(), &fed.trust, NOW);
    let mut b = Directory::new();
    let rb: Vec<_> = batch
        .into_iter()
        .map(|r| b.insert(r, &fed.trust, NOW))
        .collect();
    assert_eq!(ra, rb);
    assert!(ra[1].is_err());
    assert_eq!(ra[4], Ok(Merge::Superseded { held_sequence: 3 }));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), 3);
}

/// Runs the anti-entropy exchange between two directories until nothing differs.
fn anti_entropy(a: &mut Directory, b: &mut Directory, trust: &Trust) -> usize {
    let mut sent = 0;
    let buckets = b.differing_buckets(&a.sync_offer(None), None).unwrap();
    let theirs = b.summaries(&buckets, None);
    let plan = a.reconcile(&buckets, &theirs, None);
    sent += plan.send.len();
    b.insert_many(plan.send, trust, NOW);
    let wanted: Vec<_> = plan
        .want
        .iter()
        .filter_map(|o| b.get(o))
        .map(|e| e.signed().clone())
        .collect();
    sent += wanted.len();
    a.insert_many(wanted, trust, NOW);
    sent
}

#[test]
fn anti_entropy_converges_and_sends_only_differences() {
    let mut fed = TestFederation::new("ae");
    let orgs: Vec<_> = (0..300)
        .map(|i| fed.org(i, OrgLevel::District, "RU-VLG", &[Cardiology]))
        .collect();
    let mut a = Directory::new();
    let mut b = Directory::new();
    let shared: Vec<_> = orgs[..280].iter().map(|o| o.signed_record(1)).collect();
    a.insert_many(shared.clone(), &fed.trust, NOW);
    b.insert_many(shared, &fed.trust, NOW);
    a.insert_many(
        orgs[280..290].iter().map(|o| o.signed_record(1)).collect(),
        &fed.trust,
        NOW,
    );
    b.insert_many(
        orgs[290..].iter().map(|o| o.signed_record(1)).collect(),
        &fed.trust,
        NOW,
    );
    b.insert(orgs[0].signed_record(2), &fed.trust, NOW).unwrap();
    assert_ne!(a.digest(), b.digest());
    let sent = anti_entropy(&mut a, &mut b, &fed.trust);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.len(), 300);
    assert_eq!(sent, 21, "10 + 10 missing records and one newer");
    assert_eq!(a.get(&orgs[0].id()).unwrap().record().sequence, 2);
    assert_eq!(anti_entropy(&mut a, &mut b, &fed.trust), 0);
    assert!(
        b.differing_buckets(
            &SyncOffer {
                buckets: vec![[0; 32]; 3],
                region: None
            },
            None
        )
        .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Merging is commutative and idempotent: any two orders of any records
    /// give the same directory, and merging again changes nothing.
    #[test]
    fn merge_is_commutative_and_idempotent(
        picks in prop::collection::vec((0usize..4, 0u64..4, 0u64..3), 0..24),
        order in any::<prop::sample::Index>(),
    ) {
        let mut fed = TestFederation::new("prop");
        let orgs: Vec<_> = (0..4).map(|i| fed.org(i, OrgLevel::Regional, "RU-KDA", &[Urology])).collect();
        let records: Vec<SignedRecord> = picks.iter().map(|&(o, seq, variant)| {
            let mut r = orgs[o].record(seq);
            r.issued_at = Timestamp::from_unix_millis(variant);
            orgs[o].sign(&r)
        }).collect();
        let mut forward = Directory::new();
        for r in &records { forward.insert(r.clone(), &fed.trust, NOW).unwrap(); }
        let mut rotated = records.clone();
        if !rotated.is_empty() { let k = order.index(rotated.len()); rotated.rotate_left(k); }
        rotated.reverse();
        let mut backward = Directory::new();
        backward.insert_many(rotated, &fed.trust, NOW);
        prop_assert_eq!(forward.digest(), backward.digest());
        let before = forward.digest();
        let again = forward.merge_from(&backward, &fed.trust, NOW);
        prop_assert!(again.iter().all(|r| *r == Ok(Merge::Unchanged)));
        prop_assert_eq!(forward.digest(), before);
    }
}

#[test]
fn a_bucket_holds_exactly_the_entries_whose_id_starts_with_it() {
    let mut fed = TestFederation::new("buckets");
    let mut dir = Directory::new();
    for i in 0..600 {
        let region = ["RU-VLG", "RU-MOW"][(i % 2) as usize];
        let org = fed.org(i, OrgLevel::District, region, &[Cardiology]);
        assert_eq!(
            dir.insert(org.signed_record(1), &fed.trust, NOW),
            Ok(Merge::Added)
        );
    }
    let vologda = RegionCode::new("RU-VLG").unwrap();
    // The edges of the id space, and buckets in between, asked out of order.
    let buckets = [255, 0, 1, 128, 77, 254];
    for within in [None, Some(&vologda)] {
        // Every entry looked at, the way the summaries were once gathered.
        let walked: Vec<RecordSummary> = (dir.in_region(within))
            .filter(|e| buckets.contains(&e.org().as_bytes()[0]))
            .map(|e| e.summary())
            .collect();
        assert!(walked.len() > buckets.len(), "{} summaries", walked.len());
        assert_eq!(dir.summaries(&buckets, within), walked);
    }
    for bucket in buckets {
        let mut h = blake3::Hasher::new();
        for e in (dir.in_region(None)).filter(|e| e.org().as_bytes()[0] == bucket) {
            e.hash_into(&mut h);
        }
        assert_eq!(
            dir.bucket_hash(usize::from(bucket)),
            *h.finalize().as_bytes()
        );
    }
}
