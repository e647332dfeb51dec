//! How many bytes of requests and answers peers can make a node hold at
//! once. Each stream is limited by its frame's limit, but a connection
//! carries dozens of streams and a node a thousand connections:
//! unauthenticated Hellos alone (two streams a connection, a mebibyte each)
//! could otherwise hold gigabytes, sent slowly over many connections, and a
//! member asking for the whole directory on every stream and never reading
//! the answers could hold as much in answers waiting to be written.
//!
//! Every connection of one protocol draws on one budget for requests: a
//! request holds its share from its first byte until the node has handled
//! it, and a stream that finds the budget spent waits (within its
//! protocol's timeout) instead of reading on. Answers draw on another:
//! an answer holds its share until it is written, and one that finds the
//! budget spent is replaced by a refusal to ask again.

use std::io;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The bytes one protocol's requests, or answers, may hold at once,
/// shared by every connection (clones share it).
#[derive(Clone, Debug)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl ByteBudget {
    pub fn new(bytes: usize) -> Self {
        ByteBudget {
            bytes: Arc::new(Semaphore::new(bytes)),
            limit: bytes,
        }
    }

    /// Bytes not held by any frame now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Bytes held by frames now.
    pub fn held(&self) -> usize {
        self.limit - self.available()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A share of `bytes` if the budget has them now.
    pub fn try_take(&self, bytes: usize) -> Option<Share> {
        let n = u32::try_from(bytes).ok()?;
        let permit = self.bytes.clone().try_acquire_many_owned(n).ok()?;
        Some(Share(Some(permit)))
    }
}

/// A frame's share of its budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Share(Option<OwnedSemaphorePermit>);

impl Share {
    /// Takes `bytes` more, waiting until the budget has them.
    pub(super) async fn grow(&mut self, budget: &ByteBudget, bytes: usize) -> io::Result<()> {
        let n = u32::try_from(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a share over 4 GiB"))?;
        let more = (budget.bytes.clone().acquire_many_owned(n).await)
            .map_err(|_| io::Error::other("the budget is closed"))?;
        match &mut self.0 {
            Some(held) => held.merge(more),
            None => self.0 = Some(more),
        }
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// A request or an answer and the share of a budget it holds: a request
/// read from a peer until the node has answered it, an answer until it is
/// written.
#[derive(Debug)]
pub struct Framed<T> {
    pub frame: T,
    pub share: Share,
}

impl<T> From<T> for Framed<T> {
    /// A frame holding nothing: a request this node sends, an answer it
    /// reads, or a refusal small enough to go unbudgeted.
    fn from(frame: T) -> Self {
        Framed {
            frame,
            share: Share::default(),
        }
    }
}

/// What Hellos being read or handled may hold at once, from any number of
/// unauthenticated connections: 64 of the largest. An honest Hello is a
/// few kilobytes.
pub const HELLO_BUDGET: usize = 64 * konsilium_protocol::rpc::MAX_HELLO_LEN;
/// What admitted peers' requests may hold at once: four packages of the
/// largest body, and room for the many small requests beside them.
pub const RPC_BUDGET: usize = 256 << 20;
/// What answers not yet written to admitted peers may hold at once: eight
/// answers of the largest (a batch of directory records), or hundreds of
/// attachment pieces.
pub const ANSWER_BUDGET: usize = 256 << 20;

/// A node's budgets: Hello requests, admitted peers' requests, and
/// answers not yet written to admitted peers.
#[derive(Clone, Debug)]
pub struct Budgets {
    pub hello: ByteBudget,
    pub requests: ByteBudget,
    pub answers: ByteBudget,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            hello: ByteBudget::new(HELLO_BUDGET),
            requests: ByteBudget::new(RPC_BUDGET),
            answers: ByteBudget::new(ANSWER_BUDGET),
        }
    }
}

impl Budgets {
    /// Each budget by the name the metrics give it.
    pub fn named(&self) -> [(&'static str, &ByteBudget); 3] {
        [
            ("hello", &self.hello),
            ("requests", &self.requests),
            ("answers", &self.answers),
        ]
    }
}
