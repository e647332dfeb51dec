//! Admission on the simulated network, in front of the directory machine
//! as the node runs it (`testkit::OrgNode`): members admit each other under
//! loss and across a healed partition, outsiders, impostors and silent
//! peers are refused and cut, and revocations and expiry end admissions.

use super::*;
use crate::cert::{CertChain, OrgLevel, RevocationNotice};
use crate::directory::{Directory, Scope, SyncConfig};
use crate::identity::IdentityKey;
use crate::rpc::{Request, Response};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::testkit::simnet::SimNode;
use crate::testkit::{
    DirectoryNode, Link, NOW, OrgNode, SimConfig, SimNet, TestFederation, TestOrg, seed,
};

fn federation(n: u64) -> (TestFederation, Vec<TestOrg>) {
    let mut fed = TestFederation::new("admission");
    let orgs = (0..n)
        .map(|i| {
            fed.org(
                i + 1,
                OrgLevel::District,
                "RU-VLG",
                &[Specialty::Cardiology],
            )
        })
        .collect();
    (fed, orgs)
}

/// A node per organization, each knowing only its own record. Requests
/// and Hellos that get no answer fail after 2 s.
fn network(fed: &TestFederation, orgs: &[TestOrg], link: Link) -> SimNet<OrgNode> {
    network_drawing(fed, orgs, link, 11)
}

/// [`network`], its links' losses and delays drawn from `seed`.
fn network_drawing(
    fed: &TestFederation,
    orgs: &[TestOrg],
    link: Link,
    seed_: u64,
) -> SimNet<OrgNode> {
    let sim = SimConfig {
        link,
        seed: seed_,
        failure_after: Duration::from_secs(2),
    };
    let mut net = SimNet::new(sim, NOW);
    for (i, org) in orgs.iter().enumerate() {
        let config = SyncConfig {
            interval: Duration::from_secs(10),
            ..SyncConfig::new(Scope::Federation, seed("admission", i as u64))
        };
        let mut directory = DirectoryNode::new(config, Directory::new(), fed.trust.clone());
        directory.publish(NOW, vec![org.signed_record(1)]);
        net.add(OrgNode::new(org.id(), org.chain.clone(), directory));
    }
    net
}

/// When an organization's certificate ends (its authority's lasts longer).
fn cert_end(org: &TestOrg) -> Timestamp {
    org.chain.org.decode_unverified().unwrap().validity.until
}

fn reasons(net: &SimNet<OrgNode>, node: usize, peer: usize) -> Vec<String> {
    net.node(node)
        .refused
        .iter()
        .filter(|(p, _)| *p == peer)
        .map(|(_, r)| r.to_string())
        .collect()
}

fn ready(net: &SimNet<OrgNode>, a: usize, b: usize) -> bool {
    net.node(a).admission().is_ready(&b) && net.node(b).admission().is_ready(&a)
}

#[test]
fn members_admit_each_other_then_their_directories_converge() {
    let (fed, orgs) = federation(2);
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 1));
    assert_eq!(net.node(1).admission().admitted(&0), Some(orgs[0].id()));
    for i in 0..2 {
        assert_eq!(net.node(i).directory().directory().len(), 2, "node {i}");
        assert!(net.node(i).refused.is_empty());
    }
    assert_eq!(net.violations(), &[]);
}

#[test]
fn a_peer_from_another_federation_hears_why_then_is_cut() {
    let (fed, mut orgs) = federation(1);
    orgs.push(TestFederation::new("elsewhere").org(9, OrgLevel::District, "RU-VLG", &[]));
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.run_for(Duration::from_millis(100));
    let why = reasons(&net, 0, 1);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].contains("not a configured federation root"),
        "{why:?}"
    );
    assert!(
        net.node(1)
            .refused_by
            .iter()
            .any(|(p, r)| *p == 0 && r.contains("not admitted")),
        "the outsider heard why"
    );
    assert!(net.node(0).admission().admitted(&1).is_none());
    net.run_for(Duration::from_secs(1));
    // Cut: the connection is gone on both sides, and nothing of the
    // outsider entered the member's directory.
    assert_eq!(net.node(0).admission().waiting().count(), 0);
    assert_eq!(net.node(1).admission().waiting().count(), 0);
    assert_eq!(net.node(0).directory().directory().len(), 1);
}

