//! What the rows cannot avoid, each part timed in the same run (a durable
//! flush, the crypto of a 1 KiB delivery, writing and hashing 256 MiB), and
//! the table that judges each row against the sum of its parts.

use super::{ATTACHMENT_BYTES, BODY_BYTES, attachment_file, ms, percentile};
use konsilium_node::node;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::delivery::Receipt;
use konsilium_protocol::identity::{IdentityKey, SealingKey};
use konsilium_protocol::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::suite::SuiteRow;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use std::io;
use std::path::Path;
use std::time::Duration;

/// What one sled insert + flush of a 1 KiB value costs on the disk the
/// nodes' databases live on; the node flushes on every step a peer or user
/// is told about, so this is the floor under each of those steps.
pub(crate) fn sled_flush_cost(dir: &Path, samples: usize) -> Duration {
    let db = sled::Config::new()
        .path(dir.join("flush-probe"))
        .open()
        .expect("open sled");
    let value = vec![0x5a; BODY_BYTES];
    let mut costs = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let t0 = std::time::Instant::now();
        db.insert(i.to_be_bytes(), value.as_slice())
            .expect("insert");
        db.flush().expect("flush");
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

/// The crypto on the critical path of a 1 KiB delivery, each timed: the
/// sender seals, the recipient opens and signs a receipt, the sender
/// verifies the receipt.
pub(crate) struct Crypto {
    pub(crate) seal: Duration,
    pub(crate) open: Duration,
    pub(crate) sign: Duration,
    pub(crate) verify: Duration,
}

pub(crate) fn crypto_probe(samples: usize) -> Crypto {
    let sender = SealingKey::from_seed(node::random_bytes());
    let recipient = SealingKey::from_seed(node::random_bytes());
    let identity = IdentityKey::from_seed(node::random_bytes());
    let header = |i: u64| EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId(node::random_bytes()),
        sender: identity.org_id(),
        recipient: identity.org_id(),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Regional,
            urgency: Urgency::Urgent,
            region: None,
        },
        created: Timestamp::from_unix_millis(1_700_000_000_000 + i),
        expires: Timestamp::from_unix_millis(1_800_000_000_000),
        attachments: Vec::new(),
    };
    let body = vec![0x5a; BODY_BYTES];
    let verifier = identity.org_id().verifying_key();
    let sender_keys = [sender.public()];
    let mut opened = Vec::new();
    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for i in 0..samples as u64 {
        let t0 = std::time::Instant::now();
        let package = seal::seal(
            header(i),
            &sender,
            &recipient.public(),
            node::random_bytes(),
            &body,
        )
        .expect("seal");
        t[0].push(t0.elapsed());
        let t0 = std::time::Instant::now();
        seal::open_body(
            &package.header,
            &recipient,
            &sender_keys,
            &package.body,
            &mut opened,
        )
        .expect("open");
        t[1].push(t0.elapsed());
        let t0 = std::time::Instant::now();
        let receipt = Signed::sign(
            &identity,
            &Receipt::for_package(&package, header(i).created),
        );
        t[2].push(t0.elapsed());
        let t0 = std::time::Instant::now();
        receipt.verify(&verifier).expect("verify");
        t[3].push(t0.elapsed());
    }
    let [seal, open, sign, verify] = t.map(|v| percentile(&v, 0.5));
    Crypto {
        seal,
        open,
        sign,
        verify,
    }
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
