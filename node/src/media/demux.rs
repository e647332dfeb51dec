//! Which connection a datagram on a shared port is for. Every seat, and
//! every link this site answered, reads the plane's one port, so a
//! datagram says only which pair of addresses it came over. Asking each
//! connection in turn whether the datagram is its own parses it once per
//! connection asked: with twenty sessions, some forty times for each
//! packet. The connection that took a pair's last datagram is asked first,
//! and the others only when it refuses (a new path, or a connection gone).
//! A datagram is read once, before any connection is asked: what is not
//! WebRTC at all is dropped at once, and a forged ICE check from a stranger
//! costs one parse, not one for every connection it is offered to.

use super::Links;
use super::room::{SeatId, Seats};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::video::SessionId;
use konsilium_video::{Datagram, Incoming};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Pairs remembered at most. Only a datagram a connection took adds one,
/// so legitimate pairs are a few per connection; past this the memory
/// starts over (and is learnt again from the next datagrams) rather than
/// growing with what an on-path sender can make a connection accept.
const MAX_PAIRS: usize = 4096;

/// The connection a datagram went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Link(SessionId, OrgId),
    Seat(SeatId),
}

/// Address pairs (where a datagram arrived, who sent it) and the
/// connection that took the last datagram over each.
#[derive(Default)]
pub(super) struct Demux {
    pairs: HashMap<(SocketAddr, SocketAddr), Target>,
}

impl Demux {
    /// Hands `d`, which arrived at `d.destination` (the plane's address
    /// `local`, a link's own socket, or a relayed address), to the
    /// connection whose address pair it is; returns which took it. Links
    /// are asked before seats, which take only what reached `local`.
    pub(super) fn deliver(
        &mut self,
        links: &mut Links,
        seats: &mut Seats,
        local: SocketAddr,
        d: &Datagram,
        now: Instant,
    ) -> Option<Target> {
        let incoming = Incoming::read(now, d)?;
        let takes = |target| takes(links, seats, local, target, d.destination, &incoming);
        let pair = (d.destination, d.source);
        let remembered = (self.pairs.get(&pair).copied()).filter(|&target| takes(target));
        let found = remembered.or_else(|| {
            let link_keys = links
                .keys()
                .map(|&(session, org)| Target::Link(session, org));
            let seat_keys = seats.keys().map(|&id| Target::Seat(id));
            (link_keys.chain(seat_keys)).find(|&target| takes(target))
        });
        let target = found?;
        if remembered.is_none() {
            if self.pairs.len() >= MAX_PAIRS {
                self.pairs.clear();
            }
            self.pairs.insert(pair, target);
        }
        match target {
            Target::Link(session, org) => {
                if let Some(held) = links.get_mut(&(session, org)) {
                    held.link.handle_datagram(incoming);
                }
            }
            Target::Seat(id) => {
                if let Some(held) = seats.get_mut(&id) {
                    held.seat.handle_datagram(incoming);
                }
            }
        }
        Some(target)
    }

    /// Forgets the pairs of connections that are gone.
    pub(super) fn retain(&mut self, links: &Links, seats: &Seats) {
        self.pairs.retain(|_, target| match *target {
            Target::Link(session, org) => links.contains_key(&(session, org)),
            Target::Seat(id) => seats.contains_key(&id),
        });
    }
}

