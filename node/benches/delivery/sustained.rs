//! Row 4: many 1 KiB packages queued to one recipient at once, timed until
//! the sender's outbox has every receipt, against raw request-response
//! carrying the same payloads between two plain swarms with as many
//! requests in flight.
//!
//! Its limit is what the cores allow for the work no delivery of sealed
//! packages can skip: the cryptography of one package, and its share of
//! the CPU raw request-response spends on one request (timed here, as this
//! process's CPU time over the raw burst) when packages to one hop travel
//! a parcel of them to a request (`outbox::MAX_PARCEL`). Before parcels a
//! package paid a whole request, and that limit was about half of raw's
//! throughput (44-53%), right at the row's target.

use super::*;

/// Packages, and raw requests, in flight at once.
pub(crate) const WINDOW: usize = 64;

pub(crate) struct Sustained {
    pub(crate) count: usize,
    pub(crate) ours: Duration,
    pub(crate) raw: Duration,
    /// This process's CPU time over each burst (both nodes, or both raw
    /// swarms, and the bench driving them).
    pub(crate) ours_cpu: Duration,
    pub(crate) raw_cpu: Duration,
}

impl Sustained {
    /// Our throughput as a share of raw request-response's.
    pub(crate) fn share(&self) -> f64 {
        self.raw.as_secs_f64() / self.ours.as_secs_f64()
    }

    pub(crate) fn per_second(&self, d: Duration) -> f64 {
        self.count as f64 / d.as_secs_f64()
    }
}

pub(crate) async fn sustained_row(dir: &Path, count: usize) -> Sustained {
    let (s, r, to) = pair(dir).await;
    let server = raw_node(None).await;
    let client = raw_node(Some(&server)).await;
    let req = || request(to, Specialty::Cardiology, OrgLevel::Regional, Vec::new());

    raw_burst(&client, WINDOW, WINDOW).await;
    let cpu = process_cpu();
    let raw = raw_burst(&client, count, WINDOW).await;
    let raw_cpu = process_cpu() - cpu;

    let received_before = r.status().await.expect("recipient running").inbox;
    // Receipts are counted as the sender reports them, not by asking its
    // event loop for its status while it works.
    let mut events = s.subscribe();
    // Counted beside the sends, so the event channel keeps up.
    let receipts = tokio::spawn(async move {
        let mut delivered = std::collections::HashSet::new();
        let mut retries = 0;
        while delivered.len() < count {
            match events.recv().await {
                Ok(NodeEvent::PackageDelivered { id, .. }) => {
                    delivered.insert(id);
                }
                Ok(NodeEvent::DeliveryRetry { error, .. }) => {
                    if retries == 0 {
                        println!("sustained row: first retry: {error}");
                    }
                    retries += 1
                }
                Ok(_) => {}
                // Events were missed: the sender's outbox will say.
                Err(_) => return None,
            }
        }
        Some(retries)
    });
    let t0 = Instant::now();
    let cpu = process_cpu();
    futures::stream::iter(0..count)
        .map(|_| s.send(req()))
        .buffer_unordered(WINDOW)
        .for_each(|sent| async move {
            sent.expect("send");
        })
        .await;
    let counted = tokio::time::timeout_at(t0 + BULK_PATIENCE, receipts).await;
    let retries = counted
        .expect("every receipt in time")
        .expect("the counter ran");
    if let Some(retries) = retries {
        // A refused delivery waits two seconds: a few explain a slow row.
        println!("sustained row: {retries} deliveries retried");
    } else {
        while s.status().await.expect("sender running").outbox > 0 {
            assert!(Instant::now() < t0 + BULK_PATIENCE, "every receipt in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let ours = t0.elapsed();
    let ours_cpu = process_cpu() - cpu;
    let received = r.status().await.expect("recipient running").inbox - received_before;
    assert_eq!(received, count, "the recipient holds every package");
    s.shutdown().await;
    r.shutdown().await;
    Sustained {
        count,
        ours,
        raw,
        ours_cpu,
        raw_cpu,
    }
}

/// CPU time this process's threads have used so far.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The row against raw request-response and against what the cores allow
/// for raw's own CPU a request and the cryptography of a package.
pub(crate) struct Judged {
    pub(crate) share: f64,
    pub(crate) cores: usize,
    /// Raw request-response's CPU for one request, and ours for one package.
    pub(crate) raw_cpu: Duration,
    pub(crate) ours_cpu: Duration,
    /// Packages a second the cores allow for raw's CPU and the crypto.
    pub(crate) limit: f64,
    /// That limit as a share of raw's throughput, and ours of that limit.
    pub(crate) limit_share: f64,
    pub(crate) of_limit: f64,
}

/// Prints the row's figures and returns them for the table.
pub(crate) fn print_sustained(sustained: &Sustained, crypto: &PackageCrypto) -> Judged {
    let share = sustained.share();
    let per = |d: Duration| d / sustained.count as u32;
    let (raw_cpu, ours_cpu) = (per(sustained.raw_cpu), per(sustained.ours_cpu));
    // Every package pays each once, with both nodes in this process: no
    // delivery of sealed packages runs faster, whatever it does with its
    // flushes.
    // Packages to one hop travel up to a parcel to a request, so a
    // package pays at least that share of a request's CPU.
    let floor = raw_cpu / MAX_PARCEL as u32 + crypto.delivery();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit = cores as f64 / floor.as_secs_f64();
    let raw_rate = sustained.per_second(sustained.raw);
    let ours_rate = sustained.per_second(sustained.ours);
    let limit_share = limit / raw_rate;
    let of_limit = ours_rate / limit;
    println!(
        "{} queued 1 KiB packages: {ours_rate:.0}/s vs raw request-response {raw_rate:.0}/s: {:.0}% of raw (target >= 50%: {}); \
         {:.0} µs CPU a package, raw {:.0} µs a request; a {MAX_PARCEL}th of raw's CPU and the crypto allow {limit:.0}/s on {cores} cores \
         ({:.0}% of raw; {:.0}% of that)",
        sustained.count,
        share * 100.0,
        if share >= SUSTAINED_SHARE {
            "ok"
        } else {
            "MISSED"
        },
        micros(ours_cpu),
        micros(raw_cpu),
        limit_share * 100.0,
        of_limit * 100.0,
    );
    Judged {
        share,
        cores,
        raw_cpu,
        ours_cpu,
        limit,
        limit_share,
        of_limit,
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
