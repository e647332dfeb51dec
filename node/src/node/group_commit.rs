//! Group commit: what must wait for its writes to be on disk (a sender's
//! package id, a recipient's receipt, a delivery reported to the
//! application) waits here, and one flush at the end of the event loop's
//! turn releases all of it.
//!
//! A turn takes one input and then every input already waiting, up to
//! [`TURN_INPUTS`]: alone, a package is flushed and answered as soon as
//! before; under load, one flush (a write and a sync through sled's
//! threads) acknowledges the many packages of the turn instead of one.

use super::*;

/// Inputs one turn takes before its flush: bounds how long the first
/// input's answer waits for those after it.
pub(super) const TURN_INPUTS: usize = 64;

/// Runs once the writes made before it are durable, or learns why not.
type OnceDurable = Box<dyn FnOnce(&mut Node, Result<(), &StoreError>) + Send>;

#[derive(Default)]
pub(super) struct GroupCommit {
    waiting: Vec<OnceDurable>,
    /// Written since the last flush, with nothing waiting on it.
    unflushed: bool,
}

impl Node {
    /// Runs `then` once everything written so far is flushed, at the end
    /// of this turn.
    pub(super) fn once_durable(
        &mut self,
        then: impl FnOnce(&mut Node, Result<(), &StoreError>) + Send + 'static,
    ) {
        self.group.waiting.push(Box::new(then));
    }

    /// Writes made this turn that nothing waits on are flushed at its end.
    pub(super) fn flush_at_turn_end(&mut self) {
        self.group.unflushed = true;
    }

    /// The turn's one flush, then what waited for it. What that releases
    /// (a queued package handed to the delivery machine) may write again:
    /// flushed in turn, until nothing is left.
    pub(super) fn end_turn(&mut self) {
        self.drive_outbox();
        while self.group.unflushed || !self.group.waiting.is_empty() {
            self.group.unflushed = false;
            let waiting = std::mem::take(&mut self.group.waiting);
            let flushed = self.store.flush();
            self.metrics.group_flushes.inc();
            self.metrics.group_answers.inc_by(waiting.len() as u64);
            if let Err(e) = &flushed {
                tracing::error!(
                    waiting = waiting.len(),
                    "the turn's writes are not durable: {e}"
                );
            }
            for then in waiting {
                then(self, flushed.as_ref().map(drop));
            }
            self.drive_outbox();
        }
    }
}
