//! Durable delivery: routing a package, the outbox and its retries, relays
//! that hold packages for others, receipts, and the inbox.

use super::*;

impl Node {
    /// Where a package for `recipient` goes first: straight there, or through
    /// the configured regional relay when the recipient is in another region.
    pub(super) fn next_hop(&self, recipient: OrgId) -> OrgId {
        let other_region = self
            .directory()
            .get(&recipient)
            .is_some_and(|e| e.region() != &self.me.cert.region);
        match self.relay_via.first() {
            Some(relay) if other_region && *relay != self.me.cert.org && *relay != recipient => {
                *relay
            }
            _ => recipient,
        }
    }

    /// Chooses the recipient and draws the package's header.
    pub(super) fn plan(
        &mut self,
        target: Target,
        routing: RoutingHeader,
        lifetime: Duration,
    ) -> Result<Plan, NodeError> {
        let now = self.now();
        let (recipient, route) = match target {
            Target::Org(org) => (org, None),
            Target::Best => {
                let req = RouteRequest {
                    specialty: routing.specialty,
                    min_level: routing.min_level,
                    urgency: routing.urgency,
                    region: routing
                        .region
                        .clone()
                        .or_else(|| Some(self.me.cert.region.clone())),
                    exclude: [self.me.cert.org].into(),
                };
                let decision = route::rank(self.directory(), &req, now);
                let best = decision.best().ok_or_else(|| {
                    NodeError::NoRoute(format!(
                        "{} at level >= {} for {}",
                        req.specialty, req.min_level, req.urgency
                    ))
                })?;
                (best.org, Some(decision))
            }
        };
        let entry = self
            .directory()
            .get(&recipient)
            .ok_or(NodeError::UnknownOrg(recipient))?;
        Ok(Plan {
            header: EnvelopeHeader {
                version: PACKAGE_VERSION,
                id: PackageId(random_bytes()),
                sender: self.me.cert.org,
                recipient,
                routing,
                created: now,
                expires: now.saturating_add(lifetime.min(seal::MAX_LIFETIME)),
                attachments: Vec::new(),
            },
            recipient_key: entry.record().sealing_key,
            sealing: SealingKey::from_seed(*self.sealing.to_seed()),
            blobs: self.blobs.clone(),
            recipient_name: entry.name().to_owned(),
            route,
        })
    }

    /// Seals the body and queues the package durably.
    pub(super) fn commit(&mut self, plan: Plan, body: &[u8]) -> Result<Sent, NodeError> {
        let now = self.now();
        let recipient = plan.header.recipient;
        let package = seal::seal(
            plan.header,
            &self.sealing,
            &plan.recipient_key,
            random_bytes(),
            body,
        )?;
        let next_hop = self.next_hop(recipient);
        let id = package.header.id;
        self.metrics
            .package_bytes
            .with_label_values(&["sent"])
            .inc_by(package.body.len() as u64);
        self.store.put_outbox(&OutboxEntry {
            package,
            origin: Origin::Local,
            next_hop,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            custody: None,
            queued_at: now,
            refused: None,
        })?;
        self.store.flush()?;
        self.emit(NodeEvent::PackageQueued { id, next_hop });
        Ok(Sent {
            id,
            recipient,
            recipient_name: plan.recipient_name,
            next_hop,
            route: plan.route,
        })
    }

    /// A received package and its sender's directory entry (for the sender's sealing keys).
    pub(super) fn received(
        &self,
        id: PackageId,
    ) -> Result<(EnvelopeHeader, Vec<u8>, Vec<SealingPublicKey>), NodeError> {
        let entry = self
            .store
            .inbox_entry(&id)?
            .ok_or(NodeError::NotInInbox(id))?;
        let header = entry.package.header;
        let sender = self
            .directory()
            .get(&header.sender)
            .ok_or(NodeError::UnknownOrg(header.sender))?;
        Ok((header, entry.package.body, sender.sealing_keys().to_vec()))
    }

    pub(super) fn attachment_keys(&self, id: PackageId) -> Result<AttachmentKeys, NodeError> {
        let (header, _, keys) = self.received(id)?;
        Ok((
            header,
            SealingKey::from_seed(*self.sealing.to_seed()),
            keys,
            self.blobs.clone(),
        ))
    }

