//! The shell around the directory synchronisation machine
//! (`konsilium_protocol::directory::sync`): it carries the machine's
//! requests over the RPC, persists what it stores, and asks the regional
//! center for candidates.

use super::*;

impl Node {
    /// The directory as the synchronisation machine holds it.
    pub(super) fn directory(&self) -> &Directory {
        self.sync.directory()
    }

    /// Carries out what the directory machine decided: requests to send,
    /// records to persist or drop, refusals to report.
    ///
    /// Nothing here waits for the disk: records are signed by their
    /// organizations, and one lost in a crash comes back with the next
    /// anti-entropy exchange, so a gossiped record is passed on without a
    /// flush on its path (sled writes it out within half a second).
    pub(super) fn drive_sync(&mut self) {
        while let Some(output) = self.sync.poll_output() {
            match output {
                SyncOutput::Transmit { to, token, request } => {
                    if self.ready(&to) {
                        self.request(to, request, Pending::Sync(token));
                    } else {
                        self.sync.handle_failure(self.now(), token);
                    }
                }
                SyncOutput::Stored(stored) => {
                    for addr in &stored.addresses {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&stored.org.to_peer_id(), addr.clone());
                    }
                    let _ = self.store.put_record(&stored.org, &stored.record);
                    self.emit(NodeEvent::RecordAccepted {
                        org: stored.org,
                        sequence: stored.sequence,
                    });
                }
                SyncOutput::Rejected(rejection) => {
                    if let Some(peer) = rejection.from
                        && forged(&rejection.error)
                    {
                        let now = self.now();
                        (self.admission).handle_offence(now, peer, Offence::ForgedRecord);
                        self.drive_admission();
                    }
                    if let (RecordError::Chain(why), Some(org)) = (&rejection.error, rejection.org)
                    {
                        let name = rejection.name.clone().unwrap_or_default();
                        self.note_refused(org, name, why);
                    }
                    self.emit(NodeEvent::RecordRejected {
                        reason: rejection.error.to_string(),
                    });
                }
                SyncOutput::Dropped { org, name, reason } => {
                    tracing::warn!(%org, "record dropped: {reason}");
                    self.note_refused(org, name, &reason);
                    let _ = self.store.remove_record(&org);
                    let now = self.now();
                    self.admission.refuse_org(now, org, &reason.to_string());
                    self.drive_admission();
                }
                SyncOutput::Event(SyncEvent::Finished { peer, failed, .. }) => {
                    tracing::debug!(%peer, failed, "directory exchange finished");
                }
            }
        }
    }

    /// A record a peer sent outside anti-entropy (gossip, its Hello).
    pub(super) fn ingest_record(&mut self, from: PeerId, record: SignedRecord) -> GossipVerdict {
        let verdict = self
            .sync
            .handle_gossip(self.now(), from, record, &self.trust);
        self.drive_sync();
        verdict
    }

    /// Asks the regional center for the best candidates this node's scoped
    /// directory lacks.
    pub(super) fn ask_candidates(
        &mut self,
        routing: RoutingHeader,
        reply: oneshot::Sender<Result<usize, NodeError>>,
    ) {
        let Some(relay) = self
            .relay_via
            .first()
            .map(OrgId::to_peer_id)
            .filter(|p| self.ready(p))
        else {
            let _ = reply.send(Err(NodeError::NoRoute(
                "no regional center connected to ask for candidates".into(),
            )));
            return;
        };
        let request = Request::Candidates {
            specialty: routing.specialty,
            min_level: routing.min_level,
            urgency: routing.urgency,
        };
        let id = (self.swarm.behaviour_mut().rpc).send_request(&relay, request.into());
        self.candidate_requests.insert(id, reply);
    }

    /// A region's routing candidates for `requester`, answered through the
    /// directory machine, which charges them to the requester's share.
    pub(super) fn candidates(
        &mut self,
        requester: OrgId,
        specialty: Specialty,
        min_level: OrgLevel,
        urgency: Urgency,
    ) -> Response {
        let req = RouteRequest {
            specialty,
            min_level,
            urgency,
            region: None,
            exclude: [requester].into(),
            // Ranked by the requester: different requesters are offered
            // different shares of equally good centers.
            case: std::array::from_fn(|i| requester.as_bytes()[i]),
        };
        let now = self.now();
        let peer = requester.to_peer_id();
        self.sync.handle_lookup(now, peer, |directory| {
            let records = route::rank(directory, &req, now)
                .candidates
                .iter()
                .take(MAX_CANDIDATES)
                .filter_map(|c| directory.get(&c.org))
                .map(|e| e.signed().clone())
                .collect();
            RecordBatch { records }
        })
    }

    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let acceptance = if self.admission.admitted(&source).is_none() {
            gossipsub::MessageAcceptance::Reject
        } else if message.topic == self.directory_topic.hash() {
            match wire::decode::<SignedRecord>(&message.data) {
                Ok(record) => match self.ingest_record(source, record) {
                    GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
                    GossipVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
                },
                Err(e) => {
                    self.malformed(source, &e, Some(&e));
                    gossipsub::MessageAcceptance::Reject
                }
            }
        } else if message.topic == self.revocation_topic.hash() {
            match wire::decode::<RevocationNotice>(&message.data) {
                Ok(notice) if self.adopt_revocation(&notice, self.now()).is_ok() => {
                    gossipsub::MessageAcceptance::Accept
                }
                Ok(_) => gossipsub::MessageAcceptance::Ignore,
                Err(e) => {
                    self.malformed(source, &e, Some(&e));
                    gossipsub::MessageAcceptance::Reject
                }
            }
        } else {
            gossipsub::MessageAcceptance::Reject
        };
        let topic = if message.topic == self.revocation_topic.hash() {
            "revocations"
        } else {
            "directory"
        };
        let outcome = match acceptance {
            gossipsub::MessageAcceptance::Accept => "accepted",
            gossipsub::MessageAcceptance::Ignore => "ignored",
            gossipsub::MessageAcceptance::Reject => "invalid",
        };
        self.metrics
            .gossip_received
            .with_label_values(&[topic, outcome])
            .inc();
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
    }
}

