//! A simulated network for the protocol machines: N nodes, simulated time,
//! per-link latency, jitter (which reorders), loss and partitions, all
//! from one seed.
//!
//! Time jumps from one event to the next (a delivery, or the earliest
//! `poll_timeout` of any node), so a day of anti-entropy runs in
//! milliseconds and two runs with the same seed are identical. Every
//! request and response crosses `wire::encode` and `wire::decode`, so byte
//! counts are real and a frame over its limit is caught (and counted as a
//! violation) instead of passing silently. Lost messages come back to the
//! requester as a failure after `SimConfig::failure_after`, as a
//! request-response transport's timeout would.

use crate::rpc::{Hello, HelloAnswer, Request, Response};
use crate::time::Timestamp;
use crate::wire::{self, RecordBatch, RecordRequest, SyncSummaries, WireMessage};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// A node's index in the network.
pub type NodeId = usize;

mod node;
pub use node::{SimNode, Transmit};

mod config;
pub use config::{Link, NodeStats, SimConfig, Violation};
mod marks;
use marks::Marks;

#[derive(Debug)]
enum Event {
    Request {
        from: NodeId,
        to: NodeId,
        token: u64,
        frame: Vec<u8>,
    },
    Response {
        to: NodeId,
        token: u64,
        frame: Vec<u8>,
    },
    Failure {
        to: NodeId,
        token: u64,
    },
    Hello {
        from: NodeId,
        to: NodeId,
        frame: Vec<u8>,
    },
    HelloAnswer {
        from: NodeId,
        to: NodeId,
        frame: Vec<u8>,
    },
    /// `to`'s Hello to `peer` got no answer.
    HelloFailed {
        to: NodeId,
        peer: NodeId,
    },
    /// `from`'s dial reaches `to`, or fails.
    Dial {
        from: NodeId,
        to: NodeId,
    },
}

pub struct SimNet<N> {
    nodes: Vec<N>,
    now: Timestamp,
    config: SimConfig,
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Side of each node while partitioned; messages cross no side.
    sides: Option<Vec<usize>>,
    /// Pairs with a connection up, each in both orders, so a node's
    /// connections are one range of the set.
    connected: BTreeSet<(NodeId, NodeId)>,
    /// Pairs whose connection closed and was not opened again: nothing
    /// crosses them. Pairs never connected exchange as if the transport
    /// dialled on demand (as libp2p's request-response does), so an
    /// exchange driven from outside needs no `connect`.
    closed: BTreeSet<(NodeId, NodeId)>,
    /// Nodes whose network is down: no connection, no dial reaches them.
    offline: BTreeSet<NodeId>,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    draws: u64,
    stats: Vec<NodeStats>,
    violations: Vec<Violation>,
    /// Nodes driven since the last flush: only they can have output queued
    /// or a new timeout, so a step costs the same with 10 nodes or 10,000.
    dirty: Marks,
    /// Nodes driven since the caller last asked (`take_driven`).
    driven: Marks,
    /// Each node's `poll_timeout` as last read, and a heap of them; entries
    /// that no longer match are dropped when they come up.
    timeout_of: Vec<Option<Timestamp>>,
    timers: BinaryHeap<Reverse<(Timestamp, NodeId)>>,
}

