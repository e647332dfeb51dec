//! The outbox machines on the shared simulated network
//! ([`crate::testkit::simnet`]): each node is the machine plus the little of
//! a node's shell it needs (package bytes, persisted entries, an inbox that
//! signs receipts, dials), and every delivery and receipt crosses the wire
//! codec with the network's latency, loss and connections.

use super::super::{Directory, Entry, Event, Inbound, Outbox, Output, PackageMeta, Token};
use crate::cert::{OrgLevel, RegionCode};
use crate::delivery::Receipt;
use crate::identity::OrgId;
use crate::rpc::{Refusal, Request, Response};
use crate::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::testkit::simnet::{Link, NodeId, SimConfig, SimNet, SimNode, Transmit};
use crate::testkit::{NOW, TestFederation, TestOrg};
use crate::time::Timestamp;
use crate::urgency::Urgency;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::{Index, IndexMut};
use std::rc::Rc;
use std::time::Duration;

pub const LATENCY: Duration = Duration::from_millis(40);
/// How long a requester waits for an answer before its request fails, as
/// libp2p's request-response does.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Simulated tokens of receipts carry this bit; deliveries carry the
/// outbox's own token.
const RECEIPT: u64 = 1 << 63;

/// What every node knows of the others: regions and revocations (the
/// directory) and where each organization's node is (its addresses).
#[derive(Default)]
pub struct Dir {
    pub regions: BTreeMap<OrgId, RegionCode>,
    pub revoked: BTreeSet<OrgId>,
    pub addresses: BTreeMap<OrgId, NodeId>,
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

pub struct OutboxNode {
    pub org: TestOrg,
    pub relay: Option<OrgId>,
    pub outbox: Outbox,
    dir: Rc<RefCell<Dir>>,
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
    /// Peers with a connection up, by organization.
    peers: BTreeMap<OrgId, NodeId>,
    transmits: VecDeque<Transmit>,
    dials: VecDeque<NodeId>,
}

impl OutboxNode {
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

    fn store_and_queue(&mut self, now: Timestamp, package: SealedPackage) {
        let entry = (self.outbox).entry_for(now, PackageMeta::of(&package), &*self.dir.borrow());
        self.packages.insert(package.header.id, package);
        self.stored.insert(entry.id(), entry.clone());
        self.outbox.enqueue(now, entry).expect("a new package");
        self.pump(now);
    }

    /// What this node answers to a package from `from`: its inbox for its
    /// own packages, the machine's decision for the others.
    fn answer(&mut self, now: Timestamp, from: OrgId, package: SealedPackage) -> Response {
        let verdict = (self.outbox).inbound(now, from, &package, &*self.dir.borrow());
        match verdict {
            Inbound::Answer(response) => response,
            Inbound::Relay => {
                self.store_and_queue(now, package);
                Response::Custody
            }
            Inbound::ForUs => {
                if let Some(refusal) = &self.refuse {
                    return Response::Refused(refusal.clone());
                }
                if self.fetching > 0 {
                    self.fetching -= 1;
                    return Response::Fetching {
                        have: 10,
                        total: 100,
                    };
                }
                let id = package.header.id;
                match self.inbox.get(&id) {
                    // A retry after a lost receipt: the same receipt again.
                    Some((held, receipt)) if held.body == package.body => {
                        Response::Receipt(receipt.clone())
                    }
                    Some(_) => Response::Refused(seal::SealError::Replay(id).into()),
                    None => {
                        let receipt =
                            Signed::sign(&self.org.identity, &Receipt::for_package(&package, now));
                        self.inbox.insert(id, (package, receipt.clone()));
                        self.accepted.push(id);
                        Response::Receipt(receipt)
                    }
                }
            }
        }
    }

