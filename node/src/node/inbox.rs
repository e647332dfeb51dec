//! Receiving: a package a peer delivers is ours (checked, opened once,
//! stored with its signed receipt), one to carry for others (stored and
//! handed to the delivery machine), or refused. Attachments come first.

use super::*;
use crate::storage::store::Batch;
use konsilium_protocol::outbox::{Inbound, PackageMeta};

impl Node {
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

    /// The answer to a `Request::Deliver`: the delivery machine decides
    /// whether the package is ours, one to relay, or refused; missing
    /// attachments are fetched from whoever delivered it first.
    pub(super) fn receive_package(
        &mut self,
        from: OrgId,
        package: seal::SealedPackage,
    ) -> Response {
        let id = package.header.id;
        let done = match self.inbound(from, &package.header) {
            Inbound::Answer(response) => return response,
            Inbound::ForUs => self.store.is_seen(&id).unwrap_or(false),
            Inbound::Relay => false,
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

    fn inbound(&self, from: OrgId, header: &EnvelopeHeader) -> Inbound {
        self.outbox.inbound(self.now(), from, header, &self.known())
    }

    /// A package whose attachments are all here: keep it for forwarding, or
    /// check it and take it into the inbox. Asks the delivery machine
    /// again, since a package may wait long for its attachments.
    pub(super) fn accept_package(&mut self, from: OrgId, package: seal::SealedPackage) -> Response {
        match self.inbound(from, &package.header) {
            Inbound::Answer(response) => response,
            Inbound::Relay => self.relay_package(package),
            Inbound::ForUs => self.take_in(package),
        }
    }

    /// Store and forward: we see only the header. Custody is promised once
    /// the package is on disk.
    fn relay_package(&mut self, package: seal::SealedPackage) -> Response {
        let (id, recipient) = (package.header.id, package.header.recipient);
        let entry = self
            .outbox
            .entry_for(self.now(), PackageMeta::of(&package), &self.known());
        if let Err(e) = self.queue(package, entry) {
            return Response::Refused(Refusal::Transient(format!(
                "relay cannot store the package: {e}"
            )));
        }
        self.emit(NodeEvent::Relaying { id, recipient });
        Response::Custody
    }

    /// A package for us: opened once to prove it is intact and really from
    /// its sender before anything is promised; stored sealed.
    fn take_in(&mut self, package: seal::SealedPackage) -> Response {
        let now = self.now();
        let id = package.header.id;
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
        // The package, its id for replay protection, and what its workflow
        // changes (the consultation, the journal) land in one write.
        let mut batch = Batch::default();
        batch.put_inbox(&InboxEntry {
            package: package.clone(),
            receipt: receipt.clone(),
            received_at: now,
        });
        batch.mark_seen(&id, package.header.expires);
        let later = match self.on_body(batch, sender, id, &opened) {
            Ok(later) => later,
            Err(e) => {
                return Response::Refused(Refusal::Transient(format!(
                    "recipient cannot store the package: {e}"
                )));
            }
        };
        self.emit(NodeEvent::PackageReceived { id, sender, bytes });
        self.carry_out(later, None);
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
