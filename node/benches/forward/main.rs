//! The forwarding unit under load: 20 video sessions at 2.5 Mbit/s each
//! through one node, against the same streams sent directly between two
//! bare str0m `Rtc`s, measured in the same run.
//!
//! Run with `cargo bench -p konsilium-node --features local-federation
//! --bench forward` (30 s measured) or `... -- --quick` (10 s); `--sessions N`
//! runs N sessions instead of 20, to see what load adds.
//!
//! *Through the node*: in each of 20 consultations, a clinician's browser
//! (a bare `Rtc` making a browser's send-only offer through WHIP) publishes
//! VP8-sized frames at 30 frames per second, 2.5 Mbit/s; it is its site's
//! presenter, so the district node forwards every frame to a second local
//! browser (receive-only, through WHEP) and to the federal site's link.
//! Every frame carries the instant it was written; the viewer takes the
//! time it arrived whole. The district node runs on a runtime of its own,
//! so its CPU is counted from its threads (`/proc/self/task`).
//!
//! *Direct*: the same 20 publisher and viewer pairs, offer and answer in
//! memory, ICE, DTLS and SRTP over loopback UDP, no node between.
//!
//! Each camera captures on its own clock, so the publishers' frames start
//! at phases drawn at random within a frame's period (`--seed N` draws
//! others; the same phases in both phases of the run). `--in-phase` starts
//! every camera at the same instant instead: the worst case, where the
//! node takes 20 frames at once and the last waits for the 19 before it.
//!
//! `--busy` adds the node's other work: while the sessions run, the
//! federal site sends the district node one package after another, each
//! with a 16 MiB attachment (a DICOM series shared during the consilium),
//! so the district node fetches, hashes, stores and acknowledges files
//! while it forwards. Its CPU then counts that work too, so the rows are
//! printed but not written to the suite's table.
//!
//! Judged: the p99 a frame takes through the node minus the p99 directly
//! (target ≤ 1 ms), and the node's CPU over the measured window (target
//! ≤ 25% of one core). Frames lost on the way are counted, so a node that
//! dropped frames could not look fast.
//!
//! A frame is timed until its last packet arrives. The node sends what
//! it forwards unpaced, as its publisher paced it, and hands str0m's
//! per-packet timeouts back at once rather than waiting for a timer tick
//! for each packet. On loopback the kernel's delivery of each datagram
//! to its receiver runs in the sender's system call, so the node's CPU
//! includes part of its receivers' work.

/// The node's own allocator, for the nodes and their baselines alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../common/peer.rs"]
mod peer;
#[path = "../common/sites.rs"]
mod sites;

use konsilium_node::node::{Attachment, Inspect, NodeEvent, NodeHandle, SendRequest, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::seal::RoutingHeader;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
use konsilium_protocol::urgency::Urgency;
use peer::Peer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::Event;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};

/// Sessions through the node, unless `--sessions N` says otherwise (fewer
/// show what load adds to a frame's way).
const SESSIONS: usize = 20;
const BITRATE: u64 = 2_500_000;
const FPS: u64 = 30;
/// One frame's bytes at that rate.
const FRAME: usize = (BITRATE / 8 / FPS) as usize;
const WARMUP: Duration = Duration::from_secs(10);
const ADDED_P99_TARGET: Duration = Duration::from_millis(1);
const CPU_TARGET: f64 = 0.25;
/// With `--busy`: each shared file's size.
const SHARED_FILE: usize = 16 << 20;
/// The thread name of the forwarding node's runtime.
const NODE_THREADS: &str = "fwd-node";

/// What one phase measured, shared by its clients.
#[derive(Default)]
struct Window {
    measuring: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

/// Every frame starts with a VP8 key frame's first byte, then when it was
/// written (nanoseconds since `base`) and whether it counts.
fn frame(base: Instant, counts: bool) -> Vec<u8> {
    let mut data = vec![0u8; FRAME];
    let at = base.elapsed().as_nanos() as u64;
    data[1..9].copy_from_slice(&at.to_le_bytes());
    data[9] = counts as u8;
    data
}

fn arrived(base: Instant, data: &[u8], window: &Window) {
    if data.len() < 10 || data[9] != 1 {
        return;
    }
    let at = u64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
    let took = base.elapsed().saturating_sub(Duration::from_nanos(at));
    window.received.fetch_add(1, Ordering::Relaxed);
    window.latencies.lock().expect("latencies").push(took);
}

/// An offer as a browser makes it: `direction` audio and video.
fn offer(peer: &mut Peer, direction: Direction) -> (Mid, SdpPendingOffer, String) {
    let mut change = peer.rtc.sdp_api();
    change.add_media(MediaKind::Audio, direction, None, None, None);
    let video = change.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");
    (video, pending, offer.to_sdp_string())
}

/// How far into a frame's period each camera captures.
#[derive(Clone, Copy)]
enum Phases {
    Random(u64),
    InPhase,
}

impl Phases {
    /// One start offset per publisher, as a share of the frame period.
    fn draw(self, n: usize) -> Vec<f64> {
        match self {
            Phases::InPhase => vec![0.0; n],
            Phases::Random(seed) => {
                let mut rng = StdRng::seed_from_u64(seed);
                (0..n).map(|_| rng.random::<f64>()).collect()
            }
        }
    }

