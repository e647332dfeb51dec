//! Delivery receipts and the retry schedule.
//!
//! A sender keeps a package in its outbox until the recipient returns a
//! receipt signed with its identity key over the package id and a hash of
//! the sealed body, so a relay cannot fake delivery and the sender knows the
//! exact bytes arrived. Retries back off exponentially with jitter the caller
//! supplies, so a federation recovering from an outage is not flooded in step.

use crate::identity::OrgId;
use crate::seal::{PackageId, SealedPackage};
use crate::signed::{Signable, Signed, SignedError};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub package: PackageId,
    pub sender: OrgId,
    pub recipient: OrgId,
    /// BLAKE3 of the sealed body as received.
    pub body_hash: [u8; 32],
    pub received_at: Timestamp,
}

impl Signable for Receipt {
    const DOMAIN: &'static [u8] = b"konsilium/receipt/v1\0";
}

impl Receipt {
    pub fn for_package(package: &SealedPackage, received_at: Timestamp) -> Self {
        Receipt {
            package: package.header.id,
            sender: package.header.sender,
            recipient: package.header.recipient,
            body_hash: *blake3::hash(&package.body).as_bytes(),
            received_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt: {0}")]
    Signed(#[from] SignedError),
    #[error("receipt is for package {got}, expected {expected}")]
    WrongPackage { expected: PackageId, got: PackageId },
    #[error("receipt names recipient {got}, but the package was sealed to {expected}")]
    WrongRecipient { expected: OrgId, got: OrgId },
    #[error("receipt covers different bytes than the package that was sent")]
    WrongBody,
}

/// Checks a receipt against the package the sender holds: signed by the
/// package's recipient, for this package id and these exact bytes.
pub fn check_receipt(
    signed: &Signed<Receipt>,
    package: &SealedPackage,
) -> Result<Receipt, ReceiptError> {
    check_receipt_for(
        signed,
        package.header.id,
        package.header.recipient,
        blake3::hash(&package.body).as_bytes(),
    )
}

/// [`check_receipt`] for a holder that keeps only the package's id,
/// recipient and body hash in memory (the outbox machine), not its bytes.
pub fn check_receipt_for(
    signed: &Signed<Receipt>,
    id: PackageId,
    recipient: OrgId,
    body_hash: &[u8; 32],
) -> Result<Receipt, ReceiptError> {
    signed.verify_by(recipient.checked_key())?;
    check_receipt_content(signed, id, recipient, body_hash)
}

/// [`check_receipt_for`] but the signature, for receipts whose signatures
/// were checked together ([`crate::signed::verify_all`]).
pub fn check_receipt_content(
    signed: &Signed<Receipt>,
    id: PackageId,
    recipient: OrgId,
    body_hash: &[u8; 32],
) -> Result<Receipt, ReceiptError> {
    let receipt = signed.decode_unverified()?;
    if receipt.package != id {
        return Err(ReceiptError::WrongPackage {
            expected: id,
            got: receipt.package,
        });
    }
    if receipt.recipient != recipient {
        return Err(ReceiptError::WrongRecipient {
            expected: recipient,
            got: receipt.recipient,
        });
    }
    if receipt.body_hash != *body_hash {
        return Err(ReceiptError::WrongBody);
    }
    Ok(receipt)
}

/// First retry after this long; doubles per attempt up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(2);
/// Backoff stops growing here: an organization back from an outage hears
/// from every sender within ten minutes (plus jitter), and a relay checks
/// back no more often than this on a package it has handed on.
pub const RETRY_MAX: Duration = Duration::from_secs(10 * 60);

/// When to try again after `attempts` failures. `jitter` is caller-supplied
/// randomness; the delay varies within +-25% of the nominal backoff.
pub fn next_attempt(now: Timestamp, attempts: u32, jitter: u64) -> Timestamp {
    let nominal = RETRY_BASE
        .saturating_mul(1u32 << attempts.min(16))
        .min(RETRY_MAX);
    let ms = nominal.as_millis() as u64;
    let spread = ms / 2;
    let delay = ms - ms / 4 + if spread == 0 { 0 } else { jitter % spread };
    now.saturating_add(Duration::from_millis(delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::OrgLevel;
    use crate::seal::{EnvelopeHeader, PACKAGE_VERSION, RoutingHeader, seal};
    use crate::specialty::Specialty;
    use crate::testkit::{NOW, TestFederation};
    use crate::urgency::Urgency;

    #[test]
    fn receipts_bind_recipient_package_and_bytes() {
        let mut fed = TestFederation::new("receipt");
        let a = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
        let b = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Urology]);
        let header = EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId([1; 16]),
            sender: a.id(),
            recipient: b.id(),
            routing: RoutingHeader {
                specialty: Specialty::Urology,
                min_level: OrgLevel::Federal,
                urgency: Urgency::Planned,
                region: None,
            },
            created: NOW,
            expires: NOW.saturating_add(Duration::from_secs(3600)),
            attachments: Vec::new(),
        };
        let p = seal(header, &a.sealing, &b.sealing.public(), [1; 32], b"body").unwrap();
        let good = Signed::sign(&b.identity, &Receipt::for_package(&p, NOW));
        assert_eq!(check_receipt(&good, &p).unwrap().package, p.header.id);
        // Signed by someone else (a relay faking delivery).
        let fake = Signed::sign(&a.identity, &Receipt::for_package(&p, NOW));
        assert!(matches!(
            check_receipt(&fake, &p),
            Err(ReceiptError::Signed(_))
        ));
        // For other bytes.
        let mut altered = p.clone();
        altered.body[0] ^= 1;
        let other = Signed::sign(&b.identity, &Receipt::for_package(&altered, NOW));
        assert_eq!(check_receipt(&other, &p), Err(ReceiptError::WrongBody));
        let mut wrong_id = Receipt::for_package(&p, NOW);
        wrong_id.package = PackageId([2; 16]);
        assert!(matches!(
            check_receipt(&Signed::sign(&b.identity, &wrong_id), &p),
            Err(ReceiptError::WrongPackage { .. })
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let at = |n, j| next_attempt(NOW, n, j).since(NOW);
        assert!(at(0, 0) >= Duration::from_millis(1500) && at(0, 0) <= Duration::from_millis(2500));
        assert!(at(3, 0) > at(2, u64::MAX));
        assert!(at(40, u64::MAX) <= RETRY_MAX + RETRY_MAX / 4);
        assert_ne!(at(5, 1), at(5, 1000));
    }
}
