//! Sending: routing a package, sealing it into the outbox, and carrying out
//! what the delivery machine ([`konsilium_protocol::outbox::Outbox`])
//! decides. The machine chooses hops, retries, custody and receipts; this
//! file reads and writes the package bytes, speaks to the swarm and tells
//! the application what happened.

use super::*;
use konsilium_protocol::outbox::{self as machine, Output, PackageMeta};

/// When attachments due for deletion are tried again after a flush failed.
const BLOB_EXPIRY_RETRY: Duration = Duration::from_secs(60);

/// The directory as the delivery machine sees it: verified records for
/// regions, and the organizations refused since for revocations.
pub(super) struct Known<'a> {
    directory: &'a Directory,
    refused: &'a BTreeMap<OrgId, inspect::RefusedOrg>,
}

impl machine::Directory for Known<'_> {
    fn region(&self, org: &OrgId) -> Option<&RegionCode> {
        // Revoked records are dropped from the directory as the revocation
        // is learnt, so a record here is not revoked.
        self.directory.get(org).map(|e| e.region())
    }

    fn is_revoked(&self, org: &OrgId) -> bool {
        self.refused.get(org).is_some_and(|r| r.revoked)
    }
}

/// The stored entry and the machine's: the machine's fields are the
/// stored ones minus the bytes, with custody and refusal as one status.
impl OutboxEntry {
    /// The package with the machine's first entry for it.
    pub(crate) fn new(package: seal::SealedPackage, entry: &machine::Entry) -> Self {
        let mut stored = OutboxEntry {
            package,
            origin: entry.origin,
            next_hop: entry.next_hop,
            attempts: 0,
            next_attempt: entry.next_attempt,
            last_error: None,
            custody: None,
            queued_at: entry.queued_at,
            refused: None,
        };
        stored.set(entry);
        stored
    }

    /// Writes the machine's state of the package here.
    pub(crate) fn set(&mut self, entry: &machine::Entry) {
        self.origin = entry.origin;
        self.next_hop = entry.next_hop;
        self.attempts = entry.attempts;
        self.next_attempt = entry.next_attempt;
        self.last_error.clone_from(&entry.last_error);
        self.queued_at = entry.queued_at;
        (self.custody, self.refused) = match &entry.status {
            machine::Status::Queued => (None, None),
            machine::Status::InCustody { relay } => (Some(*relay), None),
            machine::Status::Refused(reason) => (None, Some(reason.clone())),
        };
    }

    /// The machine's entry, when it is rebuilt at start. Hashes the body.
    pub(crate) fn entry(&self) -> machine::Entry {
        machine::Entry {
            package: PackageMeta::of(&self.package),
            origin: self.origin,
            next_hop: self.next_hop,
            attempts: self.attempts,
            next_attempt: self.next_attempt,
            status: match (&self.refused, self.custody) {
                (Some(reason), _) => machine::Status::Refused(reason.clone()),
                (None, Some(relay)) => machine::Status::InCustody { relay },
                (None, None) => machine::Status::Queued,
            },
            last_error: self.last_error.clone(),
            queued_at: self.queued_at,
        }
    }
}

impl Node {
    pub(super) fn known(&self) -> Known<'_> {
        Known {
            directory: self.directory(),
            refused: &self.refused_orgs,
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
        let id = PackageId(random_bytes());
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
                    case: id.0,
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
        if let Some(refused) = self.refused_orgs.get(&recipient) {
            return Err(NodeError::RefusedOrg {
                org: recipient,
                name: refused.name.clone(),
                reason: refused.reason.clone(),
            });
        }
        let entry = self
            .directory()
            .get(&recipient)
            .ok_or(NodeError::UnknownOrg(recipient))?;
        Ok(Plan {
            header: EnvelopeHeader {
                version: PACKAGE_VERSION,
                id,
                sender: self.me.cert.org,
                recipient,
                routing,
                created: now,
                expires: now.saturating_add(lifetime.min(seal::MAX_LIFETIME)),
                attachments: Vec::new(),
            },
            recipient_key: entry.record().sealing_key,
            sealing: self.keyring.current().clone(),
            blobs: self.blobs.clone(),
            recipient_name: entry.name().to_owned(),
            route,
        })
    }

    /// Seals the body and queues the package durably; the delivery machine
    /// sends it once the event loop drains its output.
    pub(super) fn commit(&mut self, plan: Plan, body: &[u8]) -> Result<Sent, NodeError> {
        let package = seal::seal(
            plan.header,
            self.keyring.current(),
            &plan.recipient_key,
            random_bytes(),
            body,
        )?;
        let (bytes, entry, sent) = self.entry_for(&package, plan.recipient_name, plan.route);
        self.queue(package, entry)?;
        self.report_queued(&sent, bytes);
        Ok(sent)
    }

