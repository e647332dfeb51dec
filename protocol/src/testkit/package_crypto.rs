//! The cryptography every delivered package pays, timed on this machine.
//! A benchmark's limit is the sum of what its operation cannot avoid, each
//! part measured in the same run: the delivery rows and the national model
//! both build theirs from these parts.

use crate::cert::OrgLevel;
use crate::delivery::Receipt;
use crate::identity::{IdentityKey, SealingKey};
use crate::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader};
use crate::signed::Signed;
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use std::time::{Duration, Instant};

/// Median times of each part: the sender seals, the recipient opens and
/// signs a receipt, the sender verifies the receipt.
#[derive(Debug, Clone, Copy)]
pub struct PackageCrypto {
    pub seal: Duration,
    pub open: Duration,
    pub sign: Duration,
    pub verify: Duration,
}

impl PackageCrypto {
    /// What one delivered package pays in all: sealed, opened, its receipt
    /// signed and verified.
    pub fn delivery(&self) -> Duration {
        self.seal + self.open + self.sign + self.verify
    }

    /// Times each part `samples` times on a body of `body_bytes`. Keys and
    /// ephemerals come from counters: the cost of the arithmetic does not
    /// depend on where the bytes came from. One sender and one recipient
    /// throughout, as between two organizations that exchanged packages
    /// before: each holds its agreement with the other's key, and a first
    /// package between two costs one X25519 more on each side.
    pub fn probe(samples: usize, body_bytes: usize) -> Self {
        let seed = |i: u64, tag: u8| {
            let mut bytes = [tag; 32];
            bytes[..8].copy_from_slice(&i.to_le_bytes());
            bytes
        };
        let sender = SealingKey::from_seed(seed(0, 1));
        let recipient = SealingKey::from_seed(seed(0, 2));
        let identity = IdentityKey::from_seed(seed(0, 3));
        // As a sender checks a receipt: by the recipient's id, a checked key.
        let verifier = identity.org_id().checked_key();
        let sender_keys = [sender.public()];
        // A sender reads the recipient's public key from the directory.
        let recipient_key = recipient.public();
        let body = vec![0x5a; body_bytes];
        let mut opened = Vec::new();
        let mut times = [(); 4].map(|()| Vec::with_capacity(samples));
        for i in 0..samples.max(1) as u64 {
            let header = EnvelopeHeader {
                version: PACKAGE_VERSION,
                id: PackageId(seed(i, 4)[..16].try_into().expect("16 of 32")),
                sender: identity.org_id(),
                recipient: identity.org_id(),
                routing: RoutingHeader {
                    specialty: Specialty::Cardiology,
                    min_level: OrgLevel::Regional,
                    urgency: Urgency::Urgent,
                    region: None,
                },
                created: Timestamp::from_unix_millis(1_700_000_000_000 + i),
                expires: Timestamp::from_unix_millis(1_800_000_000_000),
                attachments: Vec::new(),
            };
            let t0 = Instant::now();
            let package = seal::seal(header, &sender, &recipient_key, seed(i, 5), &body)
                .expect("a probe package seals");
            times[0].push(t0.elapsed());
            let t0 = Instant::now();
            seal::open_body(
                &package.header,
                &recipient,
                &sender_keys,
                &package.body,
                &mut opened,
            )
            .expect("a probe package opens");
            times[1].push(t0.elapsed());
            let t0 = Instant::now();
            let receipt = Signed::sign(
                &identity,
                &Receipt::for_package(&package, package.header.created),
            );
            times[2].push(t0.elapsed());
            let t0 = Instant::now();
            receipt
                .verify_by(verifier)
                .expect("a probe receipt verifies");
            times[3].push(t0.elapsed());
        }
        let [seal, open, sign, verify] = times.map(|mut t| {
            t.sort_unstable();
            t[t.len() / 2]
        });
        Self {
            seal,
            open,
            sign,
            verify,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_timed_even_from_no_samples() {
        for samples in [0, 3] {
            let c = PackageCrypto::probe(samples, 1024);
            assert!(
                [c.seal, c.open, c.sign, c.verify]
                    .iter()
                    .all(|t| !t.is_zero()),
                "{c:?}"
            );
        }
    }
}
