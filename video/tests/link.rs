//! Two sites set up a video link from signed signals and carry media and
//! data both ways; a signal from a non-participant, a forged one, and a
//! description whose DTLS fingerprint does not match the handshake are
//! refused, and no media flows on a refused link. Datagrams travel between
//! the two `Link`s in memory, under simulated time.

use konsilium_protocol::identity::{IdentityKey, OrgId};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;
use konsilium_video::{Description, Link, LinkEvent, SessionId, Signal, SignalError, accept};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SESSION: SessionId = SessionId([7; 16]);
const AT: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);

struct Site {
    key: IdentityKey,
    addr: SocketAddr,
}

impl Site {
    fn new(seed: u8, port: u16) -> Self {
        Site {
            key: IdentityKey::from_seed([seed; 32]),
            addr: format!("10.0.0.{seed}:{port}").parse().unwrap(),
        }
    }

    fn org(&self) -> OrgId {
        self.key.org_id()
    }

    fn sign(&self, to: &Site, description: Description) -> Signed<Signal> {
        Signed::sign(
            &self.key,
            &Signal {
                session: SESSION,
                from: self.org(),
                to: to.org(),
                description,
                at: AT,
            },
        )
    }
}

/// Moves datagrams both ways and advances time to the next timeout, until
/// `done` or ten simulated seconds pass. Returns the events of each side.
fn run(
    a: &mut Link,
    b: &mut Link,
    now: &mut Instant,
    mut done: impl FnMut(&[LinkEvent], &[LinkEvent]) -> bool,
) -> (Vec<LinkEvent>, Vec<LinkEvent>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    let end = *now + Duration::from_secs(10);
    while *now < end {
        let mut moved = false;
        while let Some(d) = a.poll_transmit() {
            b.handle_datagram(*now, &d);
            moved = true;
        }
        while let Some(d) = b.poll_transmit() {
            a.handle_datagram(*now, &d);
            moved = true;
        }
        ea.extend(std::iter::from_fn(|| a.poll_event()));
        eb.extend(std::iter::from_fn(|| b.poll_event()));
        if done(&ea, &eb) {
            break;
        }
        if !moved {
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            *now = next.max(*now + Duration::from_millis(1));
            a.handle_timeout(*now);
            b.handle_timeout(*now);
        }
    }
    (ea, eb)
}

fn has(events: &[LinkEvent], e: &LinkEvent) -> bool {
    events.contains(e)
}

#[test]
fn two_sites_link_up_from_signed_signals_and_carry_media_and_data_both_ways() {
    let (regional, federal) = (Site::new(1, 40001), Site::new(2, 40002));
    let participants = [regional.org(), federal.org()];
    let mut now = Instant::now();

    let (mut a, offer) = Link::offer(now, regional.addr).unwrap();
    let signal = regional.sign(&federal, Description::Offer(offer));
    let Description::Offer(offer) = accept(&signal, federal.org(), SESSION, &participants)
        .unwrap()
        .description
    else {
        panic!("an offer");
    };
    let (mut b, answer) = Link::answer(now, federal.addr, &offer).unwrap();
    let signal = federal.sign(&regional, Description::Answer(answer));
    let Description::Answer(answer) = accept(&signal, regional.org(), SESSION, &participants)
        .unwrap()
        .description
    else {
        panic!("an answer");
    };
    a.handle_answer(&answer).unwrap();

    let (ea, eb) = run(&mut a, &mut b, &mut now, |ea, eb| {
        has(ea, &LinkEvent::ChannelOpen) && has(eb, &LinkEvent::ChannelOpen)
    });
    assert!(has(&ea, &LinkEvent::Connected) && has(&eb, &LinkEvent::Connected));

    assert!(a.send_data(b"ECG attached, see lead V2").unwrap());
    assert!(b.send_data(b"seen: ST elevation").unwrap());
    let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1200]).collect();
    for f in &frames {
        a.send_media(now, f).unwrap();
        b.send_media(now, &[f.as_slice(), b"-back"].concat())
            .unwrap();
        now += Duration::from_millis(33);
    }
    let (ea, eb) = run(&mut a, &mut b, &mut now, |ea, eb| {
        let media = |e: &[LinkEvent]| {
            e.iter()
                .filter(|e| matches!(e, LinkEvent::Media(_)))
                .count()
        };
        media(ea) >= frames.len() && media(eb) >= frames.len()
    });
    assert!(has(
        &eb,
        &LinkEvent::Data(b"ECG attached, see lead V2".to_vec())
    ));
    assert!(has(&ea, &LinkEvent::Data(b"seen: ST elevation".to_vec())));
    for f in &frames {
        assert!(
            has(&eb, &LinkEvent::Media(f.clone())),
            "frame {} at the federal site",
            f[0]
        );
        let back = [f.as_slice(), b"-back"].concat();
        assert!(has(&ea, &LinkEvent::Media(back)), "frame {} back", f[0]);
    }
}

