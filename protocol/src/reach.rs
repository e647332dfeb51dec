//! Whether others can dial this node, and the relay reservations it keeps
//! when they cannot.
//!
//! A hospital behind NAT cannot be dialled at the addresses it listens on.
//! It learns this from probes (AutoNAT: a server dials back an address of
//! ours and says whether it got through) and, while it is not known to be
//! reachable, keeps reservations on relay servers (bootstrap or regional
//! nodes): a relayed address others can dial, and from a relayed
//! connection the two sides try to punch through to a direct one. This is
//! the fallback ladder's middle: direct, hole-punched, relayed circuit; the
//! regional center's store-and-forward (the outbox) is its last rung.
//!
//! Reservations are spread over distinct relays so that losing one relay
//! leaves the node reachable through another while a replacement is made.
//! Relays and addresses are opaque (`P`, `A`): the node passes libp2p peer
//! ids and multiaddrs, tests and simulations whatever they like.

use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Reservations kept at once, each on a different relay.
    pub reservations: usize,
    /// How long the node waits for a first probe before it reserves anyway:
    /// a node behind NAT must not stay unreachable while no prober is
    /// around, and a public node loses little by reserving once.
    pub grace: Duration,
    /// Backoff after a refused or lost reservation, doubling to `max_retry`.
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// What the operator declared instead of probing (`None`: probe).
    pub declared: Option<Reachability>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            reservations: 2,
            grace: Duration::from_secs(10),
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(120),
            declared: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reachability {
    /// No probe has answered yet.
    Unknown,
    /// At least one of our addresses was dialled back from outside.
    Public,
    /// Every probed address failed.
    Private,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// Where the node stands with one relay server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Connected and certified; no reservation asked for.
    Available,
    Requested {
        since: Timestamp,
    },
    Active {
        since: Timestamp,
    },
    /// The last reservation failed or ended; not asked again before `until`.
    Backoff {
        until: Timestamp,
        failures: u32,
        error: String,
    },
}

