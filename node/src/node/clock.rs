//! Time and randomness as the node sees them: a clock tests can move, and
//! the operating system's random source.

use super::*;

/// Where a node reads the time. The protocol takes time as an argument;
/// the node asks its clock, so tests can move a deadline forward without
/// waiting for it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;

    /// Woken when the clock jumps, so the node's sleep until its next
    /// deadline ends early; a clock that only runs never jumps.
    fn jumps(&self) -> Option<&tokio::sync::Notify> {
        None
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// A clock that runs with the system clock plus an offset the caller moves
/// forward: deadlines pass, while libp2p's own timers stay real.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: std::sync::atomic::AtomicU64,
    jumped: tokio::sync::Notify,
}

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        self.offset
            .fetch_add(by.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
        self.jumped.notify_one();
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        now().saturating_add(Duration::from_millis(
            self.offset.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }

    fn jumps(&self) -> Option<&tokio::sync::Notify> {
        Some(&self.jumped)
    }
}

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}

/// OS randomness for package ids, ephemeral keys and jitter.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source is available");
    out
}
