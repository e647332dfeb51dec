//! Durable state in sled: directory records, revocations, outbox, inbox,
//! relay custody, seen package ids, and the client identifiers that make
//! opening a consultation idempotent.
//!
//! sled writes are durable only after `flush`, so every operation that the
//! network or a user is told about (an id returned by `send`, a receipt, a
//! custody acknowledgement) flushes first.

use konsilium_protocol::cert::RevocationNotice;
use konsilium_protocol::deadline::Deadline;
use konsilium_protocol::directory::SignedRecord;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::{Checkpoint, Entry};
use konsilium_protocol::seal::{EnvelopeHeader, PackageId, SealedPackage};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire::{self, WireError};
use konsilium_protocol::workflow::ConsultationId;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Every database error names the directory: corruption, a full disk
    /// or a read-only file system is something the operator must find.
    #[error("database {}: {source}", .path.display())]
    At {
        path: std::path::PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("database {}: stored {what} is corrupt: {reason}", .path.display())]
    Corrupt {
        path: std::path::PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("stored {what}: {source}")]
    Wire {
        what: &'static str,
        source: WireError,
    },
    #[error("journal anchor: {0}")]
    Anchor(#[from] crate::storage::anchor::AnchorError),
}

/// What the store needs to keep the journal's anchor (see `anchor`) in
/// step with every flush.
pub struct Anchoring {
    key: konsilium_protocol::identity::IdentityKey,
    data_dir: std::path::PathBuf,
    now: Box<dyn Fn() -> Timestamp + Send + Sync>,
    /// Set when a journal entry is written, cleared once the anchor vouches
    /// for it: most flushes (deliveries, records) leave the journal alone
    /// and cost no read or signature.
    moved: std::sync::atomic::AtomicBool,
    /// Opened at the first flush that anchors, again after a failed write.
    file: std::sync::Mutex<Option<crate::storage::anchor::AnchorFile>>,
}

impl Anchoring {
    fn write(&self, checkpoint: &Signed<Checkpoint>) -> Result<(), StoreError> {
        use crate::storage::anchor::AnchorFile;
        let mut held = (self.file.lock()).unwrap_or_else(|poisoned| poisoned.into_inner());
        let file = match held.as_mut() {
            Some(file) => file,
            None => held.insert(AnchorFile::open(&self.data_dir)?),
        };
        let written = file.write(checkpoint);
        if written.is_err() {
            *held = None;
        }
        Ok(written?)
    }

    pub fn new(
        key: konsilium_protocol::identity::IdentityKey,
        data_dir: &Path,
        now: impl Fn() -> Timestamp + Send + Sync + 'static,
    ) -> Self {
        Self {
            key,
            data_dir: data_dir.to_owned(),
            now: Box::new(now),
            // The first flush anchors whatever the journal holds at start.
            moved: std::sync::atomic::AtomicBool::new(true),
            file: std::sync::Mutex::new(None),
        }
    }
}

mod records;
pub use records::*;

mod batch;
pub use batch::Batch;

mod durable;
use durable::Durable;

/// How often sled's own thread writes what nobody flushed and cleans its
/// segments. Nothing durable waits on it (the node flushes and syncs what
/// must survive itself), yet at sled's default of 500 ms it also syncs the
/// file each time: two wake-ups and two syncs a second for every node at
/// rest (200 nodes at rest in one process: 13-14% of a core, 10-11% at
/// this interval).
const BACKGROUND_FLUSH_MS: u64 = 5_000;

