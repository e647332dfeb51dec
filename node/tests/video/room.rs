//! The forwarding unit with several clinicians at one site: each one who
//! publishes reaches the other site on a slot of the link of their own,
//! picture and voice, and the other site's browsers are told whose tile
//! is whose; a slot freed by someone leaving goes to the next to publish.
//! The browsers here are bare str0m connections, joined as WHIP/WHEP
//! clients join.

use super::sessions::{once_connected, requested, video_event};
use super::*;
use konsilium_node::media::SeatId;
use konsilium_video::{LinkEvent, PER_SITE};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use str0m::Event;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};

#[path = "../../benches/common/peer.rs"]
mod peer;
use peer::Peer;

/// An offer as a browser makes it: `pairs` audio and video lines in
/// `direction`, and the room's data channel when `chat`.
fn offer(
    peer: &mut Peer,
    direction: Direction,
    pairs: usize,
    chat: bool,
) -> (SdpPendingOffer, String, Vec<Mid>) {
    let mut change = peer.rtc.sdp_api();
    let mut mids = Vec::new();
    for _ in 0..pairs {
        mids.push(change.add_media(MediaKind::Audio, direction, None, None, None));
        mids.push(change.add_media(MediaKind::Video, direction, None, None, None));
    }
    if chat {
        change.add_channel("consilium".into());
    }
    let (offer, pending) = change.apply().expect("an offer");
    (pending, offer.to_sdp_string(), mids)
}

/// A browser joined at `node` as `person`, its answer taken.
async fn joined(
    node: &NodeHandle,
    id: ConsultationId,
    person: &str,
    role: Role,
    direction: Direction,
    pairs: usize,
) -> (Peer, SeatId, Vec<Mid>) {
    let mut peer = Peer::new().await;
    let (pending, sdp, mids) = offer(
        &mut peer,
        direction,
        pairs,
        direction == Direction::RecvOnly,
    );
    let (seat, answer) =
        (node.join_video(id, (person.to_owned(), role), sdp).await).expect("the browser joins");
    let answer = SdpAnswer::from_sdp_string(&answer).expect("an SDP answer");
    (peer.rtc.sdp_api())
        .accept_answer(pending, answer)
        .expect("the answer is taken");
    peer.drain().await;
    (peer, seat, mids)
}

/// What `person` sends: every video frame a keyframe (a VP8 payload whose
/// first byte is even), so any frame can start a picture.
fn picture_of(person: &str) -> Vec<u8> {
    [&[0u8][..], person.as_bytes()].concat()
}

fn voice_of(person: &str) -> Vec<u8> {
    format!("voice of {person}").into_bytes()
}

/// Publishes `person`'s camera and microphone at 30 frames a second until
/// `stop`.
fn publish(mut peer: Peer, mids: Vec<Mid>, person: &'static str, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let period = Duration::from_millis(33);
        let mut next = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            peer.step(Some(next)).await;
            if Instant::now() < next || !peer.rtc.is_connected() {
                continue;
            }
            next += period;
            n += 1;
            for (mid, codec, time, data) in [
                (
                    mids[0],
                    Codec::Opus,
                    MediaTime::new(n * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ),
                    voice_of(person),
                ),
                (
                    mids[1],
                    Codec::Vp8,
                    MediaTime::from_90khz(n * 3000),
                    picture_of(person),
                ),
            ] {
                let Some(writer) = peer.rtc.writer(mid) else {
                    continue;
                };
                let Some(pt) = (writer.payload_params())
                    .find(|p| p.spec().codec == codec)
                    .map(|p| p.pt())
                else {
                    continue;
                };
                let _ = writer.write(pt, Instant::now(), time, data);
            }
            peer.drain().await;
        }
    });
}

/// What the viewer saw: on which media lines each payload arrived, and the
/// labels of its tiles as the node last told them.
#[derive(Default)]
struct Seen {
    lines: BTreeMap<Vec<u8>, BTreeSet<Mid>>,
    tiles: Vec<String>,
}