    /// Sends every due outbox entry whose next hop is connected; dials the others.
    pub(super) fn deliver_due(&mut self) -> Result<(), NodeError> {
        let now = self.now();
        for mut entry in self.store.outbox()? {
            let id = entry.package.header.id;
            if entry.next_attempt > now || self.in_flight.contains(&id) {
                continue;
            }
            if entry.refused.is_some() {
                if entry.package.header.expires <= now {
                    self.store.remove_outbox(&id)?;
                }
                continue;
            }
            if entry.package.header.expires <= now {
                tracing::warn!(%id, "package expired undelivered");
                self.store.remove_outbox(&id)?;
                continue;
            }
            let peer = entry.next_hop.to_peer_id();
            if self.ready(&peer) {
                self.in_flight.insert(id);
                self.request(
                    peer,
                    Request::Deliver(entry.package.clone()),
                    Pending::Deliver(id),
                );
            } else {
                let addrs = self
                    .directory()
                    .get(&entry.next_hop)
                    .map(|e| e.record().addresses.clone())
                    .unwrap_or_default();
                let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                if !self.swarm.is_connected(&peer)
                    && let Err(e) = self.swarm.dial(opts)
                {
                    entry.last_error = Some(format!("cannot dial {}: {e}", entry.next_hop));
                }
                entry.attempts += 1;
                entry.next_attempt =
                    delivery::next_attempt(now, entry.attempts, u64::from_le_bytes(random_bytes()));
                // An unreachable recipient: let the regional center hold it and forward it later.
                if let Some(&relay) = self.relay_via.first()
                    && entry.origin == Origin::Local
                    && entry.next_hop == entry.package.header.recipient
                    && entry.attempts >= UNREACHABLE_AFTER
                    && relay != entry.next_hop
                {
                    entry.next_hop = relay;
                    entry.next_attempt = now;
                }
                self.store.put_outbox(&entry)?;
            }
        }
        Ok(())
    }

    /// A dial for waiting packages failed: the attempt was counted when the
    /// dial started; here the operator gets to see why it failed.
    pub(super) fn dial_failed(&mut self, peer: PeerId, error: &str) {
        let Ok(org) = OrgId::from_peer_id(&peer) else {
            return;
        };
        let Ok(entries) = self.store.outbox() else {
            return;
        };
        for mut entry in entries.into_iter().filter(|e| e.next_hop == org) {
            let id = entry.package.header.id;
            let error = format!("cannot reach {org}: {error}");
            entry.last_error = Some(error.clone());
            if self.store.put_outbox(&entry).is_ok() {
                self.emit(NodeEvent::DeliveryRetry { id, error });
            }
        }
    }

    /// The next hop answered with a refusal: a permanent one ends the
    /// package's delivery (the reason stays in the outbox for the
    /// operator), a transient one is retried with backoff.
    pub(super) fn delivery_refused(&mut self, id: PackageId, reason: Refusal) {
        if !reason.is_permanent() {
            return self.delivery_failed(id, reason.to_string());
        }
        self.in_flight.remove(&id);
        tracing::warn!(%id, "package refused for good: {reason}");
        if let Ok(Some(mut entry)) = self.store.outbox_entry(&id) {
            entry.attempts += 1;
            entry.last_error = Some(reason.to_string());
            entry.refused = Some(reason.clone());
            // Checked again only to drop it once it has expired.
            entry.next_attempt = entry.package.header.expires;
            let _ = self
                .store
                .put_outbox(&entry)
                .and_then(|_| self.store.flush());
        }
        self.emit(NodeEvent::DeliveryRefused { id, reason });
    }

