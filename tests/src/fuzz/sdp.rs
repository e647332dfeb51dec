//! Session descriptions as the media plane takes them in: a browser's
//! offer posted to the WHIP and WHEP endpoints (any user with a token can
//! write one by hand), and another site's offer once its signature held.
//! str0m parses them; what is fuzzed here is everything the node does with
//! one str0m accepts: the answer it writes, what it learns from the text
//! (media lines, candidates, the DTLS fingerprint) and a link's restart.

use konsilium_video::{Link, LocalAddrs, Prepared, Seat};
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

/// This site's address in the answers.
fn local() -> LocalAddrs {
    LocalAddrs {
        host: "192.0.2.10:3478".parse().expect("an address"),
        reflexive: None,
        relayed: None,
        relay_only: false,
    }
}

fn prepared(now: Instant) -> Prepared {
    Prepared::new(now).expect("the crypto backend makes DTLS certificates")
}

/// An answer the node wrote is a description str0m reads back, with the
/// fingerprint the other side will check.
fn check_answer(answer: &str) {
    assert!(SdpAnswer::from_sdp_string(answer).is_ok(), "{answer}");
    assert!(answer.contains("a=fingerprint:"), "{answer}");
}

/// An offer answered by a browser's seat and by a link, and the link then
/// restarted by the same offer again: true when either answered it.
pub fn sdp_offer(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    // What str0m refuses, `Seat::answer` and `Link::answer` refuse before
    // anything else (and building their connections costs a millisecond).
    if SdpOffer::from_sdp_string(text).is_err() {
        return false;
    }
    let now = Instant::now();
    let seat = Seat::answer(now, local(), prepared(now), text);
    if let Ok((_, answer)) = &seat {
        check_answer(answer);
    }
    let link = Link::answer(now, local(), prepared(now), text);
    if let Ok((mut link, answer)) = link {
        check_answer(&answer);
        let names_fingerprint = text.lines().any(|l| l.trim().starts_with("a=fingerprint:"));
        assert_eq!(link.is_restarted_by(text), names_fingerprint);
        if let Ok(again) = link.handle_restart(now, text, local()) {
            check_answer(&again);
        }
        return true;
    }
    seat.is_ok()
}

/// A site's first offer, as a link makes it.
pub(super) fn site_offer() -> String {
    let now = Instant::now();
    let (_, offer) = Link::offer(now, local(), prepared(now)).expect("a link offers");
    offer
}

/// A browser publishing its camera and microphone through WHIP: send-only
/// lines, its host candidate gathered before it posts.
pub(super) fn browser_offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let host = "198.51.100.20:50000".parse().expect("an address");
    let candidate = Candidate::host(host, "udp").expect("a host candidate");
    rtc.add_local_candidate(candidate);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_answered_and_what_is_no_offer_is_not() {
        assert!(sdp_offer(site_offer().as_bytes()));
        assert!(sdp_offer(browser_offer().as_bytes()));
        assert!(!sdp_offer(b"v=0\r\n"), "no media, no session");
        assert!(!sdp_offer(&[0xff, 0xfe]), "not text");
        let cut = browser_offer();
        let cut = &cut[..cut.find("m=video").expect("a video line") + 3];
        assert!(!sdp_offer(cut.as_bytes()), "cut inside a media line");
    }
}
