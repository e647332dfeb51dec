//! The partial files of attachments being fetched, kept on one blocking
//! thread: resuming a transfer hashes what its file already holds, every
//! piece is hashed as it is appended, and completing one syncs the whole
//! blob to disk. None of that may stall the event loop, so the loop sends
//! each step here, in order, and hears the results back as commands.
//!
//! One thread for every transfer keeps the steps of each file in order
//! (a transfer stopped and started again never has two writers) and disk
//! I/O serial, as the disk is anyway.

use super::Command;
use crate::storage::blobs::{BlobStore, PartialBlob};
use konsilium_protocol::seal::BlobRef;
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Bytes of pieces waiting to be written, at most. A disk this far behind
/// the network stops the transfer (it resumes later from the file) rather
/// than holding ever more pieces in memory.
pub(super) const MAX_QUEUED: u64 = 64 << 20;

enum Step {
    /// Open or resume the blob's partial file, for a transfer from `peer`.
    Begin {
        blob: BlobRef,
        peer: PeerId,
        connected: bool,
    },
    Append {
        hash: [u8; 32],
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Check the hash, sync, and turn the file into the blob.
    Complete { hash: [u8; 32] },
    /// The transfer stopped: close the file, keeping what it holds.
    Close { hash: [u8; 32] },
}

/// The event loop's side of the thread.
pub(super) struct Partials {
    steps: std::sync::mpsc::Sender<Step>,
    queued: Arc<AtomicU64>,
}

impl Partials {
    /// Starts the thread; results come back on `back`.
    pub(super) fn start(blobs: BlobStore, back: mpsc::UnboundedSender<Command>) -> Self {
        let (steps, rx) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicU64::new(0));
        let counter = queued.clone();
        std::thread::Builder::new()
            .name("attachment-files".into())
            .spawn(move || run(blobs, rx, back, counter))
            .expect("a thread for attachment files");
        Self { steps, queued }
    }

    pub(super) fn begin(&self, blob: BlobRef, peer: PeerId, connected: bool) {
        let _ = self.steps.send(Step::Begin {
            blob,
            peer,
            connected,
        });
    }

    /// Queues a piece; false when the disk is too far behind to take it.
    pub(super) fn append(&self, hash: [u8; 32], offset: u64, bytes: Vec<u8>) -> bool {
        let len = bytes.len() as u64;
        if self.queued.load(Ordering::Relaxed) + len > MAX_QUEUED {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        let _ = self.steps.send(Step::Append {
            hash,
            offset,
            bytes,
        });
        true
    }

    pub(super) fn complete(&self, hash: [u8; 32]) {
        let _ = self.steps.send(Step::Complete { hash });
    }

    pub(super) fn close(&self, hash: [u8; 32]) {
        let _ = self.steps.send(Step::Close { hash });
    }
}

/// What the thread reports back to the event loop.
#[derive(Debug)]
pub(super) enum FileReport {
    /// The partial file is open and holds `already` bytes (or could not be opened).
    Begun {
        blob: BlobRef,
        peer: PeerId,
        connected: bool,
        already: Result<u64, String>,
    },
    WriteFailed {
        hash: [u8; 32],
        error: String,
    },
    /// The hash check of a whole file.
    Verified {
        hash: [u8; 32],
        matches: bool,
    },
}

fn run(
    blobs: BlobStore,
    steps: std::sync::mpsc::Receiver<Step>,
    back: mpsc::UnboundedSender<Command>,
    queued: Arc<AtomicU64>,
) {
    let mut open: HashMap<[u8; 32], PartialBlob> = HashMap::new();
    let report = |r: FileReport| back.send(Command::AttachmentFile(r)).is_ok();
    // Ends when the event loop (the only sender) is gone.
    while let Ok(step) = steps.recv() {
        let alive = match step {
            Step::Begin {
                blob,
                peer,
                connected,
            } => {
                let already = match open.get(&blob.hash) {
                    Some(partial) => Ok(partial.written()),
                    None => blobs.begin(&blob).map(|partial| {
                        let written = partial.written();
                        open.insert(blob.hash, partial);
                        written
                    }),
                };
                report(FileReport::Begun {
                    blob,
                    peer,
                    connected,
                    already: already.map_err(|e| e.to_string()),
                })
            }
            Step::Append {
                hash,
                offset,
                bytes,
            } => {
                queued.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
                let written = match open.get_mut(&hash) {
                    Some(partial) => partial.append(offset, &bytes).map(|_| ()),
                    // Closed after a failure already reported.
                    None => Ok(()),
                };
                match written {
                    Ok(()) => true,
                    Err(e) => {
                        open.remove(&hash);
                        report(FileReport::WriteFailed {
                            hash,
                            error: e.to_string(),
                        })
                    }
                }
            }
            Step::Complete { hash } => {
                let matches = match open.remove(&hash).map(PartialBlob::complete) {
                    Some(Ok(())) => true,
                    Some(Err(e)) => {
                        tracing::warn!("{e}");
                        false
                    }
                    None => false,
                };
                report(FileReport::Verified { hash, matches })
            }
            Step::Close { hash } => {
                open.remove(&hash);
                true
            }
        };
        if !alive {
            return;
        }
    }
}
