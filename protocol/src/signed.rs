//! Signed values that keep the exact bytes that were signed.
//!
//! Verification runs over the stored bytes, never over a re-encoding, so a
//! value is accepted only if every byte is the signer's; a decoder that
//! tolerated two encodings of one value could otherwise let an altered byte
//! through. Each signed type has its own domain prefix so a signature over a
//! certificate can never be replayed as a directory record.

use crate::identity::{CheckedKey, IdentityKey};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;

/// A type that is signed on its own. `DOMAIN` is prepended to its encoding.
pub trait Signable: Serialize + DeserializeOwned {
    const DOMAIN: &'static [u8];
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    #[error(
        "signed {what}: bytes do not start with the {what} domain tag (a different kind of signed object?)"
    )]
    WrongDomain { what: &'static str },
    #[error("signed {what}: malformed body: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("signed {what}: signature does not verify against {signer}")]
    BadSignature { what: &'static str, signer: String },
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T> {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    signature: Signature,
    #[serde(skip)]
    marker: PhantomData<fn() -> T>,
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            signature: self.signature,
            marker: PhantomData,
        }
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.signature == other.signature
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signed<{}>({} bytes)",
            type_label::<T>(),
            self.bytes.len()
        )
    }
}

/// The type's own name, for errors and debug output. Taken only when one
/// is made: a cold start decodes and checks some 60,000 signed values,
/// and trimming each one's path showed in its profile.
fn type_label<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

impl<T: Signable> Signed<T> {
    pub fn sign(key: &IdentityKey, value: &T) -> Self {
        let mut bytes = T::DOMAIN.to_vec();
        let bytes = postcard::to_extend(value, std::mem::take(&mut bytes))
            .expect("encoding into a Vec cannot fail");
        let signature = key.sign(&bytes);
        Self {
            bytes,
            signature,
            marker: PhantomData,
        }
    }

    /// Decodes without checking the signature: needed to learn who the signer
    /// claims to be. Never trust the result before `verify`.
    pub fn decode_unverified(&self) -> Result<T, SignedError> {
        let body = self.body()?;
        let (value, rest) =
            postcard::take_from_bytes::<T>(body).map_err(|e| SignedError::Malformed {
                what: type_label::<T>(),
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(SignedError::Malformed {
                what: type_label::<T>(),
                reason: format!("{} trailing bytes", rest.len()),
            });
        }
        Ok(value)
    }

    /// Decodes only the leading fields of the value, as `H` (a struct whose
    /// fields are the first fields of `T`, in order), without the rest: how
    /// a large value names its signer before anything big is built from
    /// bytes nobody has vouched for yet. Never trust the result before `verify`.
    pub fn decode_head_unverified<H: serde::de::DeserializeOwned>(&self) -> Result<H, SignedError> {
        postcard::take_from_bytes::<H>(self.body()?)
            .map(|(head, _)| head)
            .map_err(|e| SignedError::Malformed {
                what: type_label::<T>(),
                reason: e.to_string(),
            })
    }

    /// The encoded value after its domain tag.
    fn body(&self) -> Result<&[u8], SignedError> {
        (self.bytes.strip_prefix(T::DOMAIN)).ok_or_else(|| SignedError::WrongDomain {
            what: type_label::<T>(),
        })
    }

    /// Verification as every check makes it (see [`verify_all`]): keys of
    /// small order and non-canonical `s` are refused.
    pub fn verify(&self, signer: &VerifyingKey) -> Result<(), SignedError> {
        if signer.is_weak() {
            return Err(refused(signer.as_bytes(), type_label::<T>));
        }
        verify_one(
            signer.as_bytes(),
            &self.bytes,
            &self.signature,
            type_label::<T>,
        )
    }

    /// Verifies, then decodes: for values whose signer is known in advance.
    pub fn open(&self, signer: &VerifyingKey) -> Result<T, SignedError> {
        self.verify(signer)?;
        self.decode_unverified()
    }

    /// Verification by a key known not to be of small order (an
    /// organization's id, an authority's key, each tested when it was
    /// made): the check decompresses the point itself, once. Through
    /// [`Signed::verify`] it is decompressed twice, for the weak-key test
    /// and again for the check: 54 µs a check here instead of 48.
    pub fn verify_by(&self, signer: CheckedKey) -> Result<(), SignedError> {
        self.check_by(signer).verify()
    }

    /// Verifies by a checked key, then decodes.
    pub fn open_by(&self, signer: CheckedKey) -> Result<T, SignedError> {
        self.verify_by(signer)?;
        self.decode_unverified()
    }

    /// A signature check to run later, alone or in a batch.
    pub fn check_by(&self, signer: CheckedKey) -> SignatureCheck<'_> {
        SignatureCheck {
            bytes: &self.bytes,
            signature: &self.signature,
            signer,
            what: type_label::<T>,
        }
    }

