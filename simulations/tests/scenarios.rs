//! The scenarios at sizes that run in seconds unoptimised, asserting what
//! anti-entropy must guarantee rather than what one run happened to print.

use konsilium_protocol::directory::Directory;
use konsilium_protocol::rpc::{Request, Response};
use konsilium_protocol::wire::{self, SyncSummaries, WireMessage};
use konsilium_simulations::{
    Federation, PartitionConfig, cold_start, late_joiner, partition_heal, small_delta,
};
use std::sync::LazyLock;

const NODES: usize = 10;
const ORGS: usize = 300;
const DELTA_ORGS: usize = 500;
const SEED: u64 = 42;

/// One federation for every test: generating organizations means signing.
static FED: LazyLock<Federation> = LazyLock::new(|| Federation::generate("sim-tests", DELTA_ORGS));

#[test]
fn cold_start_converges_sending_each_record_once_per_node() {
    let r = cold_start(&FED, NODES, ORGS, SEED).unwrap();
    for run in [&r.anti_entropy, &r.full_push] {
        assert_eq!(run.end.distinct_digests, 1, "{run:?}");
        assert_eq!((run.end.min_records, run.end.max_records), (ORGS, ORGS));
        assert!(run.rounds > 0);
    }
    // Anti-entropy sends only what the peer lacks, so each node receives
    // each record it did not start with exactly once.
    assert_eq!(r.anti_entropy.traffic.records, (ORGS * (NODES - 1)) as u64);
    // That is the least any strategy can send, so full push, which resends
    // whole directories, must send more records. Whether those outweigh
    // anti-entropy's 8 KiB offer per exchange that finds a difference
    // depends on the sizes: here by
    // about 2x, at the binary's 50 nodes and 2,000 organizations about 5x.
    assert!(r.full_push.traffic.records > r.anti_entropy.traffic.records);
    assert!(r.byte_ratio() > 1.0, "{r:?}");
}

#[test]
fn late_joiner_converges_in_one_sync() {
    let r = late_joiner(&FED, NODES, ORGS, SEED).unwrap();
    let full = r.full_directory_bytes;
    for join in [&r.joiner_initiated, &r.member_initiated] {
        assert!(join.converged, "{r:?}");
        assert_eq!(join.traffic.records, ORGS as u64, "each record sent once");
    }
    // Started by the newcomer, it also receives a ~66-byte summary and sends
    // a 32-byte id per record, ~14% of a ~690-byte record, plus the 8 KiB
    // offer (~4% here).
    let joiner = r.joiner_initiated.traffic.bytes;
    assert!(joiner < full * 6 / 5, "{joiner} vs full {full}");
    // Started by a member, the newcomer's summaries are empty and the member
    // pushes the directory as one batch: beyond the full directory only the
    // digest and its answer (together the idle sync's bytes), the offer, an
    // empty summaries frame, the list of up to 256 non-empty buckets with its
    // length prefix, the push's `Request` tag (1 byte) and the `Done` answer
    // (5 bytes).
    let offer = frame(&Request::SyncOffer(Directory::new().sync_offer(None)));
    let summaries = frame(&Response::Summaries(SyncSummaries {
        buckets: vec![],
        summaries: vec![],
        region: None,
    }));
    let member = r.member_initiated.traffic.bytes;
    assert!(member > full);
    assert!(
        member <= full + r.idle_sync.bytes + offer + summaries + 257 + 1 + 5,
        "{member} vs full {full}"
    );
    // A converged pair exchanges only a digest and its answer.
    assert_eq!((r.idle_sync.messages, r.idle_sync.records), (2, 0));
    assert!(r.idle_sync.bytes < 100, "{:?}", r.idle_sync);
}

fn frame<M: WireMessage>(message: &M) -> u64 {
    wire::encode(message).expect("within its limit").len() as u64
}

#[test]
fn partition_heals_and_the_newest_record_wins_everywhere() {
    let config = PartitionConfig {
        nodes: NODES,
        orgs: ORGS,
        rounds_apart: 3,
        updates_per_round: 10,
    };
    let r = partition_heal(&FED, config, SEED).unwrap();
    assert_eq!(r.updates, 60);
    assert!(r.conflicting_orgs > 0, "the seed must exercise conflicts");
    assert!(r.before_heal.distinct_digests >= 2, "{r:?}");
    assert!(r.heal.rounds > 0);
    assert_eq!(r.heal.end.distinct_digests, 1);
    assert_eq!(
        (r.heal.end.min_records, r.heal.end.max_records),
        (ORGS, ORGS)
    );
    assert_eq!(r.stale_entries, 0, "{r:?}");
}

#[test]
fn small_delta_costs_a_fraction_of_the_directory() {
    let r = small_delta(&FED, DELTA_ORGS, 10, SEED).unwrap();
    assert!(r.converged);
    assert_eq!(r.stale_entries, 0);
    assert_eq!(r.sync.records, 10);
    // The 10 records are 2% of the directory's payload and the 8 KiB bucket
    // offer adds ~2.4% at 500 records; summaries of at most 10 buckets of
    // ~2 records each are noise. Over 10% would mean whole buckets or the
    // directory being resent.
    assert!(r.byte_ratio() < 0.10, "{r:?}");
}

#[test]
fn same_seed_same_report_other_seed_other_run() {
    assert_eq!(
        cold_start(&FED, 6, 120, 9).unwrap(),
        cold_start(&FED, 6, 120, 9).unwrap()
    );
    let config = PartitionConfig {
        nodes: 6,
        orgs: 120,
        rounds_apart: 2,
        updates_per_round: 5,
    };
    let a = partition_heal(&FED, config, 9).unwrap();
    assert_eq!(a, partition_heal(&FED, config, 9).unwrap());
    assert_ne!(a, partition_heal(&FED, config, 10).unwrap());
}

#[test]
fn impossible_scenarios_are_refused_with_a_reason() {
    let e = cold_start(&FED, 1, 10, SEED).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
    let e = small_delta(&FED, DELTA_ORGS + 1, 10, SEED).unwrap_err();
    assert!(e.to_string().contains("the federation has 500"), "{e}");
    let e = small_delta(&FED, 5, 6, SEED).unwrap_err();
    assert!(e.to_string().contains("6 differing"), "{e}");
}

#[test]
fn the_report_binary_runs_every_scenario() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anti_entropy"))
        .args(["--quick", "--seed", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "1. Cold start",
        "full-state push sends",
        "2. Late joiner",
        "in 1 sync",
        "3. Partition heal",
        "1 after; 0 entries without their newest record",
        "4. Small delta",
        "converged: yes, stale entries: 0",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_anti_entropy"))
        .arg("--fast")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}
