//! Batches from a hostile peer: whatever a batch mixes (forged authority
//! certificates, certificates out of date, records signed by the wrong
//! key, honest records), `insert_many` must decide each record exactly as
//! inserting the records one by one would.

use super::*;
use crate::cert::{Issuer, Validity};
use crate::identity::IdentityKey;
use crate::testkit::{DAY_MS, NOW, TestFederation, forged_authority, validity_days};
use Specialty::*;
use proptest::prelude::*;

fn days_ago(days: u64) -> Timestamp {
    Timestamp::from_unix_millis(NOW.unix_millis() - days * DAY_MS)
}

fn expired() -> Validity {
    Validity {
        from: days_ago(10),
        until: days_ago(1),
    }
}

/// A regional authority for RU-VLG that claims the root as its issuer and
/// signed its certificate itself.
fn forger(fed: &TestFederation) -> Issuer {
    let validity = Validity {
        from: days_ago(30),
        until: validity_days(3650).until,
    };
    forged_authority(fed.root.key(), "RU-VLG", validity)
}

/// A district hospital's record whose certificate `forger` issued.
fn certified_by(
    forger: &Issuer,
    fed: &mut TestFederation,
    index: u64,
    validity: Validity,
) -> SignedRecord {
    (fed.org(index, OrgLevel::District, "RU-VLG", &[Pediatrics]))
        .certified_by(forger, validity, 900 + index)
        .signed_record(1)
}

/// A district hospital's record whose chain carries its real authority's
/// certificate, the same bytes, signed again by another key.
fn resigned_authority(fed: &mut TestFederation, index: u64) -> SignedRecord {
    let mut org = fed.org(index, OrgLevel::District, "RU-VLG", &[Pediatrics]);
    let authority = org.chain.authority.clone().unwrap();
    let resigned = Signed::sign(
        &IdentityKey::from_seed([78; 32]),
        &authority.decode_unverified().unwrap(),
    );
    assert_eq!(resigned.signed_bytes(), authority.signed_bytes());
    org.chain.authority = Some(resigned);
    org.signed_record(1)
}

fn holding(held: &[SignedRecord], trust: &Trust) -> Directory {
    let mut dir = Directory::new();
    for r in held {
        dir.insert(r.clone(), trust, NOW).unwrap();
    }
    dir
}

fn assert_authority_refused(result: &Result<Merge, RecordError>) {
    assert!(
        matches!(
            result,
            Err(RecordError::Signed(SignedError::BadSignature {
                what: "AuthorityCert",
                ..
            }))
        ),
        "{result:?}"
    );
}

/// The first record carries the forged authority and fails on its own
/// certificate's dates; the second carries the same authority with dates
/// that hold. Had the first left the authority cached without its
/// signature check, the second would pass.
#[test]
fn a_forged_authority_is_refused_in_every_record_of_a_batch_that_carries_it() {
    let mut fed = TestFederation::new("batch");
    let forger = forger(&fed);
    let batch = vec![
        certified_by(&forger, &mut fed, 10, expired()),
        certified_by(&forger, &mut fed, 11, validity_days(365)),
    ];
    let mut dir = Directory::new();
    let results = dir.insert_many(batch.clone(), &fed.trust, NOW);
    let mut alone = Directory::new();
    let expected: Vec<_> = (batch.into_iter())
        .map(|r| alone.insert(r, &fed.trust, NOW))
        .collect();
    assert_eq!(results, expected);
    assert_authority_refused(&results[1]);
    assert!(dir.is_empty());
}

/// The same authority certificate's bytes under another signature are
/// another certificate: finding the first checked must not pass the second.
#[test]
fn an_authority_certificate_resigned_by_another_key_is_checked_in_a_batch() {
    let mut fed = TestFederation::new("batch");
    let honest = fed.org(10, OrgLevel::District, "RU-VLG", &[Pediatrics]);
    let batch = vec![honest.signed_record(1), resigned_authority(&mut fed, 11)];
    let results = Directory::new().insert_many(batch.clone(), &fed.trust, NOW);
    assert_eq!(results[0], Ok(Merge::Added));
    assert_authority_refused(&results[1]);
}

/// Records a hostile batch may mix, each built once: honest ones (two
/// versions of one organization's, a federal center's), forged and
/// resigned authorities, certificates out of date, a record signed by
/// another organization's key.
struct Pool {
    fed: TestFederation,
    records: Vec<SignedRecord>,
    /// What a directory may hold before the batch arrives.
    held: Vec<SignedRecord>,
}

fn pool() -> Pool {
    let mut fed = TestFederation::new("batch");
    let forger = forger(&fed);
    let a = fed.org(1, OrgLevel::District, "RU-VLG", &[Pediatrics]);
    let b = fed.org(2, OrgLevel::Regional, "RU-MOW", &[Cardiology]);
    let federal = fed.org(3, OrgLevel::Federal, "RU-MOW", &[Cardiology]);
    let mut records = vec![
        a.signed_record(1),
        a.signed_record(2),
        b.signed_record(1),
        federal.signed_record(4),
        certified_by(&forger, &mut fed, 10, validity_days(365)),
        certified_by(&forger, &mut fed, 11, expired()),
        certified_by(&forger, &mut fed, 12, validity_days(365)),
        resigned_authority(&mut fed, 13),
        Signed::sign(&b.identity, &a.record(3)),
        // The same sequence as another of a's, other content: the tie is
        // broken by hash, whichever arrives first.
        {
            let mut again = a.record(2);
            again.consultants[0].name = "Another consultant".into();
            a.sign(&again)
        },
    ];
    fed.certify_for(0);
    let lapsed = fed.org(14, OrgLevel::District, "RU-VLG", &[Pediatrics]);
    records.push(lapsed.signed_record(1));
    let held = vec![a.signed_record(1), federal.signed_record(2)];
    Pool { fed, records, held }
}

/// Any batch drawn from the pool, into an empty directory (built in one
/// pass) or one already holding some of the same organizations (so the
/// held-chain shortcut runs): each record's result and the final directory
/// are those of inserting the records one by one.
#[test]
fn a_batch_is_decided_record_by_record_as_one_by_one() {
    let pool = pool();
    let trust = &pool.fed.trust;
    let strategy = (
        proptest::collection::vec(0..pool.records.len(), 1..12),
        any::<bool>(),
    );
    proptest::test_runner::TestRunner::default()
        .run(&strategy, |(picks, with_held)| {
            let batch: Vec<SignedRecord> = picks.iter().map(|&i| pool.records[i].clone()).collect();
            let held = if with_held { &pool.held[..] } else { &[] };
            let mut together = holding(held, trust);
            let results = together.insert_many(batch.clone(), trust, NOW);
            let mut alone = holding(held, trust);
            let expected: Vec<_> = (batch.into_iter())
                .map(|r| alone.insert(r, trust, NOW))
                .collect();
            prop_assert_eq!(&results, &expected);
            prop_assert_eq!(together.digest(), alone.digest());
            prop_assert_eq!(together.bytes(), alone.bytes());
            Ok(())
        })
        .unwrap();
}
