//! Attachments between nodes: serving pieces of sealed blobs, and pulling
//! them in order so an interrupted transfer resumes where it stopped.

use super::*;
use partials::FileReport;

impl Node {
    pub(super) fn serve_piece(
        &mut self,
        from: OrgId,
        hash: [u8; 32],
        offset: u64,
        len: u32,
    ) -> Response {
        if !self.entitled.contains(&(from, hash)) {
            match self.entitled_to(from, &hash) {
                Ok(true) => {
                    if self.entitled.len() >= 4 * SERVED_FILES {
                        self.entitled.clear();
                    }
                    self.entitled.insert((from, hash));
                }
                Ok(false) => {
                    let hash = hex::encode(hash);
                    let why = format!("no package queued here for {from} lists attachment {hash}");
                    return Response::Refused(Refusal::Invalid(why));
                }
                Err(e) => return Response::Refused(Refusal::Transient(e.to_string())),
            }
        }
        if !self.served.contains_key(&hash) {
            if self.served.len() >= SERVED_FILES {
                self.served.clear();
            }
            match self.blobs.reader(&hash) {
                Ok(file) => {
                    self.served.insert(hash, file);
                }
                Err(e) => return Response::Refused(Refusal::Transient(e.to_string())),
            }
        }
        let name: String = hex::encode(hash);
        match crate::storage::blobs::read_piece(
            &self.served[&hash],
            std::path::Path::new(&name),
            offset,
            len,
        ) {
            Ok(bytes) => Response::Blob(bytes),
            Err(e) => Response::Refused(Refusal::Transient(e.to_string())),
        }
    }

