//! Receiving: a package a peer delivers is ours (checked, opened once,
//! stored with its signed receipt), one to carry for others (stored and
//! handed to the delivery machine), or refused. Attachments come first.
//!
//! A package for us is opened off the event loop (a large one on a
//! blocking thread); its answer (the receipt, or why not) goes out when
//! the opened body comes back to the event loop and is durable.

use super::*;
use crate::net::budget::Framed;
use crate::storage::store::Batch;
use konsilium_protocol::desk::Output as DeskOutput;
use konsilium_protocol::outbox::{Inbound, PackageMeta};
use libp2p::request_response::ResponseChannel;

/// Packages held while their attachments arrive, from one delivering peer
/// and in all: a relay passes on a region's traffic, so its share is large.
const MAX_WAITING_FROM_ONE: usize = 64;
const MAX_WAITING: usize = 1024;

/// Packages being opened off the event loop or waiting for a core to open
/// them, at most this many and this many bytes of bodies. Beyond either a
/// delivery is refused as transient (the sender retries two seconds
/// later), so a burst of large bodies holds bounded memory; a sender's
/// window of small packages (`outbox::WINDOW`) all wait their turn.
const MAX_OPENING: usize = 256;
const MAX_OPENING_BYTES: usize = 64 << 20;

/// Disk kept free whatever attachments peers announce: the database and
/// the journal must stay writable, or the node takes nothing at all.
const DISK_RESERVE: u64 = 1 << 30;

/// Whether attachments of `needed` bytes fit beside the reserve on a disk
/// with `free` bytes; why not, if they do not.
fn disk_room(needed: u64, free: u64) -> Result<(), String> {
    if needed
        .checked_add(DISK_RESERVE)
        .is_none_or(|total| total > free)
    {
        return Err(format!(
            "not enough disk space for {needed} bytes of attachments: {free} bytes free, \
             {DISK_RESERVE} of them kept for the database and the journal"
        ));
    }
    Ok(())
}

/// The answer to a delivery: now, once what was written before it is
/// durable, or once the package is opened.
pub(super) enum Answer {
    Now(Response),
    /// A receipt or custody: what it vouches for was written, and that
    /// write's flush may still be running.
    Durable(Response),
    Opening(PackageId),
    /// A parcel's packages' answers, each as it comes.
    Parcel(Vec<Answer>),
}

impl Answer {
    /// A receipt or a custody vouches for the package on disk: it waits
    /// for a flush that began after the package was written (a package
    /// delivered again may have been written a moment ago); a refusal
    /// goes now.
    fn vouching(response: Response) -> Self {
        match response {
            Response::Receipt(_) | Response::Custody => Answer::Durable(response),
            other => Answer::Now(other),
        }
    }
}

/// A waiting answer once its flush ended: as it was, or, if the flush
/// failed, a refusal the sender retries.
fn once_flushed(response: Response, flushed: Result<(), &StoreError>) -> Response {
    match flushed {
        Ok(()) => response,
        Err(e) => not_stored(e),
    }
}

/// Said by a recipient or a relay alike.
fn not_stored(e: &StoreError) -> Response {
    Response::Refused(Refusal::Transient(format!(
        "the package is not durable here: {e}"
    )))
}

/// An opened package taken in: answered now, or written and waiting for
/// a group commit's flush.
enum Stored {
    Answer(Response),
    Written(Box<Written>),
}

/// What an opened package's answer needs once its write is durable.
struct Written {
    receipt: Signed<Receipt>,
    /// What the workflow carries out next.
    later: Vec<DeskOutput>,
    /// The journal before the write, should its flush fail.
    journal: Journal,
    received: NodeEvent,
}

