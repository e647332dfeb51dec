//! Video session setup between two real Konsilium nodes on 127.0.0.1,
//! against two bare str0m `Rtc`s connected over loopback UDP in the same
//! process, measured in the same run with samples alternating one by one.
//!
//! Run with `cargo bench -p konsilium-node --features local-federation
//! --bench video` (60 samples) or `... -- --quick` (20).
//!
//! *Ours*: a consultation's session opened by hand at the requesting site
//! (`NodeHandle::open_video`), timed until the data channel is open at both
//! sites. That is the whole path a clinician waits for: the offer written
//! (its own UDP socket bound), signed and sent over the sites' libp2p
//! connection, checked and answered at the other site, the answer signed,
//! sent back and checked, then ICE, DTLS and SCTP over UDP, every link
//! driven by the media plane's task.
//!
//! *Bare*: what the setup cannot avoid. Two str0m `Rtc`s (the crypto
//! backend and settings the node's links use: bandwidth estimation on
//! from 2.5 Mbit/s, statistics every second) on two loopback UDP sockets; the offer and
//! answer cross in memory as SDP text; ICE, DTLS and SCTP run over the
//! sockets; timed until the data channel is open at both.
//!
//! The target is ours p95 at most 1.5x bare p95. The first `Rtc` of a
//! process pays for loading the crypto backend: both sides are warmed up
//! before samples are taken. The bare pair builds its `Rtc`s (DTLS
//! certificate and key shares, about a millisecond each) inside the
//! timing; the nodes take theirs from a stock built ahead and refilled
//! once a setup settles, so ours is under the bare figure by that much at
//! best. Ours also pays what bare does not: two libp2p crossings, four
//! signatures made and checked, the journal written at each step.
//!
//! `KONSILIUM_BENCH_LOG=<filter>` (e.g. `konsilium_node=debug,str0m=debug`)
//! logs every step with its time, to see where a sample goes.

/// The node's own allocator, for the nodes and the bare pair alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use konsilium_node::federation::wait;
use konsilium_node::node::{ActRequest, NodeEvent};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
use konsilium_protocol::video::SessionId;
use konsilium_protocol::workflow::{Action, ConsultationId};
use konsilium_video::LinkEvent;
use std::time::Duration;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use tokio::sync::broadcast;

#[path = "../common/peer.rs"]
mod peer;
#[path = "../common/sites.rs"]
mod sites;
use peer::Peer;
use sites::{PATIENCE, Pair, consultations, pair};
use tokio::time::Instant;

const TARGET_RATIO: f64 = 1.5;
const WARMUP: usize = 3;

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------
// Bare: two str0m Rtcs over loopback UDP
// ---------------------------------------------------------------------------

/// One bare setup: offer, answer, ICE, DTLS, SCTP until both channels open.
async fn bare_sample() -> Duration {
    let started = Instant::now();
    let (mut a, mut b) = (Peer::new().await, Peer::new().await);
    let mut change = a.rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    change.add_channel("consilium".into());
    let (offer, pending) = change.apply().expect("an offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer text");
    let answer = b.rtc.sdp_api().accept_offer(offer).expect("answer");
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).expect("answer text");
    a.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let done = tokio::time::timeout(PATIENCE, async {
        loop {
            a.drain().await;
            b.drain().await;
            if a.open && b.open {
                return;
            }
            let due = a.next().min(b.next());
            tokio::select! {
                r = a.socket().recv_from(&mut buf_a) => if let Ok((n, from)) = r { a.receive(&buf_a[..n], from) },
                r = b.socket().recv_from(&mut buf_b) => if let Ok((n, from)) = r { b.receive(&buf_b[..n], from) },
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            a.timeout_if_due();
            b.timeout_if_due();
        }
    });
    done.await.expect("the bare pair connects");
    started.elapsed()
}

// ---------------------------------------------------------------------------
// Ours: two nodes, a consultation's session opened by hand
// ---------------------------------------------------------------------------

/// When, from the start of a sample, each side saw its link connect
/// (ICE and DTLS done) and its data channel open.
#[derive(Default, Clone, Copy)]
struct Trace {
    opened: Duration,
    connected: [Duration; 2],
    channel: [Duration; 2],
}

async fn channel_open(
    rx: &mut broadcast::Receiver<NodeEvent>,
    session: SessionId,
    from: OrgId,
    started: Instant,
) -> (Duration, Duration) {
    let mut connected = Duration::ZERO;
    let open = wait::event(rx, "the data channel", PATIENCE, |e| match e {
        NodeEvent::Video {
            session: s,
            org,
            event,
        } if *s == session && *org == from => match event {
            LinkEvent::Connected => {
                connected = started.elapsed();
                None
            }
            LinkEvent::ChannelOpen => Some(started.elapsed()),
            LinkEvent::Failed(why) => panic!("the link failed: {why}"),
            _ => None,
        },
        _ => None,
    });
    let open = open.await.expect("the channel opens");
    (connected, open)
}

