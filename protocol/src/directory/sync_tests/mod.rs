//! The directory machine on the simulated network: convergence, a late
//! joiner, loss, a partition with conflicting updates, a 20,000-record
//! difference within the frame limits, the scope, and refusals. Every
//! outcome is read from the directories themselves.

use super::*;
use crate::cert::OrgLevel;
use crate::rpc::{Request, Response};
use crate::specialty::Specialty;
use crate::testkit::{
    DirectoryNode, Link, NOW, SimConfig, SimNet, SimNode, TestFederation, TestOrg, seed,
};
use crate::wire::{RecordBatch, RecordRequest, WireMessage};
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_secs(10);

fn config(i: usize, scope: Scope) -> SyncConfig {
    SyncConfig {
        interval: INTERVAL,
        ..SyncConfig::new(scope, seed("sync-test", i as u64))
    }
}

fn network(fed: &TestFederation, nodes: usize, sim: SimConfig) -> SimNet<DirectoryNode> {
    let mut net = SimNet::new(sim, NOW);
    for i in 0..nodes {
        net.add(DirectoryNode::new(
            config(i, Scope::Federation),
            Directory::new(),
            fed.trust.clone(),
        ));
    }
    net
}

fn orgs(fed: &mut TestFederation, n: u64, region: &str) -> Vec<TestOrg> {
    (0..n)
        .map(|i| fed.org(i, OrgLevel::District, region, &[Specialty::Cardiology]))
        .collect()
}

/// Each organization's first record published at one of the first
/// `nodes` nodes, in turn.
fn publish_round_robin(net: &mut SimNet<DirectoryNode>, orgs: &[TestOrg], nodes: usize) {
    let now = net.now();
    for (i, o) in orgs.iter().enumerate() {
        net.node_mut(i % nodes)
            .publish(now, vec![o.signed_record(1)]);
    }
}

/// `n` organizations of one region, published in turn at `nodes` nodes,
/// all connected and run until every directory holds every record.
fn converged_federation(
    name: &str,
    n: u64,
    nodes: usize,
) -> (TestFederation, Vec<TestOrg>, SimNet<DirectoryNode>) {
    let mut fed = TestFederation::new(name);
    let orgs = orgs(&mut fed, n, "RU-VLG");
    let mut net = network(&fed, nodes, SimConfig::default());
    publish_round_robin(&mut net, &orgs, nodes);
    net.connect_all();
    assert!(net.run_until(Duration::from_secs(600), |net| converged(net, n as usize)));
    (fed, orgs, net)
}

/// Every node holds the same directory of `len` records.
fn converged(net: &SimNet<DirectoryNode>, len: usize) -> bool {
    let first = net.node(0).directory().digest();
    net.nodes()
        .iter()
        .all(|n| n.directory().len() == len && n.directory().digest() == first)
}

fn distinct_digests(net: &SimNet<DirectoryNode>) -> usize {
    let d: BTreeSet<[u8; 32]> = net.nodes().iter().map(|n| n.directory().digest()).collect();
    d.len()
}

fn assert_clean(net: &SimNet<DirectoryNode>) {
    assert_eq!(net.violations(), &[]);
    for (i, n) in net.nodes().iter().enumerate() {
        assert_eq!(n.rejections, vec![], "node {i}");
    }
}

#[test]
fn thirty_nodes_converge_from_disjoint_records() {
    let mut fed = TestFederation::new("sync-30");
    let orgs = orgs(&mut fed, 90, "RU-VLG");
    let mut net = network(&fed, 30, SimConfig::default());
    publish_round_robin(&mut net, &orgs, 30);
    assert_eq!(distinct_digests(&net), 30);
    net.connect_all();
    assert!(net.run_until(Duration::from_secs(600), |n| converged(n, 90)));
    assert_clean(&net);
    // Each node stored every record it lacked exactly once: 87 each.
    for n in net.nodes() {
        assert_eq!(n.stored, 3 + 87);
    }
    assert!(
        net.now().since(NOW) < Duration::from_secs(120),
        "{}",
        net.now()
    );
}