pub struct Store {
    db: sled::Db,
    records: sled::Tree,
    revocations: sled::Tree,
    outbox: sled::Tree,
    inbox: sled::Tree,
    sent: sled::Tree,
    seen: sled::Tree,
    waiting: sled::Tree,
    consultations: sled::Tree,
    early_steps: sled::Tree,
    journal: sled::Tree,
    checkpoints: sled::Tree,
    meta: sled::Tree,
    /// Attachments to delete, keyed by when (big-endian milliseconds) and
    /// hash, so the next due one is the first key.
    expiring_blobs: sled::Tree,
    anchoring: Option<Anchoring>,
    /// Finishes each of sled's flushes.
    durable: Durable,
    /// Held through a flush.
    flushing: std::sync::Mutex<()>,
    /// Held through a batch's writes, which share one redo record.
    batching: std::sync::Mutex<()>,
    intake: sled::Tree,
    /// Which received package carried each consultation's conclusion, whose
    /// attachments are the conclusion's files as sealed to this organization.
    conclusion_packages: sled::Tree,
    /// Attachments of packages received here, by hash: never deleted by
    /// the retention of attachments sent or relayed, which goes by hash
    /// too and would otherwise take a received file away when any other
    /// package (one a peer made up to that end) lists the same hash.
    kept_blobs: sled::Tree,
    /// Each consultation's deadlines, fixed when it was opened or received.
    deadlines: sled::Tree,
    /// The database's directory, for errors.
    dir: std::path::PathBuf,
}

/// Whether the database in `dir` is free to open: sled holds an exclusive
/// lock on its `db` file while any handle lives, and its I/O threads can
/// keep it a moment after the last handle is dropped.
pub fn is_released(dir: &Path) -> bool {
    use fs2::FileExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    {
        Ok(file) => {
            let free = file.try_lock_exclusive().is_ok();
            if free {
                let _ = FileExt::unlock(&file);
            }
            free
        }
        // No database there (yet, or any more): nothing holds it.
        Err(_) => true,
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("encoding into a Vec cannot fail")
}

/// Names the database's directory in a sled error.
pub(super) trait At<T> {
    fn at(self, dir: &Path) -> Result<T, StoreError>;
}

impl<T> At<T> for Result<T, sled::Error> {
    fn at(self, dir: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::At {
            path: dir.to_owned(),
            source,
        })
    }
}

