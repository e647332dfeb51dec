//! Which idle connections a node keeps open.
//!
//! Nothing in libp2p lets a node's connections go idle: gossipsub holds a
//! stream open on every connection, and an open stream keeps it alive. A
//! connection made once (a Kademlia lookup, one delivery, one directory
//! exchange) stays for good, and in a federation of thousands a node ends
//! up holding hundreds, each with its own buffers and a dozen protocol
//! handlers to poll. Measured in the live simulation: 158 connections per
//! node at 500 nodes, about 26 MB per node.
//!
//! This machine closes connections the node dialled and no longer uses,
//! down to a budget of spares. The most recently used spares stay: gossip
//! needs peers outside its mesh to graft from and to send gossip to.
//! Whatever the node says must stay (its gossip mesh, bootstrap and relay
//! peers, video sessions) is never closed, nor anything used within
//! `idle`. A connection the peer dialled is the peer's to close, so a
//! bootstrap node never drops the nodes that rely on it. Peers are opaque
//! (`P`): the node passes libp2p peer ids, tests whatever they like.

use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Dialled connections kept beyond those that must stay.
    pub spare: usize,
    /// How long a connection must go unused before it may be closed.
    pub idle: Duration,
}

impl Default for Config {
    /// As many spares as gossipsub's largest mesh: candidates to repair
    /// the mesh from and to gossip to, a small fraction of a national
    /// federation. In the live simulation, with 24 spares the nodes of a
    /// 500-node federation held 59 connections each, with 12 those of a
    /// 1,000-node one 36 (`docs/simulations.md`).
    fn default() -> Self {
        Self {
            spare: 12,
            idle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
struct Peer {
    /// Open connections we dialled, and those the peer dialled.
    dialled: u32,
    accepted: u32,
    used: Timestamp,
    /// Asked to be closed; not asked again.
    closing: bool,
}

#[derive(Debug)]
pub struct Keep<P> {
    config: Config,
    peers: BTreeMap<P, Peer>,
    close: VecDeque<P>,
    next_check: Option<Timestamp>,
}

impl<P: Ord + Clone> Keep<P> {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
            close: VecDeque::new(),
            next_check: None,
        }
    }

    pub fn handle_connected(&mut self, now: Timestamp, peer: P, dialled: bool) {
        let entry = self.peers.entry(peer).or_insert(Peer {
            dialled: 0,
            accepted: 0,
            used: now,
            closing: false,
        });
        entry.used = now;
        entry.closing = false;
        match dialled {
            true => entry.dialled += 1,
            false => entry.accepted += 1,
        }
        if dialled && self.next_check.is_none() {
            self.next_check = Some(now.saturating_add(self.config.idle));
        }
    }

    pub fn handle_disconnected(&mut self, peer: &P, dialled: bool) {
        let Some(entry) = self.peers.get_mut(peer) else {
            return;
        };
        let count = match dialled {
            true => &mut entry.dialled,
            false => &mut entry.accepted,
        };
        *count = count.saturating_sub(1);
        if entry.dialled == 0 && entry.accepted == 0 {
            self.peers.remove(peer);
        }
    }

    /// A request to or from the peer: its connection is in use.
    pub fn handle_used(&mut self, now: Timestamp, peer: &P) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.used = now;
        }
    }

    /// Closes the least recently used dialled connections beyond the
    /// budget. `stays` names the peers that must stay, as of now: the node
    /// knows its mesh and its relays, this machine does not.
    pub fn handle_timeout(&mut self, now: Timestamp, stays: impl Fn(&P) -> bool) {
        let idle = self.config.idle;
        let mut optional: Vec<(Timestamp, &P)> = (self.peers.iter())
            .filter(|(p, e)| e.accepted == 0 && e.dialled > 0 && !e.closing && !stays(p))
            .map(|(p, e)| (e.used, p))
            .collect();
        // Oldest first; among equals, the peer's order, so runs repeat.
        optional.sort();
        let excess = optional.len().saturating_sub(self.config.spare);
        let idle_since = now.saturating_sub(idle);
        let closed: Vec<P> = (optional.iter())
            .take(excess)
            .take_while(|(used, _)| *used <= idle_since)
            .map(|(_, p)| (*p).clone())
            .collect();
        // The first left over that would be closed once idle, if any; the
        // mesh and relays change too, so look again within `idle` anyway.
        let next = optional
            .get(closed.len())
            .filter(|_| closed.len() < excess)
            .map(|(used, _)| used.saturating_add(idle))
            .unwrap_or(now.saturating_add(idle));
        for peer in closed {
            if let Some(entry) = self.peers.get_mut(&peer) {
                entry.closing = true;
            }
            self.close.push_back(peer);
        }
        let dialled = self.peers.values().any(|e| e.dialled > 0);
        self.next_check = dialled.then_some(next.max(now.saturating_add(MIN_RECHECK)));
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_check
    }

    /// A peer whose connections the node should close.
    pub fn poll_output(&mut self) -> Option<P> {
        self.close.pop_front()
    }

    /// Connected peers, for inspection.
    pub fn connected(&self) -> usize {
        self.peers.len()
    }
}