/// Once the directories agree, a round is one digest and its answer: a
/// few dozen bytes each way, where each round used to send all 256 bucket
/// hashes (8 KiB) and have them compared. A change is still found.
#[test]
fn rounds_between_directories_that_agree_send_only_a_digest() {
    let (_fed, orgs, mut net) = converged_federation("sync-digest", 40, 5);
    // Pushes planned before the last record arrived still land.
    net.run_for(INTERVAL * 3);
    let before: Vec<_> = (0..5).map(|i| net.stats(i)).collect();
    net.run_for(INTERVAL * 30);
    for (i, was) in before.iter().enumerate() {
        let now = net.stats(i);
        let requests = now.requests - was.requests;
        assert!(requests >= 20, "node {i} kept its rounds: {requests}");
        // Its requests and its answers to its peers' alike.
        let per_message = (now.bytes - was.bytes) / (now.messages() - was.messages());
        assert!(per_message < 80, "node {i}: {per_message} bytes a message");
    }
    let now = net.now();
    net.node_mut(2).publish(now, vec![orgs[7].signed_record(2)]);
    assert!(net.run_until(Duration::from_secs(600), |n| {
        n.nodes().iter().all(|d| {
            let held = d.directory().get(&orgs[7].id());
            held.is_some_and(|e| e.record().sequence == 2)
        })
    }));
    assert_clean(&net);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let mut fed = TestFederation::new("sync-replay");
    let orgs = orgs(&mut fed, 24, "RU-VLG");
    let run = |sim_seed: u64| {
        let mut net = network(
            &fed,
            8,
            SimConfig {
                seed: sim_seed,
                link: Link {
                    jitter: Duration::from_millis(30),
                    loss: 0.1,
                    ..Link::default()
                },
                ..SimConfig::default()
            },
        );
        publish_round_robin(&mut net, &orgs, 8);
        net.connect_all();
        assert!(net.run_until(Duration::from_secs(900), |n| converged(n, 24)));
        (net.now(), net.total())
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn a_late_joiner_catches_up_through_the_peers_it_meets() {
    let (fed, _, mut net) = converged_federation("sync-late", 60, 10);
    let late = net.add(DirectoryNode::new(
        config(10, Scope::Federation),
        Directory::new(),
        fed.trust.clone(),
    ));
    assert!(!converged(&net, 60));
    // It meets two members only; admission alone starts a sync.
    net.connect(late, 3);
    net.connect(late, 7);
    net.settle();
    assert!(converged(&net, 60), "one exchange on admission is enough");
    assert_eq!(net.node(late).stored, 60);
    assert_clean(&net);
}

#[test]
fn twenty_percent_loss_still_converges() {
    let mut fed = TestFederation::new("sync-loss");
    let orgs = orgs(&mut fed, 80, "RU-VLG");
    let sim = SimConfig {
        link: Link {
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(60),
            loss: 0.2,
        },
        seed: 7,
        ..SimConfig::default()
    };
    let mut net = network(&fed, 20, sim);
    publish_round_robin(&mut net, &orgs, 20);
    net.connect_all();
    assert!(net.run_until(Duration::from_secs(3600), |n| converged(n, 80)));
    let total = net.total();
    assert!(
        total.lost * 10 > total.messages(),
        "{total:?}: about 20% lost"
    );
    let failed = net
        .nodes()
        .iter()
        .flat_map(|n| &n.finished)
        .filter(|e| matches!(e, SyncEvent::Finished { failed: true, .. }))
        .count();
    assert!(failed > 0, "losses must show as failed exchanges");
    assert_clean(&net);
}

#[test]
fn a_partition_with_conflicting_updates_heals_to_one_digest() {
    let mut fed = TestFederation::new("sync-partition");
    let orgs = orgs(&mut fed, 40, "RU-VLG");
    let mut net = network(&fed, 12, SimConfig::default());
    let now = net.now();
    let first: Vec<SignedRecord> = orgs.iter().map(|o| o.signed_record(1)).collect();
    for i in 0..12 {
        net.node_mut(i).publish(now, first.clone());
    }
    net.connect_all();
    net.partition(|i| i / 6);
    let now = net.now();
    // The same organizations publish on both sides: higher sequences on
    // one side for some, on the other for others, and equal sequences
    // with different contents (settled by the hash) for the rest.
    let mut expected = BTreeMap::new();
    for (k, o) in orgs.iter().enumerate().take(15) {
        let (a, b) = match k % 3 {
            0 => (5, 3),
            1 => (2, 4),
            _ => (6, 6),
        };
        let mut ra = o.record(a);
        ra.issued_at = Timestamp::from_unix_millis(NOW.unix_millis() + 1);
        let mut rb = o.record(b);
        rb.issued_at = Timestamp::from_unix_millis(NOW.unix_millis() + 2);
        let (ra, rb) = (o.sign(&ra), o.sign(&rb));
        let winner = if (a, ra.record_hash()) > (b, rb.record_hash()) {
            ra.clone()
        } else {
            rb.clone()
        };
        expected.insert(o.id(), winner.record_hash());
        net.node_mut(k % 6).publish(now, vec![ra]);
        net.node_mut(6 + k % 6).publish(now, vec![rb]);
    }
    net.run_for(Duration::from_secs(300));
    let (left, right) = net.nodes().split_at(6);
    let l = left[0].directory().digest();
    let r = right[0].directory().digest();
    assert!(
        left.iter().all(|n| n.directory().digest() == l),
        "each side converged"
    );
    assert!(right.iter().all(|n| n.directory().digest() == r));
    assert_ne!(l, r, "the sides drifted apart");

    net.heal();
    assert!(net.run_until(Duration::from_secs(600), |n| converged(n, 40)));
    for n in net.nodes() {
        for (org, hash) in &expected {
            assert_eq!(n.directory().get(org).unwrap().hash(), *hash);
        }
    }
    assert_clean(&net);
}

/// 20,000 organizations, signed once for the tests that need them.
static BIG: LazyLock<(TestFederation, Vec<SignedRecord>)> = LazyLock::new(|| {
    let mut fed = TestFederation::new("sync-20k");
    let records = (0..20_000)
        .map(|i| {
            fed.org(i, OrgLevel::District, "RU-VLG", &[Specialty::Urology])
                .signed_record(1)
        })
        .collect();
    (fed, records)
});

/// Two nodes differing by 20,000 records (10,000 held by each alone)
/// converge; returns the network to inspect its frames.
fn twenty_thousand_apart(budget: FrameBudget) -> SimNet<DirectoryNode> {
    let (fed, records) = &*BIG;
    let mut net = SimNet::new(SimConfig::default(), NOW);
    for i in 0..2 {
        let mut c = config(i, Scope::Federation);
        c.budget = budget;
        let mut dir = Directory::new();
        dir.insert_many(
            records.iter().skip(i).step_by(2).cloned().collect(),
            &fed.trust,
            NOW,
        );
        net.add(DirectoryNode::new(c, dir, fed.trust.clone()));
    }
    assert_ne!(
        net.node(0).directory().digest(),
        net.node(1).directory().digest()
    );
    net.node_mut(0).start_sync(NOW, 1);
    net.settle();
    assert!(converged(&net, 20_000));
    assert_clean(&net);
    net
}

#[test]
fn twenty_thousand_records_apart_converge_in_frames_within_the_limits() {
    let net = twenty_thousand_apart(FrameBudget::default());
    let largest = net.total().largest_frame;
    // 10,000 records of ~700 bytes: one batch each way, under 32 MiB.
    assert!(largest <= RecordBatch::MAX_LEN, "{largest}");
    assert!(largest > 5_000_000, "{largest}");

    // A transport with 1 MiB frames: the same difference, cut to fit.
    let budget = FrameBudget {
        records: 1 << 20,
        request: 64 << 10,
        summaries: 256 << 10,
    };
    let net = twenty_thousand_apart(budget);
    let (a, b) = (net.stats(0), net.stats(1));
    assert!(a.largest_frame <= 1 << 20 && b.largest_frame <= 1 << 20);
    // ~7 MB each way in 1 MiB frames; 10,000 ids in 64 KiB requests; the
    // 640 KiB of summaries in 256 KiB answers, over several rounds.
    assert!(a.requests >= 7 + 5, "{a:?}");
    assert!(b.responses >= 7, "{b:?}");
    assert_eq!(a.records + b.records, 20_000, "each record sent once");
}

#[test]
fn a_region_scoped_node_keeps_its_region_only() {
    let mut fed = TestFederation::new("sync-scope");
    let vlg = orgs(&mut fed, 20, "RU-VLG");
    let mow: Vec<TestOrg> = (100..120)
        .map(|i| fed.org(i, OrgLevel::District, "RU-MOW", &[Specialty::Cardiology]))
        .collect();
    let mut net = network(&fed, 3, SimConfig::default());
    let region = RegionCode::new("RU-VLG").unwrap();
    let scoped = net.add(DirectoryNode::new(
        config(3, Scope::Region(region.clone())),
        Directory::new(),
        fed.trust.clone(),
    ));
    let now = net.now();
    for (i, o) in vlg.iter().chain(&mow).enumerate() {
        net.node_mut(i % 3).publish(now, vec![o.signed_record(1)]);
    }
    net.connect_all();
    net.run_for(Duration::from_secs(600));
    let full = &net.nodes()[..3];
    assert!(full.iter().all(|n| n.directory().len() == 40));
    let dir = net.node(scoped).directory();
    assert_eq!(dir.len(), 20);
    assert!(dir.entries().all(|e| *e.region() == region));
    // Exchanges with it cover its region only: it asks for nothing from
    // elsewhere, and full peers push it nothing from elsewhere (each round
    // pushed it the other region's 20 records before offers and answers
    // carried the scope).
    let asked = net.node(scoped).asked_for;
    let records =
        |net: &SimNet<DirectoryNode>| -> u64 { (0..3).map(|i| net.stats(i).records).sum() };
    let (requests, pushed) = (net.stats(scoped).requests, records(&net));
    net.run_for(Duration::from_secs(600));
    assert_eq!(net.node(scoped).asked_for, asked);
    assert!(net.stats(scoped).requests > requests, "it kept syncing");
    assert_eq!(records(&net), pushed, "nothing was pushed once converged");
    assert_eq!(net.node(scoped).directory().len(), 20);
    // A record of its region changed at a full peer reaches it by
    // anti-entropy alone, and a peer of another region shares nothing.
    let now = net.now();
    net.node_mut(0).publish(now, vec![vlg[3].signed_record(2)]);
    net.run_for(Duration::from_secs(600));
    let held = net.node(scoped).directory().get(&vlg[3].id());
    assert_eq!(held.map(|e| e.record().sequence), Some(2));
    let elsewhere = SyncOffer {
        region: Some(RegionCode::new("RU-MOW").unwrap()),
        ..net.node(1).directory().sync_offer(None)
    };
    let answer = (net.node_mut(scoped)).handle_request(NOW, 0, Request::SyncOffer(elsewhere));
    assert!(
        matches!(&answer, Response::Summaries(s) if s.summaries.is_empty()
            && s.region.as_ref() == Some(&region)),
        "{answer:?}"
    );
    // Its digest answers alike: nothing shared with another region's; a
    // digest over the federation says nothing of its region's records, so
    // the offer must follow; over its own region, a full peer agrees.
    let full_peer = net.node(1).directory().clone();
    let mut digest =
        |d: SyncDigest| (net.node_mut(scoped)).handle_request(NOW, 0, Request::SyncDigest(d));
    let moscow = RegionCode::new("RU-MOW").unwrap();
    let same = Response::Digest(DigestMatch::Same);
    assert_eq!(digest(full_peer.sync_digest(Some(&moscow))), same);
    assert_eq!(
        digest(full_peer.sync_digest(None)),
        Response::Digest(DigestMatch::Differs)
    );
    assert_eq!(digest(full_peer.sync_digest(Some(&region))), same);

    // Gossip from elsewhere is ignored; a record it asked for is kept.
    let node = net.node_mut(scoped);
    assert_eq!(
        node.gossip(NOW, 0, mow[0].signed_record(2)),
        GossipVerdict::Ignore
    );
    assert_eq!(node.directory().len(), 20);
    assert_eq!(
        node.publish(NOW, vec![mow[0].signed_record(2)]),
        vec![Ok(Merge::Added)]
    );
    // Held now, so its updates are in scope.
    assert_eq!(
        node.gossip(NOW, 0, mow[0].signed_record(3)),
        GossipVerdict::Accept
    );
    assert_clean(&net);
}

#[test]
fn forged_and_invalid_records_are_rejected_and_reported() {
    let mut fed = TestFederation::new("sync-forged");
    let orgs = orgs(&mut fed, 3, "RU-VLG");
    let mut m: DirectorySync<u8> =
        DirectorySync::new(config(0, Scope::Federation), Directory::new());
    let trust = &fed.trust;
    let forged = Signed::sign(&orgs[1].identity, &orgs[0].record(1));
    assert_eq!(
        m.handle_gossip(NOW, 7, forged, trust),
        GossipVerdict::Reject
    );
    let later = Timestamp::from_unix_millis(NOW.unix_millis() + 400 * crate::testkit::DAY_MS);
    assert_eq!(
        m.handle_gossip(later, 7, orgs[2].signed_record(1), trust),
        GossipVerdict::Reject
    );
    assert_eq!(
        m.handle_gossip(NOW, 7, orgs[0].signed_record(1), trust),
        GossipVerdict::Accept
    );
    assert_eq!(
        m.handle_gossip(NOW, 8, orgs[0].signed_record(1), trust),
        GossipVerdict::Ignore
    );
    let mut broken = orgs[1].record(2);
    broken.consultants.push(broken.consultants[0].clone());
    let pushed = Request::PushRecords(RecordBatch {
        records: vec![orgs[1].sign(&broken), orgs[1].signed_record(1)],
    });
    assert_eq!(m.handle_request(NOW, 9, pushed, trust), Response::Done);
    assert_eq!(
        m.directory().len(),
        2,
        "the valid records of the batch are kept"
    );

    let outputs: Vec<Output<u8>> = std::iter::from_fn(|| m.poll_output()).collect();
    let rejected: Vec<&Rejection<u8>> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Rejected(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 3);
    assert_eq!(
        (rejected[0].from, rejected[0].org),
        (Some(7), Some(orgs[0].id()))
    );
    assert!(matches!(rejected[0].error, RecordError::Signed(_)));
    assert!(matches!(
        rejected[1].error,
        RecordError::Chain(crate::cert::CertError::Expired { .. })
    ));
    assert_eq!(
        (rejected[2].from, rejected[2].org),
        (Some(9), Some(orgs[1].id()))
    );
    assert!(rejected[2].error.to_string().contains("appears twice"));
    let stored: Vec<OrgId> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Stored(s) => Some(s.org),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![orgs[0].id(), orgs[1].id()]);
}

/// What the held record outranks could change nothing, genuine or not,
/// so it is not verified: a peer replaying stale records costs a decode
/// each, not a signature check. Shown by forged ones, which a check would
/// refuse and report: older than the held record they are ignored, newer
/// they are still refused.
#[test]
fn records_the_held_one_outranks_are_ignored_unchecked() {
    let mut fed = TestFederation::new("sync-stale");
    let orgs = orgs(&mut fed, 2, "RU-VLG");
    let mut m: DirectorySync<u8> =
        DirectorySync::new(config(0, Scope::Federation), Directory::new());
    let trust = &fed.trust;
    assert_eq!(
        m.handle_gossip(NOW, 7, orgs[0].signed_record(5), trust),
        GossipVerdict::Accept
    );
    let _ = std::iter::from_fn(|| m.poll_output()).count();
    // Signed by another organization's key: forged.
    let forged = |sequence| Signed::sign(&orgs[1].identity, &orgs[0].record(sequence));
    let stale = Request::PushRecords(RecordBatch {
        records: vec![forged(4), orgs[0].signed_record(3), forged(1)],
    });
    assert_eq!(m.handle_request(NOW, 9, stale, trust), Response::Done);
    assert_eq!(
        m.handle_gossip(NOW, 9, forged(2), trust),
        GossipVerdict::Ignore
    );
    assert_eq!(
        std::iter::from_fn(|| m.poll_output()).count(),
        0,
        "nothing refused, nothing stored"
    );
    assert_eq!(
        m.handle_gossip(NOW, 9, forged(6), trust),
        GossipVerdict::Reject
    );
    assert_eq!(
        m.directory().get(&orgs[0].id()).unwrap().record().sequence,
        5
    );
    let rejected = std::iter::from_fn(|| m.poll_output())
        .filter(|o| matches!(o, Output::Rejected(r) if matches!(r.error, RecordError::Signed(_))))
        .count();
    assert_eq!(rejected, 1);
}

/// `signature` over `bytes` of another record: what anyone can make of
/// records they saw.
fn grafted(signature: &SignedRecord, bytes: &SignedRecord) -> SignedRecord {
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        #[serde(with = "serde_bytes")]
        bytes: &'a [u8],
        signature: &'a ed25519_dalek::Signature,
    }
    let raw = Raw {
        bytes: bytes.signed_bytes(),
        signature: signature.signature(),
    };
    postcard::from_bytes(&postcard::to_allocvec(&raw).unwrap()).unwrap()
}

