//! Receiving: a package a peer delivers is ours (checked, opened once,
//! stored with its signed receipt), one to carry for others (stored and
//! handed to the delivery machine), or refused. Attachments come first.
//!
//! A package for us is opened on a blocking thread, since a body can be
//! large; its answer (the receipt, or why not) goes out when the opened
//! body comes back to the event loop.

use super::*;
use crate::storage::store::Batch;
use konsilium_protocol::outbox::{Inbound, PackageMeta};
use libp2p::request_response::ResponseChannel;

/// Packages opened off the event loop at once. Beyond this a delivery is
/// refused as transient (the sender retries), so a burst of large bodies
/// holds bounded memory.
const MAX_OPENING: usize = 32;

/// The answer to a delivery: now, or once the package is opened.
pub(super) enum Answer {
    Now(Response),
    Opening(PackageId),
}

/// Where the answer for a package being opened goes.
pub(super) enum Reply {
    /// The delivering peer's request, answered on its stream.
    Channel(ResponseChannel<Response>),
    /// A package accepted after its attachments arrived: its receipt goes
    /// to the organization that delivered it, as a request of our own.
    Receipt(OrgId),
}

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
        Ok((header, self.keyring.clone(), keys, self.blobs.clone()))
    }

    /// The conclusion's files are the attachments of the package that
    /// carried the conclusion here: the requester's and each invited
    /// organization's own sealed copy. The consultant holds the originals.
    pub(super) fn conclusion_file_keys(
        &self,
        id: &ConsultationId,
    ) -> Result<AttachmentKeys, NodeError> {
        match self.store.conclusion_package(id)? {
            Some(package) => self.attachment_keys(package),
            None => Err(NodeError::Attachment(format!(
                "no conclusion of consultation {id} with files was received here"
            ))),
        }
    }

    /// The answer to a `Request::Deliver`: the delivery machine decides
    /// whether the package is ours, one to relay, or refused; missing
    /// attachments are fetched from whoever delivered it first.
    pub(super) fn receive_package(&mut self, from: OrgId, package: seal::SealedPackage) -> Answer {
        let id = package.header.id;
        let done = match self.inbound(from, &package.header) {
            Inbound::Answer(response) => return Answer::Now(response),
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
            return Answer::Now(Response::Refused(Refusal::Invalid(format!(
                "attachment {hash} failed its hash check {MAX_HASH_FAILURES} times: the copy it is sent from is damaged"
            ))));
        }
        // Attachments first: fetch them from whoever delivered the package.
        if let Err(e) = self
            .store
            .put_waiting(&package, &from)
            .and_then(|_| self.store.flush())
        {
            let why = format!("cannot hold the package: {e}");
            return Answer::Now(Response::Refused(Refusal::Transient(why)));
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
        Answer::Now(Response::Fetching { have, total })
    }

    fn inbound(&self, from: OrgId, header: &EnvelopeHeader) -> Inbound {
        self.outbox.inbound(self.now(), from, header, &self.known())
    }

    /// A package whose attachments are all here: keep it for forwarding, or
    /// check it and take it into the inbox. Asks the delivery machine
    /// again, since a package may wait long for its attachments.
    pub(super) fn accept_package(&mut self, from: OrgId, package: seal::SealedPackage) -> Answer {
        match self.inbound(from, &package.header) {
            Inbound::Answer(response) => Answer::Now(response),
            Inbound::Relay => Answer::Now(self.relay_package(package)),
            Inbound::ForUs => self.take_in(from, package),
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

    /// A package for us: opened once (off the event loop) to prove it is
    /// intact and really from its sender before anything is promised.
    fn take_in(&mut self, from: OrgId, package: seal::SealedPackage) -> Answer {
        let id = package.header.id;
        if let Some(response) = self.answer_if_seen(&package) {
            return Answer::Now(response);
        }
        if self.opening.contains_key(&id) {
            // Delivered again while being opened: answered with the first.
            return Answer::Opening(id);
        }
        if self.opening.len() >= MAX_OPENING {
            let why = format!("{MAX_OPENING} packages are being opened; ask again");
            return Answer::Now(Response::Refused(Refusal::Transient(why)));
        }
        let me = self.me.cert.org;
        let keys = match seal::check_header(
            &package.header,
            me,
            self.directory(),
            self.now(),
            |_| false,
        ) {
            Ok(keys) => keys,
            Err(e) => return Answer::Now(Response::Refused(e.into())),
        };
        self.opening.insert(id, Vec::new());
        let keyring = self.keyring.clone();
        let receiving = Purpose::Receiving(self.now());
        let back = self.loopback.clone();
        tokio::spawn(async move {
            let opened = tokio::task::spawn_blocking(move || {
                let mut body = Vec::new();
                let opened =
                    keyring.open_body(&package.header, &keys, &package.body, &mut body, receiving);
                (package, opened.map(|()| body))
            })
            .await;
            if let Ok((package, body)) = opened {
                let _ = back.send(Command::Opened {
                    from,
                    package: Box::new(package),
                    body,
                });
            }
        });
        Answer::Opening(id)
    }

    /// The same package again after it was taken in: a retry after a lost
    /// receipt gets the same receipt; other bytes under its id are a replay.
    fn answer_if_seen(&self, package: &seal::SealedPackage) -> Option<Response> {
        let id = package.header.id;
        match self.store.is_seen(&id) {
            Ok(true) => Some(match self.store.inbox_entry(&id) {
                Ok(Some(held)) if held.package.body == package.body => {
                    Response::Receipt(held.receipt)
                }
                _ => Response::Refused(seal::SealError::Replay(id).into()),
            }),
            Ok(false) => None,
            Err(e) => Some(Response::Refused(Refusal::Transient(format!(
                "recipient store: {e}"
            )))),
        }
    }

    /// Where the answer for the package being opened goes.
    pub(super) fn reply_when_opened(&mut self, id: PackageId, reply: Reply) {
        match self.opening.get_mut(&id) {
            Some(replies) => replies.push(reply),
            None => tracing::warn!(%id, "an answer was awaited for a package not being opened"),
        }
    }

    /// A package's body came back from its blocking thread: take it in
    /// (stored with its receipt in one write) and answer everyone waiting.
    pub(super) fn on_opened(
        &mut self,
        from: OrgId,
        package: seal::SealedPackage,
        body: Result<Vec<u8>, seal::SealError>,
    ) {
        let replies = self.opening.remove(&package.header.id).unwrap_or_default();
        let response = match body {
            Ok(body) => self.store_opened(package, &body),
            Err(e) => {
                // The header passed its checks, so the sealed bytes were
                // altered (or sealed wrong) by whoever delivered them. A
                // package sealed to a key we retired long ago is only late.
                let retired = matches!(e, seal::SealError::RetiredKey { .. });
                if let (Some(Reply::Channel(_)), false) = (replies.first(), retired) {
                    let now = self.now();
                    let peer = from.to_peer_id();
                    (self.admission).handle_offence(now, peer, Offence::BadPackage);
                    self.drive_admission();
                }
                Response::Refused(e.into())
            }
        };
        for reply in replies {
            match reply {
                Reply::Channel(channel) => {
                    let answer = response.clone();
                    let _ = (self.swarm.behaviour_mut().rpc).send_response(channel, answer);
                }
                Reply::Receipt(to) => match &response {
                    Response::Receipt(receipt) => {
                        let request = Request::Receipt(receipt.clone());
                        self.request(to.to_peer_id(), request, Pending::Receipt);
                    }
                    Response::Refused(reason) => {
                        tracing::warn!(%from, "package refused after its attachments arrived: {reason}")
                    }
                    _ => {}
                },
            }
        }
    }

    /// Stores an opened package with its signed receipt, and what its
    /// workflow changes, in one write.
    fn store_opened(&mut self, package: seal::SealedPackage, opened: &[u8]) -> Response {
        if let Some(response) = self.answer_if_seen(&package) {
            return response;
        }
        let now = self.now();
        let id = package.header.id;
        let receipt = Signed::sign(&self.identity, &Receipt::for_package(&package, now));
        let bytes = package.body.len();
        let sender = package.header.sender;
        let mut batch = Batch::default();
        batch.mark_seen(&id, package.header.expires);
        batch.put_inbox(&InboxEntry {
            package,
            receipt: receipt.clone(),
            received_at: now,
        });
        let later = match self.on_body(batch, sender, id, opened) {
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
        self.keyring
            .open_body(&header, &keys, &sealed, &mut body, Purpose::Held)?;
        Ok((header, body))
    }
}
