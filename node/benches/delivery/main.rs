//! Delivery latency of real Konsilium nodes, each row as a ratio against raw
//! libp2p doing the same number of network legs, measured in the same run
//! and the same process.
//!
//! Run with `cargo bench -p konsilium-node --bench delivery` (200 samples a
//! row) or `... -- --quick` (50 samples); `--sustained`, `--attachment`,
//! `--direct` or `--relayed` runs that row alone, to profile it or to
//! compare builds in quick turns. Ratios rather than milliseconds, because
//! the absolute numbers depend on the machine and its load; the baseline
//! sees the same machine at the same moment. To make that hold on a noisy
//! shared box, baseline and node samples alternate one by one.
//!
//! Each baseline/node pair in row 2 starts after a random idle gap of up to
//! 200 ms. The node once forwarded at a relay only on a 200 ms tick, and
//! back-to-back sends locked onto its phase; the event loop now wakes at the
//! outbox machine's own deadlines, so a relay forwards as soon as it holds
//! a package, and the gap only keeps the samples independent of each
//! other (idle connections, fresh scheduling). Row 1 runs back to back (a
//! gap there costs both sides wake-up latency and flatters the ratio).
//!
//! Rows:
//!
//! 1. *Sealed 1 KiB, direct.* Two nodes connected to each other. Timed from
//!    `NodeHandle::send` until the sender's `PackageDelivered`, i.e. until the
//!    recipient's signed receipt is back and recorded. That is 2 network legs
//!    (Deliver request, Receipt response). Baseline: one request-response
//!    round trip with a 1 KiB request and a receipt-sized response between
//!    two plain swarms, also 2 legs.
//! 2. *Sealed 1 KiB, relayed district -> regional -> federal.* The district
//!    has `relay_via = [regional]` and the federal center is in another
//!    region, so federation policy sends the package through the regional
//!    relay. Timed until `PackageDelivered` at the district. On the critical
//!    path that is 4 network legs: d->r (Deliver), r->f (Deliver), f->r
//!    (Receipt response), r->d (the relay forwards the receipt). The d<-r
//!    custody acknowledgement runs alongside and is off the critical path.
//!    Baseline: three plain swarms A->B->C where B, on A's request, requests
//!    C and answers A only once C has answered: the same 3 nodes and the
//!    same 4 legs. A chain of four swarms would charge the baseline two legs
//!    more than the node does and flatter the ratio.
//! 3. *256 MiB attachment, direct.* Two connected nodes, one package with a
//!    1 KiB body and a 256 MiB `Attachment::File`. `send` first seals the
//!    attachment into a blob; until `PackageDelivered`,
//!    between the recipient pulls the blob in `FetchBlob` pieces, checks its
//!    hash and takes the package. Baseline: the same 256 MiB over one raw
//!    libp2p stream between two plain swarms, i.e. a single request-response
//!    exchange whose codec streams the bytes through one Yamux substream
//!    without buffering them. Ours is timed from `send` returning (the
//!    attachment is sealed locally before the package exists) to the
//!    receipt, which includes making the 256 MiB durable on the recipient's
//!    disk before it signs. Target: at least 40% of the raw stream's rate,
//!    i.e. at most 2.5x its time. Few samples, since each writes half a GiB.
//!
//! 4. *10,000 queued 1 KiB packages* to one recipient, 64 sends in flight,
//!    until the sender's outbox holds no package without its receipt.
//!    Baseline: the same number of 1 KiB request-response exchanges between
//!    two plain swarms, 64 in flight. Target: at least half the raw
//!    throughput.
//! 5. *Resident memory during row 3*: the peak of this process (both
//!    nodes, the raw swarms, the bench) while the nodes move 256 MiB, so
//!    one node's share is at most that. Target: 300 MiB.
//!
//! With `KONSILIUM_BENCH_RESULTS` set, the rows go to the suite's table.
//!
//! After the table the bench prints where the node's time goes (cumulative
//! medians of the events the nodes emit, and the cost of one sled flush on
//! the disk the nodes' databases are on, which `TMPDIR` decides).

