//! A consilium of three organizations: the federal center, consulted by a
//! district hospital, invites the regional hospital. The invited node
//! receives the case (extract and ECG) sealed to it with the history so
//! far, every later step reaches all three, and in the video session each
//! site receives the other two.

use super::sessions::once_connected;
use super::*;
use konsilium_node::node::{Attachment, CaseFile, ConclusionText, VideoPayload};
use konsilium_protocol::content::FileInfo;
use konsilium_protocol::video::SessionId;
use konsilium_protocol::workflow::Side;
use konsilium_video::LinkEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_third_organization_gets_the_case_and_every_site_sees_the_other_two() {
    let w = three_with(Some(loopback_video())).await;
    let sites = [&w.district, &w.regional, &w.federal];
    let mut events: Vec<_> = sites.iter().map(|n| n.subscribe()).collect();
    let ecg = vec![0x17u8; 50_000];
    let info = FileInfo {
        title: Some("ECG, 12 leads".into()),
        content_type: "application/pdf".into(),
    };
    let (id, _) = w
        .district
        .request_consultation(
            new_consultation(Urgency::Urgent, consent()),
            vec![CaseFile {
                info: info.clone(),
                content: Attachment::Bytes(ecg.clone()),
            }],
        )
        .await
        .unwrap();
    status_reaches(&mut events[2], id, Status::Requested).await;
    let regional = w.regional.org();
    for (role, user, action) in [
        (Role::Coordinator, "coordinator", Action::Accept),
        (
            Role::Consultant,
            "Prof. Petrov",
            Action::Invite { org: regional },
        ),
    ] {
        w.federal.act(act(id, role, user, action)).await.unwrap();
    }
    // The invitation brings the case to the regional hospital.
    status_reaches(&mut events[1], id, Status::Accepted).await;
    let guest = w.regional.consultation(id).await.unwrap();
    assert_eq!(guest.side, Side::Invited);
    assert_eq!(guest.consultation.guests, vec![regional]);
    assert_eq!(guest.consultation.history.len(), 2);
    assert_eq!(guest.extract.questions, "Pacemaker indicated?");
    let out = w._tmp.path().join("ecg-at-the-guest");
    let (got, size) = w.regional.open_case_file(id, 0, out.clone()).await.unwrap();
    assert_eq!((got, size), (info, ecg.len() as u64));
    assert!(std::fs::read(&out).unwrap() == ecg, "the ECG opens intact");
    // Every site knows the guest, and the guest's opinion reaches both owners.
    let opinion = Action::Note {
        text: "Holter first; pacemaker if pauses over 3 s".into(),
    };
    (w.regional)
        .act(act(id, Role::Consultant, "Dr. Volkova", opinion))
        .await
        .unwrap();
    for node in [&w.district, &w.federal] {
        let seen = tokio::time::timeout(PATIENCE, async {
            loop {
                let view = node.consultation(id).await.unwrap();
                if view.consultation.history.len() == 3 {
                    return view;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let view = seen.await.expect("the guest's note arrives");
        assert_eq!(view.consultation.guests, vec![regional]);
    }
    let (entries, _) = w.federal.journal().await.unwrap();
    assert!(
        (entries.iter()).any(
            |e| matches!(e.action, JournalAction::Invite { org, .. } if org == regional)
                && e.actor.as_deref() == Some("Prof. Petrov")
        ),
        "the invitation is journaled with who invited"
    );

    // The session: every pair of sites links, and each site receives the
    // other two.
    let session = once_connected(|| w.district.open_video(id, None)).await;
    assert_eq!(session, SessionId(id.0));
    let orgs: Vec<_> = sites.iter().map(|n| n.org()).collect();
    for (i, rx) in events.iter_mut().enumerate() {
        let what = format!("the channels of site {i}");
        from_every_other(rx, &what, session, &orgs, i, |_, e| {
            *e == LinkEvent::ChannelOpen
        })
        .await;
    }
    for node in &sites {
        node.watch_video(session).await.unwrap();
    }
    let frame = |from: usize| vec![from as u8 + 1; 800];
    for _ in 0..5 {
        for (i, node) in sites.iter().enumerate() {
            for &to in orgs.iter().filter(|o| **o != orgs[i]) {
                node.send_video(session, to, VideoPayload::Frame(frame(i)))
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    for (i, rx) in events.iter_mut().enumerate() {
        let what = format!("frames of the other sites at site {i}");
        from_every_other(
            rx,
            &what,
            session,
            &orgs,
            i,
            |j, e| matches!(e, LinkEvent::Media { frame: f, .. } if *f.data == frame(j)[..]),
        )
        .await;
    }
    let sessions = (w.regional.inspect(node::Inspect::Sessions).await).unwrap();
    let links = sessions["sessions"].as_array().unwrap();
    assert_eq!(links.len(), 2, "the guest links to both owners: {links:?}");

    // The conclusion's files are sealed to the guest as well as to the
    // requester, and open intact at both.
    let strip = b"annotated Holter strip".to_vec();
    let start = act(id, Role::Consultant, "Prof. Petrov", Action::Start);
    w.federal.act(start).await.unwrap();
    let conclude = conclude(
        id,
        ConclusionText {
            authors: vec!["Prof. Petrov".into(), "Dr. Volkova".into()],
            diagnosis: "Sick sinus syndrome".into(),
            recommendations: "Holter monitoring".into(),
            treatment_plan: "Pacemaker if pauses over 3 s".into(),
            further_studies: "Holter".into(),
            attachments: vec![Attachment::Bytes(strip.clone())],
        },
    );
    w.federal.act(conclude).await.unwrap();
    for (i, node) in [(0, &w.district), (1, &w.regional)] {
        status_reaches(&mut events[i], id, Status::Completed).await;
        let out = w._tmp.path().join(format!("conclusion-file-{i}"));
        let opened = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(n) = node.open_conclusion_file(id, 0, out.clone()).await {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let size = opened.await.expect("the conclusion's file opens");
        assert_eq!(size, strip.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), strip, "at site {i}");
    }
}

/// Waits until site `me` has seen, from each other site's link, an event
/// `pick` accepts (given that site's index); events come in any order.
async fn from_every_other(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    session: SessionId,
    orgs: &[konsilium_protocol::identity::OrgId],
    me: usize,
    pick: impl Fn(usize, &LinkEvent) -> bool,
) {
    let mut waiting: Vec<usize> = (0..orgs.len()).filter(|j| *j != me).collect();
    wait::event(rx, what, PATIENCE, |e| {
        if let NodeEvent::Video {
            session: s,
            org,
            event,
        } = e
            && *s == session
        {
            if let LinkEvent::Failed(reason) = event {
                panic!("{what}: the link with {org} failed: {reason}");
            }
            waiting.retain(|&j| !(orgs[j] == *org && pick(j, event)));
        }
        waiting.is_empty().then_some(())
    })
    .await
    .unwrap();
}
