use super::*;
use crate::testkit::{NOW, seed};
use proptest::prelude::*;

fn key() -> IdentityKey {
    IdentityKey::from_seed(seed("journal/self", 0))
}

fn org(n: u64) -> OrgId {
    IdentityKey::from_seed(seed("journal/org", n)).org_id()
}

fn at(i: u64) -> Timestamp {
    Timestamp::from_unix_millis(NOW.unix_millis() + i * 60_000)
}

fn cid(n: u64) -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id
}

/// One of every kind of action, cycling, so edits hit every variant.
fn mixed_action(i: u64) -> (Option<String>, Option<Role>, Action) {
    let c = cid(i / 11);
    let user = || Some(format!("user{}", i % 4));
    match i % 11 {
        0 => (
            user(),
            Some(Role::Coordinator),
            Action::Create(ConsultationRef {
                id: c,
                requester: org(i % 3),
                consultant: org(3 + i % 2),
                specialty: Specialty::ALL[(i as usize) % Specialty::ALL.len()],
                urgency: Urgency::ALL[(i as usize) % 3],
            }),
        ),
        1 => (
            None,
            None,
            Action::Send {
                consultation: c,
                package: PackageId(cid(i)),
            },
        ),
        2 => (
            None,
            None,
            Action::Receive {
                consultation: c,
                package: PackageId(cid(i)),
            },
        ),
        3 => (
            user(),
            Some(Role::Consultant),
            Action::Open { consultation: c },
        ),
        4 => (
            user(),
            Some(Role::Consultant),
            Action::Transition {
                consultation: c,
                from: "received".into(),
                to: "accepted".into(),
            },
        ),
        5 => (
            user(),
            Some(Role::Consultant),
            Action::Conclusion {
                consultation: c,
                deadline_met: i.is_multiple_of(2),
            },
        ),
        6 => (
            user(),
            Some(Role::Physician),
            Action::ConsentOverride {
                consultation: c,
                reason: "unconscious, no relative reachable".into(),
            },
        ),
        7 => (
            None,
            None,
            Action::FailedLogin {
                user: "mallory".into(),
            },
        ),
        8 => (
            None,
            None,
            Action::Recover {
                consultation: c,
                from: org(i % 3),
                steps: (i % 5) as u32,
            },
        ),
        9 => (
            None,
            None,
            Action::Gap {
                lost_from: i,
                lost_to: i + 3,
            },
        ),
        _ => (
            user(),
            Some(Role::Operator),
            Action::Login { user: "op".into() },
        ),
    }
}

fn build(n: u64) -> (Journal, Vec<Entry>) {
    let mut journal = Journal::new();
    let entries = (0..n)
        .map(|i| {
            let (actor, role, action) = mixed_action(i);
            journal.append(at(i), actor, role, action)
        })
        .collect();
    (journal, entries)
}

/// A journal of `n` entries with a checkpoint at its end.
fn sealed(n: u64) -> (Vec<Entry>, Signed<Checkpoint>) {
    let (journal, entries) = build(n);
    (entries, journal.checkpoint(&key(), at(n)))
}

#[test]
fn fifty_entries_verify_with_and_without_checkpoints() {
    let k = key();
    let mut journal = Journal::new();
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 0..50 {
        let (actor, role, action) = mixed_action(i);
        entries.push(journal.append(at(i), actor, role, action));
        if i == 19 {
            checkpoints.push(journal.checkpoint(&k, at(i)));
        }
    }
    checkpoints.push(journal.checkpoint(&k, at(50)));

    let plain = verify(&entries, &[], &k.org_id()).unwrap();
    assert_eq!(plain.entries, 50);
    assert_eq!(plain.head, journal.head());
    assert_eq!(plain.anchored, 0);

    let both = verify(&entries, &checkpoints, &k.org_id()).unwrap();
    assert_eq!(
        both,
        Verified {
            entries: 50,
            head: journal.head(),
            checkpoints: 2,
            anchored: 50
        }
    );
    // Order of checkpoints does not matter.
    checkpoints.reverse();
    assert_eq!(verify(&entries, &checkpoints, &k.org_id()).unwrap(), both);
    // Only the first 20 are anchored by the first checkpoint.
    let first = verify(&entries, &checkpoints[1..], &k.org_id()).unwrap();
    assert_eq!(first.anchored, 20);
}