    /// Deletes the attachments whose retention after delivery has passed.
    pub(super) fn remove_expired_blobs(&mut self) {
        let due = match self.store.take_expired_blobs(self.now(), 64) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("attachment retention: {e}");
                return;
            }
        };
        for hash in due {
            self.served.remove(&hash);
            match self.blobs.remove(&hash) {
                Ok(()) => self.emit(NodeEvent::AttachmentRemoved { blob: hash }),
                Err(e) => tracing::error!("attachment retention: {e}"),
            }
        }
    }

    /// Whether this node, as a relay, carries a package to `recipient`
    /// from the peer `from`: the recipient must be a known, unrevoked
    /// organization, and one end of the hop must be in this relay's region
    /// (a regional center carries its region's traffic, not anyone's).
    fn relay_policy(&self, from: OrgId, recipient: OrgId) -> Result<(), Refusal> {
        let Some(entry) = self.directory().get(&recipient) else {
            return Err(match self.refused_orgs.get(&recipient) {
                Some(r) if r.revoked => Refusal::Revoked(recipient),
                _ => Refusal::UnknownRecipient(recipient),
            });
        };
        let mine = &self.me.cert.region;
        let from_here = self
            .directory()
            .get(&from)
            .is_some_and(|e| e.region() == mine);
        if entry.region() == mine || from_here {
            Ok(())
        } else {
            Err(Refusal::NotRelayed {
                recipient,
                policy: format!("this relay carries packages to and from region {mine} only"),
            })
        }
    }

    pub(super) fn delivery_failed(&mut self, id: PackageId, error: String) {
        self.in_flight.remove(&id);
        if let Ok(Some(mut entry)) = self.store.outbox_entry(&id) {
            entry.attempts += 1;
            entry.next_attempt = delivery::next_attempt(
                self.now(),
                entry.attempts,
                u64::from_le_bytes(random_bytes()),
            );
            entry.last_error = Some(error.clone());
            let _ = self.store.put_outbox(&entry);
        }
        self.emit(NodeEvent::DeliveryRetry { id, error });
    }

    pub(super) fn on_custody(&mut self, id: PackageId, peer: PeerId) {
        let Ok(Some(mut entry)) = self.store.outbox_entry(&id) else {
            return;
        };
        let Some(&relay) = self.certified.get(&peer) else {
            return;
        };
        match entry.origin {
            // Our own package: keep it until the recipient's receipt, but the
            // relay holds it durably, so check back rarely.
            Origin::Local => {
                entry.custody = Some(relay);
                entry.next_attempt = self.now().saturating_add(delivery::RETRY_MAX);
                let _ = self.store.put_outbox(&entry);
            }
            Origin::Relay => {
                let _ = self.store.remove_outbox(&id);
            }
        }
        let _ = self.store.flush();
        self.emit(NodeEvent::PackageInCustody { id, relay });
    }

    /// A receipt for a package we sent, or relayed.
    pub(super) fn on_receipt(&mut self, receipt: Signed<Receipt>) {
        let Ok(body) = receipt.decode_unverified() else {
            return;
        };
        let Ok(Some(entry)) = self.store.outbox_entry(&body.package) else {
            return;
        };
        if let Err(e) = delivery::check_receipt(&receipt, &entry.package) {
            tracing::warn!(id = %body.package, "bad receipt: {e}");
            return;
        }
        let id = body.package;
        let _ = self.store.remove_outbox(&id);
        // Sealed to the recipient, which now holds them: ours are needed
        // only while someone may still ask again (a sender checking back
        // with a relay). Escalation uses our own copy, sealed to us.
        let expire_at = self.now().saturating_add(self.keep_delivered);
        for blob in &entry.package.header.attachments {
            let _ = self.store.expire_blob(&blob.hash, expire_at);
        }
        match entry.origin {
            Origin::Local => {
                let _ = self.store.put_sent(
                    &id,
                    &SentEntry {
                        recipient: body.recipient,
                        receipt,
                        attempts: entry.attempts,
                    },
                );
                let _ = self.store.flush();
                self.emit(NodeEvent::PackageDelivered {
                    id,
                    recipient: body.recipient,
                });
            }
            Origin::Relay => {
                let _ = self.store.flush();
                self.forward_receipt(receipt, body.sender);
            }
        }
    }

    pub(super) fn forward_receipt(&mut self, receipt: Signed<Receipt>, sender: OrgId) {
        let peer = sender.to_peer_id();
        if self.ready(&peer) {
            self.request(peer, Request::Receipt(receipt), Pending::Receipt);
        } else {
            self.receipts_for_senders.push(receipt);
            let _ = self.swarm.dial(peer);
        }
    }

    pub(super) fn receive_package(
        &mut self,
        from: OrgId,
        package: seal::SealedPackage,
    ) -> Response {
        if let Err(e) = package.header.check(self.now()) {
            return Response::Refused(e.into());
        }
        if package.header.recipient != self.me.cert.org
            && let Err(refusal) = self.relay_policy(from, package.header.recipient)
        {
            return Response::Refused(refusal);
        }
        let id = package.header.id;
        let done = match package.header.recipient == self.me.cert.org {
            true => self.store.is_seen(&id).unwrap_or(false),
            false => matches!(self.store.outbox_entry(&id), Ok(Some(_))),
        };
        let missing: Vec<BlobRef> = package
            .header
            .attachments
            .iter()
            .filter(|b| !self.blobs.has(b))
            .copied()
            .collect();
        if done || missing.is_empty() {
            return self.accept_package(from, package);
        }
        if let Some(bad) = missing
            .iter()
            .find(|b| self.fetches.hash_failures(&b.hash) >= MAX_HASH_FAILURES)
        {
            let _ = self.store.remove_waiting(&id);
            let hash: String = hex::encode(bad.hash);
            return Response::Refused(Refusal::Invalid(format!(
                "attachment {hash} failed its hash check {MAX_HASH_FAILURES} times: the copy it is sent from is damaged"
            )));
        }
        // Attachments first: fetch them from whoever delivered the package.
        if let Err(e) = self
            .store
            .put_waiting(&package, &from)
            .and_then(|_| self.store.flush())
        {
            return Response::Refused(Refusal::Transient(format!("cannot hold the package: {e}")));
        }
        let peer = from.to_peer_id();
        for blob in missing {
            self.start_fetch(blob, peer);
        }
        let total = package.header.attachments.iter().map(|b| b.size).sum();
        let have = package
            .header
            .attachments
            .iter()
            .map(|b| self.blobs.received(b))
            .sum();
        Response::Fetching { have, total }
    }

    /// A package whose attachments are all here: keep it for forwarding, or
    /// check it and take it into the inbox.
    pub(super) fn accept_package(&mut self, from: OrgId, package: seal::SealedPackage) -> Response {
        let now = self.now();
        let id = package.header.id;
        if package.header.recipient != self.me.cert.org {
            // Store and forward: we see only the header.
            if let Ok(Some(held)) = self.store.outbox_entry(&id) {
                // A sender checking back on a package refused further on
                // learns why, and stops.
                return match held.refused {
                    Some(refusal) => Response::Refused(refusal),
                    None => Response::Custody,
                };
            }
            let recipient = package.header.recipient;
            let entry = OutboxEntry {
                package,
                origin: Origin::Relay,
                next_hop: recipient,
                attempts: 0,
                next_attempt: now,
                last_error: None,
                custody: None,
                queued_at: now,
                refused: None,
            };
            if let Err(e) = self
                .store
                .put_outbox(&entry)
                .and_then(|_| self.store.flush())
            {
                return Response::Refused(Refusal::Transient(format!(
                    "relay cannot store the package: {e}"
                )));
            }
            self.emit(NodeEvent::Relaying { id, recipient });
            // Forward now rather than on the next tick.
            let _ = self.deliver_due();
            let _ = from;
            return Response::Custody;
        }
        match self.store.is_seen(&id) {
            Ok(true) => {
                // A retry after a lost receipt: answer with the same receipt.
                return match self.store.inbox_entry(&id) {
                    Ok(Some(held)) if held.package.body == package.body => {
                        Response::Receipt(held.receipt)
                    }
                    _ => Response::Refused(seal::SealError::Replay(id).into()),
                };
            }
            Ok(false) => {}
            Err(e) => {
                return Response::Refused(Refusal::Transient(format!("recipient store: {e}")));
            }
        }
        // Open it once to prove it is intact and really from its sender
        // before promising anything; it is stored sealed.
        let opened = match seal::open(
            &package,
            self.me.cert.org,
            &self.sealing,
            self.directory(),
            now,
            |_| false,
        ) {
            Ok(body) => body,
            Err(e) => return Response::Refused(e.into()),
        };
        let receipt = Signed::sign(&self.identity, &Receipt::for_package(&package, now));
        let bytes = package.body.len();
        let sender = package.header.sender;
        let stored = self
            .store
            .put_inbox(&InboxEntry {
                package: package.clone(),
                receipt: receipt.clone(),
                received_at: now,
            })
            .and_then(|_| self.store.mark_seen(&id, package.header.expires))
            .and_then(|_| self.store.flush());
        if let Err(e) = stored {
            return Response::Refused(Refusal::Transient(format!(
                "recipient cannot store the package: {e}"
            )));
        }
        self.emit(NodeEvent::PackageReceived { id, sender, bytes });
        self.on_body(sender, id, &opened);
        Response::Receipt(receipt)
    }

    pub(super) fn open_package(
        &self,
        id: PackageId,
    ) -> Result<(EnvelopeHeader, Vec<u8>), NodeError> {
        let (header, sealed, keys) = self.received(id)?;
        let mut body = Vec::new();
        seal::open_body(&header, &self.sealing, &keys, &sealed, &mut body)?;
        Ok((header, body))
    }
}