#[test]
fn signals_from_outside_the_session_or_forged_are_refused() {
    let (regional, federal, stranger) = (Site::new(1, 1), Site::new(2, 2), Site::new(3, 3));
    let participants = [regional.org(), federal.org()];
    let offer = Description::Offer("v=0".into());

    let from_stranger = stranger.sign(&federal, offer.clone());
    assert_eq!(
        accept(&from_stranger, federal.org(), SESSION, &participants),
        Err(SignalError::NotAParticipant {
            from: stranger.org(),
            session: SESSION
        })
    );
    // The stranger claims to be the regional site: the signature says otherwise.
    let forged = Signed::sign(
        &stranger.key,
        &Signal {
            session: SESSION,
            from: regional.org(),
            to: federal.org(),
            description: offer.clone(),
            at: AT,
        },
    );
    assert!(matches!(
        accept(&forged, federal.org(), SESSION, &participants),
        Err(SignalError::Signed(_))
    ));
    let elsewhere = regional.sign(&stranger, offer.clone());
    assert_eq!(
        accept(&elsewhere, federal.org(), SESSION, &participants),
        Err(SignalError::NotForUs { to: stranger.org() })
    );
    let genuine = regional.sign(&federal, offer);
    assert!(accept(&genuine, federal.org(), SessionId([8; 16]), &participants).is_err());
    assert!(accept(&genuine, federal.org(), SESSION, &participants).is_ok());
}

#[test]
fn a_handshake_whose_fingerprint_is_not_the_signed_one_fails_and_carries_nothing() {
    let (regional, federal) = (Site::new(1, 40001), Site::new(2, 40002));
    let mut now = Instant::now();
    let (mut a, offer) = Link::offer(now, regional.addr).unwrap();
    let (mut b, answer) = Link::answer(now, federal.addr, &offer).unwrap();
    // What the federal site signed names another certificate than the one
    // its DTLS presents (a party in the middle, or a mix-up).
    let line = answer
        .lines()
        .find(|l| l.starts_with("a=fingerprint:sha-256 "))
        .expect("a fingerprint line");
    let other = line[..line.len() - 2].to_owned() + if line.ends_with("00") { "11" } else { "00" };
    a.handle_answer(&answer.replace(line, &other)).unwrap();
    let (ea, eb) = run(&mut a, &mut b, &mut now, |ea, _| {
        ea.iter().any(|e| matches!(e, LinkEvent::Failed(_)))
    });
    let failure = ea.iter().find_map(|e| match e {
        LinkEvent::Failed(reason) => Some(reason.clone()),
        _ => None,
    });
    assert!(
        failure
            .as_deref()
            .is_some_and(|r| r.contains("fingerprint")),
        "{ea:?}"
    );
    assert!(!has(&ea, &LinkEvent::ChannelOpen) && !has(&eb, &LinkEvent::ChannelOpen));
    assert!(a.send_media(now, b"frame").is_err());
    assert!(a.send_data(b"chat").is_err());
    let (_, eb) = run(&mut a, &mut b, &mut now, |_, _| false);
    assert!(
        !eb.iter()
            .any(|e| matches!(e, LinkEvent::Media(_) | LinkEvent::Data(_)))
    );
}
