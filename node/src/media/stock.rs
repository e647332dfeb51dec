//! Connections built ahead. Each link and browser seat needs an `Rtc`
//! with a new DTLS certificate (its fingerprint goes into the description
//! its organization signs), and building one costs a millisecond or two
//! of key generation: paid while an offer or an answer waits, that was a
//! third of a session's setup. The stock is refilled on tokio's blocking
//! threads, never on the media plane's or the event loop's, and only once
//! the setups it served are settled (a data channel open or a connection
//! failed): building meanwhile took the cores their signalling ran on. A
//! connection taken from it starts its clock when its link does, however
//! long it waited.

use super::lock;
use konsilium_video::{LinkError, Prepared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Connections kept ready: enough for a consilium's links opening at once.
const KEEP: usize = 4;

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
        runtime.spawn_blocking(move || {
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
        });
    }
}
