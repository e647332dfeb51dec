//! Row 4: many 1 KiB packages queued to one recipient at once, timed until
//! the sender's outbox has every receipt, against raw request-response
//! carrying the same payloads between two plain swarms with as many
//! requests in flight.

use super::*;

/// Packages, and raw requests, in flight at once.
pub(crate) const WINDOW: usize = 64;

pub(crate) struct Sustained {
    pub(crate) count: usize,
    pub(crate) ours: Duration,
    pub(crate) raw: Duration,
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
    let raw = raw_burst(&client, count, WINDOW).await;

    let received_before = r.status().await.expect("recipient running").inbox;
    // Receipts are counted as the sender reports them, not by asking its
    // event loop for its status while it works.
    let mut events = s.subscribe();
    // Counted beside the sends, so the event channel keeps up.
    let receipts = tokio::spawn(async move {
        let mut delivered = std::collections::HashSet::new();
        while delivered.len() < count {
            match events.recv().await {
                Ok(NodeEvent::PackageDelivered { id, .. }) => {
                    delivered.insert(id);
                }
                Ok(_) => {}
                // Events were missed: the sender's outbox will say.
                Err(_) => return false,
            }
        }
        true
    });
    let t0 = Instant::now();
    futures::stream::iter(0..count)
        .map(|_| s.send(req()))
        .buffer_unordered(WINDOW)
        .for_each(|sent| async move {
            sent.expect("send");
        })
        .await;
    let counted = tokio::time::timeout_at(t0 + BULK_PATIENCE, receipts).await;
    if !counted
        .expect("every receipt in time")
        .expect("the counter ran")
    {
        while s.status().await.expect("sender running").outbox > 0 {
            assert!(Instant::now() < t0 + BULK_PATIENCE, "every receipt in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let ours = t0.elapsed();
    let received = r.status().await.expect("recipient running").inbox - received_before;
    assert_eq!(received, count, "the recipient holds every package");
    s.shutdown().await;
    r.shutdown().await;
    Sustained { count, ours, raw }
}
