//! A small deterministic network for outbox machines: simulated time that
//! jumps to the next thing due, a fixed latency, seeded loss, links that go
//! up and down, and for each node the little of a node's shell the machine
//! needs (package bytes, persisted entries, an inbox that signs receipts).

use super::super::{Directory, Entry, Event, Inbound, Outbox, Output, PackageMeta, Token};
use crate::cert::{OrgLevel, RegionCode};
use crate::delivery::Receipt;
use crate::identity::OrgId;
use crate::rpc::{Refusal, Response};
use crate::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::testkit::{NOW, TestFederation, TestOrg};
use crate::time::Timestamp;
use crate::urgency::Urgency;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const LATENCY: Duration = Duration::from_millis(40);
/// How long a requester waits for an answer before its request fails, as
/// libp2p's request-response does.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Steps one `run_until` may take; more means something spins.
const STEP_LIMIT: usize = 1_000_000;

/// The directory every node sees.
#[derive(Default)]
pub struct Dir {
    pub regions: BTreeMap<OrgId, RegionCode>,
    pub revoked: BTreeSet<OrgId>,
}

impl Directory for Dir {
    fn region(&self, org: &OrgId) -> Option<&RegionCode> {
        self.regions
            .get(org)
            .filter(|_| !self.revoked.contains(org))
    }

    fn is_revoked(&self, org: &OrgId) -> bool {
        self.revoked.contains(org)
    }
}

pub struct SimNode {
    pub org: TestOrg,
    pub relay: Option<OrgId>,
    pub outbox: Outbox,
    /// The outbox's package bytes and persisted entries, as the node stores them.
    pub packages: BTreeMap<PackageId, SealedPackage>,
    pub stored: BTreeMap<PackageId, Entry>,
    /// Packages taken into the inbox, with the receipt given for each.
    pub inbox: BTreeMap<PackageId, (SealedPackage, Signed<Receipt>)>,
    /// Every time the inbox took a package in (a duplicate would show twice).
    pub accepted: Vec<PackageId>,
    pub events: Vec<(Timestamp, Event)>,
    /// Every `Output::Deliver`, with when and to whom.
    pub sent: Vec<(Timestamp, PackageId, OrgId)>,
    /// The inbox refuses every package with this.
    pub refuse: Option<Refusal>,
    /// The inbox answers `Fetching` this many times before taking a package.
    pub fetching: u32,
}

impl SimNode {
    pub fn id(&self) -> OrgId {
        self.org.id()
    }

    pub fn delivered(&self) -> Vec<PackageId> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Delivered { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }
}

enum Msg {
    Deliver {
        from: usize,
        to: usize,
        token: Token,
        package: Box<SealedPackage>,
    },
    Answer {
        to: usize,
        token: Token,
        response: Box<Response>,
    },
    Failed {
        to: usize,
        token: Token,
    },
    Receipt {
        from: usize,
        to: usize,
        receipt: Signed<Receipt>,
    },
    Connect {
        a: usize,
        b: usize,
    },
    DialFailed {
        from: usize,
        to: usize,
    },
}

