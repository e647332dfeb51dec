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
mod tests {
    use super::*;

    const CHUNK: u64 = MAX_BLOB_CHUNK as u64;

    fn blob(size: u64) -> BlobRef {
        BlobRef {
            hash: [9; 32],
            size,
        }
    }

    fn drain(f: &mut Fetches<u8>) -> Vec<FetchOutput<u8>> {
        std::iter::from_fn(|| f.poll_output()).collect()
    }

    fn requests(out: &[FetchOutput<u8>]) -> Vec<(PieceToken, u64, u32)> {
        out.iter()
            .filter_map(|o| match o {
                FetchOutput::Request {
                    token, offset, len, ..
                } => Some((*token, *offset, *len)),
                _ => None,
            })
            .collect()
    }

    fn appended(out: &[FetchOutput<u8>]) -> Vec<(u64, usize)> {
        out.iter()
            .filter_map(|o| match o {
                FetchOutput::Append { offset, bytes, .. } => Some((*offset, bytes.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pieces_answered_out_of_order_are_written_in_order_within_the_window() {
        let size = 40 * CHUNK + 5;
        let mut f = Fetches::new();
        f.start(blob(size), 1, 0, true).unwrap();
        let out = drain(&mut f);
        let mut asked = requests(&out);
        assert_eq!(asked.len(), FETCH_WINDOW, "a window's worth, no more");
        let mut written = Vec::new();
        // Answer newest first: nothing is written until the first arrives.
        while !asked.is_empty() {
            asked.reverse();
            let batch = std::mem::take(&mut asked);
            for (token, _, len) in batch {
                f.handle_piece(token, vec![0; len as usize]);
                let out = drain(&mut f);
                written.extend(appended(&out));
                asked.extend(requests(&out));
                if let Some(FetchOutput::Verify { blob: b }) = out.last() {
                    assert_eq!(*b, blob(size));
                }
            }
        }
        let offsets: Vec<u64> = written.iter().map(|(o, _)| *o).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(offsets, sorted, "appends are in order");
        assert_eq!(written.iter().map(|(_, n)| *n as u64).sum::<u64>(), size);
        f.handle_verified(&[9; 32], true);
        assert_eq!(drain(&mut f), [FetchOutput::Completed { hash: [9; 32] }]);
        assert!(!f.is_fetching(&[9; 32]));
    }

    #[test]
    fn an_interrupted_transfer_resumes_from_what_was_written() {
        let mut f = Fetches::new();
        f.start(blob(3 * CHUNK), 1, 0, true).unwrap();
        let asked = requests(&drain(&mut f));
        f.handle_piece(asked[0].0, vec![0; CHUNK as usize]);
        f.handle_failure(asked[1].0, "connection closed");
        let out = drain(&mut f);
        assert_eq!(appended(&out), [(0, CHUNK as usize)]);
        assert!(matches!(out.last(), Some(FetchOutput::Stopped { .. })));
        // A late answer to the stopped transfer is ignored.
        f.handle_piece(asked[2].0, vec![0; CHUNK as usize]);
        assert!(drain(&mut f).is_empty());
        // From another peer, from the partial file's length.
        f.start(blob(3 * CHUNK), 2, CHUNK, true).unwrap();
        let out = drain(&mut f);
        assert_eq!(
            out[0],
            FetchOutput::Started {
                hash: [9; 32],
                from: CHUNK,
                total: 3 * CHUNK
            }
        );
        let offsets: Vec<u64> = requests(&out).iter().map(|r| r.1).collect();
        assert_eq!(offsets, [CHUNK, 2 * CHUNK]);
        assert!(
            out.iter()
                .all(|o| !matches!(o, FetchOutput::Request { to: 1, .. }))
        );
    }

    #[test]
    fn a_piece_of_the_wrong_length_stops_the_transfer() {
        let mut f = Fetches::new();
        f.start(blob(2 * CHUNK), 1, 0, true).unwrap();
        let asked = requests(&drain(&mut f));
        f.handle_piece(asked[0].0, vec![0; 10]);
        let out = drain(&mut f);
        assert!(appended(&out).is_empty(), "nothing of it is written");
        assert!(
            matches!(&out[..], [FetchOutput::Stopped { reason, .. }] if reason.contains("sent 10"))
        );
    }

    #[test]
    fn a_blob_failing_its_hash_twice_is_refused_with_the_reason() {
        let mut f = Fetches::new();
        for attempt in 1..=MAX_HASH_FAILURES {
            f.start(blob(CHUNK), 1, 0, true).unwrap();
            let asked = requests(&drain(&mut f));
            f.handle_piece(asked[0].0, vec![0; CHUNK as usize]);
            drain(&mut f);
            f.handle_verified(&[9; 32], false);
            assert!(matches!(&drain(&mut f)[..], [FetchOutput::Stopped { .. }]));
            assert_eq!(f.hash_failures(&[9; 32]), attempt);
        }
        let refused = f.start(blob(CHUNK), 1, 0, true).unwrap_err();
        assert!(refused.to_string().contains("damaged"), "{refused}");
        assert!(drain(&mut f).is_empty(), "no request goes out");
    }

    #[test]
    fn a_running_transfer_is_not_restarted_while_its_peer_is_there() {
        let mut f = Fetches::new();
        f.start(blob(2 * CHUNK), 1, 0, true).unwrap();
        drain(&mut f);
        f.start(blob(2 * CHUNK), 2, 0, true).unwrap();
        assert!(drain(&mut f).is_empty());
        assert_eq!(f.peer_of(&[9; 32]), Some(1));
        // Its peer gone, a new start takes over.
        f.start(blob(2 * CHUNK), 2, 0, false).unwrap();
        assert_eq!(f.peer_of(&[9; 32]), Some(2));
        assert_eq!(requests(&drain(&mut f)).len(), 2);
    }
}
