//! The facts routing and relaying need from the directory, and the relay's
//! rule for whose packages it carries.

use crate::cert::RegionCode;
use crate::identity::OrgId;
use crate::rpc::Refusal;

/// What the outbox machine asks of the node's directory. The node answers
/// from its verified directory and the revocations it knows; a test from a
/// map. Asked only when a package is queued or offered, never on a timer.
pub trait Directory {
    /// The region of `org`, when it is a known organization that is not
    /// revoked.
    fn region(&self, org: &OrgId) -> Option<&RegionCode>;
    /// Whether `org` was revoked, so a refusal says so rather than
    /// "unknown": the sender's operator then knows not to try again.
    fn is_revoked(&self, org: &OrgId) -> bool;
}

/// Whether a relay in `region` carries a package to `recipient` from the
/// peer `from`: the recipient must be a known, unrevoked organization, and
/// one end of the hop must be in the relay's region (a regional center
/// carries its region's traffic, not anyone's).
pub(super) fn relay_policy(
    region: &RegionCode,
    from: OrgId,
    recipient: OrgId,
    directory: &impl Directory,
) -> Result<(), Refusal> {
    let Some(to) = directory.region(&recipient) else {
        return Err(match directory.is_revoked(&recipient) {
            true => Refusal::Revoked(recipient),
            false => Refusal::UnknownRecipient(recipient),
        });
    };
    let from_here = directory.region(&from) == Some(region);
    if to == region || from_here {
        Ok(())
    } else {
        Err(Refusal::NotRelayed {
            recipient,
            policy: format!("this relay carries packages to and from region {region} only"),
        })
    }
}

/// Where a package for `recipient` goes first: straight there, or through
/// `relay` when the recipient is known to be in another region than ours.
pub(super) fn first_hop(
    me: OrgId,
    region: &RegionCode,
    relay: Option<OrgId>,
    recipient: OrgId,
    directory: &impl Directory,
) -> OrgId {
    let other_region = directory
        .region(&recipient)
        .is_some_and(|theirs| theirs != region);
    match relay {
        Some(relay) if other_region && relay != me && relay != recipient => relay,
        _ => recipient,
    }
}