#[test]
fn a_record_is_named_by_its_signature_and_one_grafted_on_other_bytes_is_ignored() {
    let mut fed = TestFederation::new("sync-named");
    let orgs = orgs(&mut fed, 1, "RU-VLG");
    let trust = &fed.trust;
    let mut m: DirectorySync<u8> =
        DirectorySync::new(config(0, Scope::Federation), Directory::new());
    let held = orgs[0].signed_record(5);
    assert_eq!(
        m.handle_gossip(NOW, 7, held.clone(), trust),
        GossipVerdict::Accept
    );
    let _ = std::iter::from_fn(|| m.poll_output()).count();
    // The same sequence with other content is another record.
    let mut other = orgs[0].record(5);
    other.consultants[0].name = "Another consultant".into();
    assert_ne!(orgs[0].sign(&other).record_hash(), held.record_hash());
    // The held record's signature on a newer record's bytes is named as
    // the held one: ignored, not checked, nothing stored or refused.
    let newer = orgs[0].signed_record(6);
    let forged = grafted(&held, &newer);
    assert_eq!(forged.record_hash(), held.record_hash());
    assert_eq!(
        m.handle_gossip(NOW, 9, forged, trust),
        GossipVerdict::Ignore
    );
    assert_eq!(std::iter::from_fn(|| m.poll_output()).count(), 0);
    // The genuine newer record is taken.
    assert_eq!(m.handle_gossip(NOW, 9, newer, trust), GossipVerdict::Accept);
    assert_eq!(
        m.directory().get(&orgs[0].id()).unwrap().record().sequence,
        6
    );
}

