//! Directory synchronisation as a sans-I/O machine: gossip ingest,
//! anti-entropy rounds with random peers, the directory scope, and frames
//! cut to the wire limits.
//!
//! Shaped like quinn-proto's `Connection`: it owns the [`Directory`], input
//! arrives through `handle_*(now, ..)`, and the shell drains
//! [`DirectorySync::poll_output`] (requests to send, records to persist,
//! rejections to report) and sleeps until [`DirectorySync::poll_timeout`].
//! It reads no clock, socket or file, and draws its random peer choices
//! from the seed it was given, so the node, the simulated network and the
//! simulations all run exactly the same exchange, reproducibly.
//!
//! One exchange, started by the side whose round it is:
//! `SyncDigest` (one hash over the records both keep), answered `Same`
//! (the exchange is over: most rounds) or `Differs` → `SyncOffer` (bucket
//! hashes) → `Summaries` of the differing buckets → `PushRecords` of what
//! the peer lacks (answered `Done`) and `WantRecords` of what we lack
//! (answered `Records`, asked again for the rest when an answer had to
//! stop at its frame limit).

mod answer;
mod intake;
mod outstanding;
mod quota;

use super::frames::{self, FrameBudget};
use super::{DigestMatch, Directory, Merge, RecordError, SignedRecord};
use crate::cert::{CertError, RegionCode, Trust};
use crate::identity::OrgId;
use crate::rpc::{Refusal, Request, Response};
use crate::time::Timestamp;
use intake::{Fate, record_org};
use multiaddr::Multiaddr;
use outstanding::Outstanding;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Which organizations a node keeps. A small node keeps its own region, and
/// asks its regional center for candidates elsewhere when it needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Federation,
    Region(RegionCode),
}

impl Scope {
    /// The region kept, if only one is.
    pub fn region(&self) -> Option<&RegionCode> {
        match self {
            Scope::Federation => None,
            Scope::Region(region) => Some(region),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub scope: Scope,
    /// Time between anti-entropy rounds. Gossip carries most records; rounds
    /// repair what gossip lost, so they can be rare.
    pub interval: Duration,
    /// A request with no answer by then counts as failed, so a silent peer
    /// cannot hold an exchange open (and its peer slot busy) forever.
    pub request_timeout: Duration,
    pub budget: FrameBudget,
    /// Seeds the choice of sync partners. Nodes should pass fresh random
    /// bytes; tests pass constants to replay a run.
    pub seed: [u8; 32],
}

impl SyncConfig {
    pub fn new(scope: Scope, seed: [u8; 32]) -> Self {
        Self {
            scope,
            interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            budget: FrameBudget::default(),
            seed,
        }
    }
}

/// Names one request the machine sent, so its answer or failure can be
/// matched to it. The shell keeps a map from its transport's request ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestToken(u64);

impl RequestToken {
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// What to tell gossipsub about a gossiped record: `Reject` penalises the
/// peer that forwarded it, `Ignore` only stops it spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// New to us: pass it on.
    Accept,
    /// Valid but held already, superseded, or out of our scope.
    Ignore,
    /// Invalid: forged, expired, revoked or malformed.
    Reject,
}

/// A record that changed the directory: the shell persists it and adds its
/// addresses to its routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub org: OrgId,
    pub sequence: u64,
    pub record: SignedRecord,
    pub addresses: Vec<Multiaddr>,
}

/// A record refused, with whom it came from and, when its certificate could
/// be read, whose it claimed to be (for the operator's list of refusals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<P> {
    pub from: Option<P>,
    pub org: Option<OrgId>,
    pub name: Option<String>,
    pub error: RecordError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent<P> {
    /// An exchange ended: every request of it was answered or failed.
    Finished {
        peer: P,
        /// Records pushed and acknowledged; `Done` does not say which of
        /// them changed the peer's directory.
        pushed: usize,
        /// Records from the peer that changed our directory.
        pulled: usize,
        failed: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    Transmit {
        to: P,
        token: RequestToken,
        request: Request,
    },
    Stored(Stored),
    Rejected(Rejection<P>),
    /// A held record no longer valid under the current trust (expired or
    /// revoked certificate): the shell deletes it from storage.
    Dropped {
        org: OrgId,
        name: String,
        reason: CertError,
    },
    Event(SyncEvent<P>),
}

/// What went wrong with an answer. None of these stops the machine; the
/// shell logs them and may score the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Answers that arrive after their request timed out or the peer left.
    #[error("no request with token {0:?} is waiting for an answer")]
    UnknownToken(RequestToken),
    #[error("peer answered a {asked} request with {got}")]
    Unexpected {
        asked: &'static str,
        got: &'static str,
    },
    #[error("peer refused a {asked} request: {refusal}")]
    Refused {
        asked: &'static str,
        refusal: Refusal,
    },
}

/// What an outstanding request asked, to read its answer.
#[derive(Debug)]
enum Asked {
    Digest,
    Offer,
    Push(usize),
    Want(Vec<OrgId>),
}

impl Asked {
    fn name(&self) -> &'static str {
        match self {
            Asked::Digest => "SyncDigest",
            Asked::Offer => "SyncOffer",
            Asked::Push(_) => "PushRecords",
            Asked::Want(_) => "WantRecords",
        }
    }
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Summaries(_) => "Summaries",
        Response::Records(_) => "Records",
        Response::Receipt(_) => "Receipt",
        Response::Custody => "Custody",
        Response::Done => "Done",
        Response::Refused(_) => "Refused",
        Response::Fetching { .. } => "Fetching",
        Response::Blob(_) => "Blob",
        Response::Recovering { .. } => "Recovering",
        Response::VideoAnswer(_) => "VideoAnswer",
        Response::Digest(_) => "Digest",
        Response::Answers(_) => "Answers",
    }
}

