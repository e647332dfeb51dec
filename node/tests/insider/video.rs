//! A certified organization's video probe that names another session's id:
//! answered as a probe, held apart from that session. The media plane
//! knows sessions by id alone, so a probe held under the id it named sat
//! in that consultation's room (roster, media, chat) and turned off its
//! journaling.

use super::*;
use konsilium_protocol::journal::Action as JournalAction;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::video::{Description, SessionId, Signal};
use konsilium_protocol::workflow::ConsultationId;
use konsilium_video::{Link, LocalAddrs, Prepared};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_naming_a_consultations_session_is_held_apart_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let video = konsilium_node::config::VideoConfig::on("127.0.0.1:0".parse().unwrap());
    let (federal, f, district, fa) =
        federal_with_video_and_turned_district(&mut fed, Some(video)).await;
    let mut insider = Insider::connect(&district, fa, f.peer_id()).await;

    // A real offer, from a link whose address is a closed loopback port.
    let now = Instant::now();
    let local = LocalAddrs {
        host: "127.0.0.1:9".parse().unwrap(),
        reflexive: None,
        relayed: None,
        relay_only: false,
    };
    let (_link, offer) = Link::offer(now, local, Prepared::new(now).unwrap()).unwrap();
    let named = SessionId([0x5a; 16]);
    let signal = Signal {
        session: named,
        from: district.org_id(),
        to: federal.org_id(),
        description: Description::Offer(offer),
        at: node::now(),
    };
    let signed = Signed::sign(&district.keys.identity(), &signal);
    let answer = match insider.ask(Request::VideoProbe(signed)).await {
        Ok(Response::VideoAnswer(answer)) => answer.decode_unverified().unwrap(),
        other => panic!("a probe from an admitted organization is answered: {other:?}"),
    };
    assert_eq!(answer.session, named, "the answer names the prober's id");

    let view = f.inspect(node::Inspect::Sessions).await.unwrap();
    let rows = view["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one link, the probe's: {view}");
    assert_eq!(rows[0]["peer"], district.org_id().to_string());
    let held = rows[0]["consultation"].as_str().unwrap();
    let named_label = ConsultationId(named.0).to_string();
    assert!(held.starts_with("probe "), "{held}");
    assert!(
        !held.contains(&named_label),
        "the probe is held apart from session {named_label}, not under it: {held}"
    );
    let (entries, _) = f.journal().await.unwrap();
    let video = (entries.iter()).filter(|e| matches!(e.action, JournalAction::Video { .. }));
    assert_eq!(video.count(), 0, "a probe journals nothing");
}
