//! An emergency nobody answers escalates district -> regional -> federal
//! on the consultant's 30-minute first response, and the hops left behind
//! are cancelled. The nodes share a clock the test moves, at most 2.5 times
//! real time; a binary of its own, so no other test's load stretches the
//! real time a Hello takes against it.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::node::{self, Attachment, CaseFile, NodeEvent};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, Status};
use std::time::Duration;

#[path = "../consultation/sites.rs"]
mod sites;
use sites::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_emergency_escalates_district_regional_federal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let requester = fed.enrol(OrgSpec::new(
        "Rural district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let district = fed.enrol(OrgSpec::new(
        "Central district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let federal = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    // One simulated clock for the whole federation: time moves on for everyone.
    let clock = std::sync::Arc::new(node::OffsetClock::default());
    let on_clock = |m: &konsilium_node::federation::Member, bootstrap: Vec<libp2p::Multiaddr>| {
        let mut setup = m.setup(bootstrap, vec![]);
        setup.clock = clock.clone();
        setup
    };
    let r = node::start(on_clock(&regional, vec![])).await.unwrap();
    let ra = wait::listen_addr(&r, PATIENCE).await.unwrap();
    let a = node::start(on_clock(&requester, vec![ra.clone()]))
        .await
        .unwrap();
    let b = node::start(on_clock(&district, vec![ra.clone()]))
        .await
        .unwrap();
    let f = node::start(on_clock(&federal, vec![ra])).await.unwrap();
    wait::converged(&[&a, &b, &r, &f], 4, PATIENCE)
        .await
        .unwrap();

    let mut at_requester = a.subscribe();
    let mut request = new_consultation(Urgency::Emergency, consent());
    request.min_level = OrgLevel::District;
    let ecg: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let mut at_federal = f.subscribe();
    let (first, sent) = a
        .request_consultation(
            request,
            vec![CaseFile::untyped(Attachment::Bytes(ecg.clone()))],
        )
        .await
        .unwrap();
    assert_eq!(sent.recipient, b.org(), "the nearest level first");

    // Nobody answers within the 30-minute first response: district -> regional -> federal.
    let mut chain = vec![(first, b.org())];
    for expected in [r.org(), f.org()] {
        clock.advance(Duration::from_secs(31 * 60));
        let (from, to, consultant) =
            wait::event(&mut at_requester, "an escalation", PATIENCE, |e| match e {
                NodeEvent::Escalated {
                    from,
                    to,
                    consultant,
                } => Some((*from, *to, *consultant)),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(from, chain.last().unwrap().0);
        assert_eq!(consultant, expected);
        chain.push((to, consultant));
    }
    // The federal center answers; no further escalation happens.
    let last = chain.last().unwrap().0;
    let view = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(v) = f.consultation(last).await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        view.consultation.request.escalated_from,
        Some(chain[1].0),
        "the history shows every hop"
    );
    // The ECG was sealed anew for the federal center, which opens it intact.
    let package = wait::event(
        &mut at_federal,
        "the escalated package",
        PATIENCE,
        |e| match e {
            NodeEvent::PackageReceived { id, .. } => Some(*id),
            _ => None,
        },
    )
    .await
    .unwrap();
    let out = tmp.path().join("ecg-at-federal.bin");
    assert_eq!(
        f.open_attachment(package, 0, out.clone()).await.unwrap(),
        ecg.len() as u64
    );
    assert!(std::fs::read(&out).unwrap() == ecg);
    f.act(act(
        last,
        Role::Coordinator,
        "duty coordinator",
        Action::Accept,
    ))
    .await
    .unwrap();
    status_reaches(&mut at_requester, last, Status::Accepted).await;
    clock.advance(Duration::from_secs(31 * 60));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.consultations().await.unwrap().len(),
        3,
        "accepted in time: no fourth hop"
    );
    for (id, holder) in [(chain[0].0, &b), (chain[1].0, &r)] {
        let done = tokio::time::timeout(PATIENCE, async {
            while holder
                .consultation(id)
                .await
                .map(|v| v.consultation.status)
                .ok()
                != Some(Status::Cancelled)
            {
                // The node clock is the test's: a cancel whose first
                // delivery failed is retried only when it moves on. It
                // moves at 2.5 times real time, no faster: a Hello that
                // takes a loaded machine 400 ms must not look like the
                // 10 s that refuses a peer.
                clock.advance(Duration::from_millis(250));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            done.is_ok(),
            "the unanswered consultation was cancelled at its consultant"
        );
    }
    for n in [a, b, r, f] {
        n.shutdown().await;
    }
}
