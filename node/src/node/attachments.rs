//! Attachments between nodes: serving pieces of sealed blobs, and pulling
//! them in order so an interrupted transfer resumes where it stopped.

use super::*;

impl Node {
    pub(super) fn serve_piece(&mut self, hash: [u8; 32], offset: u64, len: u32) -> Response {
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
        match crate::blobs::read_piece(
            &self.served[&hash],
            std::path::Path::new(&name),
            offset,
            len,
        ) {
            Ok(bytes) => Response::Blob(bytes),
            Err(e) => Response::Refused(Refusal::Transient(e.to_string())),
        }
    }

    pub(super) fn start_fetch(&mut self, blob: BlobRef, peer: PeerId) {
        if self
            .fetches
            .get(&blob.hash)
            .is_some_and(|f| f.in_flight > 0 && self.swarm.is_connected(&f.peer))
        {
            return;
        }
        let partial = match self.blobs.begin(&blob) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot receive an attachment: {e}");
                return;
            }
        };
        let from = partial.written();
        self.fetches.insert(
            blob.hash,
            Fetch {
                partial,
                blob,
                peer,
                next_offset: from,
                in_flight: 0,
                early: BTreeMap::new(),
            },
        );
        self.emit(NodeEvent::FetchStarted {
            blob: blob.hash,
            from,
            total: blob.size,
        });
        self.pump_fetch(blob.hash);
    }

    /// Keeps up to `FETCH_WINDOW` piece requests in flight.
    pub(super) fn pump_fetch(&mut self, hash: [u8; 32]) {
        let mut requests = Vec::new();
        if let Some(f) = self.fetches.get_mut(&hash) {
            while f.in_flight < FETCH_WINDOW && f.next_offset < f.blob.size {
                let len = (f.blob.size - f.next_offset).min(u64::from(MAX_BLOB_CHUNK)) as u32;
                requests.push((f.peer, f.next_offset, len));
                f.next_offset += u64::from(len);
                f.in_flight += 1;
            }
        }
        for (peer, offset, len) in requests {
            self.request(
                peer,
                Request::FetchBlob { hash, offset, len },
                Pending::Fetch { blob: hash, offset },
            );
        }
    }

    pub(super) fn on_blob_piece(&mut self, hash: [u8; 32], offset: u64, bytes: Vec<u8>) {
        let Some(f) = self.fetches.get_mut(&hash) else {
            return;
        };
        f.in_flight = f.in_flight.saturating_sub(1);
        f.early.insert(offset, bytes);
        let mut failure = None;
        while let Some(bytes) = f.early.remove(&f.partial.written()) {
            match f.partial.append(f.partial.written(), &bytes) {
                Ok(_) => self
                    .metrics
                    .attachment_bytes_fetched
                    .inc_by(bytes.len() as u64),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let (blob, written) = (f.blob, f.partial.written());
        if let Some(error) = failure {
            tracing::warn!("attachment transfer stopped: {error}");
            self.fetches.remove(&hash);
            return;
        }
        if written < blob.size {
            self.emit(NodeEvent::FetchProgress {
                blob: hash,
                have: written,
                total: blob.size,
            });
            self.pump_fetch(hash);
            return;
        }
        let Some(done) = self.fetches.remove(&hash) else {
            return;
        };
        match done.partial.complete() {
            Ok(()) => {
                self.emit(NodeEvent::FetchCompleted { blob: hash });
                self.release_waiting();
            }
            Err(e) => {
                tracing::warn!("{e}");
                if self.damaged_blobs.len() >= MAX_DAMAGED {
                    self.damaged_blobs.clear();
                }
                *self.damaged_blobs.entry(hash).or_default() += 1;
            }
        }
    }

    /// Packages whose attachments have all arrived are accepted now; the
    /// recipient's receipt goes straight back to whoever delivered it.
    pub(super) fn release_waiting(&mut self) {
        let Ok(waiting) = self.store.waiting() else {
            return;
        };
        for (package, from) in waiting {
            if !package.header.attachments.iter().all(|b| self.blobs.has(b)) {
                continue;
            }
            let _ = self.store.remove_waiting(&package.header.id);
            match self.accept_package(from, package) {
                Response::Receipt(receipt) => {
                    let peer = from.to_peer_id();
                    self.request(peer, Request::Receipt(receipt), Pending::Receipt);
                }
                Response::Refused(reason) => {
                    tracing::warn!(%from, "package refused after its attachments arrived: {reason}")
                }
                _ => {}
            }
        }
        let _ = self.store.flush();
    }
}
