//! Cutting anti-entropy lists into frames that fit the wire limits.
//!
//! Two directories can differ by tens of thousands of records, and one
//! record may be up to a mebibyte: a list sent as one frame would be refused
//! by the peer's codec, and the exchange would never finish. Every list the
//! sync machine sends is cut here, against a budget no larger than the
//! limit of the message kind it travels as.

use super::{Directory, RecordSummary, SignedRecord};
use crate::cert::RegionCode;
use crate::identity::OrgId;
use crate::wire::{self, RecordBatch, RecordRequest, SyncSummaries, WireMessage};

/// What a list's frame spends besides its items: the frame header, the
/// `Request`/`Response` variant tag, and two length prefixes (a list of
/// buckets and a list of items, at most 5 bytes each).
pub const FRAME_OVERHEAD: usize = wire::HEADER_LEN + 1 + 5 + 5;

/// The bytes a list's frame takes at most on the wire.
pub fn frame_len<T: serde::Serialize>(list: &T) -> usize {
    FRAME_OVERHEAD.saturating_add(wire::body_len(list))
}

/// Largest frame, in bytes, of each list the machine sends. Lowering them
/// (for a transport with smaller frames, or a test) splits sooner; they are
/// clamped to the wire limits, so nothing sent is ever refused for size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBudget {
    /// `PushRecords` requests and `Records` answers.
    pub records: usize,
    /// `WantRecords` requests.
    pub request: usize,
    /// `Summaries` answers.
    pub summaries: usize,
}

impl Default for FrameBudget {
    fn default() -> Self {
        Self {
            records: RecordBatch::MAX_LEN,
            request: RecordRequest::MAX_LEN,
            summaries: SyncSummaries::MAX_LEN,
        }
    }
}

impl FrameBudget {
    /// The same budget, never above the wire limits.
    pub fn clamped(self) -> Self {
        let max = Self::default();
        Self {
            records: self.records.min(max.records),
            request: self.request.min(max.request),
            summaries: self.summaries.min(max.summaries),
        }
    }
}

