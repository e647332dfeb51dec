//! What the rows cannot avoid, each part timed in the same run (a durable
//! flush, writing and hashing 256 MiB; the crypto of a 1 KiB delivery comes
//! from the protocol's testkit, shared with the national model), and the
//! table that judges each row against the sum of its parts.

use super::{ATTACHMENT_BYTES, BODY_BYTES, Row, attachment_file, ms, percentile};
use konsilium_protocol::testkit::package_crypto::PackageCrypto;
use konsilium_protocol::testkit::suite::SuiteRow;
use std::io;
use std::path::Path;
use std::time::Duration;

/// What one durable sled insert + flush of a 1 KiB value costs on the disk the
/// nodes' databases live on; the node flushes on every step a peer or user
/// is told about, so this is the floor under each of those steps.
pub(crate) fn sled_flush_cost(dir: &Path, samples: usize) -> Duration {
    let dir = dir.join("flush-probe");
    let db = sled::Config::new().path(&dir).open().expect("open sled");
    let log = std::fs::File::open(dir.join("db")).expect("sled's log");
    let value = vec![0x5a; BODY_BYTES];
    let mut costs = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let t0 = std::time::Instant::now();
        db.insert(i.to_be_bytes(), value.as_slice())
            .expect("insert");
        db.flush().expect("flush");
        // What sled's own flush leaves to the device (see the store's
        // `durable`): the node pays it on every flush.
        log.sync_data().expect("fdatasync");
        costs.push(t0.elapsed());
    }
    percentile(&costs, 0.5)
}

/// What the attachment path costs in pieces the network does not explain:
/// writing 256 MiB and syncing it (done once when sealing, once more when
/// receiving), and hashing 256 MiB with BLAKE3 (done while sealing, and
/// again by the recipient before it accepts the blob).
pub(crate) fn attachment_probes(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("disk-probe.bin");
    let t0 = std::time::Instant::now();
    let file = attachment_file(&path, ATTACHMENT_BYTES);
    std::fs::File::open(&file)
        .and_then(|f| f.sync_all())
        .expect("sync probe file");
    let write = t0.elapsed();
    let t0 = std::time::Instant::now();
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(io::BufReader::new(
            std::fs::File::open(&file).expect("open probe file"),
        ))
        .expect("hash probe file");
    let hash = t0.elapsed();
    let _ = std::fs::remove_file(&file);
    (write, hash)
}

/// A row against its limit: the sum (or, where they overlap, the larger)
/// of what the operation cannot avoid, each part timed in this run.
pub(crate) struct Limit {
    pub(crate) name: &'static str,
    pub(crate) ours: Duration,
    pub(crate) raw: Duration,
    pub(crate) limit: Duration,
    pub(crate) parts: String,
    pub(crate) target: f64,
}

impl Limit {
    /// A 1 KiB package's row: the raw libp2p exchange over the same legs,
    /// one delivery's cryptography and `flushes` durable flushes.
    pub(crate) fn package(
        row: &Row,
        raw_label: &str,
        crypto: &PackageCrypto,
        flush: Duration,
        flushes: u32,
    ) -> Self {
        let raw = percentile(&row.baseline, 0.5);
        Limit {
            name: row.name,
            ours: percentile(&row.ours, 0.5),
            raw,
            limit: raw + crypto.delivery() + flushes * flush,
            parts: format!(
                "{raw_label} {:.3} + seal {:.3} + open {:.3} + sign {:.3} + verify {:.3} + {flushes} flushes of {:.3} ms",
                ms(raw),
                ms(crypto.seal),
                ms(crypto.open),
                ms(crypto.sign),
                ms(crypto.verify),
                ms(flush)
            ),
            target: 1.3,
        }
    }

    /// The row in the suite's table: judged against the limit, the ratio to
    /// raw libp2p beside it.
    pub(crate) fn suite_row(&self, what: &str, baseline: &str) -> SuiteRow {
        let ratio = ms(self.ours) / ms(self.limit);
        SuiteRow {
            row: what.to_owned(),
            measured: format!("{:.2} ms p50", ms(self.ours)),
            baseline: format!("{baseline} {:.2} ms", ms(self.raw)),
            limit: format!("{} = {:.2} ms", self.parts, ms(self.limit)),
            judged: format!("{ratio:.2}× limit"),
            context: format!("{:.1}× raw", ms(self.ours) / ms(self.raw)),
            target: format!("≤ {}×", self.target),
            met: ratio <= self.target,
        }
    }
}

pub(crate) fn print_limits(rows: &[Limit]) {
    println!(
        "{:<28} {:>11} {:>11} {:>9} {:>7}  {:<7} {:>7}  limit is",
        "row", "ours p50", "limit", "/limit", "target", "verdict", "/raw"
    );
    for r in rows {
        let ratio = ms(r.ours) / ms(r.limit);
        let verdict = if ratio <= r.target { "ok" } else { "MISSED" };
        println!(
            "{:<28} {:>8.3} ms {:>8.3} ms {:>8.2}x {:>6.2}x  {:<7} {:>6.1}x  {}",
            r.name,
            ms(r.ours),
            ms(r.limit),
            ratio,
            r.target,
            verdict,
            ms(r.ours) / ms(r.raw),
            r.parts
        );
    }
}