    /// Queues a package its sender sealed, answered by a group commit:
    /// the package goes to the delivery machine, and its id to the
    /// caller, once a flush has made it durable with the others waiting.
    pub(super) fn queue_in_group(
        &mut self,
        queued: Queued,
        reply: oneshot::Sender<Result<Sent, NodeError>>,
    ) {
        let Queued {
            package,
            recipient_name,
            route,
        } = queued;
        let (bytes, entry, sent) = self.entry_for(&package, recipient_name, route);
        if let Err(e) = self.store.put_outbox(&OutboxEntry::new(package, &entry)) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        self.once_durable(move |node, flushed| {
            let queued = match flushed {
                Ok(()) => node.enqueue(sent.id, entry),
                Err(e) => Err(NodeError::NotDurable(e.to_string())),
            };
            let _ = reply.send(queued.map(|()| {
                node.report_queued(&sent, bytes);
                sent
            }));
        });
    }

    /// The package's first entry (where it goes) and what its sender is
    /// told, with its size.
    fn entry_for(
        &self,
        package: &seal::SealedPackage,
        recipient_name: String,
        route: Option<RouteDecision>,
    ) -> (u64, machine::Entry, Sent) {
        let entry = (self.outbox).entry_for(self.now(), PackageMeta::of(package), &self.known());
        let sent = Sent {
            id: package.header.id,
            recipient: package.header.recipient,
            recipient_name,
            next_hop: entry.next_hop,
            route,
        };
        (package.body.len() as u64, entry, sent)
    }

    fn report_queued(&mut self, sent: &Sent, bytes: u64) {
        self.metrics
            .package_bytes
            .with_label_values(&["sent"])
            .inc_by(bytes);
        self.emit(NodeEvent::PackageQueued {
            id: sent.id,
            next_hop: sent.next_hop,
        });
    }

    /// Stores a package with its entry, flushed, and hands the entry to the
    /// machine: nothing is promised (an id returned, custody answered)
    /// before the bytes are on disk.
    pub(super) fn queue(
        &mut self,
        package: seal::SealedPackage,
        entry: machine::Entry,
    ) -> Result<(), NodeError> {
        let id = package.header.id;
        self.store.put_outbox(&OutboxEntry::new(package, &entry))?;
        self.store.flush()?;
        self.enqueue(id, entry)
    }

    /// Hands a stored package's entry to the machine; one it refuses is
    /// removed from storage again.
    pub(super) fn enqueue(
        &mut self,
        id: PackageId,
        entry: machine::Entry,
    ) -> Result<(), NodeError> {
        if let Err(e) = self.outbox.enqueue(self.now(), entry) {
            let _ = self.store.remove_outbox(&id);
            return Err(e.into());
        }
        Ok(())
    }

    /// Carries out what the delivery machine decided, in its order; the
    /// application hears of it only once the storage changes are flushed
    /// (group commit).
    pub(super) fn drive_outbox(&mut self) {
        let mut events = Vec::new();
        let mut wrote = false;
        while let Some(output) = self.outbox.poll_output() {
            match output {
                Output::Deliver { token, to, id } => self.send_package(token, to, id),
                Output::Dial { to } => self.dial_hop(to),
                Output::SendReceipt { to, receipt } => {
                    self.request(to.to_peer_id(), Request::Receipt(receipt), Pending::Receipt)
                }
                Output::Persist(entry) => {
                    wrote = true;
                    if let Err(e) = self.persist(&entry) {
                        tracing::error!(id = %entry.id(), "outbox: {e}");
                    }
                }
                Output::Remove(id) => {
                    wrote = true;
                    if let Err(e) = self.store.remove_outbox(&id) {
                        tracing::error!(%id, "outbox: {e}");
                    }
                }
                Output::Event(event) => {
                    wrote |= matches!(event, machine::Event::Delivered { .. });
                    events.extend(self.on_delivery_event(event));
                }
            }
        }
        if !wrote {
            for event in events {
                self.emit(event);
            }
            return;
        }
        self.flush_at_turn_end();
        if !events.is_empty() {
            // Told once the receipts and removals are on disk; a failed
            // flush was logged with the turn.
            self.once_durable(move |node, _| {
                for event in events {
                    node.emit(event);
                }
            });
        }
    }