#[test]
fn a_silent_peer_is_refused_at_the_timeout_after_three_hellos() {
    let (fed, orgs) = federation(2);
    let mut net = network(&fed, &orgs, Link::default());
    net.partition(|i| i);
    net.connect(0, 1);
    net.run_for(Duration::from_secs(9));
    assert!(net.node(0).refused.is_empty(), "refused before the timeout");
    net.run_for(Duration::from_secs(2));
    let why = reasons(&net, 0, 1);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("within 10 s"), "{why:?}");
    // Three Hellos, each lost and failed after the network's timeout.
    assert_eq!(net.stats(0).requests, 3);
}

#[test]
fn a_peer_that_restarts_before_its_old_connection_closes_admits_us_from_our_welcome() {
    let (fed, orgs) = federation(2);
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 1));
    // Node 1 restarts and reconnects; node 0 has not seen the old
    // connection end, so to it the new one is a second connection of an
    // admitted peer and it sends no Hello. Its Welcome carries one.
    let mut directory = DirectoryNode::new(
        SyncConfig::new(Scope::Federation, seed("admission", 7)),
        Directory::new(),
        fed.trust.clone(),
    );
    directory.publish(NOW, vec![orgs[1].signed_record(1)]);
    *net.node_mut(1) = OrgNode::new(orgs[1].id(), orgs[1].chain.clone(), directory);
    let now = net.now();
    net.node_mut(1).handle_peer_up(now, 0, Some(orgs[0].id()));
    net.node_mut(0).handle_peer_up(now, 1, Some(orgs[1].id()));
    net.run_for(Duration::from_secs(30));
    assert!(
        ready(&net, 0, 1),
        "the restarted peer and we are not admitted both ways"
    );
    assert!(net.node(1).refused.is_empty(), "{:?}", reasons(&net, 1, 0));
}

#[test]
fn a_chain_presented_on_someone_elses_connection_is_refused() {
    let (fed, orgs) = federation(3);
    let mut net = network(&fed, &orgs[..1], Link::default());
    // Connects with organization 2's key but presents organization 1's chain.
    let impostor = DirectoryNode::new(
        SyncConfig::new(Scope::Federation, seed("impostor", 0)),
        Directory::new(),
        fed.trust.clone(),
    );
    net.add(OrgNode::new(orgs[2].id(), orgs[1].chain.clone(), impostor));
    net.connect(0, 1);
    net.run_for(Duration::from_secs(1));
    let why = reasons(&net, 0, 1);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("but the connection is from"), "{why:?}");
    assert!(net.node(0).admission().admitted(&1).is_none());
}

#[test]
fn a_revocation_brought_by_one_peer_refuses_another_and_keeps_it_out() {
    let (mut fed, orgs) = federation(3);
    let serial = orgs[2].chain.org.decode_unverified().unwrap().serial;
    let notice = fed
        .region("RU-VLG")
        .revoke(1, NOW, [serial].into_iter().collect());
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 2);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 2));
    assert_eq!(net.node(0).directory().directory().len(), 2);
    // Node 1 knows of the revocation; its Hello carries it to node 0.
    net.node_mut(1)
        .directory_mut()
        .trust_mut()
        .apply_revocations(&notice, NOW)
        .unwrap();
    net.connect(1, 0);
    net.run_for(Duration::from_secs(1));
    let why = reasons(&net, 0, 2);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains("revoked"), "{why:?}");
    assert!(ready(&net, 0, 1));
    assert!(!net.node(0).admission().is_ready(&2));
    assert!(
        net.node(0)
            .directory()
            .directory()
            .get(&orgs[2].id())
            .is_none(),
        "the revoked organization's record is dropped"
    );
    // Redialling does not bring it back.
    net.connect(2, 0);
    net.run_for(Duration::from_secs(1));
    assert_eq!(reasons(&net, 0, 2).len(), 2);
    assert!(net.node(0).admission().admitted(&2).is_none());
}