    /// Whether a package queued here for `org` (as its next hop or its
    /// recipient) lists the attachment: only those pull it; another
    /// organization's attachments are none of a peer's business, sealed or
    /// not, nor its bandwidth to take.
    fn entitled_to(&self, org: OrgId, hash: &[u8; 32]) -> Result<bool, NodeError> {
        let bound_for =
            (self.outbox.entries()).filter(|e| e.next_hop == org || e.package.recipient == org);
        for entry in bound_for {
            if let Some(header) = self.store.outbox_header(&entry.id())?
                && header.attachments.iter().any(|b| b.hash == *hash)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pulls an attachment from `peer`, resuming from what its partial
    /// file holds (opened off the loop); the fetch machine decides what
    /// to ask for.
    pub(super) fn start_fetch(&mut self, blob: BlobRef, peer: PeerId) {
        let connected = self
            .fetches
            .peer_of(&blob.hash)
            .is_some_and(|p| self.swarm.is_connected(&p));
        if connected && self.fetches.is_fetching(&blob.hash) {
            return;
        }
        if self.beginning.insert(blob.hash) {
            self.partials.begin(blob, peer, connected);
        }
    }

    /// The attachment files' thread reports.
    pub(super) fn on_file_report(&mut self, report: FileReport) {
        match report {
            FileReport::Begun {
                blob,
                peer,
                connected,
                already,
            } => {
                self.beginning.remove(&blob.hash);
                match already {
                    Ok(already) => {
                        if let Err(e) = self.fetches.start(blob, peer, already, connected) {
                            tracing::warn!("{e}");
                            self.partials.close(blob.hash);
                        }
                    }
                    Err(e) => tracing::error!("cannot receive an attachment: {e}"),
                }
            }
            FileReport::WriteFailed { hash, error } => {
                self.fetches.handle_write_failed(&hash, &error)
            }
            FileReport::Verified { hash, matches } => self.fetches.handle_verified(&hash, matches),
        }
        self.drive_fetches();
    }

    /// Carries out the fetch machine's decisions: piece requests, appends
    /// to the partial file, the hash check, progress events.
    pub(super) fn drive_fetches(&mut self) {
        while let Some(output) = self.fetches.poll_output() {
            match output {
                FetchOutput::Request {
                    token,
                    to,
                    hash,
                    offset,
                    len,
                } => self.request(
                    to,
                    Request::FetchBlob { hash, offset, len },
                    Pending::Fetch(token),
                ),
                FetchOutput::Append {
                    hash,
                    offset,
                    bytes,
                } => {
                    let len = bytes.len() as u64;
                    if self.partials.append(hash, offset, bytes) {
                        self.metrics.attachment_bytes_fetched.inc_by(len);
                    } else {
                        let behind = format!(
                            "writing attachments falls {} MiB behind the network; the transfer resumes later",
                            partials::MAX_QUEUED >> 20
                        );
                        self.fetches.handle_write_failed(&hash, &behind);
                    }
                }
                FetchOutput::Started { hash, from, total } => {
                    self.emit(NodeEvent::FetchStarted {
                        blob: hash,
                        from,
                        total,
                    });
                }
                FetchOutput::Progress { hash, have, total } => {
                    self.emit(NodeEvent::FetchProgress {
                        blob: hash,
                        have,
                        total,
                    });
                }
                // The partial file hashed its bytes as they were written.
                FetchOutput::Verify { blob } => self.partials.complete(blob.hash),
                FetchOutput::Completed { hash } => {
                    self.emit(NodeEvent::FetchCompleted { blob: hash });
                    self.release_waiting();
                }
                FetchOutput::Stopped { hash, reason } => {
                    tracing::warn!(blob = %hex::encode(hash), "attachment transfer stopped: {reason}");
                    self.partials.close(hash);
                }
            }
        }
    }

    /// Packages whose attachments have all arrived are accepted now; the
    /// recipient's receipt goes straight back to whoever delivered it.
    /// Expired ones are dropped: their senders have given up on them.
    /// Read header by header, one package built at a time.
    pub(super) fn release_waiting(&mut self) {
        let Ok(heads) = self.store.waiting_heads() else {
            return;
        };
        let now = self.now();
        for (header, from) in heads {
            let id = header.id;
            if now >= header.expires {
                tracing::info!(%id, %from, "waiting package expired before its attachments arrived");
                let _ = self.store.remove_waiting(&id);
                continue;
            }
            if !header.attachments.iter().all(|b| self.blobs.has(b)) {
                continue;
            }
            let Ok(Some((package, from))) = self.store.take_waiting(&id) else {
                continue;
            };
            // The receipt goes to whoever delivered the package.
            let answer = self.accept_package(from, package);
            self.reply(vec![Reply::Receipt(from)], answer);
        }
        // The packages taken out of waiting: nobody was promised that.
        self.flush_at_turn_end();
    }
}

/// Opens one attachment into a new file on a blocking thread, streaming.
/// `what` names what holds the files, for the error when there is no file
/// `index`.
pub(super) async fn open_to_file(
    (header, keyring, keys, blobs): AttachmentKeys,
    index: u32,
    dest: PathBuf,
    what: impl std::fmt::Display,
) -> Result<u64, NodeError> {
    let count = header.attachments.len();
    if index as usize >= count {
        return Err(NodeError::Attachment(format!(
            "{what} has {count} files, there is no file {index}"
        )));
    }
    tokio::task::spawn_blocking(move || {
        let failed = |e: std::io::Error| NodeError::Attachment(format!("{}: {e}", dest.display()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&dest).map_err(failed)?);
        let n = blobs.open_attachment(&header, index, &keyring, &keys, &mut out)?;
        std::io::Write::flush(&mut out).map_err(failed)?;
        Ok(n)
    })
    .await
    .map_err(|e| NodeError::Attachment(e.to_string()))?
}

/// Seals each attachment for the plan's recipient on a blocking thread,
/// streaming, and lists it in the plan's header.
pub(super) async fn seal_attachments(
    plan: &mut Plan,
    attachments: Vec<Attachment>,
) -> Result<(), NodeError> {
    // What every receiver refuses is refused here, before anything is
    // stored or sent: a package past the limit would be refused by its
    // first hop, and its consultation would wait for an answer forever.
    if attachments.len() > seal::MAX_ATTACHMENTS {
        return Err(NodeError::Attachment(format!(
            "{} attachments: a package carries at most {}",
            attachments.len(),
            seal::MAX_ATTACHMENTS
        )));
    }
    for (index, attachment) in attachments.into_iter().enumerate() {
        let header = plan.header.clone();
        let sealing = plan.sealing.clone();
        let (key, blobs) = (plan.recipient_key, plan.blobs.clone());
        let blob = tokio::task::spawn_blocking(move || -> Result<BlobRef, NodeError> {
            let mut source: Box<dyn std::io::Read> = match attachment {
                Attachment::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes)),
                Attachment::File(path) => Box::new(
                    std::fs::File::open(&path)
                        .map_err(|e| NodeError::Attachment(format!("{}: {e}", path.display())))?,
                ),
            };
            Ok(blobs.seal_attachment(
                &header,
                index as u32,
                &sealing,
                &key,
                random_bytes(),
                &mut source,
            )?)
        })
        .await
        .map_err(|e| NodeError::Attachment(e.to_string()))??;
        if blob.size > seal::MAX_ATTACHMENT_BYTES {
            return Err(NodeError::Attachment(format!(
                "attachment {}: {} bytes, at most {} allowed",
                index + 1,
                blob.size,
                seal::MAX_ATTACHMENT_BYTES
            )));
        }
        plan.header.attachments.push(blob);
    }
    Ok(())
}