impl Slot {
    fn is_held(&self) -> bool {
        matches!(self, Slot::Requested { .. } | Slot::Active { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Ask this relay for a reservation (listen on its circuit address).
    Reserve(P),
    /// Give this relay's reservation up: the node is reachable itself.
    Release(P),
}

pub struct Reach<P, A> {
    config: Config,
    /// Addresses dialled back from outside, and those that were not.
    confirmed: BTreeSet<A>,
    failed: BTreeSet<A>,
    /// Since when the node has had no probe answer.
    unknown_since: Timestamp,
    /// Whether the grace after `unknown_since` has run out and been acted
    /// on: its deadline, in the past from then on, is not named again.
    grace_passed: bool,
    relays: BTreeMap<P, Slot>,
    /// Consecutive failures per relay, kept while it comes and goes.
    failures: BTreeMap<P, u32>,
    outputs: VecDeque<Output<P>>,
}

impl<P: Ord + Clone, A: Ord + Clone> Reach<P, A> {
    pub fn new(now: Timestamp, config: Config) -> Self {
        Self {
            config,
            confirmed: BTreeSet::new(),
            failed: BTreeSet::new(),
            unknown_since: now,
            grace_passed: false,
            relays: BTreeMap::new(),
            failures: BTreeMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn reachability(&self) -> Reachability {
        if let Some(declared) = self.config.declared {
            return declared;
        }
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if !self.failed.is_empty() {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// The node's own view, for `konsilium status`.
    pub fn relays(&self) -> impl Iterator<Item = (&P, &Slot)> {
        self.relays.iter()
    }

    /// Addresses confirmed reachable from outside.
    pub fn confirmed(&self) -> impl Iterator<Item = &A> {
        self.confirmed.iter()
    }

    /// A probe of `addr` came back: dialled from outside (`reachable`) or not.
    pub fn handle_probe(&mut self, now: Timestamp, addr: A, reachable: bool) {
        if reachable {
            self.failed.remove(&addr);
            self.confirmed.insert(addr);
        } else {
            self.confirmed.remove(&addr);
            self.failed.insert(addr);
        }
        self.plan(now);
    }

    /// A confirmed address is no longer ours (an interface went down, the
    /// NAT's mapping changed): probing starts over for it.
    pub fn handle_address_expired(&mut self, now: Timestamp, addr: &A) {
        let was_known = !self.confirmed.is_empty() || !self.failed.is_empty();
        self.confirmed.remove(addr);
        self.failed.remove(addr);
        if was_known && self.confirmed.is_empty() && self.failed.is_empty() {
            self.unknown_since = now;
            self.grace_passed = false;
        }
        self.plan(now);
    }

    /// A certified peer offering relay service is connected.
    pub fn handle_relay_available(&mut self, now: Timestamp, relay: P) {
        self.relays.entry(relay).or_insert(Slot::Available);
        self.plan(now);
    }

    /// A relay's connections are gone (or it was revoked): its reservation
    /// with them. Another relay takes its place.
    pub fn handle_relay_lost(&mut self, now: Timestamp, relay: &P) {
        self.relays.remove(relay);
        self.plan(now);
    }

    pub fn handle_reserved(&mut self, now: Timestamp, relay: &P) {
        if let Some(slot) = self.relays.get_mut(relay) {
            if !matches!(slot, Slot::Active { .. }) {
                *slot = Slot::Active { since: now };
            }
            self.failures.remove(relay);
        }
        self.plan(now);
    }

    /// A reservation was refused, or an active one ended while the relay
    /// stays connected: that relay waits, another is tried.
    pub fn handle_reservation_failed(&mut self, now: Timestamp, relay: &P, error: String) {
        let Some(slot) = self.relays.get_mut(relay) else {
            return;
        };
        if !slot.is_held() {
            return;
        }
        let failures = self.failures.entry(relay.clone()).or_insert(0);
        *failures += 1;
        let exp = (*failures - 1).min(16);
        let wait = self
            .config
            .first_retry
            .saturating_mul(1 << exp)
            .min(self.config.max_retry);
        *slot = Slot::Backoff {
            until: now.saturating_add(wait),
            failures: *failures,
            error,
        };
        self.plan(now);
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        for slot in self.relays.values_mut() {
            if matches!(slot, Slot::Backoff { until, .. } if *until <= now) {
                *slot = Slot::Available;
            }
        }
        if now.since(self.unknown_since) >= self.config.grace {
            self.grace_passed = true;
        }
        self.plan(now);
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let backoff = self.relays.values().filter_map(|s| match s {
            Slot::Backoff { until, .. } => Some(*until),
            _ => None,
        });
        let grace = (self.reachability() == Reachability::Unknown && !self.grace_passed)
            .then(|| self.unknown_since.saturating_add(self.config.grace));
        backoff.chain(grace).min()
    }

    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// How many reservations the node should hold now.
    fn wanted(&self, now: Timestamp) -> usize {
        match self.reachability() {
            Reachability::Public => 0,
            Reachability::Private => self.config.reservations,
            Reachability::Unknown if now.since(self.unknown_since) >= self.config.grace => {
                self.config.reservations
            }
            Reachability::Unknown => 0,
        }
    }

    fn plan(&mut self, now: Timestamp) {
        let wanted = self.wanted(now);
        let held: Vec<P> = (self.relays.iter())
            .filter(|(_, s)| s.is_held())
            .map(|(p, _)| p.clone())
            .collect();
        if wanted == 0 && self.reachability() == Reachability::Public {
            for relay in held {
                self.relays.insert(relay.clone(), Slot::Available);
                self.outputs.push_back(Output::Release(relay));
            }
            return;
        }
        let mut missing = wanted.saturating_sub(held.len());
        // Relays that failed least first, then in a fixed order: runs repeat.
        let mut free: Vec<(u32, P)> = (self.relays.iter())
            .filter(|(_, s)| **s == Slot::Available)
            .map(|(p, _)| (self.failures.get(p).copied().unwrap_or(0), p.clone()))
            .collect();
        free.sort();
        for (_, relay) in free {
            if missing == 0 {
                break;
            }
            self.relays
                .insert(relay.clone(), Slot::Requested { since: now });
            self.outputs.push_back(Output::Reserve(relay));
            missing -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::NOW;

    fn reach(declared: Option<Reachability>) -> Reach<&'static str, u16> {
        Reach::new(
            NOW,
            Config {
                declared,
                ..Config::default()
            },
        )
    }

    fn drain(r: &mut Reach<&'static str, u16>) -> Vec<Output<&'static str>> {
        std::iter::from_fn(|| r.poll_output()).collect()
    }

    fn active(r: &Reach<&'static str, u16>) -> Vec<&'static str> {
        r.relays()
            .filter(|(_, s)| matches!(s, Slot::Active { .. }))
            .map(|(p, _)| *p)
            .collect()
    }

    #[test]
    fn a_node_whose_probes_never_answer_reserves_after_the_grace_then_names_no_past_deadline() {
        let mut r = reach(None);
        r.handle_relay_available(NOW, "bootstrap-a");
        let grace = r.poll_timeout().expect("the grace's end");
        assert!(grace > NOW);
        r.handle_timeout(grace);
        assert_eq!(r.reachability(), Reachability::Unknown);
        assert_eq!(drain(&mut r), [Output::Reserve("bootstrap-a")]);
        // Still unknown, nothing left to wait for: a deadline in the past
        // would wake its driver at once, over and over.
        assert_eq!(r.poll_timeout(), None);
        // An address found and lost again starts a new grace.
        let later = grace.saturating_add(Duration::from_secs(60));
        r.handle_probe(later, 4001, true);
        r.handle_address_expired(later, &4001);
        assert!(r.poll_timeout().is_some_and(|t| t > later));
    }

    #[test]
    fn a_node_that_fails_its_probes_reserves_on_two_relays_and_replaces_a_lost_one() {
        let mut r = reach(None);
        for relay in ["bootstrap-a", "bootstrap-b", "regional"] {
            r.handle_relay_available(NOW, relay);
        }
        assert!(
            drain(&mut r).is_empty(),
            "nothing before a probe or the grace"
        );
        r.handle_probe(NOW, 4001, false);
        assert_eq!(r.reachability(), Reachability::Private);
        assert_eq!(
            drain(&mut r),
            [
                Output::Reserve("bootstrap-a"),
                Output::Reserve("bootstrap-b")
            ]
        );
        r.handle_reserved(NOW, &"bootstrap-a");
        r.handle_reserved(NOW, &"bootstrap-b");
        assert_eq!(active(&r), ["bootstrap-a", "bootstrap-b"]);
        let later = NOW.saturating_add(Duration::from_secs(30));
        r.handle_relay_lost(later, &"bootstrap-a");
        assert_eq!(drain(&mut r), [Output::Reserve("regional")]);
        r.handle_reserved(later, &"regional");
        assert_eq!(active(&r), ["bootstrap-b", "regional"]);
    }

    #[test]
    fn a_refused_reservation_backs_off_and_another_relay_is_asked_meanwhile() {
        let mut r = reach(Some(Reachability::Private));
        r.handle_relay_available(NOW, "a");
        r.handle_relay_available(NOW, "b");
        r.handle_relay_available(NOW, "c");
        assert_eq!(drain(&mut r), [Output::Reserve("a"), Output::Reserve("b")]);
        r.handle_reservation_failed(NOW, &"a", "resource limit exceeded".into());
        assert_eq!(drain(&mut r), [Output::Reserve("c")]);
        let Some((_, Slot::Backoff { until, error, .. })) = r.relays().next() else {
            panic!("a is backing off");
        };
        assert_eq!(error, "resource limit exceeded");
        let until = *until;
        assert_eq!(until, NOW.saturating_add(Duration::from_secs(2)));
        // All three come back: two are held, so "a" stays available.
        r.handle_timeout(until);
        assert!(drain(&mut r).is_empty());
        r.handle_reservation_failed(until, &"b", "closed".into());
        assert_eq!(drain(&mut r), [Output::Reserve("a")]);
        // A failure the relay is not holding (a stale report) changes nothing.
        r.handle_reservation_failed(until, &"b", "again".into());
        assert!(drain(&mut r).is_empty());
    }

    #[test]
    fn a_confirmed_address_releases_reservations_and_losing_it_starts_over() {
        let mut r = reach(None);
        r.handle_relay_available(NOW, "a");
        assert_eq!(
            r.poll_timeout(),
            Some(NOW.saturating_add(Config::default().grace))
        );
        let after_grace = NOW.saturating_add(Config::default().grace);
        r.handle_timeout(after_grace);
        assert_eq!(drain(&mut r), [Output::Reserve("a")]);
        r.handle_reserved(after_grace, &"a");
        r.handle_probe(after_grace, 4001, true);
        assert_eq!(r.reachability(), Reachability::Public);
        assert_eq!(drain(&mut r), [Output::Release("a")]);
        assert_eq!(r.poll_timeout(), None);
        let later = after_grace.saturating_add(Duration::from_secs(60));
        r.handle_address_expired(later, &4001);
        assert_eq!(r.reachability(), Reachability::Unknown);
        assert!(drain(&mut r).is_empty(), "a new grace period");
        assert_eq!(
            r.poll_timeout(),
            Some(later.saturating_add(Config::default().grace))
        );
    }

    #[test]
    fn a_node_declared_public_never_reserves() {
        let mut r = reach(Some(Reachability::Public));
        r.handle_relay_available(NOW, "a");
        r.handle_probe(NOW, 4001, false);
        r.handle_timeout(NOW.saturating_add(Duration::from_secs(3600)));
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.reachability(), Reachability::Public);
    }
}