impl Node {
    /// An admitted peer sent what is not a frame of the kind it must be
    /// (gossip, an RPC request). A frame of a newer wire version or kind
    /// may come from an honest node upgraded first, so only what no
    /// version of the protocol would send is misconduct; an unadmitted
    /// peer's frames cost it nothing here, the gate and Hello limit them.
    pub(super) fn malformed(
        &mut self,
        peer: PeerId,
        error: &dyn std::fmt::Display,
        wire: Option<&wire::WireError>,
    ) {
        tracing::debug!(%peer, "malformed frame: {error}");
        if !matches!(
            wire,
            Some(wire::WireError::UnsupportedVersion { .. } | wire::WireError::UnknownKind(_))
        ) {
            let now = self.now();
            (self.admission).handle_offence(now, peer, Offence::Malformed);
            self.drive_admission();
        }
    }

    /// Signs and publishes this organization's record with the next sequence number.
    pub(super) fn publish_record(&mut self) -> Result<(), NodeError> {
        self.record_dirty = false;
        if self.role == crate::config::NodeRole::Bootstrap {
            // Not a consultation target: nothing to publish.
            return Ok(());
        }
        self.sequence += 1;
        self.store.set_meta_u64("sequence", self.sequence)?;
        let mut addresses: Vec<Multiaddr> = self.external.clone();
        // Behind NAT our own addresses cannot be dialled: peers get only
        // the relayed ones, from which hole punching finds the way in.
        let private = self.reach.reachability() == konsilium_protocol::reach::Reachability::Private;
        self.published_reach = self.reach_snapshot();
        // Addresses a probe reached us at from outside: our NAT's public side.
        for confirmed in self.reach.confirmed() {
            if !addresses.contains(confirmed) {
                addresses.push(confirmed.clone());
            }
        }
        // Relayed ones before the interfaces' own: within the record's
        // limit, a node on many interfaces must not crowd them out.
        // Loopback only from a node on loopback alone (tests, one machine;
        // decided once, from the configured listen addresses): to anyone
        // else it leads to themselves.
        use crate::net::scope::{Scope, scope};
        let (relayed, own): (Vec<&Multiaddr>, Vec<&Multiaddr>) = (self.listen_addrs.iter())
            .filter(|a| !is_unspecified(a) && !addresses.contains(a))
            .filter(|a| self.loopback_only || scope(a) != Scope::Loopback)
            .partition(|a| reach::is_relayed(a));
        addresses.extend(relayed.into_iter().cloned());
        if !private {
            addresses.extend(own.into_iter().cloned());
        }
        addresses.truncate(konsilium_protocol::limits::MAX_ADDRESSES);
        let record = self.profile.record(
            self.chain.clone(),
            self.keyring.current().public(),
            addresses,
            self.sequence,
            self.now(),
        );
        let signed = Signed::sign(&self.identity, &record);
        match self
            .sync
            .insert_wanted(self.now(), None, vec![signed.clone()], &self.trust)
            .pop()
        {
            Some(Ok(_)) | None => self.drive_sync(),
            Some(Err(e)) => {
                return Err(NodeError::OwnCertificate(CertError::Field(
                    konsilium_protocol::limits::FieldError::Invalid {
                        field: "own directory record",
                        reason: e.to_string(),
                    },
                )));
            }
        }
        self.store.put_record(&self.me.cert.org, &signed)?;
        self.store.flush()?;
        if let Ok(frame) = wire::encode(&signed) {
            let topic = self.directory_topic.clone();
            match self.swarm.behaviour_mut().gossipsub.publish(topic, frame) {
                Ok(_) => self.metrics.gossip_published.inc(),
                // No peers yet is fine: anti-entropy on connect carries it.
                Err(e) => tracing::info!("own record not gossiped ({e}): anti-entropy carries it"),
            }
        }
        Ok(())
    }
}

/// A record no honest node sends: its signature or its certificate's does
/// not verify. (An expired or revoked certificate can be honest news that
/// has not reached the sender yet.)
fn forged(error: &RecordError) -> bool {
    matches!(
        error,
        RecordError::Signed(_)
            | RecordError::Chain(
                CertError::Signed(_)
                    | CertError::UnknownRoot { .. }
                    | CertError::IssuerMismatch { .. }
            )
    )
}