/// Checks at most this often: the cost of a check grows with the peers held.
const MIN_RECHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn keep(spare: usize) -> Keep<u32> {
        Keep::new(Config { spare, idle: IDLE })
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_000_000 + s * 1000)
    }

    fn closed(k: &mut Keep<u32>) -> Vec<u32> {
        std::iter::from_fn(|| k.poll_output()).collect()
    }

    #[test]
    fn closes_the_least_recently_used_beyond_the_spares_once_idle() {
        let mut k = keep(2);
        for p in 0..5 {
            k.handle_connected(at(p), p as u32, true);
        }
        k.handle_used(at(10), &0);
        // Nothing idle yet.
        k.handle_timeout(at(30), |_| false);
        assert_eq!(closed(&mut k), Vec::<u32>::new());
        // Peers 1, 2 and 3 are the oldest; 0 was used since and 4 is a spare.
        k.handle_timeout(at(64), |_| false);
        assert_eq!(closed(&mut k), vec![1, 2, 3]);
        // Asked once only, even while their connections are still open.
        k.handle_timeout(at(200), |_| false);
        assert_eq!(closed(&mut k), Vec::<u32>::new());
        for p in [1, 2, 3] {
            k.handle_disconnected(&p, true);
        }
        assert_eq!(k.connected(), 2);
    }

    #[test]
    fn what_must_stay_and_what_the_peer_dialled_are_never_closed() {
        let mut k = keep(0);
        k.handle_connected(at(0), 1, true);
        k.handle_connected(at(0), 2, false);
        k.handle_connected(at(0), 3, true);
        // Peer 4 dialled us as well as we dialled it: the peer decides.
        k.handle_connected(at(0), 4, true);
        k.handle_connected(at(0), 4, false);
        k.handle_timeout(at(100), |p| *p == 3);
        assert_eq!(closed(&mut k), vec![1]);
        // Once 3 leaves the mesh, it goes too.
        k.handle_timeout(at(101), |_| false);
        assert_eq!(closed(&mut k), vec![3]);
    }

    #[test]
    fn the_next_check_is_when_the_next_excess_peer_goes_idle() {
        let mut k = keep(1);
        assert_eq!(k.poll_timeout(), None, "nothing dialled, nothing to check");
        k.handle_connected(at(0), 1, true);
        assert_eq!(k.poll_timeout(), Some(at(60)));
        k.handle_connected(at(10), 2, true);
        k.handle_connected(at(20), 3, true);
        k.handle_timeout(at(60), |_| false);
        assert_eq!(closed(&mut k), vec![1]);
        // Peer 2 is over the budget and idle from 70 s.
        assert_eq!(k.poll_timeout(), Some(at(70)));
        k.handle_timeout(at(70), |_| false);
        assert_eq!(closed(&mut k), vec![2]);
        k.handle_disconnected(&1, true);
        k.handle_disconnected(&2, true);
        // Within budget: looked at again within `idle`.
        k.handle_timeout(at(71), |_| false);
        assert_eq!(k.poll_timeout(), Some(at(131)));
        k.handle_disconnected(&3, true);
        k.handle_timeout(at(72), |_| false);
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn a_peer_that_reconnects_counts_as_new() {
        let mut k = keep(0);
        k.handle_connected(at(0), 1, true);
        k.handle_timeout(at(60), |_| false);
        assert_eq!(closed(&mut k), vec![1]);
        // A new connection before the old one closed: used, and open again.
        k.handle_connected(at(61), 1, true);
        k.handle_disconnected(&1, true);
        k.handle_timeout(at(62), |_| false);
        assert_eq!(closed(&mut k), Vec::<u32>::new());
        assert_eq!(k.connected(), 1);
        k.handle_timeout(at(121), |_| false);
        assert_eq!(closed(&mut k), vec![1]);
    }
}
