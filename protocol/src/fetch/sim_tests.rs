//! The fetch machine on the simulated network: a holder serves pieces of a
//! sealed blob, a fetcher pulls them through [`Fetches`] into a partial
//! file kept in memory, restarting a stopped transfer after a pause as the
//! node does when the sender asks again.

use super::*;
use crate::rpc::{Refusal, Request, Response};
use crate::testkit::NOW;
use crate::testkit::simnet::{NodeId, SimConfig, SimNet, SimNode, Transmit};
use crate::time::Timestamp;
use std::time::Duration;

const CHUNK: u64 = MAX_BLOB_CHUNK as u64;
/// How long a fetcher waits before resuming a stopped transfer.
const PAUSE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct BlobNode {
    /// Sealed blobs this node serves.
    held: BTreeMap<[u8; 32], Vec<u8>>,
    fetches: Fetches<NodeId>,
    /// Partial files, each an exact prefix of its blob.
    partials: BTreeMap<[u8; 32], Vec<u8>>,
    /// Blobs to pull: from whom, and when to start again after a stop.
    wanted: BTreeMap<[u8; 32], (BlobRef, NodeId, Option<Timestamp>)>,
    complete: BTreeMap<[u8; 32], Vec<u8>>,
    refused: Vec<FetchError>,
    /// Where each start began, and why each stop happened.
    starts: Vec<u64>,
    stops: Vec<String>,
    /// Bytes appended to partial files, over every attempt.
    appended: u64,
    pending: HashMap<u64, PieceToken>,
    transmits: VecDeque<Transmit>,
}

impl BlobNode {
    fn holding(blob: Vec<u8>) -> (Self, BlobRef) {
        let r = BlobRef {
            hash: *blake3::hash(&blob).as_bytes(),
            size: blob.len() as u64,
        };
        let mut node = Self::default();
        node.held.insert(r.hash, blob);
        (node, r)
    }

    fn want(&mut self, now: Timestamp, blob: BlobRef, from: NodeId) {
        self.wanted.insert(blob.hash, (blob, from, Some(now)));
        self.handle_timeout(now);
    }

    fn serve(&self, hash: [u8; 32], offset: u64, len: u32) -> Response {
        let Some(blob) = self.held.get(&hash) else {
            return Response::Refused(Refusal::Invalid("no such attachment here".into()));
        };
        let start = offset.min(blob.len() as u64) as usize;
        let end = (start + len as usize).min(blob.len());
        Response::Blob(blob[start..end].to_vec())
    }

    fn pump(&mut self, now: Timestamp) {
        while let Some(output) = self.fetches.poll_output() {
            match output {
                FetchOutput::Request {
                    token,
                    to,
                    hash,
                    offset,
                    len,
                } => {
                    self.pending.insert(token.raw(), token);
                    self.transmits.push_back(Transmit {
                        to,
                        token: token.raw(),
                        request: Request::FetchBlob { hash, offset, len },
                    });
                }
                FetchOutput::Append {
                    hash,
                    offset,
                    bytes,
                } => {
                    let partial = self.partials.entry(hash).or_default();
                    assert_eq!(offset, partial.len() as u64, "appends extend the prefix");
                    self.appended += bytes.len() as u64;
                    partial.extend_from_slice(&bytes);
                }
                FetchOutput::Started { from, .. } => self.starts.push(from),
                FetchOutput::Progress { .. } => {}
                FetchOutput::Verify { blob } => {
                    let partial = self.partials.entry(blob.hash).or_default();
                    let matches = *blake3::hash(partial).as_bytes() == blob.hash;
                    if !matches {
                        // A damaged file is no prefix to resume from.
                        partial.clear();
                    }
                    self.fetches.handle_verified(&blob.hash, matches);
                }
                FetchOutput::Completed { hash } => {
                    self.wanted.remove(&hash);
                    let bytes = self.partials.remove(&hash).unwrap_or_default();
                    self.complete.insert(hash, bytes);
                }
                FetchOutput::Stopped { hash, reason } => {
                    self.stops.push(reason);
                    if let Some(w) = self.wanted.get_mut(&hash) {
                        w.2 = Some(now.saturating_add(PAUSE));
                    }
                }
            }
        }
    }
}

