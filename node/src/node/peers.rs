//! Who may take part: admitting peers by their certificate chain, refusing
//! the rest (after they have heard why), revocations, bootstrap dialling.

use super::*;

impl Node {
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
            // A bad record is reported by `accept_record`; the certificate
            // alone admits the peer. Kademlia connects peers of any region,
            // so the directory scope applies to their records too.
            let _ = self.accept_record(record, false);
        }
        self.certified.insert(peer, claimed);
        self.refused_orgs.remove(&claimed);
        let skew = hello.time.unix_millis() as i128 - now.unix_millis() as i128;
        self.peer_info.entry(peer).or_default().clock_skew_ms = Some(skew as i64);
        self.emit(NodeEvent::PeerCertified {
            org: claimed,
            name: verified.cert.name,
            level: verified.cert.level,
        });
        // Whatever waited for this peer can go now.
        if let Ok(entries) = self.store.outbox() {
            for mut e in entries.into_iter().filter(|e| e.next_hop == claimed) {
                e.next_attempt = now;
                let _ = self.store.put_outbox(&e);
            }
        }
        Ok(claimed)
    }

    /// Refuses a peer. The connection is cut a moment later, not at once,
    /// so both sides finish the Hello exchange and each learns why.
    pub(super) fn reject(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, "peer refused: {reason}");
        self.emit(NodeEvent::PeerRejected { peer, reason });
        self.certified.remove(&peer);
        self.refused
            .insert(peer, self.now().saturating_add(REFUSAL_GRACE));
    }

    pub(super) fn cut_refused(&mut self) {
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
                let names: HashMap<OrgId, String> = self
                    .directory
                    .entries()
                    .map(|e| (e.org(), e.name().to_owned()))
                    .collect();
                for (org, why) in self.directory.retain_valid(&self.trust, now) {
                    tracing::warn!(%org, "record dropped: {why}");
                    let name = names.get(&org).cloned().unwrap_or_default();
                    self.note_refused(org, name, &why);
                    let _ = self.store.remove_record(&org);
                    let peers: Vec<PeerId> = self
                        .certified
                        .iter()
                        .filter(|(_, o)| **o == org)
                        .map(|(p, _)| *p)
                        .collect();
                    for p in peers {
                        self.certified.remove(&p);
                        self.reject(p, why.to_string());
                    }
                }
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
