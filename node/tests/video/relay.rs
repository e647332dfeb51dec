//! Media through a TURN relay: two sites that offer only relayed
//! addresses (`relay_only`) reach each other through a TURN server on
//! 127.0.0.1 (the `turn` crate's server, in this process) and carry media
//! both ways; with no server granting a relay, the link is refused with a
//! reason instead of leaking the site's own addresses; a link whose relay
//! is lost (its server gone) restarts ICE through a fresh one and carries
//! on over the same DTLS session.

use super::sessions::{once_connected, requested};
use super::*;
use konsilium_node::config::{TurnServer, VideoConfig};
use konsilium_node::node::VideoPayload;
use konsilium_protocol::video::SessionId;
use konsilium_video::LinkEvent;
use std::net::SocketAddr;
use std::sync::Arc;
use turn::auth::{AuthHandler, generate_auth_key};
use turn::relay::relay_static::RelayAddressGeneratorStatic;
use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

const REALM: &str = "konsilium.test";
const USER: &str = "federation";
const PASSWORD: &str = "relay-secret";

struct OneUser;

impl AuthHandler for OneUser {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        match username {
            USER => Ok(generate_auth_key(username, realm, PASSWORD)),
            _ => Err(turn::Error::ErrNoSuchUser),
        }
    }
}

/// A TURN server relaying from 127.0.0.1; returns it and its address.
async fn turn_server() -> (Server, SocketAddr) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let server = Server::new(ServerConfig {
        conn_configs: vec![ConnConfig {
            conn: Arc::new(socket),
            relay_addr_generator: Box::new(RelayAddressGeneratorStatic {
                relay_address: addr.ip(),
                address: addr.ip().to_string(),
                net: Arc::new(webrtc_util::vnet::net::Net::new(None)),
            }),
        }],
        realm: REALM.into(),
        auth_handler: Arc::new(OneUser),
        channel_bind_timeout: Duration::from_secs(0),
        alloc_close_notify: None,
    })
    .await
    .unwrap();
    (server, addr)
}

fn relay_only(server: SocketAddr, password: &str) -> VideoConfig {
    VideoConfig {
        turn: vec![TurnServer {
            server: server.to_string(),
            username: USER.into(),
            password: password.into(),
        }],
        relay_only: true,
        ..loopback_video()
    }
}