/// Cuts `items` into runs whose frames fit `budget`. An item too large to
/// share a frame goes alone (a record is at most a mebibyte by its own
/// limit, so alone it fits any budget the clamp allows).
fn cut<T>(items: Vec<T>, budget: usize, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let room = budget.saturating_sub(FRAME_OVERHEAD);
    let mut out = Vec::new();
    let mut run = Vec::new();
    let mut used = 0usize;
    for item in items {
        let l = len(&item);
        if !run.is_empty() && used.saturating_add(l) > room {
            out.push(std::mem::take(&mut run));
            used = 0;
        }
        used = used.saturating_add(l);
        run.push(item);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// Records as `RecordBatch`es that each fit `budget` bytes.
pub fn record_batches(records: Vec<SignedRecord>, budget: usize) -> Vec<RecordBatch> {
    cut(records, budget, wire::body_len)
        .into_iter()
        .map(|records| RecordBatch { records })
        .collect()
}

/// Organization ids as `RecordRequest`s that each fit `budget` bytes.
pub fn record_requests(orgs: Vec<OrgId>, budget: usize) -> Vec<RecordRequest> {
    cut(orgs, budget, wire::body_len)
        .into_iter()
        .map(|orgs| RecordRequest { orgs })
        .collect()
}

/// The answer to a `WantRecords`: the held records of `orgs`, in the order
/// asked, as many as fit `budget`. The requester asks again for what
/// follows the last record it got, so an answer never needs to exceed a
/// frame, however much was asked.
pub fn answer_want(dir: &Directory, orgs: &[OrgId], budget: usize) -> RecordBatch {
    let room = budget.saturating_sub(FRAME_OVERHEAD);
    let mut used = 0usize;
    let mut records = Vec::new();
    for entry in orgs.iter().filter_map(|o| dir.get(o)) {
        let l = wire::body_len(entry.signed());
        if !records.is_empty() && used.saturating_add(l) > room {
            break;
        }
        used = used.saturating_add(l);
        records.push(entry.signed().clone());
    }
    RecordBatch { records }
}

/// The answer to a `SyncOffer`: summaries of the differing buckets' records
/// `within` the exchange's region, whole buckets only, as many as fit
/// `budget`. `buckets` names exactly the buckets covered, so the requester
/// reconciles those and leaves the rest to a later round instead of
/// mistaking them for empty. `scope` is the answering node's region, if it
/// keeps only one.
pub fn answer_offer(
    dir: &Directory,
    differing: &[u8],
    within: Option<&RegionCode>,
    scope: Option<&RegionCode>,
    budget: usize,
) -> SyncSummaries {
    let room = budget.saturating_sub(FRAME_OVERHEAD);
    let mut used = 0usize;
    let mut out = SyncSummaries {
        buckets: Vec::new(),
        summaries: Vec::new(),
        region: scope.cloned(),
    };
    for &bucket in differing {
        let these: Vec<RecordSummary> = dir.summaries(&[bucket], within);
        let l = 1 + these.iter().map(wire::body_len).sum::<usize>();
        if !out.buckets.is_empty() && used.saturating_add(l) > room {
            break;
        }
        used = used.saturating_add(l);
        out.buckets.push(bucket);
        out.summaries.extend(these);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::OrgLevel;
    use crate::rpc::{Request, Response};
    use crate::specialty::Specialty;
    use crate::testkit::{NOW, TestFederation};

    #[test]
    fn every_cut_fits_its_budget_and_loses_nothing() {
        let mut fed = TestFederation::new("frames");
        let records: Vec<_> = (0..60)
            .map(|i| {
                fed.org(i, OrgLevel::District, "RU-VLG", &[Specialty::Urology])
                    .signed_record(1)
            })
            .collect();
        let one = wire::body_len(&records[0]);
        let budget = FRAME_OVERHEAD + 7 * one + one / 2;
        let batches = record_batches(records.clone(), budget);
        assert!(batches.len() >= 60 / 7, "{} batches", batches.len());
        for b in &batches {
            let frame = wire::encode(&Request::PushRecords(b.clone())).unwrap();
            assert!(frame.len() <= budget, "{} > {budget}", frame.len());
            let inner = wire::encode(b).unwrap();
            assert!(inner.len() <= budget);
        }
        let back: Vec<_> = batches.into_iter().flat_map(|b| b.records).collect();
        assert_eq!(back, records);

        let ids: Vec<OrgId> = (0..40_000u64)
            .map(|i| {
                crate::identity::IdentityKey::from_seed(crate::testkit::seed("f", i % 7)).org_id()
            })
            .collect();
        let requests = record_requests(ids.clone(), RecordRequest::MAX_LEN);
        assert_eq!(requests.len(), 2, "40,000 ids are ~1.25 MiB");
        for r in &requests {
            assert!(
                wire::encode(&Request::WantRecords(r.clone()))
                    .unwrap()
                    .len()
                    <= RecordRequest::MAX_LEN
            );
            assert!(wire::encode(r).is_ok());
        }
        let back: Vec<OrgId> = requests
            .iter()
            .flat_map(|r| r.orgs.iter().copied())
            .collect();
        assert_eq!(back, ids);

        let mut dir = Directory::new();
        dir.insert_many(records.clone(), &fed.trust, NOW);
        let asked: Vec<OrgId> = records
            .iter()
            .map(|r| {
                r.decode_unverified()
                    .unwrap()
                    .chain
                    .org
                    .decode_unverified()
                    .unwrap()
                    .org
            })
            .collect();
        let answer = answer_want(&dir, &asked, budget);
        assert_eq!(answer.records.len(), 7);
        assert!(wire::encode(&Response::Records(answer)).unwrap().len() <= budget);

        let all: Vec<u8> = (0..=255).collect();
        let full = answer_offer(&dir, &all, None, None, SyncSummaries::MAX_LEN);
        assert_eq!(full.summaries.len(), 60);
        let small = answer_offer(&dir, &all, None, None, 600);
        assert!(
            wire::encode(&Response::Summaries(small.clone()))
                .unwrap()
                .len()
                <= 600
        );
        assert!(!small.buckets.is_empty() && small.buckets.len() < 256);
        assert_eq!(small.summaries, dir.summaries(&small.buckets, None));
    }
}