#[test]
fn a_revocation_put_in_force_at_one_node_spreads_along_a_chain_and_cuts_the_revoked_everywhere() {
    let (mut fed, orgs) = federation(5);
    let mut net = network(&fed, &orgs, Link::default());
    // A chain 0-1-2-3, and the organization to revoke linked to all four.
    for (a, b) in [(0, 1), (1, 2), (2, 3), (4, 0), (4, 1), (4, 2), (4, 3)] {
        net.connect(a, b);
    }
    net.run_for(Duration::from_secs(30));
    assert!((0..4).all(|i| ready(&net, i, 4)));
    let notice = fed.revoke(&orgs[4], NOW).unwrap();
    assert_eq!(net.node_mut(0).revoke(NOW, vec![notice.clone()]), Ok(1));
    assert_eq!(
        net.node_mut(0).revoke(NOW, vec![notice]),
        Ok(0),
        "a list in force already is not new"
    );
    net.run_for(Duration::from_secs(1));
    for i in 0..4 {
        let node = net.node(i);
        assert_eq!(node.revocations_adopted.len(), 1, "node {i}");
        assert!(!node.admission().is_ready(&4), "node {i} cut the revoked");
        assert!(
            (node.directory().directory().get(&orgs[4].id())).is_none(),
            "node {i} dropped its record"
        );
    }
    // The revoked organization heard the list from the peers that refused
    // it, before they cut it: its operator learns why, and its node keeps
    // the list (it will not start again on the revoked certificate).
    let revoked = net.node(4);
    assert_eq!(revoked.revocations_adopted.len(), 1, "the revoked heard it");
    assert!((0..4).all(|i| !revoked.admission().is_ready(&i)));
    // A list its issuer did not sign is refused as an offence.
    let mut forged = fed.revoke(&orgs[3], NOW).unwrap();
    forged.list = Signed::sign(&orgs[2].identity, &forged.list.decode_unverified().unwrap());
    let before = net.node(1).admission().misconduct(NOW, &orgs[0].id());
    let answer = net
        .node_mut(1)
        .handle_request(NOW, 0, Request::Revocations(vec![forged]));
    assert!(matches!(answer, Response::Done), "{answer:?}");
    assert!(net.node(1).admission().misconduct(NOW, &orgs[0].id()) > before);
    assert!(
        (net.node(1).directory().directory().get(&orgs[3].id())).is_some(),
        "the forged list revoked nothing"
    );
    assert_eq!(net.node(1).revocations_adopted.len(), 1);
}

/// Under eight draws of the losses. It ran one draw, which it passed by
/// luck: in each of six others a pair whose Hello answers were all lost stayed
/// unready for as long as it was connected (the peer had admitted it, so
/// no timeout cut the connection).
#[test]
fn members_admit_each_other_under_twenty_percent_loss_and_after_a_partition_heals() {
    for draw in 1..=8 {
        admit_under_loss_and_after_a_partition(draw);
    }
}

