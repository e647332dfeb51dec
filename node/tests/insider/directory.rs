//! Forged and altered directory records and revocation lists from a
//! certified peer: none changes the directory or the trust, and the peer
//! that keeps sending them is banned, cut and refused at its next Hello,
//! while an honest member keeps being served.

use super::*;
use konsilium_protocol::cert::Issuer;
use konsilium_protocol::directory::SignedRecord;
use konsilium_protocol::identity::IdentityKey;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::wire::{self, RecordBatch, WireMessage};
use std::collections::BTreeSet;

/// The same signed object with one byte of its signature flipped.
fn altered<T: WireMessage + serde::de::DeserializeOwned>(genuine: &T, from_end: usize) -> T {
    let mut bytes = wire::encode(genuine).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x01;
    wire::decode(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_and_revocations_change_nothing_and_the_forger_is_banned() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let honest = vologda_regional(&mut fed, &[Specialty::Cardiology]);
    let h = start(&honest, vec![fa.clone()]).await;
    wait::converged(&[&f, &h], 3, PATIENCE).await.unwrap();
    let records: Vec<SignedRecord> = f.records().await.unwrap();
    let genuine = records
        .iter()
        .find(|r| {
            r.decode_unverified()
                .is_ok_and(|d| d.sealing_key == honest.keys.node_keys().sealing.public())
        })
        .expect("the honest member's record")
        .clone();

    let mut insider = Insider::connect(&district, fa.clone(), f.peer_id()).await;
    // Honest news first: the genuine record again is no offence.
    let push = |records| Request::PushRecords(RecordBatch { records });
    assert_eq!(
        insider.ask(push(vec![genuine.clone()])).await,
        Ok(Response::Done)
    );
    // A revocation list from an authority nobody trusts, and the root's
    // list with a flipped signature byte.
    let stranger_root = Issuer::root(IdentityKey::from_seed([77; 32]));
    let serials = BTreeSet::from([LocalFederation::serial_of(&honest)]);
    let forged_list = stranger_root.revoke(9, node::now(), serials.clone());
    let altered_list = altered(&fed.root().revoke(9, node::now(), serials), 3);
    for notice in [forged_list, altered_list] {
        let answer = insider.ask(Request::Revocations(vec![notice])).await;
        assert_eq!(answer, Ok(Response::Done));
    }
    // Then newer records of the honest member, one with an altered
    // signature, two signed by the insider's own key: the third crosses
    // the limit (two forged lists and three forged records, ten points
    // each). A forged record no newer than the one held is ignored
    // without a check: it could change nothing.
    let mut newer = genuine.decode_unverified().unwrap();
    newer.sequence += 1;
    let forged: Vec<SignedRecord> = vec![
        altered(&Signed::sign(&honest.keys.identity(), &newer), 5),
        Signed::sign(&district.keys.identity(), &newer),
        Signed::sign(&district.keys.identity(), &{
            newer.sequence += 1;
            newer.clone()
        }),
    ];
    for record in &forged {
        let _ = insider.ask(push(vec![record.clone()])).await;
    }
    assert!(insider.closed().await, "the forger was cut");

    // No forged record is held, and the honest member is still admitted.
    let held = f.records().await.unwrap();
    assert!(
        forged.iter().all(|r| !held.contains(r)),
        "a forged record was taken"
    );
    assert_eq!(held.len(), records.len());
    let after = f.status().await.unwrap();
    assert!(
        after.peers.contains(&honest.org_id()),
        "the honest member is still served"
    );
    let report = f.inspect(node::Inspect::Peers).await.unwrap().to_string();
    assert!(report.contains("banned until"), "{report}");

    // Back during the ban: not let in (the connection is refused or
    // closed before any Hello is answered).
    let refused = Insider::try_connect(&district, fa, f.peer_id())
        .await
        .map(|_| ());
    assert!(refused.is_err(), "the banned organization got back in");
    println!(
        "insider directory: 2 forged revocation lists and forged records refused; the forger banned and not let back in; the honest member still served"
    );
    h.shutdown().await;
    f.shutdown().await;
    let _ = federal;
}

/// A regional authority certificate that claims the federation's root as
/// its issuer but was signed by its own key, and two organizations it
/// "certified", pushed in one batch: the first out of date, the second in
/// date. A batch once kept such an authority as checked after the first
/// record failed on its dates, and took the second: an organization no
/// authority of the federation ever certified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_certified_by_a_forged_authority_is_not_taken_from_a_batch() {
    use konsilium_protocol::cert::Validity;
    use konsilium_protocol::testkit::{TestFederation, forged_authority};
    use konsilium_protocol::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let before = f.records().await.unwrap();

    let now = node::now();
    let days =
        |d: i64| Timestamp::from_unix_millis((now.unix_millis() as i64 + d * 86_400_000) as u64);
    let forger = forged_authority(
        fed.root().key(),
        "RU-VLG",
        Validity {
            from: days(-30),
            until: days(3650),
        },
    );
    let mut strangers = TestFederation::new("forged-authority");
    let mut certified = |index: u64, from: i64, until: i64| {
        let validity = Validity {
            from: days(from),
            until: days(until),
        };
        let org = (strangers.org(
            index,
            OrgLevel::District,
            "RU-VLG",
            &[Specialty::Cardiology],
        ))
        .certified_by(&forger, validity, 900 + index);
        let mut record = org.record(1);
        record.issued_at = now;
        org.sign(&record)
    };
    let out_of_date = certified(1, -10, -1);
    let planted = certified(2, -1, 365);

    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let _ = insider
        .ask(Request::PushRecords(RecordBatch {
            records: vec![out_of_date, planted.clone()],
        }))
        .await;
    // Answered once the batch was taken in or refused.
    let held = f.records().await.unwrap();
    assert!(!held.contains(&planted), "the planted record was taken");
    assert_eq!(held.len(), before.len());
    println!(
        "insider directory: a batch's organization certified by a forged authority was not taken"
    );
    f.shutdown().await;
    let _ = federal;
}

/// A member asking a center for routing candidates without end is
/// answered up to its share of the node, then refused as transient with
/// the wait named, its directory requests too: each lookup ranks the whole
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asking_without_end_is_refused_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let (_federal, f, district, fa) = federal_and_turned_district(&mut fed).await;
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;
    let lookup = || Request::Candidates {
        specialty: Specialty::Cardiology,
        min_level: OrgLevel::Regional,
        urgency: konsilium_protocol::urgency::Urgency::Planned,
    };
    let transient = |r: &Response| {
        matches!(r, Response::Refused(konsilium_protocol::rpc::Refusal::Transient(why))
            if why.contains("ask again in"))
    };
    let mut answered = 0;
    let mut wants_refused = 0;
    // The share drains continuously (a few KB a second here): a want sent
    // right after a refusal is refused unless the machine stalled long
    // enough between the two for the last answer's overrun to drain, so
    // the pair is tried up to three times.
    for _ in 0..3 {
        let refusal = loop {
            match insider.ask(lookup()).await.unwrap() {
                Response::Records(_) => answered += 1,
                other => break other,
            }
            assert!(answered < 20_000, "never refused");
        };
        assert!(transient(&refusal), "{refusal:?}");
        let want = Request::WantRecords(wire::RecordRequest { orgs: vec![] });
        if transient(&insider.ask(want).await.unwrap()) {
            wants_refused += 1;
            break;
        }
    }
    // Its share is at least 4 MiB, a lookup's answer a few records.
    assert!(answered > 500, "refused after {answered} lookups");
    assert_eq!(
        wants_refused, 1,
        "directory requests share the lookups' share"
    );
}