    /// Carries out everything the machine asked for.
    fn pump(&mut self, now: Timestamp) {
        while let Some(output) = self.outbox.poll_output() {
            match output {
                Output::Deliver { token, to, id } => {
                    self.sent.push((now, id, to));
                    let package = self.packages.get(&id).expect("bytes stored").clone();
                    let peer = *self
                        .peers
                        .get(&to)
                        .expect("a delivery goes to a ready peer only");
                    self.transmits.push_back(Transmit {
                        to: peer,
                        token: token.raw(),
                        request: Request::Deliver(package),
                    });
                }
                Output::Dial { to } => {
                    let address = self.dir.borrow().addresses[&to];
                    self.dials.push_back(address);
                }
                Output::SendReceipt { to, receipt } => {
                    let peer = *self
                        .peers
                        .get(&to)
                        .expect("a receipt goes to a ready peer only");
                    self.transmits.push_back(Transmit {
                        to: peer,
                        token: RECEIPT,
                        request: Request::Receipt(receipt),
                    });
                }
                Output::Persist(entry) => {
                    assert!(self.packages.contains_key(&entry.id()));
                    self.stored.insert(entry.id(), entry);
                }
                Output::Remove(id) => {
                    self.stored.remove(&id);
                    self.packages.remove(&id);
                }
                Output::Event(event) => self.events.push((now, event)),
            }
        }
    }

    fn org_at(&self, peer: NodeId) -> OrgId {
        let dir = self.dir.borrow();
        let found = dir.addresses.iter().find(|(_, n)| **n == peer);
        *found.expect("a node of the simulation").0
    }
}

impl SimNode for OutboxNode {
    fn connection_key(&self) -> Option<OrgId> {
        Some(self.id())
    }

    fn handle_peer_up(&mut self, now: Timestamp, peer: NodeId, key: Option<OrgId>) {
        let org = key.expect("every outbox node has a key");
        self.peers.insert(org, peer);
        self.outbox.handle_peer_ready(now, org);
        self.pump(now);
    }

    fn handle_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        let org = self.org_at(peer);
        self.peers.remove(&org);
        self.outbox.handle_peer_gone(org);
        self.pump(now);
    }

    fn handle_request(&mut self, now: Timestamp, from: NodeId, request: Request) -> Response {
        let from = self.org_at(from);
        let response = match request {
            Request::Deliver(package) => self.answer(now, from, package),
            Request::Receipt(receipt) => {
                // The sender answers Done whatever happened.
                let _ = self.outbox.handle_receipt(now, receipt);
                Response::Done
            }
            other => panic!("an outbox node is sent only packages and receipts, not {other:?}"),
        };
        self.pump(now);
        response
    }

    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response) {
        if token & RECEIPT == 0 {
            (self.outbox).handle_response(now, Token::from_raw(token), response);
            self.pump(now);
        }
    }

    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        if token & RECEIPT == 0 {
            (self.outbox).handle_failure(now, Token::from_raw(token), "timed out");
            self.pump(now);
        }
    }

    fn poll_transmit(&mut self, _now: Timestamp) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.outbox.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.outbox.handle_timeout(now);
        self.pump(now);
    }

    fn poll_dial(&mut self) -> Option<NodeId> {
        self.dials.pop_front()
    }

    fn handle_dial_failed(&mut self, now: Timestamp, peer: NodeId) {
        let org = self.org_at(peer);
        self.outbox.handle_dial_failed(org, "connection refused");
        self.pump(now);
    }
}

/// Outbox nodes on one simulated network, sharing one directory.
pub struct Sim {
    net: SimNet<OutboxNode>,
    dir: Rc<RefCell<Dir>>,
    fed: TestFederation,
    packages_made: u64,
}

impl Index<usize> for Sim {
    type Output = OutboxNode;

    fn index(&self, i: usize) -> &OutboxNode {
        self.net.node(i)
    }
}

