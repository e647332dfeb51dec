//! Writes that belong to one logical operation (a package taken in with
//! the consultation it opens and the journal entries it causes; a workflow
//! step with its journal entries) land together in one sled transaction,
//! then are flushed: a crash can no longer leave half an operation.

use super::At;
use super::{Store, StoreError, encode};
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::journal::{Checkpoint, Entry};
use konsilium_protocol::seal::PackageId;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::workflow::ConsultationId;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The trees a batch may touch, in the order of `Store::write`'s list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Inbox,
    Seen,
    Consultations,
    EarlySteps,
    Journal,
    Checkpoints,
    Intake,
    ConclusionPackages,
    KeptBlobs,
    Deadlines,
}

/// Writes collected for one commit.
#[derive(Debug, Default)]
pub struct Batch {
    writes: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
    journal: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn put(&mut self, tree: Tree, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.writes.push((tree, key.into(), Some(value)));
    }

    /// A received package, and its attachments kept from retention.
    pub fn put_inbox(&mut self, entry: &super::InboxEntry) {
        self.put(Tree::Inbox, entry.package.header.id.0, encode(entry));
        for blob in &entry.package.header.attachments {
            self.put(Tree::KeptBlobs, blob.hash, Vec::new());
        }
    }

    /// Remembers a package id until it expires (replay protection).
    pub fn mark_seen(&mut self, id: &PackageId, expires: Timestamp) {
        let value = expires.unix_millis().to_be_bytes().to_vec();
        self.put(Tree::Seen, id.0, value);
    }

    pub fn put_consultation(&mut self, id: &ConsultationId, c: &super::StoredConsultation) {
        self.put(Tree::Consultations, id.0, encode(c));
    }

    pub fn hold_early_step(&mut self, id: &ConsultationId, step: &super::EarlyStep) {
        let mut key = id.0.to_vec();
        key.extend_from_slice(&step.step.content_hash());
        self.put(Tree::EarlySteps, key, encode(step));
    }

    pub fn remove_early_step(&mut self, key: Vec<u8>) {
        self.writes.push((Tree::EarlySteps, key, None));
    }

    pub fn put_journal(&mut self, entry: &Entry) {
        self.journal = true;
        self.put(Tree::Journal, entry.seq.to_be_bytes(), encode(entry));
    }

    pub fn put_checkpoint(&mut self, checkpoint: &Signed<Checkpoint>) {
        let seq = checkpoint
            .decode_unverified()
            .map(|c| c.seq)
            .unwrap_or_default();
        self.put(Tree::Checkpoints, seq.to_be_bytes(), encode(checkpoint));
    }

    /// Remembers the package that carried a consultation's conclusion.
    pub fn put_deadline(&mut self, id: &ConsultationId, deadline: &Deadline) {
        self.put(Tree::Deadlines, id.0, encode(deadline));
    }

    pub fn put_conclusion_package(&mut self, id: &ConsultationId, package: &PackageId) {
        self.put(Tree::ConclusionPackages, id.0, package.0.to_vec());
    }

    pub fn put_intake(&mut self, key: &[u8], record: &super::IntakeRecord) {
        self.put(Tree::Intake, key, encode(record));
    }
}

impl Store {
    /// Writes the batch in one transaction across the trees it touches and
    /// flushes: all of it is durable when this returns, or none of it.
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch)?;
        self.flush()
    }

    /// Writes the batch in one transaction, all or none of it; durable
    /// only once the next flush returns.
    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let all = [
            &self.inbox,
            &self.seen,
            &self.consultations,
            &self.early_steps,
            &self.journal,
            &self.checkpoints,
            &self.intake,
            &self.conclusion_packages,
            &self.kept_blobs,
            &self.deadlines,
        ];
        // Only the trees the batch touches take part: sled locks and
        // commits every tree of a transaction, and a journal entry alone
        // (a video link's step) paid for all ten.
        let mut trees: Vec<&sled::Tree> = Vec::new();
        let mut index = all.map(|_| usize::MAX);
        for (tree, _, _) in &batch.writes {
            let at = *tree as usize;
            if index[at] == usize::MAX {
                index[at] = trees.len();
                trees.push(all[at]);
            }
        }
        trees[..]
            .transaction(|views| {
                for (tree, key, value) in &batch.writes {
                    let view = &views[index[*tree as usize]];
                    match value {
                        Some(v) => view.insert(key.as_slice(), v.as_slice())?,
                        None => view.remove(key.as_slice())?,
                    };
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::At {
                    path: self.dir.clone(),
                    source: e,
                },
                TransactionError::Abort(()) => StoreError::Corrupt {
                    path: self.dir.clone(),
                    what: "transaction",
                    reason: "aborted".into(),
                },
            })?;
        if batch.journal
            && let Some(a) = &self.anchoring
        {
            a.moved.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// The keys of the steps held for a consultation, to release them in a batch.
    pub fn early_step_keys(&self, id: &ConsultationId) -> Result<Vec<Vec<u8>>, StoreError> {
        self.early_steps
            .scan_prefix(id.0)
            .keys()
            .map(|k| Ok(k.at(&self.dir)?.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::{IntakeRecord, intake_key};
    use konsilium_protocol::identity::IdentityKey;

    fn record(n: u8) -> IntakeRecord {
        IntakeRecord {
            consultation: ConsultationId([n; 16]),
            fingerprint: [n; 32],
            at: Timestamp::from_unix_millis(1),
        }
    }

    #[test]
    fn a_batch_lands_whole_across_trees_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let org = IdentityKey::from_seed([1; 32]).org_id();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::default();
            batch.put_intake(&intake_key(&org, "a"), &record(1));
            batch.mark_seen(&PackageId([2; 16]), Timestamp::from_unix_millis(99));
            store.commit(batch).unwrap();
        }
        let store = crate::storage::store::tests::reopen(dir.path());
        assert_eq!(
            store.intake(&intake_key(&org, "a")).unwrap(),
            Some(record(1))
        );
        assert!(store.is_seen(&PackageId([2; 16])).unwrap());
    }
}