#[derive(Debug, Default)]
struct Exchange {
    in_flight: usize,
    /// The peer's summaries probably stopped at its frame limit: sync
    /// again at once for the buckets they left out.
    again: bool,
    pushed: usize,
    pulled: usize,
    failed: bool,
}

/// A lookup is charged this fraction of the directory's bytes besides its
/// answer, for the pass over the directory it makes: a region's district
/// asks its center a few times a day, a peer asking without end runs out
/// of its share like one pulling the directory in a loop.
const LOOKUP_SHARE: usize = 64;

/// The directory synchronisation machine. `P` names peers: the node's
/// `PeerId`, a simulated node's index.
#[derive(Debug)]
pub struct DirectorySync<P> {
    directory: Directory,
    config: SyncConfig,
    draws: u64,
    peers: BTreeSet<P>,
    /// Organizations whose records the scope left out, with the record
    /// found so, so rounds stop asking for that record. By its hash, since
    /// its certificate was not verified: a made-up record naming a member
    /// must not stop rounds asking for the member's own.
    out_of_scope: BTreeMap<OrgId, [u8; 32]>,
    pending: Outstanding<P>,
    exchanges: BTreeMap<P, Exchange>,
    next_token: u64,
    next_round: Option<Timestamp>,
    outputs: VecDeque<Output<P>>,
    quotas: quota::Quotas<P>,
}