#[test]
fn empty_journal_verifies_and_can_be_checkpointed() {
    let k = key();
    let journal = Journal::new();
    let cp = journal.checkpoint(&k, NOW);
    let v = verify(&[], &[cp], &k.org_id()).unwrap();
    assert_eq!((v.entries, v.head, v.checkpoints), (0, GENESIS, 1));
}

#[test]
fn entries_link_and_hash_covers_domain() {
    let (_, entries) = build(3);
    assert_eq!(entries[0].prev, GENESIS);
    assert_eq!(entries[1].prev, entries[0].hash());
    assert_eq!(entries[2].seq, 2);
    let plain = blake3::hash(&postcard::to_stdvec(&entries[0]).unwrap());
    assert_ne!(*plain.as_bytes(), entries[0].hash());
    let wire = postcard::to_stdvec(&entries[2]).unwrap();
    assert_eq!(postcard::from_bytes::<Entry>(&wire).unwrap(), entries[2]);
}

/// Changes one field of an entry to a different value.
fn alter(entry: &mut Entry, field: u8, bit: u8) {
    match field % 6 {
        0 => entry.seq ^= 1 << (bit % 64),
        1 => entry.prev[usize::from(bit % 32)] ^= 1,
        2 => {
            entry.at = Timestamp::from_unix_millis(entry.at.unix_millis() ^ (1 << (bit % 64)));
        }
        3 => {
            entry.actor = match entry.actor.take() {
                None => Some("intruder".into()),
                Some(_) if bit.is_multiple_of(2) => None,
                Some(name) => Some(format!("{name}x")),
            }
        }
        4 => {
            entry.role = match entry.role {
                None => Some(Role::Operator),
                Some(Role::Physician) => Some(Role::Consultant),
                Some(_) => None,
            }
        }
        _ => {
            entry.action = match entry.action.clone() {
                Action::Conclusion {
                    consultation,
                    deadline_met,
                } => Action::Conclusion {
                    consultation,
                    deadline_met: !deadline_met,
                },
                Action::Create(mut c) => {
                    c.requester = c.consultant;
                    Action::Create(c)
                }
                _ => Action::Login {
                    user: format!("forged{bit}"),
                },
            }
        }
    }
}

#[test]
fn tail_truncation_needs_a_checkpoint() {
    let (entries, cp) = sealed(10);
    let org = key().org_id();
    // Without a checkpoint, the shorter journal is consistent on its own.
    assert_eq!(verify(&entries[..9], &[], &org).unwrap().entries, 9);
    assert_eq!(
        verify(&entries[..9], std::slice::from_ref(&cp), &org),
        Err(JournalError::Checkpoint {
            seq: 10,
            reason: CheckpointFault::BeyondJournal { entries: 9 }
        })
    );
}

#[test]
fn a_journal_that_only_lost_its_end_is_told_from_an_edited_one() {
    let (entries, anchor) = sealed(10);
    let k = key();
    let org = k.org_id();
    let early = {
        let mut j = Journal::resume(&entries[3]);
        j.append(at(99), None, None, Action::Login { user: "x".into() });
        j.checkpoint(&k, at(4))
    };
    assert_eq!(
        lost_tail(&entries, &[], &anchor, &org),
        None,
        "nothing lost"
    );
    assert_eq!(
        lost_tail(&entries[..6], &[], &anchor, &org),
        Some(LostTail {
            lost_from: 6,
            lost_to: 10
        })
    );
    // An edit before the end is not a lost tail, even when the end is gone too.
    let mut edited = entries[..6].to_vec();
    edited[2].actor = Some("someone else".into());
    assert_eq!(lost_tail(&edited, &[], &anchor, &org), None);
    // Nor is a journal whose own checkpoint it contradicts.
    assert_eq!(lost_tail(&entries[..6], &[early], &anchor, &org), None);
    // Nor an anchor someone else signed.
    let (_, foreign) = {
        let (journal, entries) = build(10);
        let other = IdentityKey::from_seed(seed("journal/other", 0));
        (entries, journal.checkpoint(&other, at(10)))
    };
    assert_eq!(lost_tail(&entries[..6], &[], &foreign, &org), None);
}