/// The relayed address a node's status shows for its media plane.
async fn relayed(node: &NodeHandle) -> String {
    let patience = tokio::time::timeout(PATIENCE, async {
        loop {
            let status = node.inspect(node::Inspect::Status).await.unwrap();
            if let Some(relay) = status["video_relay"].as_str() {
                return relay.split(" via ").next().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    patience.await.expect("the TURN server grants a relay")
}

fn frame(mark: u8) -> Vec<u8> {
    vec![mark; 1000]
}

/// Whether `frame` from `from` arrives within a camera's few frames.
async fn arrived(
    rx: &mut broadcast::Receiver<NodeEvent>,
    session: SessionId,
    from: konsilium_protocol::identity::OrgId,
    frame: Vec<u8>,
) -> bool {
    let heard = wait::event(rx, "a frame", Duration::from_millis(200), |e| match e {
        NodeEvent::Video {
            session: s,
            org,
            event: LinkEvent::Media { frame: m, .. },
        } if *s == session && *org == from && *m.data == frame[..] => Some(()),
        _ => None,
    });
    heard.await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_sites_carry_media_through_a_turn_server() {
    let (server, turn) = turn_server().await;
    let w = three_with(Some(relay_only(turn, PASSWORD))).await;
    let (district, federal) = (w.district.org(), w.federal.org());
    let federal_relay = relayed(&w.federal).await;
    assert_ne!(
        federal_relay.parse::<SocketAddr>().unwrap().port(),
        turn.port()
    );

    // The probe's link reached the federal site at its relayed address.
    let report = once_connected(|| w.district.probe_video(federal, PATIENCE)).await;
    assert_eq!(report.route.as_deref(), Some("relay"), "{report:?}");
    assert_eq!(report.remote.as_deref(), Some(federal_relay.as_str()));

    // A consultation's session carries frames both ways through the relay.
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    let id = requested(&w.district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    let session = once_connected(|| w.district.open_video(id, None)).await;
    assert_eq!(session, SessionId(id.0));
    for node in [&w.district, &w.federal] {
        node.watch_video(session).await.unwrap();
    }
    let (mut to_federal, mut to_district) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(to_federal && to_district) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "frames through the relay both ways"
        );
        for (node, to, mark) in [(&w.district, federal, 1), (&w.federal, district, 2)] {
            // Before the link is up a frame is refused: send again.
            let _ = node
                .send_video(session, to, VideoPayload::Frame(frame(mark)))
                .await;
        }
        to_federal |= arrived(&mut at_federal, session, district, frame(1)).await;
        to_district |= arrived(&mut at_district, session, federal, frame(2)).await;
    }
    // The view shows the route from the link's periodic statistics, which
    // can come a moment after the first frames.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let view = w.district.inspect(node::Inspect::Sessions).await.unwrap();
        let link = (view["sessions"].as_array().unwrap().iter())
            .find(|s| s["consultation"] == id.to_string())
            .expect("the session's link")
            .clone();
        if !link["route"].is_null() || tokio::time::Instant::now() >= deadline {
            assert_eq!(link["route"], "relay", "{view}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_site_without_a_relay_refuses_the_link_and_says_why() {
    let (_server, turn) = turn_server().await;
    // The server refuses these credentials: no relay is ever granted.
    let w = three_with(Some(relay_only(turn, "wrong password"))).await;
    let federal = w.federal.org();
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            match w.district.probe_video(federal, PATIENCE).await {
                Err(e) if e.to_string().contains("not connected") => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return e,
                Ok(report) => panic!("a link without a relay: {report:?}"),
            }
        }
    });
    let e = refused.await.expect("the probe ends");
    assert!(
        e.to_string().contains("no TURN server granted a relay"),
        "{e}"
    );
    let status = w.district.inspect(node::Inspect::Status).await.unwrap();
    assert!(status["video_relay"].is_null(), "{status}");
}

/// The session's link as `sessions` shows it, once its periodic
/// statistics name a route.
async fn link_view(node: &NodeHandle, session: SessionId) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let view = node.inspect(node::Inspect::Sessions).await.unwrap();
        let link = (view["sessions"].as_array().unwrap().iter())
            .find(|s| s["consultation"] == ConsultationId(session.0).to_string())
            .cloned()
            .unwrap_or_default();
        if !link["route"].is_null() || tokio::time::Instant::now() >= deadline {
            return link;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends frames both ways until each site has one marked `mark` from the
/// other.
async fn frames_both_ways(w: &Three, session: SessionId, mark: u8, what: &str) {
    let (district, federal) = (w.district.org(), w.federal.org());
    let mut at_federal = w.federal.subscribe();
    let mut at_district = w.district.subscribe();
    for node in [&w.district, &w.federal] {
        node.watch_video(session).await.unwrap();
    }
    let (mut to_federal, mut to_district) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !(to_federal && to_district) {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        for (node, to) in [(&w.district, federal), (&w.federal, district)] {
            let _ = node
                .send_video(session, to, VideoPayload::Frame(frame(mark)))
                .await;
        }
        to_federal |= arrived(&mut at_federal, session, district, frame(mark)).await;
        to_district |= arrived(&mut at_district, session, federal, frame(mark)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_whose_relay_is_lost_restarts_ice_through_a_fresh_one_over_the_same_dtls_session() {
    let (first, turn1) = turn_server().await;
    let (_second, turn2) = turn_server().await;
    // The district opens the session, so its site offers the link; it
    // relays through the first TURN server it is given that grants an
    // allocation. The federal site offers its own address.
    let w = three_each(|me, [district, _, _]| {
        let mut video = loopback_video();
        if me == district {
            video = relay_only(turn1, PASSWORD);
            video.turn.push(TurnServer {
                server: turn2.to_string(),
                ..video.turn[0].clone()
            });
        }
        Some(video)
    })
    .await;
    let offering = &w.district;
    let mut at_offering = offering.subscribe();
    let mut at_federal = w.federal.subscribe();
    let id = requested(&w.district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    let session = once_connected(|| w.district.open_video(id, None)).await;
    frames_both_ways(&w, session, 1, "frames through the first relay").await;
    let before = link_view(offering, session).await;
    assert_eq!(before["route"], "relay", "{before}");

    // The first server goes away with the allocation: the path is lost, and
    // the offering site restarts ICE with a relay from the second.
    first.close().await.unwrap();
    let lost = wait::event(&mut at_offering, "the lost path", PATIENCE, |e| match e {
        NodeEvent::Video {
            session: s,
            event: LinkEvent::Disconnected,
            ..
        } if *s == session => Some(()),
        _ => None,
    });
    lost.await.unwrap();
    let found = wait::event(&mut at_offering, "a path again", PATIENCE, |e| match e {
        NodeEvent::Video {
            session: s, event, ..
        } if *s == session => match event {
            LinkEvent::Reconnected => Some(Ok(())),
            LinkEvent::Connected | LinkEvent::Failed(_) => Some(Err(format!("{event:?}"))),
            _ => None,
        },
        _ => None,
    });
    found
        .await
        .unwrap()
        .expect("the same link carries on: no new handshake");
    frames_both_ways(&w, session, 2, "frames through the second relay").await;
    // The view follows the link's periodic statistics: it may show the
    // restart a moment longer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut after = link_view(offering, session).await;
    while after["state"] != "connected" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = link_view(offering, session).await;
    }
    assert_eq!(after["state"], "connected", "{after}");
    assert_eq!(after["route"], "relay", "{after}");
}