fn admit_under_loss_and_after_a_partition(draw: u64) {
    let (fed, mut orgs) = federation(8);
    orgs.push(TestFederation::new("elsewhere").org(1, OrgLevel::District, "RU-VLG", &[]));
    let outsider = orgs.len() - 1;
    let lossy = Link {
        loss: 0.2,
        ..Link::default()
    };
    let mut net = network_drawing(&fed, &orgs, lossy, draw);
    // Two halves that cannot reach each other at first.
    net.partition(|i| i % 2);
    let n = orgs.len();
    let redial = |net: &mut SimNet<OrgNode>| {
        for a in 0..n {
            for b in a + 1..n {
                if !ready(net, a, b) {
                    net.connect(a, b);
                }
            }
        }
    };
    redial(&mut net);
    net.run_for(Duration::from_secs(30));
    assert!(!ready(&net, 0, 1), "admitted across the partition");
    net.heal();
    // A node redials peers it is not connected to, as the node's bootstrap
    // and outbox dialling do.
    for _ in 0..6 {
        redial(&mut net);
        net.run_for(Duration::from_secs(30));
    }
    for a in 0..n {
        for b in 0..n {
            if a == b {
                continue;
            }
            let admitted = net.node(a).admission().is_ready(&b);
            let expected = a != outsider && b != outsider;
            assert_eq!(admitted, expected, "{a} -> {b}, draw {draw}");
        }
    }
    net.run_for(Duration::from_secs(120));
    for a in 0..outsider {
        let directory = net.node(a).directory().directory();
        assert_eq!(directory.len(), outsider, "node {a}");
        assert!(directory.get(&orgs[outsider].id()).is_none());
    }
    assert!(net.total().lost > 0, "the links lost messages");
    assert_eq!(net.violations(), &[]);
}

#[test]
fn a_connection_key_that_is_not_an_organization_key_is_refused() {
    let (mut fed, orgs) = federation(1);
    let mut admission = Admission::new(Config::default());
    admission.handle_connected(NOW, 1, Err(KeyError::NotEd25519("a secp256k1 peer".into())));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    let verdict = admission.handle_hello(NOW, 1, hello, &mut fed.trust, &Directory::new());
    assert!(matches!(verdict, Err(Refusal::Key(_))), "{verdict:?}");
}

/// A Hello presenting `chain`, with no record or revocations.
fn bare_hello(chain: CertChain, time: Timestamp) -> Hello {
    Hello {
        chain,
        record: None,
        revocations: vec![],
        time,
    }
}

/// A directory holding `org`'s record, its chain verified on the way in.
fn directory_of(fed: &TestFederation, org: &TestOrg) -> Directory {
    let mut directory = Directory::new();
    directory
        .insert(org.signed_record(1), &fed.trust, NOW)
        .unwrap();
    directory
}

#[test]
fn a_chain_the_directory_verified_is_checked_again_only_against_time_and_revocations() {
    let (mut fed, orgs) = federation(1);
    let directory = directory_of(&fed, &orgs[0]);
    let mut admission = Admission::new(Config::default());
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    let admitted = admission.handle_hello(NOW, 1, hello, &mut fed.trust, &directory);
    assert_eq!(admitted, Ok(orgs[0].id()));
    // Revoked since its record was taken: the directory still holds the
    // record (the directory machine has not dropped it yet), and the chain
    // is the one verified then, yet it is refused.
    let notice = fed.revoke(&orgs[0], NOW).unwrap();
    fed.trust.apply_revocations(&notice, NOW).unwrap();
    admission.handle_connected(NOW, 2, Ok(orgs[0].id()));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    let verdict = admission.handle_hello(NOW, 2, hello, &mut fed.trust, &directory);
    assert!(
        matches!(&verdict, Err(Refusal::Chain(e)) if e.to_string().contains("revoked")),
        "{verdict:?}"
    );
    // Expired, on a node that has not heard of the revocation.
    let (fresh, _) = federation(1);
    let mut trust = fresh.trust.clone();
    let end = cert_end(&orgs[0]);
    admission.handle_connected(NOW, 3, Ok(orgs[0].id()));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    let verdict = admission.handle_hello(end, 3, hello, &mut trust, &directory);
    assert!(
        matches!(&verdict, Err(Refusal::Chain(e)) if e.to_string().contains("expired")),
        "{verdict:?}"
    );
}

