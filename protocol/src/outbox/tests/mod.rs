//! The outbox machines driven against each other over a simulated network.

mod sim;

use super::*;
use crate::delivery::RETRY_MAX;
use crate::testkit::NOW;
use sim::{LATENCY, Sim};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// `d` after the simulation starts.
fn at(d: Duration) -> Timestamp {
    NOW.saturating_add(d)
}

fn count<T: Ord + Copy>(items: &[T], item: T) -> usize {
    items.iter().filter(|&&i| i == item).count()
}

fn custody_events(sim: &Sim, node: usize) -> Vec<(Timestamp, PackageId, OrgId)> {
    sim[node]
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Custody { id, relay } => Some((*at, *id, *relay)),
            _ => None,
        })
        .collect()
}

fn retries(sim: &Sim, node: usize) -> Vec<(Timestamp, Failure)> {
    sim[node]
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Retry { error, .. } => Some((*at, error.clone())),
            _ => None,
        })
        .collect()
}

/// Nothing left in a node's outbox: not in the machine, not in storage.
fn drained(sim: &Sim, node: usize) -> bool {
    let n = &sim[node];
    n.outbox.is_empty() && n.stored.is_empty() && n.packages.is_empty()
}

#[test]
fn a_direct_delivery_ends_with_the_recipients_receipt() {
    let mut sim = Sim::new(1);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    sim.connect(a, b);
    let id = sim.send(a, b, DAY);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim[b].accepted, vec![id]);
    assert_eq!(sim[a].delivered(), vec![id]);
    assert_eq!(sim[a].sent.len(), 1);
    assert!(drained(&sim, a));
    assert_eq!(sim[a].outbox.poll_timeout(), None);
    let Some((
        _,
        Event::Delivered {
            origin, receipt, ..
        },
    )) = sim[a].events.last()
    else {
        panic!("delivered last");
    };
    assert_eq!(*origin, Origin::Local);
    assert_eq!(receipt, &sim[b].inbox[&id].1);
}

#[test]
fn an_offline_recipient_gets_its_packages_when_it_comes_up() {
    let mut sim = Sim::new(2);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    sim.set_online(b, false);
    let first = sim.send(a, b, DAY);
    sim.run_for(MINUTE);
    let entry = sim[a].outbox.get(&first).expect("still queued").clone();
    // Backoff 2 s, 4 s, 8 s, 16 s, 32 s (each +-25%): four to six dials in a minute.
    assert!((4..=6).contains(&entry.attempts), "{entry:?}");
    assert_eq!(entry.next_hop, sim[b].id());
    assert_eq!(sim[a].stored[&first], entry);
    assert!(matches!(
        retries(&sim, a).last(),
        Some((_, Failure::Unreachable { .. }))
    ));
    assert!(sim[b].accepted.is_empty());

    // Up again, nobody dials it: the sender's next dial, at most
    // RETRY_MAX + 25% away, finds it.
    sim.set_online(b, true);
    sim.run_for(RETRY_MAX + RETRY_MAX / 4 + MINUTE);
    assert_eq!(sim[b].accepted, vec![first]);
    assert_eq!(sim[a].delivered(), vec![first]);

    // Down, then up and dialling in: what waits goes at once.
    sim.set_online(b, false);
    let second = sim.send(a, b, DAY);
    sim.run_for(HOUR);
    sim.set_online(b, true);
    sim.connect(b, a);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim[b].accepted, vec![first, second]);
    assert!(drained(&sim, a));
}

#[test]
fn a_package_for_another_region_goes_through_the_relay_and_its_receipt_comes_back() {
    let mut sim = Sim::new(3);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-MOW", None);
    sim.connect(a, r);
    sim.connect(b, r);
    let id = sim.send(a, b, DAY);
    sim.run_for(Duration::from_secs(1));
    let (rid, bid) = (sim[r].id(), sim[b].id());
    assert!(sim[a].sent.iter().all(|&(_, _, to)| to == rid));
    assert_eq!(custody_events(&sim, a), vec![(at(LATENCY * 2), id, rid)]);
    assert_eq!(sim[r].sent, vec![(at(LATENCY), id, bid)]);
    assert_eq!(sim[b].accepted, vec![id]);
    // The receipt travelled b -> r -> a, and only the recipient signed it.
    assert_eq!(sim[a].delivered(), vec![id]);
    assert_eq!(sim[r].delivered(), vec![id]);
    assert!(drained(&sim, a) && drained(&sim, r));
}

