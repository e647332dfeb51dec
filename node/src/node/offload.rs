//! Cryptography over a package's bytes (sealing, opening) runs where it
//! costs least: a small body on the task that needs it, since handing a
//! few KiB to a blocking thread and back costs more than the cryptography
//! itself; a large one on a blocking thread, so that it does not hold one
//! of the runtime's workers (and with it the event loop) for long.

use super::NodeError;

/// Bodies up to this size are worked on in place: sealing 64 KiB takes
/// well under a millisecond.
const IN_PLACE: usize = 64 << 10;

pub(super) async fn by_size<T: Send + 'static>(
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    if bytes <= IN_PLACE {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| NodeError::Background(e.to_string()))
}