/// A peer admitted us but every answer to our Hellos was lost: it has
/// no timeout to cut the connection, so ours must try again.
#[test]
fn hellos_whose_answers_were_all_lost_are_sent_again_after_a_pause() {
    let (mut fed, orgs) = federation(1);
    let directory = directory_of(&fed, &orgs[0]);
    let config = Config::default();
    let mut admission = Admission::new(config);
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    let admitted = admission.handle_hello(NOW, 1, hello, &mut fed.trust, &directory);
    assert_eq!(admitted, Ok(orgs[0].id()));
    let hellos = |out: Vec<Output<u64>>| {
        (out.iter())
            .filter(|o| matches!(o, Output::SendHello(1)))
            .count()
    };
    assert_eq!(hellos(drain(&mut admission)), 1);
    for _ in 1..config.hello_attempts {
        admission.handle_hello_failed(NOW, 1);
        assert_eq!(hellos(drain(&mut admission)), 1);
    }
    admission.handle_hello_failed(NOW, 1);
    assert_eq!(
        hellos(drain(&mut admission)),
        0,
        "a run is that many Hellos"
    );
    assert!(!admission.is_ready(&1));
    let again = NOW.saturating_add(config.hello_timeout);
    assert_eq!(admission.poll_timeout(), Some(again));
    admission.handle_timeout(again, &fed.trust);
    assert_eq!(hellos(drain(&mut admission)), 1, "the next run starts");
    let welcome = bare_hello(orgs[0].chain.clone(), again);
    admission.handle_welcome(again, 1, welcome, &mut fed.trust, &directory);
    assert!(admission.is_ready(&1));
    assert!(admission.poll_timeout() > Some(again.saturating_add(config.hello_timeout)));
}

#[test]
fn a_chain_other_than_the_one_the_directory_verified_has_its_signatures_checked() {
    let (mut fed, orgs) = federation(1);
    let directory = directory_of(&fed, &orgs[0]);
    // The same certificate, signed by the organization itself instead of
    // its regional authority.
    let cert = orgs[0].chain.org.decode_unverified().unwrap();
    let forged = CertChain {
        authority: orgs[0].chain.authority.clone(),
        org: Signed::sign(&orgs[0].identity, &cert),
    };
    let mut admission = Admission::new(Config::default());
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    let hello = bare_hello(forged, NOW);
    let verdict = admission.handle_hello(NOW, 1, hello, &mut fed.trust, &directory);
    assert!(
        matches!(&verdict, Err(Refusal::Chain(e)) if e.to_string().contains("signature")),
        "{verdict:?}"
    );
}