    fn describe(self) -> String {
        match self {
            Phases::InPhase => "every camera in phase (worst case)".into(),
            Phases::Random(seed) => format!("cameras at random phases (seed {seed})"),
        }
    }
}

fn period() -> Duration {
    Duration::from_nanos(1_000_000_000 / FPS)
}

/// Publishes frames on `video` at the frame rate, the first `phase` of a
/// period from now, until the phase stops.
async fn publish(mut peer: Peer, video: Mid, base: Instant, window: Arc<Window>, phase: f64) {
    let period = period();
    let mut next = Instant::now() + period.mul_f64(phase);
    let mut media_time = 0u64;
    while !window.stop.load(Ordering::Relaxed) {
        peer.step(Some(next)).await;
        if Instant::now() < next || !peer.rtc.is_connected() {
            continue;
        }
        next += period;
        let Some(writer) = peer.rtc.writer(video) else {
            continue;
        };
        let Some(pt) = (writer.payload_params())
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
        else {
            continue;
        };
        let counts = window.measuring.load(Ordering::Relaxed);
        let data = frame(base, counts);
        media_time += 90_000 / FPS;
        let now = Instant::now();
        if writer
            .write(pt, now, MediaTime::from_90khz(media_time), data)
            .is_ok()
            && counts
        {
            window.sent.fetch_add(1, Ordering::Relaxed);
        }
        peer.drain().await;
    }
}

/// Takes every frame that arrives until the phase stops.
async fn view(mut peer: Peer, base: Instant, window: Arc<Window>) {
    while !window.stop.load(Ordering::Relaxed) {
        peer.step(Some(Instant::now() + Duration::from_millis(20)))
            .await;
        for event in peer.events.drain(..) {
            if let Event::MediaData(m) = event {
                arrived(base, &m.data, &window);
            }
        }
    }
}

/// Waits until every client is connected, ICE and DTLS (or gives up).
async fn connected(peers: &mut [Peer]) {
    let deadline = Instant::now() + sites::PATIENCE;
    while peers.iter().any(|p| !p.rtc.is_connected()) {
        assert!(Instant::now() < deadline, "clients did not connect");
        for p in peers.iter_mut() {
            p.step(Some(Instant::now() + Duration::from_millis(2)))
                .await;
        }
    }
}

/// Runs the publishers and viewers for the warm-up, then the measured
/// `window`; returns the share of one core `cpu` (a CPU clock) advanced
/// by meanwhile.
async fn run(
    publishers: Vec<(Peer, Mid)>,
    phases: Phases,
    viewers: Vec<Peer>,
    measure: Duration,
    window: &Arc<Window>,
    base: Instant,
    cpu: impl Fn() -> Duration,
) -> f64 {
    let mut tasks = Vec::new();
    let starts = phases.draw(publishers.len());
    for ((peer, video), phase) in publishers.into_iter().zip(starts) {
        tasks.push(tokio::spawn(publish(
            peer,
            video,
            base,
            window.clone(),
            phase,
        )));
    }
    for peer in viewers {
        tasks.push(tokio::spawn(view(peer, base, window.clone())));
    }
    tokio::time::sleep(WARMUP).await;
    let cpu_before = cpu();
    let started = Instant::now();
    window.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(measure).await;
    window.measuring.store(false, Ordering::Relaxed);
    let share = (cpu() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    // Frames still on their way arrive before the clients stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    window.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    share
}

/// Sends `to` one package with a shared file after another, each when the
/// last is delivered, until the phase stops; returns how many arrived.
async fn share_files(from: &NodeHandle, to: OrgId, window: &Window) -> u64 {
    let mut events = from.subscribe();
    let file = vec![0x5a; SHARED_FILE];
    let mut delivered = 0;
    while !window.stop.load(Ordering::Relaxed) {
        let request = SendRequest {
            target: Target::Org(to),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::District,
                urgency: Urgency::Urgent,
                region: None,
            },
            body: vec![0x5a; 1024],
            attachments: vec![Attachment::Bytes(file.clone())],
            lifetime: Duration::from_secs(86_400),
        };
        let sent = from.send(request).await.expect("a shared file is sent");
        loop {
            match events.recv().await {
                Ok(NodeEvent::PackageDelivered { id, .. }) if id == sent.id => break,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return delivered,
            }
        }
        delivered += 1;
    }
    delivered
}

/// The connections the node sent less than the full picture at some
/// moment of the measured window (`konsilium sessions` says "reduced" or
/// "audio only" when their path was estimated too thin): a frame held
/// back from such a viewer counts as not delivered, and this says why.
async fn thinned(
    node: &konsilium_node::node::NodeHandle,
    window: &Window,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut found = BTreeMap::<String, BTreeSet<String>>::new();
    while !window.stop.load(Ordering::Relaxed) {
        if window.measuring.load(Ordering::Relaxed)
            && let Ok(report) = node.inspect(Inspect::Sessions).await
        {
            let rows = report["sessions"].as_array().cloned().unwrap_or_default();
            for row in rows {
                let state = row["state"].as_str().unwrap_or_default();
                for thin in ["reduced", "audio only"] {
                    if state.contains(thin) {
                        let name = row["name"].as_str().unwrap_or("?").to_owned();
                        found.entry(name).or_default().insert(thin.to_owned());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    found
}

/// The CPU time of this process's threads named `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    let mut ticks = 0u64;
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
        let time = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        ticks += time(11).unwrap_or(0) + time(12).unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 / per_second)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Phase {
    p50: Duration,
    p99: Duration,
    sent: u64,
    received: u64,
}

fn summary(window: &Window) -> Phase {
    let mut all = window.latencies.lock().expect("latencies").clone();
    Phase {
        p50: percentile(&mut all, 0.5),
        p99: percentile(&mut all, 0.99),
        sent: window.sent.load(Ordering::Relaxed),
        received: window.received.load(Ordering::Relaxed),
    }
}

/// The sessions through the district node: returns what the viewers saw,
/// the node's share of one core, and the connections it thinned.
async fn through_node(
    sessions: usize,
    phases: Phases,
    measure: Duration,
    base: Instant,
    busy: bool,
) -> (Phase, f64, BTreeMap<String, BTreeSet<String>>) {
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(NODE_THREADS)
        .enable_all()
        .build()
        .expect("the node's runtime");
    let far_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("far-node")
        .enable_all()
        .build()
        .expect("the other node's runtime");
    let pair = sites::pair(Some(node_rt.handle()), Some(far_rt.handle())).await;
    let ids = sites::consultations(&pair, sessions).await;
    let (mut publishers, mut viewers) = (Vec::new(), Vec::new());
    for (i, id) in ids.into_iter().enumerate() {
        for publishing in [true, false] {
            let mut peer = Peer::unpaced().await;
            let direction = match publishing {
                true => Direction::SendOnly,
                false => Direction::RecvOnly,
            };
            let (video, pending, sdp) = offer(&mut peer, direction);
            let (name, role) = match publishing {
                true => (format!("presenter {i}"), Role::Physician),
                false => (format!("viewer {i}"), Role::Consultant),
            };
            let (_, answer) =
                (pair.district.join_video(id, (name, role), sdp).await).expect("the browser joins");
            let answer = SdpAnswer::from_sdp_string(&answer).expect("an SDP answer");
            (peer.rtc.sdp_api())
                .accept_answer(pending, answer)
                .expect("the answer is taken");
            peer.drain().await;
            match publishing {
                true => publishers.push((peer, video)),
                false => viewers.push(peer),
            }
        }
    }
    let mut all: Vec<Peer> = Vec::new();
    let mids: Vec<Mid> = publishers.iter().map(|(_, m)| *m).collect();
    all.extend(publishers.into_iter().map(|(p, _)| p));
    all.extend(viewers);
    connected(&mut all).await;
    let viewers = all.split_off(sessions);
    let publishers = all.into_iter().zip(mids).collect();
    let cpu = || threads_cpu(NODE_THREADS);
    let window = Arc::new(Window::default());
    let shared = async {
        match busy {
            true => share_files(&pair.federal, pair.district.org(), &window).await,
            false => 0,
        }
    };
    let (share, thinned, files) = tokio::join!(
        run(publishers, phases, viewers, measure, &window, base, cpu),
        thinned(&pair.district, &window),
        shared
    );
    if busy {
        println!(
            "while forwarding, the node took in {files} files of {} MiB",
            SHARED_FILE >> 20
        );
    }
    node_rt.shutdown_background();
    far_rt.shutdown_background();
    (summary(&window), share, thinned)
}

/// The same 20 streams, each publisher straight to its viewer.
async fn direct(sessions: usize, phases: Phases, measure: Duration, base: Instant) -> Phase {
    let (mut publishers, mut viewers) = (Vec::new(), Vec::new());
    for _ in 0..sessions {
        let (mut publisher, mut viewer) = (Peer::unpaced().await, Peer::unpaced().await);
        let (video, pending, sdp) = offer(&mut publisher, Direction::SendOnly);
        let sdp = SdpOffer::from_sdp_string(&sdp).expect("offer text");
        let answer = viewer.rtc.sdp_api().accept_offer(sdp).expect("an answer");
        let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).expect("answer text");
        (publisher.rtc.sdp_api())
            .accept_answer(pending, answer)
            .expect("the answer is taken");
        publisher.drain().await;
        viewer.drain().await;
        publishers.push((publisher, video));
        viewers.push(viewer);
    }
    let mids: Vec<Mid> = publishers.iter().map(|(_, m)| *m).collect();
    let mut all: Vec<Peer> = publishers.into_iter().map(|(p, _)| p).collect();
    all.extend(viewers);
    connected(&mut all).await;
    let viewers = all.split_off(sessions);
    let publishers = all.into_iter().zip(mids).collect();
    let window = Arc::new(Window::default());
    run(publishers, phases, viewers, measure, &window, base, || {
        Duration::ZERO
    })
    .await;
    summary(&window)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let measure = Duration::from_secs(if quick { 10 } else { 30 });
    let base = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let number = |flag: &str| {
        (args.iter().position(|a| a == flag))
            .and_then(|i| args.get(i + 1))
            .map(|n| {
                n.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
    };
    let sessions = number("--sessions").map_or(SESSIONS, |n| n as usize);
    let phases = match args.iter().any(|a| a == "--in-phase") {
        true => Phases::InPhase,
        false => Phases::Random(number("--seed").unwrap_or(1)),
    };
    println!("{sessions} sessions, {}", phases.describe());
    let busy = args.iter().any(|a| a == "--busy");
    let (ours, cpu, thinned) = through_node(sessions, phases, measure, base, busy).await;
    let bare = direct(sessions, phases, measure, base).await;
    let added = ours.p99.saturating_sub(bare.p99);
    let delivered = |p: &Phase| 100.0 * p.received as f64 / (p.sent.max(1) as f64);
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "", "frames", "delivered", "p50", "p99"
    );
    for (name, p) in [("through the node", &ours), ("direct", &bare)] {
        println!(
            "{:<28} {:>10} {:>9.1}% {:>7.2} ms {:>7.2} ms",
            name,
            p.sent,
            delivered(p),
            ms(p.p50),
            ms(p.p99)
        );
    }
    if !thinned.is_empty() {
        println!(
            "sent less than the full picture at some moment (their path estimated thin): {}",
            (thinned.iter())
                .map(|(name, states)| {
                    let states: Vec<&str> = states.iter().map(String::as_str).collect();
                    format!("{name} ({})", states.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let met_latency = added <= ADDED_P99_TARGET;
    let met_cpu = cpu <= CPU_TARGET;
    println!(
        "added p99 {:.2} ms (target ≤ {:.0} ms): {}; node CPU {:.1}% of a core (target ≤ {:.0}%): {}",
        ms(added),
        ms(ADDED_P99_TARGET),
        if met_latency { "ok" } else { "MISSED" },
        cpu * 100.0,
        CPU_TARGET * 100.0,
        if met_cpu { "ok" } else { "MISSED" },
    );
    let rows = [
        SuiteRow {
            row: format!(
                "video forwarding, {sessions} sessions × 2.5 Mbit/s through one node: added latency per frame"
            ),
            measured: format!(
                "p99 {:.2} ms ({:.1}% of {} frames delivered)",
                ms(ours.p99),
                delivered(&ours),
                ours.sent
            ),
            baseline: format!("the same streams direct: p99 {:.2} ms", ms(bare.p99)),
            limit: "the direct streams".into(),
            judged: format!("+{:.2} ms p99", ms(added)),
            context: format!(
                "p50 {:.2} vs {:.2} ms; {}",
                ms(ours.p50),
                ms(bare.p50),
                phases.describe()
            ),
            target: "≤ +1 ms p99".into(),
            met: met_latency,
        },
        SuiteRow {
            row: format!("video forwarding, {sessions} sessions × 2.5 Mbit/s: the node's CPU"),
            measured: format!("{:.1}% of one core", cpu * 100.0),
            baseline: "-".into(),
            limit: "one core".into(),
            judged: format!("{:.1}%", cpu * 100.0),
            context: "-".into(),
            target: "≤ 25%".into(),
            met: met_cpu,
        },
    ];
    // The suite's rows are the node forwarding alone.
    if !busy
        && let Some(path) =
            suite::record("3-video-forwarding", &rows).expect("write the suite rows")
    {
        println!("rows written to {}", path.display());
    }
}