#[test]
fn answers_are_matched_to_requests_and_silence_times_out() {
    let mut fed = TestFederation::new("sync-timeout");
    let orgs = orgs(&mut fed, 2, "RU-VLG");
    let trust = &fed.trust;
    // Rounds an hour apart, so the request deadline comes first.
    let hour = Duration::from_secs(3600);
    let mut c = config(0, Scope::Federation);
    c.interval = hour;
    let mut m: DirectorySync<u8> = DirectorySync::new(c, Directory::new());
    assert_eq!(m.poll_timeout(), None);
    m.handle_peer_admitted(NOW, 1);
    let Some(Output::Transmit {
        to: 1,
        token,
        request: Request::SyncDigest(_),
    }) = m.poll_output()
    else {
        panic!("admission starts a sync")
    };
    assert!(m.is_syncing_with(&1));
    assert_eq!(
        m.poll_timeout(),
        Some(NOW.saturating_add(m.config().request_timeout))
    );
    // A wrong kind of answer is reported and ends the exchange.
    assert_eq!(
        m.handle_response(NOW, token, Response::Done, trust),
        Err(SyncError::Unexpected {
            asked: "SyncDigest",
            got: "Done"
        })
    );
    assert!(!m.is_syncing_with(&1));
    assert_eq!(
        m.handle_response(NOW, token, Response::Done, trust),
        Err(SyncError::UnknownToken(token))
    );
    // The round, with the only peer: then nothing answers.
    let round = NOW.saturating_add(hour);
    m.handle_timeout(round);
    let events: Vec<_> = std::iter::from_fn(|| m.poll_output()).collect();
    let token = events
        .iter()
        .find_map(|o| match o {
            Output::Transmit { token, .. } => Some(*token),
            _ => None,
        })
        .expect("a round started");
    let deadline = round.saturating_add(m.config().request_timeout);
    assert_eq!(m.poll_timeout(), Some(deadline));
    m.handle_timeout(deadline);
    assert!(!m.is_syncing_with(&1));
    assert_eq!(
        m.handle_response(deadline, token, Response::Done, trust),
        Err(SyncError::UnknownToken(token))
    );
    // A peer that does not have what it was asked for answers nothing more.
    let mut peer: DirectorySync<u8> =
        DirectorySync::new(config(1, Scope::Federation), Directory::new());
    let missing = Request::WantRecords(RecordRequest {
        orgs: vec![orgs[0].id()],
    });
    assert_eq!(
        peer.handle_request(NOW, 0, missing, trust),
        Response::Records(RecordBatch { records: vec![] })
    );
    assert!(matches!(
        peer.handle_request(NOW, 0, Request::Revocations(vec![]), trust),
        Response::Refused(_)
    ));
}

