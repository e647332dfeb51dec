//! The requests an anti-entropy machine has out, each with the moment it
//! gives up on the answer.
//!
//! The shell asks for the next deadline after every input, and a regional
//! center has many requests out at once: kept in deadline order, that
//! answer and the sweep for expired requests cost a lookup instead of a
//! pass over all of them (a national simulated year spent 2-3% of its
//! time in that pass).

use super::{Asked, RequestToken};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
pub(super) struct Request<P> {
    pub peer: P,
    pub deadline: Timestamp,
    pub asked: Asked,
}

#[derive(Debug)]
pub(super) struct Outstanding<P> {
    by_token: BTreeMap<RequestToken, Request<P>>,
    by_deadline: BTreeSet<(Timestamp, RequestToken)>,
    per_peer: BTreeMap<P, usize>,
}

impl<P> Default for Outstanding<P> {
    fn default() -> Self {
        Self {
            by_token: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            per_peer: BTreeMap::new(),
        }
    }
}

impl<P: Copy + Ord> Outstanding<P> {
    pub fn insert(&mut self, token: RequestToken, request: Request<P>) {
        // Tokens are never reused; should one be, its old entry goes first.
        self.remove(token);
        self.by_deadline.insert((request.deadline, token));
        *self.per_peer.entry(request.peer).or_default() += 1;
        self.by_token.insert(token, request);
    }

    pub fn remove(&mut self, token: RequestToken) -> Option<Request<P>> {
        let request = self.by_token.remove(&token)?;
        self.forget(token, &request);
        Some(request)
    }

    fn forget(&mut self, token: RequestToken, request: &Request<P>) {
        self.by_deadline.remove(&(request.deadline, token));
        if let Some(n) = self.per_peer.get_mut(&request.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&request.peer);
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Requests whose deadline is `now` or earlier, in the order they were
    /// sent.
    pub fn expired(&self, now: Timestamp) -> Vec<RequestToken> {
        let mut tokens: Vec<RequestToken> = (self.by_deadline.iter())
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, token)| *token)
            .collect();
        tokens.sort_unstable();
        tokens
    }

    pub fn any_to(&self, peer: P) -> bool {
        self.per_peer.contains_key(&peer)
    }

    /// Requests to `peer`, in the order they were sent.
    pub fn to(&self, peer: P) -> Vec<RequestToken> {
        if !self.any_to(peer) {
            return Vec::new();
        }
        (self.by_token.iter())
            .filter(|(_, r)| r.peer == peer)
            .map(|(token, _)| *token)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::NOW;
    use std::time::Duration;

    fn at(s: u64) -> Timestamp {
        NOW.saturating_add(Duration::from_secs(s))
    }

    fn request(peer: u8, deadline: u64) -> Request<u8> {
        Request {
            peer,
            deadline: at(deadline),
            asked: Asked::Offer,
        }
    }

    /// Deadlines out of the order of sending (a clock stepped back, a
    /// timeout changed) still give the earliest as the next, and expire in
    /// the order the requests were sent.
    #[test]
    fn the_next_deadline_and_the_expired_follow_insertions_and_removals() {
        let mut out = Outstanding::default();
        out.insert(RequestToken(1), request(7, 30));
        out.insert(RequestToken(2), request(8, 10));
        out.insert(RequestToken(3), request(7, 20));
        assert_eq!(out.next_deadline(), Some(at(10)));
        assert_eq!(out.expired(at(25)), [RequestToken(2), RequestToken(3)]);
        assert_eq!(out.expired(at(9)), []);
        assert_eq!(out.to(7), [RequestToken(1), RequestToken(3)]);
        assert!(out.remove(RequestToken(2)).is_some());
        assert!(out.remove(RequestToken(2)).is_none());
        assert!(!out.any_to(8));
        assert_eq!(out.next_deadline(), Some(at(20)));
        out.remove(RequestToken(3));
        assert!(out.any_to(7));
        out.remove(RequestToken(1));
        assert!(!out.any_to(7));
        assert_eq!(out.next_deadline(), None);
        assert!(out.to(7).is_empty());
    }
}
