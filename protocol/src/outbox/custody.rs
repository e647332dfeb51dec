//! How much a relay holds for each organization. A relay keeps what it
//! carries until the next hop takes it, and a package refused for good
//! until it expires (up to 30 days): without a bound per organization, one
//! certified member could fill the relay's disk and leave no room for the
//! region's other hospitals. What is over the bound is refused for now; it
//! waits at its sender, which asks again later.

use super::entry::Entry;
use crate::identity::OrgId;
use crate::rpc::Refusal;
use std::collections::BTreeMap;

/// The most a relay holds for one sending organization at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Custody {
    pub packages: usize,
    /// Bodies and attachments together.
    pub bytes: u64,
}

impl Custody {
    /// A district hospital's traffic while a federal center is unreachable
    /// for days, DICOM studies included, with room to spare; a sixteenth of
    /// a relay's disk would be a great deal less than this per member.
    pub const DEFAULT: Custody = Custody {
        packages: 1_024,
        bytes: 16 << 30,
    };
}

impl Default for Custody {
    fn default() -> Self {
        Custody::DEFAULT
    }
}

/// What a relay holds now, per sender: only entries it carries for others.
#[derive(Debug, Default)]
pub(super) struct Carried {
    by_sender: BTreeMap<OrgId, (usize, u64)>,
}

impl Carried {
    pub(super) fn add(&mut self, entry: &Entry) {
        if entry.origin == super::Origin::Relay {
            let held = self.by_sender.entry(entry.package.sender).or_default();
            held.0 += 1;
            held.1 = held.1.saturating_add(entry.package.bytes);
        }
    }

    pub(super) fn remove(&mut self, entry: &Entry) {
        if entry.origin != super::Origin::Relay {
            return;
        }
        let sender = entry.package.sender;
        if let Some(held) = self.by_sender.get_mut(&sender) {
            held.0 = held.0.saturating_sub(1);
            held.1 = held.1.saturating_sub(entry.package.bytes);
            if held.0 == 0 {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Packages and bytes held for `sender`.
    pub(super) fn of(&self, sender: &OrgId) -> (usize, u64) {
        self.by_sender.get(sender).copied().unwrap_or_default()
    }

    /// Whether one more package of `bytes` from `sender` fits: now, or
    /// never (larger than all a sender may have held).
    pub(super) fn room(
        &self,
        limit: Custody,
        sender: OrgId,
        recipient: OrgId,
        bytes: u64,
    ) -> Result<(), Refusal> {
        if bytes > limit.bytes {
            return Err(Refusal::NotRelayed {
                recipient,
                policy: format!(
                    "the package and its attachments are {bytes} bytes, more than the {} this relay \
                     holds for one organization",
                    limit.bytes
                ),
            });
        }
        let (packages, held) = self.of(&sender);
        if packages < limit.packages && held.saturating_add(bytes) <= limit.bytes {
            return Ok(());
        }
        Err(Refusal::Transient(format!(
            "this relay holds {packages} packages ({held} bytes) from {sender}, at most {} packages \
             and {} bytes: ask again once they are delivered",
            limit.packages, limit.bytes
        )))
    }
}
