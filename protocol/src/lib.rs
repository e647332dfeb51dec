//! Konsilium's protocol core: pure and deterministic. Time and randomness are
//! arguments; nothing here touches a socket, a file or a clock.

pub mod admission;
pub mod calendar;
pub mod cert;
pub mod conclusion;
pub mod content;
pub mod deadline;
pub mod delivery;
pub mod desk;
pub mod directory;
pub mod fetch;
pub mod identity;
pub mod journal;
pub mod keep;
pub mod ladder;
pub mod limits;
pub mod outbox;
pub mod reach;
pub mod recovery;
pub mod route;
pub mod rpc;
pub mod seal;
pub mod signed;
pub mod specialty;
pub mod time;
pub mod timers;
pub mod urgency;
pub mod video;
pub mod wire;
pub mod workflow;

#[cfg(feature = "testkit")]
pub mod testkit;