#[test]
fn rewritten_history_is_caught_by_checkpoint() {
    let (entries, cp) = sealed(10);
    let org = key().org_id();
    // Edit entry 4 and recompute every later link, as anyone with write
    // access to the store could.
    let mut forged = Journal::resume(&entries[3]);
    let mut rewritten = entries[..4].to_vec();
    for e in &entries[4..] {
        let mut action = e.action.clone();
        if e.seq == 4 {
            action = Action::Login {
                user: "nobody".into(),
            };
        }
        rewritten.push(forged.append(e.at, e.actor.clone(), e.role, action));
    }
    assert!(verify(&rewritten, &[], &org).is_ok());
    assert!(matches!(
        verify(&rewritten, &[cp], &org),
        Err(JournalError::Checkpoint {
            seq: 10,
            reason: CheckpointFault::HeadMismatch { .. }
        })
    ));
}

#[test]
fn checkpoint_by_another_key_is_refused() {
    let (journal, entries) = build(10);
    let other = IdentityKey::from_seed(seed("journal/other", 0));
    let cp = journal.checkpoint(&other, NOW);
    assert_eq!(
        verify(&entries, &[cp], &key().org_id()),
        Err(JournalError::Checkpoint {
            seq: 10,
            reason: CheckpointFault::BadSignature
        })
    );
}

#[test]
fn checkpoint_with_another_head_is_refused() {
    let (_, entries) = build(10);
    let k = key();
    let cp = Signed::sign(
        &k,
        &Checkpoint {
            seq: 5,
            head: entries[5].hash(),
            at: NOW,
        },
    );
    let e = verify(&entries, &[cp], &k.org_id()).unwrap_err();
    assert_eq!(
        e,
        JournalError::Checkpoint {
            seq: 5,
            reason: CheckpointFault::HeadMismatch {
                signed: entries[5].hash(),
                found: entries[4].hash()
            }
        }
    );
    assert!(e.to_string().contains("changed after it was signed"), "{e}");
}

#[test]
fn resume_continues_the_chain() {
    let k = key();
    let (first, mut entries) = build(10);
    let mut second = Journal::resume(entries.last().unwrap());
    assert_eq!((second.head(), second.next_seq()), (first.head(), 10));
    for i in 10..20 {
        let (actor, role, action) = mixed_action(i);
        entries.push(second.append(at(i), actor, role, action));
    }
    let cps = [first.checkpoint(&k, at(10)), second.checkpoint(&k, at(20))];
    let v = verify(&entries, &cps, &k.org_id()).unwrap();
    assert_eq!((v.entries, v.head, v.anchored), (20, second.head(), 20));
}

#[test]
fn duplicated_entry_is_named() {
    let (_, mut entries) = build(10);
    entries.insert(5, entries[4].clone());
    assert_eq!(
        verify(&entries, &[], &key().org_id()),
        Err(JournalError::Duplicate { seq: 4 })
    );
}

#[test]
fn moved_entry_is_reordered() {
    let (_, mut entries) = build(10);
    let moved = entries.remove(2);
    entries.insert(7, moved);
    assert_eq!(
        verify(&entries, &[], &key().org_id()),
        Err(JournalError::Reordered { seq: 2 })
    );
}

#[test]
fn every_altered_checkpoint_byte_is_refused() {
    let (entries, cp) = sealed(5);
    let org = key().org_id();
    let wire = postcard::to_stdvec(&cp).unwrap();
    for i in 0..wire.len() {
        let mut w = wire.clone();
        w[i] ^= 0x01;
        if let Ok(altered) = postcard::from_bytes::<Signed<Checkpoint>>(&w) {
            assert!(verify(&entries, &[altered], &org).is_err(), "byte {i}");
        }
    }
}

#[test]
fn roles_round_trip_as_text() {
    for role in Role::ALL {
        assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
    }
    assert_eq!(" Physician ".parse::<Role>().unwrap(), Role::Physician);
    let e = "nurse".parse::<Role>().unwrap_err().to_string();
    assert!(e.contains("physician|coordinator"), "{e}");
}

#[test]
fn action_names_its_consultation() {
    assert_eq!(
        Action::Open {
            consultation: cid(7)
        }
        .consultation(),
        Some(cid(7))
    );
    assert_eq!(Action::Login { user: "a".into() }.consultation(), None);
}