impl SimNode for BlobNode {
    fn handle_request(&mut self, _: Timestamp, _: NodeId, request: Request) -> Response {
        match request {
            Request::FetchBlob { hash, offset, len } => self.serve(hash, offset, len),
            _ => Response::Refused(Refusal::Invalid("only attachments here".into())),
        }
    }

    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response) {
        let Some(token) = self.pending.remove(&token) else {
            return;
        };
        match response {
            Response::Blob(bytes) => self.fetches.handle_piece(token, bytes),
            other => self.fetches.handle_failure(token, &format!("{other:?}")),
        }
        self.pump(now);
    }

    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        if let Some(token) = self.pending.remove(&token) {
            self.fetches.handle_failure(token, "timed out");
            self.pump(now);
        }
    }

    fn poll_transmit(&mut self, _: Timestamp) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.wanted.values().filter_map(|w| w.2).min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        let due: Vec<_> = (self.wanted.values())
            .filter(|w| w.2.is_some_and(|t| t <= now))
            .map(|w| (w.0, w.1))
            .collect();
        for (blob, peer) in due {
            let already = self.partials.get(&blob.hash).map_or(0, |p| p.len() as u64);
            match self.fetches.start(blob, peer, already, true) {
                Ok(()) => self.wanted.get_mut(&blob.hash).expect("due").2 = None,
                Err(e) => {
                    self.refused.push(e);
                    self.wanted.remove(&blob.hash);
                }
            }
        }
        self.pump(now);
    }
}

/// Bytes that differ from piece to piece, so a piece written at the wrong
/// offset cannot pass the hash check.
fn blob_bytes(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 4093) as u8).collect()
}

/// A holder (node 0) and a fetcher (node 1) of one blob of `len` bytes.
fn pair(len: u64, loss: f64, seed: u64) -> (SimNet<BlobNode>, BlobRef) {
    let mut net = SimNet::new(
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        NOW,
    );
    net.set_default_loss(loss);
    let (holder, blob) = BlobNode::holding(blob_bytes(len));
    net.add(holder);
    net.add(BlobNode::default());
    net.connect(0, 1);
    (net, blob)
}

fn fetched(net: &SimNet<BlobNode>, blob: &BlobRef) -> bool {
    net.node(1).complete.contains_key(&blob.hash)
}

#[test]
fn an_attachment_crosses_a_link_losing_a_fifth_of_messages_resuming_each_time() {
    let (mut net, blob) = pair(24 * CHUNK + 5, 0.2, 11);
    net.node_mut(1).want(NOW, blob, 0);
    assert!(net.run_until(Duration::from_secs(3600), |n| fetched(n, &blob)));
    let fetcher = net.node(1);
    assert_eq!(fetcher.complete[&blob.hash], net.node(0).held[&blob.hash]);
    assert!(fetcher.stops.len() > 1, "loss stopped the transfer");
    // Every restart resumed from the partial file: each byte written once.
    assert!(fetcher.starts.iter().skip(1).any(|&from| from > 0));
    assert_eq!(fetcher.appended, blob.size);
    assert!(fetcher.refused.is_empty());
}

#[test]
fn a_transfer_cut_by_a_partition_resumes_where_it_stopped_after_the_heal() {
    let (mut net, blob) = pair(40 * CHUNK, 0.0, 12);
    net.node_mut(1).want(NOW, blob, 0);
    // The first window's pieces arrive; then the link goes silent.
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.node(1)
            .partials
            .values()
            .any(|p| p.len() as u64 >= 8 * CHUNK)
    }));
    net.partition(|n| n);
    net.run_for(Duration::from_secs(120));
    let written = net.node(1).partials[&blob.hash].len() as u64;
    assert!(written < blob.size && !net.node(1).stops.is_empty());
    net.heal();
    assert!(net.run_until(Duration::from_secs(600), |n| fetched(n, &blob)));
    let fetcher = net.node(1);
    assert_eq!(fetcher.complete[&blob.hash], net.node(0).held[&blob.hash]);
    assert!(fetcher.starts.contains(&written), "resumed from {written}");
    assert_eq!(fetcher.appended, blob.size, "nothing fetched twice");
}

#[test]
fn a_damaged_copy_fails_its_hash_twice_and_is_refused_then_nothing_more_is_asked() {
    let (mut net, blob) = pair(3 * CHUNK, 0.0, 13);
    net.node_mut(0).held.get_mut(&blob.hash).expect("held")[CHUNK as usize + 7] ^= 1;
    net.node_mut(1).want(NOW, blob, 0);
    net.run_for(Duration::from_secs(600));
    let fetcher = net.node(1);
    assert!(!fetched(&net, &blob));
    assert_eq!(fetcher.fetches.hash_failures(&blob.hash), MAX_HASH_FAILURES);
    assert!(matches!(
        &fetcher.refused[..],
        [FetchError::Damaged { failures, .. }] if *failures == MAX_HASH_FAILURES
    ));
    assert_eq!(
        fetcher.appended,
        2 * blob.size,
        "fetched whole twice, then never"
    );
    let asked = net.stats(1).requests;
    net.run_for(Duration::from_secs(3600));
    assert_eq!(net.stats(1).requests, asked, "no piece asked again");
}
