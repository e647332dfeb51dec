//! DTLS certificates made ahead. A link's certificate is new (its
//! fingerprint goes into the description its organization signs), and
//! making one costs a millisecond or two of CPU: paid while an offer or
//! an answer waits, that is a large share of a session's setup. The stock
//! is refilled on tokio's blocking threads, never on the media plane's or
//! the event loop's.

use super::lock;
use konsilium_video::{Certificate, LinkError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Certificates kept ready: enough for a consilium's links opening at once.
const KEEP: usize = 4;

#[derive(Default)]
pub(super) struct Stock {
    ready: Mutex<Vec<Certificate>>,
    refilling: AtomicBool,
}

impl Stock {
    /// A certificate made ahead, or one made now when the stock ran out.
    pub(super) fn take(self: &Arc<Self>) -> Result<Certificate, LinkError> {
        let made = lock(&self.ready).pop();
        self.refill();
        match made {
            Some(cert) => Ok(cert),
            None => Certificate::generate(),
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
                match Certificate::generate() {
                    Ok(cert) => lock(&stock.ready).push(cert),
                    Err(e) => {
                        tracing::warn!("video: no DTLS certificate made ahead: {e}");
                        break;
                    }
                }
            }
            stock.refilling.store(false, Ordering::Release);
        });
    }
}
