//! How each connection to a peer was made (the fallback ladder's rungs:
//! direct, hole-punched, relayed circuit), and which relayed circuits a
//! direct connection has made redundant.
//!
//! A relayed circuit is how two sites behind NAT first meet, and from it
//! they punch through to a direct connection. The circuit does not close by
//! itself: relays let a certified node hold one for an hour. But libp2p's
//! protocols spread their requests over every connection to a peer
//! (request-response picks one by request number), so while the circuit
//! stays, every other package, receipt and attachment piece between the
//! two sites goes through the relay: slower, on a third organization's
//! bandwidth, and reported as direct. So a relayed connection is closed
//! once a direct one to the same peer has been up for `grace`: what is
//! already on the circuit has that long to finish, and what does not is
//! retried on the direct connection (deliveries are retried and answered
//! again with the same receipt, attachments resume). A circuit is never
//! closed while it is the peer's only connection.
//!
//! Peers and connections are opaque (`P`, `C`): the node passes libp2p
//! peer and connection ids, tests whatever they like.

use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How a connection was made, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    Direct,
    HolePunched,
    Relayed,
}

impl Link {
    pub const ALL: [Link; 3] = [Link::Direct, Link::HolePunched, Link::Relayed];

    pub fn as_str(self) -> &'static str {
        match self {
            Link::Direct => "direct",
            Link::HolePunched => "hole-punched",
            Link::Relayed => "relayed",
        }
    }
}

/// How long a relayed circuit stays beside a direct connection to the same
/// peer: a package's round trip through a relay takes well under a second.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Ladder<P, C> {
    grace: Duration,
    /// Each connected peer's connections and their rungs: every question
    /// is about one peer, and a relay or bootstrap node holds thousands.
    peers: BTreeMap<P, BTreeMap<C, Link>>,
    /// Whose each open connection is.
    owners: BTreeMap<C, P>,
    /// Relayed connections whose peer has a direct one, and when they close.
    superseded: BTreeMap<C, Timestamp>,
    close: VecDeque<C>,
}

