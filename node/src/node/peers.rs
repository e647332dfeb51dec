//! Who may take part: admitting peers by their certificate chain, refusing
//! the rest (after they have heard why), revocations, bootstrap dialling.

use super::*;

impl Node {
    /// Requests can no longer go to `peer` (its connections closed, or it
    /// was refused); the delivery machine stops choosing it.
    pub(super) fn not_ready(&mut self, peer: PeerId) {
        self.certified.remove(&peer);
        self.welcomed.remove(&peer);
        if let Ok(org) = OrgId::from_peer_id(&peer) {
            self.outbox.handle_peer_gone(org);
        }
    }

    /// Checks a peer's certificate (and record, and revocations) from its Hello.
    pub(super) fn admit(&mut self, peer: PeerId, hello: Hello) -> Result<OrgId, String> {
        let now = self.now();
        for notice in &hello.revocations {
            self.adopt_revocation(notice, now);
        }
        let verified = match self.trust.verify_chain(&hello.chain, now) {
            Ok(v) => v,
            Err(e) => {
                if let Ok(cert) = hello.chain.org.decode_unverified() {
                    self.note_refused(cert.org, cert.name, &e);
                }
                return Err(e.to_string());
            }
        };
        let claimed = OrgId::from_peer_id(&peer).map_err(|e| e.to_string())?;
        if verified.cert.org != claimed {
            return Err(format!(
                "certificate is for {}, but the connection is from {claimed}",
                verified.cert.org
            ));
        }
        if let Some(record) = hello.record {
            // A bad record is reported by the directory machine; the certificate
            // alone admits the peer. Kademlia connects peers of any region,
            // so the directory scope applies to their records too.
            self.ingest_record(peer, record);
        }
        self.certified.insert(peer, claimed);
        self.awaiting_hello.remove(&peer);
        let behaviour = self.swarm.behaviour_mut();
        behaviour.rpc.admit(peer);
        behaviour.gossipsub.set_application_score(&peer, 0.0);
        self.refused_orgs.remove(&claimed);
        let skew = hello.time.unix_millis() as i128 - now.unix_millis() as i128;
        self.peer_info.entry(peer).or_default().clock_skew_ms = Some(skew as i64);
        self.emit(NodeEvent::PeerCertified {
            org: claimed,
            name: verified.cert.name,
            level: verified.cert.level,
        });
        if self.welcomed.contains(&peer) {
            self.on_ready(peer, claimed);
        }
        Ok(claimed)
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
    }

    pub(super) fn on_hello(&mut self, event: request_response::Event<Hello, HelloAnswer>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let answer = match self.admit(peer, request) {
                    Ok(_) => HelloAnswer::Welcome(Box::new(self.hello())),
                    Err(reason) => {
                        let answer = HelloAnswer::Refused(format!("not admitted: {reason}"));
                        self.reject(peer, reason);
                        answer
                    }
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
            } => match response {
                HelloAnswer::Welcome(hello) => {
                    self.welcomed.insert(peer);
                    if let Some(&org) = self.certified.get(&peer) {
                        self.on_ready(peer, org);
                    } else if let Err(reason) = self.admit(peer, *hello) {
                        self.reject(peer, reason);
                    }
                }
                HelloAnswer::Refused(reason) => {
                    tracing::warn!(%peer, "the peer refused us: {reason}");
                    self.emit(NodeEvent::PeerRejected {
                        peer,
                        reason: format!("refused us: {reason}"),
                    });
                }
            },
            Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "hello failed: {error}");
                self.hello_sent.remove(&peer);
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound hello failed: {error}")
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Refuses a peer. The connection is cut a moment later, not at once,
    /// so both sides finish the Hello exchange and each learns why.
    pub(super) fn reject(&mut self, peer: PeerId, reason: String) {
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
        self.not_ready(peer);
        self.awaiting_hello.remove(&peer);
        self.sync.handle_peer_gone(self.now(), peer);
        self.swarm.behaviour_mut().rpc.close(peer);
        self.refused
            .insert(peer, self.now().saturating_add(REFUSAL_GRACE));
    }

    pub(super) fn cut_refused(&mut self) {
        let instant = tokio::time::Instant::now();
        let silent: Vec<PeerId> = self
            .awaiting_hello
            .iter()
            .filter(|(_, due)| **due <= instant)
            .map(|(p, _)| *p)
            .collect();
        for peer in silent {
            self.reject(
                peer,
                format!(
                    "no valid federation certificate presented within {} s",
                    HELLO_TIMEOUT.as_secs()
                ),
            );
        }
        let now = self.now();
        let due: Vec<PeerId> = self
            .refused
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.refused.remove(&peer);
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    pub(super) fn adopt_revocation(&mut self, notice: &RevocationNotice, now: Timestamp) -> bool {
        match self.trust.apply_revocations(notice, now) {
            Ok(issuer) => {
                let _ = self.store.put_revocation(issuer.as_bytes(), notice);
                self.sync.handle_trust_changed(now, &self.trust);
                self.drive_sync();
                let _ = self.store.flush();
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            let peer = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            if peer.is_some_and(|p| self.swarm.is_connected(&p)) {
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

    pub(super) fn send_hello(&mut self, peer: PeerId) {
        let hello = self.hello();
        self.swarm.behaviour_mut().hello.send_request(&peer, hello);
    }
}