impl<P: Copy + Ord + std::fmt::Debug> DirectorySync<P> {
    /// Starts from a directory loaded by the shell (from storage, records
    /// already verified when they were first stored).
    pub fn new(config: SyncConfig, directory: Directory) -> Self {
        let config = SyncConfig {
            budget: config.budget.clamped(),
            ..config
        };
        Self {
            directory,
            config,
            draws: 0,
            peers: BTreeSet::new(),
            out_of_scope: BTreeMap::new(),
            pending: Outstanding::default(),
            exchanges: BTreeMap::new(),
            next_token: 0,
            next_round: None,
            outputs: VecDeque::new(),
            quotas: quota::Quotas::default(),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn into_directory(self) -> Directory {
        self.directory
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.iter()
    }

    /// Whether an exchange with `peer` is under way.
    pub fn is_syncing_with(&self, peer: &P) -> bool {
        self.exchanges.contains_key(peer)
    }

    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// The next round or request deadline, whichever comes first. `None`
    /// until the first input gave the machine a notion of `now`.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let deadline = self.pending.next_deadline();
        match (self.next_round, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn arm(&mut self, now: Timestamp) {
        if self.next_round.is_none() {
            self.next_round = Some(now.saturating_add(self.config.interval));
        }
    }

    /// A peer may now be asked and chosen for rounds; it is synced with at
    /// once, so a newcomer does not wait a whole interval for the directory.
    pub fn handle_peer_admitted(&mut self, now: Timestamp, peer: P) {
        self.arm(now);
        if self.peers.insert(peer) {
            self.start_sync(now, peer);
        }
    }

    /// The peer left: its outstanding requests will never be answered.
    pub fn handle_peer_gone(&mut self, now: Timestamp, peer: P) {
        self.arm(now);
        self.peers.remove(&peer);
        for token in self.pending.to(peer) {
            self.fail(now, token);
        }
    }

    /// Starts an exchange with `peer` now, unless one is under way. The
    /// shell calls it for a peer it has reasons to sync with (and the
    /// simulations, to follow their own schedule); rounds call it for a
    /// random peer.
    pub fn start_sync(&mut self, now: Timestamp, peer: P) -> Option<RequestToken> {
        self.arm(now);
        if self.exchanges.contains_key(&peer) {
            return None;
        }
        self.exchanges.insert(peer, Exchange::default());
        let digest = self.directory.sync_digest(self.config.scope.region());
        Some(self.send(now, peer, Asked::Digest, Request::SyncDigest(digest)))
    }

    /// Goes on with the bucket hashes, in an exchange whose digests
    /// differed (or whose summaries stopped at their frame limit).
    fn offer(&mut self, now: Timestamp, peer: P) {
        let offer = self.directory.sync_offer(self.config.scope.region());
        self.send(now, peer, Asked::Offer, Request::SyncOffer(offer));
    }

    /// Expires requests past their deadline and runs a round when it is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.arm(now);
        for token in self.pending.expired(now) {
            self.fail(now, token);
        }
        if self.next_round.is_some_and(|t| t <= now) {
            self.next_round = Some(now.saturating_add(self.config.interval));
            let idle: Vec<P> = self
                .peers
                .iter()
                .filter(|p| !self.exchanges.contains_key(p))
                .copied()
                .collect();
            if !idle.is_empty() {
                let pick = idle[self.below(idle.len())];
                self.start_sync(now, pick);
            }
        }
    }

    /// A record gossiped by `from`.
    pub fn handle_gossip(
        &mut self,
        now: Timestamp,
        from: P,
        record: SignedRecord,
        trust: &Trust,
    ) -> GossipVerdict {
        self.arm(now);
        match self.accept(now, Some(from), vec![record], false, trust)[0] {
            Fate::Changed => GossipVerdict::Accept,
            Fate::Unchanged | Fate::OutOfScope => GossipVerdict::Ignore,
            Fate::Rejected => GossipVerdict::Reject,
        }
    }

    /// Records wanted whatever the scope: the node's own record, records it
    /// publishes, candidates its regional center sent for a request.
    pub fn insert_wanted(
        &mut self,
        now: Timestamp,
        from: Option<P>,
        records: Vec<SignedRecord>,
        trust: &Trust,
    ) -> Vec<Result<Merge, RecordError>> {
        self.arm(now);
        let results = self.directory.insert_many(records.clone(), trust, now);
        for (record, result) in records.into_iter().zip(&results) {
            self.report(from, record, result);
        }
        results
    }

    /// After the trust changed (a revocation adopted, time passing an
    /// expiry): drops records it no longer vouches for.
    pub fn handle_trust_changed(&mut self, now: Timestamp, trust: &Trust) {
        self.arm(now);
        let names: BTreeMap<OrgId, String> = self
            .directory
            .entries()
            .map(|e| (e.org(), e.name().to_owned()))
            .collect();
        for (org, reason) in self.directory.retain_valid(trust, now) {
            let name = names.get(&org).cloned().unwrap_or_default();
            self.outputs
                .push_back(Output::Dropped { org, name, reason });
        }
    }

    /// Answers a peer's directory request. Other requests are not this
    /// machine's and are refused; the shell dispatches by variant (see
    /// [`is_directory_request`]). A peer whose requests have cost this
    /// node their share (see `quota`) is refused as transient.
    pub fn handle_request(
        &mut self,
        now: Timestamp,
        from: P,
        request: Request,
        trust: &Trust,
    ) -> Response {
        self.within_share(now, from, |m| m.answer(now, from, request, trust))
    }

    /// Answers a peer's lookup the shell serves from the directory (a
    /// regional center's routing candidates) with what `answer` finds in
    /// it, charged like the directory requests: the answer's bytes and a
    /// sixty-fourth of the directory's, for the pass over it a lookup
    /// makes. A peer past its share is refused as transient.
    pub fn handle_lookup(
        &mut self,
        now: Timestamp,
        from: P,
        answer: impl FnOnce(&Directory) -> crate::wire::RecordBatch,
    ) -> Response {
        self.within_share(now, from, |m| {
            let records = answer(&m.directory);
            let cost = (frames::frame_len(&records) as u64).saturating_add(m.pass_cost());
            (Response::Records(records), cost)
        })
    }

    /// What one pass over the directory is charged.
    fn pass_cost(&self) -> u64 {
        (self.directory.bytes() / LOOKUP_SHARE) as u64
    }

    /// `serve`'s answer, charged what it reports to `from`'s share; a
    /// refusal instead if that share is spent.
    fn within_share(
        &mut self,
        now: Timestamp,
        from: P,
        serve: impl FnOnce(&mut Self) -> (Response, u64),
    ) -> Response {
        self.arm(now);
        let size = self.directory.bytes();
        if let Err(wait) = self.quotas.check(now, &from, size) {
            return quota::refusal(wait);
        }
        let (response, cost) = serve(self);
        self.quotas.charge(now, from, cost, size);
        response
    }

    /// The answer to a request this machine sent.
    pub fn handle_response(
        &mut self,
        now: Timestamp,
        token: RequestToken,
        response: Response,
        trust: &Trust,
    ) -> Result<(), SyncError> {
        self.arm(now);
        let Some(outstanding::Request { peer, asked, .. }) = self.pending.remove(token) else {
            return Err(SyncError::UnknownToken(token));
        };
        let outcome = match (asked, response) {
            (Asked::Digest, Response::Digest(DigestMatch::Same)) => Ok(()),
            (Asked::Digest, Response::Digest(DigestMatch::Differs)) => {
                self.offer(now, peer);
                Ok(())
            }
            (Asked::Offer, Response::Summaries(s)) => {
                // The peer stops before the first bucket that does not fit.
                // Buckets are alike in size (ids are uniform), so an answer
                // within two buckets of the budget was most likely cut.
                let used = frames::frame_len(&s);
                let bucket = used / s.buckets.len().max(1);
                if used + 2 * bucket >= self.config.budget.summaries
                    && let Some(x) = self.exchanges.get_mut(&peer)
                {
                    x.again = true;
                }
                // Only the records both sides keep are compared, so a
                // node keeping one region is never pushed the federation.
                let within = match (self.config.scope.region(), s.region.as_ref()) {
                    (Some(mine), Some(theirs)) if mine != theirs => None,
                    (mine, theirs) => Some(mine.or(theirs)),
                };
                let mut plan = match within {
                    Some(within) => self.directory.reconcile(&s.buckets, &s.summaries, within),
                    None => Default::default(),
                };
                if !self.out_of_scope.is_empty() {
                    let offered: BTreeMap<OrgId, &[u8; 32]> =
                        s.summaries.iter().map(|r| (r.org, &r.hash)).collect();
                    plan.want.retain(|org| match self.out_of_scope.get(org) {
                        Some(left_out) => offered.get(org) != Some(&left_out),
                        None => true,
                    });
                }
                for batch in frames::record_batches(plan.send, self.config.budget.records) {
                    let n = batch.records.len();
                    self.send(now, peer, Asked::Push(n), Request::PushRecords(batch));
                }
                self.want(now, peer, plan.want);
                Ok(())
            }
            (Asked::Push(n), Response::Done) => {
                if let Some(x) = self.exchanges.get_mut(&peer) {
                    x.pushed += n;
                }
                Ok(())
            }
            (Asked::Want(orgs), Response::Records(batch)) => {
                // Answers follow the order asked and stop when full: what
                // follows the last record received is asked for again.
                let last = batch
                    .records
                    .last()
                    .and_then(record_org)
                    .and_then(|org| orgs.iter().position(|o| *o == org));
                let fates = self.accept(now, Some(peer), batch.records, false, trust);
                let pulled = fates.iter().filter(|f| **f == Fate::Changed).count();
                if let Some(x) = self.exchanges.get_mut(&peer) {
                    x.pulled += pulled;
                }
                if let Some(i) = last {
                    self.want(now, peer, orgs[i + 1..].to_vec());
                }
                Ok(())
            }
            (asked, Response::Refused(refusal)) => Err(SyncError::Refused {
                asked: asked.name(),
                refusal,
            }),
            (asked, other) => Err(SyncError::Unexpected {
                asked: asked.name(),
                got: response_name(&other),
            }),
        };
        if outcome.is_err()
            && let Some(x) = self.exchanges.get_mut(&peer)
        {
            x.failed = true;
        }
        self.settle(now, peer);
        outcome
    }

    /// The request could not be delivered or answered (the transport says
    /// so, or its deadline passed).
    pub fn handle_failure(&mut self, now: Timestamp, token: RequestToken) {
        self.arm(now);
        self.fail(now, token);
    }

    fn fail(&mut self, now: Timestamp, token: RequestToken) {
        if let Some(p) = self.pending.remove(token) {
            if let Some(x) = self.exchanges.get_mut(&p.peer) {
                x.failed = true;
            }
            self.settle(now, p.peer);
        }
    }

    fn want(&mut self, now: Timestamp, peer: P, orgs: Vec<OrgId>) {
        if orgs.is_empty() {
            return;
        }
        for request in frames::record_requests(orgs, self.config.budget.request) {
            let asked = Asked::Want(request.orgs.clone());
            self.send(now, peer, asked, Request::WantRecords(request));
        }
    }

    fn send(&mut self, now: Timestamp, to: P, asked: Asked, request: Request) -> RequestToken {
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        let deadline = now.saturating_add(self.config.request_timeout);
        self.pending.insert(
            token,
            outstanding::Request {
                peer: to,
                deadline,
                asked,
            },
        );
        if let Some(x) = self.exchanges.get_mut(&to) {
            x.in_flight += 1;
        }
        self.outputs
            .push_back(Output::Transmit { to, token, request });
        token
    }

    /// Counts one request of the exchange with `peer` as done; the last
    /// one ends the exchange.
    fn settle(&mut self, now: Timestamp, peer: P) {
        let Some(x) = self.exchanges.get_mut(&peer) else {
            return;
        };
        x.in_flight = x.in_flight.saturating_sub(1);
        let still = self.pending.any_to(peer);
        if x.in_flight == 0 || !still {
            let x = self.exchanges.remove(&peer).expect("present");
            self.outputs.push_back(Output::Event(SyncEvent::Finished {
                peer,
                pushed: x.pushed,
                pulled: x.pulled,
                failed: x.failed,
            }));
            // Only after progress: a cut answer that moved nothing would
            // be cut the same way again. The directories differed a moment
            // ago, so the new exchange opens with its offer.
            if x.again && !x.failed && x.pushed + x.pulled > 0 {
                self.exchanges.insert(peer, Exchange::default());
                self.offer(now, peer);
            }
        }
    }

    /// Uniform in `0..n` from the seed: blake3(seed, counter), rejecting
    /// the values that would favour low indices.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let reject = n.wrapping_neg() % n;
        loop {
            let mut h = blake3::Hasher::new();
            h.update(&self.config.seed);
            h.update(&self.draws.to_le_bytes());
            self.draws += 1;
            let bytes = h.finalize();
            let x = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 of 32"));
            if x >= reject {
                return (x % n) as usize;
            }
        }
    }
}

/// Whether [`DirectorySync::handle_request`] answers this request.
pub fn is_directory_request(request: &Request) -> bool {
    matches!(
        request,
        Request::SyncDigest(_)
            | Request::SyncOffer(_)
            | Request::PushRecords(_)
            | Request::WantRecords(_)
    )
}
