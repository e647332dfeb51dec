//! Protocol benchmarks, each a ratio against a baseline measured in the same
//! run on the same machine:
//! - sealing and opening throughput against raw snow transport messages
//!   (target: sealing >= 80% of raw snow);
//! - cold start: directory ingest of 20,000 signed records (decode, chain
//!   checks, verify, merge) against batch verification of the same
//!   signatures by the same equation (ZIP 215) with each distinct key
//!   decompressed and tested for small order, the part no ingest can skip
//!   (target: <= 1.1x); verifying them one by one is printed beside it.
//!
//! Run with `cargo bench -p konsilium-protocol`; `-- --quick` for a short run.
//! With `KONSILIUM_BENCH_RESULTS` set, the rows also go to the suite's table.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::directory::Directory;
use konsilium_protocol::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader};
use konsilium_protocol::signed::BatchFactors;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
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

/// Medians of `runs` timings each of `a` and `b` (each closure times its
/// own part), taken in turn after a warm-up of each, so that whatever the
/// machine does meanwhile weighs on a row's baseline and its measurement
/// alike.
fn in_turn(
    runs: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    a();
    b();
    let (mut ta, mut tb): (Vec<_>, Vec<_>) = (0..runs).map(|_| (a(), b())).unzip();
    ta.sort();
    tb.sort();
    (ta[runs / 2], tb[runs / 2])
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
    let mut rows = sealing(runs, quick);
    rows.push(ingest(if quick { 3 } else { 5 }, 20_000));
    if let Some(path) = suite::record("1-protocol", &rows).expect("write the suite rows") {
        println!("rows written to {}", path.display());
    }
}

fn sealing(runs: usize, quick: bool) -> Vec<SuiteRow> {
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
    vec![
        rate_row(
            &format!("seal {mb} MiB (MB/s; baseline raw snow)"),
            rate(len, ours_seal),
            rate(len, raw_seal),
        ),
        rate_row(
            &format!("open {mb} MiB (MB/s; baseline raw snow, best)"),
            rate(len, ours_open),
            rate(len, raw_open),
        ),
    ]
}

/// Sealing and opening must keep 80% of the cipher's own rate: the raw
/// snow transport is both the baseline and the limit.
fn rate_row(name: &str, ours: f64, base: f64) -> SuiteRow {
    const TARGET: f64 = 0.80;
    let ratio = ours / base;
    let met = ratio >= TARGET;
    let verdict = if met { "ok" } else { "MISSED" };
    println!(
        "{name:<44} {ours:>12.1} {base:>12.1} {ratio:>8.2} {:>6}{TARGET:.2} {verdict}",
        ">="
    );
    SuiteRow {
        row: name
            .replace(" (MB/s; baseline raw snow)", "")
            .replace(" (MB/s; baseline raw snow, best)", ""),
        measured: format!("{ours:.0} MB/s"),
        baseline: format!("raw snow transport {base:.0} MB/s"),
        limit: "the cipher: the raw snow transport".into(),
        judged: format!("{ratio:.2} of raw"),
        context: "-".into(),
        target: format!("≥ {TARGET:.2}"),
        met,
    }
}