impl IndexMut<usize> for Sim {
    fn index_mut(&mut self, i: usize) -> &mut OutboxNode {
        self.net.node_mut(i)
    }
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let config = SimConfig {
            link: Link {
                latency: LATENCY,
                ..Link::default()
            },
            failure_after: REQUEST_TIMEOUT,
            seed,
        };
        Sim {
            net: SimNet::new(config, NOW),
            dir: Rc::default(),
            fed: TestFederation::new("outbox-sim"),
            packages_made: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.net.len()
    }

    /// Loses this fraction of every message, requests and answers alike.
    pub fn set_loss(&mut self, loss: f64) {
        self.net.set_default_loss(loss);
    }

    /// A node in `region`, relaying through node `relay` if given.
    pub fn node(&mut self, region: &str, relay: Option<usize>) -> usize {
        let index = self.net.len();
        let org = self.fed.org(
            index as u64 + 1,
            OrgLevel::District,
            region,
            &[Specialty::Cardiology],
        );
        let mut dir = self.dir.borrow_mut();
        dir.regions.insert(org.id(), org.region.clone());
        dir.addresses.insert(org.id(), index);
        drop(dir);
        let relay = relay.map(|r| self.net.node(r).id());
        let outbox = Outbox::new(config(&org, relay), index as u64, []);
        self.net.add(OutboxNode {
            org,
            relay,
            outbox,
            dir: self.dir.clone(),
            packages: BTreeMap::new(),
            stored: BTreeMap::new(),
            inbox: BTreeMap::new(),
            accepted: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            refuse: None,
            fetching: 0,
            peers: BTreeMap::new(),
            transmits: VecDeque::new(),
            dials: VecDeque::new(),
        })
    }

    /// Seals a package from `from` to `to`, stores it and queues it, as a
    /// node does when a clinician sends a request.
    pub fn send(&mut self, from: usize, to: usize, lifetime: Duration) -> PackageId {
        self.packages_made += 1;
        let n = self.packages_made;
        let mut id = [0; 16];
        id[..8].copy_from_slice(&n.to_le_bytes());
        id[8] = from as u8;
        let now = self.net.now();
        let header = EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId(id),
            sender: self.net.node(from).id(),
            recipient: self.net.node(to).id(),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::District,
                urgency: Urgency::Planned,
                region: None,
            },
            created: now,
            expires: now.saturating_add(lifetime),
            attachments: Vec::new(),
        };
        let recipient = self.net.node(to).org.sealing.public();
        let node = self.net.node_mut(from);
        let body = format!("package {n}");
        let package = seal::seal(
            header,
            &node.org.sealing,
            &recipient,
            [n as u8; 32],
            body.as_bytes(),
        )
        .expect("seals");
        node.store_and_queue(now, package);
        PackageId(id)
    }

    /// Takes a node's network down or up. Its machine keeps running; peers
    /// see its connections close.
    pub fn set_online(&mut self, i: usize, up: bool) {
        self.net.set_online(i, up);
    }

    /// Splits the network by `side` until [`Sim::heal`].
    pub fn partition(&mut self, side: impl Fn(usize) -> usize) {
        self.net.partition(side);
    }

    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Connects two nodes now, as a node coming up dials its peers.
    pub fn connect(&mut self, a: usize, b: usize) {
        self.net.connect(a, b);
    }

    /// Stops a node and starts it again from what it persisted: its
    /// connections close and the machine is rebuilt from stored entries.
    pub fn restart(&mut self, i: usize) {
        self.set_online(i, false);
        let node = self.net.node_mut(i);
        let stored = node.stored.values().cloned();
        node.outbox = Outbox::new(config(&node.org, node.relay), 1000 + i as u64, stored);
        self.set_online(i, true);
    }

    /// Runs everything due up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Timestamp) {
        let now = self.net.now();
        if until > now {
            self.net.run_for(until.since(now));
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        self.net.run_for(d);
    }
}

fn config(org: &TestOrg, relay: Option<OrgId>) -> super::super::Config {
    super::super::Config {
        me: org.id(),
        region: org.region.clone(),
        relay,
        custody: super::super::Custody::DEFAULT,
    }
}
