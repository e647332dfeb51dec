//! The signed directory of organizations and their consultants.
//!
//! Each organization publishes one record, signed with its identity key and
//! carrying its certificate chain, so any node can check any record alone.
//! Merging keeps, per organization, the record with the highest sequence
//! number and, on a tie, the highest record hash (of its signature, see
//! `SignedRecord::record_hash`): a join that is commutative, associative
//! and idempotent, so nodes that saw the same records in any order hold
//! the same directory. Bucketed digests let two nodes find what differs
//! without sending everything (anti-entropy).

use crate::calendar::WorkingCalendar;
use crate::cert::{
    AuthorityCache, CertChain, CertError, OrgCert, OrgLevel, RegionCode, Trust, VerifiedOrg,
};
use crate::identity::{OrgId, SealingPublicKey};
use crate::limits::{
    FieldError, MAX_ADDRESS_LEN, MAX_ADDRESSES, MAX_CONSULTANTS, MAX_LANGUAGES, MAX_SERVICES,
    MAX_SLOTS, MAX_SPECIALTIES_PER_CONSULTANT, check_count, check_name,
};
use crate::signed::{Signable, Signed, SignedError, verify_all};
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::{Deadlines, Urgency};
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

mod accepts;
mod anti_entropy;
mod entries;
pub mod frames;
pub mod sync;

pub use anti_entropy::{
    BUCKETS, DigestMatch, Reconciliation, RecordSummary, SyncDigest, SyncOffer,
};
pub use frames::FrameBudget;
pub use sync::{
    DirectorySync, GossipVerdict, Output, Rejection, RequestToken, Scope, Stored, SyncConfig,
    SyncError, SyncEvent, is_directory_request,
};

/// A consultant's id, unique within the organization's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConsultantId(pub u32);

/// A language tag (BCP 47 style, like `ru`, `uk`, `zh-Hans`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Language(String);

