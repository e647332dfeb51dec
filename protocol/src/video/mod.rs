//! Video consilium between sites: the signed descriptions they exchange
//! (`signal`) and when a consultation's session opens and ends
//! (`schedule`). The media itself is the `konsilium-video` crate's.

mod schedule;
mod signal;

pub use schedule::{EndReason, Schedule, ScheduleOutput};
pub use signal::{Description, MAX_DESCRIPTION_LEN, SessionId, Signal, SignalError, accept};

use crate::identity::OrgId;

/// Whether `me` sends the offer to `other` when both open a session at
/// once: the smaller organization id offers, the other answers. Both
/// sides decide the same, so two offers never cross unresolved.
pub fn offers_to(me: OrgId, other: OrgId) -> bool {
    me < other
}