/// Where the answer for a package being opened goes.
pub(super) enum Reply {
    /// The delivering peer's request, answered on its stream.
    Channel(ResponseChannel<Framed<Response>>),
    /// A package accepted after its attachments arrived: its receipt goes
    /// to the organization that delivered it, as a request of our own.
    Receipt(OrgId),
    /// Package `.1` of a parcel a peer delivered (`parcels::Gathering`).
    Part(u64, usize),
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
        let done = match self.inbound(from, &package) {
            Inbound::Answer(response) => return Answer::vouching(response),
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
        // Held on disk while its attachments arrive: a bounded number,
        // so no peer can fill the disk with packages whose attachments it
        // never serves (they also go when they expire).
        if let Some(refusal) = self.no_room_to_wait(from) {
            return Answer::Now(Response::Refused(refusal));
        }
        // Nor fill the disk: the sender tries again later, when there is room.
        let needed = missing.iter().map(|b| b.size).sum();
        let room = rustix::fs::statvfs(self.blobs.dir())
            .map_err(|e| format!("cannot tell the attachment directory's free space: {e}"))
            .and_then(|s| disk_room(needed, s.f_bavail.saturating_mul(s.f_frsize)));
        if let Err(why) = room {
            tracing::warn!(%from, %id, "{why}");
            return Answer::Now(Response::Refused(Refusal::Transient(why)));
        }
        // Attachments first: fetch them from whoever delivered the package.
        // Holding it promises nothing (its sender keeps it until a receipt
        // or custody), so its flush is the turn's.
        if let Err(e) = self.store.put_waiting(&package, &from) {
            let why = format!("cannot hold the package: {e}");
            return Answer::Now(Response::Refused(Refusal::Transient(why)));
        }
        self.flush_at_turn_end();
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

    /// Why one more package from `from` cannot wait for its attachments
    /// here, if it cannot. Expired ones may be what fills the place: they
    /// are dropped first.
    fn no_room_to_wait(&mut self, from: OrgId) -> Option<Refusal> {
        let mut pruned = false;
        loop {
            let heads = match self.store.waiting_heads() {
                Ok(heads) => heads,
                Err(e) => {
                    return Some(Refusal::Transient(format!("cannot hold the package: {e}")));
                }
            };
            let theirs = heads.iter().filter(|(_, by)| *by == from).count();
            let why = if theirs >= MAX_WAITING_FROM_ONE {
                format!("{theirs} packages from you already wait here for their attachments")
            } else if heads.len() >= MAX_WAITING {
                format!(
                    "{} packages already wait here for their attachments",
                    heads.len()
                )
            } else {
                return None;
            };
            if pruned {
                return Some(Refusal::Transient(format!("{why}: try again later")));
            }
            self.release_waiting();
            pruned = true;
        }
    }

    fn inbound(&self, from: OrgId, package: &seal::SealedPackage) -> Inbound {
        self.outbox
            .inbound(self.now(), from, package, &self.known())
    }

    /// A package whose attachments are all here: keep it for forwarding, or
    /// check it and take it into the inbox. Asks the delivery machine
    /// again, since a package may wait long for its attachments.
    pub(super) fn accept_package(&mut self, from: OrgId, package: seal::SealedPackage) -> Answer {
        match self.inbound(from, &package) {
            Inbound::Answer(response) => Answer::vouching(response),
            Inbound::Relay => self.relay_package(package),
            Inbound::ForUs => self.take_in(from, package),
        }
    }

    /// Store and forward: we see only the header. The package goes on to
    /// its next hop at once, while its flush runs; custody is promised,
    /// and the relaying reported, once it is on disk. A relay that stops
    /// before that promised nothing: the sender still holds the package
    /// and delivers it again, and a recipient that has it already answers
    /// with the same receipt.
    fn relay_package(&mut self, package: seal::SealedPackage) -> Answer {
        let (id, recipient) = (package.header.id, package.header.recipient);
        let entry = self
            .outbox
            .entry_for(self.now(), PackageMeta::of(&package), &self.known());
        let stored = (self.store.put_outbox(&OutboxEntry::new(package, &entry)))
            .map_err(NodeError::from)
            .and_then(|()| self.enqueue(id, entry));
        if let Err(e) = stored {
            return Answer::Now(Response::Refused(Refusal::Transient(format!(
                "relay cannot store the package: {e}"
            ))));
        }
        self.once_durable(move |node, flushed| {
            if flushed.is_ok() {
                node.emit(NodeEvent::Relaying { id, recipient });
            }
        });
        Answer::Durable(Response::Custody)
    }

    /// A package for us: opened once (off the event loop) to prove it is
    /// intact and really from its sender before anything is promised.
    fn take_in(&mut self, from: OrgId, package: seal::SealedPackage) -> Answer {
        let id = package.header.id;
        if let Some(response) = self.answer_if_seen(&package) {
            return Answer::vouching(response);
        }
        if self.opening.contains_key(&id) {
            // Delivered again while being opened: answered with the first.
            return Answer::Opening(id);
        }
        let bytes = package.body.len();
        if self.opening.len() >= MAX_OPENING
            || self.opening_bytes.saturating_add(bytes) > MAX_OPENING_BYTES
        {
            let why = format!(
                "{} packages of {} bytes are being opened; ask again",
                self.opening.len(),
                self.opening_bytes
            );
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
        self.opening_bytes += bytes;
        let keyring = self.keyring.clone();
        let receiving = Purpose::Receiving(self.now());
        let back = self.loopback.clone();
        let cores = self.open_slots.clone();
        tokio::spawn(async move {
            // One at a time a core: more would only take turns.
            let Ok(_core) = cores.acquire_owned().await else {
                return;
            };
            let opened = by_size(bytes, move || {
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
    fn reply_when_opened(&mut self, id: PackageId, reply: Reply) {
        match self.opening.get_mut(&id) {
            Some(replies) => replies.push(reply),
            None => tracing::warn!(%id, "an answer was awaited for a package not being opened"),
        }
    }

    /// A package's body came back opened: take it in (stored with its
    /// receipt in one write) and answer everyone waiting once the turn's
    /// flush made it durable.
    pub(super) fn on_opened(
        &mut self,
        from: OrgId,
        package: seal::SealedPackage,
        body: Result<Vec<u8>, seal::SealError>,
    ) {
        let replies = self.opening.remove(&package.header.id).unwrap_or_default();
        self.opening_bytes = self.opening_bytes.saturating_sub(package.body.len());
        let response = match body {
            Ok(body) => match self.store_opened(package, &body) {
                // Seen before, while it was opened: a receipt waits for
                // its write's flush like any other.
                Stored::Answer(response) => return self.reply(replies, Answer::vouching(response)),
                Stored::Written(written) => {
                    self.once_durable(move |node, flushed| {
                        let response = node.on_durable(*written, flushed);
                        node.send_answer(replies, response);
                    });
                    return;
                }
            },
            Err(e) => {
                // The header passed its checks, so the sealed bytes were
                // altered (or sealed wrong). The sender that delivered them
                // itself did it; a relay cannot open what it carries, and
                // charging it would let any member of its region have it
                // banned with ten packages of junk. A package sealed to a
                // key we retired long ago is only late.
                let retired = matches!(e, seal::SealError::RetiredKey { .. });
                let direct = from == package.header.sender;
                let delivered =
                    matches!(replies.first(), Some(Reply::Channel(_) | Reply::Part(..)));
                if delivered && !retired && direct {
                    let now = self.now();
                    let peer = from.to_peer_id();
                    (self.admission).handle_offence(now, peer, Offence::BadPackage);
                    self.drive_admission();
                }
                Response::Refused(e.into())
            }
        };
        self.send_answer(replies, response);
    }

    /// Sends an answer where it goes: now, once a flush that began after
    /// the writes it vouches for ended, or once the package is opened.
    pub(super) fn reply(&mut self, replies: Vec<Reply>, answer: Answer) {
        match answer {
            Answer::Now(response) => self.send_answer(replies, response),
            Answer::Durable(response) => self.once_durable(move |node, flushed| {
                node.send_answer(replies, once_flushed(response, flushed))
            }),
            Answer::Opening(id) => {
                for reply in replies {
                    self.reply_when_opened(id, reply);
                }
            }
            Answer::Parcel(answers) => self.gather(replies, answers),
        }
    }

    /// An answer, to everyone who waits for it.
    pub(super) fn send_answer(&mut self, replies: Vec<Reply>, response: Response) {
        for reply in replies {
            match reply {
                Reply::Channel(channel) => self.respond(channel, response.clone()),
                Reply::Receipt(to) => match &response {
                    Response::Receipt(receipt) => {
                        let request = Request::Receipt(receipt.clone());
                        self.request(to.to_peer_id(), request, Pending::Receipt);
                    }
                    Response::Refused(reason) => {
                        tracing::warn!(from = %to, "package refused after its attachments arrived: {reason}")
                    }
                    _ => {}
                },
                Reply::Part(parcel, i) => self.gathered(parcel, i, response.clone()),
            }
        }
    }

    /// Writes an opened package with its signed receipt, and what its
    /// workflow changes, in one write; the receipt waits for the flush.
    fn store_opened(&mut self, package: seal::SealedPackage, opened: &[u8]) -> Stored {
        if let Some(response) = self.answer_if_seen(&package) {
            return Stored::Answer(response);
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
        let journal = self.journal.clone();
        match self.on_body(batch, sender, id, opened) {
            Ok(later) => Stored::Written(Box::new(Written {
                receipt,
                later,
                journal,
                received: NodeEvent::PackageReceived { id, sender, bytes },
            })),
            Err(e) => Stored::Answer(Response::Refused(Refusal::Transient(format!(
                "recipient cannot store the package: {e}"
            )))),
        }
    }

    /// The opened package's write is durable (its receipt goes out, its
    /// workflow goes on) or its flush failed (memory goes back to the
    /// disk's, and the sender retries).
    fn on_durable(&mut self, written: Written, flushed: Result<(), &StoreError>) -> Response {
        if let Err(e) = flushed {
            self.undo_desk(written.journal, &written.later);
            return not_stored(e);
        }
        self.emit(written.received);
        self.carry_out(written.later, None);
        Response::Receipt(written.receipt)
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

#[cfg(test)]
mod tests {
    use super::{DISK_RESERVE, disk_room};

    #[test]
    fn attachments_are_taken_only_while_the_reserve_stays_free() {
        let gib = 1u64 << 30;
        assert!(disk_room(gib, 2 * gib + DISK_RESERVE).is_ok());
        assert!(disk_room(gib, gib + DISK_RESERVE).is_ok());
        let refused = disk_room(gib, gib + DISK_RESERVE - 1).unwrap_err();
        assert!(refused.contains("not enough disk space"), "{refused}");
        assert!(disk_room(u64::MAX, u64::MAX).is_err(), "no overflow");
        assert!(
            disk_room(0, DISK_RESERVE - 1).is_err(),
            "nothing below the reserve"
        );
    }
}
