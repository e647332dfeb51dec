//! Connections built ahead. Each link and browser seat needs an `Rtc`
//! with a new DTLS certificate (its fingerprint goes into the description
//! its organization signs), and building one costs a millisecond or two
//! of key generation: paid while an offer or an answer waits, that was a
//! third of a session's setup. The stock is refilled on tokio's blocking
//! threads, never on the media plane's or the event loop's, and only once
//! the setups it served are settled (a data channel open or a connection
//! failed): building meanwhile took the cores their signalling ran on,
//! and a moment later still ([`SETTLING`]). A
//! connection taken from it starts its clock when its link does, however
//! long it waited.

use super::lock;
use konsilium_video::{LinkError, Prepared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Connections kept ready: enough for a consilium's links opening at once.
const KEEP: usize = 4;
/// How long after a setup settles here the stock waits to refill: the other
/// sites of the session finish theirs a round trip or two later, and the
/// session's first messages and media follow. Refilled at once, one site's
/// build took a core from the other's last steps where they shared a
/// machine (each sample of the setup bench's slowest tenth).
const SETTLING: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Default)]
pub(super) struct Stock {
    ready: Mutex<Vec<Prepared>>,
    refilling: AtomicBool,
}

impl Stock {
    /// A connection built ahead, or one built now when the stock ran out.
    pub(super) fn take(&self) -> Result<Prepared, LinkError> {
        let built = lock(&self.ready).pop();
        match built {
            Some(prepared) => Ok(prepared),
            None => Prepared::new(Instant::now()),
        }
    }

    /// Tops the stock up in the background (once at a time).
    pub(super) fn refill(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let stock = self.clone();
        let build = move || {
            while lock(&stock.ready).len() < KEEP {
                match Prepared::new(Instant::now()) {
                    Ok(prepared) => lock(&stock.ready).push(prepared),
                    Err(e) => {
                        tracing::warn!("video: no connection built ahead: {e}");
                        break;
                    }
                }
            }
            stock.refilling.store(false, Ordering::Release);
        };
        runtime.spawn(async move {
            tokio::time::sleep(SETTLING).await;
            let _ = tokio::task::spawn_blocking(build).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_stock_is_refilled_only_once_a_setup_had_time_to_settle() {
        let stock = Arc::new(Stock::default());
        stock.refill();
        tokio::time::sleep(SETTLING / 2).await;
        // Time for a build begun at once to show (the simulated clock
        // stands still meanwhile).
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(lock(&stock.ready).is_empty(), "built while a setup settles");
        tokio::time::sleep(SETTLING).await;
        // Built on a blocking thread, in real time.
        for _ in 0..1000 {
            if lock(&stock.ready).len() == KEEP {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lock(&stock.ready).len(), KEEP);
    }
}