impl<N: SimNode> SimNet<N> {
    pub fn new(config: SimConfig, start: Timestamp) -> Self {
        Self {
            nodes: Vec::new(),
            now: start,
            config,
            links: BTreeMap::new(),
            sides: None,
            connected: BTreeSet::new(),
            closed: BTreeSet::new(),
            offline: BTreeSet::new(),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            draws: 0,
            stats: Vec::new(),
            violations: Vec::new(),
            dirty: Marks::default(),
            driven: Marks::default(),
            timeout_of: Vec::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// A node about to be driven: its output and timeout are read on the
    /// next flush.
    fn drive(&mut self, i: NodeId) -> &mut N {
        self.dirty.mark(i);
        self.driven.mark(i);
        &mut self.nodes[i]
    }

    /// The nodes driven since the last call, in index order: only they can
    /// have anything new for the caller to read, so reading them costs the
    /// same with 10 nodes or 10,000.
    pub fn take_driven(&mut self) -> Vec<NodeId> {
        self.driven.take()
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: NodeId) -> &N {
        &self.nodes[i]
    }

    /// For input from outside the network (an organization publishing, a
    /// command); whatever it makes the node send leaves on the next step.
    pub fn node_mut(&mut self, i: NodeId) -> &mut N {
        self.drive(i)
    }

    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    pub fn into_nodes(self) -> Vec<N> {
        self.nodes
    }

    pub fn stats(&self, i: NodeId) -> NodeStats {
        self.stats[i]
    }

    /// All nodes' traffic together.
    pub fn total(&self) -> NodeStats {
        self.stats
            .iter()
            .fold(NodeStats::default(), |a, s| NodeStats {
                requests: a.requests + s.requests,
                responses: a.responses + s.responses,
                bytes: a.bytes + s.bytes,
                records: a.records + s.records,
                lost: a.lost + s.lost,
                largest_frame: a.largest_frame.max(s.largest_frame),
            })
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Adds a node, not yet connected to anyone; returns its id.
    pub fn add(&mut self, node: N) -> NodeId {
        self.nodes.push(node);
        self.stats.push(NodeStats::default());
        self.dirty.grow();
        self.driven.grow();
        self.timeout_of.push(None);
        self.drive(self.nodes.len() - 1);
        if let Some(sides) = &mut self.sides {
            sides.push(0);
        }
        self.nodes.len() - 1
    }

    /// Opens a connection between `a` and `b`: each learns the other's
    /// connection key (nodes without admission take it as admitted).
    /// Nothing happens when they are connected already or one is offline.
    pub fn connect(&mut self, a: NodeId, b: NodeId) {
        if a == b || self.offline.contains(&a) || self.offline.contains(&b) {
            return;
        }
        if !self.connected.insert((a, b)) {
            return;
        }
        self.connected.insert((b, a));
        self.closed.remove(&pair(a, b));
        let now = self.now;
        let (key_a, key_b) = (
            self.nodes[a].connection_key(),
            self.nodes[b].connection_key(),
        );
        self.drive(a).handle_peer_up(now, b, key_b);
        self.drive(b).handle_peer_up(now, a, key_a);
    }

    pub fn connect_all(&mut self) {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                self.connect(a, b);
            }
        }
    }

    pub fn disconnect(&mut self, a: NodeId, b: NodeId) {
        if !self.connected.remove(&(a, b)) {
            return;
        }
        self.connected.remove(&(b, a));
        self.closed.insert(pair(a, b));
        let now = self.now;
        self.drive(a).handle_peer_down(now, b);
        self.drive(b).handle_peer_down(now, a);
    }

    pub fn is_connected(&self, a: NodeId, b: NodeId) -> bool {
        self.connected.contains(&(a, b))
    }

    /// Whether a request from `a` can reach `b` now (see `closed`).
    fn can_reach(&self, a: NodeId, b: NodeId) -> bool {
        !self.offline.contains(&a)
            && !self.offline.contains(&b)
            && !self.closed.contains(&pair(a, b))
    }

    /// Takes a node's network down (its connections close, dials to and
    /// from it fail) or up again (nobody reconnects by itself). The node's
    /// machines keep running.
    pub fn set_online(&mut self, node: NodeId, up: bool) {
        if up {
            self.offline.remove(&node);
            return;
        }
        self.offline.insert(node);
        let pairs: Vec<_> = (self.connected.range((node, 0)..=(node, NodeId::MAX)))
            .map(|&(_, peer)| pair(node, peer))
            .collect();
        for (a, b) in pairs {
            self.disconnect(a, b);
        }
    }

    /// Changes the loss of every link not set with [`SimNet::set_link`].
    pub fn set_default_loss(&mut self, loss: f64) {
        self.config.link.loss = loss;
    }

    /// Overrides the default link from `a` to `b` (one direction).
    pub fn set_link(&mut self, a: NodeId, b: NodeId, link: Link) {
        self.links.insert((a, b), link);
    }

    /// Splits the network: `side(i)` names node i's side, and nothing
    /// crosses between sides until [`SimNet::heal`]. Peers stay connected,
    /// as over a network that silently drops: only failures tell.
    pub fn partition(&mut self, side: impl Fn(NodeId) -> usize) {
        self.sides = Some((0..self.nodes.len()).map(side).collect());
    }

    pub fn heal(&mut self) {
        self.sides = None;
    }

    fn link(&self, a: NodeId, b: NodeId) -> Link {
        self.links.get(&(a, b)).copied().unwrap_or(self.config.link)
    }

    fn crosses(&self, a: NodeId, b: NodeId) -> bool {
        self.sides.as_ref().is_some_and(|s| s[a] != s[b])
    }

    /// Uniform in [0, 1) from the seed.
    fn unit(&mut self) -> f64 {
        let bytes = super::seed(&format!("simnet/{}", self.config.seed), self.draws);
        self.draws += 1;
        let x = u64::from_le_bytes(bytes[..8].try_into().expect("8 of 32"));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn schedule(&mut self, at: Timestamp, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// When a message sent now on the link from `a` to `b` arrives, or
    /// `None` if it is lost.
    fn arrival(&mut self, a: NodeId, b: NodeId) -> Option<Timestamp> {
        let link = self.link(a, b);
        let lost = self.crosses(a, b) || (link.loss > 0.0 && self.unit() < link.loss);
        if lost {
            self.stats[a].lost += 1;
            return None;
        }
        let jitter = if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            link.jitter.mul_f64(self.unit())
        };
        Some(self.now.saturating_add(link.latency + jitter))
    }

    fn count(&mut self, from: NodeId, frame_len: usize, records: usize) {
        let s = &mut self.stats[from];
        s.bytes += frame_len as u64;
        s.records += records as u64;
        s.largest_frame = s.largest_frame.max(frame_len);
    }

    /// Checks the lists inside a message against their own kinds' limits,
    /// the stricter of the two a node may apply.
    fn check_inner(
        &mut self,
        from: NodeId,
        request: Option<&Request>,
        response: Option<&Response>,
    ) {
        fn check<M: WireMessage>(m: &M, what: &'static str) -> Option<Violation> {
            let len = wire::encoded_len(m);
            (len > M::MAX_LEN).then_some(Violation {
                from: 0,
                what,
                len,
                max: M::MAX_LEN,
            })
        }
        let v = match (request, response) {
            (Some(Request::SyncOffer(o)), _) => check(o, "SyncOffer"),
            (Some(Request::PushRecords(b)), _) => check(b, "PushRecords"),
            (Some(Request::WantRecords(r)), _) => check::<RecordRequest>(r, "WantRecords"),
            (_, Some(Response::Records(b))) => check::<RecordBatch>(b, "Records"),
            (_, Some(Response::Summaries(s))) => check::<SyncSummaries>(s, "Summaries"),
            _ => None,
        };
        if let Some(v) = v {
            self.violations.push(Violation { from, ..v });
        }
    }

    /// Sends everything the nodes have queued, and closes the connections
    /// they cut.
    fn flush(&mut self) {
        let now = self.now;
        while !self.dirty.is_empty() {
            for from in self.dirty.take() {
                while let Some((to, hello)) = self.nodes[from].poll_hello(now) {
                    self.send_hello(from, to, &hello);
                }
                while let Some(t) = self.nodes[from].poll_transmit(now) {
                    self.send_request(from, t);
                }
                while let Some(peer) = self.nodes[from].poll_cut() {
                    self.disconnect(from, peer);
                }
                while let Some(to) = self.nodes[from].poll_dial() {
                    if !self.is_connected(from, to) {
                        let at = self.now.saturating_add(self.link(from, to).latency);
                        self.schedule(at, Event::Dial { from, to });
                    }
                }
                let timeout = self.nodes[from].poll_timeout();
                if timeout != self.timeout_of[from] {
                    self.timeout_of[from] = timeout;
                    if let Some(t) = timeout {
                        self.timers.push(Reverse((t, from)));
                    }
                }
            }
        }
    }

    /// Encodes a Hello or its answer as the hello protocol's codec would;
    /// `None` (and a violation) when it is over the limit.
    fn hello_frame<M: WireMessage>(
        &mut self,
        from: NodeId,
        what: &'static str,
        m: &M,
    ) -> Option<Vec<u8>> {
        match wire::encode(m) {
            Ok(frame) if frame.len() <= crate::rpc::MAX_HELLO_LEN => {
                self.count(from, frame.len(), 0);
                Some(frame)
            }
            _ => {
                self.violations.push(Violation {
                    from,
                    what,
                    len: wire::encoded_len(m),
                    max: crate::rpc::MAX_HELLO_LEN,
                });
                None
            }
        }
    }

    fn send_hello(&mut self, from: NodeId, to: NodeId, hello: &Hello) {
        self.stats[from].requests += 1;
        let event = match self.hello_frame(from, "Hello", hello) {
            Some(frame) => self
                .arrival(from, to)
                .map(|at| (at, Event::Hello { from, to, frame })),
            None => None,
        };
        let (at, event) = event.unwrap_or_else(|| {
            let at = self.now.saturating_add(self.config.failure_after);
            (at, Event::HelloFailed { to: from, peer: to })
        });
        self.schedule(at, event);
    }

    fn send_request(&mut self, from: NodeId, t: Transmit) {
        self.check_inner(from, Some(&t.request), None);
        let records = match &t.request {
            Request::PushRecords(b) => b.records.len(),
            _ => 0,
        };
        let frame = match wire::encode(&t.request) {
            Ok(f) => f,
            Err(e) => {
                self.violations.push(Violation {
                    from,
                    what: "Request",
                    len: match e {
                        wire::WireError::TooLarge { len, .. } => len,
                        _ => 0,
                    },
                    max: Request::MAX_LEN,
                });
                let at = self.now.saturating_add(self.config.failure_after);
                self.schedule(
                    at,
                    Event::Failure {
                        to: from,
                        token: t.token,
                    },
                );
                return;
            }
        };
        self.stats[from].requests += 1;
        self.count(from, frame.len(), records);
        match self.arrival(from, t.to) {
            Some(at) => self.schedule(
                at,
                Event::Request {
                    from,
                    to: t.to,
                    token: t.token,
                    frame,
                },
            ),
            None => {
                let at = self.now.saturating_add(self.config.failure_after);
                self.schedule(
                    at,
                    Event::Failure {
                        to: from,
                        token: t.token,
                    },
                );
            }
        }
    }

    fn deliver(&mut self, event: Event) {
        let now = self.now;
        match event {
            Event::Request {
                from,
                to,
                token,
                frame,
            } => {
                if !self.can_reach(from, to) {
                    // The connection closed while the request travelled.
                    let at = now.saturating_add(self.config.failure_after);
                    return self.schedule(at, Event::Failure { to: from, token });
                }
                let request: Request = wire::decode(&frame).expect("encoded by the simnet");
                let response = self.drive(to).handle_request(now, from, request);
                self.check_inner(to, None, Some(&response));
                let records = match &response {
                    Response::Records(b) => b.records.len(),
                    _ => 0,
                };
                let frame = match wire::encode(&response) {
                    Ok(f) => f,
                    Err(_) => {
                        self.violations.push(Violation {
                            from: to,
                            what: "Response",
                            len: wire::encoded_len(&response),
                            max: Response::MAX_LEN,
                        });
                        let at = now.saturating_add(self.config.failure_after);
                        self.schedule(at, Event::Failure { to: from, token });
                        return;
                    }
                };
                self.stats[to].responses += 1;
                self.count(to, frame.len(), records);
                match self.arrival(to, from) {
                    Some(at) => self.schedule(
                        at,
                        Event::Response {
                            to: from,
                            token,
                            frame,
                        },
                    ),
                    None => {
                        let at = now.saturating_add(self.config.failure_after);
                        self.schedule(at, Event::Failure { to: from, token });
                    }
                }
            }
            Event::Response { to, token, frame } => {
                let response: Response = wire::decode(&frame).expect("encoded by the simnet");
                self.drive(to).handle_response(now, token, response);
            }
            Event::Failure { to, token } => self.drive(to).handle_failure(now, token),
            Event::Hello { from, to, frame } => {
                let hello: Hello = wire::decode(&frame).expect("encoded by the simnet");
                let answer = self.drive(to).handle_hello(now, from, hello);
                self.stats[to].responses += 1;
                let event = match self.hello_frame(to, "HelloAnswer", &answer) {
                    Some(frame) => self.arrival(to, from).map(|at| {
                        let answer = Event::HelloAnswer {
                            from: to,
                            to: from,
                            frame,
                        };
                        (at, answer)
                    }),
                    None => None,
                };
                let (at, event) = event.unwrap_or_else(|| {
                    let at = now.saturating_add(self.config.failure_after);
                    (at, Event::HelloFailed { to: from, peer: to })
                });
                self.schedule(at, event);
            }
            Event::HelloAnswer { from, to, frame } => {
                let answer: HelloAnswer = wire::decode(&frame).expect("encoded by the simnet");
                self.drive(to).handle_hello_answer(now, from, answer);
            }
            Event::HelloFailed { to, peer } => self.drive(to).handle_hello_failed(now, peer),
            Event::Dial { from, to } => {
                let reachable = !self.crosses(from, to)
                    && !self.offline.contains(&from)
                    && !self.offline.contains(&to);
                if reachable {
                    self.connect(from, to);
                } else {
                    self.drive(from).handle_dial_failed(now, to);
                }
            }
        }
    }

    fn next_timeout(&mut self) -> Option<(Timestamp, NodeId)> {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if self.timeout_of[i] == Some(t) {
                return Some((t, i));
            }
            self.timers.pop();
        }
        None
    }

    /// Runs the next event (a delivery, or a node's timeout) no later than
    /// `until`; returns false when there is none.
    pub fn step(&mut self, until: Timestamp) -> bool {
        self.flush();
        let message = self.queue.peek().map(|Reverse((t, _))| *t);
        let timeout = self.next_timeout();
        match (message, timeout) {
            (Some(m), t) if m <= until && t.is_none_or(|(t, _)| m <= t) => {
                let Reverse((at, seq)) = self.queue.pop().expect("peeked");
                self.now = self.now.max(at);
                let event = self.events.remove(&seq).expect("scheduled");
                self.deliver(event);
            }
            (_, Some((t, node))) if t <= until => {
                self.now = self.now.max(t);
                let now = self.now;
                self.drive(node).handle_timeout(now);
            }
            _ => return false,
        }
        self.flush();
        true
    }

    /// Runs until `done` holds (checked after every event) or `limit` of
    /// simulated time passed; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let until = self.now.saturating_add(limit);
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return done(self);
            }
        }
    }

    /// Runs every event up to `d` from now.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now.saturating_add(d);
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Hands `request` from `from` straight to `to` and returns the answer,
    /// through the codec and counted, but with no latency, loss or
    /// partition and no machine of `from` involved: for baselines and
    /// probes that are not part of any machine's exchange.
    pub fn call(
        &mut self,
        from: NodeId,
        to: NodeId,
        request: Request,
    ) -> Result<Response, Violation> {
        let oversize = |what, len, max| Violation {
            from,
            what,
            len,
            max,
        };
        self.check_inner(from, Some(&request), None);
        let records = match &request {
            Request::PushRecords(b) => b.records.len(),
            _ => 0,
        };
        let frame = wire::encode(&request)
            .map_err(|_| oversize("Request", wire::encoded_len(&request), Request::MAX_LEN))?;
        self.stats[from].requests += 1;
        self.count(from, frame.len(), records);
        let request = wire::decode(&frame).expect("encoded just now");
        let now = self.now;
        let response = self.drive(to).handle_request(now, from, request);
        self.check_inner(to, None, Some(&response));
        let records = match &response {
            Response::Records(b) => b.records.len(),
            _ => 0,
        };
        let frame = wire::encode(&response).map_err(|_| Violation {
            from: to,
            ..oversize("Response", wire::encoded_len(&response), Response::MAX_LEN)
        })?;
        self.stats[to].responses += 1;
        self.count(to, frame.len(), records);
        Ok(wire::decode(&frame).expect("encoded just now"))
    }

    /// Delivers every message in flight, and what those cause, without
    /// waking any node's timer: one exchange, run to its end.
    pub fn settle(&mut self) {
        loop {
            self.flush();
            let Some(Reverse((at, seq))) = self.queue.pop() else {
                return;
            };
            self.now = self.now.max(at);
            let event = self.events.remove(&seq).expect("scheduled");
            self.deliver(event);
        }
    }
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests;