fn ingest(runs: usize, count: u64) -> SuiteRow {
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

    // The limit: every signature a cold start must check (each record's,
    // each organization certificate's, each regional authority's once),
    // verified in one batch by the same equation as ingest's (ZIP 215,
    // ed25519-zebra), with each distinct public key decompressed and
    // refused if of small order (a check by a key given as bytes cannot
    // skip either), nothing else.
    let mut messages: Vec<&[u8]> = Vec::new();
    let mut signatures = Vec::new();
    let mut signers: Vec<usize> = Vec::new();
    let mut distinct: Vec<[u8; 32]> = Vec::new();
    let mut index = std::collections::HashMap::new();
    let mut signer = |bytes: [u8; 32]| {
        *index.entry(bytes).or_insert_with(|| {
            distinct.push(bytes);
            distinct.len() - 1
        })
    };
    let mut authorities = std::collections::BTreeSet::new();
    for (record, org) in records.iter().zip(&orgs) {
        let cert = org.chain.org.decode_unverified().unwrap();
        messages.push(record.signed_bytes());
        signatures.push(*record.signature());
        signers.push(signer(*org.id().as_bytes()));
        messages.push(org.chain.org.signed_bytes());
        signatures.push(*org.chain.org.signature());
        signers.push(signer(*cert.issuer.as_bytes()));
        if let Some(authority) = &org.chain.authority
            && authorities.insert(authority.content_hash())
        {
            let body = authority.decode_unverified().unwrap();
            messages.push(authority.signed_bytes());
            signatures.push(*authority.signature());
            signers.push(signer(*body.issuer.as_bytes()));
        }
    }
    // Each distinct key decompressed and tested for small order once (what
    // ingest must refuse), then the batch, which takes keys as bytes and
    // decompresses each distinct one itself.
    let check_keys = || {
        for b in &distinct {
            let key = ed25519_dalek::VerifyingKey::from_bytes(b).unwrap();
            assert!(!key.is_weak());
        }
    };
    let zip215: Vec<ed25519_zebra::Signature> = (signatures.iter())
        .map(|s| ed25519_zebra::Signature::from_bytes(&s.to_bytes()))
        .collect();
    let keys: Vec<ed25519_zebra::VerificationKey> = (distinct.iter())
        .map(|b| ed25519_zebra::VerificationKey::try_from(*b).unwrap())
        .collect();
    // Beside it: the same signatures checked one by one.
    let one_by_one = median(runs, || {
        for ((m, s), &i) in messages.iter().zip(&zip215).zip(&signers) {
            keys[i].verify(s, m).unwrap();
        }
    });
    let (batch, ours) = in_turn(
        runs,
        || {
            let t = Instant::now();
            check_keys();
            let mut batch = ed25519_zebra::batch::Verifier::new();
            for ((m, s), &i) in messages.iter().zip(&zip215).zip(&signers) {
                batch.queue((
                    ed25519_zebra::VerificationKeyBytes::from(distinct[i]),
                    *s,
                    *m,
                ));
            }
            batch.verify(BatchFactors::default()).unwrap();
            t.elapsed()
        },
        || {
            // The records as a node holds them when it starts: copying
            // them here is the bench's, not the ingest's.
            let input = records.clone();
            let t = Instant::now();
            let mut dir = Directory::new();
            let results = dir.insert_many(input, &fed.trust, NOW);
            black_box(dir.digest());
            let took = t.elapsed();
            assert!(results.iter().all(Result::is_ok));
            assert_eq!(dir.len(), count as usize);
            // A node keeps the directory it built: freeing it is not timed.
            drop(dir);
            took
        },
    );
    const TARGET: f64 = 1.1;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = ours.as_secs_f64() / batch.as_secs_f64();
    let met = ratio <= TARGET;
    println!(
        "{:<44} {:>12.1} {:>12.1} {ratio:>8.2} {:>6}{TARGET:.1} {}",
        format!("ingest {count} records (ms; baseline batch)"),
        ms(ours),
        ms(batch),
        "<=",
        if met { "ok" } else { "MISSED" }
    );
    SuiteRow {
        row: format!("cold start: verify and index {count} signed records"),
        measured: format!("{:.0} ms", ms(ours)),
        baseline: format!(
            "the same {} signatures one by one: {:.0} ms",
            messages.len(),
            ms(one_by_one)
        ),
        limit: format!(
            "batch verification of them, {} distinct keys decompressed and tested once: {:.0} ms",
            distinct.len(),
            ms(batch)
        ),
        judged: format!("{ratio:.2}× limit"),
        context: format!(
            "{:.2}× one by one",
            ours.as_secs_f64() / one_by_one.as_secs_f64()
        ),
        target: format!("≤ {TARGET}×"),
        met,
    }
}