/// The node's own allocator, for the nodes and their baselines alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod limit;
mod memory;
#[path = "../../tests/process/mod.rs"]
mod process;
mod sustained;
use baseline::*;
use konsilium_protocol::outbox::MAX_PARCEL;
use konsilium_protocol::testkit::package_crypto::PackageCrypto;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
use limit::{Limit, attachment_probes, print_limits, sled_flush_cost};
use memory::PeakSampler;
use sustained::{print_sustained, sustained_row};

use futures::stream::{BoxStream, StreamExt};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{self, Attachment, NodeEvent, NodeHandle, SendRequest, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::seal::RoutingHeader;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// Size of the package body and of the baseline request.
const BODY_BYTES: usize = 1024;
/// Baseline response size: about a signed `Receipt` on the wire (ids, hash,
/// time, signature), so the baseline carries what the node carries back.
const RESPONSE_BYTES: usize = 192;
/// Size of the attachment in row 3, and of the raw stream it is compared to.
const ATTACHMENT_BYTES: u64 = 256 << 20;
/// Attachment used to warm row 3 up: exercises the fetch path without
/// spending a full-size transfer on it.
const WARMUP_ATTACHMENT_BYTES: u64 = 1 << 20;
/// Row 5's budget for the process's resident memory.
const RESIDENT_BUDGET: u64 = 300 << 20;
/// Row 4's target: this share of raw request-response throughput.
const SUSTAINED_SHARE: f64 = 0.5;
/// Only guards against hangs; a sample that needs this long is a bug.
const PATIENCE: Duration = Duration::from_secs(60);
/// The same guard for moving 256 MiB on a busy two-core machine.
const BULK_PATIENCE: Duration = Duration::from_secs(600);
/// Rows 1 and 2 aim at no more than twice raw libp2p.
const TARGET_RATIO: f64 = 2.0;
/// Idle gaps between row 2's samples are drawn from 0..this, see the header.
const IDLE_GAP: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// Statistics and the table
// ---------------------------------------------------------------------------

/// Nearest-rank percentile: always a latency that was actually observed.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "percentile of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    name: &'static str,
    ours: Vec<Duration>,
    baseline: Vec<Duration>,
    /// `None` where nobody has set a goal yet: the ratio is reported, not judged.
    target: Option<f64>,
}

impl Row {
    fn ratio(&self) -> f64 {
        ms(percentile(&self.ours, 0.5)) / ms(percentile(&self.baseline, 0.5))
    }
}

fn print_table(rows: &[&Row]) {
    println!(
        "{:<34} {:>4} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7}  verdict",
        "row", "n", "ours p50", "ours p90", "base p50", "base p90", "ratio", "target"
    );
    for row in rows {
        let ratio = row.ratio();
        let (target, verdict) = match row.target {
            Some(t) if ratio <= t => (format!("{t:.1}x"), "ok"),
            Some(t) => (format!("{t:.1}x"), "MISSED"),
            None => ("none".to_owned(), "(not judged)"),
        };
        println!(
            "{:<34} {:>4} {:>8.3} ms {:>8.3} ms {:>8.3} ms {:>8.3} ms {:>6.1}x {:>7}  {}",
            row.name,
            row.ours.len(),
            ms(percentile(&row.ours, 0.5)),
            ms(percentile(&row.ours, 0.9)),
            ms(percentile(&row.baseline, 0.5)),
            ms(percentile(&row.baseline, 0.9)),
            ratio,
            target,
            verdict,
        );
    }
}

// ---------------------------------------------------------------------------
// Baselines: plain libp2p swarms
// ---------------------------------------------------------------------------

const RAW_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium-bench/raw/1");
const BULK_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium-bench/bulk/1");

/// Length-prefixed bytes, framed like the node's own codec (4-byte
/// big-endian length, then the frame, then close) so the baseline pays the
/// same framing and stream-close costs and differs only in what the node
/// adds on top.
async fn start(member: &Member, bootstrap: Vec<Multiaddr>, relay_via: Vec<OrgId>) -> NodeHandle {
    node::start(member.setup(bootstrap, relay_via))
        .await
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", member.spec.name))
}

