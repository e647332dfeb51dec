//! An organization's node as the simulated network runs it: the admission
//! machine in front of the directory machine, wired as the node wires them.
//! A connection starts with Hellos both ways; the directory exchanges only
//! once both sides have admitted each other; refused peers are cut.
//!
//! A revocation list new to the node is passed on to every ready peer but
//! the one it came from. The node publishes it on gossipsub, whose mesh
//! reaches everyone with fewer copies; flooding reaches the same nodes, as
//! fast, with more duplicates.

use super::directory_node::DirectoryNode;
use super::simnet::{NodeId, SimNode, Transmit};
use crate::admission::{self, Admission, Offence, Refusal};
use crate::cert::{CertChain, CertError, RevocationNotice};
use crate::identity::{AuthorityKey, KeyError, OrgId};
use crate::rpc::{self, Hello, HelloAnswer, Request, Response};
use crate::time::Timestamp;
use std::collections::VecDeque;

/// Tokens of the revocation lists this node passes on; their answers are
/// only acknowledgements. Sites use the two bits above for deliveries.
const REVOCATIONS: u64 = 1 << 61;

/// A peer becoming usable for requests, or not any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerChange {
    Ready(NodeId, OrgId),
    Gone(NodeId),
}

pub struct OrgNode {
    key: OrgId,
    chain: CertChain,
    admission: Admission<NodeId>,
    directory: DirectoryNode,
    hellos: VecDeque<NodeId>,
    cuts: VecDeque<NodeId>,
    changes: VecDeque<PeerChange>,
    /// Peers this node refused, and why.
    pub refused: Vec<(NodeId, Refusal)>,
    /// Peers that refused this node, and what they said.
    pub refused_by: Vec<(NodeId, String)>,
    /// Each revocation list new to this node: when it was put in force
    /// here, its issuer and its sequence.
    pub revocations_adopted: Vec<(Timestamp, AuthorityKey, u64)>,
    /// Revocation lists to pass on.
    spreading: VecDeque<Transmit>,
    sent: u64,
}

impl OrgNode {
    /// `key` is the organization the node's connections authenticate as;
    /// `chain` is what its Hello presents (normally the same organization's).
    pub fn new(key: OrgId, chain: CertChain, directory: DirectoryNode) -> Self {
        Self {
            key,
            chain,
            admission: Admission::new(admission::Config::default()),
            directory,
            hellos: VecDeque::new(),
            cuts: VecDeque::new(),
            changes: VecDeque::new(),
            refused: Vec::new(),
            refused_by: Vec::new(),
            revocations_adopted: Vec::new(),
            spreading: VecDeque::new(),
            sent: 0,
        }
    }