#[test]
fn custody_is_kept_until_the_receipt_and_checked_back_rarely() {
    let mut sim = Sim::new(4);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-MOW", None);
    sim.set_online(b, false);
    sim.connect(a, r);
    let id = sim.send(a, b, DAY);
    sim.run_for(Duration::from_secs(1));
    let entry = sim[a].outbox.get(&id).expect("kept").clone();
    let rid = sim[r].id();
    assert_eq!(entry.status, Status::InCustody { relay: rid });
    let custody_at = at(LATENCY * 2);
    assert_eq!(
        entry.next_attempt,
        custody_at.saturating_add(CUSTODY_RECHECK)
    );
    assert_eq!(sim[a].outbox.poll_timeout(), Some(entry.next_attempt));
    // Checking back: the relay still holds it and says so.
    sim.run_for(CUSTODY_RECHECK);
    assert_eq!(sim[a].sent.len(), 2);
    assert_eq!(custody_events(&sim, a).len(), 2);
    sim.set_online(b, true);
    sim.connect(b, r);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim[b].accepted, vec![id]);
    assert_eq!(sim[a].delivered(), vec![id]);
}

#[test]
fn an_unreachable_recipient_is_handed_to_the_relay_after_three_dials() {
    let mut sim = Sim::new(5);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-VLG", None);
    sim.set_online(b, false);
    sim.connect(a, r);
    let id = sim.send(a, b, DAY);
    sim.run_for(MINUTE);
    let rid = sim[r].id();
    assert_eq!(sim[a].sent.len(), 1, "sent once, to the relay");
    assert_eq!(sim[a].sent[0].2, rid);
    let (_, _, relay) = custody_events(&sim, a)[0];
    assert_eq!(relay, rid);
    let entry = sim[a].outbox.get(&id).expect("kept until the receipt");
    assert_eq!(entry.attempts, UNREACHABLE_AFTER);
    assert_eq!(entry.next_hop, rid);
    // The relay holds it for the recipient and keeps trying.
    assert!(sim[r].outbox.get(&id).is_some_and(|e| e.attempts > 0));
    sim.set_online(b, true);
    sim.connect(b, r);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim[b].accepted, vec![id]);
    assert_eq!(sim[a].delivered(), vec![id]);
    assert!(drained(&sim, a) && drained(&sim, r));
}

#[test]
fn a_fifth_of_messages_lost_still_delivers_everything_exactly_once() {
    let mut sim = Sim::new(6);
    sim.set_loss(0.2);
    let r = sim.node("RU-VLG", None);
    let senders = [sim.node("RU-VLG", Some(r)), sim.node("RU-VLG", Some(r))];
    let near = sim.node("RU-VLG", None);
    let far = sim.node("RU-MOW", None);
    for &s in &senders {
        sim.connect(s, r);
        sim.connect(s, near);
    }
    sim.connect(far, r);
    let mut sent = Vec::new();
    for n in 0..40 {
        let from = senders[n % 2];
        let to = if n % 3 == 0 { far } else { near };
        sent.push((from, to, sim.send(from, to, 7 * DAY)));
        sim.run_for(Duration::from_secs(1));
    }
    sim.run_for(DAY);
    for &(from, to, id) in &sent {
        assert_eq!(count(&sim[to].accepted, id), 1, "{id} accepted once");
        assert_eq!(count(&sim[from].delivered(), id), 1, "{id} delivered once");
    }
    for node in 0..sim.len() {
        assert!(drained(&sim, node), "node {node} has nothing left");
        assert_eq!(sim[node].outbox.poll_timeout(), None);
    }
    // Loss happened and was recovered from: requests failed and were retried.
    let failed: usize = senders.iter().map(|&s| retries(&sim, s).len()).sum();
    assert!(failed > 0);
}

