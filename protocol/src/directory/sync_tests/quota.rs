//! What each peer's directory requests may cost: answers, pushes that
//! change nothing and lookups drawn from one share, refused as transient
//! past it.

use super::*;

fn after(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(NOW.unix_millis() + ms)
}

/// Asks `m` again and again as `peer` at `at`; the bytes answered (whole
/// frames) or pushed (`each` a push) before the first answer that is not
/// `Records` or `Done`, and that answer.
fn until_refused(
    m: &mut DirectorySync<u8>,
    at: Timestamp,
    peer: u8,
    request: &Request,
    trust: &crate::cert::Trust,
    each: u64,
) -> (u64, Response) {
    let mut total = 0u64;
    loop {
        match m.handle_request(at, peer, request.clone(), trust) {
            Response::Records(batch) => total += frames::frame_len(&batch) as u64,
            Response::Done => total += each,
            other => return (total, other),
        }
        assert!(total < 64 << 20, "never refused");
    }
}

/// A machine on its own, with three organizations of one region to use;
/// `holding` them in its directory or not.
fn machine(name: &str, holding: bool) -> (TestFederation, Vec<TestOrg>, DirectorySync<u8>) {
    let mut fed = TestFederation::new(name);
    let orgs = orgs(&mut fed, 3, "RU-VLG");
    let mut m = DirectorySync::new(config(0, Scope::Federation), Directory::new());
    for org in orgs.iter().filter(|_| holding) {
        let verdict = m.handle_gossip(NOW, 1, org.signed_record(1), &fed.trust);
        assert_eq!(verdict, GossipVerdict::Accept);
    }
    (fed, orgs, m)
}

/// What a peer may spend at once: twice the directory, and room for a
/// small one.
fn share(m: &DirectorySync<u8>) -> u64 {
    2 * m.directory().bytes() as u64 + (4 << 20)
}

fn is_transient(response: &Response) -> bool {
    matches!(response, Response::Refused(crate::rpc::Refusal::Transient(why)) if why.contains("ask again in"))
}

/// A peer asking without end is answered up to its share (twice the
/// directory, and room for a small one), then refused as transient until
/// its spending drains; the other peers are served meanwhile.
#[test]
fn a_peer_asking_without_end_is_refused_for_a_while_and_others_are_not() {
    let (fed, orgs, mut m) = machine("sync-quota", true);
    let trust = &fed.trust;
    let want = Request::WantRecords(RecordRequest {
        orgs: orgs.iter().map(TestOrg::id).collect(),
    });
    let (answered, refusal) = until_refused(&mut m, NOW, 7, &want, trust, 0);
    assert!(is_transient(&refusal), "{refusal:?}");
    let share = share(&m);
    assert!(
        (share..share + (64 << 10)).contains(&answered),
        "refused after {answered} bytes, the share being {share}"
    );
    assert!(matches!(
        m.handle_request(NOW, 8, want.clone(), trust),
        Response::Records(_)
    ));
    assert!(is_transient(&m.handle_request(NOW, 7, want.clone(), trust)));
    assert!(matches!(
        m.handle_request(after(10 * 60 * 1000), 7, want, trust),
        Response::Records(_)
    ));
}

/// Pushed records that change nothing cost the pusher their bytes
/// (records whose certificates expired are no offence, and each is
/// checked again; records already held cost a decode); records that
/// change the directory cost nothing.
#[test]
fn pushes_that_change_nothing_are_charged_and_pushes_that_change_records_are_not() {
    let (fed, orgs, mut m) = machine("sync-quota-push", false);
    let trust = &fed.trust;
    let expired_at = after(400 * crate::testkit::DAY_MS);
    let records: Vec<SignedRecord> = orgs.iter().map(|o| o.signed_record(1)).collect();
    let bytes: u64 = records.iter().map(|r| r.signed_bytes().len() as u64).sum();
    let expired = Request::PushRecords(RecordBatch { records });
    let (pushed, refusal) = until_refused(&mut m, expired_at, 7, &expired, trust, bytes);
    assert!(is_transient(&refusal), "{refusal:?}");
    assert!(
        ((4 << 20)..(4 << 20) + 2 * bytes).contains(&pushed),
        "refused after {pushed} bytes"
    );
    assert!(m.directory().is_empty());

    // Each push a newer record: more than the share, all taken in.
    let (mut changed, mut sequence) = (0u64, 0);
    while changed < (4 << 20) + (64 << 10) {
        sequence += 1;
        let record = orgs[0].signed_record(sequence);
        changed += record.signed_bytes().len() as u64;
        let push = Request::PushRecords(RecordBatch {
            records: vec![record],
        });
        assert_eq!(m.handle_request(NOW, 8, push, trust), Response::Done);
    }
    assert!(changed > share(&m));
    assert_eq!(
        m.directory().get(&orgs[0].id()).unwrap().record().sequence,
        sequence
    );
    // The record held, pushed again and again: charged like the expired.
    let held = orgs[0].signed_record(sequence);
    let size = held.signed_bytes().len() as u64;
    let again = Request::PushRecords(RecordBatch {
        records: vec![held],
    });
    let (pushed, refusal) = until_refused(&mut m, NOW, 9, &again, trust, size);
    assert!(is_transient(&refusal), "{refusal:?}");
    let share = share(&m);
    assert!(
        (share..share + 2 * size).contains(&pushed),
        "refused after {pushed} bytes"
    );
}

/// Lookups the shell answers from the directory (routing candidates)
/// draw on the same share: a peer asking without end is refused as
/// transient, and another is answered.
#[test]
fn lookups_draw_on_the_same_share() {
    let (fed, _, mut m) = machine("sync-quota-lookup", true);
    let all = |d: &Directory| RecordBatch {
        records: d.entries().map(|e| e.signed().clone()).collect(),
    };
    let mut answered = 0u64;
    let refusal = loop {
        match m.handle_lookup(NOW, 7, all) {
            Response::Records(batch) => {
                assert_eq!(batch.records.len(), 3);
                // The answer's frame and a sixty-fourth of the directory.
                let frame = frames::frame_len(&batch);
                answered += (frame + m.directory().bytes() / 64) as u64;
            }
            other => break other,
        }
        assert!(answered < 64 << 20, "never refused");
    };
    assert!(is_transient(&refusal), "{refusal:?}");
    let share = share(&m);
    assert!(
        (share..share + (64 << 10)).contains(&answered),
        "refused after {answered} bytes, the share being {share}"
    );
    assert!(matches!(m.handle_lookup(NOW, 8, all), Response::Records(_)));
    assert!(is_transient(&m.handle_request(
        NOW,
        7,
        Request::WantRecords(RecordRequest { orgs: vec![] }),
        &fed.trust
    )));
}
