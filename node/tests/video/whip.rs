//! The WHIP/WHEP endpoints as RFC 9725 has them, at the HTTP level: an
//! SDP offer POSTed with a bearer token gets 201, an SDP answer and a
//! `Location` to DELETE; what is not an SDP offer, or not from a user, is
//! refused with a problem naming what is wrong.

use super::sessions::requested;
use super::*;
use konsilium_node::http::User;
use std::sync::Arc;
use str0m::media::{Direction, MediaKind};

/// An offer as a WHIP client makes it: camera and microphone, send-only.
fn whip_offer() -> String {
    let mut rtc = str0m::Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(std::time::Instant::now());
    let host = str0m::Candidate::host("127.0.0.1:45000".parse().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(host);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    change.apply().unwrap().0.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_joins_with_an_offer_leaves_with_delete_and_refuses_what_is_not_an_offer() {
    let w = three_with(Some(loopback_video())).await;
    let id = requested(&w.district).await;
    let physician = User::with_token("Dr. Ivanova", Role::Physician, "phys-d");
    let colleague = User::with_token("Dr. Sidorov", Role::Physician, "phys-d2");
    let users = vec![physician, colleague];
    let app = konsilium_node::http::router(Arc::new(w.district), users, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let whip = format!("{base}/consultations/{id}/whip");
    let post = |body: String, content_type: &str, token: Option<&str>| {
        let mut request = (http.post(&whip))
            .header("Content-Type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    let r = post(whip_offer(), "application/sdp", None).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = (post(whip_offer(), "text/plain", Some("phys-d")).await).unwrap();
    assert_eq!(r.status(), 415);
    let r = (post("v=0\r\nnot sdp".into(), "application/sdp", Some("phys-d")).await).unwrap();
    assert_eq!(r.status(), 400);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["field"], "offer", "{problem}");

    let r = (post(whip_offer(), "application/sdp", Some("phys-d")).await).unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/sdp");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/consultations/{id}/whip/")),
        "{location}"
    );
    let answer = r.text().await.unwrap();
    str0m::change::SdpAnswer::from_sdp_string(&answer).expect("the body is an SDP answer");
    assert!(
        answer.contains("a=recvonly"),
        "the node receives what the client sends"
    );

    let leave = |token: &'static str| {
        http.delete(format!("{base}{location}"))
            .bearer_auth(token)
            .send()
    };
    let r = leave("phys-d2").await.unwrap();
    assert_eq!(r.status(), 404, "another user cannot take her seat out");
    // Twice at once: the node handles both before its media task drops
    // the seat, and only the first finds it.
    let (first, second) = tokio::join!(leave("phys-d"), leave("phys-d"));
    let mut statuses = [first.unwrap().status(), second.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [200, 404], "left once, then left already");
    assert_eq!(leave("phys-d").await.unwrap().status(), 404, "left already");
    // One user may sit in sessions here from four browsers, not more.
    let mut last = String::new();
    for n in 0..4 {
        let r = (post(whip_offer(), "application/sdp", Some("phys-d2")).await).unwrap();
        assert_eq!(r.status(), 201, "browser {n}");
        last = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let r = (post(whip_offer(), "application/sdp", Some("phys-d2")).await).unwrap();
    assert_eq!(r.status(), 429);
    // One of them leaving makes room at once.
    let r = http.delete(format!("{base}{last}")).bearer_auth("phys-d2");
    assert_eq!(r.send().await.unwrap().status(), 200);
    let r = (post(whip_offer(), "application/sdp", Some("phys-d2")).await).unwrap();
    assert_eq!(r.status(), 201, "a browser that left is not counted");
    let r = (post(whip_offer(), "application/sdp", Some("phys-d")).await).unwrap();
    assert_eq!(r.status(), 201, "another user still joins");
    let unknown = format!("{base}/consultations/{id}/whip/not-a-seat");
    let r = http
        .delete(unknown)
        .bearer_auth("phys-d")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let room = http
        .get(format!("{base}/consultations/{id}/room"))
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 200);
    assert!(room.text().await.unwrap().contains("/whip"));
}