    /// The signed bytes, domain tag included: what a content hash should cover.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Hash of the signed bytes and the signature: one value names one signed object.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&self.bytes);
        h.update(&self.signature.to_bytes());
        *h.finalize().as_bytes()
    }
}

/// One signature check under the rules of ZIP 215 (the cofactored
/// equation, `s` canonical), which batches apply too, so a signature is
/// valid or not whether it is checked alone or among others. ZIP 215 lets
/// keys of small order through: `CheckedKey`s passed that test when they
/// were made, any other key is tested by [`Signed::verify`].
///
/// aws-lc checks first, because it is faster (0.036 against 0.043 ms
/// here) and every step, receipt and package a node takes in is checked
/// alone. It applies RFC 8032's stricter rules (the cofactorless equation,
/// canonical encodings), so what it accepts ZIP 215 accepts too: `[s]B =
/// R + [k]A` times the cofactor is the cofactored equation. What it refuses
/// (a forgery, or a signature only ZIP 215 accepts) is decided by
/// ed25519-zebra, so the answer is always ZIP 215's.
fn verify_one(
    signer: &[u8; 32],
    bytes: &[u8],
    signature: &Signature,
    what: fn() -> &'static str,
) -> Result<(), SignedError> {
    let strict = UnparsedPublicKey::new(&ED25519, signer);
    if strict.verify(bytes, &signature.to_bytes()).is_ok() {
        return Ok(());
    }
    zip215_only(signer, bytes, signature).map_err(|_| refused(signer, what))
}

/// The check by ZIP 215's rules alone: the decision [`verify_one`] must
/// always match.
fn zip215_only(
    signer: &[u8; 32],
    bytes: &[u8],
    signature: &Signature,
) -> Result<(), ed25519_zebra::Error> {
    ed25519_zebra::VerificationKey::try_from(*signer)
        .and_then(|key| key.verify(&zip215(signature), bytes))
}

fn refused(signer: &[u8; 32], what: fn() -> &'static str) -> SignedError {
    SignedError::BadSignature {
        what: what(),
        signer: hex::encode(signer),
    }
}

fn zip215(signature: &Signature) -> ed25519_zebra::Signature {
    ed25519_zebra::Signature::from_bytes(&signature.to_bytes())
}

/// One pending signature check, by a key known not to be weak.
pub struct SignatureCheck<'a> {
    bytes: &'a [u8],
    signature: &'a Signature,
    signer: CheckedKey,
    what: fn() -> &'static str,
}

impl SignatureCheck<'_> {
    pub fn verify(&self) -> Result<(), SignedError> {
        verify_one(
            self.signer.as_bytes(),
            self.bytes,
            self.signature,
            self.what,
        )
    }
}