pub struct Sim {
    pub now: Timestamp,
    pub nodes: Vec<SimNode>,
    pub dir: Dir,
    fed: TestFederation,
    online: Vec<bool>,
    links: BTreeSet<(usize, usize)>,
    queue: BTreeMap<(Timestamp, u64), Msg>,
    seq: u64,
    /// Messages lost, per thousand.
    pub loss: u64,
    rng: u64,
    packages_made: u64,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            now: NOW,
            nodes: Vec::new(),
            dir: Dir::default(),
            fed: TestFederation::new("outbox-sim"),
            online: Vec::new(),
            links: BTreeSet::new(),
            queue: BTreeMap::new(),
            seq: 0,
            loss: 0,
            rng: seed,
            packages_made: 0,
        }
    }

    /// A node in `region`, relaying through node `relay` if given.
    pub fn node(&mut self, region: &str, relay: Option<usize>) -> usize {
        let index = self.nodes.len();
        let org = self.fed.org(
            index as u64 + 1,
            OrgLevel::District,
            region,
            &[Specialty::Cardiology],
        );
        self.dir.regions.insert(org.id(), org.region.clone());
        let relay = relay.map(|r| self.nodes[r].id());
        let outbox = Outbox::new(config(&org, relay), index as u64, []);
        self.nodes.push(SimNode {
            org,
            relay,
            outbox,
            packages: BTreeMap::new(),
            stored: BTreeMap::new(),
            inbox: BTreeMap::new(),
            accepted: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            refuse: None,
            fetching: 0,
        });
        self.online.push(true);
        index
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn lost(&mut self) -> bool {
        self.loss > 0 && self.random() % 1000 < self.loss
    }

    fn at(&mut self, at: Timestamp, msg: Msg) {
        self.seq += 1;
        self.queue.insert((at, self.seq), msg);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Seals a package from `from` to `to`, stores it and queues it, as a
    /// node does when a clinician sends a request.
    pub fn send(&mut self, from: usize, to: usize, lifetime: Duration) -> PackageId {
        self.packages_made += 1;
        let n = self.packages_made;
        let mut id = [0; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id[8] = from as u8;
        let header = EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId(id),
            sender: self.nodes[from].id(),
            recipient: self.nodes[to].id(),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::District,
                urgency: Urgency::Planned,
                region: None,
            },
            created: self.now,
            expires: self.now.saturating_add(lifetime),
            attachments: Vec::new(),
        };
        let recipient = self.nodes[to].org.sealing.public();
        let node = &self.nodes[from];
        let body = format!("package {n}");
        let package = seal::seal(
            header,
            &node.org.sealing,
            &recipient,
            [n as u8; 32],
            body.as_bytes(),
        )
        .expect("seals");
        self.store_and_queue(from, package);
        self.pump();
        PackageId(id)
    }

    fn store_and_queue(&mut self, at: usize, package: SealedPackage) {
        let now = self.now;
        let node = &mut self.nodes[at];
        let entry = node
            .outbox
            .entry_for(now, PackageMeta::of(&package), &self.dir);
        node.packages.insert(package.header.id, package);
        node.stored.insert(entry.id(), entry.clone());
        node.outbox.enqueue(now, entry).expect("a new package");
    }

    /// Takes a node's network down or up. Its machine keeps running; peers
    /// see its connections close.
    pub fn set_online(&mut self, i: usize, up: bool) {
        self.online[i] = up;
        if !up {
            for (a, b) in self.links.clone() {
                if a == i || b == i {
                    self.disconnect(a, b);
                }
            }
        }
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        let (ida, idb) = (self.nodes[a].id(), self.nodes[b].id());
        self.nodes[a].outbox.handle_peer_gone(idb);
        self.nodes[b].outbox.handle_peer_gone(ida);
    }

    /// Connects two nodes now, as a node coming up dials its peers.
    pub fn connect(&mut self, a: usize, b: usize) {
        self.arrive(Msg::Connect { a, b });
        self.pump();
    }

    /// Stops a node and starts it again from what it persisted: its
    /// connections close and the machine is rebuilt from stored entries.
    pub fn restart(&mut self, i: usize) {
        self.set_online(i, false);
        let node = &mut self.nodes[i];
        let stored = node.stored.values().cloned();
        node.outbox = Outbox::new(config(&node.org, node.relay), 1000 + i as u64, stored);
        self.set_online(i, true);
    }

    /// Runs until nothing is left to do before `until`, jumping time to the
    /// next message or timeout, then sets the clock to `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        for _ in 0..STEP_LIMIT {
            let next_msg = self.queue.keys().next().map(|&(at, _)| at);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.outbox.poll_timeout())
                .min();
            let Some(next) = next_msg.into_iter().chain(next_timer).min() else {
                self.now = self.now.max(until);
                return;
            };
            if next > until {
                self.now = self.now.max(until);
                return;
            }
            self.now = self.now.max(next);
            self.step();
        }
        panic!("still busy after {STEP_LIMIT} steps: a machine that never settles");
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now.saturating_add(d));
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            self.arrive(msg);
            self.pump();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .outbox
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.nodes[i].outbox.handle_timeout(now);
                self.pump();
            }
        }
    }

    fn arrive(&mut self, msg: Msg) {
        let now = self.now;
        match msg {
            Msg::Deliver {
                from,
                to,
                token,
                package,
            } => {
                let failed_at = now.saturating_add(REQUEST_TIMEOUT);
                if !self.linked(from, to) {
                    return self.at(failed_at, Msg::Failed { to: from, token });
                }
                let response = self.answer(to, from, *package);
                if self.lost() {
                    return self.at(failed_at, Msg::Failed { to: from, token });
                }
                let response = Box::new(response);
                let at = now.saturating_add(LATENCY);
                self.at(
                    at,
                    Msg::Answer {
                        to: from,
                        token,
                        response,
                    },
                );
            }
            Msg::Answer {
                to,
                token,
                response,
            } => self.nodes[to].outbox.handle_response(now, token, *response),
            Msg::Failed { to, token } => {
                self.nodes[to]
                    .outbox
                    .handle_failure(now, token, "timed out")
            }
            Msg::Receipt { from, to, receipt } => {
                if self.linked(from, to) {
                    // The sender answers Done whatever happened.
                    let _ = self.nodes[to].outbox.handle_receipt(receipt);
                }
            }
            Msg::Connect { a, b } => {
                if self.online[a] && self.online[b] && !self.linked(a, b) {
                    self.links.insert((a.min(b), a.max(b)));
                    let (ida, idb) = (self.nodes[a].id(), self.nodes[b].id());
                    self.nodes[a].outbox.handle_peer_ready(now, idb);
                    self.nodes[b].outbox.handle_peer_ready(now, ida);
                }
            }
            Msg::DialFailed { from, to } => {
                let org = self.nodes[to].id();
                self.nodes[from]
                    .outbox
                    .handle_dial_failed(org, "connection refused");
            }
        }
    }

    /// What node `at` answers to a package from node `from`: the node's
    /// inbox for its own packages, the machine's decision for the others.
    fn answer(&mut self, at: usize, from: usize, package: SealedPackage) -> Response {
        let now = self.now;
        let from_org = self.nodes[from].id();
        let node = &mut self.nodes[at];
        match node
            .outbox
            .inbound(now, from_org, &package.header, &self.dir)
        {
            Inbound::Answer(response) => response,
            Inbound::Relay => {
                self.store_and_queue(at, package);
                Response::Custody
            }
            Inbound::ForUs => {
                if let Some(refusal) = &node.refuse {
                    return Response::Refused(refusal.clone());
                }
                if node.fetching > 0 {
                    node.fetching -= 1;
                    return Response::Fetching {
                        have: 10,
                        total: 100,
                    };
                }
                let id = package.header.id;
                match node.inbox.get(&id) {
                    // A retry after a lost receipt: the same receipt again.
                    Some((held, receipt)) if held.body == package.body => {
                        Response::Receipt(receipt.clone())
                    }
                    Some(_) => Response::Refused(seal::SealError::Replay(id).into()),
                    None => {
                        let receipt =
                            Signed::sign(&node.org.identity, &Receipt::for_package(&package, now));
                        node.inbox.insert(id, (package, receipt.clone()));
                        node.accepted.push(id);
                        Response::Receipt(receipt)
                    }
                }
            }
        }
    }

    /// Carries out everything the machines asked for.
    fn pump(&mut self) {
        let now = self.now;
        let at = now.saturating_add(LATENCY);
        for i in 0..self.nodes.len() {
            while let Some(output) = self.nodes[i].outbox.poll_output() {
                match output {
                    Output::Deliver { token, to, id } => {
                        let node = &mut self.nodes[i];
                        node.sent.push((now, id, to));
                        let package = node.packages.get(&id).expect("bytes stored").clone();
                        let to = self.index(to);
                        assert!(self.linked(i, to), "a delivery goes to a ready peer only");
                        let msg = match self.lost() {
                            true => Msg::Failed { to: i, token },
                            false => Msg::Deliver {
                                from: i,
                                to,
                                token,
                                package: Box::new(package),
                            },
                        };
                        let when = match msg {
                            Msg::Failed { .. } => now.saturating_add(REQUEST_TIMEOUT),
                            _ => at,
                        };
                        self.at(when, msg);
                    }
                    Output::Dial { to } => {
                        let to = self.index(to);
                        if !self.linked(i, to) {
                            let msg = match self.online[i] && self.online[to] {
                                true => Msg::Connect { a: i, b: to },
                                false => Msg::DialFailed { from: i, to },
                            };
                            self.at(at, msg);
                        }
                    }
                    Output::SendReceipt { to, receipt } => {
                        let to = self.index(to);
                        assert!(self.linked(i, to), "a receipt goes to a ready peer only");
                        if !self.lost() {
                            self.at(
                                at,
                                Msg::Receipt {
                                    from: i,
                                    to,
                                    receipt,
                                },
                            );
                        }
                    }
                    Output::Persist(entry) => {
                        let node = &mut self.nodes[i];
                        assert!(node.packages.contains_key(&entry.id()));
                        node.stored.insert(entry.id(), entry);
                    }
                    Output::Remove(id) => {
                        let node = &mut self.nodes[i];
                        node.stored.remove(&id);
                        node.packages.remove(&id);
                    }
                    Output::Event(event) => self.nodes[i].events.push((now, event)),
                }
            }
        }
    }

    fn index(&self, org: OrgId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id() == org)
            .expect("a node of the simulation")
    }
}

fn config(org: &TestOrg, relay: Option<OrgId>) -> super::super::Config {
    super::super::Config {
        me: org.id(),
        region: org.region.clone(),
        relay,
    }
}