    /// Revocation lists an operator puts in force here (`konsilium revoke`):
    /// adopted and passed on to every ready peer. Returns how many were new;
    /// one that does not verify is an error and nothing after it is taken.
    pub fn revoke(
        &mut self,
        now: Timestamp,
        notices: Vec<RevocationNotice>,
    ) -> Result<usize, CertError> {
        let mut adopted = 0;
        for notice in notices {
            match self.adopt(now, notice, None) {
                Ok(()) => adopted += 1,
                Err(CertError::StaleRevocations { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(adopted)
    }

    /// Puts a list in force, cuts revoked peers, and passes the list on to
    /// every peer still ready but `from` (never to the revoked).
    fn adopt(
        &mut self,
        now: Timestamp,
        notice: RevocationNotice,
        from: Option<NodeId>,
    ) -> Result<(), CertError> {
        self.directory.trust_mut().apply_revocations(&notice, now)?;
        self.admission
            .handle_trust_changed(now, self.directory.trust());
        self.drain(now);
        self.adopted(now, notice, from);
        Ok(())
    }

    /// Drops the records the list revokes and passes it on.
    fn adopted(&mut self, now: Timestamp, notice: RevocationNotice, from: Option<NodeId>) {
        if let Ok(list) = notice.list.decode_unverified() {
            (self.revocations_adopted).push((now, list.issuer, list.sequence));
        }
        self.directory.trust_changed(now);
        let ready: Vec<NodeId> = (self.admission.admitted_peers())
            .map(|(peer, _)| peer)
            .filter(|peer| Some(*peer) != from && self.admission.is_ready(peer))
            .collect();
        for to in ready {
            self.sent += 1;
            self.spreading.push_back(Transmit {
                to,
                token: REVOCATIONS | self.sent,
                request: Request::Revocations(vec![notice.clone()]),
            });
        }
    }

    pub fn admission(&self) -> &Admission<NodeId> {
        &self.admission
    }

    /// For input from outside the network (an operator refusing a peer).
    pub fn admission_mut(&mut self) -> &mut Admission<NodeId> {
        &mut self.admission
    }

    pub fn directory(&self) -> &DirectoryNode {
        &self.directory
    }

    pub fn directory_mut(&mut self) -> &mut DirectoryNode {
        &mut self.directory
    }

    /// Peers that became ready (admitted both ways) or went away, for
    /// machines composed on top of this one.
    pub fn poll_peer_change(&mut self) -> Option<PeerChange> {
        self.changes.pop_front()
    }

    fn hello(&self, now: Timestamp) -> Hello {
        Hello {
            chain: self.chain.clone(),
            record: self
                .directory
                .directory()
                .get(&self.key)
                .map(|e| e.signed().clone()),
            revocations: self
                .directory
                .trust()
                .revocation_notices()
                .cloned()
                .collect(),
            time: now,
        }
        .fit()
        .0
    }

    fn drain(&mut self, now: Timestamp) {
        while let Some(out) = self.admission.poll_output() {
            match out {
                admission::Output::SendHello(peer) => self.hellos.push_back(peer),
                admission::Output::RevocationAdopted { notice, .. } => {
                    self.adopted(now, notice, None)
                }
                admission::Output::Admitted { peer, record, .. } => {
                    if let Some(record) = record {
                        self.directory.gossip(now, peer, *record);
                    }
                }
                admission::Output::Ready { peer, org } => {
                    self.directory.handle_peer_up(now, peer, None);
                    self.changes.push_back(PeerChange::Ready(peer, org));
                }
                admission::Output::Refused { peer, reason, .. } => {
                    self.directory.handle_peer_down(now, peer);
                    self.changes.push_back(PeerChange::Gone(peer));
                    self.refused.push((peer, reason));
                }
                admission::Output::Cut(peer) => self.cuts.push_back(peer),
                admission::Output::Uncut(_) | admission::Output::Pardoned(_) => {}
                admission::Output::RefusedBy { peer, reason } => {
                    self.refused_by.push((peer, reason))
                }
            }
        }
    }
}

impl SimNode for OrgNode {
    fn connection_key(&self) -> Option<OrgId> {
        Some(self.key)
    }

    fn handle_peer_up(&mut self, now: Timestamp, peer: NodeId, key: Option<OrgId>) {
        let key = key.ok_or_else(|| KeyError::NotEd25519(format!("simulated node {peer}")));
        self.admission.handle_connected(now, peer, key);
        self.drain(now);
    }

    fn handle_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        self.changes.push_back(PeerChange::Gone(peer));
        self.admission.handle_disconnected(peer);
        self.directory.handle_peer_down(now, peer);
    }

    fn handle_request(&mut self, now: Timestamp, from: NodeId, request: Request) -> Response {
        // The node's gate: nothing but a Hello from a peer not admitted.
        if self.admission.admitted(&from).is_none() {
            return Response::Refused(rpc::Refusal::NotAdmitted);
        }
        if let Request::Revocations(notices) = request {
            for notice in notices {
                if let Err(CertError::Signed(_) | CertError::UnknownRoot { .. }) =
                    self.adopt(now, notice, Some(from))
                {
                    (self.admission).handle_offence(now, from, Offence::ForgedRevocation);
                    self.drain(now);
                }
            }
            return Response::Done;
        }
        self.directory.handle_request(now, from, request)
    }

    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response) {
        if token & REVOCATIONS == 0 {
            self.directory.handle_response(now, token, response)
        }
    }

    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        if token & REVOCATIONS == 0 {
            self.directory.handle_failure(now, token)
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        (self.spreading.pop_front()).or_else(|| self.directory.poll_transmit(now))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        [self.admission.poll_timeout(), self.directory.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.admission.poll_timeout().is_some_and(|t| t <= now) {
            self.admission.handle_timeout(now, self.directory.trust());
            self.drain(now);
        }
        if self.directory.poll_timeout().is_some_and(|t| t <= now) {
            self.directory.handle_timeout(now);
        }
    }

    fn poll_hello(&mut self, now: Timestamp) -> Option<(NodeId, Hello)> {
        let to = self.hellos.pop_front()?;
        Some((to, self.hello(now)))
    }

    fn handle_hello(&mut self, now: Timestamp, from: NodeId, hello: Hello) -> HelloAnswer {
        let (trust, directory) = self.directory.for_admission();
        let verdict = self
            .admission
            .handle_hello(now, from, hello, trust, directory);
        self.drain(now);
        match verdict {
            Ok(_) => HelloAnswer::Welcome(Box::new(self.hello(now))),
            Err(reason) => HelloAnswer::Refused(format!("not admitted: {reason}")),
        }
    }

    fn handle_hello_answer(&mut self, now: Timestamp, from: NodeId, answer: HelloAnswer) {
        match answer {
            HelloAnswer::Welcome(hello) => {
                let (trust, directory) = self.directory.for_admission();
                self.admission
                    .handle_welcome(now, from, *hello, trust, directory)
            }
            HelloAnswer::Refused(reason) => self.admission.handle_refused_by(from, reason),
        }
        self.drain(now);
    }

    fn handle_hello_failed(&mut self, now: Timestamp, to: NodeId) {
        self.admission.handle_hello_failed(now, to);
        self.drain(now);
    }

    fn poll_cut(&mut self) -> Option<NodeId> {
        self.cuts.pop_front()
    }
}