#[test]
fn stats_on_a_handmade_journal() {
    let (a, b, c) = (org(0), org(1), org(2));
    let create = |n: u64, requester, consultant, specialty, urgency| {
        Action::Create(ConsultationRef {
            id: cid(n),
            requester,
            consultant,
            specialty,
            urgency,
        })
    };
    let conclude = |n: u64, met| Action::Conclusion {
        consultation: cid(n),
        deadline_met: met,
    };
    use Specialty::{Cardiology, Oncology};
    use Urgency::{Emergency, Planned, Urgent};
    let actions = vec![
        create(1, a, b, Cardiology, Planned),
        Action::Login { user: "x".into() },
        create(2, a, b, Oncology, Urgent),
        create(3, a, c, Cardiology, Emergency),
        create(4, c, b, Cardiology, Planned),
        // A retried registration is not a second consultation.
        create(1, a, b, Cardiology, Planned),
        conclude(1, true),
        conclude(2, false),
        conclude(3, true),
        // The written follow-up of an emergency does not count again.
        conclude(3, false),
        Action::FailedLogin { user: "y".into() },
    ];
    let mut journal = Journal::new();
    let entries: Vec<Entry> = actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| journal.append(at(i as u64), None, None, action))
        .collect();
    let s = stats(&entries);
    assert_eq!(
        s.by_pair,
        BTreeMap::from([((a, b), 2), ((a, c), 1), ((c, b), 1)])
    );
    assert_eq!(
        s.by_specialty,
        BTreeMap::from([(Cardiology, 3), (Oncology, 1)])
    );
    assert_eq!(
        s.by_urgency,
        BTreeMap::from([(Planned, 2), (Urgent, 1), (Emergency, 1)])
    );
    assert_eq!((s.conclusions, s.deadlines_met), (3, 2));
    assert_eq!(stats(&[]), Stats::default());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any field of any entry, changed, is detected (with a checkpoint at
    /// the end, which is what catches a change to the last entry).
    #[test]
    fn any_altered_field_is_detected(index in 0usize..30, field in 0u8..6, bit: u8) {
        let (mut entries, cp) = sealed(30);
        let before = entries[index].clone();
        alter(&mut entries[index], field, bit);
        prop_assert_ne!(&entries[index], &before);
        let result = verify(&entries, &[cp], &key().org_id());
        prop_assert!(result.is_err(), "field {} of entry {} changed unnoticed", field, index);
        // Before the last entry, the chain (and the checkpoint vouching
        // for the last one) names the edited entry.
        if index < 29 && field != 1 {
            prop_assert_eq!(result, Err(JournalError::Edited { seq: index as u64 }));
        }
    }

    #[test]
    fn any_deletion_is_detected(index in 0usize..30) {
        let (mut entries, cp) = sealed(30);
        entries.remove(index);
        let org = key().org_id();
        let result = verify(&entries, std::slice::from_ref(&cp), &org);
        prop_assert!(result.is_err());
        if index < 29 {
            let missing = Err(JournalError::Missing {
                expected_seq: index as u64,
                found_seq: index as u64 + 1,
            });
            prop_assert_eq!(&result, &missing);
            prop_assert_eq!(verify(&entries, &[], &org), missing);
        } else {
            prop_assert!(
                matches!(
                    result,
                    Err(JournalError::Checkpoint {
                        seq: 30,
                        reason: CheckpointFault::BeyondJournal { entries: 29 }
                    })
                ),
                "{:?}",
                result
            );
        }
    }

    #[test]
    fn adjacent_swap_is_detected(index in 0usize..29) {
        let (mut entries, _) = sealed(30);
        entries.swap(index, index + 1);
        let result = verify(&entries, &[], &key().org_id());
        prop_assert!(
            matches!(
                result,
                Err(JournalError::Reordered { .. } | JournalError::BrokenChain { .. })
            ),
            "{:?}",
            result
        );
    }

    /// Arbitrary garbage is refused or accepted, never a panic.
    #[test]
    fn arbitrary_entries_never_panic(
        raw in prop::collection::vec((0u64..8, any::<[u8; 32]>(), any::<bool>()), 0..12)
    ) {
        let entries: Vec<Entry> = raw
            .into_iter()
            .map(|(seq, prev, conclusion)| Entry {
                seq,
                prev,
                at: NOW,
                actor: None,
                role: None,
                action: Action::Conclusion { consultation: cid(seq), deadline_met: conclusion },
            })
            .collect();
        let _ = verify(&entries, &[], &key().org_id());
        let _ = stats(&entries);
    }
}