#[test]
fn a_relay_cut_off_from_the_recipient_delivers_once_the_partition_heals() {
    let mut sim = Sim::new(9);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-MOW", None);
    sim.connect(a, r);
    sim.connect(b, r);
    // The federal side is cut off for an hour; connections stay up, as
    // over a network that silently drops.
    sim.partition(|n| usize::from(n == b));
    let id = sim.send(a, b, DAY);
    sim.run_for(HOUR);
    let rid = sim[r].id();
    let custody = custody_events(&sim, a);
    assert!(!custody.is_empty() && custody.iter().all(|&(_, i, relay)| (i, relay) == (id, rid)));
    assert!(sim[b].accepted.is_empty());
    assert!(retries(&sim, r).len() >= 3, "the relay kept trying");
    sim.heal();
    sim.run_for(HOUR);
    assert_eq!(sim[b].accepted, vec![id]);
    assert_eq!(sim[a].delivered(), vec![id]);
    assert!(drained(&sim, a) && drained(&sim, r));
}

#[test]
fn a_permanent_refusal_stops_retries_and_reports_the_reason() {
    let mut sim = Sim::new(7);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    let reason = Refusal::Invalid("no such consultant".into());
    sim[b].refuse = Some(reason.clone());
    sim.connect(a, b);
    let id = sim.send(a, b, DAY);
    sim.run_for(Duration::from_secs(1));
    let refused: Vec<_> = sim[a]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Refused { .. }))
        .collect();
    assert_eq!(
        refused,
        vec![&(
            at(LATENCY * 2),
            Event::Refused {
                id,
                reason: reason.clone()
            }
        )]
    );
    let entry = sim[a].outbox.get(&id).expect("kept for the operator");
    assert_eq!(entry.status, Status::Refused(reason.clone()));
    assert_eq!(entry.last_error, Some(reason.to_string()));
    let expires = entry.package.expires;
    assert_eq!(sim[a].outbox.poll_timeout(), Some(expires));
    // A failed dial to the same peer leaves the refusal as it was.
    let events_before = sim[a].events.len();
    let b_org = sim[b].org.id();
    sim[a]
        .outbox
        .handle_dial_failed(b_org, "connection refused");
    sim.run_for(Duration::from_secs(1));
    let entry = sim[a].outbox.get(&id).expect("kept for the operator");
    assert_eq!(entry.last_error, Some(reason.to_string()));
    assert_eq!(sim[a].events.len(), events_before, "no retry reported");
    // Even when the peer comes back, nothing is sent again.
    sim.set_online(b, false);
    sim.set_online(b, true);
    sim.connect(a, b);
    sim.run_for(HOUR);
    assert_eq!(sim[a].sent.len(), 1);
    sim.run_until(expires);
    assert!(drained(&sim, a));
    assert!(sim[b].accepted.is_empty());
}

#[test]
fn a_transient_refusal_backs_off_exponentially_up_to_the_cap() {
    let mut sim = Sim::new(8);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    sim[b].refuse = Some(Refusal::Transient("disk full".into()));
    sim.connect(a, b);
    let id = sim.send(a, b, DAY);
    // One refusal: the next attempt is what poll_timeout says.
    sim.run_for(Duration::from_secs(1));
    let next = sim[a].outbox.poll_timeout().expect("a retry is due");
    assert_eq!(sim[a].outbox.get(&id).map(|e| e.next_attempt), Some(next));
    let refused_at = at(LATENCY * 2);
    let first = next.since(refused_at);
    assert!(
        first >= Duration::from_secs(3) && first < Duration::from_secs(5),
        "{first:?}"
    );

    sim.run_for(2 * HOUR);
    let sends: Vec<Timestamp> = sim[a].sent.iter().map(|&(at, ..)| at).collect();
    let failures = retries(&sim, a);
    assert!(sends.len() > 12);
    for (n, (failed_at, error)) in failures.iter().enumerate().take(sends.len() - 1) {
        assert!(matches!(error, Failure::Refused { .. }));
        let attempts = n as u32 + 1;
        let nominal = (delivery::RETRY_BASE * (1 << attempts)).min(RETRY_MAX);
        let waited = sends[n + 1].since(*failed_at);
        assert!(
            waited >= nominal * 3 / 4 && waited < nominal * 5 / 4,
            "attempt {attempts}: waited {waited:?}, nominal {nominal:?}"
        );
    }
    let entry = sim[a].outbox.get(&id).expect("still trying");
    assert_eq!(entry.attempts as usize, failures.len());
    assert_eq!(entry.status, Status::Queued);
}

