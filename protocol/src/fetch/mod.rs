//! Pulling sealed attachments from a peer, piece by piece, so that an
//! interrupted transfer resumes where it stopped and a damaged one ends
//! with a reason instead of starting over forever.
//!
//! A sans-I/O machine: the node keeps the partial files and the sockets. It
//! starts a transfer with how much of the blob its partial file already
//! holds, hands in each piece as it arrives, and carries out the outputs:
//! piece requests to send, bytes to append (always in order, so the partial
//! file is a prefix and its length is where to resume), and a finished blob
//! to verify against its hash (off the event loop), whose result comes back
//! through [`Fetches::handle_verified`].

use crate::rpc::MAX_BLOB_CHUNK;
use crate::seal::BlobRef;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Piece requests kept in flight per transfer: enough to fill a long link,
/// few enough that the pieces waiting to be written stay small
/// (`FETCH_WINDOW` × [`MAX_BLOB_CHUNK`]).
pub const FETCH_WINDOW: usize = 16;

/// A blob whose bytes failed their hash this many times is refused: the
/// peer that holds it holds it damaged, and fetching it again would loop.
pub const MAX_HASH_FAILURES: u8 = 2;

/// Names one piece request, so its answer or failure finds its transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceToken(u64);

impl PieceToken {
    pub fn raw(self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutput<P> {
    /// Ask `to` for `len` bytes of the blob at `offset`.
    Request {
        token: PieceToken,
        to: P,
        hash: [u8; 32],
        offset: u64,
        len: u32,
    },
    /// Append to the blob's partial file; `offset` is its current length.
    Append {
        hash: [u8; 32],
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A transfer began (or resumed, when `from` > 0).
    Started {
        hash: [u8; 32],
        from: u64,
        total: u64,
    },
    Progress {
        hash: [u8; 32],
        have: u64,
        total: u64,
    },
    /// Every byte is written: check the file against the hash, then call
    /// [`Fetches::handle_verified`].
    Verify { blob: BlobRef },
    /// The blob arrived and matches its hash.
    Completed { hash: [u8; 32] },
    /// The transfer stopped; the partial file keeps what arrived, and a
    /// later [`Fetches::start`] resumes from it unless the blob is damaged.
    Stopped { hash: [u8; 32], reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error(
        "attachment {hash} failed its hash check {failures} times: the copy offered is damaged"
    )]
    Damaged { hash: String, failures: u8 },
}

struct Transfer<P> {
    blob: BlobRef,
    peer: P,
    /// Length of the partial file: everything before it is written.
    written: u64,
    /// Where the next request starts.
    next_offset: u64,
    in_flight: BTreeMap<PieceToken, (u64, u32)>,
    /// Pieces that arrived ahead of `written`, by offset.
    early: BTreeMap<u64, Vec<u8>>,
    /// Waiting for the hash check.
    verifying: bool,
}

/// Every attachment transfer of a node.
pub struct Fetches<P> {
    transfers: HashMap<[u8; 32], Transfer<P>>,
    tokens: HashMap<PieceToken, [u8; 32]>,
    hash_failures: HashMap<[u8; 32], u8>,
    next_token: u64,
    outputs: VecDeque<FetchOutput<P>>,
}

impl<P> Default for Fetches<P> {
    fn default() -> Self {
        Self {
            transfers: HashMap::new(),
            tokens: HashMap::new(),
            hash_failures: HashMap::new(),
            next_token: 0,
            outputs: VecDeque::new(),
        }
    }
}

/// Remembered hash failures are dropped past this many blobs, so a peer
/// naming endless bogus blobs cannot grow the table.
const MAX_REMEMBERED_FAILURES: usize = 4096;

impl<P: Copy + Eq> Fetches<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many transfers are running.
    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// Whether a transfer of this blob is running.
    pub fn is_fetching(&self, hash: &[u8; 32]) -> bool {
        self.transfers.contains_key(hash)
    }

    /// Starts (or resumes from `already`, the partial file's length)
    /// pulling `blob` from `peer`. A transfer already running from a peer
    /// still connected is left alone; the caller says whether it is.
    pub fn start(
        &mut self,
        blob: BlobRef,
        peer: P,
        already: u64,
        running_peer_connected: bool,
    ) -> Result<(), FetchError> {
        if let Some(&failures) = self.hash_failures.get(&blob.hash)
            && failures >= MAX_HASH_FAILURES
        {
            return Err(FetchError::Damaged {
                hash: hex::encode(blob.hash),
                failures,
            });
        }
        if let Some(t) = self.transfers.get(&blob.hash)
            && (t.verifying || (!t.in_flight.is_empty() && running_peer_connected))
        {
            return Ok(());
        }
        self.drop_transfer(&blob.hash);
        let from = already.min(blob.size);
        self.transfers.insert(
            blob.hash,
            Transfer {
                blob,
                peer,
                written: from,
                next_offset: from,
                in_flight: BTreeMap::new(),
                early: BTreeMap::new(),
                verifying: false,
            },
        );
        self.outputs.push_back(FetchOutput::Started {
            hash: blob.hash,
            from,
            total: blob.size,
        });
        self.advance(blob.hash);
        Ok(())
    }

    /// The peer that serves this transfer, if one runs.
    pub fn peer_of(&self, hash: &[u8; 32]) -> Option<P> {
        self.transfers.get(hash).map(|t| t.peer)
    }

    /// A piece arrived. One of the wrong length stops the transfer: the
    /// partial file must stay an exact prefix of the blob.
    pub fn handle_piece(&mut self, token: PieceToken, bytes: Vec<u8>) {
        let Some(hash) = self.tokens.remove(&token) else {
            return;
        };
        let Some(t) = self.transfers.get_mut(&hash) else {
            return;
        };
        let Some((offset, len)) = t.in_flight.remove(&token) else {
            return;
        };
        if bytes.len() != len as usize {
            let reason = format!(
                "asked for {len} bytes at offset {offset}, the peer sent {}",
                bytes.len()
            );
            self.stop(hash, reason);
            return;
        }
        t.early.insert(offset, bytes);
        while let Some(bytes) = t.early.remove(&t.written) {
            let offset = t.written;
            t.written += bytes.len() as u64;
            self.outputs.push_back(FetchOutput::Append {
                hash,
                offset,
                bytes,
            });
        }
        self.advance(hash);
    }

    /// A piece request failed or was refused: the transfer stops, keeping
    /// what was written; a later start resumes.
    pub fn handle_failure(&mut self, token: PieceToken, reason: &str) {
        if let Some(hash) = self.tokens.remove(&token) {
            self.stop(hash, reason.to_owned());
        }
    }

    /// Writing to the partial file failed (disk full, read-only).
    pub fn handle_write_failed(&mut self, hash: &[u8; 32], error: &str) {
        self.stop(*hash, format!("cannot write the attachment: {error}"));
    }

    /// The result of a [`FetchOutput::Verify`].
    pub fn handle_verified(&mut self, hash: &[u8; 32], matches: bool) {
        if self.transfers.remove(hash).is_none() {
            return;
        }
        if matches {
            self.hash_failures.remove(hash);
            self.outputs
                .push_back(FetchOutput::Completed { hash: *hash });
            return;
        }
        if self.hash_failures.len() >= MAX_REMEMBERED_FAILURES {
            self.hash_failures.clear();
        }
        let failures = self.hash_failures.entry(*hash).or_default();
        *failures = failures.saturating_add(1);
        let reason = FetchError::Damaged {
            hash: hex::encode(hash),
            failures: *failures,
        }
        .to_string();
        self.outputs.push_back(FetchOutput::Stopped {
            hash: *hash,
            reason,
        });
    }

    /// How many times this blob failed its hash check.
    pub fn hash_failures(&self, hash: &[u8; 32]) -> u8 {
        self.hash_failures.get(hash).copied().unwrap_or(0)
    }

    pub fn poll_output(&mut self) -> Option<FetchOutput<P>> {
        self.outputs.pop_front()
    }

    /// Requests more pieces, reports progress, or asks for verification.
    fn advance(&mut self, hash: [u8; 32]) {
        let Some(t) = self.transfers.get_mut(&hash) else {
            return;
        };
        if t.written >= t.blob.size {
            if !t.verifying {
                t.verifying = true;
                self.outputs.push_back(FetchOutput::Verify { blob: t.blob });
            }
            return;
        }
        if t.written > 0 {
            self.outputs.push_back(FetchOutput::Progress {
                hash,
                have: t.written,
                total: t.blob.size,
            });
        }
        while t.in_flight.len() < FETCH_WINDOW && t.next_offset < t.blob.size {
            let len = (t.blob.size - t.next_offset).min(u64::from(MAX_BLOB_CHUNK)) as u32;
            let token = PieceToken(self.next_token);
            self.next_token += 1;
            t.in_flight.insert(token, (t.next_offset, len));
            self.tokens.insert(token, hash);
            self.outputs.push_back(FetchOutput::Request {
                token,
                to: t.peer,
                hash,
                offset: t.next_offset,
                len,
            });
            t.next_offset += u64::from(len);
        }
    }

    fn stop(&mut self, hash: [u8; 32], reason: String) {
        if self.drop_transfer(&hash) {
            self.outputs
                .push_back(FetchOutput::Stopped { hash, reason });
        }
    }

    fn drop_transfer(&mut self, hash: &[u8; 32]) -> bool {
        match self.transfers.remove(hash) {
            Some(t) => {
                for token in t.in_flight.keys() {
                    self.tokens.remove(token);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