#[test]
fn a_certificate_that_expires_while_connected_is_refused_at_its_end() {
    let (mut fed, orgs) = federation(1);
    let until = cert_end(&orgs[0]);
    let mut admission = Admission::new(Config::default());
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    let hello = bare_hello(orgs[0].chain.clone(), NOW);
    admission
        .handle_hello(NOW, 1, hello, &mut fed.trust, &Directory::new())
        .unwrap();
    while admission.poll_output().is_some() {}
    assert_eq!(admission.poll_timeout(), Some(until));
    admission.handle_timeout(until, &fed.trust);
    match admission.poll_output() {
        Some(Output::Refused {
            peer: 1, reason, ..
        }) => {
            assert!(reason.to_string().contains("expired"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // It is sent our Hello (the lists in force), then cut after the grace.
    assert!(matches!(
        admission.poll_output(),
        Some(Output::SendHello(1))
    ));
    let cut_at = admission.poll_timeout().unwrap();
    admission.handle_timeout(cut_at, &fed.trust);
    assert!(matches!(admission.poll_output(), Some(Output::Cut(1))));
}

#[test]
fn a_peer_refused_for_a_reason_outside_the_hello_is_cut() {
    let (fed, orgs) = federation(2);
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.run_for(Duration::from_secs(1));
    let now = net.now();
    let (org, stranger) = (orgs[1].id(), IdentityKey::from_seed([9; 32]).org_id());
    let machine = net.node_mut(0).admission_mut();
    machine.refuse_org(now, stranger, "nothing");
    assert!(
        machine.poll_output().is_none(),
        "only that organization's peers"
    );
    machine.refuse_org(now, org, "record dropped");
    assert!(matches!(
        machine.poll_output(),
        Some(Output::Refused { peer: 1, .. })
    ));
    net.run_for(Duration::from_secs(1));
    assert!(!net.node(0).admission().is_ready(&1));
    assert_eq!(
        net.node(1).admission().admitted(&0),
        None,
        "the cut reached both sides"
    );
}

#[test]
fn an_organization_that_keeps_forging_is_banned_and_refused_until_the_ban_ends() {
    let (fed, orgs) = federation(3);
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 1) && ready(&net, 0, 2));
    // Four forgeries: scored, still admitted.
    let now = net.now();
    for _ in 0..4 {
        (net.node_mut(0).admission_mut()).handle_offence(now, 1, Offence::ForgedRecord);
    }
    assert_eq!(net.node(0).admission().misconduct(now, &orgs[1].id()), 40);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 1));
    // Scores fade, a point a minute: forty minutes later four more are
    // not enough.
    net.run_for(Duration::from_secs(40 * 60));
    let now = net.now();
    for _ in 0..4 {
        (net.node_mut(0).admission_mut()).handle_offence(now, 1, Offence::ForgedRecord);
    }
    net.run_for(Duration::from_secs(1));
    assert!(
        ready(&net, 0, 1),
        "faded points and new ones stay under the limit"
    );
    // A burst crosses the limit: cut, and told why.
    let now = net.now();
    for _ in 0..2 {
        (net.node_mut(0).admission_mut()).handle_offence(now, 1, Offence::ForgedRecord);
    }
    net.run_for(Duration::from_secs(2));
    assert!(!net.node(0).admission().is_ready(&1));
    assert_eq!(
        net.node(1).admission().admitted(&0),
        None,
        "cut on both sides"
    );
    assert!(
        reasons(&net, 0, 1)
            .iter()
            .any(|r| r.contains("forged directory records"))
    );
    // The honest peer is untouched.
    assert!(ready(&net, 0, 2));
    // Coming back during the ban: refused at Hello with the ban's reason.
    net.connect(0, 1);
    net.run_for(Duration::from_secs(2));
    assert!(!net.node(0).admission().is_ready(&1));
    let banned = reasons(&net, 0, 1)
        .into_iter()
        .filter(|r| r.contains("banned until"))
        .count();
    assert!(banned >= 2, "{:?}", reasons(&net, 0, 1));
    // After the ban it is admitted again.
    net.disconnect(0, 1);
    net.run_for(BAN);
    net.connect(0, 1);
    net.run_for(Duration::from_secs(2));
    assert!(ready(&net, 0, 1), "admitted again after the ban");
}

#[test]
fn offences_from_a_peer_not_admitted_count_for_nothing() {
    let (fed, orgs) = federation(2);
    let mut net = network(&fed, &orgs, Link::default());
    let now = net.now();
    let machine = net.node_mut(0).admission_mut();
    for _ in 0..10 {
        machine.handle_offence(now, 1, Offence::ForgedRevocation);
    }
    assert_eq!(machine.misconduct(now, &orgs[1].id()), 0);
    assert!(machine.poll_output().is_none());
}

