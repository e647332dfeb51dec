//! Records a peer sent, by gossip, a push or an answer: read without
//! checking first, so what could change nothing (the record held, or one
//! it outranks) and what the scope leaves out cost no signature check;
//! the rest verified and merged, and each outcome reported to the shell.

use super::{DirectorySync, Output, Rejection, Scope, Stored};
use crate::cert::Trust;
use crate::directory::{Merge, RecordError, SignedRecord};
use crate::identity::OrgId;
use crate::time::Timestamp;

/// Organizations remembered as outside the directory's scope, at most:
/// a national federation has some 5,200, a stress federation 10,000.
const MAX_OUT_OF_SCOPE: usize = 65_536;

/// How one received record fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Changed,
    Unchanged,
    OutOfScope,
    Rejected,
}

impl<P: Copy + Ord + std::fmt::Debug> DirectorySync<P> {
    /// Validates and merges records a peer sent, applying the scope.
    pub(super) fn accept(
        &mut self,
        now: Timestamp,
        from: Option<P>,
        records: Vec<SignedRecord>,
        wanted: bool,
        trust: &Trust,
    ) -> Vec<Fate> {
        let mut fates = vec![Fate::Rejected; records.len()];
        let mut keep = Vec::with_capacity(records.len());
        let mut at = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let decoded = record
                .decode_unverified()
                .map_err(RecordError::from)
                .and_then(|r| {
                    let cert = r.chain.org.decode_unverified()?;
                    Ok((r.sequence, cert))
                });
            let (sequence, cert) = match decoded {
                Ok(decoded) => decoded,
                Err(error) => {
                    self.outputs.push_back(Output::Rejected(Rejection {
                        from,
                        org: None,
                        name: None,
                        error,
                    }));
                    continue;
                }
            };
            // The very record held (verified when stored; the trust
            // changing since is handled by `handle_trust_changed`), or one
            // the held record outranks, which could change nothing even if
            // genuine: neither is verified. That spares a full check for
            // every duplicate gossip delivers, every record a naive peer
            // pushes, and every stale record a peer replays, however many.
            if let Some(held) = self.directory.get(&cert.org)
                && !held.is_replaced_by(sequence, &record.record_hash())
            {
                fates[i] = Fate::Unchanged;
                continue;
            }
            let in_scope = match &self.config.scope {
                Scope::Federation => true,
                Scope::Region(region) => {
                    cert.region == *region || self.directory.get(&cert.org).is_some()
                }
            };
            if !wanted && !in_scope {
                // Named by a certificate not yet verified: bounded, so
                // made-up names cannot grow it without end. Past the
                // bound, rounds only ask for such records again.
                if self.out_of_scope.len() < MAX_OUT_OF_SCOPE
                    || self.out_of_scope.contains_key(&cert.org)
                {
                    self.out_of_scope.insert(cert.org, record.record_hash());
                }
                fates[i] = Fate::OutOfScope;
                continue;
            }
            keep.push(record);
            at.push(i);
        }
        let results = self.directory.insert_many(keep.clone(), trust, now);
        for ((record, result), i) in keep.into_iter().zip(&results).zip(at) {
            fates[i] = match result {
                Ok(Merge::Added | Merge::Replaced { .. }) => Fate::Changed,
                Ok(_) => Fate::Unchanged,
                Err(_) => Fate::Rejected,
            };
            self.report(from, record, result);
        }
        fates
    }

    /// Tells the shell what a record did to the directory: stored (and no
    /// longer out of scope), or refused and why.
    pub(super) fn report(
        &mut self,
        from: Option<P>,
        record: SignedRecord,
        result: &Result<Merge, RecordError>,
    ) {
        match result {
            Ok(Merge::Added | Merge::Replaced { .. }) => {
                let Some(entry) = record_org(&record).and_then(|o| self.directory.get(&o)) else {
                    return;
                };
                self.out_of_scope.remove(&entry.org());
                self.outputs.push_back(Output::Stored(Stored {
                    org: entry.org(),
                    sequence: entry.record().sequence,
                    addresses: entry.record().addresses.clone(),
                    record,
                }));
            }
            Ok(_) => {}
            Err(error) => {
                let cert = record
                    .decode_unverified()
                    .ok()
                    .and_then(|r| r.chain.org.decode_unverified().ok());
                self.outputs.push_back(Output::Rejected(Rejection {
                    from,
                    org: cert.as_ref().map(|c| c.org),
                    name: cert.map(|c| c.name),
                    error: error.clone(),
                }));
            }
        }
    }
}

/// The organization a record claims to be, read without checking it.
pub(super) fn record_org(record: &SignedRecord) -> Option<OrgId> {
    let r = record.decode_unverified().ok()?;
    Some(r.chain.org.decode_unverified().ok()?.org)
}