/// Verifies many signatures at once (about 2.5x faster than one by one on
/// this hardware). A batch decides as the same checks one by one would: it
/// applies the same cofactored equation (ZIP 215). ed25519-dalek's batch
/// did not: its equation was cofactorless and weighed by factors drawn
/// from the batch's contents, so a signature its own signer built with a
/// small-order component in R, which a single strict check refuses,
/// passed one batch in eight (measured), and nodes could disagree about
/// an organization's record. When the batch fails, every check runs on its
/// own and the first culprit is named. Its keys are `CheckedKey`s, never of
/// small order.
pub fn verify_all(checks: &[SignatureCheck<'_>]) -> Result<(), SignedError> {
    if checks.len() < 2 {
        return checks.iter().try_for_each(SignatureCheck::verify);
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for c in checks {
        let key = ed25519_zebra::VerificationKeyBytes::from(*c.signer.as_bytes());
        batch.queue((key, zip215(c.signature), c.bytes));
    }
    if batch.verify(BatchFactors::default()).is_err() {
        return checks.iter().try_for_each(SignatureCheck::verify);
    }
    Ok(())
}

/// The random factors a batch weighs its signatures with: a BLAKE3 stream
/// keyed from the operating system once per batch, not a system call for
/// each signature's factor. Public for the benchmark that times a batch as
/// the limit of ingest's.
pub struct BatchFactors(blake3::OutputReader);

impl Default for BatchFactors {
    fn default() -> Self {
        let mut key = [0u8; 32];
        rand_core_06::RngCore::fill_bytes(&mut rand_core_06::OsRng, &mut key);
        Self(blake3::Hasher::new_keyed(&key).finalize_xof())
    }
}

impl rand_core_06::RngCore for BatchFactors {
    fn next_u32(&mut self) -> u32 {
        rand_core_06::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core_06::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for BatchFactors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
        n: u32,
    }
    impl Signable for Note {
        const DOMAIN: &'static [u8] = b"konsilium/test-note/v1\0";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other {
        text: String,
        n: u32,
    }
    impl Signable for Other {
        const DOMAIN: &'static [u8] = b"konsilium/test-other/v1\0";
    }

    fn key() -> IdentityKey {
        IdentityKey::from_seed([5; 32])
    }

    /// The signed bytes travel as one byte string, which postcard writes
    /// exactly as it wrote them as a sequence of bytes: frames and stored
    /// values from before decode the same.
    #[test]
    fn the_signed_bytes_encode_as_a_plain_byte_sequence_did() {
        #[derive(Serialize, Deserialize)]
        struct AsSequence {
            bytes: Vec<u8>,
            signature: Signature,
        }
        let text = "x".repeat(300);
        let signed = Signed::sign(&key(), &Note { text, n: 7 });
        let plain = AsSequence {
            bytes: signed.bytes.clone(),
            signature: signed.signature,
        };
        let ours = postcard::to_stdvec(&signed).unwrap();
        assert_eq!(ours, postcard::to_stdvec(&plain).unwrap());
        let back: AsSequence = postcard::from_bytes(&ours).unwrap();
        assert_eq!(back.bytes, signed.bytes);
    }

    #[test]
    fn sign_open_round_trip() {
        let k = key();
        let note = Note {
            text: "hi".into(),
            n: 3,
        };
        let s = Signed::sign(&k, &note);
        let vk = k.org_id().verifying_key();
        assert_eq!(s.open(&vk).unwrap(), note);
        let wire = postcard::to_stdvec(&s).unwrap();
        let back: Signed<Note> = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.content_hash(), s.content_hash());
    }

    #[test]
    fn every_altered_byte_fails() {
        let k = key();
        let vk = k.org_id().verifying_key();
        let s = Signed::sign(
            &k,
            &Note {
                text: "consult".into(),
                n: 42,
            },
        );
        let wire = postcard::to_stdvec(&s).unwrap();
        for i in 0..wire.len() {
            for bit in [0x01u8, 0x80] {
                let mut w = wire.clone();
                w[i] ^= bit;
                if let Ok(t) = postcard::from_bytes::<Signed<Note>>(&w) {
                    assert!(t.open(&vk).is_err(), "byte {i} bit {bit:#x} accepted");
                }
            }
        }
    }

    #[test]
    fn domain_separates_types() {
        let k = key();
        let s = Signed::sign(
            &k,
            &Note {
                text: "x".into(),
                n: 1,
            },
        );
        let wire = postcard::to_stdvec(&s).unwrap();
        let as_other: Signed<Other> = postcard::from_bytes(&wire).unwrap();
        assert!(
            as_other.verify(&k.org_id().verifying_key()).is_ok(),
            "signature itself is fine"
        );
        assert!(matches!(
            as_other.decode_unverified(),
            Err(SignedError::WrongDomain { .. })
        ));
    }

    #[test]
    fn wrong_signer_fails_and_batch_agrees() {
        let k = key();
        let other = IdentityKey::from_seed([6; 32]);
        let a = Signed::sign(
            &k,
            &Note {
                text: "a".into(),
                n: 1,
            },
        );
        let b = Signed::sign(
            &other,
            &Note {
                text: "b".into(),
                n: 2,
            },
        );
        let (ka, kb) = (k.org_id().checked_key(), other.org_id().checked_key());
        assert!(matches!(
            a.verify_by(kb),
            Err(SignedError::BadSignature { .. })
        ));
        assert!(matches!(
            a.verify(&other.org_id().verifying_key()),
            Err(SignedError::BadSignature { .. })
        ));
        assert_eq!(a.open_by(ka).unwrap().text, "a");
        assert!(a.open_by(kb).is_err());
        assert!(verify_all(&[a.check_by(ka), b.check_by(kb)]).is_ok());
        let e = verify_all(&[a.check_by(ka), b.check_by(ka), a.check_by(ka)]).unwrap_err();
        assert!(matches!(e, SignedError::BadSignature { what: "Note", .. }));
    }

    /// `message` signed by `secret` with `torsion` added to R: what only
    /// the key's holder can make. Under the cofactored equation it is a
    /// valid signature; under the cofactorless one it is not.
    fn with_torsion(
        secret: curve25519_dalek::Scalar,
        nonce: u8,
        torsion: curve25519_dalek::EdwardsPoint,
        message: &[u8],
    ) -> Signature {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use sha2::Digest;
        let public = (secret * B).compress();
        let r = curve25519_dalek::Scalar::from_bytes_mod_order([nonce; 32]);
        let big_r = (r * B + torsion).compress();
        let mut h = sha2::Sha512::new();
        h.update(big_r.as_bytes());
        h.update(public.as_bytes());
        h.update(message);
        let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice((r + k * secret).as_bytes());
        Signature::from_bytes(&bytes)
    }

    /// Signatures their signer built with components of order 2, 4 and 8
    /// in R are decided alike alone and in every batch. ed25519-dalek's
    /// batch passed one in eight of the order-8 ones that its single
    /// strict check refused.
    #[test]
    fn a_signature_is_decided_alike_alone_and_in_any_batch() {
        use crate::identity::OrgId;
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        let secret = curve25519_dalek::Scalar::from_bytes_mod_order([7; 32]);
        let signer = OrgId::from_bytes((secret * B).compress().to_bytes())
            .unwrap()
            .checked_key();
        let honest = Signed::sign(
            &key(),
            &Note {
                text: "honest".into(),
                n: 1,
            },
        );
        let honest_key = key().org_id().checked_key();
        for (i, torsion) in [EIGHT_TORSION[4], EIGHT_TORSION[2], EIGHT_TORSION[1]]
            .into_iter()
            .cycle()
            .take(48)
            .enumerate()
        {
            let message = format!("record {i}");
            let signature = with_torsion(secret, i as u8 + 1, torsion, message.as_bytes());
            let crafted = SignatureCheck {
                bytes: message.as_bytes(),
                signature: &signature,
                signer,
                what: || "crafted",
            };
            let alone = crafted.verify().is_ok();
            assert!(alone, "the cofactored equation holds for record {i}");
            let batched = verify_all(&[crafted, honest.check_by(honest_key)]).is_ok();
            assert_eq!(alone, batched, "record {i}");
        }
    }

    /// aws-lc's check comes first and decides only what it accepts; the
    /// answer must be ZIP 215's for every signature, including the ones
    /// the two sets of rules decide differently.
    #[test]
    fn a_signature_is_decided_as_zip215_decides_whichever_check_answers() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        // L, the order of the base point, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let strict = |signer: &[u8; 32], message: &[u8], signature: &Signature| {
            UnparsedPublicKey::new(&ED25519, signer)
                .verify(message, &signature.to_bytes())
                .is_ok()
        };
        let (mut fast, mut fallback_accepted, mut refused) = (0, 0, 0);
        for i in 0..64u8 {
            let secret = curve25519_dalek::Scalar::from_bytes_mod_order([i + 1; 32]);
            let signer = (secret * B).compress().to_bytes();
            let message = format!("step {i}");
            let message = message.as_bytes();
            let honest = with_torsion(secret, i + 1, EIGHT_TORSION[0], message);
            let torsion = with_torsion(secret, i + 1, EIGHT_TORSION[1 + i as usize % 7], message);
            // The same signature with s + L: the equation holds, s is not canonical.
            let mut wide = honest.to_bytes();
            let mut carry = 0u16;
            for (byte, l) in wide[32..].iter_mut().zip(L) {
                let sum = u16::from(*byte) + u16::from(l) + carry;
                *byte = sum as u8;
                carry = sum >> 8;
            }
            let mut flipped = honest.to_bytes();
            flipped[usize::from(i) % 64] ^= 1 << (i % 8);
            let candidates = [
                honest,
                torsion,
                Signature::from_bytes(&wide),
                Signature::from_bytes(&flipped),
            ];
            for signature in &candidates {
                let decided = verify_one(&signer, message, signature, || "note").is_ok();
                let zip215 = zip215_only(&signer, message, signature).is_ok();
                assert_eq!(decided, zip215, "signature {i}: {signature:?}");
                match (strict(&signer, message, signature), decided) {
                    (true, _) => fast += 1,
                    (false, true) => fallback_accepted += 1,
                    (false, false) => refused += 1,
                }
            }
        }
        // Each path was taken: honest signatures by aws-lc, the torsion
        // ones only by ZIP 215, s + L and altered bytes by neither.
        assert_eq!(fast, 64);
        assert_eq!(fallback_accepted, 64);
        assert_eq!(refused, 128);
    }

    /// Under a key of small order the cofactored equation holds for any
    /// message: such keys must be refused before it is asked.
    #[test]
    fn a_key_of_small_order_verifies_nothing() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        let identity_point = curve25519_dalek::EdwardsPoint::default().compress();
        let identity = VerifyingKey::from_bytes(&identity_point.to_bytes()).unwrap();
        assert!(identity.is_weak());
        let s = curve25519_dalek::Scalar::from_bytes_mod_order([3; 32]);
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice((s * B).compress().as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        let forged = Signed::<Note> {
            bytes: b"anything at all".to_vec(),
            signature: Signature::from_bytes(&bytes),
            marker: PhantomData,
        };
        assert!(forged.verify(&identity).is_err());
    }
}
