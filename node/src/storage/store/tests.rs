//! Unit tests of the store: open errors, intake records pruned by age, held steps.

use super::*;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::delivery::Receipt;
use konsilium_protocol::identity::IdentityKey;
use konsilium_protocol::journal::Role;
use konsilium_protocol::workflow::{Action, ConsultationRequest, Transition};

/// Opens a database just closed: sled's flusher thread lets go of
/// its lock a moment after the last handle drops.
pub(crate) fn reopen(dir: &std::path::Path) -> Store {
    let mut tries = 0;
    loop {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(_) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A stored value that does not decode is reported with the database's
/// directory and what it was, so the operator knows where to look.
#[test]
fn a_corrupt_stored_value_names_the_database_and_what_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .outbox
        .insert([7u8; 16], &b"\xff\xff not an entry"[..])
        .unwrap();
    let e = store.outbox().expect_err("a corrupt entry is an error");
    let message = e.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("outbox entry is corrupt"), "{message}");
}

#[test]
fn a_database_that_cannot_be_opened_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the database directory should be.
    let path = dir.path().join("db");
    std::fs::write(&path, b"not a database").unwrap();
    let e = Store::open(&path).err().expect("a file is not a database");
    let text = e.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
}

fn step(key: &IdentityKey, consultation: ConsultationId, seq: u32) -> EarlyStep {
    let t = Transition {
        consultation,
        seq,
        prev: [0; 32],
        actor: key.org_id(),
        role: Role::Physician,
        user: "Dr. Ivanova".into(),
        at: Timestamp::from_unix_millis(1_780_000_000_000),
        action: Action::Cancel {
            reason: "transferred".into(),
        },
    };
    EarlyStep {
        sender: key.org_id(),
        step: Signed::sign(key, &t),
        conclusion: None,
    }
}

#[test]
fn intake_records_are_written_with_their_consultation_and_pruned_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let key = IdentityKey::from_seed([7; 32]);
    let (a, b) = (ConsultationId([1; 16]), ConsultationId([2; 16]));
    let request = Signed::sign(
        &key,
        &ConsultationRequest {
            id: a,
            requester: key.org_id(),
            consultant: key.org_id(),
            specialty: konsilium_protocol::specialty::Specialty::Cardiology,
            urgency: konsilium_protocol::urgency::Urgency::Planned,
            created: Timestamp::from_unix_millis(1_000),
            consent: konsilium_protocol::workflow::Consent::EmergencyOverride {
                reason: "test".into(),
            },
            physician: "Dr. Ivanova".into(),
            escalated_from: None,
        },
    );
    let extract = CaseExtract {
        summary: "s".into(),
        questions: "q".into(),
    };
    let old = IntakeRecord {
        consultation: a,
        fingerprint: [1; 32],
        at: Timestamp::from_unix_millis(1_000),
    };
    let new = IntakeRecord {
        consultation: b,
        fingerprint: [2; 32],
        at: Timestamp::from_unix_millis(5_000),
    };
    let (ka, kb) = (
        intake_key(&key.org_id(), "sys|1"),
        intake_key(&key.org_id(), "sys|2"),
    );
    {
        let store = Store::open(dir.path()).unwrap();
        let stored = StoredConsultation::new(request.clone(), extract.clone(), Vec::new());
        for (id, key, record) in [(&a, &ka, &old), (&b, &kb, &new)] {
            let mut batch = Batch::default();
            batch.put_consultation(id, &stored);
            batch.put_intake(key, record);
            store.write(batch).unwrap();
        }
        store.flush().unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.intake(&ka).unwrap(), Some(old), "durable");
    assert!(store.consultation(&a).unwrap().is_some());
    assert_eq!(
        store
            .prune_intake(Timestamp::from_unix_millis(2_000))
            .unwrap(),
        1
    );
    assert_eq!(store.intake(&ka).unwrap(), None);
    assert_eq!(store.intake(&kb).unwrap(), Some(new));
    assert!(
        store.consultation(&a).unwrap().is_some(),
        "pruning forgets the identifier, not the consultation"
    );
    store.remove_intake(&kb).unwrap();
    assert_eq!(store.intake(&kb).unwrap(), None);
}

#[test]
fn held_steps_are_kept_per_consultation_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = IdentityKey::from_seed([7; 32]);
    let (a, b) = (ConsultationId([1; 16]), ConsultationId([2; 16]));
    let mut batch = Batch::default();
    batch.hold_early_step(&a, &step(&key, a, 1));
    batch.hold_early_step(&a, &step(&key, a, 2));
    batch.hold_early_step(&b, &step(&key, b, 1));
    store.commit(batch).unwrap();
    assert_eq!(store.early_steps().unwrap().len(), 3);
    let keys = store.early_step_keys(&a).unwrap();
    assert_eq!(keys.len(), 2);
    let mut batch = Batch::default();
    for k in keys {
        batch.remove_early_step(k);
    }
    store.commit(batch).unwrap();
    let left = store.early_steps().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].step.decode_unverified().unwrap().consultation, b);
}

