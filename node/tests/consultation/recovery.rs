//! Lost state comes back: a consultant restored from a backup or whose
//! database lost its tail takes its consultations back from the
//! requester, and a backup taken during traffic restores whole.

use super::*;

/// A federal center and a district hospital that asks it, converged.
struct Pair {
    tmp: tempfile::TempDir,
    f: konsilium_node::federation::Member,
    federal: NodeHandle,
    district: NodeHandle,
    district_addr: libp2p::Multiaddr,
}

async fn federal_and_district() -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let d = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let federal = node::start(f.setup(vec![], vec![])).await.unwrap();
    let fa = wait::listen_addr(&federal, PATIENCE).await.unwrap();
    let district = node::start(d.setup(vec![fa], vec![])).await.unwrap();
    let district_addr = wait::listen_addr(&district, PATIENCE).await.unwrap();
    wait::converged(&[&district, &federal], 2, PATIENCE)
        .await
        .unwrap();
    Pair {
        tmp,
        f,
        federal,
        district,
        district_addr,
    }
}

/// How a consultant lost what it held since its backup.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// The operator restored the whole data directory from the backup and
    /// runs `konsilium recover`.
    RestoredBackup,
    /// Only the database went back (a disk that dropped its last writes):
    /// the anchor beside it shows the gap, and the node recovers by itself.
    DatabaseTail,
}