impl<P: Ord + Clone, C: Ord + Clone> Ladder<P, C> {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            peers: BTreeMap::new(),
            owners: BTreeMap::new(),
            superseded: BTreeMap::new(),
            close: VecDeque::new(),
        }
    }

    /// A connection opened. `punched_before` says a connection to this peer
    /// was hole-punched earlier: a later direct one goes through the same
    /// hole. A direct connection to a peer we reach through a relay is
    /// hole punching's, on both sides (only the dialling side hears of it
    /// from DCUtR; the other sees an ordinary inbound connection).
    pub fn handle_up(
        &mut self,
        now: Timestamp,
        connection: C,
        peer: P,
        relayed: bool,
        punched_before: bool,
    ) -> Link {
        let link = if relayed {
            Link::Relayed
        } else if punched_before
            || matches!(self.link(&peer), Some(Link::Relayed | Link::HolePunched))
        {
            Link::HolePunched
        } else {
            Link::Direct
        };
        self.owners.insert(connection.clone(), peer.clone());
        let theirs = self.peers.entry(peer).or_default();
        theirs.insert(connection, link);
        // Beside a direct connection, every circuit to the peer is due to
        // close, whichever came first.
        if theirs.values().any(|l| *l != Link::Relayed) {
            let at = now.saturating_add(self.grace);
            for (c, _) in theirs.iter().filter(|(_, l)| **l == Link::Relayed) {
                self.superseded.entry(c.clone()).or_insert(at);
            }
        }
        link
    }

    /// DCUtR made `connection` by punching through from a relayed one.
    pub fn handle_hole_punched(&mut self, connection: &C) {
        let Some(peer) = self.owners.get(connection) else {
            return;
        };
        if let Some(link) = self.peers.get_mut(peer).and_then(|t| t.get_mut(connection))
            && *link != Link::Relayed
        {
            *link = Link::HolePunched;
        }
    }

    /// A connection closed. A circuit that was to close because of it
    /// stays: it is the peer's way in again.
    pub fn handle_down(&mut self, connection: &C) {
        let Some(peer) = self.owners.remove(connection) else {
            return;
        };
        self.superseded.remove(connection);
        let Some(theirs) = self.peers.get_mut(&peer) else {
            return;
        };
        theirs.remove(connection);
        if theirs.is_empty() {
            self.peers.remove(&peer);
        } else if theirs.values().all(|l| *l == Link::Relayed) {
            for c in theirs.keys() {
                self.superseded.remove(c);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.superseded.values().min().copied()
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        let due: Vec<C> = (self.superseded.iter())
            .filter(|(_, at)| **at <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for c in due {
            self.superseded.remove(&c);
            self.close.push_back(c);
        }
    }

    /// A connection to close: a relayed circuit beside a direct connection.
    pub fn poll_close(&mut self) -> Option<C> {
        self.close.pop_front()
    }

    /// The best way the peer is connected now, if it is.
    pub fn link(&self, peer: &P) -> Option<Link> {
        self.links(peer).min()
    }

    /// The rung of each open connection to the peer.
    pub fn links(&self, peer: &P) -> impl Iterator<Item = Link> + '_ {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|t| t.values().copied())
    }

    /// Each connected peer's best link.
    pub fn best(&self) -> impl Iterator<Item = (&P, Link)> {
        (self.peers.iter()).filter_map(|(p, t)| Some((p, t.values().min().copied()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn closed(ladder: &mut Ladder<&'static str, u32>, now: Timestamp) -> Vec<u32> {
        ladder.handle_timeout(now);
        std::iter::from_fn(|| ladder.poll_close()).collect()
    }

    #[test]
    fn each_connection_takes_the_rung_it_was_made_on() {
        let mut ladder = Ladder::new(GRACE);
        assert_eq!(ladder.handle_up(at(0), 1, "a", false, false), Link::Direct);
        assert_eq!(ladder.handle_up(at(0), 2, "b", true, false), Link::Relayed);
        // Inbound direct beside a circuit: the other side punched it.
        assert_eq!(
            ladder.handle_up(at(0), 3, "b", false, false),
            Link::HolePunched
        );
        // After every connection went, the hole is remembered by the node.
        assert_eq!(
            ladder.handle_up(at(0), 4, "c", false, true),
            Link::HolePunched
        );
        assert_eq!(ladder.link(&"a"), Some(Link::Direct));
        assert_eq!(ladder.link(&"b"), Some(Link::HolePunched));
        let b: Vec<Link> = ladder.links(&"b").collect();
        assert_eq!(b, [Link::Relayed, Link::HolePunched]);
        assert_eq!(ladder.link(&"d"), None);
        let best: BTreeMap<_, _> = ladder.best().collect();
        assert_eq!(best.len(), 3);
        assert_eq!(best[&"b"], Link::HolePunched);
    }

    #[test]
    fn a_circuit_closes_a_grace_after_a_direct_connection_to_its_peer() {
        let mut ladder = Ladder::new(GRACE);
        ladder.handle_up(at(0), 1, "a", true, false);
        ladder.handle_up(at(0), 2, "b", true, false);
        assert_eq!(ladder.poll_timeout(), None, "a circuit alone stays");
        // DCUtR's dialled connection comes up, then is named punched.
        assert_eq!(
            ladder.handle_up(at(1_000), 3, "a", false, false),
            Link::HolePunched
        );
        ladder.handle_hole_punched(&3);
        assert_eq!(ladder.poll_timeout(), Some(at(1_000).saturating_add(GRACE)));
        assert!(
            closed(&mut ladder, at(5_999)).is_empty(),
            "within the grace"
        );
        assert_eq!(closed(&mut ladder, at(6_000)), vec![1]);
        assert_eq!(ladder.poll_timeout(), None);
        // The other peer's circuit is its only way, and stays.
        assert!(closed(&mut ladder, at(60_000)).is_empty());
        ladder.handle_down(&1);
        assert_eq!(ladder.link(&"a"), Some(Link::HolePunched));
    }

    #[test]
    fn a_circuit_opened_beside_a_direct_connection_closes_too() {
        let mut ladder = Ladder::new(GRACE);
        ladder.handle_up(at(0), 1, "a", false, false);
        ladder.handle_up(at(100), 2, "a", true, false);
        assert_eq!(closed(&mut ladder, at(5_100)), vec![2]);
    }

    #[test]
    fn a_circuit_stays_when_the_direct_connection_goes_within_the_grace() {
        let mut ladder = Ladder::new(GRACE);
        ladder.handle_up(at(0), 1, "a", true, false);
        ladder.handle_up(at(0), 2, "a", false, false);
        ladder.handle_down(&2);
        assert_eq!(ladder.poll_timeout(), None);
        assert!(closed(&mut ladder, at(60_000)).is_empty());
        assert_eq!(ladder.link(&"a"), Some(Link::Relayed));
        // With a second direct connection, losing one keeps the plan.
        ladder.handle_up(at(70_000), 3, "a", false, false);
        ladder.handle_up(at(70_000), 4, "a", false, false);
        ladder.handle_down(&3);
        assert_eq!(closed(&mut ladder, at(75_000)), vec![1]);
    }
}