/// Gossipsub stops passing on a peer's messages after two invalid ones, so
/// two malformed frames must ban it; forged steps count like forged records.
#[test]
fn two_malformed_frames_ban_and_forged_steps_score() {
    let (fed, orgs) = federation(3);
    let mut net = network(&fed, &orgs, Link::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.run_for(Duration::from_secs(1));
    let now = net.now();
    (net.node_mut(0).admission_mut()).handle_offence(now, 2, Offence::ForgedStep);
    assert_eq!(net.node(0).admission().misconduct(now, &orgs[2].id()), 10);
    (net.node_mut(0).admission_mut()).handle_offence(now, 1, Offence::Malformed);
    net.run_for(Duration::from_secs(1));
    assert!(ready(&net, 0, 1), "one malformed message is not enough");
    let now = net.now();
    (net.node_mut(0).admission_mut()).handle_offence(now, 1, Offence::Malformed);
    net.run_for(Duration::from_secs(2));
    assert!(!net.node(0).admission().is_ready(&1));
    assert!(
        reasons(&net, 0, 1)
            .iter()
            .any(|r| r.contains("malformed frames"))
    );
    assert!(ready(&net, 0, 2));
}

/// The earliest deadline over all peers, kept as peers come, are admitted,
/// refused, cut and go.
#[test]
fn the_timeout_follows_the_earliest_peer_through_every_state() {
    let (mut fed, orgs) = federation(2);
    let mut admission = Admission::new(Config::default());
    let wait = Config::default().hello_timeout;
    let at = |s: u64| NOW.saturating_add(Duration::from_secs(s));
    assert_eq!(admission.poll_timeout(), None);
    admission.handle_connected(at(0), 1, Ok(orgs[0].id()));
    admission.handle_connected(at(5), 2, Ok(orgs[1].id()));
    assert_eq!(admission.poll_timeout(), Some(at(0).saturating_add(wait)));
    // Peer 1 is admitted: its deadline becomes its certificate's end.
    let hello = bare_hello(orgs[0].chain.clone(), at(1));
    admission
        .handle_hello(at(1), 1, hello, &mut fed.trust, &Directory::new())
        .unwrap();
    assert_eq!(admission.poll_timeout(), Some(at(5).saturating_add(wait)));
    // Peer 2 stays silent: refused, then cut after the grace.
    admission.handle_timeout(at(5).saturating_add(wait), &fed.trust);
    let cut_at = admission.poll_timeout().unwrap();
    assert!(cut_at > at(5).saturating_add(wait));
    admission.handle_timeout(cut_at, &fed.trust);
    while admission.poll_output().is_some() {}
    // Then let back in after the cool-down.
    let cooled = cut_at.saturating_add(Config::default().refusal_cooldown);
    assert_eq!(admission.poll_timeout(), Some(cooled));
    admission.handle_timeout(cooled, &fed.trust);
    while admission.poll_output().is_some() {}
    let until = cert_end(&orgs[0]);
    assert_eq!(admission.poll_timeout(), Some(until));
    // Peer 1 goes: nothing left to wake for.
    admission.handle_disconnected(1);
    assert_eq!(admission.poll_timeout(), None);
}

/// Every output the machine has, in order.
fn drain(admission: &mut Admission<u64>) -> Vec<Output<u64>> {
    std::iter::from_fn(|| admission.poll_output()).collect()
}

#[test]
fn a_cut_peer_is_let_back_in_after_the_cool_down_but_a_banned_one_only_when_pardoned() {
    let (mut fed, orgs) = federation(2);
    let config = Config::default();
    let mut admission = Admission::new(config);
    // A peer that stays silent (its Hello outlived the timeout on a
    // loaded machine, say) is refused and cut...
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    drain(&mut admission);
    let silent = NOW.saturating_add(config.hello_timeout);
    admission.handle_timeout(silent, &fed.trust);
    let cut_at = admission.poll_timeout().unwrap();
    admission.handle_timeout(cut_at, &fed.trust);
    let out = drain(&mut admission);
    assert!(matches!(out.last(), Some(Output::Cut(1))), "{out:?}");
    // ...but not for ever: it may try again after the cool-down.
    let cooled = cut_at.saturating_add(config.refusal_cooldown);
    assert_eq!(admission.poll_timeout(), Some(cooled));
    admission.handle_timeout(cooled.saturating_sub(Duration::from_millis(1)), &fed.trust);
    assert!(drain(&mut admission).is_empty(), "let in early");
    admission.handle_timeout(cooled, &fed.trust);
    assert!(matches!(drain(&mut admission)[..], [Output::Uncut(1)]));
    assert_eq!(admission.poll_timeout(), None);
    // A banned organization stays blocked until its ban ends.
    admission.handle_connected(cooled, 2, Ok(orgs[1].id()));
    let hello = bare_hello(orgs[1].chain.clone(), cooled);
    admission
        .handle_hello(cooled, 2, hello, &mut fed.trust, &Directory::new())
        .unwrap();
    for _ in 0..5 {
        admission.handle_offence(cooled, 2, Offence::ForgedRecord);
    }
    let cut_at = admission.poll_timeout().unwrap();
    admission.handle_timeout(cut_at, &fed.trust);
    assert!(matches!(drain(&mut admission).last(), Some(Output::Cut(2))));
    let ban_end = cooled.saturating_add(BAN);
    assert_eq!(admission.poll_timeout(), Some(ban_end), "no cool-down");
    admission.handle_timeout(ban_end, &fed.trust);
    let out = drain(&mut admission);
    assert!(
        matches!(out[..], [Output::Pardoned(org)] if org == orgs[1].id()),
        "{out:?}"
    );
}

/// A Hello's revocation notices are read once its chain holds, so a
/// stranger's cost no signature check and change nothing; a member's are
/// read up to the first its authority did not sign, which is charged once
/// and ends the reading (a 1 MiB Hello held some 7,700 notices, each a
/// signature check, and an admitted peer could send Hellos without end);
/// and a member whose own notices revoke its certificate is refused.
#[test]
fn a_hellos_notices_are_read_only_from_a_member_and_only_up_to_a_forged_one() {
    let (mut fed, orgs) = federation(3);
    let directory = Directory::new();
    let revokes_third = fed.revoke(&orgs[2], NOW).unwrap();
    let mut forged = revokes_third.clone();
    let list = forged.list.decode_unverified().unwrap();
    forged.list = Signed::sign(&orgs[0].identity, &list);
    let in_force = |trust: &Trust| trust.revocation_notices().count();
    let mut admission = Admission::new(Config::default());
    let hello = |chain: &CertChain, revocations: Vec<RevocationNotice>| Hello {
        revocations,
        ..bare_hello(chain.clone(), NOW)
    };

    // A stranger: the first member's certificate, signed by the member
    // itself instead of its authority, bringing the genuine list.
    let cert = orgs[0].chain.org.decode_unverified().unwrap();
    let unsigned = CertChain {
        authority: orgs[0].chain.authority.clone(),
        org: Signed::sign(&orgs[0].identity, &cert),
    };
    admission.handle_connected(NOW, 1, Ok(orgs[0].id()));
    let notices = vec![revokes_third.clone()];
    let verdict = admission.handle_hello(
        NOW,
        1,
        hello(&unsigned, notices),
        &mut fed.trust,
        &directory,
    );
    assert!(matches!(verdict, Err(Refusal::Chain(_))), "{verdict:?}");
    assert_eq!(in_force(&fed.trust), 0, "nothing taken from a stranger");

    // A member: 300 forged notices, then the genuine one.
    let mut notices = vec![forged; 300];
    notices.push(revokes_third.clone());
    admission.handle_connected(NOW, 2, Ok(orgs[1].id()));
    let verdict = admission.handle_hello(
        NOW,
        2,
        hello(&orgs[1].chain, notices),
        &mut fed.trust,
        &directory,
    );
    assert_eq!(verdict, Ok(orgs[1].id()));
    assert_eq!(admission.misconduct(NOW, &orgs[1].id()), 10, "charged once");
    assert_eq!(
        in_force(&fed.trust),
        0,
        "the reading ended at the first forged notice"
    );

    // The third member brings the list that revokes it: refused.
    admission.handle_connected(NOW, 3, Ok(orgs[2].id()));
    let notices = vec![revokes_third];
    let verdict = admission.handle_hello(
        NOW,
        3,
        hello(&orgs[2].chain, notices),
        &mut fed.trust,
        &directory,
    );
    assert!(
        matches!(&verdict, Err(Refusal::Chain(e)) if e.to_string().contains("revoked")),
        "{verdict:?}"
    );
    assert_eq!(in_force(&fed.trust), 1, "the list is in force");
}
