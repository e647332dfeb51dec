//! Answering a peer's directory requests: the frames an offer or a want
//! is answered with, the records a push brings, and what each cost this
//! node (see `quota`).

use super::{DirectorySync, Fate, frames};
use crate::cert::{RegionCode, Trust};
use crate::directory::DigestMatch;
use crate::rpc::{Refusal, Request, Response};
use crate::time::Timestamp;

impl<P: Copy + Ord + std::fmt::Debug> DirectorySync<P> {
    /// A directory request's answer, and what it cost in bytes: the
    /// answer's, or the pushed records' that changed nothing (failed their
    /// checks, or were already held or older). An honest peer pushes what
    /// reconciliation found newer there.
    pub(super) fn answer(
        &mut self,
        now: Timestamp,
        from: P,
        request: Request,
        trust: &Trust,
    ) -> (Response, u64) {
        match request {
            Request::SyncDigest(digest) => {
                let mine = self.config.scope.region();
                let (answer, within) = match (digest.region.as_ref(), mine) {
                    // Nothing shared: an offer would be answered with nothing.
                    (Some(theirs), Some(mine)) if theirs != mine => (DigestMatch::Same, None),
                    // A digest over the federation says nothing about our
                    // region's records: the offer that follows is answered
                    // with every bucket, as it always was.
                    (None, Some(_)) => (DigestMatch::Differs, None),
                    (within, _) if self.directory.digest_within(within) == digest.digest => {
                        (DigestMatch::Same, within)
                    }
                    (within, _) => (DigestMatch::Differs, within),
                };
                let response = Response::Digest(answer);
                let cost = frames::frame_len(&response) as u64 + self.pass(within);
                (response, cost)
            }
            Request::SyncOffer(offer) => {
                // The exchange covers what both sides keep: the narrower
                // scope. Two nodes keeping different regions share nothing.
                let mine = self.config.scope.region();
                let (differing, hashed) = match (offer.region.as_ref(), mine) {
                    (Some(theirs), Some(mine)) if theirs != mine => (Ok(Vec::new()), None),
                    // Hashes over the whole federation say nothing about
                    // our region's records: every bucket is answered.
                    (None, Some(_)) => (Ok((0..=u8::MAX).collect()), None),
                    (within, _) => (self.directory.differing_buckets(&offer, within), within),
                };
                match differing {
                    Ok(differing) => {
                        let summaries = frames::answer_offer(
                            &self.directory,
                            &differing,
                            offer.region.as_ref().or(mine),
                            mine,
                            self.config.budget.summaries,
                        );
                        let cost = frames::frame_len(&summaries) as u64 + self.pass(hashed);
                        (Response::Summaries(summaries), cost)
                    }
                    Err(e) => (Response::Refused(Refusal::Invalid(e.to_string())), 0),
                }
            }
            Request::PushRecords(batch) => {
                let sizes: Vec<usize> = (batch.records.iter())
                    .map(|r| r.signed_bytes().len())
                    .collect();
                let fates = self.accept(now, Some(from), batch.records, false, trust);
                let wasted = (fates.iter().zip(sizes))
                    .filter(|(fate, _)| **fate != Fate::Changed)
                    .map(|(_, size)| size as u64)
                    .sum();
                (Response::Done, wasted)
            }
            Request::WantRecords(want) => {
                let records =
                    frames::answer_want(&self.directory, &want.orgs, self.config.budget.records);
                let cost = frames::frame_len(&records) as u64;
                (Response::Records(records), cost)
            }
            _ => (
                Response::Refused(Refusal::Invalid(
                    "not a directory synchronisation request".into(),
                )),
                0,
            ),
        }
    }

    /// What hashing the records of one region costs: a pass over the
    /// whole directory, charged as a lookup's is. A federation's bucket
    /// hashes are kept, and cost nothing more.
    fn pass(&self, within: Option<&RegionCode>) -> u64 {
        within.map_or(0, |_| self.pass_cost())
    }
}