    /// Connects to a hop packages or receipts wait for, at the addresses
    /// its record publishes and those Kademlia learnt (a sender behind NAT
    /// publishes none, but a relay still reaches it where it was seen). A
    /// peer already connected is waiting for its Hello exchange: left alone.
    pub(super) fn dial_hop(&mut self, to: OrgId) {
        let peer = to.to_peer_id();
        if self.swarm.is_connected(&peer) {
            return;
        }
        let addrs = self
            .directory()
            .get(&to)
            .map(|e| e.record().addresses.clone())
            .unwrap_or_default();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            self.outbox.handle_dial_failed(to, &e.to_string());
        }
    }

    /// Writes the machine's state of a package beside its bytes.
    fn persist(&self, entry: &machine::Entry) -> Result<(), StoreError> {
        match self.store.outbox_entry(&entry.id())? {
            Some(mut stored) => {
                stored.set(entry);
                self.store.put_outbox(&stored)
            }
            None => {
                tracing::warn!(id = %entry.id(), "outbox entry without its package");
                Ok(())
            }
        }
    }

    /// What a delivery event means here, and the event the application
    /// hears of it (the same ones the node always reported).
    fn on_delivery_event(&mut self, event: machine::Event) -> Option<NodeEvent> {
        match event {
            machine::Event::Delivered {
                id,
                recipient,
                origin,
                attempts,
                receipt,
            } => {
                self.on_delivered(id, recipient, origin, attempts, receipt);
                (origin == Origin::Local).then_some(NodeEvent::PackageDelivered { id, recipient })
            }
            machine::Event::Custody { id, relay } => {
                Some(NodeEvent::PackageInCustody { id, relay })
            }
            machine::Event::Refused { id, reason } => {
                tracing::warn!(%id, "package refused for good: {reason}");
                Some(NodeEvent::DeliveryRefused { id, reason })
            }
            machine::Event::Retry { id, error } => Some(NodeEvent::DeliveryRetry {
                id,
                error: error.to_string(),
            }),
            machine::Event::Progress { id, have, total } => {
                Some(NodeEvent::DeliveryProgress { id, have, total })
            }
            machine::Event::Expired { id, origin } => {
                tracing::warn!(%id, ?origin, "package expired undelivered");
                None
            }
        }
    }

    /// The recipient's receipt arrived; the entry is still stored (its
    /// removal follows), so its attachments can be read here.
    fn on_delivered(
        &mut self,
        id: PackageId,
        recipient: OrgId,
        origin: Origin,
        attempts: u32,
        receipt: Signed<Receipt>,
    ) {
        // Sealed to the recipient, which now holds them: ours are needed
        // only while someone may still ask again (a sender checking back
        // with a relay). Escalation uses our own copy, sealed to us.
        let expire_at = self.now().saturating_add(self.keep_delivered);
        if let Ok(Some(stored)) = self.store.outbox_entry(&id) {
            for blob in &stored.package.header.attachments {
                if self.store.expire_blob(&blob.hash, expire_at).is_ok() {
                    self.next_blob_expiry = Some(
                        self.next_blob_expiry
                            .map_or(expire_at, |t| t.min(expire_at)),
                    );
                }
            }
        }
        if origin == Origin::Local {
            let sent = SentEntry {
                recipient,
                receipt,
                attempts,
            };
            if let Err(e) = self.store.put_sent(&id, &sent) {
                tracing::error!(%id, "cannot record the delivery: {e}");
            }
        }
    }

    /// Deletes the attachments whose retention after delivery has passed,
    /// once what made them due is on disk. A deleted file cannot come back:
    /// were the node to stop before the flush that records the delivery,
    /// it would send the package again after its restart, and would need
    /// them.
    pub(super) fn remove_expired_blobs_once_durable(&mut self) {
        self.once_durable(|node, flushed| match flushed {
            Ok(()) => node.remove_expired_blobs(),
            Err(e) => {
                tracing::error!("attachment retention waits for the disk: {e}");
                node.next_blob_expiry = Some(node.now().saturating_add(BLOB_EXPIRY_RETRY));
            }
        });
    }

    fn remove_expired_blobs(&mut self) {
        let due = match self.store.take_expired_blobs(self.now(), 64) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("attachment retention: {e}");
                return;
            }
        };
        self.next_blob_expiry = self.store.next_blob_expiry().unwrap_or_else(|e| {
            tracing::error!("attachment retention: {e}");
            None
        });
        for hash in due {
            self.served.remove(&hash);
            match self.blobs.remove(&hash) {
                Ok(()) => self.emit(NodeEvent::AttachmentRemoved { blob: hash }),
                Err(e) => tracing::error!("attachment retention: {e}"),
            }
        }
    }
}
