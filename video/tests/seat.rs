//! A clinician's browser joins through its own offer: what it publishes
//! reaches the node as frames, what the node shows in a slot reaches the
//! browser on that slot's media line, and its data channel carries chat.
//! The browser here is a bare str0m `Rtc` making the offer a browser
//! makes (many codecs, send-only camera and microphone, receive-only
//! slots); datagrams move in memory under simulated time.

use konsilium_video::{
    AUDIO_ONLY_BELOW, CONNECT_WAIT, Datagram, Forwarded, Incoming, Layer, LinkError, LocalAddrs,
    Prepared, Quality, REDUCED_BELOW, Seat, SeatEvent, Slot, Track, VIDEO_RESUMES_AT,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const BROWSER: &str = "10.0.0.9:50000";

struct Browser {
    rtc: Rtc,
    camera: Mid,
    /// Its receive-only video lines, in order.
    slots: Vec<Mid>,
    events: Vec<Event>,
    out: Vec<Datagram>,
    timeout: Instant,
}

impl Browser {
    /// A browser's offer: camera and microphone send-only, `slots` pairs
    /// of receive-only lines, a data channel.
    fn offer(now: Instant, slots: usize) -> (Self, SdpPendingOffer, String) {
        Self::offer_encodings(now, slots, &[])
    }

    /// The same, its camera sent as one encoding per rid (simulcast) when
    /// `rids` names any.
    fn offer_encodings(
        now: Instant,
        slots: usize,
        rids: &[&str],
    ) -> (Self, SdpPendingOffer, String) {
        let simulcast = (!rids.is_empty()).then(|| {
            let mut s = Simulcast::new();
            for rid in rids {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        rtc.add_local_candidate(Candidate::host(BROWSER.parse().unwrap(), "udp").unwrap());
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let camera = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let mut lines = Vec::new();
        for _ in 0..slots {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            lines.push(change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
        }
        change.add_channel("consilium".into());
        let (offer, pending) = change.apply().unwrap();
        let browser = Browser {
            rtc,
            camera,
            slots: lines,
            events: Vec::new(),
            out: Vec::new(),
            timeout: now,
        };
        (browser, pending, offer.to_sdp_string())
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(at) => return self.timeout = at,
                Output::Transmit(t) => self.out.push(Datagram {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &Datagram) {
        let r = Receive::new(Protocol::Udp, d.source, d.destination, &d.contents).unwrap();
        self.rtc.handle_input(Input::Receive(now, r)).unwrap();
        self.drain();
    }
}

fn local() -> LocalAddrs {
    LocalAddrs {
        host: "10.0.0.1:40000".parse().unwrap(),
        reflexive: None,
        relayed: None,
        relay_only: false,
    }
}

/// Moves datagrams and time until `done` or ten simulated seconds pass.
fn run(
    b: &mut Browser,
    seat: &mut Seat,
    seen: &mut Vec<SeatEvent>,
    now: &mut Instant,
    done: impl FnMut(&Browser, &[SeatEvent]) -> bool,
) {
    let end = *now + Duration::from_secs(10);
    run_until(b, seat, seen, now, end, done)
}

fn run_until(
    b: &mut Browser,
    seat: &mut Seat,
    seen: &mut Vec<SeatEvent>,
    now: &mut Instant,
    end: Instant,
    mut done: impl FnMut(&Browser, &[SeatEvent]) -> bool,
) {
    while *now < end && !done(b, seen) {
        let mut moved = false;
        for d in std::mem::take(&mut b.out) {
            if let Some(incoming) = Incoming::read(*now, &d) {
                seat.handle_datagram(incoming);
            }
            moved = true;
        }
        while let Some(d) = seat.poll_transmit() {
            b.receive(*now, &d);
            moved = true;
        }
        seen.extend(std::iter::from_fn(|| seat.poll_event()));
        if !moved {
            let next = seat.poll_timeout().map_or(b.timeout, |t| t.min(b.timeout));
            *now = next.max(*now + Duration::from_millis(1));
            seat.handle_timeout(*now);
            b.rtc.handle_input(Input::Timeout(*now)).unwrap();
            b.drain();
        }
    }
}

fn joined(slots: usize) -> (Browser, Seat, Vec<SeatEvent>, Instant) {
    joined_with(slots, &[])
}

fn joined_with(slots: usize, rids: &[&str]) -> (Browser, Seat, Vec<SeatEvent>, Instant) {
    let mut now = Instant::now();
    let (mut b, pending, offer) = Browser::offer_encodings(now, slots, rids);
    let cert = Prepared::new(now).unwrap();
    let (mut seat, answer) = Seat::answer(now, local(), cert, &offer).unwrap();
    let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
    b.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    b.drain();
    let mut seen = Vec::new();
    run(&mut b, &mut seat, &mut seen, &mut now, |_, seen| {
        seen.contains(&SeatEvent::ChannelOpen)
    });
    assert!(seen.contains(&SeatEvent::Connected), "{seen:?}");
    assert!(seen.contains(&SeatEvent::ChannelOpen), "{seen:?}");
    (b, seat, seen, now)
}

#[test]
fn a_browser_publishes_sees_a_slot_and_chats_through_its_seat() {
    let (mut b, mut seat, mut seen, mut now) = joined(2);
    assert_eq!((seat.slots(Track::Video), seat.slots(Track::Audio)), (2, 2));
    assert!(seat.publishes());

    // The camera's frames arrive at the node as VP8 frames, bytes intact.
    let camera = b"a VP8 frame from the camera".to_vec();
    let writer = b.rtc.writer(b.camera).unwrap();
    let vp8 = (writer.payload_params())
        .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
        .map(|p| p.pt())
        .expect("the browser offered VP8");
    let at = MediaTime::from_90khz(3000);
    writer.write(vp8, now, at, camera.clone()).unwrap();
    b.drain();
    run(&mut b, &mut seat, &mut seen, &mut now, |_, seen| {
        seen.iter().any(|e| matches!(e, SeatEvent::Media(_)))
    });
    let frame = (seen.iter())
        .find_map(|e| match e {
            SeatEvent::Media(f) => Some(f.clone()),
            _ => None,
        })
        .expect("the camera's frame reached the node");
    assert_eq!((frame.track, &*frame.data), (Track::Video, &camera[..]));

    // What the node shows in the second slot arrives on that slot's line.
    let slot = Slot {
        track: Track::Video,
        index: 1,
    };
    seat.show(slot, &frame).unwrap();
    let second = b.slots[1];
    let on = |b: &Browser, mid: Mid| {
        (b.events.iter())
            .any(|e| matches!(e, Event::MediaData(m) if m.mid == mid && *m.data == camera[..]))
    };
    run(&mut b, &mut seat, &mut seen, &mut now, |b, _| on(b, second));
    assert!(on(&b, second), "the frame arrived in the second slot");
    assert!(!on(&b, b.slots[0]), "and not in the first");
    // A slot the browser does not have is refused, not a panic.
    let missing = Slot {
        track: Track::Video,
        index: 2,
    };
    assert!(seat.show(missing, &frame).is_err());

    // Chat from the browser reaches the node.
    let id = (b.events.iter())
        .find_map(|e| match e {
            Event::ChannelOpen(id, _) => Some(*id),
            _ => None,
        })
        .unwrap();
    let chat = br#"{"kind":"chat","text":"ST elevation in V2"}"#;
    b.rtc.channel(id).unwrap().write(false, chat).unwrap();
    b.drain();
    run(&mut b, &mut seat, &mut seen, &mut now, |_, seen| {
        seen.contains(&SeatEvent::Data(chat.to_vec()))
    });
    assert!(seen.contains(&SeatEvent::Data(chat.to_vec())));
}

#[test]
fn a_browser_on_a_thin_path_is_shown_voices_only_until_it_widens() {
    let (mut b, mut seat, mut seen, mut now) = joined(1);
    let camera = b"a VP8 frame from the camera".to_vec();
    let writer = b.rtc.writer(b.camera).unwrap();
    let vp8 = (writer.payload_params())
        .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
        .map(|p| p.pt())
        .unwrap();
    writer
        .write(vp8, now, MediaTime::from_90khz(3000), camera.clone())
        .unwrap();
    b.drain();
    run(&mut b, &mut seat, &mut seen, &mut now, |_, seen| {
        seen.iter().any(|e| matches!(e, SeatEvent::Media(_)))
    });
    let frame = (seen.iter())
        .find_map(|e| match e {
            SeatEvent::Media(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    let slot = Slot {
        track: Track::Video,
        index: 0,
    };
    let tile = b.slots[0];
    let shown =
        |b: &Browser| (b.events.iter()).any(|e| matches!(e, Event::MediaData(m) if m.mid == tile));

    seat.handle_estimate(AUDIO_ONLY_BELOW - 1);
    assert_eq!(seat.stats().quality, Quality::AudioOnly);
    seat.show(slot, &frame).unwrap();
    run(&mut b, &mut seat, &mut seen, &mut now, |b, _| shown(b));
    assert!(!shown(&b), "no video on a thin path");

    // str0m's own estimates of this loopback path arrived meanwhile: the
    // thin path is set again before it widens.
    seat.handle_estimate(AUDIO_ONLY_BELOW - 1);
    std::iter::from_fn(|| seat.poll_event()).for_each(drop);
    seat.handle_estimate(VIDEO_RESUMES_AT);
    assert_eq!(seat.stats().quality, Quality::Reduced);
    let asked: Vec<_> = std::iter::from_fn(|| seat.poll_event()).collect();
    assert!(
        asked.contains(&SeatEvent::KeyframeWanted { slot }),
        "{asked:?}"
    );
    seat.show(slot, &frame).unwrap();
    run(&mut b, &mut seat, &mut seen, &mut now, |b, _| shown(b));
    assert!(shown(&b), "video again");
}

#[test]
fn a_browser_that_never_connects_is_given_up() {
    let now = Instant::now();
    let (_, _, offer) = Browser::offer(now, 1);
    // A browser whose candidates never come (a trickling client that went
    // away): the node has no address to check, so only its wait ends it.
    let offer: String = (offer.split_inclusive("\r\n"))
        .filter(|line| !line.starts_with("a=candidate"))
        .collect();
    let cert = Prepared::new(now).unwrap();
    let (mut seat, _) = Seat::answer(now, local(), cert, &offer).unwrap();
    let mut at = now;
    while let Some(next) = seat.poll_timeout() {
        assert!(
            next <= now + CONNECT_WAIT,
            "the seat waits no longer than it may"
        );
        at = next.max(at + Duration::from_millis(1));
        seat.handle_timeout(at);
        while seat.poll_transmit().is_some() {}
        while let Some(event) = seat.poll_event() {
            if let SeatEvent::Failed(reason) = event {
                assert!(reason.contains("did not connect"), "{reason}");
                assert!(seat.poll_timeout().is_none());
                return;
            }
        }
    }
    panic!("the seat was never given up");
}

#[test]
fn an_offer_that_is_not_one_is_refused() {
    let now = Instant::now();
    let cert = || Prepared::new(now).unwrap();
    let garbage = Seat::answer(now, local(), cert(), "v=0\r\nnot an offer");
    assert!(matches!(garbage, Err(LinkError::Description(_))));
    let empty = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    assert!(Seat::answer(now, local(), cert(), empty).is_err());
}

/// A browser publishing its camera as two encodings (named as no rule
/// says: the node ranks them by bitrate) is shown to a viewer on a thin
/// path in the small one, switched to at its keyframe, asked for by rid.
#[test]
fn a_viewer_on_a_thin_path_gets_the_small_encoding_from_its_own_keyframe() {
    let (mut b, mut seat, mut seen, mut now) = joined_with(1, &["f", "q"]);
    // A VP8 frame's first bit clear marks a keyframe.
    let frame = |key: bool, size: usize, tag: u8| {
        let mut data = vec![tag; size];
        data[0] = if key { 0x10 } else { 0x11 };
        data
    };
    let (full, small): (Rid, Rid) = ("f".into(), "q".into());
    for i in 0..20u32 {
        let writer = b.rtc.writer(b.camera).unwrap();
        let vp8 = (writer.payload_params())
            .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
            .map(|p| p.pt())
            .unwrap();
        let at = MediaTime::from_90khz(3000 * u64::from(i + 1));
        (writer.rid(full))
            .write(vp8, now, at, frame(i == 0, 6000, 0xf0))
            .unwrap();
        let writer = b.rtc.writer(b.camera).unwrap();
        (writer.rid(small))
            .write(vp8, now, at, frame(i == 0, 600, 0x0f))
            .unwrap();
        b.drain();
        let end = now + Duration::from_millis(33);
        run_until(&mut b, &mut seat, &mut seen, &mut now, end, |_, _| false);
    }
    let frames: Vec<_> = (seen.iter())
        .filter_map(|e| match e {
            SeatEvent::Media(f) if f.track == Track::Video => Some(f.clone()),
            _ => None,
        })
        .collect();
    let last = |tag: u8| frames.iter().rfind(|f| f.data[1] == tag).cloned();
    let (high, low) = (
        last(0xf0).expect("the full encoding"),
        last(0x0f).expect("the small one"),
    );
    assert_eq!((high.layer, low.layer), (Layer::High, Layer::Low));

    let slot = Slot {
        track: Track::Video,
        index: 0,
    };
    assert_eq!(seat.show(slot, &high).unwrap(), Forwarded::Sent);
    assert_eq!(seat.show(slot, &low).unwrap(), Forwarded::Skipped);
    // The path thins: the full picture goes on until the small one's keyframe.
    seat.handle_estimate(REDUCED_BELOW - 1);
    assert_eq!(seat.stats().quality, Quality::Reduced);
    assert_eq!(
        seat.show(slot, &low).unwrap(),
        Forwarded::NeedsKeyframe(Layer::Low)
    );
    assert_eq!(seat.show(slot, &high).unwrap(), Forwarded::Sent);
    b.events.clear();
    seat.request_keyframe(Some(Layer::Low));
    run(&mut b, &mut seat, &mut seen, &mut now, |b, _| {
        b.events
            .iter()
            .any(|e| matches!(e, Event::KeyframeRequest(_)))
    });
    let asked: Vec<Option<Rid>> = (b.events.iter())
        .filter_map(|e| match e {
            Event::KeyframeRequest(r) => Some(r.rid),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked,
        vec![Some(small)],
        "asked for the small one's keyframe"
    );
    let keyframe = konsilium_video::Frame {
        data: frame(true, 600, 0x0f).into(),
        keyframe: true,
        at: now,
        ..low.clone()
    };
    assert_eq!(seat.show(slot, &keyframe).unwrap(), Forwarded::Sent);
    assert_eq!(seat.show(slot, &high).unwrap(), Forwarded::Skipped);
    let tile = b.slots[0];
    run(&mut b, &mut seat, &mut seen, &mut now, |b, _| {
        (b.events.iter()).any(
            |e| matches!(e, Event::MediaData(m) if m.mid == tile && m.data.get(1) == Some(&0x0f)),
        )
    });
    let shown: Vec<u8> = (b.events.iter())
        .filter_map(|e| match e {
            Event::MediaData(m) if m.mid == tile => m.data.get(1).copied(),
            _ => None,
        })
        .collect();
    assert!(
        shown.contains(&0x0f),
        "the small encoding reached the viewer: {shown:x?}"
    );
}