#[test]
fn a_peer_gone_mid_exchange_ends_it_and_is_not_chosen_again() {
    let fed = TestFederation::new("sync-gone");
    let trust = &fed.trust;
    let mut m: DirectorySync<u8> =
        DirectorySync::new(config(0, Scope::Federation), Directory::new());
    m.handle_peer_admitted(NOW, 1);
    m.handle_peer_admitted(NOW, 2);
    let tokens: Vec<(u8, RequestToken)> = std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            Output::Transmit { to, token, .. } => Some((to, token)),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
    m.handle_peer_gone(NOW, 1);
    assert!(!m.is_syncing_with(&1) && m.is_syncing_with(&2));
    assert_eq!(
        m.poll_output(),
        Some(Output::Event(SyncEvent::Finished {
            peer: 1,
            pushed: 0,
            pulled: 0,
            failed: true
        }))
    );
    assert_eq!(
        m.handle_response(NOW, tokens[0].1, Response::Done, trust),
        Err(SyncError::UnknownToken(tokens[0].1))
    );
    // Rounds pick only among the peers still there and not busy.
    let same = Response::Digest(DigestMatch::Same);
    m.handle_response(NOW, tokens[1].1, same, trust).unwrap();
    for k in 1..=5u64 {
        let at = NOW.saturating_add(INTERVAL * k as u32);
        m.handle_timeout(at);
        let sent: Vec<(u8, RequestToken)> = std::iter::from_fn(|| m.poll_output())
            .filter_map(|o| match o {
                Output::Transmit { to, token, .. } => Some((to, token)),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, 2);
        m.handle_failure(at, sent[0].1);
    }
    assert_eq!(m.peers().copied().collect::<Vec<_>>(), vec![2]);
}

/// A node keeping one region remembers records found outside it so its
/// rounds stop asking for them; a made-up record naming a member of its
/// region (its certificate unverified, claiming another region) must not
/// stop its rounds asking for the member's own record.
#[test]
fn a_made_up_record_does_not_stop_rounds_asking_for_the_real_one() {
    let mut fed = TestFederation::new("sync-scope-forged");
    let member = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]);
    let outsider = fed.org(2, OrgLevel::District, "RU-MOW", &[Specialty::Cardiology]);
    let validity = crate::testkit::validity_days(365);
    let forger = crate::testkit::forged_authority(fed.root.key(), "RU-MOW", validity);
    // The member's own key and name, in a certificate anyone can make.
    let made_up = (fed.org(1, OrgLevel::District, "RU-MOW", &[Specialty::Cardiology]))
        .certified_by(&forger, validity, 901)
        .signed_record(5);
    let named = made_up.decode_unverified().unwrap().chain.org;
    assert_eq!(named.decode_unverified().unwrap().org, member.id());
    let trust = &fed.trust;
    let region = RegionCode::new("RU-VLG").unwrap();
    let mut m: DirectorySync<u8> =
        DirectorySync::new(config(0, Scope::Region(region)), Directory::new());
    let pushed = Request::PushRecords(RecordBatch {
        records: vec![made_up, outsider.signed_record(1)],
    });
    assert_eq!(m.handle_request(NOW, 9, pushed, trust), Response::Done);
    assert!(m.directory().is_empty(), "both are outside its region");

    // A full peer holds the member's real record; its summaries also list
    // the outsider's record, the very one left out.
    let mut full = Directory::new();
    full.insert(member.signed_record(1), trust, NOW).unwrap();
    let mut peer: DirectorySync<u8> = DirectorySync::new(config(1, Scope::Federation), full);
    m.handle_peer_admitted(NOW, 1);
    let Some(Output::Transmit {
        to: 1,
        token,
        request: digest @ Request::SyncDigest(_),
    }) = m.poll_output()
    else {
        panic!("admission starts a sync")
    };
    let differs = peer.handle_request(NOW, 0, digest, trust);
    assert_eq!(differs, Response::Digest(DigestMatch::Differs));
    m.handle_response(NOW, token, differs, trust).unwrap();
    let Some(Output::Transmit {
        to: 1,
        token,
        request: offer @ Request::SyncOffer(_),
    }) = m.poll_output()
    else {
        panic!("a digest that differed is followed by the offer")
    };
    let Response::Summaries(mut summaries) = peer.handle_request(NOW, 0, offer, trust) else {
        panic!("a sync offer is answered with summaries")
    };
    summaries.summaries.push(RecordSummary {
        org: outsider.id(),
        sequence: 1,
        hash: outsider.signed_record(1).record_hash(),
    });
    let answer = Response::Summaries(summaries);
    m.handle_response(NOW, token, answer, trust).unwrap();
    let wanted: Vec<OrgId> = std::iter::from_fn(|| m.poll_output())
        .filter_map(|o| match o {
            Output::Transmit {
                request: Request::WantRecords(r),
                ..
            } => Some(r.orgs),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(wanted, vec![member.id()]);
}

mod quota;