async fn addr(node: &NodeHandle) -> Multiaddr {
    wait::listen_addr(node, PATIENCE)
        .await
        .expect("node listens")
}

/// Waits until every node holds `size` records with one digest and each
/// `(node, org)` pair is a certified connection, so no sample pays for
/// connecting, admission or a missing directory entry.
async fn warm(nodes: &[&NodeHandle], size: usize, links: &[(&NodeHandle, OrgId)]) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut digests = BTreeSet::new();
            let mut sizes = BTreeSet::new();
            for n in nodes {
                let s = n.status().await.expect("node running");
                digests.insert(s.directory_digest);
                sizes.insert(s.directory_size);
            }
            let mut linked = true;
            for (n, org) in links {
                linked &= n.status().await.expect("node running").peers.contains(org);
            }
            if linked && digests.len() == 1 && sizes == BTreeSet::from([size]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("nodes did not converge");
}

fn request(
    to: OrgId,
    specialty: Specialty,
    min_level: OrgLevel,
    attachments: Vec<Attachment>,
) -> SendRequest {
    SendRequest {
        target: Target::Org(to),
        routing: RoutingHeader {
            specialty,
            min_level,
            urgency: Urgency::Urgent,
            region: None,
        },
        body: vec![0x5a; BODY_BYTES],
        attachments,
        lifetime: Duration::from_secs(86_400),
    }
}

