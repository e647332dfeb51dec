//! Group commit: what must wait for its writes to be on disk (a sender's
//! package id, a recipient's receipt, a delivery reported to the
//! application) waits here, and one flush releases all of it.
//!
//! A turn takes one input and then every input already waiting, up to
//! [`TURN_INPUTS`], and its end starts a flush on a blocking thread. The
//! event loop goes on meanwhile: the inputs that arrive during a flush are
//! taken in (opened, checked, written) and wait for the next one, which
//! starts when the running one ends. A flush in line used to hold the loop
//! (and the runtime worker under it) for every fsync: under a burst of
//! packages a node spent a third of its time there, answering four or five
//! packages per flush.
//!
//! The rule that keeps this honest: a callback runs only after a flush that
//! began after it was registered, so everything written before it is on
//! disk. Nothing that vouches for a write leaves the node any other way.

use super::*;

/// Inputs one turn takes before it ends: bounds how long the first input
/// waits before its writes go to disk.
pub(super) const TURN_INPUTS: usize = 64;

/// Runs once the writes made before it are durable, or learns why not.
type OnceDurable = Box<dyn FnOnce(&mut Node, Result<(), &StoreError>) + Send>;

pub(super) type GroupCommit = Commits<OnceDurable>;

/// Which waiters a flush answers. Kept apart from the node so that the
/// rule above is tested alone.
pub(super) struct Commits<T> {
    /// Registered since the running flush began: they wait for the next.
    waiting: Vec<T>,
    /// Written since the last flush began, with nothing waiting on it.
    unflushed: bool,
    /// A flush is running, answering these when it ends.
    running: Option<Vec<T>>,
}

impl<T> Default for Commits<T> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            unflushed: false,
            running: None,
        }
    }
}

impl<T> Commits<T> {
    fn wait(&mut self, then: T) {
        self.waiting.push(then);
    }

    fn wrote(&mut self) {
        self.unflushed = true;
    }

    /// Whether a flush starts now: none is running, and something was
    /// written or waits. Those waiting are its to answer.
    fn start(&mut self) -> bool {
        if self.running.is_some() || (!self.unflushed && self.waiting.is_empty()) {
            return false;
        }
        self.unflushed = false;
        self.running = Some(std::mem::take(&mut self.waiting));
        true
    }

    /// The running flush ended: whom it answers (none if `settle` took
    /// them already).
    fn finished(&mut self) -> Vec<T> {
        self.running.take().unwrap_or_default()
    }

    /// For a flush in line that covers every write so far, the running
    /// flush's too: everyone waiting, or `None` if nothing is left.
    fn settle(&mut self) -> Option<Vec<T>> {
        let running = self.running.take();
        let unflushed = std::mem::take(&mut self.unflushed);
        if running.is_none() && !unflushed && self.waiting.is_empty() {
            return None;
        }
        let mut all = running.unwrap_or_default();
        all.append(&mut self.waiting);
        Some(all)
    }
}

impl Node {
    /// Runs `then` once everything written so far is flushed.
    pub(super) fn once_durable(
        &mut self,
        then: impl FnOnce(&mut Node, Result<(), &StoreError>) + Send + 'static,
    ) {
        self.group.wait(Box::new(then));
    }

    /// Writes made this turn that nothing waits on are flushed soon.
    pub(super) fn flush_at_turn_end(&mut self) {
        self.group.wrote();
    }

    /// The turn's end: starts a flush of its writes, unless one is running
    /// (its end starts the next).
    pub(super) fn end_turn(&mut self) {
        self.drive_outbox();
        self.send_parcels();
        if !self.group.start() {
            return;
        }
        let (store, back) = (self.store.clone(), self.loopback.clone());
        tokio::task::spawn_blocking(move || {
            let _ = back.send(Command::Flushed(store.flush()));
        });
    }

    /// The running flush ended: what waited for it goes on. What that
    /// releases may write again, flushed at this turn's end.
    pub(super) fn on_flushed(&mut self, flushed: Result<(), StoreError>) {
        let answering = self.group.finished();
        self.release(answering, flushed.as_ref().map(drop));
    }

    /// Flushes in line until nothing waits, for a loop about to stop: a
    /// running flush's waiters are answered by this one, which covers its
    /// writes too.
    pub(super) fn settle(&mut self) {
        self.drive_outbox();
        self.send_parcels();
        while let Some(answering) = self.group.settle() {
            let flushed = self.store.flush();
            self.release(answering, flushed.as_ref().map(drop));
        }
    }

    fn release(&mut self, answering: Vec<OnceDurable>, flushed: Result<(), &StoreError>) {
        self.metrics.group_flushes.inc();
        self.metrics.group_answers.inc_by(answering.len() as u64);
        if let Err(e) = flushed {
            tracing::error!(
                waiting = answering.len(),
                "the turn's writes are not durable: {e}"
            );
        }
        for then in answering {
            then(self, flushed);
        }
        self.drive_outbox();
    }
}

#[cfg(test)]
mod tests {
    use super::Commits;

    #[test]
    fn a_waiter_is_answered_by_a_flush_that_began_after_it() {
        let mut c = Commits::default();
        c.wait("first package");
        assert!(c.start());
        // Registered while that flush runs: its writes may have missed it.
        c.wait("second package");
        assert!(!c.start(), "one flush at a time");
        assert_eq!(c.finished(), vec!["first package"]);
        assert!(c.start());
        c.wait("third package");
        assert_eq!(c.finished(), vec!["second package"]);
        assert!(c.start());
        assert_eq!(c.finished(), vec!["third package"]);
        assert!(!c.start(), "nothing left to flush");
    }

    #[test]
    fn writes_nobody_waits_on_are_flushed_once() {
        let mut c = Commits::<()>::default();
        assert!(!c.start());
        c.wrote();
        assert!(c.start());
        assert!(c.finished().is_empty());
        assert!(!c.start());
    }

    #[test]
    fn settling_answers_the_running_flushs_waiters_and_the_next() {
        let mut c = Commits::default();
        c.wait(1);
        assert!(c.start());
        c.wait(2);
        c.wrote();
        assert_eq!(c.settle(), Some(vec![1, 2]));
        assert_eq!(c.settle(), None);
        // The flush that was running ends after: it has no one left.
        assert!(c.finished().is_empty());
    }

    #[test]
    fn settling_covers_a_running_flush_nobody_waits_on() {
        let mut c = Commits::<()>::default();
        c.wrote();
        assert!(c.start());
        assert_eq!(c.settle(), Some(vec![]));
        assert_eq!(c.settle(), None);
    }
}
