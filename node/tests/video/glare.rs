//! Both sites open a consultation's session at the same moment (each
//! clinician pressed "join" at once): the offers cross, the one of the
//! organization with the smaller id stands, and the sites end with one
//! working link between them, whichever offer arrived when.

use super::sessions::requested;
use super::*;
use konsilium_node::node::VideoPayload;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::video::SessionId;
use konsilium_video::LinkEvent;

/// How long a crossing may take to settle: a round trip or two. (A link
/// replaced by a late offer recovers only when it fails, after
/// `RECONNECT_WAIT`, 20 s.)
const SETTLE: Duration = Duration::from_secs(10);

/// The states of the consultation's links to `other` at `node`, as
/// `konsilium sessions` shows them.
async fn link_states(node: &NodeHandle, id: ConsultationId, other: OrgId) -> Vec<String> {
    let view = node.inspect(node::Inspect::Sessions).await.unwrap();
    (view["sessions"].as_array().unwrap().iter())
        .filter(|r| r["peer"] == other.to_string() && r["consultation"] == id.to_string())
        .map(|r| r["state"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends `text` on the link from `node` to `to` once its channel is open,
/// and waits until `rx` (the other node's events) hears it, within `SETTLE`.
async fn carried(
    node: &NodeHandle,
    rx: &mut broadcast::Receiver<NodeEvent>,
    session: SessionId,
    (from, to): (OrgId, OrgId),
    text: &str,
) {
    let bytes = text.as_bytes().to_vec();
    let sent = tokio::time::timeout(SETTLE, async {
        loop {
            let payload = VideoPayload::Data(bytes.clone());
            if let Ok(true) = node.send_video(session, to, payload).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    sent.await.expect("the link's channel opens");
    let heard = wait::event(rx, text, SETTLE, |e| match e {
        NodeEvent::Video {
            session: s,
            org,
            event: LinkEvent::Data(d),
        } if *s == session && *org == from && *d == bytes => Some(()),
        _ => None,
    });
    heard.await.expect("the message crosses the link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sites_opening_at_once_end_with_one_working_link() {
    let w = three_with(Some(loopback_video())).await;
    let (district, federal) = (w.district.org(), w.federal.org());
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    for round in 0..10 {
        let id = requested(&w.district).await;
        status_reaches(&mut at_federal, id, Status::Requested).await;
        let session = SessionId(id.0);
        // Both at once, again while a site is not connected yet; one of
        // the two may find the other's offer already answered.
        let end = tokio::time::Instant::now() + PATIENCE;
        loop {
            let opened = tokio::join!(
                w.district
                    .open_video(id, Some(("Dr. Ivanova".into(), Role::Physician))),
                w.federal
                    .open_video(id, Some(("Prof. Petrov".into(), Role::Consultant)))
            );
            let unconnected = |r: &Result<SessionId, NodeError>| matches!(r, Err(NodeError::Video(e)) if e.contains("not connected"));
            if !unconnected(&opened.0) && !unconnected(&opened.1) {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "the sites connect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        carried(
            &w.district,
            &mut at_federal,
            session,
            (district, federal),
            "to the center",
        )
        .await;
        carried(
            &w.federal,
            &mut at_district,
            session,
            (federal, district),
            "to the district",
        )
        .await;
        // And it stays: no late offer replaces it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (node, other) in [(&w.district, federal), (&w.federal, district)] {
            assert_eq!(
                link_states(node, id, other).await,
                vec!["connected".to_owned()],
                "round {round}"
            );
        }
        carried(
            &w.district,
            &mut at_federal,
            session,
            (district, federal),
            "still there",
        )
        .await;
    }
}
