//! A video link between the two sites of a consultation, negotiated over
//! their libp2p connection with signed offers and answers, carrying the
//! data channel and media frames both ways over UDP on 127.0.0.1.

use super::*;
use konsilium_node::node::VideoPayload;
use konsilium_protocol::video::SessionId;
use konsilium_video::LinkEvent;

/// Waits for a video event from `org` in `session` that `pick` accepts.
async fn video_event(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_sites_of_a_consultation_open_a_video_link_and_carry_media_and_chat_both_ways() {
    let w = three_with(Some("127.0.0.1:0".parse().unwrap())).await;
    let (district, federal) = (w.district.org(), w.federal.org());
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let (id, _) = w
        .district
        .request_consultation(new_consultation(Urgency::Urgent, consent()), vec![])
        .await
        .unwrap();
    status_reaches(&mut at_federal, id, Status::Requested).await;

    let session = tokio::time::timeout(PATIENCE, async {
        loop {
            match w.district.open_video(id).await {
                Ok(session) => return session,
                Err(NodeError::Video(e)) if e.contains("not connected") => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(session, SessionId(id.0));
    video_event(
        &mut at_district,
        "the channel at the district",
        session,
        federal,
        |e| *e == LinkEvent::ChannelOpen,
    )
    .await;
    video_event(
        &mut at_federal,
        "the channel at the center",
        session,
        district,
        |e| *e == LinkEvent::ChannelOpen,
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

    let say = |text: &str| VideoPayload::Data(text.as_bytes().to_vec());
    let sent = w
        .district
        .send_video(session, federal, say("ECG in the chat"));
    assert!(sent.await.unwrap());
    let sent = (w.federal).send_video(session, district, say("ST elevation, start thrombolysis"));
    assert!(sent.await.unwrap());
    video_event(
        &mut at_federal,
        "the district's message",
        session,
        district,
        |e| *e == LinkEvent::Data(b"ECG in the chat".to_vec()),
    )
    .await;
    video_event(
        &mut at_district,
        "the center's message",
        session,
        federal,
        |e| *e == LinkEvent::Data(b"ST elevation, start thrombolysis".to_vec()),
    )
    .await;

    // Synthetic frames (the node never decodes media), a few each way at
    // a camera's pace.
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
        |e| *e == LinkEvent::Media(frame(1)),
    )
    .await;
    video_event(
        &mut at_district,
        "a frame from the center",
        session,
        federal,
        |e| *e == LinkEvent::Media(frame(2)),
    )
    .await;
}