/// A node's events, tagged with whether they come from the sender.
fn events(node: &NodeHandle, from_sender: bool) -> BoxStream<'static, (bool, NodeEvent)> {
    futures::stream::unfold(node.subscribe(), move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some(((from_sender, event), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Sleeps a random part of [`IDLE_GAP`] before the next sample.
async fn random_gap() {
    let ms = u64::from_le_bytes(node::random_bytes()) % IDLE_GAP.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// When each step of one package happened, relative to the `send` call.
/// Steps other than `returned` and `delivered` are stamped when the bench
/// task sees the event, so they are slightly late, never early.
#[derive(Debug, Clone, Copy, Default)]
struct Trace {
    /// `send` returned: attachments sealed, package sealed, queued, flushed.
    returned: Duration,
    /// The relay stored the package (`Relaying`), relayed row only.
    relay_stored: Option<Duration>,
    /// The relay's custody acknowledgement reached the sender.
    custody: Option<Duration>,
    /// The next hop started pulling an attachment. Matched by time, not
    /// blob hash (`Sent` does not carry it): samples run one at a time, so
    /// any fetch during a sample is that sample's.
    fetch_started: Option<Duration>,
    /// The next hop has the whole attachment, hash checked.
    fetch_completed: Option<Duration>,
    /// The recipient opened, stored and flushed it (`PackageReceived`).
    recipient_stored: Option<Duration>,
    /// The receipt is recorded at the sender (`PackageDelivered`).
    delivered: Duration,
    retries: u32,
}

/// Sends one package and follows it until the sender has the receipt.
/// `others` are the relay and recipient, watched for the breakdown only.
async fn ours_sample(
    sender: &NodeHandle,
    others: &[&NodeHandle],
    req: SendRequest,
    patience: Duration,
) -> Trace {
    // Subscribed before the clock starts, so no event can be missed.
    let mut streams = vec![events(sender, true)];
    streams.extend(others.iter().map(|n| events(n, false)));
    let mut merged = futures::stream::select_all(streams);
    let t0 = Instant::now();
    let sent = sender.send(req).await.expect("send");
    let mut trace = Trace {
        returned: t0.elapsed(),
        ..Trace::default()
    };
    let deadline = t0 + patience;
    loop {
        let (from_sender, event) = tokio::time::timeout_at(deadline, merged.next())
            .await
            .expect("timed out waiting for the receipt")
            .expect("nodes stopped");
        let at = t0.elapsed();
        match event {
            NodeEvent::Relaying { id, .. } if id == sent.id => {
                trace.relay_stored.get_or_insert(at);
            }
            NodeEvent::PackageInCustody { id, .. } if from_sender && id == sent.id => {
                trace.custody.get_or_insert(at);
            }
            NodeEvent::FetchStarted { .. } if !from_sender => {
                trace.fetch_started.get_or_insert(at);
            }
            NodeEvent::FetchCompleted { .. } if !from_sender => {
                trace.fetch_completed.get_or_insert(at);
            }
            NodeEvent::PackageReceived { id, .. } if id == sent.id => {
                trace.recipient_stored.get_or_insert(at);
            }
            NodeEvent::DeliveryRetry { id, .. } if id == sent.id => trace.retries += 1,
            NodeEvent::PackageDelivered { id, .. } if from_sender && id == sent.id => {
                trace.delivered = at;
                return trace;
            }
            _ => {}
        }
    }
}

type Step = (&'static str, fn(&Trace) -> Option<Duration>);

/// Cumulative medians of each step, so the gaps show where time goes.
fn print_breakdown(name: &str, traces: &[Trace]) {
    let steps: [Step; 7] = [
        ("send() returned (sealed+queued+flushed)", |t| {
            Some(t.returned)
        }),
        ("relay stored+flushed (Relaying)", |t| t.relay_stored),
        ("custody ack at sender", |t| t.custody),
        ("next hop started fetching attachment", |t| t.fetch_started),
        ("attachment fetched+hashed+synced", |t| t.fetch_completed),
        ("recipient stored+flushed (Received)", |t| {
            t.recipient_stored
        }),
        ("receipt recorded at sender (Delivered)", |t| {
            Some(t.delivered)
        }),
    ];
    println!("  {name}: median time since send() was called");
    for (label, pick) in steps {
        let v: Vec<Duration> = traces.iter().filter_map(pick).collect();
        if !v.is_empty() {
            println!("    {label:<42} {:>10.3} ms", ms(percentile(&v, 0.5)));
        }
    }
    let retries: u32 = traces.iter().map(|t| t.retries).sum();
    if retries > 0 {
        println!("    delivery retries during the run: {retries}");
    }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

struct Counts {
    warmup: usize,
    samples: usize,
    attachment_samples: usize,
    /// Packages queued at once in row 4.
    queued: usize,
}

/// Two certified, connected nodes in one region: the setup of rows 1 and 3.
async fn pair(dir: &Path) -> (NodeHandle, NodeHandle, OrgId) {
    let mut fed = LocalFederation::new(dir, node::now());
    let sender = fed.enrol(OrgSpec::new(
        "Bench district hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Bench regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let r = start(&recipient, vec![], vec![]).await;
    let s = start(&sender, vec![addr(&r).await], vec![]).await;
    warm(&[&s, &r], 2, &[(&s, recipient.org_id())]).await;
    (s, r, recipient.org_id())
}

/// Row 1: two directly connected nodes vs one raw round trip.
async fn direct_row(dir: &Path, counts: &Counts) -> (Row, Vec<Trace>) {
    let (s, r, to) = pair(dir).await;
    let server = raw_node(None).await;
    let client = raw_node(Some(&server)).await;

    let req = || request(to, Specialty::Cardiology, OrgLevel::Regional, Vec::new());
    for _ in 0..counts.warmup {
        raw_sample(&client).await;
        ours_sample(&s, &[&r], req(), PATIENCE).await;
    }
    let mut baseline = Vec::with_capacity(counts.samples);
    let mut traces = Vec::with_capacity(counts.samples);
    // Back to back: nothing on this path waits for the node's timer, and
    // idle gaps would only add wake-up latency to both sides, inflating the
    // baseline more than ours and flattering the ratio.
    for _ in 0..counts.samples {
        baseline.push(raw_sample(&client).await);
        traces.push(ours_sample(&s, &[&r], req(), PATIENCE).await);
    }
    s.shutdown().await;
    r.shutdown().await;
    let row = Row {
        name: "sealed 1 KiB direct",
        ours: traces.iter().map(|t| t.delivered).collect(),
        baseline,
        target: Some(TARGET_RATIO),
    };
    (row, traces)
}

/// Row 2: district -> regional relay -> federal vs a raw A->B->C chain.
async fn relayed_row(dir: &Path, counts: &Counts) -> (Row, Vec<Trace>) {
    let mut fed = LocalFederation::new(dir, node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Bench federal neonatology center",
        OrgLevel::Federal,
        "RU-SPE",
        &[Specialty::Neonatology],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Bench regional perinatal center",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let district = fed.enrol(OrgSpec::new(
        "Bench district maternity ward",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let r = start(&regional, vec![], vec![]).await;
    let ra = addr(&r).await;
    let f = start(&federal, vec![ra.clone()], vec![]).await;
    let d = start(&district, vec![ra], vec![regional.org_id()]).await;
    warm(
        &[&f, &r, &d],
        3,
        &[(&d, regional.org_id()), (&r, federal.org_id())],
    )
    .await;

    let c = raw_node(None).await;
    let b = raw_node(Some(&c)).await;
    let a = raw_node(Some(&b)).await;

    let req = || {
        request(
            federal.org_id(),
            Specialty::Neonatology,
            OrgLevel::Federal,
            Vec::new(),
        )
    };
    for _ in 0..counts.warmup {
        raw_sample(&a).await;
        let t = ours_sample(&d, &[&r, &f], req(), PATIENCE).await;
        assert!(
            t.relay_stored.is_some(),
            "the package must go through the regional relay"
        );
    }
    let mut baseline = Vec::with_capacity(counts.samples);
    let mut traces = Vec::with_capacity(counts.samples);
    for _ in 0..counts.samples {
        random_gap().await;
        baseline.push(raw_sample(&a).await);
        traces.push(ours_sample(&d, &[&r, &f], req(), PATIENCE).await);
    }
    for n in [d, r, f] {
        n.shutdown().await;
    }
    let row = Row {
        name: "sealed 1 KiB relayed d->r->f",
        ours: traces.iter().map(|t| t.delivered).collect(),
        baseline,
        target: Some(TARGET_RATIO),
    };
    (row, traces)
}

/// Writes `bytes` of a non-repeating-looking pattern to `path`, so the
/// attachment is a real file, as a DICOM series on disk would be.
fn attachment_file(path: &Path, bytes: u64) -> PathBuf {
    let mut out = io::BufWriter::new(std::fs::File::create(path).expect("create attachment"));
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < bytes {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = (written as usize + i).wrapping_mul(2_654_435_761) as u8;
        }
        let n = (bytes - written).min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).expect("write attachment");
        written += n as u64;
    }
    out.flush().expect("flush attachment");
    path.to_owned()
}

/// Row 3: a 256 MiB attachment between two connected nodes vs the same
/// bytes over one raw libp2p stream. Also returns the process's resident
/// memory before the row and its peak while the nodes moved the bytes.
async fn attachment_row(dir: &Path, counts: &Counts) -> (Row, Vec<Trace>, (u64, u64)) {
    std::fs::create_dir_all(dir).expect("bench directory");
    let big = attachment_file(&dir.join("attachment.bin"), ATTACHMENT_BYTES);
    let small = attachment_file(&dir.join("warmup.bin"), WARMUP_ATTACHMENT_BYTES);
    let (s, r, to) = pair(&dir.join("nodes")).await;
    let raw = bulk_pair().await;

    let req = |file: &PathBuf| {
        request(
            to,
            Specialty::Cardiology,
            OrgLevel::Regional,
            vec![Attachment::File(file.clone())],
        )
    };
    bulk_sample(&raw, WARMUP_ATTACHMENT_BYTES).await;
    ours_sample(&s, &[&r], req(&small), BULK_PATIENCE).await;
    let mut baseline = Vec::with_capacity(counts.attachment_samples);
    let mut traces = Vec::with_capacity(counts.attachment_samples);
    let before = memory::resident();
    let mut peak = before;
    for _ in 0..counts.attachment_samples {
        baseline.push(bulk_sample(&raw, ATTACHMENT_BYTES).await);
        let sampler = PeakSampler::start();
        traces.push(ours_sample(&s, &[&r], req(&big), BULK_PATIENCE).await);
        peak = peak.max(sampler.stop());
    }
    s.shutdown().await;
    r.shutdown().await;
    let row = Row {
        name: "256 MiB attachment direct",
        // Over the network: from the queued package to the receipt. Sealing
        // the attachment locally, before the package exists, is not transfer.
        ours: traces
            .iter()
            .map(|t| t.delivered.saturating_sub(t.returned))
            .collect(),
        baseline,
        // At least 40% of the raw stream's rate: at most 2.5x its time.
        target: Some(2.5),
    };
    (row, traces, (before, peak))
}

/// Two workers, like the multi-node tests: the machine has two cores and
/// every node, raw swarm and the bench itself share them.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // cargo passes `--bench` (and any filter); only `--quick` and
    // `--sustained`, `--attachment`, `--direct` or `--relayed` (that row
    // alone, to profile it or compare builds in quick turns) matter here.
    let quick = std::env::args().any(|a| a == "--quick");
    let sustained_only = std::env::args().any(|a| a == "--sustained");
    let attachment_only = std::env::args().any(|a| a == "--attachment");
    let direct_only = std::env::args().any(|a| a == "--direct");
    let relayed_only = std::env::args().any(|a| a == "--relayed");
    let counts = if quick {
        Counts {
            warmup: 5,
            samples: 50,
            attachment_samples: 3,
            queued: 10_000,
        }
    } else {
        Counts {
            warmup: 20,
            samples: 200,
            attachment_samples: 5,
            queued: 10_000,
        }
    };
    let tmp = tempfile::tempdir().expect("temporary directory");
    println!(
        "konsilium delivery bench: {} samples a row ({} for the attachment) after warm-up, \
         databases under {}",
        counts.samples,
        counts.attachment_samples,
        tmp.path().display()
    );

    if sustained_only {
        let sustained = sustained_row(&tmp.path().join("sustained"), counts.queued).await;
        let crypto = PackageCrypto::probe(counts.samples, BODY_BYTES);
        print_sustained(&sustained, &crypto);
        return;
    }
    if attachment_only {
        let (attachment, traces, _) = attachment_row(&tmp.path().join("attachment"), &counts).await;
        print_table(&[&attachment]);
        print_breakdown("256 MiB attachment", &traces);
        return;
    }
    if direct_only || relayed_only {
        let dir = tmp.path().join("row");
        let ((row, traces), name, raw) = if direct_only {
            (direct_row(&dir, &counts).await, "direct", "raw round trip")
        } else {
            (
                relayed_row(&dir, &counts).await,
                "relayed",
                "raw 3-swarm chain",
            )
        };
        print_table(&[&row]);
        let flush = sled_flush_cost(tmp.path(), counts.samples);
        let crypto = PackageCrypto::probe(counts.samples, BODY_BYTES);
        println!();
        // Three flushes on either path (see the full run's limits below).
        print_limits(&[Limit::package(&row, raw, &crypto, flush, 3)]);
        print_breakdown(name, &traces);
        return;
    }
    let (direct, direct_traces) = direct_row(&tmp.path().join("direct"), &counts).await;
    let (relayed, relayed_traces) = relayed_row(&tmp.path().join("relayed"), &counts).await;
    let (attachment, attachment_traces, (resident_before, resident_peak)) =
        attachment_row(&tmp.path().join("attachment"), &counts).await;
    let sustained = sustained_row(&tmp.path().join("sustained"), counts.queued).await;

    println!();
    print_table(&[&direct, &relayed, &attachment]);

    let flush = sled_flush_cost(tmp.path(), counts.samples);
    let crypto = PackageCrypto::probe(counts.samples, BODY_BYTES);
    let (write_cost, hash_cost) = attachment_probes(tmp.path());
    let p50 = |v: &[Duration]| percentile(v, 0.5);
    let raw_stream = p50(&attachment.baseline);
    println!();
    println!("against the limit (the parts each operation cannot avoid, timed above and below):");
    let limits = [
        // Sender before returning the id, recipient before signing the
        // receipt, sender on the receipt.
        Limit::package(&direct, "raw round trip", &crypto, flush, 3),
        // The same three: the relay passes the package on at once and
        // the receipt back, its own flush (before it promises custody to
        // the sender) off the package's path.
        Limit::package(&relayed, "raw 3-swarm chain", &crypto, flush, 3),
        // Transfer and the recipient's durable write overlap at best.
        Limit {
            name: attachment.name,
            ours: p50(&attachment.ours),
            raw: raw_stream,
            limit: raw_stream.max(write_cost),
            parts: format!(
                "max(raw stream {:.1}, write+fsync {:.1} ms)",
                ms(raw_stream),
                ms(write_cost)
            ),
            target: 1.2,
        },
    ];
    print_limits(&limits);
    let sustained::Judged {
        share,
        cores,
        raw_cpu,
        ours_cpu,
        limit: sustained_limit,
        limit_share,
        of_limit,
    } = print_sustained(&sustained, &crypto);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "resident memory while the nodes moved 256 MiB: peak {:.0} MiB (before the row {:.0} MiB; target <= 300 MiB: {})",
        mib(resident_peak),
        mib(resident_before),
        if resident_peak <= RESIDENT_BUDGET {
            "ok"
        } else {
            "MISSED"
        }
    );
    let rows = [
        limits[0].suite_row(
            "sealed 1 KiB package, send → signed receipt, direct",
            "raw request-response round trip",
        ),
        limits[1].suite_row(
            "same over 3 nodes through a relay",
            "raw 3-swarm request chain",
        ),
        SuiteRow {
            row: format!(
                "{} queued 1 KiB packages to one recipient, sustained",
                sustained.count
            ),
            measured: format!("{:.0} packages/s", sustained.per_second(sustained.ours)),
            baseline: format!(
                "raw request-response, same payloads, {} in flight: {:.0}/s",
                sustained::WINDOW,
                sustained.per_second(sustained.raw)
            ),
            limit: format!(
                "raw's CPU a request {:.3} ms over a parcel's {MAX_PARCEL} packages + the crypto {:.3} ms, on {cores} cores: {sustained_limit:.0}/s ({:.0}% of raw)",
                ms(raw_cpu),
                ms(crypto.delivery()),
                limit_share * 100.0
            ),
            judged: format!("{:.0}% of raw", share * 100.0),
            context: format!(
                "{:.0}% of the limit; {:.3} ms CPU a package",
                of_limit * 100.0,
                ms(ours_cpu)
            ),
            target: "≥ 50%".into(),
            met: share >= SUSTAINED_SHARE,
        },
        limits[2].suite_row("256 MiB attachment, queued → receipt", "raw libp2p stream"),
        SuiteRow {
            row: "resident memory during a 256 MiB transfer".into(),
            measured: format!(
                "peak {:.0} MiB (both nodes and the bench, one process)",
                mib(resident_peak)
            ),
            baseline: format!(
                "the process before the row: {:.0} MiB",
                mib(resident_before)
            ),
            limit: "budget: 300 MiB".into(),
            judged: format!("{:.0} MiB", mib(resident_peak)),
            context: "-".into(),
            target: "≤ 300 MiB".into(),
            met: resident_peak <= RESIDENT_BUDGET,
        },
    ];
    if let Some(path) = suite::record("2-delivery", &rows).expect("write the suite rows") {
        println!("rows written to {}", path.display());
    }

    println!();
    println!("where the node's time goes:");
    print_breakdown("direct", &direct_traces);
    print_breakdown("relayed", &relayed_traces);
    print_breakdown("256 MiB attachment", &attachment_traces);
    println!(
        "  sled insert+flush+fdatasync of 1 KiB on this disk: p50 {:.3} ms",
        ms(flush)
    );
    println!(
        "  1 KiB crypto, p50: seal {:.3} ms, open {:.3} ms, sign receipt {:.3} ms, verify receipt {:.3} ms",
        ms(crypto.seal),
        ms(crypto.open),
        ms(crypto.sign),
        ms(crypto.verify)
    );
    println!(
        "  256 MiB on this disk: write+sync {:.1} ms, BLAKE3 from page cache {:.1} ms",
        ms(write_cost),
        ms(hash_cost)
    );
}
