//! A video link between the two sites of a consultation, negotiated over
//! their libp2p connection with signed offers and answers, carrying the
//! data channel and media frames both ways over UDP on 127.0.0.1.

use super::*;
use konsilium_node::node::VideoPayload;
use konsilium_protocol::video::SessionId;
use konsilium_video::LinkEvent;

type Org = konsilium_protocol::identity::OrgId;

/// Waits for a video event from `org` in `session` that `pick` accepts.
pub(super) async fn video_event(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    session: SessionId,
    org: konsilium_protocol::identity::OrgId,
    mut pick: impl FnMut(&LinkEvent) -> bool,
) {
    wait::event(rx, what, PATIENCE, |e| match e {
        NodeEvent::Video {
            session: s,
            org: o,
            event,
        } if *s == session && *o == org => {
            if let LinkEvent::Failed(reason) = event {
                panic!("{what}: the link failed: {reason}");
            }
            pick(event).then_some(())
        }
        _ => None,
    })
    .await
    .unwrap();
}

/// An urgent consultation the district asks the federal center for.
pub(super) async fn requested(district: &NodeHandle) -> ConsultationId {
    let request = new_consultation(Urgency::Urgent, consent());
    let (id, _) = district
        .request_consultation(request, vec![])
        .await
        .unwrap();
    id
}