/// A consultant that lost consultation state takes it back from the
/// requester, which holds the same signed steps: a step taken after the
/// backup and a consultation opened after it both come back, checked.
async fn a_consultant_recovers_what_it_lost(loss: Loss) {
    let Pair {
        tmp,
        f,
        federal,
        district,
        district_addr: da,
    } = federal_and_district().await;
    let mut at_federal = federal.subscribe();
    let (first, _) = district
        .request_consultation(new_consultation(Urgency::Planned, consent()), vec![])
        .await
        .unwrap();
    status_reaches(&mut at_federal, first, Status::Requested).await;

    // Last night's backup.
    federal.shutdown().await;
    let backup = tmp.path().join("backup");
    konsilium_node::storage::datadir::copy_tree(&f.data_dir, &backup).unwrap();
    let federal = node::start(f.setup(vec![da.clone()], vec![]))
        .await
        .unwrap();
    wait::converged(&[&district, &federal], 2, PATIENCE)
        .await
        .unwrap();

    // Today: the first consultation is accepted, a second one arrives.
    let mut at_district = district.subscribe();
    let mut at_federal = federal.subscribe();
    for action in [Action::Receive, Action::Accept] {
        federal
            .act(act(first, Role::Coordinator, "coordinator", action))
            .await
            .unwrap();
    }
    status_reaches(&mut at_district, first, Status::Accepted).await;
    let ecg = vec![0x42u8; 300_000];
    let ecg_file = CaseFile {
        info: ecg_info(),
        content: Attachment::Bytes(ecg.clone()),
    };
    let (second, sent) = district
        .request_consultation(new_consultation(Urgency::Urgent, consent()), vec![ecg_file])
        .await
        .unwrap();
    status_reaches(&mut at_federal, second, Status::Requested).await;
    // Receipted: the district will not deliver it again, so only the
    // history can bring it back.
    wait::event(&mut at_district, "the receipt", PATIENCE, |e| {
        matches!(e, NodeEvent::PackageDelivered { id, .. } if *id == sent.id).then_some(())
    })
    .await
    .unwrap();
    let accepted = federal.consultation(first).await.unwrap().consultation;
    federal.shutdown().await;

    match loss {
        Loss::RestoredBackup => {
            std::fs::remove_dir_all(&f.data_dir).unwrap();
            konsilium_node::storage::datadir::copy_tree(&backup, &f.data_dir).unwrap();
        }
        Loss::DatabaseTail => {
            let db = f.data_dir.join("db");
            std::fs::remove_dir_all(&db).unwrap();
            konsilium_node::storage::datadir::copy_tree(&backup.join("db"), &db).unwrap();
        }
    }
    let federal = node::start(f.setup(vec![da], vec![])).await.unwrap();
    let lost = federal.consultation(first).await.unwrap().consultation;
    assert_eq!(
        lost.status,
        Status::Requested,
        "the backup predates the steps"
    );
    assert!(matches!(
        federal.consultation(second).await,
        Err(NodeError::UnknownConsultation(_))
    ));

    if let Loss::RestoredBackup = loss {
        let report = federal.recover(None, vec![]).await.unwrap();
        assert!(report.finished, "{report:?}");
        assert_eq!(report.consultations, 2, "{report:?}");
        assert_eq!(report.counterparts.len(), 1, "{report:?}");
        assert_eq!(report.counterparts[0].state, "answered", "{report:?}");
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let first_back = federal.consultation(first).await.unwrap().consultation;
        let second_back = federal.consultation(second).await;
        if first_back.history == accepted.history
            && let Ok(view) = &second_back
        {
            assert_eq!(first_back.status, Status::Accepted);
            assert_eq!(view.consultation.status, Status::Requested);
            assert_eq!(view.extract.questions, "Pacemaker indicated?");
            // Its ECG comes back too, sealed anew by the requester.
            let out = tmp.path().join("ecg.pdf");
            let (info, size) = federal
                .open_case_file(second, 0, out.clone())
                .await
                .unwrap();
            assert_eq!((info, size), (ecg_info(), ecg.len() as u64));
            assert_eq!(std::fs::read(&out).unwrap(), ecg);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{loss:?}: not recovered: first is {:?}, second {:?}",
            first_back.status,
            second_back.map(|v| v.consultation.status)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (entries, _) = federal.journal().await.unwrap();
    let recovered: Vec<_> = entries
        .iter()
        .filter_map(|e| match &e.action {
            JournalAction::Recover {
                consultation,
                steps,
                ..
            } => Some((ConsultationId(*consultation), *steps)),
            _ => None,
        })
        .collect();
    assert!(recovered.contains(&(first, 2)), "{recovered:?}");
    // The operator sees the round in `konsilium status`.
    let status = federal
        .inspect(konsilium_node::node::Inspect::Status)
        .await
        .unwrap();
    assert_eq!(status["recovery"]["consultations"], 2, "{status}");
    assert_eq!(status["recovery"]["finished"], true, "{status}");
    assert!(recovered.contains(&(second, 0)), "{recovered:?}");
    let gaps = entries
        .iter()
        .filter(|e| matches!(e.action, JournalAction::Gap { .. }))
        .count();
    match loss {
        Loss::RestoredBackup => assert_eq!(gaps, 0),
        Loss::DatabaseTail => assert_eq!(gaps, 1),
    }
    // The consultation goes on from the recovered state.
    let mut at_district = district.subscribe();
    let more = Action::AskMore {
        questions: "An echocardiogram, please".into(),
    };
    federal
        .act(act(first, Role::Consultant, "Dr. Smirnov", more))
        .await
        .unwrap();
    status_reaches(&mut at_district, first, Status::OnHold).await;
    federal.shutdown().await;
    district.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultant_restored_from_a_backup_recovers_on_request() {
    a_consultant_recovers_what_it_lost(Loss::RestoredBackup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultant_whose_database_lost_its_tail_recovers_by_itself() {
    a_consultant_recovers_what_it_lost(Loss::DatabaseTail).await;
}

/// A backup taken while consultations arrive restores into a fresh data
/// directory as the node was at one moment: its journal verifies against
/// the anchor it holds, every consultation its journal created is in its
/// database, and the directory digest, journal head and consultations are
/// those the backup reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_traffic_restores_into_a_fresh_node() {
    use konsilium_node::storage::backup::{self, BackupError};
    use konsilium_node::storage::store::Store;
    use std::collections::BTreeSet;

    let Pair {
        tmp,
        f,
        federal,
        district,
        ..
    } = federal_and_district().await;

    let dest = tmp.path().join("backup");
    let traffic = async {
        for _ in 0..12 {
            let c = new_consultation(Urgency::Planned, consent());
            district.request_consultation(c, vec![]).await.unwrap();
        }
    };
    let taken = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        federal.backup(dest.clone()).await.unwrap()
    };
    let ((), manifest) = tokio::join!(traffic, taken);
    assert!(
        matches!(
            federal.backup(dest.clone()).await,
            Err(NodeError::Backup(BackupError::NotEmpty(_)))
        ),
        "a backup never writes over another"
    );
    federal.shutdown().await;

    let restored = tmp.path().join("restored");
    assert_eq!(backup::restore(&dest, &restored).unwrap(), manifest);
    assert!(matches!(
        backup::restore(&dest, &restored),
        Err(BackupError::NotEmpty(_))
    ));
    {
        let store = Store::open(&restored.join("db")).unwrap();
        let entries = store.journal().unwrap();
        let mut checkpoints = store.checkpoints().unwrap();
        checkpoints.extend(konsilium_node::storage::anchor::read(&restored).unwrap());
        let verified = journal::verify(&entries, &checkpoints, &f.org_id()).unwrap();
        assert_eq!(verified.entries, manifest.journal_entries);
        assert_eq!(hex::encode(verified.head), manifest.journal_head);
        assert_eq!(
            verified.anchored, verified.entries,
            "the anchor is the head"
        );
        let stored: BTreeSet<String> = store
            .consultations()
            .unwrap()
            .iter()
            .map(|c| c.request.decode_unverified().unwrap().id.to_string())
            .collect();
        let listed: BTreeSet<String> = manifest.consultations.iter().cloned().collect();
        assert_eq!(stored, listed);
        let created: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| match &e.action {
                JournalAction::Create(c) => Some(ConsultationId(c.id).to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            created, stored,
            "the journal and the consultations are one moment"
        );
        let trust = Trust::new(f.roots.iter().copied());
        let mut directory = konsilium_protocol::directory::Directory::new();
        directory.insert_many(store.records().unwrap(), &trust, node::now());
        assert_eq!(hex::encode(directory.digest()), manifest.directory_digest);
    }
    let mut setup = f.setup(vec![], vec![]);
    setup.data_dir = restored.clone();
    let back = node::start(setup).await.unwrap();
    let ids: BTreeSet<String> = back
        .consultations()
        .await
        .unwrap()
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(ids, manifest.consultations.iter().cloned().collect());
    back.shutdown().await;
    district.shutdown().await;
}
