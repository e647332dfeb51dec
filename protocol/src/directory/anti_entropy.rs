//! What two directories compare in anti-entropy: a digest over all the
//! records both keep, then one hash per bucket of organizations, then
//! summaries of the records in the buckets that differ, and finally what
//! each side must send or ask for.

use super::{Directory, DirectoryEntry, FieldError, SignedRecord, rank};
use crate::cert::RegionCode;
use crate::identity::OrgId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Number of anti-entropy buckets: organizations are spread by the first
/// byte of their id (uniform, since ids are public keys).
pub const BUCKETS: usize = 256;

/// What identifies one held record, for anti-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    pub org: OrgId,
    pub sequence: u64,
    /// `SignedRecord::record_hash`.
    pub hash: [u8; 32],
}

/// An exchange's opening: one hash over the records an offer would
/// cover. Gossip carries nearly every change, so most rounds find the two
/// directories alike, and this ends them for some 40 bytes each way
/// instead of an offer's 256 bucket hashes (8 KiB, every minute, to a
/// random peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncDigest {
    pub digest: [u8; 32],
    /// As in [`SyncOffer`]: the offering node's region when it keeps only
    /// that one.
    pub region: Option<RegionCode>,
}

/// The answer to a [`SyncDigest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestMatch {
    /// The records both sides keep are the same: the exchange is over.
    Same,
    /// They differ, or the digests cover different records: the asker
    /// goes on with a [`SyncOffer`].
    Differs,
}

/// The offer after a digest that differed: one hash per bucket, over the
/// records of `region` only when the offering node keeps only its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOffer {
    #[serde(with = "crate::wire::hash_list")]
    pub buckets: Vec<[u8; 32]>,
    pub region: Option<RegionCode>,
}

/// What to do after comparing summaries of some buckets with a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Records we hold that the peer lacks or holds older: send them.
    pub send: Vec<SignedRecord>,
    /// Organizations whose record the peer holds newer or we lack: ask for them.
    pub want: Vec<OrgId>,
}

impl Directory {
    pub(super) fn bucket_hash(&self, bucket: usize) -> [u8; 32] {
        self.entries.hash(bucket as u8)
    }

    /// The bucket hashes of the records of one region, computed each time:
    /// one pass over the directory, for an exchange with a node that keeps
    /// only that region.
    fn bucket_hashes_in(&self, region: &RegionCode) -> Vec<[u8; 32]> {
        let mut hashers: Vec<blake3::Hasher> =
            (0..BUCKETS).map(|_| blake3::Hasher::new()).collect();
        for e in self.in_region(Some(region)) {
            e.hash_into(&mut hashers[usize::from(e.org().as_bytes()[0])]);
        }
        hashers.iter().map(|h| *h.finalize().as_bytes()).collect()
    }

    /// Entries in `within` (all of them for `None`), in id order.
    pub(super) fn in_region<'a>(
        &'a self,
        within: Option<&'a RegionCode>,
    ) -> impl Iterator<Item = &'a DirectoryEntry> + 'a {
        (self.entries.values()).filter(move |e| within.is_none_or(|r| e.region() == r))
    }

    /// The entries whose id starts with `bucket`, in id order.
    fn bucket_entries(&self, bucket: u8) -> impl Iterator<Item = &DirectoryEntry> {
        self.entries.bucket(bucket)
    }

    /// One hash over the whole directory: equal digests mean equal directories.
    pub fn digest(&self) -> [u8; 32] {
        self.digest_within(None)
    }

    /// One hash over the records `within` one region, or over all of them:
    /// the hash of the bucket hashes an offer over the same records holds.
    pub fn digest_within(&self, within: Option<&RegionCode>) -> [u8; 32] {
        let hash = || *blake3::hash(self.bucket_hashes(within).as_flattened()).as_bytes();
        match within {
            None => *self.digest.get_or_init(hash),
            Some(_) => hash(),
        }
    }

    fn bucket_hashes(&self, within: Option<&RegionCode>) -> Vec<[u8; 32]> {
        match within {
            None => (0..BUCKETS).map(|b| self.bucket_hash(b)).collect(),
            Some(region) => self.bucket_hashes_in(region),
        }
    }

    /// The opening of an exchange over the records `within` one region, or
    /// over all of them.
    pub fn sync_digest(&self, within: Option<&RegionCode>) -> SyncDigest {
        SyncDigest {
            digest: self.digest_within(within),
            region: within.cloned(),
        }
    }

    /// The offer of an exchange over the records `within` one region, or
    /// over all of them.
    pub fn sync_offer(&self, within: Option<&RegionCode>) -> SyncOffer {
        SyncOffer {
            buckets: self.bucket_hashes(within),
            region: within.cloned(),
        }
    }

    /// Buckets whose records `within` the region (or all) differ from the
    /// peer's offer, which must cover the same records.
    pub fn differing_buckets(
        &self,
        offer: &SyncOffer,
        within: Option<&RegionCode>,
    ) -> Result<Vec<u8>, FieldError> {
        if offer.buckets.len() != BUCKETS {
            return Err(FieldError::Invalid {
                field: "sync offer",
                reason: format!("{} bucket hashes, expected {BUCKETS}", offer.buckets.len()),
            });
        }
        let mine = self.bucket_hashes(within);
        Ok((0..BUCKETS)
            .filter(|&b| mine[b] != offer.buckets[b])
            .map(|b| b as u8)
            .collect())
    }

    /// Summaries of everything held in the given buckets, `within` a region.
    pub fn summaries(&self, buckets: &[u8], within: Option<&RegionCode>) -> Vec<RecordSummary> {
        let wanted: BTreeSet<u8> = buckets.iter().copied().collect();
        wanted
            .into_iter()
            .flat_map(|b| self.bucket_entries(b))
            .filter(|e| within.is_none_or(|r| e.region() == r))
            .map(|e| e.summary())
            .collect()
    }

    /// Compares the peer's summaries of `buckets` with ours, `within` a
    /// region when the exchange covers one.
    pub fn reconcile(
        &self,
        buckets: &[u8],
        theirs: &[RecordSummary],
        within: Option<&RegionCode>,
    ) -> Reconciliation {
        let theirs: BTreeMap<OrgId, &RecordSummary> = theirs.iter().map(|s| (s.org, s)).collect();
        let mut out = Reconciliation::default();
        for mine in self.summaries(buckets, within) {
            match theirs.get(&mine.org) {
                Some(t) if rank(t.sequence, &t.hash) == rank(mine.sequence, &mine.hash) => {}
                Some(t) if rank(t.sequence, &t.hash) > rank(mine.sequence, &mine.hash) => {
                    out.want.push(mine.org)
                }
                _ => out
                    .send
                    .extend(self.get(&mine.org).map(|e| e.signed.clone())),
            }
        }
        out.want
            .extend(theirs.keys().filter(|org| !self.entries.contains(org)));
        out
    }
}
