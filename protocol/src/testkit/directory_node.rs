//! The directory machine as a simulated node: what the node's shell does
//! with its outputs (send, persist, report), kept in memory to be read by
//! tests and simulations.

use super::simnet::{NodeId, SimNode, Transmit};
use crate::cert::Trust;
use crate::directory::{
    Directory, DirectorySync, Merge, Output, RecordError, Rejection, RequestToken, SignedRecord,
    SyncConfig, SyncError, SyncEvent,
};
use crate::identity::OrgId;
use crate::rpc::{Request, Response};
use crate::time::Timestamp;
use std::collections::VecDeque;

pub struct DirectoryNode {
    sync: DirectorySync<NodeId>,
    trust: Trust,
    transmits: VecDeque<Transmit>,
    /// Records that changed the directory, as the node would persist them.
    pub stored: u64,
    pub rejections: Vec<Rejection<NodeId>>,
    /// Answers the machine could not use (refusals, wrong kinds, late ones).
    pub errors: Vec<SyncError>,
    pub finished: Vec<SyncEvent<NodeId>>,
    /// Organization ids this node asked peers for, over all its requests.
    pub asked_for: u64,
}

impl DirectoryNode {
    pub fn new(config: SyncConfig, directory: Directory, trust: Trust) -> Self {
        Self {
            sync: DirectorySync::new(config, directory),
            trust,
            transmits: VecDeque::new(),
            stored: 0,
            rejections: Vec::new(),
            errors: Vec::new(),
            finished: Vec::new(),
            asked_for: 0,
        }
    }

    pub fn machine(&self) -> &DirectorySync<NodeId> {
        &self.sync
    }

    pub fn directory(&self) -> &Directory {
        self.sync.directory()
    }

    pub fn into_directory(self) -> Directory {
        self.sync.into_directory()
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// For admission, which adopts revocations that come in a Hello.
    pub fn trust_mut(&mut self) -> &mut Trust {
        &mut self.trust
    }

    /// For admission: the trust it may change, and the directory whose
    /// verified chains it need not check again.
    pub fn for_admission(&mut self) -> (&mut Trust, &Directory) {
        (&mut self.trust, self.sync.directory())
    }

    /// Revocations were adopted: records they revoke are dropped.
    pub fn trust_changed(&mut self, now: Timestamp) {
        self.sync.handle_trust_changed(now, &self.trust);
        self.drain();
    }

    /// Records reaching the node from outside the network (an organization
    /// publishing through it).
    pub fn publish(
        &mut self,
        now: Timestamp,
        records: Vec<SignedRecord>,
    ) -> Vec<Result<Merge, RecordError>> {
        let results = self.sync.insert_wanted(now, None, records, &self.trust);
        self.drain();
        results
    }

    /// A record gossiped by `from`.
    pub fn gossip(
        &mut self,
        now: Timestamp,
        from: NodeId,
        record: SignedRecord,
    ) -> crate::directory::GossipVerdict {
        let verdict = self.sync.handle_gossip(now, from, record, &self.trust);
        self.drain();
        verdict
    }

    pub fn start_sync(&mut self, now: Timestamp, peer: NodeId) -> Option<RequestToken> {
        let token = self.sync.start_sync(now, peer);
        self.drain();
        token
    }

    fn drain(&mut self) {
        while let Some(out) = self.sync.poll_output() {
            match out {
                Output::Transmit { to, token, request } => {
                    if let Request::WantRecords(w) = &request {
                        self.asked_for += w.orgs.len() as u64;
                    }
                    self.transmits.push_back(Transmit {
                        to,
                        token: token.raw(),
                        request,
                    })
                }
                Output::Stored(_) => self.stored += 1,
                Output::Rejected(r) => self.rejections.push(r),
                Output::Dropped { .. } => {}
                Output::Event(e) => self.finished.push(e),
            }
        }
    }
}

impl SimNode for DirectoryNode {
    fn handle_peer_up(&mut self, now: Timestamp, peer: NodeId, _key: Option<OrgId>) {
        self.sync.handle_peer_admitted(now, peer);
        self.drain();
    }

    fn handle_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        self.sync.handle_peer_gone(now, peer);
        self.drain();
    }

    fn handle_request(&mut self, now: Timestamp, from: NodeId, request: Request) -> Response {
        let response = self.sync.handle_request(now, from, request, &self.trust);
        self.drain();
        response
    }

    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response) {
        let token = RequestToken::from_raw(token);
        if let Err(e) = self.sync.handle_response(now, token, response, &self.trust) {
            self.errors.push(e);
        }
        self.drain();
    }

    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        self.sync.handle_failure(now, RequestToken::from_raw(token));
        self.drain();
    }

    fn poll_transmit(&mut self, _now: Timestamp) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.sync.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.sync.handle_timeout(now);
        self.drain();
    }
}
