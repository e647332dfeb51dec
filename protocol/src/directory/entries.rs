//! How a directory holds its entries: in the 256 buckets anti-entropy
//! compares (by the first byte of the organization's id), each bucket a
//! sorted list shared between copies of the directory until one of them
//! changes it. A simulated national federation gives each of its 5,200
//! sites a copy of the same 5,200 entries: as one map each, the copies
//! alone took more than a gigabyte; shared by bucket, a copy is 256
//! pointers, and a change copies the 20 or so entries of one bucket.
//!
//! Each slot keeps the organization's id and what routing asks of it
//! beside the pointer to its entry, so a search within a bucket and a
//! route's scan of the whole directory read one list each instead of
//! following a pointer per organization. A bucket also keeps its hash
//! once computed, for every copy that shares it; changing the bucket
//! forgets it.

use super::accepts::Accepts;
use super::{BUCKETS, DirectoryEntry};
use crate::identity::OrgId;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone)]
pub(super) struct Entries {
    buckets: Vec<Arc<Bucket>>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    slots: Vec<Slot>,
    /// The hash anti-entropy compares, of the slots as they are.
    hash: OnceLock<[u8; 32]>,
}

impl Bucket {
    fn new(slots: Vec<Slot>) -> Self {
        Self {
            slots,
            hash: OnceLock::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Slot {
    org: OrgId,
    pub(super) accepts: Accepts,
    pub(super) entry: Arc<DirectoryEntry>,
}

impl Slot {
    fn new(entry: Arc<DirectoryEntry>) -> Self {
        Self {
            org: entry.org(),
            accepts: entry.accepts,
            entry,
        }
    }
}

impl Default for Entries {
    fn default() -> Self {
        let empty = Arc::new(Bucket::default());
        Self {
            buckets: vec![empty; BUCKETS],
            len: 0,
        }
    }
}

fn bucket_of(org: &OrgId) -> usize {
    usize::from(org.as_bytes()[0])
}

impl Entries {
    /// Entries sorted by organization, each organization once.
    pub(super) fn from_sorted(sorted: Vec<Arc<DirectoryEntry>>) -> Self {
        let len = sorted.len();
        let mut buckets: Vec<Vec<Slot>> = vec![Vec::new(); BUCKETS];
        for entry in sorted {
            buckets[bucket_of(&entry.org())].push(Slot::new(entry));
        }
        Self {
            buckets: (buckets.into_iter())
                .map(|slots| Arc::new(Bucket::new(slots)))
                .collect(),
            len,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, org: &OrgId) -> Option<&DirectoryEntry> {
        let slots = &self.buckets[bucket_of(org)].slots;
        let at = slots.binary_search_by(|s| s.org.cmp(org)).ok()?;
        Some(&slots[at].entry)
    }

    pub(super) fn contains(&self, org: &OrgId) -> bool {
        self.get(org).is_some()
    }

    /// Every slot, in id order.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.buckets.iter().flat_map(|b| b.slots.iter())
    }

    /// Every entry, in id order.
    pub(super) fn values(&self) -> impl Iterator<Item = &DirectoryEntry> {
        self.slots().map(|s| s.entry.as_ref())
    }

    /// The entries whose id starts with `bucket`, in id order.
    pub(super) fn bucket(&self, bucket: u8) -> impl Iterator<Item = &DirectoryEntry> {
        self.buckets[usize::from(bucket)]
            .slots
            .iter()
            .map(|s| s.entry.as_ref())
    }

    /// The hash of bucket `bucket`'s records, computed once for all the
    /// copies that share it.
    pub(super) fn hash(&self, bucket: u8) -> [u8; 32] {
        let bucket = &self.buckets[usize::from(bucket)];
        *bucket.hash.get_or_init(|| {
            let mut h = blake3::Hasher::new();
            for s in &bucket.slots {
                s.entry.hash_into(&mut h);
            }
            *h.finalize().as_bytes()
        })
    }

    /// Puts `entry` in its organization's place; returns the entry it
    /// replaced. Copies the bucket first if another directory shares it.
    pub(super) fn insert(&mut self, entry: Arc<DirectoryEntry>) -> Option<Arc<DirectoryEntry>> {
        let org = entry.org();
        let bucket = Arc::make_mut(&mut self.buckets[bucket_of(&org)]);
        bucket.hash = OnceLock::new();
        let bucket = &mut bucket.slots;
        match bucket.binary_search_by(|s| s.org.cmp(&org)) {
            Ok(at) => Some(std::mem::replace(&mut bucket[at], Slot::new(entry)).entry),
            Err(at) => {
                bucket.insert(at, Slot::new(entry));
                self.len += 1;
                None
            }
        }
    }

    /// Keeps the entries `keep` says to, asking it once of each; a bucket
    /// that keeps all of its entries stays shared.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&DirectoryEntry) -> bool) {
        for bucket in &mut self.buckets {
            let slots = &bucket.slots;
            let Some(first) = slots.iter().position(|s| !keep(&s.entry)) else {
                continue;
            };
            let mut kept = slots[..first].to_vec();
            kept.extend(
                slots[first + 1..]
                    .iter()
                    .filter(|s| keep(&s.entry))
                    .cloned(),
            );
            self.len -= slots.len() - kept.len();
            *bucket = Arc::new(Bucket::new(kept));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Directory;
    use crate::cert::OrgLevel;
    use crate::specialty::Specialty;
    use crate::testkit::{NOW, TestFederation, TestOrg};
    use std::sync::Arc;

    /// A directory of `n` organizations, and them.
    fn directory(n: u64) -> (TestFederation, Vec<TestOrg>, Directory) {
        let mut fed = TestFederation::new("entries");
        let orgs: Vec<_> = (0..n)
            .map(|i| fed.org(i, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]))
            .collect();
        let mut dir = Directory::new();
        let records = orgs.iter().map(|o| o.signed_record(1)).collect();
        for merged in dir.insert_many(records, &fed.trust, NOW) {
            merged.expect("a valid record");
        }
        (fed, orgs, dir)
    }

    /// Which of two directories' buckets are one and the same.
    fn shared(a: &Directory, b: &Directory) -> Vec<bool> {
        let pairs = a.entries.buckets.iter().zip(&b.entries.buckets);
        pairs.map(|(x, y)| Arc::ptr_eq(x, y)).collect()
    }

    #[test]
    fn entries_come_in_id_order_and_each_is_found() {
        let (_, orgs, dir) = directory(40);
        let ids: Vec<_> = dir.entries().map(|e| e.org()).collect();
        let mut sorted: Vec<_> = orgs.iter().map(|o| o.id()).collect();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(dir.len(), 40);
        for org in &orgs {
            assert_eq!(dir.get(&org.id()).map(|e| e.org()), Some(org.id()));
        }
        let stranger = TestFederation::new("elsewhere").org(99, OrgLevel::District, "RU-ARK", &[]);
        assert!(dir.get(&stranger.id()).is_none());
    }

    /// A copy's change copies the one bucket it touches; the original
    /// keeps its record, and every other bucket stays shared.
    #[test]
    fn a_copy_shares_its_buckets_until_it_changes_one() {
        let (fed, orgs, dir) = directory(40);
        // Hashes computed before the copy is made are kept through the change.
        let before = dir.digest();
        let mut copy = dir.clone();
        assert!(shared(&dir, &copy).iter().all(|&s| s));
        let changed = &orgs[7];
        copy.insert(changed.signed_record(2), &fed.trust, NOW)
            .expect("a newer record");
        let sequence = |d: &Directory| d.get(&changed.id()).map(|e| e.record().sequence);
        assert_eq!((sequence(&dir), sequence(&copy)), (Some(1), Some(2)));
        let bucket = usize::from(changed.id().as_bytes()[0]);
        for (i, same) in shared(&dir, &copy).into_iter().enumerate() {
            assert_eq!(same, i != bucket, "bucket {i}");
        }
        assert_eq!(copy.len(), 40);
        // Each side's hashes are those of a directory built afresh from
        // its records: the changed bucket's was forgotten in the copy only.
        let afresh = |d: &Directory| {
            let mut fresh = Directory::new();
            let records = d.entries().map(|e| e.signed().clone()).collect();
            fresh.insert_many(records, &fed.trust, NOW);
            fresh
        };
        for (held, fresh) in [(&dir, afresh(&dir)), (&copy, afresh(&copy))] {
            for b in 0..super::BUCKETS {
                assert_eq!(held.bucket_hash(b), fresh.bucket_hash(b), "bucket {b}");
            }
            assert_eq!(held.digest(), fresh.digest());
        }
        assert_eq!(dir.digest(), before);
        assert_ne!(copy.digest(), before);
    }

    /// Retaining asks once of each entry, and a bucket that lost nothing
    /// is still the one the copy shares.
    #[test]
    fn retain_asks_once_of_each_and_keeps_untouched_buckets_shared() {
        let (_, orgs, dir) = directory(40);
        let mut copy = dir.clone();
        let gone = orgs[3].id();
        let mut asked = 0;
        copy.entries.retain(|e| {
            asked += 1;
            e.org() != gone
        });
        assert_eq!(asked, 40);
        assert_eq!(copy.len(), 39);
        assert!(copy.get(&gone).is_none() && dir.get(&gone).is_some());
        let bucket = usize::from(gone.as_bytes()[0]);
        for (i, same) in shared(&dir, &copy).into_iter().enumerate() {
            assert_eq!(same, i != bucket, "bucket {i}");
        }
    }
}