/// Tries `attempt` again while the other site is not connected yet.
pub(super) async fn once_connected<T, F>(mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, NodeError>>,
{
    let retried = tokio::time::timeout(PATIENCE, async {
        loop {
            match attempt().await {
                Ok(done) => return done,
                Err(NodeError::Video(e)) if e.contains("not connected") => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    retried.await.expect("the sites connect")
}

/// Waits until the session's data channel is open at both sites.
async fn channel_open_at_both(
    (at_district, district): (&mut broadcast::Receiver<NodeEvent>, Org),
    (at_federal, federal): (&mut broadcast::Receiver<NodeEvent>, Org),
    session: SessionId,
) {
    let open = |e: &LinkEvent| *e == LinkEvent::ChannelOpen;
    video_event(
        at_district,
        "the channel at the district",
        session,
        federal,
        open,
    )
    .await;
    video_event(
        at_federal,
        "the channel at the center",
        session,
        district,
        open,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_sites_of_a_consultation_open_a_video_link_and_carry_media_and_chat_both_ways() {
    let w = three_with(Some(loopback_video())).await;
    let (district, federal) = (w.district.org(), w.federal.org());
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let id = requested(&w.district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;

    let by = || Some(("Dr. Ivanova".to_owned(), Role::Physician));
    let session = once_connected(|| w.district.open_video(id, by())).await;
    assert_eq!(session, SessionId(id.0));
    channel_open_at_both(
        (&mut at_district, district),
        (&mut at_federal, federal),
        session,
    )
    .await;

    for (node, other) in [(&w.district, federal), (&w.federal, district)] {
        let sessions = node
            .inspect(konsilium_node::node::Inspect::Sessions)
            .await
            .unwrap();
        assert_eq!(sessions["sessions"][0]["consultation"], id.to_string());
        assert_eq!(sessions["sessions"][0]["peer"], other.to_string());
        assert_eq!(sessions["sessions"][0]["state"], "connected");
    }
    let sessions = (w
        .regional
        .inspect(konsilium_node::node::Inspect::Sessions)
        .await)
        .unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 0);
    // Who opened it early is in the journal.
    let (entries, _) = w.district.journal().await.unwrap();
    let opened = (entries.iter())
        .find(|e| e.action.to_string().ends_with(": opened early"))
        .expect("the early opening is journaled");
    assert_eq!(opened.actor.as_deref(), Some("Dr. Ivanova"));
    assert_eq!(opened.role, Some(Role::Physician));

    // Frames go to the site's browsers; the event loop is told of none
    // unless a session is watched. Frames flow until the center's view
    // counts them; the chat message then follows them through the same
    // plane, and no frame is told before it.
    let counted = tokio::time::timeout(PATIENCE, async {
        loop {
            let unwatched = VideoPayload::Frame(vec![9; 1000]);
            (w.district.send_video(session, federal, unwatched).await).unwrap();
            let view = (w.federal.inspect(konsilium_node::node::Inspect::Sessions)).await;
            if view.unwrap()["sessions"][0]["receive_fps"]
                .as_f64()
                .is_some_and(|fps| fps > 0.0)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    });
    counted
        .await
        .expect("the center counts the district's frames");
    let say = |text: &str| VideoPayload::Data(text.as_bytes().to_vec());
    let sent = w
        .district
        .send_video(session, federal, say("ECG in the chat"));
    assert!(sent.await.unwrap());
    let sent = (w.federal).send_video(session, district, say("ST elevation, start thrombolysis"));
    assert!(sent.await.unwrap());
    let mut frames_told = 0;
    video_event(
        &mut at_federal,
        "the district's message",
        session,
        district,
        |e| {
            frames_told += usize::from(matches!(e, LinkEvent::Media { .. }));
            *e == LinkEvent::Data(b"ECG in the chat".to_vec())
        },
    )
    .await;
    assert_eq!(
        frames_told, 0,
        "frames of a session nobody watches were told"
    );
    video_event(
        &mut at_district,
        "the center's message",
        session,
        federal,
        |e| *e == LinkEvent::Data(b"ST elevation, start thrombolysis".to_vec()),
    )
    .await;

    // Synthetic frames (the node never decodes media), a few each way at
    // a camera's pace, in a watched session.
    for node in [&w.district, &w.federal] {
        node.watch_video(session).await.unwrap();
    }
    let frame = |from: u8| vec![from; 1000];
    for _ in 0..5 {
        for (node, to, mark) in [(&w.district, federal, 1), (&w.federal, district, 2)] {
            node.send_video(session, to, VideoPayload::Frame(frame(mark)))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    video_event(
        &mut at_federal,
        "a frame from the district",
        session,
        district,
        |e| matches!(e, LinkEvent::Media { frame: f, .. } if *f.data == frame(1)[..]),
    )
    .await;
    video_event(
        &mut at_district,
        "a frame from the center",
        session,
        federal,
        |e| matches!(e, LinkEvent::Media { frame: f, .. } if *f.data == frame(2)[..]),
    )
    .await;
    // A closed consultation's session cannot be opened.
    let cancel = Action::Cancel {
        reason: "the patient was transferred".into(),
    };
    let mut done = w.district.subscribe();
    (w.district)
        .act(act(id, Role::Physician, "Dr. Ivanova", cancel))
        .await
        .unwrap();
    status_reaches(&mut done, id, Status::Cancelled).await;
    let e = w.district.open_video(id, None).await.unwrap_err();
    assert!(e.to_string().contains("is cancelled"), "{e}");
}

/// The video steps in a node's journal, as their one-line descriptions.
async fn video_steps(node: &NodeHandle) -> Vec<String> {
    let (entries, _) = node.journal().await.unwrap();
    (entries.into_iter())
        .filter(|e| matches!(e.action, JournalAction::Video { .. }))
        .map(|e| e.action.to_string())
        .collect()
}

/// Waits until `node`'s sessions view satisfies `done`; returns it.
async fn sessions_until(
    node: &NodeHandle,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let view = tokio::time::timeout(PATIENCE, async {
        loop {
            let view = (node.inspect(konsilium_node::node::Inspect::Sessions).await).unwrap();
            if done(&view) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    view.unwrap_or_else(|_| panic!("{what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_appointment_opens_the_session_and_cancelling_the_consultation_ends_it() {
    let w = three_with(Some(loopback_video())).await;
    let (district, federal) = (w.district.org(), w.federal.org());
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let id = requested(&w.district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    for (role, user, action) in [
        (Role::Coordinator, "coordinator", Action::Accept),
        (Role::Consultant, "Prof. Petrov", Action::Start),
    ] {
        w.federal.act(act(id, role, user, action)).await.unwrap();
    }
    // Within the lead before the slot: the session opens on confirmation.
    let now = node::now();
    let slot = konsilium_protocol::workflow::Slot {
        start: now.saturating_add(Duration::from_secs(120)),
        end: now.saturating_add(Duration::from_secs(1920)),
    };
    let propose = Action::ProposeSlots { slots: vec![slot] };
    w.federal
        .act(act(id, Role::Coordinator, "coordinator", propose))
        .await
        .unwrap();
    let confirm = Action::ConfirmSlot { slot };
    let confirmed = tokio::time::timeout(PATIENCE, async {
        loop {
            match w
                .district
                .act(act(id, Role::Physician, "Dr. Ivanova", confirm.clone()))
                .await
            {
                Ok(_) => return,
                // The proposal has not reached the district yet.
                Err(NodeError::Workflow(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(confirmed.is_ok(), "the proposal reached the district");

    let session = SessionId(id.0);
    channel_open_at_both(
        (&mut at_district, district),
        (&mut at_federal, federal),
        session,
    )
    .await;
    // The regional node's STUN service told each site what its port maps
    // to: on one machine, the port itself (no NAT, so no extra candidate).
    for node in [&w.district, &w.federal] {
        let mapped = tokio::time::timeout(PATIENCE, async {
            loop {
                let status = node.inspect(konsilium_node::node::Inspect::Status).await;
                let status = status.unwrap();
                if status["video_mapped"].is_string() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let status = mapped.await.expect("a STUN answer");
        assert_eq!(status["video_mapped"], status["video"], "{status}");
    }
    // Statistics come once a second: the route and the round trip.
    for node in [&w.district, &w.federal] {
        let view = sessions_until(node, "statistics for the link", |v| {
            v["sessions"][0]["rtt_ms"].is_number() && v["sessions"][0]["route"].is_string()
        })
        .await;
        let link = &view["sessions"][0];
        assert_eq!(link["state"], "connected", "{view}");
        assert_eq!(link["route"], "host", "{view}");
        assert!(
            link["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{view}"
        );
        let metrics = node.metrics().await.unwrap();
        assert!(
            metrics.contains("konsilium_video_links{state=\"connected\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("konsilium_video_rtt_seconds{"),
            "{metrics}"
        );
    }
    // One side offered, the other answered; both journaled the join.
    let (at_d, at_f) = (
        video_steps(&w.district).await,
        video_steps(&w.federal).await,
    );
    let (offerer, answerer) = if district < federal {
        (&at_d, &at_f)
    } else {
        (&at_f, &at_d)
    };
    assert!(
        offerer.iter().any(|s| s.ends_with(": offered")),
        "{offerer:?}"
    );
    assert!(
        answerer.iter().any(|s| s.ends_with(": answered")),
        "{answerer:?}"
    );
    assert!(
        !offerer.iter().any(|s| s.ends_with(": answered")),
        "{offerer:?}"
    );
    for steps in [&at_d, &at_f] {
        assert!(steps.iter().any(|s| s.ends_with(": joined")), "{steps:?}");
    }

    let cancel = Action::Cancel {
        reason: "the patient was transferred".into(),
    };
    (w.district)
        .act(act(id, Role::Physician, "Dr. Ivanova", cancel))
        .await
        .unwrap();
    status_reaches(&mut at_federal, id, Status::Cancelled).await;
    for node in [&w.district, &w.federal] {
        sessions_until(node, "the session ends", |v| {
            v["sessions"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
        let steps = video_steps(node).await;
        assert!(
            (steps.iter())
                .any(|s| s.ends_with("left: session ended: the consultation is cancelled")),
            "{steps:?}"
        );
    }
}

/// str0m's issue #932 reports DTLS completing for only part of many
/// concurrent sessions on small machines: twenty on one node's socket, all
/// opened at once, must all connect and carry data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_sessions_on_one_node_all_connect() {
    const SESSIONS: usize = 20;
    let w = three_with(Some(loopback_video())).await;
    let federal = w.federal.org();
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(requested(&w.district).await);
    }
    for &id in &ids {
        let found = tokio::time::timeout(PATIENCE, async {
            while w.federal.consultation(id).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        found.await.expect("the request reached the center");
    }
    for &id in &ids {
        once_connected(|| w.district.open_video(id, None)).await;
    }
    // Every session's channel opens at both ends.
    let mut open = std::collections::HashSet::new();
    wait::event(
        &mut at_district,
        "every channel open",
        PATIENCE,
        |e| match e {
            NodeEvent::Video {
                session,
                org,
                event,
            } if *org == federal => {
                if let LinkEvent::Failed(reason) = event {
                    panic!("a link failed: {reason}");
                }
                if *event == LinkEvent::ChannelOpen {
                    open.insert(*session);
                }
                (open.len() == SESSIONS).then_some(())
            }
            _ => None,
        },
    )
    .await
    .unwrap();
    let view = sessions_until(&w.federal, "twenty links connected at the center", |v| {
        let links = v["sessions"].as_array().unwrap();
        links.len() == SESSIONS && links.iter().all(|l| l["state"] == "connected")
    })
    .await;
    assert_eq!(view["sessions"].as_array().unwrap().len(), SESSIONS);
    // And each carries a message to the center.
    for &id in &ids {
        let text = format!("hello on {id}");
        let sent = (w.district)
            .send_video(
                SessionId(id.0),
                federal,
                VideoPayload::Data(text.into_bytes()),
            )
            .await;
        assert!(sent.unwrap(), "the channel of {id} took the message");
    }
    let mut heard = std::collections::HashSet::new();
    wait::event(&mut at_federal, "every message", PATIENCE, |e| match e {
        NodeEvent::Video {
            session,
            event: LinkEvent::Data(bytes),
            ..
        } => {
            if *bytes == format!("hello on {}", ConsultationId(session.0)).into_bytes() {
                heard.insert(*session);
            }
            (heard.len() == SESSIONS).then_some(())
        }
        _ => None,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_probe_reaches_another_site_without_a_consultation_and_journals_nothing() {
    let w = three_with(Some(loopback_video())).await;
    let federal = w.federal.org();
    let report = once_connected(|| w.district.probe_video(federal, PATIENCE)).await;
    assert_eq!(report.org, federal.to_string());
    assert_eq!(report.route.as_deref(), Some("host"), "{report:?}");
    assert!(report.remote.unwrap().starts_with("127.0.0.1:"));
    assert!(report.connect_ms > 0.0);
    // The prober closed its link at once; neither journal has a video step.
    let view = (w.district.inspect(konsilium_node::node::Inspect::Sessions)).await;
    assert_eq!(view.unwrap()["sessions"], serde_json::json!([]));
    for node in [&w.district, &w.federal] {
        assert_eq!(video_steps(node).await, Vec::<String>::new());
    }
}