impl Language {
    pub fn new(tag: impl Into<String>) -> Result<Self, FieldError> {
        let tag = tag.into();
        let mut parts = tag.split('-');
        let primary_ok = parts.next().is_some_and(|p| {
            (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase())
        });
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if primary_ok && rest_ok && tag.len() <= 16 {
            Ok(Self(tag))
        } else {
            Err(FieldError::Invalid {
                field: "language",
                reason: format!("{tag:?} is not a language tag like \"ru\" or \"zh-Hans\""),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Language {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(s)
    }
}

impl From<Language> for String {
    fn from(l: Language) -> String {
        l.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultant {
    pub id: ConsultantId,
    pub name: String,
    pub specialties: BTreeSet<Specialty>,
    pub languages: BTreeSet<Language>,
}

/// A specialty the organization takes requests for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub specialty: Specialty,
    pub urgencies: BTreeSet<Urgency>,
    /// Tighter deadlines for this profile, if the head of the organization set them.
    pub deadlines: Option<Deadlines>,
}

/// A time a consultant is available for a video consilium.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub consultant: ConsultantId,
    pub specialty: Specialty,
    pub start: Timestamp,
    pub end: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    pub chain: CertChain,
    /// The current sealing key. Signed by the identity key as part of the
    /// record, so rotating it needs no new certificate.
    pub sealing_key: SealingPublicKey,
    pub consultants: Vec<Consultant>,
    pub services: Vec<Service>,
    pub calendar: WorkingCalendar,
    pub deadlines: Deadlines,
    pub slots: Vec<Slot>,
    pub addresses: Vec<Multiaddr>,
    pub sequence: u64,
    pub issued_at: Timestamp,
}

impl Signable for DirectoryRecord {
    const DOMAIN: &'static [u8] = b"konsilium/directory-record/v1\0";
}

pub type SignedRecord = Signed<DirectoryRecord>;

impl SignedRecord {
    /// What names this record among its organization's (ties of sequence
    /// are broken by it, anti-entropy compares it): a hash of its
    /// signature, not of all its bytes. A valid ed25519 signature names
    /// one message under its key: `s` is canonical (ZIP 215 requires it)
    /// and another message under the same `R` and key would need a hash
    /// collision. So for every record that passed its checks this names
    /// its content as well as hashing its ~560 bytes would, for a tenth of
    /// the cost (those bytes were 10 ms of a 20,000-record cold start of
    /// ~520). A record not yet checked that carries a held record's
    /// signature over other bytes is taken for the held one and ignored,
    /// which is all such a forgery deserves.
    pub fn record_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.signature().to_bytes()).as_bytes()
    }
}

impl DirectoryRecord {
    /// Field rules a record must satisfy beyond decoding: bounded sizes,
    /// unique ids, slots that name a consultant of the record.
    pub fn check(&self) -> Result<(), FieldError> {
        check_count("consultants", self.consultants.len(), MAX_CONSULTANTS)?;
        check_count("services", self.services.len(), MAX_SERVICES)?;
        check_count("slots", self.slots.len(), MAX_SLOTS)?;
        check_count("addresses", self.addresses.len(), MAX_ADDRESSES)?;
        // Every node stores, gossips and dials these: a peer must not be able
        // to fill the directory with one address the size of a frame.
        if let Some(a) = self.addresses.iter().find(|a| a.len() > MAX_ADDRESS_LEN) {
            return Err(FieldError::Invalid {
                field: "addresses",
                reason: format!(
                    "an address of {} bytes, at most {MAX_ADDRESS_LEN} allowed",
                    a.len()
                ),
            });
        }
        self.calendar.check()?;
        let mut ids = BTreeSet::new();
        for c in &self.consultants {
            check_name("consultant name", &c.name)?;
            check_count(
                "consultant specialties",
                c.specialties.len(),
                MAX_SPECIALTIES_PER_CONSULTANT,
            )?;
            check_count("consultant languages", c.languages.len(), MAX_LANGUAGES)?;
            if !ids.insert(c.id) {
                return Err(FieldError::Invalid {
                    field: "consultants",
                    reason: format!("consultant id {} appears twice", c.id.0),
                });
            }
        }
        let mut offered = BTreeSet::new();
        for s in &self.services {
            if s.urgencies.is_empty() {
                return Err(FieldError::Empty {
                    field: "services.urgencies",
                });
            }
            if !offered.insert(s.specialty) {
                return Err(FieldError::Invalid {
                    field: "services",
                    reason: format!("specialty {} listed twice", s.specialty),
                });
            }
        }
        for slot in &self.slots {
            if slot.end <= slot.start {
                return Err(FieldError::Invalid {
                    field: "slots",
                    reason: "a slot must end after it starts".into(),
                });
            }
            if !ids.contains(&slot.consultant) {
                return Err(FieldError::Invalid {
                    field: "slots",
                    reason: format!("slot names unknown consultant {}", slot.consultant.0),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("directory record: {0}")]
    Signed(#[from] SignedError),
    #[error("directory record: certificate chain refused: {0}")]
    Chain(#[from] CertError),
    #[error("directory record: {0}")]
    Field(#[from] FieldError),
}

/// What merging one valid record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Added,
    Replaced {
        previous_sequence: u64,
    },
    /// The same record was already held.
    Unchanged,
    /// The directory holds a newer record (or the tie-break winner).
    Superseded {
        held_sequence: u64,
    },
}

/// One organization as the directory holds it: the signed record as received
/// (to pass on byte for byte) and its checked contents.
#[derive(Debug, Clone)]
pub struct DirectoryEntry {
    /// What routing asks of it, computed once from the record and the
    /// certificate; the directory's slots keep a copy to scan.
    accepts: accepts::Accepts,
    signed: SignedRecord,
    record: DirectoryRecord,
    verified: VerifiedOrg,
    hash: [u8; 32],
}

impl DirectoryEntry {
    /// Whether a record named `hash` with `sequence` would replace this
    /// one: another record, ranked above it. Anything else could change
    /// nothing, genuine or not.
    pub(crate) fn is_replaced_by(&self, sequence: u64, hash: &[u8; 32]) -> bool {
        self.hash != *hash && rank(sequence, hash) > rank(self.record.sequence, &self.hash)
    }

    pub fn org(&self) -> OrgId {
        self.verified.cert.org
    }
    pub fn cert(&self) -> &OrgCert {
        &self.verified.cert
    }
    pub fn verified(&self) -> &VerifiedOrg {
        &self.verified
    }
    pub fn record(&self) -> &DirectoryRecord {
        &self.record
    }
    pub fn signed(&self) -> &SignedRecord {
        &self.signed
    }
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
    pub fn level(&self) -> OrgLevel {
        self.accepts.level
    }
    pub fn region(&self) -> &RegionCode {
        &self.verified.cert.region
    }
    pub fn name(&self) -> &str {
        &self.verified.cert.name
    }

    /// Whether it takes requests for `specialty` at `urgency`: what
    /// `service` and its urgencies say, without reading the record.
    pub fn takes(&self, specialty: Specialty, urgency: Urgency) -> bool {
        self.accepts.takes(specialty, urgency)
    }

    pub fn service(&self, specialty: Specialty) -> Option<&Service> {
        self.record
            .services
            .iter()
            .find(|s| s.specialty == specialty)
    }

    /// The deadlines that apply to a request for this specialty.
    pub fn deadlines_for(&self, specialty: Specialty) -> Deadlines {
        match self.service(specialty).and_then(|s| s.deadlines) {
            Some(d) => self.record.deadlines.tightest(&d),
            None => self.record.deadlines,
        }
    }

    /// Keys a package from this organization may have been sealed with: the
    /// current one, and the enrolment key from its certificate.
    pub fn sealing_keys(&self) -> [SealingPublicKey; 2] {
        [self.record.sealing_key, self.verified.cert.sealing_key]
    }

    fn summary(&self) -> RecordSummary {
        RecordSummary {
            org: self.org(),
            sequence: self.record.sequence,
            hash: self.hash,
        }
    }

    /// What a bucket's hash covers of this record.
    fn hash_into(&self, h: &mut blake3::Hasher) {
        h.update(self.org().as_bytes());
        h.update(&self.record.sequence.to_le_bytes());
        h.update(&self.hash);
    }
}

/// What merging `entry` over the record `held` for its organization does.
fn merge_over(held: Option<&DirectoryEntry>, entry: &DirectoryEntry) -> Merge {
    match held {
        None => Merge::Added,
        Some(held) if held.hash == entry.hash => Merge::Unchanged,
        Some(held) if !held.is_replaced_by(entry.record.sequence, &entry.hash) => {
            Merge::Superseded {
                held_sequence: held.record.sequence,
            }
        }
        Some(held) => Merge::Replaced {
            previous_sequence: held.record.sequence,
        },
    }
}

/// A directory query; `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub specialty: Option<Specialty>,
    pub min_level: Option<OrgLevel>,
    pub region: Option<RegionCode>,
    pub urgency: Option<Urgency>,
}

impl Query {
    pub fn matches(&self, e: &DirectoryEntry) -> bool {
        if self.min_level.is_some_and(|l| e.level() < l) {
            return false;
        }
        if self.region.as_ref().is_some_and(|r| e.region() != r) {
            return false;
        }
        match (self.specialty, self.urgency) {
            (None, None) => true,
            (Some(sp), Some(u)) => e.takes(sp, u),
            (Some(sp), None) => e.service(sp).is_some(),
            (None, Some(u)) => e.record.services.iter().any(|s| s.urgencies.contains(&u)),
        }
    }
}

/// Orders competing records of one organization: higher sequence, then higher hash.
fn rank(sequence: u64, hash: &[u8; 32]) -> (u64, [u8; 32]) {
    (sequence, *hash)
}

/// Entries are shared, never changed in place (a newer record replaces its
/// entry), and so are their buckets, with each bucket's hash once
/// computed, until a copy changes one, so a clone
/// costs pointers: simulations verify the federation's directory once and
/// hand each of thousands of sites a copy.
#[derive(Debug, Clone)]
pub struct Directory {
    entries: entries::Entries,
    /// The hash of the bucket hashes: every anti-entropy round opens with
    /// it, on both sides.
    digest: OnceLock<[u8; 32]>,
    /// The signed bytes of every record held.
    bytes: usize,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            entries: entries::Entries::default(),
            digest: OnceLock::new(),
            bytes: 0,
        }
    }
}

impl Directory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// The signed bytes of every record held: about what a peer pulling
    /// the whole directory is sent.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, org: &OrgId) -> Option<&DirectoryEntry> {
        self.entries.get(org)
    }

    /// `org` as this node verified it when it took its record, if `chain`
    /// is the very chain that record carries (see
    /// `Trust::verify_chain_unless_known`).
    pub fn verified_chain(&self, org: &OrgId, chain: &CertChain) -> Option<&VerifiedOrg> {
        let entry = self.get(org)?;
        (entry.record().chain == *chain).then(|| entry.verified())
    }

    pub fn entries(&self) -> impl Iterator<Item = &DirectoryEntry> {
        self.entries.values()
    }

    /// The entries of `min_level` or above that take `specialty` at
    /// `urgency`, in id order, told by what each slot keeps beside its
    /// entry: a route scans the whole directory for every case, and most
    /// organizations are passed over without their entry being read.
    pub fn taking(
        &self,
        specialty: Specialty,
        urgency: Urgency,
        min_level: OrgLevel,
    ) -> impl Iterator<Item = &DirectoryEntry> {
        (self.entries.slots())
            .filter(move |s| s.accepts.level >= min_level && s.accepts.takes(specialty, urgency))
            .map(|s| s.entry.as_ref())
    }

    pub fn query<'a>(&'a self, q: &'a Query) -> impl Iterator<Item = &'a DirectoryEntry> + 'a {
        self.entries.values().filter(move |e| q.matches(e))
    }

    /// Validates and merges one record.
    pub fn insert(
        &mut self,
        signed: SignedRecord,
        trust: &Trust,
        now: Timestamp,
    ) -> Result<Merge, RecordError> {
        self.insert_many(vec![signed], trust, now)
            .pop()
            .expect("one result per record")
    }

    /// Validates and merges many records, verifying all their signatures in
    /// one batch. Results are in input order and equal to inserting one by one.
    pub fn insert_many(
        &mut self,
        records: Vec<SignedRecord>,
        trust: &Trust,
        now: Timestamp,
    ) -> Vec<Result<Merge, RecordError>> {
        let decoded: Vec<Result<DirectoryRecord, RecordError>> = records
            .iter()
            .map(|signed| {
                let record = signed.decode_unverified()?;
                record.check()?;
                Ok(record)
            })
            .collect();
        let checked = {
            let mut checks = Vec::with_capacity(records.len() * 2);
            let mut authorities = AuthorityCache::default();
            let checked: Vec<Result<VerifiedOrg, RecordError>> = records
                .iter()
                .zip(&decoded)
                .map(|(signed, record)| {
                    let record = record.as_ref().map_err(Clone::clone)?;
                    let own = checks.len();
                    let verified = trust.verify_chain_deferred(
                        &record.chain,
                        now,
                        &mut checks,
                        &mut authorities,
                    )?;
                    // The chain held for this organization had its
                    // signatures checked when it was stored; the same bytes
                    // again need only the validity and revocation checks
                    // just made. A changed record (each gossip hop, each
                    // anti-entropy round) then costs one signature check,
                    // not three. (An authority this chain put in the cache
                    // stays there without its check: its bytes are the
                    // held chain's, checked then.)
                    if (self.entries.get(&verified.cert.org))
                        .is_some_and(|held| held.record.chain == record.chain)
                    {
                        checks.truncate(own);
                    }
                    checks.push(signed.check_by(verified.cert.org.checked_key()));
                    Ok(verified)
                })
                .collect();
            if let Err(e) = verify_all(&checks) {
                if records.len() == 1 {
                    return vec![Err(e.into())];
                }
                // Someone's signature is bad: check each record alone to find whose.
                drop(checks);
                return records
                    .into_iter()
                    .map(|r| self.insert(r, trust, now))
                    .collect();
            }
            checked
        };
        let entries = records
            .into_iter()
            .zip(decoded.into_iter().zip(checked))
            .map(|(signed, (record, verified))| {
                let hash = signed.record_hash();
                let (record, verified) = (record?, verified?);
                Ok(DirectoryEntry {
                    accepts: accepts::Accepts::of(verified.cert.level, &record.services),
                    signed,
                    record,
                    verified,
                    hash,
                })
            });
        if self.is_empty() {
            self.build(entries.collect())
        } else {
            entries.map(|e| Ok(self.merge_verified(e?))).collect()
        }
    }

    fn merge_verified(&mut self, entry: DirectoryEntry) -> Merge {
        let org = entry.org();
        let outcome = merge_over(self.entries.get(&org), &entry);
        if let Merge::Added | Merge::Replaced { .. } = outcome {
            self.digest.take();
            self.bytes += entry.signed.signed_bytes().len();
            if let Some(replaced) = self.entries.insert(Arc::new(entry)) {
                self.bytes -= replaced.signed.signed_bytes().len();
            }
        }
        outcome
    }

    /// An empty directory built from many records at once (a cold start):
    /// the records sorted by organization and the map built from them in
    /// one pass, instead of searched and grown record by record. Outcomes
    /// are those of merging the records one by one, in input order.
    fn build(
        &mut self,
        entries: Vec<Result<DirectoryEntry, RecordError>>,
    ) -> Vec<Result<Merge, RecordError>> {
        debug_assert!(self.is_empty());
        let (mut slots, mut results): (Vec<_>, Vec<_>) = (entries.into_iter())
            .map(|e| match e {
                Ok(entry) => (Some(entry), Ok(Merge::Added)),
                Err(error) => (None, Err(error)),
            })
            .unzip();
        // By organization, then input order: an organization's records
        // meet in the order they would have been merged.
        let mut order: Vec<(OrgId, usize)> = (slots.iter().enumerate())
            .filter_map(|(i, e)| Some((e.as_ref()?.org(), i)))
            .collect();
        order.sort_unstable();
        let mut held: Vec<(OrgId, Arc<DirectoryEntry>)> = Vec::with_capacity(order.len());
        for (org, i) in order {
            let entry = slots[i].take().expect("each record is placed once");
            let last = held.last().filter(|(o, _)| *o == org);
            let outcome = merge_over(last.map(|(_, e)| e.as_ref()), &entry);
            match outcome {
                Merge::Added => held.push((org, Arc::new(entry))),
                Merge::Replaced { .. } => {
                    held.last_mut().expect("replaces the one held").1 = Arc::new(entry)
                }
                Merge::Unchanged | Merge::Superseded { .. } => {}
            }
            results[i] = Ok(outcome);
        }
        self.bytes = (held.iter())
            .map(|(_, e)| e.signed.signed_bytes().len())
            .sum();
        self.digest.take();
        // Sorted and distinct: each bucket is built in order, no search per key.
        self.entries = entries::Entries::from_sorted(held.into_iter().map(|(_, e)| e).collect());
        results
    }

    /// Drops records whose certificates expired or were revoked, returning why.
    pub fn retain_valid(&mut self, trust: &Trust, now: Timestamp) -> Vec<(OrgId, CertError)> {
        let mut dropped = Vec::new();
        let bytes = &mut self.bytes;
        self.entries
            .retain(|e| match trust.still_valid(&e.verified, now) {
                Ok(()) => true,
                Err(err) => {
                    dropped.push((e.org(), err));
                    *bytes -= e.signed.signed_bytes().len();
                    false
                }
            });
        if !dropped.is_empty() {
            self.digest.take();
        }
        dropped
    }

    /// Merges everything another directory holds (used by simulations and tests;
    /// nodes exchange records through anti-entropy instead).
    pub fn merge_from(
        &mut self,
        other: &Directory,
        trust: &Trust,
        now: Timestamp,
    ) -> Vec<Result<Merge, RecordError>> {
        self.insert_many(
            other.entries().map(|e| e.signed.clone()).collect(),
            trust,
            now,
        )
    }
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
