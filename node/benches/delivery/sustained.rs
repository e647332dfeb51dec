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
    let t0 = Instant::now();
    futures::stream::iter(0..count)
        .map(|_| s.send(req()))
        .buffer_unordered(WINDOW)
        .for_each(|sent| async move {
            sent.expect("send");
        })
        .await;
    let mut delivered = 0;
    while delivered < count {
        let next = tokio::time::timeout_at(t0 + BULK_PATIENCE, events.recv());
        match next.await.expect("every receipt in time") {
            Ok(NodeEvent::PackageDelivered { .. }) => delivered += 1,
            Ok(_) => {}
            // Events were missed: the outbox says how many are left.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                let outbox = s.status().await.expect("sender running").outbox;
                delivered = count.saturating_sub(outbox);
            }
            Err(e) => panic!("the sender's events ended: {e}"),
        }
    }
    let ours = t0.elapsed();
    let received = r.status().await.expect("recipient running").inbox - received_before;
    assert_eq!(received, count, "the recipient holds every package");
    s.shutdown().await;
    r.shutdown().await;
    Sustained { count, ours, raw }
}
