//! Directory gossip: one record, a batch, or an anti-entropy step.

use super::*;

/// Directory gossip: one record, a batch, or an anti-entropy step.
pub fn directory_record(data: &[u8]) -> bool {
    let w = &*WORLD;
    match wire::peek_kind(data) {
        Ok(MessageKind::RecordBatch) => {
            let Some(batch) = decode::<RecordBatch>(data) else {
                return false;
            };
            let mut dir = Directory::new();
            let n = batch.records.len();
            let results = dir.insert_many(batch.records, w.trust(), NOW);
            assert_eq!(results.len(), n, "one result per record");
            let _ = dir.digest();
            results.iter().all(Result::is_ok)
        }
        Ok(MessageKind::SyncOffer) => {
            let Some(offer) = decode::<SyncOffer>(data) else {
                return false;
            };
            let within = offer.region.as_ref();
            match w.directory.differing_buckets(&offer, within) {
                Ok(buckets) => {
                    let summaries = w.directory.summaries(&buckets, within);
                    let plan = w.directory.reconcile(&buckets, &summaries, within);
                    assert!(plan.send.is_empty() && plan.want.is_empty());
                    true
                }
                Err(_) => false,
            }
        }
        Ok(MessageKind::SyncSummaries) => {
            let Some(s) = decode::<SyncSummaries>(data) else {
                return false;
            };
            let _ = (w.directory).reconcile(&s.buckets, &s.summaries, s.region.as_ref());
            true
        }
        _ => {
            let Some(record) = decode::<SignedRecord>(data) else {
                return false;
            };
            let mut dir = Directory::new();
            match dir.insert(record.clone(), w.trust(), NOW) {
                Ok(merge) => {
                    assert_eq!(merge, Merge::Added);
                    assert_eq!(dir.len(), 1);
                    assert_eq!(
                        dir.insert(record, w.trust(), NOW),
                        Ok(Merge::Unchanged),
                        "the same record twice changes nothing"
                    );
                    let _ = dir.sync_offer(None);
                    true
                }
                Err(e) => {
                    let _ = e.to_string();
                    assert!(dir.is_empty(), "a refused record is not stored");
                    false
                }
            }
        }
    }
}