impl Seen {
    fn take(&mut self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::MediaData(m) => {
                    self.lines.entry(m.data.to_vec()).or_default().insert(m.mid);
                }
                Event::ChannelData(d) => {
                    let Ok(message) = serde_json::from_slice::<serde_json::Value>(&d.data) else {
                        continue;
                    };
                    if message["kind"] == "tiles" {
                        self.tiles =
                            serde_json::from_value(message["tiles"].clone()).unwrap_or_default();
                    }
                }
                _ => {}
            }
        }
    }

    /// The one media line `payload` arrived on, if it arrived on one only.
    fn line(&self, payload: &[u8]) -> Option<Mid> {
        let lines = self.lines.get(payload)?;
        (lines.len() == 1).then(|| *lines.iter().next().unwrap())
    }

    /// Whether `person` (a physician of the district) was seen and heard.
    fn sees_and_hears(&self, person: &str) -> bool {
        self.sees_and_hears_at(person, "physician", "District hospital")
    }

    /// Whether `person`'s picture and voice both arrived, each on a line
    /// of its own, and a tile is labelled with them.
    fn sees_and_hears_at(&self, person: &str, role: &str, site: &str) -> bool {
        let label = format!("{person} ({role}), {site}");
        self.line(&picture_of(person)).is_some()
            && self.line(&voice_of(person)).is_some()
            && self.tiles.contains(&label)
    }
}

