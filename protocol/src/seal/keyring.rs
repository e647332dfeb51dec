//! An organization's sealing keys over time: the one it seals with and is
//! sealed to now, and those it rotated away from.
//!
//! A new sealing key reaches senders in the organization's directory
//! record, which takes a while to travel; packages sealed to the old key
//! keep arriving meanwhile, and some were sealed before the rotation and are
//! still on their way. Those open during an overlap after the rotation.
//! After it, a package sealed to a retired key is refused, naming the key
//! and when it was retired: its sender's directory is out of date, and the
//! key may have been retired because it leaked. What the organization
//! already holds (packages it accepted, its own copies of what it sent,
//! sealed to itself) opens with any of its keys, for as long as it keeps
//! them.

use super::{EnvelopeHeader, MAX_LIFETIME, Opener, SealError, open_with};
use crate::identity::{SealingKey, SealingPublicKey};
use crate::time::Timestamp;
use std::time::Duration;

/// How long packages sealed to a retired key are still taken in: as long
/// as a package may live, so one sealed a moment before the rotation is
/// not lost.
pub const OVERLAP: Duration = MAX_LIFETIME;

/// A key the organization rotated away from, and when.
#[derive(Clone)]
pub struct Retired {
    pub key: SealingKey,
    pub at: Timestamp,
}

/// What is being opened, which decides which keys may open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A package arriving now from another organization.
    Receiving(Timestamp),
    /// Something this organization already holds.
    Held,
}

#[derive(Clone)]
pub struct Keyring {
    current: SealingKey,
    /// Newest first.
    retired: Vec<Retired>,
}

impl Keyring {
    pub fn new(current: SealingKey, mut retired: Vec<Retired>) -> Self {
        retired.sort_by_key(|r| std::cmp::Reverse(r.at));
        Self { current, retired }
    }

    pub fn current(&self) -> &SealingKey {
        &self.current
    }

    pub fn retired(&self) -> &[Retired] {
        &self.retired
    }

    /// Every public key the organization has sealed with: a copy it sealed
    /// to itself names one of them as its sender.
    pub fn public_keys(&self) -> Vec<SealingPublicKey> {
        std::iter::once(&self.current)
            .chain(self.retired.iter().map(|r| &r.key))
            .map(SealingKey::public)
            .collect()
    }

    /// `new` becomes the current key; the current one is retired at `now`.
    pub fn rotate(&mut self, new: SealingKey, now: Timestamp) {
        let old = std::mem::replace(&mut self.current, new);
        self.retired.insert(0, Retired { key: old, at: now });
    }

    /// Reads a package's handshake with whichever key it was sealed to.
    pub fn opener(
        &self,
        header: &EnvelopeHeader,
        handshake: &[u8],
        sender_keys: &[SealingPublicKey],
        purpose: Purpose,
    ) -> Result<Opener, SealError> {
        self.first_that_opens(purpose, |key| {
            Opener::new(header, key, handshake, sender_keys)
        })
    }

    /// The same for attachment `index` of the package.
    pub fn attachment_opener(
        &self,
        header: &EnvelopeHeader,
        index: u32,
        handshake: &[u8],
        sender_keys: &[SealingPublicKey],
        purpose: Purpose,
    ) -> Result<Opener, SealError> {
        self.first_that_opens(purpose, |key| {
            Opener::for_attachment(header, index, key, handshake, sender_keys)
        })
    }

    /// Opens a whole body into `out` (cleared first).
    pub fn open_body(
        &self,
        header: &EnvelopeHeader,
        sender_keys: &[SealingPublicKey],
        body: &[u8],
        out: &mut Vec<u8>,
        purpose: Purpose,
    ) -> Result<(), SealError> {
        open_with(body, out, |handshake| {
            self.opener(header, handshake, sender_keys, purpose)
        })
    }

