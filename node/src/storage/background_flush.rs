//! Flushes the store on a blocking thread while the event loop goes on.
//!
//! For writes that record what already happened and need not be durable
//! before the node's next step: a video link's steps. Signalling a session
//! crosses both sites' event loops several times; a flush on each crossing
//! (a few fsyncs each) doubled the time a clinician waits for the other
//! site. What must be durable before anyone is told (a workflow step, a
//! receipt) still flushes in line.

use super::store::Store;
use std::sync::{Arc, Mutex};

pub struct BackgroundFlush {
    store: Arc<Store>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    running: bool,
    /// Asked for while a flush ran: that flush may have started before the
    /// write it was asked for, so one more follows.
    again: bool,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BackgroundFlush {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            state: Arc::default(),
        }
    }

    /// Flushes everything written so far, soon. Requests made while a
    /// flush runs are served together by one more after it. Must be called
    /// within a tokio runtime.
    pub fn request(&self) {
        let mut state = lock(&self.state);
        if state.running {
            state.again = true;
            return;
        }
        state.running = true;
        drop(state);
        let (store, state) = (self.store.clone(), self.state.clone());
        tokio::task::spawn_blocking(move || {
            loop {
                if let Err(e) = store.flush() {
                    tracing::error!("writes left unflushed: {e}");
                }
                let mut state = lock(&state);
                if !state.again {
                    state.running = false;
                    return;
                }
                state.again = false;
            }
        });
    }

    /// No flush running or asked for.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        !lock(&self.state).running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::store::{Anchoring, Batch};
    use konsilium_protocol::identity::IdentityKey;
    use konsilium_protocol::journal::{Action, Journal};
    use konsilium_protocol::time::Timestamp;
    use std::time::Duration;

    /// Journal entries written without a flush are vouched for by the
    /// anchor once the background flush ran: every request is served,
    /// including those made while a flush was running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_anchor_vouches_for_what_was_written_before_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        store.anchor_journal(Anchoring::new(
            IdentityKey::from_seed([7; 32]),
            dir.path(),
            || Timestamp::from_unix_millis(1_000),
        ));
        let store = Arc::new(store);
        let flush = BackgroundFlush::new(store.clone());
        let mut journal = Journal::new();
        for i in 0..20u64 {
            let mut batch = Batch::default();
            let action = Action::Login {
                user: format!("user {i}"),
            };
            batch.put_journal(&journal.append(Timestamp::from_unix_millis(i), None, None, action));
            store.write(batch).unwrap();
            flush.request();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !flush.is_idle() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(flush.is_idle(), "the flushes ended");
        let anchor = crate::storage::anchor::read(dir.path())
            .unwrap()
            .expect("an anchor was written");
        let checkpoint = anchor.decode_unverified().unwrap();
        assert_eq!(
            (checkpoint.seq, checkpoint.head),
            store.journal_head().unwrap()
        );
        assert_eq!(checkpoint.seq, 20);
    }
}