/// Steps the viewer until `done` holds of what it saw; on running out of
/// patience, fails naming what it saw and what both nodes say.
async fn watch(
    viewer: &mut Peer,
    seen: &mut Seen,
    nodes: [&NodeHandle; 2],
    what: &str,
    done: impl Fn(&Seen) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done(seen) {
        if Instant::now() >= end {
            let mut views = Vec::new();
            for node in nodes {
                views.push(node.inspect(node::Inspect::Sessions).await.unwrap());
            }
            let payloads: Vec<String> = (seen.lines.keys())
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            panic!(
                "{what}: payloads {payloads:?}, tiles {:?}, sessions {views:?}",
                seen.tiles
            );
        }
        viewer
            .step(Some(Instant::now() + Duration::from_millis(20)))
            .await;
        seen.take(std::mem::take(&mut viewer.events));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_clinician_publishing_at_a_site_is_seen_and_heard_at_the_other_by_name() {
    let Three {
        _tmp,
        fed: _fed,
        district,
        regional: _regional,
        federal,
        ..
    } = three_with(Some(loopback_video())).await;
    let mut at_federal = federal.subscribe();
    let id = requested(&district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    let by = || Some(("Dr. Ivanova".to_owned(), Role::Physician));
    once_connected(|| district.open_video(id, by())).await;

    let (mut viewer, _, _) = joined(
        &federal,
        id,
        "Prof. Petrov",
        Role::Consultant,
        Direction::RecvOnly,
        PER_SITE,
    )
    .await;
    let stops: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut seats = Vec::new();
    for (person, stop) in ["Dr. Ivanova", "Dr. Sidorov"].into_iter().zip(&stops) {
        let (peer, seat, mids) = joined(
            &district,
            id,
            person,
            Role::Physician,
            Direction::SendOnly,
            1,
        )
        .await;
        publish(peer, mids, person, stop.clone());
        seats.push(seat);
    }

    let mut seen = Seen::default();
    watch(
        &mut viewer,
        &mut seen,
        [&district, &federal],
        "both district clinicians reach the center",
        |s| s.sees_and_hears("Dr. Ivanova") && s.sees_and_hears("Dr. Sidorov"),
    )
    .await;
    let lines: BTreeSet<Mid> = ["Dr. Ivanova", "Dr. Sidorov"]
        .into_iter()
        .flat_map(|p| [seen.line(&picture_of(p)), seen.line(&voice_of(p))])
        .map(|m| m.expect("one line each"))
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "two pictures and two voices, each on its own line"
    );

    // Only Dr. Ivanova can take her seat out of the room.
    let by = |person: &str| (person.to_owned(), Role::Physician);
    let other = district.leave_video(id, seats[0], by("Dr. Sidorov")).await;
    assert!(
        matches!(&other, Err(e) if e.to_string().contains("no participant")),
        "{other:?}"
    );
    // Dr. Ivanova leaves; Dr. Kozlova, joining after, takes her slot.
    stops[0].store(true, Ordering::Relaxed);
    district
        .leave_video(id, seats[0], by("Dr. Ivanova"))
        .await
        .expect("she leaves");
    let (peer, _, mids) = joined(
        &district,
        id,
        "Dr. Kozlova",
        Role::Physician,
        Direction::SendOnly,
        1,
    )
    .await;
    publish(peer, mids, "Dr. Kozlova", stops[2].clone());
    let mut after = Seen::default();
    watch(
        &mut viewer,
        &mut after,
        [&district, &federal],
        "the newcomer reaches the center on the freed slot",
        |s| s.sees_and_hears("Dr. Kozlova") && s.line(&picture_of("Dr. Sidorov")).is_some(),
    )
    .await;
    assert_eq!(
        after.line(&picture_of("Dr. Kozlova")),
        seen.line(&picture_of("Dr. Ivanova")),
        "the freed slot's tile shows the newcomer"
    );
    assert!(
        !after.tiles.iter().any(|t| t.starts_with("Dr. Ivanova")),
        "{:?}",
        after.tiles
    );
    for stop in &stops {
        stop.store(true, Ordering::Relaxed);
    }
}

/// A link starts with one slot and the site that offered it grows it, on
/// its own publishers' count and on what the other site told of its own.
/// The district offers the link and it is up before anyone joins, and
/// both viewers' channels are open (each site has told the other who it
/// carries) before anyone goes on camera: then two clinicians at the
/// district are seen at the center only if the district grows the link
/// for its own, and three at the center are seen at the district only if
/// the district grows it for what the center told. A third organization
/// invited after that sees all five: links set up late grow too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_grows_a_slot_for_each_clinician_on_camera_at_either_site() {
    let Three {
        _tmp,
        fed: _fed,
        district,
        regional,
        federal,
        ..
    } = three_with(Some(loopback_video())).await;
    let mut at_federal = federal.subscribe();
    let mut at_district = district.subscribe();
    let id = requested(&district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    let by = || Some(("Dr. Ivanova".to_owned(), Role::Physician));
    let session = once_connected(|| district.open_video(id, by())).await;
    // Up before any browser joins, so no join opens the session at the
    // center too and the district's offer is the link's.
    let open = |e: &LinkEvent| *e == LinkEvent::ChannelOpen;
    video_event(&mut at_district, "the link", session, federal.org(), open).await;

    let viewer = |node| {
        joined(
            node,
            id,
            "Viewer",
            Role::Physician,
            Direction::RecvOnly,
            2 * PER_SITE,
        )
    };
    let mut viewers = [viewer(&federal).await.0, viewer(&district).await.0];
    for viewer in &mut viewers {
        let end = Instant::now() + Duration::from_secs(30);
        while !viewer.open {
            assert!(Instant::now() < end, "a viewer's channel opens");
            viewer
                .step(Some(Instant::now() + Duration::from_millis(20)))
                .await;
        }
    }
    // What each site then told the other about its slots has arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Where, as whom (and as tiles name the role), who.
    let on_camera: [(&NodeHandle, Role, &str, &str, &[&'static str]); 2] = [
        (
            &district,
            Role::Physician,
            "physician",
            "District hospital",
            &["Dr. Sidorov", "Dr. Kozlova"],
        ),
        (
            &federal,
            Role::Consultant,
            "consultant",
            "Federal cardiology center",
            &["Prof. Smirnova", "Prof. Orlov", "Prof. Volkov"],
        ),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    for ((node, role, named, site, people), viewer) in on_camera.into_iter().zip(&mut viewers) {
        for &person in people {
            let (peer, _, mids) = joined(node, id, person, role, Direction::SendOnly, 1).await;
            publish(peer, mids, person, stop.clone());
        }
        let mut seen = Seen::default();
        watch(
            viewer,
            &mut seen,
            [&district, &federal],
            &format!("{people:?} reach the other site"),
            |s| people.iter().all(|p| s.sees_and_hears_at(p, named, site)),
        )
        .await;
        let pictures: BTreeSet<Mid> = (people.iter())
            .map(|p| seen.line(&picture_of(p)).expect("one line each"))
            .collect();
        assert_eq!(
            pictures.len(),
            people.len(),
            "each picture on a line of its own"
        );
    }

    // A third organization invited now: its links begin with one slot
    // and grow to everyone already on camera.
    let mut at_regional = regional.subscribe();
    let invite = Action::Invite {
        org: regional.org(),
    };
    for (role, user, action) in [
        (Role::Coordinator, "coordinator", Action::Accept),
        (Role::Consultant, "Prof. Smirnova", invite),
    ] {
        federal.act(act(id, role, user, action)).await.unwrap();
    }
    status_reaches(&mut at_regional, id, Status::Accepted).await;
    let mut guest = viewer(&regional).await.0;
    let everyone: Vec<(&str, &str, &str)> = (on_camera.iter())
        .flat_map(|(_, _, named, site, people)| people.iter().map(move |p| (*p, *named, *site)))
        .collect();
    let mut seen = Seen::default();
    watch(
        &mut guest,
        &mut seen,
        [&district, &federal],
        "everyone on camera reaches the invited site",
        |s| (everyone.iter()).all(|(p, role, site)| s.sees_and_hears_at(p, role, site)),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
}
