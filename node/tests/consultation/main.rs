//! Consultations between real nodes on 127.0.0.1: the workflow carried in
//! sealed packages, applied by both organizations, journaled.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::node::{
    self, Attachment, CaseFile, ConclusionText, NodeError, NodeEvent, NodeHandle,
};
use konsilium_protocol::cert::{OrgLevel, Trust};
use konsilium_protocol::content::FileInfo;
use konsilium_protocol::journal::{self, Action as JournalAction, Role};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, Consent, ConsultationId, Side, Status, WorkflowError};
use std::time::Duration;
use tokio::sync::broadcast;

mod sites;
use sites::*;

fn ecg_info() -> FileInfo {
    FileInfo {
        title: Some("12-lead ECG".into()),
        content_type: "application/pdf".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_consultation_is_answered_in_writing_with_a_signed_conclusion() {
    let mut w = three().await;
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let ecg = vec![0x42u8; 200_000];
    // More files than a package carries: refused before anything is kept.
    let too_many = (0..65).map(|i| CaseFile {
        info: ecg_info(),
        content: Attachment::Bytes(vec![i; 10]),
    });
    let refused = (w.district)
        .request_consultation(
            new_consultation(Urgency::Planned, consent()),
            too_many.collect(),
        )
        .await;
    assert!(
        matches!(&refused, Err(NodeError::Attachment(why)) if why.contains("at most 64")),
        "{refused:?}"
    );
    assert_eq!(w.district.consultations().await.unwrap(), vec![]);
    let (id, sent) = w
        .district
        .request_consultation(
            new_consultation(Urgency::Planned, consent()),
            vec![CaseFile {
                info: ecg_info(),
                content: Attachment::Bytes(ecg.clone()),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        sent.recipient,
        w.federal.org(),
        "routed to the federal center through the regional relay"
    );
    status_reaches(&mut at_federal, id, Status::Requested).await;

    // The consulting coordinator registers and accepts; the consultant works and concludes.
    for (role, user, action) in [
        (Role::Coordinator, "coordinator Sidorova", Action::Receive),
        (Role::Coordinator, "coordinator Sidorova", Action::Accept),
        (Role::Consultant, "Prof. Petrov", Action::Start),
    ] {
        w.federal.act(act(id, role, user, action)).await.unwrap();
    }
    // A consultant may not do what only the other side may.
    let e = w
        .federal
        .act(act(
            id,
            Role::Consultant,
            "Prof. Petrov",
            Action::Acknowledge,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NodeError::Workflow(WorkflowError::NotPermitted { .. })),
        "{e}"
    );
    let conclude = conclude(
        id,
        ConclusionText {
            authors: vec!["Prof. Petrov".into()],
            diagnosis: "Sick sinus syndrome".into(),
            recommendations: "Dual-chamber pacemaker".into(),
            treatment_plan: "Implantation within 2 weeks".into(),
            further_studies: "Holter monitoring after implantation".into(),
            attachments: vec![Attachment::Bytes(b"annotated ECG strip".to_vec())],
        },
    );
    assert_eq!(w.federal.act(conclude).await.unwrap(), Status::Completed);
    status_reaches(&mut at_district, id, Status::Completed).await;
    w.district
        .act(act(id, Role::Physician, "Dr. Ivanova", Action::Acknowledge))
        .await
        .unwrap();
    let acknowledged = tokio::time::timeout(PATIENCE, async {
        while !w
            .federal
            .consultation(id)
            .await
            .unwrap()
            .consultation
            .acknowledged
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        acknowledged.is_ok(),
        "the acknowledgement reached the federal center"
    );

    // Both organizations hold the same history and state.
    let (d, f) = (
        w.district.consultation(id).await.unwrap(),
        w.federal.consultation(id).await.unwrap(),
    );
    assert_eq!(d.consultation, f.consultation);
    assert!(d.consultation.acknowledged);
    assert_eq!((d.side, f.side), (Side::Requesting, Side::Consulting));
    assert_eq!(f.extract.questions, "Pacemaker indicated?");
    // The conclusion verifies offline with the federation's root key alone.
    let file = d
        .conclusion
        .clone()
        .expect("the conclusion travelled with the step");
    let trust = Trust::new([w.fed.root().key()]);
    let (conclusion, signer) = file.verify(&trust, node::now()).unwrap();
    assert_eq!(conclusion.diagnosis, "Sick sinus syndrome");
    assert_eq!(
        conclusion.attachments.len(),
        1,
        "the signed conclusion names its attachment"
    );
    assert_eq!(signer, "Federal cardiology center");
    assert_eq!(
        Some(file.conclusion.content_hash()),
        d.consultation.conclusion
    );
    // The ECG arrived with the request, sealed, and opens intact.
    let out = w._tmp.path().join("ecg.bin");
    assert_eq!(
        w.federal
            .open_attachment(sent.id, 0, out.clone())
            .await
            .unwrap(),
        ecg.len() as u64
    );
    assert!(std::fs::read(&out).unwrap() == ecg);
    // The conclusion's file opens by consultation at the requester, from the
    // package that carried the conclusion; the consultant holds the original.
    let strip = w._tmp.path().join("conclusion-file");
    assert_eq!(
        (w.district)
            .open_conclusion_file(id, 0, strip.clone())
            .await
            .unwrap(),
        19
    );
    assert_eq!(std::fs::read(&strip).unwrap(), b"annotated ECG strip");
    let none = (w.district.open_conclusion_file(id, 1, strip.clone()).await).unwrap_err();
    assert!(none.to_string().contains("has 1 files"), "{none}");
    let consultant = (w.federal.open_conclusion_file(id, 0, strip).await).unwrap_err();
    assert!(
        consultant.to_string().contains("no conclusion"),
        "{consultant}"
    );
    // Both sides list it as the case file it is, and open it by consultation.
    for (n, view) in [(&w.district, &d), (&w.federal, &f)] {
        assert_eq!(view.files.len(), 1);
        assert_eq!(view.files[0].0, ecg_info());
        let out = w._tmp.path().join(format!("case-file-{}", n.org()));
        let (info, size) = n.open_case_file(id, 0, out.clone()).await.unwrap();
        assert_eq!((info, size), (ecg_info(), ecg.len() as u64));
        assert!(std::fs::read(&out).unwrap() == ecg);
        assert!(
            n.open_case_file(id, 1, out).await.is_err(),
            "there is no file 1"
        );
    }
    assert!(
        f.deadline.is_some(),
        "the federal calendar gives a deadline"
    );

    // Each journal verifies and accounts for the consultation.
    for n in [&w.district, &w.federal] {
        let (entries, checkpoints) = n.journal().await.unwrap();
        journal::verify(&entries, &checkpoints, &n.org()).unwrap();
        let stats = journal::stats(&entries);
        assert_eq!(
            stats.by_pair.get(&(w.district.org(), w.federal.org())),
            Some(&1)
        );
        assert_eq!((stats.conclusions, stats.deadlines_met), (1, 1));
    }

    // The district is revoked later: the federal center drops its record,
    // and still shows the consultation it answered (its files' list needed
    // the sender's directory entry, and the whole list failed).
    let region = konsilium_protocol::cert::RegionCode::new("RU-VLG").unwrap();
    let serial = LocalFederation::serial_of(&w.members[0]);
    let notice = w
        .fed
        .region(&region)
        .revoke(1, node::now(), [serial].into());
    assert_eq!(w.federal.revoke(vec![notice]).await.unwrap(), 1);
    let dropped = async {
        while w.federal.status().await.unwrap().directory_size == 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, dropped).await.unwrap();
    let view = w.federal.consultation(id).await.unwrap();
    assert_eq!(view.files.len(), 1);
    assert_eq!(view.consultation.status, Status::Completed);
    for n in [w.district, w.regional, w.federal] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_required_unless_an_emergency_override_is_logged() {
    let w = three().await;
    let override_ = Consent::EmergencyOverride {
        reason: "unconscious, no relatives reachable".into(),
    };
    let e = w
        .district
        .request_consultation(new_consultation(Urgency::Urgent, override_.clone()), vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(e, NodeError::Workflow(WorkflowError::ConsentRequired)),
        "{e}"
    );
    let (id, _) = w
        .district
        .request_consultation(new_consultation(Urgency::Emergency, override_), vec![])
        .await
        .unwrap();
    let (entries, _) = w.district.journal().await.unwrap();
    assert!(
        entries.iter().any(|e| matches!(&e.action, JournalAction::ConsentOverride { consultation, reason } if *consultation == id.0 && reason.contains("unconscious"))),
        "the override is in the journal"
    );
    for n in [w.district, w.regional, w.federal] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_at_risk_and_breached_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let requester = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let consultant = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let clock = std::sync::Arc::new(node::OffsetClock::default());
    let mut setup = consultant.setup(vec![], vec![]);
    setup.clock = clock.clone();
    let c = node::start(setup).await.unwrap();
    let mut setup = requester.setup(vec![wait::listen_addr(&c, PATIENCE).await.unwrap()], vec![]);
    setup.clock = clock.clone();
    let r = node::start(setup).await.unwrap();
    wait::converged(&[&r, &c], 2, PATIENCE).await.unwrap();

    let mut request = new_consultation(Urgency::Urgent, consent());
    request.min_level = OrgLevel::Regional;
    // Listening before the request goes: it may arrive before `request_consultation` returns.
    let mut at_consultant = c.subscribe();
    let (id, _) = r.request_consultation(request, vec![]).await.unwrap();
    status_reaches(&mut at_consultant, id, Status::Requested).await;
    let mut at_requester = r.subscribe();
    let deadline = |rx: &mut broadcast::Receiver<NodeEvent>| {
        let rx = rx.resubscribe();
        async move {
            let mut rx = rx;
            wait::event(&mut rx, "a deadline report", PATIENCE, |e| match e {
                NodeEvent::Deadline { id: got, state, .. } if *got == id => Some(*state),
                _ => None,
            })
            .await
            .unwrap()
        }
    };
    use konsilium_protocol::deadline::DeadlineState;
    // 19 of 24 hours used: at risk, on both sides.
    let (risk_c, risk_r) = (deadline(&mut at_consultant), deadline(&mut at_requester));
    clock.advance(Duration::from_secs(19 * 3600));
    assert_eq!(risk_c.await, DeadlineState::AtRisk);
    assert_eq!(risk_r.await, DeadlineState::AtRisk);
    // Past 24 hours: breached.
    let breach = deadline(&mut at_consultant);
    clock.advance(Duration::from_secs(6 * 3600));
    assert_eq!(breach.await, DeadlineState::Breached);

    // The HTTP API judges deadlines by the node's clock, not the system's.
    use konsilium_node::http::{ApiConfig, User};
    let c = std::sync::Arc::new(c);
    let (addr, task) = konsilium_node::http::serve(
        c.clone(),
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            users: vec![User::with_token("coordinator", Role::Coordinator, "coord")],
            upload_dir: None,
            tls: None,
        },
    )
    .await
    .unwrap();
    let view: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/consultations/{id}"))
        .bearer_auth("coord")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["deadline"]["state"], "breached", "{view}");
    task.abort();
    r.shutdown().await;
    if let Ok(c) = std::sync::Arc::try_unwrap(c) {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_video_consilium_is_proposed_confirmed_and_concluded() {
    let w = three().await;
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let (id, _) = w
        .district
        .request_consultation(new_consultation(Urgency::Urgent, consent()), vec![])
        .await
        .unwrap();
    status_reaches(&mut at_federal, id, Status::Requested).await;
    w.federal
        .act(act(id, Role::Coordinator, "coordinator", Action::Accept))
        .await
        .unwrap();
    w.federal
        .act(act(id, Role::Consultant, "Prof. Petrov", Action::Start))
        .await
        .unwrap();
    let now = node::now();
    let slot = |h: u64| konsilium_protocol::workflow::Slot {
        start: now.saturating_add(Duration::from_secs(h * 3600)),
        end: now.saturating_add(Duration::from_secs(h * 3600 + 1800)),
    };
    w.federal
        .act(act(
            id,
            Role::Coordinator,
            "coordinator",
            Action::ProposeSlots {
                slots: vec![slot(2), slot(4)],
            },
        ))
        .await
        .unwrap();
    // Pending until the requesting side confirms: concluding now is refused.
    let e = w
        .federal
        .act(act(
            id,
            Role::Consultant,
            "Prof. Petrov",
            Action::Conclude {
                conclusion: [0; 32],
            },
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NodeError::Workflow(WorkflowError::Appointment { .. })),
        "{e}"
    );
    // The district sees the proposal, then confirms one slot.
    let proposed = tokio::time::timeout(PATIENCE, async {
        loop {
            let v = w.district.consultation(id).await.unwrap();
            if let konsilium_protocol::workflow::Appointment::Proposed(slots) =
                v.consultation.appointment
            {
                return slots;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(proposed.len(), 2);
    w.district
        .act(act(
            id,
            Role::Physician,
            "Dr. Ivanova",
            Action::ConfirmSlot { slot: slot(4) },
        ))
        .await
        .unwrap();
    let confirmed = tokio::time::timeout(PATIENCE, async {
        while w
            .federal
            .consultation(id)
            .await
            .unwrap()
            .consultation
            .appointment
            != konsilium_protocol::workflow::Appointment::Confirmed(slot(4))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(confirmed.is_ok(), "the confirmation reached the consultant");
    let conclude = conclude(
        id,
        ConclusionText {
            authors: vec!["Prof. Petrov".into(), "Dr. Smirnova".into()],
            diagnosis: "Atrial fibrillation".into(),
            recommendations: "Anticoagulation".into(),
            treatment_plan: "Apixaban".into(),
            further_studies: "Echocardiography".into(),
            attachments: Vec::new(),
        },
    );
    w.federal.act(conclude).await.unwrap();
    status_reaches(&mut at_district, id, Status::Completed).await;
    let view = w.district.consultation(id).await.unwrap();
    assert_eq!(
        view.consultation.appointment,
        konsilium_protocol::workflow::Appointment::Confirmed(slot(4))
    );
    assert_eq!(
        view.conclusion
            .unwrap()
            .conclusion
            .decode_unverified()
            .unwrap()
            .authors
            .len(),
        2
    );
    for n in [w.district, w.regional, w.federal] {
        n.shutdown().await;
    }
}

/// A step without attachments can overtake the request it follows, whose
/// attachments are still being fetched; the consultant must hold it, not
/// drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_overtakes_its_request_is_held_and_applied() {
    let w = three().await;
    let mut at_federal = w.federal.subscribe();
    let scan = vec![0x5au8; 24 << 20];
    let (id, _) = w
        .district
        .request_consultation(
            new_consultation(Urgency::Planned, consent()),
            vec![CaseFile::untyped(Attachment::Bytes(scan))],
        )
        .await
        .unwrap();
    // Cancelled at once: the step's package is small and is sent while the
    // consultant is still pulling the 24 MiB scan.
    let status = w
        .district
        .act(act(
            id,
            Role::Physician,
            "Dr. Ivanova",
            Action::Cancel {
                reason: "the patient was transferred".into(),
            },
        ))
        .await
        .unwrap();
    assert_eq!(status, Status::Cancelled);
    status_reaches(&mut at_federal, id, Status::Cancelled).await;
    let view = w.federal.consultation(id).await.unwrap();
    assert_eq!(view.consultation.status, Status::Cancelled);
    for n in [w.district, w.regional, w.federal] {
        n.shutdown().await;
    }
}

/// A cancel and an accept taken at the same moment at the two nodes: each
/// applies its own first, and both end with one history, cancelled, the
/// federal center's accept journaled as undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_crossing_an_accept_ends_cancelled_at_both_nodes() {
    let w = three().await;
    let mut at_federal = w.federal.subscribe();
    let (id, _) = (w.district)
        .request_consultation(new_consultation(Urgency::Planned, consent()), vec![])
        .await
        .unwrap();
    status_reaches(&mut at_federal, id, Status::Requested).await;
    let reason = "the patient was transferred".to_owned();
    let cancel = act(
        id,
        Role::Physician,
        "Dr. Ivanova",
        Action::Cancel { reason },
    );
    let accept = act(
        id,
        Role::Coordinator,
        "coordinator Sidorova",
        Action::Accept,
    );
    // The steps cross on the way (each goes through the regional relay).
    let (cancelled, accepted) = tokio::join!(w.district.act(cancel), w.federal.act(accept));
    assert_eq!(cancelled.unwrap(), Status::Cancelled);
    assert_eq!(
        accepted.unwrap(),
        Status::Accepted,
        "the accept crossed the cancel"
    );
    let histories = async {
        loop {
            let a = w.district.consultation(id).await.unwrap().consultation;
            let b = w.federal.consultation(id).await.unwrap().consultation;
            if a.history == b.history && a.status == b.status {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let settled = tokio::time::timeout(PATIENCE, histories)
        .await
        .expect("both nodes come to one history");
    assert_eq!(settled.status, Status::Cancelled);
    assert_eq!(settled.history.len(), 1);
    let (entries, _) = w.federal.journal().await.unwrap();
    let undone: Vec<_> = (entries.iter())
        .filter_map(|e| match &e.action {
            JournalAction::Undone { seq, by, .. } => Some((*seq, *by, e.actor.clone())),
            _ => None,
        })
        .collect();
    let who = Some("coordinator Sidorova".to_owned());
    assert_eq!(undone, vec![(1, w.district.org(), who)]);
    for n in [w.district, w.regional, w.federal] {
        n.shutdown().await;
    }
}

mod recovery;
