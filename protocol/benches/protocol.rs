//! Protocol benchmarks, each a ratio against a baseline measured in the same
//! run on the same machine:
//! - sealing and opening throughput against raw snow transport messages
//!   (target: sealing >= 80% of raw snow);
//! - directory ingest of 20,000 signed records (verify + merge) against
//!   verifying the same records' signatures one by one (target: <= 1 s).
//!
//! Run with `cargo bench -p konsilium-protocol`; `-- --quick` for a short run.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::directory::Directory;
use konsilium_protocol::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{NOW, TestFederation};
use konsilium_protocol::urgency::Urgency;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median of `runs` timings of `f`, after one warm-up.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn rate(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 9 };
    println!(
        "{:<44} {:>12} {:>12} {:>8} {:>8}",
        "benchmark", "konsilium", "baseline", "ratio", "target"
    );
    sealing(runs, quick);
    ingest(
        if quick { 2 } else { 5 },
        if quick { 5_000 } else { 20_000 },
    );
}

fn sealing(runs: usize, quick: bool) {
    let mut fed = TestFederation::new("bench");
    let a = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Radiology]);
    let b = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Radiology]);
    let header = EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([1; 16]),
        sender: a.id(),
        recipient: b.id(),
        routing: RoutingHeader {
            specialty: Specialty::Radiology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Planned,
            region: None,
        },
        created: NOW,
        expires: NOW.saturating_add(Duration::from_secs(86_400)),
        attachments: Vec::new(),
    };
    let len = if quick { 8 << 20 } else { 64 << 20 };
    let body = vec![0x5au8; len];

    // Baseline: the same Noise pattern's transport messages, written straight
    // into a preallocated buffer: the cost of the cipher alone.
    let params: snow::params::NoiseParams = "Noise_X_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
    let raw_pair = || {
        let sender_secret = a.sealing.to_seed();
        let recipient_secret = b.sealing.to_seed();
        let mut i = snow::Builder::new(params.clone())
            .local_private_key(sender_secret.as_slice())
            .unwrap()
            .remote_public_key(b.sealing.public().as_bytes())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(params.clone())
            .local_private_key(recipient_secret.as_slice())
            .unwrap()
            .build_responder()
            .unwrap();
        let mut hs = [0u8; 96];
        let n = i.write_message(&[], &mut hs).unwrap();
        r.read_message(&hs[..n], &mut []).unwrap();
        (
            i.into_transport_mode().unwrap(),
            r.into_transport_mode().unwrap(),
        )
    };
    let chunk = seal::CHUNK_PLAINTEXT;
    let mut raw_out = vec![0u8; len + len.div_ceil(chunk) * 16];
    let mut raw_frames = Vec::new();
    let raw_seal = median(runs, || {
        let (mut tx, _) = raw_pair();
        let mut at = 0;
        raw_frames.clear();
        for piece in body.chunks(chunk) {
            let n = tx.write_message(piece, &mut raw_out[at..]).unwrap();
            raw_frames.push((at, n));
            at += n;
        }
        black_box(&raw_out);
    });
    let mut raw_plain = vec![0u8; len];
    let mut raw_open = Duration::MAX;
    for _ in 0..=runs {
        // Each open needs a fresh transport whose sender sealed this very stream.
        let (mut tx, mut rx) = raw_pair();
        let mut at = 0;
        for piece in body.chunks(chunk) {
            at += tx.write_message(piece, &mut raw_out[at..]).unwrap();
        }
        let t = Instant::now();
        let mut out_at = 0;
        for &(start, n) in &raw_frames {
            out_at += rx
                .read_message(&raw_out[start..start + n], &mut raw_plain[out_at..])
                .unwrap();
        }
        raw_open = raw_open.min(t.elapsed());
        black_box(&raw_plain);
    }

    // Ours: the whole package path, handshake and framing included, into
    // reused buffers as a node streaming to disk would use them.
    let mut sealed = Vec::new();
    let ours_seal = median(runs, || {
        seal::seal_into(
            &header,
            &a.sealing,
            &b.sealing.public(),
            [9; 32],
            &body,
            &mut sealed,
        )
        .unwrap();
    });
    let keys = [a.sealing.public()];
    let mut opened = Vec::new();
    let mut ours_open = Duration::MAX;
    for _ in 0..=runs {
        let t = Instant::now();
        seal::open_body(&header, &b.sealing, &keys, &sealed, &mut opened).unwrap();
        ours_open = ours_open.min(t.elapsed());
        assert_eq!(opened.len(), len);
    }
    let mb = len >> 20;
    row(
        &format!("seal {mb} MiB (MB/s; baseline raw snow)"),
        rate(len, ours_seal),
        rate(len, raw_seal),
        0.80,
    );
    row(
        &format!("open {mb} MiB (MB/s; baseline raw snow, best)"),
        rate(len, ours_open),
        rate(len, raw_open),
        0.80,
    );
}

fn row(name: &str, ours: f64, base: f64, target: f64) {
    let ratio = ours / base;
    let verdict = if ratio >= target { "ok" } else { "MISSED" };
    println!(
        "{name:<44} {ours:>12.1} {base:>12.1} {ratio:>8.2} {:>6}{target:.2} {verdict}",
        ">="
    );
}

fn ingest(runs: usize, count: u64) {
    let mut fed = TestFederation::new("ingest");
    let specialties = Specialty::ALL;
    let orgs: Vec<_> = (0..count)
        .map(|i| {
            let level =
                [OrgLevel::District, OrgLevel::Regional, OrgLevel::Federal][(i % 3) as usize];
            let region = format!("RU-R{}", i % 80);
            let mut sp = vec![
                specialties[i as usize % specialties.len()],
                specialties[(i as usize * 7 + 1) % specialties.len()],
            ];
            sp.dedup();
            fed.org(i, level, &region, &sp)
        })
        .collect();
    let records: Vec<_> = orgs.iter().map(|o| o.signed_record(1)).collect();

    // Baseline: verifying each record's own signature alone, nothing else.
    let keys: Vec<_> = orgs.iter().map(|o| o.id().verifying_key()).collect();
    let baseline = median(runs, || {
        for (r, k) in records.iter().zip(&keys) {
            r.verify(k).unwrap();
        }
    });
    let ours = median(runs, || {
        let mut dir = Directory::new();
        let results = dir.insert_many(records.clone(), &fed.trust, NOW);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(dir.len(), count as usize);
        black_box(dir.digest());
    });
    let name = format!("ingest {count} records (ms; baseline 1 verify each)");
    let ratio = ours.as_secs_f64() / baseline.as_secs_f64();
    let target_ms = 1000.0 * count as f64 / 20_000.0;
    let verdict = if ours.as_secs_f64() * 1000.0 <= target_ms {
        "ok"
    } else {
        "MISSED"
    };
    println!(
        "{name:<44} {:>12.1} {:>12.1} {ratio:>8.2} {:>6}{target_ms:.0}ms {verdict}",
        ours.as_secs_f64() * 1000.0,
        baseline.as_secs_f64() * 1000.0,
        "<="
    );
}