/// Whether `target` still exists and takes `incoming`, which arrived at
/// `destination`.
fn takes(
    links: &Links,
    seats: &Seats,
    local: SocketAddr,
    target: Target,
    destination: SocketAddr,
    incoming: &Incoming,
) -> bool {
    match target {
        Target::Link(session, org) => (links.get(&(session, org)))
            .is_some_and(|h| h.reached_at(local, destination) && h.link.accepts(incoming)),
        Target::Seat(id) => {
            destination == local && seats.get(&id).is_some_and(|h| h.seat.accepts(incoming))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::room::{HeldSeat, Person};
    use konsilium_protocol::journal::Role;
    use konsilium_video::{LocalAddrs, Prepared, Seat};
    use std::sync::Arc;
    use std::time::Duration;
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Input, Output, Rtc};

    const PLANE: &str = "10.0.0.1:7401";

    /// A browser's receive-only offer from `addr`, answered by a seat on
    /// the plane's address; returns the browser and the seat.
    fn joined(now: Instant, addr: &str) -> (Rtc, HeldSeat) {
        let mut browser = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        browser.add_local_candidate(Candidate::host(addr.parse().unwrap(), "udp").unwrap());
        let mut change = browser.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let local = LocalAddrs {
            host: PLANE.parse().unwrap(),
            reflexive: None,
            relayed: None,
            relay_only: false,
        };
        let prepared = Prepared::new(now).unwrap();
        let (seat, answer) = Seat::answer(now, local, prepared, &offer.to_sdp_string()).unwrap();
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
        browser.sdp_api().accept_answer(pending, answer).unwrap();
        let who = Person {
            person: addr.into(),
            role: Role::Consultant,
            org: "Regional center".into(),
        };
        (browser, HeldSeat::new(SessionId([1; 16]), who, seat, now))
    }

    /// What the browser sends first (its ICE checks to the seat).
    fn sent(browser: &mut Rtc, now: Instant) -> Vec<Datagram> {
        browser.handle_input(Input::Timeout(now)).unwrap();
        let mut out = Vec::new();
        while let Ok(output) = browser.poll_output() {
            match output {
                Output::Transmit(t) => out.push(Datagram {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        out
    }

    /// Whom the seats sent to (an answer to a check, a check of their own).
    fn answered(seats: &mut Seats) -> Vec<SocketAddr> {
        let mut to = Vec::new();
        for held in seats.values_mut() {
            while let Some(d) = held.seat.poll_transmit() {
                to.push(d.destination);
            }
        }
        to
    }

    #[test]
    fn each_datagram_reaches_its_own_seat_and_a_closed_or_gone_seat_takes_none() {
        let now = Instant::now();
        let (mut a, seat_a) = joined(now, "10.0.0.9:50000");
        let (mut b, seat_b) = joined(now, "10.0.0.8:50000");
        let (id_a, id_b) = (SeatId([0xa; 16]), SeatId([0xb; 16]));
        let mut seats: Seats = [(id_a, seat_a), (id_b, seat_b)].into();
        let mut links = Links::new();
        let plane: SocketAddr = PLANE.parse().unwrap();
        answered(&mut seats);
        let mut demux = Demux::default();
        let later = now + Duration::from_millis(50);
        let (from_a, from_b) = (sent(&mut a, later), sent(&mut b, later));
        assert!(
            !from_a.is_empty() && !from_b.is_empty(),
            "both browsers check"
        );

        // Each browser's checks are answered to it alone, the first time
        // (found by asking) and again (remembered).
        let checks = (from_a.iter().chain(&from_a).map(|d| (d, id_a)))
            .chain(from_b.iter().map(|d| (d, id_b)));
        for (d, id) in checks {
            let took = demux.deliver(&mut links, &mut seats, plane, d, later);
            assert_eq!(took, Some(Target::Seat(id)));
            let to = answered(&mut seats);
            assert!(
                !to.is_empty() && to.iter().all(|&t| t == d.source),
                "{to:?}"
            );
        }
        assert_eq!(demux.pairs.len(), 2, "one pair per browser");

        // Media from an address no browser checked from is nobody's: refused
        // and not remembered.
        let mut rtp = vec![0x80, 96];
        rtp.resize(100, 0);
        let stranger = Datagram {
            source: "10.0.0.66:1234".parse().unwrap(),
            destination: plane,
            contents: rtp,
        };
        assert_eq!(
            demux.deliver(&mut links, &mut seats, plane, &stranger, later),
            None
        );
        assert!(answered(&mut seats).is_empty());
        assert_eq!(demux.pairs.len(), 2);

        // An ICE check for a seat the plane does not hold (its credentials
        // are no seat's here), and bytes that are no WebRTC at all: nobody's.
        let (mut c, _not_held) = joined(now, "10.0.0.7:50000");
        let check = sent(&mut c, later).remove(0);
        assert_eq!(
            demux.deliver(&mut links, &mut seats, plane, &check, later),
            None
        );
        let junk = Datagram {
            contents: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            ..stranger
        };
        assert_eq!(
            demux.deliver(&mut links, &mut seats, plane, &junk, later),
            None
        );
        assert!(answered(&mut seats).is_empty());
        assert_eq!(demux.pairs.len(), 2);

        // A remembered seat that closed refuses; no other takes its
        // browser's datagrams.
        seats.get_mut(&id_a).unwrap().seat.close();
        answered(&mut seats);
        assert_eq!(
            demux.deliver(&mut links, &mut seats, plane, &from_a[0], later),
            None
        );
        assert!(answered(&mut seats).is_empty());

        // A seat gone: its pair is forgotten, its browser reaches no one.
        seats.remove(&id_a);
        demux.retain(&links, &seats);
        assert_eq!(demux.pairs.len(), 1);
        assert_eq!(
            demux.deliver(&mut links, &mut seats, plane, &from_a[0], later),
            None
        );
        assert!(answered(&mut seats).is_empty());
    }
}
