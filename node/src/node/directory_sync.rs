//! Keeping the directory in step with the federation: gossip, anti-entropy,
//! the directory scope, and candidates from the regional center.

use super::*;

impl Node {
    /// Validates and stores a record; returns whether it changed the directory.
    /// Validates and stores a record; returns whether it changed the
    /// directory. `wanted` records (candidates asked for) are
    /// kept whatever the scope.
    pub(super) fn accept_record(
        &mut self,
        record: SignedRecord,
        wanted: bool,
    ) -> Result<bool, RecordError> {
        let cert = record.decode_unverified()?.chain.org.decode_unverified()?;
        let in_scope = self.scope == DirectoryScope::Federation
            || cert.region == self.me.cert.region
            || self.directory.get(&cert.org).is_some();
        if !wanted && !in_scope {
            self.out_of_scope.insert(cert.org);
            return Ok(false);
        }
        match self
            .directory
            .insert(record.clone(), &self.trust, self.now())
        {
            Ok(Merge::Added | Merge::Replaced { .. }) => {
                if let Some(entry) = self.directory.get(&cert.org) {
                    let (org, sequence) = (entry.org(), entry.record().sequence);
                    for addr in &entry.record().addresses {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&org.to_peer_id(), addr.clone());
                    }
                    let _ = self.store.put_record(&org, &record);
                    self.emit(NodeEvent::RecordAccepted { org, sequence });
                }
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                if let RecordError::Chain(why) = &e {
                    self.note_refused(cert.org, cert.name.clone(), why);
                }
                self.emit(NodeEvent::RecordRejected {
                    reason: e.to_string(),
                });
                Err(e)
            }
        }
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
        let id = self.swarm.behaviour_mut().rpc.send_request(&relay, request);
        self.candidate_requests.insert(id, reply);
    }

    pub(super) fn candidates(
        &self,
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
        };
        let records = route::rank(&self.directory, &req, self.now())
            .candidates
            .iter()
            .take(MAX_CANDIDATES)
            .filter_map(|c| self.directory.get(&c.org))
            .map(|e| e.signed().clone())
            .collect();
        Response::Records(RecordBatch { records })
    }

    pub(super) fn on_gossip(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let acceptance = if !self.certified.contains_key(&source) {
            gossipsub::MessageAcceptance::Reject
        } else if message.topic == self.directory_topic.hash() {
            match wire::decode::<SignedRecord>(&message.data) {
                Ok(record) => match self.accept_record(record, false) {
                    Ok(true) => gossipsub::MessageAcceptance::Accept,
                    Ok(false) => gossipsub::MessageAcceptance::Ignore,
                    Err(_) => gossipsub::MessageAcceptance::Reject,
                },
                Err(_) => gossipsub::MessageAcceptance::Reject,
            }
        } else if message.topic == self.revocation_topic.hash() {
            match wire::decode::<RevocationNotice>(&message.data) {
                Ok(notice) if self.adopt_revocation(&notice, self.now()) => {
                    gossipsub::MessageAcceptance::Accept
                }
                Ok(_) => gossipsub::MessageAcceptance::Ignore,
                Err(_) => gossipsub::MessageAcceptance::Reject,
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

    pub(super) fn sync_with(&mut self, peer: PeerId) {
        let offer = self.directory.sync_offer();
        self.request(peer, Request::SyncOffer(offer), Pending::SyncOffer);
    }

    pub(super) fn sync_with_random_peer(&mut self) {
        let peers: Vec<PeerId> = self
            .certified
            .keys()
            .filter(|p| self.welcomed.contains(p))
            .copied()
            .collect();
        if !peers.is_empty() {
            let pick = u64::from_le_bytes(random_bytes()) as usize % peers.len();
            self.sync_with(peers[pick]);
        }
    }
}