impl Store {
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
            path: self.dir.clone(),
            what,
            reason: e.to_string(),
        })
    }

    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open_trees(dir).map_err(|source| StoreError::At {
            path: dir.to_owned(),
            source,
        })?;
        store.finish_unfinished_batch()?;
        Ok(store)
    }

    fn open_trees(dir: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(BACKGROUND_FLUSH_MS))
            .open()?;
        Ok(Self {
            durable: Durable::open(dir)?,
            dir: dir.to_owned(),
            records: db.open_tree("records")?,
            revocations: db.open_tree("revocations")?,
            outbox: db.open_tree("outbox")?,
            inbox: db.open_tree("inbox")?,
            sent: db.open_tree("sent")?,
            seen: db.open_tree("seen")?,
            waiting: db.open_tree("waiting")?,
            consultations: db.open_tree("consultations")?,
            early_steps: db.open_tree("early_steps")?,
            journal: db.open_tree("journal")?,
            checkpoints: db.open_tree("checkpoints")?,
            meta: db.open_tree("meta")?,
            expiring_blobs: db.open_tree("expiring_blobs")?,
            anchoring: None,
            flushing: std::sync::Mutex::new(()),
            batching: std::sync::Mutex::new(()),
            intake: db.open_tree("intake")?,
            conclusion_packages: db.open_tree("conclusion_packages")?,
            kept_blobs: db.open_tree("kept_blobs")?,
            deadlines: db.open_tree("deadlines")?,
            db,
        })
    }

    /// From now on every flush that moved the journal also replaces its
    /// anchor, once the database has made the entries durable.
    pub fn anchor_journal(&mut self, anchoring: Anchoring) {
        self.anchoring = Some(anchoring);
    }

    /// A copy of every tree in a new database at `dest`, for a backup: one
    /// moment of the store when nothing writes to it meanwhile.
    pub fn export_into(&self, dest: &Path) -> Result<(), StoreError> {
        // By hand rather than sled's `import`, which panics on a write
        // error (a full backup disk) instead of returning it.
        let copy = sled::Config::new().path(dest).open().at(dest)?;
        for name in self.db.tree_names() {
            let from = self.db.open_tree(&name).at(&self.dir)?;
            let to = copy.open_tree(&name).at(dest)?;
            for kv in from.iter() {
                let (k, v) = kv.at(&self.dir)?;
                to.insert(k, v).at(dest)?;
            }
        }
        copy.flush().at(dest)?;
        (Durable::open(dest).and_then(|d| d.sync()))
            .map_err(sled::Error::from)
            .at(dest)?;
        Ok(())
    }

    /// The number of entries and the head hash of the stored journal.
    pub fn journal_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        Ok(match self.journal.last().at(&self.dir)? {
            Some((_, v)) => {
                let last: Entry = self.decode("journal entry", &v)?;
                (last.seq + 1, last.hash())
            }
            None => (0, konsilium_protocol::journal::GENESIS),
        })
    }

    /// Makes every write so far durable, and the journal's anchor vouch
    /// for them. One flush runs at a time (a background one and the event
    /// loop's may meet): two would race on the anchor's file.
    pub fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let _one = (self.flushing.lock()).unwrap_or_else(|poisoned| poisoned.into_inner());
        let anchoring = (self.anchoring.as_ref()).filter(|a| a.moved.swap(false, Ordering::AcqRel));
        // The head is read before the database flushes: an entry written
        // meanwhile may not be durable yet, and the anchor must not vouch
        // for it.
        let head = anchoring.map(|_| self.journal_head());
        let written = (self.db.flush())
            .and_then(|_| Ok(self.durable.sync()?))
            .map_err(|source| StoreError::At {
                path: self.dir.clone(),
                source,
            })
            .and_then(|_| {
                let (Some(a), Some(head)) = (anchoring, head) else {
                    return Ok(());
                };
                let (seq, head) = head?;
                let checkpoint = Signed::sign(
                    &a.key,
                    &Checkpoint {
                        seq,
                        head,
                        at: (a.now)(),
                    },
                );
                a.write(&checkpoint)
            });
        if written.is_err()
            && let Some(a) = anchoring
        {
            a.moved.store(true, Ordering::Release);
        }
        written
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn put_record(&self, org: &OrgId, record: &SignedRecord) -> Result<(), StoreError> {
        let frame = wire::encode(record).map_err(|source| StoreError::Wire {
            what: "record",
            source,
        })?;
        self.records.insert(org.as_bytes(), frame).at(&self.dir)?;
        Ok(())
    }

    pub fn remove_record(&self, org: &OrgId) -> Result<(), StoreError> {
        self.records.remove(org.as_bytes()).at(&self.dir)?;
        Ok(())
    }

    pub fn records(&self) -> Result<Vec<SignedRecord>, StoreError> {
        self.records
            .iter()
            .values()
            .map(|v| {
                wire::decode(&v.at(&self.dir)?).map_err(|source| StoreError::Wire {
                    what: "record",
                    source,
                })
            })
            .collect()
    }

    pub fn put_revocation(
        &self,
        issuer: &[u8; 32],
        notice: &RevocationNotice,
    ) -> Result<(), StoreError> {
        let frame = wire::encode(notice).map_err(|source| StoreError::Wire {
            what: "revocation list",
            source,
        })?;
        self.revocations.insert(issuer, frame).at(&self.dir)?;
        Ok(())
    }

    pub fn revocations(&self) -> Result<Vec<RevocationNotice>, StoreError> {
        self.revocations
            .iter()
            .values()
            .map(|v| {
                wire::decode(&v.at(&self.dir)?).map_err(|source| StoreError::Wire {
                    what: "revocation list",
                    source,
                })
            })
            .collect()
    }

    pub fn put_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox
            .insert(entry.package.header.id.0, encode(entry))
            .at(&self.dir)?;
        Ok(())
    }

    pub fn outbox_entry(&self, id: &PackageId) -> Result<Option<OutboxEntry>, StoreError> {
        self.outbox
            .get(id.0)
            .at(&self.dir)?
            .map(|v| self.decode("outbox entry", &v))
            .transpose()
    }

    pub fn remove_outbox(&self, id: &PackageId) -> Result<(), StoreError> {
        self.outbox.remove(id.0).at(&self.dir)?;
        Ok(())
    }

    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.outbox
            .iter()
            .values()
            .map(|v| self.decode("outbox entry", &v.at(&self.dir)?))
            .collect()
    }

    pub fn inbox_entry(&self, id: &PackageId) -> Result<Option<InboxEntry>, StoreError> {
        self.inbox
            .get(id.0)
            .at(&self.dir)?
            .map(|v| self.decode("inbox entry", &v))
            .transpose()
    }

    /// A received package's header alone.
    pub fn inbox_header(&self, id: &PackageId) -> Result<Option<EnvelopeHeader>, StoreError> {
        self.header_in(&self.inbox, "inbox entry", id)
    }

    /// A package's header alone, as queued to go out.
    pub fn outbox_header(&self, id: &PackageId) -> Result<Option<EnvelopeHeader>, StoreError> {
        self.header_in(&self.outbox, "outbox entry", id)
    }

    /// The header of a package kept in `tree`: an entry's first field is
    /// its package, whose first is its header, so the body (up to a frame)
    /// is never built.
    fn header_in(
        &self,
        tree: &sled::Tree,
        what: &'static str,
        id: &PackageId,
    ) -> Result<Option<EnvelopeHeader>, StoreError> {
        let head = |v: &[u8]| {
            postcard::take_from_bytes::<EnvelopeHeader>(v)
                .map(|(header, _)| header)
                .map_err(|e| StoreError::Corrupt {
                    path: self.dir.clone(),
                    what,
                    reason: e.to_string(),
                })
        };
        (tree.get(id.0).at(&self.dir)?)
            .map(|v| head(&v))
            .transpose()
    }

    pub fn inbox(&self) -> Result<Vec<InboxEntry>, StoreError> {
        self.inbox
            .iter()
            .values()
            .map(|v| self.decode("inbox entry", &v.at(&self.dir)?))
            .collect()
    }

    pub fn inbox_len(&self) -> usize {
        self.inbox.len()
    }

    pub fn put_sent(&self, id: &PackageId, entry: &SentEntry) -> Result<(), StoreError> {
        self.sent.insert(id.0, encode(entry)).at(&self.dir)?;
        Ok(())
    }

    pub fn sent_entry(&self, id: &PackageId) -> Result<Option<SentEntry>, StoreError> {
        self.sent
            .get(id.0)
            .at(&self.dir)?
            .map(|v| self.decode("sent entry", &v))
            .transpose()
    }

    /// A package whose attachments are still arriving, and who delivered it.
    pub fn put_waiting(&self, package: &SealedPackage, from: &OrgId) -> Result<(), StoreError> {
        self.waiting
            .insert(package.header.id.0, encode(&(package, from)))
            .at(&self.dir)?;
        Ok(())
    }

    pub fn remove_waiting(&self, id: &PackageId) -> Result<(), StoreError> {
        self.waiting.remove(id.0).at(&self.dir)?;
        Ok(())
    }

    /// The header of every package waiting for its attachments, and who
    /// delivered it, without building any body: bodies are up to a frame
    /// each, and this is read each time an attachment completes.
    pub fn waiting_heads(&self) -> Result<Vec<(EnvelopeHeader, OrgId)>, StoreError> {
        /// A stored `(SealedPackage, OrgId)`, its body left in place.
        #[derive(Deserialize)]
        struct Head<'a> {
            header: EnvelopeHeader,
            #[serde(borrow)]
            _body: &'a [u8],
        }
        let head = |v: &[u8]| -> Result<(EnvelopeHeader, OrgId), StoreError> {
            let (head, from) =
                postcard::from_bytes::<(Head, OrgId)>(v).map_err(|e| StoreError::Corrupt {
                    path: self.dir.clone(),
                    what: "waiting package",
                    reason: e.to_string(),
                })?;
            Ok((head.header, from))
        };
        (self.waiting.iter().values())
            .map(|v| head(&v.at(&self.dir)?))
            .collect()
    }

    /// Takes one waiting package out.
    pub fn take_waiting(
        &self,
        id: &PackageId,
    ) -> Result<Option<(SealedPackage, OrgId)>, StoreError> {
        (self.waiting.remove(id.0).at(&self.dir)?)
            .map(|v| self.decode("waiting package", &v))
            .transpose()
    }

    /// Every step held for a consultation that has not arrived, at start.
    pub fn early_steps(&self) -> Result<Vec<EarlyStep>, StoreError> {
        self.early_steps
            .iter()
            .values()
            .map(|v| self.decode("early step", &v.at(&self.dir)?))
            .collect()
    }

    pub fn put_consultation(
        &self,
        id: &ConsultationId,
        c: &StoredConsultation,
    ) -> Result<(), StoreError> {
        self.consultations.insert(id.0, encode(c)).at(&self.dir)?;
        Ok(())
    }

    pub fn intake(&self, key: &[u8]) -> Result<Option<IntakeRecord>, StoreError> {
        self.intake
            .get(key)
            .at(&self.dir)?
            .map(|v| self.decode("intake record", &v))
            .transpose()
    }

    pub fn remove_intake(&self, key: &[u8]) -> Result<(), StoreError> {
        self.intake.remove(key).at(&self.dir)?;
        Ok(())
    }

    /// Forgets intake records made before `before`: a retry comes within
    /// minutes or hours, and this keeps the tree bounded by the intake of
    /// the retention period.
    pub fn prune_intake(&self, before: Timestamp) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for item in self.intake.iter() {
            let (k, v) = item.at(&self.dir)?;
            let record: IntakeRecord = self.decode("intake record", &v)?;
            if record.at < before {
                self.intake.remove(k).at(&self.dir)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    pub fn consultation(
        &self,
        id: &ConsultationId,
    ) -> Result<Option<StoredConsultation>, StoreError> {
        self.consultations
            .get(id.0)
            .at(&self.dir)?
            .map(|v| self.decode("consultation", &v))
            .transpose()
    }

    /// The received package that carried the consultation's conclusion.
    pub fn conclusion_package(&self, id: &ConsultationId) -> Result<Option<PackageId>, StoreError> {
        let Some(v) = self.conclusion_packages.get(id.0).at(&self.dir)? else {
            return Ok(None);
        };
        let bytes: [u8; 16] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            path: self.dir.clone(),
            what: "conclusion package",
            reason: format!("{} bytes where a package id has 16", v.len()),
        })?;
        Ok(Some(PackageId(bytes)))
    }

    /// The deadlines fixed for a consultation, if they were.
    pub fn deadline(&self, id: &ConsultationId) -> Result<Option<Deadline>, StoreError> {
        (self.deadlines.get(id.0).at(&self.dir)?)
            .map(|v| self.decode("consultation deadline", &v))
            .transpose()
    }

    pub fn consultations(&self) -> Result<Vec<StoredConsultation>, StoreError> {
        self.consultations
            .iter()
            .values()
            .map(|v| self.decode("consultation", &v.at(&self.dir)?))
            .collect()
    }

    /// Schedules a delivered attachment's deletion.
    pub fn expire_blob(&self, hash: &[u8; 32], at: Timestamp) -> Result<(), StoreError> {
        let mut key = at.unix_millis().to_be_bytes().to_vec();
        key.extend_from_slice(hash);
        self.expiring_blobs.insert(key, &[]).at(&self.dir)?;
        Ok(())
    }

    /// When the next attachment is due for deletion: one read of the first key.
    pub fn next_blob_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.expiring_blobs.first().at(&self.dir)?.map(|(key, _)| {
            let at = key.get(..8).and_then(|b| b.try_into().ok());
            Timestamp::from_unix_millis(u64::from_be_bytes(at.unwrap_or([u8::MAX; 8])))
        }))
    }

    /// Attachments whose deletion is due by `now`, earliest first, at most
    /// `limit` of them; each is unscheduled as it is returned. One a
    /// received package holds is unscheduled and not returned.
    pub fn take_expired_blobs(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some((key, _)) = self.expiring_blobs.first().at(&self.dir)? else {
                break;
            };
            let (at, hash) = key.split_at(8);
            let at = u64::from_be_bytes(at.try_into().unwrap_or([u8::MAX; 8]));
            if at > now.unix_millis() {
                break;
            }
            self.expiring_blobs.remove(&key).at(&self.dir)?;
            if let Ok(hash) = <[u8; 32]>::try_from(hash)
                && !self.kept_blobs.contains_key(hash).at(&self.dir)?
            {
                due.push(hash);
            }
        }
        Ok(due)
    }

    pub fn put_journal(&self, entry: &Entry) -> Result<(), StoreError> {
        self.journal
            .insert(entry.seq.to_be_bytes(), encode(entry))
            .at(&self.dir)?;
        if let Some(a) = &self.anchoring {
            a.moved.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// When the last journal entry the database holds was written.
    pub fn journal_last_at(&self) -> Result<Option<Timestamp>, StoreError> {
        match self.journal.last().at(&self.dir)? {
            Some((_, v)) => Ok(Some(self.decode::<Entry>("journal entry", &v)?.at)),
            None => Ok(None),
        }
    }

    pub fn journal(&self) -> Result<Vec<Entry>, StoreError> {
        self.journal
            .iter()
            .values()
            .map(|v| self.decode("journal entry", &v.at(&self.dir)?))
            .collect()
    }

    pub fn put_checkpoint(&self, checkpoint: &Signed<Checkpoint>) -> Result<(), StoreError> {
        let seq = checkpoint
            .decode_unverified()
            .map(|c| c.seq)
            .unwrap_or_default();
        self.checkpoints
            .insert(seq.to_be_bytes(), encode(checkpoint))
            .at(&self.dir)?;
        Ok(())
    }

    pub fn checkpoints(&self) -> Result<Vec<Signed<Checkpoint>>, StoreError> {
        self.checkpoints
            .iter()
            .values()
            .map(|v| self.decode("journal checkpoint", &v.at(&self.dir)?))
            .collect()
    }

    /// Remembers a package id until it expires (replay protection).
    pub fn mark_seen(&self, id: &PackageId, expires: Timestamp) -> Result<(), StoreError> {
        self.seen
            .insert(id.0, &expires.unix_millis().to_be_bytes())
            .at(&self.dir)?;
        Ok(())
    }

    pub fn is_seen(&self, id: &PackageId) -> Result<bool, StoreError> {
        self.seen.contains_key(id.0).at(&self.dir)
    }

    /// Forgets ids whose packages have expired: they can no longer be opened anyway.
    pub fn prune_seen(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for item in self.seen.iter() {
            let (k, v) = item.at(&self.dir)?;
            let expires =
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    path: self.dir.clone(),
                    what: "seen id",
                    reason: "expiry is not 8 bytes".into(),
                })?);
            if expires <= now.unix_millis() {
                self.seen.remove(k).at(&self.dir)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.meta
            .get(key)
            .at(&self.dir)?
            .map(|v| {
                v.as_ref()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        path: self.dir.clone(),
                        what: "meta",
                        reason: key.into(),
                    })
            })
            .transpose()
    }

    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.meta.insert(key, &value.to_be_bytes()).at(&self.dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