async fn ours_sample(pair: &Pair, id: ConsultationId) -> (Duration, Trace) {
    let (district, federal) = (pair.district.org(), pair.federal.org());
    let mut at_district = pair.district.subscribe();
    let mut at_federal = pair.federal.subscribe();
    let started = Instant::now();
    let session = (pair.district.open_video(id, None).await).expect("the session opens");
    let opened = started.elapsed();
    let ((c0, o0), (c1, o1)) = tokio::join!(
        channel_open(&mut at_district, session, federal, started),
        channel_open(&mut at_federal, session, district, started),
    );
    let took = started.elapsed();
    // Ends the session off the clock, so links do not pile up.
    let cancel = ActRequest {
        consultation: id,
        role: Role::Physician,
        user: "Dr. Ivanova".into(),
        action: Action::Cancel {
            reason: "bench".into(),
        },
        conclusion: None,
    };
    pair.district.act(cancel).await.expect("cancelled");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let trace = Trace {
        opened,
        connected: [c0, c1],
        channel: [o0, o1],
    };
    (took, trace)
}

/// Medians of where a sample's time went.
fn print_breakdown(traces: &[Trace]) {
    let median = |pick: &dyn Fn(&Trace) -> Duration| {
        let all: Vec<Duration> = traces.iter().map(pick).collect();
        ms(percentile(&all, 0.5))
    };
    println!("where ours goes (medians from open_video):");
    println!(
        "  open_video returned          {:>8.2} ms",
        median(&|t| t.opened)
    );
    println!(
        "  connected at the district    {:>8.2} ms",
        median(&|t| t.connected[0])
    );
    println!(
        "  connected at the center      {:>8.2} ms",
        median(&|t| t.connected[1])
    );
    println!(
        "  channel open at the district {:>8.2} ms",
        median(&|t| t.channel[0])
    );
    println!(
        "  channel open at the center   {:>8.2} ms",
        median(&|t| t.channel[1])
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Where a sample's time goes, line by line, when asked for.
    if let Ok(filter) = std::env::var("KONSILIUM_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let samples = if quick { 20 } else { 60 };
    let pair = pair(None, None).await;
    let ids = consultations(&pair, WARMUP + samples).await;
    let (mut ours, mut bare, mut traces) = (Vec::new(), Vec::new(), Vec::new());
    for (i, id) in ids.into_iter().enumerate() {
        let ((o, trace), b) = (ours_sample(&pair, id).await, bare_sample().await);
        if i >= WARMUP {
            ours.push(o);
            bare.push(b);
            traces.push(trace);
        }
    }
    let ratio = ms(percentile(&ours, 0.95)) / ms(percentile(&bare, 0.95));
    println!(
        "{:<40} {:>4} {:>11} {:>11} {:>11} {:>11} {:>7} {:>7}  verdict",
        "row", "n", "ours p50", "ours p95", "bare p50", "bare p95", "ratio", "target"
    );
    println!(
        "{:<40} {:>4} {:>8.2} ms {:>8.2} ms {:>8.2} ms {:>8.2} ms {:>6.2}x {:>6.1}x  {}",
        "video session setup, loopback",
        ours.len(),
        ms(percentile(&ours, 0.5)),
        ms(percentile(&ours, 0.95)),
        ms(percentile(&bare, 0.5)),
        ms(percentile(&bare, 0.95)),
        ratio,
        TARGET_RATIO,
        if ratio <= TARGET_RATIO {
            "ok"
        } else {
            "MISSED"
        },
    );
    print_breakdown(&traces);
    let row = SuiteRow {
        row: "video session setup: signalling over libp2p, ICE, DTLS, data channel, loopback"
            .into(),
        measured: format!(
            "{:.1} ms p95 ({:.1} ms p50)",
            ms(percentile(&ours, 0.95)),
            ms(percentile(&ours, 0.5))
        ),
        baseline: format!(
            "two bare str0m Rtc over loopback UDP: {:.1} ms p95",
            ms(percentile(&bare, 0.95))
        ),
        limit: "the bare pair".into(),
        judged: format!("{ratio:.2}× bare (p95)"),
        context: "-".into(),
        target: format!("≤ {TARGET_RATIO}×"),
        met: ratio <= TARGET_RATIO,
    };
    if let Some(path) = suite::record("3-video", &[row]).expect("write the suite row") {
        println!("row written to {}", path.display());
    }
}
