//! Who may take part: admitting peers by their certificate chain, refusing
//! the rest (after they have heard why), revocations, bootstrap dialling.

use super::*;
use crate::net::budget::Framed;
use konsilium_protocol::ladder::Link;

impl Node {
    /// Requests can no longer go to `peer` (its connections closed, or it
    /// was refused): the delivery and directory machines stop choosing it.
    fn not_ready(&mut self, peer: PeerId) {
        if let Ok(org) = OrgId::from_peer_id(&peer) {
            self.outbox.handle_peer_gone(org);
        }
        self.sync.handle_peer_gone(self.now(), peer);
        self.drive_sync();
    }

    /// A peer's first connection is up: it has the Hello timeout to prove
    /// itself, with no mesh slot and no gossip accepted until then.
    pub(super) fn on_connected(&mut self, peer: PeerId) {
        if self.admission.admitted(&peer).is_none() {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, UNADMITTED_SCORE);
        }
        let now = self.now();
        self.admission
            .handle_connected(now, peer, OrgId::from_peer_id(&peer));
        self.drive_admission();
    }

    /// A peer's last connection closed.
    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        self.admission.handle_disconnected(peer);
        self.peer_info.remove(&peer);
        self.not_ready(peer);
        self.relay_gone(&peer);
    }

    /// Carries out what the admission machine decided.
    pub(super) fn drive_admission(&mut self) {
        while let Some(output) = self.admission.poll_output() {
            match output {
                AdmissionOutput::SendHello(peer) => {
                    let hello = self.hello();
                    self.swarm
                        .behaviour_mut()
                        .hello
                        .send_request(&peer, hello.into());
                }
                AdmissionOutput::RevocationAdopted { issuer, notice } => {
                    self.revocation_adopted(issuer, &notice)
                }
                AdmissionOutput::Admitted {
                    peer,
                    org,
                    record,
                    clock_skew_ms,
                } => {
                    if let Some(record) = record {
                        // A bad record is reported by the directory machine;
                        // the certificate alone admits the peer. Kademlia
                        // connects peers of any region, so the directory
                        // scope applies to their records too.
                        self.ingest_record(peer, *record);
                    }
                    let behaviour = self.swarm.behaviour_mut();
                    behaviour.admit(peer);
                    behaviour.gossipsub.set_application_score(&peer, 0.0);
                    self.refused_orgs.remove(&org.cert.org);
                    self.peer_info.entry(peer).or_default().clock_skew_ms = Some(clock_skew_ms);
                    self.emit(NodeEvent::PeerCertified {
                        org: org.cert.org,
                        name: org.cert.name,
                        level: org.cert.level,
                    });
                }
                AdmissionOutput::Ready { peer, org } => self.on_ready(peer, org),
                AdmissionOutput::Refused { peer, reason, org } => {
                    if let (AdmissionRefusal::Chain(error), Some((org, name))) = (&reason, org) {
                        self.note_refused(org, name, error);
                    }
                    self.reject(peer, reason.to_string());
                }
                AdmissionOutput::Cut(peer) => {
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                AdmissionOutput::Uncut(peer) => {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                AdmissionOutput::Pardoned(org) => {
                    tracing::info!(%org, "ban over: its connections are accepted again");
                    (self.swarm.behaviour_mut().blocked).unblock_peer(org.to_peer_id());
                }
                AdmissionOutput::RefusedBy { peer, reason } => {
                    tracing::warn!(%peer, "the peer refused us: {reason}");
                    self.emit(NodeEvent::PeerRejected {
                        peer,
                        reason: format!("refused us: {reason}"),
                    });
                }
            }
        }
    }

    /// Both sides have admitted each other: whatever waited for this peer
    /// can go now, and directories are compared.
    fn on_ready(&mut self, peer: PeerId, org: OrgId) {
        self.outbox.handle_peer_ready(self.now(), org);
        if !self.hello_left_out.is_empty() {
            let notices = self.hello_left_out.clone();
            self.request(peer, Request::Revocations(notices), Pending::Revocations);
        }
        self.sync.handle_peer_admitted(self.now(), peer);
        self.drive_sync();
        self.offer_relay(peer);
    }

    pub(super) fn on_hello(&mut self, event: request_response::Event<Framed<Hello>, HelloAnswer>) {
        use request_response::{Event, Message};
        let now = self.now();
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request: Framed { frame: hello, .. },
                        channel,
                        ..
                    },
                ..
            } => {
                // Handled at once: its share of the Hello budget goes with it.
                let verdict = self.admission.handle_hello(
                    now,
                    peer,
                    hello,
                    &mut self.trust,
                    self.sync.directory(),
                );
                self.drive_admission();
                let answer = match verdict {
                    Ok(_) => HelloAnswer::Welcome(Box::new(self.hello())),
                    Err(reason) => HelloAnswer::Refused(format!("not admitted: {reason}")),
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .hello
                    .send_response(channel, answer);
            }
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => {
                match response {
                    HelloAnswer::Welcome(hello) => self.admission.handle_welcome(
                        now,
                        peer,
                        *hello,
                        &mut self.trust,
                        self.sync.directory(),
                    ),
                    HelloAnswer::Refused(reason) => self.admission.handle_refused_by(peer, reason),
                }
                self.drive_admission();
            }
            Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "hello failed: {error}");
                self.admission.handle_hello_failed(now, peer);
                self.drive_admission();
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound hello failed: {error}")
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// A refused peer hears why in the Hello exchange; the admission machine
    /// cuts its connections after a grace.
    fn reject(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, "peer refused: {reason}");
        if self.recent_refusals.len() >= RECENT_REFUSALS {
            self.recent_refusals.pop_front();
        }
        self.recent_refusals.push_back(inspect::RefusedPeer {
            peer,
            reason: reason.clone(),
            at: self.now(),
            addresses: self
                .peer_info
                .get(&peer)
                .map(|i| i.addresses.clone())
                .unwrap_or_default(),
        });
        self.emit(NodeEvent::PeerRejected { peer, reason });
        self.swarm.behaviour_mut().close(peer);
        self.not_ready(peer);
    }

    pub(super) fn adopt_revocation(
        &mut self,
        notice: &RevocationNotice,
        now: Timestamp,
    ) -> Result<(), CertError> {
        let issuer = self.trust.apply_revocations(notice, now)?;
        self.revocation_adopted(issuer, notice);
        self.admission.handle_trust_changed(now, &self.trust);
        self.drive_admission();
        Ok(())
    }

    /// Revocation lists an operator hands in (a reload that found new ones):
    /// those newer than what is in force are adopted and published to the
    /// federation, which passes them on within a few gossip heartbeats.
    /// Returns how many were new; a list that does not verify is an error.
    pub(super) fn revoke(&mut self, notices: Vec<RevocationNotice>) -> Result<usize, NodeError> {
        let mut adopted = 0;
        for notice in notices {
            match self.adopt_revocation(&notice, self.now()) {
                Ok(()) => {
                    adopted += 1;
                    let frame =
                        wire::encode(&notice).map_err(|e| NodeError::Network(e.to_string()))?;
                    let topic = self.revocation_topic.clone();
                    if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, frame) {
                        // Peers still get it in their next Hello exchange.
                        tracing::warn!("revocation list not published now: {e}");
                    }
                }
                Err(CertError::StaleRevocations { .. }) => {}
                Err(e) => return Err(NodeError::Revocation(e)),
            }
        }
        Ok(adopted)
    }

    /// A revocation list now in force: kept, and the directory re-checked.
    fn revocation_adopted(&mut self, issuer: AuthorityKey, notice: &RevocationNotice) {
        if let Err(e) = self
            .store
            .put_revocation(issuer.as_bytes(), notice)
            .and_then(|_| self.store.flush())
        {
            tracing::error!("cannot keep a revocation list: {e}");
        }
        self.sync.handle_trust_changed(self.now(), &self.trust);
        self.drive_sync();
    }

    /// The peer a bootstrap address names, if it names one.
    pub(super) fn bootstrap_peer(addr: &Multiaddr) -> Option<PeerId> {
        addr.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
    }

    /// Dials every bootstrap peer not connected directly. A circuit
    /// through another relay is no substitute: a bootstrap node is public,
    /// and a reservation on it needs a direct connection (a bootstrap node
    /// that came up later may reach us first through one).
    pub(super) fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            let peer = Self::bootstrap_peer(&addr);
            if peer.is_some_and(|p| self.link(&p).is_some_and(|l| l != Link::Relayed)) {
                continue;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!("cannot dial bootstrap peer {addr}: {e}");
            }
        }
    }
}

impl Node {
    pub(super) fn hello(&mut self) -> Hello {
        let (hello, left_out) = Hello {
            chain: self.chain.clone(),
            record: self
                .directory()
                .get(&self.me.cert.org)
                .map(|e| e.signed().clone()),
            revocations: self.trust.revocation_notices().cloned().collect(),
            time: self.now(),
        }
        .fit();
        self.hello_left_out = left_out;
        hello
    }
}
