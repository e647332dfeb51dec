//! Harness shared by Konsilium's cross-crate tests: ways to move protocol
//! values between simulated nodes exactly as real nodes move them.

pub mod fuzz;

use konsilium_protocol::cert::Trust;
use konsilium_protocol::directory::{Directory, SignedRecord};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire::{self, RecordBatch, RecordRequest, SyncSummaries, WireMessage};

/// Sends a value through the codec, as a node would.
pub fn over_the_wire<M: WireMessage>(m: &M) -> M {
    wire::decode(&wire::encode(m).expect("encodes within limits")).expect("decodes")
}

/// One anti-entropy exchange initiated by `a`, every message encoded and
/// decoded. Returns the number of records that moved.
pub fn sync(a: &mut Directory, b: &mut Directory, trust: &Trust, now: Timestamp) -> usize {
    let offer = over_the_wire(&a.sync_offer());
    let buckets = b.differing_buckets(&offer).expect("well-formed offer");
    let summaries = over_the_wire(&SyncSummaries {
        buckets: buckets.clone(),
        summaries: b.summaries(&buckets),
    })
    .summaries;
    let plan = a.reconcile(&buckets, &summaries);
    let pushed = over_the_wire(&RecordBatch { records: plan.send });
    let mut moved = pushed.records.len();
    b.insert_many(pushed.records, trust, now);
    let request = over_the_wire(&RecordRequest { orgs: plan.want });
    let answer: Vec<SignedRecord> = request
        .orgs
        .iter()
        .filter_map(|o| b.get(o))
        .map(|e| e.signed().clone())
        .collect();
    moved += answer.len();
    a.insert_many(
        over_the_wire(&RecordBatch { records: answer }).records,
        trust,
        now,
    );
    moved
}