    /// Tries the current key, then the retired ones, newest first. A wrong
    /// key fails the handshake (its first chunk) and costs one key
    /// agreement; any other failure is the package's and is returned as is.
    fn first_that_opens(
        &self,
        purpose: Purpose,
        mut open: impl FnMut(&SealingKey) -> Result<Opener, SealError>,
    ) -> Result<Opener, SealError> {
        let keys = std::iter::once((&self.current, None))
            .chain(self.retired.iter().map(|r| (&r.key, Some(r.at))));
        let mut failed = SealError::Tampered { chunk: 0 };
        for (key, retired_at) in keys {
            match open(key) {
                Ok(opener) => {
                    return match (purpose, retired_at) {
                        (Purpose::Receiving(now), Some(at)) if now.since(at) > OVERLAP => {
                            Err(SealError::RetiredKey {
                                key: key.public(),
                                retired_at: at,
                            })
                        }
                        _ => Ok(opener),
                    };
                }
                Err(e @ SealError::Tampered { chunk: 0 }) => failed = e,
                Err(e) => return Err(e),
            }
        }
        Err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::NOW;

    fn header() -> EnvelopeHeader {
        use crate::identity::IdentityKey;
        crate::seal::EnvelopeHeader {
            version: crate::seal::PACKAGE_VERSION,
            id: crate::seal::PackageId([7; 16]),
            sender: IdentityKey::from_seed([5; 32]).org_id(),
            recipient: IdentityKey::from_seed([6; 32]).org_id(),
            routing: crate::seal::RoutingHeader {
                specialty: crate::specialty::Specialty::Cardiology,
                min_level: crate::cert::OrgLevel::Regional,
                urgency: crate::urgency::Urgency::Urgent,
                region: None,
            },
            created: NOW,
            expires: NOW.saturating_add(Duration::from_secs(86_400)),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_rotated_key_seals_new_packages_and_the_retired_one_opens_old_ones_during_the_overlap() {
        let sender = SealingKey::from_seed([1; 32]);
        let old = SealingKey::from_seed([2; 32]);
        let new = SealingKey::from_seed([3; 32]);
        let h = header();
        let seal_to = |to: &SealingKey, body: &[u8]| {
            crate::seal::seal(h.clone(), &sender, &to.public(), [9; 32], body)
                .unwrap()
                .body
        };
        let before = seal_to(&old, b"sealed before the rotation");
        let mut ring = Keyring::new(SealingKey::from_seed([2; 32]), Vec::new());
        ring.rotate(SealingKey::from_seed([3; 32]), NOW);
        assert_eq!(ring.current().public(), new.public());
        let after = seal_to(&new, b"sealed to the new key");
        let senders = [sender.public()];
        let mut out = Vec::new();
        let receiving = Purpose::Receiving(NOW.saturating_add(Duration::from_secs(3600)));
        ring.open_body(&h, &senders, &after, &mut out, receiving)
            .unwrap();
        assert_eq!(out, b"sealed to the new key");
        ring.open_body(&h, &senders, &before, &mut out, receiving)
            .unwrap();
        assert_eq!(out, b"sealed before the rotation");

        // After the overlap the old key's packages are refused, naming it;
        // what the organization holds still opens.
        let late = Purpose::Receiving(NOW.saturating_add(OVERLAP + Duration::from_secs(1)));
        assert_eq!(
            ring.open_body(&h, &senders, &before, &mut out, late),
            Err(SealError::RetiredKey {
                key: old.public(),
                retired_at: NOW
            })
        );
        ring.open_body(&h, &senders, &after, &mut out, late)
            .unwrap();
        ring.open_body(&h, &senders, &before, &mut out, Purpose::Held)
            .unwrap();
        assert_eq!(out, b"sealed before the rotation");

        // A key the organization never had opens nothing, and a sender not
        // in the list is still refused as such.
        let stranger = seal_to(&SealingKey::from_seed([4; 32]), b"x");
        assert_eq!(
            ring.open_body(&h, &senders, &stranger, &mut out, Purpose::Held),
            Err(SealError::Tampered { chunk: 0 })
        );
        assert_eq!(
            ring.open_body(&h, &[new.public()], &after, &mut out, Purpose::Held),
            Err(SealError::SenderKeyMismatch(h.sender))
        );
        assert_eq!(ring.public_keys(), [new.public(), old.public()]);
    }
}