#[test]
fn an_undeliverable_package_expires_and_is_dropped() {
    let mut sim = Sim::new(9);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    sim.set_online(b, false);
    let id = sim.send(a, b, HOUR);
    sim.run_for(HOUR - MINUTE);
    assert!(sim[a].outbox.get(&id).is_some());
    sim.run_for(2 * MINUTE);
    let expired: Vec<_> = sim[a]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Expired { .. }))
        .collect();
    assert_eq!(
        expired,
        vec![&(
            at(HOUR),
            Event::Expired {
                id,
                origin: Origin::Local
            }
        )]
    );
    assert!(drained(&sim, a));
    assert_eq!(sim[a].outbox.poll_timeout(), None);
    sim.set_online(b, true);
    sim.connect(a, b);
    sim.run_for(HOUR);
    assert!(sim[b].accepted.is_empty());
}

#[test]
fn attachments_being_fetched_mean_ask_again_soon() {
    let mut sim = Sim::new(10);
    let a = sim.node("RU-VLG", None);
    let b = sim.node("RU-VLG", None);
    sim[b].fetching = 2;
    sim.connect(a, b);
    let id = sim.send(a, b, DAY);
    sim.run_for(MINUTE);
    let progress: Vec<_> = sim[a]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Progress { .. }))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(progress.len(), 2);
    let sends: Vec<Timestamp> = sim[a].sent.iter().map(|&(at, ..)| at).collect();
    assert_eq!(sends.len(), 3);
    assert_eq!(sends[1], progress[0].saturating_add(PROGRESS_RECHECK));
    assert_eq!(sends[2], progress[1].saturating_add(PROGRESS_RECHECK));
    assert_eq!(sim[b].accepted, vec![id]);
    assert!(retries(&sim, a).is_empty(), "progress is not a failure");
}

#[test]
fn a_refusal_further_on_reaches_the_sender_when_it_checks_back() {
    let mut sim = Sim::new(11);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-MOW", None);
    let reason = Refusal::Invalid("tampered".into());
    sim[b].refuse = Some(reason.clone());
    sim.connect(a, r);
    sim.connect(b, r);
    let id = sim.send(a, b, DAY);
    sim.run_for(Duration::from_secs(1));
    assert!(matches!(
        sim[r].outbox.get(&id).map(|e| &e.status),
        Some(Status::Refused(_))
    ));
    assert!(matches!(
        sim[a].outbox.get(&id).map(|e| &e.status),
        Some(Status::InCustody { .. })
    ));
    sim.run_for(CUSTODY_RECHECK);
    let entry = sim[a].outbox.get(&id).expect("kept for the operator");
    assert_eq!(entry.status, Status::Refused(reason));
    assert_eq!(sim[r].sent.len(), 1, "the relay did not try again");
}

#[test]
fn a_restarted_sender_and_relay_resume_from_what_they_persisted() {
    let mut sim = Sim::new(12);
    let r = sim.node("RU-VLG", None);
    let a = sim.node("RU-VLG", Some(r));
    let b = sim.node("RU-VLG", None);
    let c = sim.node("RU-MOW", None);
    sim.set_online(b, false);
    sim.set_online(c, false);
    let direct: Vec<PackageId> = (0..2).map(|_| sim.send(a, b, DAY)).collect();
    sim.run_for(Duration::from_secs(5));
    sim.connect(a, r);
    let relayed = sim.send(a, c, DAY);
    sim.run_for(MINUTE);

    sim.restart(a);
    sim.restart(r);
    for id in &direct {
        let before = &sim[a].stored[id];
        assert_eq!(sim[a].outbox.get(id), Some(before));
    }
    assert!(
        sim[r].outbox.get(&relayed).is_some(),
        "the relay still holds it"
    );
    assert!(matches!(
        sim[a].outbox.get(&relayed).map(|e| &e.status),
        Some(Status::InCustody { .. })
    ));

    sim.set_online(b, true);
    sim.set_online(c, true);
    sim.connect(b, a);
    sim.connect(c, r);
    sim.run_for(HOUR);
    for &id in &direct {
        assert_eq!(count(&sim[b].accepted, id), 1);
    }
    assert_eq!(sim[c].accepted, vec![relayed]);
    let mut delivered = sim[a].delivered();
    delivered.sort();
    let mut all = direct.clone();
    all.push(relayed);
    all.sort();
    assert_eq!(delivered, all);
    assert!(drained(&sim, a) && drained(&sim, r));
}

mod unit;