#[test]
fn the_database_is_held_while_open_and_released_when_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    assert!(is_released(&dir), "no database yet: nothing holds it");
    let store = Store::open(&dir).unwrap();
    assert!(!is_released(&dir), "an open store holds its lock");
    let err = Store::open(&dir).err().expect("a second open is refused");
    assert!(err.to_string().contains("lock"), "{err}");
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !is_released(&dir) {
        assert!(
            std::time::Instant::now() < deadline,
            "still held after drop"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Store::open(&dir).expect("opens again once released");
}

/// Retention deletes the attachments of packages sent or relayed, by
/// hash, a while after their delivery; an attachment a received package
/// holds is never deleted so, whatever other package lists its hash.
#[test]
fn a_received_packages_attachments_outlive_the_retention_of_any_package_listing_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = IdentityKey::from_seed([1; 32]);
    let received = waiting_package(&key, &key, 1);
    let held = received.header.attachments[0].hash;
    let receipt = Signed::sign(
        &key,
        &Receipt::for_package(&received, Timestamp::from_unix_millis(1_500)),
    );
    let mut batch = Batch::default();
    batch.put_inbox(&InboxEntry {
        package: received,
        receipt,
        received_at: Timestamp::from_unix_millis(1_500),
    });
    store.commit(batch).unwrap();
    let other = [9u8; 32];
    let at = Timestamp::from_unix_millis(10_000);
    store.expire_blob(&held, at).unwrap();
    store.expire_blob(&other, at).unwrap();
    assert_eq!(store.take_expired_blobs(at, 64).unwrap(), vec![other]);
    assert_eq!(store.next_blob_expiry().unwrap(), None, "both unscheduled");
}

/// Waiting packages are listed by their headers alone (their bodies are
/// left in the database) and taken out one at a time, whole.
#[test]
fn waiting_packages_are_listed_by_header_and_taken_out_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (sender, relay) = (
        IdentityKey::from_seed([1; 32]),
        IdentityKey::from_seed([2; 32]),
    );
    let package = |n: u8| waiting_package(&sender, &relay, n);
    store.put_waiting(&package(1), &sender.org_id()).unwrap();
    store.put_waiting(&package(2), &relay.org_id()).unwrap();
    let heads = store.waiting_heads().unwrap();
    assert_eq!(
        heads,
        vec![
            (package(1).header, sender.org_id()),
            (package(2).header, relay.org_id())
        ]
    );
    let taken = store.take_waiting(&PackageId([2; 16])).unwrap();
    assert_eq!(taken, Some((package(2), relay.org_id())));
    assert_eq!(store.take_waiting(&PackageId([2; 16])).unwrap(), None);
    assert_eq!(store.waiting_heads().unwrap().len(), 1);
}

/// A package from `sender` to `recipient` listing one attachment.
fn waiting_package(sender: &IdentityKey, recipient: &IdentityKey, n: u8) -> SealedPackage {
    use konsilium_protocol::cert::OrgLevel;
    use konsilium_protocol::seal::{BlobRef, PACKAGE_VERSION, RoutingHeader};
    use konsilium_protocol::specialty::Specialty;
    use konsilium_protocol::urgency::Urgency;
    SealedPackage {
        header: EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId([n; 16]),
            sender: sender.org_id(),
            recipient: recipient.org_id(),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Federal,
                urgency: Urgency::Planned,
                region: None,
            },
            created: Timestamp::from_unix_millis(1_000),
            expires: Timestamp::from_unix_millis(2_000),
            attachments: vec![BlobRef {
                hash: [n; 32],
                size: 5,
            }],
        },
        body: vec![n; 1000 + n as usize],
    }
}

/// A consultation's deadline, fixed when it was opened, is read back as
/// written after the database is reopened; one never written reads as none.
#[test]
fn a_fixed_deadline_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (fixed, other) = (ConsultationId([3; 16]), ConsultationId([4; 16]));
    let at = |minutes: u64| Timestamp::from_unix_millis(1_000 + minutes * 60_000);
    let deadline = konsilium_protocol::deadline::Deadline {
        requested: at(0),
        due: at(180),
        first_response_due: Some(at(30)),
        at_risk_from: at(135),
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.put_deadline(&fixed, &deadline);
        store.commit(batch).unwrap();
    }
    let store = reopen(dir.path());
    assert_eq!(store.deadline(&fixed).unwrap(), Some(deadline));
    assert_eq!(store.deadline(&other).unwrap(), None);
}
